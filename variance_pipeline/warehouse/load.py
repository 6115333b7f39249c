"""Loading lake partitions into DuckDB: versioned DDL, one transaction per run, idempotent.

A session's load deletes that session's rows and inserts them again from that session's Parquet,
so re-running a day replaces it (never duplicates), and loading day k touches only day k's rows:
the cost is O(day), not O(history).

A stage that rewrites partitions of sessions outside its run (the candles asset, when a split
re-bases a symbol's history) lists them with ``request_reload`` in a small manifest beside the
dataset, ``lake/<dataset>/_pending_reload.json``; every ``load_sessions`` also reloads the sessions
listed there and removes them once its transaction has committed, so the warehouse never keeps
a session on the old scale, and a failed load leaves the manifest for the next run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Iterable, Sequence

import duckdb

from variance_pipeline.lake import Lake, write_json_atomic

PACKAGE = "variance_pipeline.warehouse"


@dataclass(frozen=True)
class TableSpec:
    """Where a lake dataset lands and which column carries its partition date."""

    dataset: str
    table: str
    date_column: str


TABLES: tuple[TableSpec, ...] = (
    TableSpec("positions", "positions", "as_of_date"),
    TableSpec("market_metrics", "market_metrics", "as_of_date"),
    TableSpec("iv_term_structure", "iv_term_structure", "as_of_date"),
    TableSpec("candles", "candles", "session_date"),
    TableSpec("realized_volatility", "realized_volatility", "session_date"),
)
TABLE_NAMES = tuple(spec.table for spec in TABLES)
VIEW_NAMES = ("vol_dashboard", "portfolio")
RELOAD_MANIFEST = "_pending_reload.json"
MAX_REASONS = 20


def _migrations() -> list[tuple[int, str, str]]:
    folder = resources.files(PACKAGE).joinpath("migrations")
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            version = int(entry.name.split("_", 1)[0])
            found.append((version, entry.name, entry.read_text()))
    return sorted(found)


def migrate(con: duckdb.DuckDBPyConnection) -> int:
    """Apply every migration newer than ``schema_version``; recreate the views. Returns the version."""
    con.execute(
        "CREATE TABLE IF NOT EXISTS schema_version ("
        " version INTEGER PRIMARY KEY, name VARCHAR NOT NULL, applied_at TIMESTAMPTZ NOT NULL)"
    )
    current = con.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()[0]
    for version, name, sql in _migrations():
        if version <= current:
            continue
        con.execute(sql)
        con.execute(
            "INSERT INTO schema_version VALUES (?, ?, ?)", [version, name, datetime.now(timezone.utc)]
        )
        current = version
    con.execute(resources.files(PACKAGE).joinpath("views.sql").read_text())
    return current


def _table_columns(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    rows = con.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = ? ORDER BY ordinal_position",
        [table],
    ).fetchall()
    return [r[0] for r in rows]


def _parquet_columns(con: duckdb.DuckDBPyConnection, path: Path) -> set[str]:
    rows = con.execute("SELECT name FROM parquet_schema(?)", [str(path)]).fetchall()
    return {r[0] for r in rows}


def reload_manifest_path(lake: Lake, dataset: str) -> Path:
    """``lake/<dataset>/_pending_reload.json``; the leading ``_`` keeps it out of partition scans."""
    return lake.root / "lake" / dataset / RELOAD_MANIFEST


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


def pending_reloads(lake: Lake, dataset: str) -> set[date]:
    """Sessions of ``dataset`` that were rewritten in the lake and wait for a warehouse load."""
    return _manifest_sessions(_read_manifest(reload_manifest_path(lake, dataset)))


def request_reload(lake: Lake, dataset: str, sessions: Iterable[date], *, reason: str = "") -> Path | None:
    """Ask the next warehouse load to reload ``sessions`` of ``dataset`` (merged with any pending)."""
    days = set(sessions)
    if not days:
        return None
    path = reload_manifest_path(lake, dataset)
    doc = _read_manifest(path)
    merged = _manifest_sessions(doc) | days
    reasons = [str(r) for r in doc.get("reasons", []) if r][-(MAX_REASONS - 1):]
    if reason:
        reasons.append(reason)
    return write_json_atomic(
        path, {"dataset": dataset, "sessions": sorted(d.isoformat() for d in merged), "reasons": reasons}
    )


def _clear_reloads(lake: Lake, dataset: str, loaded: set[date]) -> None:
    """Drop ``loaded`` from the manifest (re-read, so sessions requested meanwhile stay)."""
    path = reload_manifest_path(lake, dataset)
    doc = _read_manifest(path)
    left = _manifest_sessions(doc) - loaded
    if left:
        write_json_atomic(path, {**doc, "dataset": dataset, "sessions": sorted(d.isoformat() for d in left)})
    else:
        path.unlink(missing_ok=True)


@dataclass(frozen=True)
class LoadReport:
    rows_by_table: dict[str, int]
    sessions_by_table: dict[str, int]
    # Sessions loaded beyond the requested ones because the lake asked for them (request_reload).
    reloaded_by_table: dict[str, int] = field(default_factory=dict)

    @property
    def total_rows(self) -> int:
        return sum(self.rows_by_table.values())


def load_sessions(
    con: duckdb.DuckDBPyConnection,
    lake: Lake,
    sessions: Sequence[date],
    *,
    run_id: str | None = None,
    tables: Iterable[TableSpec] = TABLES,
) -> LoadReport:
    """Replace ``sessions`` of every dataset that has a lake partition for them, atomically.

    A session whose partition file is absent is left alone: a snapshot that could not be taken
    for an old session must not erase what an earlier run recorded for it. Sessions the lake
    listed with ``request_reload`` are reloaded in the same transaction and then unlisted.
    """
    migrate(con)
    tables = tuple(tables)
    requested = set(sessions)
    pending = {spec.dataset: pending_reloads(lake, spec.dataset) for spec in tables}
    rows: dict[str, int] = {}
    counts: dict[str, int] = {}
    reloaded: dict[str, int] = {}
    now = datetime.now(timezone.utc)
    con.execute("BEGIN TRANSACTION")
    try:
        for spec in tables:
            columns = _table_columns(con, spec.table)
            rows[spec.table] = 0
            counts[spec.table] = 0
            extra = pending[spec.dataset] - requested
            if extra:
                reloaded[spec.table] = len(extra)
            for day in sorted(requested | extra):
                path = lake.partition_path(spec.dataset, day)
                if not path.exists():
                    continue
                # Older lake files may predate a column; NULL is the honest value for them.
                available = _parquet_columns(con, path)
                select = ", ".join(
                    f'"{c}"' if c in available else f'NULL AS "{c}"' for c in columns
                )
                con.execute(f'DELETE FROM "{spec.table}" WHERE "{spec.date_column}" = ?', [day])
                con.execute(
                    f'INSERT INTO "{spec.table}" ({", ".join(chr(34) + c + chr(34) for c in columns)}) '
                    f"SELECT {select} FROM read_parquet(?) WHERE \"{spec.date_column}\" = ?",
                    [str(path), day],
                )
                loaded = con.execute(
                    f'SELECT count(*) FROM "{spec.table}" WHERE "{spec.date_column}" = ?', [day]
                ).fetchone()[0]
                con.execute(
                    "INSERT OR REPLACE INTO load_log VALUES (?, ?, ?, ?, ?)",
                    [spec.dataset, day, loaded, run_id, now],
                )
                rows[spec.table] += loaded
                counts[spec.table] += 1
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise
    for dataset, days in pending.items():
        if days:
            _clear_reloads(lake, dataset, days)
    return LoadReport(rows, counts, reloaded)


def rebuild(lake: Lake, path: Path | None = None) -> LoadReport:
    """Recreate the warehouse from the lake: a new file, every partition, then swapped in."""
    from variance_pipeline.warehouse.connection import open_warehouse

    target = path or lake.warehouse_path
    tmp = target.with_name(target.name + ".rebuild")
    tmp.unlink(missing_ok=True)
    days = sorted({d for spec in TABLES for d in lake.partition_days(spec.dataset)})
    con = open_warehouse(tmp)
    try:
        report = load_sessions(con, lake, days, run_id="rebuild")
    finally:
        con.close()
    tmp.replace(target)
    Path(str(tmp) + ".wal").unlink(missing_ok=True)
    return report
