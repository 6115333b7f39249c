"""Merging responses into the store: on the stored scale, or replacing the history on a new one.

For each fetched symbol, ``prepare`` compares the response with the stored bars
(``candles.rescale``): on the same scale the new bars join the history; on a new one the whole
history is fetched again (one more request) and replaces it. Prepared symbols wait in a
``Merger`` until a batch is due, so the ``CANDLES`` declaration is applied once per batch rather
than once per symbol (a pandera pass costs ~30 ms whatever its size, more than Yahoo's pacing gap
at a fast rate); a batch is due after ``FLUSH_SYMBOLS`` symbols or ``FLUSH_SECONDS``, which bounds
what a killed run has fetched but not stored. A flush hands every refused bar (the parser's and
the declaration's) to ``on_rejected`` before any file is written, writes each symbol's file, then
its fetch state: the sessions still without a bar become known gaps once Yahoo had time to
publish them (``NO_BAR_SETTLE``), so neither a halt nor a refused bar costs a request every run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Callable, TypeVar

import pandas as pd

from variance_pipeline.calendar import last_closed_session, sessions_in_range
from variance_pipeline.candles.plan import Outcome, Plan, SymbolStatus
from variance_pipeline.candles.requests import Fetch
from variance_pipeline.candles.rescale import rescale_reason
from variance_pipeline.candles.state import FetchState
from variance_pipeline.candles.store import CandleStore, Landing
from variance_pipeline.schemas.validate import ValidationOutcome
from variance_pipeline.sources.yahoo import ChartError, Dividend, Split

# A session without a bar counts as "Yahoo has none" only this long after its close (or when a
# later bar exists); before that the bar may simply not be published yet.
NO_BAR_SETTLE = timedelta(hours=12)
FLUSH_SYMBOLS = 20
FLUSH_SECONDS = 10.0
Event = TypeVar("Event", Split, Dividend)


@dataclass(frozen=True)
class Pending:
    """A fetched symbol waiting for its batch: what lands, and what its state will remember."""

    plan: Plan
    fetches: tuple[Fetch, ...]
    landing: Landing
    gap_window: tuple[date, date]  # where sessions without a bar become known gaps
    splits: tuple[Split, ...]
    dividends: tuple[Dividend, ...]
    reason: str | None  # why the history was fetched again, if it was
    requests: int = 0


def _merge_events(old: tuple[Event, ...], new: tuple[Event, ...]) -> tuple[Event, ...]:
    return tuple(sorted(set(old) | set(new), key=lambda e: e.date))


def prepare(
    plan: Plan, first: Fetch, fetch_again: Callable[[date, date], Fetch], window_start: date, end: date
) -> Pending:
    """What lands for ``plan`` given its first response; the whole history again when the scale moved.

    Raises ``ChartError`` (the reason and the failure) when that second request fails: the symbol
    then keeps its stored bars on the old scale rather than mixing scales.
    """
    stored, state = plan.stored, plan.state
    # A re-checked futures bar may have moved (the evening's trades): no evidence of a new scale.
    compared = stored.loc[~stored["session_date"].isin(plan.recheck)] if plan.recheck else stored
    reason = rescale_reason(compared, first.bars, first.splits)
    if reason is None:
        return Pending(
            plan, (first,), Landing(plan.symbol, first.bars, replace=plan.replace), (plan.request_start, end),
            _merge_events(state.splits if state else (), first.splits),
            _merge_events(state.dividends if state else (), first.dividends),
            None,
        )
    # Cover everything stored too, so replacing the file loses no bar of an older backfill.
    full_start = min(window_start, stored["session_date"].min())
    full_end = max(end, stored["session_date"].max())
    try:
        second = fetch_again(full_start, full_end)
    except ChartError as exc:
        message = f"{reason}; the refetch of the full history failed ({exc})"
        raise ChartError(message, symbol=exc.symbol, status=exc.status, path=exc.path) from exc
    return Pending(
        plan, (first, second), Landing(plan.symbol, second.bars, replace=True), (full_start, full_end),
        second.splits, second.dividends, reason,
    )


def no_bar_sessions(bars: pd.DataFrame, start: date, end: date, now: datetime) -> set[date]:
    """Sessions in [start, end] without a bar that Yahoo should have published by now.

    A gap before the last bar is the provider's final word; a trailing gap only once
    ``NO_BAR_SETTLE`` has passed since its close, so a bar published late is still fetched.
    """
    dates = set(bars["session_date"])
    settled_until = max([last_closed_session(now - NO_BAR_SETTLE), *dates])
    return set(sessions_in_range(start, min(end, settled_until))) - dates


class Merger:
    """Prepared symbols in batches: one validation pass, then each file and its state."""

    def __init__(
        self, store: CandleStore, now: datetime, on_rejected: Callable[[pd.DataFrame], None] | None = None
    ) -> None:
        self._store, self._now, self._on_rejected = store, now, on_rejected
        self._pending: list[Pending] = []
        self._since = 0.0
        self.validations: list[ValidationOutcome] = []

    def add(self, pending: Pending) -> list[Outcome]:
        """Queue ``pending``; the outcomes of a batch when one became due, else none yet."""
        if not self._pending:
            self._since = time.monotonic()
        self._pending.append(pending)
        due = len(self._pending) >= FLUSH_SYMBOLS or time.monotonic() - self._since >= FLUSH_SECONDS
        return self.flush() if due else []

    def flush(self) -> list[Outcome]:
        """Land the queued symbols (one validation pass) and write each one's state."""
        batch, self._pending = self._pending, []
        if not batch:
            return []
        parsed_out = [f.rejected for p in batch for f in p.fetches if len(f.rejected)]

        def refused(rows: pd.DataFrame) -> None:
            found = [frame.astype(str) for frame in (*parsed_out, rows) if not frame.empty]
            if found and self._on_rejected is not None:
                self._on_rejected(pd.concat(found, ignore_index=True))

        landed = self._store.land([p.landing for p in batch], on_refused=refused)
        self.validations.append(landed.outcome)
        refused_by = landed.outcome.quarantined["symbol"].value_counts().to_dict() if len(landed.outcome.quarantined) else {}
        return [self._settle(p, landed.bars[p.plan.symbol], int(refused_by.get(p.plan.symbol, 0))) for p in batch]

    def _settle(self, pending: Pending, bars: pd.DataFrame, refused: int) -> Outcome:
        plan, replace = pending.plan, pending.landing.replace
        present = set(bars["session_date"])
        gaps = no_bar_sessions(bars, *pending.gap_window, self._now)
        if not replace and plan.state is not None:
            gaps |= plan.state.no_bar_sessions
        provisional = frozenset(pending.fetches[-1].provisional) & present
        state = FetchState(plan.ticker, self._now, pending.splits, pending.dividends, frozenset(gaps - present),
                           recheck_sessions=provisional)
        self._store.write_state(plan.symbol, state)
        added = len(present - set(plan.stored["session_date"]))
        parts = [f"+{added} bars, {len(bars)} stored"]
        if pending.reason:
            parts.append(f"refetched: {pending.reason}")
        if refused:
            parts.append(f"{refused} refused by the candle declaration (quarantined)")
        parts.extend(f.note for f in pending.fetches if f.note)
        status = SymbolStatus(plan.symbol, plan.ticker, "fetched", pending.requests, added, "; ".join(parts), replace)
        return Outcome(status, bars, pending.fetches)
