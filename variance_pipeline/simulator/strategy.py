"""What the premium-selling engine trades: its accounts, its rule parameters, its records.

The numbers the rules of ``engine.py`` (its docstring tells them) are written with, the sleeves
(recurring trades), and the two records the engine keeps while it runs: a ``Group`` (one strategy
instance, its legs and the credit it took in) and an ``Order`` (decided at an evening review,
executed the next session). Nothing here trades.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

from variance_pipeline.simulator.contracts import Contract

MARGIN = "5WT00001"
IRA = "5WT00002"
ENGINE_ACCOUNTS = frozenset({MARGIN, IRA})
"""The accounts the engine trades (the others hold a test's templates or nothing)."""
START = date(2024, 7, 1)
"""The first session the engine trades (the AAPL put assigned at the start was sold before it)."""
DEPOSITS = {MARGIN: 400_000.0, IRA: 150_000.0}
TARGET_DTE, MIN_DTE, MAX_DTE = 45, 30, 65
PROFIT_TARGET = 0.50
MANAGE_DTE = 21
TESTED_DELTA = 0.40
BP_CAP = 0.50
EARNINGS_NAMES = ("AAPL", "MSFT", "NVDA", "AMZN", "TSLA")
WEEKLY = {"P": "weekly_put", "C": "weekly_call"}
WEEKLY_ROOT, WEEKLY_QUANTITY, WEEKLY_WIDTH = "SPY", 2, 5.0
"""The short-dated ladder sells SPY credit spreads ($5 wide): a naked weekly would tie up about
$12,000 of buying power for a dollar of premium, a spread $500."""
FILL_LEAD = timedelta(minutes=10)
NOTICE_LEAD = timedelta(minutes=90)
FIRST_FILL_ID = 318_000_001
FIRST_ORDER_ID = 274_000_001
PREMIUM = frozenset({"strangle", "iron_condor", "short_put", "weekly_put", "weekly_call", "earnings_put"})
"""Strategies whose maximum profit is the credit received (the 50 % rule and the runners)."""


@dataclass(frozen=True)
class Sleeve:
    """A recurring trade: on ``root``, ``strategy`` at ``delta``, ``quantity`` contracts a leg."""

    account: str
    root: str
    strategy: str  # strangle | iron_condor | short_put
    delta: float
    quantity: int
    wing: float = 0.0
    ladder: int = 1
    ladder_rank: float = 0.30  # the IV rank a second, overlapping group needs


SLEEVES = (
    Sleeve(MARGIN, "SPY", "strangle", 0.16, 2, ladder=2, ladder_rank=0.0),
    Sleeve(MARGIN, "QQQ", "iron_condor", 0.20, 3, wing=10.0, ladder=2),
    Sleeve(MARGIN, "IWM", "strangle", 0.16, 3, ladder=2),
    Sleeve(MARGIN, "/MES", "strangle", 0.16, 3),
    Sleeve(MARGIN, "/ZN", "short_put", 0.20, 2),
    *(Sleeve(MARGIN, name, "short_put", 0.28, 1, ladder=2, ladder_rank=0.5) for name in ("MSFT", "NVDA", "AMZN", "TSLA")),
)


@dataclass
class Group:
    """One strategy instance: its current legs (symbol -> contract, signed quantity), the net
    premium received over its life (dollars, fees aside) and how it must be handled."""

    id: str
    account: str
    root: str
    strategy: str
    opened: int
    legs: dict[str, Contract] = field(default_factory=dict)
    quantity: dict[str, int] = field(default_factory=dict)
    credit: float = 0.0
    rolls: int = 0
    rolled: int = -99  # session of the last roll
    outs: int = 0  # rolls out in time (one at most)
    sleeve: Sleeve | None = None
    hold: bool = False  # held to expiration (fillers, puts taken to assignment)
    report: date | None = None  # earnings plays: the report to hold through
    core: bool = False  # covered calls rolled rather than assigned

    def options(self) -> list[Contract]:
        return [c for s, c in self.legs.items() if c.is_option and self.quantity.get(s)]

    def shares(self) -> int:
        return sum(q for s, q in self.quantity.items() if self.legs[s].instrument_type == "Equity")

    def expiration(self) -> date | None:
        found = [c.expiration for c in self.options() if c.expiration]
        return min(found) if found else None


@dataclass(frozen=True)
class Order:
    kind: str
    group: str | None = None
    sleeve: Sleeve | None = None
    root: str | None = None
    account: str | None = None
    detail: object = None
