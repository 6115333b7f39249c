"""The chart requests of a refresh: one background thread, in order, through the rate limiter.

A run is paced by Yahoo's rate: while the limiter waits for the next slot, the main thread merges
and writes the previous responses, so that work hides inside the pacing gap instead of adding to
it. One thread keeps the requests strictly sequential and each symbol's request count exact.

Every body is handed to ``on_raw`` by the client as it arrives, before anything parses it
(``YahooChartClient.fetch``), so a malformed 200 or a 404 is kept in ``raw/`` as well.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime
from typing import Callable

import pandas as pd

from variance_pipeline.schemas.candles import CANDLES, xnys_session_mask
from variance_pipeline.sources.http import RawResponse
from variance_pipeline.sources.yahoo import Dividend, Split, YahooChartClient

RawCallback = Callable[[RawResponse], None]


@dataclass(frozen=True)
class Fetch:
    """One response's final bars on XNYS sessions (``CANDLES.names``, not yet validated), its
    events, what the parser refused (with ``quarantine_reason``) and what it dropped."""

    start: date
    end: date
    bars: pd.DataFrame
    splits: tuple[Split, ...]
    dividends: tuple[Dividend, ...]
    null_dropped: int
    live_dropped: int
    off_calendar: int
    note: str
    rejected: pd.DataFrame
    # Futures sessions whose bar was final (after the Globex halt) but whose calendar day had not
    # ended: Yahoo's bar may still change, so the store fetches them again (``candles.plan``).
    provisional: tuple[date, ...] = ()


def fetch_chart(
    client: YahooChartClient, symbol: str, ticker: str, start: date, end: date, now: datetime, on_raw: RawCallback
) -> Fetch:
    """One chart request for ``symbol`` as ``ticker``; bars off the XNYS calendar are dropped and
    counted (every partition and HV window counts XNYS sessions)."""
    fetched = client.fetch(ticker, start, end, now=now, on_raw=on_raw)
    chart = fetched.chart
    on_calendar = xnys_session_mask(chart.bars["session_date"])
    bars = chart.bars.loc[on_calendar].assign(symbol=symbol, yahoo_ticker=ticker)
    rejected = chart.rejected
    if len(rejected):
        rejected = rejected.loc[xnys_session_mask(rejected["session_date"])].assign(symbol=symbol, yahoo_ticker=ticker)
    return Fetch(
        start=start,
        end=end,
        bars=bars.loc[:, list(CANDLES.names)].reset_index(drop=True),
        splits=tuple(chart.splits),
        dividends=tuple(chart.dividends),
        null_dropped=chart.null_bars_dropped,
        live_dropped=chart.live_bars_dropped,
        off_calendar=int((~on_calendar).sum()),
        note=fetched.note,
        rejected=rejected,
        provisional=tuple(day for day, on in zip(chart.provisional, xnys_session_mask(pd.Series(chart.provisional, dtype="object"))) if on),
    )


@dataclass(frozen=True)
class Attempt:
    """One chart request as the thread finished it: the fetch or its error, and its cost."""

    fetch: Fetch | None
    error: Exception | None
    requests: int

    def result(self) -> Fetch:
        if self.error is not None:
            raise self.error
        assert self.fetch is not None
        return self.fetch


class ChartRequests:
    """Chart requests on one background thread, in the order submitted."""

    def __init__(self, client: YahooChartClient, now: datetime, on_raw: RawCallback) -> None:
        self._client, self._now, self._on_raw = client, now, on_raw
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="yahoo-chart")

    def submit(self, symbol: str, ticker: str, start: date, end: date) -> Future[Attempt]:
        return self._pool.submit(self._attempt, symbol, ticker, start, end)

    def _attempt(self, symbol: str, ticker: str, start: date, end: date) -> Attempt:
        stats = self._client.stats
        before = stats.requests
        try:
            fetched = fetch_chart(self._client, symbol, ticker, start, end, self._now, self._on_raw)
        except Exception as exc:  # handed to the main thread, which decides (stale, unavailable, raise)
            return Attempt(None, exc, stats.requests - before)
        return Attempt(fetched, None, stats.requests - before)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
