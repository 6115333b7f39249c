"""Shared fixtures: a real simulator on loopback; helpers are in ``support.py``."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from servers import Postgres, S3Server, postgres_server, s3_server
from support import CLOCK, RECORDED
from variance_pipeline.simulator import SimulatorServer


@pytest.fixture(scope="session")
def recorded_dir() -> Path:
    if not RECORDED.exists():
        pytest.fail(f"recorded fixtures not found at {RECORDED}")
    return RECORDED


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """A real PostgreSQL server on loopback for the session (skips, saying why, when it cannot run)."""
    try:
        server = postgres_server()
        pg = server.__enter__()
    except (RuntimeError, subprocess.CalledProcessError, FileNotFoundError) as exc:
        pytest.skip(f"PostgreSQL could not be started on loopback, so the Postgres instance is untested: {exc}")
    try:
        yield pg
    finally:
        server.__exit__(None, None, None)


@pytest.fixture(scope="session")
def s3() -> Iterator[S3Server]:
    """A real S3-compatible server (moto) on loopback for the session (skips, saying why, when it cannot run)."""
    try:
        server = s3_server()
        found = server.__enter__()
    except (RuntimeError, OSError) as exc:
        pytest.skip(f"no S3 server could be started on loopback, so the s3:// data dir is untested: {exc}")
    try:
        yield found
    finally:
        server.__exit__(None, None, None)


@pytest.fixture(scope="session")
def simulator() -> Iterator[SimulatorServer]:
    with SimulatorServer(port=0, now=CLOCK) as server:
        yield server


# Which modules are slow (real Dagster runs, seconds each), end to end (a CLI or the demo in a
# subprocess) or drive a browser: `make test-fast` (-m "not slow") runs the rest in well under a
# minute; `make test` runs everything.
MODULE_MARKS: dict[str, tuple[str, ...]] = {
    "test_pipeline": ("slow",),
    "test_extraction_pipeline": ("slow",),
    "test_candles_pipeline": ("slow",),
    "test_history_pipeline": ("slow",),
    "test_charts": ("slow",),
    "test_defs": ("slow",),
    "test_demo": ("slow", "e2e"),
    "test_ui_browser": ("slow", "e2e", "browser"),
    "test_faults": ("slow", "faults"),
    "test_scale": ("slow",),
    "test_risk_pipeline": ("slow",),
    "test_s3_pipeline": ("slow",),
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        for mark in MODULE_MARKS.get(item.module.__name__ if item.module else "", ()):
            item.add_marker(mark)
