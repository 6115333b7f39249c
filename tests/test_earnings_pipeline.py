"""Earnings reports dated by what the pipeline saw (issue 19, item 7), through real pipeline runs
on the simulator (real HTTP, real DuckDB) over four evenings around AAPL's after-close report of
Tuesday 2025-10-28, the stored move compared with numpy over the landed candles.

The simulator lists the report in its history under 2025-09-30 (its quarter's end), as the real
endpoint does; its day and time of day are in the metrics snapshots of the evenings before it.
Every report of the three years before the first evening was announced before this history began:
no day, no move, and the reason.
"""

from __future__ import annotations

import math
from datetime import date, datetime, timezone

import duckdb
import numpy as np
import pandas as pd
import pytest

from support import EXTRACT, NO_CHARTS, materialize, pipeline_settings
from variance_pipeline.simulator import SimulatorServer

pytestmark = pytest.mark.slow

EVENINGS = [date(2025, 10, 24), date(2025, 10, 27), date(2025, 10, 28), date(2025, 10, 29)]
REPORT = date(2025, 10, 28)   # AAPL's, after the close (the simulator's metrics say AMC)
QUARTER = date(2025, 9, 30)   # what the historic endpoint lists it under
SELECT = [*EXTRACT, "candles", "realized_volatility", "earnings_reports", "warehouse"]


def _evening(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, 22, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def evenings(tmp_path_factory: pytest.TempPathFactory) -> dict:
    data_dir = tmp_path_factory.mktemp("earnings")
    seen: dict[date, pd.DataFrame] = {}
    with SimulatorServer(port=0, now=_evening(EVENINGS[0])) as sim:
        for i, day in enumerate(EVENINGS):
            sim.now = _evening(day)
            settings = pipeline_settings(data_dir, sim.url, now=_evening(day), watchlist="SPY,AAPL")
            if i == 0:
                result = materialize(settings, partition_range=("2025-09-15", str(day)), select=SELECT, run_config=NO_CHARTS)
            else:
                result = materialize(settings, partition_key=str(day), select=SELECT, run_config=NO_CHARTS)
            assert result.success, day
            with duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True) as con:
                seen[day] = con.execute("SELECT * FROM earnings_moves WHERE symbol = 'AAPL'").df()
    return {"data_dir": data_dir, "seen": seen}


@pytest.fixture(scope="module")
def con(evenings: dict):
    with duckdb.connect(str(evenings["data_dir"] / "warehouse.duckdb"), read_only=True) as connection:
        yield connection


def test_every_evening_keeps_the_announcement(con) -> None:
    calendar = con.execute(
        "SELECT as_of_date, expected_report_date, estimated, time_of_day, quarter_end_date FROM earnings_calendar "
        "WHERE symbol = 'AAPL' ORDER BY as_of_date").fetchall()
    assert [row[0] for row in calendar] == EVENINGS
    before, after = calendar[:2], calendar[2:]
    assert all(row[1:] == (REPORT, False, "AMC", date(2025, 9, 1)) for row in before)
    # From the report's own evening the metrics announce the next quarter's report.
    assert all(row[1] > REPORT and row[4] == date(2025, 12, 1) for row in after)


def test_the_report_is_dated_by_the_announcement_and_moves_one_session(evenings: dict, con) -> None:
    row = con.execute("SELECT * FROM earnings_moves WHERE symbol = 'AAPL' AND occurred_date = ?", [QUARTER]).df()
    assert len(row) == 1
    row = row.iloc[0]
    assert pd.Timestamp(row["report_date"]).date() == REPORT and row["report_time_of_day"] == "AMC"
    assert pd.Timestamp(row["announced_on"]).date() == date(2025, 10, 27)
    # After the close: the close of the report day to the close of the next session.
    assert pd.Timestamp(row["session_before"]).date() == REPORT
    assert pd.Timestamp(row["session_after"]).date() == date(2025, 10, 29)
    candles = con.execute("SELECT session_date, close FROM candles WHERE symbol = 'AAPL'").df()
    closes = pd.Series(candles["close"].to_numpy(), index=pd.to_datetime(candles["session_date"]).dt.date)
    want = float(np.log(closes[date(2025, 10, 29)] / closes[REPORT]))
    assert row["move"] == pytest.approx(want, rel=1e-12) and row["abs_move"] == pytest.approx(abs(want), rel=1e-12)
    assert pd.isna(row["move_note"])
    # Not the quarter-end move today's code stored (2025-09-29 .. 2025-10-01).
    quarter_end_move = float(np.log(closes[date(2025, 10, 1)] / closes[date(2025, 9, 29)]))
    assert not math.isclose(row["move"], quarter_end_move, rel_tol=1e-9)
    # The implied move: the report day's own evening (its options closed before the report), and
    # the first expiration after the report (an after-close report is not in a same-day expiration).
    assert pd.Timestamp(row["snapshot_date"]).date() == REPORT
    assert row["implied_source"] == "term_structure" and pd.Timestamp(row["implied_expiration"]).date() > REPORT
    node = con.execute(
        "SELECT implied_volatility, years_to_expiration FROM iv_term_structure_by_expiration "
        "WHERE symbol = 'AAPL' AND as_of_date = ? AND expiration_date > ? ORDER BY expiration_date LIMIT 1",
        [REPORT, REPORT]).fetchone()
    assert row["implied_move"] == pytest.approx(node[0] * math.sqrt(node[1]), rel=1e-12)
    # The history listed it only once it had happened, and the evening after it was measured.
    assert QUARTER not in set(pd.to_datetime(evenings["seen"][date(2025, 10, 27)]["occurred_date"]).dt.date)


def test_reports_before_our_history_have_no_day_and_no_move(con) -> None:
    undated = con.execute(
        "SELECT occurred_date, report_date, session_before, session_after, move, implied_move, move_note "
        "FROM earnings_moves WHERE symbol = 'AAPL' AND occurred_date < ?", [QUARTER]).fetchall()
    assert len(undated) >= 10  # three years of quarters, all announced before the first evening
    for occurred, report, before, after, move, implied, note in undated:
        assert (occurred + pd.Timedelta(days=1)).day == 1  # a month end: the quarter label
        assert (report, before, after, move, implied) == (None, None, None, None, None), occurred
        assert "report date unknown" in note and "before this project's history" in note
    summary = con.execute(
        "SELECT moves_counted, reports_undated, last_report_date, earnings_time_of_day FROM next_earnings "
        "WHERE symbol = 'AAPL'").fetchone()
    assert summary == (1, len(undated), REPORT, "AMC")
