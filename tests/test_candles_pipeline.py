"""Candles at pipeline level: real Dagster runs against a simulator, counted by ``/_sim/requests``.

The unit tests (test_candle_cache.py) count requests of ``refresh_candles`` alone; here the
candle side of the graph (``JOURNEY``: positions, universe, candles, realised volatility and the
warehouse) runs with real Dagster (``support.materialize``) against a private ``SimulatorServer``
(its own request log and faults, so the shared session fixture is never disturbed), and the asserts
read what users see: the request log, the candles metadata and checks, the lake and the warehouse.

One journey over consecutive sessions shares a data dir and a simulator (module fixture), each
step recorded once and asserted by its own test:

1. a 20-session backfill (clock after its last close),
2. the last session again on the warm cache,
3. the next session,
4. the session after a 4:1 split of NVDA (installed as a ``split`` fault dated after step 3's
   clock, so Yahoo's history is re-adjusted retroactively, as the real one does),
5. the next session during a 429 storm (with and without ``Retry-After``) and a truncated body.

Replay runs check that recorded Yahoo charts land bar for bar.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Iterator
from zoneinfo import ZoneInfo

import dagster as dg
import duckdb
import httpx
import numpy as np
import pandas as pd
import pytest

from support import CANDLES, RECORDED, materialize, pipeline_settings
from variance_pipeline.calendar import session_close, sessions_back
from variance_pipeline.candles.rebase import rebase_lake_candles
from variance_pipeline.candles.refresh import refresh_candles
from variance_pipeline.candles.store import CacheMeta, CandleCache
from variance_pipeline.candles.sync import sync_lake
from variance_pipeline.lake.layout import Lake
from variance_pipeline.simulator import SimulatorServer
from variance_pipeline.simulator.market import Split, bars_as_of
from variance_pipeline.sources.yahoo import YahooChartClient
from variance_pipeline.warehouse.connection import open_warehouse
from variance_pipeline.warehouse.load import load_sessions

pytestmark = pytest.mark.slow

CHART = "/v8/finance/chart/"
NEW_YORK = ZoneInfo("America/New_York")
WATCHLIST = "SPY,NVDA"  # both held too: the universe is the simulator's twelve held underlyings
BACKFILL = sessions_back(date(2025, 11, 20), 20)  # 2025-10-24 .. 2025-11-20
NEXT = date(2025, 11, 21)
SPLIT_DAY = date(2025, 11, 24)  # after NEXT's clock: the split is news to a warm cache
STORM_DAY = date(2025, 11, 25)
SPLIT_SYMBOL, SPLIT_RATIO = "NVDA", 4
SEED = 42  # SimulatorServer's default
# What the journey's asserts read: the candles and realized_volatility tables of the warehouse.
JOURNEY = [*CANDLES, "realized_volatility", "warehouse"]
PROGRESS = re.compile(r"candles: (\d+)/(\d+) symbols, (\d+) requests, (\d+) cache hits, (\d+) retries")


def after_close(day: date) -> datetime:
    return session_close(day) + timedelta(hours=1)


def chart_requests(sim: SimulatorServer) -> list[dict[str, Any]]:
    entries = httpx.get(f"{sim.url}/_sim/requests", timeout=10).json()
    return [e for e in entries if e["path"].startswith(CHART)]


def clear_requests(sim: SimulatorServer) -> None:
    httpx.delete(f"{sim.url}/_sim/requests", timeout=10).raise_for_status()


def install_faults(sim: SimulatorServer, rules: list[dict[str, Any]]) -> None:
    httpx.post(f"{sim.url}/_sim/faults", json=rules, timeout=10).raise_for_status()


def per_ticker(requests: list[dict[str, Any]]) -> Counter[str]:
    return Counter(e["path"].removeprefix(CHART) for e in requests)


def window_days(entry: dict[str, Any]) -> float:
    return (int(entry["query"]["period2"]) - int(entry["query"]["period1"])) / 86400


def ny_day(epoch: int | str) -> date:
    return datetime.fromtimestamp(int(epoch), NEW_YORK).date()


@dataclass
class Step:
    """One Dagster run of the ``JOURNEY`` assets and the chart requests it cost."""

    result: dg.ExecuteInProcessResult
    requests: list[dict[str, Any]]
    logs: list[str]
    warehouse: dict[str, pd.DataFrame]

    @property
    def candles(self) -> dict[str, Any]:
        # A ranged run reports one materialization per partition, all with the run's metadata.
        materialization = self.result.asset_materializations_for_node("candles")[-1]
        return {k: getattr(v, "value", v) for k, v in materialization.metadata.items()}

    def check(self, name: str) -> dg.AssetCheckEvaluation:
        (evaluation,) = [e for e in self.result.get_asset_check_evaluations() if e.check_name == name]
        return evaluation

    def progress(self) -> list[tuple[int, ...]]:
        return [tuple(int(g) for g in m.groups()) for line in self.logs if (m := PROGRESS.search(line))]


def warehouse_tables(data_dir: Path) -> dict[str, pd.DataFrame]:
    with duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True) as con:
        return {
            t: con.execute(f"SELECT * FROM {t} ORDER BY symbol, session_date").df()
            for t in ("candles", "realized_volatility")
        }


def run_step(sim: SimulatorServer, data_dir: Path, sessions: tuple[str, str] | str, clock: datetime) -> Step:
    sim.now = clock
    clear_requests(sim)
    instance = dg.DagsterInstance.ephemeral()
    settings = pipeline_settings(data_dir, sim.url, now=clock, watchlist=WATCHLIST)
    if isinstance(sessions, tuple):
        result = materialize(settings, partition_range=sessions, instance=instance, select=JOURNEY)
    else:
        result = materialize(settings, partition_key=sessions, instance=instance, select=JOURNEY)
    assert result.success
    logs = [entry.user_message for entry in instance.all_logs(result.run_id)]
    return Step(result, chart_requests(sim), logs, warehouse_tables(data_dir))


@pytest.fixture(scope="module")
def journey(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    data_dir = tmp_path_factory.mktemp("candles_journey")
    with SimulatorServer(port=0, now=after_close(BACKFILL[-1])) as sim:
        steps: dict[str, Any] = {"data_dir": data_dir}
        first, last = BACKFILL[0].isoformat(), BACKFILL[-1].isoformat()
        steps["backfill"] = run_step(sim, data_dir, (first, last), after_close(BACKFILL[-1]))
        steps["rerun"] = run_step(sim, data_dir, last, after_close(BACKFILL[-1]))
        steps["next"] = run_step(sim, data_dir, NEXT.isoformat(), after_close(NEXT))
        steps["cache_before_split"] = CandleCache(Lake(data_dir).candle_cache_dir).read(SPLIT_SYMBOL)
        split = {"endpoint": "chart", "symbol": SPLIT_SYMBOL, "kind": "split",
                 "split": {"date": SPLIT_DAY.isoformat(), "ratio": SPLIT_RATIO}}
        install_faults(sim, [split])
        steps["split"] = run_step(sim, data_dir, SPLIT_DAY.isoformat(), after_close(SPLIT_DAY))
        steps["pending_after_split"] = Lake(data_dir).pending_reloads("candles")
        install_faults(sim, [
            split,  # market state: the split stays in force
            {"endpoint": "chart", "symbol": "SPY", "kind": "429", "retry_after": 1},
            {"endpoint": "chart", "symbol": "AAPL", "kind": "429"},
            {"endpoint": "chart", "symbol": "QQQ", "kind": "truncated"},
        ])
        steps["storm"] = run_step(sim, data_dir, STORM_DAY.isoformat(), after_close(STORM_DAY))
        yield steps


# --- request counts -------------------------------------------------------------------------


def test_a_20_session_backfill_is_one_chart_request_per_symbol(journey: dict[str, Any]) -> None:
    step: Step = journey["backfill"]
    counts = per_ticker(step.requests)
    assert step.candles["symbols"] >= 10  # held underlyings + watchlist
    assert len(counts) == step.candles["symbols"]
    assert set(counts.values()) == {1}, counts
    assert step.candles["symbols_fetched"] == step.candles["symbols"]
    assert step.candles["stale_symbols"] == "none"
    assert step.check("candles_fresh").passed
    # One request covers the 20 sessions and the HV lookback before them.
    assert all(window_days(e) > 365 for e in step.requests)
    assert step.candles["sessions_written"] == 20
    candles = step.warehouse["candles"]
    assert sorted(candles["session_date"].dt.date.unique()) == BACKFILL


def test_rerunning_the_last_session_on_a_warm_cache_costs_nothing(journey: dict[str, Any]) -> None:
    step: Step = journey["rerun"]
    assert step.requests == []
    assert step.candles["cache_hits"] == step.candles["symbols"]
    assert step.candles["requests"] == 0


def test_the_next_session_is_one_small_request_per_symbol(journey: dict[str, Any]) -> None:
    step: Step = journey["next"]
    counts = per_ticker(step.requests)
    assert len(counts) == step.candles["symbols"]
    assert set(counts.values()) == {1}, counts
    # The overlap (5 cached bars) and the new session: about a week, never the history.
    assert all(window_days(e) <= 10 for e in step.requests), [e["query"] for e in step.requests]
    assert step.candles["rebased_symbols"] == "none"
    assert step.candles["sessions_rewritten"] == "none"


def test_progress_is_logged_every_few_symbols(journey: dict[str, Any]) -> None:
    lines = journey["backfill"].progress()
    total = lines[-1][1]
    assert [done for done, *_ in lines] == [*range(5, total, 5), total]
    assert lines[-1] == (total, total, total, 0, 0)  # done/total, requests, cache hits, retries
    rerun = journey["rerun"].progress()
    assert rerun[-1] == (total, total, 0, total, 0)
    storm = journey["storm"].progress()
    assert storm[-1][4] > 0, "the 429 storm's retries show in the progress line"


# --- a split re-bases one symbol everywhere ------------------------------------------------


def split_bars(clock: datetime, *, with_split: bool) -> pd.DataFrame:
    """What the simulator serves for the split symbol at ``clock`` (final bars, by NY date)."""
    extra = (Split(SPLIT_DAY, SPLIT_RATIO),) if with_split else ()
    bars = bars_as_of(SEED, SPLIT_SYMBOL, clock, extra)
    frame = pd.DataFrame({"session_date": [ny_day(t) for t in bars.timestamp], "close": bars.close})
    return frame.set_index("session_date")


def test_a_split_refetches_only_that_symbol(journey: dict[str, Any]) -> None:
    step: Step = journey["split"]
    counts = per_ticker(step.requests)
    assert counts[SPLIT_SYMBOL] == 2
    assert {t: n for t, n in counts.items() if t != SPLIT_SYMBOL} == dict.fromkeys(set(counts) - {SPLIT_SYMBOL}, 1)
    small, full = [e for e in step.requests if e["path"] == CHART + SPLIT_SYMBOL]
    assert window_days(small) <= 10
    cached_from = journey["cache_before_split"]["session_date"].min()
    assert ny_day(full["query"]["period1"]) <= cached_from, "the refetch covers the whole cached history"
    assert step.candles["rebased_symbols"] == SPLIT_SYMBOL


def test_a_split_rewrites_the_earlier_lake_partitions_and_the_warehouse(journey: dict[str, Any]) -> None:
    before: Step = journey["next"]
    after: Step = journey["split"]
    earlier = [*BACKFILL, NEXT]
    assert after.candles["sessions_rewritten"] == ", ".join(str(d) for d in earlier)
    served = split_bars(after_close(SPLIT_DAY), with_split=True)

    old = before.warehouse["candles"].assign(session_date=lambda f: f["session_date"].dt.date)
    new = after.warehouse["candles"].assign(session_date=lambda f: f["session_date"].dt.date)
    old_split = old[old["symbol"] == SPLIT_SYMBOL].set_index("session_date")
    new_split = new[new["symbol"] == SPLIT_SYMBOL].set_index("session_date")
    assert list(new_split.index) == [*earlier, SPLIT_DAY]
    # Bar for bar what the simulator serves now, i.e. the old closes divided by the ratio.
    assert new_split["close"].to_numpy() == pytest.approx(served.loc[new_split.index, "close"].to_numpy(), abs=1e-9)
    assert new_split.loc[earlier, "close"].to_numpy() == pytest.approx(
        old_split.loc[earlier, "close"].to_numpy() / SPLIT_RATIO, abs=1e-6
    )
    returns = np.diff(np.log(new_split["close"].to_numpy()))
    assert np.abs(returns).max() < 0.25, "old and new scales are mixed in the warehouse"

    # The lake agrees with the warehouse, and the reload manifest was consumed.
    lake = Lake(journey["data_dir"])
    for day in earlier:
        part = lake.read_partition("candles", day).set_index("symbol")
        assert part.loc[SPLIT_SYMBOL, "close"] == pytest.approx(served.loc[day, "close"], abs=1e-9)
    assert journey["pending_after_split"] == set()
    assert not lake.reload_manifest_path("candles").exists()

    # Every other symbol's earlier rows are untouched, value for value.
    others_old = old[(old["symbol"] != SPLIT_SYMBOL)].reset_index(drop=True)
    others_new = new[(new["symbol"] != SPLIT_SYMBOL) & (new["session_date"] < SPLIT_DAY)].reset_index(drop=True)
    pd.testing.assert_frame_equal(others_new, others_old)


def test_realised_volatility_has_no_jump_at_the_split(journey: dict[str, Any]) -> None:
    rv = journey["split"].warehouse["realized_volatility"]
    rv = rv[rv["symbol"] == SPLIT_SYMBOL].assign(session_date=lambda f: f["session_date"].dt.date)
    hv20 = rv.set_index("session_date")["hv20"]
    # Close-to-close HV is scale free: the split day's HV20 is what it would be without a split.
    unsplit = split_bars(after_close(SPLIT_DAY), with_split=False)["close"].to_numpy()
    expected = np.sqrt(252) * np.std(np.diff(np.log(unsplit[-21:])), ddof=1)
    assert hv20[SPLIT_DAY] == pytest.approx(expected, abs=1e-4)
    assert abs(hv20[SPLIT_DAY] - hv20[NEXT]) < 0.25  # an unadjusted 4:1 would add ~4.9


# --- failures end as stale data, flagged, never a failed run --------------------------------


def test_a_429_storm_and_a_truncated_body_end_stale_and_flagged(journey: dict[str, Any]) -> None:
    step: Step = journey["storm"]
    assert step.result.success
    stale = set(step.candles["stale_symbols"].split(", "))
    assert stale == {"SPY", "AAPL", "QQQ"}
    counts = per_ticker(step.requests)
    assert counts["AAPL"] == 5, "bounded retries, then give up"  # fast_resources: 5 attempts
    # SPY's Retry-After (1 s) is honoured in full: one wait fits the 1 s budget, then it gives up.
    assert counts["SPY"] == 2
    assert counts["QQQ"] == 1  # a truncated 200 is not retried: the body is kept in raw/
    assert all(n == 1 for t, n in counts.items() if t not in stale)
    fresh = step.check("candles_fresh")
    assert not fresh.passed
    assert fresh.severity == dg.AssetCheckSeverity.WARN
    listing = fresh.metadata["stale_or_unavailable"].value
    for symbol in stale:
        assert f"- {symbol}: stale" in listing
    assert "truncated JSON" in listing and "HTTP 429" in listing
    # The stale symbols keep their cached history (nothing lost), just no bar for the new session.
    lake = Lake(journey["data_dir"])
    landed = set(lake.read_partition("candles", STORM_DAY)["symbol"])
    assert stale.isdisjoint(landed) and len(landed) == step.candles["symbols"] - len(stale)
    cache = CandleCache(lake.candle_cache_dir)
    for symbol in stale:
        assert cache.read(symbol)["session_date"].max() == SPLIT_DAY


# --- recorded charts ------------------------------------------------------------------------


def recorded_closes(symbol: str) -> dict[date, float]:
    closes: dict[date, float] = {}
    for path in sorted((RECORDED / "yahoo").glob(f"chart_{symbol}*.json")):
        result = json.loads(path.read_text())["chart"]["result"][0]
        for stamp, close in zip(result.get("timestamp") or [], result["indicators"]["quote"][0]["close"]):
            if close is not None:
                closes.setdefault(ny_day(stamp), close)
    return closes


@pytest.mark.parametrize(
    ("first", "last", "checked"),
    [
        (date(2025, 10, 1), date(2025, 10, 28), ("AAPL", "MSFT")),
        (date(2022, 1, 3), date(2022, 1, 27), ("MSFT", "NVDA", "TSLA")),
    ],
    ids=["2025", "2022"],
)
def test_recorded_charts_load_bar_for_bar(
    recorded_dir: Path, tmp_path: Path, first: date, last: date, checked: tuple[str, ...]
) -> None:
    clock = after_close(last)
    with SimulatorServer(port=0, now=clock, replay_dir=recorded_dir) as sim:
        settings = pipeline_settings(tmp_path, sim.url, now=clock, watchlist="AAPL,MSFT,NVDA,TSLA")
        sessions = (first.isoformat(), last.isoformat())
        result = materialize(settings, partition_range=sessions, select=[*CANDLES, "warehouse"])
        requests = chart_requests(sim)
    assert result.success
    materialization = result.asset_materializations_for_node("candles")[-1]
    assert materialization.metadata["stale_symbols"].value == "RIVN"  # the recorded position: no chart
    (fresh,) = [e for e in result.get_asset_check_evaluations() if e.check_name == "candles_fresh"]
    assert not fresh.passed and "- RIVN: unavailable" in fresh.metadata["stale_or_unavailable"].value
    assert set(per_ticker(requests).values()) == {1}

    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as con:
        rows = con.execute(
            "SELECT symbol, session_date, close FROM candles ORDER BY symbol, session_date"
        ).fetchall()
    assert "RIVN" not in {symbol for symbol, _, _ in rows}
    for symbol in checked:
        recorded = {d: c for d, c in recorded_closes(symbol).items() if first <= d <= last}
        assert len(recorded) >= 15
        loaded = {d: c for s, d, c in rows if s == symbol}
        assert loaded == recorded, symbol  # exact: the same float64 as the recorded JSON


# --- the re-base bookkeeping, without Dagster -----------------------------------------------


def candle_rows(symbol: str, days: list[date], price: float) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "symbol": symbol,
            "yahoo_ticker": symbol,
            "session_date": days,
            "open": price,
            "high": price * 1.01,
            "low": price * 0.99,
            "close": price,
            "adj_close": price,
            "volume": pd.array([1000] * len(days), dtype="Int64"),
        }
    )


def test_without_a_rebase_no_partition_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Lake, "partition_days", lambda *args: pytest.fail("scanned the lake"))
    rebase = rebase_lake_candles(Lake(tmp_path), CandleCache(tmp_path / "cache"), [])
    assert rebase.empty and rebase.rows_replaced == 0


def test_an_interrupted_rebase_is_redone_and_the_warehouse_reloads_it(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    cache = CandleCache(lake.candle_cache_dir)
    days = sessions_back(date(2025, 11, 20), 3)
    for day in days:  # landed before the split: XYZ on the old scale
        rows = pd.concat([candle_rows("ABC", [day], 50.0), candle_rows("XYZ", [day], 400.0)])
        lake.write_partition("candles", day, rows)
    con = open_warehouse(lake.warehouse_path)
    try:
        load_sessions(con, lake, days)
        # A run re-based XYZ's cache (4:1) and crashed before it rewrote the lake.
        cache.write("XYZ", candle_rows("XYZ", days, 100.0))
        cache.write_meta("XYZ", CacheMeta("XYZ", after_close(days[-1]), lake_rebase_pending=True))
        # The next run has nothing to fetch, yet still reports XYZ re-based ...
        with YahooChartClient("http://127.0.0.1:9") as client:
            refresh = refresh_candles(
                ["XYZ"], days[-1], days[-1], now=after_close(days[-1]), client=client, cache=cache,
                lookback=2, log=lambda line: None,
            )
        assert [(s.status, s.requests, s.rebased) for s in refresh.statuses] == [("cached", 0, True)]
        # ... so the sync rewrites the lake (the run's own session from the refreshed cache) ...
        synced = sync_lake(lake, cache, refresh, [days[-1]])
        rebase = synced.rebase
        assert rebase.sessions == tuple(days[:2]) and (rebase.rows_replaced, rebase.rows_dropped) == (2, 0)
        assert lake.pending_reloads("candles") == set(days[:2])
        assert not cache.rebase_pending("XYZ")
        for day in days[:2]:
            part = lake.read_partition("candles", day).set_index("symbol")
            assert (part.loc["XYZ", "close"], part.loc["ABC", "close"]) == (100.0, 50.0)
            assert str(part["volume"].dtype) == "Int64"
        # ... and loading only the run's session reloads the rewritten ones too, then forgets them.
        report = load_sessions(con, lake, [days[-1]])
        assert report.reloaded_by_table == {"candles": 2}
        assert lake.pending_reloads("candles") == set()
        closes = con.execute(
            "SELECT session_date, close FROM candles WHERE symbol = 'XYZ' ORDER BY 1"
        ).fetchall()
    finally:
        con.close()
    assert closes == [(day, 100.0) for day in days]  # the run wrote its own session from the cache
