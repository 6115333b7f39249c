"""Dagster's instance on PostgreSQL (deploy/dagster-postgres.yaml), against a real server the
suite starts on loopback: a backfill and an evening succeed through the CLI, and two runs at once
behave as on SQLite (both finish, both recorded)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
import dagster as dg
import psycopg2
import pytest

from servers import Postgres
from support import CLOCK
from variance_pipeline.simulator import SimulatorServer

pytestmark = pytest.mark.slow

PROJECT = Path(__file__).resolve().parents[1]
DAGSTER = str(Path(sys.executable).with_name("dagster"))


def run_env(tmp_path: Path, pg: Postgres, sim: SimulatorServer) -> dict[str, str]:
    home = tmp_path / "dagster_home"
    home.mkdir(exist_ok=True)
    shutil.copyfile(PROJECT / "deploy" / "dagster-postgres.yaml", home / "dagster.yaml")
    env = {
        **os.environ,
        "VARIANCE_SOURCE": "simulator",
        "VARIANCE_DATA_DIR": str(tmp_path / "data"),
        "VARIANCE_NOW": CLOCK.isoformat(),
        "VARIANCE_WATCHLIST": "SPY,QQQ",
        "VARIANCE_SIMULATOR_URL": sim.url,
        "VARIANCE_YAHOO_RATE": "1000",
        "DAGSTER_HOME": str(home),
        "DAGSTER_POSTGRES_URL": pg.url,
    }
    for name in ("TASTYTRADE_API_URL", "YAHOO_CHART_URL"):
        env.pop(name, None)
    return env


def materialize(env: dict[str, str], *partition: str) -> subprocess.Popen:
    command = [DAGSTER, "asset", "materialize", "-m", "variance_pipeline.definitions", "--select", "*", *partition]
    return subprocess.Popen(command, env=env, cwd=PROJECT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finished(process: subprocess.Popen) -> None:
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 0, output[-3000:]


def recorded_runs(pg: Postgres) -> list[str]:
    """Run statuses straight from PostgreSQL (not through Dagster), oldest first."""
    with psycopg2.connect(host="127.0.0.1", port=pg.port, user=pg.user, dbname=pg.database) as con:
        with con.cursor() as cursor:
            cursor.execute("SELECT status FROM runs ORDER BY id")
            return [row[0] for row in cursor.fetchall()]


def test_a_backfill_and_an_evening_on_postgres(
    tmp_path: Path, postgres: Postgres, simulator: SimulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = run_env(tmp_path, postgres, simulator)
    before = len(recorded_runs(postgres)) if _has_runs_table(postgres) else 0
    finished(materialize(env, "--partition-range", "2025-11-19...2025-11-24"))
    finished(materialize(env, "--partition", "2025-11-25"))
    statuses = recorded_runs(postgres)[before:]
    assert statuses == ["SUCCESS", "SUCCESS"]
    monkeypatch.setenv("DAGSTER_POSTGRES_URL", postgres.url)  # the instance reads it from the environment
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
        latest = instance.get_latest_materialization_event(dg.AssetKey("warehouse"))
        assert latest is not None and latest.dagster_event.partition == "2025-11-25"
    assert (tmp_path / "data" / "warehouse.duckdb").exists()


def test_two_runs_at_once_on_postgres(tmp_path: Path, postgres: Postgres, simulator: SimulatorServer) -> None:
    env = run_env(tmp_path, postgres, simulator)
    before = len(recorded_runs(postgres)) if _has_runs_table(postgres) else 0
    # Both processes start together on one instance and one data dir: the duckdb pool and the
    # warehouse lock serialise the writers, exactly as on SQLite.
    processes = [materialize(env, "--partition", "2025-11-25") for _ in range(2)]
    for process in processes:
        finished(process)
    assert recorded_runs(postgres)[before:] == ["SUCCESS", "SUCCESS"]


def _has_runs_table(pg: Postgres) -> bool:
    with psycopg2.connect(host="127.0.0.1", port=pg.port, user=pg.user, dbname=pg.database) as con:
        with con.cursor() as cursor:
            cursor.execute("SELECT to_regclass('public.runs') IS NOT NULL")
            return bool(cursor.fetchone()[0])
