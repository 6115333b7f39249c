"""The Tastytrade client over real HTTP on loopback: endpoints, tokens, retries.

The server is the project's simulator (``variance_pipeline.simulator``) replaying the recorded
responses verbatim (byte for byte) from a copy of ``fixtures/recorded/tastytrade``, accepting one
pair of credentials, as the API does. What a test scripts (statuses, Retry-After, a body cut in
half, a careless server that echoes what it was sent) is a fault rule, and what the client sent
(paths and queries as on the wire, headers, the token request's body) is read from the
simulator's request log. The client under test is the real one (httpx, send_with_retry, OAuth).
"""

from __future__ import annotations

import email.utils
import json
import shutil
from contextlib import ExitStack
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import urlsplit

import pytest

from support import recorded_bytes, recorded_items
from variance_pipeline.simulator import SimulatorServer
from variance_pipeline.simulator.faults import parse_rules
from variance_pipeline.sources.http import RequestStats, RetryPolicy, SourceError
from variance_pipeline.sources.tastytrade import (
    TastytradeAuthError,
    TastytradeClient,
    TastytradeCredentials,
)

SECRET = "client-secret-3f9a"
REFRESH = "refresh-token-77c1"
FAST = RetryPolicy(max_attempts=4, base_delay=0.001, max_delay=30.0, max_total_wait=60.0, timeout=5.0)
TOKEN = "/oauth/token"


# --------------------------------------------------------------------------------------------
# The simulator, replaying the recorded Tastytrade answers
# --------------------------------------------------------------------------------------------


@pytest.fixture
def folder(tmp_path: Path, recorded_dir: Path) -> Path:
    """A replay folder of recorded answers, copied byte for byte: the accounts, the market metrics
    and ``positions.json`` as the positions of 5YZ55555 (every other account holds nothing).
    A test may add or replace files before it starts a server on it."""
    tasty = tmp_path / "tastytrade"
    tasty.mkdir()
    for recorded, name in (
        ("customer_accounts.json", "customer_accounts.json"),
        ("market_metrics.json", "market_metrics.json"),
        ("positions.json", "positions_5YZ55555.json"),
    ):
        shutil.copyfile(recorded_dir / "tastytrade" / recorded, tasty / name)
    return tmp_path


@pytest.fixture
def serve(folder: Path) -> Iterator[Callable[..., SimulatorServer]]:
    """Starts a simulator on ``folder`` that accepts only SECRET and REFRESH (``SimulatorServer``
    keyword arguments pass through); every one started is stopped after the test."""
    with ExitStack() as servers:

        def start(**options: Any) -> SimulatorServer:
            server = SimulatorServer(
                replay_dir=folder, verbatim=True, client_secret=SECRET, refresh_token=REFRESH, **options
            )
            return servers.enter_context(server)

        yield start


@pytest.fixture
def tasty(serve: Callable[..., SimulatorServer]) -> SimulatorServer:
    return serve()


def install(sim: SimulatorServer, *rules: dict[str, Any]) -> None:
    """Replace the simulator's fault rules (``simulator/faults.py``) by ``rules``, in this order."""
    sim.faults.replace(parse_rules(list(rules)))


def sent_to(sim: SimulatorServer, path: str) -> list[dict[str, Any]]:
    """The logged requests to ``path`` (decoded), in order."""
    return [entry for entry in sim.requests.entries() if entry["path"] == path]


def data_requests(sim: SimulatorServer) -> list[dict[str, Any]]:
    """The logged requests other than token requests, in order."""
    return [entry for entry in sim.requests.entries() if entry["path"] != TOKEN]


def grants(sim: SimulatorServer) -> list[dict[str, Any]]:
    """The bodies of the token requests, in order."""
    return [json.loads(entry["body"]) for entry in sent_to(sim, TOKEN)]


def bearer(sim: SimulatorServer, index: int) -> str:
    """The Authorization header of the ``index``-th access token the simulator issued (0 = first)."""
    return f"Bearer {sim.oauth.tokens.issued()[index]}"


def on_the_wire(entry: dict[str, Any]) -> tuple[str, str]:
    """A logged request's path and query as sent (still percent-encoded)."""
    parts = urlsplit(entry["target"])
    return parts.path, parts.query


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def client_for(sim: SimulatorServer, **kwargs: Any) -> tuple[TastytradeClient, list[float]]:
    """A real client on the simulator; its sleeps are recorded instead of slept."""
    slept: list[float] = []
    credentials = kwargs.pop("credentials", TastytradeCredentials(client_secret=SECRET, refresh_token=REFRESH))
    client = TastytradeClient(sim.url, credentials, policy=kwargs.pop("policy", FAST), sleep=slept.append, **kwargs)
    return client, slept


# --------------------------------------------------------------------------------------------
# Client: endpoints
# --------------------------------------------------------------------------------------------


def test_accounts_positions_and_raw_bodies_untouched(tasty: SimulatorServer) -> None:
    client, _ = client_for(tasty, accept_version="20250101")
    with client:
        accounts = client.accounts()
        positions = client.positions("5YZ55555")
    assert [a["account-number"] for a in accounts.items] == ["5YZ55555", "5WW55555", "5WZ55555"]
    assert accounts.raw[0].name == "accounts.json"
    assert accounts.raw[0].body == recorded_bytes("tastytrade/customer_accounts.json")
    assert positions.raw[0].body == recorded_bytes("tastytrade/positions.json")
    assert positions.raw[0].name == "positions_5YZ55555.json"
    assert positions.items[0]["symbol"] == "RIVN  230609P00014000"
    assert grants(tasty) == [{"grant_type": "refresh_token", "refresh_token": REFRESH, "client_secret": SECRET}]
    for request in tasty.requests.entries():
        assert request["headers"]["user-agent"].startswith("variance-pipeline/")
    assert len(data_requests(tasty)) == 2
    for request in data_requests(tasty):
        assert request["headers"]["authorization"] == bearer(tasty, 0)
        assert request["headers"]["accept-version"] == "20250101"


def test_client_id_is_sent_when_configured(tasty: SimulatorServer) -> None:
    credentials = TastytradeCredentials(client_secret=SECRET, refresh_token=REFRESH, client_id="app-1")
    client, _ = client_for(tasty, credentials=credentials)
    with client:
        client.accounts()
    assert grants(tasty)[0]["client_id"] == "app-1"
    assert "accept-version" not in data_requests(tasty)[0]["headers"]


def test_closed_accounts_are_skipped(folder: Path, serve: Callable[..., SimulatorServer]) -> None:
    recorded = folder / "tastytrade" / "customer_accounts.json"
    payload = json.loads(recorded.read_bytes())
    payload["data"]["items"][1]["account"]["is-closed"] = True
    body = json.dumps(payload).encode()
    recorded.write_bytes(body)
    client, _ = client_for(serve())
    with client:
        accounts = client.accounts()
    assert [a["account-number"] for a in accounts.items] == ["5YZ55555", "5WZ55555"]
    assert accounts.raw[0].body == body  # the raw copy still says what the API said


def test_pagination_is_followed(folder: Path, serve: Callable[..., SimulatorServer]) -> None:
    items = recorded_items("tastytrade/positions.json")
    held = [{**items[0], "symbol": f"RIVN  230609P0001{i}000"} for i in range(5)]
    (folder / "tastytrade" / "positions_5WW55555.json").write_text(json.dumps({"data": {"items": held}}))
    sim = serve(per_page=2)
    client, _ = client_for(sim)
    with client:
        fetched = client.positions("5WW55555")
    assert len(fetched.items) == 5
    assert [item["symbol"] for item in fetched.items] == [item["symbol"] for item in held]
    assert [on_the_wire(r)[1] for r in sent_to(sim, "/accounts/5WW55555/positions")] == [
        "include-marks=true",
        "include-marks=true&page-offset=1",
        "include-marks=true&page-offset=2",
    ]
    assert [r.name for r in fetched.raw] == [
        "positions_5WW55555.json",
        "positions_5WW55555.page-1.json",
        "positions_5WW55555.page-2.json",
    ]


def test_account_number_is_url_encoded(tasty: SimulatorServer) -> None:
    client, _ = client_for(tasty)
    with client:
        fetched = client.positions("5Y/Z 9")
    assert fetched.items == ()
    assert on_the_wire(data_requests(tasty)[0])[0] == "/accounts/5Y%2FZ%209/positions"
    assert fetched.raw[0].name == "positions_5Y_Z_9.json"


def test_market_metrics_batches_encodes_and_reports_missing(tasty: SimulatorServer) -> None:
    symbols = ["/ES", *[f"SYM{i}" for i in range(247)], "AAPL", "TSLA", "BRK/B", "AAPL"]
    client, _ = client_for(tasty)
    with client:
        fetched = client.market_metrics(symbols)
    requests = sent_to(tasty, "/market-metrics")
    assert [len(r["query"]["symbols"].split(",")) for r in requests] == [100, 100, 51]
    assert on_the_wire(requests[0])[1].startswith("symbols=%2FES,SYM0,SYM1,")
    assert on_the_wire(requests[2])[1].endswith(",AAPL,TSLA,BRK%2FB")
    assert sorted(i["symbol"] for i in fetched.items) == ["AAPL", "TSLA"]
    assert fetched.missing[0] == "/ES" and "BRK/B" in fetched.missing and len(fetched.missing) == 249
    assert [r.name for r in fetched.raw] == [f"market_metrics.batch-00{i}.json" for i in range(3)]
    assert len(sent_to(tasty, TOKEN)) == 1


def test_market_metrics_of_nothing_asks_nothing(tasty: SimulatorServer) -> None:
    client, _ = client_for(tasty)
    with client:
        fetched = client.market_metrics([])
        with pytest.raises(ValueError, match="batch_size"):
            client.market_metrics(["SPY"], batch_size=0)
    assert (fetched.items, fetched.missing, tasty.requests.entries()) == ((), (), [])


# --------------------------------------------------------------------------------------------
# Client: tokens
# --------------------------------------------------------------------------------------------


def test_token_is_cached_across_calls(tasty: SimulatorServer) -> None:
    client, _ = client_for(tasty)
    with client:
        client.accounts()
        for _ in range(4):
            client.positions("5YZ55555")
        client.market_metrics(["AAPL"])
    assert len(sent_to(tasty, TOKEN)) == 1
    assert len(data_requests(tasty)) == 6


def test_token_is_refreshed_shortly_before_expiry(tasty: SimulatorServer) -> None:
    clock = Clock()
    client, _ = client_for(tasty, clock=clock)
    with client:
        client.accounts()
        clock.now += 900 - 60 - 1  # still inside the token's life minus the 60 s margin
        client.accounts()
        assert len(sent_to(tasty, TOKEN)) == 1
        clock.now += 2  # within the margin: refresh before the server would refuse it
        client.accounts()
    assert len(sent_to(tasty, TOKEN)) == 2
    assert data_requests(tasty)[-1]["headers"]["authorization"] == bearer(tasty, 1)


def test_short_lived_token_uses_a_ten_percent_margin(serve: Callable[..., SimulatorServer]) -> None:
    sim = serve(token_ttl=100)
    clock = Clock()
    client, _ = client_for(sim, clock=clock)
    with client:
        client.accounts()
        clock.now += 89
        client.accounts()
        clock.now += 2
        client.accounts()
    assert len(sent_to(sim, TOKEN)) == 2


def test_401_refreshes_once_and_retries_once(tasty: SimulatorServer) -> None:
    client, _ = client_for(tasty)
    with client:
        client.accounts()
        tasty.oauth.tokens.revoke_all()  # the server expired the token early
        accounts = client.accounts()
    assert len(accounts.items) == 3
    assert len(sent_to(tasty, TOKEN)) == 2
    assert [r["headers"]["authorization"] for r in data_requests(tasty)] == [
        bearer(tasty, 0),
        bearer(tasty, 0),
        bearer(tasty, 1),
    ]


def test_a_second_401_is_an_error_not_a_loop(tasty: SimulatorServer) -> None:
    install(tasty, {"endpoint": "accounts", "kind": "401"})  # every token refused
    client, _ = client_for(tasty)
    with client, pytest.raises(SourceError, match="401 even with a freshly refreshed") as info:
        client.accounts()
    assert info.value.status == 401 and info.value.path == "/customers/me/accounts"
    assert len(sent_to(tasty, TOKEN)) == 2
    assert len(data_requests(tasty)) == 2


@pytest.mark.parametrize("status", [400, 401])
def test_rejected_refresh_fails_fast_without_leaking_secrets(tasty: SimulatorServer, status: int) -> None:
    credentials = TastytradeCredentials(client_secret="wrong-secret-A1", refresh_token="wrong-refresh-B2")
    # A careless server that echoes what it was sent: the client must not pass it on.
    rules: list[dict[str, Any]] = [{"endpoint": "oauth", "kind": "echo"}]
    if status == 400:
        body = {"error": "invalid_grant", "error_description": "wrong-refresh-B2"}
        rules.append({"endpoint": "oauth", "kind": "reply", "status": 400, "body": body, "count": 1})
    install(tasty, *rules)
    client, slept = client_for(tasty, credentials=credentials)
    with client, pytest.raises(TastytradeAuthError) as info:
        client.accounts()
    message = str(info.value)
    assert "TASTYTRADE_CLIENT_SECRET" in message and "TASTYTRADE_REFRESH_TOKEN" in message
    assert "TASTYTRADE_CLIENT_ID" in message and "invalid_grant" in message
    assert "wrong-secret-A1" not in message and "wrong-refresh-B2" not in message
    assert info.value.status == status
    assert tasty.faults.describe()[0]["fired"] == 1  # the server did echo the credentials
    assert [r["status"] for r in tasty.requests.entries()] == [status] and slept == []


@pytest.mark.parametrize("padding", [0, 176])  # 176: the secret straddles the 200-character cut
def test_token_endpoint_server_error_does_not_leak_secrets(tasty: SimulatorServer, padding: int) -> None:
    echo = {"error": "server_error", "error_description": f"{'x' * padding}{SECRET} / {REFRESH}"}
    install(tasty, {"endpoint": "oauth", "kind": "reply", "status": 501, "body": echo, "count": 1})
    client, _ = client_for(tasty)
    with client, pytest.raises(SourceError, match="HTTP 501") as info:
        client.accounts()
    message = str(info.value)
    assert "server_error" in message
    assert SECRET[:6] not in message and REFRESH[:6] not in message


def test_rotated_refresh_token_is_sent_next_and_never_leaks(serve: Callable[..., SimulatorServer]) -> None:
    sim = serve(rotate_refresh_tokens=True)
    clock = Clock()
    client, _ = client_for(sim, clock=clock)
    with client:
        client.accounts()
        rotated = sim.oauth.refresh_token  # what the grant answered beside the access token
        # The server now refuses the rotated token, echoing it in the error as a careless one would.
        install(sim, {"endpoint": "oauth", "kind": "401"}, {"endpoint": "oauth", "kind": "echo"})
        clock.now += 900  # expired: the next call refreshes with the rotated token
        with pytest.raises(TastytradeAuthError) as info:
            client.accounts()
    assert rotated is not None and rotated != REFRESH
    assert grants(sim)[1]["refresh_token"] == rotated
    assert "invalid_grant" in str(info.value) and rotated not in str(info.value)


def test_credentials_repr_hides_values() -> None:
    credentials = TastytradeCredentials(client_secret=SECRET, refresh_token=REFRESH, client_id="app-1")
    for text in (repr(credentials), str(credentials), f"{credentials}"):
        assert SECRET not in text and REFRESH not in text and "app-1" not in text


# --------------------------------------------------------------------------------------------
# Client: retries
# --------------------------------------------------------------------------------------------


def test_429_retry_after_seconds_is_honoured(tasty: SimulatorServer) -> None:
    install(tasty, {"endpoint": "accounts", "kind": "429", "retry_after": 7, "count": 1})
    stats = RequestStats()
    client, slept = client_for(tasty, stats=stats)
    with client:
        assert len(client.accounts().items) == 3
    assert slept == [7.0]
    assert stats.retries == 1 and stats.statuses[429] == 1


def test_429_retry_after_http_date_is_honoured(tasty: SimulatorServer) -> None:
    when = datetime.now(timezone.utc) + timedelta(seconds=5)
    retry_after = email.utils.format_datetime(when, usegmt=True)
    install(tasty, {"endpoint": "accounts", "kind": "429", "retry_after": retry_after, "count": 1})
    client, slept = client_for(tasty)
    with client:
        client.accounts()
    assert len(slept) == 1 and 3.0 < slept[0] <= 5.0


def test_429_without_retry_after_backs_off(tasty: SimulatorServer) -> None:
    install(tasty, {"endpoint": "accounts", "kind": "429", "count": 2})
    client, slept = client_for(tasty)
    with client:
        client.accounts()
    # Full jitter within base_delay * 2**attempt.
    assert len(slept) == 2 and 0 <= slept[0] <= 0.001 and 0 <= slept[1] <= 0.002


def test_5xx_then_success(tasty: SimulatorServer) -> None:
    install(
        tasty,
        {"endpoint": "market-metrics", "kind": "503", "count": 1},
        {"endpoint": "market-metrics", "kind": "500", "count": 1},
    )
    stats = RequestStats()
    client, slept = client_for(tasty, stats=stats)
    with client:
        fetched = client.market_metrics(["AAPL"])
    assert [i["symbol"] for i in fetched.items] == ["AAPL"]
    assert len(slept) == 2 and stats.statuses == {200: 2, 503: 1, 500: 1}


def test_persistent_5xx_gives_up_with_the_path(tasty: SimulatorServer) -> None:
    install(tasty, {"endpoint": "accounts", "kind": "503", "count": FAST.max_attempts})
    client, _ = client_for(tasty)
    with client, pytest.raises(SourceError, match=r"/customers/me/accounts answered HTTP 503") as info:
        client.accounts()
    assert info.value.status == 503
    assert len(sent_to(tasty, "/customers/me/accounts")) == FAST.max_attempts


def test_malformed_json_names_the_path(tasty: SimulatorServer) -> None:
    install(tasty, {"endpoint": "positions", "kind": "truncated", "count": 1})  # the body cut in half
    client, _ = client_for(tasty)
    with client, pytest.raises(SourceError, match=r"GET /accounts/5YZ55555/positions: response is not valid JSON"):
        client.positions("5YZ55555")


def test_unexpected_envelope_names_the_path(tasty: SimulatorServer) -> None:
    envelope = {"data": {"symbols": []}}
    install(tasty, {"endpoint": "market-metrics", "kind": "reply", "status": 200, "body": envelope, "count": 1})
    client, _ = client_for(tasty)
    with client, pytest.raises(SourceError, match=r"GET /market-metrics: response has no data.items"):
        client.market_metrics(["AAPL"])
