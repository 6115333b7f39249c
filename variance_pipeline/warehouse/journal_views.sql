-- The journal's views: does the selling pay, and does the journal add up. Recreated on every load.
-- Money in USD (a credit, a gain: positive); shares and ranks are fractions.

-- Closed trades by strategy, by Tastytrade IV rank at entry, by DTE at entry and by underlying.
-- expectancy_per_trade = average realised P&L; expectancy_per_day = total P&L / total days held;
-- expectancy_per_bp_day = total P&L / sum(buying power at entry x days held), per dollar of buying
-- power and day (NULL where the margin report of the opening evening is unknown).
CREATE OR REPLACE VIEW strategy_outcomes AS
WITH closed AS (
    SELECT t.*,
           coalesce(ib.bucket, 'unknown') AS iv_rank_bucket,
           coalesce(db.bucket, 'unknown') AS dte_bucket
    FROM trades AS t
    LEFT JOIN iv_rank_buckets AS ib ON t.iv_rank_at_entry >= ib.rank_from AND t.iv_rank_at_entry < ib.rank_to
    LEFT JOIN dte_buckets AS db ON t.dte_at_entry >= db.dte_from AND t.dte_at_entry < db.dte_to
    WHERE t.status = 'closed' AND t.strategy NOT IN ('stock', 'future')
),
grouped AS (
    SELECT
        CASE WHEN GROUPING(strategy) = 0 THEN 'strategy'
             WHEN GROUPING(iv_rank_bucket) = 0 THEN 'iv_rank_at_entry'
             WHEN GROUPING(dte_bucket) = 0 THEN 'dte_at_entry'
             ELSE 'underlying' END                                        AS dimension,
        coalesce(strategy, iv_rank_bucket, dte_bucket, underlying_symbol) AS bucket,
        count(*)                                                          AS trades,
        count(*) FILTER (WHERE outcome = 'win')                           AS wins,
        count(*) FILTER (WHERE outcome = 'loss')                          AS losses,
        count(*) FILTER (WHERE outcome = 'scratch')                       AS scratches,
        avg(realized_pnl)                                                 AS avg_pnl,
        sum(realized_pnl)                                                 AS total_pnl,
        sum(fees)                                                         AS fees,
        avg(days_held)                                                    AS avg_days_held,
        avg(pct_of_max_profit_captured)                                   AS avg_pct_of_max_profit_captured,
        sum(realized_pnl) / nullif(sum(greatest(days_held, 1)), 0)        AS expectancy_per_day,
        sum(realized_pnl) FILTER (WHERE bp_at_entry > 0)
            / nullif(sum(bp_at_entry * greatest(days_held, 1)) FILTER (WHERE bp_at_entry > 0), 0) AS expectancy_per_bp_day
    FROM closed
    GROUP BY GROUPING SETS ((strategy), (iv_rank_bucket), (dte_bucket), (underlying_symbol))
)
SELECT dimension, bucket, trades, wins, losses, scratches,
       wins / trades                AS win_rate,
       avg_pnl, total_pnl, fees, avg_days_held, avg_pct_of_max_profit_captured,
       avg_pnl                      AS expectancy_per_trade,
       expectancy_per_day, expectancy_per_bp_day
FROM grouped
ORDER BY CASE dimension WHEN 'strategy' THEN 1 WHEN 'iv_rank_at_entry' THEN 2 WHEN 'dte_at_entry' THEN 3 ELSE 4 END,
         bucket;

-- Per account (and 'ALL') and month of closing: realised P&L, fees, premium sold, trades.
CREATE OR REPLACE VIEW pnl_by_month AS
WITH closed AS (
    SELECT account_number, CAST(date_trunc('month', closed_date) AS DATE) AS month, realized_pnl, fees, premium_sold,
           outcome
    FROM trades WHERE status = 'closed'
),
per_account AS (
    SELECT account_number, month, sum(realized_pnl) AS realized_pnl, sum(fees) AS fees,
           sum(premium_sold) AS premium_sold, count(*) AS trades, count(*) FILTER (WHERE outcome = 'win') AS wins
    FROM closed GROUP BY ALL
)
SELECT * FROM per_account
UNION ALL
SELECT 'ALL', month, sum(realized_pnl), sum(fees), sum(premium_sold), sum(trades), sum(wins)
FROM per_account GROUP BY month
ORDER BY month, account_number = 'ALL', account_number;

-- Does each account's journal add up? For each period between two evenings with balances and a
-- positions snapshot (and from the first transaction to the first such evening):
--   realised P&L + change of unrealised P&L  =  change of net liq - transfers (deposits, withdrawals)
-- realised = net value of the period's transactions (transfers aside) + change of the open positions'
-- cost (average open price x signed quantity x multiplier); unrealised = position_pnl's. Futures are
-- settled daily into cash (Mark to Market rows), so they add nothing after the close.
CREATE OR REPLACE VIEW account_reconciliation AS
WITH settings AS (SELECT * FROM reconciliation_settings WHERE id = 1),
snapshots AS (SELECT DISTINCT as_of_date FROM positions),
book AS (
    SELECT account_number, as_of_date,
           sum(-opening_credit)   AS cost,
           sum(unrealized_pnl)    AS unrealized,
           count(*)               AS positions
    FROM position_pnl WHERE instrument_type <> 'Future'
    GROUP BY ALL
),
evenings AS (
    SELECT b.account_number, b.as_of_date, b.fetched_at, b.net_liquidating_value AS net_liq,
           coalesce(k.cost, 0) AS cost, coalesce(k.unrealized, 0) AS unrealized, coalesce(k.positions, 0) AS positions
    FROM balances AS b
    JOIN snapshots AS s USING (as_of_date)
    LEFT JOIN book AS k USING (account_number, as_of_date)
    WHERE b.account_number IN (SELECT DISTINCT account_number FROM transactions)
),
periods AS (
    SELECT e.*,
           lag(as_of_date) OVER w AS previous_date,
           lag(fetched_at) OVER w AS previous_fetched_at,
           coalesce(lag(net_liq) OVER w, 0) AS previous_net_liq,
           coalesce(lag(cost) OVER w, 0) AS previous_cost,
           coalesce(lag(unrealized) OVER w, 0) AS previous_unrealized
    FROM evenings AS e
    WINDOW w AS (PARTITION BY account_number ORDER BY as_of_date)
),
flows AS (
    SELECT p.account_number, p.as_of_date,
           count(x.id) AS transactions,
           coalesce(sum(x.net_value) FILTER (WHERE x.transaction_sub_type NOT IN
               ('Deposit', 'Withdrawal', 'ACH Deposit', 'ACH Disbursement', 'Wire Funds Received', 'Wire Funds Disbursed',
                'Transfer', 'Journal Entry')), 0) AS trading_net_value,
           coalesce(sum(x.net_value) FILTER (WHERE x.transaction_sub_type IN
               ('Deposit', 'Withdrawal', 'ACH Deposit', 'ACH Disbursement', 'Wire Funds Received', 'Wire Funds Disbursed',
                'Transfer', 'Journal Entry')), 0) AS transfers
    FROM periods AS p
    LEFT JOIN transactions AS x
      ON x.account_number = p.account_number AND x.executed_at <= p.fetched_at
     AND (p.previous_fetched_at IS NULL OR x.executed_at > p.previous_fetched_at)
    GROUP BY ALL
)
SELECT
    p.account_number,
    p.previous_date                                                  AS from_date,
    p.as_of_date                                                     AS to_date,
    f.transactions,
    f.trading_net_value + (p.cost - p.previous_cost)                 AS realized_pnl,
    p.unrealized - p.previous_unrealized                             AS unrealized_change,
    p.net_liq - p.previous_net_liq                                   AS net_liq_change,
    f.transfers,
    f.trading_net_value + (p.cost - p.previous_cost) + (p.unrealized - p.previous_unrealized)
        - (p.net_liq - p.previous_net_liq - f.transfers)             AS difference,
    s.tolerance_usd + s.per_row_usd * (f.transactions + p.positions) AS tolerance
FROM periods AS p
JOIN flows AS f USING (account_number, as_of_date)
CROSS JOIN settings AS s
ORDER BY p.account_number, p.as_of_date;
