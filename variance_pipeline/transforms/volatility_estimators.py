"""Close-to-close and range estimators over one block of bars (``volatility_blocks.Block``).

Negative variance: the Garman-Klass, Rogers-Satchell and Yang-Zhang variances cannot be negative
for consistent bars (L <= O, C <= H); a sum below zero is either floating-point rounding (within
``1e-12``, clamped to 0) or a bar whose open or close lies outside its high-low range, which gives
NULL rather than a made-up number. A zero-range bar (H = L = O = C) contributes exactly 0.

Precision: a sample variance is ``sum(x^2) - sum(x)^2 / n``, and the close-to-close window sums
are differences of running sums (restarted at every symbol). Missing terms are exactly 0, so a
window of exactly-zero terms (a flat price) gives exactly 0. Otherwise rounding grows with the
running sums and with cancellation (returns almost equal but not zero); every value whose error
bound could exceed ``ROUNDING_TARGET`` (1e-10, in volatility units) is recomputed from its window
directly (two-pass variance). With real prices that happens only for windows whose daily
standard deviation is below about 1e-5.
"""

from __future__ import annotations

import math

import numpy as np

from variance_pipeline.schemas.realized_volatility import HV_WINDOWS, LOOKBACK_SESSIONS, RANGE_WINDOW
from variance_pipeline.transforms.volatility_blocks import Block, batches, finish, into, sqrt_into, two_pass, window_sums

TRADING_DAYS = 252
# Largest rounding error accepted from the cumulative-sum formulas, in volatility units (a tenth of
# the 1e-9 the tests ask for); a value whose bound exceeds it is recomputed from its window.
ROUNDING_TARGET = 1e-10

_N = float(TRADING_DAYS)
_GK_OC = 2 * math.log(2.0) - 1
_YZ_K = 0.34 / (1.34 + (RANGE_WINDOW + 1) / (RANGE_WINDOW - 1))
_PARKINSON = _N / (4 * RANGE_WINDOW * math.log(2.0))
_UNIT_ROUNDOFF = np.finfo(np.float64).eps / 2
# Leading zeros of the running sums, so that every close-to-close window starts inside the array.
_PAD = LOOKBACK_SESSIONS + 1
# The range estimators' terms, summed over 20 rows by doubling.
_ON, _ON2, _OC, _OC2, _HL2, _RS = range(6)


def _close_to_close(block: Block, report: np.ndarray | None, dest: dict[str, np.ndarray]) -> None:
    m, first, scratch = block.m, block.firsts, block.scratch
    log_c = block.logs[3]
    sums = scratch("running", m, 2, pad=_PAD)
    sums[:, :_PAD] = 0.0
    returns, squares = sums[:, _PAD:]
    returns[0] = 0.0
    np.subtract(log_c[1:], log_c[:-1], out=returns[1:])
    returns *= block.pair
    np.square(returns, out=squares)
    if len(first) > 1:
        # Restart the running sums at every symbol: its first term (no return: 0) becomes minus
        # the previous symbol's total, so that they stay the size of one symbol's sums.
        totals = np.add.reduceat(sums[:, _PAD:], first, axis=1)
        sums[:, _PAD + first[1:]] = -totals[:, :-1]
    np.cumsum(sums[:, _PAD:], axis=1, out=sums[:, _PAD:])
    s1, s2 = sums[:, _PAD:]
    # Largest |running sum| per symbol: what the rounding of a window sum scales with.
    m1 = np.maximum(block.per_symbol(np.maximum, s1), -block.per_symbol(np.minimum, s1))
    m2 = np.maximum(np.abs(s2[first]), np.abs(s2[block.starts[1:] - 1]))
    window = scratch("window", m, 2)
    linear, variance = window
    for n in HV_WINDOWS:
        scale = _N / (n - 1)
        np.subtract(sums[:, _PAD:], sums[:, _PAD - n : _PAD + m - n], out=window)
        np.square(linear, out=linear)
        linear *= scale / n
        variance *= scale
        variance -= linear
        np.copyto(variance, np.nan, where=block.mask("invalid", np.less_equal, n))
        # |error| <= err(s2) + 2 |s1| err(s1) / n + own rounding, with |s1| <= 2 max|S1|; the
        # volatility moves by at most error / (2 sqrt(variance)).
        error = scale * _UNIT_ROUNDOFF * ((n + 2) * 1.1 * (m2 + 4 / n * m1 * m1) + 2 * m2)
        risky = block.risky_rows(variance, np.square(error) / (4 * ROUNDING_TARGET**2))
        risky = risky[(s1[risky] != s1[risky - n]) | (s2[risky] != s2[risky - n])]  # zeros are exact
        for rows in batches(risky, n):
            closes = block.windows(rows, n)[3]
            variance[rows] = scale * two_pass(closes[:, 1:] - closes[:, :-1])
        sqrt_into(variance, dest[f"hv{n}"], report)


def _range_estimators(block: Block, report: np.ndarray | None, dest: dict[str, np.ndarray]) -> None:
    n, m, scratch = RANGE_WINDOW, block.m, block.scratch
    log_o, log_h, log_l, log_c = block.logs
    terms = scratch("terms", m, 6)
    terms[_ON, 0] = 0.0
    np.subtract(log_o[1:], log_c[:-1], out=terms[_ON, 1:])
    terms[_ON] *= block.pair
    np.subtract(log_c, log_o, out=terms[_OC])
    np.subtract(log_h, log_l, out=terms[_HL2])
    np.square(terms[_ON], out=terms[_ON2])
    np.square(terms[_OC], out=terms[_OC2])
    np.square(terms[_HL2], out=terms[_HL2])
    a, b = scratch("a", m), scratch("b", m)
    np.multiply(np.subtract(log_h, log_c, out=a), np.subtract(log_h, log_o, out=b), out=terms[_RS])
    terms[_RS] += np.multiply(np.subtract(log_l, log_c, out=a), np.subtract(log_l, log_o, out=b), out=a)
    # Consistent bars (L <= O, C <= H) have |ln(C/O)| <= ln(H/L) and Rogers-Satchell terms >= 0:
    # then no Garman-Klass or Rogers-Satchell sum can lose digits to cancellation.
    consistent = bool(np.less_equal(terms[_OC2], terms[_HL2], out=scratch("le", m, dtype=bool)).all())
    consistent = consistent and terms[_RS].min() >= 0
    sums = scratch("sums", m, 6)
    for plane in range(6):  # a plane at a time: the doubling's arrays then stay in cache
        window_sums(terms[plane : plane + 1], n, scratch, sums[plane : plane + 1])
    short, shorter = block.mask("short", np.less, n), block.mask("shorter", np.less_equal, n)

    garman_klass = np.multiply(sums[_HL2], 0.5 * _N / n, out=scratch("garman_klass", m))
    garman_klass -= np.multiply(sums[_OC2], _GK_OC * _N / n, out=a)
    np.copyto(garman_klass, np.nan, where=short)
    if not consistent:
        # Rounding of the two sums, against sqrt's sensitivity near 0 (see _close_to_close).
        error = 8 * _UNIT_ROUNDOFF * _N / n * (0.5 * sums[_HL2] + _GK_OC * sums[_OC2])
        for rows in batches(np.flatnonzero(np.square(error) > 4 * ROUNDING_TARGET**2 * np.abs(garman_klass)), n):
            o, h, l, c = block.windows(rows, n - 1)
            garman_klass[rows] = _N / n * (0.5 * np.square(h - l) - _GK_OC * np.square(c - o)).sum(axis=1)

    rogers_satchell = sums[_RS]
    rogers_satchell *= _N / n
    if not consistent:
        o, h, l, c = block.logs
        absolute = (np.abs((h - c) * (h - o)) + np.abs((l - c) * (l - o)))[None]  # the parts' sizes
        absolute = window_sums(absolute, n, scratch, scratch("absolute", m, 1), "absolute")[0]
        error = 8 * _UNIT_ROUNDOFF * _N / n * absolute
        risky = (np.square(error) > 4 * ROUNDING_TARGET**2 * np.abs(rogers_satchell)) & ~short
        for rows in batches(np.flatnonzero(risky), n):
            o, h, l, c = block.windows(rows, n - 1)
            rogers_satchell[rows] = _N / n * ((h - c) * (h - o) + (l - c) * (l - o)).sum(axis=1)

    # Yang-Zhang: N var(overnight) + k N var(open-to-close) + (1 - k) RS; one usable bar more.
    scale_o, scale_c = _N / (n - 1), _YZ_K * _N / (n - 1)
    largest = scale_o * block.per_symbol(np.fmax, sums[_ON2]) + scale_c * block.per_symbol(np.fmax, sums[_OC2])
    largest += (1 - _YZ_K) * block.per_symbol(np.fmax, np.abs(rogers_satchell, out=a))
    for linear, squares, scale in ((_ON, _ON2, scale_o), (_OC, _OC2, scale_c)):
        # scale * (sum(x^2) - sum(x)^2 / n), in place
        np.square(sums[linear], out=sums[linear])
        sums[linear] *= scale / n
        sums[squares] *= scale
        sums[squares] -= sums[linear]
    yang_zhang = sums[_ON2]
    yang_zhang += sums[_OC2]
    yang_zhang += np.multiply(rogers_satchell, 1 - _YZ_K, out=a)
    np.copyto(yang_zhang, np.nan, where=shorter)
    # Each variance sum of 20 terms is within ~20 u of its sum of squares (the sums are local).
    risky = block.risky_rows(yang_zhang, np.square(24 * _UNIT_ROUNDOFF * largest) / (4 * ROUNDING_TARGET**2))
    for rows in batches(risky, n):
        o, h, l, c = block.windows(rows, n)
        overnight = o[:, 1:] - c[:, :-1]
        o, h, l, c = o[:, 1:], h[:, 1:], l[:, 1:], c[:, 1:]
        rs = ((h - c) * (h - o) + (l - c) * (l - o)).sum(axis=1)
        yang_zhang[rows] = scale_o * two_pass(overnight) + scale_c * two_pass(c - o) + (1 - _YZ_K) * _N / n * rs
    np.copyto(rogers_satchell, np.nan, where=short)

    parkinson = sums[_HL2]
    parkinson *= _PARKINSON
    np.copyto(parkinson, np.nan, where=short)
    sqrt_into(parkinson, dest[f"parkinson{n}"], report)
    finish(garman_klass, dest[f"garman_klass{n}"], report)
    finish(rogers_satchell, dest[f"rogers_satchell{n}"], report)
    finish(yang_zhang, dest[f"yang_zhang{n}"], report)


def block_volatility(block: Block, report: np.ndarray | None, dest: dict[str, np.ndarray]) -> None:
    """Fill ``dest`` (the reported rows' slice of the output) with every column but close."""
    available = dest["returns_available"] if report is None else block.scratch("available", block.m, dtype=np.int64)
    np.clip(block.run, 1, max(HV_WINDOWS) + 1, out=available)
    available -= 1
    into(dest["returns_available"], available, report)
    _close_to_close(block, report, dest)
    _range_estimators(block, report, dest)
