"""Rescale detection: is a stored history still on the provider's price scale?

Yahoo's ``close`` is split-adjusted and ``adj_close`` split- and dividend-adjusted as of the
request, so a split or dividend after the stored bars silently re-scales all history. Each
incremental request therefore re-reads the last ``OVERLAP_BARS`` stored bars (``candles.plan``);
when the response lists a split after them, when the overlap's closes moved, or when its
adjustment factors (``adj_close / close``) moved, the history is no longer on the provider's
scale and is fetched again whole (``candles.merge``). The same comparison decides whether the old
lake's rows may join the old cache's when a data dir is migrated (``candles.migrate``).
"""

from __future__ import annotations

from datetime import date
from typing import Iterable, Protocol

import numpy as np
import pandas as pd

OVERLAP_BARS = 5
# Relative move of the overlap's median close that means "rescaled" (splits, stock dividends);
# a one-bar correction of the latest close stays below it and is simply overwritten.
SCALE_TOLERANCE = 0.005
# Relative move of any overlap bar's adj_close/close factor that means a new dividend adjustment;
# well above float32 rounding (~1e-7), below the smallest real dividend adjustment.
ADJUST_TOLERANCE = 1e-6
NO_OVERLAP = "no overlap with the stored bars to check the price scale"


class SplitEvent(Protocol):
    """A split as the chart parser reports it (``sources.yahoo.Split``)."""

    @property
    def date(self) -> date: ...

    @property
    def numerator(self) -> float: ...

    @property
    def denominator(self) -> float: ...


def rescale_reason(stored: pd.DataFrame, fetched: pd.DataFrame, splits: Iterable[SplitEvent]) -> str | None:
    """Why ``stored`` is no longer on the scale of ``fetched`` (bars of one symbol), or None.

    Nothing to compare (no stored or no fetched bars) is no reason.
    """
    if stored.empty or fetched.empty:
        return None
    last_stored = stored["session_date"].max()
    new_splits = sorted((s for s in splits if s.date > last_stored), key=lambda s: s.date)
    if new_splits:
        s = new_splits[0]
        return f"split {s.numerator:g}:{s.denominator:g} on {s.date} after the stored bars"
    return scale_change(stored, fetched)


def scale_change(old: pd.DataFrame, new: pd.DataFrame) -> str | None:
    """Why ``new`` is not on ``old``'s price scale, judged on the sessions both hold; None when it is.

    ``NO_OVERLAP`` when they share no session: then nothing says they agree.
    """
    # The overlap is a handful of bars: plain lookups, not a DataFrame merge (~5 ms a symbol).
    previous = dict(zip(old["session_date"], zip(old["close"], old["adj_close"])))
    pairs = [
        (*previous[day], close, adj_close)
        for day, close, adj_close in zip(new["session_date"], new["close"], new["adj_close"])
        if day in previous
    ]
    if not pairs:
        return NO_OVERLAP
    close_old, adj_old, close_new, adj_new = np.array(pairs, dtype="float64").T
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = float(np.median(close_new / close_old))
        if not abs(ratio - 1.0) <= SCALE_TOLERANCE:
            return f"overlap closes moved by a factor {ratio:.6g}"
        factor_change = (adj_new / close_new) / (adj_old / close_old)
    if (np.abs(factor_change - 1.0) > ADJUST_TOLERANCE).any():
        return "adjusted closes of the overlap changed (new dividend adjustment)"
    return None
