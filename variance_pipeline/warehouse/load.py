"""Loading lake partitions into DuckDB: versioned DDL, one transaction per run, idempotent.

A session's load deletes that session's rows and inserts them again from that session's Parquet,
so re-running a day replaces it (never duplicates), and loading day k touches only day k's rows:
the cost is O(day), not O(history).

Every ``load_sessions`` also reloads the sessions the lake lists in its reload manifests
(``Lake.request_reload``, e.g. after a split re-based a symbol) and clears them once its
transaction has committed, so the warehouse never keeps a session on the old scale.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Iterable, Sequence

import duckdb

from variance_pipeline.schemas.dataset import Dataset, SchemaDriftError
from variance_pipeline.schemas.market_metrics import IV_TERM_STRUCTURE, STANDARD_CHAIN
from variance_pipeline.schemas.journal import JOURNAL
from variance_pipeline.schemas.registry import DATASETS
from variance_pipeline.lake.layout import Lake
from variance_pipeline.warehouse.journal import refresh_journal
from variance_pipeline.warehouse.vol_history import (
    DEFAULT_MIN_RANK_SESSIONS,
    create_vol_history_views,
    refresh_vol_history,
)

PACKAGE = "variance_pipeline.warehouse"


TABLES: tuple[Dataset, ...] = DATASETS
TABLE_NAMES = tuple(spec.table for spec in TABLES)
VIEW_NAMES = (
    "vol_dashboard", "portfolio", "portfolio_risk", "expected_move", "vrp_summary", "next_earnings", "iv_rank_own",
    "book_groups", "manage_tonight", "account_summary", "greeks_vs_broker", "strategy_outcomes", "pnl_by_month",
    "account_reconciliation",
)

# What a NULL means in a lake file landed before its column became required, per (dataset,
# column): partitions landed before schema version 7 may hold no chain type, which is Standard.
NULL_MEANS: dict[tuple[str, str], str] = {(IV_TERM_STRUCTURE.name, "option_chain_type"): STANDARD_CHAIN}
# The first version whose derived tables the load computes with the one IV rule: a warehouse
# migrated across it has those tables recomputed for every landed snapshot, once.
ONE_IV_RULE_VERSION = 7


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
    started = current
    for version, name, sql in _migrations():
        if version <= current:
            continue
        con.execute(sql)
        con.execute(
            "INSERT INTO schema_version VALUES (?, ?, ?)", [version, name, datetime.now(timezone.utc)]
        )
        current = version
    for dataset in DATASETS:  # a dataset declared after the last migration gets its table here
        con.execute(dataset.ddl())
    create_vol_history_views(con)  # views.sql's vol_dashboard reads iv_rank_own
    for views in ("views.sql", "account_views.sql", "journal_views.sql"):
        con.execute(resources.files(PACKAGE).joinpath(views).read_text())
    if 0 < started < ONE_IV_RULE_VERSION <= current:
        # An upgrade, not a new file: what the old SQL derived from the term structures is derived
        # again by the one rule (constant maturity, the expirations' IVs, VRP, implied moves).
        snapshots = con.execute(
            "SELECT as_of_date FROM iv_term_structure UNION SELECT as_of_date FROM market_metrics ORDER BY 1"
        ).fetchall()
        refresh_vol_history(con, [row[0] for row in snapshots])
    return current


def _loaded(dataset: str, column: str) -> str:
    """The SELECT expression that loads ``column`` of a lake file (``NULL_MEANS`` filled in)."""
    meaning = NULL_MEANS.get((dataset, column))
    if meaning is None:
        return f'"{column}"'
    literal = meaning.replace("'", "''")
    return f'coalesce("{column}", \'{literal}\') AS "{column}"'


def _parquet_columns(con: duckdb.DuckDBPyConnection, path: Path) -> set[str]:
    rows = con.execute("SELECT name FROM parquet_schema(?)", [str(path)]).fetchall()
    return {r[0] for r in rows}


@dataclass(frozen=True)
class LoadReport:
    rows_by_table: dict[str, int]
    sessions_by_table: dict[str, int]
    # Sessions loaded beyond the requested ones because the lake asked for them (Lake.request_reload).
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
    tables: Iterable[Dataset] = TABLES,
    min_rank_sessions: int = DEFAULT_MIN_RANK_SESSIONS,
    refresh_history: bool = True,
) -> LoadReport:
    """Replace ``sessions`` of every dataset that has a lake partition for them, atomically.

    A session whose partition file is absent is left alone: a snapshot that could not be taken
    for an old session must not erase what an earlier run recorded for it. Sessions the lake
    listed with ``Lake.request_reload`` are reloaded in the same transaction and then unlisted.
    """
    migrate(con)
    tables = tuple(tables)
    requested = set(sessions)
    pending = {spec.name: lake.pending_reloads(spec.name) for spec in tables}
    rows: dict[str, int] = {}
    counts: dict[str, int] = {}
    reloaded: dict[str, int] = {}
    now = datetime.now(timezone.utc)
    con.execute("BEGIN TRANSACTION")
    try:
        for spec in tables:
            rows[spec.table] = 0
            counts[spec.table] = 0
            extra = pending[spec.name] - requested
            if extra:
                reloaded[spec.table] = len(extra)
            for day in sorted(requested | extra):
                path = lake.partition_path(spec.name, day)
                if not path.exists():
                    continue
                missing = spec.missing_columns(_parquet_columns(con, path))
                if missing:
                    raise SchemaDriftError(
                        f"{spec.name}: column(s) {', '.join(missing)} missing from {path}; nothing was loaded "
                        f"(re-materialise session {day} to rewrite the file with every declared column)"
                    )
                names = ", ".join(f'"{c}"' for c in spec.names)
                select = ", ".join(_loaded(spec.name, c) for c in spec.names)
                if spec.load == "replace_all":
                    con.execute(f'DELETE FROM "{spec.table}"')
                if spec.load in ("upsert", "replace_all"):
                    loaded = len(con.execute(
                        f'INSERT OR REPLACE INTO "{spec.table}" ({names}) SELECT {select} FROM read_parquet(?) '
                        f"RETURNING 1",
                        [str(path)],
                    ).fetchall())
                else:
                    con.execute(f'DELETE FROM "{spec.table}" WHERE "{spec.date_column}" = ?', [day])
                    con.execute(
                        f'INSERT INTO "{spec.table}" ({names}) '
                        f"SELECT {select} FROM read_parquet(?) WHERE \"{spec.date_column}\" = ?",
                        [str(path), day],
                    )
                    loaded = con.execute(
                        f'SELECT count(*) FROM "{spec.table}" WHERE "{spec.date_column}" = ?', [day]
                    ).fetchone()[0]
                con.execute(
                    "INSERT OR REPLACE INTO load_log VALUES (?, ?, ?, ?, ?)",
                    [spec.name, day, loaded, run_id, now],
                )
                rows[spec.table] += loaded
                counts[spec.table] += 1
        # The history marts (constant-maturity IV, VRP filling in, earnings moves) follow the
        # sessions just loaded, in the same transaction: O(day), and never half-updated.
        loaded_days = requested | {d for days in pending.values() for d in days}
        if refresh_history:
            refresh_vol_history(con, sorted(loaded_days), min_rank_sessions=min_rank_sessions)
        if any(spec in JOURNAL for spec in tables):
            refresh_journal(con)  # trade ids and entry context, from every table loaded before
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise
    for dataset, days in pending.items():
        if days:
            lake.clear_reloads(dataset, days)
    return LoadReport(rows, counts, reloaded)


def rebuild(lake: Lake, path: Path | None = None) -> LoadReport:
    """Recreate the warehouse from the lake: a new file, every partition, then published (readers
    of the old file keep it until they close it)."""
    from variance_pipeline.warehouse.publish import publishing

    days = sorted({d for spec in TABLES for d in lake.partition_days(spec.name)})
    with publishing(path or lake.warehouse_path, fresh=True, run_id="rebuild") as con:
        return load_sessions(con, lake, days, run_id="rebuild")
