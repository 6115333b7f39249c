"""Named exclusive locks: a bounded wait, then an error that says who holds the lock.

Two processes that must take turns on one thing (two loads of one warehouse, two runs on one
working copy of an ``s3://`` data dir) take ``<thing>.lock`` (``filelock``: the operating system
releases it when its holder dies, even by ``kill -9``) and write down who they are beside it in
``<thing>.lock.owner`` (PID, host, run), so the process that waits in vain can name the holder
instead of failing with a bare time-out.
"""

from __future__ import annotations

import json
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from filelock import FileLock, Timeout

LOCK_SUFFIX = ".lock"
OWNER_SUFFIX = ".lock.owner"


def _owner_path(path: Path) -> Path:
    return path.with_name(path.name + OWNER_SUFFIX)


def holder(path: Path) -> str | None:
    """Who holds the lock of ``path``, as the holder wrote it down (best effort: it may be gone)."""
    try:
        owner = json.loads(_owner_path(path).read_text())
        return f"PID {owner['pid']} on {owner['host']}" + (f" (run {owner['run']})" if owner.get("run") else "")
    except (OSError, ValueError, KeyError, TypeError):
        return None


@contextmanager
def owned_lock(
    path: Path, *, wait_seconds: float, run_id: str | None = None, busy: Callable[[str | None], Exception]
) -> Iterator[None]:
    """Hold ``<path>.lock`` for the block; after ``wait_seconds`` raise ``busy(holder)`` instead.

    The lock is not thread-bound: a resource may take it in its set-up and release it in its
    teardown.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path) + LOCK_SUFFIX, thread_local=False)
    try:
        lock.acquire(timeout=wait_seconds)
    except Timeout:
        raise busy(holder(path)) from None
    try:
        _owner_path(path).write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "run": run_id,
                                                 "since": time.time()}))
        yield
    finally:
        _owner_path(path).unlink(missing_ok=True)
        lock.release()
