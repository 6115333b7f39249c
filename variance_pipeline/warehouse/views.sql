-- Views are recreated on every load (CREATE OR REPLACE), so they always match the code.

-- One row per underlying: its latest realised-volatility session and its latest metrics snapshot.
CREATE OR REPLACE VIEW vol_dashboard AS
WITH rv_ranked AS (
    SELECT
        rv.*,
        row_number() OVER (PARTITION BY symbol ORDER BY session_date DESC) AS recency
    FROM realized_volatility AS rv
),
latest_rv AS (
    SELECT * FROM rv_ranked WHERE recency = 1
),
hv20_rank AS (
    -- Share of the last 252 sessions' HV20 values at or below today's: 1.0 = a one-year high.
    SELECT
        l.symbol,
        avg(CASE WHEN h.hv20 <= l.hv20 THEN 1.0 ELSE 0.0 END) AS hv20_percentile_252
    FROM latest_rv AS l
    JOIN rv_ranked AS h ON h.symbol = l.symbol AND h.recency <= 252 AND h.hv20 IS NOT NULL
    WHERE l.hv20 IS NOT NULL
    GROUP BY l.symbol
),
latest_metrics AS (
    SELECT *
    FROM market_metrics
    QUALIFY row_number() OVER (PARTITION BY symbol ORDER BY as_of_date DESC) = 1
),
tickers AS (
    SELECT symbol, arg_max(yahoo_ticker, session_date) AS yahoo_ticker
    FROM candles GROUP BY symbol
)
SELECT
    coalesce(r.symbol, m.symbol)                            AS symbol,
    t.yahoo_ticker,
    r.session_date,
    r.close                                                 AS price,
    m.as_of_date                                            AS metrics_as_of,
    m.implied_volatility,
    m.iv_rank,
    m.iv_percentile,
    r.hv20,
    r.hv30,
    r.hv90,
    r.hv252,
    m.implied_volatility - r.hv20                           AS iv_hv20_spread,
    m.implied_volatility / nullif(r.hv20, 0)                AS iv_hv20_ratio,
    hr.hv20_percentile_252,
    r.yang_zhang20,
    m.hv_30_day                                             AS tastytrade_hv30,
    r.hv30 - m.hv_30_day                                    AS hv30_diff,
    m.liquidity_rating,
    m.beta,
    m.earnings_date,
    ec.time_of_day                                          AS earnings_time_of_day,
    m.earnings_date - coalesce(m.as_of_date, r.session_date) AS days_to_earnings,
    ro.iv_rank_own,
    ro.iv_percentile_own,
    ro.sessions_of_history                                  AS iv_history_sessions,
    ro.iv_rank_own_reason
FROM latest_rv AS r
FULL OUTER JOIN latest_metrics AS m ON m.symbol = r.symbol
LEFT JOIN hv20_rank AS hr ON hr.symbol = coalesce(r.symbol, m.symbol)
LEFT JOIN iv_rank_own AS ro ON ro.symbol = coalesce(r.symbol, m.symbol)
LEFT JOIN tickers AS t ON t.symbol = coalesce(r.symbol, m.symbol)
-- BMO / AMC of the report the snapshot announced (earnings_calendar, from the same snapshot).
LEFT JOIN earnings_calendar AS ec
       ON ec.symbol = m.symbol AND ec.as_of_date = m.as_of_date AND ec.expected_report_date = m.earnings_date;

-- The latest positions snapshot joined with the underlying's volatility picture.
CREATE OR REPLACE VIEW portfolio AS
WITH latest AS (
    SELECT * FROM positions
    WHERE as_of_date = (SELECT max(as_of_date) FROM positions)
)
SELECT
    p.as_of_date,
    p.account_number,
    p.symbol,
    p.instrument_type,
    p.underlying_symbol,
    p.root_symbol,
    p.quantity,
    p.quantity_direction,
    p.multiplier,
    p.average_open_price,
    p.close_price,
    p.cost_effect,
    p.expires_at,
    -- The expiration date is New York's (a session's TimeZone must not move it).
    CAST(timezone('America/New_York', p.expires_at) AS DATE) - p.as_of_date AS days_to_expiration,
    v.price                                                 AS underlying_price,
    -- Exposure in the underlying's terms (no deltas: the API offers no Greeks).
    p.quantity * p.multiplier * v.price                     AS notional,
    v.implied_volatility,
    v.iv_rank,
    v.iv_percentile,
    v.hv20,
    v.hv252,
    v.iv_hv20_spread,
    v.earnings_date,
    v.earnings_time_of_day,
    v.days_to_earnings,
    -- The one rule (migration 010): the report is after the snapshot and before the expiration's
    -- settlement, by its time of day (an after-close report on the expiration day is not inside).
    coalesce(straddles_earnings(p.as_of_date, v.earnings_date, v.earnings_time_of_day,
                                CAST(timezone('America/New_York', p.expires_at) AS DATE)), false)
                                                            AS earnings_before_expiration
FROM latest AS p
LEFT JOIN vol_dashboard AS v ON v.symbol = p.root_symbol;

-- Risk per underlying and account, from the latest position_greeks snapshot, plus one 'ALL'
-- account row per underlying. Sums of the position Greeks (delta in underlying units, theta per
-- day, vega per vol point, beta-weighted delta in SPY shares); share_of_account_bwd is the
-- underlying's share of the account's gross beta-weighted delta (|bwd| / sum |bwd|), so long and
-- short exposures do not cancel into a misleading share.
CREATE OR REPLACE VIEW portfolio_risk AS
WITH latest AS (
    SELECT * FROM position_greeks
    WHERE as_of_date = (SELECT max(as_of_date) FROM position_greeks)
),
summed AS (
    SELECT as_of_date, account_number, root_symbol AS underlying_symbol, count(*) AS positions,
           sum(position_delta) AS position_delta, sum(position_gamma) AS position_gamma,
           sum(position_theta) AS position_theta, sum(position_vega) AS position_vega,
           sum(beta_weighted_delta) AS beta_weighted_delta
    FROM latest GROUP BY ALL
    UNION ALL
    SELECT as_of_date, 'ALL', root_symbol, count(*),
           sum(position_delta), sum(position_gamma), sum(position_theta), sum(position_vega),
           sum(beta_weighted_delta)
    FROM latest GROUP BY ALL
)
SELECT *,
       abs(beta_weighted_delta) / nullif(sum(abs(beta_weighted_delta)) OVER (PARTITION BY account_number), 0)
           AS share_of_account_bwd
FROM summed;

-- How far each underlying is expected to move by each expiration of its latest term structure:
-- expected_move = price * IV * sqrt(T) (one standard deviation, in price units), price = the
-- latest close on or before the snapshot. IV, T and settlement_type are the expiration's from
-- iv_term_structure_by_expiration (the one IV rule, transforms/term_structure.py: Standard chain,
-- the PM row, else the AM row; T in years from the session close to the settlement);
-- days_to_expiration are calendar days, for reading. earnings_before_expiration: the snapshot's
-- next report straddles the expiration (straddles_earnings, migration 010: by its time of day).
CREATE OR REPLACE VIEW expected_move AS
WITH latest AS (
    SELECT symbol, max(as_of_date) AS as_of_date FROM iv_term_structure GROUP BY symbol
),
term AS (
    SELECT t.symbol, t.as_of_date, t.expiration_date, t.settlement_type, t.implied_volatility,
           t.days_to_expiration, t.years_to_expiration
    FROM iv_term_structure_by_expiration AS t JOIN latest USING (symbol, as_of_date)
),
priced AS (
    SELECT term.*,
           (SELECT c.close FROM candles AS c
            WHERE c.symbol = term.symbol AND c.session_date <= term.as_of_date
            ORDER BY c.session_date DESC LIMIT 1) AS underlying_price
    FROM term
)
SELECT p.symbol, p.expiration_date, p.as_of_date, p.underlying_price, p.implied_volatility,
       p.days_to_expiration, p.years_to_expiration, p.settlement_type,
       p.underlying_price * p.implied_volatility * sqrt(p.years_to_expiration)        AS expected_move,
       p.underlying_price - p.underlying_price * p.implied_volatility * sqrt(p.years_to_expiration)
                                                                                    AS lower,
       p.underlying_price + p.underlying_price * p.implied_volatility * sqrt(p.years_to_expiration)
                                                                                    AS upper,
       coalesce(straddles_earnings(p.as_of_date, m.earnings_date, ec.time_of_day, p.expiration_date), false)
                                                                                    AS earnings_before_expiration
FROM priced AS p
LEFT JOIN market_metrics AS m ON m.symbol = p.symbol AND m.as_of_date = p.as_of_date
LEFT JOIN earnings_calendar AS ec
       ON ec.symbol = p.symbol AND ec.as_of_date = p.as_of_date AND ec.expected_report_date = m.earnings_date;
