"""Loading the lake into DuckDB: versioned DDL, one transaction per run, idempotent.

A session's load deletes that session's rows and inserts them again from the lake, so re-running a
day replaces it (never duplicates), and loading day k touches only day k's rows: the cost is
O(day), not O(history). Session-partitioned datasets are read from that session's Parquet;
candles from the candle store (one file per symbol, ``candles.bars``), filtered to the sessions.

A split re-scales a symbol's whole history, and the store replaces its file with a new scale id.
``candle_scales`` records the scale id each symbol was loaded on; a symbol whose file shows
another one has every session the warehouse holds of it reloaded from the file, in the same
transaction as the run's sessions, so the warehouse never keeps a session on the old scale and
a crash leaves it as it was.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Iterable, Sequence

import duckdb

from variance_pipeline.calendar import previous_session
from variance_pipeline.candles.bars import SCALE_KEY
from variance_pipeline.candles.migrate import migrate_legacy_candles
from variance_pipeline.schemas.candles import CANDLES
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
    # Bookkeeping of the load itself, like schema_version: which scale each symbol's candles are on.
    con.execute(
        "CREATE TABLE IF NOT EXISTS candle_scales ("
        " symbol VARCHAR PRIMARY KEY, scale VARCHAR NOT NULL, loaded_at TIMESTAMPTZ NOT NULL)"
    )
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


@dataclass(frozen=True)
class LoadReport:
    rows_by_table: dict[str, int]
    sessions_by_table: dict[str, int]
    # Symbols whose candle history was re-scaled since the last load, and the rows of theirs
    # reloaded beyond the run's sessions (every session the warehouse held of them).
    rescaled_symbols: tuple[str, ...] = ()
    rows_reloaded: int = 0

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
    """Replace ``sessions`` of every dataset the lake has them for, atomically.

    A session whose partition file is absent is left alone: a snapshot that could not be taken
    for an old session must not erase what an earlier run recorded for it. Candles come from the
    store, and a re-scaled symbol's other sessions are reloaded in the same transaction.
    """
    migrate(con)
    migrate_legacy_candles(lake)  # an old data dir's candles, before anything reads the store
    tables = tuple(tables)
    requested = sorted(set(sessions))
    rows: dict[str, int] = {}
    counts: dict[str, int] = {}
    now = datetime.now(timezone.utc)
    candles = _CandleLoad((), 0, set())
    con.execute("BEGIN TRANSACTION")
    try:
        for spec in tables:
            if spec == CANDLES:
                candles = _load_candles(con, lake, requested, run_id, now)
                rows[spec.table], counts[spec.table] = candles.rows, len(candles.sessions)
                continue
            rows[spec.table] = 0
            counts[spec.table] = 0
            for day in requested:
                path = lake.partition_path(spec.name, day)
                if not path.exists():
                    continue
                _require_columns(con, spec, [path])
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
                _log_load(con, spec, day, loaded, run_id, now)
                rows[spec.table] += loaded
                counts[spec.table] += 1
        # The history marts (constant-maturity IV, VRP filling in, earnings moves) follow the
        # sessions just loaded, in the same transaction: O(day), and never half-updated.
        if refresh_history:
            refresh_vol_history(con, sorted(set(requested) | candles.reloaded), min_rank_sessions=min_rank_sessions)
        if any(spec in JOURNAL for spec in tables):
            refresh_journal(con)  # trade ids and entry context, from every table loaded before
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise
    return LoadReport(rows, counts, candles.rescaled, candles.rows_reloaded)


def _require_columns(con: duckdb.DuckDBPyConnection, spec: Dataset, paths: Sequence[Path]) -> None:
    """Every declared column is in every file (one footer read for all): never a silent NULL."""
    found: dict[str, set[str]] = {str(p): set() for p in paths}
    for file_name, column in con.execute(
        "SELECT file_name, name FROM parquet_schema(?)", [[str(p) for p in paths]]
    ).fetchall():
        found.setdefault(file_name, set()).add(column)
    for path, present in found.items():
        missing = spec.missing_columns(present)
        if missing:
            raise SchemaDriftError(
                f"{spec.name}: column(s) {', '.join(missing)} missing from {path}; nothing was loaded "
                f"(re-materialise the data to rewrite the file with every declared column)"
            )


def _log_load(
    con: duckdb.DuckDBPyConnection, spec: Dataset, day: date, rows: int, run_id: str | None, now: datetime
) -> None:
    con.execute("INSERT OR REPLACE INTO load_log VALUES (?, ?, ?, ?, ?)", [spec.name, day, rows, run_id, now])


@dataclass(frozen=True)
class _CandleLoad:
    rescaled: tuple[str, ...]
    rows_reloaded: int
    reloaded: set[date]  # sessions beyond the run's whose candles changed (re-scaled symbols)
    rows: int = 0
    sessions: tuple[date, ...] = ()


def _load_candles(
    con: duckdb.DuckDBPyConnection, lake: Lake, requested: list[date], run_id: str | None, now: datetime
) -> _CandleLoad:
    """The run's sessions of every symbol from the store; first, each re-scaled symbol's other
    sessions the warehouse holds (the footers say which scale each file is on: O(symbols), never
    O(history) unless a history was re-scaled)."""
    files = lake.candle_files()
    if not files:
        return _CandleLoad((), 0, set())
    paths = {symbol: str(path) for symbol, path in files.items()}
    _require_columns(con, CANDLES, list(files.values()))
    on_disk = dict(con.execute(
        "SELECT file_name, decode(value) FROM parquet_kv_metadata(?) WHERE decode(key) = ?",
        [list(paths.values()), SCALE_KEY],
    ).fetchall())
    loaded_on = dict(con.execute("SELECT symbol, scale FROM candle_scales").fetchall())
    scales = {symbol: on_disk.get(path, "") for symbol, path in paths.items()}
    rescaled = sorted(symbol for symbol, scale in scales.items() if loaded_on.get(symbol) != scale)
    names = ", ".join(f'"{c}"' for c in CANDLES.names)
    reloaded_rows, reloaded = 0, set()
    if rescaled:
        # What the warehouse holds of them outside the run is replaced from the new history; a
        # session it no longer has is dropped rather than left on the old scale.
        con.execute(
            "CREATE OR REPLACE TEMP TABLE candle_reload AS SELECT symbol, session_date FROM candles "
            "WHERE list_contains(?, symbol) AND NOT list_contains(?, session_date)",
            [rescaled, requested],
        )
        held = con.execute("SELECT DISTINCT symbol, session_date FROM candle_reload").fetchall()
        reloaded = {day for _, day in held}
        if held:  # a symbol seen for the first time holds nothing yet: no file to read again
            con.execute(
                "DELETE FROM candles WHERE (symbol, session_date) IN (SELECT symbol, session_date FROM candle_reload)"
            )
            reloaded_rows = len(con.execute(
                f"INSERT INTO candles ({names}) SELECT {names} FROM read_parquet(?) "
                "WHERE (symbol, session_date) IN (SELECT symbol, session_date FROM candle_reload) RETURNING 1",
                [sorted({paths[symbol] for symbol, _ in held})],
            ).fetchall())
        con.execute("DROP TABLE candle_reload")
        con.execute(
            "INSERT OR REPLACE INTO candle_scales SELECT unnest(?), unnest(?), ?",
            [rescaled, [scales[symbol] for symbol in rescaled], now],
        )
    # The session before the run: a futures bar stored at the evening run (after the Globex halt)
    # is fetched again once its calendar day is over (``candles.plan``), so the rows the warehouse
    # holds of it are brought in line with the store (nothing is added), and the history marts
    # over that session (VRP's forward windows) are refreshed with the run's. Every symbol's file
    # is read once, for the run's sessions and that one.
    before = previous_session(requested[0]) if requested else None
    recheck = before is not None and before not in requested
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE run_candles AS SELECT {names} FROM read_parquet(?) "
        "WHERE list_contains(?, session_date)",
        [list(paths.values()), [*requested, before] if recheck else requested],
    )
    con.execute("DELETE FROM candles WHERE list_contains(?, session_date)", [requested])
    con.execute(
        f"INSERT INTO candles ({names}) SELECT {names} FROM run_candles WHERE list_contains(?, session_date)",
        [requested],
    )
    if recheck:
        values = [c for c in CANDLES.names if c not in ("symbol", "session_date")]
        updated = con.execute(
            f"UPDATE candles SET {', '.join(f'{c} = f.{c}' for c in values)} FROM run_candles AS f "
            "WHERE candles.symbol = f.symbol AND candles.session_date = f.session_date AND f.session_date = ? "
            f"AND ({' OR '.join(f'candles.{c} IS DISTINCT FROM f.{c}' for c in values)}) RETURNING 1",
            [before],
        ).fetchall()
        if updated:
            reloaded = reloaded | {before}
    con.execute("DROP TABLE run_candles")
    per_day = dict(con.execute(
        "SELECT session_date, count(*) FROM candles WHERE list_contains(?, session_date) GROUP BY 1", [requested]
    ).fetchall())
    for day, count in per_day.items():
        _log_load(con, CANDLES, day, count, run_id, now)
    return _CandleLoad(tuple(rescaled), reloaded_rows, reloaded, sum(per_day.values()), tuple(sorted(per_day)))


def rebuild(lake: Lake, path: Path | None = None) -> LoadReport:
    """Recreate the warehouse from the lake: a new file, every session a dataset landed a partition
    for (and those sessions' candles from the store, as the runs loaded them), then published
    (readers of the old file keep it until they close it)."""
    from variance_pipeline.warehouse.publish import publishing

    days = sorted({d for spec in TABLES for d in lake.partition_days(spec.name)})
    with publishing(path or lake.warehouse_path, fresh=True, run_id="rebuild") as con:
        return load_sessions(con, lake, days, run_id="rebuild")
