"""The local working copy of an ``s3://`` data dir: pulled when a run starts, pushed when it ends.

Why a working copy rather than writing the bucket from every stage: the lake, the candle store,
the earnings state and the warehouse are built on local files (atomic renames, DuckDB loading a
private copy and publishing it by a rename). Teaching each of them to write objects would touch
every stage and lose DuckDB's local file; instead the run works on a local directory that mirrors
the bucket, and only the edges of a run talk to S3 (``defs/resources.py``: ``PipelineResource``
pulls in its set-up and pushes in the warehouse step and its teardown):

- **pull** makes the mirrored part of the working copy (``MIRRORED``) exactly what the committed
  manifest lists: a file whose committed version the copy already holds (same object key, and
  the size, modification time and inode recorded when it was synced, in ``.variance-sync.json``) is
  kept, any other is downloaded (checked against its sha256, renamed into place), and a file the
  manifest does not list is removed: what a killed run wrote but never committed is no more
  visible here than in the bucket. A machine that ran yesterday downloads only what changed; a
  new pod downloads everything once. (A prefix with no manifest yet removes nothing, so copying
  an existing local data dir into the working copy before the first run uploads it.)
- **push** uploads every mirrored file that is new or changed since the pull (raw, lake,
  quarantine, the candle fetch state and earnings state, reports, the published warehouse and the
  source stamp) as immutable objects, then commits the manifest (``lake.object_store``), listing
  the files the run removed as gone. Temporary files and ``.corrupt`` files set aside for a person
  stay local.

One run at a time works on a working copy: ``locked`` holds ``.variance-sync.lock`` from the
pull to the push (bounded wait, then an error naming the holder), since a pull under a running
run would replace the files it is writing.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, NamedTuple

from variance_pipeline.lake.atomic import is_temp_name, write_json_atomic
from variance_pipeline.lake.locks import owned_lock
from variance_pipeline.lake.object_store import Entry, ObjectStore, ObjectStoreError

# What a data dir holds that belongs in the bucket; everything else in the working copy (the
# sync state, lock files, a DAGSTER_HOME or a demo log someone put there) stays on this machine.
MIRRORED = ("raw", "lake", "quarantine", "state", "cache", "reports", "warehouse.duckdb", ".variance-source")
STATE_FILE = ".variance-sync.json"
LOCK_SUBJECT = ".variance-sync"  # -> .variance-sync.lock, .variance-sync.lock.owner
# A file set aside for inspection (candles/bars.py, candles/state.py) and a lock of this machine.
LOCAL_ONLY_SUFFIXES = (".corrupt", ".lock", ".lock.owner")


class Synced(NamedTuple):
    """A file as the working copy last synced it: its object key, and the size, modification time
    and inode it had then. Every write of the lake is a new file renamed into place (a new inode),
    so a rewrite is seen even where the clock of the file system is coarse."""

    key: str
    size: int
    mtime_ns: int
    inode: int


def _stamp(stat: os.stat_result) -> tuple[int, int, int]:
    return stat.st_size, stat.st_mtime_ns, stat.st_ino


@dataclass
class SyncReport:
    """What a pull or a push moved, for the run log and metadata."""

    url: str
    transferred: list[str] = field(default_factory=list)  # downloaded, or uploaded
    removed: list[str] = field(default_factory=list)  # removed locally (pull), or from the manifest (push)
    unchanged: int = 0
    bytes: int = 0
    committed: bool = False

    def summary(self, verb: str) -> str:
        text = (f"{verb} {len(self.transferred)} file(s) ({self.bytes / 2**20:.1f} MB), {self.unchanged} unchanged, "
                f"{len(self.removed)} removed")
        if verb == "pushed":
            text += f"; {'committed' if self.committed else 'nothing to commit to'} {self.url}/manifest.json"
        else:
            text += f", from {self.url}"
        return text


class Mirror:
    """The working copy at ``root`` of the data dir in ``store``, for data of ``source``."""

    def __init__(self, store: ObjectStore, root: Path, source: str) -> None:
        self.store = store
        self.root = Path(root)
        self.source = source

    @contextmanager
    def locked(self, *, wait_seconds: float, run_id: str | None = None) -> Iterator[None]:
        """One run at a time on this working copy (the OS releases the lock of a killed holder)."""

        def busy(holder: str | None) -> Exception:
            return ObjectStoreError(
                f"another run is working on {self.root}, the working copy of {self.store.url}: "
                f"{holder or 'another process'} holds {LOCK_SUBJECT}.lock; waited {wait_seconds:.0f} s. "
                "Runs of one s3:// data dir take turns: re-run once it has finished."
            )

        with owned_lock(self.root / LOCK_SUBJECT, wait_seconds=wait_seconds, run_id=run_id, busy=busy):
            yield

    # -- the local side ---------------------------------------------------------------------------

    def scan(self) -> dict[str, tuple[int, int, int]]:
        """Relative path -> (size, mtime_ns, inode) of every mirrored file in the working copy."""
        found: dict[str, tuple[int, int, int]] = {}
        for top in MIRRORED:
            start = self.root / top
            if start.is_file():
                found[top] = _stamp(start.stat())
                continue
            for folder, _, names in os.walk(start):
                for name in names:
                    if is_temp_name(name) or name.endswith(LOCAL_ONLY_SUFFIXES):
                        continue
                    path = Path(folder, name)
                    try:
                        stat = path.stat()
                    except FileNotFoundError:
                        continue
                    found[path.relative_to(self.root).as_posix()] = _stamp(stat)
        return found

    def _read_state(self) -> dict[str, Synced]:
        """What the last pull or push left in sync; {} when unknown (a new copy: verify everything)."""
        try:
            doc = json.loads((self.root / STATE_FILE).read_text())
            if doc.get("url") != self.store.url or doc.get("endpoint") != self.store.remote.endpoint:
                return {}
            return {rel: Synced(str(k), int(s), int(m), int(i)) for rel, (k, s, m, i) in doc["files"].items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return {}

    def _write_state(self, state: dict[str, Synced]) -> None:
        write_json_atomic(
            self.root / STATE_FILE,
            {"url": self.store.url, "endpoint": self.store.remote.endpoint,
             "files": {rel: list(synced) for rel, synced in sorted(state.items())}},
        )

    def _synced(self, relative: str, key: str) -> Synced:
        return Synced(key, *_stamp((self.root / relative).stat()))

    # -- pull and push ----------------------------------------------------------------------------

    def pull(self) -> SyncReport:
        """Make the working copy what the manifest lists (the source checked before anything moves)."""
        manifest = self.store.read_manifest()
        self.store.check_source(manifest, self.source)
        state, local = self._read_state(), self.scan()
        report = SyncReport(self.store.url)
        synced: dict[str, Synced] = {}
        for relative, entry in sorted(manifest.files.items()):
            known = state.get(relative)
            if known is not None and known.key == entry.key and local.get(relative) == known[1:]:
                synced[relative] = known
                report.unchanged += 1
                continue
            self.store.get_file(entry, self.root / relative)
            synced[relative] = self._synced(relative, entry.key)
            report.transferred.append(relative)
            report.bytes += entry.size
        if manifest.exists:
            for relative in sorted(set(local) - set(manifest.files)):
                (self.root / relative).unlink(missing_ok=True)
                report.removed.append(relative)
        self._write_state(synced)
        return report

    def push(self, run_id: str | None = None) -> SyncReport:
        """Upload what changed since the pull and commit it; nothing is written when nothing changed."""
        state, local = self._read_state(), self.scan()
        committed_keys = {synced.key for synced in state.values()}
        report = SyncReport(self.store.url)
        puts: dict[str, Entry] = {}
        for relative, stat in sorted(local.items()):
            known = state.get(relative)
            if known is not None and known[1:] == stat:
                report.unchanged += 1
                continue
            entry = self.store.put_file(self.root / relative, relative, committed_keys=committed_keys)
            if known is not None and known.key == entry.key:  # rewritten with the same bytes
                state[relative] = self._synced(relative, entry.key)
                report.unchanged += 1
                continue
            puts[relative] = entry
            report.transferred.append(relative)
            report.bytes += entry.size
        report.removed = sorted(set(state) - set(local))
        if puts or report.removed:
            self.store.commit(source=self.source, puts=puts, deletes=report.removed, run_id=run_id)
            report.committed = True
        for relative in report.removed:
            state.pop(relative)
        for relative, entry in puts.items():
            state[relative] = self._synced(relative, entry.key)
        self._write_state(state)
        return report
