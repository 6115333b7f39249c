-- Version 7: one rule for the IV of an expiration, the chain type in the term structure's grain,
-- and one rule for "an expiration straddles an earnings report".

-- 1. iv_term_structure's primary key gains option_chain_type. A Non-standard chain (adjusted
--    deliverables after a corporate action) listed on the date and settlement of the Standard one
--    is another row; under the old key the two collided and validation quarantined both. A missing
--    chain type is Standard (the API item without the field). DuckDB cannot change a primary key in
--    place, so the table is rebuilt with every row it held. (No view depends on it by name; the
--    views are recreated after every migration.)
CREATE TABLE iv_term_structure_v6 (
    as_of_date          DATE    NOT NULL,
    symbol              VARCHAR NOT NULL,
    expiration_date     DATE    NOT NULL,
    settlement_type     VARCHAR NOT NULL,
    option_chain_type   VARCHAR NOT NULL,  -- 'Standard' | 'Non-standard'
    implied_volatility  DOUBLE,
    fetched_at          TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (as_of_date, symbol, expiration_date, settlement_type, option_chain_type)
);
INSERT INTO iv_term_structure_v6
SELECT as_of_date, symbol, expiration_date, settlement_type, coalesce(option_chain_type, 'Standard'),
       implied_volatility, fetched_at
FROM iv_term_structure;
DROP TABLE iv_term_structure;
ALTER TABLE iv_term_structure_v6 RENAME TO iv_term_structure;

-- 2. Grain: symbol, as_of_date, expiration_date. The IV of each expiration date of an evening's term
--    structure, as variance_pipeline.transforms.term_structure chooses it (the date's node: Standard
--    chain only, the PM row, else the AM row; T from the session close to the settlement in New
--    York). It was a view that chose in SQL (PM, else the mean of the settlements) while the
--    position Greeks chose in Python; now the load writes it from the one implementation for the
--    sessions it loads, and expected_move, next_earnings and earnings_moves read it.
DROP VIEW IF EXISTS iv_term_structure_by_expiration;
CREATE TABLE IF NOT EXISTS iv_term_structure_by_expiration (
    symbol              VARCHAR NOT NULL,
    as_of_date          DATE    NOT NULL,
    expiration_date     DATE    NOT NULL,
    settlement_type     VARCHAR NOT NULL,  -- the settlement whose IV this is: 'PM', else 'AM'
    settlement_types    VARCHAR NOT NULL,  -- the Standard settlements listed that date, e.g. 'AM,PM'
    days_to_expiration  INTEGER NOT NULL,  -- calendar days from as_of_date (for reading)
    years_to_expiration DOUBLE  NOT NULL,  -- T: session close to settlement, years of 365 days
    implied_volatility  DOUBLE  NOT NULL,  -- fraction
    PRIMARY KEY (symbol, as_of_date, expiration_date)
);

-- 3. An expiration straddles an earnings report dated report_date, seen from the snapshot of
--    as_of_date, when as_of_date <= report_date <= expiration_date. The APIs give a date and no
--    time of day, so each bound counts the report in when its time could put it inside: a report
--    dated on the expiration day may come before the open and move that expiration's settlement;
--    one dated on the snapshot's own day may come after the close and still be ahead of that
--    evening. Every view and table that asks the question calls this macro.
CREATE OR REPLACE MACRO straddles_earnings(snapshot_day, report_day, expiration_day) AS
    snapshot_day <= report_day AND report_day <= expiration_day;

-- The expiration that straddles a report: the first one of the snapshot's term structure for which
-- straddles_earnings holds, as a struct (expiration_date, implied_volatility, days_to_expiration,
-- years_to_expiration) from iv_term_structure_by_expiration; NULL when none does. next_earnings
-- (the next report) and earnings_moves (a past one) price the straddle with it.
CREATE OR REPLACE MACRO straddling_expiration(of_symbol, snapshot_day, report_day) AS (
    SELECT arg_min(
        {'expiration_date': e.expiration_date, 'implied_volatility': e.implied_volatility,
         'days_to_expiration': e.days_to_expiration, 'years_to_expiration': e.years_to_expiration},
        e.expiration_date)
    FROM iv_term_structure_by_expiration AS e
    WHERE e.symbol = of_symbol AND e.as_of_date = snapshot_day
      AND straddles_earnings(snapshot_day, report_day, e.expiration_date)
);
