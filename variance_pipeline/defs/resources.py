"""Dagster resources: the configurable edges of the pipeline (where, when, which API, which secrets).

Secrets enter only here, through ``dg.EnvVar`` in live mode, so Dagster shows them as
environment references and never stores their values in run config or metadata.
"""

from __future__ import annotations

from contextlib import ExitStack
from datetime import date, datetime, timezone
from pathlib import Path

import dagster as dg
from pydantic import Field, PrivateAttr

from variance_pipeline.candles.store import RunCandleCache
from variance_pipeline.calendar import sessions_in_range
from variance_pipeline.lake.layout import DataDirConflict, Lake
from variance_pipeline.lake.atomic import DiskFullError, format_mb
from variance_pipeline.lake.mirror import Mirror, SyncReport
from variance_pipeline.lake.object_store import (
    KEY_VARIABLE,
    SECRET_VARIABLE,
    TOKEN_VARIABLE,
    ObjectStore,
    ObjectStoreError,
    S3Credentials,
)
from variance_pipeline.reports.mail import MailError, send as send_mail, sender_for
from variance_pipeline.reports.screen import Screen
from variance_pipeline.settings import (
    DEFAULT_MIN_FREE_MB,
    PROJECT_ROOT,
    ConfigurationError,
    RemoteDataDir,
    Settings,
    SmtpTarget,
    parse_now,
    parse_s3_url,
    parse_smtp_url,
)
from variance_pipeline.sources.http import RequestStats, RetryPolicy
from variance_pipeline.instruments.symbology import parse_watchlist
from variance_pipeline.sources.tastytrade import OAuthSession, TastytradeClient, TastytradeCredentials
from variance_pipeline.transforms.position_pnl import Thresholds
from variance_pipeline.sources.yahoo import DEFAULT_JITTER, DEFAULT_RATE_PER_SECOND, YahooChartClient
from variance_pipeline.warehouse.connection import warehouse_connection
from variance_pipeline.warehouse.publish import publishing

SECRET_VARIABLES = ("TASTYTRADE_CLIENT_SECRET", "TASTYTRADE_REFRESH_TOKEN")
MIN_FREE_VARIABLE = "VARIANCE_MIN_FREE_MB"


class PipelineResource(dg.ConfigurableResource):
    """Where the lake lives, which symbols to watch, and the pipeline clock.

    With ``data_url`` (``VARIANCE_DATA_DIR=s3://...``) ``data_dir`` is the data dir's local working
    copy: the run's set-up pulls the committed state into it and the run commits what it wrote
    (``lake.mirror``), in the warehouse step and, for a run that stops before it, in the teardown.
    """

    source: str = Field(description="'simulator' or 'live'")
    data_dir: str = Field(description="root of raw/, lake/, cache/ and warehouse.duckdb (for an s3:// data dir: its working copy)")
    data_url: str | None = Field(default=None, description="s3://bucket/prefix when the data dir lives on object storage")
    s3_endpoint: str | None = Field(default=None, description="S3 endpoint URL (AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL)")
    s3_region: str | None = Field(default=None, description="S3 region (AWS_REGION)")
    aws_access_key_id: str | None = Field(default=None, repr=False, description="AWS_ACCESS_KEY_ID, as an EnvVar")
    aws_secret_access_key: str | None = Field(default=None, repr=False, description="AWS_SECRET_ACCESS_KEY, as an EnvVar")
    aws_session_token: str | None = Field(default=None, repr=False, description="AWS_SESSION_TOKEN, as an EnvVar")
    sync_wait_seconds: float = Field(
        default=900.0, ge=0, description="how long a run waits for another run on the same working copy of an s3:// data dir"
    )
    watchlist: str | None = Field(default=None, description="comma list or file of extra underlyings")
    now: str | None = Field(default=None, description="ISO-8601 clock override (VARIANCE_NOW)")
    min_free_mb: float = Field(
        default=DEFAULT_MIN_FREE_MB,
        ge=0,
        description="refuse to start a run when the data dir's disk has less free space than this, in MB "
        f"(2**20 bytes; {MIN_FREE_VARIABLE}); 0 turns the check off",
    )
    _candle_cache: RunCandleCache | None = PrivateAttr(default=None)
    _mirror: Mirror | None = PrivateAttr(default=None)
    _held: ExitStack | None = PrivateAttr(default=None)

    @property
    def lake(self) -> Lake:
        return Lake(Path(self.data_dir), source=self.source)

    def clock(self) -> datetime:
        """``VARIANCE_NOW`` when set (replays, tests), else the real time."""
        return parse_now(self.now) or datetime.now(timezone.utc)

    def watchlist_symbols(self) -> list[str]:
        """``VARIANCE_WATCHLIST``, else data/watchlist.txt, else the shipped example (for the demo)."""
        default = PROJECT_ROOT / "data" / "watchlist.txt"
        if not default.exists():
            default = PROJECT_ROOT / "data" / "watchlist.example.txt"
        return parse_watchlist(self.watchlist, default)

    def candle_cache(self) -> RunCandleCache:
        """This run's candle cache: each file read once per run, by whichever step needs it first.

        The resource is set up once per run by the in-process executor, so the candles and the
        volatility steps share it; under a process-per-step executor each process has its own.
        """
        if self._candle_cache is None:
            self._candle_cache = RunCandleCache(self.lake.candles_dir)
        return self._candle_cache

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        """Check the user's inputs when a run starts, before any asset sends a request or writes.

        A hostile or mistyped watchlist (``../x``, quotes, 10,000 characters, ``,,``) or clock
        would otherwise surface only after the positions snapshot had already been fetched and
        landed; here it fails the run at once with the offending value named (and shortened).
        So does a disk with less free space than the floor (``min_free_mb``), once the
        temporary files an interrupted run (``kill -9``) left in this run's folders are removed.
        An ``s3://`` data dir is then pulled into the working copy, the run holding it until its
        teardown.
        """
        self._candle_cache = None  # a run reads the cache afresh
        self._mirror = None
        if self.source not in ("simulator", "live"):
            raise dg.Failure(f"VARIANCE_SOURCE must be 'simulator' or 'live', got {self.source!r}")
        try:
            parse_now(self.now)
            self.watchlist_symbols()
        except ValueError as exc:  # ConfigurationError is not one; handled below
            raise dg.Failure(f"Invalid watchlist, nothing was fetched or written: {exc}") from None
        except ConfigurationError as exc:
            raise dg.Failure(f"Invalid pipeline clock, nothing was fetched or written: {exc}") from None
        held = ExitStack()
        try:
            mirror = self._hold_working_copy(context, held)
            self._prepare_data_dir(context)
            if mirror is not None:
                self._pull(mirror, context)
        except (ObjectStoreError, DataDirConflict, ConfigurationError) as exc:
            held.close()
            raise dg.Failure(str(exc)) from None
        except BaseException:
            held.close()
            raise
        self._mirror, self._held = mirror, held

    @staticmethod
    def _pull(mirror: Mirror, context: dg.InitResourceContext) -> None:
        try:
            report = mirror.pull()
        except (ObjectStoreError, DiskFullError) as exc:
            raise ObjectStoreError(
                f"pulling {mirror.store.url} into its working copy {mirror.root} failed, so the run stopped before "
                f"fetching anything: {exc}"
            ) from None
        context.log.info(report.summary("pulled"))

    def _prepare_data_dir(self, context: dg.InitResourceContext) -> None:
        self.lake.check_source()
        swept = self.lake.sweep_run_temp_files(_run_sessions(context))  # first: they may be what fills the disk
        if swept:
            context.log.warning(
                f"removed {len(swept)} temporary file(s) an interrupted run left behind: "
                + ", ".join(str(path) for path in swept[:10])
            )
        self._check_free_space()

    def remote(self) -> RemoteDataDir | None:
        """The s3:// data dir this resource works on through ``data_dir``, or None for a local one."""
        if not self.data_url:
            return None
        bucket, prefix = parse_s3_url(self.data_url)
        return RemoteDataDir(bucket, prefix, endpoint=self.s3_endpoint, region=self.s3_region)

    def _hold_working_copy(self, context: dg.InitResourceContext, held: ExitStack) -> Mirror | None:
        """For an s3:// data dir: its mirror, the working copy locked for this run (in ``held``)."""
        remote = self.remote()
        if remote is None:
            return None
        credentials = S3Credentials.from_env({
            KEY_VARIABLE: self.aws_access_key_id or "",
            SECRET_VARIABLE: self.aws_secret_access_key or "",
            TOKEN_VARIABLE: self.aws_session_token or "",
        })
        mirror = Mirror(ObjectStore(remote, credentials), Path(self.data_dir), self.source)
        held.enter_context(mirror.locked(wait_seconds=self.sync_wait_seconds, run_id=_run_id(context)))
        return mirror

    def commit(self, run_id: str | None, log: object | None = None) -> SyncReport | None:
        """Push what this run wrote to the s3:// data dir and commit it (None for a local data dir).

        The warehouse step calls it last, so a failed commit fails the run; the teardown calls it
        again for whatever a run that stopped earlier wrote (a no-op when nothing changed)."""
        if self._mirror is None:
            return None
        report = self._mirror.push(run_id)
        if log is not None:
            log.info(report.summary("pushed"))  # type: ignore[attr-defined]
        return report

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        """Commit what the run wrote (a failed run's whole files too, as on local disk), then let go
        of the working copy. A killed run never gets here: its uploads stay uncommitted, invisible."""
        if self._held is None:
            return
        try:
            self.commit(_run_id(context), context.log)
        except Exception as exc:
            context.log.error(
                f"this run's files were not committed to {self.data_url}: {exc}. The bucket keeps the last commit; "
                "re-run the partition (the working copy is pulled afresh first)."
            )
            raise
        finally:
            self._held.close()
            self._held, self._mirror = None, None

    def _check_free_space(self) -> None:
        """Refuse to start on a nearly full disk: a run that fills it fails halfway (ENOSPC)."""
        floor = self.min_free_mb
        if floor <= 0:
            return
        free = self.lake.free_bytes()
        if free < floor * 2**20:
            required = format(floor, "f").rstrip("0").rstrip(".")
            raise dg.Failure(
                f"Not enough free disk space to start a run: {self.data_dir} has {format_mb(free)} free, "
                f"below the floor of {required} MB ({MIN_FREE_VARIABLE}). Nothing was fetched or written. "
                f"Free space on that disk (or point VARIANCE_DATA_DIR elsewhere, or lower {MIN_FREE_VARIABLE}) "
                "and re-run."
            )


def _run_id(context: dg.InitResourceContext) -> str | None:
    return context.run_id if getattr(context, "dagster_run", None) is not None else None


def _run_sessions(context: dg.InitResourceContext) -> list:
    """The sessions of the run being set up (from its partition tags); [] outside a partitioned run."""
    run = getattr(context, "dagster_run", None)
    tags = dict(run.tags) if run is not None and run.tags else {}
    start = tags.get("dagster/asset_partition_range_start") or tags.get("dagster/partition")
    end = tags.get("dagster/asset_partition_range_end") or start
    if not start or not end:
        return []
    try:
        return sessions_in_range(date.fromisoformat(start), date.fromisoformat(end))
    except ValueError:
        return []


class RetryConfig(dg.Config):
    max_attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 30.0
    max_total_wait: float = 120.0
    timeout: float = 20.0
    max_retry_after: float = Field(
        default=600.0, description="longest Retry-After (seconds) honoured; a longer ask fails fast"
    )

    def policy(self) -> RetryPolicy:
        return RetryPolicy(
            max_attempts=self.max_attempts,
            base_delay=self.base_delay,
            max_delay=self.max_delay,
            max_total_wait=self.max_total_wait,
            timeout=self.timeout,
            max_retry_after=self.max_retry_after,
        )


class TastytradeResource(dg.ConfigurableResource):
    """The Tastytrade REST API (or the simulator speaking it) with OAuth refresh-token auth.

    Secrets arrive as ``dg.EnvVar`` references (live mode), so the run config Dagster stores
    holds the variable names, never the values.
    """

    base_url: str
    client_secret: str = Field(repr=False)
    refresh_token: str = Field(repr=False)
    client_id: str | None = Field(default=None, repr=False)
    accept_version: str | None = Field(
        default=None,
        description="Accept-Version header pinning the API version (e.g. '20251101'); None sends none",
    )
    batch_size: int = Field(default=100, ge=1, le=500, description="symbols per /market-metrics request")
    per_page: int | None = Field(
        default=None,
        ge=1,
        le=2000,
        description="request paginated lists with this page size (per-page); None lets the API choose",
    )
    retry: RetryConfig = RetryConfig()
    # One access token per run: the in-process executor sets this resource up once per run, so
    # every step's client shares the session (a process-per-step executor gets one per process).
    _session: OAuthSession | None = PrivateAttr(default=None)

    def _missing_credentials(self) -> list[str]:
        return [
            name
            for name, value in zip(SECRET_VARIABLES, (self.client_secret, self.refresh_token))
            if not (value or "").strip()
        ]

    def _credentials_failure(self, missing: list[str]) -> dg.Failure:
        return dg.Failure(
            f"Tastytrade credentials missing: set {', '.join(missing)} (and optionally "
            "TASTYTRADE_CLIENT_ID) in the environment, or use VARIANCE_SOURCE=simulator."
        )

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        """Fail the run at start, before any request, when a credential is set but empty.

        (An unset variable is caught even earlier: Dagster refuses to resolve the ``EnvVar`` and
        names the variable.)
        """
        missing = self._missing_credentials()
        if missing:
            raise self._credentials_failure(missing)
        self._session = None  # a fresh run logs in afresh

    def client(self, stats: RequestStats) -> TastytradeClient:
        """A client on this run's OAuth session (logged in at its first request, shared after)."""
        missing = self._missing_credentials()
        if missing:
            raise self._credentials_failure(missing)
        credentials = TastytradeCredentials(
            client_secret=self.client_secret, refresh_token=self.refresh_token, client_id=self.client_id
        )
        if self._session is None:
            self._session = OAuthSession(credentials)
        return TastytradeClient(
            self.base_url,
            credentials,
            session=self._session,
            policy=self.retry.policy(),
            stats=stats,
            accept_version=self.accept_version,
            per_page=self.per_page,
        )


class YahooResource(dg.ConfigurableResource):
    """Yahoo's chart endpoint (the legacy price provider): polite, cached, bounded."""

    base_url: str
    rate_per_second: float = Field(
        default=DEFAULT_RATE_PER_SECOND, description="chart requests per second (VARIANCE_YAHOO_RATE); 0 = no pacing"
    )
    jitter: float = Field(
        default=DEFAULT_JITTER, ge=0.0, description="each gap is 1/rate scaled by uniform(1, 1 + jitter)"
    )
    not_found_retry_days: float = Field(
        default=7.0, ge=0.0, description="a ticker Yahoo answered 404 for is asked again only after this many days"
    )
    # Yahoo's 429s ask for tens of seconds to minutes: the wait budget must be able to honour a
    # Retry-After in full (up to max_retry_after), so it is far larger than Tastytrade's.
    retry: RetryConfig = RetryConfig(base_delay=2.0, max_delay=60.0, max_total_wait=900.0)

    def client(self, stats: RequestStats) -> YahooChartClient:
        return YahooChartClient(
            self.base_url,
            policy=self.retry.policy(),
            rate_per_second=self.rate_per_second,
            jitter=self.jitter,
            stats=stats,
        )


class BookRules(dg.ConfigurableResource):
    """When a trade needs attention tonight (tastylive's defaults; shown on the evening's views)."""

    profit_target: float = Field(default=0.50, gt=0, le=1, description="close a credit trade at this share of max profit")
    manage_dte: int = Field(default=21, ge=0, description="manage (close or roll) at this many days to expiration")
    tested_delta: float = Field(default=0.30, gt=0, lt=1, description="a short option at |delta| >= this is tested")
    bp_concentration: float = Field(
        default=0.05, gt=0, le=1, description="an underlying using more than this share of net liq in buying power"
    )

    def thresholds(self) -> Thresholds:
        return Thresholds(self.profit_target, self.manage_dte, self.tested_delta, self.bp_concentration)


_SCREEN = Screen()


class ReportScreen(dg.ConfigurableResource):
    """The evening report's candidate screen (printed on the page): which names are worth selling premium in."""

    min_iv_rank: float = Field(default=_SCREEN.min_iv_rank, ge=0, le=1, description="own IV rank at least this ...")
    min_iv_percentile: float = Field(
        default=_SCREEN.min_iv_percentile, ge=0, le=1, description="... or own IV percentile at least this"
    )
    min_iv_hv_ratio: float = Field(default=_SCREEN.min_iv_hv_ratio, ge=0, description="implied volatility / HV20 above this")
    min_liquidity_rating: int = Field(
        default=_SCREEN.min_liquidity_rating, ge=0, le=5, description="Tastytrade liquidity rating at least this"
    )
    dte_window: int = Field(
        default=_SCREEN.dte_window, ge=0, description="no earnings report within this many days (the usual trade length)"
    )
    max_rows: int = Field(default=_SCREEN.max_rows, ge=1, description="candidates listed, best IV rank first")

    def screen(self) -> Screen:
        return Screen(self.min_iv_rank, self.min_iv_percentile, self.min_iv_hv_ratio, self.min_liquidity_rating,
                      self.dte_window, self.max_rows)


class MailResource(dg.ConfigurableResource):
    """Where the evening mail goes (off unless VARIANCE_SMTP_URL and VARIANCE_REPORT_TO are set).

    The password arrives as ``dg.EnvVar("VARIANCE_SMTP_PASSWORD")``: the run config and the sensor
    ticks Dagster stores hold the variable's name, never its value, and nothing here logs it.
    """

    smtp_url: str | None = Field(default=None, description="smtp://user@host:port or smtps://... (no password)")
    to: list[str] = Field(default_factory=list, description="recipients (VARIANCE_REPORT_TO)")
    sender: str | None = Field(default=None, description="From address (VARIANCE_REPORT_FROM); default: the SMTP user")
    password: str | None = Field(default=None, repr=False, description="VARIANCE_SMTP_PASSWORD, through EnvVar")
    timeout: float = Field(default=30.0, gt=0, description="seconds per SMTP operation")

    @property
    def enabled(self) -> bool:
        return bool(self.smtp_url and self.to)

    def target(self) -> SmtpTarget:
        if not self.smtp_url:
            raise dg.Failure("the evening mail is off: VARIANCE_SMTP_URL is not set")
        return parse_smtp_url(self.smtp_url)

    def from_address(self) -> str:
        return sender_for(self.target(), self.sender)

    def send(self, message) -> None:  # noqa: ANN001 - an email.message.EmailMessage
        try:
            send_mail(message, self.target(), self.password, timeout=self.timeout)
        except MailError as exc:
            raise dg.Failure(str(exc)) from None


class WarehouseResource(dg.ConfigurableResource):
    """The DuckDB file: loads work on a private copy and publish it (``warehouse.publish``), so a
    reader's open session never blocks them; two loads serialise with a bounded wait."""

    path: str
    lock_wait_seconds: float = 60.0

    def publish(self, run_id: str | None = None):  # noqa: ANN201 - a context manager
        """A connection to the private copy a load writes; published when the block succeeds."""
        return publishing(Path(self.path), wait_seconds=self.lock_wait_seconds, run_id=run_id)

    def connect(self):  # noqa: ANN201 - a context manager
        """A read-only connection to the published warehouse."""
        return warehouse_connection(Path(self.path), read_only=True, wait_seconds=self.lock_wait_seconds)


def build_resources(settings: Settings) -> dict[str, dg.ConfigurableResource]:
    """Resources for ``settings``: live mode reads secrets via EnvVar, simulator mode needs none."""
    if settings.source == "live":
        client_secret: str | dg.EnvVar = dg.EnvVar("TASTYTRADE_CLIENT_SECRET")
        refresh_token: str | dg.EnvVar = dg.EnvVar("TASTYTRADE_REFRESH_TOKEN")
        client_id: str | dg.EnvVar | None = dg.EnvVar("TASTYTRADE_CLIENT_ID") if settings.client_id_set else None
    else:
        # The simulator accepts any non-empty credentials unless started with --client-secret.
        client_secret, refresh_token, client_id = "simulator", "simulator", "simulator"
    lake = Lake(settings.data_dir)
    password = dg.EnvVar("VARIANCE_SMTP_PASSWORD") if settings.smtp_password_set else None
    return {
        "pipeline": PipelineResource(
            source=settings.source,
            data_dir=str(settings.data_dir),
            watchlist=settings.watchlist_spec,
            now=settings.now_override.isoformat() if settings.now_override else None,
            min_free_mb=settings.min_free_mb,
            **remote_fields(settings.remote),
        ),
        "tastytrade": TastytradeResource(
            base_url=settings.tastytrade_api_url,
            client_secret=client_secret,
            refresh_token=refresh_token,
            client_id=client_id,
            accept_version=settings.accept_version,
        ),
        "yahoo": YahooResource(base_url=settings.yahoo_chart_url, rate_per_second=settings.yahoo_rate),
        "warehouse_db": WarehouseResource(path=str(lake.warehouse_path)),
        "book_rules": BookRules(),
        "report_screen": ReportScreen(),
        "mail": MailResource(
            smtp_url=settings.smtp_url, to=list(settings.report_to), sender=settings.report_from, password=password
        ),
    }


def remote_fields(remote: RemoteDataDir | None) -> dict[str, object]:
    """The pipeline resource's fields for an s3:// data dir: where (plain values) and the
    credentials as ``dg.EnvVar`` references, so Dagster stores their names, never their values."""
    if remote is None:
        return {}
    fields: dict[str, object] = {
        "data_url": remote.url,
        "s3_endpoint": remote.endpoint,
        "s3_region": remote.region,
        "aws_access_key_id": dg.EnvVar(KEY_VARIABLE),
        "aws_secret_access_key": dg.EnvVar(SECRET_VARIABLE),
    }
    if remote.session_token_set:
        fields["aws_session_token"] = dg.EnvVar(TOKEN_VARIABLE)
    return fields


@dg.definitions
def resources() -> dg.Definitions:
    """This code location's resources and executor, from the environment (``Settings.from_env``).

    Runs execute in process: the steps of one run are sequential by data flow anyway, and a
    process per step cost 2-7 s and ~260 MiB each (20-36 s of every run, whatever it fetched).
    Each asset is still its own step, so the UI shows per-asset status, logs and checks, and
    run retries (dagster.yaml) still re-launch a run whose process died.
    """
    return dg.Definitions(resources=build_resources(Settings.from_env()), executor=dg.in_process_executor)
