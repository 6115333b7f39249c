"""A premium seller's trading engine: it trades the simulated market and writes the ledger.

The accounts' holdings are not written down: a deterministic engine trades the synthetic market
session by session from ``START`` (mid 2024) to the calendar's last session, and every evening's
book is the sum of the ledger rows executed up to that instant (``ledger.py``). The start is fixed
(not relative to the clock), so the book of any evening is a prefix of one history: stepping the
clock forward only adds rows. Run once per seed (about a second) and cached.

The trader's routine each session: early-exercise notices and dividends in the morning; the
orders decided at last evening's review fill ten minutes before the close at that session's marks
(``quotes.value``: the mid); expirations, assignments and futures settlements at the close; then
the evening review (at the closing marks) decides tomorrow's orders. So tonight's book shows the
groups that hit a management rule today, to be handled tomorrow.

Rules of the margin account ``5WT00001`` (deposit $400,000):

* Entries on monthly expirations nearest 45 DTE (30-65), strikes by delta from the simulator's own
  option model (skew included): SPY and IWM short strangles (16 delta; 2 and 3 contracts), QQQ
  iron condors (20-delta shorts, wings $10 out, 3), a /MES future-option strangle (16 delta, 3), a
  /ZN short put (20 delta, 2), a short put on each of MSFT, NVDA, AMZN, TSLA (28 delta, 1). Every
  sleeve keeps one group open (replaced the day it closes, or three days before it expires, so the
  set of names the book holds does not flicker); IV-rank filter: a second, laddered group (another
  expiration, ten sessions later at the earliest) opens only at an IV rank of 0.30 or more (SPY:
  any; stocks: 0.50) and with buying-power usage under 50 %.
* Management at the evening review: close at 50 % of the maximum profit (the credit received);
  close at 21 DTE; a strangle whose short strike is tested (in the money or |delta| >= 0.40) with
  more than 21 DTE has its untested side rolled to 30 delta (twice at most, never inverted); a
  tested undefined-risk group at 21 DTE is rolled out a month at the same strikes once, when that
  earns a credit, else closed; a stock put more than 3 % in the money at 21 DTE is held to take
  assignment. Assigned shares are wheeled: covered calls at 30 delta, never below the cost basis,
  rolled to the next month the day before they expire out of the money, else called away.
* Core holdings: 100 AAPL from a put assigned at the start (sold before ``START``, its strike
  above the price at expiration: seeded), wheeled with covered calls that are rolled up and out
  rather than assigned (also before an ex-date that would get them exercised): the book's covered
  call from an assignment; a TLT buy-write (100 shares, a deep in-the-money call expiring after the
  next monthly ex-dividend date) that the call's holder exercises early the evening before each
  ex-date, re-established the same session and rolled deeper when its extrinsic value nears the
  dividend; one long /ES future (the book's core index exposure), rolled into the next quarter a
  week before expiry; a ladder of SPY credit spreads ($5 wide, 10-delta short strikes, two
  contracts) held to expiration: a put spread expiring on a Monday or Friday and a call spread on
  a Wednesday 6-13 days out, a new one whenever the newest has under 6 days left.

Seeding (documented guarantees; positions are still the sum of the ledger): so that every
evening's book shows each case a trader must manage, (a) of the groups due to close as winners, the
one with the latest expiration and the two with the highest profit are kept as "runners" until
other winners replace them or they expire, and when no winner would last another week a 16-delta
SPY put spread of the ladder's kind is sold (it becomes one within days); the ladder's spreads
themselves are usually winners; (b) when tomorrow's book would hold no group at 21 DTE or less,
such a put spread is sold and held to expiration (the ladder always holds one anyway); (d) when
tomorrow's book would hold no stock option expiring after its underlying's next earnings report, a
20-delta put is sold on the stock reporting soonest, expiring on the first monthly after the
report, and held through it; (c) a tested group and (e) a short call at early-assignment risk come
with the TLT buy-write's in-the-money call (and often from the strangles and the wheel). Measured
over every evening from January 2025 to October 2027 (seed 42): each case on every one; other
seeds miss a case on an evening or two after a violent move, or near the calendar's end (no
ex-date left to write a call against).

The Roth IRA ``5WT00002`` (cash; deposit $150,000) holds 100 SPY with a 20-delta covered call
(rolled up and out rather than assigned), 50 NVDA, and an IWM cash-secured put (25 delta, held to
expiration, a new one whenever none is open and the cash secures it; assigned shares are wheeled
with covered calls until called away).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

from variance_pipeline.simulator import contracts, dates, options
from variance_pipeline.simulator.contracts import Contract
from variance_pipeline.simulator.ledger import Fill, Ledger, trade_fees
from variance_pipeline.simulator.margin import Leg, account_groups
from variance_pipeline.simulator.market import (
    TRADING_DAYS,
    dividend_amount,
    lookup,
    next_ex_dividend,
    series,
    sessions,
    traded_closes,
)
from variance_pipeline.simulator.metrics import report_dates
from variance_pipeline.simulator.quotes import Value, value
from variance_pipeline.simulator.volsurface import atm_vol, implied_vol

MARGIN = "5WT00001"
IRA = "5WT00002"
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


class Engine:
    """Runs the rules over the sessions; ``ledger`` is the result (see the module docstring)."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.cal = sessions()
        self.ledger = Ledger()
        self.groups: dict[str, Group] = {}
        self.pending: list[Order] = []
        self.settle: dict[tuple[str, str], float] = {}
        self.cash = {MARGIN: 0.0, IRA: 0.0}
        self._fill_id = FIRST_FILL_ID
        self._order_id = FIRST_ORDER_ID
        self._serial = 0
        self._memo: dict[tuple[str, int, datetime | None], Value] = {}

    # --- market access ---------------------------------------------------------------------

    def day(self, i: int) -> date:
        return self.cal.days[i].astype(object)

    def close_at(self, i: int) -> datetime:
        return datetime.fromtimestamp(int(self.cal.close_ts[i]), timezone.utc)

    def open_at(self, i: int) -> datetime:
        return datetime.fromtimestamp(int(self.cal.open_ts[i]), timezone.utc)

    def spot(self, root: str, i: int) -> float:
        return float(traded_closes(self.seed, root)[i])

    def value(self, contract: Contract, i: int, at: datetime | None = None) -> Value:
        key = (contract.symbol, i, at)
        if key not in self._memo:
            if len(self._memo) > 4096:
                self._memo.clear()
            self._memo[key] = value(self.seed, contract, self.spot(contract.root, i), i, at or self.close_at(i))
        return self._memo[key]

    def iv_rank(self, root: str, i: int) -> float:
        iv = series(self.seed, root).iv[max(0, i - TRADING_DAYS + 1) : i + 1]
        low, high = float(iv.min()), float(iv.max())
        return 0.0 if high <= low else (float(iv[-1]) - low) / (high - low)

    # --- ledger writing ------------------------------------------------------------------------

    def _row(self, **fields: object) -> Fill:
        fill = Fill(id=self._fill_id, **fields)  # type: ignore[arg-type]
        self._fill_id += 1
        self.ledger.add(fill)
        self.cash[fill.account] += fill.net_value
        return fill

    def _new_group(self, account: str, root: str, strategy: str, i: int, **extra: object) -> Group:
        self._serial += 1
        group = Group(f"{account}-{self._serial:05d}", account, root, strategy, i, **extra)  # type: ignore[arg-type]
        self.groups[group.id] = group
        return group

    def trade(self, i: int, group: Group, legs: list[tuple[Contract, int]], at: datetime | None = None) -> float:
        """One order of ``legs`` (signed quantities) at the marks; returns its premium (dollars)."""
        at = at or self.close_at(i) - FILL_LEAD
        order_id = self._order_id
        self._order_id += 1
        net = 0.0
        for contract, quantity in legs:
            if quantity == 0:
                continue
            mark = self.value(contract, i, at).mark
            held = group.quantity.get(contract.symbol, 0)
            opening = held == 0 or (held > 0) == (quantity > 0)
            action = ("Buy" if quantity > 0 else "Sell") + (" to Open" if opening else " to Close")
            key = (group.account, contract.symbol)
            if contract.instrument_type == "Future":
                cash = 0.0 if opening else (mark - self.settle[key]) * -quantity * contract.multiplier
                self.settle[key] = mark
            else:
                cash = -quantity * mark * contract.multiplier
            commission, clearing, regulatory = trade_fees(contract, quantity, opening)
            self._row(account=group.account, executed_at=at, transaction_type="Trade", sub_type=action,
                      description=f"{action} {abs(quantity)} {contract.symbol} @ {mark:g}", contract=contract,
                      quantity=quantity, price=mark, value=round(cash, 2), commission=commission,
                      clearing_fees=clearing, regulatory_fees=regulatory, order_id=order_id, action=action,
                      group=group.id)
            self._hold(group, contract, quantity)
            if contract.is_option:
                net += cash
        group.credit += net
        self._prune(group)
        return net

    def _hold(self, group: Group, contract: Contract, quantity: int) -> None:
        group.legs[contract.symbol] = contract
        group.quantity[contract.symbol] = group.quantity.get(contract.symbol, 0) + quantity
        if group.quantity[contract.symbol] == 0:
            del group.quantity[contract.symbol]
            del group.legs[contract.symbol]

    def _prune(self, group: Group) -> None:
        """A group whose every leg is gone is closed (called once an order or event is complete)."""
        if not group.quantity:
            self.groups.pop(group.id, None)

    def deliver(self, i: int, group: Group, option: Contract, at: datetime, early: bool = False) -> None:
        """Assignment (short) or exercise (long) of ``option``: the option leaves, the deliverable
        comes in at the strike (stock: $5 a contract in fees)."""
        quantity = group.quantity[option.symbol]
        sub_type = "Assignment" if quantity < 0 else "Exercise"
        strike = float(option.strike or 0.0)
        self._row(account=group.account, executed_at=at, transaction_type="Receive Deliver", sub_type=sub_type,
                  description=f"Removal of option due to {sub_type.lower()}", contract=option,
                  quantity=-quantity, price=0.0, value=0.0, group=group.id)
        self._hold(group, option, -quantity)
        receive = quantity if option.call else -quantity  # long call / short put: receive
        if option.instrument_type == "Future Option":
            deliverable = contracts.parse(option.underlying_symbol, "Future")
            assert deliverable is not None
            self.settle[(group.account, deliverable.symbol)] = strike
            size, cash, fee = receive, 0.0, 0.0
        else:
            deliverable = contracts.equity(option.root)
            size, cash, fee = receive * 100, -receive * 100 * strike, 5.0 * abs(quantity)
        if group.strategy in ("short_put", "earnings_put") and deliverable.instrument_type == "Equity" and size > 0:
            group.strategy = "wheel"  # an assigned stock put: the shares are wheeled
        held = group.quantity.get(deliverable.symbol, 0)
        opening = held == 0 or (held > 0) == (size > 0)
        action = ("Buy" if size > 0 else "Sell") + (" to Open" if opening else " to Close")
        self._row(account=group.account, executed_at=at, transaction_type="Receive Deliver", sub_type=action,
                  description=f"{'Early ' if early else ''}{sub_type.lower()} of {option.symbol}",
                  contract=deliverable, quantity=size, price=strike, value=round(cash, 2), clearing_fees=fee,
                  action=action, group=group.id)
        self._hold(group, deliverable, size)
        self._prune(group)

    # --- one session -----------------------------------------------------------------------------

    def run(self, first: int, last: int) -> None:
        self.seed_start(first)
        for i in range(first, last + 1):
            self.morning(i)
            self.execute(i)
            self.closing(i)
            if i < last:
                self.review(i)

    def seed_start(self, first: int) -> None:
        """Deposits and the AAPL put sold before ``START`` and assigned at June's expiration (in
        the money by construction: seeding), then the IRA's shares on the first session."""
        start = self.day(first)
        year, month = dates.add_months(start.year, start.month, -1)
        expiry = dates.monthly_expiration(year, month)
        expiry_index = self.cal.index_on_or_after(expiry)
        sold = expiry_index - 25
        for account, amount in DEPOSITS.items():
            self._row(account=account, executed_at=self.open_at(sold) - timedelta(hours=3),
                      transaction_type="Money Movement", sub_type="Deposit", description="ACH deposit",
                      contract=None, quantity=0, price=0.0, value=amount)
        strike = math.ceil(self.spot("AAPL", expiry_index) * 1.03 / 5.0) * 5.0
        put = contracts.equity_option("AAPL", expiry, "P", strike)
        wheel = self._new_group(MARGIN, "AAPL", "wheel", sold, core=True)
        self.trade(sold, wheel, [(put, -1)])
        self.deliver(expiry_index, wheel, put, self.close_at(expiry_index))
        self.pending = [
            Order("buy_shares", account=IRA, root="SPY", detail=100),
            Order("buy_shares", account=IRA, root="NVDA", detail=50),
            Order("buy_write"),
            Order("future_hedge"),
        ]

    def _do_buy_shares(self, i: int, order: Order, group: Group | None) -> None:
        root, account = order.root or "SPY", order.account or IRA
        strategy, core = ("wheel", True) if root == "SPY" else ("shares", False)
        new = self._new_group(account, root, strategy, i, core=core)
        self.trade(i, new, [(contracts.equity(root), int(order.detail or 100))])

    def morning(self, i: int) -> None:
        """Early exercise the evening before an ex-date (notices arrive before the open), then the
        dividends of the shares held at the open of the ex-date."""
        today_dividend: dict[str, float] = {}
        for group in list(self.groups.values()):
            for option in [c for c in group.options() if c.call and group.quantity[c.symbol] < 0]:
                amount = today_dividend.setdefault(option.root, dividend_amount(self.seed, option.root, i))
                if amount <= 0 or option.instrument_type != "Equity Option" or (option.expiration or date.max) < self.day(i):
                    continue
                eve = self.value(option, i - 1)
                if eve.intrinsic > 0 and eve.extrinsic < amount:
                    self.deliver(i, group, option, self.open_at(i) - NOTICE_LEAD, early=True)
        held: dict[tuple[str, str], int] = {}
        for group in self.groups.values():
            for symbol, quantity in group.quantity.items():
                if group.legs[symbol].instrument_type == "Equity":
                    held[(group.account, symbol)] = held.get((group.account, symbol), 0) + quantity
        for (account, symbol), shares in sorted(held.items()):
            amount = dividend_amount(self.seed, symbol, i)
            if shares and amount > 0:
                self._row(account=account, executed_at=self.open_at(i), transaction_type="Money Movement",
                          sub_type="Dividend", description=f"{symbol} dividend {amount:g} x {shares}",
                          contract=None, quantity=0, price=amount, value=round(amount * shares, 2))

    def closing(self, i: int) -> None:
        """Expirations and assignments of the day's options, then futures settlements."""
        today, at = self.day(i), self.close_at(i)
        for group in list(self.groups.values()):
            for option in group.options():
                if option.expiration != today:
                    continue
                quote = self.value(option, i, at)
                if quote.intrinsic >= 0.01:
                    self.deliver(i, group, option, at)
                else:
                    quantity = group.quantity[option.symbol]
                    self._row(account=group.account, executed_at=at, transaction_type="Receive Deliver",
                              sub_type="Expiration", description="Removal of option due to expiration",
                              contract=option, quantity=-quantity, price=0.0, value=0.0, group=group.id)
                    self._hold(group, option, -quantity)
                    self._prune(group)
        for group in list(self.groups.values()):
            for symbol, quantity in list(group.quantity.items()):
                contract = group.legs[symbol]
                if contract.instrument_type != "Future":
                    continue
                key = (group.account, symbol)
                close = self.value(contract, i, at).mark
                change = (close - self.settle[key]) * quantity * contract.multiplier
                self.settle[key] = close
                if change:
                    self._row(account=group.account, executed_at=at, transaction_type="Money Movement",
                              sub_type="Mark to Market", description=f"{symbol} daily settlement at {close:g}",
                              contract=None, quantity=0, price=close, value=round(change, 2), group=group.id)

    # --- the evening review ------------------------------------------------------------------------

    def profit(self, group: Group, i: int) -> float | None:
        """Share of the maximum profit (the credit) a premium group has made, at the close."""
        if group.strategy not in PREMIUM or group.credit <= 0:
            return None
        cost = sum(-group.quantity[c.symbol] * self.value(c, i).mark * c.multiplier for c in group.options())
        return (group.credit - cost) / group.credit

    def tested(self, group: Group, i: int) -> list[Contract]:
        found = []
        for option in group.options():
            if group.quantity[option.symbol] >= 0:
                continue
            quote = self.value(option, i)
            if quote.intrinsic > 0 or abs(quote.greeks.delta) >= TESTED_DELTA:
                found.append(option)
        return found

    def review(self, i: int) -> None:
        orders: list[Order] = []
        today = self.day(i)
        winners: list[tuple[Group, float]] = []
        closing: set[str] = set()
        for group in list(self.groups.values()):
            orders += self._manage(group, i, today, winners, closing)
        if winners:
            latest = max(winners, key=lambda gw: (gw[0].expiration() or date.min, gw[1]))[0]
            richest = sorted(winners, key=lambda gw: -gw[1])[:2]
            runners = {latest.id, *(g.id for g, _ in richest)}
            orders = [o for o in orders if not (o.kind == "close" and o.group in runners and o.detail == "winner")]
            closing -= runners
        orders += self._entries(i, closing)
        orders += self._coverage(i, closing, orders)
        self.pending = orders

    def _manage(self, group: Group, i: int, today: date, winners: list, closing: set[str]) -> list[Order]:
        strategy = group.strategy
        if strategy in ("wheel", "buy_write", "shares", "future_hedge"):
            return self._manage_holding(group, i, today)
        if group.shares() or any(c.instrument_type == "Future" for c in group.legs.values()):
            closing.add(group.id)
            return [Order("flatten", group.id)]  # stock or futures delivered to an option strategy
        expiration = group.expiration()
        if expiration is None:
            return []
        dte = (expiration - today).days
        profit = self.profit(group, i)
        tested = self.tested(group, i)
        if group.hold:
            return []
        if group.report is not None and group.report >= today:
            return []
        if profit is not None and profit >= PROFIT_TARGET:
            if group.rolls == 0:
                winners.append((group, profit))
            closing.add(group.id)
            return [Order("close", group.id, detail="winner")]
        if (strategy == "strangle" and tested and dte > MANAGE_DTE and group.rolls < 2 and len(group.options()) == 2
                and i - group.rolled >= 5):
            return [Order("roll_untested", group.id, detail=tested[0].right)]
        if dte > MANAGE_DTE:
            return []
        if strategy in ("short_put", "earnings_put") and group.root in EARNINGS_NAMES:
            put = group.options()[0]
            if self.spot(group.root, i) < 0.97 * float(put.strike or 0.0):
                group.hold = True
                return []
        closing.add(group.id)
        if tested and strategy != "iron_condor" and group.outs == 0:
            return [Order("roll_out", group.id)]
        return [Order("close", group.id, detail="dte")]

    def _manage_holding(self, group: Group, i: int, today: date) -> list[Order]:
        if group.strategy == "future_hedge":
            future = next(iter(group.legs.values()))
            return [Order("roll_future", group.id)] if (future.expiration - today).days <= 7 else []  # type: ignore[operator]
        if group.strategy == "shares":
            return []
        calls = [c for c in group.options() if c.call and group.quantity[c.symbol] < 0]
        if group.strategy == "buy_write":
            if not calls or group.shares() < 100:
                return [Order("buy_write", group.id)]
            quote = self.value(calls[0], i)
            ex = next_ex_dividend(self.seed, group.root, i)
            amount = self._dividend_estimate(group.root, i)
            if quote.extrinsic >= 0.6 * amount or ex is None or self.day(ex) >= (calls[0].expiration or date.min):
                return [Order("buy_write", group.id)]
            return []
        if group.shares() < 100:
            return [Order("flatten", group.id)] if group.shares() and not group.options() else []
        if not calls:
            return [Order("covered_call", group.id)]
        call = calls[0]
        tomorrow = self.day(min(i + 1, len(self.cal.days) - 1))
        if call.expiration == tomorrow and self.value(call, i).intrinsic == 0:
            return [Order("covered_call", group.id)]  # rolled the day before it expires: always covered
        if group.core:
            quote = self.value(call, i)
            dte = (call.expiration - today).days  # type: ignore[operator]
            ex = next_ex_dividend(self.seed, group.root, i)
            soon = ex is not None and i + 1 <= ex <= i + 2  # rolled tomorrow, before the eve of the ex-date
            at_risk = soon and quote.intrinsic > 0 and quote.extrinsic < 1.5 * self._dividend_estimate(group.root, i)
            if ((quote.intrinsic > 0 or abs(quote.greeks.delta) >= 0.35) and dte <= 7) or at_risk:
                return [Order("roll_call", group.id)]
        return []

    def _dividend_estimate(self, root: str, i: int) -> float:
        inst = lookup(root, self.seed)
        if inst is None or not inst.dividend_yield:
            return 0.0
        return inst.dividend_yield / max(1, len(inst.dividend_months)) * self.spot(root, i)

    def _open_groups(self, predicate) -> list[Group]:  # type: ignore[no-untyped-def]
        return [g for g in self.groups.values() if predicate(g)]

    def _entries(self, i: int, closing: set[str]) -> list[Order]:
        orders: list[Order] = []
        usage = self.buying_power_usage(MARGIN, i)
        today = self.day(i)
        for sleeve in SLEEVES:  # a group about to expire is replaced before it goes: the name stays held
            mine = self._open_groups(lambda g: g.sleeve == sleeve and g.id not in closing
                                     and ((g.expiration() or date.max) - today).days > 3)
            if not mine:
                orders.append(Order("open", sleeve=sleeve))
            elif (len(mine) < sleeve.ladder and self.iv_rank(sleeve.root, i) >= sleeve.ladder_rank and usage < BP_CAP
                  and all(i - g.opened >= 10 for g in mine)):
                orders.append(Order("open", sleeve=sleeve, detail=[g.expiration() for g in mine]))
        tomorrow = self.day(min(i + 1, len(self.cal.days) - 1))
        for right in ("P", "C"):
            ladder = [g for g in self.groups.values() if g.strategy == WEEKLY[right]
                      and ((g.expiration() or date.min) - tomorrow).days >= 6]
            if not ladder:
                orders.append(Order("weekly_put", root=WEEKLY_ROOT, detail=(right, 0.10)))
        ira = self._open_groups(lambda g: g.account == IRA and any(
            not c.call and g.quantity[c.symbol] < 0 for c in g.options()))
        if not ira:
            orders.append(Order("cash_secured_put", root="IWM", account=IRA))
        return orders

    def _coverage(self, i: int, closing: set[str], orders: list[Order]) -> list[Order]:
        """The seeding rules (b) and (d) of the module docstring, judged on tomorrow's book."""
        if i + 1 >= len(self.cal.days):
            return []
        tomorrow = self.day(i + 1)
        staying = [g for g in self.groups.values() if g.account == MARGIN and g.id not in closing]
        added: list[Order] = []
        exercised = next_ex_dividend(self.seed, "TLT", i) == i + 1  # the buy-write's call goes tomorrow morning
        short_dated = [g for g in staying if (e := g.expiration()) and tomorrow < e <= tomorrow + timedelta(days=MANAGE_DTE)
                       and not (exercised and g.strategy == "buy_write")]
        week = self.day(i) + timedelta(days=7)
        lasting = [g for g in staying if (p := self.profit(g, i)) is not None and p >= PROFIT_TARGET
                   and (g.expiration() or date.min) > week]
        fresh = any(g.strategy in WEEKLY.values() and i - g.opened < 3 for g in staying)
        if (not short_dated or (not lasting and not fresh)) and not any(o.kind == "weekly_put" for o in orders):
            added.append(Order("weekly_put", root=WEEKLY_ROOT, detail=("P", 0.16)))
        spanning = False
        for group in staying:
            expiration = group.expiration()
            if expiration is None or group.root not in EARNINGS_NAMES:
                continue
            report = self.next_report(group.root, tomorrow)
            if report is not None and report < expiration:
                spanning = True
                break
        if not spanning:
            added.append(Order("earnings_put"))
        return added

    def next_report(self, root: str, after: date) -> date | None:
        inst = lookup(root, self.seed)
        if inst is None or not inst.has_earnings:
            return None
        found = [d for d in report_dates(inst.earnings_months, inst.earnings_day, range(after.year, after.year + 2)) if d > after]
        return found[0] if found else None

    def buying_power_usage(self, account: str, i: int) -> float:
        legs = []
        for group in self.groups.values():
            if group.account != account:
                continue
            for symbol, quantity in group.quantity.items():
                contract = group.legs[symbol]
                legs.append(Leg(contract, quantity, self.value(contract, i), 0.0))
        requirement = sum(g.requirement for g in account_groups(legs, account == IRA))
        liquidation = sum(
            leg.quantity * leg.value.mark * leg.contract.multiplier
            for leg in legs if leg.contract.instrument_type != "Future"
        )
        net_liq = self.cash[account] + liquidation
        return requirement / net_liq if net_liq > 0 else 1.0

    # --- executing tomorrow's orders -------------------------------------------------------------

    def execute(self, i: int) -> None:
        for order in self.pending:
            handler = getattr(self, f"_do_{order.kind}")
            group = self.groups.get(order.group) if order.group else None
            if order.group and group is None:
                continue  # gone since the review (expired, assigned)
            handler(i, order, group)
        self.pending = []
        for group in list(self.groups.values()):  # re-establish what this morning's notices took
            if group.strategy == "buy_write" and (group.shares() < 100 or not group.options()):
                self._do_buy_write(i, Order("buy_write", group.id), group)
        if not any(g.strategy == "buy_write" for g in self.groups.values()):
            self._do_buy_write(i, Order("buy_write"), None)

    def expirations(self, root: str, i: int, lo: int = MIN_DTE, hi: int = MAX_DTE, target: int = TARGET_DTE) -> date | None:
        """The monthly expiration (of ``root``'s options) nearest ``target`` DTE within [lo, hi]."""
        today = self.day(i)
        found = []
        for k in range(0, 5):
            year, month = dates.add_months(today.year, today.month, k)
            if root.startswith("/"):
                expiry = contracts.future_option_expiration(root, year, month)
            else:
                expiry = dates.monthly_expiration(year, month)
            if lo <= (expiry - today).days <= hi:
                found.append(expiry)
        return min(found, key=lambda e: abs((e - today).days - target)) if found else None

    def option(self, root: str, expiry: date, right: str, strike: float) -> Contract:
        if root.startswith("/"):
            for k in range(-1, 4):
                year, month = dates.add_months(expiry.year, expiry.month, k)
                if contracts.future_option_expiration(root, year, month) == expiry:
                    return contracts.future_option(root, year, month, right, strike)
            raise ValueError(f"no {root} option month expires on {expiry}")
        return contracts.equity_option(root, expiry, right, strike)

    def grid(self, root: str, spot: float) -> float:
        if root in ("/ES", "/MES", "/GC", "/MGC"):
            return 5.0
        if root in ("/ZN", "/CL", "/MCL"):
            return 0.5
        if root in ("SPY", "QQQ", "IWM", "TLT", "GLD") or 25 <= spot < 100:
            return 1.0
        return 0.5 if spot < 25 else 2.5 if spot < 200 else 5.0

    def strike(self, root: str, i: int, expiry: date, right: str, delta: float) -> float:
        """The grid strike nearest ``delta`` (a put's rounded down, a call's up: further out)."""
        at = self.close_at(i) - FILL_LEAD
        spot = self.spot(root, i)
        probe = self.option(root, expiry, right, spot)
        quote = self.value(probe, i, at)
        years, rate, carry = quote.years, quote.rate, quote.dividend_yield
        future = root.startswith("/")
        forward = spot if future else spot * math.exp((rate - carry) * years)
        vol = atm_vol(series(self.seed, root), i, years)
        strike = spot
        for _ in range(4):
            strike = options.strike_for_delta(right == "C", delta, spot, years, rate, rate if future else carry, vol)
            vol = implied_vol(self.seed, root, i, years, strike, forward)
        step = self.grid(root, spot)
        return (math.ceil(strike / step) if right == "C" else math.floor(strike / step)) * step

    def _do_open(self, i: int, order: Order, group: Group | None) -> None:
        sleeve = order.sleeve
        assert sleeve is not None
        expiry = self.expirations(sleeve.root, i)
        if expiry is None or expiry in (order.detail or []):
            return
        legs: list[tuple[Contract, int]] = []
        put_strike = self.strike(sleeve.root, i, expiry, "P", sleeve.delta)
        legs.append((self.option(sleeve.root, expiry, "P", put_strike), -sleeve.quantity))
        if sleeve.strategy in ("strangle", "iron_condor"):
            call_strike = self.strike(sleeve.root, i, expiry, "C", sleeve.delta)
            legs.append((self.option(sleeve.root, expiry, "C", call_strike), -sleeve.quantity))
            if sleeve.strategy == "iron_condor":
                legs.append((self.option(sleeve.root, expiry, "P", put_strike - sleeve.wing), sleeve.quantity))
                legs.append((self.option(sleeve.root, expiry, "C", call_strike + sleeve.wing), sleeve.quantity))
        new = self._new_group(sleeve.account, sleeve.root, sleeve.strategy, i, sleeve=sleeve)
        self.trade(i, new, legs)

    def _do_weekly_put(self, i: int, order: Order, group: Group | None) -> None:
        today = self.day(i)
        right, delta = order.detail if isinstance(order.detail, tuple) else ("P", 0.16)
        weekdays = (2,) if right == "C" else (0, 4)  # calls on Wednesdays, puts on Mondays and Fridays
        weeklies = [d for d in self.short_dated_expirations(today) if 6 <= (d - today).days <= 13 and d.weekday() in weekdays]
        if not weeklies:
            return
        expiry = min(weeklies, key=lambda d: abs((d - today).days - 9))
        new = self._new_group(MARGIN, WEEKLY_ROOT, WEEKLY[right], i, hold=True)
        strike = self.strike(WEEKLY_ROOT, i, expiry, right, delta)
        wing = strike + WEEKLY_WIDTH if right == "C" else strike - WEEKLY_WIDTH
        self.trade(i, new, [(self.option(WEEKLY_ROOT, expiry, right, strike), -WEEKLY_QUANTITY),
                            (self.option(WEEKLY_ROOT, expiry, right, wing), WEEKLY_QUANTITY)])

    def short_dated_expirations(self, today: date) -> list[date]:
        """SPY's Monday, Wednesday and Friday expirations of the next three weeks (sessions only)."""
        days = (today + timedelta(days=k) for k in range(1, 22))
        return [d for d in days if d.weekday() in (0, 2, 4) and dates.session_on_or_before(d) == d]

    def _do_earnings_put(self, i: int, order: Order, group: Group | None) -> None:
        today = self.day(i)
        best: tuple[date, str, date] | None = None
        for root in EARNINGS_NAMES:
            report = self.next_report(root, today)
            if report is None:
                continue
            expiry = self.expirations(root, i, lo=(report - today).days + 1, hi=120, target=0)
            if expiry is not None and (best is None or report < best[0]):
                best = (report, root, expiry)
        if best is None:
            return
        report, root, expiry = best
        new = self._new_group(MARGIN, root, "earnings_put", i, report=report)
        self.trade(i, new, [(self.option(root, expiry, "P", self.strike(root, i, expiry, "P", 0.20)), -1)])

    def _do_cash_secured_put(self, i: int, order: Order, group: Group | None) -> None:
        root = order.root or "IWM"
        expiry = self.expirations(root, i, lo=25, hi=50, target=35)
        if expiry is None:
            return
        strike = self.strike(root, i, expiry, "P", 0.25)
        if self.cash[IRA] < strike * 100 + self._secured(IRA, i):
            return
        new = self._new_group(IRA, root, "wheel", i)
        self.trade(i, new, [(self.option(root, expiry, "P", strike), -1)])

    def _secured(self, account: str, i: int) -> float:
        return sum(
            -q * float(g.legs[s].strike or 0.0) * 100
            for g in self.groups.values() if g.account == account
            for s, q in g.quantity.items() if g.legs[s].is_option and not g.legs[s].call and q < 0
        )

    def _do_close(self, i: int, order: Order, group: Group | None) -> None:
        assert group is not None
        self.trade(i, group, [(self.legs_of(group, s), -q) for s, q in list(group.quantity.items())])

    def legs_of(self, group: Group, symbol: str) -> Contract:
        return group.legs[symbol]

    _do_flatten = _do_close

    def _do_roll_untested(self, i: int, order: Order, group: Group | None) -> None:
        assert group is not None
        tested_right = str(order.detail)
        untested = [c for c in group.options() if c.right != tested_right and group.quantity[c.symbol] < 0]
        if not untested:
            return
        old = untested[0]
        size = group.quantity[old.symbol]
        assert old.expiration is not None
        strike = self.strike(group.root, i, old.expiration, old.right or "C", 0.30)
        step = self.grid(group.root, self.spot(group.root, i))
        other = float(next(c.strike for c in group.options() if c.symbol != old.symbol) or 0.0)
        strike = min(strike, other - step) if old.right == "P" else max(strike, other + step)  # never inverted
        if strike == old.strike:
            return
        group.rolls += 1
        group.rolled = i
        self.trade(i, group, [(old, -size), (self.option(group.root, old.expiration, old.right or "C", strike), size)])

    def _do_roll_out(self, i: int, order: Order, group: Group | None) -> None:
        """Same strikes, the next monthly about a month further, for a credit; else close."""
        assert group is not None
        current = group.expiration()
        expiry = self.expirations(group.root, i, lo=(current - self.day(i)).days + 20 if current else 30, hi=70, target=45)
        if expiry is None:
            return self._do_close(i, order, group)
        legs = [(c, group.quantity[c.symbol]) for c in group.options()]
        new = [(self.option(group.root, expiry, c.right or "P", float(c.strike or 0.0)), q) for c, q in legs]
        close_cost = sum(-q * self.value(c, i).mark * c.multiplier for c, q in legs)
        new_credit = sum(-q * self.value(c, i).mark * c.multiplier for c, q in new)
        if new_credit <= close_cost:
            return self._do_close(i, order, group)
        group.rolls += 1
        group.outs += 1
        self.trade(i, group, [(c, -q) for c, q in legs] + new)

    def _do_covered_call(self, i: int, order: Order, group: Group | None) -> None:
        assert group is not None
        if group.shares() < 100:
            return
        delta = 0.20 if group.account == IRA else 0.30
        lo, hi, target = (25, 50, 35) if group.account == IRA else (MIN_DTE, MAX_DTE, TARGET_DTE)
        expiry = self.expirations(group.root, i, lo, hi, target)
        if expiry is None:
            return
        shares = contracts.equity(group.root).symbol
        basis = next(
            (h.average_open_price for h in self.ledger.positions_at(group.account, self.close_at(i))
             if h.contract.symbol == shares),
            self.spot(group.root, i),
        )
        step = self.grid(group.root, self.spot(group.root, i))
        strike = max(self.strike(group.root, i, expiry, "C", delta), math.ceil(basis / step) * step)
        old = [(c, -group.quantity[c.symbol]) for c in group.options() if c.call and group.quantity[c.symbol] < 0]
        self.trade(i, group, old + [(self.option(group.root, expiry, "C", strike), -(group.shares() // 100))])

    def _do_roll_call(self, i: int, order: Order, group: Group | None) -> None:
        """Up and out: the next monthly, the highest strike whose premium still pays the buyback."""
        assert group is not None
        call = next(c for c in group.options() if c.call and group.quantity[c.symbol] < 0)
        size = group.quantity[call.symbol]
        current = call.expiration
        expiry = self.expirations(group.root, i, lo=(current - self.day(i)).days + 20 if current else 30, hi=75, target=45)
        if expiry is None:
            return
        cost = self.value(call, i).mark
        step = self.grid(group.root, self.spot(group.root, i))
        strike = float(call.strike or 0.0)
        while self.value(self.option(group.root, expiry, "C", strike + step), i).mark >= cost:
            strike += step
        group.rolls += 1
        self.trade(i, group, [(call, -size), (self.option(group.root, expiry, "C", strike), size)])

    def _do_buy_write(self, i: int, order: Order, group: Group | None) -> None:
        """TLT: 100 shares and a deep in-the-money call expiring after the next ex-date, its
        extrinsic value well under the dividend (a call its holder exercises before the ex-date)."""
        root = "TLT"
        group = group or self._new_group(MARGIN, root, "buy_write", i)
        legs: list[tuple[Contract, int]] = []
        for call in [c for c in group.options() if group.quantity[c.symbol] < 0]:
            legs.append((call, -group.quantity[call.symbol]))
        if group.shares() < 100:
            legs.append((contracts.equity(root), 100 - group.shares()))
        ex = next_ex_dividend(self.seed, root, i)
        if ex is None:
            return
        expiry = self.expirations(root, i, lo=(self.day(ex) - self.day(i)).days + 3, hi=80, target=0)
        if expiry is None:
            return
        spot, step = self.spot(root, i), 1.0
        dividend = self._dividend_estimate(root, i)
        strike = math.floor(spot * 0.97)
        while strike > step and self.value(self.option(root, expiry, "C", strike), i).extrinsic > 0.3 * dividend:
            strike -= step
        legs.append((self.option(root, expiry, "C", strike), -1))
        self.trade(i, group, legs)

    def _do_future_hedge(self, i: int, order: Order, group: Group | None) -> None:
        new = self._new_group(MARGIN, "/ES", "future_hedge", i)
        self.trade(i, new, [(self._front_future("/ES", i), 1)])

    def _front_future(self, root: str, i: int) -> Contract:
        today = self.day(i)
        year, month = today.year, today.month
        if month not in dates.QUARTER_MONTHS or (contracts.future_expiration(root, year, month) - today).days <= 14:
            year, month = dates.next_quarter_month(year, month)
        return contracts.future(root, year, month)

    def _do_roll_future(self, i: int, order: Order, group: Group | None) -> None:
        """A week before expiry, into the next quarter."""
        assert group is not None
        old = next(iter(group.legs.values()))
        size = group.quantity[old.symbol]
        self.trade(i, group, [(old, -size), (self._front_future(old.root, i), size)])


@dataclass(frozen=True)
class Book:
    """The engine's result: the ledger, and the sessions it covers."""

    ledger: Ledger
    first: date
    last: date


_RUNS: dict[int, Book] = {}
_RUNS_LOCK = threading.Lock()
RUNS_KEPT = 4


def run(seed: int) -> Book:
    """The whole history for ``seed``, computed once per process (a server warms it up on a
    thread as it starts; a request that comes first waits for it instead of computing it again)."""
    with _RUNS_LOCK:
        if seed not in _RUNS:
            cal = sessions()
            first = cal.index_on_or_after(START)
            engine = Engine(seed)
            engine.run(first, len(cal.days) - 1)
            if len(_RUNS) >= RUNS_KEPT:
                _RUNS.pop(next(iter(_RUNS)))
            _RUNS[seed] = Book(engine.ledger, cal.days[first].astype(object), cal.days[-1].astype(object))
        return _RUNS[seed]


def warm_up(seed: int) -> threading.Thread:
    """Start computing ``run(seed)`` in the background (daemon thread) and return the thread.

    The calendar is loaded first, on the caller's thread: exchange_calendars builds its lazy
    indexes on first use, which is not something two threads should race on."""
    sessions()
    dates.monthly_expiration(START.year, START.month)
    thread = threading.Thread(target=run, args=(seed,), name=f"engine-{seed}", daemon=True)
    thread.start()
    return thread
