"""The partitions are NYSE sessions: holidays and one-off closures excluded, early closes kept."""

from __future__ import annotations

from datetime import date, datetime, timezone

import pytest

from variance_pipeline.calendar import last_closed_session, sessions_in_range
from variance_pipeline.defs.partitions import sessions_partitions_def


@pytest.fixture(scope="module")
def keys() -> set[str]:
    return set(sessions_partitions_def().get_partition_keys())


@pytest.mark.parametrize(
    "day, expected",
    [
        ("2025-04-18", False),  # Good Friday
        ("2025-01-09", False),  # national day of mourning (President Carter)
        ("2025-12-25", False),  # Christmas
        ("2025-11-27", False),  # Thanksgiving
        ("2025-11-29", False),  # Saturday
        ("2025-11-28", True),  # day after Thanksgiving: an early close, still a session
        ("2025-12-24", True),  # Christmas Eve: early close
        ("2010-01-04", True),  # first partition
    ],
)
def test_partition_keys_are_xnys_sessions(keys: set[str], day: str, expected: bool) -> None:
    assert (day in keys) is expected


def test_partition_keys_match_exchange_calendars_exactly(keys: set[str]) -> None:
    sessions = {d.isoformat() for d in sessions_in_range(date(2010, 1, 4), date(2025, 12, 31))}
    in_span = {k for k in keys if k <= "2025-12-31"}
    assert in_span == sessions


def test_last_closed_session_follows_the_close() -> None:
    # 2025-11-28 closes early at 13:00 New York (18:00 UTC).
    assert last_closed_session(datetime(2025, 11, 28, 17, 59, tzinfo=timezone.utc)) == date(2025, 11, 26)
    assert last_closed_session(datetime(2025, 11, 28, 18, 0, tzinfo=timezone.utc)) == date(2025, 11, 28)
    # A Sunday belongs to Friday's session.
    assert last_closed_session(datetime(2025, 11, 30, 12, 0, tzinfo=timezone.utc)) == date(2025, 11, 28)
