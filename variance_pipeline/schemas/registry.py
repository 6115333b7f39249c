"""Every landed dataset, in load order: the lake, the warehouse load and the checks iterate this."""

from __future__ import annotations

from variance_pipeline.schemas.account import ACCOUNTS, BALANCES, MARGIN_REQUIREMENTS, TRADING_STATUS
from variance_pipeline.schemas.book import OPTION_QUOTES, POSITION_PNL
from variance_pipeline.schemas.candles import CANDLES
from variance_pipeline.schemas.dataset import Dataset
from variance_pipeline.schemas.earnings import EARNINGS_CALENDAR, EARNINGS_REPORTS
from variance_pipeline.schemas.journal import JOURNAL
from variance_pipeline.schemas.market_metrics import IV_TERM_STRUCTURE, MARKET_METRICS
from variance_pipeline.schemas.positions import POSITIONS
from variance_pipeline.schemas.realized_volatility import REALIZED_VOLATILITY
from variance_pipeline.schemas.risk import POSITION_GREEKS, RISK_FREE_RATE
from variance_pipeline.schemas.universe import UNIVERSE

DATASETS: tuple[Dataset, ...] = (
    POSITIONS, UNIVERSE, MARKET_METRICS, IV_TERM_STRUCTURE, EARNINGS_CALENDAR, CANDLES, REALIZED_VOLATILITY, RISK_FREE_RATE,
    POSITION_GREEKS, EARNINGS_REPORTS, ACCOUNTS, BALANCES, MARGIN_REQUIREMENTS, TRADING_STATUS, OPTION_QUOTES,
    POSITION_PNL, *JOURNAL,
)
BY_NAME = {dataset.name: dataset for dataset in DATASETS}

# The account snapshot's datasets load in a step of their own (``account_book``): a balances or
# margin-report failure must never keep the market data of the evening out of the warehouse.
ACCOUNT_SNAPSHOT = (BALANCES, MARGIN_REQUIREMENTS, TRADING_STATUS)
# The journal (transactions, net-liq history, trades) loads in its own step after the account
# book (``journal_book``): its entry context reads the balances that step loads.
MARKET_AND_POSITIONS = tuple(dataset for dataset in DATASETS if dataset not in ACCOUNT_SNAPSHOT + JOURNAL)
