"""Shared fixtures: a real simulator on loopback; helpers are in ``support.py``."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Iterator

import dagster as dg
import pytest

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
def simulator() -> Iterator[SimulatorServer]:
    with SimulatorServer(port=0, now=CLOCK) as server:
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
    "test_report_pipeline": ("slow",),
    "test_report_browser": ("slow", "e2e", "browser"),
    "test_report_mail": ("slow",),
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        for mark in MODULE_MARKS.get(item.module.__name__ if item.module else "", ()):
            item.add_marker(mark)
