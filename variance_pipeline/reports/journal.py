"""The journal section: the last 30 days of closed trades, the win rate and P&L by strategy.

It reads the warehouse's ``trades``, the journal the pipeline builds from the broker's
transactions (``warehouse/journal.sql``): a trade counts on the New York date its last leg left
(``closed_date``), and a win is the journal's own ``outcome`` (a scratch is neither a win nor a
loss), so the page and ``strategy_outcomes`` agree. A warehouse built before the journal existed
has no such table until its next load: the section says so instead of failing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import duckdb

from variance_pipeline.reports.formatting import number
from variance_pipeline.schemas.journal import TRADES

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


def closed_trades(con: duckdb.DuckDBPyConnection, evening: date, days: int = 30) -> Journal:
    """Closed trades of the ``days`` up to ``evening``, with the win rate and P&L by strategy."""
    journal = Journal(days=days)
    present = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = ? AND table_schema = 'main'", [TRADES.table]
    ).fetchone()[0]
    if not present:
        journal.notes.append(
            "The journal is not in this warehouse yet: its trades table is created by the next load "
            "(the pipeline builds it from the broker's transactions)."
        )
        return journal
    journal.available = True
    start = evening - timedelta(days=days)
    cursor = con.execute(
        f"""
        SELECT closed_date, underlying_symbol, strategy, realized_pnl, outcome
        FROM "{TRADES.table}"
        WHERE status = 'closed' AND closed_date > ? AND closed_date <= ?
        ORDER BY closed_date DESC, underlying_symbol, trade_id
        """,
        [start, evening],
    )
    names = [d[0] for d in cursor.description]
    journal.trades = [dict(zip(names, row)) for row in cursor.fetchall()]
    groups: dict[str, dict[str, Any]] = {}
    for trade in journal.trades:
        pnl = number(trade["realized_pnl"]) or 0.0
        win = trade["outcome"] == "win"
        group = groups.setdefault(trade["strategy"], {"strategy": trade["strategy"], "trades": 0, "wins": 0, "pnl": 0.0})
        group["trades"] += 1
        group["wins"] += win
        group["pnl"] += pnl
        journal.total_pnl += pnl
        journal.wins += win
    for group in groups.values():
        group["win_rate"] = group["wins"] / group["trades"]
    journal.by_strategy = sorted(groups.values(), key=lambda g: (-g["trades"], g["strategy"]))
    if not journal.trades:
        journal.notes.append(f"No trade was closed in the {days} days up to {evening.isoformat()}.")
    return journal
