"""Replay mode: answer from recorded responses in a folder laid out like ``fixtures/recorded``.

    tastytrade/customer_accounts.json   -> /customers/me/accounts (unchanged)
    tastytrade/positions_<ACCOUNT>.json -> /accounts/<ACCOUNT>/positions, else positions.json
    tastytrade/market_metrics.json      -> /market-metrics, items filtered to the request
    yahoo/chart_<SYMBOL>*.json          -> /v8/finance/chart/<SYMBOL>, merged and sliced

``<SYMBOL>`` is everything between ``chart_`` and ``_1d_`` or ``.json`` (``chart_GS2C.DE.json``
is ``GS2C.DE``). Files for one symbol are merged by timestamp in file-name order; a timestamp
already seen keeps the earlier file's bar, so overlapping recordings never duplicate a bar. The
meta comes from the file with the newest ``regularMarketTime``; events are the union. Ranges
(``range=5d``...) count back from the newest recorded bar, since the recordings are old. What the
folder lacks is answered as the real API answers an unknown symbol or an empty account.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any, Mapping

from variance_pipeline.simulator import chart
from variance_pipeline.simulator.formats import Reply, tt_items

_CHART_FILE = re.compile(r"^chart_(?P<symbol>.+?)(?:_1d_.*)?\.json$")


def chart_symbol(filename: str) -> str | None:
    """``chart_AAPL_1d_2020-01-02_2020-12-31.json`` -> ``AAPL``; None if not a chart file."""
    match = _CHART_FILE.match(filename)
    return match.group("symbol") if match else None


def _load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _load_if_present(path: Path) -> Any:
    """A recorded body, or None: a folder may record only some endpoints."""
    return _load(path) if path.exists() else None


def merge_charts(paths: list[Path]) -> chart.ChartData:
    """One ChartData from several recorded chart bodies of the same symbol."""
    rows: dict[int, dict[str, Any]] = {}
    columns: list[str] = []
    events: dict[str, dict[str, dict[str, Any]]] = {}
    meta: dict[str, Any] = {}
    has_adjclose = False
    for path in sorted(paths, key=lambda p: p.name):
        result = _load(path)["chart"]["result"][0]
        quote = result["indicators"]["quote"][0]
        adjclose_blocks = result["indicators"].get("adjclose") or [{}]
        adjclose = adjclose_blocks[0].get("adjclose")
        has_adjclose = has_adjclose or adjclose is not None
        columns += [key for key in quote if key not in columns]
        for i, stamp in enumerate(result.get("timestamp") or []):
            row = {key: values[i] for key, values in quote.items()}
            row["adjclose"] = adjclose[i] if adjclose is not None else None
            rows.setdefault(int(stamp), row)
        for kind, found in (result.get("events") or {}).items():
            for key, event in found.items():
                events.setdefault(kind, {}).setdefault(key, event)
        if result["meta"].get("regularMarketTime", 0) >= meta.get("regularMarketTime", -1):
            meta = result["meta"]
    stamps = sorted(rows)
    return chart.ChartData(
        meta=meta,
        timestamp=stamps,
        quote={key: [rows[s].get(key) for s in stamps] for key in columns},
        adjclose=[rows[s]["adjclose"] for s in stamps] if has_adjclose else None,
        events={kind: dict(sorted(found.items(), key=lambda kv: int(kv[0]))) for kind, found in events.items()},
    )


class ReplayBackend:
    """Answers from a recorded folder; the clock is ignored (recordings are fixed in time)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise FileNotFoundError(f"replay folder {self.folder} does not exist")
        tasty = self.folder / "tastytrade"
        self._accounts = _load_if_present(tasty / "customer_accounts.json")
        self._positions = {
            path.stem.removeprefix("positions_"): _load(path) for path in tasty.glob("positions_*.json")
        }
        self._default_positions = _load_if_present(tasty / "positions.json")
        self._metrics = _load_if_present(tasty / "market_metrics.json")
        grouped: dict[str, list[Path]] = {}
        for path in (self.folder / "yahoo").glob("chart_*.json"):
            symbol = chart_symbol(path.name)
            if symbol:
                grouped.setdefault(symbol.upper(), []).append(path)
        self._charts = {symbol: merge_charts(paths) for symbol, paths in grouped.items()}

    def accounts(self, clock: datetime) -> Reply:
        return Reply(200, self._accounts or tt_items([], "/customers/me/accounts"))

    def positions(self, account: str, clock: datetime) -> Reply:
        body = self._positions.get(account) or self._default_positions
        return Reply(200, body or tt_items([], f"/accounts/{account}/positions"))

    def market_metrics(self, symbols: list[str], clock: datetime) -> Reply:
        if self._metrics is None:
            return Reply(200, tt_items([], "/market-metrics"))
        wanted = {s.strip().upper() for s in symbols}
        data = self._metrics.get("data", {})
        items = [item for item in data.get("items", []) if str(item.get("symbol", "")).upper() in wanted]
        return Reply(200, {**self._metrics, "data": {**data, "items": items}})

    def chart(self, ticker: str, query: Mapping[str, str], clock: datetime) -> Reply:
        data = self._charts.get(ticker.strip().upper())
        if data is None or not data.timestamp:
            return chart.not_found()
        return chart.answer(data, query, data.timestamp[-1])
