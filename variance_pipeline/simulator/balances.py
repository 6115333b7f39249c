"""The account-level endpoints: balances, the margin report and the trading status.

All three are computed from one ``State`` (what the account holds at the clock, each position's
quote, the cash balance), so they reconcile with each other and with the positions endpoint:

* ``net-liquidating-value`` = ``cash-balance`` + long - short values of every class: equities
  (``mark`` x quantity), equity options (``*-derivative-value``), future options
  (``*-futures-derivative-value``) and futures, whose value is the variation margin not yet
  settled into cash: (mark - last settlement) x quantity x multiplier, zero after the close
  (futures settle daily into the cash balance; the ledger's ``Mark to Market`` rows).
* ``maintenance-requirement`` = the margin report's total = the sum of its groups (``margin.py``);
  ``used-derivative-buying-power`` = the option and futures part of it; ``derivative-buying-power``
  = what net liquidating value leaves (``maintenance-excess``); a margin account's
  ``equity-buying-power`` is twice that (Reg T), a cash account's the same.

Money amounts are unsigned except ``cash-balance`` and the futures values intraday, which are
negative when they are (a debit balance, a future losing since the settlement); the margin
report carries ``*-effect`` siblings (Debit for requirements, Credit for equity and buying power).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from variance_pipeline.simulator import dates, portfolio, quotes
from variance_pipeline.simulator.formats import iso_offset, num
from variance_pipeline.simulator.margin import Leg, UnderlyingGroup, account_groups, point_of_no_return
from variance_pipeline.simulator.market import Bars
from variance_pipeline.simulator.portfolio import Account, Book


ENHANCED_SAFEGUARDS = datetime(2022, 10, 27, 20, 49, 52, 928000, tzinfo=timezone.utc)


@dataclass(frozen=True)
class State:
    account: Account
    clock: datetime
    cash: float
    legs: list[Leg]
    settlements: dict[str, float]  # futures: the last settlement (close) price

    def value(self, leg: Leg) -> float:
        """A position's liquidation value, signed (short positions negative)."""
        contract = leg.contract
        if contract.instrument_type == "Future":
            return (leg.value.mark - self.settlements[contract.symbol]) * leg.quantity * contract.multiplier
        return leg.value.mark * leg.quantity * contract.multiplier

    def by_class(self) -> dict[str, tuple[float, float]]:
        """(long, short) values per balance class; short values as positive amounts."""
        classes = {"equity": [0.0, 0.0], "derivative": [0.0, 0.0], "futures": [0.0, 0.0], "futures-derivative": [0.0, 0.0]}
        names = {"Equity": "equity", "Equity Option": "derivative", "Future": "futures", "Future Option": "futures-derivative"}
        for leg in self.legs:
            side = 0 if leg.quantity > 0 else 1
            amount = self.value(leg)
            classes[names[leg.contract.instrument_type]][side] += amount if side == 0 else -amount
        return {name: (long, short) for name, (long, short) in classes.items()}

    @property
    def net_liquidating_value(self) -> float:
        return self.cash + sum(long - short for long, short in self.by_class().values())

    def groups(self) -> list[UnderlyingGroup]:
        return account_groups(self.legs, self.account.cash_account)


def state(seed: int, account: Account, clock: datetime, bars_for: Callable[[str], Bars], book: Book) -> State:
    legs: list[Leg] = []
    settlements: dict[str, float] = {}
    for held in portfolio.holdings(seed, account.number, clock, bars_for, book):
        bars = bars_for(held.contract.root)
        if bars.completed == 0:
            continue
        mark = quotes.quote(seed, held.contract, bars_for, clock)
        assert mark is not None
        legs.append(Leg(held.contract, held.quantity, mark, held.average_open_price))
        if held.contract.instrument_type == "Future":
            settlements[held.contract.symbol] = portfolio.close_value(seed, held.contract, bars).mark
    return State(account, clock, portfolio.cash(seed, account.number, clock, bars_for, book), legs, settlements)


def _money(value: float) -> str:
    return num(value, 3)


def balances(current: State) -> dict[str, Any]:
    """``/accounts/{n}/balances`` ``data``: every key of the recorded body, plus
    ``used-derivative-buying-power`` and the buying-power adjustment."""
    classes = current.by_class()
    groups = current.groups()
    net_liq = current.net_liquidating_value
    requirement = sum(g.requirement for g in groups)
    derivative = sum(s.requirement for g in groups for s in g.strategies if s.derivative)
    futures = sum(s.requirement for g in groups for s in g.strategies
                  if any(leg.contract.instrument_type in ("Future", "Future Option") for leg, _ in s.entries))
    excess = net_liq - requirement
    buying_power = max(0.0, excess)
    margin = not current.account.cash_account
    withdrawable = max(0.0, min(current.cash, buying_power))
    long_equity, short_equity = classes["equity"]
    return {
        "account-number": current.account.number,
        "cash-balance": _money(current.cash),
        "long-equity-value": _money(long_equity),
        "short-equity-value": _money(short_equity),
        "long-derivative-value": _money(classes["derivative"][0]),
        "short-derivative-value": _money(classes["derivative"][1]),
        "long-futures-value": _money(classes["futures"][0]),
        "short-futures-value": _money(classes["futures"][1]),
        "long-futures-derivative-value": _money(classes["futures-derivative"][0]),
        "short-futures-derivative-value": _money(classes["futures-derivative"][1]),
        "long-margineable-value": _money(long_equity if margin else 0.0),
        "short-margineable-value": _money(short_equity if margin else 0.0),
        "margin-equity": _money(net_liq),
        "equity-buying-power": _money(2 * buying_power if margin else buying_power),
        "derivative-buying-power": _money(buying_power),
        "day-trading-buying-power": "0.0",
        "futures-margin-requirement": _money(futures),
        "available-trading-funds": "0.0",
        "maintenance-requirement": _money(requirement),
        "maintenance-call-value": _money(max(0.0, -excess)),
        "reg-t-call-value": "0.0",
        "day-trading-call-value": "0.0",
        "day-equity-call-value": "0.0",
        "net-liquidating-value": _money(net_liq),
        "cash-available-to-withdraw": num(withdrawable, 2),
        "day-trade-excess": num(buying_power, 2),
        "pending-cash": "0.0",
        "pending-cash-effect": "None",
        "long-cryptocurrency-value": "0.0",
        "short-cryptocurrency-value": "0.0",
        "cryptocurrency-margin-requirement": "0.0",
        "unsettled-cryptocurrency-fiat-amount": "0.0",
        "unsettled-cryptocurrency-fiat-effect": "None",
        "closed-loop-available-balance": num(withdrawable, 2),
        "equity-offering-margin-requirement": "0.0",
        "long-bond-value": "0.0",
        "bond-margin-requirement": "0.0",
        "snapshot-date": dates.new_york_date(current.clock).isoformat(),
        "reg-t-margin-requirement": num(requirement, 4),
        "futures-overnight-margin-requirement": _money(futures),
        "futures-intraday-margin-requirement": _money(futures),
        "maintenance-excess": _money(buying_power),
        "pending-margin-interest": "0.0",
        "effective-cryptocurrency-buying-power": num(buying_power, 2),
        "updated-at": iso_offset(current.clock),
        "used-derivative-buying-power": _money(derivative),
        "buying-power-adjustment": "0.0",
        "buying-power-adjustment-effect": "None",
    }


def _requirement_fields(requirement: float, buying_power: float) -> dict[str, str]:
    return {
        "margin-requirement": _money(requirement),
        "margin-requirement-effect": "Debit",
        "initial-requirement": _money(requirement),
        "initial-requirement-effect": "Debit",
        "maintenance-requirement": _money(requirement),
        "maintenance-requirement-effect": "Debit",
    } | ({"buying-power": _money(buying_power), "buying-power-effect": "Credit"})


def _entry(leg: Leg, quantity: int) -> dict[str, Any]:
    contract = leg.contract
    places = 2 if leg.value.tick >= 0.01 and abs(leg.value.tick * 100 - round(leg.value.tick * 100)) < 1e-9 else 6
    entry: dict[str, Any] = {
        "instrument-symbol": contract.symbol,
        "instrument-type": contract.instrument_type,
        "quantity": num(quantity, 3) if quantity else "0.0",
        "average-open-price": "NaN",
        "close-price": num(leg.value.mark, places),
        "fixing-price": "NaN",
    }
    if contract.is_option:
        entry |= {
            "strike-price": num(float(contract.strike or 0.0), 4),
            "option-type": contract.right,
            "deliverable-quantity": num(float(contract.multiplier * abs(quantity)), 1),
            "expiration-date": contract.expiration.isoformat() if contract.expiration else None,
        }
    return entry


def margin_report(current: State, calculation: str, option_level: str) -> dict[str, Any]:
    """``/margin/accounts/{n}/requirements`` ``data`` (the recorded shape): one group per
    underlying, nested groups per strategy with their position entries; groups sum to the total."""
    groups = current.groups()
    total = sum(g.requirement for g in groups)
    net_liq = current.net_liquidating_value
    excess = net_liq - total
    entries = []
    for group in groups:
        price_range = num(group.expected_range, 1)
        entries.append({
            "description": group.root,
            "code": group.root,
            "underlying-symbol": group.root,
            "underlying-type": group.underlying_type,
            "expected-price-range-up-percent": price_range,
            "expected-price-range-down-percent": price_range,
            "point-of-no-return-percent": num(point_of_no_return(group, excess), 2),
            "margin-calculation-type": calculation,
            **_requirement_fields(group.requirement, group.requirement),
            "groups": [
                {
                    "description": strategy.description,
                    **_requirement_fields(strategy.requirement, strategy.requirement),
                    "includes-working-order": False,
                    "position-entries": [_entry(leg, quantity) for leg, quantity in strategy.entries],
                }
                for strategy in group.strategies
            ],
            "price-increase-percent": "1.0",
            "price-decrease-percent": "-1.0",
        })
    return {
        "account-number": current.account.number,
        "description": "Total",
        "margin-calculation-type": calculation,
        "option-level": option_level,
        **{k: v for k, v in _requirement_fields(total, total).items() if not k.startswith("buying-power")},
        "margin-equity": _money(net_liq),
        "margin-equity-effect": "Credit",
        "option-buying-power": _money(max(0.0, excess)),
        "option-buying-power-effect": "Credit",
        "reg-t-margin-requirement": _money(total),
        "reg-t-margin-requirement-effect": "Debit",
        "reg-t-option-buying-power": _money(max(0.0, excess)),
        "reg-t-option-buying-power-effect": "Credit",
        "maintenance-excess": _money(abs(excess)),
        "maintenance-excess-effect": "Credit" if excess >= 0 else "Debit",
        "groups": entries,
        "last-state-timestamp": int(current.clock.timestamp() * 1000),
    }


def calculation_type(account: Account) -> str:
    return "IRA Margin" if account.type_name.endswith("IRA") else "Cash" if account.cash_account else "Reg T"


def trading_status(account: Account, clock: datetime, in_margin_call: bool) -> dict[str, Any]:
    """``/accounts/{n}/trading-status`` ``data`` (the recorded keys): options level, margin-call
    and portfolio-margin flags from the account's definition and its balances."""
    opened = portfolio.OPENED + timedelta(days=account.opened_days_before)
    margin = not account.cash_account
    return {
        "account-number": account.number,
        "day-trade-count": 0,
        "equities-margin-calculation-type": calculation_type(account),
        "fee-schedule-name": "default",
        "futures-margin-rate-multiplier": "1.0" if account.futures else "0.0",
        "has-intraday-equities-margin": False,
        "id": 447000 + int(account.number[-5:]),
        "is-aggregated-at-clearing": False,
        "is-closed": account.closed,
        "is-closing-only": account.closed,
        "is-cryptocurrency-closing-only": False,
        "is-cryptocurrency-enabled": False,
        "is-frozen": False,
        "is-full-equity-margin-required": not margin,
        "is-futures-closing-only": False,
        "is-futures-intra-day-enabled": account.futures,
        "is-futures-enabled": account.futures,
        "is-in-day-trade-equity-maintenance-call": False,
        "is-in-margin-call": in_margin_call,
        "is-pattern-day-trader": False,
        "is-portfolio-margin-enabled": False,
        "is-risk-reducing-only": False,
        "is-small-notional-futures-intra-day-enabled": False,
        "is-roll-the-day-forward-enabled": True,
        "are-far-otm-net-options-restricted": True,
        "options-level": account.options_level,
        "short-calls-enabled": margin,
        "small-notional-futures-margin-rate-multiplier": "0.0",
        "is-equity-offering-enabled": False,
        "is-equity-offering-closing-only": False,
        "enhanced-fraud-safeguards-enabled-at": iso_offset(ENHANCED_SAFEGUARDS),
        "updated-at": iso_offset(opened + timedelta(days=1, hours=2, minutes=32, seconds=37)),
    }
