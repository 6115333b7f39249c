"""Volatility history nobody else keeps: constant-maturity IV, the variance risk premium, earnings
moves and our own IV rank, with an O(day) incremental refresh: set-based DuckDB SQL, except the IV
of an expiration, which comes from the one rule the position Greeks use (``transforms/term_structure``).

``refresh_vol_history(con, sessions)`` is called after a load with the sessions it just loaded. It
recomputes only what those sessions can change:

* ``iv_term_structure_by_expiration`` and ``iv_constant_maturity`` for ``as_of_date`` in
  ``sessions`` (an evening's term structure only affects that evening);
* ``vrp`` for ``as_of_date`` from the 21st XNYS session before ``min(sessions)`` to
  ``max(sessions)``: a close on session s enters the forward window of the 21 sessions before it,
  which is how a row that was NULL "fills in" 21 sessions later without rescanning history;
* ``earnings_moves`` for reports dated within 10 days of the sessions (their closes or the
  snapshot before them may have changed) plus every report that has no row yet;
* the one-row ``vol_history_settings`` and the views of ``vol_history.sql``.

Each step is delete-then-insert over its key range, so a refresh is idempotent and a one-shot
refresh of every session gives the same tables as a day-by-day one. Session arithmetic never
happens in SQL: the XNYS sessions the SQL needs are written to ``xnys_sessions`` (date + global
ordinal) from exchange_calendars first, so "21 sessions later" is ``ordinal + 21``.

This module is the orchestration (one transaction, the order of the steps, the schema and views);
each step lives in its own module: ``xnys_sessions``, ``constant_maturity``, ``vrp``,
``earnings_moves``.
"""

from __future__ import annotations

from datetime import date
from importlib import resources
from typing import Sequence

import duckdb

from variance_pipeline.warehouse.constant_maturity import refresh_constant_maturity
from variance_pipeline.warehouse.earnings_moves import refresh_earnings_moves
from variance_pipeline.warehouse.vrp import FORWARD_SESSIONS, refresh_vrp
from variance_pipeline.warehouse.xnys_sessions import sessions_after, sessions_before, write_sessions

PACKAGE = "variance_pipeline.warehouse"
MIGRATION = "002_vol_history.sql"
VIEWS_FILE = "vol_history.sql"
VIEW_NAMES = ("vrp_summary", "next_earnings", "iv_rank_own")
TABLE_NAMES = (
    "xnys_sessions",
    "iv_term_structure_by_expiration",
    "iv_constant_maturity",
    "vrp",
    "earnings_reports",
    "earnings_moves",
    "vol_history_settings",
)

RANK_SESSIONS = 252            # own IV rank looks back over the last 252 sessions
DEFAULT_MIN_RANK_SESSIONS = 20


def _read(name: str, *, migrations: bool = False) -> str:
    folder = resources.files(PACKAGE)
    if migrations:
        folder = folder.joinpath("migrations")
    return folder.joinpath(name).read_text()


def apply_vol_history_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create the 002 tables if missing (idempotent) and (re)create the vol-history views."""
    con.execute(_read(MIGRATION, migrations=True))
    create_vol_history_views(con)


def create_vol_history_views(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(_read(VIEWS_FILE))


def _in_transaction(con: duckdb.DuckDBPyConnection) -> bool:
    """True when the caller holds an open transaction: in autocommit mode every statement gets a
    new transaction id, inside BEGIN ... COMMIT they share one. (A failed BEGIN would abort the
    caller's transaction, so we must not just try it.)"""
    first = con.execute("SELECT txid_current()").fetchone()[0]
    return con.execute("SELECT txid_current()").fetchone()[0] == first


def _begin(con: duckdb.DuckDBPyConnection) -> bool:
    """Open a transaction unless the caller already holds one (then its commit covers ours)."""
    if _in_transaction(con):
        return False
    con.execute("BEGIN TRANSACTION")
    return True


def refresh_vol_history(
    con: duckdb.DuckDBPyConnection,
    sessions: Sequence[date],
    *,
    min_rank_sessions: int = DEFAULT_MIN_RANK_SESSIONS,
) -> dict[str, int]:
    """Recompute the vol-history rows ``sessions`` (the ones a load just loaded) can change.

    Runs in one transaction (or inside the caller's, if one is open). Returns rows written per
    table, plus ``vrp_complete`` (of the vrp rows written, those with a complete forward window)
    and ``sessions``.
    """
    if not 1 <= int(min_rank_sessions) <= RANK_SESSIONS:
        raise ValueError(f"min_rank_sessions must be between 1 and {RANK_SESSIONS}, got {min_rank_sessions}")
    days = sorted(set(sessions))
    own = _begin(con)
    try:
        con.execute(_read(MIGRATION, migrations=True))  # tables, if a warehouse predates 002
        report = {"sessions": len(days), "iv_constant_maturity": 0, "vrp": 0, "vrp_complete": 0,
                  "earnings_moves": 0, "xnys_sessions": 0}
        if days:
            first, last = days[0], days[-1]
            vrp_start = sessions_before(first, FORWARD_SESSIONS + 1)
            rank_start = sessions_before(first, RANK_SESSIONS)
            ahead = sessions_after(last, FORWARD_SESSIONS)
            horizon = ahead[-1] if ahead else last
            report["xnys_sessions"] = write_sessions(con, min(rank_start, vrp_start), horizon)
            report["iv_constant_maturity"] = refresh_constant_maturity(con, days)
            report["vrp"], report["vrp_complete"] = refresh_vrp(con, vrp_start, last, horizon)
            report["earnings_moves"] = refresh_earnings_moves(con, first, last)
        con.execute("INSERT OR REPLACE INTO vol_history_settings VALUES (1, ?)", [int(min_rank_sessions)])
        create_vol_history_views(con)
        if own:
            con.execute("COMMIT")
    except Exception:
        if own:
            con.execute("ROLLBACK")
        raise
    return report
