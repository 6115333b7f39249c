"""Fault injection: the failures the pipeline must survive, on demand and countable.

A rule names an endpoint (or ``*``), optionally a symbol, a kind, how many times it fires
(``count``; null = every time) and how many matching requests it lets through first (``after``;
0 = from the first). Error kinds (429/500/503/401/403; a 401 from ``oauth`` is the
``invalid_grant`` of rejected credentials) replace the answer with the error each API sends, and
``reply`` with the rule's own ``status`` and ``body`` (a JSON value, or a string sent as text): a
reply scripted as a test needs it. At most one of these answers a request: the first installed
that matches; the others wait for later requests and do not count this one, so
``[503 count 1, 500 count 1]`` answers 503, then 500, then the real answer (``after`` scripts the
same sequence from the other end). ``echo`` makes the
error answers (status >= 400) to the requests it matches quote what each request sent (its body,
else its path and query), credentials included, as a careless server's might. ``slow`` delays
the answer; ``truncated``, ``missing_field``, ``extra_field``, ``number_as_string``, ``string_as_number``
(schema drift: every value of ``field`` re-typed), ``bad_bar`` (one chart bar made ``null``,
``zero``, ``negative``, ``high_below_low`` or ``duplicate`` as ``field`` says, on ``date`` or the
last bar) and ``live_bar`` alter a successful body;
``split`` is not a per-request event but market state: while the rule is installed the symbol
has split on that date (synthetic market only), so ``count`` does not apply to it.

JSON form (``POST /_sim/faults`` takes one rule, a list, or ``{"rules": [...]}``)::

    {"endpoint": "chart", "symbol": "SPY", "kind": "429", "count": 2, "retry_after": 3}
    {"endpoint": "chart", "symbol": "NVDA", "kind": "429", "after": 1}
    {"endpoint": "chart", "symbol": "NVDA", "kind": "split", "split": {"date": "2025-06-02", "ratio": 4}}
    {"endpoint": "chart", "symbol": "SPY", "kind": "bad_bar", "field": "zero", "date": "2025-11-21"}
    {"endpoint": "oauth", "kind": "reply", "status": 400, "body": {"error": "invalid_grant"}, "count": 1}

CLI form (``--fault``): the same JSON, or ``ENDPOINT:KIND[:key=value]...``, e.g.
``chart:429:count=2:retry_after=3`` or ``chart:split:symbol=NVDA:date=2025-06-02:ratio=4``.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import threading
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Collection, Iterable, Mapping
from zoneinfo import ZoneInfo

from variance_pipeline.simulator.auth import INVALID_GRANT
from variance_pipeline.simulator.formats import Reply, tt_error
from variance_pipeline.simulator.market import Split, spellings

ENDPOINTS = frozenset({
    "chart", "market-metrics", "positions", "accounts", "oauth", "risk-free-rate", "earnings",
    "balances", "margin-requirements", "trading-status", "market-data", "quote-token", "transactions",
    "net-liq-history", "balance-snapshots", "*",
})
"""``risk-free-rate`` is ``/margin-requirements-public-configuration``; ``earnings`` the historic
earnings-reports endpoint (its symbol is the path's); ``balances`` both balances paths;
``margin-requirements`` the margin report; ``market-data`` ``/market-data/by-type`` (its symbols
are every requested one); ``transactions``, ``net-liq-history`` and ``balance-snapshots`` the
account's history (a rule's ``page`` limits it to the request of that ``page-offset``)."""
ERROR_KINDS = frozenset({"429", "500", "503", "401", "403"})
"""``403`` is what ``/market-data/by-type`` answers an unfunded account (any endpoint can be told to)."""
ANSWER_KINDS = ERROR_KINDS | {"reply"}
"""Kinds that decide the answer: at most one of them fires per request."""
REWRITE_KINDS = frozenset({
    "live_bar", "missing_field", "extra_field", "number_as_string", "string_as_number", "bad_bar", "drop_fee",
})
"""Kinds ``alter_body`` applies to a successful body (``truncated`` acts on the encoded bytes)."""
KINDS = ANSWER_KINDS | REWRITE_KINDS | {"truncated", "slow", "split", "echo"}
DEFAULT_EXTRA_FIELD = "x-simulator-extra"
BAD_BARS = frozenset({"null", "zero", "negative", "high_below_low", "duplicate"})
FIELD_KINDS = frozenset({"missing_field", "number_as_string", "string_as_number"})
FEE_FIELDS = frozenset({"commission", "clearing-fees", "regulatory-fees", "proprietary-index-option-fees"})
"""``drop_fee``: the fee a journal forgets (its ``field``, default ``commission``)."""


@dataclass(frozen=True)
class FaultRule:
    """One installed fault. Frozen: how often it fired is counted by the ``FaultStore`` holding it,
    so one rule object can be handed to several servers without them sharing a count."""

    endpoint: str
    kind: str
    symbol: str | None = None
    count: int | None = None
    after: int = 0  # matching requests answered normally before the rule fires
    retry_after: float | str | None = None
    delay: float = 0.0
    split: Split | None = None
    field: str | None = None
    bar_date: date | None = None  # bad_bar: the bar to spoil (JSON "date"); None = the last one
    status: int | None = None  # reply: the HTTP status
    body: Any = dataclasses.field(default="", hash=False)  # reply: a JSON value, or a string sent as text
    page: int | None = None  # paged endpoints: only the request of this page-offset (JSON "page")

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> FaultRule:
        """Validate one rule; ValueError names the offending key."""
        if not isinstance(raw, Mapping):
            raise ValueError(f"a fault rule must be an object, got {raw!r}")
        unknown = set(raw) - {
            "endpoint", "kind", "symbol", "count", "after", "retry_after", "delay", "split", "field", "date",
            "status", "body", "page",
        }
        if unknown:
            raise ValueError(f"unknown fault keys {sorted(unknown)}")
        endpoint = str(raw.get("endpoint", "*"))
        kind = str(raw.get("kind", ""))
        if endpoint not in ENDPOINTS:
            raise ValueError(f"endpoint must be one of {sorted(ENDPOINTS)}, got {endpoint!r}")
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {sorted(KINDS)}, got {kind!r}")
        count = raw.get("count")
        if count is not None and (not isinstance(count, int) or count < 1):
            raise ValueError("count must be a positive integer or null")
        after = raw.get("after", 0)
        if not isinstance(after, int) or isinstance(after, bool) or after < 0:
            raise ValueError("after must be a whole number of requests >= 0")
        retry_after = raw.get("retry_after")
        if retry_after is not None and not isinstance(retry_after, (int, float, str)):
            raise ValueError("retry_after must be seconds or an HTTP-date string")
        symbol = raw.get("symbol")
        split = _parse_split(raw.get("split")) if kind == "split" else None
        if kind == "split" and not symbol:
            raise ValueError("a split fault needs a symbol")
        if kind in FIELD_KINDS and not raw.get("field"):
            raise ValueError(f"{kind} needs a field name")
        if kind == "bad_bar" and raw.get("field") not in BAD_BARS:
            raise ValueError(f"bad_bar needs field one of {sorted(BAD_BARS)}, got {raw.get('field')!r}")
        bar_date = None
        if kind == "bad_bar" and raw.get("date"):
            try:
                bar_date = date.fromisoformat(str(raw["date"]))
            except ValueError as exc:
                raise ValueError(f"bad_bar date must be YYYY-MM-DD: {exc}") from exc
        if kind == "slow" and not float(raw.get("delay") or 0) > 0:
            raise ValueError("slow needs a positive delay in seconds")
        status = raw.get("status")
        if kind == "reply" and not (isinstance(status, int) and 100 <= status <= 599):
            raise ValueError(f"reply needs an HTTP status from 100 to 599, got {status!r}")
        if kind == "drop_fee" and raw.get("field") and raw["field"] not in FEE_FIELDS:
            raise ValueError(f"drop_fee needs field one of {sorted(FEE_FIELDS)}, got {raw['field']!r}")
        page = raw.get("page")
        if page is not None and (not isinstance(page, int) or page < 0):
            raise ValueError("page must be a page-offset (an integer >= 0) or null")
        return cls(
            endpoint=endpoint,
            kind=kind,
            symbol=str(symbol) if symbol else None,
            count=count,
            after=after,
            retry_after=retry_after,
            delay=float(raw.get("delay", 0.0) or 0.0),
            split=split,
            field=str(raw["field"]) if raw.get("field") else None,
            bar_date=bar_date,
            status=status if kind == "reply" else None,
            body=raw.get("body", "") if kind == "reply" else "",
            page=page,
        )

    def to_json(self, fired: int) -> dict[str, Any]:
        split = None
        if self.split is not None:
            split = {"date": self.split.day.isoformat(), "ratio": f"{self.split.numerator}:{self.split.denominator}"}
        return {
            "endpoint": self.endpoint,
            "kind": self.kind,
            "symbol": self.symbol,
            "count": self.count,
            "after": self.after,
            "retry_after": self.retry_after,
            "delay": self.delay,
            "split": split,
            "field": self.field,
            "date": self.bar_date.isoformat() if self.bar_date else None,
            "status": self.status,
            "body": self.body,
            "page": self.page,
            "fired": fired,
        }

    def matches(self, endpoint: str, symbols: Collection[str], page: int = 0) -> bool:
        """Endpoint match, and when the rule names a symbol (a page), the request must concern it."""
        if self.endpoint not in ("*", endpoint):
            return False
        if self.page is not None and self.page != page:
            return False
        return self.symbol is None or not _aliases(self.symbol).isdisjoint(s.upper() for s in symbols)


def _aliases(symbol: str) -> set[str]:
    """A symbol and its other spelling (``/ES`` <-> ``ES=F``), so either names the instrument."""
    spelled = spellings(symbol)
    return {symbol.upper()} | (set(spelled[:2]) if spelled else set())


def _parse_split(raw: Any) -> Split:
    if not isinstance(raw, Mapping) or "date" not in raw:
        raise ValueError('split needs {"date": "YYYY-MM-DD", "ratio": 4} (or "ratio": "4:1")')
    ratio = raw.get("ratio", raw.get("numerator", 2))
    if isinstance(ratio, str) and ":" in ratio:
        numerator, denominator = ratio.split(":", 1)
    else:
        numerator, denominator = ratio, raw.get("denominator", 1)
    try:
        split = Split(date.fromisoformat(str(raw["date"])), int(numerator), int(denominator))
    except ValueError as exc:
        raise ValueError(f"bad split {dict(raw)!r}: {exc}") from exc
    if split.numerator < 1 or split.denominator < 1:
        raise ValueError("split ratio terms must be positive")
    return split


def parse_rules(payload: Any) -> list[FaultRule]:
    """One rule, a list of rules, or ``{"rules": [...]}``."""
    if isinstance(payload, Mapping) and "rules" in payload:
        payload = payload["rules"]
    if isinstance(payload, Mapping):
        payload = [payload]
    if not isinstance(payload, list):
        raise ValueError("expected a fault rule, a list of rules or {\"rules\": [...]}")
    return [FaultRule.from_json(raw) for raw in payload]


def parse_spec(spec: str) -> list[FaultRule]:
    """A ``--fault`` value: JSON, or ``ENDPOINT:KIND[:key=value]...``."""
    text = spec.strip()
    if text.startswith(("{", "[")):
        return parse_rules(json.loads(text))
    endpoint, _, rest = text.partition(":")
    kind, *pairs = rest.split(":")
    raw: dict[str, Any] = {"endpoint": endpoint, "kind": kind}
    split: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ValueError(f"fault option {pair!r} is not key=value")
        if key == "date" and kind == "bad_bar":
            raw[key] = value
        elif key in ("date", "ratio"):
            split[key] = value
        elif key in ("count", "status", "after", "page"):
            raw[key] = int(value)
        elif key in ("delay", "retry_after"):
            raw[key] = float(value) if key == "delay" or value.replace(".", "", 1).isdigit() else value
        else:
            raw[key] = value
    if split:
        raw["split"] = split
    return parse_rules(raw)


class FaultStore:
    """The installed rules, how many matching requests each has seen and how many it answered:
    it fires on those past its ``after``, ``count`` times; thread-safe because handlers run on many
    threads."""

    def __init__(self, rules: Iterable[FaultRule] = ()) -> None:
        self._rules: list[tuple[FaultRule, int, int]] = [(rule, 0, 0) for rule in rules]
        self._lock = threading.Lock()

    def replace(self, rules: Iterable[FaultRule]) -> None:
        installed = [(rule, 0, 0) for rule in rules]
        with self._lock:
            self._rules = installed

    def clear(self) -> None:
        self.replace([])

    def describe(self) -> list[dict[str, Any]]:
        with self._lock:
            return [rule.to_json(fired) for rule, _, fired in self._rules]

    def fire(self, endpoint: str, symbols: Collection[str], page: int = 0) -> list[FaultRule]:
        """The per-request rules that apply now, counted; exhausted rules are dropped.

        At most one ``ANSWER_KINDS`` rule fires: the first that matches, in the order installed;
        a rule still letting requests through (``after``) counts every matching request.
        """
        fired: list[FaultRule] = []
        answered = False
        with self._lock:
            kept: list[tuple[FaultRule, int, int]] = []
            for rule, seen, count in self._rules:
                if rule.kind != "split" and rule.matches(endpoint, symbols, page):
                    answers = rule.kind in ANSWER_KINDS
                    seen += 1
                    if seen > rule.after and not (answers and answered):
                        fired.append(rule)
                        count += 1
                        answered = answered or answers
                if rule.count is None or count < rule.count:
                    kept.append((rule, seen, count))
            self._rules = kept
        return fired

    def splits_for(self, symbol: str) -> tuple[Split, ...]:
        """Splits injected for ``symbol`` (a Tastytrade symbol), as market state."""
        with self._lock:
            return tuple(
                rule.split
                for rule, _, _ in self._rules
                if rule.kind == "split"
                and rule.split is not None
                and rule.symbol
                and symbol.upper() in _aliases(rule.symbol)
            )


def error_reply(rule: FaultRule, endpoint: str) -> Reply:
    """The error each API really sends for that status (Yahoo's 429 is plain text); a ``reply``
    rule's own status and body."""
    if rule.kind == "reply":
        return Reply(rule.status or 200, copy.deepcopy(rule.body))
    headers: dict[str, str] = {}
    if rule.kind == "429" and rule.retry_after is not None:
        value = rule.retry_after
        whole = isinstance(value, (int, float)) and float(value).is_integer()
        headers["Retry-After"] = str(int(value)) if whole else str(value)
    status = int(rule.kind)
    if endpoint == "chart":
        if status == 429:
            return Reply(429, "Too Many Requests\r\n", headers)
        if status == 401:
            crumb = {"code": "Unauthorized", "description": "Invalid Crumb"}
            return Reply(401, {"finance": {"result": None, "error": crumb}})
        code = {403: "Forbidden", 500: "Internal Server Error", 503: "Service Unavailable"}[status]
        return Reply(status, {"chart": {"result": None, "error": {"code": code, "description": code}}})
    tt = {
        429: ("too_many_requests", "Rate limit exceeded, slow down"),
        401: INVALID_GRANT if endpoint == "oauth" else ("token_invalid", "This token is invalid or has expired"),
        403: ("unfunded_account", "Market data is available to funded account holders only"),
        500: ("internal_server_error", "Internal server error"),
        503: ("service_unavailable", "Service temporarily unavailable"),
    }[status]
    return Reply(status, tt_error(*tt), headers)


def echo_request(reply: Reply, sent: str) -> Reply:
    """An error answer whose message quotes ``sent`` (what the request sent), as a careless
    server's does: Tastytrade's ``error.message``, OAuth's ``error_description``, Yahoo's
    ``error.description`` or a text body."""

    def quoted(text: Any) -> str:
        return f"{str(text).rstrip()} (sent: {sent})" if text else f"sent: {sent}"

    body = copy.deepcopy(reply.body)
    if isinstance(body, str):
        body = quoted(body)
    elif isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            error["message"] = quoted(error.get("message"))
        elif isinstance(error, str):
            body["error_description"] = quoted(body.get("error_description"))
        for api in ("chart", "finance"):
            inner = body.get(api)
            if isinstance(inner, dict) and isinstance(inner.get("error"), dict):
                inner["error"]["description"] = quoted(inner["error"].get("description"))
    return dataclasses.replace(reply, body=body, raw=None)


def alter_body(rule: FaultRule, body: Any, endpoint: str) -> None:
    """Apply a ``REWRITE_KINDS`` fault to a (copied) successful body, in place."""
    if rule.kind == "missing_field" and rule.field:
        for target in _targets(rule, body, endpoint, whole=True):
            _drop_key(target, rule.field)
    elif rule.kind == "extra_field":
        for target in _targets(rule, body, endpoint, whole=False):
            target[rule.field or DEFAULT_EXTRA_FIELD] = "unexpected"
    elif rule.kind in ("number_as_string", "string_as_number") and rule.field:
        for target in _targets(rule, body, endpoint, whole=True):
            _retype(target, rule.field, to_string=rule.kind == "number_as_string")
    elif rule.kind == "bad_bar" and endpoint == "chart" and rule.field:
        _spoil_bar(body, rule.field, rule.bar_date)
    elif rule.kind == "live_bar" and endpoint == "chart":
        _stamp_last_bar(body)
    elif rule.kind == "drop_fee":
        for item in _targets(rule, body, endpoint, whole=True):
            _drop_fee(item, rule.field or "commission")


def _drop_fee(item: dict[str, Any], fee: str) -> None:
    """A journal that forgot a fee: ``fee`` sent as "0.0" and the net value raised by it (the cash
    the broker really took stays taken, so the account no longer reconciles by that amount)."""
    raw = item.get(fee)
    if raw in (None, "") or item.get(f"{fee}-effect") != "Debit":
        return
    amount = float(str(raw))
    if amount == 0:
        return
    net = float(str(item.get("net-value") or 0.0)) * (-1 if item.get("net-value-effect") == "Debit" else 1) + amount
    item[fee], item[f"{fee}-effect"] = "0.0", "None"
    item["net-value"] = f"{abs(net):.3f}"
    item["net-value-effect"] = "Credit" if net > 0 else "Debit" if net < 0 else "None"


def _retyped(value: Any, to_string: bool) -> Any:
    if isinstance(value, list):
        return [_retyped(v, to_string) for v in value]
    if to_string:
        return str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return value
        return int(number) if number.is_integer() and "." not in value else number
    return value


def _retype(node: Any, key: str, *, to_string: bool) -> None:
    """Every ``key`` below ``node``: numbers sent as strings (``1.5`` -> ``"1.5"``) or the reverse."""
    if isinstance(node, dict):
        for name, value in node.items():
            if name == key:
                node[name] = _retyped(value, to_string)
            else:
                _retype(value, key, to_string=to_string)
    elif isinstance(node, list):
        for value in node:
            _retype(value, key, to_string=to_string)


def _spoil_bar(body: dict[str, Any], how: str, day: date | None) -> None:
    """Make one bar of each chart result impossible, as Yahoo now and then serves one."""
    for result in (body.get("chart") or {}).get("result") or []:
        stamps = result.get("timestamp") or []
        if not stamps:
            continue
        zone = ZoneInfo(str((result.get("meta") or {}).get("exchangeTimezoneName") or "America/New_York"))
        index = len(stamps) - 1
        if day is not None:
            found = [i for i, ts in enumerate(stamps) if datetime.fromtimestamp(int(ts), zone).date() == day]
            if not found:
                continue
            index = found[0]
        quote = result["indicators"]["quote"][0]
        adjclose = result["indicators"].get("adjclose", [{}])[0]
        prices = [quote[name] for name in ("open", "high", "low", "close")] + [adjclose.get("adjclose", [])]
        if how == "null":
            for column in [*prices, quote["volume"]]:
                column[index] = None
        elif how in ("zero", "negative"):
            for column in (quote["close"], adjclose.get("adjclose", [])):
                column[index] = 0.0 if how == "zero" else -abs(column[index])
        elif how == "high_below_low":
            quote["high"][index] = quote["low"][index] * 0.5
        elif how == "duplicate":  # a second bar with the same stamp and other prices
            stamps.insert(index + 1, stamps[index])
            for column in prices:
                column.insert(index + 1, column[index] * 1.1 if column[index] is not None else None)
            quote["volume"].insert(index + 1, quote["volume"][index])


def _targets(rule: FaultRule, body: Any, endpoint: str, *, whole: bool) -> list[dict[str, Any]]:
    """Where a field fault lands: each (matching) list item, or Yahoo's result/meta."""
    if endpoint == "chart":
        results = (body.get("chart") or {}).get("result") or []
        return [r if whole else r.get("meta", {}) for r in results]
    data = body.get("data") if isinstance(body, dict) else None
    if isinstance(data, dict) and isinstance(data.get("items"), list):
        items = [i for i in data["items"] if isinstance(i, dict)]
        if rule.symbol and endpoint == "market-metrics":
            items = [i for i in items if str(i.get("symbol", "")).upper() in _aliases(rule.symbol)]
        return items
    return [data if isinstance(data, dict) else body]


def _drop_key(node: Any, key: str) -> None:
    if isinstance(node, dict):
        node.pop(key, None)
        for value in node.values():
            _drop_key(value, key)
    elif isinstance(node, list):
        for value in node:
            _drop_key(value, key)


def _stamp_last_bar(body: dict[str, Any]) -> None:
    """Yahoo right after the close: the last bar carries ``regularMarketTime``, not the open."""
    for result in (body.get("chart") or {}).get("result") or []:
        stamps = result.get("timestamp")
        when = result.get("meta", {}).get("regularMarketTime")
        if stamps and when is not None:
            stamps[-1] = max(int(when), stamps[-1])
