-- Version 8: tonight's book. New columns of existing tables (new tables are created from their
-- declarations in variance_pipeline/schemas/ by warehouse.load.migrate).
-- positions.mark_price: the broker's mark per unit (positions.mark is the position's value).
-- market_metrics: the dividend the early-assignment rule needs.
ALTER TABLE positions ADD COLUMN IF NOT EXISTS mark_price DOUBLE;
ALTER TABLE market_metrics ADD COLUMN IF NOT EXISTS dividend_rate_per_share DOUBLE;
ALTER TABLE market_metrics ADD COLUMN IF NOT EXISTS dividend_ex_date DATE;
ALTER TABLE market_metrics ADD COLUMN IF NOT EXISTS dividend_next_date DATE;
-- position_greeks: the IV solved from the position's own mark (iv_source 'mark') and what it replaced.
ALTER TABLE position_greeks ADD COLUMN IF NOT EXISTS mark_price DOUBLE;
ALTER TABLE position_greeks ADD COLUMN IF NOT EXISTS term_structure_iv DOUBLE;
ALTER TABLE position_greeks ADD COLUMN IF NOT EXISTS mark_iv_note VARCHAR;

-- One row: the manage-tonight thresholds the views read (the book_rules resource upserts it on
-- every account_book load; these are tastylive's defaults).
CREATE TABLE IF NOT EXISTS book_settings (
    id                  INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    profit_target       DOUBLE  NOT NULL,  -- close a credit trade at this share of max profit
    manage_dte          INTEGER NOT NULL,  -- manage at this many calendar days to expiration
    tested_delta        DOUBLE  NOT NULL,  -- a short option at |delta| >= this is tested
    bp_concentration    DOUBLE  NOT NULL   -- one underlying's buying power above this share of net liq
);
INSERT OR IGNORE INTO book_settings VALUES (1, 0.50, 21, 0.30, 0.05);

-- Buying power a premium seller should have in use, by the level of VIX: tastylive's guideline
-- (as its shows and "portfolio allocation by VIX" notes state it): the higher implied
-- volatility is, the more premium there is to sell and the more capital may be deployed.
CREATE TABLE IF NOT EXISTS bp_guideline (
    vix_from            DOUBLE  NOT NULL PRIMARY KEY,  -- VIX close at or above this ...
    vix_to              DOUBLE  NOT NULL,              -- ... and below this
    max_bp_used_pct     DOUBLE  NOT NULL               -- use at most this share of net liq
);
INSERT OR IGNORE INTO bp_guideline VALUES
    (0, 15, 0.25), (15, 20, 0.30), (20, 30, 0.35), (30, 40, 0.40), (40, 1000, 0.50);
