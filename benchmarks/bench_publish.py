"""What publishing the warehouse costs an evening (``warehouse/publish.py``).

A load works on a private copy of ``warehouse.duckdb`` and renames it into place, so readers never
block it: the price is one copy of the file per load, which grows with the warehouse. Measured in
one process:

* the warehouse at 500 symbols x 2,520 sessions (ten years) of candles and realised volatility,
  its size, and the daily reload of the last session in place (the old way) and published;
  the publish cost is their difference;
* the evening's non-network time, the baseline: a warm evening (every step, checks included) of a
  500-symbol watchlist on the simulator with Yahoo unpaced, after a first evening filled the cache
  (what remains is our own work; the loopback simulator answers in microseconds).

Target: the publish cost under 10 % of the evening's non-network time.

    .venv/bin/python benchmarks/bench_publish.py [--symbols 500] [--sessions 2520]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import date, datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from bench_warehouse_load import DAILY, build_lake  # noqa: E402
from harness import Result, emit, peak_rss_mib  # noqa: E402

import dagster as dg  # noqa: E402

from support import all_assets_and_checks, fast_resources, pipeline_settings  # noqa: E402
from variance_pipeline.calendar import sessions_back  # noqa: E402
from variance_pipeline.lake.layout import Lake  # noqa: E402
from variance_pipeline.simulator import SimulatorServer  # noqa: E402
from variance_pipeline.simulator.backend import known_tickers  # noqa: E402
from variance_pipeline.warehouse.connection import warehouse_connection  # noqa: E402
from variance_pipeline.warehouse.load import load_sessions  # noqa: E402
from variance_pipeline.warehouse.publish import publishing  # noqa: E402

TARGET = 0.10
EVENING = date(2025, 11, 25)
CLOCK = datetime(2025, 11, 25, 22, 0, tzinfo=timezone.utc)
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def best_of(repeat: int, fn) -> float:  # noqa: ANN001 - a zero-argument callable
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def warm_evening_seconds(symbols: int) -> float:
    """A whole warm evening at ``symbols`` watched names, Yahoo unpaced: our own work only."""
    with tempfile.TemporaryDirectory(prefix="bench-publish-evening-") as tmp, SimulatorServer(port=0, now=CLOCK) as sim:
        settings = pipeline_settings(Path(tmp) / "data", sim.url, watchlist=",".join(known_tickers(symbols)))
        nodes = all_assets_and_checks()
        with dg.DagsterInstance.ephemeral() as instance:
            def evening() -> None:
                dg.materialize(nodes, resources=fast_resources(settings), partition_key=EVENING.isoformat(),
                               instance=instance, run_config=QUIET)

            evening()  # the first evening fills the candle cache (and asks for the earnings history)
            return best_of(2, evening)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=500)
    parser.add_argument("--sessions", type=int, default=2520)
    args = parser.parse_args()
    sessions = sessions_back(date(2025, 11, 24), args.sessions)
    with tempfile.TemporaryDirectory(prefix="bench-publish-") as tmp:
        lake = Lake(Path(tmp))
        build_lake(lake, args.symbols, sessions)
        with warehouse_connection(lake.warehouse_path) as con:
            load_sessions(con, lake, sessions, tables=DAILY)
        size_mib = lake.warehouse_path.stat().st_size / 2**20

        def in_place() -> None:
            with warehouse_connection(lake.warehouse_path) as con:
                load_sessions(con, lake, sessions[-1:], tables=DAILY)

        def published() -> None:
            with publishing(lake.warehouse_path) as con:
                load_sessions(con, lake, sessions[-1:], tables=DAILY)

        load_seconds = best_of(3, in_place)
        publish_seconds = best_of(3, published)
    cost = max(publish_seconds - load_seconds, 0.0)
    evening = warm_evening_seconds(args.symbols)
    scope = f"{args.symbols} x {args.sessions}"
    print(f"warehouse {scope}: {size_mib:.0f} MiB; daily reload in place {load_seconds:.3f} s, published "
          f"{publish_seconds:.3f} s (publish cost {cost:.3f} s); warm evening at {args.symbols} symbols {evening:.2f} s")
    emit(Result(
        "publish", f"publish cost per load, warehouse {scope} ({size_mib:.0f} MiB)", round(cost, 4), round(evening, 4), "s",
        f"ratio <= {TARGET:g} of the warm evening's non-network time", cost <= TARGET * evening, round(peak_rss_mib(), 1),
    ))


if __name__ == "__main__":
    main()
