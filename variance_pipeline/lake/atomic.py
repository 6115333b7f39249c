"""Atomic files: every write goes to a temporary file beside its target and is renamed into place.

So a crash or a failed validation never leaves a half-written file where a good one was. A
temporary file is named ``.<target>.<pid>.<random>.tmp``: one left behind by a killed process (its
PID gone) is removed by ``sweep_stale_temp_files`` when the next run starts, while a live writer's
(another run at the same time) is never touched. A write that finds the disk full raises
``DiskFullError`` naming the file and the free space, and replaces nothing.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq


TEMP_SUFFIX = ".tmp"
# A temporary file, or the WAL DuckDB keeps beside a private warehouse copy (``...tmp.wal``).
_TEMP_NAME = re.compile(r"^\.(?P<target>.+)\.(?P<pid>\d+)\.[^.]+\.tmp(?:\.wal)?$")
_DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
LEGACY_TEMP_AGE = 3600.0
"""Seconds after which a temporary file without a PID in its name (an older version's) is stale."""


class DiskFullError(OSError):
    """A write found no space left on the device; nothing was replaced (``errno`` is ENOSPC)."""

    def __init__(self, message: str, path: Path) -> None:
        super().__init__(errno.ENOSPC, message, str(path))

    def __str__(self) -> str:
        return str(self.strerror)


def is_temp_name(name: str) -> bool:
    """A temporary file of ``atomic_path`` (or the WAL of a private warehouse copy): never data."""
    return name.startswith(".") and name.endswith((TEMP_SUFFIX, TEMP_SUFFIX + ".wal"))


def free_bytes(path: Path) -> int:
    """Free bytes on the file system holding ``path`` (or its nearest existing ancestor)."""
    probe = Path(path).absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return shutil.disk_usage(probe).free


def format_mb(count: int | float) -> str:
    """Bytes as MB (2**20 bytes, as ``df -m`` counts them)."""
    return f"{count / 2**20:.1f} MB"


def is_disk_full(exc: BaseException) -> bool:
    """ENOSPC/EDQUOT, also when a library (pyarrow, DuckDB) only says so in its message."""
    if isinstance(exc, OSError) and exc.errno in _DISK_FULL_ERRNOS:
        return True
    text = str(exc).lower()
    return "no space left on device" in text or "disk quota exceeded" in text or "[errno 28]" in text


def disk_full_error(target: Path, exc: BaseException) -> DiskFullError:
    return DiskFullError(
        f"no space left on device writing {target} ({format_mb(free_bytes(target.parent))} free there): "
        f"nothing was replaced, {target.name} keeps what it held before. Free disk space and re-run "
        f"(the run's partitions are rewritten whole). Cause: {exc}",
        target,
    )


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` only on success."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.{os.getpid()}.", suffix=TEMP_SUFFIX, dir=target.parent)
        os.close(fd)
    except OSError as exc:
        if is_disk_full(exc):
            raise disk_full_error(target, exc) from exc
        raise
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, target)
    except OSError as exc:
        if is_disk_full(exc) and not isinstance(exc, DiskFullError):
            raise disk_full_error(target, exc) from exc
        raise
    finally:
        tmp.unlink(missing_ok=True)


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    except OSError:
        return False
    return True


def sweep_stale_temp_files(folders: Iterable[Path]) -> list[Path]:
    """Remove the temporary files in ``folders`` (not recursive) whose writing process is gone.

    A temporary file is only ever half a write that was never renamed into place, so removing it
    loses nothing; one whose PID still runs (another run writing right now) is left alone, as is
    one without a PID in its name that is younger than an hour (a writer of an older version).
    """
    removed: list[Path] = []
    for folder in folders:
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            if not is_temp_name(entry.name):
                continue
            if not entry.is_file():
                continue
            match = _TEMP_NAME.match(entry.name)
            if match is not None and _pid_alive(int(match.group("pid"))):
                continue
            if match is None:
                try:
                    if time.time() - entry.stat().st_mtime < LEGACY_TEMP_AGE:
                        continue
                except OSError:
                    continue
            try:
                os.unlink(entry.path)
            except FileNotFoundError:
                continue
            removed.append(Path(entry.path))
    return removed


def write_json_atomic(target: Path, payload: Any) -> Path:
    with atomic_path(target) as tmp:
        tmp.write_text(json.dumps(payload, indent=None, sort_keys=False, default=str))
    return target


def write_bytes_atomic(target: Path, payload: bytes) -> Path:
    with atomic_path(target) as tmp:
        tmp.write_bytes(payload)
    return target


def write_parquet_atomic(target: Path, table: pa.Table | pd.DataFrame) -> Path:
    if isinstance(table, pd.DataFrame):
        table = pa.Table.from_pandas(table, preserve_index=False)
    with atomic_path(target) as tmp:
        pq.write_table(table, tmp, compression="zstd")
    return target
