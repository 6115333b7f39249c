"""Volatility history nobody else keeps: constant-maturity IV, the variance risk premium, earnings
moves and our own IV rank, as set-based DuckDB SQL with an O(day) incremental refresh.

``refresh_vol_history(con, sessions)`` is called after a load with the sessions it just loaded. It
recomputes only what those sessions can change:

* ``iv_constant_maturity`` for ``as_of_date`` in ``sessions`` (an evening's term structure only
  affects that evening);
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
"""

from __future__ import annotations

from datetime import date, timedelta
from importlib import resources
from typing import Sequence

import duckdb
import pandas as pd

from variance_pipeline.calendar import exchange_calendar, previous_session, sessions_back, sessions_in_range

PACKAGE = "variance_pipeline.warehouse"
MIGRATION = "002_vol_history.sql"
VIEWS_FILE = "vol_history.sql"
VIEW_NAMES = ("iv_term_structure_by_expiration", "vrp_summary", "next_earnings", "iv_rank_own")
TABLE_NAMES = (
    "xnys_sessions",
    "iv_constant_maturity",
    "vrp",
    "earnings_reports",
    "earnings_moves",
    "vol_history_settings",
)

FORWARD_SESSIONS = 21          # the VRP's realised window: the 21 sessions after as_of_date
ANNUALISATION = 252
RANK_SESSIONS = 252            # own IV rank looks back over the last 252 sessions
TARGET_DAYS = (30, 60, 90)     # constant maturities, calendar days
EARNINGS_WINDOW_DAYS = 10      # reports this close to a refreshed session are recomputed
SNAPSHOT_MAX_AGE_DAYS = 10     # the implied move's snapshot is at most this many days before the report
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


def _sessions_after(day: date, count: int) -> list[date]:
    """The ``count`` XNYS sessions after ``day`` (fewer at the calendar's horizon)."""
    span = count * 7 // 5 + 15  # calendar days that surely hold ``count`` sessions
    return sessions_in_range(day + timedelta(days=1), day + timedelta(days=span))[:count]


def _write_sessions(con: duckdb.DuckDBPyConnection, start: date, end: date) -> int:
    """Upsert the XNYS sessions in [start, end] with their global ordinal into ``xnys_sessions``."""
    days = sessions_in_range(start, end)
    if not days:
        return 0
    ordinals = exchange_calendar().sessions.get_indexer(pd.DatetimeIndex(days))
    con.execute(
        "INSERT OR REPLACE INTO xnys_sessions "
        "SELECT unnest(CAST($days AS DATE[])), unnest(CAST($ordinals AS INTEGER[]))",
        {"days": days, "ordinals": [int(o) for o in ordinals]},
    )
    return len(days)


def _sessions_before(day: date, count: int) -> date:
    """The ``count``-th session counting back from ``day`` (itself first when a session), clamped
    to the calendar's first session."""
    try:
        return sessions_back(day, count)[0]
    except ValueError:  # exchange_calendars: the window reaches before the calendar's start
        return _calendar_bounds()[0]


def _calendar_bounds() -> tuple[date, date]:
    cal = exchange_calendar()
    return cal.first_session.date(), cal.last_session.date()


# --- steps ------------------------------------------------------------------------------------

_CONSTANT_MATURITY_SQL = f"""
INSERT INTO iv_constant_maturity
WITH ts AS (
    SELECT symbol, as_of_date, expiration_date, days_to_expiration AS days, implied_volatility AS iv
    FROM iv_term_structure_by_expiration
    WHERE as_of_date BETWEEN $first AND $last  -- constant bounds: zone maps skip the rest
      AND as_of_date IN (SELECT as_of_date FROM _vh_days)
),
targets AS (
    SELECT unnest({list(TARGET_DAYS)}) AS target_days
),
bracket AS (
    -- The expirations on each side of the target (the same one twice on an exact hit).
    SELECT
        ts.symbol,
        ts.as_of_date,
        t.target_days,
        max(ts.days)            FILTER (WHERE ts.days <= t.target_days) AS d1,
        arg_max(ts.iv, ts.days) FILTER (WHERE ts.days <= t.target_days) AS iv1,
        min(ts.days)            FILTER (WHERE ts.days >= t.target_days) AS d2,
        arg_min(ts.iv, ts.days) FILTER (WHERE ts.days >= t.target_days) AS iv2
    FROM ts CROSS JOIN targets AS t
    GROUP BY ts.symbol, ts.as_of_date, t.target_days
),
interpolated AS (
    -- Linear in total variance w = iv^2 * T, T in years of 365 days; never extrapolated.
    SELECT
        symbol,
        as_of_date,
        target_days,
        CASE
            WHEN d1 IS NULL OR d2 IS NULL THEN NULL
            WHEN d1 = d2 THEN iv1
            ELSE sqrt(
                (iv1 * iv1 * d1 / 365.0
                 + (iv2 * iv2 * d2 / 365.0 - iv1 * iv1 * d1 / 365.0) * (target_days - d1) / (d2 - d1))
                / (target_days / 365.0))
        END AS iv
    FROM bracket
),
by_target AS (
    SELECT
        symbol,
        as_of_date,
        max(iv) FILTER (WHERE target_days = 30) AS iv30,
        max(iv) FILTER (WHERE target_days = 60) AS iv60,
        max(iv) FILTER (WHERE target_days = 90) AS iv90
    FROM interpolated
    GROUP BY symbol, as_of_date
),
front AS (
    SELECT
        symbol,
        as_of_date,
        arg_min(iv, days)       AS front_iv,
        min(expiration_date)    AS front_expiration,
        min(days)               AS front_days,
        count(*)                AS expirations_used
    FROM ts
    GROUP BY symbol, as_of_date
),
metrics AS (
    SELECT symbol, as_of_date, iv_30_day
    FROM market_metrics
    WHERE as_of_date BETWEEN $first AND $last  -- constant bounds: zone maps skip the rest
      AND as_of_date IN (SELECT as_of_date FROM _vh_days)
),
curve AS (
    SELECT p.*, f.front_iv, f.front_expiration, f.front_days, f.expirations_used
    FROM by_target AS p JOIN front AS f USING (symbol, as_of_date)
)
SELECT
    coalesce(c.symbol, m.symbol)            AS symbol,
    coalesce(c.as_of_date, m.as_of_date)    AS as_of_date,
    c.iv30,
    c.iv60,
    c.iv90,
    c.iv90 - c.iv30                         AS term_slope,
    c.front_iv,
    c.front_expiration,
    c.front_days,
    c.front_iv / nullif(c.iv30, 0)          AS front_to_30_ratio,
    coalesce(c.expirations_used, 0)         AS expirations_used,
    m.iv_30_day                             AS tastytrade_iv30
FROM curve AS c
FULL OUTER JOIN metrics AS m ON m.symbol = c.symbol AND m.as_of_date = c.as_of_date
"""

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
    -- The snapshot's first expiration after the report date.
    SELECT
        s.symbol,
        s.occurred_date,
        min(e.expiration_date)                             AS expiration_date,
        arg_min(e.implied_volatility, e.expiration_date)   AS iv,
        arg_min(e.days_to_expiration, e.expiration_date)   AS days
    FROM snapshot AS s
    JOIN (SELECT * FROM iv_term_structure_by_expiration WHERE as_of_date BETWEEN $snap_lo AND $snap_hi) AS e
      ON e.symbol = s.symbol AND e.as_of_date = s.snapshot_date AND e.expiration_date > s.occurred_date
    GROUP BY s.symbol, s.occurred_date
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
        CASE WHEN i.iv IS NOT NULL THEN i.iv * sqrt(i.days / 365.0) END AS implied_move,
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


def _refresh_constant_maturity(con: duckdb.DuckDBPyConnection, days: list[date]) -> int:
    con.execute("CREATE OR REPLACE TEMP TABLE _vh_days AS SELECT unnest(CAST(? AS DATE[])) AS as_of_date", [days])
    bounds = {"first": days[0], "last": days[-1]}
    where = "as_of_date BETWEEN $first AND $last AND as_of_date IN (SELECT as_of_date FROM _vh_days)"
    con.execute(f"DELETE FROM iv_constant_maturity WHERE {where}", bounds)
    con.execute(_CONSTANT_MATURITY_SQL, bounds)
    count = con.execute(f"SELECT count(*) FROM iv_constant_maturity WHERE {where}", bounds).fetchone()[0]
    con.execute("DROP TABLE _vh_days")
    return int(count)


def _refresh_vrp(con: duckdb.DuckDBPyConnection, start: date, end: date, close_end: date) -> tuple[int, int]:
    con.execute("DELETE FROM vrp WHERE as_of_date BETWEEN ? AND ?", [start, end])
    con.execute(_VRP_SQL, {"start": start, "end": end, "close_end": close_end})
    rows, complete = con.execute(
        "SELECT count(*), count(vrp) FROM vrp WHERE as_of_date BETWEEN ? AND ?", [start, end]
    ).fetchone()
    return int(rows), int(complete)


def _refresh_earnings_moves(con: duckdb.DuckDBPyConnection, first: date, last: date) -> int:
    cal_lo, cal_hi = _calendar_bounds()
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
        following = _sessions_after(report_date, 1)
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
            vrp_start = _sessions_before(first, FORWARD_SESSIONS + 1)
            rank_start = _sessions_before(first, RANK_SESSIONS)
            ahead = _sessions_after(last, FORWARD_SESSIONS)
            horizon = ahead[-1] if ahead else last
            report["xnys_sessions"] = _write_sessions(con, min(rank_start, vrp_start), horizon)
            report["iv_constant_maturity"] = _refresh_constant_maturity(con, days)
            report["vrp"], report["vrp_complete"] = _refresh_vrp(con, vrp_start, last, horizon)
            report["earnings_moves"] = _refresh_earnings_moves(con, first, last)
        con.execute("INSERT OR REPLACE INTO vol_history_settings VALUES (1, ?)", [int(min_rank_sessions)])
        create_vol_history_views(con)
        if own:
            con.execute("COMMIT")
    except Exception:
        if own:
            con.execute("ROLLBACK")
        raise
    return report
