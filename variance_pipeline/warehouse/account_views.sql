-- Tonight's book: what a premium seller reads first. Recreated on every load.
-- Money in USD; shares (pct) are fractions (0.35 = 35 %); theta per day, vega per vol point.

-- Every trade (group of legs) of the newest positions snapshot, with the numbers behind each
-- reason to act; manage_tonight keeps those with at least one reason.
CREATE OR REPLACE VIEW book_groups AS
WITH settings AS (SELECT * FROM book_settings WHERE id = 1),
legs AS (
    -- With the report's BMO / AMC from the same evening's announcement (earnings_calendar).
    SELECT l.*, ec.time_of_day AS earnings_time_of_day
    FROM position_pnl AS l
    LEFT JOIN earnings_calendar AS ec
           ON ec.symbol = l.underlying_symbol AND ec.as_of_date = l.as_of_date
          AND ec.expected_report_date = l.earnings_date
    QUALIFY l.as_of_date = max(l.as_of_date) OVER (PARTITION BY l.account_number)
),
groups AS (
    SELECT
        account_number,
        group_id,
        any_value(as_of_date)                                           AS as_of_date,
        any_value(underlying_symbol)                                    AS underlying_symbol,
        min(expiration_date)                                            AS expiration_date,
        min(days_to_expiration)                                         AS days_to_expiration,
        count(*)                                                        AS legs,
        sum(opening_credit)                                             AS net_credit,
        sum(unrealized_pnl)                                             AS unrealized_pnl,
        bool_or(quantity < 0 AND option_type IS NOT NULL)               AS has_short_option,
        bool_or(tested)                                                 AS tested,
        max(CASE WHEN quantity < 0 THEN abs(delta) END)                 AS short_delta,
        bool_or(quantity < 0 AND option_type IS NOT NULL
                AND coalesce(straddles_earnings(as_of_date, earnings_date, earnings_time_of_day, expiration_date),
                             false)) AS earnings,
        min(CASE WHEN quantity < 0 AND option_type IS NOT NULL
                  AND straddles_earnings(as_of_date, earnings_date, earnings_time_of_day, expiration_date)
                 THEN earnings_date END) AS earnings_date,
        bool_or(early_assignment_risk)                                  AS early_assignment,
        min(CASE WHEN early_assignment_risk THEN ex_dividend_date END)  AS ex_dividend_date
    FROM legs
    GROUP BY account_number, group_id
),
latest_balances AS (
    SELECT * FROM balances QUALIFY as_of_date = max(as_of_date) OVER (PARTITION BY account_number)
),
latest_margin AS (
    SELECT * FROM margin_requirements QUALIFY as_of_date = max(as_of_date) OVER (PARTITION BY account_number)
),
concentration AS (
    SELECT m.account_number, m.underlying_symbol,
           m.buying_power / nullif(b.net_liquidating_value, 0) AS bp_share_of_net_liq
    FROM latest_margin AS m JOIN latest_balances AS b USING (account_number)
)
SELECT
    g.account_number,
    g.group_id,
    g.as_of_date,
    g.underlying_symbol,
    g.expiration_date,
    g.days_to_expiration,
    g.legs,
    g.net_credit,
    g.unrealized_pnl,
    CASE WHEN g.has_short_option AND g.net_credit > 0 THEN g.unrealized_pnl / g.net_credit END AS pct_of_max_profit,
    g.short_delta,
    g.tested,
    g.earnings_date,
    g.ex_dividend_date,
    c.bp_share_of_net_liq,
    list_filter([
        CASE WHEN g.has_short_option AND g.net_credit > 0
              AND g.unrealized_pnl / g.net_credit >= s.profit_target THEN 'profit_target' END,
        CASE WHEN g.days_to_expiration IS NOT NULL AND g.days_to_expiration <= s.manage_dte THEN 'dte' END,
        CASE WHEN g.tested THEN 'tested' END,
        CASE WHEN g.earnings THEN 'earnings' END,
        CASE WHEN g.early_assignment THEN 'early_assignment' END,
        CASE WHEN c.bp_share_of_net_liq > s.bp_concentration THEN 'bp_concentration' END
    ], lambda reason: reason IS NOT NULL)                           AS reasons
FROM groups AS g
CROSS JOIN settings AS s
LEFT JOIN concentration AS c USING (account_number, underlying_symbol);

CREATE OR REPLACE VIEW manage_tonight AS
SELECT * FROM book_groups WHERE len(reasons) > 0
ORDER BY account_number, len(reasons) DESC, underlying_symbol, expiration_date;

-- Per account and 'ALL': the headline a premium seller sizes the book by.
-- bp_used_pct = used-derivative-buying-power / net-liquidating-value (the broker's definition);
-- beta_weighted_delta is in SPY shares; bwd_dollars_per_spy_1pct = that x SPY close x 1 %.
CREATE OR REPLACE VIEW account_summary AS
WITH latest_balances AS (
    SELECT b.*, lag(net_liquidating_value) OVER (PARTITION BY account_number ORDER BY as_of_date) AS previous_net_liq
    FROM balances AS b
    QUALIFY as_of_date = max(as_of_date) OVER (PARTITION BY account_number)
),
greeks AS (
    SELECT account_number, as_of_date,
           sum(position_theta) AS theta_per_day, sum(position_vega) AS vega_per_vol_point,
           sum(beta_weighted_delta) AS beta_weighted_delta
    FROM position_greeks GROUP BY account_number, as_of_date
),
margin AS (
    SELECT account_number, as_of_date,
           arg_max(underlying_symbol, buying_power) AS largest_bp_underlying,
           max(buying_power) / nullif(sum(buying_power), 0) AS largest_bp_share
    FROM margin_requirements GROUP BY account_number, as_of_date
),
manage AS (SELECT account_number, count(*) AS groups_to_manage FROM manage_tonight GROUP BY account_number),
per_account AS (
    SELECT
        b.account_number,
        b.as_of_date,
        b.net_liquidating_value,
        b.net_liquidating_value - b.previous_net_liq                  AS net_liq_change,
        b.cash_balance,
        b.used_derivative_buying_power,
        b.derivative_buying_power,
        b.maintenance_requirement,
        g.theta_per_day,
        g.vega_per_vol_point,
        g.beta_weighted_delta,
        m.largest_bp_underlying,
        m.largest_bp_share,
        coalesce(t.groups_to_manage, 0)                               AS groups_to_manage
    FROM latest_balances AS b
    LEFT JOIN greeks AS g USING (account_number, as_of_date)
    LEFT JOIN margin AS m USING (account_number, as_of_date)
    LEFT JOIN manage AS t USING (account_number)
),
everything AS (
    SELECT * FROM per_account
    UNION ALL
    SELECT 'ALL', max(as_of_date), sum(net_liquidating_value), sum(net_liq_change), sum(cash_balance),
           sum(used_derivative_buying_power), sum(derivative_buying_power), sum(maintenance_requirement),
           sum(theta_per_day), sum(vega_per_vol_point), sum(beta_weighted_delta),
           NULL, NULL, sum(groups_to_manage)
    FROM per_account
    HAVING count(*) > 0
),
market AS (
    SELECT e.account_number,
           (SELECT close FROM candles WHERE symbol = 'SPY' AND session_date <= e.as_of_date ORDER BY session_date DESC LIMIT 1) AS spy_close,
           (SELECT close FROM candles WHERE symbol = 'VIX' AND session_date <= e.as_of_date ORDER BY session_date DESC LIMIT 1) AS vix
    FROM everything AS e
)
SELECT
    e.account_number,
    e.as_of_date,
    e.net_liquidating_value,
    e.net_liq_change,
    e.cash_balance,
    e.used_derivative_buying_power,
    e.derivative_buying_power,
    e.maintenance_requirement,
    e.used_derivative_buying_power / nullif(e.net_liquidating_value, 0)   AS bp_used_pct,
    k.vix,
    gl.max_bp_used_pct                                                  AS bp_guideline_max_pct,
    e.used_derivative_buying_power / nullif(e.net_liquidating_value, 0) <= gl.max_bp_used_pct AS bp_within_guideline,
    e.theta_per_day,
    e.theta_per_day / nullif(e.net_liquidating_value, 0)                 AS theta_pct_of_net_liq,
    e.beta_weighted_delta,
    e.beta_weighted_delta * k.spy_close * 0.01                          AS bwd_dollars_per_spy_1pct,
    e.beta_weighted_delta * k.spy_close * 0.01 / nullif(e.net_liquidating_value, 0) AS bwd_pct_of_net_liq,
    e.vega_per_vol_point,
    e.largest_bp_underlying,
    e.largest_bp_share,
    e.groups_to_manage
FROM everything AS e
JOIN market AS k USING (account_number)
LEFT JOIN bp_guideline AS gl ON k.vix >= gl.vix_from AND k.vix < gl.vix_to
ORDER BY e.account_number = 'ALL', e.account_number;

-- The model's IV and Greeks per option position beside the broker's (when GET
-- /market-data/by-type answered): the difference is shown, neither replaces the other.
CREATE OR REPLACE VIEW greeks_vs_broker AS
SELECT
    g.as_of_date, g.account_number, g.symbol, g.iv_source,
    g.implied_volatility                         AS model_iv,
    q.volatility                                 AS broker_iv,
    g.implied_volatility - q.volatility          AS iv_difference,
    g.delta                                      AS model_delta,
    q.delta                                      AS broker_delta,
    g.delta - q.delta                            AS delta_difference,
    g.theta                                      AS model_theta,
    q.theta                                      AS broker_theta,
    g.vega                                       AS model_vega,
    q.vega                                       AS broker_vega,
    g.price                                      AS model_price,
    q.mark                                       AS broker_mark
FROM position_greeks AS g
JOIN option_quotes AS q USING (as_of_date, symbol)
WHERE q.instrument_type IS DISTINCT FROM 'Future'; -- a VX future's quote is an underlying's price, not a Greek
