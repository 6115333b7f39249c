"""The journal: the last 30 days of closed trades, the win rate and P&L by strategy.

Closed trades come from the broker's transaction history, which the pipeline does not land yet
(a separate issue will add a ``trades`` table). Until then the section says so in a sentence; it
looks the table up on every build, so it fills in by itself the evening a ``trades`` table with
the columns below appears, and names any column that table lacks instead of failing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import duckdb

from variance_pipeline.reports.formatting import number

TRADES_TABLE = "trades"
TRADES_COLUMNS: dict[str, str] = {
    "closed_date": "the date the trade was closed (DATE or TIMESTAMP)",
    "underlying_symbol": "its underlying",
    "strategy": "its strategy (short put, strangle, iron condor, ...)",
    "realized_pnl": "the realised P&L in USD, fees included",
}


@dataclass
class Journal:
    available: bool = False
    days: int = 30
    trades: list[dict[str, Any]] = field(default_factory=list)
    by_strategy: list[dict[str, Any]] = field(default_factory=list)
    total_pnl: float = 0.0
    wins: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def win_rate(self) -> float | None:
        return self.wins / len(self.trades) if self.trades else None


def _columns(con: duckdb.DuckDBPyConnection, table: str) -> set[str] | None:
    rows = con.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = ? AND table_schema = 'main'", [table]
    ).fetchall()
    return {r[0] for r in rows} if rows else None


def closed_trades(con: duckdb.DuckDBPyConnection, evening: date, days: int = 30) -> Journal:
    """Closed trades of the ``days`` up to ``evening``, with the win rate and P&L by strategy."""
    journal = Journal(days=days)
    columns = _columns(con, TRADES_TABLE)
    if columns is None:
        journal.notes.append(
            "The journal is not available yet: the warehouse has no trades table. Closed trades come from the "
            "broker's transaction history, which the pipeline does not land yet (a separate issue). This section "
            "fills in by itself once a trades table exists."
        )
        return journal
    missing = [name for name in TRADES_COLUMNS if name not in columns]
    if missing:
        journal.notes.append(
            f"The trades table lacks the column(s) {', '.join(missing)}, so the journal cannot be drawn "
            f"(it needs {', '.join(TRADES_COLUMNS)})."
        )
        return journal
    journal.available = True
    start = evening - timedelta(days=days)
    cursor = con.execute(
        f"""
        SELECT CAST(closed_date AS DATE) AS closed_date, underlying_symbol, coalesce(strategy, 'unknown') AS strategy,
               realized_pnl
        FROM "{TRADES_TABLE}"
        WHERE CAST(closed_date AS DATE) > ? AND CAST(closed_date AS DATE) <= ?
        ORDER BY closed_date DESC, underlying_symbol
        """,
        [start, evening],
    )
    names = [d[0] for d in cursor.description]
    journal.trades = [dict(zip(names, row)) for row in cursor.fetchall()]
    groups: dict[str, dict[str, Any]] = {}
    for trade in journal.trades:
        pnl = number(trade["realized_pnl"]) or 0.0
        group = groups.setdefault(trade["strategy"], {"strategy": trade["strategy"], "trades": 0, "wins": 0, "pnl": 0.0})
        group["trades"] += 1
        group["wins"] += pnl > 0
        group["pnl"] += pnl
        journal.total_pnl += pnl
        journal.wins += pnl > 0
    for group in groups.values():
        group["win_rate"] = group["wins"] / group["trades"]
    journal.by_strategy = sorted(groups.values(), key=lambda g: (-g["trades"], g["strategy"]))
    if not journal.trades:
        journal.notes.append(f"No trade was closed in the {days} days up to {evening.isoformat()}.")
    return journal
