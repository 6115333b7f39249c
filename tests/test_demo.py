"""`make demo`'s program end to end: simulator subprocess, the real `dagster` CLI backfill, then
evening-by-evening replays with the clocks stepped together, and the SQL results it prints."""

from __future__ import annotations

import pytest

import os
import subprocess
import sys
from pathlib import Path

import duckdb

from support import CLOCK
from variance_pipeline.calendar import sessions_back

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

PROJECT = Path(__file__).resolve().parents[1]
SESSIONS = 30
EVENINGS = 23  # the first two evenings get their 21 later sessions: complete VRP rows


def test_demo_backfills_replays_evenings_and_prints_the_history(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "VARIANCE_SOURCE": "simulator",
        "VARIANCE_DATA_DIR": str(tmp_path / "data"),
        "VARIANCE_NOW": CLOCK.isoformat(),
        "VARIANCE_WATCHLIST": "SPY,/ES",
    }
    env.pop("DAGSTER_HOME", None)
    env.pop("VARIANCE_YAHOO_RATE", None)
    done = subprocess.run(
        [sys.executable, "-m", "variance_pipeline.demo", "--sessions", str(SESSIONS), "--evenings", str(EVENINGS)],
        env=env, capture_output=True, text=True, cwd=PROJECT, timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    sessions = sessions_back(CLOCK.date(), SESSIONS)  # CLOCK is after the close of 2025-11-25
    evenings = sessions[-EVENINGS:]
    # The backfill through the real CLI ends at the first evening, with the clock at that evening.
    assert f"--partition-range {sessions[0]}...{evenings[0]}" in done.stdout
    assert f"VARIANCE_NOW={evenings[0].isoformat()}T22:00:00+00:00" in done.stdout
    for i, day in enumerate(evenings[1:], start=1):
        assert f"evening {i}/{EVENINGS - 1} {day} (clock {day.isoformat()}T22:00:00+00:00): run succeeded" in done.stdout
    assert "vol_dashboard" in done.stdout and "│ SPY" in done.stdout and "iv_rank_own" in done.stdout
    assert "strategy_outcomes" in done.stdout and "│ strategy" in done.stdout
    assert "vrp_summary" in done.stdout
    report = tmp_path / "data" / "reports" / f"evening-{evenings[-1].isoformat()}.html"
    assert done.stdout.rstrip().endswith(f"The evening report (open it in a browser): {report}")
    assert report.exists() and "Evening report" in report.read_text()
    with duckdb.connect(str(tmp_path / "data" / "warehouse.duckdb"), read_only=True) as con:
        loaded = con.execute("SELECT count(DISTINCT session_date) FROM candles").fetchone()[0]
        snapshots = [r[0] for r in con.execute("SELECT DISTINCT as_of_date FROM market_metrics ORDER BY 1").fetchall()]
        hv252, rank_own = con.execute("SELECT hv252, iv_rank_own FROM vol_dashboard WHERE symbol = 'SPY'").fetchone()
        summary = dict(con.execute("SELECT symbol, dates FROM vrp_summary").fetchall())
        complete = con.execute("SELECT count(*) FROM vrp WHERE symbol = 'SPY' AND vrp IS NOT NULL").fetchone()[0]
    assert loaded == SESSIONS
    assert snapshots == evenings  # one snapshot per replayed evening, none before
    assert hv252 is not None  # the candle lookback covers HV252 from the first run
    assert rank_own is not None  # 23 evenings of own history >= the 20 the rank needs
    assert summary["SPY"] == complete == 2 and all(n > 0 for n in summary.values())
    assert (tmp_path / "data" / "dagster_home" / "dagster.yaml").exists()
