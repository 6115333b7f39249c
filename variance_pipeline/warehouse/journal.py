"""The journal's warehouse half: trade ids on the transactions and each trade's entry context.

The trades are built in Python from the transactions (``transforms/trades.py``), but what our own
history said on the session a trade was opened (own IV rank and percentile, Tastytrade's IV rank,
IV30, IV - HV20, VRP, the short legs' delta, BP used, earnings inside the trade) lives here, in the
tables earlier stages loaded. ``refresh_journal`` fills it in (``journal.sql``) inside the load's
transaction whenever a journal table was loaded, so a trade's context is never half-updated and a
rebuild recomputes it. A trade opened before this project's history keeps NULLs and the reason.
"""

from __future__ import annotations

from importlib import resources

import duckdb

PACKAGE = "variance_pipeline.warehouse"


def refresh_journal(con: duckdb.DuckDBPyConnection) -> None:
    """Set ``transactions.trade_id`` from ``trade_transactions`` and the trades' entry context."""
    con.execute(resources.files(PACKAGE).joinpath("journal.sql").read_text())
