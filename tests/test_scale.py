"""Scale: a 500-symbol watchlist end to end on the simulator, in one real run, with the request
budget the design promises (ceil(N/100) metrics batches, one chart per symbol)."""

from __future__ import annotations

import pytest

import logging
import math
import time
from collections import Counter
from datetime import date
from pathlib import Path

from support import CLOCK, materialize, pipeline_settings
from variance_pipeline.candles.store import CandleStore
from variance_pipeline.lake.layout import Lake
from variance_pipeline.simulator import SimulatorServer
from variance_pipeline.simulator.backend import known_tickers

pytestmark = pytest.mark.slow

N_SYMBOLS = 500
SESSION = date(2025, 11, 25)  # the current session at CLOCK
log = logging.getLogger(__name__)


def test_500_symbol_watchlist_runs_end_to_end_within_the_request_budget(tmp_path: Path) -> None:
    symbols = known_tickers(N_SYMBOLS)
    assert len(set(symbols)) == N_SYMBOLS
    with SimulatorServer(port=0, now=CLOCK) as sim:
        settings = pipeline_settings(tmp_path / "data", sim.url, watchlist=",".join(symbols))
        started = time.monotonic()
        # The whole graph: the time budget and the request budget are those of a full evening run.
        result = materialize(settings, partition_key=SESSION.isoformat())
        elapsed = time.monotonic() - started
        entries = sim.requests.entries()
    assert result.success

    lake = Lake(settings.data_dir)
    universe = set(lake.read_partition("universe", SESSION)["symbol"])
    held = universe - set(symbols)
    assert set(symbols) <= universe
    wanted = len(universe)
    by_endpoint = Counter("/".join(e["path"].split("/")[:3]) for e in entries)
    summary = f"500-symbol run: {wanted} underlyings, {len(entries)} API requests {dict(by_endpoint)}, {elapsed:.1f} s"
    log.warning(summary)
    print("\n" + summary)

    metrics = set(lake.read_partition("market_metrics", SESSION)["symbol"])
    assert len(metrics & set(symbols)) >= N_SYMBOLS - 5, "about all 500 watchlist symbols have metrics"
    assert len(metrics & held) >= len(held) - 2

    candles = CandleStore(lake.candles_dir).session(SESSION, sorted(universe))
    realized = lake.read_partition("realized_volatility", SESSION)
    assert len(set(candles["symbol"]) & set(symbols)) >= N_SYMBOLS - 5
    assert len(set(realized["symbol"]) & set(symbols)) >= N_SYMBOLS - 5
    assert realized.loc[realized["symbol"].isin(symbols), "hv20"].notna().mean() > 0.95

    # The request budget: metrics in batches of 100, one chart per underlying, no retries.
    metric_requests = [e for e in entries if e["path"] == "/market-metrics"]
    assert len(metric_requests) == math.ceil(wanted / 100)
    asked = [s for e in metric_requests for s in e["query"]["symbols"].split(",")]
    assert len(asked) == len(set(asked)) == wanted

    charts = [e["path"].removeprefix("/v8/finance/chart/") for e in entries if e["path"].startswith("/v8/finance/chart/")]
    assert len(charts) == len(set(charts)), "exactly one chart request per symbol"
    assert set(symbols) <= set(charts)
    # ... and one for each dated futures contract the book holds (its options are priced on it).
    positions = lake.read_partition("positions", SESSION)
    kind = positions["instrument_type"]
    contracts = {*positions.loc[kind == "Future", "symbol"], *positions.loc[kind == "Future Option", "underlying_symbol"]}
    assert len(charts) == wanted + len(contracts - universe)
    assert all(e["status"] == 200 for e in entries if e["path"] == "/market-metrics")
    assert elapsed < 120, f"500 symbols took {elapsed:.0f} s"
