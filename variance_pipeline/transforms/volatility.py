"""Realised volatility per (symbol, session), computed in one numpy pass over the bars.

Why numpy over the sorted bars: a backfill is millions of rows, and every estimator is a sum over
the last n sessions of a symbol. With the bars sorted by symbol and session, those are window sums
over consecutive rows, taken in blocks of whole symbols: running sums for the close-to-close
windows (20 to 252 returns), sums by doubling for the 20-session range estimators. One pass
computes all ten columns; the same code serves the daily load (one session, 253 bars of lookback
per symbol), where the work is O(lookback), whatever length of history the caller passes.

Conventions (formulas as in R's TTR package), all annualised with N = 252 and returned as
fractions (0.20 = 20 %):

* ``hv20``, ``hv30``, ``hv90``, ``hv252``: close-to-close, ``sqrt(252) * stdev_sample(ln(C_t /
  C_{t-1}))`` over the last n log returns (n + 1 closes), ddof = 1.
* ``parkinson20``: ``sqrt(N / (4 n ln2) * sum ln(H/L)^2)``.
* ``garman_klass20``: ``sqrt(N / n * sum(0.5 ln(H/L)^2 - (2 ln2 - 1) ln(C/O)^2))``.
* ``rogers_satchell20``: ``sqrt(N / n * sum(ln(H/C) ln(H/O) + ln(L/C) ln(L/O)))``.
* ``yang_zhang20``: ``sqrt(s_o^2 + k s_c^2 + (1 - k) s_rs^2)`` with ``k = 0.34 / (1.34 + (n + 1)
  / (n - 1))``, ``s_o^2 = N * var_sample(ln(O_t / C_{t-1}))``, ``s_c^2 = N * var_sample(ln(C_t /
  O_t))`` and ``s_rs^2`` the Rogers-Satchell variance above.

The gap rule (a window never silently bridges a missing session):
    The expected sessions are the XNYS sessions (``calendar.sessions_in_range``) between each
    symbol's first and last bar in the input. A session without a bar (halted, not delivered)
    breaks the symbol's run of bars, and every return or range term that touches it is missing.
    An estimator over n sessions is reported only when all n of its terms in the window exist;
    otherwise it is NULL (NaN), exactly as when the history is too short. Once the window has
    moved past the gap, values come back. Bars dated on a non-XNYS day are ignored. A bar with a
    NULL, NaN, infinite or non-positive price is unusable and counts as missing for every
    estimator (its row is still reported, with the close as delivered, so that validation can
    flag it).

    "All n terms exist" is evaluated through ``run``, the number of usable bars on consecutive
    sessions ending at the session (0 when its own bar is unusable): HVn needs ``run >= n + 1``
    (n returns need n + 1 closes); Parkinson, Garman-Klass and Rogers-Satchell need
    ``run >= 20``; Yang-Zhang needs ``run >= 21`` (its 20 overnight returns need the close before
    the window). ``returns_available`` reports ``run - 1`` capped at 252: HVn is non-NULL exactly
    when ``returns_available >= n``.

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

import bisect
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from variance_pipeline.calendar import sessions_in_range
from variance_pipeline.schemas.realized_volatility import (
    HV_WINDOWS,
    LOOKBACK_SESSIONS,
    RANGE_ESTIMATORS,
    RANGE_WINDOW,
    REALIZED_VOLATILITY,
)

TRADING_DAYS = 252
# Rounding can push a variance that is analytically >= 0 a hair below zero; beyond this it is bad data.
NEGATIVE_VARIANCE_TOLERANCE = 1e-12
# Largest rounding error accepted from the cumulative-sum formulas, in volatility units (a tenth of
# the 1e-9 the tests ask for); a value whose bound exceeds it is recomputed from its window.
ROUNDING_TARGET = 1e-10

INPUT_COLUMNS = ("symbol", "session_date", "open", "high", "low", "close")
VOL_COLUMNS = (*(f"hv{n}" for n in HV_WINDOWS), *(f"{name}{RANGE_WINDOW}" for name in RANGE_ESTIMATORS))
OUTPUT_COLUMNS = REALIZED_VOLATILITY.names

_N = float(TRADING_DAYS)
_GK_OC = 2 * math.log(2.0) - 1
_YZ_K = 0.34 / (1.34 + (RANGE_WINDOW + 1) / (RANGE_WINDOW - 1))
_PARKINSON = _N / (4 * RANGE_WINDOW * math.log(2.0))
_UNIT_ROUNDOFF = np.finfo(np.float64).eps / 2
# Rows per block (whole symbols); ~0.5 MiB per float64 array, a few dozen of them at a time.
_BLOCK_ROWS = 1 << 16
_DAY_SLICE = 1 << 20
# Leading zeros of the running sums, so that every close-to-close window starts inside the array.
_PAD = LOOKBACK_SESSIONS + 1
# Above this log price, open + high + low + close could overflow (the SQL tested that sum).
_LOG_MAX = math.log(np.finfo(np.float64).max / 4)
# The range estimators' terms, summed over 20 rows by doubling.
_ON, _ON2, _OC, _OC2, _HL2, _RS = range(6)


# --- input ---------------------------------------------------------------------------------


@dataclass
class _Bars:
    """The input columns as arrays: Arrow strings, day numbers and float64 prices."""

    rows: int
    symbol: pa.ChunkedArray
    day: np.ndarray  # days since 1970-01-01 (int16 when they fit, else int32); NULL -> dtype min
    day_min: int | None
    day_max: int | None
    dates_are_dates: bool  # every session_date was a datetime.date (so the column can be shared)
    symbols_are_strings: bool  # no cast was needed (so the column can be shared)
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    frame: pd.DataFrame | None  # the caller's frame, when given as pandas


def _floats(column: pd.Series | pa.ChunkedArray) -> np.ndarray:
    """A price column as float64 (NULL -> NaN), without a copy when it already is one."""
    if isinstance(column, pd.Series):
        if column.dtype == np.float64:
            return column.to_numpy()
        return column.to_numpy(dtype=np.float64, na_value=np.nan)
    column = pc.cast(column, pa.float64())
    if column.num_chunks == 1 and column.null_count == 0:
        return column.chunk(0).to_numpy()
    return column.to_numpy()


def _strings(column: pd.Series | pa.ChunkedArray) -> tuple[pa.ChunkedArray, bool]:
    """The symbols as Arrow strings, and whether they already were strings (no cast needed)."""
    array = pa.array(column) if isinstance(column, pd.Series) else column
    if isinstance(array, pa.Array):
        array = pa.chunked_array([array])
    if pa.types.is_string(array.type) or pa.types.is_large_string(array.type):
        return array, True
    return pc.cast(array, pa.string()), False


_INT32_NULL = np.iinfo(np.int32).min
_INT16_NULL = np.iinfo(np.int16).min


def _day_numbers(column: pd.Series | pa.ChunkedArray, rows: int) -> tuple[np.ndarray, bool]:
    """Days since the epoch per row (NULL -> the dtype's minimum) and whether all were dates.

    pandas columns are converted a slice at a time and kept as int16 while the days fit
    (1880-2059): the frame already holds a pointer per row, the numbers need not take 4 bytes more.
    """
    if not isinstance(column, pd.Series):
        days = pc.cast(pc.cast(column, pa.date32()), pa.int32())
        return (pc.fill_null(days, _INT32_NULL) if days.null_count else days).to_numpy(), False
    out = np.empty(rows, np.int16)
    all_dates = True
    # Objects convert fastest from the numpy array (the pandas route checks every value for NaN);
    # a column that then fails (NaN among dates) takes the pandas route.
    values = column.to_numpy() if column.dtype == object else None
    for start in range(0, rows, _DAY_SLICE):
        try:
            arrow = pa.array(values[start : start + _DAY_SLICE]) if values is not None else None
        except (pa.ArrowException, TypeError, ValueError):
            arrow = None
        if arrow is None:
            arrow = pa.array(column.iloc[start : start + _DAY_SLICE])
        all_dates &= arrow.type == pa.date32()
        days = pc.cast(pc.cast(arrow, pa.date32()), pa.int32())
        chunk = (pc.fill_null(days, _INT32_NULL) if days.null_count else days).to_numpy()
        if out.dtype == np.int16:
            valid = chunk[chunk != _INT32_NULL] if days.null_count else chunk
            if len(valid) and (valid.min() <= _INT16_NULL or valid.max() > np.iinfo(np.int16).max):
                wide = np.empty(rows, np.int32)
                wide[:start] = np.where(out[:start] == _INT16_NULL, _INT32_NULL, out[:start])
                out = wide
            elif days.null_count:
                chunk = np.where(chunk == _INT32_NULL, _INT16_NULL, chunk)
        out[start : start + len(chunk)] = chunk
    return out, bool(all_dates)


def _read(candles: pd.DataFrame | pa.Table) -> _Bars:
    names = candles.column_names if isinstance(candles, pa.Table) else list(candles.columns)
    missing = [c for c in INPUT_COLUMNS if c not in names]
    if missing:
        raise ValueError(f"candles lack column(s) {missing}; need {list(INPUT_COLUMNS)}")
    frame = candles if isinstance(candles, pd.DataFrame) else None
    rows = len(candles) if frame is not None else candles.num_rows
    day, dates_are_dates = _day_numbers(candles["session_date"], rows)
    null = np.iinfo(day.dtype).min
    last = int(day.max(initial=null))  # NULL is the smallest value: the max is a date unless all are NULL
    first = int(day.min(where=day != null, initial=last))
    symbol, symbols_are_strings = _strings(candles["symbol"])
    return _Bars(
        rows=rows,
        symbol=symbol,
        day=day,
        day_min=first if last != null else None,
        day_max=last if last != null else None,
        dates_are_dates=dates_are_dates,
        symbols_are_strings=symbols_are_strings,
        **{c: _floats(candles[c]) for c in INPUT_COLUMNS[2:]},
        frame=frame,
    )


def _epoch_days(days: Sequence[date]) -> np.ndarray:
    return np.array(days, dtype="datetime64[D]").astype(np.int64)


def _as_date(day: int) -> date:
    return np.datetime64(day, "D").astype(date)


def _session_grid(first: date, last: date, requested: list[date]) -> list[date]:
    """The XNYS sessions the windows run over: the input's span, cut to the requested sessions.

    It starts ``LOOKBACK_SESSIONS`` sessions before the first requested session (or at the first
    bar) and ends at the last requested session (or the last bar); empty when nothing requested
    can have a bar.
    """
    if not requested:
        return []
    expected = sessions_in_range(first, min(last, requested[-1]))
    start = bisect.bisect_left(expected, requested[0])
    if start == len(expected):
        return []
    return expected[max(start - LOOKBACK_SESSIONS, 0) :]


# --- symbols -------------------------------------------------------------------------------


@dataclass
class _Groups:
    """Rows per symbol, in symbol order: ``order[starts[i]:starts[i + 1]]`` are symbol i's rows."""

    starts: np.ndarray  # int64, one more than there are symbols
    order: np.ndarray | None  # None: the input is already grouped by symbol in sorted order

    def __len__(self) -> int:
        return len(self.starts) - 1


def _group_symbols(symbol: pa.ChunkedArray) -> _Groups:
    rows = len(symbol)
    if symbol.null_count == 0 and rows > 1:
        changed = pc.not_equal(symbol.slice(1), symbol.slice(0, rows - 1))
        starts = np.concatenate([[0], np.flatnonzero(changed.to_numpy(zero_copy_only=False)) + 1, [rows]])
        firsts = symbol.take(pa.array(starts[:-1])).to_pylist()
        if all(a < b for a, b in zip(firsts, firsts[1:])):
            return _Groups(starts.astype(np.int64), None)
    elif rows <= 1:
        return _Groups(np.array([0, rows], np.int64), None)
    # Not sorted (or with NULL symbols, which sort last as in SQL): sort the row numbers once.
    encoded = pc.dictionary_encode(symbol.combine_chunks(), null_encoding="encode")
    names = encoded.dictionary.to_pylist()
    rank = np.empty(len(names), np.int64)
    rank[sorted(range(len(names)), key=lambda i: (names[i] is None, names[i] or ""))] = np.arange(len(names))
    codes = rank[encoded.indices.to_numpy()]
    order = np.argsort(codes, kind="stable")
    starts = np.concatenate([[0], np.cumsum(np.bincount(codes, minlength=len(names)))])
    return _Groups(starts.astype(np.int64), order)


# --- one block of bars ---------------------------------------------------------------------


class _Scratch:
    """Arrays reused from block to block: allocating per block would cost more than the arithmetic."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._arrays: dict[str, np.ndarray] = {}
        self.index = np.arange(capacity, dtype=np.int32)

    def __call__(self, name: str, m: int, planes: int = 0, dtype: Any = np.float64, pad: int = 0) -> np.ndarray:
        """A (planes x) (pad + m) array named ``name``; its contents are whatever was left there."""
        shape = (planes, pad + self.capacity) if planes else (pad + self.capacity,)
        array = self._arrays.get(name)
        if array is None:
            array = self._arrays[name] = np.empty(shape, dtype)
        elif array.shape != shape or array.dtype != dtype:  # pragma: no cover - a programming error
            raise AssertionError(f"scratch {name!r} asked as {shape} {dtype}, made as {array.shape} {array.dtype}")
        return array[..., : pad + m]


def _usable(o: np.ndarray, h: np.ndarray, l: np.ndarray, c: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", over="ignore"):
        return (o > 0) & (h > 0) & (l > 0) & (c > 0) & np.isfinite(o + h + l + c)


def _window_sums(x: np.ndarray, n: int, scratch: _Scratch, out: np.ndarray, name_prefix: str = "power") -> np.ndarray:
    """``out[:, i]`` = sum of the n values of ``x`` (planes x m) ending at column i (NaN: i < n - 1).

    Built by doubling (sums of 2, 4, 8, ... values), so that each sum carries the rounding of
    its own n terms only, and a window of exact zeros sums to exactly 0.
    """
    planes, m = x.shape
    out[:, : n - 1] = np.nan
    if m < n:
        return out
    kept: list[tuple[int, np.ndarray]] = []  # (k, sums of 2^k values starting at each column)
    power, k, alternate = x, 0, 0
    while True:
        if n >> k & 1:
            kept.append((k, power))
        if 1 << (k + 1) > n:
            break
        # The next power gets its own buffer if n needs it, else one of two that alternate.
        if n >> (k + 1) & 1:
            name = f"{name_prefix}{k + 1}"
        else:
            name, alternate = f"{name_prefix}{'ab'[alternate]}", 1 - alternate
        half = 1 << k
        target = scratch(name, m, planes)[:, : power.shape[1] - half]
        np.add(power[:, :-half], power[:, half:], out=target)
        power, k = target, k + 1
    start, width = 0, m - n + 1
    kept.sort(key=lambda item: -item[0])
    for i, (k, part) in enumerate(kept):
        part = part[:, start : start + width]
        if i == 0:
            first = part
        elif i == 1:
            np.add(first, part, out=out[:, n - 1 :])
        else:
            out[:, n - 1 :] += part
        start += 1 << k
    if len(kept) == 1:
        out[:, n - 1 :] = first
    return out


def _into(dest: np.ndarray, values: np.ndarray, report: np.ndarray | None) -> None:
    """Copy the reported rows (indices) of ``values`` to ``dest`` (nothing to do if computed in place)."""
    if report is not None:
        np.take(values, report, out=dest)
    elif values is not dest:
        dest[...] = values


class _Block:
    """One block of bars, sorted by symbol and session: log prices and runs, in scratch arrays."""

    def __init__(
        self,
        o: np.ndarray,
        h: np.ndarray,
        l: np.ndarray,
        c: np.ndarray,
        col: np.ndarray,  # grid column of each bar
        starts: np.ndarray,  # first row of each symbol, and the number of rows
        scratch: _Scratch,
    ) -> None:
        m = len(c)
        self.m, self.starts, self.firsts, self.scratch = m, starts, starts[:-1], scratch
        self.logs = logs = scratch("logs", m, 4)
        # Usable: every price positive and finite, and their sum finite (as the SQL had it).
        # Finite logs and no price near overflow say so for the whole block in two reductions.
        with np.errstate(divide="ignore", invalid="ignore"):
            for plane, prices in zip(logs, (o, h, l, c)):
                np.log(prices, out=plane)
            all_usable = bool(np.isfinite(logs.sum()) and logs.max() < _LOG_MAX)
        usable = None
        if not all_usable:
            usable = _usable(o, h, l, c)
            np.copyto(logs, 0.0, where=~usable)  # unusable bars: log price 0, range terms exactly 0
        # A run of usable bars on consecutive sessions breaks before a bar that starts a symbol,
        # follows a missing session or follows an unusable bar.
        breaks = scratch("breaks", m, dtype=bool)
        breaks[0] = True
        np.not_equal(col[1:] - col[:-1], 1, out=breaks[1:])
        breaks[self.firsts] = True
        if usable is not None:
            breaks[1:] |= ~usable[:-1]
        self.pair = pair = scratch("pair", m, dtype=bool)  # the return ending at this bar exists
        np.logical_not(breaks, out=pair)
        if usable is not None:
            pair &= usable
        index = scratch.index[:m]
        self.run = run = scratch("run", m, dtype=np.int32)
        np.multiply(index, breaks, out=run)
        np.maximum.accumulate(run, out=run)
        np.subtract(index, run, out=run)
        run += 1
        if usable is not None:
            run[~usable] = 0

    def mask(self, name: str, compare: Any, n: int) -> np.ndarray:
        return compare(self.run, n, out=self.scratch(name, self.m, dtype=bool))

    def windows(self, rows: np.ndarray, n: int) -> np.ndarray:
        """Log prices of the n + 1 bars ending at each of ``rows``: (4, len(rows), n + 1)."""
        return self.logs[:, rows[:, None] + np.arange(-n, 1)]

    def per_symbol(self, reduce: Any, values: np.ndarray) -> np.ndarray:
        return reduce.reduceat(values, self.firsts)

    def risky_rows(self, variance: np.ndarray, threshold: np.ndarray) -> np.ndarray:
        """Rows whose (NaN where invalid) variance is below its symbol's threshold."""
        low = self.per_symbol(np.fmin, variance)
        rows = [np.arange(self.starts[k], self.starts[k + 1]) for k in np.flatnonzero(low < threshold)]
        if not rows:
            return np.empty(0, np.int64)
        rows = np.concatenate(rows)
        return rows[variance[rows] < np.repeat(threshold, np.diff(self.starts))[rows]]


def _two_pass(x: np.ndarray) -> np.ndarray:
    """sum((x - mean)^2) along the last axis."""
    return np.square(x - x.mean(axis=-1, keepdims=True)).sum(axis=-1)


def _batches(rows: np.ndarray, n: int) -> Iterator[np.ndarray]:
    step = max(1, (1 << 18) // (n + 1))
    for i in range(0, len(rows), step):
        yield rows[i : i + step]


def _sqrt_into(variance: np.ndarray, dest: np.ndarray, report: np.ndarray | None) -> None:
    """``dest = sqrt(variance)`` for the reported rows (straight into the output when all are)."""
    if report is None:
        np.sqrt(variance, out=dest)
    else:
        np.sqrt(variance, out=variance)
        np.take(variance, report, out=dest)


def _finish(variance: np.ndarray, dest: np.ndarray, report: np.ndarray | None) -> None:
    """sqrt of a variance (NaN = NULL): rounding-level negatives -> 0, genuine negatives -> NULL."""
    if not np.fmin.reduce(variance, initial=np.inf) >= 0:
        np.copyto(variance, np.nan, where=variance < -NEGATIVE_VARIANCE_TOLERANCE)
        np.maximum(variance, 0.0, out=variance)
    _sqrt_into(variance, dest, report)


def _close_to_close(block: _Block, report: np.ndarray | None, dest: dict[str, np.ndarray]) -> None:
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
        for rows in _batches(risky, n):
            closes = block.windows(rows, n)[3]
            variance[rows] = scale * _two_pass(closes[:, 1:] - closes[:, :-1])
        _sqrt_into(variance, dest[f"hv{n}"], report)


def _range_estimators(block: _Block, report: np.ndarray | None, dest: dict[str, np.ndarray]) -> None:
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
        _window_sums(terms[plane : plane + 1], n, scratch, sums[plane : plane + 1])
    short, shorter = block.mask("short", np.less, n), block.mask("shorter", np.less_equal, n)

    garman_klass = np.multiply(sums[_HL2], 0.5 * _N / n, out=scratch("garman_klass", m))
    garman_klass -= np.multiply(sums[_OC2], _GK_OC * _N / n, out=a)
    np.copyto(garman_klass, np.nan, where=short)
    if not consistent:
        # Rounding of the two sums, against sqrt's sensitivity near 0 (see _close_to_close).
        error = 8 * _UNIT_ROUNDOFF * _N / n * (0.5 * sums[_HL2] + _GK_OC * sums[_OC2])
        for rows in _batches(np.flatnonzero(np.square(error) > 4 * ROUNDING_TARGET**2 * np.abs(garman_klass)), n):
            o, h, l, c = block.windows(rows, n - 1)
            garman_klass[rows] = _N / n * (0.5 * np.square(h - l) - _GK_OC * np.square(c - o)).sum(axis=1)

    rogers_satchell = sums[_RS]
    rogers_satchell *= _N / n
    if not consistent:
        o, h, l, c = block.logs
        absolute = (np.abs((h - c) * (h - o)) + np.abs((l - c) * (l - o)))[None]  # the parts' sizes
        absolute = _window_sums(absolute, n, scratch, scratch("absolute", m, 1), "absolute")[0]
        error = 8 * _UNIT_ROUNDOFF * _N / n * absolute
        risky = (np.square(error) > 4 * ROUNDING_TARGET**2 * np.abs(rogers_satchell)) & ~short
        for rows in _batches(np.flatnonzero(risky), n):
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
    for rows in _batches(risky, n):
        o, h, l, c = block.windows(rows, n)
        overnight = o[:, 1:] - c[:, :-1]
        o, h, l, c = o[:, 1:], h[:, 1:], l[:, 1:], c[:, 1:]
        rs = ((h - c) * (h - o) + (l - c) * (l - o)).sum(axis=1)
        yang_zhang[rows] = scale_o * _two_pass(overnight) + scale_c * _two_pass(c - o) + (1 - _YZ_K) * _N / n * rs
    np.copyto(rogers_satchell, np.nan, where=short)

    parkinson = sums[_HL2]
    parkinson *= _PARKINSON
    np.copyto(parkinson, np.nan, where=short)
    _sqrt_into(parkinson, dest[f"parkinson{n}"], report)
    _finish(garman_klass, dest[f"garman_klass{n}"], report)
    _finish(rogers_satchell, dest[f"rogers_satchell{n}"], report)
    _finish(yang_zhang, dest[f"yang_zhang{n}"], report)


def _block_volatility(block: _Block, report: np.ndarray | None, dest: dict[str, np.ndarray]) -> None:
    """Fill ``dest`` (the reported rows' slice of the output) with every column but close."""
    available = dest["returns_available"] if report is None else block.scratch("available", block.m, dtype=np.int64)
    np.clip(block.run, 1, max(HV_WINDOWS) + 1, out=available)
    available -= 1
    _into(dest["returns_available"], available, report)
    _close_to_close(block, report, dest)
    _range_estimators(block, report, dest)


# --- the function ----------------------------------------------------------------------------


def _empty() -> pd.DataFrame:
    schema = pa.schema(
        [
            ("symbol", pa.string()),
            ("session_date", pa.date32()),
            *((c, pa.float64()) for c in ("close", *VOL_COLUMNS)),
            ("returns_available", pa.int64()),
        ]
    )
    return schema.empty_table().to_pandas()


def _blocks(groups: _Groups) -> Iterator[tuple[int, int]]:
    """Consecutive ranges of symbols [first, last) with about ``_BLOCK_ROWS`` rows."""
    first = 0
    while first < len(groups):
        by_rows = int(np.searchsorted(groups.starts, groups.starts[first] + _BLOCK_ROWS, side="right")) - 1
        last = max(first + 1, min(by_rows, len(groups)))
        yield first, last
        first = last


def _offsets(days: np.ndarray, first_day: int, span: int) -> np.ndarray:
    """Day numbers -> index into a lookup padded by one entry each side (0: before, span + 1: after)."""
    offset = days.astype(np.int32 if days.dtype == np.int16 else np.int64)
    offset -= first_day - 1
    return np.clip(offset, 0, span + 1, out=offset)


def _report_count(bars: _Bars, groups: _Groups, first_day: int, span: int, reported: np.ndarray) -> tuple[int, bool]:
    """How many rows are reported, and whether the rows are already sorted by symbol and date."""
    total, rising, previous = 0, groups.order is None, None
    for start in range(0, bars.rows, _DAY_SLICE):
        day = bars.day[start : start + _DAY_SLICE]
        total += int(np.count_nonzero(reported[_offsets(day, first_day, span)]))
        if rising:
            day = day.astype(np.int64)
            step = np.diff(day, prepend=day[0] - 1 if previous is None else previous) > 0
            step[groups.starts[(groups.starts >= start) & (groups.starts < start + len(day))] - start] = True
            rising = bool(step.all())
            previous = day[-1]
    return total, rising


def compute_realized_volatility(
    candles: pd.DataFrame | pa.Table,
    sessions: Sequence[date],
) -> pd.DataFrame:
    """Realised volatility for every requested session on which a symbol has a bar.

    ``candles`` holds one daily bar per (symbol, session_date) with ``open, high, low, close``
    (other columns are ignored) and must include the lookback: the 252 sessions before the first
    requested session for HV252 (21 for Yang-Zhang, 20 for the other range estimators). Older
    history is skipped before the windows run, so passing a long history for a daily load costs
    little.
    ``sessions`` are the sessions to report; the rest of ``candles`` only feeds the windows.

    Returns one row per (symbol, session_date), sorted by both, with columns ``symbol,
    session_date`` (``datetime.date``), ``close``, the float64 volatilities ``hv20, hv30, hv90,
    hv252, parkinson20, garman_klass20, rogers_satchell20, yang_zhang20`` (NaN = NULL: too
    little history, or a gap in the window, see the module docstring), and ``returns_available``
    (int64): the number of consecutive close-to-close returns ending at the session, capped at
    252, so that HVn is non-NULL exactly when ``returns_available >= n``.

    When the output rows are the input rows (a frame sorted by symbol and date whose every bar is
    reported, as in a full backfill), ``symbol``, ``session_date`` and ``close`` are the input's
    columns (shared copy-on-write, like any pandas column selection): the backfill then needs
    memory only for the eight volatilities and ``returns_available``.

    Raises ``ValueError`` on missing columns or duplicate (symbol, session_date) bars, which
    would otherwise make every window silently wrong.
    """
    bars = _read(candles)
    requested = sorted(set(sessions))
    if bars.day_min is None or not requested:
        return _empty()
    grid = _session_grid(_as_date(bars.day_min), _as_date(bars.day_max), requested)
    if not grid:
        return _empty()
    grid_days = _epoch_days(grid)
    first_day, span = int(grid_days[0]), int(grid_days[-1] - grid_days[0]) + 1
    # Lookups by calendar day (see _offsets): grid column (-1: no session), and whether reported.
    column_of = np.full(span + 2, -1, np.int64)
    column_of[grid_days - first_day + 1] = np.arange(len(grid))
    asked = _epoch_days(requested) - first_day + 1
    asked = asked[(asked >= 1) & (asked <= span)]
    reported = np.zeros(span + 2, bool)
    reported[asked[column_of[asked] >= 0]] = True

    groups = _group_symbols(bars.symbol)
    total, in_order = _report_count(bars, groups, first_day, span, reported)
    same_rows = in_order and total == bars.rows
    frame = bars.frame if same_rows else None
    share_dates = frame is not None and bars.dates_are_dates
    share_close = frame is not None and frame["close"].dtype == np.float64

    out = {name: np.empty(total) for name in VOL_COLUMNS}
    out["returns_available"] = np.empty(total, np.int64)
    close = None if share_close else np.empty(total)
    dates = None if share_dates else np.empty(total, dtype=object)
    grid_dates = np.empty(len(grid), dtype=object)
    grid_dates[:] = grid
    symbol_parts: list[pa.ChunkedArray] = []

    written = 0
    blocks = list(_blocks(groups))
    scratch = _Scratch(max(int(groups.starts[last] - groups.starts[first]) for first, last in blocks))
    for first, last in blocks:
        lo, hi = int(groups.starts[first]), int(groups.starts[last])
        rows: slice | np.ndarray = slice(lo, hi) if groups.order is None else groups.order[lo:hi]
        sym: np.ndarray | None = None  # the rows' symbols (block-local), once rows are dropped or moved

        def symbols() -> np.ndarray:
            return np.repeat(np.arange(last - first), np.diff(groups.starts[first : last + 1]))

        def positions() -> np.ndarray:
            return np.arange(lo, hi) if isinstance(rows, slice) else rows

        offset = _offsets(bars.day[rows], first_day, span)
        if not same_rows:
            # Duplicates count within the grid's dates, non-sessions included (as the old SQL did).
            inside = (offset >= 1) & (offset <= span)
            sym = symbols()[inside]
            rows, offset = positions()[inside], offset[inside]
            key = sym * span + offset
            if len(key) > 1 and not (key[1:] > key[:-1]).all():
                by_key = np.argsort(key, kind="stable")
                rows, sym, offset, key = rows[by_key], sym[by_key], offset[by_key], key[by_key]
                duplicate = np.flatnonzero(key[1:] == key[:-1])[:5]
                if len(duplicate):
                    names = bars.symbol.take(pa.array(rows[duplicate])).to_pylist()
                    days = [_as_date(first_day - 1 + int(d)) for d in offset[duplicate]]
                    raise ValueError(
                        f"candles have more than one bar per (symbol, session_date), e.g. {list(zip(names, days))}"
                    )
        col = column_of[offset]
        on_grid = col >= 0
        if not on_grid.all():
            sym = symbols() if sym is None else sym
            sym, rows, offset, col = sym[on_grid], positions()[on_grid], offset[on_grid], col[on_grid]
        report: np.ndarray | None = np.flatnonzero(reported[offset])  # block rows to report
        count = len(report)
        if not count:
            continue
        if count == len(offset):
            report = None
        if sym is None:
            starts = groups.starts[first : last + 1] - lo
        else:
            starts = np.concatenate([[0], np.flatnonzero(sym[1:] != sym[:-1]) + 1, [len(sym)]])
        block = _Block(bars.open[rows], bars.high[rows], bars.low[rows], bars.close[rows], col, starts, scratch)
        piece = slice(written, written + count)
        _block_volatility(block, report, {name: values[piece] for name, values in out.items()})
        if not same_rows:
            source = positions() if report is None else positions()[report]
            symbol_parts.append(bars.symbol.take(pa.array(source)))
        if close is not None:
            _into(close[piece], bars.close[rows], report)
        if dates is not None:
            np.take(grid_dates, col if report is None else col[report], out=dates[piece])
        written += count
    if written != total:  # pragma: no cover - the first pass counted the same rows
        raise AssertionError(f"volatility rows: counted {total}, computed {written}")

    if frame is not None and bars.symbols_are_strings and frame["symbol"].dtype == _STRING_DTYPE:
        symbol = frame["symbol"].reset_index(drop=True)  # shared, copy-on-write
    elif same_rows:
        symbol = bars.symbol.to_pandas()
    else:
        # The parts' chunks, not the parts: pa.chunked_array would convert ChunkedArrays value by value.
        symbol = pa.chunked_array([chunk for part in symbol_parts for chunk in part.chunks], bars.symbol.type).to_pandas()
    columns: dict[str, Any] = {
        "symbol": symbol,
        "session_date": frame["session_date"].reset_index(drop=True) if share_dates else dates,
        "close": frame["close"].reset_index(drop=True) if share_close else close,
        **out,
    }
    return pd.DataFrame({name: columns[name] for name in OUTPUT_COLUMNS}, index=pd.RangeIndex(total), copy=False)


_STRING_DTYPE = pa.array(["x"]).to_pandas().dtype  # how pandas holds strings from Arrow (str / object)
