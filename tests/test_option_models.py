"""BSM and Black-76 prices and Greeks against vollib (an independent implementation) on a grid."""

from __future__ import annotations

import itertools
import math
import time
import warnings

import numpy as np
import pytest
import vollib.black as vblack
import vollib.black.greeks.analytical as vblack_greeks
import vollib.black_scholes_merton as vbsm
import vollib.black_scholes_merton.greeks.analytical as vbsm_greeks

from variance_pipeline.transforms import option_models as om

RTOL, ATOL = 1e-8, 1e-10
MONEYNESS = (0.5, 0.7, 0.85, 0.95, 1.0, 1.05, 1.15, 1.3, 1.5)  # K / S
TIMES = (1 / 365, 7 / 365, 30 / 365, 0.25, 1.0, 2.0)
RATES = (0.0, 0.03, 0.08)
YIELDS = (0.0, 0.02, 0.05)
VOLS = (0.05, 0.2, 0.5, 1.0, 1.5)
SPOT = 100.0
FIELDS = ("price", "delta", "gamma", "theta", "vega")


def _close(ours: np.ndarray, ref: np.ndarray) -> np.ndarray:
    return np.abs(ours - ref) <= RTOL * np.abs(ref) + ATOL


def _report(name: str, ours: np.ndarray, ref: np.ndarray, cases: list) -> str:
    bad = np.flatnonzero(~_close(ours, ref))
    shown = [(cases[i], ours[i], ref[i]) for i in bad[:5]]
    return f"{name}: {len(bad)} of {len(ref)} differ from vollib, e.g. {shown}"


def _bsm_reference(cases):
    out = {f: [] for f in FIELDS}
    for m, t, r, q, v, flag in cases:
        k = SPOT * m
        out["price"].append(vbsm.black_scholes_merton(flag, SPOT, k, t, r, v, q))
        out["delta"].append(vbsm_greeks.delta(flag, SPOT, k, t, r, v, q))
        out["gamma"].append(vbsm_greeks.gamma(flag, SPOT, k, t, r, v, q))
        out["theta"].append(vbsm_greeks.theta(flag, SPOT, k, t, r, v, q))
        out["vega"].append(vbsm_greeks.vega(flag, SPOT, k, t, r, v, q))
    return {f: np.array(values, dtype=float) for f, values in out.items()}


def test_bsm_matches_vollib_on_the_grid():
    cases = list(itertools.product(MONEYNESS, TIMES, RATES, YIELDS, VOLS, ("c", "p")))
    m, t, r, q, v, flag = (np.array(c) for c in zip(*cases))
    ours = om.black_scholes_merton(SPOT, SPOT * m.astype(float), t.astype(float), r.astype(float),
                                   q.astype(float), v.astype(float), flag == "c")
    assert all(reason is None for reason in ours.reason)
    ref = _bsm_reference(cases)
    for field in FIELDS:
        values = getattr(ours, field)
        assert np.isfinite(values).all(), field
        assert _close(values, ref[field]).all(), _report(field, values, ref[field], cases)


@pytest.mark.parametrize("forward", [100.0, 111.5, 5990.0])
def test_black_76_matches_vollib_on_the_grid(forward):
    cases = list(itertools.product(MONEYNESS, TIMES, RATES, VOLS, ("c", "p")))
    m, t, r, v, flag = (np.array(c) for c in zip(*cases))
    k = forward * m.astype(float)
    ours = om.black_76(forward, k, t.astype(float), r.astype(float), v.astype(float), flag == "c")
    ref = {f: [] for f in FIELDS}
    for (_, tt, rr, vv, ff), kk in zip(cases, k):
        ref["price"].append(vblack.black(ff, forward, kk, tt, rr, vv))
        ref["delta"].append(vblack_greeks.delta(ff, forward, kk, tt, rr, vv))
        ref["gamma"].append(vblack_greeks.gamma(ff, forward, kk, tt, rr, vv))
        ref["theta"].append(vblack_greeks.theta(ff, forward, kk, tt, rr, vv))
        ref["vega"].append(vblack_greeks.vega(ff, forward, kk, tt, rr, vv))
    for field in FIELDS:
        values, expected = getattr(ours, field), np.array(ref[field])
        assert _close(values, expected).all(), _report(field, values, expected, cases)


def test_option_values_dispatches_per_element():
    is_future = np.array([False, True, False, True])
    out = om.option_values(
        np.array([100.0, 100.0, 50.0, 4000.0]), np.array([95.0, 95.0, 55.0, 4100.0]), 0.5, 0.04,
        np.array([0.02, 0.02, 0.0, 0.9]),  # q is ignored for the futures
        0.3, np.array([True, False, False, True]), is_future,
    )
    bsm = om.black_scholes_merton(np.array([100.0, 50.0]), np.array([95.0, 55.0]), 0.5, 0.04,
                                  np.array([0.02, 0.0]), 0.3, np.array([True, False]))
    b76 = om.black_76(np.array([100.0, 4000.0]), np.array([95.0, 4100.0]), 0.5, 0.04, 0.3, np.array([False, True]))
    for field in FIELDS:
        np.testing.assert_array_equal(getattr(out, field)[~is_future], getattr(bsm, field))
        np.testing.assert_array_equal(getattr(out, field)[is_future], getattr(b76, field))


def test_put_call_parity_holds_across_the_grid():
    cases = np.array(list(itertools.product(MONEYNESS, TIMES, RATES, YIELDS, VOLS)), dtype=float)
    m, t, r, q, v = cases.T
    k = SPOT * m
    call = om.black_scholes_merton(SPOT, k, t, r, q, v, True)
    put = om.black_scholes_merton(SPOT, k, t, r, q, v, False)
    forward_value = SPOT * np.exp(-q * t) - k * np.exp(-r * t)
    np.testing.assert_allclose(call.price - put.price, forward_value, rtol=0, atol=1e-11 * SPOT)
    # Delta parity: call delta - put delta = e^{-qT}; gamma and vega are the same for both.
    np.testing.assert_allclose(call.delta - put.delta, np.exp(-q * t), rtol=0, atol=1e-14)
    np.testing.assert_allclose(call.gamma, put.gamma, rtol=1e-14)
    np.testing.assert_allclose(call.vega, put.vega, rtol=1e-14)


def test_textbook_values():
    # Hull, Example 15.6 (Options, Futures and Other Derivatives): S=42, K=40, r=10%, sigma=20%,
    # T=0.5: call 4.76, put 0.81.
    call = om.black_scholes_merton(42.0, 40.0, 0.5, 0.1, 0.0, 0.2, True)
    put = om.black_scholes_merton(42.0, 40.0, 0.5, 0.1, 0.0, 0.2, False)
    assert float(call.price[()]) == pytest.approx(4.7594, abs=1e-4)
    assert float(put.price[()]) == pytest.approx(0.8086, abs=1e-4)
    # Haug p.4: S=100, K=95, q=5%, r=10%, T=0.5, sigma=20%: put 2.4648.
    assert float(om.black_scholes_merton(100.0, 95.0, 0.5, 0.1, 0.05, 0.2, False).price[()]) == pytest.approx(2.4648, abs=1e-4)


def test_theta_is_per_calendar_day_and_vega_per_vol_point():
    S, K, T, r, q, v = 100.0, 105.0, 0.4, 0.03, 0.01, 0.25
    base = om.black_scholes_merton(S, K, T, r, q, v, True)
    h = 1e-5
    later = om.black_scholes_merton(S, K, T - h, r, q, v, True).price
    earlier = om.black_scholes_merton(S, K, T + h, r, q, v, True).price
    assert float(base.theta[()]) == pytest.approx(float((later - earlier)[()]) / (2 * h) / 365.0, rel=1e-6)
    up = om.black_scholes_merton(S, K, T, r, q, v + h, True).price
    down = om.black_scholes_merton(S, K, T, r, q, v - h, True).price
    assert float(base.vega[()]) == pytest.approx(float((up - down)[()]) / (2 * h) * 0.01, rel=1e-6)


def test_erfc_and_norm_cdf_are_accurate_in_the_tails():
    x = np.linspace(-26.0, 26.0, 52001)
    reference = np.array([math.erfc(value) for value in x])
    ours = om.erfc(x)
    tiny = reference > 1e-300
    assert np.max(np.abs(ours[tiny] / reference[tiny] - 1)) < 5e-15
    assert om.norm_cdf(0.0)[()] == 0.5
    # Phi(-10) = 7.619853024160527e-24 (erfc(10/sqrt 2) / 2, to 16 digits).
    assert om.norm_cdf(-10.0)[()] == pytest.approx(7.619853024160527e-24, rel=1e-13)
    special = om.erfc(np.array([np.inf, -np.inf, np.nan, 40.0, -40.0]))
    assert special[0] == 0.0 and special[1] == 2.0 and np.isnan(special[2])
    assert special[3] == 0.0 and special[4] == 2.0


@pytest.mark.parametrize(
    ("S", "K", "T", "r", "q", "sigma", "reason"),
    [
        (100.0, 100.0, 0.0, 0.03, 0.0, 0.2, om.EXPIRED),
        (100.0, 100.0, -0.01, 0.03, 0.0, 0.2, om.EXPIRED),
        (100.0, 100.0, np.nan, 0.03, 0.0, 0.2, om.EXPIRED),
        (100.0, 100.0, 0.5, 0.03, 0.0, 0.0, om.MISSING_VOLATILITY),
        (100.0, 100.0, 0.5, 0.03, 0.0, -0.2, om.MISSING_VOLATILITY),
        (100.0, 100.0, 0.5, 0.03, 0.0, np.nan, om.MISSING_VOLATILITY),
        (100.0, 100.0, 0.5, 0.03, 0.0, np.inf, om.MISSING_VOLATILITY),
        (0.0, 100.0, 0.5, 0.03, 0.0, 0.2, om.MISSING_UNDERLYING_PRICE),
        (-5.0, 100.0, 0.5, 0.03, 0.0, 0.2, om.MISSING_UNDERLYING_PRICE),
        (np.nan, 100.0, 0.5, 0.03, 0.0, 0.2, om.MISSING_UNDERLYING_PRICE),
        (100.0, 0.0, 0.5, 0.03, 0.0, 0.2, om.MISSING_STRIKE),
        (100.0, np.nan, 0.5, 0.03, 0.0, 0.2, om.MISSING_STRIKE),
        (100.0, 100.0, 0.5, np.nan, 0.0, 0.2, om.MISSING_RATE),
        (100.0, 100.0, 0.5, 0.03, np.nan, 0.2, om.MISSING_RATE),
        (np.nan, 100.0, 0.0, 0.03, 0.0, np.nan, om.EXPIRED),  # expiry is reported first
    ],
)
def test_invalid_inputs_give_nan_and_a_reason_without_warnings(S, K, T, r, q, sigma, reason):
    good = (100.0, 100.0, 0.5, 0.03, 0.0, 0.2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = om.black_scholes_merton(
            np.array([S, good[0]]), np.array([K, good[1]]), np.array([T, good[2]]),
            np.array([r, good[3]]), np.array([q, good[4]]), np.array([sigma, good[5]]), np.array([True, False]),
        )
    assert list(out.reason) == [reason, None]
    assert reason in om.REASONS
    for field in FIELDS:
        values = getattr(out, field)
        assert np.isnan(values[0]), field
        assert np.isfinite(values[1]), field


def test_ten_thousand_options_price_fast():
    rng = np.random.default_rng(1)
    n = 10_000
    args = (
        rng.uniform(5, 600, n), rng.uniform(5, 600, n), rng.uniform(1 / 365, 2, n),
        rng.uniform(0, 0.08, n), rng.uniform(0, 0.05, n), rng.uniform(0.05, 1.5, n), rng.random(n) < 0.5,
        rng.random(n) < 0.3,
    )
    om.option_values(*args)
    start = time.perf_counter()
    out = om.option_values(*args)
    assert time.perf_counter() - start < 0.25
    assert np.isfinite(out.price).all()
