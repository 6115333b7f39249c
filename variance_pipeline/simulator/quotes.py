"""What any contract is worth at an instant: the one valuation behind fills, marks and quotes.

``value`` prices a contract from its underlying's price and the market state of one session (the
engine calls it with each session's traded close); ``quote`` does the same as of a clock from the
bars the chart endpoint serves (positions, balances, the margin report and ``/market-data/by-type``
all call it), so a mark is the same number everywhere it appears.

Options: BSM with the instrument's dividend yield on equity options, Black-76 on future options
(on their own dated future's price: ``curve``, the continuous times its contango factor; a future
position is valued at its contract's price too; a VIX option on the VX contract of its expiration
month, ``curve``'s VX curve over spot VIX), at the rate of the clock's
New York date, at the volatility of ``volsurface``. The mark is the model value floored at the
intrinsic value (listed options are American), rounded to the tick; bid and ask straddle it by a
whole number of ticks, so the mid is the mark.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Callable

from variance_pipeline.simulator import curve, dates, options, volsurface
from variance_pipeline.simulator.contracts import FUTURE_OPTION_TICKS, Contract
from variance_pipeline.simulator.market import Bars, lookup
from variance_pipeline.simulator.rates import risk_free_rate

EQUITY_OPTION_TICK = 0.01
SECONDS_PER_YEAR = 365.0 * 86400.0


@dataclass(frozen=True)
class Value:
    """Per unit of the underlying (multiply by ``contract.multiplier`` for one contract)."""

    contract: Contract
    underlying_price: float
    mark: float
    theo: float
    volatility: float | None
    greeks: options.Greeks
    tick: float
    rate: float
    dividend_yield: float
    years: float

    @property
    def intrinsic(self) -> float:
        if not self.contract.is_option:
            return self.mark
        strike = float(self.contract.strike or 0.0)
        spot = self.underlying_price
        return max(0.0, spot - strike) if self.contract.call else max(0.0, strike - spot)

    @property
    def extrinsic(self) -> float:
        return max(0.0, self.mark - self.intrinsic)

    def spread(self) -> tuple[float, float]:
        """(bid, ask): a whole number of ticks either side of the mark (about 1 % of an option's
        price; one tick for stock and futures)."""
        steps = max(1, round(0.01 * self.mark / self.tick)) if self.contract.is_option else 1
        return max(0.0, round_to(self.mark - steps * self.tick, self.tick)), round_to(self.mark + steps * self.tick, self.tick)


def round_to(value: float, tick: float) -> float:
    return round(round(value / tick) * tick, 6)


def tick_of(contract: Contract, seed: int) -> float:
    if contract.root in curve.VOLATILITY_FUTURES:
        return curve.VX_TICK
    if contract.instrument_type == "Equity Option":
        return EQUITY_OPTION_TICK
    if contract.instrument_type == "Future Option":
        return FUTURE_OPTION_TICKS.get(contract.root, 0.01)
    listed = lookup(contract.root, seed)
    return listed.tick if listed else 0.01


def value(seed: int, contract: Contract, spot: float, index: int, at: datetime) -> Value:
    """``contract`` at instant ``at`` with its underlying at ``spot``, in the state of session ``index``."""
    tick = tick_of(contract, seed)
    rate = risk_free_rate(dates.new_york_date(at))
    if contract.instrument_type in ("Future", "Future Option"):  # on its own dated contract's price
        own = contract.symbol if contract.instrument_type == "Future" else contract.underlying_symbol
        spot = curve.dated_price(own, spot, index, seed)
    # A VIX option settles to the VX future of its expiration (Cboe): Black-76 on that contract.
    vx = curve.volatility_option_future(contract.root, contract.expiration) if contract.is_option and contract.expiration else None
    vx_price = curve.volatility_future_price(vx, spot, index) if vx else None
    if vx_price is not None:
        spot = vx_price
    inst = lookup(contract.root, seed)
    if not contract.is_option:
        one = options.Greeks(spot, 1.0, 0.0, 0.0, 0.0, 0.0)
        return Value(contract, spot, spot, spot, None, one, tick, rate, 0.0, 0.0)
    future = contract.instrument_type == "Future Option" or vx_price is not None
    dividend_yield = 0.0 if future or inst is None else inst.dividend_yield
    assert contract.expires_at is not None and contract.strike is not None
    years = max(0.0, (contract.expires_at - at).total_seconds() / SECONDS_PER_YEAR)
    forward = spot if future else spot * math.exp((rate - dividend_yield) * years)
    vol = volsurface.implied_vol(seed, contract.root, index, years, contract.strike, forward)
    greeks = options.greeks(contract.call, spot, contract.strike, years, rate, dividend_yield, vol, future=future)
    intrinsic = max(0.0, spot - contract.strike) if contract.call else max(0.0, contract.strike - spot)
    mark = max(0.0, round_to(max(greeks.price, intrinsic), tick))
    return Value(contract, spot, mark, greeks.price, vol, greeks, tick, rate, dividend_yield, years)


def quote(seed: int, contract: Contract, bars_for: Callable[[str], Bars], clock: datetime) -> Value | None:
    """``contract`` as of ``clock`` from the served bars (the live bar inside a session); None when
    its underlying has no bar yet."""
    bars = bars_for(curve.spot_symbol(contract.root))
    if len(bars.close) == 0:
        return None
    return value(seed, contract, float(bars.close[-1]), len(bars.close) - 1, clock)
