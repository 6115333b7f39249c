"""The Tastytrade client over real HTTP on loopback: endpoints, tokens, retries.

The fake server below is deliberately tiny: it serves the recorded responses, checks auth the
way the API does, and lets a test script statuses per path. The client under test is the real
one (httpx, send_with_retry, OAuth), talking real HTTP to 127.0.0.1.
"""

from __future__ import annotations

import email.utils
import json
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from support import recorded_bytes as _recorded
from support import recorded_items as _recorded_items
from variance_pipeline.sources.http import RequestStats, RetryPolicy, SourceError
from variance_pipeline.sources.tastytrade import (
    TastytradeAuthError,
    TastytradeClient,
    TastytradeCredentials,
)

SECRET = "client-secret-3f9a"
REFRESH = "refresh-token-77c1"
FAST = RetryPolicy(max_attempts=4, base_delay=0.001, max_delay=30.0, max_total_wait=60.0, timeout=5.0)


def recorded_bytes(name: str) -> bytes:
    return _recorded(f"tastytrade/{name}")


def recorded_items(name: str) -> list[dict[str, Any]]:
    return _recorded_items(f"tastytrade/{name}")


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
