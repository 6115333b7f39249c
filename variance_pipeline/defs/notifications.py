"""The evening mail: the report after a successful scheduled run, a short note after a failed one.

Off by default: the two sensors exist only when ``VARIANCE_SMTP_URL`` and ``VARIANCE_REPORT_TO``
are set (``Settings``), and then they run (the daemon of ``dagster dev`` / ``make dev`` evaluates
them). They watch ``eod_job`` runs that ``eod_schedule`` launched; a run started by hand from the
UI or a backfill is left alone, so a day of re-runs does not fill the inbox.

The report's path is read from the run's own ``evening_report`` materialisation, so the mail is
exactly the page that run wrote. The failure note names the failed step(s) and the start of the
error (the whole story stays in Dagster), and attaches the page when the run still wrote it: the
report does not depend on the account snapshot, so a failed ``account_book`` leaves it standing. Neither the password (an ``EnvVar`` in the ``mail``
resource) nor any other secret is logged or put in a message.
"""


from pathlib import Path

import dagster as dg

from variance_pipeline.defs.resources import MailResource
from variance_pipeline.defs.schedules import eod_job, eod_schedule
from variance_pipeline.reports.mail import failure_message, report_message
from variance_pipeline.settings import Settings

REPORT_ASSET = dg.AssetKey("evening_report")
SCHEDULE_TAGS = ("dagster/schedule_name", "variance/trigger")


def launched_by_schedule(run: dg.DagsterRun) -> bool:
    """The run was launched by ``eod_schedule`` (Dagster's own tag, or the one the schedule sets)."""
    return any(run.tags.get(tag) == eod_schedule.name for tag in SCHEDULE_TAGS)


def report_materialization(instance: dg.DagsterInstance, run_id: str) -> dg.AssetMaterialization | None:
    """The ``evening_report`` materialisation of that run, if it wrote one."""
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION):
        materialization = entry.asset_materialization
        if materialization is not None and materialization.asset_key == REPORT_ASSET:
            return materialization
    return None


def report_path(materialization: dg.AssetMaterialization | None) -> Path | None:
    """The page an ``evening_report`` materialisation wrote, if it is still there."""
    value = materialization.metadata.get("path") if materialization is not None else None
    path = Path(str(value.value)) if value is not None else None
    return path if path is not None and path.exists() else None


def mail_report(context: dg.RunStatusSensorContext, mail: MailResource) -> dg.SkipReason | None:
    run = context.dagster_run
    if not launched_by_schedule(run):
        return dg.SkipReason(f"run {run.run_id} was not launched by {eod_schedule.name}: nothing mailed")
    materialization = report_materialization(context.instance, run.run_id)
    report = report_path(materialization)
    if report is None:
        return dg.SkipReason(f"run {run.run_id} wrote no evening_report: nothing mailed")
    subject_value = materialization.metadata.get("subject")
    subject = str(subject_value.value) if subject_value is not None else f"Evening report {report.stem}"
    mail.send(report_message(report, subject, sender=mail.from_address(), to=mail.to))
    context.log.info(f"mailed {report.name} to {', '.join(mail.to)} through {mail.target().url}")
    return None


def root_cause(error) -> str:  # noqa: ANN001 - Dagster's SerializableErrorInfo
    """The error that started it: an exception raised in a step reaches Dagster wrapped in "Error
    occurred while executing op ...", which names the step but not what went wrong."""
    while error.cause is not None:
        error = error.cause
    return error.message


def mail_failure(context: dg.RunFailureSensorContext, mail: MailResource) -> dg.SkipReason | None:
    run = context.dagster_run
    if not launched_by_schedule(run):
        return dg.SkipReason(f"run {run.run_id} was not launched by {eod_schedule.name}: nothing mailed")
    failures = []
    for event in context.get_step_failure_events():
        error = event.step_failure_data.error if event.step_failure_data else None
        failures.append((event.step_key, root_cause(error) if error else event.message or "no error message"))
    if not failures:
        failures.append((None, context.failure_event.message or "the run failed before any step ran"))
    message = failure_message(
        partition=run.tags.get("dagster/partition"), run_id=run.run_id, job=run.job_name, failures=failures,
        sender=mail.from_address(), to=mail.to,
        report=report_path(report_materialization(context.instance, run.run_id)),
    )
    mail.send(message)
    context.log.info(f"mailed the failure of run {run.run_id} to {', '.join(mail.to)} through {mail.target().url}")
    return None


def mail_sensors() -> list[dg.SensorDefinition]:
    """The two sensors, running from the start (configuring the mail is the opt-in)."""
    report = dg.run_status_sensor(
        run_status=dg.DagsterRunStatus.SUCCESS,
        name="evening_report_mail",
        monitored_jobs=[eod_job],
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Mails tonight's evening report (HTML) after a successful run launched by eod_schedule.",
    )(mail_report)
    failure = dg.run_failure_sensor(
        name="evening_failure_mail",
        monitored_jobs=[eod_job],
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Mails a short note naming the failed step and its error when a run launched by "
        "eod_schedule fails.",
    )(mail_failure)
    return [report, failure]


@dg.definitions
def notifications() -> dg.Definitions:
    """The mail sensors when the mail is configured; nothing otherwise."""
    if not Settings.from_env().mail_enabled:
        return dg.Definitions()
    return dg.Definitions(sensors=mail_sensors())
