"""``variance-doctor`` against the in-process simulator: OK output, the usual mistakes, no secrets, no files."""

from __future__ import annotations

import io
import re
import socket
from pathlib import Path

import pytest

from support import CLOCK
from variance_pipeline import doctor
from variance_pipeline.settings import Settings
from variance_pipeline.simulator import SimulatorServer
from variance_pipeline.simulator.faults import FaultRule
from variance_pipeline.sources.tastytrade import TastytradeAuthError

SECRET = "doctor-test-client-secret-93f1"
TOKEN = "doctor-test-refresh-token-5a7c"
CLIENT_ID = "doctor-test-client-id-77d2"


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working directory and a data dir that must never come into existence."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return tmp_path


def run(env: dict[str, str], sandbox: Path, *argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = doctor.main(list(argv), env={"VARIANCE_DATA_DIR": str(sandbox / "data"), **env}, out=out)
    text = out.getvalue()
    # Nothing written: no data dir, nothing in the working directory.
    assert not (sandbox / "data").exists()
    assert list((sandbox / "cwd").iterdir()) == []
    return code, text


def live_env(url: str, *, secret: str = SECRET, token: str = TOKEN) -> dict[str, str]:
    return {
        "VARIANCE_SOURCE": "live",
        "TASTYTRADE_API_URL": url,
        "YAHOO_CHART_URL": url,
        "TASTYTRADE_CLIENT_SECRET": secret,
        "TASTYTRADE_REFRESH_TOKEN": token,
        "TASTYTRADE_CLIENT_ID": CLIENT_ID,
        "VARIANCE_NOW": CLOCK.isoformat(),
    }


def step(text: str, name: str) -> str:
    lines = [line for line in text.splitlines() if re.match(rf"^(OK|FAIL|SKIP)\s+{re.escape(name)}\s", line)]
    assert len(lines) == 1, text
    return lines[0]


def assert_no_secrets(text: str) -> None:
    for secret in (SECRET, TOKEN, CLIENT_ID):
        assert secret not in text


def api_calls(sim: SimulatorServer) -> list[tuple[str, str]]:
    return [(entry["method"], entry["path"]) for entry in sim.requests.entries()]


def test_simulator_mode_all_ok_with_one_request_per_step(sandbox: Path) -> None:
    with SimulatorServer(port=0, now=CLOCK) as sim:
        code, text = run({"VARIANCE_SOURCE": "simulator", "VARIANCE_SIMULATOR_URL": sim.url,
                          "VARIANCE_NOW": CLOCK.isoformat()}, sandbox)
        calls = api_calls(sim)
    assert code == 0, text
    assert step(text, "accounts").startswith("OK") and "2 open accounts" in text
    assert re.search(r"OK\s+positions\s+\d+ positions in account \*+\d{4}", text), text
    assert re.search(r"OK\s+market metrics\s+[A-Z]+ IV \d\.\d+", text), text
    assert "5 bars" in step(text, "yahoo chart") and "last 2025-11-25" in text
    assert re.search(r"OK\s+risk-free rate\s+risk-free 0\.\d{4}", text), text
    assert re.search(r"OK\s+balances\s+net liq [\d,.]+ in account \*+\d{4}, BP used", text), text
    assert re.search(r"OK\s+margin report\s+\d+ underlying groups", text), text
    assert "the token is not shown" in step(text, "quote token")
    assert step(text, "market data").startswith("OK") and step(text, "futures bars").startswith("OK")
    assert "dividend_yield_source proxy:SPY" in step(text, "index dividend")
    # The simulator's history labels reports by quarter end; the day and BMO/AMC are the metrics'.
    earnings = step(text, "earnings history")
    assert "2025-06-30 (eps" in earnings and "2025-09-30 (eps" in earnings, earnings
    assert "expected-report-date 2026-01-28, time-of-day AMC" in earnings, earnings
    assert "all 14 checks OK (14 requests" in text
    # The fewest calls: one token, then one request per step (earnings history also reads the metrics).
    assert [method for method, _ in calls].count("POST") == 1
    assert len(calls) == 14
    assert {path.split("/")[1] for _, path in calls} == {
        "oauth", "customers", "accounts", "margin", "market-metrics", "v8",
        "margin-requirements-public-configuration", "api-quote-tokens", "market-data",
    }


def test_live_mode_against_a_strict_simulator_never_prints_secrets(sandbox: Path) -> None:
    with SimulatorServer(port=0, now=CLOCK, client_secret=SECRET, refresh_token=TOKEN) as sim:
        code, text = run(live_env(sim.url), sandbox, "--symbol", "spy")
    assert code == 0, text
    assert "SPY IV" in step(text, "market metrics") and "(--symbol)" in text
    assert "5 bars of SPY, last 2025-11-25" in text
    assert "TASTYTRADE_CLIENT_ID set" in text
    assert_no_secrets(text)


def test_revoked_refresh_token_is_named_and_sent_once(sandbox: Path) -> None:
    with SimulatorServer(port=0, now=CLOCK, client_secret=SECRET, refresh_token="the-real-one-b81") as sim:
        code, text = run(live_env(sim.url), sandbox)
        calls = api_calls(sim)
    assert code == 1
    line = step(text, "oauth token")
    assert line.startswith("FAIL") and "401 invalid_grant" in line and "revoked" in line
    assert "TASTYTRADE_REFRESH_TOKEN" in line
    for name in ("accounts", "positions", "balances", "margin report", "market metrics", "quote token"):
        assert step(text, name).startswith("SKIP")
    # The public endpoints still answer; the login is never retried (IP blocks).
    assert step(text, "yahoo chart").startswith("OK") and step(text, "risk-free rate").startswith("OK")
    assert calls.count(("POST", "/oauth/token")) == 1
    assert "FAILED: oauth token" in text
    assert_no_secrets(text)
    assert "the-real-one-b81" not in text


def test_yahoo_429_says_wait_and_lower_the_rate_without_retrying(sandbox: Path) -> None:
    rule = FaultRule(endpoint="chart", kind="429", retry_after=30)
    with SimulatorServer(port=0, now=CLOCK, faults=[rule]) as sim:
        code, text = run({"VARIANCE_SOURCE": "simulator", "VARIANCE_SIMULATOR_URL": sim.url,
                          "VARIANCE_NOW": CLOCK.isoformat(), "VARIANCE_YAHOO_RATE": "2"}, sandbox)
        charts = [path for _, path in api_calls(sim) if path.startswith("/v8/")]
    assert code == 1
    line = step(text, "yahoo chart")
    assert line.startswith("FAIL") and "429" in line and "VARIANCE_YAHOO_RATE" in line and "now 2/s" in line
    assert "wait" in line.lower()
    assert len(charts) == 1
    assert step(text, "risk-free rate").startswith("OK")


def test_missing_credentials_name_the_variables_and_send_no_login(sandbox: Path) -> None:
    with SimulatorServer(port=0, now=CLOCK) as sim:
        env = live_env(sim.url)
        del env["TASTYTRADE_REFRESH_TOKEN"]
        env["TASTYTRADE_CLIENT_SECRET"] = "  "
        code, text = run(env, sandbox)
        calls = api_calls(sim)
    assert code == 1
    line = step(text, "credentials")
    assert line.startswith("FAIL") and "TASTYTRADE_CLIENT_SECRET" in line and "TASTYTRADE_REFRESH_TOKEN" in line
    assert ("POST", "/oauth/token") not in calls
    assert step(text, "risk-free rate").startswith("OK")  # public: checked without credentials


def test_accounts_401_with_a_fresh_token_points_at_user_agent_and_scopes(sandbox: Path) -> None:
    with SimulatorServer(port=0, now=CLOCK, faults=[FaultRule(endpoint="accounts", kind="401")]) as sim:
        code, text = run({"VARIANCE_SOURCE": "simulator", "VARIANCE_SIMULATOR_URL": sim.url,
                          "VARIANCE_NOW": CLOCK.isoformat()}, sandbox)
    assert code == 1
    line = step(text, "accounts")
    assert line.startswith("FAIL") and "check the User-Agent / OAuth scopes" in line
    assert step(text, "positions").startswith("SKIP")


def test_no_simulator_listening_says_how_to_start_it(sandbox: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code, text = run({"VARIANCE_SOURCE": "simulator", "VARIANCE_SIMULATOR_URL": f"http://127.0.0.1:{port}"}, sandbox)
    assert code == 1
    assert "start it with `make dev` or `python -m variance_pipeline.simulator`" in step(text, "oauth token")
    assert step(text, "yahoo chart").startswith("SKIP")


def test_missing_source_is_a_configuration_failure(sandbox: Path) -> None:
    code, text = run({}, sandbox)
    assert code == 1 and "VARIANCE_SOURCE" in text


def test_sandbox_url_with_a_rejected_token_says_so() -> None:
    env = {"VARIANCE_SOURCE": "live", "TASTYTRADE_API_URL": "https://api.cert.tastyworks.com",
           "TASTYTRADE_CLIENT_SECRET": SECRET, "TASTYTRADE_REFRESH_TOKEN": TOKEN}
    checker = doctor.Doctor(Settings.from_env(env), env, None, io.StringIO())
    advice = checker._auth_advice(
        TastytradeAuthError("rejected (HTTP 401 (invalid_grant: Grant is invalid))", status=401, path="/oauth/token")
    )
    assert "sandbox (cert)" in advice and "production refresh token" in advice
