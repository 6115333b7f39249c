"""The warehouse is published, never edited in place: readers never block a load.

Users query ``warehouse.duckdb`` from the DuckDB CLI, notebooks and BI tools, often across the
evening's run. DuckDB lets one process write a file and takes a lock a reader's session holds, so a
load that edited the file in place waited for every reader to leave and then failed. Instead:

1. a load takes the **load lock** (``warehouse.duckdb.lock``, ``filelock``): two loads serialise,
   the second waits a bounded time and then fails naming the holder (``warehouse.duckdb.lock.owner``
   says which process, host and run took it);
2. copies the published file to a **private** temporary file beside it
   (``.warehouse.duckdb.<pid>.<random>.tmp``, ``lake.atomic``), opens that, loads (one
   transaction) and checkpoints it;
3. **publishes** it with an atomic rename onto ``warehouse.duckdb``.

A reader that opened the published file keeps its consistent view (the old file lives on until it
closes it, as POSIX renames go); a connection opened after the rename sees the new session. A
``kill -9`` or a full disk at any point before the rename leaves the published file as it was (the
temporary file is swept by the next run); after it, the new one is complete. The copy costs about
a second per GB of warehouse (``benchmarks/bench_publish.py`` measures it against the evening).
"""

from __future__ import annotations

import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import duckdb

from variance_pipeline.lake.atomic import atomic_path, format_mb, free_bytes, is_disk_full
from variance_pipeline.lake.locks import LOCK_SUFFIX, owned_lock
from variance_pipeline.warehouse.connection import WarehouseDiskFullError, WarehouseLockedError, warehouse_connection


@contextmanager
def load_lock(path: Path, *, wait_seconds: float, run_id: str | None = None) -> Iterator[None]:
    """The one-load-at-a-time lock of ``path``: a bounded wait, then an error naming the holder."""

    def busy(holder: str | None) -> Exception:
        return WarehouseLockedError(
            f"another load of {path} is running: {holder or 'another load'} holds {path.name}{LOCK_SUFFIX}; "
            f"waited {wait_seconds:.0f} s. Loads are idempotent: re-run once it has finished. (Readers never "
            "hold this lock: open the warehouse read-only at any time.)"
        )

    with owned_lock(path, wait_seconds=wait_seconds, run_id=run_id, busy=busy):
        yield


@contextmanager
def publishing(
    path: Path, *, wait_seconds: float = 60.0, run_id: str | None = None, fresh: bool = False
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection to a private copy of the warehouse at ``path``, published when the block ends
    without an error (``fresh``: start from an empty file, as a rebuild does)."""
    with load_lock(path, wait_seconds=wait_seconds, run_id=run_id):
        with atomic_path(path) as work:
            wal = Path(str(work) + ".wal")
            try:
                if path.exists() and not fresh:
                    try:
                        shutil.copyfile(path, work)
                    except OSError as exc:
                        if is_disk_full(exc):
                            raise WarehouseDiskFullError(
                                f"warehouse {path}: no space left on device ({format_mb(free_bytes(path.parent))} free "
                                "there): the private copy a load works on could not be written, so the published "
                                "warehouse is unchanged. Free disk space and re-run (loads are idempotent). "
                                f"Cause: {exc}"
                            ) from exc
                        raise
                else:
                    work.unlink()  # DuckDB creates a new database where no file is
                with warehouse_connection(work, shown_as=path) as con:
                    yield con
                # The WAL of the published file would belong to the old one: never leave one.
                Path(str(path) + ".wal").unlink(missing_ok=True)
            finally:
                wal.unlink(missing_ok=True)
