"""What is missing: per symbol, what the store already answers and which request is still needed.

A run expects every XNYS session from its lookback start to its last session closed by ``now``.
A symbol costs no request when the store holds all of them but its known gaps (sessions Yahoo had
no usable bar for), or when Yahoo answered 404 for its ticker less than ``not_found_retry`` ago.
Otherwise one request asks from a few stored bars before the first missing session (the overlap
that rescale detection compares, ``candles.rescale``) to the last expected one. A futures bar
stored before its calendar day ended (final after the Globex halt, but Yahoo's calendar-day bar
grows again from the 18:00 reopen) counts as missing once that day is over, so it is fetched again;
on an ordinary evening that costs nothing, the next session's request covers it. A symbol whose
Yahoo ticker changed holds another instrument's history: its request covers the whole window and
replaces the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

import pandas as pd

from variance_pipeline.calendar import EXCHANGE_TZ
from variance_pipeline.candles.bars import empty_candles
from variance_pipeline.candles.requests import Fetch
from variance_pipeline.candles.rescale import OVERLAP_BARS
from variance_pipeline.candles.state import FetchState
from variance_pipeline.candles.store import CandleStore

Status = Literal["fetched", "cached", "stale", "unavailable"]


@dataclass(frozen=True)
class SymbolStatus:
    """One symbol's outcome in a refresh, as the run reports it."""

    symbol: str
    yahoo_ticker: str
    status: Status
    requests: int
    bars_added: int
    message: str
    # The symbol's history was replaced on a new scale (split, dividend adjustment, other ticker).
    rescaled: bool = False
    # Unavailable without a request: Yahoo's 404 of ``message`` is remembered until then.
    not_found_until: datetime | None = None


@dataclass(frozen=True)
class Outcome:
    """A symbol done: its status, its bars as stored, and the responses that got them there."""

    status: SymbolStatus
    bars: pd.DataFrame
    fetches: tuple[Fetch, ...] = ()


@dataclass(frozen=True)
class Plan:
    """A symbol that needs a request: its store as read, and where the request starts."""

    symbol: str
    ticker: str
    stored: pd.DataFrame
    state: FetchState | None
    replace: bool  # another ticker's history is stored: the response replaces it
    request_start: date
    # Stored futures sessions fetched again now that their calendar day is over (their bar may have
    # changed since: not a sign of a new price scale).
    recheck: frozenset[date] = frozenset()


def plan_symbol(
    symbol: str, ticker: str, expected: list[date], now: datetime, store: CandleStore, not_found_retry: timedelta
) -> Plan | Outcome:
    """What the store already answers (an ``Outcome``), or the request still needed (a ``Plan``)."""
    stored = store.read(symbol)
    state = store.read_state(symbol)
    replace = (state is not None and state.yahoo_ticker != ticker) or bool((stored["yahoo_ticker"] != ticker).any())
    known = stored
    if replace:  # the mapping changed: another instrument's history, which nothing may extend
        known, state = empty_candles(), None
    known_gaps = state.no_bar_sessions if state else frozenset()
    recheck = frozenset(day for day in (state.recheck_sessions if state else ()) if day in set(expected) and now >= day_over(day))
    missing = sorted((set(expected) - set(known["session_date"]) - known_gaps) | recheck)
    if not missing:
        return Outcome(SymbolStatus(symbol, ticker, "cached", 0, 0, f"{len(stored)} stored bars"), stored)
    if state is not None and state.not_found_at is not None and now < state.not_found_at + not_found_retry:
        until = state.not_found_at + not_found_retry
        message = (
            f"Yahoo answered 404 for {ticker} at {state.not_found_at.isoformat()}; remembered, asked again "
            f"after {until.isoformat()}; keeping {len(stored)} stored bars"
        )
        return Outcome(SymbolStatus(symbol, ticker, "unavailable", 0, 0, message, not_found_until=until), stored)
    before_missing = known.loc[known["session_date"] < missing[0], "session_date"]
    overlap = sorted(before_missing)[-OVERLAP_BARS:]
    return Plan(symbol, ticker, known, state, replace, overlap[0] if overlap else missing[0], recheck)


def day_over(day: date) -> datetime:
    """When a futures bar's calendar day is over: midnight New York after it (Yahoo's period end)."""
    return datetime.combine(day + timedelta(days=1), time(), tzinfo=ZoneInfo(EXCHANGE_TZ))
