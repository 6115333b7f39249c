"""Re-basing the lake after a split: rewrite a symbol's rows in earlier candle partitions.

The cache re-fetches a symbol's whole history when Yahoo re-scales it (a split, a new dividend
adjustment); the lake partitions earlier runs landed still hold the old scale. This module brings
them onto the new one, touching only the partitions that hold the symbol.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Collection, Sequence

import pandas as pd
import pyarrow.parquet as pq

from variance_pipeline.candles.store import CandleCache, concat_candles, empty_candles
from variance_pipeline.lake.layout import Lake
from variance_pipeline.schemas.candles import CANDLES
from variance_pipeline.schemas.validate import validate_frame


@dataclass(frozen=True)
class LakeRebase:
    """What ``rebase_lake_candles`` rewrote: partitions, rows, and rows it had to give up."""

    symbols: tuple[str, ...]
    sessions: tuple[date, ...]
    rows_replaced: int
    rows_dropped: int
    quarantined: pd.DataFrame

    @property
    def empty(self) -> bool:
        return not self.sessions


def rebase_lake_candles(
    lake: Lake, cache: CandleCache, symbols: Sequence[str], *, skip: Collection[date] = ()
) -> LakeRebase:
    """Rewrite ``symbols``' rows in the lake's existing candle partitions from their cache.

    Called for re-based symbols only, so scales never mix across partitions: every partition
    (other than ``skip``, the run's own, already written from the refreshed cache) that holds one
    of ``symbols`` gets that symbol's rows replaced by the cached bars of that session; the other
    symbols' rows are kept byte for byte, and no partition is created. A lake row the new history
    has no bar for (or whose new bar fails ``CandlesSchema``) is dropped rather than left on the
    old scale. Cost: one ``symbol``-column read per partition, and a rewrite of those that hold
    the symbol; nothing at all when ``symbols`` is empty (the common case).
    """
    wanted = list(dict.fromkeys(symbols))
    if not wanted:
        return LakeRebase((), (), 0, 0, empty_candles())
    skipped, wanted_set = set(skip), set(wanted)
    holding: dict[date, set[str]] = {}
    for day in lake.partition_days("candles"):
        if day in skipped:
            continue
        column = pq.read_table(lake.partition_path("candles", day), columns=["symbol"]).column("symbol")
        found = set(column.to_pylist()) & wanted_set
        if found:
            holding[day] = found
    if not holding:
        return LakeRebase(tuple(wanted), (), 0, 0, empty_candles())
    bars = concat_candles([cache.read(symbol) for symbol in wanted])
    keys = {(symbol, day) for day, found in holding.items() for symbol in found}
    wanted_rows = [(s, d) in keys for s, d in zip(bars["symbol"], bars["session_date"], strict=True)]
    outcome = validate_frame(CANDLES, bars.loc[wanted_rows].reset_index(drop=True))
    by_day = {day: group for day, group in outcome.valid.groupby("session_date", sort=False)}
    replaced = dropped = 0
    for day in sorted(holding):
        old = lake.read_partition("candles", day)
        hit = old["symbol"].isin(holding[day])
        new_rows = by_day.get(day, outcome.valid.iloc[0:0])
        frame = concat_candles([old.loc[~hit], new_rows]).sort_values("symbol", kind="stable").reset_index(drop=True)
        lake.write_partition("candles", day, frame.reindex(columns=old.columns))
        replaced += len(new_rows)
        dropped += int(hit.sum()) - len(new_rows)
    return LakeRebase(tuple(wanted), tuple(sorted(holding)), replaced, dropped, outcome.quarantined)
