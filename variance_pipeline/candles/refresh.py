"""Cache-first Yahoo candles: one Parquet per symbol, fetched only where sessions are missing.

Yahoo rate-limits hard and without a published quota, so every run asks the cache first and
sends at most one request per symbol for what is missing (two when the history was rescaled).
A failure never loses data: the cached bars stay and the symbol is reported ``stale``.

Scales never mix. Yahoo's ``close`` is split-adjusted and ``adj_close`` split- and
dividend-adjusted, so a split or dividend after the cached bars silently rescales history. Each
incremental request therefore re-reads the last ``OVERLAP_BARS`` cached bars; when the response
lists a split after the cache, when the overlap's closes moved, or when its adjustment factors
(``adj_close / close``) moved, the symbol's whole history is fetched again and replaces the cache.

The lake follows the cache. A re-based symbol (or one whose Yahoo ticker changed) is reported
``rebased`` and its sidecar keeps ``lake_rebase_pending`` until the candles asset has rewritten the
symbol's rows in the lake partitions it had already written (``rebase_lake_candles``) and called
``CandleCache.mark_lake_synced``; a crash in between is therefore redone by the next run rather than
leaving old-scale rows in the lake. Without a re-base nothing of this reads a single partition.
"""

from __future__ import annotations

from collections import Counter, deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import Callable, Literal, Mapping, Sequence, TypeVar

import numpy as np
import pandas as pd

from variance_pipeline.calendar import last_closed_session, sessions_back, sessions_in_range
from variance_pipeline.candles.store import CacheMeta, CandleCache, concat_candles, empty_candles, file_stem
from variance_pipeline.sources.http import RequestStats
from variance_pipeline.sources.yahoo import (
    ChartError,
    Dividend,
    FetchedChart,
    Split,
    SymbolUnavailable,
    YahooChartClient,
    yahoo_ticker,
)
from variance_pipeline.schemas.candles import CANDLES, xnys_session_mask
from variance_pipeline.schemas.realized_volatility import LOOKBACK_SESSIONS

OVERLAP_BARS = 5
# Relative move of the overlap's median close that means "rescaled" (splits, stock dividends);
# a one-bar correction of the latest close stays below it and is simply overwritten.
SCALE_TOLERANCE = 0.005
# Relative move of any overlap bar's adj_close/close factor that means a new dividend adjustment;
# well above float32 rounding (~1e-7), below the smallest real dividend adjustment.
ADJUST_TOLERANCE = 1e-6
# A session without a bar counts as "Yahoo has none" only this long after its close (or when a
# later bar exists); before that the bar may simply not be published yet.
NO_BAR_SETTLE = timedelta(hours=12)
# A ticker Yahoo answered 404 for is asked again only after this long (YahooResource config):
# delisted names and wrong mappings would otherwise cost a request on every run.
DEFAULT_NOT_FOUND_RETRY = timedelta(days=7)
# Chart requests sent ahead of the symbol being merged (each holds one response in memory).
PREFETCH = 2

_EMPTY_REJECTED = pd.DataFrame(columns=[*CANDLES.names, "quarantine_reason"])
Status = Literal["fetched", "cached", "stale", "unavailable"]
Event = TypeVar("Event", Split, Dividend)


@dataclass(frozen=True)
class SymbolStatus:
    symbol: str
    yahoo_ticker: str
    status: Status
    requests: int
    bars_added: int
    message: str
    # The cached history was replaced on a new scale (split, dividend, another ticker) and the
    # lake's earlier partitions still need rewriting from it (see ``rebase_lake_candles``).
    rebased: bool = False
    # Unavailable without a request: Yahoo's 404 of ``message`` is remembered until then.
    not_found_until: datetime | None = None


@dataclass(frozen=True)
class ChartBody:
    """An untouched chart body, for the bronze layer (``raw/candles/date=D/``)."""

    symbol: str
    yahoo_ticker: str
    start: date
    end: date
    body: bytes

    @property
    def name(self) -> str:
        """A file name unique per request (the ticker percent-encoded: no ``/`` reaches a path)."""
        return f"chart_{file_stem(self.yahoo_ticker)}_{self.start}_{self.end}.json"


@dataclass(frozen=True)
class CandleRefresh:
    """What ``refresh_candles`` did: every symbol's cached bars, its outcome, the request cost.

    ``bars`` holds each symbol's whole cache after the refresh (lookback included); ``frame``
    cuts it to the sessions a run writes. ``responses`` are the untouched bodies for bronze.
    """

    start: date
    end: date
    bars: pd.DataFrame
    statuses: tuple[SymbolStatus, ...]
    stats: RequestStats
    null_bars_dropped: int
    live_bars_dropped: int
    off_calendar_bars_dropped: int
    # Bars Yahoo served and the parser refused (null prices, repeated timestamps), with
    # ``quarantine_reason``: ``sync_lake`` quarantines them beside the bars validation refused.
    rejected: pd.DataFrame

    @property
    def rebased_symbols(self) -> list[str]:
        """Symbols whose lake rows must be rewritten from the cache (new scale)."""
        return [s.symbol for s in self.statuses if s.rebased]

    def frame(self, start: date | None = None, end: date | None = None) -> pd.DataFrame:
        """Bars of all symbols for sessions in [start, end] (default: the refresh's range)."""
        start, end = start or self.start, end or self.end
        inside = (self.bars["session_date"] >= start) & (self.bars["session_date"] <= end)
        return self.bars.loc[inside].reset_index(drop=True)


@dataclass(frozen=True)
class _Fetch:
    """The final bars of one response, restricted to XNYS sessions, and its drop counts."""

    bars: pd.DataFrame
    splits: tuple[Split, ...]
    dividends: tuple[Dividend, ...]
    null_dropped: int
    live_dropped: int
    off_calendar: int
    raw: ChartBody
    note: str
    rejected: pd.DataFrame


@dataclass(frozen=True)
class _Outcome:
    status: SymbolStatus
    bars: pd.DataFrame
    fetches: tuple[_Fetch, ...] = ()


RawCallback = Callable[[ChartBody], None]


def _fetch(
    client: YahooChartClient, symbol: str, ticker: str, start: date, end: date, now: datetime, on_raw: RawCallback
) -> _Fetch:
    fetched: FetchedChart = client.fetch(ticker, start, end, now=now)
    raw = ChartBody(symbol, ticker, start, end, fetched.raw)
    on_raw(raw)  # bronze first: a parse or merge problem below must not lose what Yahoo said
    chart = fetched.chart
    bars = chart.bars
    on_calendar = xnys_session_mask(bars["session_date"])
    bars = bars.loc[on_calendar].assign(symbol=symbol, yahoo_ticker=ticker)
    return _Fetch(
        bars=bars.loc[:, list(CANDLES.names)].reset_index(drop=True),
        splits=tuple(chart.splits),
        dividends=tuple(chart.dividends),
        null_dropped=chart.null_bars_dropped,
        live_dropped=chart.live_bars_dropped,
        off_calendar=int((~on_calendar).sum()),
        raw=raw,
        note=fetched.note,
        rejected=(
            chart.rejected.loc[xnys_session_mask(chart.rejected["session_date"])].assign(symbol=symbol, yahoo_ticker=ticker)
            if len(chart.rejected)
            else chart.rejected
        ),
    )


def _no_bar_sessions(bars: pd.DataFrame, start: date, end: date, now: datetime) -> set[date]:
    """Sessions in [start, end] without a bar that Yahoo should have published by now.

    A gap before the response's last bar is the provider's final word; a trailing gap only once
    ``NO_BAR_SETTLE`` has passed since its close, so a bar published late is still fetched.
    """
    dates = set(bars["session_date"])
    settled_until = max([last_closed_session(now - NO_BAR_SETTLE), *dates])
    return set(sessions_in_range(start, min(end, settled_until))) - dates


def _rescale_reason(cached: pd.DataFrame, fetch: _Fetch) -> str | None:
    """Why the cached history is no longer on the provider's scale, or None when it still is."""
    if cached.empty or fetch.bars.empty:
        return None
    last_cached = cached["session_date"].max()
    new_splits = [s for s in fetch.splits if s.date > last_cached]
    if new_splits:
        s = new_splits[0]
        return f"split {s.numerator:g}:{s.denominator:g} on {s.date} after the cached bars"
    # The overlap is a handful of bars: plain lookups, not a DataFrame merge (~5 ms a symbol).
    old = dict(zip(cached["session_date"], zip(cached["close"], cached["adj_close"])))
    pairs = [
        (*old[day], close, adj_close)
        for day, close, adj_close in zip(fetch.bars["session_date"], fetch.bars["close"], fetch.bars["adj_close"])
        if day in old
    ]
    if not pairs:
        return "no overlap with the cached bars to check the price scale"
    close_old, adj_old, close_new, adj_new = np.array(pairs, dtype="float64").T
    ratio = float(np.median(close_new / close_old))
    if abs(ratio - 1.0) > SCALE_TOLERANCE:
        return f"overlap closes moved by a factor {ratio:.6g}"
    factor_change = (adj_new / close_new) / (adj_old / close_old)
    if (np.abs(factor_change - 1.0) > ADJUST_TOLERANCE).any():
        return "adjusted closes of the overlap changed (new dividend adjustment)"
    return None


def _merge_events(old: tuple[Event, ...], new: tuple[Event, ...]) -> tuple[Event, ...]:
    return tuple(sorted(set(old) | set(new), key=lambda e: e.date))


@dataclass(frozen=True)
class _Plan:
    """A symbol that needs a request: its cache as read, and where the request starts."""

    symbol: str
    ticker: str
    cached: pd.DataFrame
    meta: CacheMeta | None
    pending: bool
    request_start: date


def _plan_symbol(
    symbol: str, ticker: str, expected: list[date], now: datetime, cache: CandleCache, not_found_retry: timedelta
) -> _Plan | _Outcome:
    """What the cache already answers (an ``_Outcome``), or the request still needed (a ``_Plan``)."""
    cached = cache.read(symbol)
    meta = cache.read_meta(symbol)
    pending = bool(meta and meta.lake_rebase_pending)
    if (meta is not None and meta.yahoo_ticker != ticker) or (cached["yahoo_ticker"] != ticker).any():
        # The mapping changed: another instrument's history, in the lake too if it was landed.
        pending = pending or not cached.empty
        cached, meta = empty_candles(), None
    known_gaps = meta.no_bar_sessions if meta else frozenset()
    missing = sorted(set(expected) - set(cached["session_date"]) - known_gaps)
    if not missing:
        status = SymbolStatus(symbol, ticker, "cached", 0, 0, f"{len(cached)} cached bars", rebased=pending)
        return _Outcome(status, cached)
    if meta is not None and meta.not_found_at is not None and now < meta.not_found_at + not_found_retry:
        until = meta.not_found_at + not_found_retry
        message = (
            f"Yahoo answered 404 for {ticker} at {meta.not_found_at.isoformat()}; remembered, asked again "
            f"after {until.isoformat()}; keeping {len(cached)} cached bars"
        )
        status = SymbolStatus(symbol, ticker, "unavailable", 0, 0, message, pending, not_found_until=until)
        return _Outcome(status, cached)
    before_missing = cached.loc[cached["session_date"] < missing[0], "session_date"]
    overlap = sorted(before_missing)[-OVERLAP_BARS:]
    return _Plan(symbol, ticker, cached, meta, pending, overlap[0] if overlap else missing[0])


def _merge_fetched(
    plan: _Plan,
    first: _Fetch,
    fetch_again: Callable[[date, date], _Fetch],
    window_start: date,
    end: date,
    now: datetime,
    cache: CandleCache,
) -> _Outcome:
    """Merge the response into the cache, or refetch the whole history when the scale moved."""
    symbol, ticker, cached, meta = plan.symbol, plan.ticker, plan.cached, plan.meta
    present = set(cached["session_date"])
    reason = _rescale_reason(cached, first)
    if reason is None:
        fetches = (first,)
        kept = cached.loc[~cached["session_date"].isin(set(first.bars["session_date"]))]
        merged = concat_candles([kept, first.bars])
        known_gaps = meta.no_bar_sessions if meta else frozenset()
        gaps = (known_gaps | _no_bar_sessions(first.bars, plan.request_start, end, now)) - set(merged["session_date"])
        splits = _merge_events(meta.splits if meta else (), first.splits)
        dividends = _merge_events(meta.dividends if meta else (), first.dividends)
    else:
        # Cover everything cached too, so replacing the cache loses no bars of an older backfill.
        full_start = min(window_start, cached["session_date"].min())
        full_end = max(end, cached["session_date"].max())
        try:
            second = fetch_again(full_start, full_end)
        except ChartError as exc:
            message = f"{reason}; the refetch of the full history failed ({exc})"
            raise ChartError(message, symbol=ticker, status=exc.status, path=exc.path) from exc
        fetches = (first, second)
        merged = second.bars
        gaps = _no_bar_sessions(second.bars, full_start, full_end, now)
        splits, dividends = second.splits, second.dividends

    rebased = plan.pending or reason is not None
    bars = cache.write(symbol, merged)
    cache.write_meta(symbol, CacheMeta(ticker, now, splits, dividends, frozenset(gaps), rebased))
    added = len(set(bars["session_date"]) - present)
    notes = "; ".join(f.note for f in fetches if f.note)
    message = f"+{added} bars, {len(bars)} cached" + (f"; refetched: {reason}" if reason else "")
    status = SymbolStatus(symbol, ticker, "fetched", 0, added, message + (f"; {notes}" if notes else ""), rebased)
    return _Outcome(status, bars, fetches)


@dataclass(frozen=True)
class _Attempt:
    """One chart request as the HTTP thread finished it: the fetch or its error, and its cost."""

    fetch: _Fetch | None
    error: Exception | None
    requests: int

    def result(self) -> _Fetch:
        if self.error is not None:
            raise self.error
        assert self.fetch is not None
        return self.fetch


class _ChartRequests:
    """Chart requests on one background thread, in order, through the client's rate limiter.

    A run is paced by Yahoo's rate: while the limiter waits for the next slot, the main thread
    merges and writes the previous responses, so that work hides inside the pacing gap instead
    of adding to it (one after the other it was ~25 ms a chart on top of every gap). One thread
    keeps the requests strictly sequential and each symbol's request count exact.
    """

    def __init__(self, client: YahooChartClient, now: datetime, on_raw: RawCallback) -> None:
        self._client, self._now, self._on_raw = client, now, on_raw
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="yahoo-chart")

    def submit(self, symbol: str, ticker: str, start: date, end: date) -> Future[_Attempt]:
        return self._pool.submit(self._attempt, symbol, ticker, start, end)

    def _attempt(self, symbol: str, ticker: str, start: date, end: date) -> _Attempt:
        stats = self._client.stats
        before = stats.requests
        try:
            fetched = _fetch(self._client, symbol, ticker, start, end, self._now, self._on_raw)
        except Exception as exc:  # handed to the main thread, which decides (stale, unavailable, raise)
            return _Attempt(None, exc, stats.requests - before)
        return _Attempt(fetched, None, stats.requests - before)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def refresh_candles(
    symbols: Sequence[str],
    start: date,
    end: date,
    *,
    now: datetime,
    client: YahooChartClient,
    cache: CandleCache,
    lookback: int = LOOKBACK_SESSIONS,
    overrides: Mapping[str, str] | None = None,
    on_raw: RawCallback | None = None,
    log: Callable[[str], None] = print,
    progress_every: int = 5,
    not_found_retry: timedelta = DEFAULT_NOT_FOUND_RETRY,
) -> CandleRefresh:
    """Bring every symbol's cache up to ``end`` (plus ``lookback`` sessions before ``start``).

    Symbols go one after another through the client's rate limiter, the requests on one
    background thread a step ahead of the merging (``_ChartRequests``). Only sessions closed by
    ``now`` are expected. A symbol whose fetch fails keeps its cache and is reported ``stale``;
    404 is ``unavailable`` and remembered in the sidecar: the ticker is asked again only after
    ``not_found_retry``; nothing here raises for one bad symbol. ``on_raw`` receives every
    response body as soon as it arrived (the bronze layer), before anything parses it.
    """
    land = on_raw or (lambda raw: None)
    window_start = sessions_back(start, lookback + 1)[0]
    request_end = min(end, last_closed_session(now))
    expected = sessions_in_range(window_start, request_end)
    stats = client.stats
    baseline = stats.snapshot()
    statuses: list[SymbolStatus] = []
    frames: list[pd.DataFrame] = []
    fetches: list[_Fetch] = []
    requests = _ChartRequests(client, now, land)
    queue: deque[tuple[str, str, _Plan | _Outcome, Future[_Attempt] | None]] = deque()
    upcoming = iter(symbols)

    def plan_ahead() -> None:
        """Plan symbols until ``PREFETCH`` requests are in flight (or every symbol is planned)."""
        while sum(1 for *_, future in queue if future is not None) < PREFETCH:
            symbol = next(upcoming, None)
            if symbol is None:
                return
            ticker = yahoo_ticker(symbol, overrides)
            plan = _plan_symbol(symbol, ticker, expected, now, cache, not_found_retry)
            future = requests.submit(symbol, ticker, plan.request_start, request_end) if isinstance(plan, _Plan) else None
            queue.append((symbol, ticker, plan, future))

    try:
        plan_ahead()
        while queue:
            symbol, ticker, plan, future = queue.popleft()
            plan_ahead()
            spent = 0
            try:
                if isinstance(plan, _Outcome):
                    outcome = plan
                else:
                    assert future is not None
                    attempt = future.result()
                    spent += attempt.requests

                    def fetch_again(first_day: date, last_day: date) -> _Fetch:
                        nonlocal spent
                        again = requests.submit(symbol, ticker, first_day, last_day).result()
                        spent += again.requests
                        return again.result()

                    outcome = _merge_fetched(plan, attempt.result(), fetch_again, window_start, request_end, now, cache)
            except SymbolUnavailable as exc:
                _remember_not_found(cache, symbol, ticker, now)
                status = SymbolStatus(
                    symbol, ticker, "unavailable", 0, 0, exc.description, rebased=cache.rebase_pending(symbol)
                )
                outcome = _Outcome(status, cache.read(symbol))
            except ChartError as exc:
                bars = cache.read(symbol)
                message = f"{exc}; keeping {len(bars)} cached bars"
                status = SymbolStatus(symbol, ticker, "stale", 0, 0, message, rebased=cache.rebase_pending(symbol))
                outcome = _Outcome(status, bars)
            statuses.append(replace(outcome.status, requests=spent))
            frames.append(outcome.bars)
            fetches.extend(outcome.fetches)
            if len(statuses) % progress_every == 0 or len(statuses) == len(symbols):
                log(_progress(len(statuses), len(symbols), statuses, stats.since(baseline)))
    finally:
        requests.close()

    return CandleRefresh(
        start=start,
        end=end,
        bars=concat_candles(frames).sort_values(["symbol", "session_date"]).reset_index(drop=True),
        statuses=tuple(statuses),
        stats=stats.since(baseline),
        null_bars_dropped=sum(f.null_dropped for f in fetches),
        live_bars_dropped=sum(f.live_dropped for f in fetches),
        off_calendar_bars_dropped=sum(f.off_calendar for f in fetches),
        rejected=pd.concat(
            [f.rejected for f in fetches if len(f.rejected)] or [_EMPTY_REJECTED], ignore_index=True
        ),
    )


def _remember_not_found(cache: CandleCache, symbol: str, ticker: str, now: datetime) -> None:
    """Note Yahoo's 404 in the sidecar (keeping what it knew), so the next runs skip the ticker."""
    meta = cache.read_meta(symbol)
    if meta is None or meta.yahoo_ticker != ticker:
        meta = CacheMeta(ticker, now)
    cache.write_meta(symbol, replace(meta, not_found_at=now))


def _progress(done: int, total: int, statuses: list[SymbolStatus], spent: RequestStats) -> str:
    counts = Counter(s.status for s in statuses)
    requests = sum(s.requests for s in statuses)  # of the symbols done, not those requested ahead
    return (
        f"candles: {done}/{total} symbols, {requests} requests, {counts.get('cached', 0)} cache hits, "
        f"{spent.retries} retries, {counts.get('stale', 0)} stale, {counts.get('unavailable', 0)} unavailable"
    )


