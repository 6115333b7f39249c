"""The EOD schedule requests exactly the session that just closed, and nothing on non-sessions."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import dagster as dg
import pytest

from support import definitions_for, pipeline_settings
from variance_pipeline.defs.schedules import eod_schedule

NEW_YORK = ZoneInfo("America/New_York")


@pytest.fixture(scope="module")
def defs(tmp_path_factory: pytest.TempPathFactory) -> dg.Definitions:
    return definitions_for(pipeline_settings(tmp_path_factory.mktemp("data"), "http://127.0.0.1:9"))


@pytest.mark.parametrize(
    "day, expected",
    [
        ("2025-11-24", "2025-11-24"),  # an ordinary Monday
        ("2025-11-28", "2025-11-28"),  # day after Thanksgiving, early close at 13:00
        ("2025-12-24", "2025-12-24"),  # Christmas Eve, early close
        ("2025-11-27", None),  # Thanksgiving
        ("2025-04-18", None),  # Good Friday
        ("2025-11-29", None),  # Saturday
        ("2025-01-09", None),  # national day of mourning
    ],
)
def test_schedule_requests_the_session_that_closed(defs: dg.Definitions, day: str, expected: str | None) -> None:
    when = datetime.fromisoformat(f"{day}T17:30:00").replace(tzinfo=NEW_YORK)
    # Both as context managers: each sets Dagster's process-wide state and must restore it.
    with dg.instance_for_test() as instance, dg.build_schedule_context(
        instance=instance, scheduled_execution_time=when, repository_def=defs.get_repository_def()
    ) as context:
        result = eod_schedule.evaluate_tick(context)
    requests = result.run_requests or []
    if expected is None:
        assert requests == []
        assert result.skip_message and "not an NYSE session" in result.skip_message
    else:
        assert [r.partition_key for r in requests] == [expected]


def test_schedule_runs_after_the_close_in_new_york() -> None:
    assert eod_schedule.cron_schedule == "30 17 * * 1-5"
    assert eod_schedule.execution_timezone == "America/New_York"


def test_definitions_load(defs: dg.Definitions) -> None:
    dg.Definitions.validate_loadable(defs)
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert {"positions", "market_metrics", "iv_term_structure", "candles", "realized_volatility", "warehouse"} <= keys
