"""Shared fixtures: a real simulator on loopback; helpers are in ``support.py``."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Iterator

import dagster as dg
import httpx
import pytest

from servers import Postgres, S3Server, postgres_server, s3_server
from support import (
    CLOCK,
    MARKET,
    RECORDED,
    REPORT_SESSION,
    REPORT_WATCHLIST,
    SMTP_PASSWORD,
    SMTP_USER,
    ReportEvening,
    SmtpServer,
    land_account_snapshot,
    land_iv_history,
    login,
    materialize,
    pipeline_settings,
)
from variance_pipeline.calendar import sessions_back
from variance_pipeline.demo import free_port
from variance_pipeline.lake.layout import Lake
from variance_pipeline.schemas.account import ACCOUNTS
from variance_pipeline.schemas.market_metrics import MARKET_METRICS
from variance_pipeline.schemas.registry import ACCOUNT_SNAPSHOT
from variance_pipeline.simulator import SimulatorServer
from variance_pipeline.warehouse.connection import warehouse_connection
from variance_pipeline.warehouse.load import load_sessions


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


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    """A real SMTP server on 127.0.0.1 (aiosmtpd) that accepts only SMTP_USER with SMTP_PASSWORD."""
    from aiosmtpd.controller import Controller

    server = SmtpServer("127.0.0.1", free_port(), SMTP_USER, SMTP_PASSWORD)
    controller = Controller(server.handler(), hostname=server.host, port=server.port,
                            authenticator=server.authenticate, auth_require_tls=False)
    controller.start()
    try:
        yield server
    finally:
        controller.stop()


@pytest.fixture(scope="session")
def report_evening(tmp_path_factory: pytest.TempPathFactory, simulator: SimulatorServer) -> ReportEvening:
    root = tmp_path_factory.mktemp("report-evening")
    data_dir = root / "data"
    settings = pipeline_settings(data_dir, simulator.url, watchlist=REPORT_WATCHLIST)
    partition = REPORT_SESSION.isoformat()
    instance = dg.DagsterInstance.ephemeral()  # both runs in one instance, as evenings are
    first = materialize(settings, partition_key=partition, select=[*MARKET, "evening_report"], instance=instance)
    assert first.success
    lake = Lake(data_dir)
    first_evening = shutil.copyfile(lake.reports_dir / "latest.html", root / "first-evening.html")
    accounts = lake.read_partition(ACCOUNTS.name, REPORT_SESSION)
    open_accounts = sorted(accounts.loc[~accounts["is_closed"].astype(bool), "account_number"])
    positions = lake.read_partition("positions", REPORT_SESSION)
    held = positions.groupby(["account_number", "root_symbol"]).size()
    margin = {(a, u): 1_500.0 + 750.0 * i for i, (a, u) in enumerate(held.index)}
    yesterday = sessions_back(REPORT_SESSION, 2)[0]
    land_account_snapshot(lake, yesterday, {a: 98_000.0 - 20_000 * i for i, a in enumerate(open_accounts)})
    land_account_snapshot(lake, REPORT_SESSION, {a: 100_000.0 - 20_000 * i for i, a in enumerate(open_accounts)},
                          used_share=0.27, margin=margin)
    history = land_iv_history(lake, REPORT_SESSION)
    with warehouse_connection(lake.warehouse_path) as con:
        load_sessions(con, lake, [yesterday], tables=ACCOUNT_SNAPSHOT, refresh_history=False)
        load_sessions(con, lake, history, tables=[MARKET_METRICS])
    second = materialize(settings, partition_key=partition, select=["warehouse", "account_book", "evening_report"],
                         instance=instance)
    assert second.success
    return ReportEvening(data_dir, settings, Path(first_evening), lake.reports_dir / f"evening-{partition}.html", second)


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
