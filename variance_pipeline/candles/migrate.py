"""Moving a data dir of the old layout into the candle store, once, on first use.

Before the store, candles lived twice: a per-symbol cache (``cache/candles/<s>.parquet``, the bars
Yahoo served, and ``<s>.json``, the fetch state) and per-session lake partitions
(``lake/candles/date=D/part-0.parquet``, the validated bars of the sessions runs landed, kept on
the cache's scale by a re-base protocol with a reload manifest, ``_pending_reload.json``).
``migrate_legacy_candles`` turns that into the store's layout without losing a bar:

- each symbol's file gets the cache's bars that pass the ``CANDLES`` declaration (the cache is the
  newest word on the scale); a bar the declaration refuses goes to quarantine with its reason;
- rows of the old partitions for sessions the cache lacks (an older backfill, a cache deleted and
  fetched again) join them when they are on the cache's scale: same Yahoo ticker, and the closes
  and adjustment factors agree on the sessions both hold (``candles.rescale``), or, sharing none,
  no split known since; otherwise, or when a re-base was still pending, they go to quarantine
  with the reason, never into a history on another scale;
- the sidecar becomes the symbol's fetch state (``state/candles/<s>.json``), as it is;
- then the old files go: cache entries symbol by symbol, the partitions and the manifest last.

Each symbol's file is written before its old files are removed, and the partitions last, so a
crash is resumed by the next open. One process migrates at a time (a lock file under ``state/``);
the others wait and find nothing left to do. Every symbol's history gets a new scale id, so the
first warehouse load afterwards reloads what it holds of each symbol from the store, once.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import unquote

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from variance_pipeline.candles.bars import concat_candles, empty_candles, new_scale, set_aside, validate_bars, write_bars
from variance_pipeline.candles.rescale import NO_OVERLAP, scale_change
from variance_pipeline.lake.atomic import write_parquet_atomic
from variance_pipeline.lake.layout import Lake, file_stem
from variance_pipeline.schemas.candles import CANDLES
from variance_pipeline.schemas.validate import REASON_COLUMN

LEGACY_MANIFEST = "_pending_reload.json"
CHUNK = 50  # symbols validated in one pass


@dataclass(frozen=True)
class Migration:
    """What ``migrate_legacy_candles`` did."""

    symbols: int
    bars: int
    quarantined: int
    quarantine_path: Path | None


def _legacy_partitions(lake: Lake) -> list[Path]:
    try:
        return sorted(Path(e.path) for e in os.scandir(lake.candles_dir) if e.name.startswith("date=") and e.is_dir())
    except FileNotFoundError:
        return []


def _legacy_cache_files(lake: Lake) -> list[Path]:
    folder = lake.legacy_candle_cache_dir
    try:
        return sorted(Path(e.path) for e in os.scandir(folder) if e.name.endswith((".parquet", ".json")) and e.is_file())
    except FileNotFoundError:
        return []


def legacy_present(lake: Lake) -> bool:
    """Whether the data dir still holds candles in the old layout (two folder scans)."""
    return bool(_legacy_cache_files(lake) or _legacy_partitions(lake) or (lake.candles_dir / LEGACY_MANIFEST).exists())


@contextmanager
def _exclusive(lake: Lake) -> Iterator[None]:
    lock = lake.root / "state" / ".candles-migration.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def migrate_legacy_candles(lake: Lake) -> Migration | None:
    """Migrate ``lake``'s old candle layout into the store; None when there is nothing to migrate."""
    if not legacy_present(lake):
        return None
    with _exclusive(lake):
        if not legacy_present(lake):  # another process did it while this one waited
            return None
        return _migrate(lake)


def _read_legacy_bars(path: Path, symbol: str) -> pd.DataFrame:
    try:
        table = pq.read_table(path)
        return table.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get).assign(symbol=symbol)
    except FileNotFoundError:
        return empty_candles()
    except (pa.ArrowException, OSError, ValueError) as exc:
        set_aside(path, f"old candle cache of {symbol!r} is unreadable ({type(exc).__name__}: {exc})",
                  "treated as missing: its bars are fetched again")
        return empty_candles()


def _read_legacy_sidecar(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _lake_rows_refused(cached: pd.DataFrame, rows: pd.DataFrame, sidecar: dict[str, Any]) -> str | None:
    """Why the old partitions' ``rows`` of a symbol may not join its cached bars, or None."""
    if cached.empty:
        return None
    if sidecar.get("lake_rebase_pending"):
        return "the old lake still waited for a re-base onto the cache's scale"
    if set(rows["yahoo_ticker"]) - set(cached["yahoo_ticker"]):
        return "fetched as another Yahoo ticker than the cached bars"
    change = scale_change(cached, rows)
    if change != NO_OVERLAP:
        return change
    latest = rows["session_date"].max()
    splits = [s.get("date", "") for s in sidecar.get("splits", []) if isinstance(s, dict)]
    if any(str(day) > latest.isoformat() for day in splits):
        return "no session shared with the cached bars, and a split known after these"
    return None


def _read_partitions(partitions: list[Path]) -> pd.DataFrame:
    frames = []
    for folder in partitions:
        try:
            table = pq.read_table(folder / "part-0.parquet")
        except FileNotFoundError:
            continue
        frames.append(table.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get))
    return concat_candles(frames)


def _migrate(lake: Lake) -> Migration:
    cache_dir = lake.legacy_candle_cache_dir
    partitions = _legacy_partitions(lake)
    lake_rows = _read_partitions(partitions)
    by_symbol = {str(s): g for s, g in lake_rows.groupby("symbol", sort=False)}
    stems = {p.name.rsplit(".", 1)[0] for p in _legacy_cache_files(lake)}
    symbols = sorted({unquote(stem) for stem in stems} | set(by_symbol))
    refused: list[pd.DataFrame] = []
    stored = 0
    for first in range(0, len(symbols), CHUNK):
        chunk = symbols[first : first + CHUNK]
        # The cache's bars first: the newest word on the scale, but never validated until now.
        cached = validate_bars(concat_candles([_read_legacy_bars(cache_dir / f"{file_stem(s)}.parquet", s) for s in chunk]))
        refused.append(cached.quarantined)
        valid = {str(s): g for s, g in cached.valid.groupby("symbol", sort=False)}
        # Then the partitions' rows for sessions the cache lacks, where they are on its scale.
        joining = []
        for symbol in chunk:
            bars, rows = valid.get(symbol, empty_candles()), by_symbol.get(symbol, empty_candles())
            extra = rows.loc[~rows["session_date"].isin(set(bars["session_date"]))]
            if extra.empty:
                continue
            reason = _lake_rows_refused(bars, rows, _read_legacy_sidecar(cache_dir / f"{file_stem(symbol)}.json"))
            if reason is None:
                joining.append(extra)
            else:
                refused.append(extra.assign(**{REASON_COLUMN: f"old lake partition rows not migrated: {reason}"}))
        joined = validate_bars(concat_candles(joining))
        refused.append(joined.quarantined)
        extras = {str(s): g for s, g in joined.valid.groupby("symbol", sort=False)}
        for symbol in chunk:
            bars = concat_candles([valid.get(symbol, empty_candles()), extras.get(symbol, empty_candles())])
            if not bars.empty:
                write_bars(lake.candle_path(symbol), bars, new_scale())
                stored += len(bars)
            sidecar = cache_dir / f"{file_stem(symbol)}.json"
            if sidecar.exists():
                lake.candle_state_dir.mkdir(parents=True, exist_ok=True)
                os.replace(sidecar, lake.candle_state_path(symbol))
            (cache_dir / f"{file_stem(symbol)}.parquet").unlink(missing_ok=True)
    quarantined = pd.concat([f.astype(str) for f in refused if not f.empty] or [pd.DataFrame()], ignore_index=True)
    target = None
    if not quarantined.empty:
        target = lake.root / "quarantine" / CANDLES.name / "migration" / "part-0.parquet"
        write_parquet_atomic(target, quarantined)
    for partition in partitions:
        shutil.rmtree(partition, ignore_errors=True)
    (lake.candles_dir / LEGACY_MANIFEST).unlink(missing_ok=True)
    try:
        cache_dir.rmdir()  # only when empty: set-aside .corrupt files stay for inspection
    except OSError:
        pass
    return Migration(len(symbols), stored, len(quarantined), target)
