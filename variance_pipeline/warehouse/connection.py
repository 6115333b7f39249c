"""Opening the DuckDB warehouse: one writer, bounded waits, files the pip CLI can read.

DuckDB allows a single read-write process per file. A user's open session (or another run) holds
a lock; instead of DuckDB's opaque ``IOException`` after an unbounded wait we retry for a bounded
time and then raise an error that names the holder, so the run fails cleanly and nothing is
half-written (every load is one transaction).

Two other failures get a message that says what to do instead of DuckDB's bare ``IOException``:
a file DuckDB cannot read (truncated, overwritten) raises ``WarehouseCorruptError`` naming the
file and ``make rebuild`` (the lake holds everything the warehouse is built from), and a full
disk raises ``WarehouseDiskFullError``. A write connection ends with an explicit ``CHECKPOINT``, so
a checkpoint that fails (ENOSPC) fails the step instead of leaving the WAL behind unnoticed.
"""

from __future__ import annotations

import re
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import duckdb

from variance_pipeline.lake.atomic import format_mb, free_bytes, is_disk_full

# duckdb 2.0 writes storage version 69 by default, which the DuckDB CLI on PyPI (1.5.x) cannot
# read; asking for the 1.5 format keeps the file open-able by both (see docs/reference/dagster-notes.md).
STORAGE_COMPATIBILITY = "v1.5.0"


REBUILD_COMMAND = "make rebuild"
_CORRUPT_MARKERS = (
    "not a valid duckdb database file",
    "could not read enough bytes",
    "corrupt",
    "checksum",
    "failed to read database header",
)


class WarehouseLockedError(RuntimeError):
    """Another process holds the warehouse's write lock beyond the wait budget."""


class WarehouseCorruptError(RuntimeError):
    """DuckDB cannot read the warehouse file; ``make rebuild`` recreates it from the lake."""


class WarehouseDiskFullError(OSError):
    """The disk holding the warehouse is full (ENOSPC) while loading or checkpointing."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "no space left on device"


def _causes(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _looks_corrupt(exc: BaseException) -> bool:
    return any(
        isinstance(e, duckdb.SerializationException) or any(m in str(e).lower() for m in _CORRUPT_MARKERS)
        for e in _causes(exc)
        if isinstance(e, duckdb.Error)
    )


def corrupt_error(path: Path, exc: BaseException) -> WarehouseCorruptError:
    return WarehouseCorruptError(
        f"warehouse {path} cannot be read ({type(exc).__name__}: {exc}). It is built only from the lake "
        f"(lake/ under {path.parent}), which keeps every landed session: run `{REBUILD_COMMAND}` (or "
        "`variance-warehouse rebuild`, with the same VARIANCE_DATA_DIR) to recreate it, then re-run."
    )


def _translated(path: Path, exc: BaseException, *, stage: str) -> BaseException | None:
    """A clearer error for a corrupt file or a full disk, or None to let ``exc`` through."""
    if any(is_disk_full(e) for e in _causes(exc)):
        free = format_mb(free_bytes(path.parent))
        if stage == "checkpoint":
            what = (
                f"this run's load was committed (to {path.name}.wal) but could not be checkpointed into "
                "the file; DuckDB applies the WAL when the file is next opened, so nothing committed is lost"
            )
        else:
            what = (
                "the load is one transaction and was rolled back, so the warehouse keeps the sessions it "
                "held before this run"
            )
        return WarehouseDiskFullError(
            f"warehouse {path}: no space left on device ({free} free there): {what}. Free disk space and "
            f"re-run (loads are idempotent). DuckDB said: {exc}"
        )
    if _looks_corrupt(exc):
        return corrupt_error(path, exc)
    return None


def _lock_holder(message: str) -> str:
    """DuckDB's message names the holding program and its PID; keep just that."""
    match = re.search(r"Conflicting lock is held in (.+?) \(PID (\d+)\)", message)
    return f"{match.group(1)} (PID {match.group(2)})" if match else "another process"


def open_warehouse(
    path: Path, *, read_only: bool = False, wait_seconds: float = 30.0, shown_as: Path | None = None
) -> duckdb.DuckDBPyConnection:
    """Connect, retrying on a held lock for at most ``wait_seconds``; errors name ``shown_as``
    (the published file a private copy stands for), else ``path``."""
    named = shown_as or path
    if read_only and not path.exists():
        raise FileNotFoundError(f"warehouse {path} does not exist yet: materialize the pipeline first")
    path.parent.mkdir(parents=True, exist_ok=True)
    config = {} if read_only else {"storage_compatibility_version": STORAGE_COMPATIBILITY}
    deadline = time.monotonic() + wait_seconds
    delay = 0.1
    while True:
        try:
            con = duckdb.connect(str(path), read_only=read_only, config=config)
            con.execute("SET TimeZone = 'UTC'")
            return con
        except duckdb.Error as exc:
            message = str(exc)
            if not isinstance(exc, duckdb.IOException) or "lock" not in message.lower():
                translated = _translated(named, exc, stage="open")
                if translated is not None:
                    raise translated from exc
                raise
            if time.monotonic() >= deadline:
                raise WarehouseLockedError(
                    f"warehouse {named} is locked by {_lock_holder(message)}; waited {wait_seconds:.0f} s. "
                    "Close that DuckDB session and re-run: loads are idempotent."
                ) from exc
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


@contextmanager
def warehouse_connection(
    path: Path, *, read_only: bool = False, wait_seconds: float = 30.0, shown_as: Path | None = None
) -> Iterator[duckdb.DuckDBPyConnection]:
    """``open_warehouse`` as a context manager; a write connection is checkpointed before it closes,
    and a corrupt file or a full disk met inside the block is reported as such (see the module)."""
    con = open_warehouse(path, read_only=read_only, wait_seconds=wait_seconds, shown_as=shown_as)
    path = shown_as or path
    try:
        try:
            yield con
        except duckdb.Error as exc:
            translated = _translated(path, exc, stage="load")
            if translated is None:
                raise
            raise translated from exc
        if not read_only:
            try:
                con.execute("CHECKPOINT")
            except duckdb.Error as exc:
                translated = _translated(path, exc, stage="checkpoint")
                if translated is None:
                    raise
                raise translated from exc
    finally:
        con.close()
