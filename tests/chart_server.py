"""A tiny Yahoo chart server for the parser and cache tests, serving the recorded chart files.

It serves the recorded charts sliced to ``period1``/``period2`` like Yahoo does, answers unknown
tickers with Yahoo's 404, scripts per-ticker faults, and records every request so tests can count
them. Shared by ``test_yahoo.py`` and ``test_candle_cache.py`` (the project simulator covers the
rest).
"""

from __future__ import annotations

import copy
import json
import threading
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator
from urllib.parse import parse_qs, unquote, urlsplit

import pandas as pd

from support import RECORDED as RECORDED_ROOT
from variance_pipeline.sources.http import RetryPolicy

RECORDED = RECORDED_ROOT / "yahoo"
FAST = RetryPolicy(max_attempts=3, base_delay=0.001, max_delay=0.01, max_total_wait=1.0, timeout=5.0)
FAR_FUTURE = datetime(2030, 1, 1, tzinfo=timezone.utc)
NOT_FOUND = {
    "chart": {"result": None, "error": {"code": "Not Found", "description": "No data found, symbol may be delisted"}}
}


@lru_cache(maxsize=None)
def _recorded_bytes(name: str) -> bytes:
    return (RECORDED / name).read_bytes()


def recorded(name: str) -> dict[str, Any]:
    """A fresh, mutable copy of a recorded chart payload."""
    return json.loads(_recorded_bytes(name))


def result_of(payload: dict[str, Any]) -> dict[str, Any]:
    return payload["chart"]["result"][0]


def slice_chart(payload: dict[str, Any], period1: int, period2: int) -> dict[str, Any] | None:
    """The payload restricted to timestamps in [period1, period2), as Yahoo answers a window.

    None when the window ends before the first bar (Yahoo's HTTP 400).
    """
    result = result_of(payload)
    stamps = result["timestamp"]
    if period2 <= stamps[0]:
        return None
    keep = [i for i, ts in enumerate(stamps) if period1 <= ts < period2]
    sliced = copy.deepcopy(result)
    events = {
        kind: {k: v for k, v in entries.items() if period1 <= int(v["date"]) < period2}
        for kind, entries in result.get("events", {}).items()
    }
    sliced["events"] = {kind: entries for kind, entries in events.items() if entries}
    if not keep:
        for key in ("timestamp", "events"):
            sliced.pop(key, None)
        sliced["indicators"] = {"quote": [{}], "adjclose": [{}]}
    else:
        sliced["timestamp"] = [stamps[i] for i in keep]
        quote_block = result["indicators"]["quote"][0]
        sliced["indicators"] = {
            "quote": [{k: [v[i] for i in keep] for k, v in quote_block.items()}],
            "adjclose": [{"adjclose": [result["indicators"]["adjclose"][0]["adjclose"][i] for i in keep]}],
        }
    return {"chart": {"result": [sliced], "error": None}}


@dataclass(frozen=True)
class Fault:
    """One scripted answer: a status (with headers and body), a truncated 200, or a slow one."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b'{"finance": {"error": {"code": "Too Many Requests"}}}'
    truncate: bool = False
    delay: float = 0.0


class ChartServer:
    """The v8 chart endpoint on 127.0.0.1 (port 0), with scripted faults and a request log."""

    def __init__(self, charts: dict[str, dict[str, Any]]) -> None:
        self.charts = dict(charts)
        self.requests: list[dict[str, Any]] = []
        self._faults: dict[str, list[Fault]] = {}
        self._sticky: dict[str, Fault] = {}
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def script(self, ticker: str, *faults: Fault, sticky: Fault | None = None) -> None:
        """Answer the next requests for ``ticker`` with ``faults``, then ``sticky`` for ever."""
        with self._lock:
            self._faults[ticker] = list(faults)
            if sticky is None:
                self._sticky.pop(ticker, None)
            else:
                self._sticky[ticker] = sticky

    def count(self, ticker: str | None = None) -> int:
        return len([r for r in self.requests if ticker is None or r["ticker"] == ticker])

    def for_ticker(self, ticker: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["ticker"] == ticker]

    def _next_fault(self, ticker: str) -> Fault | None:
        with self._lock:
            queue = self._faults.get(ticker)
            if queue:
                return queue.pop(0)
            return self._sticky.get(ticker)

    def _answer(self, ticker: str, query: dict[str, list[str]]) -> tuple[int, dict[str, str], bytes]:
        fault = self._next_fault(ticker)
        if fault is not None and fault.delay:
            time.sleep(fault.delay)
        if fault is not None and fault.status != 200:
            return fault.status, fault.headers, fault.body
        if ticker not in self.charts:
            return 404, {}, json.dumps(NOT_FOUND).encode()
        sliced = slice_chart(self.charts[ticker], int(query["period1"][0]), int(query["period2"][0]))
        if sliced is None:
            error = {"code": "Bad Request", "description": "Data doesn't exist for startDate, endDate"}
            return 400, {}, json.dumps({"chart": {"result": None, "error": error}}).encode()
        body = json.dumps(sliced).encode()
        if fault is not None and fault.truncate:
            body = body[: len(body) // 2]
        return 200, {}, body

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server naming)
                parts = urlsplit(self.path)
                ticker = unquote(parts.path.removeprefix("/v8/finance/chart/"))
                query = parse_qs(parts.query)
                status, headers, body = server._answer(ticker, query)
                with server._lock:
                    flat = {k: v[0] for k, v in query.items()}
                    server.requests.append({"ticker": ticker, "raw_path": parts.path, "query": flat, "status": status})
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout tests)

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler

    def __enter__(self) -> "ChartServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def ny_midnight(day: date) -> int:
    return int(pd.Timestamp(day).tz_localize("America/New_York").timestamp())


# --- ticker mapping -------------------------------------------------------------------------
