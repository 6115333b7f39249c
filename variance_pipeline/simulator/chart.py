"""Yahoo's ``/v8/finance/chart`` body: window parsing, slicing and the error shapes.

Both backends (synthetic and replay) produce a ``ChartData`` holding a symbol's whole known
history; ``answer`` then answers a request the same way for both, so slicing rules (``period2``
exclusive, events limited to the window, the 400 for a window before the first bar) are written
once.

An empty window (a weekend, a holiday, a range in the future) answers 200 with no ``timestamp``
key and empty indicator objects, as Yahoo does, rather than an error.

Stamps follow the recorded responses (``chart_AAPL.json``): bars are stamped at their session's
open, except that between a session's close and the next open the last bar is stamped
``regularMarketTime`` = the close + 1 s. Futures trade CME Globex hours: from 18:00 New York on
the evening before a session (Sunday to Thursday evenings, holidays aside) a request also gets
the next session's partial bar, stamped with the request clock and so filed under the same New
York date as the day's final bar, with a small volume and prices near the last close, as Yahoo
serves it for BZ=F or ES=F.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any, Mapping

import numpy as np

from variance_pipeline.calendar import EXCHANGE_TZ
from variance_pipeline.simulator.dates import NEW_YORK
from variance_pipeline.simulator.formats import Reply
from variance_pipeline.simulator.market import Bars, keyed_rng, sessions

VALID_RANGES = ["1d", "5d", "1mo", "3mo", "6mo", "1y", "2y", "5y", "10y", "ytd", "max"]
_RANGE_SESSIONS = {"1d": 1, "5d": 5}
_RANGE_MONTHS = {"1mo": 1, "3mo": 3, "6mo": 6, "1y": 12, "2y": 24, "5y": 60, "10y": 120}
_INSTRUMENT_TYPES = {"equity": "EQUITY", "etf": "ETF", "future": "FUTURE", "index": "INDEX"}
_EVENT_ALIASES = {"div": "dividends", "divs": "dividends", "dividends": "dividends", "split": "splits", "splits": "splits"}
GLOBEX_REOPEN = time(18)
"""CME Globex reopens at 18:00 New York for the next session."""
FINAL_STAMP_DELAY = 1
"""Seconds after the close at which Yahoo stamps a closed session's last bar (20:00:01Z recorded)."""


class ChartError(Exception):
    """A request Yahoo answers with an error body (``chart.result`` null)."""

    def __init__(self, status: int, code: str, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.code = code
        self.description = description

    def reply(self) -> Reply:
        return Reply(self.status, {"chart": {"result": None, "error": {"code": self.code, "description": self.description}}})


def not_found() -> Reply:
    """What Yahoo answers for a ticker it does not know."""
    return ChartError(404, "Not Found", "No data found, symbol may be delisted").reply()


@dataclass(frozen=True)
class ChartData:
    """A symbol's whole known daily history in Yahoo's column layout, ready to be sliced."""

    meta: dict[str, Any]
    timestamp: list[int]
    quote: dict[str, list[Any]]
    adjclose: list[Any] | None
    events: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    adjclose_basis: list[int] | None = None
    """Replay only: which dividend basis each bar's adjclose is on (0 = the newest recording's).
    ``render`` keeps one basis per response (the newest present) and nulls the others' adjclose."""


@dataclass(frozen=True)
class Window:
    """Epoch seconds ``[period1, period2)`` and the ``range`` label echoed in ``meta``."""

    period1: int
    period2: int
    range: str


def answer(data: ChartData, query: Mapping[str, str], reference: int) -> Reply:
    """The reply to one chart request; ``range`` counts back from ``reference`` (see parse_window)."""
    try:
        window = parse_window(query, reference, data.timestamp)
        return Reply(200, render(data, window, parse_events(query.get("events"))))
    except ChartError as error:
        return error.reply()


def parse_window(query: Mapping[str, str], reference: int, timestamps: list[int]) -> Window:
    """``period1``/``period2`` win over ``range``; ranges count back from ``reference``.

    ``reference`` is the simulator clock (synthetic) or the newest recorded bar (replay), so a
    replayed ``range=5d`` means the folder's last five bars rather than an empty window today.
    """
    interval = query.get("interval", "1d")
    if interval != "1d":
        raise ChartError(400, "Bad Request", f"Invalid input - interval={interval} is not supported. Valid intervals: [1d]")
    if "period1" in query or "period2" in query:
        try:
            period1 = int(float(query.get("period1", "0")))
            period2 = int(float(query.get("period2", str(reference + 1))))
        except ValueError as exc:
            raise ChartError(400, "Bad Request", "Invalid input - period1/period2 must be epoch seconds") from exc
        if period1 > period2:
            raise ChartError(400, "Bad Request", "Invalid input - start date cannot be after end date.")
        return Window(period1, period2, "")
    label = query.get("range", "1mo")
    if label not in VALID_RANGES:
        raise ChartError(400, "Bad Request", f"Invalid input - range={label} is not valid. Valid ranges: {VALID_RANGES}")
    return Window(_range_start(label, reference, timestamps), reference + 1, label)


def _range_start(label: str, reference: int, timestamps: list[int]) -> int:
    if label == "max":
        return 0
    if label in _RANGE_SESSIONS:
        upto = bisect.bisect_right(timestamps, reference)
        count = _RANGE_SESSIONS[label]
        return timestamps[upto - count] if upto >= count else 0
    local = datetime.fromtimestamp(reference, NEW_YORK).date()
    if label == "ytd":
        start = date(local.year, 1, 1)
    else:
        months = local.year * 12 + local.month - 1 - _RANGE_MONTHS[label]
        year, month = divmod(months, 12)
        start = date(year, month + 1, min(local.day, 28))
    return int(datetime.combine(start, time(), NEW_YORK).timestamp())


def parse_events(value: str | None) -> set[str]:
    """``div``, ``splits``, ``div,splits``, ``div|split`` -> {"dividends", "splits"}."""
    if not value:
        return set()
    tokens = value.replace("|", ",").split(",")
    return {_EVENT_ALIASES[t.strip().lower()] for t in tokens if t.strip().lower() in _EVENT_ALIASES}


def render(data: ChartData, window: Window, events: set[str]) -> dict[str, Any]:
    """The 200 body for ``window``; raises the 400 when the window ends before the first bar."""
    stamps = data.timestamp
    if not stamps or window.period2 <= stamps[0]:
        raise ChartError(
            400, "Bad Request", f"Data doesn't exist for startDate = {window.period1}, endDate = {window.period2}"
        )
    lo = bisect.bisect_left(stamps, window.period1)
    hi = bisect.bisect_left(stamps, window.period2)
    closes = data.quote.get("close", [])
    previous = closes[lo - 1] if lo > 0 else (closes[lo] if lo < len(closes) else None)
    meta = {**data.meta, "chartPreviousClose": previous, "dataGranularity": "1d", "range": window.range}
    result: dict[str, Any] = {"meta": meta}
    if lo == hi:
        result["indicators"] = {"quote": [{}], "adjclose": [{}]}
        return {"chart": {"result": [result], "error": None}}
    result["timestamp"] = stamps[lo:hi]
    chosen = {
        kind: {key: event for key, event in data.events.get(kind, {}).items() if window.period1 <= int(key) < window.period2}
        for kind in sorted(events)
    }
    chosen = {kind: found for kind, found in chosen.items() if found}
    if chosen:
        result["events"] = chosen
    indicators: dict[str, Any] = {"quote": [{key: column[lo:hi] for key, column in data.quote.items()}]}
    if data.adjclose is not None:
        adjclose = data.adjclose[lo:hi]
        if data.adjclose_basis is not None:
            basis = data.adjclose_basis[lo:hi]
            newest = min(basis)
            adjclose = [value if on == newest else None for value, on in zip(adjclose, basis, strict=True)]
        indicators["adjclose"] = [{"adjclose": adjclose}]
    result["indicators"] = indicators
    return {"chart": {"result": [result], "error": None}}


def _zone_fields(instant: datetime) -> tuple[str, int]:
    local = instant.astimezone(NEW_YORK)
    offset = local.utcoffset() or timedelta()
    return local.tzname() or "EST", int(offset.total_seconds())


def _trading_period(clock: datetime) -> dict[str, Any]:
    """Pre/regular/post of the clock's New York session (or the one before a closed day)."""
    cal = sessions()
    local_day = np.datetime64(clock.astimezone(NEW_YORK).date(), "D")
    idx = min(max(int(np.searchsorted(cal.days, local_day, side="right")) - 1, 0), len(cal.days) - 1)
    day = cal.days[idx].astype(object)
    zone, offset = _zone_fields(datetime.combine(day, time(12), NEW_YORK))

    def at(hour: int) -> int:
        return int(datetime.combine(day, time(hour), NEW_YORK).timestamp())

    def part(start: int, end: int) -> dict[str, Any]:
        return {"timezone": zone, "start": start, "end": end, "gmtoffset": offset}

    opens, closes = int(cal.open_ts[idx]), int(cal.close_ts[idx])
    return {"pre": part(at(4), opens), "regular": part(opens, closes), "post": part(closes, at(20))}


def globex_evening(clock: datetime) -> bool:
    """Whether ``clock`` is in a Globex evening: 18:00-24:00 New York before an XNYS session."""
    local = clock.astimezone(NEW_YORK)
    if local.time() < GLOBEX_REOPEN:
        return False
    cal = sessions()
    tomorrow = np.datetime64(local.date() + timedelta(days=1), "D")
    idx = int(np.searchsorted(cal.days, tomorrow))
    return idx < len(cal.days) and cal.days[idx] == tomorrow


def _evening_bar(bars: Bars, clock: datetime) -> dict[str, Any]:
    """The next session's partial bar at ``clock`` in a Globex evening: near the last close."""
    inst = bars.instrument
    last = float(bars.close[-1])
    local = clock.astimezone(NEW_YORK)
    rng = keyed_rng(0, inst.symbol, "globex-evening", local.date().isoformat())
    elapsed = (local.hour * 60 + local.minute - GLOBEX_REOPEN.hour * 60) / (6 * 60)  # 0 at 18:00, 1 at 24:00
    move = 0.002 * float(rng.standard_normal()) * math.sqrt(max(elapsed, 0.01))

    def tick(value: float) -> float:
        return round(max(inst.tick, round(value / inst.tick) * inst.tick), 6)

    close = tick(last * (1 + move))
    return {
        "open": tick(last),
        "high": max(tick(last), close) + (inst.tick if rng.uniform() < 0.5 else 0.0),
        "low": max(inst.tick, min(tick(last), close) - (inst.tick if rng.uniform() < 0.5 else 0.0)),
        "close": close,
        "volume": int(max(1, round(float(bars.volume[-1]) * 0.002 * max(elapsed, 0.05)))),
    }


def synthetic_chart(bars: Bars, clock: datetime) -> ChartData:
    """ChartData for a synthetic instrument's bars as of ``clock`` (meta as Yahoo fills it)."""
    inst = bars.instrument
    cal = sessions()
    count = len(bars.close)
    timestamp = bars.timestamp.tolist()
    quote = {
        "open": bars.open.tolist(),
        "high": bars.high.tolist(),
        "low": bars.low.tolist(),
        "close": bars.close.tolist(),
        "volume": bars.volume.tolist(),
    }
    adjclose = bars.adjclose.tolist()
    market_time: int | None = None
    if count:
        if bars.live:
            market_time = int(bars.timestamp[-1])
        else:  # closed: the last bar moves to the close + 1 s, as recorded
            market_time = int(cal.close_ts[count - 1]) + FINAL_STAMP_DELAY
            timestamp[-1] = market_time
    evening = inst.kind == "future" and count > 0 and not bars.live and globex_evening(clock)
    if evening:
        partial = _evening_bar(bars, clock)
        timestamp.append(int(clock.timestamp()))
        for key, value in partial.items():
            quote[key].append(value)
        adjclose.append(partial["close"])
        market_time = int(clock.timestamp())
    zone, offset = _zone_fields(clock)
    meta: dict[str, Any] = {
        "currency": "USD",
        "symbol": inst.yahoo,
        "exchangeName": inst.exchange,
        "fullExchangeName": inst.full_exchange,
        "instrumentType": _INSTRUMENT_TYPES[inst.kind],
        "firstTradeDate": int(cal.open_ts[0]),
        "regularMarketTime": None,
        "hasPrePostMarketData": inst.kind in ("equity", "etf"),
        "gmtoffset": offset,
        "timezone": zone,
        "exchangeTimezoneName": EXCHANGE_TZ,
        "regularMarketPrice": None,
        "fiftyTwoWeekHigh": None,
        "fiftyTwoWeekLow": None,
        "regularMarketDayHigh": None,
        "regularMarketDayLow": None,
        "regularMarketVolume": None,
        "longName": inst.name,
        "shortName": inst.name,
        "chartPreviousClose": None,
        "priceHint": 4 if inst.tick < 0.001 else 2,
        "currentTradingPeriod": _trading_period(clock),
        "dataGranularity": "1d",
        "range": "",
        "validRanges": VALID_RANGES,
    }
    if count:
        meta.update(
            regularMarketTime=market_time,
            regularMarketPrice=float(quote["close"][-1]),
            fiftyTwoWeekHigh=float(bars.high[-252:].max()),
            fiftyTwoWeekLow=float(bars.low[-252:].min()),
            regularMarketDayHigh=float(quote["high"][-1]),
            regularMarketDayLow=float(quote["low"][-1]),
            regularMarketVolume=int(quote["volume"][-1]),
        )
    events: dict[str, dict[str, dict[str, Any]]] = {
        "dividends": {str(ts): {"amount": amount, "date": ts} for ts, amount in bars.dividends},
        "splits": {
            str(ts): {
                "date": ts,
                "numerator": split.numerator,
                "denominator": split.denominator,
                "splitRatio": f"{split.numerator}:{split.denominator}",
            }
            for ts, split in bars.splits
        },
    }
    return ChartData(meta=meta, timestamp=timestamp, quote=quote, adjclose=adjclose, events=events)
