"""Yahoo Finance v8 chart endpoint: ticker mapping, one-request fetch, and a strict parser.

Yahoo is the only source of daily OHLCV here and it is fragile: it rate-limits without a
published quota, answers with ``null`` bars for halts, and serves the running session as a daily
bar. So the client asks once per symbol and window (retries are bounded by ``RetryPolicy``), and
the parser keeps only *final* bars, drops rather than fills null bars, and turns every surprise
in the payload into a ``ChartError`` that names the ticker, so one bad symbol can be reported as
stale instead of failing a run.

Session dates follow the exchange's own time zone (``meta.exchangeTimezoneName``); whether a bar
is final is judged on the XNYS calendar, the one clock of the pipeline, against ``now`` (the
time the response was fetched: the client passes it). Bars on dates that are not
XNYS sessions (a German listing's local holiday, a futures bar on a US holiday) are kept here,
faithful to the payload; the candle cache drops them, because every partition and every HV window
of the pipeline counts XNYS sessions.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from typing import Any, Callable, Mapping
from urllib.parse import quote
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from variance_pipeline.calendar import EXCHANGE_TZ, exchange_calendar
from variance_pipeline.sources.http import (
    RateLimiter,
    RawResponse,
    RequestStats,
    RetryPolicy,
    SourceError,
    json_object,
    make_client,
    send_with_retry,
)

CHART_PATH = "/v8/finance/chart/"
BAR_COLUMNS = ("session_date", "open", "high", "low", "close", "adj_close", "volume")
PRICE_COLUMNS = ("open", "high", "low", "close", "adj_close")

DEFAULT_RATE_PER_SECOND = 1.0
"""Yahoo chart requests per second: about one a second, sequential, is what Yahoo tolerates."""
DEFAULT_JITTER = 0.25
"""Each gap between requests is 1/rate scaled by uniform(1, 1 + jitter)."""

# Cash-settled index underlyings (and option roots) a Tastytrade user trades, without a caret on
# Tastytrade, with one on Yahoo. Every entry is the index whose level the options settle on:
#   SPX    S&P 500 (AM monthlies)                   -> ^SPX
#   SPXW   SPX weeklies/PM root, same index         -> ^SPX
#   XSP    Mini-SPX, its own index (1/10 SPX)        -> ^XSP
#   NDX    Nasdaq-100                                -> ^NDX
#   NDXP   NDX PM-settled root, same index           -> ^NDX
#   RUT    Russell 2000                              -> ^RUT
#   RUTW   RUT weeklies root, same index             -> ^RUT
#   VIX, VIX9D, VVIX, VXN, RVX  Cboe volatility indices -> ^VIX, ^VIX9D, ^VVIX, ^VXN, ^RVX
#   OEX    S&P 100 (American-style options)          -> ^OEX
#   XEO    European-style options on the S&P 100: the same index as OEX -> ^OEX
#   DJX    Dow Jones Industrial Average / 100        -> ^DJX (Yahoo's own 1/100 index, not ^DJI)
#   MRUT   Mini-Russell 2000 (1/10 of RUT)           -> ^MRUT
#   XND    Nasdaq-100 Micro (1/100 of NDX)           -> ^XND
# A scaled index under the full-size ticker would be 10-100 x wrong: each maps to its own.
INDEX_TICKERS: Mapping[str, str] = {
    **{
        name: f"^{name}"
        for name in ("SPX", "XSP", "NDX", "RUT", "VIX", "VIX9D", "VVIX", "VXN", "RVX", "OEX", "DJX", "MRUT", "XND")
    },
    "SPXW": "^SPX",
    "NDXP": "^NDX",
    "RUTW": "^RUT",
    "XEO": "^OEX",
}


# Yahoo's dated futures contracts carry the exchange's suffix, not ``=F``: ``/MESM6`` ->
# ``MESM26.CME``, ``/ZNH6`` -> ``ZNH26.CBT``, ``/CLJ6`` -> ``CLJ26.NYM``, ``/GCJ6`` -> ``GCJ26.CMX``
# (``ESM6=F`` is not a ticker). The suffix is the product's exchange; a product missing here has no
# dated ticker, so its positions fall back to the continuous, flagged (``position_greeks``).
FUTURE_EXCHANGES: Mapping[str, str] = {
    **{root: "CME" for root in ("ES", "MES", "NQ", "MNQ", "RTY", "M2K", "EMD", "6E", "6J", "6B", "6A", "6C",
                                "6S", "6N", "6M", "M6E", "M6A", "M6B", "BTC", "MBT", "ETH", "MET", "LE", "HE", "GF")},
    **{root: "CBT" for root in ("ZN", "ZB", "ZF", "ZT", "UB", "TN", "ZC", "ZS", "ZW", "ZM", "ZL", "ZO", "KE",
                                "YM", "MYM", "10Y", "2YY", "5YY", "30Y")},
    **{root: "NYM" for root in ("CL", "MCL", "QM", "NG", "QG", "RB", "HO", "PL", "PA")},
    **{root: "CMX" for root in ("GC", "MGC", "SI", "SIL", "HG", "MHG")},
}
_DATED_CONTRACT = re.compile(r"^/([A-Z0-9]+?)([FGHJKMNQUVXZ])(\d{1,2})$")


def contract_year(digits: str, today: date) -> int:
    """A contract's year from Tastytrade's one (or two) digits: the first such year from last year
    on (``6`` in 2025 -> 2026, ``5`` in 2025 -> 2025, ``4`` in 2025 -> 2034)."""
    if len(digits) == 2:
        return 2000 + int(digits)
    year = today.year - today.year % 10 + int(digits)
    return year + 10 if year < today.year - 1 else year


def dated_contract_ticker(symbol: str, today: date) -> str | None:
    """Yahoo's ticker of a dated futures contract (``/MESM6`` -> ``MESM26.CME``), the year read
    from ``today`` (``contract_year``); None for a root, a non-future or a product whose exchange
    suffix is not known (``FUTURE_EXCHANGES``)."""
    match = _DATED_CONTRACT.match(symbol.strip())
    if match is None or match.group(1) not in FUTURE_EXCHANGES:
        return None
    root, month, digits = match.groups()
    return f"{root}{month}{contract_year(digits, today) % 100:02d}.{FUTURE_EXCHANGES[root]}"


class ChartError(SourceError):
    """A chart request or payload was unusable; the message names the ticker and the reason."""

    def __init__(self, message: str, *, symbol: str, status: int | None = None, path: str = "") -> None:
        super().__init__(f"{symbol}: {message}", status=status, path=path)
        self.symbol = symbol


class SymbolUnavailable(ChartError):
    """HTTP 404: Yahoo does not know the ticker (delisted, or a wrong mapping)."""

    def __init__(self, description: str, *, symbol: str, path: str = "") -> None:
        super().__init__(description, symbol=symbol, status=404, path=path)
        self.description = description


@dataclass(frozen=True)
class Split:
    date: date
    numerator: float
    denominator: float


@dataclass(frozen=True)
class Dividend:
    date: date
    amount: float


@dataclass(frozen=True)
class ParsedChart:
    """Final daily bars (``BAR_COLUMNS``, sorted, one per date) and the events of one response."""

    symbol: str
    bars: pd.DataFrame
    splits: list[Split] = field(default_factory=list)
    dividends: list[Dividend] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    null_bars_dropped: int = 0
    live_bars_dropped: int = 0
    # Futures bars kept as final after the product's daily halt while their calendar day (Yahoo's
    # trading period, 00:00-23:59 New York) was still open: Globex trades again from 18:00 and
    # Yahoo files those trades under the same date, so the candles store re-fetches these dates on
    # the next run (``candles.plan``).
    provisional: tuple[date, ...] = ()
    # Final bars left out, with ``quarantine_reason`` (null prices, a repeated timestamp): the
    # candles sync quarantines them, so what Yahoo served and we refused stays inspectable.
    rejected: pd.DataFrame = field(default_factory=lambda: _empty_rejected())


@dataclass(frozen=True)
class FetchedChart:
    """One chart request: the untouched body (for the bronze layer) and what was parsed from it.

    ``note`` is set when the provider answered without data on purpose (HTTP 400 for a window
    before the first bar), so callers can say why nothing came back.
    """

    ticker: str
    start: date
    end: date
    raw: bytes
    chart: ParsedChart
    note: str = ""


def yahoo_ticker(symbol: str, overrides: Mapping[str, str] | None = None, today: date | None = None) -> str:
    """Map a Tastytrade underlying to the Yahoo ticker; the one place this mapping lives.

    ``/ES`` -> ``ES=F`` (futures roots of any length: the front-month continuous), a dated
    contract -> its own ticker (``/MESM6`` -> ``MESM26.CME``, see ``dated_contract_ticker``; its
    one-digit year is read from ``today``, the run's session), ``SPX`` -> ``^SPX`` (see
    ``INDEX_TICKERS``), ``BRK/B`` -> ``BRK-B``; anything else is unchanged. ``overrides``
    (Tastytrade symbol -> Yahoo ticker) win over every rule.
    """
    symbol = symbol.strip()
    if overrides and symbol in overrides:
        return overrides[symbol]
    dated = dated_contract_ticker(symbol, today or date.today()) if _DATED_CONTRACT.match(symbol) else None
    if dated is not None:
        return dated
    if symbol.startswith("/"):
        return f"{symbol[1:]}=F"
    if symbol in INDEX_TICKERS:
        return INDEX_TICKERS[symbol]
    return symbol.replace("/", "-")


def _ny_midnight_epoch(day: date) -> int:
    return int(datetime.combine(day, time(), tzinfo=ZoneInfo(EXCHANGE_TZ)).timestamp())


@lru_cache(maxsize=1)
def _empty_template() -> pd.DataFrame:
    prices = {name: pd.Series(dtype="float64") for name in PRICE_COLUMNS}
    frame = pd.DataFrame({"session_date": pd.Series(dtype="object"), **prices, "volume": pd.Series(dtype="Int64")})
    return frame.assign(quarantine_reason=pd.Series(dtype="object"))


def _empty_bars() -> pd.DataFrame:
    return _empty_template().loc[:, list(BAR_COLUMNS)]


def _empty_rejected() -> pd.DataFrame:
    return _empty_template().copy()


def _load(payload: bytes | dict, symbol: str) -> dict:
    if isinstance(payload, dict):
        return payload
    try:
        return json_object(payload)
    except ValueError as exc:
        raise ChartError(str(exc), symbol=symbol) from exc


def _chart_result(doc: dict, symbol: str) -> dict:
    chart = doc.get("chart")
    if not isinstance(chart, dict):
        raise ChartError("response has no 'chart' object", symbol=symbol)
    error = chart.get("error")
    if error:
        description = error.get("description", error) if isinstance(error, dict) else error
        raise ChartError(f"provider error: {description}", symbol=symbol)
    results = chart.get("result")
    if not isinstance(results, list) or not results or not isinstance(results[0], dict):
        raise ChartError("'chart.result' is missing or empty", symbol=symbol)
    return results[0]


def _events(result: dict, tz: ZoneInfo) -> tuple[list[Split], list[Dividend]]:
    events = result.get("events") or {}

    def local_day(epoch: Any) -> date:
        return datetime.fromtimestamp(int(epoch), tz).date()

    splits = [
        Split(local_day(e["date"]), float(e["numerator"]), float(e["denominator"]))
        for e in (events.get("splits") or {}).values()
    ]
    dividends = [Dividend(local_day(e["date"]), float(e["amount"])) for e in (events.get("dividends") or {}).values()]
    return sorted(splits, key=lambda s: s.date), sorted(dividends, key=lambda d: d.date)


@lru_cache(maxsize=1)
def _xnys_close_epochs() -> dict[date, int]:
    """Each XNYS session's close as epoch seconds (early closes included), built once."""
    closes = exchange_calendar().closes
    epochs = closes.to_numpy(dtype="datetime64[s]").astype("int64")
    return dict(zip((day.date() for day in closes.index), epochs.tolist()))


def _close_epochs(days: list[date], tz: ZoneInfo) -> np.ndarray:
    """When each bar's day is over: the XNYS close, or local midnight for a non-XNYS date."""
    closes = _xnys_close_epochs()
    known: dict[date, int] = {}
    for day in set(days):
        close = closes.get(day)
        if close is None:
            close = int(datetime.combine(day + timedelta(days=1), time(), tzinfo=tz).timestamp())
        known[day] = close
    return np.fromiter((known[day] for day in days), dtype="int64", count=len(days))


FUTURES_DAILY_HALT = time(17)
"""CME Globex's daily halt, 17:00-18:00 New York (16:00-17:00 Chicago): a futures day bar is final
from then (the settlement is done), although Yahoo's calendar-day bar grows again after 18:00."""


def _futures_halt_epochs(days: list[date]) -> np.ndarray:
    """When each futures bar is final, as epoch seconds: its day's Globex halt (17:00 New York) on
    an XNYS session; a day off the calendar (Sunday, a holiday) has only its evening, 18:00-24:00,
    so its bar is final at midnight."""
    new_york = ZoneInfo(EXCHANGE_TZ)
    sessions = _xnys_close_epochs()
    known = {
        day: int(datetime.combine(day, FUTURES_DAILY_HALT, tzinfo=new_york).timestamp()) if day in sessions
        else int(datetime.combine(day + timedelta(days=1), time(), tzinfo=new_york).timestamp())
        for day in set(days)
    }
    return np.fromiter((known[day] for day in days), dtype="int64", count=len(days))


def _day_end_epochs(days: list[date], tz: ZoneInfo) -> np.ndarray:
    """When each bar's calendar day ends: local midnight after it, in ``tz``."""
    known = {day: int(datetime.combine(day + timedelta(days=1), time(), tzinfo=tz).timestamp()) for day in set(days)}
    return np.fromiter((known[day] for day in days), dtype="int64", count=len(days))


def _prices(values: list, name: str, symbol: str) -> np.ndarray:
    try:
        return np.asarray(values, dtype="float64")  # JSON null -> NaN
    except (TypeError, ValueError) as exc:
        raise ChartError(f"'{name}' holds a value that is not a number ({exc})", symbol=symbol) from exc


def _bars(
    result: dict, symbol: str, tz: ZoneInfo, now: datetime
) -> tuple[pd.DataFrame, int, int, pd.DataFrame, tuple[date, ...]]:
    """The final bars of one chart result, in numpy: a request costs Yahoo's pacing gap, and the
    parse must stay far below it (a pandas pass per step cost ~15 ms a chart, for five bars)."""
    timestamps = result.get("timestamp")
    indicators = result["indicators"]
    if not timestamps:
        # Yahoo answers a window without bars with no ``timestamp`` and empty indicator objects.
        # Price arrays without their timestamps are schema drift: reading them as "no bars" would
        # record every requested session as a permanent gap.
        if any(block for block in indicators.get("quote") or [] if isinstance(block, dict)):
            raise ChartError("response has price arrays but no 'timestamp' (schema drift)", symbol=symbol)
        return _empty_bars(), 0, 0, _empty_rejected(), ()
    quote_block = indicators["quote"][0]
    adjclose = indicators["adjclose"][0]["adjclose"]
    columns = ("open", "high", "low", "close", "volume")
    lengths = {len(timestamps), len(adjclose), *(len(quote_block[name]) for name in columns)}
    if len(lengths) != 1:
        raise ChartError(f"timestamp and indicator arrays differ in length: {sorted(lengths)}", symbol=symbol)
    ts = np.asarray(timestamps, dtype="int64")
    order = np.argsort(ts, kind="stable")
    ts = ts[order]
    values = {name: _prices(quote_block[name], name, symbol)[order] for name in ("open", "high", "low", "close")}
    values["adj_close"] = _prices(adjclose, "adjclose", symbol)[order]
    volume = _prices(quote_block["volume"], "volume", symbol)[order]

    null = np.zeros(len(ts), dtype=bool)
    for name in PRICE_COLUMNS:
        null |= np.isnan(values[name])
    days: list[date] = pd.to_datetime(ts, unit="s", utc=True).tz_convert(tz).date.tolist()
    # When a day's bar is over. Yahoo reports a futures or crypto trading period as the whole
    # calendar day (``currentTradingPeriod.regular`` 00:00-23:59, bars stamped 00:00), which is not
    # when the bar is final: a future's is after its Globex halt (17:00 New York), a crypto pair's
    # when its (UTC) day ends; anything else's at the XNYS close (local midnight off the calendar).
    kind = str(result["meta"].get("instrumentType") or "").upper()
    future, crypto = kind == "FUTURE", kind == "CRYPTOCURRENCY"
    close_at = _futures_halt_epochs(days) if future else _day_end_epochs(days, tz) if crypto else _close_epochs(days, tz)
    now_epoch = now.timestamp()

    # One bar per date: the session's own bar is the first one stamped before its close (or, when
    # none is, e.g. AAPL's last bar at close + 1 s, the first of the date). Another bar on the same
    # date stamped after the close is the next session's partial bar (CME Globex reopens at 18:00
    # New York and Yahoo files that bar under the same date): never final here.
    before_close = ts < close_at
    first_of_day: dict[date, int] = {}
    first_before_close: dict[date, int] = {}
    for i, day in enumerate(days):
        first_of_day.setdefault(day, i)
        if before_close[i]:
            first_before_close.setdefault(day, i)
    chosen = np.zeros(len(ts), dtype=bool)
    chosen[[first_before_close.get(day, i) for day, i in first_of_day.items()]] = True
    next_session = ~chosen & ~before_close

    # Live while its session is open: the day's XNYS close (local midnight off the XNYS
    # calendar) is after ``now``. A bar stamped regularMarketTime is no exception once that
    # session is over: a halted or foreign listing (GS2C.DE, last trade 16:35Z) whose last trade
    # came before the NYSE close still has its final bar for the day.
    live = close_at > now_epoch
    period = (result["meta"].get("currentTradingPeriod") or {}).get("regular") or {}
    if "end" in period and not (future or crypto):  # their period is the calendar day, see above
        period_end = int(period["end"])
        if period_end > now_epoch:
            period_day = datetime.fromtimestamp(period_end, tz).date()
            live |= np.fromiter((day == period_day for day in days), dtype=bool, count=len(days))
    duplicate = np.concatenate([[False], ts[1:] == ts[:-1]])

    def frame(mask: np.ndarray) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "session_date": pd.Series([day for day, keep in zip(days, mask) if keep], dtype="object"),
                **{name: values[name][mask] for name in PRICE_COLUMNS},
                "volume": pd.array(np.round(volume[mask]), dtype="Float64").astype("Int64"),
            }
        )

    kept = chosen & ~null & ~live
    bars = frame(kept)
    provisional: tuple[date, ...] = ()
    if future:
        still_open = kept & (_day_end_epochs(days, ZoneInfo(EXCHANGE_TZ)) > now_epoch)
        provisional = tuple(sorted({day for day, open_ in zip(days, still_open) if open_}))
    null_dropped = int((null & chosen).sum())
    live_dropped = int((((live & chosen) | next_session) & ~null).sum())
    refused_null, refused_duplicate = chosen & null & ~live, duplicate & ~live
    if not (refused_null.any() or refused_duplicate.any()):
        return bars, null_dropped, live_dropped, _empty_rejected(), provisional
    reasons = [
        f"null {', '.join(c for c in PRICE_COLUMNS if np.isnan(values[c][i]))} from the provider (dropped, never filled)"
        if refused_null[i]
        else f"duplicate timestamp {ts[i]}: the first bar with it is kept"
        for i in np.flatnonzero(refused_null | refused_duplicate)
    ]
    rejected = frame(refused_null | refused_duplicate).assign(quarantine_reason=pd.Series(reasons, dtype="object"))
    return bars, null_dropped, live_dropped, rejected, provisional


def parse_chart(payload: bytes | dict, *, symbol: str, now: datetime) -> ParsedChart:
    """Parse one chart response into final daily bars and split/dividend events.

    ``now`` is when the response was fetched. A bar is dropped as not final while its session is
    open: its day's XNYS close (local midnight for a date off the XNYS calendar) is after ``now``,
    or its day is the provider's current trading period and that has not ended by ``now``. A
    future's (``meta.instrumentType`` FUTURE) is final from its day's Globex halt (17:00 New York)
    and listed in ``provisional`` until its calendar day ends; a crypto pair's
    (CRYPTOCURRENCY) when its day ends in the exchange time zone (UTC). Yahoo reports both
    periods as the whole calendar day, so for them the period is not the session. Once
    the session is over, a bar stamped ``regularMarketTime`` before the close (a halt, a foreign
    listing such as GS2C.DE) is that day's final bar. Of several bars on one date the first one
    stamped before the close is the session's bar; one stamped after the close next to it is the
    next session's partial bar (futures after the 18:00 Globex reopen), dropped and counted as
    live. Bars with a null open/high/low/close/adjclose are dropped, never forward-filled: a
    filled bar would invent a zero return. Anything structurally unexpected raises ``ChartError``.
    """
    result = _chart_result(_load(payload, symbol), symbol)
    try:
        meta = result["meta"]
        tz = ZoneInfo(meta["exchangeTimezoneName"])
        splits, dividends = _events(result, tz)
        bars, null_dropped, live_dropped, rejected, provisional = _bars(result, symbol, tz, now)
    except ChartError:
        raise
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        raise ChartError(f"unexpected chart layout ({type(exc).__name__}: {exc})", symbol=symbol) from exc
    return ParsedChart(symbol, bars, splits, dividends, dict(meta), null_dropped, live_dropped, provisional, rejected)


def _provider_description(body: bytes) -> str:
    """Yahoo's ``chart.error.description``, or the start of the body when it is not JSON."""
    try:
        return str(json.loads(body)["chart"]["error"]["description"])
    except (ValueError, KeyError, TypeError):
        return body[:200].decode("utf-8", "replace").strip()


def estimate_seconds(n_requests: int, rate_per_second: float, jitter: float = 0.0) -> float:
    """Expected wall time of ``n_requests`` sequential chart requests at that pacing.

    The limiter spaces request starts by 1/rate scaled by uniform(1, 1 + jitter), so the mean gap
    is (1/rate)(1 + jitter/2); the first request starts at once. Network time and retries come on
    top. A rate <= 0 (no pacing) estimates 0.
    """
    if n_requests <= 1 or rate_per_second <= 0:
        return 0.0
    return (n_requests - 1) * (1.0 + jitter / 2.0) / rate_per_second


def pace_message(n_requests: int, rate_per_second: float, jitter: float = 0.0) -> str:
    """``"300 requests at 1/s: about 6 min"``: what a candles run will cost, for the run log."""
    seconds = estimate_seconds(n_requests, rate_per_second, jitter)
    rate = f"{rate_per_second:g}/s" if rate_per_second > 0 else "no pacing"
    if seconds < 90:
        about = f"about {seconds:.0f} s"
    elif seconds < 90 * 60:
        about = f"about {seconds / 60:.0f} min"
    else:
        about = f"about {seconds / 3600:.1f} h"
    noun = "request" if n_requests == 1 else "requests"
    return f"{n_requests} {noun} at {rate}: {about}"


ANSWER_STATUSES = frozenset({200, 400, 404})
"""What Yahoo answers about a ticker and window (bars, none yet, unknown ticker); any other status
the request ended on (a 429 or 5xx the retries gave up on) is Yahoo failing, not an answer."""


def raw_name(ticker: str, start: date, end: date, status: int = 200) -> str:
    """The bronze file name of one chart response, the only place it is spelled.

    The ticker is percent-encoded (``^SPX`` -> ``%5ESPX``, ``ES=F`` -> ``ES%3DF``) so that no
    ticker can make an unsafe or nested path. A body that is no answer carries its status
    (``chart_SPY_..._http503.json``), so it never replaces an answer landed for the same window.
    """
    suffix = "" if status in ANSWER_STATUSES else f"_http{status}"
    return f"chart_{quote(ticker, safe='')}_{start.isoformat()}_{end.isoformat()}{suffix}.json"


class YahooChartClient:
    """Daily charts from the v8 endpoint, one HTTP request per call (plus bounded retries).

    Requests are spaced ``rate_per_second`` apart with ``jitter`` (see ``RateLimiter``); the
    defaults (about one a second, jittered) are what Yahoo tolerates from one IP.
    """

    def __init__(
        self,
        base_url: str,
        *,
        policy: RetryPolicy = RetryPolicy(),
        rate_per_second: float = DEFAULT_RATE_PER_SECOND,
        jitter: float = DEFAULT_JITTER,
        stats: RequestStats | None = None,
        limiter: RateLimiter | None = None,
    ) -> None:
        self.policy = policy
        self.stats = stats if stats is not None else RequestStats()
        self.rate_per_second = rate_per_second
        self.jitter = jitter
        self._limiter = limiter if limiter is not None else RateLimiter(rate_per_second, jitter=jitter)
        self._http = make_client(base_url, policy)

    def estimate_seconds(self, n_requests: int) -> float:
        """Expected seconds for ``n_requests`` at this client's pacing (see ``estimate_seconds``)."""
        return estimate_seconds(n_requests, self.rate_per_second, self.jitter)

    def pace_message(self, n_requests: int) -> str:
        """``"N requests at R/s: about M min"`` for this client's pacing."""
        return pace_message(n_requests, self.rate_per_second, self.jitter)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> YahooChartClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def fetch(
        self,
        ticker: str,
        start: date,
        end: date,
        *,
        now: datetime,
        on_raw: Callable[[RawResponse], None] | None = None,
    ) -> FetchedChart:
        """Bars for sessions ``start``..``end`` (both inclusive) that are final by ``now``.

        Raises ``SymbolUnavailable`` on 404 and ``ChartError`` when retries run out, the request
        times out, or the body cannot be parsed. HTTP 400 (window before the first bar) is an
        empty chart, not an error. ``on_raw`` receives the body of the answer that ends the
        request, whatever its status (200 whether it parses or not, 400, 404, the 429 or 5xx the
        retries gave up on), as a ``RawResponse`` named by ``raw_name``, before anything reads
        it: what Yahoo said is kept even when it cannot be used. Only a request that never got
        an answer (timeouts, refused connections) lands nothing.
        """
        path = CHART_PATH + quote(ticker, safe="")
        params = {
            "period1": str(_ny_midnight_epoch(start)),
            "period2": str(_ny_midnight_epoch(end + timedelta(days=1))),
            "interval": "1d",
            "events": "div,splits",
            "includeAdjustedClose": "true",
        }
        try:
            response = send_with_retry(
                self._http, "GET", path, policy=self.policy, stats=self.stats, limiter=self._limiter, params=params
            )
        except SourceError as exc:
            raise ChartError(str(exc), symbol=ticker, status=exc.status, path=path) from exc
        body = response.content
        if on_raw is not None:
            on_raw(RawResponse(raw_name(ticker, start, end, response.status_code), body))
        if response.status_code == 404:
            raise SymbolUnavailable(_provider_description(body), symbol=ticker, path=path)
        if response.status_code == 400:
            empty = ParsedChart(ticker, _empty_bars())
            return FetchedChart(ticker, start, end, body, empty, note=f"no data: {_provider_description(body)}")
        if response.status_code != 200:
            raise ChartError(
                f"HTTP {response.status_code} after retries: {_provider_description(body)}",
                symbol=ticker,
                status=response.status_code,
                path=path,
            )
        return FetchedChart(ticker, start, end, body, parse_chart(body, symbol=ticker, now=now))
