"""Tastytrade REST: the OAuth refresh-token client (normalisation lives in tastytrade_frames).

The client hands back every response body untouched (``RawResponse``) beside the parsed items,
so the assets can land the bronze copy before any parsing can lose what the API said.

Two Tastytrade rules shape the auth code: access tokens live about 15 minutes (so they are cached
and refreshed shortly before expiry, and once more on a 401), and failed logins get an IP blocked
for hours (so a rejected refresh token fails at once, with no retry).
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, replace
from datetime import date
from types import TracebackType
from typing import Any, Callable, Mapping, Sequence
from urllib.parse import quote

import httpx

from variance_pipeline.sources.http import (
    RawResponse,
    RequestStats,
    RetryPolicy,
    SourceError,
    json_object,
    make_client,
    send_with_retry,
)

TOKEN_PATH = "/oauth/token"
CREDENTIAL_VARIABLES = "TASTYTRADE_CLIENT_SECRET and TASTYTRADE_REFRESH_TOKEN (and TASTYTRADE_CLIENT_ID)"
DEFAULT_EXPIRES_IN = 900.0  # documented access-token lifetime, used if a response omits it
MAX_PAGES = 1000  # a server that keeps promising pages must not keep us looping
RawCallback = Callable[[RawResponse], None]

__all__ = [  # RawResponse moved to sources.http; re-exported so existing imports keep working
    "Fetched",
    "MetricsFetched",
    "RawCallback",
    "RawResponse",
    "TastytradeAuthError",
    "TastytradeClient",
    "TastytradeCredentials",
    "OAuthSession",
]


@dataclass(frozen=True, repr=False)
class TastytradeCredentials:
    """OAuth refresh-token credentials; ``repr`` shows which are set, never their values."""

    client_secret: str
    refresh_token: str
    client_id: str | None = None

    def __repr__(self) -> str:
        client_id = "<set>" if self.client_id else "None"
        return f"TastytradeCredentials(client_secret=<hidden>, refresh_token=<hidden>, client_id={client_id})"

    def redact(self, text: str) -> str:
        """``text`` with every credential value blanked, for messages built from server replies."""
        for secret in (self.client_secret, self.refresh_token, self.client_id):
            if secret:
                text = text.replace(secret, "<hidden>")
        return text


class OAuthSession:
    """The access token of one pipeline run, shared by every client (step) of that run.

    Each snapshot step used to open its own client and log in again: three or four token
    requests a run where one is the floor. A run's resource hands every client the same session,
    so a token is refreshed only when it expires or the API refuses it. It lives in memory only
    (never written to disk); the refresh token in ``credentials`` is replaced when the server
    rotates it, for every client of the run.
    """

    def __init__(self, credentials: TastytradeCredentials) -> None:
        self.credentials = credentials
        self.token: str | None = None
        self.deadline = 0.0
        self.lock = threading.Lock()

    def __repr__(self) -> str:
        return f"OAuthSession(token={'<set>' if self.token else None})"


class TastytradeAuthError(SourceError):
    """The OAuth server rejected the credentials: fix the environment; retrying would not help."""


@dataclass(frozen=True)
class Fetched:
    """Parsed ``data.items`` of one logical request (all its pages) and the bodies they came from."""

    items: tuple[dict[str, Any], ...]
    raw: tuple[RawResponse, ...]


@dataclass(frozen=True)
class MetricsFetched(Fetched):
    """Market metrics plus the requested symbols the API did not answer for (it omits unknowns)."""

    missing: tuple[str, ...] = ()


def _error_detail(
    response: httpx.Response, redact: Callable[[str], str] | None = None, limit: int = 200
) -> str:
    """A short reason from an error body (Tastytrade or OAuth shape), for the exception message.

    ``redact`` runs before the cut to ``limit``, so that a secret straddling the cut is still found.
    """
    try:
        payload = json_object(response.content)
    except ValueError:
        return ""
    error = payload.get("error")
    parts: list[str] = []
    if isinstance(error, dict):
        parts = [str(error[key]) for key in ("code", "message") if error.get(key)]
    elif isinstance(error, str):
        parts = [error]
    if isinstance(payload.get("error_description"), str):
        parts.append(payload["error_description"])
    detail = ": ".join(parts)
    if redact is not None:
        detail = redact(detail)
    detail = detail[:limit]
    return f" ({detail})" if detail else ""


def _parse_json(body: bytes, method: str, path: str) -> dict[str, Any]:
    """The body as a JSON object, or a ``SourceError`` naming the request (truncated replies happen)."""
    try:
        return json_object(body)
    except ValueError as exc:
        raise SourceError(f"{method} {path}: {exc}", path=path) from exc


def _envelope_items(payload: Mapping[str, Any], path: str) -> list[dict[str, Any]]:
    """``data.items`` of a list response, checked: a shape change must fail here, not downstream."""
    data = payload.get("data")
    items = data.get("items") if isinstance(data, dict) else None
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise SourceError(f"GET {path}: response has no data.items list of objects", path=path)
    return items


def _total_pages(payload: Mapping[str, Any], path: str) -> int | None:
    pagination = payload.get("pagination")
    if not isinstance(pagination, dict) or pagination.get("total-pages") is None:
        return None
    try:
        return int(str(pagination["total-pages"]))
    except ValueError as exc:
        raise SourceError(f"GET {path}: pagination.total-pages is not an integer", path=path) from exc


def _file_safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", text)


class TastytradeClient:
    """Accounts, positions and market metrics over OAuth, with bounded retries and token caching.

    Safe to share between threads: the token refresh is serialised, so concurrent callers never
    log in twice for the same expiry. ``clock`` and ``sleep`` are injectable for tests.
    """

    def __init__(
        self,
        base_url: str,
        credentials: TastytradeCredentials,
        *,
        policy: RetryPolicy = RetryPolicy(),
        stats: RequestStats | None = None,
        accept_version: str | None = None,
        per_page: int | None = None,
        session: OAuthSession | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if per_page is not None and per_page < 1:
            raise ValueError(f"per_page must be at least 1, got {per_page}")
        headers = {"Accept-Version": accept_version} if accept_version else None
        self._per_page = per_page
        self._http = make_client(base_url, policy, headers)
        self._session = session if session is not None else OAuthSession(credentials)
        self._policy = policy
        self.stats = stats if stats is not None else RequestStats()
        self._clock = clock
        self._sleep = sleep

    # -- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> TastytradeClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- auth --------------------------------------------------------------------------------

    @property
    def session(self) -> OAuthSession:
        """The OAuth session this client logs in through (shared by the clients of one run)."""
        return self._session

    def _access_token(self, rejected: str | None = None) -> str:
        """A live access token; ``rejected`` is one the API just refused, so never reuse it."""
        session = self._session
        with session.lock:
            if rejected is not None and session.token == rejected:
                session.token = None
            if session.token is None or self._clock() >= session.deadline:
                self._refresh_access_token()
            assert session.token is not None
            return session.token

    def _refresh_access_token(self) -> None:
        credentials = self._session.credentials
        body = {
            "grant_type": "refresh_token",
            "refresh_token": credentials.refresh_token,
            "client_secret": credentials.client_secret,
        }
        if credentials.client_id:
            body["client_id"] = credentials.client_id
        started = self._clock()
        # 400/401/403 are not retryable in send_with_retry, so a rejected login is sent once.
        response = send_with_retry(
            self._http, "POST", TOKEN_PATH, policy=self._policy, stats=self.stats, sleep=self._sleep, json=body
        )
        if not response.is_success:
            # The token endpoint may echo what it was sent: blank the credentials before quoting it.
            detail = _error_detail(response, credentials.redact)
            if response.status_code in (400, 401, 403):
                raise TastytradeAuthError(
                    f"Tastytrade rejected the OAuth refresh (HTTP {response.status_code}{detail}). "
                    f"Check {CREDENTIAL_VARIABLES}; not retried, because repeated failed logins "
                    "get the IP blocked for hours.",
                    status=response.status_code,
                    path=TOKEN_PATH,
                )
            raise SourceError(
                f"POST {TOKEN_PATH} answered HTTP {response.status_code}{detail}",
                status=response.status_code,
                path=TOKEN_PATH,
            )
        payload = _parse_json(response.content, "POST", TOKEN_PATH)
        token = payload.get("access_token")
        if not isinstance(token, str) or not token:
            raise SourceError(f"POST {TOKEN_PATH}: response has no access_token", path=TOKEN_PATH)
        try:
            expires_in = float(payload.get("expires_in", DEFAULT_EXPIRES_IN))
        except (TypeError, ValueError) as exc:
            raise SourceError(f"POST {TOKEN_PATH}: expires_in is not a number", path=TOKEN_PATH) from exc
        # Refresh a little early so that a token never expires between our check and the server's.
        margin = min(60.0, 0.1 * expires_in)
        self._session.token = token
        self._session.deadline = started + expires_in - margin
        rotated = payload.get("refresh_token")
        if isinstance(rotated, str) and rotated:
            # OAuth 2 (RFC 6749 6): a newly issued one replaces the old, for sending and redacting.
            self._session.credentials = replace(credentials, refresh_token=rotated)

    # -- requests ----------------------------------------------------------------------------

    def _send(self, url: str, token: str) -> httpx.Response:
        return send_with_retry(
            self._http,
            "GET",
            url,
            policy=self._policy,
            stats=self.stats,
            sleep=self._sleep,
            headers={"Authorization": f"Bearer {token}"},
        )

    def _get(
        self, path: str, query: str = "", *, raw_name: str | None = None, on_raw: RawCallback | None = None
    ) -> tuple[bytes, dict[str, Any]]:
        """GET ``path`` (already percent-encoded) with auth; one refresh-and-retry on a 401.

        A successful body goes to ``on_raw`` (as ``raw_name``) before it is parsed: a malformed
        body is landed too, so what the API said is never lost to a parsing error.
        """
        url = f"{path}?{query}" if query else path
        token = self._access_token()
        response = self._send(url, token)
        if response.status_code == 401:
            response = self._send(url, self._access_token(rejected=token))
            if response.status_code == 401:
                raise SourceError(
                    f"GET {path} answered 401 even with a freshly refreshed access token"
                    f"{_error_detail(response)}; check the OAuth app's scopes",
                    status=401,
                    path=path,
                )
        if not response.is_success:
            raise SourceError(
                f"GET {path} answered HTTP {response.status_code}{_error_detail(response)}",
                status=response.status_code,
                path=path,
            )
        if on_raw is not None and raw_name is not None:
            on_raw(RawResponse(raw_name, response.content))
        return response.content, _parse_json(response.content, "GET", path)

    def get(
        self, path: str, query: str = "", *, raw_name: str | None = None, on_raw: RawCallback | None = None
    ) -> tuple[bytes, dict[str, Any]]:
        """``_get`` for the modules that speak one API area each (``tastytrade_history``)."""
        return self._get(path, query, raw_name=raw_name, on_raw=on_raw)

    def _page_query(self, page: int, extra: Sequence[str] = ()) -> str:
        """``extra`` params, ``per-page`` when a page size is configured, ``page-offset`` from page 2."""
        params = list(extra)
        if self._per_page:
            params.append(f"per-page={self._per_page}")
        if page:
            params.append(f"page-offset={page}")
        return "&".join(params)

    def _get_pages(
        self, path: str, name: str, on_raw: RawCallback | None = None, extra: Sequence[str] = ()
    ) -> Fetched:
        """Every page of a list endpoint (``page-offset`` while ``pagination`` says more exist).

        ``on_raw`` gets each page's body as soon as it arrived, before it is parsed and before the
        next page is asked for, so a later failure cannot lose what the API already said.
        """
        items: list[dict[str, Any]] = []
        raw: list[RawResponse] = []
        for page in range(MAX_PAGES):
            raw_name = f"{name}.json" if page == 0 else f"{name}.page-{page}.json"
            body, payload = self._get(path, self._page_query(page, extra), raw_name=raw_name, on_raw=on_raw)
            raw.append(RawResponse(raw_name, body))
            page_items = _envelope_items(payload, path)
            items.extend(page_items)
            total_pages = _total_pages(payload, path)
            if total_pages is None or page + 1 >= total_pages or not page_items:
                return Fetched(tuple(items), tuple(raw))
        raise SourceError(f"GET {path}: more than {MAX_PAGES} pages; refusing to continue", path=path)

    def account_list(self, on_raw: RawCallback | None = None) -> Fetched:
        """Every entry of ``/customers/me/accounts`` (``{"account": {...}, "authority-level": ...}``),
        closed accounts included. ``on_raw`` receives each page's body as it arrives."""
        path = "/customers/me/accounts"
        fetched = self._get_pages(path, "accounts", on_raw)
        for index, entry in enumerate(fetched.items):
            account = entry.get("account")
            if not isinstance(account, dict) or not account.get("account-number"):
                raise SourceError(f"GET {path}: item {index} has no account.account-number", path=path)
        return fetched

    def accounts(self, on_raw: RawCallback | None = None) -> Fetched:
        """The customer's open accounts (the inner ``account`` objects); closed ones are skipped."""
        fetched = self.account_list(on_raw)
        return Fetched(tuple(entry["account"] for entry in fetched.items if is_open(entry["account"])), fetched.raw)

    def positions(self, account_number: str, on_raw: RawCallback | None = None) -> Fetched:
        """Every position of one account, all pages followed, with marks.

        ``include-marks=true`` is sent on every page: without it the API leaves out ``mark`` and
        ``mark-price``. ``on_raw`` receives each page's body as soon as it arrived.
        """
        path = f"/accounts/{quote(account_number, safe='')}/positions"
        return self._get_pages(
            path, f"positions_{_file_safe(account_number)}", on_raw, extra=("include-marks=true",)
        )

    def market_metrics(
        self,
        symbols: Sequence[str],
        batch_size: int = 100,
        on_raw: Callable[[RawResponse], None] | None = None,
    ) -> MetricsFetched:
        """Metrics for ``symbols`` (deduplicated), ``batch_size`` per request, URL-encoded.

        The API silently omits symbols it does not know; they come back in ``missing`` so the
        caller can say so instead of a trader wondering why an underlying has no IV. ``on_raw``
        receives each batch's body as soon as it arrived, so a caller can land it even when a
        later batch fails or the envelope turns out malformed.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        path = "/market-metrics"
        wanted = list(dict.fromkeys(symbols))
        items: list[dict[str, Any]] = []
        raw: list[RawResponse] = []
        for number, start in enumerate(range(0, len(wanted), batch_size)):
            batch = wanted[start : start + batch_size]
            query = "symbols=" + ",".join(quote(symbol, safe="") for symbol in batch)
            raw_name = f"market_metrics.batch-{number:03d}.json"
            body, payload = self._get(path, query, raw_name=raw_name, on_raw=on_raw)
            raw.append(RawResponse(raw_name, body))
            items.extend(_envelope_items(payload, path))
        answered = {item.get("symbol") for item in items}
        missing = tuple(symbol for symbol in wanted if symbol not in answered)
        return MetricsFetched(tuple(items), tuple(raw), missing)

    def margin_configuration(self, on_raw: RawCallback | None = None) -> dict[str, Any]:
        """``GET /margin-requirements-public-configuration`` (no auth): its ``data`` object.

        Public clients take its ``risk-free-rate`` (a fraction) as the Black-Scholes rate.
        """
        path = "/margin-requirements-public-configuration"
        response = send_with_retry(self._http, "GET", path, policy=self._policy, stats=self.stats, sleep=self._sleep)
        if not response.is_success:
            raise SourceError(
                f"GET {path} answered HTTP {response.status_code}{_error_detail(response)}",
                status=response.status_code,
                path=path,
            )
        if on_raw is not None:
            on_raw(RawResponse("margin_requirements_public_configuration.json", response.content))
        data = _parse_json(response.content, "GET", path).get("data")
        if not isinstance(data, dict):
            raise SourceError(f"GET {path}: response has no data object", path=path)
        return data

    def earnings_reports(
        self, symbol: str, start: date, on_raw: RawCallback | None = None
    ) -> tuple[dict[str, Any], ...]:
        """Past earnings reports of ``symbol`` since ``start`` (``occurred-date``, ``eps``)."""
        path = f"/market-metrics/historic-corporate-events/earnings-reports/{quote(symbol, safe='')}"
        _, payload = self._get(
            path, f"start-date={start.isoformat()}", raw_name=f"earnings_{_file_safe(symbol)}.json", on_raw=on_raw
        )
        return tuple(_envelope_items(payload, path))

    def _account_object(self, path: str, raw_name: str, on_raw: RawCallback | None) -> dict[str, Any]:
        """A one-object account endpoint's ``data``: the object itself, or the first of ``data.items``
        (balances come in both shapes: the 2023 API and the spec of 2025)."""
        _, payload = self._get(path, raw_name=raw_name, on_raw=on_raw)
        data = payload.get("data")
        if isinstance(data, dict) and isinstance(data.get("items"), list):
            data = data["items"][0] if data["items"] else None
        if not isinstance(data, dict):
            raise SourceError(f"GET {path}: response has no data object", path=path)
        return data

    def api_quote_tokens(self, on_raw: RawCallback | None = None) -> dict[str, Any]:
        """``GET /api-quote-tokens``: the streaming token (``token``, ``dxlink-url``, ``level``).
        The token itself is a secret of the session: callers never print or store it."""
        return self._account_object("/api-quote-tokens", "api_quote_tokens.json", on_raw)

    def balances(self, account_number: str, on_raw: RawCallback | None = None) -> dict[str, Any]:
        """``GET /accounts/{n}/balances``: the account's balances (one object)."""
        number = quote(account_number, safe="")
        return self._account_object(f"/accounts/{number}/balances", f"balances_{_file_safe(account_number)}.json", on_raw)

    def margin_requirements(self, account_number: str, on_raw: RawCallback | None = None) -> dict[str, Any]:
        """``GET /margin/accounts/{n}/requirements``: the margin report (account totals and ``groups``)."""
        number = quote(account_number, safe="")
        return self._account_object(
            f"/margin/accounts/{number}/requirements", f"margin_requirements_{_file_safe(account_number)}.json", on_raw
        )

    def trading_status(self, account_number: str, on_raw: RawCallback | None = None) -> dict[str, Any]:
        """``GET /accounts/{n}/trading-status``."""
        number = quote(account_number, safe="")
        return self._account_object(
            f"/accounts/{number}/trading-status", f"trading_status_{_file_safe(account_number)}.json", on_raw
        )

    def market_data(
        self, symbols_by_type: Mapping[str, Sequence[str]], on_raw: RawCallback | None = None, batch_size: int = 100
    ) -> tuple[dict[str, Any], ...]:
        """``GET /market-data/by-type`` for ``{"equity-option": [...], "future-option": [...], "future": [...]}``,
        at most ``batch_size`` (the API's limit: 100) symbols per request, comma lists as documented."""
        path = "/market-data/by-type"
        pairs = [(kind, symbol) for kind, symbols in symbols_by_type.items() for symbol in dict.fromkeys(symbols)]
        items: list[dict[str, Any]] = []
        for number, start in enumerate(range(0, len(pairs), batch_size)):
            batch = pairs[start : start + batch_size]
            by_kind: dict[str, list[str]] = {}
            for kind, symbol in batch:
                by_kind.setdefault(kind, []).append(symbol)
            query = "&".join(f"{kind}={','.join(quote(s, safe='') for s in symbols)}" for kind, symbols in by_kind.items())
            _, payload = self._get(path, query, raw_name=f"market_data.batch-{number:03d}.json", on_raw=on_raw)
            items.extend(_envelope_items(payload, path))
        return tuple(items)


def is_open(account: Mapping[str, Any]) -> bool:
    return account.get("is-closed") not in (True, "true")


@dataclass(frozen=True)
class PositionsFetch:
    """Position items of every open account, those listed under an account not theirs, and the
    account list (every entry, closed ones included) the positions were asked for."""

    items: list[dict]
    misfiled: list[str]  # "SYMBOL (account-number X, listed under Y)"
    accounts: tuple[dict, ...] = ()


def fetch_positions(client: TastytradeClient, on_raw: RawCallback) -> PositionsFetch:
    """Every position of every open account; ``on_raw`` gets each response (page) as it arrives.

    An item whose ``account-number`` is not the account it was listed under is not that account's
    position: it is left out (and reported) rather than counted twice or under the wrong account.
    """
    items: list[dict] = []
    misfiled: list[str] = []
    entries = client.account_list(on_raw=on_raw).items
    for account in (entry["account"] for entry in entries if is_open(entry["account"])):
        number = str(account["account-number"])
        for item in client.positions(number, on_raw=on_raw).items:
            owner = item.get("account-number")
            if owner not in (None, "") and str(owner) != number:
                misfiled.append(f"{item.get('symbol')!r} (account-number {owner}, listed under {number})")
            else:
                items.append(item)
    return PositionsFetch(items, misfiled, entries)
