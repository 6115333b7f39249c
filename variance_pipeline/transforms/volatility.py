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

The computation is split by concern: ``volatility_bars`` reads the input into arrays and
groups the symbols, ``volatility_blocks`` holds one block of whole symbols (scratch arrays, runs,
window sums, rounding helpers), ``volatility_estimators`` computes the close-to-close and range
estimators of a block (and says how negative variances and rounding are handled); this module
drives the blocks and assembles the frame.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import date
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from variance_pipeline.schemas.realized_volatility import HV_WINDOWS, RANGE_ESTIMATORS, RANGE_WINDOW, REALIZED_VOLATILITY
from variance_pipeline.transforms.volatility_bars import (
    DAY_SLICE,
    INPUT_COLUMNS,
    Bars,
    Groups,
    as_date,
    epoch_days,
    group_symbols,
    read_bars,
    session_grid,
)
from variance_pipeline.transforms.volatility_blocks import NEGATIVE_VARIANCE_TOLERANCE, Block, Scratch, into
from variance_pipeline.transforms.volatility_estimators import ROUNDING_TARGET, TRADING_DAYS, block_volatility

__all__ = [
    "INPUT_COLUMNS", "NEGATIVE_VARIANCE_TOLERANCE", "OUTPUT_COLUMNS", "ROUNDING_TARGET", "TRADING_DAYS", "VOL_COLUMNS",
    "compute_realized_volatility",
]

VOL_COLUMNS = (*(f"hv{n}" for n in HV_WINDOWS), *(f"{name}{RANGE_WINDOW}" for name in RANGE_ESTIMATORS))
OUTPUT_COLUMNS = REALIZED_VOLATILITY.names
# Rows per block (whole symbols); ~0.5 MiB per float64 array, a few dozen of them at a time.
_BLOCK_ROWS = 1 << 16


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


def _blocks(groups: Groups) -> Iterator[tuple[int, int]]:
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


def _report_count(bars: Bars, groups: Groups, first_day: int, span: int, reported: np.ndarray) -> tuple[int, bool]:
    """How many rows are reported, and whether the rows are already sorted by symbol and date."""
    total, rising, previous = 0, groups.order is None, None
    for start in range(0, bars.rows, DAY_SLICE):
        day = bars.day[start : start + DAY_SLICE]
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
    bars = read_bars(candles)
    requested = sorted(set(sessions))
    if bars.day_min is None or not requested:
        return _empty()
    grid = session_grid(as_date(bars.day_min), as_date(bars.day_max), requested)
    if not grid:
        return _empty()
    grid_days = epoch_days(grid)
    first_day, span = int(grid_days[0]), int(grid_days[-1] - grid_days[0]) + 1
    # Lookups by calendar day (see _offsets): grid column (-1: no session), and whether reported.
    column_of = np.full(span + 2, -1, np.int64)
    column_of[grid_days - first_day + 1] = np.arange(len(grid))
    asked = epoch_days(requested) - first_day + 1
    asked = asked[(asked >= 1) & (asked <= span)]
    reported = np.zeros(span + 2, bool)
    reported[asked[column_of[asked] >= 0]] = True

    groups = group_symbols(bars.symbol)
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
    scratch = Scratch(max(int(groups.starts[last] - groups.starts[first]) for first, last in blocks))
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
                    days = [as_date(first_day - 1 + int(d)) for d in offset[duplicate]]
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
        block = Block(bars.open[rows], bars.high[rows], bars.low[rows], bars.close[rows], col, starts, scratch)
        piece = slice(written, written + count)
        block_volatility(block, report, {name: values[piece] for name, values in out.items()})
        if not same_rows:
            source = positions() if report is None else positions()[report]
            symbol_parts.append(bars.symbol.take(pa.array(source)))
        if close is not None:
            into(close[piece], bars.close[rows], report)
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
