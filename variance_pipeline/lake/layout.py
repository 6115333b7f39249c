"""The data layout under ``VARIANCE_DATA_DIR``: raw JSON (bronze), validated Parquet (silver),
quarantine, state and the warehouse path (see the contract).

Every dataset but one is hive-partitioned by session: ``lake/<dataset>/date=D/part-0.parquet``.
Candles are partitioned by symbol instead, ``lake/candles/symbol=<percent-encoded>/part-0.parquet``:
a symbol's whole history is one file, so a split that re-scales it rewrites exactly one file
(``variance_pipeline.candles.store`` owns those files; what each symbol's fetch remembers lives
beside the lake, in ``state/candles/<percent-encoded>.json``). Every write is atomic
(``lake.atomic``).
"""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import quote, unquote

import pandas as pd
import pyarrow.parquet as pq

from variance_pipeline.lake.atomic import (
    free_bytes,
    sweep_stale_temp_files,
    write_bytes_atomic,
    write_json_atomic,
    write_parquet_atomic,
)
from variance_pipeline.schemas.registry import BY_NAME

PART = "part-0.parquet"
SYMBOL_PARTITION = "symbol="
PER_SYMBOL = frozenset({"candles"})
"""Datasets stored one file per symbol (``lake/<dataset>/symbol=S/``) rather than per session."""


def file_stem(symbol: str) -> str:
    """``symbol`` percent-encoded into one path segment (``/ES`` -> ``%2FES``, ``^SPX`` -> ``%5ESPX``).

    Reversible (``unquote``), so two symbols never share a file, and free of ``/``, so no symbol
    adds a directory. The one rule for a symbol in a file or folder name.
    """
    if not symbol.strip():
        raise ValueError("an empty symbol has no file")
    return quote(symbol, safe="")


class DataDirConflict(RuntimeError):
    """A data dir already holds data of the other source (simulated vs live)."""


class Lake:
    """Paths of the data layout under ``VARIANCE_DATA_DIR`` (see the contract)."""

    SOURCE_MARKER = ".variance-source"

    def __init__(self, data_dir: Path, source: str | None = None) -> None:
        self.root = Path(data_dir)
        self.source = source
        self._stamped = False

    def check_source(self) -> None:
        """Refuse a data dir stamped with the other source (simulated vs live); writes nothing.

        Simulated prices in a live warehouse (or the reverse) would be a lie nobody could see in
        the numbers, so a data dir belongs to one source for good.
        """
        marker = self.root / self.SOURCE_MARKER
        if self.source is None or not marker.exists():
            return
        owner = marker.read_text().strip()
        if owner != self.source:
            raise DataDirConflict(
                f"{self.root} holds {owner!r} data; refusing to write {self.source!r} data there. "
                f"Point VARIANCE_DATA_DIR elsewhere (the default is data/{self.source})."
            )

    def _stamp(self) -> None:
        """On the first write, check and stamp the data dir with this lake's source."""
        if self._stamped or self.source is None:
            return
        self.check_source()
        marker = self.root / self.SOURCE_MARKER
        if not marker.exists():
            write_bytes_atomic(marker, self.source.encode())
        self._stamped = True

    @property
    def warehouse_path(self) -> Path:
        return self.root / "warehouse.duckdb"

    @classmethod
    def of_candles_dir(cls, candles_dir: Path) -> Lake:
        """The lake whose ``candles_dir`` is ``candles_dir`` (``<data dir>/lake/candles``)."""
        path = Path(candles_dir)
        if path.name != "candles" or path.parent.name != "lake":
            raise ValueError(f"{path} is not a lake's candle folder: expected <data dir>/lake/candles")
        return cls(path.parent.parent)

    @property
    def candles_dir(self) -> Path:
        """The one home of candles: ``lake/candles/symbol=<s>/part-0.parquet``, one file per symbol."""
        return self.root / "lake" / "candles"

    def candle_path(self, symbol: str) -> Path:
        return self.candles_dir / f"{SYMBOL_PARTITION}{file_stem(symbol)}" / PART

    def candle_folders(self) -> dict[str, Path]:
        """Every symbol's candle folder (``symbol=<s>``), by symbol: one scan of one folder."""
        try:
            entries = list(os.scandir(self.candles_dir))
        except FileNotFoundError:
            return {}
        found = {
            unquote(entry.name.removeprefix(SYMBOL_PARTITION)): Path(entry.path)
            for entry in entries
            if entry.name.startswith(SYMBOL_PARTITION) and entry.is_dir()
        }
        return dict(sorted(found.items()))

    def candle_files(self) -> dict[str, Path]:
        """Every symbol that has a candle file, and the file."""
        return {symbol: folder / PART for symbol, folder in self.candle_folders().items() if (folder / PART).exists()}

    @property
    def candle_state_dir(self) -> Path:
        """What each symbol's chart fetch remembers (``state/candles/<s>.json``): not data, so not lake."""
        return self.root / "state" / "candles"

    def candle_state_path(self, symbol: str) -> Path:
        return self.candle_state_dir / f"{file_stem(symbol)}.json"

    @property
    def legacy_candle_cache_dir(self) -> Path:
        """Where candles were cached before the lake held them per symbol (``candles.migrate``)."""
        return self.root / "cache" / "candles"

    @property
    def earnings_state_dir(self) -> Path:
        """What the earnings history fetch remembers per symbol (``lake.earnings_state``)."""
        return self.root / "cache" / "earnings"

    @property
    def reports_dir(self) -> Path:
        """Rendered pictures (the vol chart) for people, beside the data they show."""
        return self.root / "reports"

    def raw_dir(self, dataset: str, day: date) -> Path:
        return self.root / "raw" / dataset / f"date={day.isoformat()}"

    def partition_path(self, dataset: str, day: date) -> Path:
        return self.root / "lake" / dataset / f"date={day.isoformat()}" / "part-0.parquet"

    def quarantine_path(self, dataset: str, day: date) -> Path:
        return self.root / "quarantine" / dataset / f"date={day.isoformat()}" / "part-0.parquet"

    def write_quarantine(self, dataset: str, day: date, frame: pd.DataFrame) -> Path:
        """Keep rows that failed validation where a human can inspect them, out of the lake."""
        self._stamp()
        return write_parquet_atomic(self.quarantine_path(dataset, day), frame.astype(str))

    def write_raw(self, dataset: str, day: date, name: str, payload: Any) -> Path:
        """Land an untouched API response; ``payload`` bytes are written verbatim."""
        self._stamp()
        target = self.raw_dir(dataset, day) / name
        if isinstance(payload, (bytes, bytearray)):
            return write_bytes_atomic(target, bytes(payload))
        return write_json_atomic(target, payload)

    def write_partition(self, dataset: str, day: date, frame: pd.DataFrame) -> Path:
        """Replace the dataset's partition for ``day`` (idempotent: re-running overwrites).

        The file holds exactly the dataset's declared columns and Arrow types: a missing column
        or a null in a non-nullable one fails here, before anything is replaced. A dataset stored
        per symbol has no session partitions: writing one is refused (it would be a second home).
        """
        if dataset in PER_SYMBOL:
            raise ValueError(
                f"{dataset} is stored one file per symbol under {self.root / 'lake' / dataset}/symbol=<s>/, "
                f"not per session: write it through variance_pipeline.candles.store.CandleStore"
            )
        self._stamp()
        return write_parquet_atomic(self.partition_path(dataset, day), BY_NAME[dataset].arrow_table(frame))

    def write_by_session(self, dataset: str, frame: pd.DataFrame, date_column: str = "session_date") -> list[date]:
        """Write one partition per distinct ``date_column`` value of ``frame`` (each replaced whole)."""
        written = []
        for day, group in frame.groupby(date_column, sort=True):
            self.write_partition(dataset, day, group.reset_index(drop=True))
            written.append(day)
        return written

    def has_partition(self, dataset: str, day: date) -> bool:
        return self.partition_path(dataset, day).exists()

    def read_partition(self, dataset: str, day: date) -> pd.DataFrame:
        return pq.read_table(self.partition_path(dataset, day)).to_pandas()

    def partition_days(self, dataset: str) -> list[date]:
        base = self.root / "lake" / dataset
        if not base.exists():
            return []
        days = []
        for child in base.iterdir():
            if child.name.startswith("date=") and (child / "part-0.parquet").exists():
                days.append(date.fromisoformat(child.name.removeprefix("date=")))
        return sorted(days)

    def latest_partition(self, dataset: str) -> date | None:
        days = self.partition_days(dataset)
        return days[-1] if days else None

    def run_folders(self, sessions: Iterable[date]) -> list[Path]:
        """Every folder a run of ``sessions`` writes files into: the sessions' partition folders of
        every dataset in raw/, lake/ and quarantine/, the datasets' own folders, each symbol's
        candle folder and the candle state, the reports and the data dir itself. Never a session
        outside the run."""
        days = [f"date={day.isoformat()}" for day in sessions]
        folders = [self.root, self.candle_state_dir, self.reports_dir, *self.candle_folders().values()]
        for layer in ("raw", "lake", "quarantine"):
            base = self.root / layer
            try:
                datasets = [child for child in base.iterdir() if child.is_dir()]
            except OSError:
                continue
            for dataset in datasets:
                folders.append(dataset)
                folders.extend(dataset / day for day in days)
        return folders

    def sweep_run_temp_files(self, sessions: Iterable[date]) -> list[Path]:
        """Remove temporary files an interrupted run (``kill -9``, a crash) left in the folders
        this run writes; a live writer's are kept (see ``sweep_stale_temp_files``)."""
        return sweep_stale_temp_files(self.run_folders(sessions))

    def free_bytes(self) -> int:
        """Free bytes on the disk that holds the data dir."""
        return free_bytes(self.root)
