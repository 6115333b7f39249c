"""Opening the DuckDB warehouse: one writer, bounded waits, files the pip CLI can read.

DuckDB allows a single read-write process per file. A user's open session (or another run) holds
a lock; instead of DuckDB's opaque ``IOException`` after an unbounded wait we retry for a bounded
time and then raise an error that names the holder, so the run fails cleanly and nothing is
half-written (every load is one transaction).
"""

from __future__ import annotations

import re
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import duckdb

# duckdb 2.0 writes storage version 69 by default, which the DuckDB CLI on PyPI (1.5.x) cannot
# read; asking for the 1.5 format keeps the file open-able by both (see dagster-notes.md).
STORAGE_COMPATIBILITY = "v1.5.0"


class WarehouseLockedError(RuntimeError):
    """Another process holds the warehouse's write lock beyond the wait budget."""


def _lock_holder(message: str) -> str:
    """DuckDB's message names the holding program and its PID; keep just that."""
    match = re.search(r"Conflicting lock is held in (.+?) \(PID (\d+)\)", message)
    return f"{match.group(1)} (PID {match.group(2)})" if match else "another process"


def open_warehouse(path: Path, *, read_only: bool = False, wait_seconds: float = 30.0) -> duckdb.DuckDBPyConnection:
    """Connect, retrying on a held lock for at most ``wait_seconds``."""
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
        except duckdb.IOException as exc:
            message = str(exc)
            if "lock" not in message.lower():
                raise
            if time.monotonic() >= deadline:
                raise WarehouseLockedError(
                    f"warehouse {path} is locked by {_lock_holder(message)}; waited {wait_seconds:.0f} s. "
                    "Close that DuckDB session (or open yours with read_only=True only while no load runs) "
                    "and re-run: loads are idempotent."
                ) from exc
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


@contextmanager
def warehouse_connection(
    path: Path, *, read_only: bool = False, wait_seconds: float = 30.0
) -> Iterator[duckdb.DuckDBPyConnection]:
    con = open_warehouse(path, read_only=read_only, wait_seconds=wait_seconds)
    try:
        yield con
    finally:
        con.close()
