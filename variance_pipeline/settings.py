"""Environment -> typed settings.

Every knob a user can turn lives in one frozen dataclass so that a parameter travels one way
through the pipeline. Secrets are *not* here: they are read by the Dagster resources through
``dg.EnvVar`` so that they never sit in a settings object that could be logged or printed.
"""

from __future__ import annotations

import os
import re
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
DATA_DIR_VARIABLE = "VARIANCE_DATA_DIR"
CACHE_DIR_VARIABLE = "VARIANCE_CACHE_DIR"
ENDPOINT_VARIABLES = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")  # the S3-specific one wins, as in the AWS SDKs
REGION_VARIABLES = ("AWS_REGION", "AWS_DEFAULT_REGION")
# S3's bucket naming rules: 3-63 lowercase letters, digits, dots and hyphens, alphanumeric at both ends.
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


@dataclass(frozen=True)
class RemoteDataDir:
    """A data dir on S3-compatible object storage (``VARIANCE_DATA_DIR=s3://bucket/prefix``).

    Where it is and how to reach it, never who may: the credentials stay in the environment
    (``lake.object_store.S3Credentials``). The pipeline works on a local working copy of it,
    ``<cache_root>/s3/<bucket>/<prefix>`` (``lake.mirror``), which is ``Settings.data_dir``.
    """

    bucket: str
    prefix: str  # '' (the bucket's root) or 'a/b': no leading, trailing or doubled '/'
    endpoint: str | None = None  # AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL, e.g. http://127.0.0.1:9000
    region: str | None = None  # AWS_REGION / AWS_DEFAULT_REGION
    cache_root: Path | None = None  # VARIANCE_CACHE_DIR: this machine's working copies (None: the bucket alone)
    session_token_set: bool = False  # AWS_SESSION_TOKEN is set (temporary credentials; its value is never read here)

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")

    @property
    def working_copy(self) -> Path:
        if self.cache_root is None:
            raise ConfigurationError(f"{self.url} has no working copy root ({CACHE_DIR_VARIABLE})")
        return self.cache_root.joinpath("s3", self.bucket, *filter(None, self.prefix.split("/")))

    def environment(self) -> dict[str, str]:
        env = {DATA_DIR_VARIABLE: self.url}
        if self.cache_root is not None:
            env[CACHE_DIR_VARIABLE] = str(self.cache_root)
        if self.endpoint:
            env[ENDPOINT_VARIABLES[0]] = self.endpoint
        if self.region:
            env[REGION_VARIABLES[0]] = self.region
        return env


def default_cache_root(env: Mapping[str, str]) -> Path:
    """``$XDG_CACHE_HOME/variance-pipeline``, else ``~/.cache/variance-pipeline``."""
    base = (env.get("XDG_CACHE_HOME") or "").strip()
    return (Path(base) if base else Path.home() / ".cache") / "variance-pipeline"


def _first(env: Mapping[str, str], names: tuple[str, ...]) -> tuple[str, str] | None:
    for name in names:
        value = (env.get(name) or "").strip()
        if value:
            return name, value
    return None


def parse_endpoint(env: Mapping[str, str]) -> str | None:
    """``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL``: ``http(s)://host[:port]`` (MinIO, Ceph, R2...)."""
    found = _first(env, ENDPOINT_VARIABLES)
    if found is None:
        return None
    name, value = found
    parts = urlsplit(value)
    try:
        port_ok = parts.port is None or 0 < parts.port < 65536
    except ValueError:  # a port that is not a number
        port_ok = False
    if parts.scheme not in ("http", "https") or not parts.hostname or not port_ok or "@" in parts.netloc \
            or parts.path.strip("/") or parts.query or parts.fragment:
        shown = "<hidden: it holds '@'>" if "@" in value else repr(value)
        raise ConfigurationError(
            f"{name}={shown} must be an endpoint URL http(s)://host[:port] with nothing after it "
            "(e.g. http://127.0.0.1:9000); credentials come only from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        )
    return f"{parts.scheme}://{parts.netloc}"


def parse_s3_url(value: str) -> tuple[str, str]:
    """``s3://bucket/prefix`` -> (bucket, prefix), or an error naming ``VARIANCE_DATA_DIR``."""

    def invalid(why: str) -> ConfigurationError:
        shown = "<hidden: it holds '@'>" if "@" in value else repr(value)
        return ConfigurationError(
            f"{DATA_DIR_VARIABLE}={shown} is not a data dir: {why}. Use a local path or s3://bucket/prefix "
            "(endpoint, region and credentials come from the AWS_* variables)."
        )

    parts = urlsplit(value.strip())
    if parts.scheme != "s3":
        raise invalid(f"the scheme {parts.scheme!r} is not supported (only s3://)")
    if "@" in parts.netloc:
        raise invalid("credentials never go in the URL (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY hold them)")
    if parts.query or parts.fragment or "?" in value or "#" in value:
        raise invalid("a data dir URL has no query or fragment")
    bucket = parts.netloc
    if not _BUCKET.match(bucket) or ".." in bucket:
        raise invalid(f"{bucket!r} is not a valid bucket name (3-63 lowercase letters, digits, '.' and '-')")
    prefix = parts.path.removeprefix("/").removesuffix("/")
    segments = prefix.split("/") if prefix else []
    if any(segment in ("", ".", "..") for segment in segments) or "\\" in prefix:
        raise invalid("the prefix has an empty, '.' or '..' segment, or a backslash")
    if any(ord(char) < 32 for char in prefix):
        raise invalid("the prefix holds a control character")
    return bucket, prefix


def parse_remote_data_dir(value: str, env: Mapping[str, str]) -> RemoteDataDir:
    """``VARIANCE_DATA_DIR=s3://bucket/prefix`` and the AWS_* variables -> RemoteDataDir."""
    bucket, prefix = parse_s3_url(value)
    cache = (env.get(CACHE_DIR_VARIABLE) or "").strip()
    region = _first(env, REGION_VARIABLES)
    return RemoteDataDir(
        bucket=bucket,
        prefix=prefix,
        endpoint=parse_endpoint(env),
        region=region[1] if region else None,
        cache_root=(Path(cache).expanduser() if cache else default_cache_root(env)).resolve(),
        session_token_set=bool((env.get("AWS_SESSION_TOKEN") or "").strip()),
    )


def parse_data_dir(value: str | None, source: str, env: Mapping[str, str]) -> tuple[Path, RemoteDataDir | None]:
    """``VARIANCE_DATA_DIR`` -> (the local directory the pipeline works on, the remote data dir or None).

    A local path is the data dir itself; an ``s3://`` URL is worked on through its local working
    copy. Anything else with a scheme (``gs://``, ``http://``) is refused rather than taken for
    a relative folder named ``gs:``.
    """
    text = (value or "").strip()
    if not text:
        return (PROJECT_ROOT / "data" / source).resolve(), None
    if "://" in text:
        remote = parse_remote_data_dir(text, env)
        return remote.working_copy, remote
    return Path(text).expanduser().resolve(), None


@dataclass(frozen=True)
class Settings:
    """What the pipeline needs to know about its environment, resolved once."""

    source: Source
    data_dir: Path  # the directory the pipeline reads and writes: the data dir, or a remote one's working copy
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
    remote: RemoteDataDir | None = None  # VARIANCE_DATA_DIR=s3://...: data_dir is its working copy

    @property
    def data_dir_shown(self) -> str:
        """Where the data is, for people: the path, or the URL and its working copy."""
        if self.remote is None:
            return str(self.data_dir)
        return f"{self.remote.url} (working copy {self.data_dir})"

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
        data_dir, remote = parse_data_dir(env.get(DATA_DIR_VARIABLE), source, env)
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
            data_dir=data_dir,
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
            remote=remote,
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
        if self.remote is not None:
            env.update(self.remote.environment())
        return env
