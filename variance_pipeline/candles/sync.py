"""Cache -> lake: the one protocol by which refreshed candles reach ``lake/candles``.

The candles asset and the tests both call ``sync_lake`` after ``refresh_candles``, so the order
that keeps scales from mixing lives in one place:

1. the run's sessions are validated (``CandlesSchema``) and written from the refreshed cache;
2. a re-based symbol (split, new dividend adjustment, other ticker) has its rows in partitions
   that earlier runs landed rewritten from the cache (``rebase_lake_candles``);
3. those sessions are listed in the lake's reload manifest for the warehouse;
4. only then is the cache's ``lake_rebase_pending`` flag cleared, so a crash anywhere before
   redoes the rewrite on the next run;
5. rows that failed validation, and bars the parser refused (null prices, repeated timestamps),
   go to ``quarantine/``, with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Sequence

import pandas as pd

from variance_pipeline.candles.rebase import LakeRebase, rebase_lake_candles
from variance_pipeline.candles.refresh import CandleRefresh
from variance_pipeline.candles.store import CandleCache
from variance_pipeline.lake.layout import Lake
from variance_pipeline.schemas.candles import CANDLES
from variance_pipeline.schemas.validate import ValidationOutcome, validate_frame


@dataclass(frozen=True)
class LakeSync:
    """What ``sync_lake`` wrote: the run's sessions, the earlier ones it re-based, the rejects."""

    outcome: ValidationOutcome
    sessions_written: tuple[date, ...]
    rebase: LakeRebase
    quarantined: pd.DataFrame


def sync_lake(lake: Lake, cache: CandleCache, refresh: CandleRefresh, sessions: Sequence[date]) -> LakeSync:
    """Land ``refresh`` for ``sessions`` (a run's range) and keep earlier partitions on its scale."""
    outcome = validate_frame(CANDLES, refresh.frame(sessions[0], sessions[-1]))
    written = lake.write_by_session("candles", outcome.valid)
    rebased = refresh.rebased_symbols
    rebase = rebase_lake_candles(lake, cache, rebased, skip=sessions)
    if not rebase.empty:
        lake.request_reload("candles", rebase.sessions, reason=f"re-based {', '.join(rebased)}")
    cache.mark_lake_synced(rebased)
    refused = [frame.astype(str) for frame in (refresh.rejected, rebase.quarantined) if not frame.empty]
    quarantined = outcome.quarantined
    if refused:
        quarantined = pd.concat([quarantined.astype(str), *refused], ignore_index=True)
    if not quarantined.empty:
        lake.write_quarantine("candles", sessions[-1], quarantined)
    return LakeSync(outcome, tuple(written), rebase, quarantined)
