"""The Tastytrade client over real HTTP on loopback, and the normalisers on recorded responses.

The fake server below is deliberately tiny: it serves the recorded responses, checks auth the
way the API does, and lets a test script statuses per path. The client under test is the real
one (httpx, send_with_retry, OAuth), talking real HTTP to 127.0.0.1.
"""

from __future__ import annotations

import email.utils
import json
import threading
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator
from urllib.parse import parse_qs, unquote, urlsplit

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from variance_pipeline.sources.http import RequestStats, RetryPolicy, SourceError
from variance_pipeline.sources.tastytrade import (
    TastytradeAuthError,
    TastytradeClient,
    TastytradeCredentials,
)
from variance_pipeline.sources.tastytrade_frames import (
    TastytradeDataError,
    held_underlyings,
    market_metrics_frames,
    positions_frame,
)
from variance_pipeline.validation.market_metrics import MarketMetricsSchema, TermStructureSchema
from variance_pipeline.validation.positions import PositionsSchema
from variance_pipeline.validation.report import validate_frame

# The shared recorded responses sit beside the checkout (the same rule as tests/conftest.py).
from conftest import RECORDED as RECORDED_ROOT  # noqa: E402

RECORDED = RECORDED_ROOT / "tastytrade"
AS_OF = date(2023, 6, 8)
FETCHED_AT = datetime(2023, 6, 8, 21, 5, tzinfo=timezone.utc)
SECRET = "client-secret-3f9a"
REFRESH = "refresh-token-77c1"
FAST = RetryPolicy(max_attempts=4, base_delay=0.001, max_delay=30.0, max_total_wait=60.0, timeout=5.0)


def recorded_bytes(name: str) -> bytes:
    path = RECORDED / name
    if not path.exists():
        pytest.fail(f"recorded fixture {path} not found (shared/ must sit beside the checkout)")
    return path.read_bytes()


def recorded_items(name: str) -> list[dict[str, Any]]:
    return json.loads(recorded_bytes(name))["data"]["items"]


# --------------------------------------------------------------------------------------------
# A tiny Tastytrade on loopback
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    method: str
    raw_path: str  # path as sent on the wire (still percent-encoded)
    query: str  # raw query string
    headers: dict[str, str]
    body: bytes

    @property
    def path(self) -> str:
        return unquote(self.raw_path)


@dataclass
class FakeTastytrade:
    """Recorded responses, OAuth as the API does it, and per-path scripted replies."""

    url: str = ""
    requests: list[Seen] = field(default_factory=list)
    scripted: dict[str, list[tuple[int, dict[str, str], bytes]]] = field(default_factory=dict)
    expires_in: int = 900
    valid_tokens: set[str] = field(default_factory=set)
    reject_every_token: bool = False
    accounts_body: bytes = b""
    positions: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    per_page: int | None = None
    issued: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def script(self, path: str, *replies: tuple[int, dict[str, str], bytes]) -> None:
        self.scripted.setdefault(path, []).extend(replies)

    def seen(self, path: str) -> list[Seen]:
        return [r for r in self.requests if r.path == path]

    def api_requests(self) -> list[Seen]:
        return [r for r in self.requests if r.path != "/oauth/token"]

    def handle(self, seen: Seen) -> tuple[int, dict[str, str], bytes]:
        with self.lock:
            self.requests.append(seen)
            queue = self.scripted.get(seen.path)
            if queue:
                return queue.pop(0)
        if not seen.headers.get("user-agent", "").startswith("variance-pipeline/"):
            return 401, {}, b'{"error": {"code": "user_agent_required"}}'
        if seen.path == "/oauth/token":
            return self.token(json.loads(seen.body))
        auth = seen.headers.get("authorization", "")
        if self.reject_every_token or auth.removeprefix("Bearer ") not in self.valid_tokens:
            return 401, {}, b'{"error": {"code": "token_invalid", "message": "Unauthorized"}}'
        if seen.path == "/customers/me/accounts":
            return 200, {}, self.accounts_body or recorded_bytes("customer_accounts.json")
        if seen.path.startswith("/accounts/") and seen.path.endswith("/positions"):
            return self.positions_page(seen)
        if seen.path == "/market-metrics":
            wanted = parse_qs(seen.query)["symbols"][0].split(",")
            items = [i for i in recorded_items("market_metrics.json") if i["symbol"] in wanted]
            return 200, {}, json.dumps({"data": {"items": items}}).encode()
        return 404, {}, b'{"error": {"code": "not_found"}}'

    def token(self, body: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        if body.get("grant_type") != "refresh_token" or (body.get("client_secret"), body.get("refresh_token")) != (
            SECRET,
            REFRESH,
        ):
            # A careless server that echoes what it was sent: the client must not pass it on.
            reply = {"error": "invalid_grant", "error_description": f"bad token {body.get('refresh_token')}"}
            return 401, {}, json.dumps(reply).encode()
        with self.lock:
            self.issued += 1
            token = f"access-{self.issued}"
            self.valid_tokens.add(token)
        reply = {"access_token": token, "token_type": "Bearer", "expires_in": self.expires_in}
        return 200, {}, json.dumps(reply).encode()

    def positions_page(self, seen: Seen) -> tuple[int, dict[str, str], bytes]:
        account = seen.path.split("/")[2]
        if account not in self.positions:
            body = recorded_bytes("positions.json") if account == "5YZ55555" else b'{"data": {"items": []}}'
            return 200, {}, body
        items = self.positions[account]
        per_page = self.per_page or max(len(items), 1)
        page = int(parse_qs(seen.query).get("page-offset", ["0"])[0])
        total_pages = max(1, -(-len(items) // per_page))
        payload = {
            "data": {"items": items[page * per_page : (page + 1) * per_page]},
            "pagination": {"per-page": per_page, "page-offset": page, "total-pages": total_pages},
        }
        return 200, {}, json.dumps(payload).encode()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    fake: FakeTastytrade

    def _serve(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        seen = Seen(
            self.command,
            parts.path,
            parts.query,
            {k.lower(): v for k, v in self.headers.items()},
            self.rfile.read(length) if length else b"",
        )
        status, headers, body = self.server.fake.handle(seen)  # type: ignore[attr-defined]
        self.send_response(status)
        for name, value in {"Content-Type": "application/json", **headers}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _serve

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass


@pytest.fixture
def fake() -> Iterator[FakeTastytrade]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    server.fake = FakeTastytrade(url=f"http://127.0.0.1:{server.server_address[1]}")  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    try:
        yield server.fake  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def client_for(fake: FakeTastytrade, **kwargs: Any) -> tuple[TastytradeClient, list[float]]:
    """A real client on the fake; its sleeps are recorded instead of slept."""
    slept: list[float] = []
    credentials = kwargs.pop("credentials", TastytradeCredentials(client_secret=SECRET, refresh_token=REFRESH))
    client = TastytradeClient(fake.url, credentials, policy=kwargs.pop("policy", FAST), sleep=slept.append, **kwargs)
    return client, slept


# --------------------------------------------------------------------------------------------
# Client: endpoints
# --------------------------------------------------------------------------------------------


def test_accounts_positions_and_raw_bodies_untouched(fake: FakeTastytrade) -> None:
    client, _ = client_for(fake, accept_version="20250101")
    with client:
        accounts = client.accounts()
        positions = client.positions("5YZ55555")
    assert [a["account-number"] for a in accounts.items] == ["5YZ55555", "5WW55555", "5WZ55555"]
    assert accounts.raw[0].name == "accounts.json"
    assert accounts.raw[0].body == recorded_bytes("customer_accounts.json")
    assert positions.raw[0].body == recorded_bytes("positions.json")
    assert positions.raw[0].name == "positions_5YZ55555.json"
    assert positions.items[0]["symbol"] == "RIVN  230609P00014000"
    token_request = fake.seen("/oauth/token")[0]
    assert json.loads(token_request.body) == {
        "grant_type": "refresh_token",
        "refresh_token": REFRESH,
        "client_secret": SECRET,
    }
    for request in fake.api_requests():
        assert request.headers["authorization"] == "Bearer access-1"
        assert request.headers["user-agent"].startswith("variance-pipeline/")
        assert request.headers["accept-version"] == "20250101"


def test_client_id_is_sent_when_configured(fake: FakeTastytrade) -> None:
    credentials = TastytradeCredentials(client_secret=SECRET, refresh_token=REFRESH, client_id="app-1")
    client, _ = client_for(fake, credentials=credentials)
    with client:
        client.accounts()
    assert json.loads(fake.seen("/oauth/token")[0].body)["client_id"] == "app-1"
    assert "accept-version" not in fake.api_requests()[0].headers


def test_closed_accounts_are_skipped(fake: FakeTastytrade) -> None:
    payload = json.loads(recorded_bytes("customer_accounts.json"))
    payload["data"]["items"][1]["account"]["is-closed"] = True
    fake.accounts_body = json.dumps(payload).encode()
    client, _ = client_for(fake)
    with client:
        accounts = client.accounts()
    assert [a["account-number"] for a in accounts.items] == ["5YZ55555", "5WZ55555"]
    assert accounts.raw[0].body == fake.accounts_body  # the raw copy still says what the API said


def test_pagination_is_followed(fake: FakeTastytrade) -> None:
    items = recorded_items("positions.json")
    fake.positions["5WW55555"] = [{**items[0], "symbol": f"RIVN  230609P0001{i}000"} for i in range(5)]
    fake.per_page = 2
    client, _ = client_for(fake)
    with client:
        fetched = client.positions("5WW55555")
    assert len(fetched.items) == 5
    assert [r.query for r in fake.seen("/accounts/5WW55555/positions")] == [
        "include-marks=true",
        "include-marks=true&page-offset=1",
        "include-marks=true&page-offset=2",
    ]
    assert [r.name for r in fetched.raw] == [
        "positions_5WW55555.json",
        "positions_5WW55555.page-1.json",
        "positions_5WW55555.page-2.json",
    ]


def test_account_number_is_url_encoded(fake: FakeTastytrade) -> None:
    client, _ = client_for(fake)
    with client:
        fetched = client.positions("5Y/Z 9")
    assert fetched.items == ()
    assert fake.api_requests()[0].raw_path == "/accounts/5Y%2FZ%209/positions"
    assert fetched.raw[0].name == "positions_5Y_Z_9.json"


def test_market_metrics_batches_encodes_and_reports_missing(fake: FakeTastytrade) -> None:
    symbols = ["/ES", *[f"SYM{i}" for i in range(247)], "AAPL", "TSLA", "BRK/B", "AAPL"]
    client, _ = client_for(fake)
    with client:
        fetched = client.market_metrics(symbols)
    requests = fake.seen("/market-metrics")
    assert [len(parse_qs(r.query)["symbols"][0].split(",")) for r in requests] == [100, 100, 51]
    assert requests[0].query.startswith("symbols=%2FES,SYM0,SYM1,")
    assert requests[2].query.endswith(",AAPL,TSLA,BRK%2FB")
    assert sorted(i["symbol"] for i in fetched.items) == ["AAPL", "TSLA"]
    assert fetched.missing[0] == "/ES" and "BRK/B" in fetched.missing and len(fetched.missing) == 249
    assert [r.name for r in fetched.raw] == [f"market_metrics.batch-00{i}.json" for i in range(3)]
    assert len(fake.seen("/oauth/token")) == 1


def test_market_metrics_of_nothing_asks_nothing(fake: FakeTastytrade) -> None:
    client, _ = client_for(fake)
    with client:
        fetched = client.market_metrics([])
        with pytest.raises(ValueError, match="batch_size"):
            client.market_metrics(["SPY"], batch_size=0)
    assert (fetched.items, fetched.missing, fake.requests) == ((), (), [])


# --------------------------------------------------------------------------------------------
# Client: tokens
# --------------------------------------------------------------------------------------------


def test_token_is_cached_across_calls(fake: FakeTastytrade) -> None:
    client, _ = client_for(fake)
    with client:
        client.accounts()
        for _ in range(4):
            client.positions("5YZ55555")
        client.market_metrics(["AAPL"])
    assert len(fake.seen("/oauth/token")) == 1
    assert len(fake.api_requests()) == 6


def test_token_is_refreshed_shortly_before_expiry(fake: FakeTastytrade) -> None:
    clock = Clock()
    client, _ = client_for(fake, clock=clock)
    with client:
        client.accounts()
        clock.now += 900 - 60 - 1  # still inside the token's life minus the 60 s margin
        client.accounts()
        assert len(fake.seen("/oauth/token")) == 1
        clock.now += 2  # within the margin: refresh before the server would refuse it
        client.accounts()
    assert len(fake.seen("/oauth/token")) == 2
    assert fake.api_requests()[-1].headers["authorization"] == "Bearer access-2"


def test_short_lived_token_uses_a_ten_percent_margin(fake: FakeTastytrade) -> None:
    fake.expires_in = 100
    clock = Clock()
    client, _ = client_for(fake, clock=clock)
    with client:
        client.accounts()
        clock.now += 89
        client.accounts()
        clock.now += 2
        client.accounts()
    assert len(fake.seen("/oauth/token")) == 2


def test_401_refreshes_once_and_retries_once(fake: FakeTastytrade) -> None:
    client, _ = client_for(fake)
    with client:
        client.accounts()
        fake.valid_tokens.clear()  # the server expired the token early
        accounts = client.accounts()
    assert len(accounts.items) == 3
    assert len(fake.seen("/oauth/token")) == 2
    assert [r.headers["authorization"] for r in fake.api_requests()] == [
        "Bearer access-1",
        "Bearer access-1",
        "Bearer access-2",
    ]


def test_a_second_401_is_an_error_not_a_loop(fake: FakeTastytrade) -> None:
    fake.reject_every_token = True
    client, _ = client_for(fake)
    with client, pytest.raises(SourceError, match="401 even with a freshly refreshed") as info:
        client.accounts()
    assert info.value.status == 401 and info.value.path == "/customers/me/accounts"
    assert len(fake.seen("/oauth/token")) == 2
    assert len(fake.api_requests()) == 2


@pytest.mark.parametrize("status", [400, 401])
def test_rejected_refresh_fails_fast_without_leaking_secrets(fake: FakeTastytrade, status: int) -> None:
    credentials = TastytradeCredentials(client_secret="wrong-secret-A1", refresh_token="wrong-refresh-B2")
    if status == 400:
        fake.script("/oauth/token", (400, {}, b'{"error": "invalid_grant", "error_description": "wrong-refresh-B2"}'))
    client, slept = client_for(fake, credentials=credentials)
    with client, pytest.raises(TastytradeAuthError) as info:
        client.accounts()
    message = str(info.value)
    assert "TASTYTRADE_CLIENT_SECRET" in message and "TASTYTRADE_REFRESH_TOKEN" in message
    assert "TASTYTRADE_CLIENT_ID" in message and "invalid_grant" in message
    assert "wrong-secret-A1" not in message and "wrong-refresh-B2" not in message
    assert info.value.status == status
    assert len(fake.requests) == 1 and slept == []


@pytest.mark.parametrize("padding", [0, 176])  # 176: the secret straddles the 200-character cut
def test_token_endpoint_server_error_does_not_leak_secrets(fake: FakeTastytrade, padding: int) -> None:
    echo = {"error": "server_error", "error_description": f"{'x' * padding}{SECRET} / {REFRESH}"}
    fake.script("/oauth/token", (501, {}, json.dumps(echo).encode()))
    client, _ = client_for(fake)
    with client, pytest.raises(SourceError, match="HTTP 501") as info:
        client.accounts()
    message = str(info.value)
    assert "server_error" in message
    assert SECRET[:6] not in message and REFRESH[:6] not in message


def test_rotated_refresh_token_is_sent_next_and_never_leaks(fake: FakeTastytrade) -> None:
    rotated = "rotated-refresh-C3"
    fake.valid_tokens.add("access-rotated")
    issued = {"access_token": "access-rotated", "expires_in": 900, "refresh_token": rotated}
    rejected = {"error": "invalid_grant", "error_description": f"bad token {rotated}"}
    fake.script("/oauth/token", (200, {}, json.dumps(issued).encode()), (401, {}, json.dumps(rejected).encode()))
    clock = Clock()
    client, _ = client_for(fake, clock=clock)
    with client:
        client.accounts()
        clock.now += 900  # expired: the next call refreshes with the rotated token
        with pytest.raises(TastytradeAuthError) as info:
            client.accounts()
    assert json.loads(fake.seen("/oauth/token")[1].body)["refresh_token"] == rotated
    assert "invalid_grant" in str(info.value) and rotated not in str(info.value)


def test_credentials_repr_hides_values() -> None:
    credentials = TastytradeCredentials(client_secret=SECRET, refresh_token=REFRESH, client_id="app-1")
    for text in (repr(credentials), str(credentials), f"{credentials}"):
        assert SECRET not in text and REFRESH not in text and "app-1" not in text


# --------------------------------------------------------------------------------------------
# Client: retries
# --------------------------------------------------------------------------------------------


def test_429_retry_after_seconds_is_honoured(fake: FakeTastytrade) -> None:
    fake.script("/customers/me/accounts", (429, {"Retry-After": "7"}, b""))
    stats = RequestStats()
    client, slept = client_for(fake, stats=stats)
    with client:
        assert len(client.accounts().items) == 3
    assert slept == [7.0]
    assert stats.retries == 1 and stats.statuses[429] == 1


def test_429_retry_after_http_date_is_honoured(fake: FakeTastytrade) -> None:
    when = datetime.now(timezone.utc) + timedelta(seconds=5)
    fake.script("/customers/me/accounts", (429, {"Retry-After": email.utils.format_datetime(when, usegmt=True)}, b""))
    client, slept = client_for(fake)
    with client:
        client.accounts()
    assert len(slept) == 1 and 3.0 < slept[0] <= 5.0


def test_429_without_retry_after_backs_off(fake: FakeTastytrade) -> None:
    fake.script("/customers/me/accounts", (429, {}, b""), (429, {}, b""))
    client, slept = client_for(fake)
    with client:
        client.accounts()
    # Full jitter within base_delay * 2**attempt.
    assert len(slept) == 2 and 0 <= slept[0] <= 0.001 and 0 <= slept[1] <= 0.002


def test_5xx_then_success(fake: FakeTastytrade) -> None:
    fake.script("/market-metrics", (503, {}, b"unavailable"), (500, {}, b"{}"))
    stats = RequestStats()
    client, slept = client_for(fake, stats=stats)
    with client:
        fetched = client.market_metrics(["AAPL"])
    assert [i["symbol"] for i in fetched.items] == ["AAPL"]
    assert len(slept) == 2 and stats.statuses == {200: 2, 503: 1, 500: 1}


def test_persistent_5xx_gives_up_with_the_path(fake: FakeTastytrade) -> None:
    fake.script("/customers/me/accounts", *[(503, {}, b"")] * FAST.max_attempts)
    client, _ = client_for(fake)
    with client, pytest.raises(SourceError, match=r"/customers/me/accounts answered HTTP 503") as info:
        client.accounts()
    assert info.value.status == 503
    assert len(fake.seen("/customers/me/accounts")) == FAST.max_attempts


def test_malformed_json_names_the_path(fake: FakeTastytrade) -> None:
    fake.script("/accounts/5YZ55555/positions", (200, {}, b'{"data": {"items": [{"symbol": "RIV'))
    client, _ = client_for(fake)
    with client, pytest.raises(SourceError, match=r"GET /accounts/5YZ55555/positions: response is not valid JSON"):
        client.positions("5YZ55555")


def test_unexpected_envelope_names_the_path(fake: FakeTastytrade) -> None:
    fake.script("/market-metrics", (200, {}, b'{"data": {"symbols": []}}'))
    client, _ = client_for(fake)
    with client, pytest.raises(SourceError, match=r"GET /market-metrics: response has no data.items"):
        client.market_metrics(["AAPL"])


# --------------------------------------------------------------------------------------------
# Normalisation: positions
# --------------------------------------------------------------------------------------------


def test_recorded_short_put_is_normalised() -> None:
    frame = positions_frame(recorded_items("positions.json"), as_of_date=AS_OF, fetched_at=FETCHED_AT)
    row = frame.iloc[0]
    assert row["quantity"] == -40.0
    assert row["multiplier"] == 100
    assert row["root_symbol"] == "RIVN"
    assert row["underlying_symbol"] == "RIVN"
    assert row["expires_at"] == pd.Timestamp("2023-06-09 20:00", tz="UTC")
    assert (row["average_open_price"], row["close_price"]) == (0.79, 0.41)
    assert row["as_of_date"] == AS_OF and row["fetched_at"] == pd.Timestamp(FETCHED_AT)
    assert pd.isna(row["mark"]) and pd.isna(row["streamer_symbol"])
    assert validate_frame(PositionsSchema, frame, "positions").ok
    schema = pa.Table.from_pandas(frame, preserve_index=False).schema
    assert schema.field("as_of_date").type == pa.date32()
    assert schema.field("expires_at").type == pa.timestamp("us", tz="UTC")
    assert schema.field("multiplier").type == pa.int64()


def future_option(**overrides: Any) -> dict[str, Any]:
    """The shape of a live future-option position (tastytrade-api-research.md), strings and all."""
    item = {
        "account-number": "5WZ12558",
        "instrument-type": "Future Option",
        "symbol": "./ZNH6 OZNG6 260123P111",
        "underlying-symbol": "/ZNH6",
        "quantity": "1",
        "quantity-direction": "Short",
        "average-open-price": 0.125,
        "close-price": "0.046875",
        "cost-effect": "Debit",
        "multiplier": "1000",
        "streamer-symbol": "./OZNG26P111:XCBT",
        "expires-at": "2026-01-23T19:00:00Z",
        "brand-new-field": {"ignored": True},
    }
    return {**item, **overrides}


def test_strings_ints_and_floats_are_parsed_exactly() -> None:
    items = [
        future_option(),
        future_option(**{"symbol": "/MESZ5", "instrument-type": "Future", "quantity": 2, "quantity-direction": "Long", "multiplier": 5}),
        future_option(**{"symbol": "AAPL", "instrument-type": "Equity", "quantity": "0", "quantity-direction": "Zero", "multiplier": 1}),
    ]
    frame = positions_frame(items, as_of_date=AS_OF, fetched_at=FETCHED_AT)
    assert frame["quantity"].tolist() == [-1.0, 2.0, 0.0]
    assert frame["multiplier"].tolist() == [1000, 5, 1]
    assert frame["root_symbol"].tolist() == ["/ZN", "/MES", "AAPL"]
    assert frame["average_open_price"].iloc[0] == 0.125 and frame["close_price"].iloc[0] == 0.046875
    assert frame["expires_at"].iloc[0] == pd.Timestamp("2026-01-23 19:00", tz="UTC")
    assert "brand-new-field" not in frame.columns
    assert validate_frame(PositionsSchema, frame, "positions").ok
    assert held_underlyings(frame) == ["/MES", "/ZN", "AAPL"]


@pytest.mark.parametrize("missing", ["symbol", "quantity", "quantity-direction", "instrument-type", "account-number", "multiplier"])
def test_missing_required_position_field_is_named(missing: str) -> None:
    item = future_option()
    del item[missing]
    with pytest.raises(TastytradeDataError, match=f"missing required field '{missing}'") as info:
        positions_frame([future_option(), item], as_of_date=AS_OF, fetched_at=FETCHED_AT)
    assert "positions item 1" in str(info.value)
    if missing != "symbol":
        assert "./ZNH6 OZNG6 260123P111" in str(info.value)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"quantity-direction": "Sideways"}, "quantity-direction 'Sideways'"),
        ({"quantity": "lots"}, "'quantity' = 'lots' is not a number"),
        ({"multiplier": "2.5"}, "'multiplier' = '2.5' is not an integer"),
        ({"expires-at": "tomorrow"}, "'expires-at' = 'tomorrow' is not an ISO-8601 time"),
        ({"symbol": "ZN", "underlying-symbol": None}, "cannot find the futures root"),
    ],
)
def test_unreadable_position_values_are_named(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(TastytradeDataError, match=message):
        positions_frame([future_option(**overrides)], as_of_date=AS_OF, fetched_at=FETCHED_AT)


def test_snapshot_stamp_must_be_unambiguous() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        positions_frame([], as_of_date=AS_OF, fetched_at=datetime(2023, 6, 8, 21))
    with pytest.raises(TypeError, match="datetime.date"):
        positions_frame([], as_of_date=FETCHED_AT, fetched_at=FETCHED_AT)


def test_no_positions_is_an_empty_valid_frame() -> None:
    frame = positions_frame([], as_of_date=AS_OF, fetched_at=FETCHED_AT)
    assert frame.empty and "quantity" in frame.columns
    assert validate_frame(PositionsSchema, frame, "positions").ok
    assert held_underlyings(frame) == []


# --------------------------------------------------------------------------------------------
# Normalisation: market metrics
# --------------------------------------------------------------------------------------------


def test_recorded_metrics_units_by_field() -> None:
    metrics, term = market_metrics_frames(recorded_items("market_metrics.json"), as_of_date=AS_OF, fetched_at=FETCHED_AT)
    aapl = metrics.set_index("symbol").loc["AAPL"]
    assert aapl["implied_volatility"] == 0.224186663
    assert aapl["hv_30_day"] == 0.2002
    assert aapl["iv_30_day"] == 0.2187
    assert aapl["iv_rank"] == 0.02231313
    assert aapl["tw_iv_rank"] == 0.037374278
    assert aapl["iv_percentile"] == 0.031249801
    assert (aapl["hv_60_day"], aapl["hv_90_day"], aapl["iv_hv_30_day_difference"]) == (0.1955, 0.2024, 0.0185)
    assert aapl["liquidity_rating"] == 4
    assert aapl["earnings_date"] == date(2023, 7, 27)
    assert not aapl["earnings_estimated"]
    assert aapl["market_cap"] == 2846108626900
    assert aapl["implied_volatility_updated_at"] == pd.Timestamp("2023-06-07 19:55:22.110", tz="UTC")
    assert str(metrics["liquidity_rating"].dtype) == "Int64"
    assert len(term) == 6
    first = term.iloc[0]
    assert (first["symbol"], first["expiration_date"], first["settlement_type"], first["option_chain_type"]) == (
        "AAPL",
        date(2023, 6, 9),
        "PM",
        "Standard",
    )
    assert first["implied_volatility"] == 0.288187496
    assert validate_frame(MarketMetricsSchema, metrics, "market_metrics").ok
    assert validate_frame(TermStructureSchema, term, "iv_term_structure").ok


def test_missing_optional_metrics_are_null_and_missing_symbol_is_named() -> None:
    metrics, term = market_metrics_frames(
        [{"symbol": "/ES", "implied-volatility-index": "0.15", "unknown-field": 1}], as_of_date=AS_OF, fetched_at=FETCHED_AT
    )
    row = metrics.iloc[0]
    assert row["implied_volatility"] == 0.15
    assert pd.isna(row["hv_30_day"]) and pd.isna(row["earnings_date"]) and pd.isna(row["liquidity_rating"])
    assert term.empty and list(term.columns)[:3] == ["as_of_date", "symbol", "expiration_date"]
    assert validate_frame(MarketMetricsSchema, metrics, "market_metrics").ok
    with pytest.raises(TastytradeDataError, match=r"market-metrics item 1: missing required field 'symbol'"):
        market_metrics_frames([{"symbol": "SPY"}, {"implied-volatility-index": "0.2"}], as_of_date=AS_OF, fetched_at=FETCHED_AT)
    with pytest.raises(TastytradeDataError, match=r"'SPY'\) expiration 0: missing required field 'expiration-date'"):
        market_metrics_frames(
            [{"symbol": "SPY", "option-expiration-implied-volatilities": [{"implied-volatility": "0.2"}]}],
            as_of_date=AS_OF,
            fetched_at=FETCHED_AT,
        )


# --------------------------------------------------------------------------------------------
# Schemas
# --------------------------------------------------------------------------------------------


def failed_checks(outcome: Any) -> set[str]:
    return set(outcome.failure_cases["check"].astype(str))


def test_positions_schema_rejects_bad_rows() -> None:
    items = [future_option(**{"symbol": f"./ZNH6 OZNG6 260123P11{i}"}) for i in range(5)]
    frame = positions_frame(items, as_of_date=AS_OF, fetched_at=FETCHED_AT)
    frame.loc[0, "quantity"] = np.nan
    frame.loc[1, "quantity"] = 1.0  # a Short with a positive quantity
    frame.loc[2, "multiplier"] = 0
    frame.loc[3, "instrument_type"] = "Unknown"
    outcome = validate_frame(PositionsSchema, frame, "positions")
    assert not outcome.ok
    assert {"not_nullable", "quantity_sign_matches_direction", "greater_than(0)"} <= failed_checks(outcome)
    assert any(check.startswith("isin") for check in failed_checks(outcome))
    assert len(outcome.quarantined) == 4 and len(outcome.valid) == 1
    assert "quantity_sign_matches_direction" in outcome.summary(limit=50)


def test_positions_schema_rejects_duplicates_and_missing_columns() -> None:
    frame = positions_frame([future_option(), future_option()], as_of_date=AS_OF, fetched_at=FETCHED_AT)
    outcome = validate_frame(PositionsSchema, frame, "positions")
    assert "multiple_fields_uniqueness" in failed_checks(outcome) and outcome.valid.empty
    outcome = validate_frame(PositionsSchema, frame.iloc[:1].drop(columns=["multiplier"]), "positions")
    assert "column_in_dataframe" in failed_checks(outcome) and outcome.valid.empty


def test_metrics_schema_rejects_percent_leaks_nan_rank_and_duplicates() -> None:
    items = recorded_items("market_metrics.json")
    metrics, term = market_metrics_frames(items, as_of_date=AS_OF, fetched_at=FETCHED_AT)
    metrics.loc[0, "hv_30_day"] = 20.02  # a percent where a fraction belongs
    metrics.loc[1, "liquidity_rating"] = 7
    outcome = validate_frame(MarketMetricsSchema, metrics, "market_metrics")
    assert {"in_range(0.0, 5.0)", "in_range(0, 5)"} <= failed_checks(outcome)
    assert set(outcome.failure_cases["column"]) == {"hv_30_day", "liquidity_rating"}

    doubled, _ = market_metrics_frames(items + items[:1], as_of_date=AS_OF, fetched_at=FETCHED_AT)
    assert "multiple_fields_uniqueness" in failed_checks(validate_frame(MarketMetricsSchema, doubled, "market_metrics"))

    metrics, _ = market_metrics_frames(items, as_of_date=AS_OF, fetched_at=FETCHED_AT)
    metrics.loc[0, "beta"] = np.inf
    assert "finite" in failed_checks(validate_frame(MarketMetricsSchema, metrics, "market_metrics"))


def test_term_structure_schema_rejects_out_of_range_and_duplicates() -> None:
    _, term = market_metrics_frames(recorded_items("market_metrics.json"), as_of_date=AS_OF, fetched_at=FETCHED_AT)
    bad = term.copy()
    bad.loc[0, "implied_volatility"] = 28.8
    bad.loc[1, "settlement_type"] = np.nan
    outcome = validate_frame(TermStructureSchema, bad, "iv_term_structure")
    assert {"in_range(0.0, 5.0)", "not_nullable"} <= failed_checks(outcome)
    assert len(outcome.quarantined) == 2
    doubled = pd.concat([term, term.iloc[:1]], ignore_index=True)
    assert "multiple_fields_uniqueness" in failed_checks(validate_frame(TermStructureSchema, doubled, "iv_term_structure"))
