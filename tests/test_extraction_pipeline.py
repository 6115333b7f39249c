"""Tastytrade extraction at the pipeline level: real Dagster runs against the real simulator.

The unit tests (test_tastytrade.py, test_symbology.py) pin the client and the normalisers against
an in-test server; these drive the ``positions`` and ``market_metrics`` assets end to end, with
the simulator's replay mode, its fault injection and its enforced credentials, and read back
what the runs left in raw/, the lake, the warehouse, the run log and DAGSTER_HOME.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
import zlib
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import dagster as dg
import duckdb
import pyarrow.parquet as pq
import pytest

from support import CLOCK, EXTRACT, RECORDED, fast_resources, materialize, pipeline_settings, reconfigured
from variance_pipeline.defs.resources import RetryConfig
from variance_pipeline.lake.layout import Lake
from variance_pipeline.settings import Settings
from variance_pipeline.simulator import SimulatorServer, portfolio
from variance_pipeline.simulator.market import bars_as_of
from variance_pipeline.simulator.faults import FaultRule

pytestmark = pytest.mark.slow

PROJECT = Path(__file__).resolve().parents[1]
SESSION = "2025-11-25"  # the current session at CLOCK
SESSION_DAY = date(2025, 11, 25)
NEXT_CLOSE = "2025-11-26T21:00:00+00:00"  # until then a re-run can still take SESSION's snapshot
SECRET_VARIABLES = ("TASTYTRADE_CLIENT_SECRET", "TASTYTRADE_REFRESH_TOKEN", "TASTYTRADE_CLIENT_ID")


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def api_requests(sim: SimulatorServer) -> list[dict[str, Any]]:
    return sim.requests.entries()


def token_posts(sim: SimulatorServer) -> list[dict[str, Any]]:
    return [r for r in api_requests(sim) if (r["method"], r["path"]) == ("POST", "/oauth/token")]


def with_tastytrade(settings: Settings, **update: Any) -> dict[str, dg.ConfigurableResource]:
    resources = fast_resources(settings)
    resources["tastytrade"] = reconfigured(resources["tastytrade"], **update)
    return resources


def metadata(result: dg.ExecuteInProcessResult, key: str) -> dict[str, Any]:
    """The materialization metadata of asset ``key`` (plain values)."""
    events = result.asset_materializations_for_node("market_metrics" if key in ("iv_term_structure", "earnings_calendar") else key)
    (event,) = [e for e in events if e.asset_key == dg.AssetKey(key)]
    return {name: getattr(value, "value", value) for name, value in event.metadata.items()}


def _error_texts(error: Any) -> Iterator[str]:
    while error is not None:
        yield error.message
        yield from _error_texts(error.context) if getattr(error, "context", None) else ()
        error = error.cause


def failure_text(result: dg.ExecuteInProcessResult, step: str) -> str:
    """Everything the run log says about why ``step`` failed (error, causes, Failure description)."""
    texts: list[str] = []
    for event in result.all_events:
        if event.event_type_value == "STEP_FAILURE" and event.step_key == step:
            data = event.step_failure_data
            texts.extend(_error_texts(data.error))
            if data.user_failure_data is not None:
                texts.append(data.user_failure_data.description or "")
    assert texts, f"step {step} did not fail"
    return "\n".join(texts)


def exception_text(exc: BaseException) -> str:
    texts = []
    while exc is not None:
        texts.append(f"{type(exc).__name__}: {exc}")
        exc = exc.__cause__ or exc.__context__
    return "\n".join(texts)


def files_under(root: Path) -> list[Path]:
    return sorted(path for path in root.rglob("*") if path.is_file())


def stored_bytes(path: Path) -> bytes:
    """A file's bytes, and for a SQLite file also every cell, zlib-inflated where compressed.

    Dagster's run storage compresses snapshots and some bodies, so a plain byte grep of the .db
    file would miss a secret stored there.
    """
    data = path.read_bytes()
    if not data.startswith(b"SQLite format 3\x00"):
        return data
    parts = [data]
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = [row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            for row in con.execute(f'SELECT * FROM "{table}"'):
                for cell in row:
                    if isinstance(cell, str):
                        parts.append(cell.encode())
                    elif isinstance(cell, bytes):
                        parts.append(cell)
                        try:
                            parts.append(zlib.decompress(cell))
                        except zlib.error:
                            pass
    finally:
        con.close()
    return b"\n".join(parts)


def lake_partition(data_dir: Path, dataset: str) -> Path:
    return Lake(data_dir).partition_path(dataset, SESSION_DAY)


@pytest.fixture
def clean_credentials(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in SECRET_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def live_settings(data_dir: Path, url: str, watchlist: str = "SPY") -> Settings:
    return Settings(
        source="live", data_dir=data_dir, tastytrade_api_url=url, yahoo_chart_url=url,
        watchlist_spec=watchlist, now_override=CLOCK,
    )


# --------------------------------------------------------------------------------------------
# 1. Replay of the recorded responses: exact values through raw, lake and warehouse
# --------------------------------------------------------------------------------------------

REPLAY_CLOCK = datetime(2023, 6, 8, 21, 30, tzinfo=timezone.utc)  # after the close of Thu 2023-06-08
REPLAY_DAY = date(2023, 6, 8)


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dg.ExecuteInProcessResult]]:
    data_dir = tmp_path_factory.mktemp("replay")
    with SimulatorServer(port=0, now=REPLAY_CLOCK, replay_dir=RECORDED) as sim:
        settings = pipeline_settings(data_dir, sim.url, now=REPLAY_CLOCK, watchlist="AAPL,TSLA")
        result = materialize(settings, partition_key=REPLAY_DAY.isoformat(), select=[*EXTRACT, "warehouse"])
        yield data_dir, result


def test_replay_lands_the_recorded_short_put_exactly(replayed) -> None:
    data_dir, result = replayed
    assert result.success
    con = duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True)
    rows = con.execute(
        "SELECT as_of_date, account_number, instrument_type, underlying_symbol, root_symbol, quantity, "
        "quantity_direction, multiplier, average_open_price, close_price FROM positions"
    ).fetchall()
    # The replay answers every account with the one recorded body (account-number 5YZ55555): the
    # copies listed under the other two accounts are not theirs and are left out, not tripled.
    assert rows == [
        (REPLAY_DAY, "5YZ55555", "Equity Option", "RIVN", "RIVN", -40.0, "Short", 100, 0.79, 0.41)
    ]
    (symbol,) = con.execute("SELECT symbol FROM positions").fetchone()
    assert symbol == "RIVN  230609P00014000"
    meta = metadata(result, "positions")
    assert meta["items_misfiled"] == 2 and meta["landed"] is True


def test_replay_lands_the_recorded_metrics_and_term_structure_exactly(replayed) -> None:
    data_dir, _ = replayed
    con = duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True)
    row = con.execute(
        "SELECT implied_volatility, hv_30_day, iv_rank, liquidity_rating, earnings_date, iv_30_day, "
        "hv_60_day, hv_90_day, iv_percentile FROM market_metrics WHERE symbol = 'AAPL'"
    ).fetchone()
    assert row == (0.224186663, 0.2002, 0.02231313, 4, date(2023, 7, 27), 0.2187, 0.1955, 0.2024, 0.031249801)
    term = con.execute(
        "SELECT expiration_date, settlement_type, implied_volatility FROM iv_term_structure "
        "WHERE symbol = 'AAPL' ORDER BY expiration_date"
    ).fetchall()
    assert term == [
        (date(2023, 6, 9), "PM", 0.288187496),
        (date(2023, 6, 16), "PM", 0.253236223),
        (date(2023, 6, 23), "PM", 0.23260259),
    ]


def test_replay_raw_bodies_are_byte_for_byte_what_the_server_sent(replayed) -> None:
    data_dir, _ = replayed

    def sent(payload: Any) -> bytes:  # how the simulator encodes a body on the wire
        return json.dumps(payload, separators=(",", ":")).encode()

    raw = data_dir / "raw"
    tasty = RECORDED / "tastytrade"
    positions_dir = raw / "positions" / f"date={REPLAY_DAY}"
    accounts = json.loads((tasty / "customer_accounts.json").read_text())
    recorded_positions = json.loads((tasty / "positions.json").read_text())
    assert (positions_dir / "accounts.json").read_bytes() == sent(accounts)
    for number in ("5YZ55555", "5WW55555", "5WZ55555"):
        assert (positions_dir / f"positions_{number}.json").read_bytes() == sent(recorded_positions)
    # /market-metrics answers the requested symbols only: RIVN (held) is unknown to the recording.
    metrics = json.loads((tasty / "market_metrics.json").read_text())
    asked = {"RIVN", "AAPL", "TSLA"}
    items = [item for item in metrics["data"]["items"] if item["symbol"] in asked]
    expected = sent({**metrics, "data": {**metrics["data"], "items": items}})
    metrics_dir = raw / "market_metrics" / f"date={REPLAY_DAY}"
    assert [p.name for p in files_under(metrics_dir)] == ["market_metrics.batch-000.json"]
    assert (metrics_dir / "market_metrics.batch-000.json").read_bytes() == expected


def test_replay_symbols_the_api_did_not_return_are_reported(replayed) -> None:
    _, result = replayed
    assert metadata(result, "market_metrics")["symbols_missing"] == "RIVN"
    check = {e.check_name: e for e in result.get_asset_check_evaluations()}["metrics_symbols_present"]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert check.metadata["missing"].value == "RIVN"


# --------------------------------------------------------------------------------------------
# 2. Auth: a token that expires mid-run, rejected and missing credentials
# --------------------------------------------------------------------------------------------


def test_token_expiring_mid_run_is_refreshed_once_and_the_run_succeeds(tmp_path: Path) -> None:
    # Tokens live 2 s; the first positions request takes 2.5 s, so its token expires in flight.
    slow = FaultRule(endpoint="positions", kind="slow", delay=2.5, count=1)
    with SimulatorServer(port=0, now=CLOCK, token_ttl=2, faults=[slow]) as sim:
        # Every asset that calls Tastytrade (the asserts read the non-Yahoo request log).
        result = materialize(pipeline_settings(tmp_path, sim.url, watchlist="SPY"), partition_key=SESSION,
                             select=[*EXTRACT, "risk_free_rate", "earnings_reports"])
        log = api_requests(sim)
    assert result.success
    assert lake_partition(tmp_path, "positions").exists()
    calls = [(r["method"], r["path"], r["status"]) for r in log if not r["path"].startswith("/v8/")]
    rejected = next(i for i, call in enumerate(calls) if call[2] == 401)
    method, path, _ = calls[rejected]
    assert (method, path) == ("GET", "/accounts/5WT00001/positions")
    # The 401 is answered by one refresh, then one retry of the same request, which succeeds.
    assert calls[rejected + 1] == ("POST", "/oauth/token", 200)
    assert calls[rejected + 2] == ("GET", path, 200)
    assert sum(1 for call in calls if call[2] == 401) == 1
    assert len([c for c in calls if c[:2] == ("POST", "/oauth/token")]) >= 2


PUBLIC_RATE_PATH = "/margin-requirements-public-configuration"


def landed_datasets(data_dir: Path) -> set[str]:
    lake = data_dir / "lake"
    return {child.name for child in lake.iterdir()} if lake.exists() else set()


def test_rejected_refresh_token_fails_fast_with_one_request(tmp_path: Path, clean_credentials) -> None:
    wrong_secret, wrong_token = "wr0ng-SECRET-7f3a", "wr0ng-TOKEN-91bc"
    clean_credentials.setenv("TASTYTRADE_CLIENT_SECRET", wrong_secret)
    clean_credentials.setenv("TASTYTRADE_REFRESH_TOKEN", wrong_token)
    with SimulatorServer(port=0, now=CLOCK, client_secret="right-secret", refresh_token="right-token") as sim:
        started = time.monotonic()
        # The whole graph: no asset at all may send a request after the rejected login.
        result = materialize(live_settings(tmp_path, sim.url), partition_key=SESSION, raise_on_error=False)
        elapsed = time.monotonic() - started
        log = api_requests(sim)
    assert not result.success
    # One login attempt and no authenticated request after it: repeated failed logins get an IP
    # blocked for hours. Only the public risk-free rate (no auth, not ordered after the login) may
    # still be asked.
    authenticated = [(r["method"], r["path"], r["status"]) for r in log if r["path"] != PUBLIC_RATE_PATH]
    assert authenticated == [("POST", "/oauth/token", 401)]
    assert elapsed < 30
    message = failure_text(result, "positions")
    assert "rejected the OAuth refresh" in message
    assert "TASTYTRADE_CLIENT_SECRET" in message and "TASTYTRADE_REFRESH_TOKEN" in message
    everything = "\n".join(dg.serialize_value(event) for event in result.all_events)
    assert wrong_secret not in everything and wrong_token not in everything
    assert landed_datasets(tmp_path) <= {"risk_free_rate"}


def test_missing_credentials_fail_before_any_request(tmp_path: Path, clean_credentials) -> None:
    with SimulatorServer(port=0, now=CLOCK) as sim:
        with pytest.raises(Exception) as info:
            materialize(live_settings(tmp_path, sim.url), partition_key=SESSION)
        assert api_requests(sim) == []
    message = exception_text(info.value)
    assert "TASTYTRADE_CLIENT_SECRET" in message and "TASTYTRADE_REFRESH_TOKEN" in message
    assert files_under(tmp_path) == []


def test_empty_credentials_fail_before_any_request(tmp_path: Path, clean_credentials) -> None:
    clean_credentials.setenv("TASTYTRADE_CLIENT_SECRET", "")
    clean_credentials.setenv("TASTYTRADE_REFRESH_TOKEN", "   ")
    with SimulatorServer(port=0, now=CLOCK) as sim:
        with pytest.raises(Exception) as info:
            materialize(live_settings(tmp_path, sim.url), partition_key=SESSION)
        assert api_requests(sim) == []
    message = exception_text(info.value)
    assert "Tastytrade credentials missing: set TASTYTRADE_CLIENT_SECRET, TASTYTRADE_REFRESH_TOKEN" in message
    assert files_under(tmp_path) == []


# --------------------------------------------------------------------------------------------
# 3. Rate limiting on /market-metrics
# --------------------------------------------------------------------------------------------


def test_429_without_retry_after_is_retried_and_batches_are_configurable(tmp_path: Path) -> None:
    storm = FaultRule(endpoint="market-metrics", kind="429", count=2)
    with SimulatorServer(port=0, now=CLOCK, faults=[storm]) as sim:
        settings = pipeline_settings(tmp_path, sim.url, watchlist="SPY,QQQ")
        resources = with_tastytrade(settings, batch_size=4)
        result = materialize(settings, partition_key=SESSION, resources=resources, select=EXTRACT)
        log = [r for r in api_requests(sim) if r["path"] == "/market-metrics"]
    assert result.success
    meta = metadata(result, "market_metrics")
    assert meta["retries"] == 2 and meta["landed"] is True
    # 12 held underlyings (SPY and QQQ among them), 4 per request -> 3 batches, the first retried twice.
    assert meta["symbols_requested"] == 12 and meta["batches"] == 3
    assert [r["status"] for r in log] == [429, 429, 200, 200, 200]
    assert all(len(r["query"]["symbols"].split(",")) <= 4 for r in log)
    raw = files_under(tmp_path / "raw" / "market_metrics" / f"date={SESSION}")
    assert [p.name for p in raw] == [f"market_metrics.batch-{n:03d}.json" for n in range(3)]
    assert len(pq.read_table(lake_partition(tmp_path, "market_metrics"))) == 12


def test_429_retry_after_is_honoured(tmp_path: Path) -> None:
    limited = FaultRule(endpoint="market-metrics", kind="429", count=1, retry_after=1)
    with SimulatorServer(port=0, now=CLOCK, faults=[limited]) as sim:
        settings = pipeline_settings(tmp_path, sim.url, watchlist="SPY")
        patient = RetryConfig(base_delay=0.01, max_delay=5.0, max_total_wait=10.0, timeout=5.0)
        result = materialize(settings, partition_key=SESSION, resources=with_tastytrade(settings, retry=patient),
                             select=EXTRACT)
        log = [r for r in api_requests(sim) if r["path"] == "/market-metrics"]
    assert result.success
    meta = metadata(result, "market_metrics")
    # Jittered backoff would wait at most 0.01 s here; the wait is exactly the server's Retry-After.
    assert meta["retries"] == 1 and meta["retry_wait_seconds"] == 1.0
    assert [r["status"] for r in log] == [429, 200]
    gap = datetime.fromisoformat(log[1]["time"]) - datetime.fromisoformat(log[0]["time"])
    assert gap.total_seconds() >= 0.95


def test_429_storm_fails_the_run_and_lands_no_partial_snapshot(tmp_path: Path) -> None:
    storm = FaultRule(endpoint="market-metrics", kind="429", retry_after=0)
    with SimulatorServer(port=0, now=CLOCK, faults=[storm]) as sim:
        result = materialize(pipeline_settings(tmp_path, sim.url, watchlist="SPY"), partition_key=SESSION,
                             raise_on_error=False, select=[*EXTRACT, "warehouse"])
        log = [r for r in api_requests(sim) if r["path"] == "/market-metrics"]
    assert not result.success
    assert [r["status"] for r in log] == [429] * 5  # RetryConfig.max_attempts, then it gives up
    message = failure_text(result, "market_metrics")
    assert "GET /market-metrics answered HTTP 429" in message
    assert f"Nothing was written to lake/market_metrics for {SESSION}" in message
    assert f"until {NEXT_CLOSE}" in message and "re-running this partition" in message
    assert "4 retries" in message
    assert not lake_partition(tmp_path, "market_metrics").exists()
    assert not lake_partition(tmp_path, "iv_term_structure").exists()
    assert lake_partition(tmp_path, "positions").exists()  # the other snapshot is unaffected
    assert "warehouse" not in {e.step_key for e in result.all_events if e.event_type_value == "STEP_SUCCESS"}


# --------------------------------------------------------------------------------------------
# 4. Hostile watchlists are refused before anything is fetched or written
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("watchlist", "shown"),
    [
        ("../x", "'../x'"),
        ('"; DROP TABLE positions; --', "'\"; DROP TABLE positions; --'"),
        ("SPY,../../etc/passwd", "'../../etc/passwd'"),
        ("X" * 10_000, "(10000 characters)"),
        (",,", "',,' names no symbols"),
    ],
    ids=["dotdot", "quotes", "path-in-list", "10k", "empty"],
)
def test_hostile_watchlist_is_refused_before_any_request(tmp_path: Path, watchlist: str, shown: str) -> None:
    with SimulatorServer(port=0, now=CLOCK) as sim:
        with pytest.raises(Exception) as info:
            materialize(pipeline_settings(tmp_path, sim.url, watchlist=watchlist), partition_key=SESSION)
        assert api_requests(sim) == []
    message = exception_text(info.value)
    assert "Invalid watchlist, nothing was fetched or written: VARIANCE_WATCHLIST" in message
    assert shown in message
    assert len(message) < 1_000  # a 10,000-character value is shortened, not echoed
    assert files_under(tmp_path) == []


# --------------------------------------------------------------------------------------------
# 5. Shape drift: pagination, unknown fields, a missing required field
# --------------------------------------------------------------------------------------------


def test_pagination_is_followed_and_unknown_fields_stay_in_raw_only(tmp_path: Path) -> None:
    extra = FaultRule(endpoint="positions", kind="extra_field", field="x-new-field")
    with SimulatorServer(port=0, now=CLOCK, faults=[extra]) as sim:
        settings = pipeline_settings(tmp_path, sim.url, watchlist="SPY")
        resources = with_tastytrade(settings, per_page=2)
        result = materialize(settings, partition_key=SESSION, resources=resources, select=["accounts", "positions"])
        log = [r for r in api_requests(sim) if r["path"].endswith("/positions")]
        held = {n: len(portfolio.holdings(42, n, CLOCK, lambda s: bars_as_of(42, s, CLOCK))) for n in ("5WT00001", "5WT00002")}
    assert result.success
    pages = [(r["path"].split("/")[2], r["query"].get("page-offset", "0"), r["query"]["per-page"]) for r in log]
    # Every position of 5WT00001 and 5WT00002 (the engine's book), two per page; 5WT00003 is closed.
    assert held["5WT00001"] > 10 and held["5WT00002"] > 2
    assert pages == [(n, str(page), "2") for n, count in held.items() for page in range((count + 1) // 2)]
    frame = pq.read_table(lake_partition(tmp_path, "positions")).to_pandas()
    assert len(frame) == sum(held.values()) and frame.groupby("account_number").size().to_dict() == held
    assert not any("new" in column or "x_" in column for column in frame.columns)
    raw_dir = tmp_path / "raw" / "positions" / f"date={SESSION}"
    raw_pages = [p for p in files_under(raw_dir) if p.name.startswith("positions_")]
    assert len(raw_pages) == len(pages)
    for page in raw_pages:
        items = json.loads(page.read_bytes())["data"]["items"]
        assert items and all(item["x-new-field"] == "unexpected" for item in items)


def test_missing_quantity_fails_naming_field_and_symbol_and_keeps_the_raw_body(tmp_path: Path) -> None:
    missing = FaultRule(endpoint="positions", kind="missing_field", field="quantity")
    with SimulatorServer(port=0, now=CLOCK, faults=[missing]) as sim:
        # The whole graph (all downstream of positions, so skipped): nothing of the account may land
    # (the public risk-free rate does not depend on positions).
        result = materialize(pipeline_settings(tmp_path, sim.url, watchlist="SPY"), partition_key=SESSION,
                             raise_on_error=False)
    assert not result.success
    message = failure_text(result, "positions")
    assert "positions item 0 ('AAPL', account 5WT00001): missing required field 'quantity'" in message
    raw_dir = tmp_path / "raw" / "positions" / f"date={SESSION}"
    assert f"kept under {raw_dir}" in message
    body = json.loads((raw_dir / "positions_5WT00001.json").read_bytes())
    assert body["data"]["items"] and all("quantity" not in item for item in body["data"]["items"])
    assert landed_datasets(tmp_path) <= {"risk_free_rate"}
    assert not (tmp_path / "warehouse.duckdb").exists()


# --------------------------------------------------------------------------------------------
# 6. No secret anywhere: the real CLI in live mode, then a grep of everything it left
# --------------------------------------------------------------------------------------------

CLIENT_SECRET = "s3cr3t-CLIENT-xyz"
REFRESH_TOKEN = "r3fr3sh-TOKEN-abc"


def test_cli_run_in_live_mode_leaves_no_secret_anywhere(tmp_path: Path) -> None:
    data_dir, dagster_home = tmp_path / "data", tmp_path / "dagster_home"
    dagster_home.mkdir()
    shutil.copy(PROJECT / "deploy" / "dagster.yaml", dagster_home / "dagster.yaml")
    with SimulatorServer(port=0, now=CLOCK, client_secret=CLIENT_SECRET, refresh_token=REFRESH_TOKEN) as sim:
        env = {key: value for key, value in os.environ.items() if not key.startswith(("TASTYTRADE_", "VARIANCE_"))}
        env.update(
            VARIANCE_SOURCE="live",
            TASTYTRADE_CLIENT_SECRET=CLIENT_SECRET,
            TASTYTRADE_REFRESH_TOKEN=REFRESH_TOKEN,
            TASTYTRADE_API_URL=sim.url,
            YAHOO_CHART_URL=sim.url,
            VARIANCE_DATA_DIR=str(data_dir),
            DAGSTER_HOME=str(dagster_home),
            VARIANCE_NOW=CLOCK.isoformat(),
            VARIANCE_WATCHLIST="SPY",
        )
        dagster = Path(sys.executable).with_name("dagster")
        done = subprocess.run(
            [str(dagster), "asset", "materialize", "-m", "variance_pipeline.definitions", "--select", "*",
             "--partition", SESSION],
            env=env, capture_output=True, cwd=PROJECT, timeout=300,
        )
        access_tokens = list(sim.app.oauth.tokens._expiry)  # every bearer token the run was given
        log = api_requests(sim)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output.decode(errors="replace")[-3000:]
    assert any(r["path"] == "/oauth/token" and r["status"] == 200 for r in log)
    assert access_tokens, "the run logged in"
    assert lake_partition(data_dir, "positions").exists() and (data_dir / "warehouse.duckdb").exists()
    stored = files_under(data_dir) + files_under(dagster_home)
    suffixes = {p.suffix for p in stored}
    assert {".json", ".parquet", ".duckdb", ".db"} <= suffixes, suffixes  # raw, lake, warehouse, run storage
    assert any("compute_logs" in p.parts or p.suffix in (".out", ".err") for p in stored)
    contents = {path: stored_bytes(path) for path in stored}
    needles = [CLIENT_SECRET.encode(), REFRESH_TOKEN.encode(), *(token.encode() for token in access_tokens)]
    for needle in needles:
        assert needle not in output, "a secret reached the CLI output"
        for path, content in contents.items():
            assert needle not in content, f"a secret is stored in {path}"
    # The grep does see inside the run storage: Dagster kept the variable's name there, not its value.
    assert any(b"TASTYTRADE_CLIENT_SECRET" in content for path, content in contents.items() if path.suffix == ".db")
