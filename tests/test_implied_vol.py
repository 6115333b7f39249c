"""Implied volatility from a position's own mark, against vollib's (an independent implementation)."""

from __future__ import annotations

import numpy as np
import pytest
from vollib.black import black
from vollib.black.implied_volatility import implied_volatility as black_iv
from vollib.black_scholes_merton import black_scholes_merton as bsm
from vollib.black_scholes_merton.implied_volatility import implied_volatility as bsm_iv

from variance_pipeline.transforms.implied_vol import (
    BELOW_INTRINSIC,
    EXPIRES_TODAY,
    NO_MARK,
    implied_vol_from_mark,
)


def grid(seed: int, n: int = 400) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    S = rng.uniform(20, 6000, n)
    K = S * rng.uniform(0.75, 1.25, n)
    T = rng.uniform(3 / 365, 1.5, n)
    r = rng.uniform(0.0, 0.06, n)
    q = rng.uniform(0.0, 0.04, n)
    sigma = rng.uniform(0.06, 1.5, n)
    call = rng.uniform(size=n) < 0.5
    return S, K, T, r, q, sigma, call


def test_bsm_iv_from_marks_matches_vollib_to_1e6() -> None:
    S, K, T, r, q, sigma, call = grid(7)
    marks = np.array([bsm("c" if c else "p", s, k, t, rr, v, qq) for s, k, t, rr, qq, v, c in zip(S, K, T, r, q, sigma, call)])
    vol, reason = implied_vol_from_mark(marks, S, K, T, r, q, call, np.zeros(len(S), bool))
    # Marks worth less than a hundredth of a cent carry no usable IV for anyone: skip those.
    usable = marks > 1e-4
    assert all(x is None for x in reason[usable])
    reference = np.array([
        bsm_iv(m, s, k, t, rr, qq, "c" if c else "p")
        for m, s, k, t, rr, qq, c in zip(marks[usable], S[usable], K[usable], T[usable], r[usable], q[usable], call[usable])
    ])
    assert np.max(np.abs(vol[usable] - reference)) < 1e-6


def test_black76_iv_from_marks_matches_vollib_to_1e6() -> None:
    F, K, T, r, _, sigma, call = grid(11)
    marks = np.array([black("c" if c else "p", f, k, t, rr, v) for f, k, t, rr, v, c in zip(F, K, T, r, sigma, call)])
    vol, reason = implied_vol_from_mark(marks, F, K, T, r, np.full(len(F), np.nan), call, np.ones(len(F), bool))
    usable = marks > 1e-4
    assert all(x is None for x in reason[usable])
    reference = np.array([
        black_iv(m, f, k, rr, t, "c" if c else "p")
        for m, f, k, rr, t, c in zip(marks[usable], F[usable], K[usable], r[usable], T[usable], call[usable])
    ])
    assert np.max(np.abs(vol[usable] - reference)) < 1e-6


def test_no_iv_with_a_reason_when_the_mark_cannot_carry_one() -> None:
    S = np.array([100.0, 100.0, 100.0, 100.0])
    K = np.array([90.0, 100.0, 100.0, 100.0])
    T = np.array([0.2, 0.2, 0.5 / (365 * 24), 0.2])
    r, q = np.full(4, 0.04), np.zeros(4)
    call = np.array([True, True, True, True])
    marks = np.array([9.0, np.nan, 1.0, 3.0])  # 9 < intrinsic 10 (plus carry); no mark; half an hour left
    vol, reason = implied_vol_from_mark(marks, S, K, T, r, q, call, np.zeros(4, bool))
    assert list(reason[:3]) == [BELOW_INTRINSIC, NO_MARK, EXPIRES_TODAY]
    assert np.isnan(vol[:3]).all()
    assert reason[3] is None and vol[3] == pytest.approx(bsm_iv(3.0, 100, 100, 0.2, 0.04, 0.0, "c"), abs=1e-6)
