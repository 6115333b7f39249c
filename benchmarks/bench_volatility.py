"""Benchmark ``compute_realized_volatility`` against a numpy cumulative-sum baseline.

Why: the daily load must stay O(lookback) (253 closes per symbol), never O(history), and the
price of the SQL formulation for a full backfill should be a known number next to the fastest
plain-numpy HV we know. This script measures both on one synthetic universe and prints ours /
baseline ratios and peak memory.

Run (about 20-30 s on 2 cores, well under a minute):

    /work/main/.venv/bin/python benchmarks/bench_volatility.py
    /work/main/.venv/bin/python benchmarks/bench_volatility.py --symbols 500 --sessions 1000

Cases, on ``--symbols`` x ``--sessions`` random-walk OHLC bars on real XNYS sessions:

* ``daily``: the daily load, the last session only, input = the last 253 sessions (the lookback).
* ``daily, full history passed``: the same request given the whole history (the function trims
  it to the lookback before any window runs).
* ``backfill``: every session of the whole history.
* ``baseline``: HV20 and HV252 only, one-pass numpy cumulative sums over a (symbols x sessions)
  array of closes, for the same scope (253 columns for the daily case, all for the backfill).
  Ours computes ten columns (four HVs, four range estimators, close, returns_available) with
  gap detection, so a ratio above 1 is expected; the notes measured DuckDB at about 2x numpy for
  HV20 + HV252 alone.

Peak memory is the process's resident high-water mark during the case minus the resident size
before it (Linux ``/proc/self/clear_refs`` resets the mark between cases; elsewhere it falls back
to ``resource.getrusage``, which only reports the process-lifetime peak). It covers DuckDB's and
Arrow's native allocations, which ``tracemalloc`` cannot see.
"""

from __future__ import annotations

import argparse
import resource
import time
from collections.abc import Callable
from datetime import date
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from variance_pipeline.calendar import sessions_back
from variance_pipeline.transforms.volatility import compute_realized_volatility

LOOKBACK = 253  # closes the daily load reads per symbol: 252 returns for HV252
LAST_SESSION = date(2025, 12, 31)


def make_ohlc(symbols: int, sessions: int, seed: int) -> tuple[np.ndarray, ...]:
    """OHLC arrays shaped (symbols, sessions): log random walks with per-symbol volatility."""
    rng = np.random.default_rng(seed)
    vol = rng.uniform(0.01, 0.04, size=(symbols, 1))
    close = 20.0 * np.exp(np.cumsum(rng.normal(0.0, 1.0, (symbols, sessions)) * vol, axis=1))
    open_ = close * np.exp(rng.normal(0.0, 0.3, (symbols, sessions)) * vol)
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0.0, 0.5, (symbols, sessions))) * vol)
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0.0, 0.5, (symbols, sessions))) * vol)
    return open_, high, low, close


def to_table(ohlc: tuple[np.ndarray, ...], days: list[date]) -> pa.Table:
    """The long (symbol, session_date) layout the candles lake holds, as an Arrow table."""
    symbols, sessions = ohlc[0].shape
    names = pa.array([f"S{i:05d}" for i in range(symbols)])
    return pa.table(
        {
            "symbol": names.take(pa.array(np.repeat(np.arange(symbols), sessions))),
            "session_date": pa.array(np.tile(np.array(days, dtype="datetime64[D]"), symbols)),
            **{k: v.ravel() for k, v in zip(("open", "high", "low", "close"), ohlc)},
        }
    )


def numpy_hv(close: np.ndarray, n: int) -> np.ndarray:
    """Baseline: sqrt(252) * rolling sample stdev of log returns via cumulative sums; NaN before n."""
    returns = np.diff(np.log(close), axis=1)
    zeros = np.zeros((close.shape[0], 1))
    s1 = np.concatenate([zeros, np.cumsum(returns, axis=1)], axis=1)
    s2 = np.concatenate([zeros, np.cumsum(returns * returns, axis=1)], axis=1)
    w1 = s1[:, n:] - s1[:, :-n]
    w2 = s2[:, n:] - s2[:, :-n]
    var = np.maximum((w2 - w1 * w1 / n) / (n - 1), 0.0)
    out = np.full(close.shape, np.nan)
    out[:, n:] = np.sqrt(252.0 * var)
    return out


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def measure(fn: Callable[[], Any], repeat: int = 1) -> tuple[float, float, Any]:
    """Best wall time of ``repeat`` runs (seconds), peak extra resident memory (MiB), last result."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")  # reset VmHWM to the current resident size
        before = _status_kib("VmRSS")
    except OSError:
        before = None
    best = float("inf")
    result = None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    if before is not None and (peak := _status_kib("VmHWM")) is not None:
        return best, (peak - before) / 1024, result
    return best, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=2000)
    parser.add_argument("--sessions", type=int, default=2520)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    days = sessions_back(LAST_SESSION, args.sessions)
    t0 = time.perf_counter()
    ohlc = make_ohlc(args.symbols, args.sessions, args.seed)
    full = to_table(ohlc, days)
    lookback = full.filter(pc.greater_equal(full["session_date"], pa.scalar(days[-LOOKBACK], pa.date32())))
    close = ohlc[3]
    print(
        f"{args.symbols} symbols x {args.sessions} sessions ({days[0]} .. {days[-1]}): "
        f"{full.num_rows:,} bars, {full.nbytes / 2**20:.0f} MiB as Arrow; "
        f"generated in {time.perf_counter() - t0:.1f} s"
    )

    daily_s, daily_mem, daily = measure(lambda: compute_realized_volatility(lookback, [days[-1]]), repeat=3)
    trimmed_s, trimmed_mem, _ = measure(lambda: compute_realized_volatility(full, [days[-1]]), repeat=3)
    base_daily_s, base_daily_mem, _ = measure(
        lambda: (numpy_hv(close[:, -LOOKBACK:], 20), numpy_hv(close[:, -LOOKBACK:], 252)), repeat=3
    )
    backfill_s, backfill_mem, backfill = measure(lambda: compute_realized_volatility(full, days))
    base_full_s, base_full_mem, (hv20, hv252) = measure(lambda: (numpy_hv(close, 20), numpy_hv(close, 252)))

    rows = [
        ("daily (last session, 253-session input)", daily_s, daily_mem, len(daily)),
        ("daily, full history passed", trimmed_s, trimmed_mem, len(daily)),
        ("baseline numpy HV20+HV252, 253 sessions", base_daily_s, base_daily_mem, args.symbols),
        ("backfill (all sessions)", backfill_s, backfill_mem, len(backfill)),
        ("baseline numpy HV20+HV252, all sessions", base_full_s, base_full_mem, hv20.size),
    ]
    print(f"\n{'case':44} {'seconds':>9} {'peak MiB':>9} {'rows out':>11}")
    for name, seconds, mem, n_rows in rows:
        print(f"{name:44} {seconds:9.3f} {mem:9.0f} {n_rows:11,}")
    print(
        f"\nratios ours / baseline: daily {daily_s / base_daily_s:.1f}x, "
        f"daily with full history {trimmed_s / base_daily_s:.1f}x, backfill {backfill_s / base_full_s:.1f}x"
    )
    print(f"daily / backfill time: {daily_s / backfill_s:.3f} (sessions requested: 1 / {args.sessions})")

    # Same numbers as the baseline (cumulative sums lose a few digits, hence the loose bound).
    last = daily.sort_values("symbol")
    diff = max(
        np.nanmax(np.abs(last["hv20"].to_numpy() - hv20[:, -1])),
        np.nanmax(np.abs(last["hv252"].to_numpy() - hv252[:, -1])),
        np.nanmax(np.abs(backfill["hv20"].to_numpy() - hv20.ravel())),
    )
    print(f"max |ours - baseline| over HV20/HV252: {diff:.2e}")


if __name__ == "__main__":
    main()
