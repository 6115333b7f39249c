"""The evening mail end to end: real ``eod_job`` runs on the simulator, the sensors evaluated the way
the daemon evaluates them (a first tick sets the cursor, the next one sees the runs since), a real
SMTP server on loopback that wants a login.

A scheduled run that succeeds mails the report the run wrote; one that fails mails a short note
naming the step and its error, with the page attached when the run still wrote it (a failed
account_book does not stop the report); a run started by hand mails nothing; without the settings
there are no sensors at all. The SMTP password is used (the
server accepted the login) yet appears in no log line, no stored event, no run record, no message
and no file of the instance or the data dir.
"""

from __future__ import annotations

import dataclasses
import logging
from email.message import EmailMessage
from pathlib import Path
from typing import Iterator

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from support import CLOCK, MARKET, SMTP_PASSWORD, SmtpServer, definitions_for, pipeline_settings
from variance_pipeline.settings import Settings
from variance_pipeline.simulator import SimulatorServer
from variance_pipeline.simulator.faults import FaultRule

pytestmark = pytest.mark.slow

PARTITION = CLOCK.date().isoformat()
SCHEDULED = {"dagster/schedule_name": "eod_schedule"}  # the tag Dagster's scheduler puts on its runs
REPORT_SENSOR, FAILURE_SENSOR = "evening_report_mail", "evening_failure_mail"


@dataclasses.dataclass
class Location:
    """The code location as Dagster loads it with the mail configured, and an instance on disk."""

    definitions: dg.Definitions
    instance: dg.DagsterInstance
    data_dir: Path
    cursors: dict[str, str | None] = dataclasses.field(default_factory=dict)

    def tick(self, sensor_name: str) -> dg.SensorExecutionData:
        """One evaluation of a sensor, with the cursor of the previous one (as the daemon keeps it)."""
        repository = self.definitions.get_repository_def()
        sensor = repository.get_sensor_def(sensor_name)
        with dg.build_sensor_context(
            instance=self.instance, repository_def=repository, cursor=self.cursors.get(sensor_name),
            resources=repository.get_top_level_resources(),
        ) as context:
            result = sensor.evaluate_tick(context)
        self.cursors[sensor_name] = result.cursor
        return result

    def run_eod_job(self, *, tags: dict[str, str], assets: tuple[str, ...]) -> dg.ExecuteInProcessResult:
        job = self.definitions.resolve_job_def("eod_job")
        return job.execute_in_process(
            instance=self.instance, partition_key=PARTITION, tags=tags, raise_on_error=False,
            asset_selection=[dg.AssetKey(name) for name in assets],
        )


def mail_settings(data_dir: Path, url: str, smtp: SmtpServer) -> Settings:
    settings = pipeline_settings(data_dir, url, watchlist="SPY,GLD")
    # The local simulator, not Yahoo: no pacing needed (the location's own resources are used here).
    return dataclasses.replace(settings, yahoo_rate=1000.0, smtp_url=smtp.url, report_to=("me@example.com",))


@pytest.fixture
def location(tmp_path: Path, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch,
             request: pytest.FixtureRequest) -> Iterator[Location]:
    monkeypatch.setenv("VARIANCE_SMTP_PASSWORD", SMTP_PASSWORD)
    simulator: SimulatorServer = request.getfixturevalue(request.param)  # which simulator: the test's parameter
    settings = mail_settings(tmp_path / "data", simulator.url, smtp_server)
    definitions = definitions_for(settings)
    home = tmp_path / "dagster_home"
    home.mkdir()
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        located = Location(definitions, instance, settings.data_dir)
        for name in (REPORT_SENSOR, FAILURE_SENSOR):
            first = located.tick(name)  # the daemon's first tick: sets the cursor, mails nothing
            assert first.skip_message and "Initiating" in first.skip_message
        yield located


@pytest.fixture
def faulted_simulator() -> Iterator[SimulatorServer]:
    """Every OAuth login refused: the first snapshot step fails at once (a rejected login is never retried)."""
    rule = FaultRule.from_json({"endpoint": "oauth", "kind": "401", "count": 99})
    with SimulatorServer(port=0, now=CLOCK, faults=[rule]) as server:
        yield server


def secrets_nowhere(location: Location, smtp: SmtpServer, run_ids: list[str], logs: str) -> None:
    """The password is in no log line, stored event, run record, sensor result, message or file."""
    secret = SMTP_PASSWORD
    assert secret not in logs
    for run_id in run_ids:
        for entry in location.instance.all_logs(run_id):
            assert secret not in dg.serialize_value(entry)
        run = location.instance.get_run_by_id(run_id)
        assert secret not in dg.serialize_value(run)
    for message in smtp.messages:
        assert secret not in message.as_string()
    for root in (Path(location.instance.root_directory), location.data_dir):
        for path in root.rglob("*"):
            if path.is_file():
                assert secret.encode() not in path.read_bytes(), path


@pytest.mark.parametrize("location", ["simulator"], indirect=True)
def test_a_scheduled_evening_mails_its_report_and_a_manual_run_mails_nothing(
    location: Location, smtp_server: SmtpServer, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    manual = location.run_eod_job(tags={}, assets=(*MARKET, "evening_report"))
    assert manual.success
    skipped = location.tick(REPORT_SENSOR)
    assert smtp_server.messages == [] and "not launched by eod_schedule" in (skipped.skip_message or "")

    scheduled = location.run_eod_job(tags=SCHEDULED, assets=(*MARKET, "evening_report"))
    assert scheduled.success
    location.tick(REPORT_SENSOR)
    assert len(smtp_server.messages) == 1
    assert smtp_server.logins and all(accepted for _, accepted in smtp_server.logins)
    mail = smtp_server.messages[0]
    [event] = [e for e in scheduled.get_asset_materialization_events() if e.asset_key == dg.AssetKey("evening_report")]
    metadata = event.event_specific_data.materialization.metadata
    report = Path(metadata["path"].value)
    assert report.name == f"evening-{PARTITION}.html"
    assert mail["Subject"] == metadata["subject"].value and mail["To"] == "me@example.com"
    assert mail["From"] == smtp_server.user  # the SMTP user is an address: it sends as itself
    page = report.read_text()
    html = mail.get_body(preferencelist=("html",)).get_content()
    assert html.replace("\r\n", "\n").rstrip("\n") == page.rstrip("\n")  # SMTP carries lines as CRLF
    [attachment] = list(mail.iter_attachments())
    assert attachment.get_filename() == report.name
    assert attachment.get_payload(decode=True).replace(b"\r\n", b"\n") == page.encode()
    location.tick(REPORT_SENSOR)
    assert len(smtp_server.messages) == 1  # mailed once: the cursor moved past that run
    captured = capfd.readouterr()
    logs = "\n".join(record.getMessage() for record in caplog.records) + captured.out + captured.err
    secrets_nowhere(location, smtp_server, [manual.run_id, scheduled.run_id], logs)


def failure_note(location: Location, smtp: SmtpServer, failed: dg.ExecuteInProcessResult) -> tuple[EmailMessage, str]:
    """The note the failure sensor mailed for ``failed``; checks it names the step and its error."""
    assert not failed.success
    [step_failure] = [e for e in failed.all_events if e.event_type_value == "STEP_FAILURE"]
    location.tick(REPORT_SENSOR)
    assert smtp.messages == []  # no success mail after a failure
    location.tick(FAILURE_SENSOR)
    assert len(smtp.messages) == 1
    note = smtp.messages[0]
    assert note["Subject"] == f"Evening run of {PARTITION} failed at step {step_failure.step_key}"
    body = note.get_body(preferencelist=("plain",)).get_content()
    error = step_failure.step_failure_data.error
    while error.cause is not None:  # what went wrong, not Dagster's "Error occurred while executing op"
        error = error.cause
    assert f"Step: {step_failure.step_key}" in body and f"Error: {error.message.strip()[:200]}" in body
    assert failed.run_id in body
    return note, step_failure.step_key


@pytest.mark.parametrize("location", ["faulted_simulator"], indirect=True)
def test_a_scheduled_run_failing_early_mails_the_step_and_its_error(
    location: Location, smtp_server: SmtpServer, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    failed = location.run_eod_job(tags=SCHEDULED, assets=(*MARKET, "evening_report"))
    note, step = failure_note(location, smtp_server, failed)
    assert step == "positions"  # the first snapshot: every login is refused
    assert "no report was written tonight" in note.get_body(preferencelist=("plain",)).get_content()
    assert list(note.iter_attachments()) == []
    captured = capfd.readouterr()
    logs = "\n".join(record.getMessage() for record in caplog.records) + captured.out + captured.err
    secrets_nowhere(location, smtp_server, [failed.run_id], logs)


@pytest.mark.parametrize("location", ["simulator"], indirect=True)
def test_a_failed_account_book_still_leaves_the_report_and_the_note_attaches_it(
    location: Location, smtp_server: SmtpServer, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture
) -> None:
    """The account snapshot of the evening is unreadable (a balances file without its declared columns):
    account_book fails, the report is still written from the market data, and the note carries it."""
    caplog.set_level(logging.DEBUG)
    drifted = location.data_dir / "lake" / "balances" / f"date={PARTITION}" / "part-0.parquet"
    drifted.parent.mkdir(parents=True)
    pq.write_table(pa.table({"as_of_date": [CLOCK.date()], "account_number": ["5WT00001"]}), drifted)
    failed = location.run_eod_job(tags=SCHEDULED, assets=(*MARKET, "account_book", "evening_report"))
    note, step = failure_note(location, smtp_server, failed)
    assert step == "account_book" and "balances: column(s)" in note.get_body(preferencelist=("plain",)).get_content()
    report = location.data_dir / "reports" / f"evening-{PARTITION}.html"
    assert report.exists()
    assert "tonight's report was still written and is attached" in note.get_body(preferencelist=("plain",)).get_content()
    [attachment] = list(note.iter_attachments())
    assert attachment.get_filename() == report.name
    assert attachment.get_payload(decode=True).replace(b"\r\n", b"\n") == report.read_bytes()
    assert "No account balances in the warehouse" in report.read_text()  # the page says what is missing
    captured = capfd.readouterr()
    logs = "\n".join(record.getMessage() for record in caplog.records) + captured.out + captured.err
    secrets_nowhere(location, smtp_server, [failed.run_id], logs)


def test_the_mail_is_off_unless_configured(tmp_path: Path, smtp_server: SmtpServer,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    plain = definitions_for(pipeline_settings(tmp_path, "http://127.0.0.1:9"))
    assert list(plain.sensors or []) == []
    monkeypatch.setenv("VARIANCE_SMTP_PASSWORD", SMTP_PASSWORD)
    configured = definitions_for(mail_settings(tmp_path, "http://127.0.0.1:9", smtp_server))
    dg.Definitions.validate_loadable(configured)
    sensors = {sensor.name: sensor for sensor in configured.sensors}
    assert set(sensors) == {REPORT_SENSOR, FAILURE_SENSOR}
    assert all(s.default_status == dg.DefaultSensorStatus.RUNNING for s in sensors.values())
