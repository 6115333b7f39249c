"""`make demo`'s program end to end: simulator subprocess, two real `dagster` CLI runs, SQL result."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import duckdb

from support import CLOCK
from variance_pipeline.calendar import sessions_back

PROJECT = Path(__file__).resolve().parents[1]


def test_demo_backfills_and_prints_the_vol_dashboard(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "VARIANCE_SOURCE": "simulator",
        "VARIANCE_DATA_DIR": str(tmp_path / "data"),
        "VARIANCE_NOW": CLOCK.isoformat(),
        "VARIANCE_WATCHLIST": "SPY,/ES",
    }
    env.pop("DAGSTER_HOME", None)
    done = subprocess.run(
        [sys.executable, "-m", "variance_pipeline.demo", "--sessions", "20"],
        env=env, capture_output=True, text=True, cwd=PROJECT, timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    sessions = sessions_back(CLOCK.date(), 20)  # CLOCK is after the close of 2025-11-25
    assert f"--partition-range {sessions[0]}...{sessions[-2]}" in done.stdout
    assert "--partition 2025-11-25" in done.stdout
    assert "vol_dashboard" in done.stdout and "│ SPY" in done.stdout
    with duckdb.connect(str(tmp_path / "data" / "warehouse.duckdb"), read_only=True) as con:
        loaded = con.execute("SELECT count(DISTINCT session_date) FROM candles").fetchone()[0]
        hv252 = con.execute("SELECT hv252 FROM vol_dashboard WHERE symbol = 'SPY'").fetchone()[0]
    assert loaded == 20
    assert hv252 is not None  # the candle lookback covers HV252 from the first run
    assert (tmp_path / "data" / "dagster_home" / "dagster.yaml").exists()
