"""The ``xnys_sessions`` table: XNYS sessions with a global ordinal, so SQL can count sessions.

Why a table: session arithmetic never happens in SQL (weekends, holidays and early closes live in
exchange_calendars), so the vol-history steps write the sessions they need, with their ordinal in
the calendar, before their SQL runs; "21 sessions later" is then ``ordinal + 21``.
"""

from __future__ import annotations

from datetime import date, timedelta

import duckdb
import pandas as pd

from variance_pipeline.calendar import exchange_calendar, sessions_back, sessions_in_range


def sessions_after(day: date, count: int) -> list[date]:
    """The ``count`` XNYS sessions after ``day`` (fewer at the calendar's horizon)."""
    span = count * 7 // 5 + 15  # calendar days that surely hold ``count`` sessions
    return sessions_in_range(day + timedelta(days=1), day + timedelta(days=span))[:count]


def write_sessions(con: duckdb.DuckDBPyConnection, start: date, end: date) -> int:
    """Upsert the XNYS sessions in [start, end] with their global ordinal into ``xnys_sessions``."""
    days = sessions_in_range(start, end)
    if not days:
        return 0
    ordinals = exchange_calendar().sessions.get_indexer(pd.DatetimeIndex(days))
    con.execute(
        "INSERT OR REPLACE INTO xnys_sessions "
        "SELECT unnest(CAST($days AS DATE[])), unnest(CAST($ordinals AS INTEGER[]))",
        {"days": days, "ordinals": [int(o) for o in ordinals]},
    )
    return len(days)


def sessions_before(day: date, count: int) -> date:
    """The ``count``-th session counting back from ``day`` (itself first when a session), clamped
    to the calendar's first session."""
    try:
        return sessions_back(day, count)[0]
    except ValueError:  # exchange_calendars: the window reaches before the calendar's start
        return calendar_bounds()[0]


def calendar_bounds() -> tuple[date, date]:
    cal = exchange_calendar()
    return cal.first_session.date(), cal.last_session.date()
