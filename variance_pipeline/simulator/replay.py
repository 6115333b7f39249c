"""Replay mode: answer from recorded responses in a folder laid out like ``fixtures/recorded``.

    tastytrade/customer_accounts.json   -> /customers/me/accounts (unchanged)
    tastytrade/positions_<ACCOUNT>.json -> /accounts/<ACCOUNT>/positions, else positions.json
    tastytrade/market_metrics.json      -> /market-metrics, items filtered to the request
    tastytrade/margin_requirements_public_configuration.json
                                        -> /margin-requirements-public-configuration
    tastytrade/earnings_<SYMBOL>.json   -> .../earnings-reports/<SYMBOL> (``/`` spelled ``_``:
                                           ``earnings__ES.json``), items filtered to start-date
    tastytrade/balances.json            -> /accounts/<ANY>/balances and .../balances/<CURRENCY>
    tastytrade/margin_requirements.json -> /margin/accounts/<ANY>/requirements
    tastytrade/trading_status.json      -> /accounts/<ANY>/trading-status
    tastytrade/transactions.json        -> /accounts/<ANY>/transactions: the recorded page for page-offset 0
                                           (its ``pagination`` promises 24 pages of 3; the others were not
                                           recorded: a 404 naming the page, so a client paging the whole
                                           history meets a missing page, as it must be able to)
    tastytrade/net_liq_history.json     -> /accounts/<ANY>/net-liq/history (whatever the window)
    tastytrade/balance_snapshots.json   -> /accounts/<ANY>/balance-snapshots
    tastytrade/market_data_by_type_SPY_options.json
                                        -> /market-data/by-type, items filtered to the request (the
                                           file holds the ``data`` object: served in the envelope)
    yahoo/chart_<SYMBOL>*.json          -> /v8/finance/chart/<SYMBOL>, merged and sliced

Every answer is encoded as the synthetic market's are (compact JSON). With ``verbatim``, the
accounts, positions and margin configuration are sent byte for byte as recorded instead (unless a
fault alters them or the positions are paged): what a test of a client's raw copies compares with.

``<SYMBOL>`` is everything between ``chart_`` and ``_1d_`` or ``.json`` (``chart_GS2C.DE.json``
is ``GS2C.DE``). Files for one symbol are merged by timestamp in file-name order; a timestamp
already seen keeps the earlier file's bar, so overlapping recordings never duplicate a bar. The
meta comes from the file with the newest ``regularMarketTime``; events are the union. Ranges
(``range=5d``...) count back from the newest recorded bar, since the recordings are old. What the
folder lacks is answered as the real API answers an unknown symbol or an empty account (an
account endpoint without a recording: 404).

``adjclose`` is dividend-adjusted as of each recording's date, so files recorded on different
dates are on different bases; one response must never mix them. Files are put on the basis of
the newest recording: an older file that overlaps it (or a file already on that basis) is
rescaled by the median ratio of the two adjcloses on the shared timestamps (constant over the
older file: it is the product of the dividends paid between the two recordings). An older file
that overlaps none cannot be rescaled honestly (the dividends between the recordings are not in
the folder), so it keeps its own basis, and each response carries one basis only: the newest one
present in the requested window. A window wholly inside such an older recording is answered with
that recording's adjclose, exactly as Yahoo answered then; a window that also reaches newer bars
gets null adjclose for the older recording's bars (which the pipeline drops and counts as null
bars) rather than numbers on another basis. The recorded AAPL and MSFT pairs do not overlap.
"""

from __future__ import annotations

import json
import re
import statistics
from datetime import date, datetime
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import quote as url_quote

from variance_pipeline.simulator import chart, marketdata
from variance_pipeline.simulator.formats import Reply, tt_error, tt_items

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


def _recording(path: Path, verbatim: bool) -> Reply:
    """A recorded body as a 200; ``verbatim``: one that sends the file's own bytes."""
    raw = path.read_bytes()
    return Reply(200, json.loads(raw), raw=raw if verbatim else None)


def _recording_if_present(path: Path, verbatim: bool) -> Reply | None:
    return _recording(path, verbatim) if path.exists() else None


def _recorded_adjclose(result: dict[str, Any]) -> dict[int, float]:
    """timestamp -> adjclose of one recorded body (bars without one left out)."""
    blocks = result["indicators"].get("adjclose") or [{}]
    values = blocks[0].get("adjclose")
    if values is None:
        return {}
    return {int(t): float(v) for t, v in zip(result.get("timestamp") or [], values) if v is not None}


def _adjclose_on_bases(results: list[dict[str, Any]]) -> dict[int, tuple[int, float]]:
    """timestamp -> (basis, adjclose): every file put on the newest recording's basis (0) where
    an overlap allows, else on a basis of its own (1, 2... by recency); see the module docstring."""
    newest_first = sorted(
        range(len(results)), key=lambda i: -int(results[i]["meta"].get("regularMarketTime") or 0)
    )
    groups: list[dict[int, float]] = []  # basis -> timestamp -> adjclose on that basis
    for index in newest_first:
        own = _recorded_adjclose(results[index])
        if not own:
            continue
        for basis, group in enumerate(groups):
            ratios = [group[t] / own[t] for t in own.keys() & group.keys() if own[t] > 0]
            if ratios:
                factor = statistics.median(ratios)
                for stamp, value in own.items():
                    group.setdefault(stamp, value * factor)
                break
        else:
            groups.append(dict(own))
    merged: dict[int, tuple[int, float]] = {}
    for basis, group in enumerate(groups):
        for stamp, value in group.items():
            merged.setdefault(stamp, (basis, value))
    return merged


def merge_charts(paths: list[Path]) -> chart.ChartData:
    """One ChartData from several recorded chart files of the same symbol, in file-name order."""
    return merge_bodies([_load(path) for path in sorted(paths, key=lambda p: p.name)])


def merge_bodies(bodies: list[dict[str, Any]]) -> chart.ChartData:
    """One ChartData from chart bodies of the same symbol; an earlier body's bar wins a timestamp
    both hold (adjclose: see the module docstring)."""
    rows: dict[int, dict[str, Any]] = {}
    columns: list[str] = []
    events: dict[str, dict[str, dict[str, Any]]] = {}
    meta: dict[str, Any] = {}
    has_adjclose = False
    results: list[dict[str, Any]] = []
    for body in bodies:
        result = body["chart"]["result"][0]
        results.append(result)
        quote = result["indicators"]["quote"][0]
        adjclose_blocks = result["indicators"].get("adjclose") or [{}]
        adjclose = adjclose_blocks[0].get("adjclose")
        has_adjclose = has_adjclose or adjclose is not None
        columns += [key for key in quote if key not in columns]
        for i, stamp in enumerate(result.get("timestamp") or []):
            row = {key: values[i] for key, values in quote.items()}
            rows.setdefault(int(stamp), row)
        for kind, found in (result.get("events") or {}).items():
            for key, event in found.items():
                events.setdefault(kind, {}).setdefault(key, event)
        if result["meta"].get("regularMarketTime", 0) >= meta.get("regularMarketTime", -1):
            meta = result["meta"]
    stamps = sorted(rows)
    based = _adjclose_on_bases(results) if has_adjclose else {}
    return chart.ChartData(
        meta=meta,
        timestamp=stamps,
        quote={key: [rows[s].get(key) for s in stamps] for key in columns},
        adjclose=[based[s][1] if s in based else None for s in stamps] if has_adjclose else None,
        events={kind: dict(sorted(found.items(), key=lambda kv: int(kv[0]))) for kind, found in events.items()},
        adjclose_basis=[based[s][0] if s in based else 0 for s in stamps] if has_adjclose else None,
    )


class ReplayBackend:
    """Answers from a recorded folder; the clock is ignored (recordings are fixed in time)."""

    def __init__(self, folder: Path, verbatim: bool = False) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise FileNotFoundError(f"replay folder {self.folder} does not exist")
        tasty = self.folder / "tastytrade"
        self._accounts = _recording_if_present(tasty / "customer_accounts.json", verbatim)
        self._positions = {
            path.stem.removeprefix("positions_"): _recording(path, verbatim) for path in tasty.glob("positions_*.json")
        }
        self._default_positions = _recording_if_present(tasty / "positions.json", verbatim)
        self._metrics = _load_if_present(tasty / "market_metrics.json")
        self._margin = _recording_if_present(tasty / "margin_requirements_public_configuration.json", verbatim)
        self._balances = _load_if_present(tasty / "balances.json")
        self._margin_report = _load_if_present(tasty / "margin_requirements.json")
        self._trading_status = _load_if_present(tasty / "trading_status.json")
        self._market_data = _load_if_present(tasty / "market_data_by_type_SPY_options.json")
        self._transactions = _load_if_present(tasty / "transactions.json")
        self._net_liq_history = _load_if_present(tasty / "net_liq_history.json")
        self._balance_snapshots = _load_if_present(tasty / "balance_snapshots.json")
        self._tasty = tasty
        grouped: dict[str, list[Path]] = {}
        for path in (self.folder / "yahoo").glob("chart_*.json"):
            symbol = chart_symbol(path.name)
            if symbol:
                grouped.setdefault(symbol.upper(), []).append(path)
        self._charts = {symbol: merge_charts(paths) for symbol, paths in grouped.items()}

    def accounts(self, clock: datetime) -> Reply:
        return self._accounts or Reply(200, tt_items([], "/customers/me/accounts"))

    def positions(self, account: str, clock: datetime, include_marks: bool = False) -> Reply:
        """The recorded body as it is: ``positions.json`` has no marks, asked for or not."""
        recorded = self._positions.get(account) or self._default_positions
        return recorded or Reply(200, tt_items([], f"/accounts/{account}/positions"))

    def market_metrics(self, symbols: list[str], clock: datetime) -> Reply:
        if self._metrics is None:
            return Reply(200, tt_items([], "/market-metrics"))
        wanted = {s.strip().upper() for s in symbols}
        data = self._metrics.get("data", {})
        items = [item for item in data.get("items", []) if str(item.get("symbol", "")).upper() in wanted]
        return Reply(200, {**self._metrics, "data": {**data, "items": items}})

    def set_chart(self, ticker: str, body: dict[str, Any] | None) -> None:
        """Answer ``ticker`` from ``body`` (a chart response as Yahoo sends it) instead of the
        folder, from the next request on; None forgets it (then the ticker is unknown: 404).

        For tests that need what no recording shows (a split the recording already adjusted, a
        halted session, a revised close): they alter a copy of a recorded body and serve it.
        """
        key = ticker.strip().upper()
        if body is None:
            self._charts.pop(key, None)
        else:
            self._charts[key] = merge_bodies([body])

    def chart(self, ticker: str, query: Mapping[str, str], clock: datetime) -> Reply:
        data = self._charts.get(ticker.strip().upper())
        if data is None or not data.timestamp:
            return chart.not_found()
        return chart.answer(data, query, data.timestamp[-1])

    def margin_configuration(self, clock: datetime) -> Reply:
        """The recorded body, else an empty configuration (the folder did not record it)."""
        return self._margin or Reply(200, {"data": {}, "context": "/margin-requirements-public-configuration"})

    def earnings(self, symbol: str, query: Mapping[str, str], clock: datetime) -> Reply:
        """The recorded reports of ``symbol`` on or after ``start-date``; none recorded: an empty list."""
        context = f"/market-metrics/historic-corporate-events/earnings-reports/{url_quote(symbol, safe='')}"
        raw_start = query.get("start-date")
        try:
            start = date.fromisoformat(raw_start) if raw_start else None
        except ValueError:
            return Reply(400, tt_error("invalid_parameter", f"start-date must be YYYY-MM-DD, got {raw_start!r}"))
        name = symbol.strip().upper().replace("/", "_")
        path = self._tasty / f"earnings_{name}.json"
        body = _load(path) if name and path.is_file() and path.parent == self._tasty else None
        if body is None:
            return Reply(200, tt_items([], context))
        data = body.get("data", {})
        items = [
            item for item in data.get("items", [])
            if start is None or str(item.get("occurred-date", "")) >= start.isoformat()
        ]
        return Reply(200, {**body, "data": {**data, "items": items}})

    def _recorded(self, body: Any, account: str, what: str) -> Reply:
        """An account endpoint's recorded body whatever the account (as positions), else a 404."""
        if body is None:
            return Reply(404, tt_error("record_not_found", f"No recorded {what} for account {account}"))
        return Reply(200, body)

    def balances(self, account: str, currency: str | None, clock: datetime) -> Reply:
        return self._recorded(self._balances, account, "balances")

    def margin_requirements(self, account: str, clock: datetime) -> Reply:
        return self._recorded(self._margin_report, account, "margin requirements")

    def trading_status(self, account: str, clock: datetime) -> Reply:
        return self._recorded(self._trading_status, account, "trading status")

    def market_data(self, query: Mapping[str, str], clock: datetime) -> Reply:
        """The recorded quotes of the requested symbols (the file holds the ``data`` object only:
        it is served inside the usual envelope); the same 400s as the synthetic market."""
        pairs = marketdata.requested(query)
        if not pairs or len(pairs) > marketdata.MAX_SYMBOLS:
            return Reply(400, tt_error("invalid_parameter", f"between 1 and {marketdata.MAX_SYMBOLS} symbols, got {len(pairs)}"))
        recorded = self._market_data or {}
        data = recorded.get("data", recorded)
        wanted = {(kind, symbol) for kind, symbol in pairs}
        items = [i for i in data.get("items", []) if (i.get("instrument-type"), str(i.get("symbol", "")).strip()) in wanted
                 or (i.get("instrument-type"), i.get("symbol")) in wanted]
        return Reply(200, {"data": {**data, "items": items}, "context": marketdata.CONTEXT})

    def transactions(self, account: str, query: Mapping[str, str], clock: datetime) -> Reply:
        """The recorded page (page-offset 0); a later page was never recorded: 404 naming it."""
        offset = str(query.get("page-offset") or "0")
        if self._transactions is not None and offset != "0":
            return Reply(404, tt_error("record_not_found", f"No recorded transactions page-offset {offset} for account {account}"))
        return self._recorded(self._transactions, account, "transactions")

    def net_liq_history(self, account: str, query: Mapping[str, str], clock: datetime) -> Reply:
        return self._recorded(self._net_liq_history, account, "net-liq history")

    def balance_snapshots(self, account: str, query: Mapping[str, str], clock: datetime) -> Reply:
        return self._recorded(self._balance_snapshots, account, "balance snapshots")
