"""``earnings_moves``: each past report's move across it, and what the options had priced.

``move`` spans the XNYS sessions on both sides of the report date (the API gives no time of day).
``implied_move = iv * sqrt(T)`` from the last snapshot before the report: the IV and T of that
snapshot's first expiration that straddles the report (``straddling_expiration``, migration 007; the
IV by the one rule of ``transforms/term_structure.py``, read from
``iv_term_structure_by_expiration``), else Tastytrade's iv30 over the days to the session after.

A refresh recomputes the reports dated within ``EARNINGS_WINDOW_DAYS`` of the refreshed sessions
(their closes, or the snapshot before them, may have changed), every report without a row yet, and
drops rows whose report is gone (a corrected date).
"""

from __future__ import annotations

from datetime import date, timedelta

import duckdb

from variance_pipeline.calendar import previous_session
from variance_pipeline.warehouse.xnys_sessions import calendar_bounds, sessions_after

EARNINGS_WINDOW_DAYS = 10      # reports this close to a refreshed session are recomputed
SNAPSHOT_MAX_AGE_DAYS = 10     # the implied move's snapshot is at most this many days before the report

_EARNINGS_TARGETS_SQL = """
SELECT symbol, occurred_date
FROM earnings_reports
WHERE occurred_date BETWEEN $lo AND $hi
  AND occurred_date BETWEEN $cal_lo AND $cal_hi
UNION
SELECT r.symbol, r.occurred_date
FROM earnings_reports AS r
ANTI JOIN earnings_moves AS m ON m.symbol = r.symbol AND m.occurred_date = r.occurred_date
WHERE r.occurred_date BETWEEN $cal_lo AND $cal_hi
"""

_EARNINGS_SQL = f"""
INSERT INTO earnings_moves
WITH targets AS (
    SELECT * FROM _vh_reports
),
closes AS (
    SELECT symbol, session_date, close
    FROM candles
    WHERE session_date BETWEEN $close_lo AND $close_hi
      AND close > 0
),
snapshot_days AS (
    -- A snapshot is an evening with an IV: a term structure or Tastytrade's iv30.
    SELECT DISTINCT symbol, as_of_date FROM (
        SELECT symbol, as_of_date FROM iv_term_structure_by_expiration
        WHERE as_of_date BETWEEN $snap_lo AND $snap_hi
        UNION ALL
        SELECT symbol, as_of_date FROM market_metrics
        WHERE iv_30_day IS NOT NULL
          AND as_of_date BETWEEN $snap_lo AND $snap_hi
    )
),
snapshot AS (
    SELECT t.symbol, t.occurred_date, max(s.as_of_date) AS snapshot_date
    FROM targets AS t
    JOIN snapshot_days AS s
      ON s.symbol = t.symbol
     AND s.as_of_date < t.occurred_date
     AND s.as_of_date >= t.occurred_date - {SNAPSHOT_MAX_AGE_DAYS}
    GROUP BY t.symbol, t.occurred_date
),
straddle AS (
    -- The snapshot's first expiration that straddles the report (straddling_expiration, migration
    -- 006: on or after the report date), its IV and T by the one IV rule.
    SELECT
        symbol,
        occurred_date,
        s.expiration_date       AS expiration_date,
        s.implied_volatility    AS iv,
        s.days_to_expiration    AS days,
        s.years_to_expiration   AS years
    FROM (SELECT symbol, occurred_date, straddling_expiration(symbol, snapshot_date, occurred_date) AS s FROM snapshot)
),
implied AS (
    SELECT
        s.symbol,
        s.occurred_date,
        s.snapshot_date,
        CASE WHEN st.iv IS NOT NULL THEN 'term_structure'
             WHEN coalesce(cm.iv30, mm.iv_30_day) IS NOT NULL THEN 'iv30' END AS source,
        coalesce(st.iv, cm.iv30, mm.iv_30_day)                                AS iv,
        CASE WHEN st.iv IS NOT NULL THEN st.days
             ELSE CAST(t.session_after - s.snapshot_date AS INTEGER) END      AS days,
        -- T: the expiration's (session close to settlement); without one, calendar days to
        -- session_after over 365 (iv30 belongs to no expiration, so no settlement instant).
        CASE WHEN st.iv IS NOT NULL THEN st.years
             ELSE (t.session_after - s.snapshot_date) / 365.0 END           AS years,
        st.expiration_date
    FROM snapshot AS s
    JOIN targets AS t USING (symbol, occurred_date)
    LEFT JOIN straddle AS st USING (symbol, occurred_date)
    LEFT JOIN (SELECT symbol, as_of_date, iv30 FROM iv_constant_maturity
               WHERE as_of_date BETWEEN $snap_lo AND $snap_hi) AS cm
      ON cm.symbol = s.symbol AND cm.as_of_date = s.snapshot_date
    LEFT JOIN (SELECT symbol, as_of_date, iv_30_day FROM market_metrics
               WHERE as_of_date BETWEEN $snap_lo AND $snap_hi) AS mm
      ON mm.symbol = s.symbol AND mm.as_of_date = s.snapshot_date
),
moves AS (
    SELECT
        t.symbol,
        t.occurred_date,
        t.session_before,
        t.session_after,
        b.close                   AS close_before,
        a.close                   AS close_after,
        ln(a.close / b.close)     AS move
    FROM targets AS t
    LEFT JOIN closes AS b ON b.symbol = t.symbol AND b.session_date = t.session_before
    LEFT JOIN closes AS a ON a.symbol = t.symbol AND a.session_date = t.session_after
),
priced AS (
    SELECT
        m.*,
        abs(m.move)                                                  AS abs_move,
        CASE WHEN i.iv IS NOT NULL THEN i.iv * sqrt(i.years) END     AS implied_move,
        i.snapshot_date,
        CASE WHEN i.source IS NOT NULL THEN i.iv END                 AS implied_iv,
        CASE WHEN i.source IS NOT NULL THEN i.days END               AS implied_days,
        i.expiration_date                                            AS implied_expiration,
        i.source                                                     AS implied_source
    FROM moves AS m
    LEFT JOIN implied AS i USING (symbol, occurred_date)
)
SELECT
    symbol, occurred_date, session_before, session_after, close_before, close_after,
    move, abs_move, implied_move,
    abs_move > implied_move AS exceeded_implied,
    snapshot_date, implied_iv, implied_days, implied_expiration, implied_source
FROM priced
"""


def refresh_earnings_moves(con: duckdb.DuckDBPyConnection, first: date, last: date) -> int:
    cal_lo, cal_hi = calendar_bounds()
    # A report needs a session on both sides inside the calendar.
    cal_lo, cal_hi = cal_lo + timedelta(days=1), cal_hi - timedelta(days=1)
    # Rows whose report is gone (a corrected date) go too; both tables are tiny.
    con.execute(
        "DELETE FROM earnings_moves AS m WHERE NOT EXISTS ("
        " SELECT 1 FROM earnings_reports AS r WHERE r.symbol = m.symbol AND r.occurred_date = m.occurred_date)"
    )
    targets = con.execute(
        _EARNINGS_TARGETS_SQL,
        {
            "lo": first - timedelta(days=EARNINGS_WINDOW_DAYS),
            "hi": last + timedelta(days=EARNINGS_WINDOW_DAYS),
            "cal_lo": cal_lo,
            "cal_hi": cal_hi,
        },
    ).fetchall()
    if not targets:
        return 0
    rows = []
    for symbol, report_date in targets:
        # The sessions around the report: strictly before and strictly after its date.
        following = sessions_after(report_date, 1)
        if following:
            rows.append((symbol, report_date, previous_session(report_date), following[0]))
    if not rows:
        return 0
    symbols, occurred, before, after = (list(column) for column in zip(*rows))
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _vh_reports AS SELECT"
        " unnest(CAST($symbols AS VARCHAR[])) AS symbol,"
        " unnest(CAST($occurred AS DATE[])) AS occurred_date,"
        " unnest(CAST($before AS DATE[])) AS session_before,"
        " unnest(CAST($after AS DATE[])) AS session_after",
        {"symbols": symbols, "occurred": occurred, "before": before, "after": after},
    )
    con.execute(
        "DELETE FROM earnings_moves AS m USING _vh_reports AS t "
        "WHERE m.symbol = t.symbol AND m.occurred_date = t.occurred_date"
    )
    con.execute(
        _EARNINGS_SQL,
        {
            "close_lo": min(before), "close_hi": max(after),
            "snap_lo": min(occurred) - timedelta(days=SNAPSHOT_MAX_AGE_DAYS), "snap_hi": max(occurred),
        },
    )
    con.execute("DROP TABLE _vh_reports")
    return len(rows)
