"""``vrp``: the variance risk premium as realised afterwards (iv30 minus the next 21 sessions' HV).

A close on session s enters the forward window of the 21 sessions before it, so a refresh of
sessions [first, last] rewrites ``as_of_date`` from the 21st session before ``first`` to ``last``:
that is how a row that was NULL fills in 21 sessions later without rescanning history.
"""

from __future__ import annotations

from datetime import date

import duckdb

FORWARD_SESSIONS = 21          # the VRP's realised window: the 21 sessions after as_of_date
ANNUALISATION = 252

_VRP_SQL = f"""
INSERT INTO vrp
WITH win AS (
    SELECT session_date AS as_of_date, session_ordinal AS o
    FROM xnys_sessions
    WHERE session_date BETWEEN $start AND $end
),
iv AS (
    -- Every snapshot in the window: our constant-maturity iv30, else Tastytrade's.
    SELECT
        coalesce(c.symbol, m.symbol)         AS symbol,
        coalesce(c.as_of_date, m.as_of_date) AS as_of_date,
        c.iv30                               AS cm_iv30,
        m.iv_30_day                          AS tt_iv30
    FROM (SELECT symbol, as_of_date, iv30 FROM iv_constant_maturity
          WHERE as_of_date BETWEEN $start AND $end) AS c
    FULL OUTER JOIN (SELECT symbol, as_of_date, iv_30_day FROM market_metrics
                     WHERE as_of_date BETWEEN $start AND $end) AS m
      ON m.symbol = c.symbol AND m.as_of_date = c.as_of_date
),
forward AS (
    -- k = 0 is as_of_date itself, k = 1..21 the sessions after it.
    SELECT w.as_of_date, s.session_date, s.session_ordinal - w.o AS k
    FROM win AS w
    JOIN xnys_sessions AS s ON s.session_ordinal BETWEEN w.o AND w.o + {FORWARD_SESSIONS}
),
closes AS (
    SELECT symbol, session_date, close
    FROM candles
    WHERE session_date BETWEEN $start AND $close_end AND close > 0
),
path AS (
    SELECT
        iv.symbol,
        iv.as_of_date,
        f.k,
        f.session_date,
        c.close
    FROM iv
    JOIN forward AS f ON f.as_of_date = iv.as_of_date
    LEFT JOIN closes AS c ON c.symbol = iv.symbol AND c.session_date = f.session_date
),
returns AS (
    SELECT
        symbol,
        as_of_date,
        k,
        session_date,
        ln(close / lag(close) OVER (PARTITION BY symbol, as_of_date ORDER BY k)) AS r
    FROM path
),
realised AS (
    SELECT
        symbol,
        as_of_date,
        count(r) FILTER (WHERE k >= 1)                     AS forward_sessions,
        max(session_date) FILTER (WHERE k = {FORWARD_SESSIONS}) AS forward_end_date,
        CASE WHEN count(r) FILTER (WHERE k >= 1) = {FORWARD_SESSIONS}
             THEN sqrt({ANNUALISATION}) * stddev_samp(r) FILTER (WHERE k >= 1)
        END                                                AS hv_forward_21
    FROM returns
    GROUP BY symbol, as_of_date
)
SELECT
    iv.symbol,
    iv.as_of_date,
    coalesce(iv.cm_iv30, iv.tt_iv30)                       AS iv30,
    CASE WHEN iv.cm_iv30 IS NOT NULL THEN 'constant_maturity'
         WHEN iv.tt_iv30 IS NOT NULL THEN 'tastytrade_iv30' END AS iv30_source,
    r.hv_forward_21,
    coalesce(iv.cm_iv30, iv.tt_iv30) - r.hv_forward_21     AS vrp,
    coalesce(r.forward_sessions, 0)                        AS forward_sessions,
    r.forward_end_date
FROM iv
LEFT JOIN realised AS r USING (symbol, as_of_date)
"""


def refresh_vrp(con: duckdb.DuckDBPyConnection, start: date, end: date, close_end: date) -> tuple[int, int]:
    con.execute("DELETE FROM vrp WHERE as_of_date BETWEEN ? AND ?", [start, end])
    con.execute(_VRP_SQL, {"start": start, "end": end, "close_end": close_end})
    rows, complete = con.execute(
        "SELECT count(*), count(vrp) FROM vrp WHERE as_of_date BETWEEN ? AND ?", [start, end]
    ).fetchone()
    return int(rows), int(complete)
