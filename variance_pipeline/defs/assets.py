"""Every asset of the pipeline, in data-flow order: snapshots -> candles -> volatility -> warehouse."""

from variance_pipeline.defs.candles import candles
from variance_pipeline.defs.snapshots import market_metrics, positions
from variance_pipeline.defs.transform import realized_volatility
from variance_pipeline.defs.warehouse import warehouse

ALL_ASSETS = [positions, market_metrics, candles, realized_volatility, warehouse]
