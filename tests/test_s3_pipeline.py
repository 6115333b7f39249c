"""Whole evenings with ``VARIANCE_DATA_DIR=s3://...``: real Dagster runs of the code location on the
simulator, the data dir in a real S3 server on loopback (moto, ``tests/servers.py``).

What a user relies on: an evening lands raw, lake, state, reports and the warehouse as objects the
manifest lists; a re-run of the evening changes nothing but the warehouse's load log and the evening report (no row twice);
a run killed (``kill -9``) mid-run or between its uploads and its commit leaves the bucket as it
was, and a re-run (on the same machine or a new one) gives what a clean run gives; a reader opens
the published warehouse from the bucket as the README shows; no AWS credential appears in a log
line, metadata value, file or object.

The data: ``seed`` is a clean run of 2025-11-18..20 on the evening of 2025-11-20 (prefix ``seed``);
``evening`` is a copy of it plus a clean run of 2025-11-18..25 on the evening of 2025-11-25 (the
same runs as the fault matrix's ``seed`` and ``clean``). A case copies a prefix (server side),
applies its fault and compares what the manifests resolve to.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

import dagster as dg
import duckdb
import pyarrow.fs as pafs
import pytest

from servers import S3Server
from support import (
    CLOCK,
    NO_CHARTS,
    PROJECT,
    RUN_RANGE,
    SEED_CLOCK,
    SEED_RANGE,
    assert_same_parquet,
    fast_resources,
    materialize,
    parquet_files,
    pipeline_settings,
    start_killable_run,
    wait_for,
    warehouse_rows,
)
from variance_pipeline.lake.atomic import is_temp_name
from variance_pipeline.lake.mirror import Mirror
from variance_pipeline.lake.object_store import (
    MANIFEST,
    Manifest,
    ObjectStore,
    ObjectStoreError,
    S3Credentials,
    file_digest,
)
from variance_pipeline.schemas.registry import DATASETS
from variance_pipeline.settings import RemoteDataDir
from variance_pipeline.simulator import SimulatorServer
from variance_pipeline.simulator.faults import parse_rules
from variance_pipeline.warehouse import cli as warehouse_cli

pytestmark = pytest.mark.slow

BUCKET = "variance-data"  # the README's and deploy/k8s/values.yaml's bucket
WATCHLIST = "SPY,QQQ,/ES"


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorServer]:
    with SimulatorServer(port=0, now=CLOCK) as server:
        yield server


@pytest.fixture(scope="module")
def aws(s3: S3Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """The AWS variables of the server and a working-copy root of this module's own, set as a
    deployment sets them (the resources read the credentials through ``dg.EnvVar``)."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in s3.env().items():
            patch.setenv(name, value)
        patch.setenv("VARIANCE_CACHE_DIR", str(tmp_path_factory.mktemp("machine")))
        if not s3.filesystem().get_file_info(BUCKET).type == pafs.FileType.Directory:
            s3.create_bucket(BUCKET)
        yield s3


def url(prefix: str) -> str:
    return f"s3://{BUCKET}/{prefix}"


def store(s3: S3Server, prefix: str) -> ObjectStore:
    return ObjectStore(RemoteDataDir(BUCKET, prefix, endpoint=s3.endpoint, region=s3.region),
                       S3Credentials(s3.access_key_id, s3.secret_access_key))


def manifest(s3: S3Server, prefix: str) -> Manifest:
    return store(s3, prefix).read_manifest()


def download(s3: S3Server, prefix: str, into: Path) -> Path:
    """What the manifest of ``prefix`` resolves to, downloaded into a new folder (a reader's view)."""
    Mirror(store(s3, prefix), into, "simulator").pull()
    return into


def copy_prefix(s3: S3Server, source: str, target: str) -> None:
    """Every object of ``source`` copied server side under ``target`` (keys are relative: the copy
    is a data dir of its own)."""
    fs = s3.filesystem()
    for info in fs.get_file_info(pafs.FileSelector(f"{BUCKET}/{source}", recursive=True)):
        if info.type == pafs.FileType.File:
            fs.copy_file(info.path, f"{BUCKET}/{target}/" + info.path[len(f"{BUCKET}/{source}/"):])


# run id -> every line of that run's log (the resources' log lines are no events of the result)
RUN_LOGS: dict[str, str] = {}


def run(sim: SimulatorServer, prefix: str, *, now: datetime = CLOCK, partition_range: tuple[str, str] = RUN_RANGE,
        charts: bool = False) -> dg.ExecuteInProcessResult:
    settings = pipeline_settings(url(prefix), sim.url, now=now, watchlist=WATCHLIST)
    return logged(lambda instance: materialize(settings, partition_range=partition_range, raise_on_error=False,
                                               run_config=None if charts else NO_CHARTS, instance=instance))


def logged(launch: Any) -> dg.ExecuteInProcessResult:
    """``launch(instance)`` on an instance of its own, its log kept in ``RUN_LOGS``."""
    with dg.DagsterInstance.ephemeral() as instance:
        result = launch(instance)
        RUN_LOGS[result.run_id] = "\n".join(entry.message or "" for entry in instance.all_logs(result.run_id))
    return result


def working_copy(prefix: str) -> Path:
    return pipeline_settings(url(prefix), "http://127.0.0.1:9").data_dir


def step_failures(result: dg.ExecuteInProcessResult) -> list[str]:
    return [str(e.event_specific_data) for e in result.all_events if e.is_failure]


def warehouse_metadata(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    """The warehouse's materialisation metadata (one event per session of the range, all alike)."""
    events = [e for e in result.get_asset_materialization_events() if e.asset_key == dg.AssetKey("warehouse")]
    assert events, "warehouse was not materialized"
    return dict(events[-1].materialization.metadata)


def assert_resolves_like(s3: S3Server, prefix: str, clean: str, tmp: Path) -> None:
    """What ``prefix``'s manifest resolves to equals ``clean``'s: warehouse rows, lake,
    quarantine and cache files (a new machine's view of each)."""
    got, want = download(s3, prefix, tmp / f"got-{prefix}"), download(s3, clean, tmp / f"want-{clean}")
    assert warehouse_rows(got) == warehouse_rows(want)
    for layer in ("lake", "quarantine", "cache"):
        assert_same_parquet(parquet_files(got, layer), parquet_files(want, layer))


@dataclass
class Evening:
    prefix: str
    result: dg.ExecuteInProcessResult


@pytest.fixture(scope="module")
def seed(aws: S3Server, sim: SimulatorServer) -> str:
    sim.now = SEED_CLOCK
    try:
        result = run(sim, "seed", now=SEED_CLOCK, partition_range=SEED_RANGE)
    finally:
        sim.now = CLOCK
    assert result.success, step_failures(result)
    return "seed"


@pytest.fixture(scope="module")
def evening(aws: S3Server, sim: SimulatorServer, seed: str) -> Evening:
    copy_prefix(aws, seed, "evening")
    result = run(sim, "evening", charts=True)
    assert result.success, step_failures(result)
    return Evening("evening", result)


def test_an_evening_lands_raw_lake_state_and_the_warehouse_as_objects_the_manifest_lists(
    aws: S3Server, evening: Evening
) -> None:
    committed = manifest(aws, evening.prefix)
    assert committed.source == "simulator"
    files = committed.files
    for expected in (
        "raw/positions/date=2025-11-25/", "lake/candles/symbol=SPY/part-0.parquet",
        "lake/realized_volatility/date=2025-11-25/part-0.parquet", "lake/market_metrics/date=2025-11-25/part-0.parquet",
        "lake/realized_volatility/date=2025-11-21/part-0.parquet", "state/candles/%2FES.json", "cache/earnings/", "reports/vol_chart_2025-11-25.png",
        "warehouse.duckdb", ".variance-source",
    ):
        assert any(path.startswith(expected) for path in files), (expected, sorted(files))
    # Every entry is an object of its own content, in the bucket with its size.
    listed = {
        info.path[len(f"{BUCKET}/{evening.prefix}/"):]: info.size
        for info in aws.filesystem().get_file_info(pafs.FileSelector(f"{BUCKET}/{evening.prefix}", recursive=True))
        if info.type == pafs.FileType.File
    }
    for path, entry in files.items():
        assert entry.key == f"objects/{path}/{entry.sha256}" and listed[entry.key] == entry.size
    # The run's working copy holds exactly what was committed: nothing written was left unpushed.
    local = working_copy(evening.prefix)
    scanned = Mirror(store(aws, evening.prefix), local, "simulator").scan()
    assert sorted(scanned) == sorted(files)
    assert all(file_digest(local / path)[0] == entry.sha256 for path, entry in files.items())
    # The warehouse step committed it (a failed commit would have failed that step).
    assert warehouse_metadata(evening.result)["committed_to"].value == f"{url(evening.prefix)}/{MANIFEST}"


def test_a_new_machine_pulls_the_evening_once_then_only_what_changed(
    aws: S3Server, evening: Evening, tmp_path: Path
) -> None:
    copy = tmp_path / "new-pod"
    first = Mirror(store(aws, evening.prefix), copy, "simulator").pull()
    assert len(first.transferred) == len(manifest(aws, evening.prefix).files)
    second = Mirror(store(aws, evening.prefix), copy, "simulator").pull()
    assert second.transferred == [] and second.removed == []
    assert warehouse_rows(copy) == warehouse_rows(working_copy(evening.prefix))


def test_a_rerun_of_the_evening_is_idempotent(aws: S3Server, sim: SimulatorServer, evening: Evening, tmp_path: Path) -> None:
    copy_prefix(aws, evening.prefix, "rerun")
    before = manifest(aws, "rerun")
    result = run(sim, "rerun")
    assert result.success, step_failures(result)
    after = manifest(aws, "rerun")
    assert sorted(after.files) == sorted(before.files)
    # Every file but the warehouse (its load log holds the run id) and the evening report (it names
    # the run it was built in) has the same content, hence key.
    changed = sorted(path for path in after.files if after.files[path] != before.files[path])
    reports = ["reports/evening-2025-11-25.html", "reports/latest.html"]
    assert changed == [*reports, "warehouse.duckdb"]
    assert warehouse_metadata(result)["objects_uploaded"].value == 1
    assert_resolves_like(aws, "rerun", evening.prefix, tmp_path)
    with duckdb.connect(str(download(aws, "rerun", tmp_path / "check") / "warehouse.duckdb"), read_only=True) as con:
        for dataset in DATASETS:
            grain = ", ".join(f'"{column}"' for column in dataset.grain)
            rows, distinct = con.execute(
                f'SELECT count(*), count(DISTINCT ({grain})) FROM "{dataset.table}"'
            ).fetchone()
            assert rows == distinct, f"{dataset.table}: {rows - distinct} duplicated row(s)"
        assert con.execute("SELECT count(*) FROM candles").fetchone()[0] > 0


# Where a run is killed: mid-run (a lake partition written, nothing uploaded yet), the re-run on
# the same machine; or between its uploads and its commit, the re-run on a new machine.
KILL_CASES = {
    "kill-9-mid-run": ("lake/realized_volatility/date=2025-11-21/", "same machine"),
    "kill-9-before-commit": ("manifest-write", "new machine"),
}


@pytest.mark.parametrize("case", list(KILL_CASES))
def test_a_killed_run_leaves_the_bucket_as_it_was_and_a_rerun_heals(
    case: str, aws: S3Server, sim: SimulatorServer, seed: str, evening: Evening, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pause_at, rerun_on = KILL_CASES[case]
    prefix = case
    copy_prefix(aws, seed, prefix)
    before = manifest(aws, prefix)
    process, marker, log = start_killable_run(
        url(prefix), sim.url, pause_at, tmp_path, now=CLOCK, watchlist=WATCHLIST, partition_range=RUN_RANGE
    )
    wait_for(marker, process, log)
    os.killpg(process.pid, signal.SIGKILL)
    assert process.wait(timeout=30) == -signal.SIGKILL
    assert aws.secret_access_key not in log.read_text(errors="replace")

    # Killed: the bucket shows exactly the commit before the run, whatever was uploaded.
    assert manifest(aws, prefix) == before
    garbage = store(aws, prefix).garbage(grace_seconds=0)
    if pause_at == "manifest-write":
        assert "warehouse.duckdb" in {key.split("/")[1] for key in garbage}, garbage  # uploaded, never listed

    if rerun_on == "new machine":
        monkeypatch.setenv("VARIANCE_CACHE_DIR", str(tmp_path / "new-pod"))
    result = run(sim, prefix)
    assert result.success, step_failures(result)
    assert_resolves_like(aws, prefix, evening.prefix, tmp_path)
    local = working_copy(prefix)
    assert not [p for p in local.rglob("*") if is_temp_name(p.name)]
    assert sorted(Mirror(store(aws, prefix), local, "simulator").scan()) == sorted(manifest(aws, prefix).files)

    # What the killed run uploaded and nothing lists is garbage; collecting it loses nothing.
    store(aws, prefix).collect_garbage(grace_seconds=0)
    assert store(aws, prefix).garbage(grace_seconds=0) == []
    assert_resolves_like(aws, prefix, evening.prefix, tmp_path / "after-gc")


def test_simulated_and_live_data_never_share_a_prefix(
    aws: S3Server, evening: Evening, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The source stamp holds in the bucket: a live run on a new machine (no local stamp to
    refuse it) is refused by the manifest before anything is downloaded or written."""
    monkeypatch.setenv("VARIANCE_CACHE_DIR", str(tmp_path / "live-machine"))
    monkeypatch.setenv("TASTYTRADE_CLIENT_SECRET", "never-used")
    monkeypatch.setenv("TASTYTRADE_REFRESH_TOKEN", "never-used")
    settings = replace(pipeline_settings(url(evening.prefix), "http://127.0.0.1:9"), source="live")
    before = manifest(aws, evening.prefix)
    result = logged(lambda instance: materialize(
        settings, partition_key="2025-11-25", raise_on_error=False, select=["accounts", "positions"], instance=instance))
    assert not result.success
    said = _everything_said(result)
    assert f"{url(evening.prefix)} holds 'simulator' data; refusing to write 'live' data there" in said, said[-3000:]
    assert manifest(aws, evening.prefix) == before
    assert not [p for p in settings.data_dir.rglob("*") if p.is_file() and not p.name.startswith(".variance-sync")]


def test_a_failed_run_commits_its_whole_files_in_the_teardown(
    aws: S3Server, sim: SimulatorServer, seed: str
) -> None:
    """As on local disk, a failed run keeps what it landed whole: the steps before the failure
    are committed by the resource's teardown; the warehouse (never loaded) stays the seed's."""
    copy_prefix(aws, seed, "failed-run")
    before = manifest(aws, "failed-run")
    sim.faults.replace(parse_rules([{"endpoint": "market-metrics", "kind": "401"}]))
    try:
        result = run(sim, "failed-run")
    finally:
        sim.faults.clear()
    assert not result.success
    failed_steps = {e.step_key for e in result.all_events if e.event_type_value == "STEP_FAILURE"}
    assert "market_metrics" in failed_steps and "warehouse" not in failed_steps
    after = manifest(aws, "failed-run")
    assert after.commit != before.commit and after.run_id == result.run_id
    landed = "lake/candles/symbol=SPY/part-0.parquet"  # the seed's bars and the run's new sessions
    assert landed in before.files and after.files[landed] != before.files[landed]
    assert after.files["warehouse.duckdb"] == before.files["warehouse.duckdb"]
    assert not any(path.startswith("lake/market_metrics/date=2025-11-25") for path in after.files)


def test_a_commit_that_fails_fails_the_run_and_changes_nothing(
    aws: S3Server, sim: SimulatorServer, seed: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    copy_prefix(aws, seed, "commit-fails")
    before = manifest(aws, "commit-fails")

    def refuse(self: ObjectStore, local: Path, relative: str, **kwargs: Any) -> Any:
        raise ObjectStoreError(f"uploading {local} to {self.where(relative)} failed: AWS Error SLOW_DOWN (injected)")

    monkeypatch.setattr(ObjectStore, "put_file", refuse)
    result = run(sim, "commit-fails")
    assert not result.success  # the warehouse step's commit failed: the run is not green
    failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert [e.step_key for e in failures] == ["warehouse"]
    assert "SLOW_DOWN (injected)" in _everything_said(result)
    assert "were not committed to s3://variance-data/commit-fails" in _everything_said(result)  # the teardown's try
    assert manifest(aws, "commit-fails") == before


def test_rebuild_and_gc_work_on_the_bucket(
    aws: S3Server, evening: Evening, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    copy_prefix(aws, evening.prefix, "rebuilt")
    before = manifest(aws, "rebuilt")
    superseded = store(aws, "rebuilt").garbage(grace_seconds=0)  # the seed's versions the evening replaced
    monkeypatch.setenv("VARIANCE_SOURCE", "simulator")
    monkeypatch.setenv("VARIANCE_DATA_DIR", url("rebuilt"))
    assert warehouse_cli.main(["rebuild"]) == 0  # what `make rebuild` runs
    after = manifest(aws, "rebuilt")
    assert after.files["warehouse.duckdb"] != before.files["warehouse.duckdb"]
    assert {p: e for p, e in after.files.items() if p != "warehouse.duckdb"} == \
        {p: e for p, e in before.files.items() if p != "warehouse.duckdb"}
    assert warehouse_rows(download(aws, "rebuilt", tmp_path / "rebuilt")) == warehouse_rows(
        download(aws, evening.prefix, tmp_path / "evening"))
    # The replaced warehouse is now garbage: listed by a dry run, then deleted.
    capsys.readouterr()
    assert warehouse_cli.main(["gc", "--grace-hours", "0", "--dry-run"]) == 0
    listed = capsys.readouterr().out
    expected = sorted([*superseded, before.files["warehouse.duckdb"].key])
    assert f"would delete {len(expected)} object(s)" in listed and all(key in listed for key in expected), listed
    assert warehouse_cli.main(["gc", "--grace-hours", "0"]) == 0
    assert store(aws, "rebuilt").garbage(grace_seconds=0) == []
    assert_resolves_like(aws, "rebuilt", evening.prefix, tmp_path / "after-gc")
    monkeypatch.setenv("VARIANCE_DATA_DIR", str(tmp_path / "local"))
    assert warehouse_cli.main(["gc"]) == 2  # a local data dir has no garbage: said, not ignored
    assert "gc is for an s3:// data dir" in capsys.readouterr().err


def readme_reader_snippet() -> str:
    """The README's Python that opens the published warehouse from the bucket."""
    text = (PROJECT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    [snippet] = [block for block in blocks if "manifest.json" in block and "duckdb.connect" in block]
    return snippet


def test_a_reader_opens_the_published_warehouse_from_the_bucket_as_the_readme_shows(
    aws: S3Server, evening: Evening, tmp_path: Path
) -> None:
    copy_prefix(aws, evening.prefix, "team")  # the README's s3://variance-data/team
    reader = tmp_path / "reader"
    reader.mkdir()
    script = readme_reader_snippet() + "\nprint(con.execute('SELECT count(*) FROM candles').fetchone()[0])\n"
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=reader, capture_output=True, text=True, timeout=120,
        env={**os.environ, **aws.env()},
    )
    assert done.returncode == 0, done.stderr
    with duckdb.connect(str(working_copy(evening.prefix) / "warehouse.duckdb"), read_only=True) as con:
        expected = con.execute("SELECT count(*) FROM candles").fetchone()[0]
    assert done.stdout.split()[-1] == str(expected) and expected > 0
    assert (reader / "warehouse.duckdb").exists()


def _everything_said(result: dg.ExecuteInProcessResult) -> str:
    """Every log message, event payload (metadata included) and the run config of a run."""
    said = [repr(result.dagster_run.run_config), RUN_LOGS[result.run_id]]
    for event in result.all_events:
        said.append(event.message or "")
        said.append(repr(event.event_specific_data))
    return "\n".join(said)


def test_no_aws_credential_appears_in_logs_metadata_files_or_objects(
    aws: S3Server, evening: Evening, caplog: pytest.LogCaptureFixture
) -> None:
    secrets = (aws.secret_access_key, aws.access_key_id)
    # The resource is given the variables' names; Dagster resolves them when the run starts.
    pipeline = fast_resources(pipeline_settings(url(evening.prefix), "http://127.0.0.1:9"))["pipeline"]
    for field, variable in (("aws_access_key_id", "AWS_ACCESS_KEY_ID"), ("aws_secret_access_key", "AWS_SECRET_ACCESS_KEY")):
        value = getattr(pipeline, field)
        assert isinstance(value, dg.EnvVar) and value.env_var_name == variable
    said = _everything_said(evening.result)
    assert f"committed {url(evening.prefix)}/{MANIFEST}" in said  # the whole log is searched ...
    assert not [s for s in secrets if s in said]  # ... and holds no credential
    local = working_copy(evening.prefix)
    for path in [local, *local.rglob("*")]:
        if path.is_file():
            data = path.read_bytes()
            assert not [s for s in secrets if s.encode() in data], path
    fs = aws.filesystem()
    for info in fs.get_file_info(pafs.FileSelector(BUCKET, recursive=True)):
        if info.type == pafs.FileType.File:
            data = fs.open_input_stream(info.path).read()
            assert not [s for s in secrets if s.encode() in data], info.path
    # A failed run's messages too: the bucket refuses, the error is quoted, the credentials are not.
    with caplog.at_level("DEBUG"):
        failed = run_against_a_missing_bucket(aws)
    assert not failed.success
    said = _everything_said(failed) + "\n".join(r.getMessage() for r in caplog.records)
    assert "s3://no-such-bucket-here/x/manifest.json" in said, said[-2000:]
    assert not [s for s in secrets if s in said]


def run_against_a_missing_bucket(s3: S3Server) -> Any:
    settings = pipeline_settings("s3://no-such-bucket-here/x", "http://127.0.0.1:9", watchlist=WATCHLIST)
    return logged(lambda instance: materialize(
        settings, partition_key="2025-11-25", raise_on_error=False, select=["accounts", "positions"], instance=instance))
