-- Version 9: the journal. Its tables (transactions, net_liq_history, trades, trade_transactions) are
-- created from their declarations in variance_pipeline/schemas/journal.py by warehouse.load.migrate;
-- here: the buckets strategy_outcomes groups trades by, and the reconciliation's tolerance.

-- IV rank at entry (Tastytrade's, a fraction) in buckets: [rank_from, rank_to).
CREATE TABLE IF NOT EXISTS iv_rank_buckets (
    rank_from           DOUBLE  NOT NULL PRIMARY KEY,
    rank_to             DOUBLE  NOT NULL,
    bucket              VARCHAR NOT NULL
);
INSERT OR IGNORE INTO iv_rank_buckets VALUES
    (0.0, 0.2, '0-20'), (0.2, 0.4, '20-40'), (0.4, 0.6, '40-60'), (0.6, 0.8, '60-80'), (0.8, 1000.0, '80-100');

-- Days to expiration at entry in buckets: [dte_from, dte_to).
CREATE TABLE IF NOT EXISTS dte_buckets (
    dte_from            INTEGER NOT NULL PRIMARY KEY,
    dte_to              INTEGER NOT NULL,
    bucket              VARCHAR NOT NULL
);
INSERT OR IGNORE INTO dte_buckets VALUES
    (0, 8, '0-7'), (8, 22, '8-21'), (22, 36, '22-35'), (36, 51, '36-50'), (51, 100000, '51+');

-- One row: what the reconciliation (account_reconciliation) tolerates, in USD: a fixed part
-- (rounding of the broker's own amounts) plus a part per transaction and per position of the period
-- (amounts are sent to the cent or the tenth of a cent, marks to the tick).
CREATE TABLE IF NOT EXISTS reconciliation_settings (
    id                  INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    tolerance_usd       DOUBLE  NOT NULL,
    per_row_usd         DOUBLE  NOT NULL
);
INSERT OR IGNORE INTO reconciliation_settings VALUES (1, 1.00, 0.01);
