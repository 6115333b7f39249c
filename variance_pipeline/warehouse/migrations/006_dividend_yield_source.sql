-- Version 6: where the dividend yield of a priced option came from (metrics, an index's
-- tracking ETF such as proxy:SPY for SPX, or none).
ALTER TABLE position_greeks ADD COLUMN IF NOT EXISTS dividend_yield_source VARCHAR;
