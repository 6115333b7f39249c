"""``earnings_moves``: each past report's move across it, and what the options had priced.

A report is dated by what the pipeline saw itself: Tastytrade's historic endpoint labels it by its
fiscal quarter's calendar end (``earnings_reports.occurred_date``, the quarter and EPS label only),
so its day and time of day are those the last metrics snapshot before it announced
(``earnings_calendar``: the latest announcement of that quarter, ``quarter-end-date``'s month =
``occurred_date``'s month, taken on or before the date it announced). Without such an
announcement (a report before this project's history began) there is no date: the row keeps the
report with NULL sessions and move and says why in ``move_note``; so does a report whose last
announcement was still the broker's estimate.

``move`` is the one session the report falls in (``session_bounds``): before the open (BMO), the
close of the session before to the close of the day; after the close (AMC), the close of the day
to the close of the next session; time unknown (or a report on a non-session day), the sessions on
both sides. ``implied_move = iv * sqrt(T)`` from the last snapshot at or before the move's first
close (at most ``SNAPSHOT_MAX_AGE_DAYS`` before the report): the IV and T of that snapshot's first
expiration that straddles the report (``straddling_expiration``, migration 010, the one rule with
the time of day; the IV by the one rule of ``transforms/term_structure.py``, read from
``iv_term_structure_by_expiration``), else Tastytrade's iv30 over the days to the session after.

A refresh recomputes the reports dated within ``EARNINGS_WINDOW_DAYS`` of the refreshed sessions
(their closes, or the snapshot before them, may have changed), every report without a row yet,
every report whose date, time or announcing snapshot changed (a later announcement), and drops
rows whose report is gone.
"""

from __future__ import annotations

from datetime import date, timedelta

import duckdb

from variance_pipeline.calendar import is_session, previous_session
from variance_pipeline.warehouse.xnys_sessions import calendar_bounds, sessions_after

EARNINGS_WINDOW_DAYS = 10      # reports this close to a refreshed session are recomputed
SNAPSHOT_MAX_AGE_DAYS = 10     # the implied move's snapshot is at most this many days before the report
QUARTER_REPORT_DAYS = 92       # without a quarter-end-date, an announcement this close after a quarter end is its report

# The report each historic item is: the last announcement of its quarter made on or before the
# date it announced (an announcement made after it is of a later report or a late correction).
_DATED_SQL = f"""
CREATE OR REPLACE TEMP TABLE _em_dated AS
WITH announced AS (
    SELECT r.symbol, r.occurred_date, c.as_of_date AS announced_on, c.expected_report_date AS report_date,
           c.estimated, c.time_of_day
    FROM earnings_reports AS r
    JOIN earnings_calendar AS c
      ON c.symbol = r.symbol
     AND c.as_of_date <= c.expected_report_date
     AND CASE WHEN c.quarter_end_date IS NOT NULL
              THEN date_trunc('month', c.quarter_end_date) = date_trunc('month', r.occurred_date)
              ELSE c.expected_report_date > r.occurred_date
               AND c.expected_report_date <= r.occurred_date + {QUARTER_REPORT_DAYS} END
    QUALIFY row_number() OVER (PARTITION BY r.symbol, r.occurred_date ORDER BY c.as_of_date DESC) = 1
)
SELECT r.symbol, r.occurred_date, a.report_date, a.time_of_day, a.announced_on, coalesce(a.estimated, false) AS estimated
FROM earnings_reports AS r
LEFT JOIN announced AS a USING (symbol, occurred_date)
"""

_EARNINGS_TARGETS_SQL = """
SELECT d.symbol, d.occurred_date, d.report_date, d.time_of_day, d.announced_on, d.estimated
FROM _em_dated AS d
LEFT JOIN earnings_moves AS m ON m.symbol = d.symbol AND m.occurred_date = d.occurred_date
WHERE m.symbol IS NULL
   OR d.report_date BETWEEN $lo AND $hi
   OR m.report_date IS DISTINCT FROM d.report_date
   OR m.report_time_of_day IS DISTINCT FROM d.time_of_day
   OR m.announced_on IS DISTINCT FROM d.announced_on
"""

UNKNOWN_DATE = ("report date unknown: no metrics snapshot announced this quarter's report (before this "
                "project's history began, or the symbol was not in the universe then); occurred_date is "
                "the quarter's end, not the report's day")
ESTIMATED_DATE = ("report date not confirmed: the last announcement before it (announced_on) was still the "
                  "broker's estimate, so report_date may not be the day the stock moved")
OUTSIDE_CALENDAR = "report date outside the session calendar"
UNKNOWN_TIME = "time of day unknown: the move spans the sessions on both sides of the report date"


def session_bounds(report_date: date, time_of_day: str | None) -> tuple[date, date] | None:
    """(session whose close starts the move, session whose close ends it) around one report.

    BMO: the session before and the report's day; AMC: the report's day and the session after;
    unknown time, or a report dated on a non-session day: the sessions on both sides. None when
    the calendar has no session after it.
    """
    following = sessions_after(report_date, 1)
    if not following:
        return None
    if is_session(report_date) and time_of_day == "BMO":
        return previous_session(report_date), report_date
    if is_session(report_date) and time_of_day == "AMC":
        return report_date, following[0]
    return previous_session(report_date), following[0]


_EARNINGS_SQL = f"""
INSERT INTO earnings_moves (
    symbol, occurred_date, session_before, session_after, close_before, close_after, move, abs_move,
    implied_move, exceeded_implied, snapshot_date, implied_iv, implied_days, implied_expiration,
    implied_source, report_date, report_time_of_day, announced_on, move_note)
WITH targets AS (
    SELECT * FROM _vh_reports WHERE session_before IS NOT NULL
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
    -- The last evening at or before the close the move starts from (BMO: the evening before the
    -- report; AMC: the report day's own evening, its options closed before the report).
    SELECT t.symbol, t.occurred_date, max(s.as_of_date) AS snapshot_date
    FROM targets AS t
    JOIN snapshot_days AS s
      ON s.symbol = t.symbol
     AND s.as_of_date <= t.session_before
     AND s.as_of_date >= t.report_date - {SNAPSHOT_MAX_AGE_DAYS}
    GROUP BY t.symbol, t.occurred_date
),
straddle AS (
    -- The snapshot's first expiration that straddles the report (straddling_expiration, migration
    -- 010: after an AMC report, on or after a BMO one), its IV and T by the one IV rule.
    SELECT
        symbol,
        occurred_date,
        s.expiration_date       AS expiration_date,
        s.implied_volatility    AS iv,
        s.days_to_expiration    AS days,
        s.years_to_expiration   AS years
    FROM (SELECT sn.symbol, sn.occurred_date,
                 straddling_expiration(sn.symbol, sn.snapshot_date, t.report_date, t.time_of_day) AS s
          FROM snapshot AS sn JOIN targets AS t USING (symbol, occurred_date))
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
        t.report_date,
        t.time_of_day,
        t.announced_on,
        t.note,
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
    snapshot_date, implied_iv, implied_days, implied_expiration, implied_source,
    report_date, time_of_day, announced_on,
    CASE WHEN move IS NULL THEN 'no candle close on session_before or session_after' ELSE note END
FROM priced
UNION ALL
SELECT symbol, occurred_date, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
       report_date, time_of_day, announced_on, note
FROM _vh_reports WHERE session_before IS NULL
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
    con.execute(_DATED_SQL)
    targets = con.execute(
        _EARNINGS_TARGETS_SQL,
        {"lo": first - timedelta(days=EARNINGS_WINDOW_DAYS), "hi": last + timedelta(days=EARNINGS_WINDOW_DAYS)},
    ).fetchall()
    con.execute("DROP TABLE _em_dated")
    if not targets:
        return 0
    rows = []
    for symbol, occurred, report, time_of_day, announced, estimated in targets:
        bounds, note = None, None
        if report is None:
            note = UNKNOWN_DATE
        elif estimated:
            note = ESTIMATED_DATE  # kept as announced; no sessions, no move
        elif not cal_lo <= report <= cal_hi or (bounds := session_bounds(report, time_of_day)) is None:
            note = OUTSIDE_CALENDAR
        elif time_of_day is None or not is_session(report):
            note = UNKNOWN_TIME if time_of_day is None else "report on a non-session day: the move spans the sessions on both sides"
        before, after = bounds if bounds else (None, None)
        rows.append((symbol, occurred, report, time_of_day, announced, before, after, note))
    columns = list(zip(*rows))
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _vh_reports AS SELECT"
        " unnest(CAST($symbols AS VARCHAR[])) AS symbol,"
        " unnest(CAST($occurred AS DATE[])) AS occurred_date,"
        " unnest(CAST($report AS DATE[])) AS report_date,"
        " unnest(CAST($time AS VARCHAR[])) AS time_of_day,"
        " unnest(CAST($announced AS DATE[])) AS announced_on,"
        " unnest(CAST($before AS DATE[])) AS session_before,"
        " unnest(CAST($after AS DATE[])) AS session_after,"
        " unnest(CAST($note AS VARCHAR[])) AS note",
        dict(zip(("symbols", "occurred", "report", "time", "announced", "before", "after", "note"), map(list, columns))),
    )
    con.execute(
        "DELETE FROM earnings_moves AS m USING _vh_reports AS t "
        "WHERE m.symbol = t.symbol AND m.occurred_date = t.occurred_date"
    )
    dated = [row for row in rows if row[5] is not None]
    reports = [row[2] for row in dated]
    con.execute(
        _EARNINGS_SQL,
        {
            "close_lo": min((row[5] for row in dated), default=first),
            "close_hi": max((row[6] for row in dated), default=last),
            "snap_lo": min(reports, default=first) - timedelta(days=SNAPSHOT_MAX_AGE_DAYS),
            "snap_hi": max(reports, default=last),
        },
    )
    con.execute("DROP TABLE _vh_reports")
    return len(rows)
