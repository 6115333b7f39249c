"""One block of whole symbols, sorted by symbol and session: the arrays the estimators share.

Why blocks: allocating the dozens of float64 arrays per symbol would cost more than the arithmetic,
so symbols are taken a block at a time (``volatility._BLOCK_ROWS`` rows) into scratch arrays
reused from block to block. Here are the block (log prices, runs of usable bars on consecutive
sessions), window sums by doubling, and the helpers that turn a variance into a volatility
(clamping rounding-level negatives, recomputing windows whose rounding bound is too large).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np

# Rounding can push a variance that is analytically >= 0 a hair below zero; beyond this it is bad data.
NEGATIVE_VARIANCE_TOLERANCE = 1e-12
# Above this log price, open + high + low + close could overflow (the SQL tested that sum).
_LOG_MAX = math.log(np.finfo(np.float64).max / 4)


class Scratch:
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


def window_sums(x: np.ndarray, n: int, scratch: Scratch, out: np.ndarray, name_prefix: str = "power") -> np.ndarray:
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


def into(dest: np.ndarray, values: np.ndarray, report: np.ndarray | None) -> None:
    """Copy the reported rows (indices) of ``values`` to ``dest`` (nothing to do if computed in place)."""
    if report is not None:
        np.take(values, report, out=dest)
    elif values is not dest:
        dest[...] = values


class Block:
    """One block of bars, sorted by symbol and session: log prices and runs, in scratch arrays."""

    def __init__(
        self,
        o: np.ndarray,
        h: np.ndarray,
        l: np.ndarray,
        c: np.ndarray,
        col: np.ndarray,  # grid column of each bar
        starts: np.ndarray,  # first row of each symbol, and the number of rows
        scratch: Scratch,
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


def two_pass(x: np.ndarray) -> np.ndarray:
    """sum((x - mean)^2) along the last axis."""
    return np.square(x - x.mean(axis=-1, keepdims=True)).sum(axis=-1)


def batches(rows: np.ndarray, n: int) -> Iterator[np.ndarray]:
    step = max(1, (1 << 18) // (n + 1))
    for i in range(0, len(rows), step):
        yield rows[i : i + step]


def sqrt_into(variance: np.ndarray, dest: np.ndarray, report: np.ndarray | None) -> None:
    """``dest = sqrt(variance)`` for the reported rows (straight into the output when all are)."""
    if report is None:
        np.sqrt(variance, out=dest)
    else:
        np.sqrt(variance, out=variance)
        np.take(variance, report, out=dest)


def finish(variance: np.ndarray, dest: np.ndarray, report: np.ndarray | None) -> None:
    """sqrt of a variance (NaN = NULL): rounding-level negatives -> 0, genuine negatives -> NULL."""
    if not np.fmin.reduce(variance, initial=np.inf) >= 0:
        np.copyto(variance, np.nan, where=variance < -NEGATIVE_VARIANCE_TOLERANCE)
        np.maximum(variance, 0.0, out=variance)
    sqrt_into(variance, dest, report)
