-- Views over the volatility history (002_vol_history.sql), recreated by every refresh_vol_history
-- (CREATE OR REPLACE), so they always match the code. Volatilities, ranks, percentiles and moves
-- are fractions; days are calendar days.

-- Grain: symbol. How the premium seller fared: the mean of vrp (iv30 - the next 21 sessions'
-- realised volatility) and the share of dates it was positive, over dates whose window is complete.
CREATE OR REPLACE VIEW vrp_summary AS
SELECT
    symbol,
    avg(vrp)                                                          AS mean_vrp,
    avg(CASE WHEN vrp > 0 THEN 1.0 WHEN vrp IS NOT NULL THEN 0.0 END) AS positive_share,
    count(vrp)                                                        AS dates,
    median(vrp)                                                       AS median_vrp,
    avg(iv30) FILTER (WHERE vrp IS NOT NULL)                          AS mean_iv30,
    avg(hv_forward_21) FILTER (WHERE vrp IS NOT NULL)                 AS mean_hv_forward_21,
    min(as_of_date) FILTER (WHERE vrp IS NOT NULL)                    AS first_date,
    max(as_of_date) FILTER (WHERE vrp IS NOT NULL)                    AS last_date,
    count(*) - count(vrp)                                             AS dates_pending
FROM vrp
GROUP BY symbol;

-- Grain: symbol. The next report from the latest metrics snapshot, the history of past moves, and
-- what the options price now: expected_move = price * IV * sqrt(T) of that snapshot's first
-- expiration that straddles the report (straddling_expiration, migration 010: on or after a BMO
-- report's date, after an AMC one's), IV and T (years from the snapshot's close to the settlement) from
-- iv_term_structure_by_expiration, the one IV rule; straddle_days are calendar days, for reading;
-- price = the latest candle close. NULL when the earnings date is unknown or before the snapshot.
CREATE OR REPLACE VIEW next_earnings AS
WITH latest AS (
    SELECT m.symbol, m.as_of_date, m.earnings_date, m.earnings_estimated, ec.time_of_day AS earnings_time_of_day
    FROM market_metrics AS m
    LEFT JOIN earnings_calendar AS ec
           ON ec.symbol = m.symbol AND ec.as_of_date = m.as_of_date AND ec.expected_report_date = m.earnings_date
    QUALIFY row_number() OVER (PARTITION BY m.symbol ORDER BY m.as_of_date DESC) = 1
),
price AS (
    SELECT symbol, arg_max(close, session_date) AS price, max(session_date) AS price_date
    FROM candles
    GROUP BY symbol
),
straddle AS (
    SELECT
        symbol,
        s.expiration_date       AS straddle_expiration,
        s.implied_volatility    AS straddle_iv,
        s.days_to_expiration    AS straddle_days,
        s.years_to_expiration   AS straddle_years
    FROM (SELECT symbol, straddling_expiration(symbol, as_of_date, earnings_date, earnings_time_of_day) AS s FROM latest)
),
moves AS (
    SELECT
        symbol,
        median(abs_move)  AS median_abs_move,
        max(abs_move)     AS max_abs_move,
        count(abs_move)   AS moves_counted,
        max(report_date) FILTER (WHERE abs_move IS NOT NULL) AS last_report_date,
        count(*) FILTER (WHERE report_date IS NULL)     AS reports_undated
    FROM earnings_moves
    GROUP BY symbol
),
last_8 AS (
    SELECT
        symbol,
        count(*) FILTER (WHERE exceeded_implied) AS exceeded_last_8,
        count(exceeded_implied)                  AS implied_known_last_8,
        count(*)                                 AS last_8_moves
    FROM (
        SELECT *
        FROM earnings_moves
        WHERE abs_move IS NOT NULL
        QUALIFY row_number() OVER (PARTITION BY symbol ORDER BY occurred_date DESC) <= 8
    )
    GROUP BY symbol
),
symbols AS (
    SELECT symbol FROM latest
    UNION
    SELECT symbol FROM moves
)
SELECT
    s.symbol,
    l.as_of_date                                                       AS metrics_as_of,
    l.earnings_date,
    l.earnings_estimated,
    l.earnings_time_of_day,
    CAST(l.earnings_date - l.as_of_date AS INTEGER)                    AS days_to_earnings,
    m.median_abs_move,
    m.max_abs_move,
    coalesce(m.moves_counted, 0)                                       AS moves_counted,
    m.last_report_date,
    coalesce(m.reports_undated, 0)                                     AS reports_undated,
    coalesce(e.exceeded_last_8, 0)                                     AS exceeded_last_8,
    coalesce(e.implied_known_last_8, 0)                                AS implied_known_last_8,
    coalesce(e.last_8_moves, 0)                                        AS last_8_moves,
    p.price,
    p.price_date,
    st.straddle_expiration,
    st.straddle_iv,
    st.straddle_days,
    st.straddle_years,
    st.straddle_iv * sqrt(st.straddle_years)                           AS expected_move_fraction,
    p.price * st.straddle_iv * sqrt(st.straddle_years)                 AS expected_move,
    st.straddle_iv * sqrt(st.straddle_years) / nullif(m.median_abs_move, 0)
                                                                       AS expected_to_median_ratio
FROM symbols AS s
LEFT JOIN latest AS l ON l.symbol = s.symbol
LEFT JOIN price AS p ON p.symbol = s.symbol
LEFT JOIN straddle AS st ON st.symbol = s.symbol
LEFT JOIN moves AS m ON m.symbol = s.symbol
LEFT JOIN last_8 AS e ON e.symbol = s.symbol;

-- Grain: symbol. IV rank and percentile from our own landed snapshots (market_metrics
-- .implied_volatility), over the snapshot sessions among the last 252 XNYS sessions up to the
-- latest snapshot: iv_rank_own = (iv - min) / (max - min), iv_percentile_own = share of those
-- sessions (today included) with a lower IV. NULL, with iv_rank_own_reason, until
-- sessions_of_history reaches vol_history_settings.min_rank_sessions (default 20).
CREATE OR REPLACE VIEW iv_rank_own AS
WITH settings AS (
    SELECT coalesce((SELECT max(min_rank_sessions) FROM vol_history_settings), 20) AS min_rank_sessions
),
latest AS (
    SELECT symbol, as_of_date, implied_volatility AS iv
    FROM market_metrics
    QUALIFY row_number() OVER (PARTITION BY symbol ORDER BY as_of_date DESC) = 1
),
bounds AS (
    SELECT
        l.symbol,
        l.as_of_date,
        l.iv,
        -- The 252nd session back from the snapshot; 365 days back if the calendar table lacks it.
        coalesce(first_s.session_date, CAST(l.as_of_date - INTERVAL 364 DAY AS DATE)) AS window_start
    FROM latest AS l
    LEFT JOIN xnys_sessions AS cur ON cur.session_date = l.as_of_date
    LEFT JOIN xnys_sessions AS first_s ON first_s.session_ordinal = cur.session_ordinal - 251
),
history AS (
    SELECT
        b.symbol,
        count(h.implied_volatility)                                      AS sessions_of_history,
        min(h.implied_volatility)                                        AS iv_min_own,
        max(h.implied_volatility)                                        AS iv_max_own,
        count(*) FILTER (WHERE h.implied_volatility < b.iv)              AS sessions_lower
    FROM bounds AS b
    JOIN market_metrics AS h
      ON h.symbol = b.symbol
     AND h.as_of_date BETWEEN b.window_start AND b.as_of_date
     AND h.implied_volatility IS NOT NULL
    GROUP BY b.symbol
),
joined AS (
    SELECT
        b.symbol,
        b.as_of_date,
        b.iv,
        b.window_start,
        coalesce(h.sessions_of_history, 0) AS sessions_of_history,
        h.iv_min_own,
        h.iv_max_own,
        coalesce(h.sessions_lower, 0)      AS sessions_lower,
        s.min_rank_sessions
    FROM bounds AS b
    LEFT JOIN history AS h ON h.symbol = b.symbol
    CROSS JOIN settings AS s
)
SELECT
    symbol,
    as_of_date,
    iv                                                              AS implied_volatility,
    sessions_of_history,
    min_rank_sessions,
    window_start,
    iv_min_own,
    iv_max_own,
    CASE
        WHEN iv IS NULL OR sessions_of_history < min_rank_sessions THEN NULL
        ELSE (iv - iv_min_own) / nullif(iv_max_own - iv_min_own, 0)
    END                                                             AS iv_rank_own,
    CASE
        WHEN iv IS NULL OR sessions_of_history < min_rank_sessions THEN NULL
        ELSE sessions_lower / sessions_of_history
    END                                                             AS iv_percentile_own,
    CASE
        WHEN iv IS NULL THEN 'no implied volatility in the latest snapshot'
        WHEN sessions_of_history < min_rank_sessions
            THEN 'only ' || sessions_of_history || ' sessions of history (need ' || min_rank_sessions || ')'
        WHEN iv_max_own = iv_min_own THEN 'no IV range in the window (max = min)'
    END                                                             AS iv_rank_own_reason
FROM joined;
