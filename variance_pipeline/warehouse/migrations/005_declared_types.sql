-- Version 5: the tables agree with the dataset declarations (variance_pipeline/schemas/).
-- Types and nullability had drifted from what validation enforced; every row already loaded
-- passed that validation, so tightening NOT NULL cannot fail on it.
-- positions.multiplier becomes DOUBLE: /MBT and /MET options have a multiplier of 0.1.
ALTER TABLE positions ALTER COLUMN multiplier SET DATA TYPE DOUBLE;
ALTER TABLE positions ALTER COLUMN multiplier SET NOT NULL;
ALTER TABLE positions ALTER COLUMN root_symbol SET NOT NULL;
ALTER TABLE market_metrics ALTER COLUMN liquidity_rating SET DATA TYPE BIGINT;
ALTER TABLE candles ALTER COLUMN adj_close SET NOT NULL;
ALTER TABLE realized_volatility ALTER COLUMN close SET NOT NULL;
ALTER TABLE realized_volatility ALTER COLUMN returns_available SET DATA TYPE BIGINT;
ALTER TABLE realized_volatility ALTER COLUMN returns_available SET NOT NULL;
