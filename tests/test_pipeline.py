"""End to end: real Dagster runs against the simulator over loopback, real Parquet and DuckDB."""

from __future__ import annotations

import dataclasses
import shutil
from datetime import date
from pathlib import Path

import duckdb
import numpy as np
import pytest

from support import CANDLES, EXTRACT, materialize, pipeline_settings
from variance_pipeline.candles.store import CandleStore
from variance_pipeline.lake.layout import Lake
from variance_pipeline.warehouse.load import TABLE_NAMES, VIEW_NAMES

pytestmark = pytest.mark.slow

PROJECT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def backfilled(tmp_path_factory: pytest.TempPathFactory, simulator) -> Path:
    """A five-session backfill ending at the current session, in one run."""
    data_dir = tmp_path_factory.mktemp("data")
    result = materialize(pipeline_settings(data_dir, simulator.url), partition_range=("2025-11-18", "2025-11-25"))
    assert result.success
    return data_dir


@pytest.fixture
def scratch(backfilled: Path, tmp_path: Path) -> Path:
    """A private copy of the backfilled data dir, for tests that corrupt or drift it."""
    data_dir = tmp_path / "copy"
    shutil.copytree(backfilled, data_dir)
    return data_dir


def test_backfill_fills_every_table_and_view(backfilled: Path) -> None:
    con = duckdb.connect(str(backfilled / "warehouse.duckdb"), read_only=True)
    for name in (*TABLE_NAMES, *VIEW_NAMES):
        assert con.execute(f"SELECT count(*) FROM {name}").fetchone()[0] > 0, name
    sessions = [r[0] for r in con.execute("SELECT DISTINCT session_date FROM candles ORDER BY 1").fetchall()]
    # 2025-11-18..25 holds six sessions; candles land only for the run's sessions.
    assert sessions == [date(2025, 11, d) for d in (18, 19, 20, 21, 24, 25)]
    # Snapshots land only in the current session (the clock is after the 2025-11-25 close).
    assert con.execute("SELECT DISTINCT as_of_date FROM positions").fetchall() == [(date(2025, 11, 25),)]
    hv252 = con.execute("SELECT count(hv252) FROM vol_dashboard").fetchone()[0]
    assert hv252 >= 3, "the candle lookback gives HV252 from the first run"


def test_grains_are_unique(backfilled: Path) -> None:
    con = duckdb.connect(str(backfilled / "warehouse.duckdb"), read_only=True)
    grains = {
        "positions": "as_of_date, account_number, symbol",
        "market_metrics": "as_of_date, symbol",
        "candles": "symbol, session_date",
        "realized_volatility": "symbol, session_date",
        "vol_dashboard": "symbol",
        "portfolio": "account_number, symbol",
    }
    for name, key in grains.items():
        dupes = con.execute(f"SELECT count(*) FROM (SELECT {key} FROM {name} GROUP BY ALL HAVING count(*) > 1)").fetchone()[0]
        assert dupes == 0, name


def test_hv20_and_hv252_equal_numpy_on_the_stored_closes(backfilled: Path) -> None:
    con = duckdb.connect(str(backfilled / "warehouse.duckdb"), read_only=True)
    rows = con.execute(
        "SELECT symbol, hv20, hv252 FROM realized_volatility WHERE session_date = DATE '2025-11-25'"
    ).fetchall()
    assert len(rows) >= 3
    store = CandleStore(Lake(backfilled).candles_dir)
    for symbol, hv20, hv252 in rows:
        bars = store.read(symbol)
        closes = bars.loc[bars["session_date"] <= date(2025, 11, 25)].sort_values("session_date")["close"]
        log_returns = np.diff(np.log(closes.to_numpy(dtype=float)))
        assert hv20 == pytest.approx(np.sqrt(252) * np.std(log_returns[-20:], ddof=1), abs=1e-9), symbol
        assert hv252 == pytest.approx(np.sqrt(252) * np.std(log_returns[-252:], ddof=1), abs=1e-9), symbol


def test_old_partition_writes_no_snapshot(tmp_path: Path, simulator) -> None:
    settings = pipeline_settings(tmp_path, simulator.url)
    result = materialize(settings, partition_key="2025-11-20", select=[*EXTRACT, "candles"])
    assert result.success
    lake = Lake(tmp_path)
    assert not lake.has_partition("positions", date(2025, 11, 20))
    assert not lake.has_partition("market_metrics", date(2025, 11, 20))
    assert len(CandleStore(lake.candles_dir).session(date(2025, 11, 20), ["SPY", "QQQ", "/ES"])) == 3
    meta = result.asset_materializations_for_node("positions")[0].metadata
    assert meta["landed"].value is False
    assert "cannot look back" in meta["reason"].value


def test_rerunning_a_session_changes_nothing(tmp_path: Path, simulator) -> None:
    settings = pipeline_settings(tmp_path, simulator.url)
    # The whole graph: the snapshot compares every warehouse table, so every asset must land.
    assert materialize(settings, partition_key="2025-11-25").success
    path = tmp_path / "warehouse.duckdb"

    def snapshot() -> dict[str, list]:
        with duckdb.connect(str(path), read_only=True) as con:
            return {
                t: con.execute(f"SELECT * EXCLUDE (fetched_at) FROM {t} ORDER BY ALL").fetchall()
                if t in ("positions", "market_metrics", "iv_term_structure", "earnings_calendar")
                else con.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall()
                for t in TABLE_NAMES
            }

    first = snapshot()
    assert materialize(settings, partition_key="2025-11-25").success
    assert snapshot() == first


def test_checks_run_with_the_assets_and_pass_on_clean_data(backfilled: Path, simulator) -> None:
    # Re-run the current session on the warm lake so the evaluations are this test's own; the
    # whole graph, so that every check of the code location runs and none fails on clean data.
    result = materialize(pipeline_settings(backfilled, simulator.url), partition_key="2025-11-25")
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    expected = {
        "positions_schema", "market_metrics_schema", "iv_term_structure_schema", "metrics_symbols_present",
        "candles_schema", "candles_fresh", "realized_volatility_schema",
        "candles_cover_universe", "warehouse_is_fresh", "hv30_reconciles_with_tastytrade",
    }
    assert expected <= set(evaluations)
    failed = {name for name, e in evaluations.items() if not e.passed}
    assert not failed, failed
    # The simulator's HV30 is the close-to-close HV30 of its own closes, rounded to 0.01 %.
    compared = evaluations["hv30_reconciles_with_tastytrade"].metadata["symbols_compared"].value
    assert compared >= 3


def test_reconciliation_check_fails_on_crafted_drift(scratch: Path, simulator) -> None:
    import dagster as dg

    from support import fast_resources
    from variance_pipeline.defs.checks import hv30_reconciles_with_tastytrade

    data_dir = scratch
    lake = Lake(data_dir)
    metrics = lake.read_partition("market_metrics", date(2025, 11, 25))
    metrics.loc[metrics["symbol"] == "SPY", "hv_30_day"] += 0.12  # 12 vol points off
    lake.write_partition("market_metrics", date(2025, 11, 25), metrics)
    result = dg.materialize(
        [hv30_reconciles_with_tastytrade],
        resources=fast_resources(pipeline_settings(data_dir, simulator.url)),
        selection=dg.AssetSelection.checks(hv30_reconciles_with_tastytrade),
    )
    (evaluation,) = result.get_asset_check_evaluations()
    assert not evaluation.passed
    assert evaluation.severity == dg.AssetCheckSeverity.WARN
    assert evaluation.metadata["beyond_tolerance"].value == "SPY"


def test_a_failed_blocking_volatility_check_keeps_the_warehouse_unchanged(scratch: Path, simulator) -> None:
    data_dir = scratch
    store = CandleStore(Lake(data_dir).candles_dir)
    bars = store.read("SPY").copy()
    bars.loc[bars["session_date"] == date(2025, 11, 20), ["open", "high", "low", "close"]] = 1e-9
    assert store.add(bars).outcome.ok  # a stored bar the declaration allows, with an absurd return
    before = duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True)
    hv_before = before.execute("SELECT * FROM realized_volatility ORDER BY ALL").fetchall()
    before.close()

    # The other upstream assets of the warehouse are in the copied lake already.
    result = materialize(
        pipeline_settings(data_dir, simulator.url), partition_key="2025-11-25", raise_on_error=False,
        select=["candles", "realized_volatility", "warehouse"],
    )
    assert not result.success
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    check = evaluations["realized_volatility_schema"]
    assert not check.passed and "failure_cases" in check.metadata
    assert not result.asset_materializations_for_node("warehouse")
    with duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True) as con:
        assert con.execute("SELECT * FROM realized_volatility ORDER BY ALL").fetchall() == hv_before


def test_every_materialization_reports_what_a_trader_reads(backfilled: Path, simulator) -> None:
    result = materialize(
        pipeline_settings(backfilled, simulator.url), partition_key="2025-11-25",
        select=[*EXTRACT, "candles", "realized_volatility", "warehouse"],
    )
    expected = {
        "positions": {"rows", "parquet_path", "preview", "requests", "retries", "underlyings", "raw_path"},
        "market_metrics": {"rows", "parquet_path", "preview", "symbols_requested", "symbols_missing", "requests"},
        "iv_term_structure": {"rows", "parquet_path", "preview"},
        "candles": {"rows", "symbols", "cache_hits", "stale_symbols", "requests", "retries", "store_path", "preview"},
        "realized_volatility": {"rows", "symbols", "hv252_non_null", "last_parquet_path", "preview"},
        "warehouse": {"rows_loaded", "warehouse_path", "vol_dashboard", "vol_chart", "vol_chart_path"},
    }
    events = {e.asset_key.to_user_string(): e.materialization.metadata for e in result.get_asset_materialization_events()}
    for asset, keys in expected.items():
        assert keys <= set(events[asset]), (asset, keys - set(events[asset]))
    # A warm cache: the re-run asks Yahoo for nothing.
    assert events["candles"]["requests"].value == 0
    assert events["candles"]["cache_hits"].value == events["candles"]["symbols"].value


def test_simulated_and_live_data_never_share_a_data_dir(
    tmp_path: Path, simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TASTYTRADE_CLIENT_SECRET", "any-secret")
    monkeypatch.setenv("TASTYTRADE_REFRESH_TOKEN", "any-token")
    simulated = pipeline_settings(tmp_path, simulator.url)
    # 2025-11-24 is before the clock's session: candles land (and stamp the data dir), snapshots not.
    assert materialize(simulated, partition_key="2025-11-24", select=CANDLES).success
    live = dataclasses.replace(simulated, source="live")
    result = materialize(live, partition_key="2025-11-24", raise_on_error=False, select=CANDLES)
    assert not result.success
    failure = result.get_run_failure_event() or next(e for e in result.all_events if e.is_failure)
    assert "holds 'simulator' data; refusing to write 'live' data" in str(failure.event_specific_data)
    assert (tmp_path / ".variance-source").read_text() == "simulator"


def test_a_bar_breaking_the_candle_declaration_never_reaches_realised_volatility(scratch: Path, simulator) -> None:
    """Only validated bars are stored: a bar that breaks the declaration is refused on its way in
    (with the reason), the store keeps the session's good bar, and volatility reads that one. (A
    bar Yahoo serves broken is quarantined and its session left empty: see test_faults' bad bars.)"""
    data_dir = scratch
    store = CandleStore(Lake(data_dir).candles_dir)
    bars = store.read("QQQ").copy()
    broken = bars["session_date"] == date(2025, 11, 20)
    good_high = float(bars.loc[broken, "high"].iloc[0])
    bars.loc[broken, "high"] = bars.loc[broken, "low"] * 0.5  # high below low: not a real bar
    landed = store.add(bars)
    assert "high_covers_open_close" in landed.outcome.quarantined["quarantine_reason"].iloc[0]
    stored = store.read("QQQ").set_index("session_date")
    assert stored.loc[date(2025, 11, 20), "high"] == good_high
    settings = pipeline_settings(data_dir, simulator.url)
    result = materialize(settings, partition_key="2025-11-25", select=["candles", "realized_volatility"])
    assert result.success
    closes = stored.loc[: date(2025, 11, 25), "close"].to_numpy()
    rv = Lake(data_dir).read_partition("realized_volatility", date(2025, 11, 25)).set_index("symbol")
    expected = np.sqrt(252) * np.std(np.diff(np.log(closes))[-20:], ddof=1)
    assert rv.loc["QQQ", "hv20"] == pytest.approx(expected, abs=1e-9)
