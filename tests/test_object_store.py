"""An s3:// data dir without the pipeline: the URL's parsing, and the working copy's pull and push
against a real S3 server on loopback (moto), file by file.

What a user relies on: what one machine commits another pulls byte for byte, and a machine that
pulled before downloads only what changed; nothing uncommitted is ever visible; a commit keeps
what other runs committed; a bucket of the other source, a changed object or a hostile manifest
entry is refused before anything is replaced; garbage collection takes only unlisted objects.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from servers import S3Server, free_port
from variance_pipeline.lake.atomic import write_bytes_atomic
from variance_pipeline.lake.layout import DataDirConflict
from variance_pipeline.lake.mirror import STATE_FILE, Mirror
from variance_pipeline.lake.object_store import MANIFEST, ObjectStore, ObjectStoreError, S3Credentials
from variance_pipeline.settings import ConfigurationError, RemoteDataDir, Settings

PROJECT = Path(__file__).resolve().parents[1]


# --- VARIANCE_DATA_DIR=s3://... ---------------------------------------------------------------


def settings_for(value: str, **extra: str) -> Settings:
    return Settings.from_env({"VARIANCE_SOURCE": "simulator", "VARIANCE_DATA_DIR": value, **extra})


def test_an_s3_url_is_a_remote_data_dir_worked_on_through_a_local_copy(tmp_path: Path) -> None:
    settings = settings_for(
        "s3://variance-data/team/evening/", VARIANCE_CACHE_DIR=str(tmp_path), AWS_ENDPOINT_URL="http://127.0.0.1:9000",
        AWS_REGION="eu-west-1",
    )
    assert settings.remote == RemoteDataDir(
        "variance-data", "team/evening", endpoint="http://127.0.0.1:9000", region="eu-west-1", cache_root=tmp_path
    )
    assert settings.data_dir == tmp_path / "s3" / "variance-data" / "team" / "evening"
    # The variables a child process is given read back to the same settings.
    assert Settings.from_env(settings.environment()) == settings
    assert settings_for("s3://variance-data", VARIANCE_CACHE_DIR=str(tmp_path)).data_dir == tmp_path / "s3" / "variance-data"
    assert settings_for("relative/dir").remote is None  # a path stays a path


def test_the_s3_specific_endpoint_wins_and_the_cache_defaults_under_xdg(tmp_path: Path) -> None:
    settings = settings_for(
        "s3://variance-data/x", AWS_ENDPOINT_URL="http://a:1", AWS_ENDPOINT_URL_S3="https://b:2", XDG_CACHE_HOME=str(tmp_path)
    )
    assert settings.remote is not None and settings.remote.endpoint == "https://b:2"
    assert settings.data_dir == tmp_path / "variance-pipeline" / "s3" / "variance-data" / "x"


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("s3://", "not a valid bucket name"),
        ("s3:///prefix", "not a valid bucket name"),
        ("s3://Not_A_Bucket/x", "not a valid bucket name"),
        ("s3://variance-data//x", "empty, '.' or '..' segment"),
        ("s3://variance-data/a/../b", "empty, '.' or '..' segment"),
        ("s3://variance-data/x?versionId=1", "no query or fragment"),
        ("gs://variance-data/x", "the scheme 'gs' is not supported"),
        ("s3a://variance-data/x", "the scheme 's3a' is not supported"),
    ],
)
def test_a_malformed_url_is_refused_naming_the_variable(value: str, says: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        settings_for(value)
    message = str(raised.value)
    assert message.startswith(f"VARIANCE_DATA_DIR={value!r} is not a data dir: ") and says in message, message


def test_credentials_in_the_url_or_endpoint_are_refused_without_echoing_them() -> None:
    with pytest.raises(ConfigurationError) as raised:
        settings_for("s3://AKIAXX:hunter2@variance-data/x")
    assert "hunter2" not in str(raised.value) and "VARIANCE_DATA_DIR=<hidden" in str(raised.value)
    with pytest.raises(ConfigurationError) as raised:
        settings_for("s3://variance-data/x", AWS_ENDPOINT_URL_S3="http://user:hunter2@127.0.0.1:9000")
    assert "hunter2" not in str(raised.value) and "AWS_ENDPOINT_URL_S3=<hidden" in str(raised.value)
    for endpoint in ("ftp://127.0.0.1", "http://127.0.0.1:notaport", "http://127.0.0.1:9000/bucket"):
        with pytest.raises(ConfigurationError, match="AWS_ENDPOINT_URL_S3="):
            settings_for("s3://variance-data/x", AWS_ENDPOINT_URL_S3=endpoint)


def test_missing_credentials_name_the_variables() -> None:
    with pytest.raises(ConfigurationError, match="AWS_SECRET_ACCESS_KEY not set"):
        S3Credentials.from_env({"AWS_ACCESS_KEY_ID": "AKIA"})
    with pytest.raises(ConfigurationError, match="AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY not set"):
        S3Credentials.from_env({})
    assert "hunter2" not in repr(S3Credentials("AKIA", "hunter2"))


# --- pull and push against the server ---------------------------------------------------------


@pytest.fixture
def remote(s3: S3Server, request: pytest.FixtureRequest) -> RemoteDataDir:
    """A prefix of its own in a bucket of its own, per test."""
    bucket = s3.create_bucket(f"t{abs(hash(request.node.nodeid)) % 10**12}-{int(time.time() * 1000) % 10**6}")
    return RemoteDataDir(bucket, "team/data", endpoint=s3.endpoint, region=s3.region)


def store_of(s3: S3Server, remote: RemoteDataDir) -> ObjectStore:
    return ObjectStore(remote, S3Credentials(s3.access_key_id, s3.secret_access_key))


def mirror_at(s3: S3Server, remote: RemoteDataDir, root: Path, source: str = "simulator") -> Mirror:
    return Mirror(store_of(s3, remote), root, source)


def write(root: Path, relative: str, data: bytes) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def tree(root: Path) -> dict[str, bytes]:
    """Every data file under ``root`` (the sync state and lock files left out)."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and not p.name.startswith(".variance-sync")
    }


FILES = {
    "lake/candles/date=2025-11-21/part-0.parquet": b"candles of the 21st",
    "raw/positions/date=2025-11-21/page-1.json": b'{"data": {"items": []}}',
    "cache/candles/%2FES.json": b'{"yahoo_ticker": "ES=F"}',
    "warehouse.duckdb": b"a published warehouse",
    ".variance-source": b"simulator",
}


def test_what_one_machine_commits_another_pulls_byte_for_byte(s3: S3Server, remote: RemoteDataDir, tmp_path: Path) -> None:
    first = tmp_path / "first"
    for relative, data in FILES.items():
        write(first, relative, data)
    write(first, "dagster_home/runs.db", b"stays on this machine")  # not part of a data dir
    write(first, "cache/candles/.SPY.parquet.123.abcd.tmp", b"half a write")  # never data
    pushed = mirror_at(s3, remote, first).push("run-1")
    assert pushed.committed and sorted(pushed.transferred) == sorted(FILES)

    manifest = store_of(s3, remote).read_manifest()
    assert manifest.source == "simulator" and manifest.run_id == "run-1"
    assert sorted(manifest.files) == sorted(FILES)
    entry = manifest.files["warehouse.duckdb"]
    assert entry.key.startswith("objects/warehouse.duckdb/") and entry.size == len(FILES["warehouse.duckdb"])

    second = tmp_path / "second"
    pulled = mirror_at(s3, remote, second).pull()
    assert sorted(pulled.transferred) == sorted(FILES) and not pulled.removed
    assert tree(second) == FILES


def test_a_machine_that_pulled_before_downloads_only_what_changed(
    s3: S3Server, remote: RemoteDataDir, tmp_path: Path
) -> None:
    writer, reader = tmp_path / "writer", tmp_path / "reader"
    for relative, data in FILES.items():
        write(writer, relative, data)
    mirror_at(s3, remote, writer).push("run-1")
    assert len(mirror_at(s3, remote, reader).pull().transferred) == len(FILES)
    again = mirror_at(s3, remote, reader).pull()
    assert again.transferred == [] and again.unchanged == len(FILES)

    time.sleep(0.01)  # a new modification time even on coarse clocks
    write(writer, "warehouse.duckdb", b"the next evening's warehouse")
    write(writer, "lake/candles/date=2025-11-24/part-0.parquet", b"candles of the 24th")
    (writer / "raw/positions/date=2025-11-21/page-1.json").unlink()
    write(writer, "cache/candles/%2FES.json", FILES["cache/candles/%2FES.json"])  # rewritten, same bytes
    pushed = mirror_at(s3, remote, writer).push("run-2")
    assert sorted(pushed.transferred) == ["lake/candles/date=2025-11-24/part-0.parquet", "warehouse.duckdb"]
    assert pushed.removed == ["raw/positions/date=2025-11-21/page-1.json"]

    pulled = mirror_at(s3, remote, reader).pull()
    assert sorted(pulled.transferred) == ["lake/candles/date=2025-11-24/part-0.parquet", "warehouse.duckdb"]
    assert pulled.removed == ["raw/positions/date=2025-11-21/page-1.json"]
    assert tree(reader) == tree(writer)
    # Nothing changed since: a push commits nothing (the manifest is not even rewritten).
    commit = store_of(s3, remote).read_manifest().commit
    assert not mirror_at(s3, remote, writer).push("run-3").committed
    assert store_of(s3, remote).read_manifest().commit == commit


def test_a_rewrite_is_pushed_even_with_the_same_size_and_modification_time(
    s3: S3Server, remote: RemoteDataDir, tmp_path: Path
) -> None:
    """A coarse file-system clock can give a rewrite the old modification time: the lake's writes
    are new files renamed into place, and the new inode gives it away."""
    root = tmp_path / "copy"
    relative = "lake/candles/date=2025-11-21/part-0.parquet"
    write(root, relative, b"version one")
    mirror_at(s3, remote, root).push("run-1")
    target = root / relative
    old = target.stat()
    write_bytes_atomic(target, b"version two")  # as the lake writes: same size, a new file
    os.utime(target, ns=(old.st_atime_ns, old.st_mtime_ns))
    assert mirror_at(s3, remote, root).push("run-2").transferred == [relative]
    fresh = tmp_path / "fresh"
    mirror_at(s3, remote, fresh).pull()
    assert (fresh / relative).read_bytes() == b"version two"


def test_a_pull_restores_the_committed_state_over_uncommitted_local_files(
    s3: S3Server, remote: RemoteDataDir, tmp_path: Path
) -> None:
    """What a killed run wrote in the working copy but never committed is no more visible there
    than in the bucket: the next pull puts back the committed versions and removes the rest."""
    root = tmp_path / "copy"
    for relative, data in FILES.items():
        write(root, relative, data)
    mirror_at(s3, remote, root).push("run-1")
    time.sleep(0.01)
    write(root, "warehouse.duckdb", b"a load that was never committed")
    write(root, "lake/candles/date=2025-11-24/part-0.parquet", b"never committed either")
    pulled = mirror_at(s3, remote, root).pull()
    assert pulled.transferred == ["warehouse.duckdb"]
    assert pulled.removed == ["lake/candles/date=2025-11-24/part-0.parquet"]
    assert tree(root) == FILES


def test_a_prefix_without_a_manifest_keeps_and_then_uploads_an_existing_data_dir(
    s3: S3Server, remote: RemoteDataDir, tmp_path: Path
) -> None:
    """The migration path: a local data dir copied into the working copy before the first run."""
    root = tmp_path / "copy"
    for relative, data in FILES.items():
        write(root, relative, data)
    pulled = mirror_at(s3, remote, root).pull()
    assert pulled.removed == [] and tree(root) == FILES
    assert sorted(mirror_at(s3, remote, root).push("first").transferred) == sorted(FILES)


def test_uploads_without_a_commit_are_invisible_and_only_they_are_garbage(
    s3: S3Server, remote: RemoteDataDir, tmp_path: Path
) -> None:
    root = tmp_path / "copy"
    write(root, "warehouse.duckdb", b"committed")
    mirror_at(s3, remote, root).push("run-1")
    store = store_of(s3, remote)
    write(root, "warehouse.duckdb", b"uploaded by a run that died before its commit")
    orphan = store.put_file(root / "warehouse.duckdb", "warehouse.duckdb")

    fresh = tmp_path / "fresh"
    mirror_at(s3, remote, fresh).pull()
    assert tree(fresh) == {"warehouse.duckdb": b"committed"}
    assert store.garbage(grace_seconds=3600) == []  # a commit may still be coming
    assert store.garbage(grace_seconds=0) == [orphan.key]
    assert store.collect_garbage(grace_seconds=0, dry_run=True) == [orphan.key]
    assert store.collect_garbage(grace_seconds=0) == [orphan.key]
    assert store.garbage(grace_seconds=0) == []
    again = tmp_path / "again"
    mirror_at(s3, remote, again).pull()  # every committed object is still there
    assert tree(again) == {"warehouse.duckdb": b"committed"}


def test_a_commit_keeps_what_other_runs_committed(s3: S3Server, remote: RemoteDataDir, tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    mirror_at(s3, remote, one).pull()
    mirror_at(s3, remote, two).pull()
    write(one, "lake/candles/date=2025-11-21/part-0.parquet", b"from one")
    write(two, "lake/candles/date=2025-11-24/part-0.parquet", b"from two")
    mirror_at(s3, remote, one).push("one")
    mirror_at(s3, remote, two).push("two")  # merged into the manifest as it is now, not as two pulled it
    assert sorted(store_of(s3, remote).read_manifest().files) == [
        "lake/candles/date=2025-11-21/part-0.parquet", "lake/candles/date=2025-11-24/part-0.parquet"
    ]


def test_a_bucket_of_the_other_source_is_refused_before_anything_moves(
    s3: S3Server, remote: RemoteDataDir, tmp_path: Path
) -> None:
    write(tmp_path / "sim", "warehouse.duckdb", b"simulated")
    mirror_at(s3, remote, tmp_path / "sim").push("sim")
    live = tmp_path / "live"
    with pytest.raises(DataDirConflict) as raised:
        mirror_at(s3, remote, live, source="live").pull()
    assert f"{remote.url} holds 'simulator' data; refusing to write 'live' data there" in str(raised.value)
    assert not live.exists() or tree(live) == {}
    write(live, "warehouse.duckdb", b"live")
    with pytest.raises(DataDirConflict):
        mirror_at(s3, remote, live, source="live").push("live")  # a commit checks it too
    assert store_of(s3, remote).read_manifest().source == "simulator"


def test_an_object_changed_after_its_commit_is_refused_and_nothing_replaced(
    s3: S3Server, remote: RemoteDataDir, tmp_path: Path
) -> None:
    write(tmp_path / "writer", "warehouse.duckdb", b"the committed bytes")
    mirror_at(s3, remote, tmp_path / "writer").push("run-1")
    entry = store_of(s3, remote).read_manifest().files["warehouse.duckdb"]
    with s3.filesystem().open_output_stream(f"{remote.bucket}/{remote.prefix}/{entry.key}") as out:
        out.write(b"other bytes, same size")
    reader = tmp_path / "reader"
    write(reader, "warehouse.duckdb", b"what the reader had")
    with pytest.raises(ObjectStoreError) as raised:
        mirror_at(s3, remote, reader).pull()
    message = str(raised.value)
    assert f"{remote.url}/{entry.key}" in message and "does not match manifest.json" in message, message
    assert (reader / "warehouse.duckdb").read_bytes() == b"what the reader had"
    assert [p.name for p in reader.iterdir() if p.name.endswith(".tmp")] == []


def test_a_manifest_entry_outside_the_data_dir_is_refused(s3: S3Server, remote: RemoteDataDir, tmp_path: Path) -> None:
    hostile = {"format": 1, "source": "simulator", "files": {"../../outside": {"key": "objects/x/y", "sha256": "0", "size": 1}}}
    with s3.filesystem().open_output_stream(f"{remote.bucket}/{remote.prefix}/{MANIFEST}") as out:
        out.write(json.dumps(hostile).encode())
    with pytest.raises(ObjectStoreError, match="'../../outside' is not a path inside the data dir"):
        mirror_at(s3, remote, tmp_path / "copy").pull()
    assert not (tmp_path / "outside").exists()


def test_an_unreachable_endpoint_fails_naming_it_and_no_secret(s3: S3Server, tmp_path: Path) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    remote = RemoteDataDir("variance-data", "x", endpoint=closed, region="us-east-1")
    started = time.monotonic()
    with pytest.raises(ObjectStoreError) as raised:
        mirror_at(s3, remote, tmp_path / "copy").pull()
    message = str(raised.value)
    assert f"reading s3://variance-data/x/manifest.json at {closed} failed" in message, message
    assert s3.secret_access_key not in message and s3.access_key_id not in message
    assert time.monotonic() - started < 60


def test_a_bucket_that_does_not_exist_is_named(s3: S3Server, tmp_path: Path) -> None:
    remote = RemoteDataDir("no-such-bucket", "x", endpoint=s3.endpoint, region=s3.region)
    with pytest.raises(ObjectStoreError) as raised:
        mirror_at(s3, remote, tmp_path / "copy").pull()
    assert "the bucket 'no-such-bucket' does not exist" in str(raised.value) and "s3://no-such-bucket/x" in str(raised.value)


HOLDER = r"""
import sys, time
from pathlib import Path
from variance_pipeline.lake.mirror import Mirror
from variance_pipeline.lake.object_store import ObjectStore, S3Credentials
from variance_pipeline.settings import RemoteDataDir

mirror = Mirror(ObjectStore(RemoteDataDir("variance-data", "x"), S3Credentials("a", "b")), Path(sys.argv[1]), "simulator")
with mirror.locked(wait_seconds=5, run_id="run-of-the-other-process"):
    Path(sys.argv[2]).touch()
    time.sleep(60)
"""


def test_a_second_run_on_a_working_copy_waits_then_names_the_holder(s3: S3Server, tmp_path: Path) -> None:
    root, ready = tmp_path / "copy", tmp_path / "ready"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(root), str(ready)], cwd=PROJECT)
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert holder.poll() is None and time.monotonic() < deadline, "the holder did not take the lock"
            time.sleep(0.05)
        remote = RemoteDataDir("variance-data", "x", endpoint=s3.endpoint)
        started = time.monotonic()
        with pytest.raises(ObjectStoreError) as raised:
            with mirror_at(s3, remote, root).locked(wait_seconds=1, run_id="me"):
                pass
        assert 1 <= time.monotonic() - started < 10
        message = str(raised.value)
        assert f"another run is working on {root}" in message and "(run run-of-the-other-process)" in message, message
    finally:
        holder.kill()
        holder.wait(timeout=30)
    with mirror_at(s3, remote, root).locked(wait_seconds=5, run_id="me"):  # the OS freed the dead holder's lock
        pass


def test_the_sync_state_is_never_pushed(s3: S3Server, remote: RemoteDataDir, tmp_path: Path) -> None:
    root = tmp_path / "copy"
    write(root, "warehouse.duckdb", b"w")
    mirror_at(s3, remote, root).push("run-1")
    assert (root / STATE_FILE).exists()
    assert list(store_of(s3, remote).read_manifest().files) == ["warehouse.duckdb"]
