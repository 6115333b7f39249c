"""European option models, vectorised: Black-Scholes-Merton and Black-76, price and Greeks.

Pure numpy, no Python loop per option, no SciPy (it is not a declared dependency). The standard
normal CDF comes from W. J. Cody's rational Chebyshev approximations of ``erfc`` ("Rational
Chebyshev approximations for the error function", Math. Comp. 23, 1969; the netlib ``CALERF``
coefficients), evaluated region by region over whole arrays. ``erfc`` keeps its *relative*
accuracy (about 1e-16) deep in the tail, so an out-of-the-money price computed as
``S e^{-qT} N(d1) - K e^{-rT} N(d2)`` loses only a few digits to cancellation.

Models and conventions:

* ``black_scholes_merton``: spot ``S`` with a continuous dividend yield ``q`` (equities, ETFs,
  cash-settled indices such as SPX). ``d1 = (ln(S/K) + (r - q + sigma^2/2) T) / (sigma sqrt T)``.
* ``black_76``: options on a futures price ``F``, discounted at ``r``. Black-76 is BSM with
  ``q = r`` (the future costs nothing to carry), which is exactly how it is evaluated here.
* ``T`` in years of 365 days; ``r`` and ``q`` continuously compounded fractions; ``sigma`` a
  fraction (0.25 = 25 %).
* ``delta`` = dV/dS (dV/dF for Black-76), ``gamma`` = d2V/dS2, ``theta`` = dV/dt **per calendar
  day** (the annual theta / 365, negative for a long option that decays), ``vega`` = dV/dsigma
  **per vol point** (per 0.01 of sigma). These are vollib's conventions; the tests compare every
  value with vollib.

Invalid inputs never raise and never produce a plausible wrong number: the option's price and
Greeks are NaN and ``reason`` names the first problem (``REASONS``): expired (``T <= 0`` or
missing), missing or non-positive underlying price, strike or volatility, missing rate or yield.

**American early exercise is ignored.** Listed equity and ETF options and most future options
are American; these European values are what the market's own IV and Greeks are quoted on, and
they are accurate when early exercise is worthless. It is not worthless for (a) deep in-the-money
puts when rates are high: the put is worth at least ``K - S`` while the European put can be
worth less (``K e^{-rT} - S e^{-qT}``), so its delta is understated in size near -1 and its theta
can be wrong in sign; and (b) in-the-money calls just before an ex-dividend date, which holders
exercise to collect the dividend (a continuous yield ``q`` smears the discrete dividend over the
year). Cash-settled index options (SPX, XSP, NDX, RUT) are European, so there the values are exact.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

MODEL_BSM = "black_scholes_merton"
MODEL_BLACK_76 = "black_76"

# Reason codes for a NaN result, in the order they are checked (the first one that applies wins).
EXPIRED = "expired"
MISSING_UNDERLYING_PRICE = "missing_underlying_price"
MISSING_STRIKE = "missing_strike"
MISSING_VOLATILITY = "missing_volatility"
MISSING_RATE = "missing_rate"
REASONS: dict[str, str] = {
    EXPIRED: "time to expiration is zero, negative or missing",
    MISSING_UNDERLYING_PRICE: "underlying price is missing, zero or negative",
    MISSING_STRIKE: "strike is missing, zero or negative",
    MISSING_VOLATILITY: "implied volatility is missing, zero or negative",
    MISSING_RATE: "risk-free rate or dividend yield is missing",
}

DAYS_PER_YEAR = 365.0
_SQRT2 = np.sqrt(2.0)
_ONE_OVER_SQRT_2PI = 0.3989422804014326779399460599343818684758586311649

# Cody's CALERF coefficients (netlib specfun), for |x| <= 0.46875, <= 4 and > 4.
_A = (3.1611237438705656, 113.864154151050156, 377.485237685302021, 3209.37758913846947, 0.185777706184603153)
_B = (23.6012909523441209, 244.024637934444173, 1282.61652607737228, 2844.23683343917062)
_C = (
    0.564188496988670089, 8.88314979438837594, 66.1191906371416295, 298.635138197400131,
    881.95222124176909, 1712.04761263407058, 2051.07837782607147, 1230.33935479799725,
    2.15311535474403846e-8,
)
_D = (
    15.7449261107098347, 117.693950891312499, 537.181101862009858, 1621.38957456669019,
    3290.79923573345963, 4362.61909014324716, 3439.36767414372164, 1230.33935480374942,
)
_P = (
    0.305326634961232344, 0.360344899949804439, 0.125781726111229246, 0.0160837851487422766,
    6.58749161529837803e-4, 0.0163153871373020978,
)
_Q = (2.56852019228982242, 1.87295284992346047, 0.527905102951428412, 0.0605183413124413191, 0.00233520497626869185)
_SQRPI = 0.56418958354775628695  # 1 / sqrt(pi)
_THRESH = 0.46875
_XBIG = 26.543  # erfc(x) underflows to 0 beyond


def _exp_minus_square(y: np.ndarray) -> np.ndarray:
    """``exp(-y*y)`` without the rounding error of squaring a large ``y`` (Cody's split)."""
    head = np.trunc(y * 16.0) / 16.0
    return np.exp(-head * head) * np.exp(-(y - head) * (y + head))


def erfc(x: np.ndarray | float) -> np.ndarray:
    """Complementary error function, elementwise, relative accuracy ~1e-16 (Cody 1969)."""
    x = np.asarray(x, dtype=float)
    y = np.abs(x)
    out = np.empty_like(y)

    small = y <= _THRESH
    if small.any():
        ys = y[small]
        ysq = np.where(ys > 1.11e-16, ys * ys, 0.0)
        num = _A[4] * ysq
        den = ysq
        for i in range(3):
            num = (num + _A[i]) * ysq
            den = (den + _B[i]) * ysq
        out[small] = 1.0 - x[small] * (num + _A[3]) / (den + _B[3])

    mid = (y > _THRESH) & (y <= 4.0)
    if mid.any():
        ym = y[mid]
        num = _C[8] * ym
        den = ym
        for i in range(7):
            num = (num + _C[i]) * ym
            den = (den + _D[i]) * ym
        out[mid] = (num + _C[7]) / (den + _D[7]) * _exp_minus_square(ym)

    big = y > 4.0  # NaN compares False everywhere, handled below
    if big.any():
        yb_raw = y[big]
        yb = np.minimum(yb_raw, _XBIG)  # keeps inf out of the arithmetic; masked to 0 below
        with np.errstate(over="ignore", under="ignore"):
            ysq = 1.0 / (yb * yb)
            num = _P[5] * ysq
            den = ysq
            for i in range(4):
                num = (num + _P[i]) * ysq
                den = (den + _Q[i]) * ysq
            value = (_SQRPI - ysq * (num + _P[4]) / (den + _Q[4])) / yb * _exp_minus_square(yb)
        out[big] = np.where(yb_raw >= _XBIG, 0.0, value)

    # erfc(-y) = 2 - erfc(y); the small region already used the signed x.
    flip = (x < 0) & ~small
    out[flip] = 2.0 - out[flip]
    out[np.isnan(x)] = np.nan
    return out


def norm_cdf(x: np.ndarray | float) -> np.ndarray:
    """Standard normal CDF ``0.5 erfc(-x / sqrt 2)``, accurate in relative terms in the lower tail."""
    return 0.5 * erfc(-np.asarray(x, dtype=float) / _SQRT2)


def norm_pdf(x: np.ndarray | float) -> np.ndarray:
    x = np.asarray(x, dtype=float)
    return _ONE_OVER_SQRT_2PI * np.exp(-0.5 * x * x)


class OptionValues(NamedTuple):
    """Per-unit (one share / one future) values; arrays of one shape. NaN where ``reason`` is set."""

    price: np.ndarray
    delta: np.ndarray
    gamma: np.ndarray
    theta: np.ndarray  # per calendar day
    vega: np.ndarray  # per vol point (0.01)
    reason: np.ndarray  # object array: None, or a key of REASONS


def _reasons(S, K, T, r, q, sigma) -> np.ndarray:
    reason = np.full(S.shape, None, dtype=object)
    checks = (
        (MISSING_RATE, ~(np.isfinite(r) & np.isfinite(q))),
        (MISSING_VOLATILITY, ~(sigma > 0) | ~np.isfinite(sigma)),
        (MISSING_STRIKE, ~(K > 0) | ~np.isfinite(K)),
        (MISSING_UNDERLYING_PRICE, ~(S > 0) | ~np.isfinite(S)),
        (EXPIRED, ~(T > 0) | ~np.isfinite(T)),
    )
    for code, bad in checks:  # last assignment wins, so this runs in reverse priority
        reason[bad] = code
    return reason


def _evaluate(S, K, T, r, q, sigma, is_call) -> OptionValues:
    S, K, T, r, q, sigma = np.broadcast_arrays(*(np.asarray(a, dtype=float) for a in (S, K, T, r, q, sigma)))
    is_call = np.broadcast_to(np.asarray(is_call, dtype=bool), S.shape)
    reason = _reasons(S, K, T, r, q, sigma)
    ok = np.equal(reason, None)

    # Evaluate on safe placeholders where the inputs are invalid, then blank those out.
    S_, K_, T_, r_, q_, v_ = (np.where(ok, a, 1.0) for a in (S, K, T, r, q, sigma))
    sqrt_t = np.sqrt(T_)
    vol_t = v_ * sqrt_t
    d1 = (np.log(S_ / K_) + (r_ - q_ + 0.5 * v_ * v_) * T_) / vol_t
    d2 = d1 - vol_t
    disc_q = np.exp(-q_ * T_)
    disc_r = np.exp(-r_ * T_)
    fwd_s = S_ * disc_q  # S e^{-qT}
    pv_k = K_ * disc_r  # K e^{-rT}
    sign = np.where(is_call, 1.0, -1.0)
    n1 = norm_cdf(sign * d1)  # N(d1) for a call, N(-d1) for a put
    n2 = norm_cdf(sign * d2)
    pdf1 = norm_pdf(d1)

    price = sign * (fwd_s * n1 - pv_k * n2)
    delta = sign * disc_q * n1
    gamma = disc_q * pdf1 / (S_ * vol_t)
    annual_theta = -fwd_s * pdf1 * v_ / (2.0 * sqrt_t) + sign * (q_ * fwd_s * n1 - r_ * pv_k * n2)
    theta = annual_theta / DAYS_PER_YEAR
    vega = fwd_s * pdf1 * sqrt_t * 0.01

    blank = ~ok
    values = []
    for array in (price, delta, gamma, theta, vega):
        array = np.array(array, dtype=float)
        array[blank] = np.nan
        values.append(array)
    return OptionValues(*values, reason=reason)


def black_scholes_merton(S, K, T, r, q, sigma, is_call) -> OptionValues:
    """BSM price and Greeks per share for spot ``S``, strike ``K``, ``T`` years, continuous yield ``q``.

    All arguments broadcast against each other (scalars or 1-d arrays); ``is_call`` is boolean
    (True for a call, False for a put).
    """
    return _evaluate(S, K, T, r, q, sigma, is_call)


def black_76(F, K, T, r, sigma, is_call) -> OptionValues:
    """Black-76 price and Greeks per future for futures price ``F``, discounted at ``r``."""
    r = np.asarray(r, dtype=float)
    return _evaluate(F, K, T, r, r, sigma, is_call)


def option_values(S, K, T, r, q, sigma, is_call, is_future) -> OptionValues:
    """Either model per element: Black-76 where ``is_future`` (``q`` is then ignored), else BSM."""
    r = np.asarray(r, dtype=float)
    is_future = np.asarray(is_future, dtype=bool)
    q_eff = np.where(is_future, r, np.asarray(q, dtype=float))
    return _evaluate(S, K, T, r, q_eff, sigma, is_call)
