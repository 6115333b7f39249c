"""Yahoo's ``/v8/finance/chart`` body: window parsing, slicing and the error shapes.

Both backends (synthetic and replay) produce a ``ChartData`` holding a symbol's whole known
history; ``answer`` then answers a request the same way for both, so slicing rules (``period2``
exclusive, events limited to the window, the 400 for a window before the first bar) are written
once.

An empty window (a weekend, a holiday, a range in the future) answers 200 with no ``timestamp``
key and empty indicator objects, as Yahoo does, rather than an error.

Stamps follow the recorded responses (``chart_AAPL.json``): bars are stamped at their session's
open, except that between a session's close and the next open the last bar is stamped
``regularMarketTime`` = the close + 1 s. Futures (the continuous ``ES=F`` and dated contracts
``ESM26.CME``, ``curve``) are served as Yahoo serves them: one bar per New York calendar day
stamped 00:00, ``currentTradingPeriod.regular`` the whole day (00:00-23:59), Globex hours (the
day's bar grows again from the 18:00 reopen until midnight; a Sunday or holiday evening before
a session has its own bar; no bar for Saturday or a Friday evening): ``futures_calendar_days``.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from typing import Any, Mapping

import numpy as np
import pandas as pd

from variance_pipeline.calendar import EXCHANGE_TZ
from variance_pipeline.simulator import curve
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


FUTURES_HALT = time(17)
"""CME Globex's daily halt (17:00-18:00 New York): the session's close; trading resumes at 18:00."""
EVENING_HOURS = 6.0
"""18:00-24:00 New York: the evening that Yahoo files under the same calendar day."""


@lru_cache(maxsize=256)
def _evening_shocks(symbol: str) -> np.ndarray:
    """One standard normal per session for the evening after it (and one for the evening before)."""
    rng = keyed_rng(0, symbol, "globex-evening")
    return rng.standard_normal((2, len(sessions().days)))


def _ny_epochs(days: np.ndarray, hours: float = 0.0) -> np.ndarray:
    """Epoch seconds of ``days`` (datetime64[D]) at ``hours`` New York wall time (DST handled)."""
    wall = pd.DatetimeIndex(days.astype("datetime64[ns]")) + pd.Timedelta(hours=hours)
    return (wall.tz_localize(NEW_YORK).asi8 // 10**9).astype(np.int64)


def futures_calendar_days(bars: Bars, clock: datetime) -> tuple[list[int], dict[str, list[Any]], int | None]:
    """A future's bars as Yahoo serves them: one bar per New York calendar day, stamped 00:00.

    A session's bar holds its day session (the walk's bar, live until the close) and, once Globex
    reopens at 18:00 before another session, that evening's trading too: its close moves, its
    range and volume grow until midnight. A day off the XNYS calendar before a session (Sunday, a
    holiday) has a bar of its evening only (18:00-24:00), near the last close. Friday and the eve of
    a closed day have no evening. Returns (timestamps, quote columns, regularMarketTime).
    """
    inst = bars.instrument
    cal = sessions()
    count = len(bars.close)
    now = int(clock.timestamp())
    one_day = np.timedelta64(1, "D")
    known = len(cal.days)
    following = cal.days[1 : count + 1] if count + 1 <= known else np.r_[cal.days[1:], cal.days[-1:] + 365]
    days = cal.days[:count]
    has_evening = following == days + one_day
    evening_start = _ny_epochs(days, 18)
    parsed = curve.contract_of(inst.symbol)  # a dated contract moves with its root in the evening
    shocks = _evening_shocks(parsed[0] if parsed else inst.symbol)

    def tick(values: np.ndarray) -> np.ndarray:
        return np.round(np.maximum(inst.tick, np.round(values / inst.tick) * inst.tick), 6)

    elapsed = np.clip((now - evening_start) / (EVENING_HOURS * 3600), 0.0, 1.0) * has_evening
    if bars.live and count:
        elapsed[-1] = 0.0
    close = bars.close.astype(float)
    moved = tick(close * (1 + 0.002 * shocks[0, :count] * np.sqrt(elapsed)))
    evening = elapsed > 0
    columns = {
        "open": bars.open.astype(float),
        "high": np.where(evening, np.maximum(bars.high, moved), bars.high),
        "low": np.where(evening, np.minimum(bars.low, moved), bars.low),
        "close": np.where(evening, moved, close),
        "volume": (bars.volume * (1 + 0.15 * elapsed)).astype(np.int64),
    }
    stamps = _ny_epochs(days)
    # The last trade in each bar: the clock while live, the evening's last minute, else the halt.
    traded = np.where(evening, evening_start + elapsed * EVENING_HOURS * 3600, _ny_epochs(days, FUTURES_HALT.hour))
    if bars.live and count:
        traded[-1] = now
    rows = [(int(s), {k: v[i] for k, v in columns.items()}, int(min(now, traded[i]))) for i, s in enumerate(stamps)]
    # Evenings on days off the XNYS calendar, before session i (including the next one to open).
    after = np.arange(1, min(count + 1, known))
    eves = cal.days[after] - one_day
    off = eves != cal.days[after - 1]
    after, eves = after[off], eves[off]
    opened_at = _ny_epochs(eves, 18)
    begun = now >= opened_at
    for i, eve, opened in zip(after[begun].tolist(), _ny_epochs(eves[begun]).tolist(), opened_at[begun].tolist()):
        part = min(1.0, (now - opened) / (EVENING_HOURS * 3600))
        last = float(columns["close"][i - 1])
        price = float(tick(np.array([last * (1 + 0.002 * shocks[1, i] * np.sqrt(part))]))[0])
        rows.append((int(eve), {
            "open": last, "high": max(last, price), "low": min(last, price), "close": price,
            "volume": int(max(1, round(float(bars.volume[i - 1]) * 0.1 * part))),
        }, int(opened + part * EVENING_HOURS * 3600)))
    rows.sort(key=lambda row: row[0])
    timestamp = [stamp for stamp, _, _ in rows]
    quote = {key: [float(v[key]) if key != "volume" else int(v[key]) for _, v, _ in rows] for key in columns}
    return timestamp, quote, (rows[-1][2] if rows else None)


def _futures_period(clock: datetime) -> dict[str, Any]:
    """What Yahoo reports for a future: the whole New York calendar day, 00:00-23:59."""
    day = clock.astimezone(NEW_YORK).date()
    start = int(datetime.combine(day, time(), NEW_YORK).timestamp())
    zone, offset = _zone_fields(datetime.combine(day, time(12), NEW_YORK))
    part = {"timezone": zone, "start": start, "end": start + 86340, "gmtoffset": offset}
    return {"pre": dict(part, end=start), "regular": part, "post": dict(part, start=start + 86340)}


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
    future = inst.kind == "future"
    if future:
        timestamp, quote, market_time = futures_calendar_days(bars, clock)
        adjclose = list(quote["close"])
        count = len(timestamp)
    elif count:
        if bars.live:
            market_time = int(bars.timestamp[-1])
        else:  # closed: the last bar moves to the close + 1 s, as recorded
            market_time = int(cal.close_ts[count - 1]) + FINAL_STAMP_DELAY
            timestamp[-1] = market_time
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
        "currentTradingPeriod": _futures_period(clock) if future else _trading_period(clock),
        "dataGranularity": "1d",
        "range": "",
        "validRanges": VALID_RANGES,
    }
    if count:
        meta.update(
            regularMarketTime=market_time,
            regularMarketPrice=float(quote["close"][-1]),
            fiftyTwoWeekHigh=float(max(quote["high"][-252:])),
            fiftyTwoWeekLow=float(min(quote["low"][-252:])),
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
