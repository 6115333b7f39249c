"""Implied volatility of any option the simulator quotes: the market's own term structure, a skew.

The at-the-money term structure is the market state's forecast (``market.expected_vol``: log
volatility reverting over weeks, stress decaying over days) times the symbol's volatility risk
premium of that day, so the 30-day point is exactly the headline IV the metrics serve, calm days
slope upward and stressed days are inverted. Away from the money a simple quadratic smile in
standardised moneyness ``z = ln(K / F) / (atm * sqrt(T))``: puts richer than calls for equities
and indices (more for index products), almost flat for rates and currencies, a call skew for gold.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Callable

from variance_pipeline.simulator.market import TRADING_DAYS, Instrument, Series, expected_vol, lookup, series

CURVATURE = 0.03
_SMILE_FLOOR, _SMILE_CAP = 0.6, 3.0
_INDEX_SKEW = 0.12
_SKEWS = {"/ZN": 0.02, "/6E": 0.01, "/CL": 0.06, "/GC": -0.03, "GLD": -0.02, "TLT": 0.03, "VIX": -0.15}


def base_instrument(seed: int, inst: Instrument) -> Instrument:
    """The walk an instrument's prices come from (SPX, /ES and /MES are SPY's)."""
    while inst.derive == "track" and inst.parent:
        parent = lookup(inst.parent, seed)
        if parent is None:
            break
        inst = parent
    return inst


def skew_of(seed: int, inst: Instrument) -> float:
    """Vol points per standard deviation of moneyness (positive: puts richer)."""
    base = base_instrument(seed, inst)
    if base.symbol in _SKEWS:
        return _SKEWS[base.symbol]
    if base.kind in ("etf", "index") and base.rho >= 0.8:
        return _INDEX_SKEW
    if base.kind == "equity":
        return 0.06 + 0.04 * max(0.0, base.rho)
    return 0.02 + 0.06 * max(0.0, base.rho)


def atm_vol(history: Series, index: int, years: float) -> float:
    """ATM implied volatility for ``years`` to expiry as of session ``index``."""
    horizon = max(years, 0.0) * TRADING_DAYS
    raw = expected_vol(history.instrument, history.log_vol[index], history.stress[index], history.stress_rate, horizon)
    return float(raw) * float(history.iv_scale[index])


@lru_cache(maxsize=65536)
def _atm(seed: int, symbol: str, index: int, years: float) -> float:
    """``atm_vol`` memoised: the legs of one expiration share it (the engine asks thousands of times)."""
    return atm_vol(series(seed, symbol), index, years)


def atm_curve(seed: int, symbol: str, index: int) -> Callable[[float], float]:
    """Calendar days to expiry -> ATM IV, as of session ``index`` (the metrics' term structure)."""
    return lambda days: _atm(seed, symbol, index, days / 365.0)


def implied_vol(seed: int, symbol: str, index: int, years: float, strike: float, forward: float) -> float:
    """The volatility an option of ``strike`` and ``years`` to expiry is quoted at."""
    history = series(seed, symbol)
    atm = _atm(seed, symbol, index, years)
    if years <= 0 or strike <= 0 or forward <= 0:
        return atm
    z = math.log(strike / forward) / (atm * math.sqrt(years))
    smile = 1 - skew_of(seed, history.instrument) * z + CURVATURE * z * z
    return atm * min(_SMILE_CAP, max(_SMILE_FLOOR, smile))
