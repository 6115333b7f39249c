"""Yahoo Finance v8 chart endpoint: ticker mapping, one-request fetch, and a strict parser.

Yahoo is the only source of daily OHLCV here and it is fragile: it rate-limits without a
published quota, answers with ``null`` bars for halts, and serves the running session as a daily
bar. So the client asks once per symbol and window (retries are bounded by ``RetryPolicy``), and
the parser keeps only *final* bars, drops rather than fills null bars, and turns every surprise
in the payload into a ``ChartError`` that names the ticker, so one bad symbol can be reported as
stale instead of failing a run.

Session dates follow the exchange's own time zone (``meta.exchangeTimezoneName``); whether a bar
is final is judged on the XNYS calendar, the one clock of the pipeline. Bars on dates that are not
XNYS sessions (a German listing's local holiday, a futures bar on a US holiday) are kept here,
faithful to the payload; the candle cache drops them, because every partition and every HV window
of the pipeline counts XNYS sessions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any, Mapping
from urllib.parse import quote
from zoneinfo import ZoneInfo

import pandas as pd

from variance_pipeline.calendar import EXCHANGE_TZ, exchange_calendar
from variance_pipeline.sources.http import (
    RateLimiter,
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

# Cash-settled index underlyings Tastytrade lists without a caret. DJX is deliberately absent:
# Yahoo only has ^DJI, which is 100 x DJX, and silently storing a price 100 times too large under
# the DJX symbol is worse than a visible "unavailable"; map it with an override if wanted.
INDEX_TICKERS: Mapping[str, str] = {
    name: f"^{name}" for name in ("SPX", "VIX", "RUT", "NDX", "OEX", "VIX9D", "VVIX", "VXN", "RVX")
}


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


def yahoo_ticker(symbol: str, overrides: Mapping[str, str] | None = None) -> str:
    """Map a Tastytrade underlying to the Yahoo ticker; the one place this mapping lives.

    ``/ES`` -> ``ES=F`` (futures roots of any length; pass roots, not contracts such as ``/ESZ5``),
    ``SPX`` -> ``^SPX`` (see ``INDEX_TICKERS``), ``BRK/B`` -> ``BRK-B``; anything else is unchanged.
    ``overrides`` (Tastytrade symbol -> Yahoo ticker) win over every rule.
    """
    symbol = symbol.strip()
    if overrides and symbol in overrides:
        return overrides[symbol]
    if symbol.startswith("/"):
        return f"{symbol[1:]}=F"
    if symbol in INDEX_TICKERS:
        return INDEX_TICKERS[symbol]
    return symbol.replace("/", "-")


def _ny_midnight_epoch(day: date) -> int:
    return int(datetime.combine(day, time(), tzinfo=ZoneInfo(EXCHANGE_TZ)).timestamp())


def _empty_bars() -> pd.DataFrame:
    prices = {name: pd.Series(dtype="float64") for name in PRICE_COLUMNS}
    return pd.DataFrame({"session_date": pd.Series(dtype="object"), **prices, "volume": pd.Series(dtype="Int64")})


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


def _close_times(days: pd.Series, tz: ZoneInfo) -> pd.Series:
    """When each bar's day is over: the XNYS close, or local midnight for a non-XNYS date."""
    naive = pd.to_datetime(days)
    closes = exchange_calendar().closes.reindex(pd.DatetimeIndex(naive)).to_numpy()
    local_midnight = (naive + pd.Timedelta(days=1)).dt.tz_localize(tz).dt.tz_convert("UTC")
    return pd.Series(closes, index=days.index).fillna(local_midnight)


def _bars(result: dict, symbol: str, tz: ZoneInfo, now: datetime) -> tuple[pd.DataFrame, int, int]:
    timestamps = result.get("timestamp")
    if not timestamps:  # Yahoo omits the arrays altogether for a window without bars.
        return _empty_bars(), 0, 0
    indicators = result["indicators"]
    quote_block = indicators["quote"][0]
    adjclose = indicators["adjclose"][0]["adjclose"]
    columns = ("open", "high", "low", "close", "volume")
    lengths = {len(timestamps), len(adjclose), *(len(quote_block[name]) for name in columns)}
    if len(lengths) != 1:
        raise ChartError(f"timestamp and indicator arrays differ in length: {sorted(lengths)}", symbol=symbol)
    raw = pd.DataFrame(
        {
            "ts": pd.Series(timestamps, dtype="int64"),
            **{name: pd.Series(quote_block[name], dtype="float64") for name in ("open", "high", "low", "close")},
            "adj_close": pd.Series(adjclose, dtype="float64"),
            "volume": pd.Series(quote_block["volume"], dtype="Float64").round().astype("Int64"),
        }
    )

    null = raw[list(PRICE_COLUMNS)].isna().any(axis=1)
    stamp = pd.to_datetime(raw["ts"], unit="s", utc=True)
    raw["session_date"] = stamp.dt.tz_convert(tz).dt.date
    close_at = _close_times(raw["session_date"], tz)
    now_ts = pd.Timestamp(now)
    live = close_at > now_ts
    market_time = result["meta"].get("regularMarketTime")
    if market_time is not None:
        live |= (raw["ts"] == int(market_time)) & (stamp < close_at)
    period = (result["meta"].get("currentTradingPeriod") or {}).get("regular") or {}
    if "end" in period:
        period_end = pd.Timestamp(int(period["end"]), unit="s", tz="UTC")
        live |= (raw["session_date"] == period_end.tz_convert(tz).date()) & (period_end > now_ts)
    kept = raw.loc[~null & ~live].sort_values("ts").drop_duplicates("session_date", keep="last")
    bars = kept.loc[:, list(BAR_COLUMNS)].reset_index(drop=True)
    return bars, int(null.sum()), int((live & ~null).sum())


def parse_chart(payload: bytes | dict, *, symbol: str, now: datetime) -> ParsedChart:
    """Parse one chart response into final daily bars and split/dividend events.

    A bar is dropped as not final when its day has not closed by ``now`` (XNYS close), when it is
    stamped ``regularMarketTime`` before that close (a live bar in a response fetched during the
    session), or when its day is the provider's current trading period and that has not ended.
    Bars with a null open/high/low/close/adjclose are dropped, never forward-filled: a filled bar
    would invent a zero return. Anything structurally unexpected raises ``ChartError``.
    """
    result = _chart_result(_load(payload, symbol), symbol)
    try:
        meta = result["meta"]
        tz = ZoneInfo(meta["exchangeTimezoneName"])
        splits, dividends = _events(result, tz)
        bars, null_dropped, live_dropped = _bars(result, symbol, tz, now)
    except ChartError:
        raise
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        raise ChartError(f"unexpected chart layout ({type(exc).__name__}: {exc})", symbol=symbol) from exc
    return ParsedChart(symbol, bars, splits, dividends, dict(meta), null_dropped, live_dropped)


def _provider_description(body: bytes) -> str:
    """Yahoo's ``chart.error.description``, or the start of the body when it is not JSON."""
    try:
        return str(json.loads(body)["chart"]["error"]["description"])
    except (ValueError, KeyError, TypeError):
        return body[:200].decode("utf-8", "replace").strip()


class YahooChartClient:
    """Daily charts from the v8 endpoint, one HTTP request per call (plus bounded retries)."""

    def __init__(
        self,
        base_url: str,
        *,
        policy: RetryPolicy = RetryPolicy(),
        rate_per_second: float = 2.0,
        stats: RequestStats | None = None,
    ) -> None:
        self.policy = policy
        self.stats = stats if stats is not None else RequestStats()
        self._limiter = RateLimiter(rate_per_second)
        self._http = make_client(base_url, policy)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> YahooChartClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def fetch(self, ticker: str, start: date, end: date, *, now: datetime) -> FetchedChart:
        """Bars for sessions ``start``..``end`` (both inclusive) that are final by ``now``.

        Raises ``SymbolUnavailable`` on 404 and ``ChartError`` when retries run out, the request
        times out, or the body cannot be parsed. HTTP 400 (window before the first bar) is an
        empty chart, not an error.
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
            raise ChartError(str(exc), symbol=ticker, path=path) from exc
        body = response.content
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
