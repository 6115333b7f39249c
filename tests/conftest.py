"""Shared fixtures: a real simulator on loopback; helpers are in ``support.py``."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from servers import Postgres, S3Server, postgres_server, s3_server
from support import CLOCK, RECORDED, login
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


@pytest.fixture(scope="module")
def sim(request: pytest.FixtureRequest) -> Iterator[SimulatorServer]:
    """A simulator of the module's own, so that the faults and clocks one module installs reach no
    other. A module sets its ``SimulatorServer`` arguments in a module-level ``SIMULATOR`` dict
    (e.g. ``{"now": CLOCK, "seed": 7}``); the default is ``now=support.CLOCK`` and the simulator's
    default seed."""
    options = {"now": CLOCK, **getattr(request.module, "SIMULATOR", {})}
    with SimulatorServer(port=0, **options) as server:
        yield server


@pytest.fixture(scope="module")
def api(sim: SimulatorServer) -> Iterator[httpx.Client]:
    """An httpx client logged in to the module's ``sim``."""
    with login(sim.url) as client:
        yield client


# Speed lanes are declared by the test modules themselves (``pytestmark = pytest.mark.slow``, or
# per test): `make test-fast` (-m "not slow") runs the rest in under a minute and never a Dagster
# run, which this guard enforces: a test outside the slow lane that starts one fails at once.
@pytest.fixture(autouse=True)
def _no_dagster_run_in_the_fast_lane(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if request.node.get_closest_marker("slow") is not None:
        return
    import dagster as dg

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"{request.node.nodeid} starts a Dagster run: mark it (or its module) slow")

    monkeypatch.setattr(dg, "materialize", refuse)
