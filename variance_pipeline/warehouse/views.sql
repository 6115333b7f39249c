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
    m.earnings_date - coalesce(m.as_of_date, r.session_date) AS days_to_earnings
FROM latest_rv AS r
FULL OUTER JOIN latest_metrics AS m ON m.symbol = r.symbol
LEFT JOIN hv20_rank AS hr ON hr.symbol = coalesce(r.symbol, m.symbol)
LEFT JOIN tickers AS t ON t.symbol = coalesce(r.symbol, m.symbol);

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
    CAST(p.expires_at AS DATE) - p.as_of_date               AS days_to_expiration,
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
    v.days_to_earnings,
    v.earnings_date IS NOT NULL
        AND p.expires_at IS NOT NULL
        AND v.earnings_date <= CAST(p.expires_at AS DATE)   AS earnings_before_expiration
FROM latest AS p
LEFT JOIN vol_dashboard AS v ON v.symbol = p.root_symbol;
