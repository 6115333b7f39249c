"""Expiration and contract-month arithmetic relative to the simulator's clock.

Positions and the IV term structure must always point into the future of whatever clock the
simulator runs on, so every date here is computed from the clock, never written down. Holiday
Fridays move to the session before (as listed options do); dates past the calendar's horizon are
kept as computed, since no session data exists there to contradict them. Session snapping is
cached (pure for a given calendar): a 500-symbol metrics request asks it thousands of times.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo

import numpy as np

from variance_pipeline.calendar import EXCHANGE_TZ, exchange_calendar, is_session, previous_session

NEW_YORK = ZoneInfo(EXCHANGE_TZ)

FUTURE_MONTH_CODES = "FGHJKMNQUVXZ"
QUARTER_MONTHS = (3, 6, 9, 12)


def add_months(year: int, month: int, months: int) -> tuple[int, int]:
    index = year * 12 + (month - 1) + months
    return index // 12, index % 12 + 1


def third_friday(year: int, month: int) -> date:
    first = date(year, month, 1)
    return first + timedelta(days=(4 - first.weekday()) % 7 + 14)


def _within_calendar(day: date) -> bool:
    cal = exchange_calendar()
    return cal.first_session.date() <= day <= cal.last_session.date()


@lru_cache(maxsize=8192)
def session_on_or_before(day: date) -> date:
    """``day`` if it is a session, else the session before (Good Friday -> Thursday)."""
    if not _within_calendar(day) or is_session(day):
        return day
    return previous_session(day)


@lru_cache(maxsize=8192)
def session_on_or_after(day: date) -> date:
    while _within_calendar(day) and not is_session(day):
        day += timedelta(days=1)
    return day


def monthly_expiration(year: int, month: int) -> date:
    return session_on_or_before(third_friday(year, month))


def weekly_expirations(after: date, count: int) -> list[date]:
    """The next ``count`` Friday expirations strictly after ``after`` (a holiday Friday's moves
    to Thursday, which may be ``after`` itself: then that week is skipped)."""
    friday = after + timedelta(days=(4 - after.weekday()) % 7 or 7)
    snapped = (session_on_or_before(friday + timedelta(weeks=i)) for i in range(count + 1))
    return [day for day in snapped if day > after][:count]


def next_quarter_month(year: int, month: int) -> tuple[int, int]:
    """The first quarterly contract month (H/M/U/Z) strictly after ``month``."""
    for step in range(1, 4):
        y, m = add_months(year, month, step)
        if m in QUARTER_MONTHS:
            return y, m
    raise AssertionError("unreachable: a quarter month is at most three months away")


def future_code(root: str, year: int, month: int, digits: int = 1) -> str:
    """``/ES`` + December 2025 -> ``/ESZ5`` (``digits=2``: ``/ESZ25``, the streamer style)."""
    return f"{root}{FUTURE_MONTH_CODES[month - 1]}{year % 10**digits:0{digits}d}"


def treasury_option_expiration(year: int, month: int) -> date:
    """CBOT rule: the last Friday at least two business days before the previous month's last one."""
    last_business = np.busday_offset(np.datetime64(date(year, month, 1), "D"), -1, roll="forward")
    limit = np.busday_offset(last_business, -2).astype(object)
    return session_on_or_before(limit - timedelta(days=(limit.weekday() - 4) % 7))


def new_york_time(day: date, hour: int, minute: int = 0) -> datetime:
    """A wall-clock time in New York on ``day``, as UTC (DST handled by zoneinfo)."""
    return datetime.combine(day, time(hour, minute), NEW_YORK).astimezone(timezone.utc)


def new_york_date(instant: datetime) -> date:
    return instant.astimezone(NEW_YORK).date()
