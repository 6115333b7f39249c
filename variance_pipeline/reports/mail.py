"""The evening mail: the report as an HTML message, a short note when the evening run failed, and
the SMTP conversation that sends either.

Off unless ``VARIANCE_SMTP_URL`` and ``VARIANCE_REPORT_TO`` are set (``Settings``). The password
never passes through here from the environment: the mail resource reads it through ``dg.EnvVar``
and hands it to ``send``, which uses it for the login only; no message, exception or log line
built here contains it (``send`` refuses a message that does, as a last guard).
"""

from __future__ import annotations

import smtplib
import ssl
from datetime import datetime, timezone
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Mapping, Sequence

from variance_pipeline.reports.formatting import day, money, pct, spy_delta
from variance_pipeline.settings import SmtpTarget

DEFAULT_SENDER = "variance-pipeline@localhost"
MAX_ERROR_CHARS = 1500  # a failure note stays short: the whole error is in Dagster


class MailError(RuntimeError):
    """The mail could not be sent; the message names the server (never the password) and the cause."""


def sender_for(target: SmtpTarget, configured: str | None) -> str:
    """``VARIANCE_REPORT_FROM``, else the SMTP user when it is an address (what most servers require)."""
    if configured:
        return configured
    if target.username and "@" in target.username:
        return target.username
    return DEFAULT_SENDER


def report_subject(metrics: Mapping[str, object]) -> str:
    """``Evening report Tue 25 Nov 2025: net liq $100,000 (+$1,250), BP 28.0 %, +12.5 SPY, 3 to manage``."""
    parts = []
    if metrics.get("net_liquidating_value") is not None:
        change = metrics.get("net_liq_change")
        parts.append(f"net liq {money(metrics['net_liquidating_value'])}"
                     + (f" ({money(change, sign=True)})" if change is not None else ""))
    if metrics.get("bp_used_pct") is not None:
        parts.append(f"BP {pct(metrics['bp_used_pct'])}")
    if metrics.get("beta_weighted_delta") is not None:
        parts.append(spy_delta(metrics["beta_weighted_delta"]))
    parts.append(f"{metrics.get('groups_to_manage', 0)} to manage")
    evening = metrics.get("evening")
    return f"Evening report {day(evening) if evening else '(no session yet)'}: " + ", ".join(parts)


def _message(subject: str, sender: str, to: Sequence[str]) -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = sender
    message["To"] = ", ".join(to)
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain="variance-pipeline")
    return message


def report_message(report: Path, subject: str, *, sender: str, to: Sequence[str]) -> EmailMessage:
    """The report itself as the HTML body (plain-text fallback), and as an attachment to open in a browser."""
    html = report.read_text(encoding="utf-8")
    message = _message(subject, sender, to)
    message.set_content(f"{subject}\n\nThe report is the HTML part of this message and the attached {report.name}; "
                        f"on the machine that runs the pipeline it is {report}.\n")
    message.add_alternative(html, subtype="html")
    message.add_attachment(html.encode("utf-8"), maintype="text", subtype="html", filename=report.name)
    return message


def failure_message(
    *,
    partition: str | None,
    run_id: str,
    job: str,
    failures: Sequence[tuple[str | None, str]],
    sender: str,
    to: Sequence[str],
    report: Path | None = None,
    when: datetime | None = None,
) -> EmailMessage:
    """A short note: which evening, which step failed and its error (the start of it), which run; and
    tonight's page, attached, when the run still wrote it (a failure outside the report's inputs, such
    as the account snapshot, leaves the page standing on the account data the warehouse holds)."""
    first_step = next((step for step, _ in failures if step), None)
    evening = f"of {partition} " if partition else ""
    subject = f"Evening run {evening}failed" + (f" at step {first_step}" if first_step else "")
    outcome = (f"tonight's report was still written and is attached ({report}); check its data health section."
               if report is not None else "no report was written tonight.")
    lines = [f"The scheduled evening run {evening}failed; {outcome}", ""]
    for step, error in failures or [(None, "no step failed: the run itself failed (see Dagster)")]:
        text = error.strip()
        if len(text) > MAX_ERROR_CHARS:
            text = text[:MAX_ERROR_CHARS] + " [...]"
        lines += [f"Step: {step or '(the run)'}", f"Error: {text}", ""]
    stamp = (when or datetime.now(timezone.utc)).strftime("%Y-%m-%d %H:%M UTC")
    lines += [f"Run {run_id} of job {job}, {stamp}.",
              "Re-run that partition from the Dagster UI once the cause is fixed; snapshots can be taken until the "
              "next session's close."]
    message = _message(subject, sender, to)
    message.set_content("\n".join(lines) + "\n")
    if report is not None:
        message.add_attachment(report.read_bytes(), maintype="text", subtype="html", filename=report.name)
    return message


def send(message: EmailMessage, target: SmtpTarget, password: str | None, *, timeout: float = 30.0) -> None:
    """Deliver ``message`` through ``target``: implicit TLS for smtps://, STARTTLS when an smtp:// server
    offers it, a login when the URL names a user."""
    if password and password in message.as_string():
        raise MailError("refusing to send a message that contains the SMTP password")
    if target.username and not password:
        raise MailError(f"{target.url} names the user {target.username!r} but VARIANCE_SMTP_PASSWORD is not set")
    tls = ssl.create_default_context()
    try:
        if target.scheme == "smtps":
            client: smtplib.SMTP = smtplib.SMTP_SSL(target.host, target.port, timeout=timeout, context=tls)
        else:
            client = smtplib.SMTP(target.host, target.port, timeout=timeout)
        with client:
            client.ehlo()
            if target.scheme == "smtp" and client.has_extn("starttls"):
                client.starttls(context=tls)
                client.ehlo()
            if target.username:
                client.login(target.username, password or "")
            refused = client.send_message(message)
    except (smtplib.SMTPException, OSError) as exc:
        raise MailError(f"sending the mail through {target.url} failed: {type(exc).__name__}: {exc}") from None
    if refused:
        raise MailError(f"{target.url} refused the recipient(s) {', '.join(sorted(refused))}")
