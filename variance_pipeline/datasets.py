"""Every landed dataset declared once: lake folder, warehouse table, partition column, grain, schema.

The lake, the warehouse load and the asset checks all read this registry, so adding a dataset is
one entry here plus its pandera model; ``tests/test_datasets.py`` proves that each dataset's frame
builder, pandera model and DDL columns agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pandera.pandas as pa

from variance_pipeline.validation.candles import CandlesSchema
from variance_pipeline.validation.earnings import EarningsReportsSchema
from variance_pipeline.validation.market_metrics import MarketMetricsSchema, TermStructureSchema
from variance_pipeline.validation.positions import PositionsSchema
from variance_pipeline.validation.realized_volatility import RealizedVolatilitySchema
from variance_pipeline.validation.risk import PositionGreeksSchema, RiskFreeRateSchema
from variance_pipeline.validation.universe import UniverseSchema


@dataclass(frozen=True)
class Dataset:
    """One lake dataset (``lake/<name>/date=D/part-0.parquet``) and the table it loads into.

    ``load``: ``replace_session`` deletes the table's rows of that session (``date_column``) and
    inserts the partition (re-running a day replaces it); ``upsert`` inserts or replaces by the
    grain, for data whose key is not the session it was fetched on (past earnings reports).
    """

    name: str
    date_column: str
    schema: type[pa.DataFrameModel]
    table: str
    load: Literal["replace_session", "upsert"] = "replace_session"

    @property
    def key(self) -> tuple[str, ...]:
        """The grain: the schema's ``unique`` columns, which are also the table's primary key."""
        return tuple(self.schema.Config.unique)

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(self.schema.to_schema().columns)


POSITIONS = Dataset("positions", "as_of_date", PositionsSchema, "positions")
UNIVERSE = Dataset("universe", "as_of_date", UniverseSchema, "universe")
MARKET_METRICS = Dataset("market_metrics", "as_of_date", MarketMetricsSchema, "market_metrics")
IV_TERM_STRUCTURE = Dataset("iv_term_structure", "as_of_date", TermStructureSchema, "iv_term_structure")
CANDLES = Dataset("candles", "session_date", CandlesSchema, "candles")
REALIZED_VOLATILITY = Dataset("realized_volatility", "session_date", RealizedVolatilitySchema, "realized_volatility")

RISK_FREE_RATE = Dataset("risk_free_rate", "as_of_date", RiskFreeRateSchema, "risk_free_rate")
POSITION_GREEKS = Dataset("position_greeks", "as_of_date", PositionGreeksSchema, "position_greeks")
EARNINGS_REPORTS = Dataset("earnings_reports", "occurred_date", EarningsReportsSchema, "earnings_reports", load="upsert")

DATASETS: tuple[Dataset, ...] = (
    POSITIONS, UNIVERSE, MARKET_METRICS, IV_TERM_STRUCTURE, CANDLES, REALIZED_VOLATILITY, RISK_FREE_RATE, POSITION_GREEKS,
    EARNINGS_REPORTS,
)
BY_NAME = {dataset.name: dataset for dataset in DATASETS}
