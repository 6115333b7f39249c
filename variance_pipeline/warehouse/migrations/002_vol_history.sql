-- Version 2: volatility history nobody else keeps (constant-maturity IV, the variance risk
-- premium, earnings moves), computed in SQL by variance_pipeline.warehouse.vol_history.
-- Volatilities and moves are fractions (0.2345 = 23.45 %, a move of 0.05 = 5 % in log terms);
-- days are calendar days unless a name says sessions; instants are UTC.
-- Every statement is idempotent (IF NOT EXISTS), so apply_vol_history_schema can run it on any
-- warehouse that has version 1, before or after warehouse.load.migrate records version 2.

-- XNYS sessions with a global ordinal (0 = the calendar's first session, 2009-01-02), written by
-- refresh_vol_history from exchange_calendars for the ranges it needs, so SQL can step "n
-- sessions back" without knowing weekends or holidays. Grain: session_date.
CREATE TABLE IF NOT EXISTS xnys_sessions (
    session_date        DATE    NOT NULL PRIMARY KEY,
    session_ordinal     INTEGER NOT NULL
);

-- Grain: symbol, as_of_date (one row per evening term-structure or metrics snapshot).
-- (Since version 7 the rows are computed by transforms/term_structure.py, the one IV rule: Standard
-- chains, PM else AM, T from the session close to the settlement, see 006; the text below is the
-- rule of versions 2-5.)
-- iv30/iv60/iv90: implied volatility at a constant 30/60/90 calendar days from as_of_date,
-- linear in total variance w = iv^2 * T (T = days / 365) between the two expirations that
-- bracket the target; NULL when no expiration on each side (never extrapolated). An expiration
-- listed with several settlement types uses the PM one (SPX AM monthlies sit beside PM weeklies),
-- else the mean of the types. Expirations on or before as_of_date are ignored (expired that day).
CREATE TABLE IF NOT EXISTS iv_constant_maturity (
    symbol              VARCHAR NOT NULL,
    as_of_date          DATE    NOT NULL,
    iv30                DOUBLE,          -- fraction
    iv60                DOUBLE,          -- fraction
    iv90                DOUBLE,          -- fraction
    term_slope          DOUBLE,          -- iv90 - iv30 (fraction; > 0 = contango)
    front_iv            DOUBLE,          -- IV of the nearest expiration after as_of_date
    front_expiration    DATE,
    front_days          INTEGER,         -- calendar days from as_of_date to front_expiration
    front_to_30_ratio   DOUBLE,          -- front_iv / iv30 (> 1: front month bid, e.g. earnings)
    expirations_used    INTEGER NOT NULL, -- distinct expirations with an IV after as_of_date
    tastytrade_iv30     DOUBLE,          -- market_metrics.iv_30_day, for comparison (fraction)
    PRIMARY KEY (symbol, as_of_date)
);

-- Grain: symbol, as_of_date. The variance risk premium as realised afterwards: the IV priced
-- on as_of_date minus the volatility the next 21 sessions delivered.
-- hv_forward_21 = sqrt(252) * sample stdev of the 21 log returns ln(C_t / C_{t-1}) for the 21
-- XNYS sessions t after as_of_date (needs the close of as_of_date and of all 21 sessions; any
-- missing -> NULL, and NULL until those sessions have happened: the row fills in later).
CREATE TABLE IF NOT EXISTS vrp (
    symbol              VARCHAR NOT NULL,
    as_of_date          DATE    NOT NULL,
    iv30                DOUBLE,          -- fraction
    iv30_source         VARCHAR,         -- 'constant_maturity' | 'tastytrade_iv30' | NULL
    hv_forward_21       DOUBLE,          -- fraction, annualised
    vrp                 DOUBLE,          -- iv30 - hv_forward_21 (fraction; > 0: sellers won)
    forward_sessions    INTEGER NOT NULL, -- forward returns available so far (0..21)
    forward_end_date    DATE,            -- the 21st XNYS session after as_of_date
    PRIMARY KEY (symbol, as_of_date)
);

-- Grain: symbol, occurred_date. Past earnings reports as Tastytrade's historic earnings endpoint
-- lists them (GET /market-metrics/historic-corporate-events/earnings-reports/{symbol}); the API
-- gives no time of day, so moves below span the sessions on both sides of the date.
CREATE TABLE IF NOT EXISTS earnings_reports (
    symbol              VARCHAR     NOT NULL,
    occurred_date       DATE        NOT NULL,
    eps                 DOUBLE,          -- as reported (currency units per share)
    fetched_at          TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (symbol, occurred_date)
);

-- Grain: symbol, occurred_date (one row per earnings_reports row).
-- move = ln(C[after] / C[before]) with C[before] the close of the last XNYS session before the
-- report date and C[after] the close of the first XNYS session after it (covers before-open and
-- after-close reports; a report on a weekend or holiday uses the sessions around it).
-- (Since version 7: implied_iv * sqrt(T) of the first expiration that straddles the report, see
-- 006 and warehouse/earnings_moves.py; the text below is the rule of versions 2-5.)
-- implied_move = implied_iv * sqrt(implied_days / 365): the straddle-implied move from the last
-- snapshot before the report (at most 10 calendar days before it), using the IV of the first
-- term-structure expiration after the report date (PM rule as above) and the days from the
-- snapshot to that expiration; without a term structure, the snapshot's iv30 and the days to
-- session_after. NULL when there is no such snapshot.
CREATE TABLE IF NOT EXISTS earnings_moves (
    symbol              VARCHAR NOT NULL,
    occurred_date       DATE    NOT NULL,
    session_before      DATE    NOT NULL,
    session_after       DATE    NOT NULL,
    close_before        DOUBLE,
    close_after         DOUBLE,
    move                DOUBLE,          -- log return, fraction
    abs_move            DOUBLE,          -- |move|
    implied_move        DOUBLE,          -- fraction of the price
    exceeded_implied    BOOLEAN,         -- abs_move > implied_move (NULL when either is)
    snapshot_date       DATE,            -- the snapshot implied_move comes from
    implied_iv          DOUBLE,          -- fraction
    implied_days        INTEGER,         -- calendar days from snapshot_date
    implied_expiration  DATE,            -- NULL when implied_source = 'iv30'
    implied_source      VARCHAR,         -- 'term_structure' | 'iv30' | NULL
    PRIMARY KEY (symbol, occurred_date)
);

-- One row: settings the vol_history views read; refresh_vol_history(min_rank_sessions=...)
-- upserts it. min_rank_sessions: snapshot sessions of own history needed before iv_rank_own.
CREATE TABLE IF NOT EXISTS vol_history_settings (
    id                  INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    min_rank_sessions   INTEGER NOT NULL CHECK (min_rank_sessions >= 1)
);
