"""The engine's orders, executed at the session's marks: the strikes, the expirations, each kind.

A mixin of ``engine.Engine``: ``_do_<kind>`` executes an ``Order`` of that kind through the
engine's ``trade`` (which writes the ledger rows). Strikes come from the simulator's own option
model by delta (skew included), rounded away from the money on the listed grid; expirations are
the monthly (or for the short-dated ladder, Monday, Wednesday or Friday) ones in the rule's range.
"""

from __future__ import annotations

import math
from datetime import date, timedelta

from variance_pipeline.simulator import contracts, dates, options
from variance_pipeline.simulator.contracts import Contract
from variance_pipeline.simulator.market import next_ex_dividend, series
from variance_pipeline.simulator.strategy import (
    EARNINGS_NAMES,
    FILL_LEAD,
    IRA,
    MARGIN,
    MAX_DTE,
    MIN_DTE,
    TARGET_DTE,
    WEEKLY,
    WEEKLY_QUANTITY,
    WEEKLY_ROOT,
    WEEKLY_WIDTH,
    Group,
    Order,
)
from variance_pipeline.simulator.volsurface import atm_vol, implied_vol


class Orders:
    """Order execution (mixed into ``engine.Engine``)."""

    def _do_buy_shares(self, i: int, order: Order, group: Group | None) -> None:
        root, account = order.root or "SPY", order.account or IRA
        strategy, core = ("wheel", True) if root == "SPY" else ("shares", False)
        new = self._new_group(account, root, strategy, i, core=core)
        self.trade(i, new, [(contracts.equity(root), int(order.detail or 100))])


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
