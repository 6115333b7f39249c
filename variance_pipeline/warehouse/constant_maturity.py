"""``iv_term_structure_by_expiration`` and ``iv_constant_maturity``: each evening's term structure
read through the one IV rule, ``transforms.term_structure``.

Why Python in the warehouse: which row is an expiration's IV, how T is measured and when a value
counts as extrapolated is written once, in ``transforms/term_structure.py``, which the position
Greeks use too. SQL that re-derived it drifted (PM in one place, the mean of AM and PM in another;
calendar days here, seconds there), so one (symbol, expiration) could get two IVs in one warehouse.
Here the load hands the transform the term-structure rows of the sessions it loads and stores:

* ``iv_term_structure_by_expiration``: each expiration date's node (Standard chain, PM else AM)
  with its T; ``expected_move``, ``next_earnings`` and ``earnings_moves`` read IVs only from it;
* ``iv_constant_maturity``: ``iv30/60/90`` = the IV at T = 30/60/90 days / 365 (NULL unless
  bracketed by nodes: the transform flags an extrapolated value and it is refused), the front
  node, the count of nodes, and Tastytrade's own ``iv_30_day`` beside them (a snapshot with metrics
  but no usable term structure still gets its row).

An evening's term structure only affects that evening, so a refresh rewrites exactly the
``as_of_date``s it is given (delete, then insert), inside the caller's transaction: O(day). Many
sessions at once (a rebuild) are computed ``CHUNK_SESSIONS`` at a time, so memory stays bounded.
"""

from __future__ import annotations

from datetime import date

import duckdb

from variance_pipeline.transforms.term_structure import constant_maturity, expiration_nodes

TARGET_DAYS = (30, 60, 90)     # constant maturities: T = days / 365 from the session close
CHUNK_SESSIONS = 64            # sessions computed at a time

_DAYS = "as_of_date BETWEEN $first AND $last AND as_of_date IN (SELECT unnest(CAST($days AS DATE[])))"

_READ_SQL = f"""
SELECT as_of_date, symbol, expiration_date, settlement_type, option_chain_type, implied_volatility
FROM iv_term_structure
WHERE {_DAYS}  -- constant bounds first: zone maps skip the rest
"""

_INSERT_NODES_SQL = """
INSERT INTO iv_term_structure_by_expiration
    (symbol, as_of_date, expiration_date, settlement_type, settlement_types, days_to_expiration,
     years_to_expiration, implied_volatility)
SELECT symbol, CAST(as_of_date AS DATE), CAST(expiration_date AS DATE), settlement_type, settlement_types,
       CAST(CAST(expiration_date AS DATE) - CAST(as_of_date AS DATE) AS INTEGER), years_to_expiration,
       implied_volatility
FROM _vh_nodes
"""

_INSERT_CURVE_SQL = f"""
INSERT INTO iv_constant_maturity
    (symbol, as_of_date, iv30, iv60, iv90, term_slope, front_iv, front_expiration, front_days,
     front_to_30_ratio, expirations_used, tastytrade_iv30)
WITH curve AS (
    SELECT symbol, CAST(as_of_date AS DATE) AS as_of_date, iv30, iv60, iv90, front_iv,
           CAST(front_expiration AS DATE) AS front_expiration, front_days, expirations_used
    FROM _vh_curve
),
metrics AS (
    SELECT symbol, as_of_date, iv_30_day
    FROM market_metrics
    WHERE {_DAYS}
)
SELECT
    coalesce(c.symbol, m.symbol),
    coalesce(c.as_of_date, m.as_of_date),
    c.iv30,
    c.iv60,
    c.iv90,
    c.iv90 - c.iv30,
    c.front_iv,
    c.front_expiration,
    c.front_days,
    c.front_iv / nullif(c.iv30, 0),
    coalesce(c.expirations_used, 0),
    m.iv_30_day
FROM curve AS c
FULL OUTER JOIN metrics AS m ON m.symbol = c.symbol AND m.as_of_date = c.as_of_date
"""


def _refresh_chunk(con: duckdb.DuckDBPyConnection, days: list[date]) -> None:
    bounds = {"first": days[0], "last": days[-1], "days": days}
    con.execute(f"DELETE FROM iv_term_structure_by_expiration WHERE {_DAYS}", bounds)
    con.execute(f"DELETE FROM iv_constant_maturity WHERE {_DAYS}", bounds)
    rows = con.execute(_READ_SQL, bounds).df()  # dates as datetime64: the transform compares days
    nodes = expiration_nodes(rows)  # T from each session's XNYS close
    nodes = nodes[nodes["is_node"].to_numpy(dtype=bool)]
    curve = constant_maturity(nodes, TARGET_DAYS)
    con.register("_vh_nodes", nodes)
    con.register("_vh_curve", curve)
    try:
        con.execute(_INSERT_NODES_SQL)
        con.execute(_INSERT_CURVE_SQL, bounds)
    finally:
        con.unregister("_vh_nodes")
        con.unregister("_vh_curve")


def refresh_constant_maturity(con: duckdb.DuckDBPyConnection, days: list[date]) -> int:
    """Rewrite both tables for the sorted session ``days``; returns the iv_constant_maturity rows written."""
    for start in range(0, len(days), CHUNK_SESSIONS):
        _refresh_chunk(con, days[start : start + CHUNK_SESSIONS])
    if not days:
        return 0
    count = con.execute(
        f"SELECT count(*) FROM iv_constant_maturity WHERE {_DAYS}", {"first": days[0], "last": days[-1], "days": days}
    ).fetchone()[0]
    return int(count)
