"""The bars of ``compute_realized_volatility`` as arrays, the XNYS grid they run on, their symbols.

Why arrays: every estimator is a window sum over consecutive rows of a symbol, so the input is
read once into float64 prices, day numbers and Arrow strings (shared with the caller's frame where
possible), and the symbols' row ranges are found without sorting when the input is already
grouped (as the candle cache returns it).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from variance_pipeline.calendar import sessions_in_range
from variance_pipeline.schemas.realized_volatility import LOOKBACK_SESSIONS

INPUT_COLUMNS = ("symbol", "session_date", "open", "high", "low", "close")
DAY_SLICE = 1 << 20  # rows converted at a time (pandas day numbers, the report count)


# --- input ---------------------------------------------------------------------------------


@dataclass
class Bars:
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
    for start in range(0, rows, DAY_SLICE):
        try:
            arrow = pa.array(values[start : start + DAY_SLICE]) if values is not None else None
        except (pa.ArrowException, TypeError, ValueError):
            arrow = None
        if arrow is None:
            arrow = pa.array(column.iloc[start : start + DAY_SLICE])
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


def read_bars(candles: pd.DataFrame | pa.Table) -> Bars:
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
    return Bars(
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


def epoch_days(days: Sequence[date]) -> np.ndarray:
    return np.array(days, dtype="datetime64[D]").astype(np.int64)


def as_date(day: int) -> date:
    return np.datetime64(day, "D").astype(date)


def session_grid(first: date, last: date, requested: list[date]) -> list[date]:
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
class Groups:
    """Rows per symbol, in symbol order: ``order[starts[i]:starts[i + 1]]`` are symbol i's rows."""

    starts: np.ndarray  # int64, one more than there are symbols
    order: np.ndarray | None  # None: the input is already grouped by symbol in sorted order

    def __len__(self) -> int:
        return len(self.starts) - 1


def group_symbols(symbol: pa.ChunkedArray) -> Groups:
    rows = len(symbol)
    if symbol.null_count == 0 and rows > 1:
        changed = pc.not_equal(symbol.slice(1), symbol.slice(0, rows - 1))
        starts = np.concatenate([[0], np.flatnonzero(changed.to_numpy(zero_copy_only=False)) + 1, [rows]])
        firsts = symbol.take(pa.array(starts[:-1])).to_pylist()
        if all(a < b for a, b in zip(firsts, firsts[1:])):
            return Groups(starts.astype(np.int64), None)
    elif rows <= 1:
        return Groups(np.array([0, rows], np.int64), None)
    # Not sorted (or with NULL symbols, which sort last as in SQL): sort the row numbers once.
    encoded = pc.dictionary_encode(symbol.combine_chunks(), null_encoding="encode")
    names = encoded.dictionary.to_pylist()
    rank = np.empty(len(names), np.int64)
    rank[sorted(range(len(names)), key=lambda i: (names[i] is None, names[i] or ""))] = np.arange(len(names))
    codes = rank[encoded.indices.to_numpy()]
    order = np.argsort(codes, kind="stable")
    starts = np.concatenate([[0], np.cumsum(np.bincount(codes, minlength=len(names)))])
    return Groups(starts.astype(np.int64), order)
