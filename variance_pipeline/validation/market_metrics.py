"""The ``market_metrics`` and ``iv_term_structure`` datasets: Tastytrade's volatility snapshot.

Every volatility, rank and percentile here is a fraction. The API mixes fractions and percents
in one item, so a unit slip (a 21.87 where 0.2187 belongs) is the likeliest bug; bounding every
such column to [0, 5] (500 % covers the wildest meme stock) catches it per row. The borrow rate
arrives as a percent too ("24.5013") and is stored as a fraction, bounded the same way.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.engines import pandas_engine
from pandera.typing import Series

UTC_US = {"unit": "us", "tz": "UTC"}
FRACTION = {"min_value": 0.0, "max_value": 5.0}
SIGNED_FRACTION = {"min_value": -5.0, "max_value": 5.0}


class MarketMetricsSchema(pa.DataFrameModel):
    """One row per (session, underlying); nulls allowed where the API may omit a field."""

    as_of_date: Series[pandas_engine.Date]
    symbol: Series[str] = pa.Field(str_length={"min_value": 1})
    implied_volatility: Series[float] = pa.Field(nullable=True, in_range=FRACTION)
    implied_volatility_5_day_change: Series[float] = pa.Field(nullable=True, in_range=SIGNED_FRACTION)
    iv_rank: Series[float] = pa.Field(nullable=True, in_range=FRACTION)
    tos_iv_rank: Series[float] = pa.Field(nullable=True, in_range=FRACTION)
    tw_iv_rank: Series[float] = pa.Field(nullable=True, in_range=FRACTION)
    iv_percentile: Series[float] = pa.Field(nullable=True, in_range=FRACTION)
    iv_30_day: Series[float] = pa.Field(nullable=True, in_range=FRACTION)
    hv_30_day: Series[float] = pa.Field(nullable=True, in_range=FRACTION)
    hv_60_day: Series[float] = pa.Field(nullable=True, in_range=FRACTION)
    hv_90_day: Series[float] = pa.Field(nullable=True, in_range=FRACTION)
    iv_hv_30_day_difference: Series[float] = pa.Field(nullable=True, in_range=SIGNED_FRACTION)
    liquidity_value: Series[float] = pa.Field(nullable=True, ge=0)
    liquidity_rank: Series[float] = pa.Field(nullable=True, ge=0)
    liquidity_rating: Series[pd.Int64Dtype] = pa.Field(nullable=True, in_range={"min_value": 0, "max_value": 5})
    beta: Series[float] = pa.Field(nullable=True)
    corr_spy_3month: Series[float] = pa.Field(nullable=True, in_range={"min_value": -1.0, "max_value": 1.0})
    earnings_date: Series[pandas_engine.Date] = pa.Field(nullable=True)
    earnings_estimated: Series[pd.BooleanDtype] = pa.Field(nullable=True)
    market_cap: Series[float] = pa.Field(nullable=True, ge=0)
    dividend_yield: Series[float] = pa.Field(nullable=True, ge=0)
    borrow_rate: Series[float] = pa.Field(nullable=True, in_range=FRACTION)
    lendability: Series[str] = pa.Field(nullable=True)
    implied_volatility_updated_at: Series[pd.DatetimeTZDtype] = pa.Field(nullable=True, dtype_kwargs=UTC_US)
    fetched_at: Series[pd.DatetimeTZDtype] = pa.Field(dtype_kwargs=UTC_US)

    @pa.check("liquidity_value", "liquidity_rank", "beta", "market_cap", "dividend_yield", "borrow_rate", name="finite")
    def _finite(cls, values: Series[float]) -> Series[bool]:
        return pd.Series(np.isfinite(values), index=values.index)

    class Config:
        name = "market_metrics"
        strict = False
        unique = ["as_of_date", "symbol"]


class TermStructureSchema(pa.DataFrameModel):
    """One row per (session, underlying, expiration, settlement): the IV term structure."""

    as_of_date: Series[pandas_engine.Date]
    symbol: Series[str] = pa.Field(str_length={"min_value": 1})
    expiration_date: Series[pandas_engine.Date]
    settlement_type: Series[str]
    option_chain_type: Series[str] = pa.Field(nullable=True)
    implied_volatility: Series[float] = pa.Field(nullable=True, in_range=FRACTION)
    fetched_at: Series[pd.DatetimeTZDtype] = pa.Field(dtype_kwargs=UTC_US)

    class Config:
        name = "iv_term_structure"
        strict = False
        unique = ["as_of_date", "symbol", "expiration_date", "settlement_type"]
