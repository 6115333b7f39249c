"""The accounts' ledger: every fill, delivery, expiration and cash movement, as plain data.

The engine (``engine.py``) appends rows; everything an account shows on an evening is a sum of the
rows executed up to that instant: ``positions_at`` (quantity, average open price, opening time per
symbol) and ``cash_at``. Nothing else holds state, so a position can never disagree with its
history. The rows carry what Tastytrade's transactions journal carries (type, sub-type, action,
order id, quantity, price, value, fees) so a later endpoint can serve them as they are.

Signs: ``quantity`` is the signed change of the position (bought or received: +, sold or
delivered: -); ``value`` the signed cash effect before fees (credit: +, debit: -). A future's
trade moves no cash: its daily settlements are ``Mark to Market`` rows.

Fees (Tastytrade's published schedule, rounded): equity options $1.00 a contract to open (at most
$10 a leg), nothing to close, $0.10 clearing and $0.02 regulatory a contract; stock no commission,
$0.0008 a share clearing; a stock delivery from an assignment or exercise $5 a contract (as the
recorded assignment: 200.0 for 40 contracts); futures $1.25 a contract plus exchange fees, future
options $2.50 to open; $0.02 NFA fee a futures contract.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from datetime import datetime
from typing import Iterable

from variance_pipeline.simulator.contracts import Contract

EXCHANGE_FEES = {"/ES": 1.38, "/MES": 0.35, "/ZN": 0.85, "/CL": 1.50, "/MCL": 0.35, "/GC": 1.55, "/MGC": 0.35, "/6E": 1.05}


@dataclass(frozen=True)
class Fill:
    """One ledger row (see the module docstring for the signs)."""

    id: int
    account: str
    executed_at: datetime
    transaction_type: str  # Trade | Receive Deliver | Money Movement
    sub_type: str  # Sell to Open, Buy to Close, ..., Expiration, Assignment, Exercise, Dividend, Deposit, Mark to Market
    description: str
    contract: Contract | None
    quantity: int
    price: float
    value: float
    commission: float = 0.0
    clearing_fees: float = 0.0
    regulatory_fees: float = 0.0
    order_id: int | None = None
    action: str | None = None
    group: str | None = None

    @property
    def fees(self) -> float:
        return self.commission + self.clearing_fees + self.regulatory_fees

    @property
    def net_value(self) -> float:
        return self.value - self.fees


def trade_fees(contract: Contract, quantity: int, opening: bool) -> tuple[float, float, float]:
    """(commission, clearing, regulatory) of a trade of ``quantity`` (signed) ``contract``."""
    size = abs(quantity)
    kind = contract.instrument_type
    if kind == "Equity Option":
        return (min(10.0, 1.0 * size) if opening else 0.0), 0.10 * size, 0.02 * size
    if kind == "Equity":
        return 0.0, round(0.0008 * size, 4), 0.0
    if kind == "Future":
        return 1.25 * size, EXCHANGE_FEES.get(contract.root, 1.0) * size, 0.02 * size
    return (2.50 * size if opening else 0.0), EXCHANGE_FEES.get(contract.root, 1.0) * size, 0.02 * size


@dataclass(frozen=True)
class Holding:
    """A position as the ledger sums it: signed quantity, average open price, when it was opened,
    and how much of it each strategy group holds (the margin report's nesting)."""

    account: str
    contract: Contract
    quantity: int
    average_open_price: float
    opened_at: datetime
    groups: tuple[tuple[str, int], ...]


class Ledger:
    """Rows in execution order, with the running sums answered as of any instant."""

    def __init__(self) -> None:
        self.fills: list[Fill] = []
        self._times: list[datetime] = []

    def add(self, fill: Fill) -> Fill:
        if self._times and fill.executed_at < self._times[-1]:
            raise ValueError(f"ledger rows must arrive in time order: {fill.executed_at} < {self._times[-1]}")
        self.fills.append(fill)
        self._times.append(fill.executed_at)
        return fill

    def upto(self, instant: datetime, account: str | None = None) -> list[Fill]:
        """The rows executed at or before ``instant`` (of ``account``, if given)."""
        rows = self.fills[: bisect.bisect_right(self._times, instant)]
        return rows if account is None else [row for row in rows if row.account == account]

    def cash_at(self, account: str, instant: datetime) -> float:
        return cash(self.upto(instant, account))

    def positions_at(self, account: str, instant: datetime) -> list[Holding]:
        return positions(self.upto(instant, account))


def cash(rows: Iterable[Fill]) -> float:
    return round(sum(row.net_value for row in rows), 6)


def positions(rows: Iterable[Fill]) -> list[Holding]:
    """Open positions summed from ``rows`` (average price of the lots still open, as a broker shows)."""
    state: dict[str, dict] = {}
    for row in rows:
        if row.contract is None or row.quantity == 0:
            continue
        entry = state.setdefault(row.contract.symbol, {"account": row.account, "contract": row.contract, "qty": 0,
                                                       "avg": 0.0, "opened": row.executed_at, "groups": {}})
        qty, change = entry["qty"], row.quantity
        if qty == 0:
            entry.update(avg=row.price, opened=row.executed_at)
        elif (qty > 0) == (change > 0):
            entry["avg"] = (entry["avg"] * abs(qty) + row.price * abs(change)) / (abs(qty) + abs(change))
        elif abs(change) > abs(qty):
            entry.update(avg=row.price, opened=row.executed_at)
        entry["qty"] = qty + change
        if row.group is not None:
            groups = entry["groups"]
            groups[row.group] = groups.get(row.group, 0) + change
            if groups[row.group] == 0:
                del groups[row.group]
    return [
        Holding(e["account"], e["contract"], e["qty"], e["avg"], e["opened"], tuple(sorted(e["groups"].items())))
        for e in state.values()
        if e["qty"] != 0
    ]
