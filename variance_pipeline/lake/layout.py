"""The data layout under ``VARIANCE_DATA_DIR``: raw JSON (bronze), validated Parquet (silver),
quarantine, state and the warehouse path, hive-partitioned by date (see the contract).

Every write is atomic (``lake.atomic``). The lake also owns its reload manifests. A stage that
rewrites partitions of sessions outside its run (the candles sync, when a split re-bases a
symbol's history) lists them with ``Lake.request_reload`` in
``lake/<dataset>/_pending_reload.json``; the warehouse load reloads the sessions listed there and
calls ``Lake.clear_reloads`` once its transaction has committed, so the warehouse never keeps a
session on the old scale, and a failed load leaves the manifest for the next run.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any, Iterable

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

RELOAD_MANIFEST = "_pending_reload.json"
MAX_RELOAD_REASONS = 20


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

    @property
    def candle_cache_dir(self) -> Path:
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
        or a null in a non-nullable one fails here, before anything is replaced.
        """
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
        every dataset in raw/, lake/ and quarantine/, the datasets' own folders (reload manifests),
        the candle cache, the reports and the data dir itself. Never the whole history."""
        days = [f"date={day.isoformat()}" for day in sessions]
        folders = [self.root, self.candle_cache_dir, self.reports_dir]
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

    # -- reload manifests ---------------------------------------------------------------------

    def reload_manifest_path(self, dataset: str) -> Path:
        """``lake/<dataset>/_pending_reload.json``; the leading ``_`` keeps it out of partition scans."""
        return self.root / "lake" / dataset / RELOAD_MANIFEST

    def pending_reloads(self, dataset: str) -> set[date]:
        """Sessions of ``dataset`` rewritten in the lake that wait for a warehouse load."""
        return _manifest_sessions(_read_manifest(self.reload_manifest_path(dataset)))

    def request_reload(self, dataset: str, sessions: Iterable[date], *, reason: str = "") -> Path | None:
        """Ask the next warehouse load to reload ``sessions`` of ``dataset`` (merged with any pending)."""
        days = set(sessions)
        if not days:
            return None
        path = self.reload_manifest_path(dataset)
        doc = _read_manifest(path)
        merged = _manifest_sessions(doc) | days
        reasons = [str(r) for r in doc.get("reasons", []) if r][-(MAX_RELOAD_REASONS - 1):]
        if reason:
            reasons.append(reason)
        return write_json_atomic(
            path, {"dataset": dataset, "sessions": sorted(d.isoformat() for d in merged), "reasons": reasons}
        )

    def clear_reloads(self, dataset: str, loaded: set[date]) -> None:
        """Drop ``loaded`` from the manifest (re-read, so sessions requested meanwhile stay)."""
        path = self.reload_manifest_path(dataset)
        doc = _read_manifest(path)
        left = _manifest_sessions(doc) - loaded
        if left:
            write_json_atomic(path, {**doc, "dataset": dataset, "sessions": sorted(d.isoformat() for d in left)})
        else:
            path.unlink(missing_ok=True)


def _read_manifest(path: Path) -> dict:
    """The manifest, or {} when there is none (written atomically, so never half a file)."""
    try:
        doc = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _manifest_sessions(doc: dict) -> set[date]:
    days = set()
    for text in doc.get("sessions", []):
        try:
            days.add(date.fromisoformat(str(text)))
        except ValueError:
            continue
    return days
