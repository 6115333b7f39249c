"""Store-first Yahoo candles: each symbol's history brought up to date with at most one request.

Yahoo rate-limits hard and without a published quota, so every run asks the store first
(``candles.plan``) and sends at most one request per symbol for what is missing, two when the
history was re-scaled (``candles.rescale``). Requests go out on one background thread a few
symbols ahead (``candles.requests``) while the main thread merges what arrived into the store in
batches (``candles.merge``). A failure never loses data: the stored bars stay and the symbol is
reported ``stale``; a 404 is ``unavailable`` and remembered in the symbol's fetch state.
"""

from __future__ import annotations

from collections import Counter, deque
from concurrent.futures import Future
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import Callable, Mapping, Sequence

import pandas as pd

from variance_pipeline.calendar import last_closed_session, sessions_back, sessions_in_range
from variance_pipeline.candles.bars import concat_candles
from variance_pipeline.candles.merge import Merger, prepare
from variance_pipeline.candles.plan import Outcome, Plan, SymbolStatus, plan_symbol
from variance_pipeline.candles.requests import Attempt, ChartRequests, Fetch, RawCallback
from variance_pipeline.candles.state import FetchState
from variance_pipeline.candles.store import CandleStore
from variance_pipeline.schemas.candles import CANDLES
from variance_pipeline.schemas.realized_volatility import LOOKBACK_SESSIONS
from variance_pipeline.schemas.validate import REASON_COLUMN, ValidationOutcome
from variance_pipeline.sources.http import RequestStats
from variance_pipeline.sources.yahoo import ChartError, SymbolUnavailable, YahooChartClient, yahoo_ticker

__all__ = ["CandleRefresh", "SymbolStatus", "refresh_candles"]

# A ticker Yahoo answered 404 for is asked again only after this long (YahooResource config):
# delisted names and wrong mappings would otherwise cost a request on every run.
DEFAULT_NOT_FOUND_RETRY = timedelta(days=7)
# Chart requests sent ahead of the symbol being merged (each holds one response in memory):
# enough that the request thread keeps Yahoo's pace while the main thread lands a batch
# (``merge.FLUSH_SYMBOLS`` files, ~5 ms each) even at 20 requests a second.
PREFETCH = 4


@dataclass(frozen=True)
class CandleRefresh:
    """What ``refresh_candles`` did: every symbol's stored bars, its outcome, the request cost.

    ``bars`` holds each symbol's whole history after the refresh (lookback included); ``frame``
    cuts it to the sessions a run covers.
    """

    start: date
    end: date
    bars: pd.DataFrame
    statuses: tuple[SymbolStatus, ...]
    stats: RequestStats
    null_bars_dropped: int
    live_bars_dropped: int
    off_calendar_bars_dropped: int
    # Every bar refused on its way in, with ``quarantine_reason``: the parser's (null prices,
    # repeated timestamps) and the candle declaration's.
    quarantined: pd.DataFrame
    # The candle declaration applied to the fetched bars (its failure cases, for the asset check).
    validation: ValidationOutcome

    @property
    def rescaled_symbols(self) -> list[str]:
        """Symbols whose history was replaced on a new scale (the warehouse reloads them)."""
        return [s.symbol for s in self.statuses if s.rescaled]

    def frame(self, start: date | None = None, end: date | None = None) -> pd.DataFrame:
        """Bars of all symbols for sessions in [start, end] (default: the refresh's range)."""
        start, end = start or self.start, end or self.end
        inside = (self.bars["session_date"] >= start) & (self.bars["session_date"] <= end)
        return self.bars.loc[inside].reset_index(drop=True)


class _Results:
    """Outcomes in symbol order (a fetched symbol's waits for its batch), with the progress log."""

    def __init__(self, total: int, log: Callable[[str], None], every: int, stats: RequestStats) -> None:
        self.total, self._log, self._every, self._stats = total, log, every, stats
        self._baseline = stats.snapshot()
        self._queue: deque[Outcome | str] = deque()
        self.done: list[Outcome] = []

    def put(self, item: Outcome | str) -> None:
        self._queue.append(item)
        self._emit()

    def resolve(self, outcomes: Sequence[Outcome]) -> None:
        found = {o.status.symbol: o for o in outcomes}
        self._queue = deque(found.get(item, item) if isinstance(item, str) else item for item in self._queue)
        self._emit()

    def _emit(self) -> None:
        while self._queue and isinstance(self._queue[0], Outcome):
            self.done.append(self._queue.popleft())
            if len(self.done) % self._every == 0 or len(self.done) == self.total:
                self._log(_progress(len(self.done), self.total, [o.status for o in self.done], self._stats.since(self._baseline)))


def refresh_candles(
    symbols: Sequence[str],
    start: date,
    end: date,
    *,
    now: datetime,
    client: YahooChartClient,
    store: CandleStore,
    lookback: int = LOOKBACK_SESSIONS,
    overrides: Mapping[str, str] | None = None,
    on_raw: RawCallback | None = None,
    on_rejected: Callable[[pd.DataFrame], None] | None = None,
    log: Callable[[str], None] = print,
    progress_every: int = 5,
    not_found_retry: timedelta = DEFAULT_NOT_FOUND_RETRY,
) -> CandleRefresh:
    """Bring every symbol's history up to ``end`` (plus ``lookback`` sessions before ``start``).

    Symbols go one after another through the client's rate limiter. Only sessions closed by
    ``now`` are expected. A symbol whose fetch fails keeps its bars and is reported ``stale``;
    404 is ``unavailable`` and remembered: the ticker is asked again only after
    ``not_found_retry``; nothing here raises for one bad symbol. ``on_raw`` receives every
    response body as it arrives, before anything parses it (the bronze layer); ``on_rejected``
    receives the bars refused on their way in (the quarantine) before the files they were
    refused from are written.
    """
    window_start = sessions_back(start, lookback + 1)[0]
    request_end = min(end, last_closed_session(now))
    expected = sessions_in_range(window_start, request_end)
    stats = client.stats
    baseline = stats.snapshot()
    results = _Results(len(symbols), log, progress_every, stats)
    merger = Merger(store, now, on_rejected)
    requests = ChartRequests(client, now, on_raw or (lambda raw: None))
    queue: deque[tuple[str, str, Plan | Outcome, Future[Attempt] | None]] = deque()
    upcoming = iter(symbols)

    def plan_ahead() -> None:
        """Plan symbols until ``PREFETCH`` requests are in flight (or every symbol is planned)."""
        while sum(1 for *_, future in queue if future is not None) < PREFETCH:
            symbol = next(upcoming, None)
            if symbol is None:
                return
            ticker = yahoo_ticker(symbol, overrides, today=end)
            plan = plan_symbol(symbol, ticker, expected, now, store, not_found_retry)
            future = requests.submit(symbol, ticker, plan.request_start, request_end) if isinstance(plan, Plan) else None
            queue.append((symbol, ticker, plan, future))

    try:
        plan_ahead()
        while queue:
            symbol, ticker, plan, future = queue.popleft()
            plan_ahead()
            if isinstance(plan, Outcome):
                results.put(plan)
                continue
            assert future is not None
            spent = 0

            def fetch_again(first_day: date, last_day: date) -> Fetch:
                nonlocal spent
                again = requests.submit(symbol, ticker, first_day, last_day).result()
                spent += again.requests
                return again.result()

            try:
                attempt = future.result()
                spent += attempt.requests
                pending = prepare(plan, attempt.result(), fetch_again, window_start, request_end)
            except SymbolUnavailable as exc:
                _remember_not_found(store, symbol, ticker, now)
                status = SymbolStatus(symbol, ticker, "unavailable", spent, 0, exc.description)
                results.put(Outcome(status, store.read(symbol)))
                continue
            except ChartError as exc:
                bars = store.read(symbol)
                status = SymbolStatus(symbol, ticker, "stale", spent, 0, f"{exc}; keeping {len(bars)} stored bars")
                results.put(Outcome(status, bars))
                continue
            results.put(symbol)
            results.resolve(merger.add(replace(pending, requests=spent)))
        results.resolve(merger.flush())
    finally:
        requests.close()

    done = results.done
    fetches = [f for outcome in done for f in outcome.fetches]
    validation = _combined(merger.validations)
    refused = [f.rejected.astype(str) for f in fetches if len(f.rejected)]
    refused += [v.quarantined.astype(str) for v in merger.validations if len(v.quarantined)]
    return CandleRefresh(
        start=start,
        end=end,
        bars=concat_candles([o.bars for o in done]).sort_values(["symbol", "session_date"]).reset_index(drop=True),
        statuses=tuple(o.status for o in done),
        stats=stats.since(baseline),
        null_bars_dropped=sum(f.null_dropped for f in fetches),
        live_bars_dropped=sum(f.live_dropped for f in fetches),
        off_calendar_bars_dropped=sum(f.off_calendar for f in fetches),
        quarantined=pd.concat(refused, ignore_index=True) if refused else pd.DataFrame(columns=[*CANDLES.names, REASON_COLUMN]),
        validation=validation,
    )


def _combined(outcomes: Sequence[ValidationOutcome]) -> ValidationOutcome:
    """The batches' verdicts as one (valid rows, refused rows with reasons, failure cases)."""
    def joined(frames: list[pd.DataFrame]) -> pd.DataFrame:
        present = [f for f in frames if not f.empty]
        return pd.concat(present, ignore_index=True) if present else pd.DataFrame()

    errors = [o.schema_error for o in outcomes if o.schema_error]
    return ValidationOutcome(
        CANDLES.name,
        joined([o.valid for o in outcomes]),
        joined([o.quarantined for o in outcomes]),
        joined([o.failure_cases for o in outcomes]),
        "; ".join(errors) or None,
    )


def _remember_not_found(store: CandleStore, symbol: str, ticker: str, now: datetime) -> None:
    """Note Yahoo's 404 in the fetch state (keeping what it knew), so the next runs skip the ticker."""
    state = store.read_state(symbol)
    if state is None or state.yahoo_ticker != ticker:
        state = FetchState(ticker, now)
    store.write_state(symbol, replace(state, not_found_at=now))


def _progress(done: int, total: int, statuses: list[SymbolStatus], spent: RequestStats) -> str:
    counts = Counter(s.status for s in statuses)
    requests = sum(s.requests for s in statuses)  # of the symbols done, not those requested ahead
    return (
        f"candles: {done}/{total} symbols, {requests} requests, {counts.get('cached', 0)} cache hits, "
        f"{spent.retries} retries, {counts.get('stale', 0)} stale, {counts.get('unavailable', 0)} unavailable"
    )
