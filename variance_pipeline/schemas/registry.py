"""Every landed dataset, in load order: the lake, the warehouse load and the checks iterate this."""

from __future__ import annotations

from variance_pipeline.schemas.candles import CANDLES
from variance_pipeline.schemas.dataset import Dataset
from variance_pipeline.schemas.earnings import EARNINGS_REPORTS
from variance_pipeline.schemas.market_metrics import IV_TERM_STRUCTURE, MARKET_METRICS
from variance_pipeline.schemas.positions import POSITIONS
from variance_pipeline.schemas.realized_volatility import REALIZED_VOLATILITY
from variance_pipeline.schemas.risk import POSITION_GREEKS, RISK_FREE_RATE
from variance_pipeline.schemas.universe import UNIVERSE

DATASETS: tuple[Dataset, ...] = (
    POSITIONS, UNIVERSE, MARKET_METRICS, IV_TERM_STRUCTURE, CANDLES, REALIZED_VOLATILITY, RISK_FREE_RATE,
    POSITION_GREEKS, EARNINGS_REPORTS,
)
BY_NAME = {dataset.name: dataset for dataset in DATASETS}
