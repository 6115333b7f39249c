"""The embedded simulator against the recorded real responses, over real HTTP on loopback.

Shapes are checked against ``fixtures/recorded`` (real Tastytrade and Yahoo bodies): every key a
recorded item has must exist in the simulator's item with the same JSON type, recursively. The
recorded folder is ``tests/fixtures/recorded`` (copied byte for byte, provenance in its SOURCES.md).
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import time
from datetime import date, datetime, timedelta, timezone
from itertools import pairwise
from pathlib import Path
from typing import Any, Iterator
from zoneinfo import ZoneInfo

import httpx
import pytest

from variance_pipeline.calendar import session_open, sessions_in_range
from variance_pipeline.simulator import SimulatorServer
from variance_pipeline.simulator.faults import FaultRule, parse_spec
from variance_pipeline.simulator.replay import chart_symbol
from variance_pipeline.simulator.__main__ import build_parser
from variance_pipeline.simulator.server import DEFAULT_PER_PAGE, RequestLog

from support import GRANT, RECORDED, UA, assert_shape, chart_result as _chart, login as _login

REPO = Path(__file__).resolve().parent.parent

needs_recorded = pytest.mark.usefixtures("recorded_dir")

CLOCK = datetime(2026, 1, 16, 22, 0, tzinfo=timezone.utc)  # Friday, after the close
IN_SESSION = datetime(2025, 11, 24, 17, 0, tzinfo=timezone.utc)  # Monday 12:00 New York
SIMULATOR = {"now": CLOCK, "seed": 42}  # the module's ``sim`` (conftest.py); ``api`` is logged in to it


def _recorded(relative: str) -> Any:
    assert RECORDED is not None
    return json.loads((RECORDED / relative).read_text())


def _epoch(day: date) -> int:
    return int(session_open(day).timestamp())


def _window(first: date, last_exclusive: date) -> dict[str, Any]:
    start = datetime(first.year, first.month, first.day, tzinfo=timezone.utc)
    end = datetime(last_exclusive.year, last_exclusive.month, last_exclusive.day, tzinfo=timezone.utc)
    return {"period1": int(start.timestamp()), "period2": int(end.timestamp()), "interval": "1d"}




@pytest.fixture()
def clean(sim: SimulatorServer, api: httpx.Client) -> Iterator[httpx.Client]:
    """A client on a simulator with no faults and an empty request log, restored afterwards."""
    api.delete("/_sim/faults")
    api.delete("/_sim/requests")
    yield api
    api.delete("/_sim/faults")


# --- shapes against the recorded responses ----------------------------------------------------


@needs_recorded
def test_accounts_have_recorded_shape(api: httpx.Client) -> None:
    body = api.get("/customers/me/accounts").json()
    recorded = _recorded("tastytrade/customer_accounts.json")
    assert body["context"] == "/customers/me/accounts"
    for item in body["data"]["items"]:
        assert_shape(recorded["data"]["items"][0], item)
    closed = [i["account"]["is-closed"] for i in body["data"]["items"]]
    assert sorted(closed) == [False, False, True]


@needs_recorded
def test_positions_have_recorded_shape_and_current_contracts(api: httpx.Client) -> None:
    recorded = _recorded("tastytrade/positions.json")["data"]["items"][0]
    accounts = [i["account"] for i in api.get("/customers/me/accounts").json()["data"]["items"]]
    items = [
        item
        for account in accounts
        if not account["is-closed"]
        for item in api.get(f"/accounts/{account['account-number']}/positions").json()["data"]["items"]
    ]
    kinds = {item["instrument-type"] for item in items}
    assert kinds == {"Equity", "Equity Option", "Future", "Future Option"}
    assert {item["quantity-direction"] for item in items if item["instrument-type"] == "Equity"} == {"Long"}
    assert {item["quantity-direction"] for item in items if "Option" in item["instrument-type"]} == {"Long", "Short"}
    for item in items:
        expected = recorded if item["instrument-type"] != "Equity" else {k: v for k, v in recorded.items() if k != "expires-at"}
        assert_shape(expected, item)
        assert item["quantity"] > 0 and isinstance(item["multiplier"], int)
        if "expires-at" in item:
            assert datetime.fromisoformat(item["expires-at"]) > CLOCK
    option = next(i for i in items if i["symbol"].startswith("SPY "))
    assert re.fullmatch(r"SPY {3}\d{6}[CP]\d{8}", option["symbol"]) and option["underlying-symbol"] == "SPY"
    future = next(i for i in items if i["underlying-symbol"] == "/ES")
    assert re.fullmatch(r"/ES[HMUZ]\d", future["symbol"]) and future["streamer-symbol"].endswith(":XCME")
    future_options = [i for i in items if i["instrument-type"] == "Future Option"]
    assert {i["underlying-symbol"][:-2] for i in future_options} >= {"/MES"}
    for fop in future_options:  # fixed width: ./ + future code padded to 5 + product padded to 6
        assert re.fullmatch(r"\./[A-Z0-9 ]{5}[A-Z0-9 ]{6}\d{6}[CP][\d.]+", fop["symbol"]), fop["symbol"]
        assert fop["underlying-symbol"] == "/" + fop["symbol"][2:7].strip()
        assert re.fullmatch(r"\./[A-Z0-9]+\d\d[CP][\d.]+:XC[A-Z]{2}", fop["streamer-symbol"]), fop["streamer-symbol"]
    strike = int(option["symbol"][-8:]) / 1000
    spot = _chart(api, "SPY", range="5d")["meta"]["regularMarketPrice"]
    assert 0.8 * spot < strike < 1.2 * spot


def test_positions_pagination_and_unknown_account(api: httpx.Client) -> None:
    full = api.get("/accounts/5WT00001/positions").json()
    assert "pagination" not in full
    page = api.get("/accounts/5WT00001/positions", params={"per-page": 2, "page-offset": 1}).json()
    assert page["data"]["items"] == full["data"]["items"][2:4]
    pagination = page["pagination"]
    assert pagination["per-page"] == 2 and pagination["page-offset"] == 1 and pagination["item-offset"] == 2
    assert pagination["total-items"] == len(full["data"]["items"]) and pagination["current-item-count"] == 2
    assert pagination["total-pages"] == math.ceil(len(full["data"]["items"]) / 2)
    missing = api.get("/accounts/NOPE0000/positions")
    assert missing.status_code == 404 and "code" in missing.json()["error"]


@needs_recorded
def test_market_metrics_have_recorded_shape_and_units(api: httpx.Client) -> None:
    recorded = {i["symbol"]: i for i in _recorded("tastytrade/market_metrics.json")["data"]["items"]}
    body = api.get("/market-metrics", params={"symbols": "AAPL,TSLA,SPY,/ES,NOPE"}).json()
    items = {i["symbol"]: i for i in body["data"]["items"]}
    assert body["context"] == "/market-metrics"
    assert set(items) == {"AAPL", "TSLA", "SPY", "/ES"}
    assert_shape(recorded["AAPL"], items["AAPL"])
    assert_shape(recorded["TSLA"], items["TSLA"])
    for symbol in ("SPY", "/ES"):
        assert_shape({k: v for k, v in recorded["TSLA"].items() if k != "earnings"}, items[symbol])
        assert "earnings" not in items[symbol]
    for item in items.values():
        assert 0.02 < float(item["implied-volatility-index"]) < 2  # fraction
        assert 0 <= float(item["implied-volatility-index-rank"]) <= 1
        assert 0 <= float(item["implied-volatility-percentile"]) <= 1
        assert 2 < float(item["implied-volatility-30-day"]) < 200  # percent
        assert 2 < float(item["historical-volatility-30-day"]) < 200
        assert item["liquidity-rating"] in range(6)
        expirations = item["option-expiration-implied-volatilities"]
        assert 4 <= len(expirations) <= 8
        assert all(date.fromisoformat(e["expiration-date"]) > CLOCK.date() for e in expirations)
    report = date.fromisoformat(items["AAPL"]["earnings"]["expected-report-date"])
    assert 0 < (report - CLOCK.date()).days <= 95


def test_market_metrics_hv30_reconciles_with_chart_closes(api: httpx.Client) -> None:
    item = api.get("/market-metrics", params={"symbols": "MSFT"}).json()["data"]["items"][0]
    closes = _chart(api, "MSFT", range="3mo")["indicators"]["quote"][0]["close"][-31:]
    returns = [math.log(b / a) for a, b in pairwise(closes)]
    mean = sum(returns) / len(returns)
    hv = math.sqrt(sum((r - mean) ** 2 for r in returns) / (len(returns) - 1) * 252)
    assert float(item["historical-volatility-30-day"]) == pytest.approx(round(100 * hv, 2), abs=0.006)


@needs_recorded
def test_chart_has_recorded_shape(api: httpx.Client) -> None:
    recorded = _recorded("yahoo/chart_AAPL.json")["chart"]["result"][0]
    result = _chart(api, "AAPL", range="6mo", events="div,splits")
    assert_shape(recorded, result, loose_numbers=True)
    assert result["meta"]["exchangeTimezoneName"] == "America/New_York"
    assert result["meta"]["range"] == "6mo" and result["meta"]["dataGranularity"] == "1d"


# --- chart semantics ---------------------------------------------------------------------------


def test_chart_bars_are_nyse_sessions_with_sane_ohlc(api: httpx.Client) -> None:
    result = _chart(api, "SPY", **_window(date(2025, 1, 1), date(2026, 1, 1)))
    days = sessions_in_range(date(2025, 1, 1), date(2025, 12, 31))
    assert result["timestamp"] == [_epoch(d) for d in days]
    as_dates = {datetime.fromtimestamp(t, timezone.utc).date() for t in result["timestamp"]}
    assert not as_dates & {date(2025, 4, 18), date(2025, 1, 9), date(2025, 12, 25)}
    quote = result["indicators"]["quote"][0]
    for o, h, low, c, v in zip(quote["open"], quote["high"], quote["low"], quote["close"], quote["volume"], strict=True):
        assert 0 < low <= min(o, c) <= max(o, c) <= h
        assert isinstance(v, int) and v >= 0
    assert result["meta"]["symbol"] == "SPY"


def test_futures_bars_are_calendar_days_in_globex_hours(api: httpx.Client) -> None:
    """ES=F: one bar per New York calendar day stamped 00:00: every session, the Sunday (and
    holiday) evenings before one, never a Saturday."""
    result = _chart(api, "ES=F", **_window(date(2025, 1, 1), date(2026, 1, 1)))
    ny = ZoneInfo("America/New_York")
    stamps = [datetime.fromtimestamp(t, ny) for t in result["timestamp"]]
    assert all(s.time() == datetime.min.time() for s in stamps)
    days = {s.date() for s in stamps}
    sessions = set(sessions_in_range(date(2025, 1, 1), date(2025, 12, 31)))
    assert sessions <= days
    assert all(d.weekday() != 5 for d in days) and date(2025, 11, 23) in days  # a Sunday
    assert all(d + timedelta(days=1) in sessions for d in days - sessions)  # evenings before a session
    quote = result["indicators"]["quote"][0]
    for o, h, low, c in zip(quote["open"], quote["high"], quote["low"], quote["close"], strict=True):
        assert 0 < low <= min(o, c) <= max(o, c) <= h


def test_chart_errors_and_empty_window(api: httpx.Client) -> None:
    unknown = api.get("/v8/finance/chart/NOPE", params={"range": "1mo", "interval": "1d"})
    assert unknown.status_code == 404
    assert unknown.json() == {
        "chart": {"result": None, "error": {"code": "Not Found", "description": "No data found, symbol may be delisted"}}
    }
    early = api.get("/v8/finance/chart/SPY", params=_window(date(2001, 1, 1), date(2002, 1, 1)))
    assert early.status_code == 400 and early.json()["chart"]["error"]["code"] == "Bad Request"
    weekend = _chart(api, "SPY", **_window(date(2025, 11, 22), date(2025, 11, 24)))
    assert "timestamp" not in weekend and weekend["indicators"]["quote"] == [{}]
    caret = _chart(api, "^VIX", range="5d")
    assert caret["meta"]["symbol"] == "^VIX" and len(caret["timestamp"]) == 5


def test_chart_split_and_dividend_events(api: httpx.Client) -> None:
    window = _window(date(2021, 7, 1), date(2021, 8, 1))
    plain = _chart(api, "NVDA", **window)
    assert "events" not in plain
    result = _chart(api, "NVDA", events="div|split", **window)
    split_ts = str(_epoch(date(2021, 7, 20)))
    assert result["events"]["splits"][split_ts]["splitRatio"] == "4:1"
    closes = result["indicators"]["quote"][0]["close"]
    index = result["timestamp"].index(int(split_ts))
    assert 0.7 < closes[index] / closes[index - 1] < 1.4  # split-adjusted: no 4x jump
    msft = _chart(api, "MSFT", events="div", range="1y")
    assert len(msft["events"]["dividends"]) == 4
    quote, adj = msft["indicators"]["quote"][0]["close"], msft["indicators"]["adjclose"][0]["adjclose"]
    assert adj[-1] == quote[-1] and adj[0] < quote[0]  # dividends back-adjusted


def test_chart_is_deterministic_across_servers_and_windows(api: httpx.Client) -> None:
    first = _chart(api, "AAPL", **_window(date(2024, 3, 1), date(2024, 9, 1)))
    with SimulatorServer(now=CLOCK, seed=42) as other, httpx.Client(base_url=other.url) as client:
        second = _chart(client, "AAPL", **_window(date(2024, 6, 1), date(2025, 1, 1)))
        with SimulatorServer(now=CLOCK, seed=7) as third, httpx.Client(base_url=third.url) as seven:
            different = _chart(seven, "AAPL", **_window(date(2024, 6, 1), date(2025, 1, 1)))
    overlap = sorted(set(first["timestamp"]) & set(second["timestamp"]))
    assert len(overlap) > 50

    def columns(result: dict[str, Any]) -> dict[int, tuple[Any, ...]]:
        quote = result["indicators"]["quote"][0]
        rows = zip(quote["open"], quote["high"], quote["low"], quote["close"], quote["volume"], strict=True)
        return dict(zip(result["timestamp"], rows, strict=True))

    a, b = columns(first), columns(second)
    assert [a[t] for t in overlap] == [b[t] for t in overlap]
    assert columns(different) != b


def test_live_bar_inside_session() -> None:
    with SimulatorServer(now=IN_SESSION) as sim, httpx.Client(base_url=sim.url) as client:
        result = _chart(client, "SPY", range="5d")
        closed = _chart(client, "SPY", **_window(date(2025, 11, 17), date(2025, 11, 22)))
    clock = int(IN_SESSION.timestamp())
    assert result["timestamp"][-1] == clock == result["meta"]["regularMarketTime"]
    assert result["timestamp"][:-1] == [_epoch(d) for d in sessions_in_range(date(2025, 11, 18), date(2025, 11, 21))]
    quote = result["indicators"]["quote"][0]
    assert quote["low"][-1] <= quote["close"][-1] <= quote["high"][-1]
    assert closed["timestamp"][-1] == _epoch(date(2025, 11, 21))


# --- auth ----------------------------------------------------------------------------------------


def test_auth_requires_user_agent_and_valid_token(sim: SimulatorServer) -> None:
    with httpx.Client(base_url=sim.url, headers=UA) as client:
        no_token = client.get("/customers/me/accounts")
        assert no_token.status_code == 401 and "code" in no_token.json()["error"]
        bad = client.get("/customers/me/accounts", headers={"Authorization": "Bearer nope"})
        assert bad.status_code == 401 and bad.json()["error"]["code"] == "token_invalid"
        assert client.post("/oauth/token", json={**GRANT, "grant_type": "password"}).status_code == 400
        assert client.post("/oauth/token", json={**GRANT, "client_secret": ""}).status_code == 400
        token = client.post("/oauth/token", json=GRANT).json()["access_token"]
    with httpx.Client(base_url=sim.url) as bare:
        no_agent = bare.get(
            "/customers/me/accounts", headers={"User-Agent": "", "Authorization": f"Bearer {token}"}
        )
        assert no_agent.status_code == 401


def test_token_expires_after_ttl() -> None:
    with SimulatorServer(now=CLOCK, token_ttl=1) as sim, _login(sim.url) as client:
        assert client.get("/customers/me/accounts").status_code == 200
        time.sleep(1.2)
        expired = client.get("/customers/me/accounts")
        assert expired.status_code == 401 and expired.json()["error"]["code"] == "token_invalid"


def test_enforced_credentials_reject_others() -> None:
    with (
        SimulatorServer(now=CLOCK, client_secret="secret", refresh_token="refresh") as sim,
        httpx.Client(base_url=sim.url, headers=UA) as client,
    ):
        wrong = client.post("/oauth/token", json={**GRANT, "refresh_token": "other"})
        assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_grant"
        assert client.post("/oauth/token", json={**GRANT, "client_secret": "x"}).status_code == 401
        right = client.post("/oauth/token", json=GRANT)
        assert right.status_code == 200
        assert right.json()["token_type"] == "Bearer" and right.json()["expires_in"] == 900


def test_tokens_are_listed_revoked_and_refresh_tokens_rotated(api: httpx.Client) -> None:
    assert "refresh_token" not in api.post("/oauth/token", json=GRANT).json()  # no rotation unless asked
    with (
        SimulatorServer(now=CLOCK, refresh_token="refresh", rotate_refresh_tokens=True) as sim,
        httpx.Client(base_url=sim.url, headers=UA) as client,
    ):
        first = client.post("/oauth/token", json=GRANT).json()
        rotated = first["refresh_token"]
        assert rotated != "refresh"
        stale = client.post("/oauth/token", json=GRANT)  # the old refresh token is spent
        assert stale.status_code == 401 and stale.json()["error"]["code"] == "invalid_grant"
        second = client.post("/oauth/token", json={**GRANT, "refresh_token": rotated}).json()
        assert second["refresh_token"] not in (rotated, "refresh")
        listed = client.get("/_sim/tokens").json()
        assert listed["access"] == [first["access_token"], second["access_token"]]
        assert listed["refresh_token"] == second["refresh_token"]
        assert sim.oauth.tokens.issued() == listed["access"]
        bearer = {"Authorization": f"Bearer {second['access_token']}"}
        assert client.get("/customers/me/accounts", headers=bearer).status_code == 200
        assert client.delete("/_sim/tokens").json() == {"revoked": 2}
        revoked = client.get("/customers/me/accounts", headers=bearer)
        assert revoked.status_code == 401 and revoked.json()["error"]["code"] == "token_invalid"
        assert client.delete("/_sim/tokens").json() == {"revoked": 0}
        assert not any(entry["path"].startswith("/_sim") for entry in sim.requests.entries())


# --- replay --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def replay() -> Iterator[httpx.Client]:
    with SimulatorServer(replay_dir=RECORDED) as sim, _login(sim.url) as client:
        yield client


def test_chart_file_names_map_to_symbols() -> None:
    assert chart_symbol("chart_GS2C.DE.json") == "GS2C.DE"
    assert chart_symbol("chart_AAPL_1d_2020-01-02_2020-12-31.json") == "AAPL"
    assert chart_symbol("chart_MSFT.json") == "MSFT"
    assert chart_symbol("positions.json") is None


def test_replay_serves_recorded_tastytrade_bodies(replay: httpx.Client) -> None:
    recorded = _recorded("tastytrade/market_metrics.json")["data"]["items"]
    items = replay.get("/market-metrics", params={"symbols": "AAPL,SPY"}).json()["data"]["items"]
    assert items == [next(i for i in recorded if i["symbol"] == "AAPL")]
    assert replay.get("/customers/me/accounts").json() == _recorded("tastytrade/customer_accounts.json")
    assert replay.get("/accounts/ANY00000/positions").json() == _recorded("tastytrade/positions.json")


def test_replay_merges_and_slices_recorded_charts(replay: httpx.Client) -> None:
    files = [_recorded("yahoo/chart_AAPL.json"), _recorded("yahoo/chart_AAPL_1d_2020-01-02_2020-12-31.json")]
    expected: dict[int, float] = {}
    for body in files:
        result = body["chart"]["result"][0]
        for stamp, close in zip(result["timestamp"], result["indicators"]["quote"][0]["close"], strict=True):
            expected.setdefault(stamp, close)
    merged = _chart(replay, "AAPL", period1=0, period2=2_000_000_000, events="div,splits")
    assert merged["timestamp"] == sorted(expected)
    assert merged["indicators"]["quote"][0]["close"] == [expected[t] for t in merged["timestamp"]]
    assert len(merged["events"]["dividends"]) == 6 and len(merged["events"]["splits"]) == 1
    sliced = _chart(replay, "AAPL", events="div", **_window(date(2020, 8, 1), date(2020, 9, 1)))
    assert [datetime.fromtimestamp(t, timezone.utc).month for t in sliced["timestamp"]] == [8] * 21
    assert sliced["indicators"]["quote"][0]["close"] == [expected[t] for t in sliced["timestamp"]]
    assert list(sliced["events"]["dividends"]) == ["1596807000"]
    assert _chart(replay, "GS2C.DE", range="max")["meta"]["currency"] == "EUR"
    assert replay.get("/v8/finance/chart/SPY", params={"range": "1mo"}).status_code == 404


def test_verbatim_replay_sends_recorded_bodies_byte_for_byte(replay: httpx.Client) -> None:
    recorded = {
        "/customers/me/accounts": "customer_accounts.json",
        "/accounts/ANY00000/positions": "positions.json",
        "/margin-requirements-public-configuration": "margin_requirements_public_configuration.json",
    }
    for path, name in recorded.items():  # by default re-encoded, like every other answer
        compact = json.dumps(_recorded(f"tastytrade/{name}"), separators=(",", ":")).encode()
        assert replay.get(path).content == compact, path
    with SimulatorServer(replay_dir=RECORDED, verbatim=True) as sim, _login(sim.url) as client:
        for path, name in recorded.items():
            assert client.get(path).content == (RECORDED / "tastytrade" / name).read_bytes(), path
        extra = {"endpoint": "accounts", "kind": "extra_field", "count": 1}
        assert client.post("/_sim/faults", json=extra).status_code == 200
        altered = client.get("/customers/me/accounts").json()  # a fault re-encodes what it alters
        assert all(item["x-simulator-extra"] == "unexpected" for item in altered["data"]["items"])
        paged = client.get("/accounts/ANY00000/positions", params={"per-page": 1})
        assert paged.json()["pagination"]["total-pages"] == 1 and b'"pagination"' in paged.content
    with pytest.raises(ValueError, match="verbatim"):
        SimulatorServer(verbatim=True)


def test_server_page_size_pages_what_the_client_did_not(api: httpx.Client) -> None:
    full = api.get("/accounts/5WT00001/positions").json()["data"]["items"]
    with SimulatorServer(now=CLOCK, seed=42, per_page=2) as sim, _login(sim.url) as client:
        first = client.get("/accounts/5WT00001/positions").json()
        second = client.get("/accounts/5WT00001/positions", params={"page-offset": 1}).json()
        asked = client.get("/accounts/5WT00001/positions", params={"per-page": 3}).json()
    assert first["data"]["items"] == full[:2] and second["data"]["items"] == full[2:4]
    assert first["pagination"]["per-page"] == 2 and first["pagination"]["total-pages"] == math.ceil(len(full) / 2)
    assert asked["data"]["items"] == full[:3] and asked["pagination"]["per-page"] == 3  # the client's size wins
    with pytest.raises(ValueError, match="per_page"):
        SimulatorServer(per_page=0)


# --- faults and the request log ----------------------------------------------------------------


def test_fault_429_with_retry_after_stops_after_count(clean: httpx.Client) -> None:
    rules = [{"endpoint": "chart", "symbol": "SPY", "kind": "429", "count": 2, "retry_after": 3}]
    assert clean.post("/_sim/faults", json=rules).status_code == 200
    first = clean.get("/v8/finance/chart/SPY", params={"range": "5d"})
    assert first.status_code == 429 and first.headers["Retry-After"] == "3"
    assert clean.get("/v8/finance/chart/QQQ", params={"range": "5d"}).status_code == 200  # other symbol
    assert clean.get("/v8/finance/chart/SPY", params={"range": "5d"}).status_code == 429
    assert clean.get("/v8/finance/chart/SPY", params={"range": "5d"}).status_code == 200
    assert clean.get("/_sim/faults").json() == []
    log = clean.get("/_sim/requests").json()
    assert [(e["method"], e["path"], e["status"]) for e in log] == [
        ("GET", "/v8/finance/chart/SPY", 429),
        ("GET", "/v8/finance/chart/QQQ", 200),
        ("GET", "/v8/finance/chart/SPY", 429),
        ("GET", "/v8/finance/chart/SPY", 200),
    ]
    assert log[0]["query"] == {"range": "5d"} and log[0]["faults"] == ["429"] and "time" in log[0]


def test_fault_kinds_on_tastytrade_endpoints(clean: httpx.Client) -> None:
    date_header = "Wed, 21 Oct 2015 07:28:00 GMT"
    clean.post(
        "/_sim/faults",
        json={
            "rules": [
                {"endpoint": "market-metrics", "kind": "429", "count": 1, "retry_after": date_header},
                {"endpoint": "positions", "kind": "503", "count": 1},
                {"endpoint": "market-metrics", "symbol": "AAPL", "kind": "missing_field", "field": "beta"},
                {"endpoint": "accounts", "kind": "extra_field", "field": "brand-new"},
            ]
        },
    )
    limited = clean.get("/market-metrics", params={"symbols": "AAPL"})
    assert limited.status_code == 429 and limited.headers["Retry-After"] == date_header
    items = {i["symbol"]: i for i in clean.get("/market-metrics", params={"symbols": "AAPL,MSFT"}).json()["data"]["items"]}
    assert "beta" not in items["AAPL"] and "beta" in items["MSFT"]
    assert clean.get("/accounts/5WT00001/positions").status_code == 503
    assert clean.get("/accounts/5WT00001/positions").status_code == 200
    assert all(i["brand-new"] == "unexpected" for i in clean.get("/customers/me/accounts").json()["data"]["items"])


def test_fault_truncated_and_slow(clean: httpx.Client) -> None:
    clean.post("/_sim/faults", json={"endpoint": "chart", "kind": "truncated", "count": 1})
    broken = clean.get("/v8/finance/chart/SPY", params={"range": "1mo"})
    assert broken.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(broken.text)
    assert clean.get("/v8/finance/chart/SPY", params={"range": "1mo"}).json()["chart"]["error"] is None
    clean.post("/_sim/faults", json={"endpoint": "*", "kind": "slow", "delay": 0.3, "count": 1})
    started = time.monotonic()
    assert clean.get("/customers/me/accounts").status_code == 200
    assert time.monotonic() - started >= 0.3


def test_fault_split_rescales_history_and_live_bar_stamp(clean: httpx.Client) -> None:
    window = _window(date(2025, 5, 1), date(2025, 7, 1))
    before = _chart(clean, "AAPL", events="splits", **window)
    split = {"endpoint": "chart", "symbol": "AAPL", "kind": "split", "split": {"date": "2025-06-02", "ratio": 4}}
    clean.post("/_sim/faults", json=[split, {"endpoint": "chart", "kind": "live_bar"}])
    after = _chart(clean, "AAPL", events="splits", **window)
    assert after["events"]["splits"][str(_epoch(date(2025, 6, 2)))]["splitRatio"] == "4:1"
    old, new = before["indicators"]["quote"][0]["close"], after["indicators"]["quote"][0]["close"]
    cut = before["timestamp"].index(_epoch(date(2025, 6, 2)))
    assert [round(c / 4, 6) for c in old[:cut]] == new[:cut]  # history rescaled exactly
    assert new[cut:] == pytest.approx([c / 4 for c in old[cut:]], abs=0.006)  # new raw prices, cent grid
    recent = _chart(clean, "AAPL", range="5d")
    assert recent["timestamp"][-1] == recent["meta"]["regularMarketTime"] != _epoch(date(2026, 1, 16))
    clean.delete("/_sim/faults")
    assert _chart(clean, "AAPL", events="splits", **window)["indicators"]["quote"][0]["close"] == old


def test_fault_reply_and_one_answering_rule_per_request(clean: httpx.Client) -> None:
    rules = [
        {"endpoint": "accounts", "kind": "503", "count": 1},
        {"endpoint": "accounts", "kind": "reply", "status": 418, "body": "short and stout", "count": 1},
        {"endpoint": "accounts", "kind": "reply", "status": 200, "body": {"data": {"items": []}}, "count": 1},
        {"endpoint": "oauth", "kind": "401", "count": 1},
    ]
    assert clean.post("/_sim/faults", json=rules).status_code == 200
    answers = [clean.get("/customers/me/accounts") for _ in range(4)]
    assert [a.status_code for a in answers] == [503, 418, 200, 200]
    assert answers[1].text == "short and stout" and answers[1].headers["Content-Type"].startswith("text/plain")
    assert answers[2].json() == {"data": {"items": []}}
    assert len(answers[3].json()["data"]["items"]) == 3  # the real answer again
    assert [e["faults"] for e in clean.get("/_sim/requests").json()] == [["503"], ["reply"], ["reply"], []]
    refused = clean.post("/oauth/token", json=GRANT)  # a 401 from the token endpoint is a refused grant
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_grant"
    with pytest.raises(ValueError, match="reply needs an HTTP status"):
        FaultRule.from_json({"endpoint": "oauth", "kind": "reply", "body": {}})


def test_fault_echo_quotes_what_the_request_sent_in_errors(clean: httpx.Client) -> None:
    rules = [
        {"endpoint": "oauth", "kind": "echo"},
        {"endpoint": "oauth", "kind": "reply", "status": 400, "body": {"error": "invalid_grant"}, "count": 1},
        {"endpoint": "chart", "kind": "429", "count": 1},
        {"endpoint": "chart", "kind": "echo", "count": 2},
    ]
    clean.post("/_sim/faults", json=rules)
    scripted = clean.post("/oauth/token", json={**GRANT, "refresh_token": "sent-R1"})
    assert scripted.status_code == 400 and scripted.json()["error"] == "invalid_grant"
    assert "sent-R1" in scripted.json()["error_description"]
    refused = clean.post("/oauth/token", json={**GRANT, "grant_type": "password", "client_secret": "sent-S2"})
    message = refused.json()["error"]["message"]
    prefix = "grant_type must be refresh_token (sent: "
    assert refused.status_code == 400 and message.startswith(prefix)
    assert json.loads(message.removeprefix(prefix).removesuffix(")"))["client_secret"] == "sent-S2"
    limited = clean.get("/v8/finance/chart/SPY", params={"range": "5d"})
    assert limited.status_code == 429 and limited.text == "Too Many Requests (sent: /v8/finance/chart/SPY?range=5d)"
    assert "sent" not in clean.get("/v8/finance/chart/SPY", params={"range": "5d"}).text  # successes untouched
    unknown = clean.get("/v8/finance/chart/NOPE", params={"range": "5d"})  # the rule's count is spent
    assert unknown.status_code == 404 and "sent" not in unknown.text


def test_request_log_keeps_what_was_sent(clean: httpx.Client) -> None:
    clean.get("/accounts/5WT00001/positions?include-marks=true&page-offset=0", headers={"Accept-Version": "20250101"})
    clean.get("/market-metrics?symbols=%2FES,AAPL")
    clean.post("/oauth/token", json=GRANT)
    positions, metrics, grant = clean.get("/_sim/requests").json()
    assert positions["target"] == "/accounts/5WT00001/positions?include-marks=true&page-offset=0"
    assert positions["headers"]["accept-version"] == "20250101"
    assert positions["headers"]["user-agent"] == UA["User-Agent"]
    assert positions["headers"]["authorization"].startswith("Bearer ") and positions["body"] == ""
    assert metrics["target"] == "/market-metrics?symbols=%2FES,AAPL" and metrics["query"] == {"symbols": "/ES,AAPL"}
    assert grant["endpoint"] == "oauth" and json.loads(grant["body"]) == GRANT


def test_one_fault_rule_counts_separately_on_each_server() -> None:
    rule = FaultRule(endpoint="chart", kind="500", count=2)
    for _ in range(2):
        with SimulatorServer(now=CLOCK, faults=[rule]) as sim, httpx.Client(base_url=sim.url) as client:
            statuses = [client.get("/v8/finance/chart/SPY", params={"range": "5d"}).status_code for _ in range(3)]
        assert statuses == [500, 500, 200]


def test_request_log_keeps_the_newest_entries_up_to_its_cap() -> None:
    log = RequestLog(cap=3)
    for n in range(5):
        log.add({"n": n})
    assert [entry["n"] for entry in log.entries()] == [2, 3, 4]
    assert log.clear() == 3 and log.entries() == []


def test_fault_specs_parse_from_cli_syntax() -> None:
    (rule,) = parse_spec("chart:429:count=2:retry_after=3:symbol=ES=F")
    assert (rule.endpoint, rule.kind, rule.count, rule.retry_after, rule.symbol) == ("chart", "429", 2, 3.0, "ES=F")
    (split,) = parse_spec('{"endpoint": "*", "kind": "split", "symbol": "NVDA", "split": {"date": "2025-06-02", "ratio": "3:2"}}')
    assert split.split is not None and (split.split.numerator, split.split.denominator) == (3, 2)
    (reply,) = parse_spec("oauth:reply:status=503:body=down:count=1")
    assert (reply.endpoint, reply.kind, reply.status, reply.body, reply.count) == ("oauth", "reply", 503, "down", 1)
    with pytest.raises(ValueError):
        parse_spec("chart:teapot")


def test_cli_takes_token_lifetime_rotation_page_size_and_verbatim() -> None:
    argv = ["--token-ttl", "100", "--rotate-refresh-tokens", "--per-page", "2", "--replay", "x", "--verbatim"]
    args = build_parser().parse_args(argv)
    assert (args.token_ttl, args.rotate_refresh_tokens, args.per_page, args.verbatim) == (100.0, True, 2, True)
    defaults = build_parser().parse_args([])
    assert (defaults.rotate_refresh_tokens, defaults.per_page, defaults.verbatim) == (False, DEFAULT_PER_PAGE, False)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--per-page", "0"])


# --- CLI -----------------------------------------------------------------------------------------


def test_cli_prints_url_and_serves_health() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "variance_pipeline.simulator", "--port", "0", "--now", "2025-11-24T21:30:00Z",
         "--fault", "chart:500:count=1"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        match = re.fullmatch(r"simulator listening on (http://127\.0\.0\.1:\d+)", line)
        assert match, line
        with httpx.Client(base_url=match.group(1), timeout=10) as client:
            assert client.get("/_sim/health").json() == {"ok": True}
            assert client.get("/v8/finance/chart/SPY", params={"range": "5d"}).status_code == 500
            assert client.get("/v8/finance/chart/SPY", params={"range": "5d"}).status_code == 200
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0
