"""Trades (chains) from the transactions journal: which legs belong together, and what each made.

The broker keeps transactions, not trades. The rules, applied per account in execution order:

1. **An order is one event.** The legs of one ``order-id`` open a trade together. A leg's side is
   its action (``Buy``: +, ``Sell``: -); an option's removal (expiration, assignment, exercise)
   carries no action and closes whatever is open in that symbol.
2. **Closing** consumes the open lots of the symbol first in, first out (a row closing lots of two
   trades is shared between them in proportion to the quantity; its transaction is listed under the
   larger share).
3. **Opening** legs join, in this order: the trade the same order closed legs of, on the same
   underlying (a **roll** in one order); the trade holding long stock on that underlying when the
   order sells calls against it (a **covered call**); a trade on the same underlying that an
   earlier order of the same session closed **at a loss** (a roll in two orders: closing a winner
   and opening a fresh position the same day is a new trade, the way a premium seller counts it);
   else a new trade.
4. **Receive Deliver**: an assignment's or exercise's stock (or future) closes the lots it
   delivers against (the assigned trade's first: a covered call called away) or opens a new trade
   linked to the assigned one (``parent_trade_id``: the wheel); shares delivered and taken back at
   one instant (a spread's short leg assigned and its long leg exercised) stay with the assigned
   trade: its loss is the spread's. Dividends and futures settlements
   (``Mark to Market``) belong to the trade holding the symbol; deposits and withdrawals to none.

P&L (signs as the transactions': a credit is positive): a closed trade's ``realized_pnl`` is the
sum of its transactions' ``net_value``; an open trade's is that sum plus the cost of its lots still
open (each lot's opening cash per unit times its remaining signed quantity), i.e. the fees and the
legs already closed. ``max_profit`` is the net option premium collected before the final close
(what the trade makes if its last legs expire worthless), for trades that opened for a net credit
in options only. A trade opened before the journal's first transaction cannot be
known: its closing rows find no lot and are left out (``orphans`` counts them).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Iterable
from zoneinfo import ZoneInfo

import pandas as pd

from variance_pipeline.instruments.option_symbols import parse_option_symbol

NEW_YORK = ZoneInfo("America/New_York")
TRANSFERS = frozenset({"Deposit", "Withdrawal", "ACH Deposit", "ACH Disbursement", "Wire Funds Received",
                       "Wire Funds Disbursed", "Transfer", "Journal Entry"})
"""Money movements in or out of the account: not P&L, part of no trade."""
REMOVALS = {"Expiration": "expiration", "Assignment": "assignment", "Exercise": "exercise",
            "Cash Settled Assignment": "assignment", "Cash Settled Exercise": "exercise"}
SCRATCH_SHARE, SCRATCH_DOLLARS = 0.05, 1.0
"""A closed trade whose |P&L| is within 5 % of the premium it traded (or $1) is a scratch: the
opening credit of an options-only trade, the option premium sold of one holding stock or a future
(whose notional says nothing of the premium: 5 % of 100 shares would call most wheels a scratch)."""
OPTION_TYPES = frozenset({"Equity Option", "Future Option"})


@dataclass
class Lot:
    trade: str
    quantity: float  # signed, remaining
    cost_per_unit: float  # opening cash paid per unit of signed quantity (-value / signed quantity)


@dataclass
class Trade:
    """One chain while the journal is replayed."""

    trade_id: str
    account: str
    underlying: str
    opened_at: datetime
    strategy: str = "other"
    parent: str | None = None
    net: float = 0.0
    value: float = 0.0
    option_value: float = 0.0
    premium_sold: float = 0.0
    opening_credit: float = 0.0
    opening_options_only: bool = True
    closing_value: float = 0.0
    closing_option_value: float = 0.0
    closing_event: int = -1
    closed_at: datetime | None = None
    rolls: int = 0
    orders: set[int] = field(default_factory=set)
    symbols: set[str] = field(default_factory=set)
    held: dict[str, float] = field(default_factory=dict)
    assigned: bool = False
    expiration: date | None = None


def _sign(action: str | None) -> int | None:
    if not action:
        return None
    return 1 if action.startswith("Buy") else -1 if action.startswith("Sell") else None


def _float(value: Any) -> float:
    return 0.0 if value is None or value != value else float(value)


class Journal:
    """Replays one account's transactions into trades (see the module docstring)."""

    def __init__(self, account: str) -> None:
        self.account = account
        self.lots: dict[str, deque[Lot]] = {}
        self.trades: dict[str, Trade] = {}
        self.legs: list[dict[str, Any]] = []
        self.closed_at_loss: dict[tuple[str, date], list[str]] = {}
        self.orphans = 0
        self.event = 0

    # -- lots ---------------------------------------------------------------------------------

    def _open_quantity(self, symbol: str) -> float:
        return sum(lot.quantity for lot in self.lots.get(symbol, ()))

    def _open(self, trade: Trade, symbol: str, quantity: float, value: float) -> None:
        self.lots.setdefault(symbol, deque()).append(Lot(trade.trade_id, quantity, -value / quantity))
        trade.held[symbol] = trade.held.get(symbol, 0.0) + quantity
        trade.closed_at = None

    def _close(self, symbol: str, quantity: float, prefer: str | None = None) -> dict[str, float]:
        """Consume ``quantity`` (signed, against the open side) of ``symbol``: trade -> quantity closed."""
        lots = self.lots.get(symbol, deque())
        order = sorted(lots, key=lambda lot: lot.trade != prefer) if prefer else list(lots)
        left = abs(quantity)
        closed: dict[str, float] = {}
        for lot in order:
            if left <= 1e-9:
                break
            take = min(left, abs(lot.quantity))
            lot.quantity += take if lot.quantity < 0 else -take
            closed[lot.trade] = closed.get(lot.trade, 0.0) + take
            trade = self.trades[lot.trade]
            trade.held[symbol] = trade.held.get(symbol, 0.0) - (take if quantity < 0 else -take)
            if abs(trade.held[symbol]) <= 1e-9:
                del trade.held[symbol]
            left -= take
        self.lots[symbol] = deque(lot for lot in lots if abs(lot.quantity) > 1e-9)
        return closed

    # -- rows -----------------------------------------------------------------------------------

    def _book(self, trade: Trade, row: dict[str, Any], share: float, role: str, signed: float | None,
              primary: bool = True) -> None:
        trade.net += _float(row["net_value"]) * share
        trade.value += _float(row["value"]) * share
        if row.get("symbol"):
            trade.symbols.add(str(row["symbol"]))
        if row.get("instrument_type") in OPTION_TYPES:
            trade.option_value += _float(row["value"]) * share
        if row.get("order_id") is not None:
            trade.orders.add(int(row["order_id"]))
        if role in ("close", "expiration", "assignment", "exercise", "delivery") and signed is not None:
            if trade.closing_event != self.event:
                trade.closing_event, trade.closing_value, trade.closing_option_value = self.event, 0.0, 0.0
            trade.closing_value += _float(row["value"]) * share
            if row.get("instrument_type") in OPTION_TYPES:
                trade.closing_option_value += _float(row["value"]) * share
        if primary:
            self.legs.append({"id": int(row["id"]), "account_number": self.account, "trade_id": trade.trade_id,
                              "role": role, "signed_quantity": signed})

    def _book_closing(self, row: dict[str, Any], portion: dict[str, float], role: str, signed: float) -> list[Trade]:
        """A closing row shared by the trades whose lots it closed, in proportion (see rule 2)."""
        total = sum(portion.values()) or 1.0
        main = max(portion, key=lambda t: portion[t]) if portion else None
        touched = []
        for trade_id, taken in portion.items():
            trade = self.trades[trade_id]
            self._book(trade, row, taken / total, role, signed, primary=trade_id == main)
            if not trade.held:
                trade.closed_at = row["executed_at"]
            touched.append(trade)
        return touched

    def _new(self, row: dict[str, Any], strategy: str = "other", parent: str | None = None) -> Trade:
        trade = Trade(f"{self.account}-{int(row['id'])}", self.account, str(row["root_symbol"]), row["executed_at"],
                      strategy, parent)
        self.trades[trade.trade_id] = trade
        return trade

    def order(self, rows: list[dict[str, Any]]) -> None:
        """One order's legs (rules 1-3)."""
        self.event += 1
        day = rows[0]["executed_at"].astimezone(NEW_YORK).date()
        opening: list[tuple[dict[str, Any], float]] = []
        closing: list[tuple[dict[str, Any], float]] = []
        for row in rows:
            quantity = _float(row.get("quantity")) * (_sign(row.get("action")) or 0)
            held = self._open_quantity(row["symbol"])
            to_close = "to Close" in str(row.get("action")) or (held and (held > 0) != (quantity > 0))
            if to_close and held:
                closing.append((row, quantity))
            elif to_close:
                self.orphans += 1  # closes a position opened before the journal begins
            else:
                opening.append((row, quantity))
        roll = bool(closing and opening)
        closed: dict[str, Trade] = {}
        for row, quantity in closing:
            for trade in self._book_closing(row, self._close(row["symbol"], quantity), "roll" if roll else "close", quantity):
                closed[trade.trade_id] = trade
        root = str(opening[0][0]["root_symbol"]) if opening else None
        target = next((t for t in closed.values() if t.underlying == root), None)
        for trade in closed.values():
            if not trade.held and trade is not target and self.realized(trade) < 0:
                self.closed_at_loss.setdefault((trade.underlying, day), []).append(trade.trade_id)
        if not opening:
            return
        continued = target is not None
        if target is not None:
            target.rolls += 1
        else:
            target = self._covered(opening)
            if target is None:
                target = self._continued(str(root), day)
                continued = target is not None
        if target is None:
            target = self._new(opening[0][0], detect(opening))
            target.opening_credit = sum(_float(r["value"]) for r, _ in opening)
            target.opening_options_only = all(r.get("instrument_type") in OPTION_TYPES for r, _ in opening)
            target.expiration = _nearest_expiration(opening)
        for row, quantity in opening:
            self._open(target, row["symbol"], quantity, _float(row["value"]))
            if quantity < 0 and row.get("instrument_type") in OPTION_TYPES:
                target.premium_sold += _float(row["value"])
            self._book(target, row, 1.0, "roll" if continued else "open", quantity)

    def _covered(self, opening: list[tuple[dict[str, Any], float]]) -> Trade | None:
        """A trade holding long stock that this order sells calls against (and no call yet)."""
        calls = [(r, q) for r, q in opening if q < 0 and _option_type(r) == "C"]
        if not calls or len(calls) != len(opening):
            return None
        root = str(opening[0][0]["root_symbol"])
        for trade in self.trades.values():
            stock = sum(q for s, q in trade.held.items() if s == root)
            short_calls = [s for s, q in trade.held.items() if q < 0 and _option_type({"symbol": s}) == "C"]
            if trade.underlying == root and stock > 0 and not short_calls:
                if trade.strategy == "stock":
                    trade.strategy = "covered_call"
                return trade
        return None

    def _continued(self, root: str, day: date) -> Trade | None:
        """A trade on ``root`` closed at a loss earlier this session (rule 3's roll in two orders)."""
        waiting = self.closed_at_loss.get((root, day), [])
        if not waiting:
            return None
        trade = self.trades[waiting.pop(0)]
        trade.rolls += 1
        return trade

    def delivery(self, rows: list[dict[str, Any]]) -> None:
        """Receive Deliver rows of one instant and underlying: removals first, then what they deliver."""
        self.event += 1
        removals = [r for r in rows if not r.get("action")]
        deliveries = [r for r in rows if r.get("action")]
        assigned: str | None = None
        for row in removals:
            held = self._open_quantity(row["symbol"])
            if not held:
                self.orphans += 1
                continue
            quantity = -held / abs(held) * _float(row.get("quantity"))
            role = REMOVALS.get(str(row["transaction_sub_type"]), "close")
            for trade in self._book_closing(row, self._close(row["symbol"], quantity), role, quantity):
                if role in ("assignment", "exercise"):
                    trade.assigned = True
                    assigned = assigned or trade.trade_id
        # A spread settled in shares (its short leg assigned, its long leg exercised) delivers and
        # takes back the same shares at one instant: they never stay, and the intrinsic value they
        # carry is the spread's loss, booked on it rather than on a stock trade of no time.
        delivered: dict[str, float] = {}
        for row in deliveries:
            delivered[row["symbol"]] = delivered.get(row["symbol"], 0.0) + _float(row.get("quantity")) * (_sign(row.get("action")) or 0)
        offsetting = {symbol for symbol, net in delivered.items() if abs(net) < 1e-9} if assigned else set()
        for row in deliveries:
            quantity = _float(row.get("quantity")) * (_sign(row.get("action")) or 0)
            if row["symbol"] in offsetting:
                self._book(self.trades[assigned], row, 1.0, "delivery", quantity)
                continue
            held = self._open_quantity(row["symbol"])
            if held and (held > 0) != (quantity > 0):
                self._book_closing(row, self._close(row["symbol"], quantity, prefer=assigned), "delivery", quantity)
            else:
                kind = "stock" if row.get("instrument_type") == "Equity" else "future"
                trade = self._new(row, kind, assigned)
                trade.opening_credit = _float(row["value"])
                trade.opening_options_only = False
                self._open(trade, row["symbol"], quantity, _float(row["value"]))
                self._book(trade, row, 1.0, "delivery", quantity)

    def cash(self, row: dict[str, Any]) -> None:
        """A money movement: a dividend or settlement to the trade holding its symbol; transfers to none."""
        if row["transaction_sub_type"] in TRANSFERS or not row.get("symbol"):
            return
        holders = [lot for lot in self.lots.get(row["symbol"], ()) if lot.quantity]
        if not holders:
            return
        trade = self.trades[max(holders, key=lambda lot: abs(lot.quantity)).trade]
        role = {"Dividend": "dividend", "Mark to Market": "settlement"}.get(str(row["transaction_sub_type"]), "cash")
        self._book(trade, row, 1.0, role, None)

    # -- results --------------------------------------------------------------------------------

    def realized(self, trade: Trade) -> float:
        """Net value so far plus the cost of the trade's lots still open (module docstring)."""
        open_cost = sum(lot.cost_per_unit * lot.quantity for lots in self.lots.values() for lot in lots
                        if lot.trade == trade.trade_id)
        return trade.net + open_cost


def _option_type(row: dict[str, Any]) -> str | None:
    parsed = parse_option_symbol(str(row.get("symbol") or ""), row.get("instrument_type"))
    return parsed.option_type if parsed else None


def _nearest_expiration(opening: Iterable[tuple[dict[str, Any], float]]) -> date | None:
    found = [p.expiration_date for r, _ in opening if (p := parse_option_symbol(str(r["symbol"]), r.get("instrument_type")))]
    return min(found) if found else None


def detect(legs: list[tuple[dict[str, Any], float]]) -> str:
    """The strategy of an opening order's legs (signed quantities); ``other`` when unsure."""
    options, stock, futures = [], 0.0, 0.0
    for row, quantity in legs:
        kind = row.get("instrument_type")
        if kind in OPTION_TYPES:
            parsed = parse_option_symbol(str(row["symbol"]), kind)
            if parsed is None:
                return "other"
            options.append((parsed.option_type, quantity, parsed.strike, parsed.expiration_date))
        elif kind == "Equity":
            stock += quantity
        elif kind == "Future":
            futures += quantity
    if not options:
        return "stock" if stock and not futures else "future" if futures and not stock else "other"
    if stock:
        return "covered_call" if stock > 0 and all(t == "C" and q < 0 for t, q, _, _ in options) else "other"
    puts = [o for o in options if o[0] == "P"]
    calls = [o for o in options if o[0] == "C"]
    expirations = {o[3] for o in options}
    if len(options) == 1:
        kind, quantity = options[0][0], options[0][1]
        return "long_option" if quantity > 0 else "short_put" if kind == "P" else "short_call"
    if len(options) == 2 and len(expirations) == 1:
        (t1, q1, k1, _), (t2, q2, k2, _) = options
        if t1 != t2 and q1 < 0 and q2 < 0:
            return "straddle" if k1 == k2 else "strangle"
        if t1 == t2 and (q1 > 0) != (q2 > 0):
            return "vertical" if abs(q1) == abs(q2) else "ratio"
        return "other"
    if len(options) == 2:
        (t1, q1, k1, _), (t2, q2, k2, _) = options
        return "calendar" if t1 == t2 and (q1 > 0) != (q2 > 0) else "other"
    if len(options) == 4 and len(expirations) == 1 and len(puts) == 2 and len(calls) == 2:
        short_put = next((p for p in puts if p[1] < 0), None)
        long_put = next((p for p in puts if p[1] > 0), None)
        short_call = next((c for c in calls if c[1] < 0), None)
        long_call = next((c for c in calls if c[1] > 0), None)
        if short_put and long_put and short_call and long_call and long_put[2] < short_put[2] <= short_call[2] < long_call[2]:
            return "iron_condor"
    return "other"


@dataclass(frozen=True)
class JournalResult:
    trades: pd.DataFrame
    trade_transactions: pd.DataFrame
    orphans: int


def _events(rows: list[dict[str, Any]]) -> Iterable[tuple[str, list[dict[str, Any]]]]:
    """Orders, delivery groups (one instant and underlying) and cash rows, in execution order."""
    orders: dict[int, list[dict[str, Any]]] = {}
    deliveries: dict[tuple[datetime, str], list[dict[str, Any]]] = {}
    events: list[tuple[tuple, str, list[dict[str, Any]]]] = []
    for row in rows:
        key = (row["executed_at"], int(row["id"]))
        kind = row["transaction_type"]
        if kind == "Trade" and row.get("order_id") is not None and row["order_id"] == row["order_id"]:
            group = orders.setdefault(int(row["order_id"]), [])
            if not group:
                events.append((key, "order", group))
            group.append(row)
        elif kind == "Trade" and row.get("symbol"):
            events.append((key, "order", [row]))
        elif kind == "Receive Deliver" and row.get("symbol"):
            group = deliveries.setdefault((row["executed_at"], str(row.get("root_symbol"))), [])
            if not group:
                events.append((key, "delivery", group))
            group.append(row)
        else:
            events.append((key, "cash", [row]))
    for _, kind, group in sorted(events, key=lambda e: e[0]):
        yield kind, group


def build_journal(transactions: pd.DataFrame, as_of_date: date, position_pnl: pd.DataFrame | None = None) -> JournalResult:
    """Every trade of every account in ``transactions`` (deduplicated by ``id``) as of ``as_of_date``."""
    frame = transactions.drop_duplicates("id", keep="last").sort_values(["executed_at", "id"])
    frame = frame.astype(object).where(frame.notna(), None)
    trades: list[dict[str, Any]] = []
    legs: list[dict[str, Any]] = []
    orphans = 0
    unrealized = _unrealized_by_leg(position_pnl)
    for account, rows in frame.groupby("account_number", sort=True):
        journal = Journal(str(account))
        for kind, group in _events(rows.to_dict("records")):
            if kind == "order":
                journal.order(group)
            elif kind == "delivery":
                journal.delivery(group)
            else:
                journal.cash(group[0])
        orphans += journal.orphans
        legs += journal.legs
        for trade in journal.trades.values():
            trades.append(_trade_row(journal, trade, as_of_date, unrealized))
    return JournalResult(pd.DataFrame(trades), pd.DataFrame(legs).assign(as_of_date=as_of_date) if legs else
                         pd.DataFrame(columns=["id", "account_number", "trade_id", "role", "signed_quantity", "as_of_date"]),
                         orphans)


def _unrealized_by_leg(position_pnl: pd.DataFrame | None) -> dict[tuple[str, str], tuple[float, float]]:
    if position_pnl is None or position_pnl.empty:
        return {}
    return {(str(r.account_number), str(r.symbol)): (_float(r.unrealized_pnl), _float(r.quantity))
            for r in position_pnl.itertuples() if r.unrealized_pnl == r.unrealized_pnl and r.unrealized_pnl is not None}


def _trade_row(journal: Journal, trade: Trade, as_of_date: date, unrealized: dict) -> dict[str, Any]:
    closed = not trade.held
    opened_on = trade.opened_at.astimezone(NEW_YORK).date()
    closed_on = trade.closed_at.astimezone(NEW_YORK).date() if closed and trade.closed_at else None
    realized = trade.net if closed else journal.realized(trade)
    credit_trade = trade.opening_options_only and trade.opening_credit > 0
    collected = trade.option_value - (trade.closing_option_value if closed else 0.0)  # before the final close
    max_profit = collected if credit_trade and collected > 0 else None
    outcome = None
    if closed:
        premium = trade.opening_credit if trade.opening_options_only else trade.premium_sold
        scratch = max(SCRATCH_DOLLARS, SCRATCH_SHARE * abs(premium))
        outcome = "scratch" if abs(realized) <= scratch else "win" if realized > 0 else "loss"
    open_unrealized = None
    if not closed and unrealized:
        parts = [unrealized[(trade.account, s)][0] * q / unrealized[(trade.account, s)][1]
                 for s, q in trade.held.items() if (trade.account, s) in unrealized and unrealized[(trade.account, s)][1]]
        open_unrealized = sum(parts) if parts else None
    return {
        "trade_id": trade.trade_id, "as_of_date": as_of_date, "account_number": trade.account,
        "underlying_symbol": trade.underlying, "strategy": trade.strategy, "status": "closed" if closed else "open",
        "opened_at": trade.opened_at, "opened_on": opened_on,
        "closed_at": trade.closed_at if closed else None, "closed_date": closed_on,
        "days_held": ((closed_on or as_of_date) - opened_on).days,
        "legs": len(trade.symbols) or 1, "open_legs": len(trade.held), "orders": len(trade.orders),
        "rolls": trade.rolls, "opening_credit": trade.opening_credit,
        "closing_cost": -trade.closing_value if closed else None,
        "premium_sold": trade.premium_sold, "fees": trade.value - trade.net, "realized_pnl": realized,
        "unrealized_pnl": open_unrealized, "max_profit": max_profit,
        "pct_of_max_profit_captured": realized / max_profit if closed and max_profit else None,
        "outcome": outcome, "assigned": trade.assigned, "parent_trade_id": trade.parent,
        "expiration_date": trade.expiration,
        "dte_at_entry": (trade.expiration - opened_on).days if trade.expiration else None,
    }
