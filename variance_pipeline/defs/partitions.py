"""The one partitions definition every asset shares: one key per XNYS session.

Also the single-run backfill policy, so a backfill of any range is one run and each asset sees the
whole ``partition_key_range``.
"""

import warnings
from datetime import date
from functools import lru_cache

import dagster as dg

from variance_pipeline.calendar import (
    EXCHANGE_TZ,
    PARTITIONS_START,
    exchange_calendar,
    excluded_weekdays,
    sessions_in_range,
)

# BackfillPolicy is "beta" in Dagster 1.13 yet the only way to run a range as one run; the
# warning is known and would drown the run log.
warnings.filterwarnings("ignore", category=dg.BetaWarning)


@lru_cache(maxsize=1)
def sessions_partitions_def() -> dg.TimeWindowPartitionsDefinition:
    """One partition per XNYS session, keys ``YYYY-MM-DD``, weekends and holidays excluded.

    ``end_offset=1`` makes today's session a valid key from midnight New York, so the schedule
    after the close can request it; the snapshot rule (not the partition set) decides whether a
    snapshot lands.
    """
    holidays = excluded_weekdays(PARTITIONS_START, exchange_calendar().last_session.date())
    return dg.DailyPartitionsDefinition(
        start_date=PARTITIONS_START.isoformat(),
        timezone=EXCHANGE_TZ,
        end_offset=1,
        exclusions=["0 0 * * 6", "0 0 * * 0", *holidays],
    )


sessions_partitions = sessions_partitions_def()
single_run_backfill = dg.BackfillPolicy.single_run()


def run_sessions(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext) -> list[date]:
    """The NYSE sessions of this run's partition range (one key or a backfill range)."""
    key_range = context.partition_key_range
    return sessions_in_range(date.fromisoformat(key_range.start), date.fromisoformat(key_range.end))
