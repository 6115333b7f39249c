"""Earnings reports dated by what the pipeline saw (issue 19, item 7).

Tastytrade's historic earnings endpoint labels a report by its fiscal quarter's calendar end (the
recorded AAPL body: 2022-06-30 .. 2023-03-31, one a Saturday), so a move measured around
``occurred-date`` is an ordinary two-day move a month before the report. The report's day and
BMO/AMC are only in the metrics snapshots taken before it. These tests go through the parser on the
recorded bodies (this module), and through real pipeline runs on the simulator
(``test_earnings_pipeline.py``).
"""

from __future__ import annotations

from datetime import date, datetime, timezone

import pandas as pd

from support import recorded_items
from variance_pipeline.schemas.earnings import EARNINGS_CALENDAR
from variance_pipeline.schemas.validate import validate_frame
from variance_pipeline.sources.tastytrade_frames import earnings_calendar_rows
from variance_pipeline.sources.tastytrade_reference import earnings_report_rows

pytestmark = []  # the fast lane: no Dagster run, no server

STAMP = datetime(2023, 6, 7, 22, tzinfo=timezone.utc)


# --- the parser, on the recorded bodies -----------------------------------------------------------


def test_the_recorded_history_is_labelled_by_quarter_ends_not_report_days() -> None:
    rows = earnings_report_rows("AAPL", recorded_items("tastytrade/historic_earnings_AAPL.json"), fetched_at=STAMP)
    labels = [row["occurred_date"] for row in rows]
    assert labels == [date(2022, 6, 30), date(2022, 9, 30), date(2022, 12, 31), date(2023, 3, 31)]
    assert date(2022, 12, 31).weekday() == 5  # a Saturday: no session moves on it


def test_each_metrics_item_announces_its_report_with_the_quarter_and_time_of_day() -> None:
    items = recorded_items("tastytrade/market_metrics.json")
    frame = EARNINGS_CALENDAR.frame(earnings_calendar_rows(items, as_of_date=date(2023, 6, 7), fetched_at=STAMP))
    assert validate_frame(EARNINGS_CALENDAR, frame).ok
    got = frame.set_index("symbol")
    # The recording sends no time-of-day: unknown, not a guess.
    assert got.loc["AAPL", "expected_report_date"] == date(2023, 7, 27)
    assert got.loc["AAPL", "quarter_end_date"] == date(2023, 6, 1)  # June's quarter: occurred-date 2023-06-30
    assert not got.loc["AAPL", "estimated"] and pd.isna(got.loc["AAPL", "time_of_day"])
    # A live item with time-of-day keeps it (any case); an unknown word is unknown; no date, no row.
    live = [
        {"symbol": "AAPL", "earnings": {"expected-report-date": "2026-01-29", "estimated": True,
                                        "quarter-end-date": "2025-12-01", "time-of-day": "amc"}},
        {"symbol": "XYZ", "earnings": {"expected-report-date": "2026-02-03", "time-of-day": "During"}},
        {"symbol": "SPY"},
        {"symbol": "QQQ", "earnings": {"visible": False}},
    ]
    frame = EARNINGS_CALENDAR.frame(earnings_calendar_rows(live, as_of_date=date(2025, 11, 25), fetched_at=STAMP))
    assert validate_frame(EARNINGS_CALENDAR, frame).ok
    assert frame["symbol"].tolist() == ["AAPL", "XYZ"]
    assert frame["time_of_day"].tolist()[0] == "AMC" and pd.isna(frame["time_of_day"].tolist()[1])
    assert bool(frame["estimated"].iloc[0]) is True
