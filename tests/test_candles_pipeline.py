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

Beside step 3, a copy of step 2's data dir turned into the layout before the candle store (a
cache and per-session partitions) runs the same session: it is migrated and ends as step 3 did.
Replay runs check that recorded Yahoo charts land bar for bar; the warehouse side of a re-scale
(one symbol's history reloaded in the run's transaction) is checked without Dagster at the end.
"""

from __future__ import annotations

import json
import re
import shutil
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
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from support import CANDLES, RECORDED, materialize, pipeline_settings
from variance_pipeline.calendar import session_close, sessions_back
from variance_pipeline.candles.store import CandleStore
from variance_pipeline.lake.layout import Lake
from variance_pipeline.schemas.candles import CANDLES as CANDLES_DATASET
from variance_pipeline.simulator import SimulatorServer
from variance_pipeline.simulator.market import Split, bars_as_of
from variance_pipeline.warehouse import load
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
        old_layout = data_dir.parent / "old_layout"
        shutil.copytree(data_dir, old_layout)
        to_old_layout(old_layout)
        steps["next"] = run_step(sim, data_dir, NEXT.isoformat(), after_close(NEXT))
        steps["old_layout_dir"] = old_layout
        steps["old_layout_next"] = run_step(sim, old_layout, NEXT.isoformat(), after_close(NEXT))
        store = CandleStore(Lake(data_dir).candles_dir)
        steps["store_before_split"] = store.read(SPLIT_SYMBOL)
        steps["scales_before_split"] = {symbol: store.scale(symbol) for symbol in store.symbols()}
        split = {"endpoint": "chart", "symbol": SPLIT_SYMBOL, "kind": "split",
                 "split": {"date": SPLIT_DAY.isoformat(), "ratio": SPLIT_RATIO}}
        install_faults(sim, [split])
        steps["split"] = run_step(sim, data_dir, SPLIT_DAY.isoformat(), after_close(SPLIT_DAY))
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
    # The overlap (5 stored bars) and the new session: about a week, never the history.
    assert all(window_days(e) <= 10 for e in step.requests), [e["query"] for e in step.requests]
    assert step.candles["rescaled_symbols"] == "none"


def test_progress_is_logged_every_few_symbols(journey: dict[str, Any]) -> None:
    lines = journey["backfill"].progress()
    total = lines[-1][1]
    assert [done for done, *_ in lines] == [*range(5, total, 5), total]
    assert lines[-1] == (total, total, total, 0, 0)  # done/total, requests, cache hits, retries
    rerun = journey["rerun"].progress()
    assert rerun[-1] == (total, total, 0, total, 0)
    storm = journey["storm"].progress()
    assert storm[-1][4] > 0, "the 429 storm's retries show in the progress line"


# --- an old data dir keeps working ----------------------------------------------------------


def to_old_layout(data_dir: Path) -> None:
    """The data dir as the code before the candle store left it: each symbol's history in the
    candle cache (``cache/candles/<s>.parquet``, every column nullable; its fetch state as the
    ``.json`` sidecar), the sessions runs landed as ``lake/candles/date=D/part-0.parquet``, and a
    warehouse that never recorded a scale."""
    lake = Lake(data_dir)
    cache = data_dir / "cache" / "candles"
    cache.mkdir(parents=True)
    loose = pa.schema([field.with_nullable(True) for field in CANDLES_DATASET.arrow_schema])
    landed = []
    for symbol, path in lake.candle_files().items():
        bars = pq.read_table(path).to_pandas()
        stem = path.parent.name.removeprefix("symbol=")
        pq.write_table(pa.Table.from_pandas(bars, schema=loose, preserve_index=False), cache / f"{stem}.parquet")
        state = json.loads(lake.candle_state_path(symbol).read_text())
        (cache / f"{stem}.json").write_text(json.dumps({**state, "lake_rebase_pending": False}))
        landed.append(bars[bars["session_date"].isin(BACKFILL)])
    for day, rows in pd.concat(landed).groupby("session_date"):
        target = data_dir / "lake" / "candles" / f"date={day}" / "part-0.parquet"
        target.parent.mkdir(parents=True)
        pq.write_table(CANDLES_DATASET.arrow_table(rows.sort_values("symbol")), target)
    for folder in lake.candle_folders().values():
        shutil.rmtree(folder)
    shutil.rmtree(lake.candle_state_dir)
    with duckdb.connect(str(lake.warehouse_path)) as con:
        con.execute("DROP TABLE candle_scales")


def test_an_old_data_dir_is_migrated_and_runs_the_next_session_as_a_new_one(journey: dict[str, Any]) -> None:
    step: Step = journey["old_layout_next"]
    data_dir: Path = journey["old_layout_dir"]
    # The migrated store and state answer as before: one small request per symbol, no refetch.
    assert set(per_ticker(step.requests).values()) == {1}
    assert all(window_days(e) <= 10 for e in step.requests), [e["query"] for e in step.requests]
    assert step.candles["rescaled_symbols"] == "none"
    # Nothing of the old layout is left, and no bar was lost or refused on the way.
    assert not (data_dir / "cache" / "candles").exists()
    assert all(p.name.startswith("symbol=") for p in (data_dir / "lake" / "candles").iterdir())
    assert not (data_dir / "quarantine" / "candles" / "migration").exists()
    # The same rows as the data dir that never had the old layout.
    for table, frame in journey["next"].warehouse.items():
        pd.testing.assert_frame_equal(step.warehouse[table], frame)
    with duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True) as con:
        recorded = dict(con.execute("SELECT symbol, scale FROM candle_scales").fetchall())
    store = CandleStore(Lake(data_dir).candles_dir)
    assert recorded == {symbol: store.scale(symbol) for symbol in store.symbols()}


# --- a split re-scales one symbol everywhere ------------------------------------------------


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
    stored_from = journey["store_before_split"]["session_date"].min()
    assert ny_day(full["query"]["period1"]) <= stored_from, "the refetch covers the whole stored history"
    assert step.candles["rescaled_symbols"] == SPLIT_SYMBOL


def test_a_split_rewrites_the_symbols_one_file_and_the_warehouse_reloads_it(journey: dict[str, Any]) -> None:
    before: Step = journey["next"]
    after: Step = journey["split"]
    earlier = [*BACKFILL, NEXT]
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

    # The store agrees with the warehouse: the symbol's one file holds the new scale (a new scale
    # id, which the warehouse recorded in the same transaction); no other file was rewritten.
    lake = Lake(journey["data_dir"])
    store = CandleStore(lake.candles_dir)
    stored = store.read(SPLIT_SYMBOL).set_index("session_date")
    assert stored.loc[earlier, "close"].to_numpy() == pytest.approx(served.loc[earlier, "close"].to_numpy(), abs=1e-9)
    scales = {symbol: store.scale(symbol) for symbol in store.symbols()}
    old_scales = journey["scales_before_split"]
    assert {s for s in scales if scales[s] != old_scales.get(s)} == {SPLIT_SYMBOL}
    with duckdb.connect(str(lake.warehouse_path), read_only=True) as con:
        assert dict(con.execute("SELECT symbol, scale FROM candle_scales").fetchall()) == scales

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
    # The stale symbols keep their stored history (nothing lost), just no bar for the new session.
    store = CandleStore(Lake(journey["data_dir"]).candles_dir)
    landed = set(store.session(STORM_DAY, store.symbols())["symbol"])
    assert stale.isdisjoint(landed) and len(landed) == step.candles["symbols"] - len(stale)
    for symbol in stale:
        assert store.read(symbol)["session_date"].max() == SPLIT_DAY


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


# --- a re-scale in the warehouse, without Dagster ------------------------------------------


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


def closes(con: duckdb.DuckDBPyConnection, symbol: str) -> list[tuple[date, float]]:
    return con.execute("SELECT session_date, close FROM candles WHERE symbol = ? ORDER BY 1", [symbol]).fetchall()


@pytest.fixture()
def loaded(tmp_path: Path) -> Iterator[tuple[Lake, CandleStore, duckdb.DuckDBPyConnection, list[date]]]:
    """Two symbols' candles for three sessions, loaded: XYZ on its pre-split scale."""
    lake = Lake(tmp_path)
    store = CandleStore(lake.candles_dir)
    days = sessions_back(date(2025, 11, 20), 3)
    store.add(pd.concat([candle_rows("ABC", days, 50.0), candle_rows("XYZ", days, 400.0)]))
    con = open_warehouse(lake.warehouse_path)
    try:
        load_sessions(con, lake, days)
        yield lake, store, con, days
    finally:
        con.close()


def test_a_daily_load_reads_only_the_run_sessions(loaded) -> None:
    lake, store, con, days = loaded
    # A bar of an earlier session changes on the same scale (a late correction): only a run of
    # that session loads it; a run of another session touches its own rows alone (O(day)).
    store.add(candle_rows("ABC", [days[0]], 51.0))
    report = load_sessions(con, lake, [days[-1]])
    assert (report.rescaled_symbols, report.rows_reloaded, report.rows_by_table["candles"]) == ((), 0, 2)
    assert closes(con, "ABC") == [(day, 50.0) for day in days]


def test_a_rescaled_symbol_is_reloaded_in_the_runs_transaction(loaded) -> None:
    lake, store, con, days = loaded
    store.replace(candle_rows("XYZ", days[1:], 100.0))  # a 4:1 split; its first session is no longer served
    report = load_sessions(con, lake, [days[-1]])
    assert (report.rescaled_symbols, report.rows_reloaded) == (("XYZ",), 1)
    # Every session the warehouse held of it is on the new scale, or gone: never the old scale.
    assert closes(con, "XYZ") == [(day, 100.0) for day in days[1:]]
    assert closes(con, "ABC") == [(day, 50.0) for day in days]
    recorded = dict(con.execute("SELECT symbol, scale FROM candle_scales").fetchall())
    assert recorded == {"ABC": store.scale("ABC"), "XYZ": store.scale("XYZ")}
    again = load_sessions(con, lake, [days[-1]])
    assert (again.rescaled_symbols, again.rows_reloaded) == ((), 0)


def test_a_load_that_fails_after_a_rescale_leaves_the_warehouse_as_it_was(
    loaded, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The re-scale is recorded in the load's transaction: a failed load keeps the old rows and the
    old scale, so the next load still sees the new scale and reloads the symbol."""
    lake, store, con, days = loaded
    store.replace(candle_rows("XYZ", days, 100.0))
    before = closes(con, "XYZ"), con.execute("SELECT * FROM candle_scales ORDER BY 1").fetchall()

    def crash(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the process died here")

    monkeypatch.setattr(load, "refresh_vol_history", crash)
    with pytest.raises(RuntimeError):
        load_sessions(con, lake, [days[-1]])
    assert (closes(con, "XYZ"), con.execute("SELECT * FROM candle_scales ORDER BY 1").fetchall()) == before
    monkeypatch.undo()
    assert load_sessions(con, lake, [days[-1]]).rescaled_symbols == ("XYZ",)
    assert closes(con, "XYZ") == [(day, 100.0) for day in days]
