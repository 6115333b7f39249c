"""Runs cost the rate limit and nothing more: requests by endpoint against the floor (#11).

Counted from the simulator's own request log, so a request the pipeline sends twice, or a login
per step, shows up however the client code is arranged.
"""

from __future__ import annotations

import math
from datetime import date, timedelta
from pathlib import Path

import pytest

from support import CLOCK, materialize, pipeline_settings
from variance_pipeline.candles.store import CandleStore
from variance_pipeline.defs.common import held_contracts
from variance_pipeline.lake.layout import Lake
from variance_pipeline.simulator import SimulatorServer

pytestmark = pytest.mark.slow

SESSION_DATE = date(2025, 11, 25)  # the current session at CLOCK
SESSION = SESSION_DATE.isoformat()
UNKNOWN = "ZZQX"  # reserved: the simulator answers 404 for its chart, as Yahoo does for an unknown ticker
WATCHLIST = f"SPY,QQQ,IWM,/ES,{UNKNOWN}"


def _materialization(result, asset: str) -> dict:
    events = [e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == asset]
    assert len(events) == 1, f"one materialization of {asset}"
    return events[0].materialization.metadata


def test_daily_run_and_rerun_cost_exactly_the_floor(tmp_path: Path) -> None:
    with SimulatorServer(port=0, now=CLOCK) as sim:
        settings = pipeline_settings(tmp_path / "data", sim.url, watchlist=WATCHLIST)
        first = materialize(settings, partition_key=SESSION)
        assert first.success
        cold = sim.requests.by_endpoint()
        accounts = [e for e in sim.requests.entries() if e["endpoint"] == "positions"]
        sim.requests.clear()

        rerun = materialize(settings, partition_key=SESSION)
        assert rerun.success
        warm = sim.requests.by_endpoint()

    universe = Lake(settings.data_dir).read_partition("universe", SESSION_DATE)
    n = len(universe)
    contracts = held_contracts(Lake(settings.data_dir), [SESSION_DATE])  # their options are priced on them
    assert contracts
    # The floor: one login for the whole run (every step shares the session), the accounts list,
    # one positions page per account, ceil(N/100) metrics batches, one public rate, one chart per
    # universe symbol (the unknown one included, once) and per held dated futures contract.
    assert cold["oauth"] == 1, cold
    assert cold["accounts"] == 1
    assert cold["positions"] == len(accounts) >= 1
    assert cold["market-metrics"] == math.ceil(n / 100)
    assert cold["risk-free-rate"] == 1
    assert cold["chart"] == n + len(contracts), cold
    # The earnings history: once per symbol on the first run, then only when a report is due.
    assert 0 < cold.get("earnings", 0) <= n

    # A re-run of the same day: the snapshots again (they are the point of a re-run), no chart -
    # not even the ticker Yahoo did not know, whose 404 is remembered - and no earnings history.
    assert warm["oauth"] == 1, warm
    assert warm["accounts"] == 1
    assert warm["market-metrics"] == math.ceil(n / 100)
    assert "chart" not in warm, warm
    assert "earnings" not in warm, warm

    metadata = _materialization(rerun, "candles")
    assert UNKNOWN in metadata["not_found_remembered"].value
    assert metadata["symbols_fetched"].value == 0


def test_a_remembered_404_is_asked_again_after_the_interval(tmp_path: Path) -> None:
    select = ["universe", "candles"]
    week_later = "2025-12-03"
    with SimulatorServer(port=0, now=CLOCK) as sim:
        settings = pipeline_settings(tmp_path / "data", sim.url, watchlist=f"SPY,{UNKNOWN}")
        assert materialize(settings, partition_key=SESSION, select=["positions", *select]).success
        meta = CandleStore(Lake(settings.data_dir).candles_dir).read_state(UNKNOWN)
        assert meta is not None and meta.not_found_at == CLOCK

        def charts_asked(days_later: int, partition: str) -> set[str]:
            sim.requests.clear()
            sim.now = CLOCK + timedelta(days=days_later)
            later = pipeline_settings(settings.data_dir, sim.url, watchlist=f"SPY,{UNKNOWN}", now=sim.now)
            assert materialize(later, partition_key=partition, select=select).success
            return {e["path"].rsplit("/", 1)[-1] for e in sim.requests.entries() if e["endpoint"] == "chart"}

        # Six days on: remembered, no request for it (SPY is fetched for its new bars).
        soon = charts_asked(6, "2025-12-01")
        assert "SPY" in soon and UNKNOWN not in soon, soon
        # Eight days on: the week has passed, so Yahoo is asked again (and says 404 again).
        assert {"SPY", UNKNOWN} <= charts_asked(8, week_later)
    meta = CandleStore(Lake(settings.data_dir).candles_dir).read_state(UNKNOWN)
    assert meta is not None and meta.not_found_at == CLOCK + timedelta(days=8)


def test_each_cache_file_is_read_once_per_run(tmp_path: Path) -> None:
    select = ["universe", "candles", "realized_volatility"]
    with SimulatorServer(port=0, now=CLOCK) as sim:
        settings = pipeline_settings(tmp_path / "data", sim.url, watchlist="SPY,QQQ,IWM")
        assert materialize(settings, partition_key=SESSION, select=["positions", *select]).success
        warm = materialize(settings, partition_key=SESSION, select=select)
        assert warm.success
        # Volatility alone (candles not in the run): it reads the candle files itself.
        alone = materialize(settings, partition_key=SESSION, select=["realized_volatility"])
        assert alone.success
    n = len(Lake(settings.data_dir).read_partition("universe", SESSION_DATE))
    contracts = len(held_contracts(Lake(settings.data_dir), [SESSION_DATE]))  # candles, not volatility
    candles_reads = _materialization(warm, "candles")["cache_files_read"].value
    assert candles_reads == 2 * (n + contracts), "each symbol's candle file and fetch state once"
    assert _materialization(warm, "realized_volatility")["cache_files_read"].value == 0
    assert _materialization(alone, "realized_volatility")["cache_files_read"].value == n
