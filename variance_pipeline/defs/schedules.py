"""The EOD schedule: after the US close, on NYSE sessions only, request that session's partition.

``build_schedule_from_partitioned_job`` requests the previous window at 17:30 and, with an end
offset, the *next* session on holidays (docs/reference/dagster-notes.md), so a plain schedule that asks the
exchange calendar is both simpler and right. Early-close days (13:00) are sessions like any other.
"""


from zoneinfo import ZoneInfo

import dagster as dg

from variance_pipeline.calendar import EXCHANGE_TZ, is_session

eod_job = dg.define_asset_job(
    "eod_job",
    selection=dg.AssetSelection.all(),
    description="Every asset for one NYSE session: extract, validate, land, compute, load.",
)


@dg.schedule(
    job=eod_job,
    cron_schedule="30 17 * * 1-5",
    execution_timezone=EXCHANGE_TZ,
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="17:30 New York on every NYSE session: materialize that session's partition.",
)
def eod_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
    day = context.scheduled_execution_time.astimezone(ZoneInfo(EXCHANGE_TZ)).date()
    if not is_session(day):
        return dg.SkipReason(f"{day} is not an NYSE session (weekend or exchange holiday)")
    key = day.isoformat()
    return dg.RunRequest(run_key=f"eod-{key}", partition_key=key, tags={"variance/trigger": "eod_schedule"})
