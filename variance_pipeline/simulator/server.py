"""The HTTP side: routing, User-Agent/bearer checks, faults, pagination, the request log.

Tastytrade endpoints (request-log and fault names in brackets): ``POST /oauth/token`` (oauth),
``GET /customers/me/accounts`` (accounts), ``/accounts/{n}/positions`` (positions),
``/accounts/{n}/balances[/{currency}]`` (balances), ``/margin/accounts/{n}/requirements``
(margin-requirements), ``/accounts/{n}/trading-status`` (trading-status), ``/market-metrics``
(market-metrics), ``/market-data/by-type`` (market-data), the account's history
``/accounts/{n}/transactions`` (transactions), ``/accounts/{n}/net-liq/history`` (net-liq-history) and
``/accounts/{n}/balance-snapshots`` (balance-snapshots), the public
``/margin-requirements-public-configuration`` (risk-free-rate) and the earnings history
(earnings); Yahoo's ``/v8/finance/chart/{symbol}`` (chart).

One ``SimulatorServer`` serves both APIs (Tastytrade paths and Yahoo's ``/v8/finance/chart``)
on one port, so the pipeline points ``TASTYTRADE_API_URL`` and ``YAHOO_CHART_URL`` at the same
URL. Admin paths live under ``/_sim/`` and are not recorded in the request log, so tests count
only what the pipeline asked for.

Admin paths: ``GET /_sim/health``; ``GET|DELETE /_sim/requests``; ``GET|POST|DELETE /_sim/faults``;
``GET|POST|DELETE /_sim/clock``; ``GET|DELETE /_sim/tokens`` (the access tokens issued, oldest
first, and the refresh token required; DELETE revokes every access token: ``auth``);
``GET|POST|DELETE /_sim/delisted`` (synthetic market only: POST a JSON list of symbols, either
spelling, to *replace* the delisted set; DELETE restores ``backend.DEFAULT_DELISTED``; each answers
the set now in force, sorted).

The request log keeps, per request: ``method``, ``endpoint``, ``path`` (decoded), ``target`` (path
and query exactly as sent, percent-encoding and order kept), ``query`` (decoded, last value per
key), ``headers`` (names lower-cased), ``body`` (the request's body as text; a token request's holds
its credentials), ``status``, ``time`` and the ``faults`` that fired.

Positions are paged as Tastytrade pages them: when the client asks (``per-page``) or when the list
is longer than one page of the server's ``per_page`` (default ``DEFAULT_PER_PAGE``).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import secrets
import threading
import time
from collections import deque
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterable, Mapping
from urllib.parse import parse_qs, unquote, urlsplit

from variance_pipeline.simulator.auth import OAuth, TokenStore
from variance_pipeline.simulator.backend import DEFAULT_DELISTED, Backend, SyntheticBackend
from variance_pipeline.simulator.faults import (
    ANSWER_KINDS,
    REWRITE_KINDS,
    FaultRule,
    FaultStore,
    alter_body,
    echo_request,
    error_reply,
    parse_rules,
)
from variance_pipeline.simulator.formats import Reply, iso_z, paginate, tt_error
from variance_pipeline.simulator.portfolio import Template
from variance_pipeline.simulator.replay import ReplayBackend

DEFAULT_PER_PAGE = 250
SHUTDOWN_POLL = 0.05
"""Seconds between the serving loop's looks at a stop request (the stdlib's 0.5 s made every
``stop()``, so every test that starts a server of its own, half a second slower)."""
REQUEST_LOG_CAP = 100_000
"""Entries the request log keeps (~1.3 kB each with their headers, so at most ~130 MB). Tests and
benchmarks count far fewer; ``make dev`` runs for days, so past the cap the oldest entries go
instead of memory growing."""


class RequestLog:
    """The API requests served, in order (the newest ``REQUEST_LOG_CAP``): what tests and benchmarks count."""

    def __init__(self, cap: int = REQUEST_LOG_CAP) -> None:
        self._entries: deque[dict[str, Any]] = deque(maxlen=cap)
        self._lock = threading.Lock()

    def add(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self._entries.append(entry)

    def entries(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._entries)

    def by_endpoint(self) -> dict[str, int]:
        """Requests served per endpoint name (``oauth``, ``accounts``, ``positions``, ``chart``, ...)."""
        counts: dict[str, int] = {}
        for entry in self.entries():
            name = entry.get("endpoint") or "unrouted"
            counts[name] = counts.get(name, 0) + 1
        return counts

    def clear(self) -> int:
        with self._lock:
            count = len(self._entries)
            self._entries.clear()
            return count


class SimulatorApp:
    """Transport-free request handling: (method, target, headers, body) -> Reply."""

    def __init__(
        self,
        backend: Backend,
        oauth: OAuth,
        faults: FaultStore,
        now: datetime | None = None,
        per_page: int = DEFAULT_PER_PAGE,
    ) -> None:
        self.backend = backend
        self.oauth = oauth
        self.faults = faults
        self.now = now
        self.per_page = per_page
        self.requests = RequestLog()

    def clock(self) -> datetime:
        """The market clock: fixed when ``now`` is set, else the real time of this request."""
        return self.now or datetime.now(timezone.utc)

    def handle(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> Reply:
        parts = urlsplit(target)
        segments = [unquote(s) for s in parts.path.split("/")[1:]]
        query = {key: values[-1] for key, values in parse_qs(parts.query, keep_blank_values=True).items()}
        for key, values in parse_qs(parts.query, keep_blank_values=True).items():
            if key in MARKET_DATA_KEYS and len(values) > 1:  # the SDK repeats a key per symbol
                query[key] = ",".join(values)
        if segments and segments[0] == "_sim":
            return self._admin(method, segments[1:], body)
        fired: list[FaultRule] = []
        try:
            reply = self._api(method, segments, query, headers, body, fired)
        except Exception as exc:  # a simulator bug must still answer, and show up in the log
            reply = Reply(500, tt_error("simulator_error", f"{type(exc).__name__}: {exc}"))
        sent = body.decode("utf-8", errors="replace")
        if reply.status >= 400 and any(rule.kind == "echo" for rule in fired):
            reply = echo_request(reply, sent or target)
        route = _route(method, segments, query)
        self.requests.add(
            {
                "method": method,
                "endpoint": route[0] if route else None,  # oauth, accounts, positions, chart, ...
                "path": unquote(parts.path),
                "target": target,
                "raw_path": parts.path,  # as sent, still percent-encoded (``/v8/finance/chart/%5ESPX``)
                "query": query,
                "headers": {name.lower(): value for name, value in headers.items()},
                "body": sent,
                "status": reply.status,
                "time": datetime.now(timezone.utc).isoformat(),
                "faults": [rule.kind for rule in fired],
            }
        )
        return reply

    def _api(
        self,
        method: str,
        segments: list[str],
        query: dict[str, str],
        headers: Mapping[str, str],
        body: bytes,
        fired: list[FaultRule],
    ) -> Reply:
        route = _route(method, segments, query)
        if route is None:
            return Reply(404, tt_error("not_found", f"No route for {method} /{'/'.join(segments)}"))
        endpoint, symbols = route
        if endpoint != "chart":  # every Tastytrade endpoint, the public configuration included
            missing_agent = self.oauth.check_user_agent(headers)
            if missing_agent is not None:
                return missing_agent
        fired.extend(self.faults.fire(endpoint, symbols, _page_offset(query)))  # all of them: an echo may follow the error
        for rule in fired:
            if rule.kind == "slow":
                time.sleep(rule.delay)
            elif rule.kind in ANSWER_KINDS:
                return error_reply(rule, endpoint)
        if endpoint == "oauth":
            reply = self.oauth.grant(body, headers)
        else:
            if endpoint not in PUBLIC_ENDPOINTS:
                denied = self.oauth.check_token(headers)
                if denied is not None:
                    return denied
            reply = self._serve(endpoint, segments, query, symbols)
        if reply.status != 200:
            return reply
        rewrites = [rule for rule in fired if rule.kind in REWRITE_KINDS]
        if rewrites:
            body = copy.deepcopy(reply.body)  # backends may hand out cached bodies
            for rule in rewrites:
                alter_body(rule, body, endpoint)
            reply = dataclasses.replace(reply, body=body, raw=None)
        if any(rule.kind == "truncated" for rule in fired):
            reply = dataclasses.replace(reply, truncate=True)
        return reply

    def _serve(self, endpoint: str, segments: list[str], query: dict[str, str], symbols: list[str]) -> Reply:
        clock = self.clock()
        if endpoint == "accounts":
            return self.backend.accounts(clock)
        if endpoint == "positions":
            include_marks = query.get("include-marks", "").strip().lower() == "true"
            reply = self.backend.positions(segments[1], clock, include_marks=include_marks)
            return _paginated(reply, query, self.per_page) if reply.status == 200 else reply
        if endpoint == "market-metrics":
            return self.backend.market_metrics(symbols, clock)
        if endpoint == "risk-free-rate":
            return self.backend.margin_configuration(clock)
        if endpoint == "earnings":
            return self.backend.earnings(symbols[0], query, clock)
        if endpoint == "balances":
            return self.backend.balances(segments[1], segments[3] if len(segments) > 3 else None, clock)
        if endpoint == "margin-requirements":
            return self.backend.margin_requirements(segments[2], clock)
        if endpoint == "trading-status":
            return self.backend.trading_status(segments[1], clock)
        if endpoint == "market-data":
            return self.backend.market_data(query, clock)
        if endpoint == "quote-token":
            return _quote_token(clock)
        if endpoint == "transactions":
            return self.backend.transactions(segments[1], query, clock)
        if endpoint == "net-liq-history":
            return self.backend.net_liq_history(segments[1], query, clock)
        if endpoint == "balance-snapshots":
            return self.backend.balance_snapshots(segments[1], query, clock)
        return self.backend.chart(segments[3], query, clock)

    def _admin(self, method: str, segments: list[str], body: bytes) -> Reply:
        name = segments[0] if segments else ""
        if (method, name) == ("GET", "health"):
            return Reply(200, {"ok": True})
        if name == "requests" and method in ("GET", "DELETE"):
            return Reply(200, self.requests.entries() if method == "GET" else {"cleared": self.requests.clear()})
        if name == "tokens" and method in ("GET", "DELETE"):
            if method == "DELETE":
                return Reply(200, {"revoked": self.oauth.tokens.revoke_all()})
            return Reply(200, {"access": self.oauth.tokens.issued(), "refresh_token": self.oauth.refresh_token})
        if name == "faults" and method in ("GET", "POST", "DELETE"):
            if method == "POST":
                try:
                    self.faults.replace(parse_rules(json.loads(body or b"null")))
                except (ValueError, TypeError) as exc:
                    return Reply(400, {"error": str(exc)})
            elif method == "DELETE":
                self.faults.clear()
            return Reply(200, self.faults.describe())
        if name == "clock" and method in ("GET", "POST", "DELETE"):
            # Replays of past evenings step the market clock: POST {"now": ISO-8601 with offset};
            # DELETE goes back to the real time.
            if method == "POST":
                try:
                    doc = json.loads(body or b"null")
                    value = datetime.fromisoformat(str(doc["now"]).replace("Z", "+00:00"))
                except (ValueError, TypeError, KeyError) as exc:
                    return Reply(400, {"error": f"expected {{\"now\": \"2025-11-24T22:00:00+00:00\"}}: {exc}"})
                if value.tzinfo is None:
                    return Reply(400, {"error": "now needs a UTC offset, e.g. +00:00"})
                self.now = value
            elif method == "DELETE":
                self.now = None
            return Reply(200, {"now": self.now.isoformat() if self.now else None})
        if name == "delisted" and method in ("GET", "POST", "DELETE"):
            if not isinstance(self.backend, SyntheticBackend):
                return Reply(400, {"error": "delisted applies to the synthetic market, not to a replay"})
            if method == "POST":
                try:
                    names = json.loads(body or b"null")
                except ValueError as exc:
                    return Reply(400, {"error": f"expected a JSON list of symbols: {exc}"})
                if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                    return Reply(400, {"error": "expected a JSON list of symbols, e.g. [\"NOPE\", \"BRK/B\"]"})
                self.backend.delisted = names
            elif method == "DELETE":
                self.backend.delisted = DEFAULT_DELISTED
            return Reply(200, sorted(self.backend.delisted))
        return Reply(404, {"error": f"no admin route {method} /_sim/{'/'.join(segments)}"})


PUBLIC_ENDPOINTS = frozenset({"chart", "risk-free-rate"})
MARKET_DATA_KEYS = frozenset({"equity", "index", "future", "equity-option", "future-option", "cryptocurrency"})
"""Endpoints answered without a bearer token (Tastytrade's still need the User-Agent)."""
EARNINGS_PATH = ["market-metrics", "historic-corporate-events", "earnings-reports"]


def _route(method: str, segments: list[str], query: Mapping[str, str]) -> tuple[str, list[str]] | None:
    """(endpoint name, symbols the request concerns) for a known API route."""
    if method == "GET" and segments[:3] == EARNINGS_PATH and len(segments) > 3:
        symbol = "/".join(segments[3:])  # ``%2FES`` arrives decoded; a raw ``BRK/B`` splits: rejoin
        return ("earnings", [symbol]) if symbol.strip("/") else None
    match (method, segments):
        case ("POST", ["oauth", "token"]):
            return "oauth", []
        case ("GET", ["customers", "me", "accounts"]):
            return "accounts", []
        case ("GET", ["accounts", str(), "positions"]):
            return "positions", []
        case ("GET", ["margin-requirements-public-configuration"]):
            return "risk-free-rate", []
        case ("GET", ["market-metrics"]):
            return "market-metrics", [s.strip() for s in query.get("symbols", "").split(",") if s.strip()]
        case ("GET", ["accounts", str(), "balances"]) | ("GET", ["accounts", str(), "balances", str()]):
            return "balances", []
        case ("GET", ["margin", "accounts", str(), "requirements"]):
            return "margin-requirements", []
        case ("GET", ["accounts", str(), "trading-status"]):
            return "trading-status", []
        case ("GET", ["api-quote-tokens"]):
            return "quote-token", []
        case ("GET", ["accounts", str(), "transactions"]):
            return "transactions", []
        case ("GET", ["accounts", str(), "net-liq", "history"]):
            return "net-liq-history", []
        case ("GET", ["accounts", str(), "balance-snapshots"]):
            return "balance-snapshots", []
        case ("GET", ["market-data", "by-type"]):
            keys = sorted(MARKET_DATA_KEYS)
            return "market-data", [s.strip() for k in keys for s in query.get(k, "").split(",") if s.strip()]
        case ("GET", ["v8", "finance", "chart", str(ticker)]) if ticker:
            return "chart", [ticker]
    return None


def _page_offset(query: Mapping[str, str]) -> int:
    """The request's ``page-offset`` (0 when absent or unreadable): fault rules may target a page."""
    try:
        return max(0, int(query.get("page-offset") or 0))
    except ValueError:
        return 0


def _quote_token(clock: datetime) -> Reply:
    """``GET /api-quote-tokens``: a streaming grant as the recorded response has it (a random token,
    the dxLink URL, level ``api``) plus the spec's issue and expiry times; the simulator streams nothing."""
    issued = clock.astimezone(timezone.utc)
    data = {
        "token": secrets.token_urlsafe(24),
        "dxlink-url": "wss://tasty-openapi-ws.dxfeed.com/realtime",
        "level": "api",
        "issued-at": iso_z(issued),
        "expires-at": iso_z(issued + timedelta(hours=24)),
    }
    return Reply(200, {"data": data, "context": "/api-quote-tokens"})


def _paginated(reply: Reply, query: Mapping[str, str], default_per_page: int) -> Reply:
    """Tastytrade pages only when asked (``per-page``) or when the list exceeds one page."""
    try:
        per_page = max(1, int(query.get("per-page", default_per_page)))
        page_offset = max(0, int(query.get("page-offset", 0)))
    except ValueError:
        return Reply(400, tt_error("invalid_parameter", "per-page and page-offset must be integers"))
    if "per-page" not in query and len(reply.body["data"]["items"]) <= per_page:
        return reply
    return Reply(200, paginate(reply.body, per_page, page_offset), reply.headers)


class _Handler(BaseHTTPRequestHandler):
    """Reads one request, asks the app, writes the reply (keep-alive, explicit lengths)."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    """Headers and body go out in two writes: with Nagle's algorithm the body would wait for the
    client's delayed ACK (~40 ms a request on loopback), which dominates a 500-chart run."""
    server: "_HTTPServer"

    def _dispatch(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        reply = self.server.app.handle(self.command, self.path, self.headers, body)
        if reply.raw is not None:
            payload, content_type = reply.raw, "application/json"
        elif isinstance(reply.body, str):
            payload, content_type = reply.body.encode(), "text/plain;charset=utf-8"
        else:
            payload, content_type = json.dumps(reply.body, separators=(",", ":")).encode(), "application/json"
        if reply.truncate:
            payload = payload[: len(payload) // 2]
        self.send_response(reply.status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for key, value in reply.headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_DELETE = do_PUT = _dispatch

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: /_sim/requests is the log."""


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], app: SimulatorApp) -> None:
        super().__init__(address, _Handler)
        self.app = app


class SimulatorServer:
    """The embedded simulator: ``with SimulatorServer(now=...) as sim: httpx.get(sim.url + ...)``.

    ``now`` fixes the market clock (tz-aware; None = real time per request); ``seed`` picks the
    synthetic market; ``replay_dir`` serves recorded responses instead (``verbatim``: the recorded
    accounts, positions and margin configuration byte for byte, see ``replay``); ``client_secret`` and
    ``refresh_token`` restrict OAuth to exactly those; ``token_ttl`` is the access-token life in
    real seconds; ``rotate_refresh_tokens`` answers each grant with a new refresh token, and then
    accepts only the newest; ``per_page`` is the page size of positions when the client sends no
    ``per-page``; ``faults`` pre-installs fault rules (also settable via ``/_sim/faults``);
    ``delisted`` are well-formed symbols to treat as unknown (default ``backend.DEFAULT_DELISTED``,
    also settable via ``/_sim/delisted``); ``universe`` adds that many synthetic underlyings held in
    extra accounts (``portfolio.book``; 0 = the fixed book only); ``holdings`` adds
    ``portfolio.Template`` positions (a test's own) in ``portfolio.EXTRA_ACCOUNT``.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        now: datetime | None = None,
        seed: int = 42,
        replay_dir: Path | None = None,
        client_secret: str | None = None,
        refresh_token: str | None = None,
        token_ttl: float = 900.0,
        faults: Iterable[FaultRule] = (),
        delisted: Iterable[str] | None = None,
        universe: int = 0,
        rotate_refresh_tokens: bool = False,
        per_page: int = DEFAULT_PER_PAGE,
        verbatim: bool = False,
        holdings: Iterable[Template] = (),
    ) -> None:
        if now is not None and now.tzinfo is None:
            raise ValueError("now must be timezone-aware (e.g. 2025-11-24T21:30:00+00:00)")
        if universe < 0:
            raise ValueError("universe must be >= 0")
        if per_page < 1:
            raise ValueError("per_page must be >= 1")
        if verbatim and replay_dir is None:
            raise ValueError("verbatim applies to a replay (replay_dir)")
        self.faults = FaultStore(faults)
        backend: Backend = (
            ReplayBackend(replay_dir, verbatim)
            if replay_dir is not None
            else SyntheticBackend(seed, self.faults.splits_for, delisted, universe, holdings)
        )
        oauth = OAuth(TokenStore(token_ttl), client_secret, refresh_token, rotate_refresh_tokens)
        self.app = SimulatorApp(backend, oauth, self.faults, now, per_page)
        self._address = (host, port)
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def now(self) -> datetime | None:
        """The market clock; settable on a running server (tests stepping through sessions)."""
        return self.app.now

    @now.setter
    def now(self, value: datetime | None) -> None:
        if value is not None and value.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        self.app.now = value

    @property
    def requests(self) -> RequestLog:
        return self.app.requests

    def replay_chart(self, ticker: str, body: dict[str, Any] | None) -> None:
        """Replay mode: serve ``ticker``'s chart from ``body`` from now on (None: forget it, 404)."""
        backend = self.app.backend
        if not isinstance(backend, ReplayBackend):
            raise TypeError("replay_chart needs a simulator started with replay_dir")
        backend.set_chart(ticker, body)

    @property
    def oauth(self) -> OAuth:
        """The token endpoint's state: ``oauth.tokens.issued()``, ``oauth.refresh_token``, ..."""
        return self.app.oauth

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("the simulator is not running; call start() first")
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> SimulatorServer:
        """Bind (port 0 picks a free one) and serve on a daemon thread."""
        if self._httpd is not None:
            return self
        self._httpd = _HTTPServer(self._address, self.app)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": SHUTDOWN_POLL},
            name="variance-simulator",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None
        self._thread = None

    def __enter__(self) -> SimulatorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
