-- Version 4: position risk without streaming (model Greeks from the evening snapshot).
-- Rates, yields and volatilities are fractions; theta is per calendar day, vega per vol point.

-- Grain: as_of_date. Tastytrade's public risk-free rate (the Black-Scholes rate of its clients).
CREATE TABLE IF NOT EXISTS risk_free_rate (
    as_of_date      DATE        NOT NULL PRIMARY KEY,
    risk_free_rate  DOUBLE      NOT NULL,
    fetched_at      TIMESTAMPTZ NOT NULL
);

-- Grain: as_of_date, account_number, symbol (one row per position of the snapshot).
-- Options: Black-Scholes-Merton with a continuous dividend yield (equity, ETF, cash-settled index
-- options) or Black-76 (future options), European (early exercise ignored), T in years from the
-- session close to expires_at on a 365-day year. Stock and futures: delta 1 per unit.
-- position_* = per-unit Greek * signed quantity * multiplier (position_delta in underlying units);
-- beta_weighted_delta = position_delta * beta * underlying_price / SPY close (SPY-equivalent shares).
CREATE TABLE IF NOT EXISTS position_greeks (
    as_of_date              DATE    NOT NULL,
    account_number          VARCHAR NOT NULL,
    symbol                  VARCHAR NOT NULL,
    instrument_type         VARCHAR NOT NULL,
    underlying_symbol       VARCHAR,
    root_symbol             VARCHAR NOT NULL,
    option_type             VARCHAR,          -- 'C' | 'P' | NULL (stock, future)
    strike                  DOUBLE,
    expiration_date         DATE,
    days_to_expiration      DOUBLE,
    years_to_expiration     DOUBLE,           -- the exact T the model used
    quantity                DOUBLE  NOT NULL, -- signed: short < 0
    multiplier              DOUBLE  NOT NULL,
    underlying_price        DOUBLE  NOT NULL,
    underlying_price_source VARCHAR NOT NULL, -- 'close' | 'root_continuous' (future's own close unknown)
    implied_volatility      DOUBLE,
    iv_source               VARCHAR,          -- 'exact' | 'interpolated' | 'extrapolated'
    risk_free_rate          DOUBLE,
    dividend_yield          DOUBLE,
    model                   VARCHAR,          -- 'black_scholes_merton' | 'black_76' | NULL
    price                   DOUBLE  NOT NULL, -- model value per unit
    delta                   DOUBLE  NOT NULL,
    gamma                   DOUBLE  NOT NULL,
    theta                   DOUBLE  NOT NULL, -- per calendar day
    vega                    DOUBLE  NOT NULL, -- per vol point (0.01)
    position_delta          DOUBLE  NOT NULL,
    position_gamma          DOUBLE  NOT NULL,
    position_theta          DOUBLE  NOT NULL,
    position_vega           DOUBLE  NOT NULL,
    beta                    DOUBLE,
    beta_weighted_delta     DOUBLE,           -- NULL when beta or the SPY close is unknown
    PRIMARY KEY (as_of_date, account_number, symbol)
);
