"""A symbol's candle file: validated bars only, exactly the declared columns, a scale id.

``lake/candles/symbol=<s>/part-0.parquet`` holds one symbol's whole history: ``CANDLES.names``
with ``CANDLES``' Arrow types, one row per XNYS session, sorted. Nothing reaches it without
passing the ``CANDLES`` declaration (``validate_bars``, the one place candles are validated), so
every later stage reads it as it is. The file's key-value metadata carries a *scale id*
(``SCALE_KEY``): it changes exactly when the history is replaced on a new price scale (a split,
a new dividend adjustment, another Yahoo ticker), never when bars are appended, so the warehouse
can tell a re-scaled symbol from a grown one by reading one footer.

This module knows files and the declaration only (no provider, no fetch state), so the warehouse
and the legacy migration can use it.
"""

from __future__ import annotations

import logging
import os
import uuid
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from variance_pipeline.lake.atomic import write_parquet_atomic
from variance_pipeline.schemas.candles import CANDLES
from variance_pipeline.schemas.validate import ValidationOutcome, validate_frame

SCALE_KEY = "variance.candles.scale"
CORRUPT_SUFFIX = ".corrupt"
# The logger every candle store warning goes to (set-aside files): one name for users to filter.
log = logging.getLogger("variance_pipeline.candles.store")


@dataclass(frozen=True)
class StoredBars:
    """What a candle file holds: its bars and the scale id of their price scale (None: no file)."""

    bars: pd.DataFrame
    scale: str | None


def new_scale() -> str:
    """A fresh scale id: unique, so a replaced history never compares equal to the one it replaced."""
    return uuid.uuid4().hex


def _to_pandas(table: pa.Table) -> pd.DataFrame:
    """Dates as ``datetime.date``, volume as nullable ``Int64`` (a missing volume stays missing)."""
    return table.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)


@lru_cache(maxsize=1)
def _empty() -> pd.DataFrame:
    return _to_pandas(CANDLES.arrow_schema.empty_table())


def empty_candles() -> pd.DataFrame:
    """A zero-row frame with the candle columns and dtypes (a copy: converting from Arrow each
    time cost ~1.5 ms, as much as reading a symbol's file)."""
    return _empty().copy()


def concat_candles(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Concatenate candle frames; empty ones are skipped so column dtypes survive."""
    non_empty = [f for f in frames if len(f)]
    if not non_empty:
        return empty_candles()
    return pd.concat(non_empty, ignore_index=True)


def validate_bars(frame: pd.DataFrame) -> ValidationOutcome:
    """The ``CANDLES`` declaration applied to bars on their way into the store (one pandera pass
    for any number of symbols: callers batch, since each pass has a fixed cost of ~30 ms)."""
    frame = frame.loc[:, list(CANDLES.names)].reset_index(drop=True)
    if frame.empty:  # nothing to judge, and no pass to pay for
        return ValidationOutcome(CANDLES.name, frame, frame.assign(quarantine_reason=pd.Series(dtype="object")),
                                 pd.DataFrame())
    return validate_frame(CANDLES, frame)


def read_bars(path: Path) -> StoredBars:
    """The file's bars and scale id; no file is no bars (scale None).

    Raises what pyarrow raises for an unreadable file, and ``ValueError`` for a file whose columns
    are not exactly the declared ones: the caller decides (``set_aside``).
    """
    try:
        with pq.ParquetFile(path) as handle:  # one open (read_table opens a file twice)
            table = handle.read()
    except FileNotFoundError:
        return StoredBars(empty_candles(), None)
    if not table.schema.remove_metadata().equals(CANDLES.arrow_schema.remove_metadata()):
        raise ValueError(f"columns {table.schema.names} are not the declared candle columns")
    scale = (table.schema.metadata or {}).get(SCALE_KEY.encode())
    return StoredBars(_to_pandas(table), scale.decode() if scale is not None else None)


def write_bars(path: Path, bars: pd.DataFrame, scale: str) -> pd.DataFrame:
    """Replace the file with ``bars`` (validated by the caller) on scale ``scale``, atomically.

    One row per session (the last one wins) in session order. Returns the bars as stored, i.e.
    what ``read_bars`` gives back.
    """
    frame = bars.loc[:, list(CANDLES.names)].sort_values("session_date", kind="stable")
    frame = frame.drop_duplicates("session_date", keep="last")
    schema = CANDLES.arrow_schema
    schema = schema.with_metadata({**(schema.metadata or {}), SCALE_KEY.encode(): scale.encode()})
    table = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
    write_parquet_atomic(path, table)
    return _to_pandas(table)


def set_aside(path: Path, problem: str, consequence: str) -> None:
    """Move an unreadable file to ``<file>.corrupt`` (replacing an older one) and warn, naming both."""
    aside = path.with_name(path.name + CORRUPT_SUFFIX)
    try:
        os.replace(path, aside)
        where = f"moved to {aside}"
    except FileNotFoundError:  # another run set it aside first
        where = f"already moved to {aside}"
    except OSError as exc:
        where = f"left in place ({exc})"
    log.warning("%s: %s, %s; %s", path, problem, where, consequence)
