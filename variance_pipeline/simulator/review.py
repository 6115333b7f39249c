"""The engine's evening review: what to close, roll or hold tomorrow, what to open, and the seeding.

A mixin of ``engine.Engine`` (it reads the engine's groups and marks): ``review`` turns one
session's closing marks into tomorrow's ``Order`` list by the rules of the engine's docstring
(management, the runners, the sleeves' entries and the IV-rank filter, the coverage rules that
seed the managed cases).
"""

from __future__ import annotations

from datetime import date, timedelta

from variance_pipeline.simulator.contracts import Contract
from variance_pipeline.simulator.margin import Leg, account_groups
from variance_pipeline.simulator.market import lookup, next_ex_dividend
from variance_pipeline.simulator.metrics import report_dates
from variance_pipeline.simulator.strategy import (
    EARNINGS_NAMES,
    IRA,
    MANAGE_DTE,
    MARGIN,
    PREMIUM,
    PROFIT_TARGET,
    SLEEVES,
    TESTED_DELTA,
    BP_CAP,
    WEEKLY,
    WEEKLY_ROOT,
    Group,
    Order,
)


class Review:
    """The evening review (mixed into ``engine.Engine``)."""

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
