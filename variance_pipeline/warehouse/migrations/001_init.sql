-- Version 1: the contract's tables, one primary key per grain.
-- Volatilities, ranks and percentiles are fractions (0.2345 = 23.45 %); instants are UTC.

CREATE TABLE IF NOT EXISTS positions (
    as_of_date          DATE        NOT NULL,
    account_number      VARCHAR     NOT NULL,
    symbol              VARCHAR     NOT NULL,
    instrument_type     VARCHAR     NOT NULL,
    underlying_symbol   VARCHAR,
    root_symbol         VARCHAR,
    quantity            DOUBLE      NOT NULL,  -- signed: short < 0
    quantity_direction  VARCHAR     NOT NULL,
    average_open_price  DOUBLE,
    close_price         DOUBLE,
    mark                DOUBLE,
    multiplier          INTEGER,
    cost_effect         VARCHAR,
    expires_at          TIMESTAMPTZ,
    streamer_symbol     VARCHAR,
    created_at          TIMESTAMPTZ,
    updated_at          TIMESTAMPTZ,
    fetched_at          TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (as_of_date, account_number, symbol)
);

CREATE TABLE IF NOT EXISTS market_metrics (
    as_of_date                      DATE    NOT NULL,
    symbol                          VARCHAR NOT NULL,
    implied_volatility              DOUBLE,
    implied_volatility_5_day_change DOUBLE,
    iv_rank                         DOUBLE,
    tos_iv_rank                     DOUBLE,
    tw_iv_rank                      DOUBLE,
    iv_percentile                   DOUBLE,
    iv_30_day                       DOUBLE,
    hv_30_day                       DOUBLE,
    hv_60_day                       DOUBLE,
    hv_90_day                       DOUBLE,
    iv_hv_30_day_difference         DOUBLE,
    liquidity_value                 DOUBLE,
    liquidity_rank                  DOUBLE,
    liquidity_rating                INTEGER,
    beta                            DOUBLE,
    corr_spy_3month                 DOUBLE,
    earnings_date                   DATE,
    earnings_estimated              BOOLEAN,
    market_cap                      DOUBLE,
    dividend_yield                  DOUBLE,
    borrow_rate                     DOUBLE,
    lendability                     VARCHAR,
    implied_volatility_updated_at   TIMESTAMPTZ,
    fetched_at                      TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (as_of_date, symbol)
);

CREATE TABLE IF NOT EXISTS iv_term_structure (
    as_of_date          DATE    NOT NULL,
    symbol              VARCHAR NOT NULL,
    expiration_date     DATE    NOT NULL,
    settlement_type     VARCHAR NOT NULL,
    option_chain_type   VARCHAR,
    implied_volatility  DOUBLE,
    fetched_at          TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (as_of_date, symbol, expiration_date, settlement_type)
);

CREATE TABLE IF NOT EXISTS candles (
    symbol          VARCHAR NOT NULL,
    session_date    DATE    NOT NULL,
    yahoo_ticker    VARCHAR NOT NULL,
    open            DOUBLE  NOT NULL,
    high            DOUBLE  NOT NULL,
    low             DOUBLE  NOT NULL,
    close           DOUBLE  NOT NULL,  -- split-adjusted (Yahoo's close)
    adj_close       DOUBLE,            -- split- and dividend-adjusted
    volume          BIGINT,
    PRIMARY KEY (symbol, session_date)
);

CREATE TABLE IF NOT EXISTS realized_volatility (
    symbol              VARCHAR NOT NULL,
    session_date        DATE    NOT NULL,
    close               DOUBLE,
    hv20                DOUBLE,  -- NULL until 20 returns exist
    hv30                DOUBLE,
    hv90                DOUBLE,
    hv252               DOUBLE,  -- NULL until 252 returns exist
    parkinson20         DOUBLE,
    garman_klass20      DOUBLE,
    rogers_satchell20   DOUBLE,
    yang_zhang20        DOUBLE,
    returns_available   INTEGER,
    PRIMARY KEY (symbol, session_date)
);

-- One row per dataset and session loaded: what a load did, for audits and freshness checks.
CREATE TABLE IF NOT EXISTS load_log (
    dataset         VARCHAR     NOT NULL,
    session_date    DATE        NOT NULL,
    rows_loaded     BIGINT      NOT NULL,
    run_id          VARCHAR,
    loaded_at       TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (dataset, session_date)
);
