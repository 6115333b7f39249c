"""The one home of candles: a symbol's validated history in the lake, its fetch state beside it.

Under a data dir (``Lake``), percent-encoding the Tastytrade symbol (``/ES`` -> ``%2FES``):

- ``lake/candles/symbol=<s>/part-0.parquet``: the bars (``candles.bars``): validated, exactly the
  declared columns, one row per XNYS session, a scale id in the metadata;
- ``state/candles/<s>.json``: what the fetch remembers (``candles.state``).

Every stage reads candles from here: the refresh (what is missing), realised volatility (its
lookback), the Greeks (a session's closes), the coverage check and the warehouse load. Bars enter
only through ``land``, which applies the ``CANDLES`` declaration once per batch: refused rows are
handed to ``on_refused`` (quarantine) before anything is written, the rest joins the symbol's
history on its scale, or replaces it on a new one (a split re-scales all history: one file is
rewritten, atomically, and its new scale id tells the warehouse to reload that symbol).

Opening a store migrates a data dir of the old layout first (``candles.migrate``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Callable, Iterable, Sequence

import pandas as pd
import pyarrow as pa

from variance_pipeline.candles.bars import (
    StoredBars,
    concat_candles,
    empty_candles,
    new_scale,
    read_bars,
    set_aside,
    validate_bars,
    write_bars,
)
from variance_pipeline.candles.migrate import migrate_legacy_candles
from variance_pipeline.candles.state import FetchState, read_state, write_state
from variance_pipeline.lake.layout import Lake
from variance_pipeline.schemas.validate import ValidationOutcome


@dataclass(frozen=True)
class Landing:
    """Bars of one symbol on their way into the store (any validity: ``land`` decides)."""

    symbol: str
    bars: pd.DataFrame
    # True: the bars replace the symbol's history on a new scale (a split or dividend re-scaled
    # it, or another ticker). False: they join it on its scale, a re-served session replaced.
    replace: bool = False


@dataclass(frozen=True)
class Landed:
    """What ``land`` did: each symbol's history as stored now, and the declaration's verdict."""

    bars: dict[str, pd.DataFrame]
    outcome: ValidationOutcome  # on the landed bars only: failure cases, refused rows with reasons


class CandleStore:
    """The candle files of one data dir (rooted at its ``Lake.candles_dir``); writes are atomic."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.lake = Lake.of_candles_dir(self.root)
        migrate_legacy_candles(self.lake)

    def path(self, symbol: str) -> Path:
        return self.lake.candle_path(symbol)

    def state_path(self, symbol: str) -> Path:
        return self.lake.candle_state_path(symbol)

    def symbols(self) -> list[str]:
        """Every symbol the store holds a file for."""
        return list(self.lake.candle_files())

    # -- bars ----------------------------------------------------------------------------

    def _stored(self, symbol: str) -> StoredBars:
        """The file as it is; an unreadable one is set aside (``<file>.corrupt``) and treated as missing."""
        path = self.path(symbol)
        try:
            return read_bars(path)
        except PermissionError:
            raise
        except (pa.ArrowException, OSError, ValueError) as exc:
            set_aside(path, f"candle file of {symbol!r} is unreadable ({type(exc).__name__}: {exc})",
                      "treated as missing: its bars are fetched again")
            return StoredBars(empty_candles(), None)

    def _write(self, symbol: str, bars: pd.DataFrame, scale: str) -> StoredBars:
        return StoredBars(write_bars(self.path(symbol), bars, scale), scale)

    def read(self, symbol: str) -> pd.DataFrame:
        """The symbol's bars (``CANDLES.names``, session order), or none. Callers must not modify them."""
        return self._stored(symbol).bars

    def scale(self, symbol: str) -> str | None:
        """The scale id of the symbol's history (None: no file)."""
        return self._stored(symbol).scale

    def sessions_present(self, symbol: str) -> set[date]:
        return set(self.read(symbol)["session_date"])

    def session(self, day: date, symbols: Iterable[str]) -> pd.DataFrame:
        """The bar of session ``day`` of each of ``symbols`` that has one."""
        return concat_candles([bars.loc[bars["session_date"] == day] for bars in map(self.read, symbols)])

    def land(
        self, landings: Sequence[Landing], on_refused: Callable[[pd.DataFrame], None] | None = None
    ) -> Landed:
        """Validate every landing's bars in one pass, then write each symbol's file.

        ``on_refused`` receives the rows the declaration refused (``quarantine_reason`` says why;
        maybe none) before any file is written, so a crash never leaves a refused bar unrecorded. A symbol's
        valid bars join its history on its scale, or replace it on a new scale (``Landing.replace``);
        a session the landing re-serves takes the new bar only when that bar is valid.
        """
        frames = [landing.bars.assign(symbol=landing.symbol) for landing in landings]
        outcome = validate_bars(concat_candles(frames))
        if on_refused is not None:
            on_refused(outcome.quarantined)
        valid = {str(symbol): group for symbol, group in outcome.valid.groupby("symbol", sort=False)}
        stored: dict[str, pd.DataFrame] = {}
        for landing in landings:
            new = valid[landing.symbol] if landing.symbol in valid else empty_candles()
            if landing.replace:
                bars, scale = new, new_scale()
            else:
                before = self._stored(landing.symbol)
                kept = before.bars.loc[~before.bars["session_date"].isin(set(new["session_date"]))]
                bars, scale = concat_candles([kept, new]), before.scale or new_scale()
            stored[landing.symbol] = self._write(landing.symbol, bars, scale).bars
        return Landed(stored, outcome)

    def add(self, frame: pd.DataFrame) -> Landed:
        """``frame``'s bars (any symbols) join each symbol's history on its scale."""
        return self.land([Landing(str(s), group) for s, group in frame.groupby("symbol", sort=False)])

    def replace(self, frame: pd.DataFrame) -> Landed:
        """``frame``'s bars replace each of its symbols' history, on a new scale."""
        return self.land([Landing(str(s), group, replace=True) for s, group in frame.groupby("symbol", sort=False)])

    # -- fetch state ---------------------------------------------------------------------

    def read_state(self, symbol: str) -> FetchState | None:
        return read_state(self.state_path(symbol), symbol)

    def write_state(self, symbol: str, state: FetchState) -> Path:
        return write_state(self.state_path(symbol), symbol, state)


class RunCandleCache(CandleStore):
    """One run's view of the store: each file is read from disk at most once per run.

    The candles step reads every symbol's bars to see what is missing, and the volatility step,
    the Greeks and the coverage check need the same bars; reading the files again was half of a
    warm run's I/O. The pipeline resource keeps one of these per run (steps of the in-process
    executor share it); writes go through to disk and to the memo, so a later step sees exactly
    what is on disk. Frames handed out are shared: callers must not modify them in place.
    """

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self._files: dict[str, StoredBars] = {}
        self._states: dict[str, FetchState | None] = {}
        self.files_read = 0  # bar files and state files read from disk, for the run's metadata

    def _stored(self, symbol: str) -> StoredBars:
        if symbol not in self._files:
            self._files[symbol] = super()._stored(symbol)
            self.files_read += 1
        return self._files[symbol]

    def _write(self, symbol: str, bars: pd.DataFrame, scale: str) -> StoredBars:
        self._files[symbol] = super()._write(symbol, bars, scale)
        return self._files[symbol]

    def read_state(self, symbol: str) -> FetchState | None:
        if symbol not in self._states:
            self._states[symbol] = super().read_state(symbol)
            self.files_read += 1
        return self._states[symbol]

    def write_state(self, symbol: str, state: FetchState) -> Path:
        path = super().write_state(symbol, state)
        self._states[symbol] = state
        return path


def read_lookback(store: CandleStore, symbols: Sequence[str], end: date, sessions: int) -> pd.DataFrame:
    """The last ``sessions`` stored bars up to ``end`` of each symbol (``CANDLES.names``).

    Realised volatility reads its window from the store, so HV252 for a session needs no earlier
    run to have covered those sessions; the bars are valid by construction (nothing else lands).
    """
    frame = concat_candles([store.read(symbol) for symbol in symbols])
    frame = frame.loc[frame["session_date"] <= end].sort_values(["symbol", "session_date"])
    return frame.groupby("symbol", sort=False).tail(sessions).reset_index(drop=True)
