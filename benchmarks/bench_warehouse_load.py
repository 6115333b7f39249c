"""Benchmark: a daily warehouse load costs O(day), not O(history).

Builds a synthetic lake (``--symbols`` x ``--sessions`` candles, one file per symbol in the candle
store, and realised-volatility rows, one partition per session),
loads the first session into an empty warehouse (the baseline, measured in this run), loads the
history, then times loading the last session again on the full warehouse and a full rebuild.
Prints each time and its ratio to the baseline: the daily reload should stay near 1x while the
rebuild grows with history.

    .venv/bin/python benchmarks/bench_warehouse_load.py [--symbols 500] [--sessions 500]
"""

from __future__ import annotations

import argparse
import tempfile
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from harness import Result, emit, peak_rss_mib, timed

from variance_pipeline.calendar import sessions_back
from variance_pipeline.candles.store import CandleStore
from variance_pipeline.lake.layout import Lake
from variance_pipeline.schemas.realized_volatility import REALIZED_VOLATILITY
from variance_pipeline.warehouse.connection import warehouse_connection
from variance_pipeline.warehouse.load import TABLES, load_sessions, rebuild

DAILY_TARGET_RATIO = 2.0  # the daily reload on the full warehouse: within 2x loading one session into an empty one
DAILY = [spec for spec in TABLES if getattr(spec, "name", getattr(spec, "dataset", None)) in ("candles", "realized_volatility")]


def build_lake(lake: Lake, symbols: int, sessions: list[date], seed: int = 7) -> None:
    rng = np.random.default_rng(seed)
    names = [f"S{i:04d}" for i in range(symbols)]
    bars = []
    for day in sessions:
        close = 100 * np.exp(rng.normal(0, 0.02, symbols))
        candles = pd.DataFrame(
            {
                "symbol": names,
                "yahoo_ticker": names,
                "session_date": day,
                "open": close,
                "high": close * 1.01,
                "low": close * 0.99,
                "close": close,
                "adj_close": close,
                "volume": rng.integers(1, 10**6, symbols),
            }
        )
        bars.append(candles)
        lake.write_partition(
            "realized_volatility",
            day,
            REALIZED_VOLATILITY.conform(
                candles[["symbol", "session_date", "close"]].assign(
                    hv20=0.2, hv30=0.2, hv90=0.2, hv252=0.25, parkinson20=0.2, garman_klass20=0.2,
                    rogers_satchell20=0.2, yang_zhang20=0.2, returns_available=252,
                )
            ),
        )
    CandleStore(lake.candles_dir).add(pd.concat(bars, ignore_index=True).assign(volume=lambda f: f["volume"].astype("Int64")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--symbols", type=int, default=500)
    parser.add_argument("--sessions", type=int, default=500)
    args = parser.parse_args()
    sessions = sessions_back(date(2025, 11, 24), args.sessions)
    with tempfile.TemporaryDirectory() as tmp:
        lake = Lake(Path(tmp))
        build_lake(lake, args.symbols, sessions)

        def load(days: list[date]) -> None:
            with warehouse_connection(lake.warehouse_path) as con:
                load_sessions(con, lake, days, tables=DAILY)

        baseline = timed(lambda: load(sessions[:1]))
        history = timed(lambda: load(sessions[1:]))
        daily = timed(lambda: load(sessions[-1:]))
        rebuilt = timed(lambda: rebuild(lake))
    rows = args.symbols * args.sessions
    print(f"{args.symbols} symbols x {args.sessions} sessions ({rows:,} rows per table)")
    print(f"{'case':<40}{'seconds':>10}{'x baseline':>12}")
    for name, seconds in [
        ("load session 1 into an empty warehouse", baseline),
        (f"load sessions 2..{args.sessions}", history),
        (f"reload session {args.sessions} on full warehouse", daily),
        ("rebuild from the lake", rebuilt),
    ]:
        print(f"{name:<40}{seconds:>10.3f}{seconds / baseline:>11.1f}x")
    peak = round(peak_rss_mib(), 1)
    scope = f"{args.symbols} x {args.sessions}"
    emit(Result("warehouse_load", f"daily reload of the last session on the full warehouse ({scope})", round(daily, 4),
                round(baseline, 4), "s", f"ratio <= {DAILY_TARGET_RATIO:g} (O(day), not O(history))",
                daily <= DAILY_TARGET_RATIO * baseline, peak))
    emit(Result("warehouse_load", f"load sessions 2..{args.sessions} ({scope})", round(history, 4), round(baseline, 4),
                "s", "info (grows with history)", True, peak))
    emit(Result("warehouse_load", f"rebuild from the lake ({scope})", round(rebuilt, 4), round(baseline, 4), "s",
                "info (grows with history)", True, peak))


if __name__ == "__main__":
    main()
