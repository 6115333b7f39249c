"""NYSE (XNYS) sessions: every date question of the pipeline goes through this module.

Hand-written holiday lists get Good Friday, observed holidays and one-off closures (the national
day of mourning, 2025-01-09) wrong; exchange_calendars knows them. Dagster is not imported here:
the sources and the simulator depend on the calendar, and the partitions definition built from it
lives in ``defs/partitions.py``.
"""

from __future__ import annotations

from datetime import date, datetime, time, timezone
from functools import lru_cache

import exchange_calendars as xcals
import pandas as pd

EXCHANGE = "XNYS"
EXCHANGE_TZ = "America/New_York"
PARTITIONS_START = date(2010, 1, 4)


@lru_cache(maxsize=1)
def exchange_calendar() -> xcals.ExchangeCalendar:
    """The XNYS calendar, from 2009 (lookback for 2010 HV) to the library's default horizon."""
    return xcals.get_calendar(EXCHANGE, start="2009-01-02")


def _to_date(value: pd.Timestamp) -> date:
    return value.date()


def is_session(day: date) -> bool:
    cal = exchange_calendar()
    if not (cal.first_session.date() <= day <= cal.last_session.date()):
        return False
    return bool(cal.is_session(pd.Timestamp(day)))


def sessions_in_range(start: date, end: date) -> list[date]:
    """Sessions in [start, end], both inclusive; empty when start > end."""
    if start > end:
        return []
    cal = exchange_calendar()
    start = max(start, cal.first_session.date())
    end = min(end, cal.last_session.date())
    if start > end:
        return []
    return [_to_date(s) for s in cal.sessions_in_range(pd.Timestamp(start), pd.Timestamp(end))]


def sessions_back(end: date, count: int) -> list[date]:
    """The ``count`` sessions ending at ``end`` (inclusive when ``end`` is a session)."""
    cal = exchange_calendar()
    last = end if is_session(end) else _to_date(cal.date_to_session(pd.Timestamp(end), "previous"))
    window = cal.sessions_window(pd.Timestamp(last), -count)
    return [_to_date(s) for s in window]


def previous_session(day: date) -> date:
    cal = exchange_calendar()
    if is_session(day):
        return _to_date(cal.previous_session(pd.Timestamp(day)))
    return _to_date(cal.date_to_session(pd.Timestamp(day), "previous"))


def session_close(day: date) -> datetime:
    """The session's close in UTC (early closes included)."""
    return exchange_calendar().session_close(pd.Timestamp(day)).to_pydatetime().astimezone(timezone.utc)


def session_open(day: date) -> datetime:
    return exchange_calendar().session_open(pd.Timestamp(day)).to_pydatetime().astimezone(timezone.utc)


def last_closed_session(now: datetime) -> date:
    """The newest session whose close is at or before ``now``.

    This is the "current session" of the snapshot rule: a snapshot taken at ``now`` belongs to
    it, from its close until the next session's close.
    """
    candidate = pd.Timestamp(now).tz_convert(EXCHANGE_TZ).date()
    if not is_session(candidate):
        candidate = previous_session(candidate)
    while session_close(candidate) > now:
        candidate = previous_session(candidate)
    return candidate


def excluded_weekdays(start: date, end: date) -> list[datetime]:
    """Weekdays in [start, end] that are not sessions: holidays and special closures (naive midnights)."""
    cal = exchange_calendar()
    weekdays = pd.bdate_range(start, end)
    sessions = cal.sessions_in_range(pd.Timestamp(start), pd.Timestamp(end))
    closed = weekdays.difference(sessions.tz_localize(None) if sessions.tz is not None else sessions)
    return [datetime.combine(d.date(), time()) for d in closed]
