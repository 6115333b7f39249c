-- The journal's warehouse half, run in the load's transaction after the journal tables loaded
-- (warehouse/journal.py): which trade each transaction belongs to, and each trade's entry context
-- from our own history on the session it was opened (NULL, with the reason, where none exists).

UPDATE transactions SET trade_id = NULL WHERE trade_id IS NOT NULL;
UPDATE transactions SET trade_id = tt.trade_id FROM trade_transactions AS tt WHERE tt.id = transactions.id;

UPDATE trades SET
    iv_rank_at_entry = c.iv_rank,
    iv_rank_own_at_entry = c.iv_rank_own,
    iv_percentile_own_at_entry = c.iv_percentile_own,
    iv30_at_entry = c.iv30,
    iv_hv20_spread_at_entry = c.iv_hv20_spread,
    vrp_at_entry = c.vrp,
    short_delta_at_entry = c.short_delta,
    bp_at_entry = c.bp_at_entry,
    bp_used_pct_at_entry = c.bp_used_pct,
    earnings_inside = c.earnings_inside,
    entry_context_note = c.note
FROM (
    WITH settings AS (
        SELECT coalesce((SELECT max(min_rank_sessions) FROM vol_history_settings), 20) AS min_rank_sessions
    ),
    entry AS (
        SELECT t.trade_id, t.account_number, t.underlying_symbol, t.opened_on,
               coalesce(t.closed_date, t.expiration_date, t.as_of_date) AS ends_on,
               mm.implied_volatility AS iv, mm.iv_rank, mm.earnings_date AS next_earnings,
               ec.time_of_day AS next_earnings_time,
               mm.as_of_date IS NOT NULL AS has_metrics,
               coalesce(first_s.session_date, CAST(t.opened_on - INTERVAL 364 DAY AS DATE)) AS window_start
        FROM trades AS t
        LEFT JOIN market_metrics AS mm ON mm.symbol = t.underlying_symbol AND mm.as_of_date = t.opened_on
        LEFT JOIN earnings_calendar AS ec
               ON ec.symbol = mm.symbol AND ec.as_of_date = mm.as_of_date AND ec.expected_report_date = mm.earnings_date
        LEFT JOIN xnys_sessions AS cur ON cur.session_date = t.opened_on
        LEFT JOIN xnys_sessions AS first_s ON first_s.session_ordinal = cur.session_ordinal - 251
    ),
    own AS (  -- our own IV rank and percentile as of the opening session (the iv_rank_own rule)
        SELECT e.trade_id,
               count(h.implied_volatility) AS sessions,
               min(h.implied_volatility) AS low, max(h.implied_volatility) AS high,
               count(*) FILTER (WHERE h.implied_volatility < e.iv) AS lower
        FROM entry AS e
        JOIN market_metrics AS h ON h.symbol = e.underlying_symbol AND h.as_of_date BETWEEN e.window_start AND e.opened_on
        WHERE e.iv IS NOT NULL
        GROUP BY e.trade_id
    ),
    opening_legs AS (  -- the short options the trade opened on its first session
        SELECT tt.trade_id, x.symbol
        FROM trade_transactions AS tt
        JOIN transactions AS x ON x.id = tt.id
        JOIN trades AS t ON t.trade_id = tt.trade_id
        WHERE tt.role IN ('open', 'roll') AND tt.signed_quantity < 0
          AND x.instrument_type IN ('Equity Option', 'Future Option') AND x.transaction_date = t.opened_on
    ),
    deltas AS (
        SELECT l.trade_id, max(abs(g.delta)) AS short_delta
        FROM opening_legs AS l
        JOIN trades AS t USING (trade_id)
        JOIN position_greeks AS g
          ON g.account_number = t.account_number AND g.symbol = l.symbol AND g.as_of_date = t.opened_on
        GROUP BY l.trade_id
    ),
    sharing AS (  -- trades of one account and underlying opened on one evening share its buying power
        SELECT account_number, underlying_symbol, opened_on, count(*) AS trades
        FROM trades GROUP BY ALL
    ),
    reported AS (
        -- Past reports by their own day and time (earnings_moves.report_date: occurred_date is the
        -- quarter's end), inside by the one rule (migration 010). A report with no known day whose
        -- quarter ended in the trade's window or up to QUARTER_REPORT_DAYS before it may have
        -- fallen inside: unknown, not false.
        SELECT e.trade_id,
               bool_or(straddles_earnings(e.opened_on, r.report_date, r.report_time_of_day, e.ends_on)) AS inside,
               count(r.report_date) AS known,
               bool_or(r.report_date IS NULL AND r.occurred_date < e.ends_on
                       AND r.occurred_date + 92 >= e.opened_on) AS undated_maybe_inside
        FROM entry AS e LEFT JOIN earnings_moves AS r ON r.symbol = e.underlying_symbol
        GROUP BY e.trade_id
    )
    SELECT
        e.trade_id,
        e.iv_rank,
        CASE WHEN o.sessions >= s.min_rank_sessions AND o.high > o.low THEN (e.iv - o.low) / (o.high - o.low) END AS iv_rank_own,
        CASE WHEN o.sessions >= s.min_rank_sessions THEN o.lower / o.sessions END AS iv_percentile_own,
        cm.iv30,
        e.iv - rv.hv20 AS iv_hv20_spread,
        v.vrp,
        d.short_delta,
        m.buying_power / sh.trades AS bp_at_entry,
        b.used_derivative_buying_power / nullif(b.net_liquidating_value, 0) AS bp_used_pct,
        CASE
            WHEN coalesce(rep.inside, false) THEN true
            WHEN coalesce(straddles_earnings(e.opened_on, e.next_earnings, e.next_earnings_time, e.ends_on), false) THEN true
            WHEN rep.undated_maybe_inside THEN NULL
            WHEN rep.known > 0 OR e.has_metrics THEN false
        END AS earnings_inside,
        nullif(concat_ws('; ',
            CASE WHEN NOT e.has_metrics THEN 'no market_metrics snapshot of ' || e.underlying_symbol || ' on '
                 || strftime(e.opened_on, '%Y-%m-%d') || ' (before this project''s history, or not in the universe then)' END,
            CASE WHEN e.has_metrics AND NOT coalesce(o.sessions >= s.min_rank_sessions, false)
                 THEN 'own IV rank needs ' || s.min_rank_sessions || ' sessions of IV history' END,
            CASE WHEN rep.undated_maybe_inside AND NOT coalesce(rep.inside, false)
                  AND NOT coalesce(straddles_earnings(e.opened_on, e.next_earnings, e.next_earnings_time, e.ends_on), false)
                 THEN 'earnings_inside unknown: a report of ' || e.underlying_symbol || ' near the trade has no known '
                      || 'date (announced before this project''s history)' END,
            CASE WHEN b.as_of_date IS NULL THEN 'no balances snapshot on ' || strftime(e.opened_on, '%Y-%m-%d') END,
            CASE WHEN d.short_delta IS NULL AND EXISTS (SELECT 1 FROM opening_legs AS l WHERE l.trade_id = e.trade_id)
                 THEN 'no position_greeks of its short legs on ' || strftime(e.opened_on, '%Y-%m-%d') END
        ), '') AS note
    FROM entry AS e
    CROSS JOIN settings AS s
    LEFT JOIN own AS o USING (trade_id)
    LEFT JOIN deltas AS d USING (trade_id)
    LEFT JOIN reported AS rep USING (trade_id)
    LEFT JOIN iv_constant_maturity AS cm ON cm.symbol = e.underlying_symbol AND cm.as_of_date = e.opened_on
    LEFT JOIN realized_volatility AS rv ON rv.symbol = e.underlying_symbol AND rv.session_date = e.opened_on
    LEFT JOIN vrp AS v ON v.symbol = e.underlying_symbol AND v.as_of_date = e.opened_on
    LEFT JOIN balances AS b ON b.account_number = e.account_number AND b.as_of_date = e.opened_on
    LEFT JOIN margin_requirements AS m
      ON m.account_number = e.account_number AND m.underlying_symbol = e.underlying_symbol AND m.as_of_date = e.opened_on
    LEFT JOIN sharing AS sh
      ON sh.account_number = e.account_number AND sh.underlying_symbol = e.underlying_symbol AND sh.opened_on = e.opened_on
) AS c
WHERE c.trade_id = trades.trade_id;
