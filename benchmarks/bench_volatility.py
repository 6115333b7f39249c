"""Benchmark ``compute_realized_volatility``: the backfill (issue #11) and the daily load.

Why: a backfill of the whole universe (5,000 symbols x 2,520 sessions, ten years) computes all ten
volatility columns with the gap rule; it must cost no more time than pandas' groupby-rolling needs
for HV20 + HV252 alone on the same bars (the obvious way to write two of the eight estimators),
need under 1 GiB above its input, and the whole step (bars frame, computation, output) must stay
under 1.5 GiB. The daily load (the last session, 253 bars of lookback per symbol) must stay
O(lookback). And every value must equal an independent reference to 1e-9.

Run (about half a minute on 2 cores):

    /work/main/.venv/bin/python benchmarks/bench_volatility.py
    /work/main/.venv/bin/python benchmarks/bench_volatility.py --symbols 500 --sessions 1000

Data: ``--symbols`` random-walk OHLC series on the last ``--sessions`` XNYS sessions, with the
gaps a real universe has: 10 % of the symbols list during the period, 5 % are delisted, 2 % have a
halt of 5 to 30 sessions and 0.2 % of all other bars are missing. The bars frame has the candle
cache's layout (pandas ``str`` symbols, ``datetime.date`` sessions, float64 prices), sorted by
symbol and session as ``read_lookback`` returns it.

Cases (each one ``BENCH_RESULT`` line for ``benchmarks/run.py``):

1. backfill, all ten columns for every session, vs the baseline: pandas groupby-rolling HV20 and
   HV252 (``np.log``, ``groupby.diff``, ``groupby.rolling(n).std()``) on the same frame, same run
   (best of ``--repeat`` runs each, interleaved: on a shared VM, writing memory for the first time
   costs more than the arithmetic, and whichever run gets fresh pages loses). Target: ratio <= 1.
2. backfill memory: peak resident size during the call above what was resident before it (the
   bars frame). Target: <= 1024 MiB.
3. the whole backfill step: building the bars frame, the computation and the output, peak
   resident size above the process before the step. Target: <= 1536 MiB.
4. daily load (last session, input = the last 253 sessions) vs the backfill: the time per bar
   read must not exceed the backfill's by more than 2x, i.e. ratio <= 2 * 253 / sessions.
5. max |ours - reference| over all eight estimators for ``--check`` symbols (the gappy ones
   included), the reference being pandas ``rolling`` on each symbol's bars laid onto the XNYS grid
   with NaN where a bar is missing (NaN propagation is the gap rule), and the same NULL pattern
   and ``returns_available``. Target: <= 1e-9.
"""

from __future__ import annotations

import argparse
import gc
import math
import time
from collections.abc import Callable
from datetime import date
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from harness import Result, emit, measure_peak, peak_rss_mib, rss_mib

from variance_pipeline.calendar import sessions_back
from variance_pipeline.transforms.volatility import VOL_COLUMNS, compute_realized_volatility

LOOKBACK = 253  # bars the daily load reads per symbol: 252 returns for HV252
LAST_SESSION = date(2025, 12, 31)
BACKFILL_MEMORY_MIB = 1024
STEP_MEMORY_MIB = 1536
TOLERANCE = 1e-9
N = 252


# --- data ----------------------------------------------------------------------------------


def presence(symbols: int, sessions: int, rng: np.random.Generator) -> np.ndarray:
    """(symbols, sessions) bool: which bars exist (listings, delistings, halts, missing bars)."""
    present = rng.random((symbols, sessions)) >= 0.002
    listed = rng.random(symbols) < 0.10
    start = np.where(listed, rng.integers(0, max(1, sessions - 300), symbols), 0)
    delisted = rng.random(symbols) < 0.05
    end = np.where(delisted, rng.integers(np.minimum(start + 300, sessions - 1), sessions), sessions)
    cols = np.arange(sessions)
    present &= (cols >= start[:, None]) & (cols < end[:, None])
    for s in np.flatnonzero(rng.random(symbols) < 0.02):
        at = int(rng.integers(0, sessions))
        present[s, at : at + int(rng.integers(5, 31))] = False
    return present


def build_bars(present: np.ndarray, days: list[date], seed: int) -> pd.DataFrame:
    """The bars frame, filled a block of symbols at a time (no full-size temporaries)."""
    symbols, sessions = present.shape
    rows = int(present.sum())
    prices = {k: np.empty(rows) for k in ("open", "high", "low", "close")}
    which = np.empty(rows, np.int32)
    column = np.empty(rows, np.int32)
    rng = np.random.default_rng(seed)
    written = 0
    for first in range(0, symbols, 250):
        mask = present[first : first + 250]
        vol = rng.uniform(0.01, 0.04, size=(len(mask), 1))
        close = 20.0 * np.exp(np.cumsum(rng.normal(0.0, 1.0, mask.shape) * vol, axis=1))
        open_ = close * np.exp(rng.normal(0.0, 0.3, mask.shape) * vol)
        high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0.0, 0.5, mask.shape)) * vol)
        low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0.0, 0.5, mask.shape)) * vol)
        count = int(mask.sum())
        for name, values in zip(("open", "high", "low", "close"), (open_, high, low, close)):
            prices[name][written : written + count] = values[mask]
        sym, col = np.nonzero(mask)
        which[written : written + count] = sym + first
        column[written : written + count] = col
        written += count
    names = pa.array([f"S{i:05d}" for i in range(symbols)], pa.large_string())
    dates = np.empty(sessions, dtype=object)
    dates[:] = days
    frame = pd.DataFrame(
        {
            # What the cache's Table.to_pandas gives: str symbols, one date object per session.
            "symbol": pa.chunked_array([names.take(pa.array(which))]).to_pandas(),
            "session_date": dates[column],
            **prices,
        },
        copy=False,
    )
    del which, column
    return frame


def shares_memory(a: pd.Series, b: pd.Series) -> bool:
    """Whether two columns use the same memory (numpy arrays, or the buffers of Arrow-backed ones)."""
    if isinstance(a.array, pd.arrays.NumpyExtensionArray) or a.dtype != "str":
        return bool(np.shares_memory(a.to_numpy(), b.to_numpy()))

    def buffers(column: pd.Series) -> set[int]:
        chunked = pa.chunked_array(pa.array(column))
        return {buf.address for chunk in chunked.chunks for buf in chunk.buffers() if buf is not None}

    return bool(buffers(a) & buffers(b))


# --- baseline and reference ----------------------------------------------------------------


def pandas_hv20_hv252(bars: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """The baseline: HV20 and HV252 with pandas groupby-rolling (no gap rule, two columns)."""
    returns = np.log(bars["close"]).groupby(bars["symbol"], sort=False).diff()
    by_symbol = returns.groupby(bars["symbol"], sort=False)
    return tuple(by_symbol.rolling(n).std() * math.sqrt(N) for n in (20, 252))  # type: ignore[return-value]


def reference(bars: pd.DataFrame, days: list[date]) -> pd.DataFrame:
    """All estimators with pandas rolling on a (sessions x symbols) grid, NaN where no bar.

    Independent of the code under test: textbook formulas on prices laid onto the session grid;
    a window over a missing bar is NaN because rolling needs all n values (min_periods = n).
    Assumes every bar is usable (the benchmark's data is).
    """
    grid = pd.Index(days, name="session_date")
    wide = {
        k: bars.pivot(index="session_date", columns="symbol", values=k).reindex(grid)
        for k in ("open", "high", "low", "close")
    }
    o, h, l, c = (np.log(wide[k]) for k in ("open", "high", "low", "close"))
    n, k = 20, 0.34 / (1.34 + 21 / 19)
    out = {f"hv{w}": (c - c.shift()).rolling(w).std() * math.sqrt(N) for w in (20, 30, 90, 252)}
    out["parkinson20"] = np.sqrt(N / (4 * n * math.log(2)) * ((h - l) ** 2).rolling(n).sum())

    def safe_sqrt(var: pd.DataFrame) -> pd.DataFrame:
        return np.sqrt(var.clip(lower=0)).where(var >= -1e-12)

    out["garman_klass20"] = safe_sqrt(N / n * (0.5 * (h - l) ** 2 - (2 * math.log(2) - 1) * (c - o) ** 2).rolling(n).sum())
    rs = N / n * ((h - c) * (h - o) + (l - c) * (l - o)).rolling(n).sum()
    out["rogers_satchell20"] = safe_sqrt(rs)
    overnight = N * (o - c.shift()).rolling(n).var()
    out["yang_zhang20"] = safe_sqrt(overnight + k * N * (c - o).rolling(n).var() + (1 - k) * rs)
    # Consecutive bars ending at each session, minus one, capped at 252.
    have = wide["close"].notna()
    run = have.cumsum() - have.cumsum().where(~have).ffill().fillna(0)
    out["returns_available"] = (run - 1).clip(0, N)
    long = pd.concat({name: frame.stack(future_stack=True) for name, frame in out.items()}, axis=1)
    long = long[have.stack(future_stack=True).to_numpy()]
    return long.reset_index()


def compare(ours: pd.DataFrame, ref: pd.DataFrame) -> tuple[float, int]:
    """Max abs difference over the estimators, and how many NULL / returns_available disagree."""
    merged = ref.merge(ours, on=["symbol", "session_date"], how="outer", suffixes=("_ref", ""), indicator=True)
    mismatches = int((merged["_merge"] != "both").sum())
    worst = 0.0
    for name in VOL_COLUMNS:
        a, b = merged[name].to_numpy(float), merged[f"{name}_ref"].to_numpy(float)
        mismatches += int((np.isnan(a) != np.isnan(b)).sum())
        both = ~np.isnan(a) & ~np.isnan(b)
        if both.any():
            worst = max(worst, float(np.abs(a[both] - b[both]).max()))
    mismatches += int((merged["returns_available"] != merged["returns_available_ref"]).sum())
    return worst, mismatches


# --- timing ----------------------------------------------------------------------------------


def settle() -> None:
    """Free what earlier cases left behind, so that a case's 'before' is its own."""
    gc.collect()
    pa.default_memory_pool().release_unused()


def best_of(runs: int, *fns: Callable[[], Any]) -> tuple[list[float], list[float]]:
    """Best wall time and best CPU time (user + system) of each function over ``runs`` rounds,
    the functions interleaved."""
    wall, cpu = [math.inf] * len(fns), [math.inf] * len(fns)
    for _ in range(runs):
        for i, fn in enumerate(fns):
            settle()
            started, cpu_started = time.perf_counter(), time.process_time()
            fn()
            wall[i] = min(wall[i], time.perf_counter() - started)
            cpu[i] = min(cpu[i], time.process_time() - cpu_started)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=5000)
    parser.add_argument("--sessions", type=int, default=2520)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per backfill case (best kept)")
    parser.add_argument("--check", type=int, default=60, help="symbols compared with the reference")
    args = parser.parse_args()

    days = sessions_back(LAST_SESSION, args.sessions)
    scope = f"{args.symbols} x {args.sessions}"
    present = presence(args.symbols, args.sessions, np.random.default_rng(args.seed))

    # (2) and (3): the whole step, with the computation measured inside it.
    settle()
    with measure_peak() as step:
        bars = build_bars(present, days, args.seed)
        settle()
        with measure_peak() as compute:
            result = compute_realized_volatility(bars, days)
    input_mib = compute.before_mib - step.before_mib
    new_mib = sum(result[c].to_numpy().nbytes for c in result.columns[3:]) / 2**20
    shared = [c for c in ("symbol", "session_date", "close") if shares_memory(result[c], bars[c])]
    print(
        f"{scope} ({days[0]} .. {days[-1]}): {len(bars):,} bars, the frame {input_mib:.0f} MiB resident, "
        f"built in {step.seconds - compute.seconds:.1f} s; output {len(result):,} rows in {compute.seconds:.1f} s "
        f"(first call): {new_mib:.0f} MiB of new columns, {', '.join(shared) or 'nothing'} shared with the input"
    )

    # (5) against the reference, on symbols with every kind of gap.
    complete = present.all(axis=1)
    gappy = np.flatnonzero(~complete)
    half = min(len(gappy), args.check // 2)
    chosen = np.sort(np.r_[gappy[:half], np.flatnonzero(complete)[: args.check - half]])
    names = {f"S{i:05d}" for i in chosen}
    sample = bars[bars["symbol"].isin(names)]
    worst, mismatches = compare(result[result["symbol"].isin(names)], reference(sample, days))
    del result, sample

    # (1) backfill vs the baseline, interleaved; (4) the daily load.
    lookback = bars[bars["session_date"] >= days[-min(LOOKBACK, len(days))]].reset_index(drop=True)
    (ours_s, baseline_s), (ours_cpu, baseline_cpu) = best_of(
        args.repeat, lambda: compute_realized_volatility(bars, days), lambda: pandas_hv20_hv252(bars)
    )
    (daily_s, trimmed_s), _ = best_of(
        3, lambda: compute_realized_volatility(lookback, [days[-1]]), lambda: compute_realized_volatility(bars, [days[-1]])
    )
    daily_target = 2 * LOOKBACK / args.sessions
    peak = round(peak_rss_mib(), 1)

    rows = [
        ("backfill, ten columns, all sessions", ours_s),
        ("baseline: pandas groupby-rolling HV20 + HV252", baseline_s),
        (f"daily (last session, {LOOKBACK}-session input)", daily_s),
        ("daily, whole history passed", trimmed_s),
    ]
    print(f"\n{'case':52} {'seconds':>9}")
    for name, seconds in rows:
        print(f"{name:52} {seconds:9.3f}")
    print(f"\nbackfill / baseline: {ours_s / baseline_s:.2f}x (target <= 1); CPU time (user + system) "
          f"{ours_cpu:.2f} s / {baseline_cpu:.2f} s = {ours_cpu / baseline_cpu:.2f}x")
    print(f"daily / backfill: {daily_s / ours_s:.3f} (bars read {LOOKBACK} / {args.sessions}: "
          f"target <= {daily_target:.3f})")
    print(
        f"memory: computation {compute.above_mib:.0f} MiB above its input (target <= {BACKFILL_MEMORY_MIB}), "
        f"whole step {step.above_mib:.0f} MiB (target <= {STEP_MEMORY_MIB}); process peak {peak:.0f} MiB, "
        f"now {rss_mib():.0f} MiB"
    )
    print(f"reference ({len(chosen)} symbols, {len(np.intersect1d(chosen, gappy))} with gaps): "
          f"max |ours - reference| {worst:.2e}, {mismatches} NULL / returns_available / row mismatches")

    emit(Result("volatility", f"backfill {scope}, ten columns vs pandas groupby-rolling HV20+HV252", round(ours_s, 3),
                round(baseline_s, 3), "s", "ratio <= 1.0", ours_s <= baseline_s, peak))
    emit(Result("volatility", f"backfill {scope}: memory above its input", round(compute.above_mib, 1), None, "MiB",
                f"<= {BACKFILL_MEMORY_MIB} MiB", compute.above_mib <= BACKFILL_MEMORY_MIB, peak))
    emit(Result("volatility", f"backfill step {scope}: bars frame + computation + output", round(step.above_mib, 1),
                None, "MiB", f"<= {STEP_MEMORY_MIB} MiB", step.above_mib <= STEP_MEMORY_MIB, peak))
    emit(Result("volatility", f"daily load (last session, {LOOKBACK}-session input) vs the backfill", round(daily_s, 4),
                round(ours_s, 3), "s", f"ratio <= {daily_target:.3f} (2 x {LOOKBACK}/{args.sessions}: O(lookback))",
                daily_s <= daily_target * ours_s, peak))
    emit(Result("volatility", f"max |ours - reference|, 8 estimators, {len(chosen)} symbols with gaps", worst, None,
                "abs", f"<= {TOLERANCE:g}, NULLs equal", worst <= TOLERANCE and mismatches == 0, peak))


if __name__ == "__main__":
    main()
