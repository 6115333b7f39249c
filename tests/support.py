"""What the test modules share: the clock, the recorded fixtures, settings and real Dagster runs.

Fixtures live in ``conftest.py``; plain helpers live here so that test modules import them from
one place and never from each other.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from email import message_from_bytes
from email import policy as email_policy
from email.message import EmailMessage
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence, TypeVar
from urllib.parse import quote

import dagster as dg
import duckdb
import httpx
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from variance_pipeline.calendar import sessions_back
from variance_pipeline.definitions import environment, load_definitions
from variance_pipeline.defs.resources import RetryConfig, YahooResource, build_resources
from variance_pipeline.lake.layout import Lake
from variance_pipeline.schemas.account import BALANCES, MARGIN_REQUIREMENTS
from variance_pipeline.schemas.dataset import Dataset
from variance_pipeline.schemas.market_metrics import IV_TERM_STRUCTURE, MARKET_METRICS
from variance_pipeline.schemas.positions import POSITIONS
from variance_pipeline.settings import Settings, parse_data_dir
from variance_pipeline.simulator import SimulatorServer
from variance_pipeline.sources.http import RetryPolicy
from variance_pipeline.sources.tastytrade_frames import market_metrics_rows, positions_rows
from variance_pipeline.sources.yahoo import CHART_PATH

R = TypeVar("R", bound=dg.ConfigurableResource)
TESTS = Path(__file__).resolve().parent
PROJECT = TESTS.parent
# Real recorded responses, copied byte for byte with their provenance (fixtures/recorded/SOURCES.md).
RECORDED = Path(__file__).resolve().parent / "fixtures" / "recorded"
# A fixed clock after the close of Tuesday 2025-11-25, so runs are reproducible.
CLOCK = datetime(2025, 11, 25, 22, 0, tzinfo=timezone.utc)
# The evenings the fault matrix and the s3:// data dir tests run: a seed, 2025-11-18..20 on the
# evening of the 20th, then 2025-11-18..25 on CLOCK's evening (what a healed case must equal).
SEED_CLOCK = datetime(2025, 11, 20, 22, 0, tzinfo=timezone.utc)
SEED_RANGE = ("2025-11-18", "2025-11-20")
RUN_RANGE = ("2025-11-18", "2025-11-25")
FAST_RETRY = RetryConfig(base_delay=0.01, max_delay=0.05, max_total_wait=1.0, timeout=5.0)
# Common ``materialize(select=...)`` lists. Each asset reads its inputs from the lake, so a
# selection names its upstream assets too (unless an earlier run landed them).
# market_metrics and iv_term_structure are one multi-asset, and so are positions and accounts: Dagster
# only runs them together.
EXTRACT = ("positions", "accounts", "universe", "market_metrics", "iv_term_structure", "earnings_calendar")
CANDLES = ("positions", "accounts", "universe", "candles")
# Run config for a warehouse load without its pictures (many runs in a row: only the last draws).
NO_CHARTS = {"ops": {"warehouse": {"config": {"charts": False}}}}
# What a test's own HTTP client sends the simulator: a User-Agent (Tastytrade 401s without one)
# and a refresh-token grant (a simulator without enforced credentials takes any).
UA = {"User-Agent": "variance-pipeline-tests/1.0"}
GRANT = {"grant_type": "refresh_token", "refresh_token": "refresh", "client_secret": "secret"}


@contextmanager
def login(base: str) -> Iterator[httpx.Client]:
    """An httpx client on the simulator at ``base`` holding a fresh access token."""
    with httpx.Client(base_url=base, headers=UA, timeout=60) as client:
        token = client.post("/oauth/token", json=GRANT).json()["access_token"]
        client.headers["Authorization"] = f"Bearer {token}"
        yield client


def chart_result(client: httpx.Client, ticker: str, **params: Any) -> dict[str, Any]:
    """The daily chart result of ``ticker`` (Yahoo spelling, URL-encoded here), asserting a 200."""
    response = client.get(f"/v8/finance/chart/{quote(ticker, safe='')}", params={"interval": "1d", **params})
    assert response.status_code == 200, (ticker, response.text)
    return response.json()["chart"]["result"][0]


def pipeline_settings(
    data_dir: Path | str, url: str, *, now: datetime = CLOCK, watchlist: str = "SPY,QQQ,/ES"
) -> Settings:
    """Simulator settings; ``data_dir`` may be an ``s3://`` URL, whose endpoint, region and
    working-copy root come from the environment (``AWS_*``, ``VARIANCE_CACHE_DIR``) as in a run."""
    remote = None
    if str(data_dir).startswith("s3://"):
        data_dir, remote = parse_data_dir(str(data_dir), "simulator", os.environ)
    return Settings(
        source="simulator",
        data_dir=Path(data_dir),
        tastytrade_api_url=url,
        yahoo_chart_url=url,
        watchlist_spec=watchlist,
        now_override=now,
        remote=remote,
    )


def reconfigured(resource: R, **update: object) -> R:
    """The resource rebuilt with ``update``: pydantic's ``model_copy`` would change attributes but
    not the configuration Dagster resolved at construction, so a run would keep the old values.
    ``EnvVar`` secrets stay references."""
    values = {name: getattr(resource, name) for name in resource.__pydantic_fields_set__}
    return type(resource)(**{**values, **update})


def fast_resources(settings: Settings) -> dict[str, dg.ConfigurableResource]:
    """The production resources for ``settings`` with the polite Yahoo spacing and backoff off."""
    resources = build_resources(settings)
    resources["yahoo"] = YahooResource(base_url=settings.yahoo_chart_url, rate_per_second=0, retry=FAST_RETRY)
    resources["tastytrade"] = reconfigured(resources["tastytrade"], retry=FAST_RETRY)
    return resources


def definitions_for(settings: Settings) -> dg.Definitions:
    """The code location as Dagster loads it (``defs/``, resources included) for ``settings``."""
    with environment(settings.environment()):
        return load_definitions()


@lru_cache(maxsize=1)
def _definitions() -> dg.Definitions:
    """The assets and checks (the same for every environment; resources come per test)."""
    return definitions_for(pipeline_settings(Path("/nonexistent/variance-tests"), "http://127.0.0.1:9"))


def all_assets_and_checks() -> list:
    """Every asset and asset check of the code location, as ``dg`` autoloads them."""
    defs = _definitions()
    return [*defs.assets, *(defs.asset_checks or [])]


def materialize(
    settings: Settings,
    *,
    partition_key: str | None = None,
    partition_range: tuple[str, str] | None = None,
    instance: dg.DagsterInstance | None = None,
    raise_on_error: bool = True,
    select: Sequence[str] | None = None,
    resources: dict[str, dg.ConfigurableResource] | None = None,
    run_config: dict | None = None,
) -> dg.ExecuteInProcessResult:
    """A real Dagster run for one session or a range, checks included.

    ``select`` names the assets a test needs (their checks run too, and a multi-asset's siblings:
    ``account_snapshot`` yields accounts and positions together); default: every asset.
    """
    tags = {}
    if partition_range:
        tags = {"dagster/asset_partition_range_start": partition_range[0], "dagster/asset_partition_range_end": partition_range[1]}
    selection = None
    if select is not None:
        assets = dg.AssetSelection.assets(*select).required_multi_asset_neighbors()
        keys = assets.resolve([a for a in all_assets_and_checks() if isinstance(a, dg.AssetsDefinition)])
        selection = assets | dg.AssetSelection.checks_for_assets(*keys)
    return dg.materialize(
        all_assets_and_checks(),
        resources=resources or fast_resources(settings),
        partition_key=partition_key,
        tags=tags,
        instance=instance,
        raise_on_error=raise_on_error,
        selection=selection,
        run_config=run_config,
    )


# Debian's chromium, driven by Playwright (the [dev] extras; `playwright install` is never needed).
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def browser_missing() -> str | None:
    """Why a browser test cannot run here (None: it can): .ci/run installs both, so CI never skips."""
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing (apt-get install chromium; .ci/run installs it)"
    if importlib.util.find_spec("playwright") is None:
        return "the playwright Python package is missing (pip install -e '.[dev]')"
    return None


# --- what landed, compared ---------------------------------------------------------------------

# Run ids and load times; and which scale id each symbol's candles were loaded on: an id names one
# fetch of a history (a healed run fetches again what a clean one fetched once), not its rows.
NOT_COMPARED = {"load_log", "schema_version", "candle_scales"}


def warehouse_rows(data_dir: Path) -> dict[str, list[tuple]]:
    """Every base table's rows of ``data_dir``'s warehouse (sorted; run ids and load times left out)."""
    with duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True) as con:
        tables = [
            row[0]
            for row in con.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE' ORDER BY 1"
            ).fetchall()
        ]
        return {t: con.execute(f'SELECT * FROM "{t}" ORDER BY ALL').fetchall() for t in tables if t not in NOT_COMPARED}


def parquet_files(data_dir: Path, *layers: str) -> dict[str, pa.Table]:
    """Relative path -> table for every Parquet file under ``layers`` (lake/, cache/, quarantine/)."""
    found = {}
    for layer in layers:
        for path in sorted((data_dir / layer).rglob("*.parquet")):
            found[str(path.relative_to(data_dir))] = pq.read_table(path)
    return found


def assert_same_parquet(got: dict[str, pa.Table], want: dict[str, pa.Table]) -> None:
    assert sorted(got) == sorted(want)
    different = [name for name in want if not got[name].equals(want[name])]
    assert not different, different


# --- a run in a process of its own, paused at a point and killed (kill -9) ---------------------

DRIVER = r"""
import os, sys, time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, os.environ["FAULT_TESTS_DIR"])
marker = Path(os.environ["FAULT_MARKER"])
pause_at = os.environ["FAULT_PAUSE_AT"]


def pause():
    marker.write_text(str(os.getpid()))
    time.sleep(600)  # the test kills this process here


if pause_at == "warehouse-transaction":
    import variance_pipeline.warehouse.load as load

    real_refresh = load.refresh_vol_history

    def refresh(*args, **kwargs):  # the last statement before COMMIT
        real_refresh(*args, **kwargs)
        pause()

    load.refresh_vol_history = refresh
elif pause_at == "manifest-write":
    from variance_pipeline.lake.object_store import ObjectStore

    def write_manifest(self, manifest):  # every object of the run uploaded, the commit not written
        pause()

    ObjectStore._write_manifest = write_manifest
else:
    real_replace = os.replace

    def replace(src, dst, *args, **kwargs):  # a temporary file written, about to be renamed
        if pause_at in str(dst):
            pause()
        return real_replace(src, dst, *args, **kwargs)

    os.replace = replace

from support import materialize, pipeline_settings

settings = pipeline_settings(
    os.environ["FAULT_DATA_DIR"], os.environ["FAULT_URL"],
    now=datetime.fromisoformat(os.environ["FAULT_NOW"]), watchlist=os.environ["FAULT_WATCHLIST"],
)
start, end = os.environ["FAULT_RANGE"].split("...")
result = materialize(settings, partition_range=(start, end), raise_on_error=False)
sys.exit(0 if result.success else 1)
"""


def start_killable_run(
    data_dir: Path | str,
    url: str,
    pause_at: str,
    work: Path,
    *,
    now: datetime,
    watchlist: str,
    partition_range: tuple[str, str],
    env: Mapping[str, str] | None = None,
) -> tuple[subprocess.Popen, Path, Path]:
    """A whole run of ``partition_range`` in a process of its own that pauses at ``pause_at`` (a
    path about to be renamed into place, ``warehouse-transaction`` or ``manifest-write``) and
    writes ``work/paused``: the test kills it there. Returns the process, the marker and its log."""
    marker = work / "paused"
    log = work / "run.log"
    variables = {
        **os.environ,
        **(env or {}),
        "FAULT_TESTS_DIR": str(TESTS),
        "FAULT_MARKER": str(marker),
        "FAULT_PAUSE_AT": pause_at,
        "FAULT_DATA_DIR": str(data_dir),
        "FAULT_URL": url,
        "FAULT_NOW": now.isoformat(),
        "FAULT_WATCHLIST": watchlist,
        "FAULT_RANGE": "...".join(partition_range),
        "TMPDIR": str(work),  # the killed run's ephemeral Dagster instance stays in the test's dir
    }
    variables.pop("DAGSTER_HOME", None)
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-c", DRIVER], env=variables, cwd=PROJECT, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return process, marker, log


def wait_for(marker: Path, process: subprocess.Popen, log: Path, timeout: float = 120.0) -> None:
    """Until the killable run has reached its kill point (fails with its log if it never does)."""
    deadline = time.monotonic() + timeout
    while not marker.exists():
        if process.poll() is not None:
            pytest.fail(f"the run ended (exit {process.returncode}) before its kill point:\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            os.killpg(process.pid, signal.SIGKILL)
            pytest.fail(f"the run did not reach its kill point in {timeout:.0f} s:\n{log.read_text()[-3000:]}")
        time.sleep(0.05)


def recorded_bytes(relative: str) -> bytes:
    """A recorded real response from ``tests/fixtures/recorded/`` (e.g. ``tastytrade/positions.json``)."""
    path = RECORDED / relative
    if not path.exists():
        pytest.fail(f"recorded fixture {path} not found")
    return path.read_bytes()


def recorded_items(relative: str) -> list:
    """``data.items`` of a recorded Tastytrade response."""
    return json.loads(recorded_bytes(relative))["data"]["items"]


def positions_frame(items: Sequence[dict], **stamp: object) -> pd.DataFrame:
    """The typed ``positions`` frame of position items (the rows builder + the declaration)."""
    return POSITIONS.frame(positions_rows(items, **stamp))


def market_metrics_frames(items: Sequence[dict], **stamp: object) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The typed ``market_metrics`` and ``iv_term_structure`` frames of metric items."""
    metrics, terms = market_metrics_rows(items, **stamp)
    return MARKET_METRICS.frame(metrics), IV_TERM_STRUCTURE.frame(terms)


def declared_frame(dataset: Dataset, data: pd.DataFrame | dict) -> pd.DataFrame:
    """Test data that names only the columns a test is about: the dataset's other columns are
    null, and the frame has the declared column order and dtypes (as a builder's would)."""
    frame = pd.DataFrame(data)
    for name in dataset.missing_columns(frame.columns):
        frame[name] = None
    return dataset.conform(frame)


# The market part of an evening on the simulator: every asset but the account snapshot (which the
# simulator does not serve yet) and account_book; with "evening_report" appended, the whole page.
MARKET = (
    *EXTRACT, "candles", "risk_free_rate", "earnings_reports", "realized_volatility", "position_greeks",
    "option_quotes", "position_pnl", "warehouse",
)


def land_account_snapshot(lake: Lake, day: date, net_liq: dict[str, float], *, used_share: float = 0.25,
                          margin: dict[tuple[str, str], float] | None = None) -> None:
    """Balances (net liq per account, ``used_share`` of it in derivative buying power) and a margin
    report (buying power per (account, underlying)) in the lake, as the account snapshot lands them."""
    fetched = datetime(day.year, day.month, day.day, 22, tzinfo=timezone.utc)
    accounts = list(net_liq)
    lake.write_partition("balances", day, declared_frame(BALANCES, {
        "as_of_date": [day] * len(accounts), "account_number": accounts,
        "net_liquidating_value": [net_liq[a] for a in accounts],
        "used_derivative_buying_power": [net_liq[a] * used_share for a in accounts],
        "derivative_buying_power": [net_liq[a] * (1 - used_share) for a in accounts],
        "fetched_at": [fetched] * len(accounts),
    }))
    rows = sorted((margin or {}).items())
    lake.write_partition("margin_requirements", day, declared_frame(MARGIN_REQUIREMENTS, {
        "as_of_date": [day] * len(rows), "account_number": [a for (a, _), _ in rows],
        "underlying_symbol": [u for (_, u), _ in rows], "buying_power": [bp for _, bp in rows],
        "fetched_at": [fetched] * len(rows),
    }))


@dataclass(frozen=True)
class ReportEvening:
    """An evening as the report sees it: the market part of a real simulator run, then crafted account
    snapshots (the simulator does not serve them yet) loaded by a real ``account_book`` run."""

    data_dir: Path
    settings: Settings
    first_evening: Path  # the page the market-only run wrote (no account data, no history)
    report: Path  # the page of the second run, with the account snapshot
    result: dg.ExecuteInProcessResult  # the second run: warehouse, account_book, evening_report

    def sql(self, query: str, params: list | None = None) -> pd.DataFrame:
        with duckdb.connect(str(self.data_dir / "warehouse.duckdb"), read_only=True) as con:
            return con.execute(query, params or []).df()


REPORT_SESSION = CLOCK.date()
REPORT_WATCHLIST = "SPY,QQQ,/ES,VIX,GLD,IWM,NOPE"  # NOPE: delisted, so data health has a stale symbol


def land_iv_history(lake: Lake, session: date, sessions: int = 24) -> list[date]:
    """``sessions`` earlier evenings' metrics snapshots in the lake (``session``'s, IV scaled by a fixed
    factor per evening and symbol), so our own IV rank has the history it needs; returns their dates."""
    tonight = lake.read_partition("market_metrics", session)
    days = sessions_back(session, sessions + 1)[:-1]
    rng = np.random.default_rng(22)
    for day in days:
        frame = tonight.copy()
        frame["as_of_date"] = day
        frame["implied_volatility"] = frame["implied_volatility"] * rng.uniform(0.7, 1.05, len(frame))
        frame["fetched_at"] = frame["fetched_at"] - timedelta(days=(session - day).days)
        lake.write_partition("market_metrics", day, MARKET_METRICS.conform(frame))
    return days


SMTP_USER = "trader@example.com"
SMTP_PASSWORD = "smtp-pa55-7f3a-never-in-a-log"  # a value no log line, event or file may ever contain


@dataclass
class SmtpServer:
    """A real SMTP server on loopback (aiosmtpd) that wants a login: what it received, who logged in."""

    host: str
    port: int
    user: str
    password: str
    messages: list[EmailMessage] = field(default_factory=list)
    logins: list[tuple[str, bool]] = field(default_factory=list)  # (user, accepted)

    @property
    def url(self) -> str:
        """The URL the pipeline is given: the user, never the password."""
        return f"smtp://{self.user}@{self.host}:{self.port}"

    def handler(self) -> object:
        server = self

        class Handler:
            async def handle_DATA(self, _server: object, _session: object, envelope: object) -> str:  # noqa: N802
                raw = envelope.original_content or envelope.content
                server.messages.append(message_from_bytes(raw, policy=email_policy.default))
                return "250 OK"

        return Handler()

    def authenticate(self, _server: object, _session: object, _envelope: object, _mechanism: str, data: object) -> object:
        from aiosmtpd.smtp import AuthResult, LoginPassword

        user = data.login.decode() if isinstance(data, LoginPassword) else ""
        accepted = isinstance(data, LoginPassword) and user == self.user and data.password.decode() == self.password
        self.logins.append((user, accepted))
        return AuthResult(success=accepted, handled=False)  # a refusal answers 535, as real servers do


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number" if isinstance(value, float) else "int"
    return type(value).__name__


def assert_shape(recorded: Any, actual: Any, where: str = "$", loose_numbers: bool = False) -> None:
    """Every key of ``recorded`` exists in ``actual`` with the same JSON type, recursively."""
    rtype, atype = _json_type(recorded), _json_type(actual)
    if loose_numbers and {rtype, atype} <= {"int", "number"}:
        return
    assert rtype == atype, f"{where}: recorded {rtype} ({recorded!r:.40}), simulator {atype} ({actual!r:.40})"
    if isinstance(recorded, dict) and recorded and all(key.isdigit() for key in recorded):
        assert actual, f"{where}: empty"  # keyed by timestamp (Yahoo events): compare entries
        assert_shape(next(iter(recorded.values())), next(iter(actual.values())), f"{where}.*", loose_numbers)
    elif isinstance(recorded, dict):
        for key, value in recorded.items():
            assert key in actual, f"{where}: key {key!r} missing"
            assert_shape(value, actual[key], f"{where}.{key}", loose_numbers)
    elif isinstance(recorded, list) and recorded and actual:
        assert_shape(recorded[0], actual[0], f"{where}[0]", loose_numbers)


# --- Yahoo charts replayed by the simulator (test_yahoo, test_candle_cache) --------------------

CHART_RETRY = RetryPolicy(max_attempts=3, base_delay=0.001, max_delay=0.01, max_total_wait=1.0, timeout=5.0)
FAR_FUTURE = datetime(2030, 1, 1, tzinfo=timezone.utc)  # every recorded bar is final by then


def recorded_chart(name: str) -> dict[str, Any]:
    """A fresh, mutable copy of a recorded chart body (``tests/fixtures/recorded/yahoo/<name>``)."""
    return json.loads(recorded_bytes(f"yahoo/{name}"))


def result_of(payload: dict[str, Any]) -> dict[str, Any]:
    """The one result of a chart body."""
    return payload["chart"]["result"][0]


def ny_midnight(day: date) -> int:
    """The epoch second a chart window starts at (``period1``): midnight in New York."""
    return int(pd.Timestamp(day).tz_localize("America/New_York").timestamp())


@contextmanager
def chart_replay(folder: Path, charts: Mapping[str, str]) -> Iterator[SimulatorServer]:
    """The simulator replaying recorded charts over loopback: ``charts`` maps each Yahoo ticker
    it knows to a recorded file, copied into ``folder`` (any other ticker is Yahoo's 404). A test
    alters what a ticker serves with ``sim.replay_chart`` and scripts faults with ``sim.faults``."""
    (folder / "yahoo").mkdir(parents=True)
    for ticker, name in charts.items():
        (folder / "yahoo" / f"chart_{ticker}.json").write_bytes(recorded_bytes(f"yahoo/{name}"))
    with SimulatorServer(port=0, replay_dir=folder) as sim:
        yield sim


def chart_requests(sim: SimulatorServer, ticker: str | None = None) -> list[dict[str, Any]]:
    """The chart requests the simulator served (of ``ticker`` only, when given), in order."""
    return [
        entry for entry in sim.requests.entries()
        if entry["endpoint"] == "chart" and ticker in (None, entry["path"].removeprefix(CHART_PATH))
    ]
