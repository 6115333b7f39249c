"""The margin model: what each underlying's positions tie up, as a broker pairs them.

Positions are paired per underlying the way a Reg T broker pairs them (nothing here trusts how
the engine named its trades), and every nested group's buying power equals its requirement:

* **Stock**, margin account: 30 % of the market value, long or short (cash proceeds of a short
  sale sit in the cash balance already); cash and IRA accounts: 100 % of a long.
* **Covered call** (a short call against 100 long shares each): the shares' requirement only.
* **Defined risk** (a short option with a long one of the same type and expiration further out of
  the money; two such verticals of one expiration make an iron condor, of which only one side can
  lose): the widest width x multiplier x quantity minus the credit received at the opening
  prices (the maximum loss), never below zero.
* **Naked short equity option** (the standard rule), per contract: max(20 % of the underlying
  minus the out-of-the-money amount, 10 % of the strike for a put or of the underlying for a
  call) x 100 plus the option's value (15 % instead of 20 % on broad-based indices: SPX, XSP...).
  A put and a call of one expiration (a strangle): the
  larger side plus the other side's value. In a cash or IRA account a short put is cash secured:
  strike x 100.
* **Futures**, SPAN-like: a fraction of the notional per contract (``SPAN_FRACTIONS``: /ES and
  /MES 6.5 %, /ZN 2 %, /CL 9 %, /GC 7 %, /6E 3 %, others 8 %). **Naked future options**: max(that
  fraction of the future's notional minus the out-of-the-money amount x multiplier, a quarter of
  it) plus the option's value, the strangle rule as for equity options.
* Long options are paid in full: no requirement.

A margin report's account total is the sum of its groups; ``used-derivative-buying-power`` is the
sum of the nested groups whose requirement comes from an option or futures rule (the stock and
covered-call groups are equity); ``derivative-buying-power`` what net liquidating value leaves.
The ``expected-price-range`` percents are a three-sigma monthly move at the underlying's 30-day
IV (to 0.1); ``point-of-no-return-percent`` is the move of the underlying (as a fraction) whose
first-order loss on the group would use up the account's maintenance excess (capped at 9.99).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from variance_pipeline.simulator.contracts import Contract
from variance_pipeline.simulator.market import INDEX_NAMES
from variance_pipeline.simulator.quotes import Value

STOCK_MARGIN = 0.30
NAKED_UNDERLYING_SHARE = 0.20
BROAD_INDEX_SHARE = 0.15
NAKED_MINIMUM_SHARE = 0.10
SPAN_FRACTIONS = {"/ES": 0.065, "/MES": 0.065, "/ZN": 0.02, "/CL": 0.09, "/MCL": 0.09, "/GC": 0.07, "/MGC": 0.07, "/6E": 0.03}
DEFAULT_SPAN_FRACTION = 0.08
DERIVATIVE = frozenset({"STRANGLE", "NAKED_OPTION", "IRON_CONDOR", "VERTICAL_SPREAD", "LONG_OPTION", "LONG_FUTURE", "SHORT_FUTURE"})


@dataclass(frozen=True)
class Leg:
    """One position: signed quantity, its quote, the average price it was opened at."""

    contract: Contract
    quantity: int
    value: Value
    average_open_price: float


@dataclass
class Strategy:
    """A nested group: a description (``LONG_UNDERLYING``, ``STRANGLE``...) and the parts of the
    positions it pairs (leg, signed quantity in this group)."""

    description: str
    requirement: float
    entries: list[tuple[Leg, int]] = field(default_factory=list)

    @property
    def derivative(self) -> bool:
        return self.description in DERIVATIVE


@dataclass
class UnderlyingGroup:
    root: str
    underlying_type: str  # Equity | Future
    price: float
    strategies: list[Strategy]
    delta_dollars: float
    implied_volatility: float | None

    @property
    def requirement(self) -> float:
        return sum(s.requirement for s in self.strategies)

    @property
    def expected_range(self) -> float:
        iv = self.implied_volatility or 0.3
        return max(0.1, round(3 * iv * math.sqrt(1 / 12), 1))


def span_fraction(root: str) -> float:
    return SPAN_FRACTIONS.get(root, DEFAULT_SPAN_FRACTION)


def _naked(leg: Leg, quantity: int, cash_account: bool) -> float:
    """The requirement of ``quantity`` (negative) naked contracts of an option leg."""
    contract, size = leg.contract, abs(quantity)
    strike, spot = float(contract.strike or 0.0), leg.value.underlying_price
    out_of_money = max(0.0, spot - strike) if not contract.call else max(0.0, strike - spot)
    premium = leg.value.mark * contract.multiplier
    if contract.instrument_type == "Future Option":
        scan = span_fraction(contract.root) * spot * contract.multiplier
        return size * (max(scan - out_of_money * contract.multiplier, 0.25 * scan) + premium)
    if cash_account:
        return size * strike * contract.multiplier
    floor = NAKED_MINIMUM_SHARE * (spot if contract.call else strike)
    share = BROAD_INDEX_SHARE if contract.root in INDEX_NAMES else NAKED_UNDERLYING_SHARE
    return size * (max(share * spot - out_of_money, floor) * contract.multiplier + premium)


def _pair_verticals(shorts: list[list], longs: list[list], call: bool) -> list[tuple[list, list, int]]:
    """Greedy pairing of each short with the nearest long further out of the money."""
    pairs = []
    for short in sorted(shorts, key=lambda e: e[0].contract.strike, reverse=not call):
        for long in sorted(longs, key=lambda e: abs(e[0].contract.strike - short[0].contract.strike)):
            beyond = long[0].contract.strike > short[0].contract.strike if call else long[0].contract.strike < short[0].contract.strike
            if short[1] == 0 or long[1] == 0 or not beyond:
                continue
            size = min(-short[1], long[1])
            pairs.append((short, long, size))
            short[1] += size
            long[1] -= size
    return pairs


def _spread_requirement(pairs: list[tuple[list, list, int]]) -> float:
    width = 0.0
    credit = 0.0
    for short, long, size in pairs:
        multiplier = short[0].contract.multiplier
        width = max(width, abs(short[0].contract.strike - long[0].contract.strike) * multiplier * size)
        credit += (short[0].average_open_price - long[0].average_open_price) * multiplier * size
    return max(0.0, width - credit)


def _options(legs: list[Leg], cash_account: bool) -> list[Strategy]:
    """Option strategies of one underlying, per expiration (``legs`` hold what stock left uncovered)."""
    strategies: list[Strategy] = []
    for expiration in sorted({leg.contract.expiration for leg in legs}):
        mine = [[leg, leg.quantity] for leg in legs if leg.contract.expiration == expiration]
        put_pairs = _pair_verticals([e for e in mine if e[1] < 0 and not e[0].contract.call],
                                    [e for e in mine if e[1] > 0 and not e[0].contract.call], call=False)
        call_pairs = _pair_verticals([e for e in mine if e[1] < 0 and e[0].contract.call],
                                     [e for e in mine if e[1] > 0 and e[0].contract.call], call=True)
        if put_pairs and call_pairs:
            requirement = max(_spread_requirement(put_pairs), _spread_requirement(call_pairs))
            pairs = put_pairs + call_pairs
            strategies.append(Strategy("IRON_CONDOR", requirement, _entries_of(pairs)))
        else:
            for pairs in (put_pairs, call_pairs):
                if pairs:
                    strategies.append(Strategy("VERTICAL_SPREAD", _spread_requirement(pairs), _entries_of(pairs)))
        puts = [(e[0], e[1]) for e in mine if e[1] < 0 and not e[0].contract.call]
        calls = [(e[0], e[1]) for e in mine if e[1] < 0 and e[0].contract.call]
        if puts and calls and not cash_account:
            put_side = sum(_naked(leg, q, cash_account) for leg, q in puts)
            call_side = sum(_naked(leg, q, cash_account) for leg, q in calls)
            put_value = sum(-q * leg.value.mark * leg.contract.multiplier for leg, q in puts)
            call_value = sum(-q * leg.value.mark * leg.contract.multiplier for leg, q in calls)
            requirement = max(put_side + call_value, call_side + put_value)
            strategies.append(Strategy("STRANGLE", requirement, puts + calls))
        elif puts or calls:
            for leg, q in puts + calls:
                strategies.append(Strategy("NAKED_OPTION", _naked(leg, q, cash_account), [(leg, q)]))
        for leg, q in ((e[0], e[1]) for e in mine if e[1] > 0):
            strategies.append(Strategy("LONG_OPTION", 0.0, [(leg, q)]))
    return strategies


def _entries_of(pairs: list[tuple[list, list, int]]) -> list[tuple[Leg, int]]:
    totals: dict[str, tuple[Leg, int]] = {}
    for short, long, size in pairs:
        for leg, quantity in ((short[0], -size), (long[0], size)):
            previous = totals.get(leg.contract.symbol, (leg, 0))[1]
            totals[leg.contract.symbol] = (leg, previous + quantity)
    return list(totals.values())


def underlying_group(root: str, legs: list[Leg], cash_account: bool) -> UnderlyingGroup:
    """Every strategy the positions on ``root`` make (see the module docstring)."""
    stock = [leg for leg in legs if leg.contract.instrument_type == "Equity"]
    futures = [leg for leg in legs if leg.contract.instrument_type == "Future"]
    options = [leg for leg in legs if leg.contract.is_option]
    strategies: list[Strategy] = []
    shares = sum(leg.quantity for leg in stock)
    price = legs[0].value.underlying_price
    uncovered: list[Leg] = list(options)
    if shares > 0 and stock:
        share_leg = stock[0]
        coverable = shares // 100
        covered: list[tuple[Leg, int]] = []
        remaining: list[Leg] = []
        for leg in sorted(options, key=lambda leg: (leg.contract.strike or 0.0)):
            if leg.contract.instrument_type == "Equity Option" and leg.contract.call and leg.quantity < 0 and coverable:
                take = min(coverable, -leg.quantity)
                coverable -= take
                covered.append((leg, -take))
                if take < -leg.quantity:
                    remaining.append(Leg(leg.contract, leg.quantity + take, leg.value, leg.average_open_price))
            else:
                remaining.append(leg)
        uncovered = remaining
        share = 1.0 if cash_account else STOCK_MARGIN
        covered_shares = 100 * sum(-q for _, q in covered)
        if covered:
            strategies.append(Strategy("COVERED_CALL", share * covered_shares * share_leg.value.mark,
                                       [(share_leg, covered_shares), *covered]))
        if shares - covered_shares:
            strategies.append(Strategy("LONG_UNDERLYING", share * (shares - covered_shares) * share_leg.value.mark,
                                       [(share_leg, shares - covered_shares)]))
    elif shares < 0 and stock:
        strategies.append(Strategy("SHORT_UNDERLYING", STOCK_MARGIN * -shares * stock[0].value.mark, [(stock[0], shares)]))
    strategies += _options(uncovered, cash_account)
    for leg in futures:
        notional = abs(leg.quantity) * leg.value.mark * leg.contract.multiplier
        strategies.append(Strategy("LONG_FUTURE" if leg.quantity > 0 else "SHORT_FUTURE",
                                   span_fraction(root) * notional, [(leg, leg.quantity)]))
    delta = sum(leg.quantity * leg.value.greeks.delta * leg.contract.multiplier for leg in legs) * price
    vols = [leg.value.volatility for leg in options if leg.value.volatility]
    kind = "Future" if futures or any(leg.contract.instrument_type == "Future Option" for leg in legs) else "Equity"
    return UnderlyingGroup(root, kind, price, strategies, delta, min(vols) if vols else None)


def account_groups(legs: list[Leg], cash_account: bool) -> list[UnderlyingGroup]:
    """One group per underlying, in order of first appearance."""
    roots: dict[str, list[Leg]] = {}
    for leg in legs:
        roots.setdefault(leg.contract.root, []).append(leg)
    return [underlying_group(root, mine, cash_account) for root, mine in roots.items()]


def point_of_no_return(group: UnderlyingGroup, excess: float) -> float:
    if abs(group.delta_dollars) < 1.0:
        return 9.99
    return round(min(9.99, max(0.0, excess) / abs(group.delta_dollars)), 2)
