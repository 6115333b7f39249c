"""The candle cache on disk: one Parquet per symbol plus a JSON sidecar, every write atomic.

Layout under ``root`` (``Lake.candle_cache_dir``, i.e. ``<data_dir>/cache/candles/``), with the
Tastytrade symbol percent-encoded so ``/``, ``^`` and ``=`` are safe (``/ES`` -> ``%2FES``):

- ``<encoded>.parquet``: columns ``CANDLES.names``, one row per XNYS session, final bars only;
- ``<encoded>.json``: the sidecar: Yahoo ticker, last fetch time, splits and dividends seen, and
  the sessions Yahoo was asked for and had no bar (halts, futures holidays, before the listing),
  so that a gap in the provider's data does not cost a request on every run.

The Parquet is written before the sidecar and both atomically; a crash between them leaves an
older sidecar, which at worst costs one extra request. What to fetch is ``refresh.py``'s job; this
module only knows files.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, replace
from datetime import date, datetime
from pathlib import Path
from typing import Any, Mapping, Sequence
from urllib.parse import quote

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from variance_pipeline.lake.atomic import write_json_atomic, write_parquet_atomic
from variance_pipeline.sources.yahoo import Dividend, Split
from variance_pipeline.schemas.candles import CANDLES

# The declared candle columns, every field nullable: the cache keeps what Yahoo served (a bar
# that fails the schema is quarantined where it is read, not here).
PARQUET_SCHEMA = pa.schema([field.with_nullable(True) for field in CANDLES.arrow_schema])
CANDLE_COLUMNS = CANDLES.names

def file_stem(symbol: str) -> str:
    """``symbol`` percent-encoded into one file name (``/ES`` -> ``%2FES``, ``^SPX`` -> ``%5ESPX``).

    Reversible, so two symbols never share a file, and free of ``/``, so no symbol adds a directory.
    """
    return quote(symbol, safe="")


def _to_pandas(table: pa.Table) -> pd.DataFrame:
    """Dates as ``datetime.date``, volume as nullable ``Int64`` (a missing volume stays missing)."""
    return table.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)


def empty_candles() -> pd.DataFrame:
    """A zero-row frame with the candle columns and dtypes."""
    return _to_pandas(PARQUET_SCHEMA.empty_table())


def _normalise(frame: pd.DataFrame, symbol: str) -> pa.Table:
    """Columns, types and order of a cached symbol: sorted, one row per session."""
    frame = frame.assign(symbol=symbol).loc[:, list(CANDLE_COLUMNS)]
    frame = frame.sort_values("session_date").drop_duplicates("session_date", keep="last")
    return pa.Table.from_pandas(frame, schema=PARQUET_SCHEMA, preserve_index=False)


@dataclass(frozen=True)
class CacheMeta:
    """The sidecar of one symbol."""

    yahoo_ticker: str
    fetched_at: datetime
    splits: tuple[Split, ...] = ()
    dividends: tuple[Dividend, ...] = ()
    no_bar_sessions: frozenset[date] = frozenset()
    # The cached history was replaced (new scale) and the lake has not been rewritten from it yet.
    lake_rebase_pending: bool = False
    # When Yahoo last answered 404 for the ticker: it is asked again only after an interval
    # (``refresh_candles``'s ``not_found_retry``), so an unknown symbol costs no request a day.
    not_found_at: datetime | None = None

    def to_json(self, symbol: str) -> dict[str, Any]:
        return {
            "symbol": symbol,
            "yahoo_ticker": self.yahoo_ticker,
            "fetched_at": self.fetched_at.isoformat(),
            "splits": [
                {"date": s.date.isoformat(), "numerator": s.numerator, "denominator": s.denominator}
                for s in self.splits
            ],
            "dividends": [{"date": d.date.isoformat(), "amount": d.amount} for d in self.dividends],
            "no_bar_sessions": sorted(d.isoformat() for d in self.no_bar_sessions),
            "lake_rebase_pending": self.lake_rebase_pending,
            "not_found_at": self.not_found_at.isoformat() if self.not_found_at else None,
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> CacheMeta:
        return cls(
            yahoo_ticker=str(doc["yahoo_ticker"]),
            fetched_at=datetime.fromisoformat(doc["fetched_at"]),
            splits=tuple(
                Split(date.fromisoformat(s["date"]), float(s["numerator"]), float(s["denominator"]))
                for s in doc.get("splits", [])
            ),
            dividends=tuple(
                Dividend(date.fromisoformat(d["date"]), float(d["amount"])) for d in doc.get("dividends", [])
            ),
            no_bar_sessions=frozenset(date.fromisoformat(d) for d in doc.get("no_bar_sessions", [])),
            lake_rebase_pending=bool(doc.get("lake_rebase_pending", False)),
            not_found_at=datetime.fromisoformat(doc["not_found_at"]) if doc.get("not_found_at") else None,
        )


CORRUPT_SUFFIX = ".corrupt"
log = logging.getLogger(__name__)


def _set_aside(path: Path, problem: str, consequence: str) -> None:
    """Move an unreadable cache file to ``<file>.corrupt`` (replacing an older one) and warn."""
    aside = path.with_name(path.name + CORRUPT_SUFFIX)
    try:
        os.replace(path, aside)
        where = f"moved to {aside}"
    except FileNotFoundError:  # another run set it aside first
        where = f"already moved to {aside}"
    except OSError as exc:
        where = f"left in place ({exc})"
    log.warning("%s: %s, %s; %s", path, problem, where, consequence)


class CandleCache:
    """Per-symbol candle files under ``root``; every write is atomic (temp file + rename)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _stem(self, symbol: str) -> str:
        if not symbol.strip():
            raise ValueError("an empty symbol has no cache file")
        return file_stem(symbol)

    def path(self, symbol: str) -> Path:
        return self.root / f"{self._stem(symbol)}.parquet"

    def meta_path(self, symbol: str) -> Path:
        return self.root / f"{self._stem(symbol)}.json"

    def read(self, symbol: str) -> pd.DataFrame:
        """The cached bars (``CANDLES.names``), or an empty frame with those columns.

        A file that cannot be read (truncated, not Parquet, another schema) is moved aside to
        ``<file>.corrupt`` with a warning naming it and treated as missing, so the refresh
        refetches the symbol's window and the cache heals; the lake keeps what it landed.
        """
        path = self.path(symbol)
        if not path.exists():
            return empty_candles()
        try:
            return _to_pandas(pq.read_table(path, schema=PARQUET_SCHEMA))
        except PermissionError:
            raise
        except (pa.ArrowException, OSError, ValueError) as exc:
            _set_aside(path, f"candle cache of {symbol!r} is unreadable ({type(exc).__name__}: {exc})",
                       "treated as missing: its bars are fetched again")
            return empty_candles()

    def write(self, symbol: str, frame: pd.DataFrame) -> pd.DataFrame:
        """Replace the symbol's bars (``frame`` needs ``CANDLES.names`` except ``symbol``).

        Returns the bars as stored, i.e. what ``read`` will give back.
        """
        table = _normalise(frame, symbol)
        write_parquet_atomic(self.path(symbol), table)
        return _to_pandas(table)

    def sessions_present(self, symbol: str) -> set[date]:
        path = self.path(symbol)
        if not path.exists():
            return set()
        return set(pq.read_table(path, columns=["session_date"]).column("session_date").to_pylist())

    def read_meta(self, symbol: str) -> CacheMeta | None:
        path = self.meta_path(symbol)
        if not path.exists():
            return None
        try:
            return CacheMeta.from_json(json.loads(path.read_text()))
        except PermissionError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError, OSError) as exc:
            # An unreadable sidecar only costs a re-check of the symbol's gaps; kept for inspection.
            _set_aside(path, f"candle cache sidecar of {symbol!r} is unreadable ({type(exc).__name__}: {exc})",
                       "treated as missing: the symbol's provider gaps are checked again")
            return None

    def write_meta(self, symbol: str, meta: CacheMeta) -> Path:
        return write_json_atomic(self.meta_path(symbol), meta.to_json(symbol))

    def rebase_pending(self, symbol: str) -> bool:
        """True while the symbol's re-based history has not been copied into the lake."""
        meta = self.read_meta(symbol)
        return bool(meta and meta.lake_rebase_pending)

    def mark_lake_synced(self, symbols: Sequence[str]) -> None:
        """The lake now holds ``symbols`` on the cache's scale: clear their pending re-base."""
        for symbol in symbols:
            meta = self.read_meta(symbol)
            if meta is not None and meta.lake_rebase_pending:
                self.write_meta(symbol, replace(meta, lake_rebase_pending=False))

class RunCandleCache(CandleCache):
    """One run's view of the cache: each file is read from disk at most once per run.

    The candles step reads every symbol's bars to see what is missing and the volatility step
    needs the same bars for its lookback; reading the files twice was half of a warm run's I/O.
    The pipeline resource keeps one of these per run (steps of the in-process executor share it),
    writes go through to disk and to the memo, so a later step sees exactly what is on disk.
    Frames handed out are shared: callers must not modify them in place.
    """

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self._bars: dict[str, pd.DataFrame] = {}
        self._meta: dict[str, CacheMeta | None] = {}
        self.files_read = 0  # Parquet and sidecar reads from disk, for the run's metadata

    def read(self, symbol: str) -> pd.DataFrame:
        if symbol not in self._bars:
            self._bars[symbol] = super().read(symbol)
            self.files_read += 1
        return self._bars[symbol]

    def write(self, symbol: str, frame: pd.DataFrame) -> pd.DataFrame:
        self._bars[symbol] = super().write(symbol, frame)
        return self._bars[symbol]

    def read_meta(self, symbol: str) -> CacheMeta | None:
        if symbol not in self._meta:
            self._meta[symbol] = super().read_meta(symbol)
            self.files_read += 1
        return self._meta[symbol]

    def write_meta(self, symbol: str, meta: CacheMeta) -> Path:
        path = super().write_meta(symbol, meta)
        self._meta[symbol] = meta
        return path


def concat_candles(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Concatenate candle frames; empty ones are skipped so column dtypes survive."""
    non_empty = [f for f in frames if len(f)]
    if not non_empty:
        return empty_candles()
    return pd.concat(non_empty, ignore_index=True)


def read_lookback(cache: CandleCache, symbols: Sequence[str], end: date, sessions: int) -> pd.DataFrame:
    """The last ``sessions`` cached bars up to ``end`` of each symbol (``CANDLES.names``).

    Realised volatility reads its window from here rather than from the lake, so HV252 for a
    session needs no earlier partitions to have been materialised.
    """
    frame = concat_candles([cache.read(symbol) for symbol in symbols])
    frame = frame.loc[frame["session_date"] <= end].sort_values(["symbol", "session_date"])
    return frame.groupby("symbol", sort=False).tail(sessions).reset_index(drop=True)
