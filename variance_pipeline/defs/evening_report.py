"""The ``evening_report`` asset: the one page a trader reads at 17:45, built from the warehouse.

It depends on ``warehouse`` only, never on ``account_book``: a failed account snapshot skips
``account_book``, and a report downstream of it would be skipped too, leaving the trader with no
page on exactly the evening something went wrong. Instead the report reads whatever account data
the warehouse holds and says when it is older than tonight. So that it still shows tonight's
account data when ``account_book`` does run, the step has the lowest priority
(``dagster/priority``): the in-process executor runs one step at a time and always picks the
highest-priority ready step, so the report runs after every other step of the run, its checks
included, and can list their results.

The page is the evening of the newest session the warehouse holds (what its views show), whatever
the partition: re-running an old partition rewrites tonight's page, never an old one with new data.

What Dagster knows (check results, the last successful run) is collected here and handed to the
renderer as plain data: ``reports/`` never imports Dagster.
"""


from datetime import datetime, timezone

import dagster as dg

from variance_pipeline.defs.common import ASSET_COMMON
from variance_pipeline.defs.partitions import run_sessions
from variance_pipeline.defs.resources import PipelineResource, ReportScreen, WarehouseResource
from variance_pipeline.reports.evening import ReportError, build_report
from variance_pipeline.reports.health import CheckOutcome, RunFacts

LAST_STEP_PRIORITY = "-100"  # below every other step's default of 0: run last


RECENT_EVALUATIONS = 2000  # recent check evaluations scanned for the checks a run of a subset did not include


def _check_keys(context: dg.AssetExecutionContext) -> list[dg.AssetCheckKey]:
    """The checks this job knows, plus every check evaluated recently: a run of a few assets (a re-run of
    the report, a UI launch) still shows the warnings the evening's full run recorded."""
    keys = set(context.job_def.asset_layer.asset_graph.asset_check_keys)
    recent = context.instance.get_event_records(
        dg.EventRecordsFilter(event_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION), limit=RECENT_EVALUATIONS
    )
    for record in recent:
        evaluation = record.event_log_entry.dagster_event.event_specific_data if record.event_log_entry.dagster_event else None
        if isinstance(evaluation, dg.AssetCheckEvaluation):
            keys.add(evaluation.asset_check_key)
    return sorted(keys, key=lambda key: (key.asset_key.to_user_string(), key.name))


def _checks(context: dg.AssetExecutionContext) -> tuple[CheckOutcome, ...]:
    """The latest evaluation of each check (this run's, when it ran one)."""
    keys = _check_keys(context)
    if not keys:
        return ()
    records = context.instance.event_log_storage.get_latest_asset_check_execution_by_key(keys)
    outcomes = []
    for key, record in sorted(records.items(), key=lambda item: (item[0].asset_key.to_user_string(), item[0].name)):
        status = record.status.value
        evaluation = None
        if record.event is not None and record.event.dagster_event is not None:
            evaluation = record.event.dagster_event.event_specific_data
        when = datetime.fromtimestamp(record.create_timestamp, timezone.utc)
        common = dict(asset=key.asset_key.to_user_string(), check=key.name, evaluated_at=when,
                      this_run=record.run_id == context.run_id)
        if status == "EXECUTION_FAILED":
            outcomes.append(CheckOutcome(passed=False, severity="ERROR", description="the check could not run", **common))
        elif status in ("SUCCEEDED", "FAILED") and isinstance(evaluation, dg.AssetCheckEvaluation):
            outcomes.append(CheckOutcome(
                passed=evaluation.passed, severity=evaluation.severity.value, description=evaluation.description, **common
            ))
    return tuple(outcomes)


def run_facts(context: dg.AssetExecutionContext) -> RunFacts:
    """This run, the last successful run before it, and the checks' latest results."""
    records = context.instance.get_run_records(
        filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.SUCCESS]), limit=1
    )
    last = records[0] if records else None
    return RunFacts(
        run_id=context.run_id,
        job_name=context.job_name,
        last_success_at=datetime.fromtimestamp(last.end_time, timezone.utc) if last and last.end_time else None,
        last_success_run_id=last.dagster_run.run_id if last else None,
        last_success_job=last.dagster_run.job_name if last else None,
        checks=_checks(context),
    )


@dg.asset(
    deps=["warehouse"],
    group_name="reports",
    kinds={"html"},
    pool="duckdb",
    op_tags={"dagster/priority": LAST_STEP_PRIORITY},
    description="The evening report: one self-contained HTML page (phone, laptop, print; light and dark) "
    "built from the warehouse's views: the headline (net liq, BP used against its VIX band, theta, "
    "beta-weighted delta, vega), manage tonight, risk by underlying, this week's expected moves and "
    "earnings, candidates, the journal and data health. Written to reports/evening-YYYY-MM-DD.html and "
    "reports/latest.html under the data dir; runs last so it sees tonight's account data when there is some.",
    **ASSET_COMMON,
)
def evening_report(
    context: dg.AssetExecutionContext,
    pipeline: PipelineResource,
    warehouse_db: WarehouseResource,
    report_screen: ReportScreen,
) -> dg.MaterializeResult:
    try:
        facts = run_facts(context)
    except Exception as exc:  # noqa: BLE001 - the page is worth more than Dagster's side notes
        context.log.warning(f"check results and run history not read from Dagster: {exc!r}")
        facts = RunFacts(run_id=context.run_id, job_name=context.job_name)
    try:
        built = build_report(
            pipeline.lake,
            screen=report_screen.screen(),
            facts=facts,
            clock=pipeline.clock(),
            fallback_evening=run_sessions(context)[-1],
            wait_seconds=warehouse_db.lock_wait_seconds,
        )
    except ReportError as exc:  # a clear sentence (no warehouse yet, an unmigrated file); anything else propagates
        raise dg.Failure(str(exc)) from None
    context.log.info(f"evening report of {built.context.evening}: {built.files.dated} ({built.seconds:.2f} s)")
    metrics = built.metrics
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(built.files.dated)),
            "latest": dg.MetadataValue.path(str(built.files.latest)),
            "link": dg.MetadataValue.url(built.files.dated.as_uri()),
            "subject": built.subject,
            **metrics,
            "build_seconds": round(built.seconds, 3),
            "bytes": len(built.html.encode("utf-8")),
        }
    )
