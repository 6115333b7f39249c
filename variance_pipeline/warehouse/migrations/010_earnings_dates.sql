-- Version 10: earnings reports dated by what the pipeline saw, with their time of day.
--
-- Tastytrade's historic earnings endpoint labels each report by its fiscal quarter's calendar end
-- (AAPL 2022-06-30 for the report of 2022-07-28; 2022-12-31, a Saturday, for 2023-02-02), so
-- earnings_reports.occurred_date is the quarter and EPS label only. Each evening's metrics
-- snapshot announces the next report's date, whether it is an estimate, its quarter and its time
-- of day (BMO / AMC); the earnings_calendar table (declared in schemas/earnings.py, created from
-- the declaration) keeps those announcements, and a report is dated by the last one before it.

-- 1. earnings_moves: the report's own day and time, where the date came from, and why a move is
--    NULL. A report announced before this project's history began has no date: its sessions and
--    move stay NULL with the reason, never a quarter-end move.
ALTER TABLE earnings_moves ADD COLUMN IF NOT EXISTS report_date DATE;         -- the day of the report
ALTER TABLE earnings_moves ADD COLUMN IF NOT EXISTS report_time_of_day VARCHAR; -- 'BMO' | 'AMC' | NULL (unknown)
ALTER TABLE earnings_moves ADD COLUMN IF NOT EXISTS announced_on DATE;        -- the snapshot that dated it
ALTER TABLE earnings_moves ADD COLUMN IF NOT EXISTS move_note VARCHAR;        -- why move is NULL, or how it spans
ALTER TABLE earnings_moves ALTER COLUMN session_before DROP NOT NULL;
ALTER TABLE earnings_moves ALTER COLUMN session_after DROP NOT NULL;

-- Every stored move was measured around a quarter end: recompute them all. The next refresh
-- computes every report without a row (warehouse/earnings_moves.py).
DELETE FROM earnings_moves;

-- 2. The one rule for "an expiration straddles an earnings report", now with the report's time of
--    day, seen from the evening snapshot of snapshot_day (also: a trade opened on snapshot_day
--    and held to expiration_day). A report before the open (BMO) on the snapshot's own day is
--    already in that evening's prices, so it must come after the snapshot; one after the close
--    (AMC) on the expiration day comes after that expiration settled, so the expiration must come
--    after it. With no time of day, each bound counts the report in (the rule of version 7).
CREATE OR REPLACE MACRO straddles_earnings(snapshot_day, report_day, report_time, expiration_day) AS
    CASE WHEN report_time = 'BMO' THEN snapshot_day < report_day ELSE snapshot_day <= report_day END
    AND CASE WHEN report_time = 'AMC' THEN report_day < expiration_day ELSE report_day <= expiration_day END;

CREATE OR REPLACE MACRO straddling_expiration(of_symbol, snapshot_day, report_day, report_time) AS (
    SELECT arg_min(
        {'expiration_date': e.expiration_date, 'implied_volatility': e.implied_volatility,
         'days_to_expiration': e.days_to_expiration, 'years_to_expiration': e.years_to_expiration},
        e.expiration_date)
    FROM iv_term_structure_by_expiration AS e
    WHERE e.symbol = of_symbol AND e.as_of_date = snapshot_day
      AND straddles_earnings(snapshot_day, report_day, report_time, e.expiration_date)
);
