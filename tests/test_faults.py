"""What happens when ...: real pipeline runs against the simulator, one case per fault a user meets.

Every case drives whole runs (``dg.materialize`` of every asset and check, or a separate process
that is killed with SIGKILL, or the real ``dagster`` CLI twice at once) and asserts what a user can
rely on: the run's status, a message that names what failed and where, what landed, that nothing
previously good was lost, duplicated or half-visible, and that a clean re-run heals (row sets equal
to a clean run's). ``FAULT_CASES`` lists the cases; the README's "What happens when ..." table has
one row per case, and ``test_the_readme_table_lists_exactly_these_cases`` holds them together.

The data: ``seed`` is a clean run of 2025-11-18..20 on the evening of 2025-11-20 (snapshots of that
evening, candles and volatility for three sessions, a warehouse); ``clean`` is the seed plus a clean
ranged run of 2025-11-18..25 on the evening of 2025-11-25. Each case copies the seed (or the clean
dir), applies its fault, and compares with ``clean``. Run alone with ``pytest -m faults``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import quote
from zoneinfo import ZoneInfo

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from support import (
    CLOCK,
    RUN_RANGE,
    SEED_CLOCK,
    SEED_RANGE,
    all_assets_and_checks,
    assert_same_parquet,
    fast_resources,
    parquet_files,
    pipeline_settings,
    reconfigured,
    start_killable_run,
    wait_for,
    warehouse_rows,
)
from variance_pipeline.defs.resources import RetryConfig
from variance_pipeline.lake.layout import Lake
from variance_pipeline.simulator import SimulatorServer
from variance_pipeline.simulator.faults import parse_rules
from variance_pipeline.sources.yahoo import raw_name, yahoo_ticker
from variance_pipeline.warehouse import cli as warehouse_cli

pytestmark = [pytest.mark.slow, pytest.mark.faults]

PROJECT = Path(__file__).resolve().parents[1]
README = PROJECT / "README.md"

WATCHLIST = "SPY,QQQ,/ES"
# The next session's close after the 2025-11-25 snapshot: until then a re-run can still take it.
SNAPSHOT_DEADLINE = "2025-11-26T21:00:00+00:00"
NEW_YORK = ZoneInfo("America/New_York")

# One row per case in the README table "What happens when ..." (same ids, same order).
FAULT_CASES: dict[str, str] = {
    "kill-9-extract": "a run is killed (kill -9) while it fetches the snapshots",
    "kill-9-candles": "a run is killed while it lands candles",
    "kill-9-volatility": "a run is killed while it writes realised volatility",
    "kill-9-warehouse": "a run is killed inside the warehouse load",
    "kill-9-publish": "a run is killed while it publishes the warehouse",
    "reader-holds-warehouse": "a reader holds the warehouse open across a run",
    "two-runs-at-once": "two runs start at once on one data dir and Dagster instance",
    "disk-full": "the disk fills up during a run",
    "disk-below-floor": "a run starts with less free space than the floor",
    "corrupt-candle-file": "a symbol's candle file is truncated",
    "corrupt-candle-state": "a symbol's candle fetch state holds garbage",
    "truncated-warehouse": "warehouse.duckdb is truncated",
    "api-429-storm": "the APIs answer 429 for longer than the retry budget",
    "api-401-mid-run": "Tastytrade answers 401 after the positions were fetched",
    "api-5xx-burst": "a short burst of 500/503",
    "api-timeouts": "the APIs stop answering in time",
    "api-truncated-json": "responses arrive cut off (truncated JSON)",
    "api-404-unknown-symbol": "Yahoo answers 404 for a symbol (delisted, or a wrong mapping)",
    "drift-missing-field": "a required field is missing",
    "drift-number-as-string": "a number arrives as a string",
    "drift-string-as-number": "a numeric string arrives as a number",
    "drift-unknown-field": "an unknown field appears",
    "bad-bar-null": "Yahoo serves a null bar",
    "bad-bar-zero": "Yahoo serves a zero price",
    "bad-bar-negative": "Yahoo serves a negative price",
    "bad-bar-high-below-low": "Yahoo serves a bar whose high is below its low",
    "bad-bar-duplicate": "Yahoo serves two bars with one timestamp",
    "clock-skew": "the run's clock is behind the last stored bar",
}


# --- the simulator, runs and snapshots of what landed ----------------------------------------


# ``sim`` (conftest.py) is a simulator of this module's own at ``CLOCK``: the faults installed
# here reach no other module.


@pytest.fixture(autouse=True)
def _no_faults_left(sim: SimulatorServer) -> Iterator[None]:
    sim.faults.clear()
    sim.now = CLOCK
    yield
    sim.faults.clear()
    sim.now = CLOCK


def run(
    data_dir: Path,
    url: str,
    *,
    partition_range: tuple[str, str] | None = RUN_RANGE,
    partition_key: str | None = None,
    now: datetime = CLOCK,
    watchlist: str = WATCHLIST,
    pipeline: dict[str, Any] | None = None,
    retry: RetryConfig | None = None,
    charts: bool = False,
) -> dg.ExecuteInProcessResult:
    """A whole in-process run of every asset and check (fast retries unless ``retry``)."""
    settings = pipeline_settings(data_dir, url, now=now, watchlist=watchlist)
    resources = fast_resources(settings)
    if pipeline:
        resources["pipeline"] = reconfigured(resources["pipeline"], **pipeline)
    if retry is not None:
        resources["tastytrade"] = reconfigured(resources["tastytrade"], retry=retry)
        resources["yahoo"] = reconfigured(resources["yahoo"], retry=retry)
    tags = {}
    if partition_key is None and partition_range is not None:
        tags = {
            "dagster/asset_partition_range_start": partition_range[0],
            "dagster/asset_partition_range_end": partition_range[1],
        }
    return dg.materialize(
        all_assets_and_checks(),
        resources=resources,
        partition_key=partition_key,
        tags=tags,
        raise_on_error=False,
        run_config={"ops": {"warehouse": {"config": {"charts": charts}}}},
    )


def _error_texts(error: Any) -> Iterator[str]:
    while error is not None:
        yield error.message
        error = error.cause


def failures(result: dg.ExecuteInProcessResult) -> dict[str, str]:
    """step key -> everything the run log says about why it failed."""
    found: dict[str, list[str]] = {}
    for event in result.all_events:
        if event.event_type_value == "STEP_FAILURE":
            data = event.step_failure_data
            texts = found.setdefault(event.step_key, [])
            texts.extend(_error_texts(data.error))
            if data.user_failure_data is not None:
                texts.append(data.user_failure_data.description or "")
    return {step: "\n".join(texts) for step, texts in found.items()}


def run_failure(result: dg.ExecuteInProcessResult) -> str:
    """Why a run failed before any step ran (resource set-up), as the run log says it."""
    texts = []
    for event in result.all_events:
        if event.is_failure or event.event_type_value in ("RUN_FAILURE", "ENGINE_EVENT"):
            data = event.event_specific_data
            error = getattr(data, "error", None)
            texts.extend(_error_texts(error))
            texts.append(event.message or "")
    return "\n".join(texts)


def checks(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def materialization(result: dg.ExecuteInProcessResult, asset: str) -> dict[str, Any]:
    events = [e for e in result.get_asset_materialization_events() if e.asset_key == dg.AssetKey(asset)]
    assert events, f"{asset} was not materialized"
    return {k: getattr(v, "value", v) for k, v in events[-1].materialization.metadata.items()}


def temp_files(data_dir: Path) -> list[Path]:
    return sorted(p for pattern in (".*.tmp", ".*.tmp.wal") for p in data_dir.rglob(pattern) if p.is_file())


def assert_like_clean(data_dir: Path, clean: Path) -> None:
    """The row sets of a clean run: warehouse tables, the lake (session partitions and each symbol's
    candle file), the quarantine, no temporary files."""
    assert not temp_files(data_dir)
    assert warehouse_rows(data_dir) == warehouse_rows(clean)
    assert_same_parquet(parquet_files(data_dir, "lake", "quarantine"), parquet_files(clean, "lake", "quarantine"))


def assert_every_parquet_readable(data_dir: Path) -> None:
    for path in data_dir.rglob("*.parquet"):
        pq.read_metadata(path)  # raises on a half-written file


def copy_of(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


@pytest.fixture(scope="module")
def seed(tmp_path_factory: pytest.TempPathFactory, sim: SimulatorServer) -> Path:
    """The previous good state: 2025-11-18..20 run on the evening of 2025-11-20."""
    data_dir = tmp_path_factory.mktemp("seed") / "data"
    sim.now = SEED_CLOCK
    try:
        result = run(data_dir, sim.url, partition_range=SEED_RANGE, now=SEED_CLOCK)
    finally:
        sim.now = CLOCK
    assert result.success, failures(result)
    return data_dir


@pytest.fixture(scope="module")
def clean(seed: Path, tmp_path_factory: pytest.TempPathFactory, sim: SimulatorServer) -> Path:
    """The seed plus a clean run of 2025-11-18..25: what every healed case must equal."""
    data_dir = copy_of(seed, tmp_path_factory.mktemp("clean") / "data")
    result = run(data_dir, sim.url)
    assert result.success, failures(result)
    return data_dir


# --- kill -9 at each step ---------------------------------------------------------------------

# Where each step is killed: a file of the step written to its temporary name, not yet renamed
# (exactly what leaves a ``.part-0.parquet.<pid>.<random>.tmp`` behind), or inside the
# warehouse's transaction after every insert.
KILL_POINTS = {
    "kill-9-extract": "raw/positions/date=2025-11-25/",
    "kill-9-candles": "lake/candles/symbol=SPY/",
    "kill-9-volatility": "lake/realized_volatility/date=2025-11-21/",
    "kill-9-warehouse": "warehouse-transaction",
    "kill-9-publish": "/warehouse.duckdb",  # the private copy loaded, checkpointed, about to be renamed
}
# What a kill leaves behind, per case: a temporary file of that step (never a half-written one
# under its final name); the warehouse cases leave the private copy (and its WAL) beside the file.
LEFT_BEHIND = {**KILL_POINTS, "kill-9-warehouse": ".warehouse.duckdb.", "kill-9-publish": ".warehouse.duckdb."}


@pytest.mark.parametrize("case", list(KILL_POINTS))
def test_kill_9_at_each_step_then_a_rerun_heals(
    case: str, seed: Path, clean: Path, tmp_path: Path, sim: SimulatorServer
) -> None:
    data_dir = copy_of(seed, tmp_path / "data")
    before = warehouse_rows(data_dir)
    process, marker, log = start_killable_run(
        data_dir, sim.url, KILL_POINTS[case], tmp_path, now=CLOCK, watchlist=WATCHLIST, partition_range=RUN_RANGE
    )
    wait_for(marker, process, log)
    os.killpg(process.pid, signal.SIGKILL)
    assert process.wait(timeout=30) == -signal.SIGKILL

    # Killed: nothing previously good is lost, duplicated or half-visible.
    assert warehouse_rows(data_dir) == before, "the warehouse changed although the run never committed"
    assert_every_parquet_readable(data_dir)
    left = temp_files(data_dir)
    assert left and all(LEFT_BEHIND[case] in str(p) for p in left), left  # what the kill leaves behind

    result = run(data_dir, sim.url)  # a clean re-run of the same range
    assert result.success, failures(result)
    assert_like_clean(data_dir, clean)  # no temporary file survives, the rows equal a clean run's


READER = r"""
import json, sys, time
from pathlib import Path
import duckdb

path, go, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
con = duckdb.connect(path, read_only=True)  # a user's session, open across the whole run
count = "SELECT count(*), max(session_date)::VARCHAR FROM candles"
before = list(con.execute(count).fetchone())
out.write_text(json.dumps([before]))
while not go.exists():
    time.sleep(0.05)
out.write_text(json.dumps([before, list(con.execute(count).fetchone())]))
"""


def test_a_reader_holding_the_warehouse_never_blocks_a_run(
    seed: Path, clean: Path, tmp_path: Path, sim: SimulatorServer
) -> None:
    """The published warehouse is never edited in place: a reader's session across the evening
    neither fails the run nor sees half a load; a connection opened afterwards sees the new sessions."""
    data_dir = copy_of(seed, tmp_path / "data")
    go, out = tmp_path / "go", tmp_path / "reader.out"
    reader = subprocess.Popen([sys.executable, "-c", READER, str(data_dir / "warehouse.duckdb"), str(go), str(out)])
    try:
        deadline = time.monotonic() + 60
        while not out.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        [before] = json.loads(out.read_text())
        result = run(data_dir, sim.url, retry=RetryConfig(base_delay=0.01, max_delay=0.05, max_total_wait=1.0))
        assert result.success, failures(result)
        go.touch()
        assert reader.wait(timeout=60) == 0
    finally:
        if reader.poll() is None:
            reader.kill()
    seen_before, seen_after = json.loads(out.read_text())
    assert seen_before == before and seen_after == before  # one consistent view, never half a load
    with duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True) as con:
        assert con.execute("SELECT max(session_date) FROM candles").fetchone()[0] == date(2025, 11, 25)
    assert_like_clean(data_dir, clean)


def test_the_sweep_removes_a_dead_writers_temp_files_and_keeps_a_live_ones(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    folder = lake.partition_path("realized_volatility", date(2025, 11, 21)).parent
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = folder / f".part-0.parquet.{int(dead.stdout)}.abc_123.tmp"
    live = folder / f".part-0.parquet.{os.getpid()}.def_456.tmp"  # another run writing right now
    other_day = lake.partition_path("realized_volatility", date(2025, 11, 24)).parent / stale.name
    first_write = lake.candle_path("SPY").parent / stale.name  # a symbol's first file, never renamed into place
    for path in (stale, live, other_day, first_write):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half a file")
    assert sorted(lake.sweep_run_temp_files([date(2025, 11, 21)])) == sorted([stale, first_write])
    assert live.exists() and other_day.exists()  # a live writer's, and another run's partition


# --- two runs at once -------------------------------------------------------------------------


def test_two_runs_at_once_on_one_data_dir_and_instance(
    seed: Path, clean: Path, tmp_path: Path, sim: SimulatorServer
) -> None:
    data_dir = copy_of(seed, tmp_path / "data")
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copyfile(PROJECT / "deploy" / "dagster.yaml", home / "dagster.yaml")
    # An instance that exists already (any earlier run, `make dev`, `dagster instance info`): two
    # processes racing to create a brand-new SQLite run storage leave it with two alembic heads.
    with dg.DagsterInstance.from_config(str(home)):
        pass
    env = {
        **os.environ,
        "VARIANCE_SOURCE": "simulator",
        "VARIANCE_DATA_DIR": str(data_dir),
        "VARIANCE_NOW": CLOCK.isoformat(),
        "VARIANCE_WATCHLIST": WATCHLIST,
        "VARIANCE_SIMULATOR_URL": sim.url,
        "VARIANCE_YAHOO_RATE": "1000",
        "DAGSTER_HOME": str(home),
    }
    for name in ("TASTYTRADE_API_URL", "YAHOO_CHART_URL", "VARIANCE_MIN_FREE_MB"):
        env.pop(name, None)
    command = [
        str(Path(sys.executable).with_name("dagster")), "asset", "materialize", "-m", "variance_pipeline.definitions",
        "--select", "*", "--partition-range", "...".join(RUN_RANGE),
    ]
    logs = [tmp_path / f"run{i}.log" for i in (1, 2)]
    processes = []
    for log in logs:
        with log.open("wb") as out:
            processes.append(subprocess.Popen(command, env=env, cwd=PROJECT, stdout=out, stderr=subprocess.STDOUT))
    codes = [p.wait(timeout=300) for p in processes]
    assert codes == [0, 0], "\n".join(log.read_text()[-2000:] for log in logs)

    with dg.DagsterInstance.from_config(str(home)) as instance:
        records = instance.get_run_records()
    assert [r.dagster_run.status for r in records] == [dg.DagsterRunStatus.SUCCESS] * 2
    first, second = sorted(records, key=lambda r: r.start_time)
    assert second.start_time < first.end_time, "the two runs did not overlap"
    assert_like_clean(data_dir, clean)  # no duplicates, nothing lost, nothing left half-written


# --- a full disk ------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 96 MiB tmpfs mounted for this test, or a skip saying why it cannot be."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (the disk-full case runs as root, e.g. in CI's container)")
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=96m", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or done.returncode}): no small disk to fill")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


# Free bytes left when the run starts: too few for the first cache and raw writes ("lake"), or
# enough for the lake but not for the warehouse's load and checkpoint ("warehouse"; the run grows
# the 14 MB DuckDB file by more than that).
DISK_FULL_HEADROOM = {"lake": 100_000, "warehouse": 1_500_000}


@pytest.mark.parametrize("where", list(DISK_FULL_HEADROOM))
def test_a_full_disk_fails_the_run_and_keeps_the_warehouse_consistent(
    where: str, small_disk: Path, seed: Path, clean: Path, sim: SimulatorServer
) -> None:
    data_dir = copy_of(seed, small_disk / "data")
    before = warehouse_rows(data_dir)
    ballast = small_disk / "ballast"
    ballast.write_bytes(b"\0" * (shutil.disk_usage(small_disk).free - DISK_FULL_HEADROOM[where]))
    result = run(data_dir, sim.url, pipeline={"min_free_mb": 0}, charts=True)

    assert not result.success  # never a green run on a full disk
    failed = failures(result)
    text = "\n".join(failed.values())
    # The step that met the full disk says so and names the file.
    assert "no space left on device" in text.lower() and str(data_dir) in text, failed
    if where == "lake":
        assert "DiskFullError: no space left on device writing " in text and "nothing was replaced" in text
    else:
        assert "warehouse" in failed and f"warehouse {data_dir / 'warehouse.duckdb'}: no space left" in failed["warehouse"]
    # The warehouse is one transaction: it holds the previous sessions, or the committed new ones.
    after = warehouse_rows(data_dir)
    assert after in (before, warehouse_rows(clean))
    assert_every_parquet_readable(data_dir)
    assert not temp_files(data_dir)

    ballast.unlink()
    healed = run(data_dir, sim.url, pipeline={"min_free_mb": 0})  # the tmpfs is smaller than the default floor
    assert healed.success, failures(healed)
    assert_like_clean(data_dir, clean)


def test_a_run_refuses_to_start_below_the_free_space_floor(
    seed: Path, tmp_path: Path, sim: SimulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir = copy_of(seed, tmp_path / "data")
    listing = {p: p.stat().st_mtime_ns for p in data_dir.rglob("*")}
    floor = int(shutil.disk_usage(data_dir).free / 2**20) + 1_000_000  # far more than the disk has
    result = run(data_dir, sim.url, pipeline={"min_free_mb": floor})
    assert not result.success
    text = run_failure(result)
    assert f"{data_dir} has" in text and "MB free" in text and f"floor of {floor} MB" in text, text
    assert "VARIANCE_MIN_FREE_MB" in text and "Nothing was fetched or written" in text
    assert not result.get_asset_materialization_events()
    assert {p: p.stat().st_mtime_ns for p in data_dir.rglob("*")} == listing  # nothing written


# --- corrupt state ----------------------------------------------------------------------------


def test_a_truncated_candle_file_is_set_aside_and_refetched(
    clean: Path, tmp_path: Path, sim: SimulatorServer, caplog: pytest.LogCaptureFixture
) -> None:
    data_dir = copy_of(clean, tmp_path / "data")
    stored = Lake(data_dir).candle_path("SPY")
    good = stored.read_bytes()
    stored.write_bytes(good[: len(good) // 2])
    sim.requests.clear()
    with caplog.at_level("WARNING", logger="variance_pipeline.candles.store"):
        result = run(data_dir, sim.url)
    assert result.success, failures(result)
    warned = "\n".join(r.getMessage() for r in caplog.records)
    assert str(stored) in warned and "unreadable" in warned and "fetched again" in warned, warned
    aside = stored.with_name("part-0.parquet.corrupt")
    assert aside.read_bytes() == good[: len(good) // 2]  # kept for inspection
    charts = [e for e in sim.requests.entries() if e["path"].startswith("/v8/finance/chart/")]
    assert [e["path"] for e in charts] == ["/v8/finance/chart/SPY"]  # only the lost symbol refetched
    aside.unlink()
    assert_like_clean(data_dir, clean)


def test_a_garbage_fetch_state_is_set_aside_and_rechecked(
    clean: Path, tmp_path: Path, sim: SimulatorServer, caplog: pytest.LogCaptureFixture
) -> None:
    data_dir = copy_of(clean, tmp_path / "data")
    state = Lake(data_dir).candle_state_path("/ES")
    assert state == data_dir / "state" / "candles" / "%2FES.json"
    state.write_bytes(b"\x00\xff{not json")
    with caplog.at_level("WARNING", logger="variance_pipeline.candles.store"):
        result = run(data_dir, sim.url)
    assert result.success, failures(result)
    warned = "\n".join(r.getMessage() for r in caplog.records)
    assert str(state) in warned and "fetch state" in warned, warned
    assert state.with_name("%2FES.json.corrupt").read_bytes() == b"\x00\xff{not json"
    if state.exists():  # rewritten when the gap re-check fetched
        assert json.loads(state.read_text())["yahoo_ticker"] == "ES=F"
    state.with_name("%2FES.json.corrupt").unlink()
    assert_like_clean(data_dir, clean)


def test_a_truncated_warehouse_fails_naming_the_file_and_make_rebuild(
    clean: Path, tmp_path: Path, sim: SimulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir = copy_of(clean, tmp_path / "data")
    path = data_dir / "warehouse.duckdb"
    os.truncate(path, 64 * 1024)
    lake_before = parquet_files(data_dir, "lake")
    result = run(data_dir, sim.url)
    assert not result.success
    failed = failures(result)
    assert "warehouse" in failed, failed
    message = failed["warehouse"]
    assert f"warehouse {path} cannot be read" in message and "`make rebuild`" in message, message
    assert "Traceback" not in message.splitlines()[0]
    assert_same_parquet(parquet_files(data_dir, "lake"), lake_before)  # the lake, what rebuilds it, is intact

    monkeypatch.setenv("VARIANCE_SOURCE", "simulator")
    monkeypatch.setenv("VARIANCE_DATA_DIR", str(data_dir))
    assert warehouse_cli.main(["rebuild"]) == 0  # what `make rebuild` runs
    assert warehouse_rows(data_dir) == warehouse_rows(clean)
    healed = run(data_dir, sim.url)
    assert healed.success, failures(healed)
    assert_like_clean(data_dir, clean)


# --- API faults through a whole run -----------------------------------------------------------

TIMEOUT_RETRY = RetryConfig(max_attempts=2, base_delay=0.01, max_delay=0.02, max_total_wait=0.5, timeout=0.2)

# case -> (fault rules for Tastytrade's metrics and Yahoo's chart, what the metrics failure says)
FATAL_API_FAULTS: dict[str, tuple[list[dict], str]] = {
    "api-429-storm": (
        [{"endpoint": "market-metrics", "kind": "429"}, {"endpoint": "chart", "kind": "429"}], "429"),
    "api-401-mid-run": (
        [{"endpoint": "market-metrics", "kind": "401"}, {"endpoint": "chart", "kind": "401"}], "401"),
    "api-timeouts": (
        [{"endpoint": "market-metrics", "kind": "slow", "delay": 1.0}, {"endpoint": "chart", "kind": "slow", "delay": 1.0}],
        "Timeout"),
    "api-truncated-json": (
        [{"endpoint": "market-metrics", "kind": "truncated"}, {"endpoint": "chart", "kind": "truncated"}],
        "not valid JSON"),
    "drift-missing-field": (
        [{"endpoint": "market-metrics", "kind": "missing_field", "field": "symbol"},
         {"endpoint": "chart", "kind": "missing_field", "field": "close"}],
        "missing required field 'symbol'"),
}


def stored_candles(data_dir: Path) -> dict[str, bytes]:
    """Every symbol's candle file, byte for byte."""
    return {symbol: path.read_bytes() for symbol, path in Lake(data_dir).candle_files().items()}


@pytest.mark.parametrize("case", list(FATAL_API_FAULTS))
def test_api_faults_fail_snapshots_loudly_and_keep_the_stored_candles(
    case: str, seed: Path, clean: Path, tmp_path: Path, sim: SimulatorServer
) -> None:
    rules, says = FATAL_API_FAULTS[case]
    data_dir = copy_of(seed, tmp_path / "data")
    before = warehouse_rows(data_dir)
    candles_before = stored_candles(data_dir)
    sim.faults.replace(parse_rules(rules))
    result = run(data_dir, sim.url, retry=TIMEOUT_RETRY if case == "api-timeouts" else None)

    assert not result.success
    failed = failures(result)
    message = failed.get("market_metrics", "")
    assert "market_metrics: " in message and says in message, failed
    assert f"can still be taken until {SNAPSHOT_DEADLINE}" in message and "re-running this partition" in message
    assert not Lake(data_dir).has_partition("market_metrics", date(2025, 11, 25))  # nothing half-landed

    # Candles keep the stored bars and report stale, naming every symbol.
    assert "candles" not in failed
    # Every symbol the candles keep: the universe and the dated contracts the book held on any
    # session of the run (a future's own symbol, a future option's underlying).
    lake = Lake(data_dir)
    held: set[str] = set()
    for day in pd.bdate_range(*RUN_RANGE).date:
        if lake.has_partition("positions", day):
            positions = lake.read_partition("positions", day)
            kind = positions["instrument_type"]
            held |= {*positions.loc[kind == "Future", "symbol"], *positions.loc[kind == "Future Option", "underlying_symbol"]}
    universe = sorted({*lake.read_partition("universe", date(2025, 11, 25))["symbol"], *held})
    fresh = checks(result)["candles_fresh"]
    assert not fresh.passed
    listed = fresh.metadata["stale_or_unavailable"].value
    assert all(f"- {symbol}: stale" in listed for symbol in universe), listed
    assert sorted(materialization(result, "candles")["stale_symbols"].split(", ")) == universe
    assert stored_candles(data_dir) == candles_before
    assert warehouse_rows(data_dir) == before  # the load did not run: the warehouse is as it was
    if case == "api-truncated-json":  # what Yahoo sent is kept as it came, though it never parsed
        raw = data_dir / "raw" / "candles" / "date=2025-11-25"
        for symbol in universe:
            (body,) = [p.read_bytes() for p in raw.glob(f"chart_{quote(yahoo_ticker(symbol), safe='')}_*.json")]
            with pytest.raises(ValueError):
                json.loads(body)

    sim.faults.clear()
    healed = run(data_dir, sim.url)
    assert healed.success, failures(healed)
    assert_like_clean(data_dir, clean)


def test_a_404_is_landed_remembered_and_not_asked_again(seed: Path, tmp_path: Path, sim: SimulatorServer) -> None:
    """``api-404-unknown-symbol``: the run succeeds; the symbol is unavailable, Yahoo's 404 body is in
    raw/ as it came, and the 404 is remembered so the next run does not ask again."""
    data_dir = copy_of(seed, tmp_path / "data")
    watchlist = f"{WATCHLIST},GONE"  # the simulator answers GONE as Yahoo answers a delisted ticker
    result = run(data_dir, sim.url, watchlist=watchlist)
    assert result.success, failures(result)
    fresh = checks(result)["candles_fresh"]
    assert not fresh.passed and fresh.severity == dg.AssetCheckSeverity.WARN
    assert "- GONE: unavailable (No data found, symbol may be delisted)" in fresh.metadata["stale_or_unavailable"].value
    (request,) = [e for e in sim.requests.entries() if e["path"] == "/v8/finance/chart/GONE"]
    start, after = (datetime.fromtimestamp(int(request["query"][k]), NEW_YORK).date() for k in ("period1", "period2"))
    raw = data_dir / "raw" / "candles" / "date=2025-11-25"
    assert [p.name for p in raw.glob("chart_GONE_*")] == [raw_name("GONE", start, after - timedelta(days=1), 404)]
    body = json.loads((raw / raw_name("GONE", start, after - timedelta(days=1), 404)).read_bytes())
    assert body["chart"]["error"]["description"] == "No data found, symbol may be delisted"
    state = json.loads(Lake(data_dir).candle_state_path("GONE").read_text())
    assert state["not_found_at"] == CLOCK.isoformat() and not Lake(data_dir).candle_path("GONE").exists()
    sim.requests.clear()
    again = run(data_dir, sim.url, watchlist=watchlist, partition_range=None, partition_key="2025-11-25")
    assert again.success, failures(again)
    assert not [e for e in sim.requests.entries() if e["path"] == "/v8/finance/chart/GONE"]
    assert "GONE (until 2025-12-02)" in materialization(again, "candles")["not_found_remembered"]


HARMLESS_API_FAULTS: dict[str, list[dict]] = {
    "api-5xx-burst": [
        {"endpoint": "market-metrics", "kind": "503", "count": 2},
        {"endpoint": "positions", "kind": "500", "count": 1},
        {"endpoint": "chart", "kind": "500", "count": 3},
    ],
    "drift-number-as-string": [
        {"endpoint": "market-metrics", "kind": "number_as_string", "field": "liquidity-rating"},
        {"endpoint": "chart", "kind": "number_as_string", "field": "close"},
    ],
    "drift-string-as-number": [
        {"endpoint": "market-metrics", "kind": "string_as_number", "field": "implied-volatility-index"},
        {"endpoint": "positions", "kind": "string_as_number", "field": "average-open-price"},
    ],
    "drift-unknown-field": [
        {"endpoint": "market-metrics", "kind": "extra_field", "field": "new-metric"},
        {"endpoint": "positions", "kind": "extra_field"},
        {"endpoint": "chart", "kind": "extra_field"},
    ],
}


@pytest.mark.parametrize("case", list(HARMLESS_API_FAULTS))
def test_faults_the_pipeline_absorbs_give_a_clean_runs_rows(
    case: str, seed: Path, clean: Path, tmp_path: Path, sim: SimulatorServer
) -> None:
    data_dir = copy_of(seed, tmp_path / "data")
    sim.faults.replace(parse_rules(HARMLESS_API_FAULTS[case]))
    result = run(data_dir, sim.url)
    assert result.success, failures(result)
    assert all(rule["fired"] > 0 for rule in sim.faults.describe() if rule["count"] is None)
    failed_checks = {name for name, e in checks(result).items() if not e.passed}
    assert not failed_checks, failed_checks
    if case == "api-5xx-burst":
        assert materialization(result, "market_metrics")["retries"] >= 2
        assert materialization(result, "candles")["retries"] >= 3
    assert_like_clean(data_dir, clean)


# --- bad bars ---------------------------------------------------------------------------------

BAD_BAR_DAY = date(2025, 11, 21)
BAD_BARS = {  # case -> (symbol, how the bar of BAD_BAR_DAY is spoiled)
    "bad-bar-null": ("MSFT", "null"),
    "bad-bar-zero": ("SPY", "zero"),
    "bad-bar-negative": ("QQQ", "negative"),
    "bad-bar-high-below-low": ("AAPL", "high_below_low"),
    "bad-bar-duplicate": ("NVDA", "duplicate"),
}


@pytest.fixture(scope="module")
def bad_bars(seed: Path, tmp_path_factory: pytest.TempPathFactory, sim: SimulatorServer) -> tuple[Path, Any]:
    """One run of 2025-11-18..25 in which Yahoo spoils one bar of 2025-11-21 for five symbols."""
    data_dir = copy_of(seed, tmp_path_factory.mktemp("bad_bars") / "data")
    sim.faults.replace(
        parse_rules(
            [
                {"endpoint": "chart", "kind": "bad_bar", "symbol": symbol, "field": how, "date": BAD_BAR_DAY.isoformat()}
                for symbol, how in BAD_BARS.values()
            ]
        )
    )
    try:
        result = run(data_dir, sim.url)
    finally:
        sim.faults.clear()
    return data_dir, result


def _symbol_rows(data_dir: Path, symbol: str) -> tuple[list[tuple], list[tuple]]:
    """The symbol's candles and (hv20, parkinson20) rows in a warehouse, by session."""
    with duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True) as con:
        bars = con.execute(
            "SELECT session_date, open, high, low, close FROM candles WHERE symbol = ? ORDER BY 1", [symbol]
        ).fetchall()
        rv = con.execute(
            "SELECT session_date, hv20, parkinson20 FROM realized_volatility WHERE symbol = ? ORDER BY 1", [symbol]
        ).fetchall()
    return bars, rv


@pytest.mark.parametrize("case", list(BAD_BARS))
def test_bad_bars_are_quarantined_and_never_reach_realised_volatility(
    case: str, bad_bars: tuple[Path, Any], clean: Path
) -> None:
    symbol, how = BAD_BARS[case]
    data_dir, result = bad_bars
    assert result.success, failures(result)  # a bad bar is the provider's problem, reported, not fatal
    lake = Lake(data_dir)
    bars, rv = _symbol_rows(data_dir, symbol)
    clean_bars, clean_rv = _symbol_rows(clean, symbol)
    days = [row[0] for row in bars]
    assert len(days) == len(set(days))  # one bar per session, never two
    # Whatever was refused is quarantined with the reason, for the run's last session.
    quarantined = pq.read_table(lake.quarantine_path("candles", date(2025, 11, 25))).to_pandas()
    row = quarantined[(quarantined["symbol"] == symbol) & (quarantined["session_date"] == BAD_BAR_DAY.isoformat())]
    assert len(row) == 1, quarantined
    reason = row["quarantine_reason"].iloc[0]
    expected = {
        "null": "from the provider (dropped, never filled)",
        "duplicate": "duplicate timestamp",
        "zero": "greater_than(0)",
        "negative": "greater_than(0)",
        "high_below_low": "high_covers_open_close",
    }
    assert expected[how] in reason, reason

    if how == "duplicate":
        # The session's own bar (the first of that stamp) is kept, the copy quarantined: as clean.
        assert bars == clean_bars and rv == clean_rv
        return

    # The spoiled session never reaches the candle store or the warehouse ...
    assert BAD_BAR_DAY not in days
    assert BAD_BAR_DAY not in set(pq.read_table(lake.candle_path(symbol)).column("session_date").to_pylist())
    assert [row for row in bars] == [row for row in clean_bars if row[0] != BAD_BAR_DAY]
    # ... the gap rule: every window spanning it is NULL, never a number made from a bad price ...
    for day, hv20, parkinson20 in rv:
        assert hv20 is None or np.isfinite(hv20)
        if day >= BAD_BAR_DAY:
            assert hv20 is None and parkinson20 is None, (day, hv20)
    assert [row for row in rv if row[0] < BAD_BAR_DAY] == [row for row in clean_rv if row[0] < BAD_BAR_DAY]

    # ... and remembered as a session without a bar, so no later run asks Yahoo for it again ...
    assert BAD_BAR_DAY.isoformat() in json.loads(lake.candle_state_path(symbol).read_text())["no_bar_sessions"]
    if how == "null":  # Yahoo's null bar (a halt) is dropped and counted
        assert materialization(result, "candles")["null_bars_dropped"] >= 1
        return
    # ... and the candle check names it.
    check = checks(result)["candles_schema"]
    assert not check.passed and symbol in check.metadata["failure_cases"].value


# --- clock skew -------------------------------------------------------------------------------


def test_a_clock_behind_the_cache_deletes_nothing_newer(clean: Path, tmp_path: Path, sim: SimulatorServer) -> None:
    data_dir = copy_of(clean, tmp_path / "data")
    lake_before = parquet_files(data_dir, "lake")
    candles_before = stored_candles(data_dir)
    rows_before = warehouse_rows(data_dir)
    skewed = datetime(2025, 11, 20, 22, 0, tzinfo=timezone.utc)  # five sessions behind the last cached bar
    result = run(data_dir, sim.url, partition_range=None, partition_key="2025-11-20", now=skewed)
    assert result.success, failures(result)
    assert stored_candles(data_dir) == candles_before  # every stored bar kept, no file rewritten
    lake_after = parquet_files(data_dir, "lake")
    newer = [name for name in lake_before if re.search(r"date=2025-11-2[1-5]", name)]
    assert newer and all(lake_after[name].equals(lake_before[name]) for name in newer)
    rows_after = warehouse_rows(data_dir)
    for table, column in (("candles", 1), ("realized_volatility", 1)):
        newer_rows = lambda rows: [r for r in rows if r[column] > date(2025, 11, 20)]  # noqa: E731
        assert newer_rows(rows_after[table]) == newer_rows(rows_before[table]), table
    assert materialization(result, "candles")["requests"] == 0  # nothing refetched or dropped


# --- the README table and the suite agree -----------------------------------------------------


def readme_cases() -> dict[str, str]:
    """The README table's rows: case id -> the "when ..." text beside it (first column)."""
    text = README.read_text()
    match = re.search(r"^## What happens when \.\.\.\n(.*?)(?=^## )", text, flags=re.S | re.M)
    assert match, "README lacks the section '## What happens when ...'"
    rows = re.findall(r"^\| `([a-z0-9-]+)` ([^|]+?) \|", match.group(1), flags=re.M)
    return dict(rows)


def test_the_readme_table_lists_exactly_these_cases() -> None:
    exercised = [
        *KILL_POINTS, "reader-holds-warehouse", "two-runs-at-once", "disk-full", "disk-below-floor",
        "corrupt-candle-file", "corrupt-candle-state", "truncated-warehouse",
        *FATAL_API_FAULTS, "api-404-unknown-symbol", *HARMLESS_API_FAULTS, *BAD_BARS, "clock-skew",
    ]
    assert sorted(exercised) == sorted(FAULT_CASES)
    table = readme_cases()
    assert list(table) == list(FAULT_CASES)  # one row per case, in the suite's order
    assert table == FAULT_CASES  # and each row says when, as the suite does
