"""Environment -> typed settings.

Every knob a user can turn lives in one frozen dataclass so that a parameter travels one way
through the pipeline. Secrets are *not* here: they are read by the Dagster resources through
``dg.EnvVar`` so that they never sit in a settings object that could be logged or printed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal, Mapping
from urllib.parse import quote, unquote, urlsplit

Source = Literal["simulator", "live"]
SOURCES: tuple[Source, ...] = ("simulator", "live")

LIVE_TASTYTRADE_URL = "https://api.tastyworks.com"
LIVE_YAHOO_URL = "https://query2.finance.yahoo.com"
DEFAULT_SIMULATOR_URL = "http://127.0.0.1:8765"
DEFAULT_YAHOO_RATE = 1.0  # Yahoo chart requests per second (VARIANCE_YAHOO_RATE)
PROJECT_ROOT = Path(__file__).resolve().parent.parent


class ConfigurationError(RuntimeError):
    """A setting is missing or invalid; the message names the variable and its choices."""


def parse_now(value: str | None) -> datetime | None:
    """Parse ``VARIANCE_NOW``: ISO-8601 with an offset, so a replay clock is never ambiguous."""
    if value is None or not value.strip():
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise ConfigurationError(
            f"VARIANCE_NOW={value!r} is not ISO-8601 (e.g. 2025-11-24T21:30:00+00:00)"
        ) from exc
    if parsed.tzinfo is None:
        raise ConfigurationError(f"VARIANCE_NOW={value!r} needs a UTC offset, e.g. +00:00")
    return parsed.astimezone(timezone.utc)


def parse_yahoo_rate(value: str | None) -> float:
    """``VARIANCE_YAHOO_RATE``: Yahoo chart requests per second, a number > 0 (default about 1)."""
    if value is None or not value.strip():
        return DEFAULT_YAHOO_RATE
    try:
        rate = float(value.strip())
    except ValueError:
        rate = float("nan")
    if not rate > 0 or rate == float("inf"):
        raise ConfigurationError(
            f"VARIANCE_YAHOO_RATE={value!r} must be a number of requests per second above 0 "
            f"(e.g. 1 or 0.5; default {DEFAULT_YAHOO_RATE:g})"
        )
    return rate


DEFAULT_MIN_FREE_MB = 200.0  # VARIANCE_MIN_FREE_MB: a run refuses to start below this free space


def parse_min_free_mb(value: str | None) -> float:
    """``VARIANCE_MIN_FREE_MB``: the free-space floor in MB (2**20 bytes), >= 0; 0 turns it off."""
    if value is None or not value.strip():
        return DEFAULT_MIN_FREE_MB
    try:
        floor = float(value.strip())
    except ValueError:
        floor = float("nan")
    if not floor >= 0 or floor == float("inf"):
        raise ConfigurationError(
            f"VARIANCE_MIN_FREE_MB={value!r} must be a number of MB >= 0 (0 turns the free-space check "
            f"off; default {DEFAULT_MIN_FREE_MB:g})"
        )
    return floor


SMTP_SCHEMES = {"smtp": 25, "smtps": 465}


@dataclass(frozen=True)
class SmtpTarget:
    """Where the evening's mail goes out: ``smtp://user@host:port`` (STARTTLS when the server offers
    it) or ``smtps://`` (TLS from the first byte). The password is never part of it: the mail resource
    reads ``VARIANCE_SMTP_PASSWORD`` through ``dg.EnvVar``, so no settings object can print it."""

    scheme: str
    host: str
    port: int
    username: str | None = None

    @property
    def url(self) -> str:
        """The URL without a password (safe to log)."""
        user = f"{quote(self.username, safe='')}@" if self.username else ""
        return f"{self.scheme}://{user}{self.host}:{self.port}"


def parse_smtp_url(value: str) -> SmtpTarget:
    """``VARIANCE_SMTP_URL`` -> SmtpTarget; a password in the URL is refused without echoing it."""
    text = value.strip()
    try:
        parts = urlsplit(text)
    except ValueError:
        raise ConfigurationError("VARIANCE_SMTP_URL is not a URL like smtp://user@host:587") from None
    if parts.password is not None:
        shown = f"{parts.scheme}://{parts.username or ''}:***@{parts.hostname or ''}"
        raise ConfigurationError(
            f"VARIANCE_SMTP_URL ({shown}) carries a password: put it in VARIANCE_SMTP_PASSWORD instead, "
            "so it is read as a secret and never printed"
        )
    try:
        port = parts.port
    except ValueError:
        raise ConfigurationError(
            f"VARIANCE_SMTP_URL: the port of {parts.scheme}://{parts.hostname or ''} is not a number"
        ) from None
    if parts.scheme not in SMTP_SCHEMES or not parts.hostname:
        safe = f"{parts.scheme}://{parts.hostname or ''}" if parts.scheme else text[:40]
        raise ConfigurationError(
            f"VARIANCE_SMTP_URL={safe!r} must be smtp://[user@]host[:port] (STARTTLS when offered) or "
            "smtps://[user@]host[:port] (TLS)"
        )
    return SmtpTarget(
        scheme=parts.scheme,
        host=parts.hostname,
        port=port or SMTP_SCHEMES[parts.scheme],
        username=unquote(parts.username) if parts.username else None,
    )


def parse_recipients(value: str) -> tuple[str, ...]:
    """``VARIANCE_REPORT_TO``: one address or a comma list, each with an ``@``."""
    addresses = tuple(a.strip() for a in value.split(",") if a.strip())
    bad = [a for a in addresses if "@" not in a or any(c.isspace() or c in "<>\"" for c in a)]
    if not addresses or bad:
        raise ConfigurationError(
            f"VARIANCE_REPORT_TO={value[:200]!r} must be one address or a comma list of addresses "
            f"(e.g. me@example.com){'; not an address: ' + ', '.join(bad[:5]) if bad else ''}"
        )
    return addresses


def _mail_settings(env: Mapping[str, str]) -> tuple[str | None, tuple[str, ...]]:
    """The evening mail is off unless both VARIANCE_SMTP_URL and VARIANCE_REPORT_TO are set."""
    url = (env.get("VARIANCE_SMTP_URL") or "").strip()
    to = (env.get("VARIANCE_REPORT_TO") or "").strip()
    if bool(url) != bool(to):
        missing = "VARIANCE_REPORT_TO" if url else "VARIANCE_SMTP_URL"
        raise ConfigurationError(
            f"the evening mail needs both VARIANCE_SMTP_URL and VARIANCE_REPORT_TO; {missing} is not set "
            "(unset both to leave the mail off)"
        )
    if not url:
        return None, ()
    return parse_smtp_url(url).url, parse_recipients(to)


@dataclass(frozen=True)
class Settings:
    """What the pipeline needs to know about its environment, resolved once."""

    source: Source
    data_dir: Path
    tastytrade_api_url: str
    yahoo_chart_url: str
    watchlist_spec: str | None = None
    now_override: datetime | None = None
    yahoo_rate: float = DEFAULT_YAHOO_RATE
    min_free_mb: float = DEFAULT_MIN_FREE_MB
    accept_version: str | None = None  # TASTYTRADE_ACCEPT_VERSION: pins the API version when set
    client_id_set: bool = False  # TASTYTRADE_CLIENT_ID is set (its value is read by the resource only)
    # The evening mail (off unless both are set): VARIANCE_SMTP_URL without a password, VARIANCE_REPORT_TO.
    smtp_url: str | None = None
    report_to: tuple[str, ...] = ()
    report_from: str | None = None  # VARIANCE_REPORT_FROM; default: the SMTP user when it is an address
    smtp_password_set: bool = False  # VARIANCE_SMTP_PASSWORD is set (its value is read by the resource only)

    @property
    def mail_enabled(self) -> bool:
        return bool(self.smtp_url and self.report_to)

    def now(self) -> datetime:
        """The pipeline clock: ``VARIANCE_NOW`` when set (replays, tests), else the real time."""
        return self.now_override or datetime.now(timezone.utc)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        source = env.get("VARIANCE_SOURCE", "").strip()
        if source not in SOURCES:
            raise ConfigurationError(
                f"VARIANCE_SOURCE must be 'simulator' or 'live' (got {source!r}). "
                "Use 'simulator' for the embedded market simulator (no credentials needed), "
                "'live' for the real Tastytrade and Yahoo APIs."
            )
        data_dir = Path(env.get("VARIANCE_DATA_DIR") or PROJECT_ROOT / "data" / source)
        if source == "live":
            tt_url = env.get("TASTYTRADE_API_URL") or LIVE_TASTYTRADE_URL
            yahoo_url = env.get("YAHOO_CHART_URL") or LIVE_YAHOO_URL
        else:
            sim_url = env.get("VARIANCE_SIMULATOR_URL") or DEFAULT_SIMULATOR_URL
            tt_url = env.get("TASTYTRADE_API_URL") or sim_url
            yahoo_url = env.get("YAHOO_CHART_URL") or sim_url
        smtp_url, report_to = _mail_settings(env)
        return cls(
            source=source,  # type: ignore[arg-type]
            data_dir=data_dir.resolve(),
            tastytrade_api_url=tt_url.rstrip("/"),
            yahoo_chart_url=yahoo_url.rstrip("/"),
            watchlist_spec=env.get("VARIANCE_WATCHLIST"),
            now_override=parse_now(env.get("VARIANCE_NOW")),
            yahoo_rate=parse_yahoo_rate(env.get("VARIANCE_YAHOO_RATE")),
            min_free_mb=parse_min_free_mb(env.get("VARIANCE_MIN_FREE_MB")),
            accept_version=(env.get("TASTYTRADE_ACCEPT_VERSION") or "").strip() or None,
            client_id_set=bool((env.get("TASTYTRADE_CLIENT_ID") or "").strip()),
            smtp_url=smtp_url,
            report_to=report_to,
            report_from=(env.get("VARIANCE_REPORT_FROM") or "").strip() or None,
            smtp_password_set=bool(env.get("VARIANCE_SMTP_PASSWORD")),
        )

    def environment(self) -> dict[str, str]:
        """The variables ``from_env`` reads back to these settings (secrets excepted): what a child
        process (the ``dagster`` CLI of the demo, ``make dev``) or a test's loader is given."""
        env = {
            "VARIANCE_SOURCE": self.source,
            "VARIANCE_DATA_DIR": str(self.data_dir),
            "TASTYTRADE_API_URL": self.tastytrade_api_url,
            "YAHOO_CHART_URL": self.yahoo_chart_url,
            "VARIANCE_YAHOO_RATE": repr(self.yahoo_rate),
            "VARIANCE_MIN_FREE_MB": repr(self.min_free_mb),
        }
        if self.watchlist_spec is not None:
            env["VARIANCE_WATCHLIST"] = self.watchlist_spec
        if self.now_override is not None:
            env["VARIANCE_NOW"] = self.now_override.isoformat()
        if self.accept_version:
            env["TASTYTRADE_ACCEPT_VERSION"] = self.accept_version
        if self.smtp_url:
            env["VARIANCE_SMTP_URL"] = self.smtp_url
            env["VARIANCE_REPORT_TO"] = ",".join(self.report_to)
        if self.report_from:
            env["VARIANCE_REPORT_FROM"] = self.report_from
        return env
