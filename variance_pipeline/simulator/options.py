"""The simulator's option model: Black-Scholes-Merton (continuous dividend yield) and Black-76.

One pricing function for every place that needs an option value (the engine's fills, position
marks, balances, the margin report, ``/market-data/by-type``), so the numbers agree everywhere.
Black-76 is BSM with the future as the underlying and the yield equal to the rate, so one formula
serves both; only rho differs (a future option's value depends on the rate through discounting
alone). Greeks follow the conventions of the quotes Tastytrade serves (and of ``vollib``): theta
per calendar day, vega and rho per volatility / rate point (0.01). Standard library only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

_N = NormalDist()
DAYS_PER_YEAR = 365.0


@dataclass(frozen=True)
class Greeks:
    """Per one unit of underlying (not per contract)."""

    price: float
    delta: float
    gamma: float
    theta: float
    vega: float
    rho: float


def _d1_d2(spot: float, strike: float, years: float, rate: float, yield_: float, vol: float) -> tuple[float, float]:
    root = vol * math.sqrt(years)
    d1 = (math.log(spot / strike) + (rate - yield_ + 0.5 * vol * vol) * years) / root
    return d1, d1 - root


def price(call: bool, spot: float, strike: float, years: float, rate: float, yield_: float, vol: float) -> float:
    """European value; at or past expiry (or with no volatility) the discounted intrinsic value."""
    if years <= 0 or vol <= 0:
        forward = spot * math.exp((rate - yield_) * max(years, 0.0))
        intrinsic = forward - strike if call else strike - forward
        return max(0.0, intrinsic) * math.exp(-rate * max(years, 0.0))
    d1, d2 = _d1_d2(spot, strike, years, rate, yield_, vol)
    carry, discount = math.exp(-yield_ * years), math.exp(-rate * years)
    if call:
        return spot * carry * _N.cdf(d1) - strike * discount * _N.cdf(d2)
    return strike * discount * _N.cdf(-d2) - spot * carry * _N.cdf(-d1)


def greeks(
    call: bool, spot: float, strike: float, years: float, rate: float, yield_: float, vol: float, future: bool = False
) -> Greeks:
    """Value and Greeks; ``future``: Black-76 (pass the future price as ``spot``; ``yield_`` is
    ignored and set to the rate)."""
    if future:
        yield_ = rate
    value = price(call, spot, strike, years, rate, yield_, vol)
    if years <= 0 or vol <= 0:
        in_money = (spot > strike) if call else (spot < strike)
        delta = (1.0 if call else -1.0) if in_money else 0.0
        return Greeks(value, delta, 0.0, 0.0, 0.0, 0.0)
    d1, d2 = _d1_d2(spot, strike, years, rate, yield_, vol)
    carry, discount = math.exp(-yield_ * years), math.exp(-rate * years)
    pdf = _N.pdf(d1)
    root_t = math.sqrt(years)
    delta = carry * _N.cdf(d1) if call else -carry * _N.cdf(-d1)
    gamma = carry * pdf / (spot * vol * root_t)
    decay = -spot * carry * pdf * vol / (2 * root_t)
    if call:
        theta = decay - rate * strike * discount * _N.cdf(d2) + yield_ * spot * carry * _N.cdf(d1)
        rho = strike * years * discount * _N.cdf(d2)
    else:
        theta = decay + rate * strike * discount * _N.cdf(-d2) - yield_ * spot * carry * _N.cdf(-d1)
        rho = -strike * years * discount * _N.cdf(-d2)
    if future:
        rho = -years * value
    vega = spot * carry * pdf * root_t
    return Greeks(value, delta, gamma, theta / DAYS_PER_YEAR, vega / 100.0, rho / 100.0)


def strike_for_delta(
    call: bool, target: float, spot: float, years: float, rate: float, yield_: float, vol: float
) -> float:
    """The strike whose |delta| is ``target`` at volatility ``vol`` (closed form; callers iterate
    when the volatility depends on the strike through the skew)."""
    carry = math.exp(-yield_ * years)
    root = vol * math.sqrt(years)
    probability = min(max(target / carry, 1e-6), 1 - 1e-6)
    d1 = _N.inv_cdf(probability) if call else -_N.inv_cdf(probability)
    return spot * math.exp((rate - yield_ + 0.5 * vol * vol) * years - d1 * root)
