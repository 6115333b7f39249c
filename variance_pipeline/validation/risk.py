"""Schemas of the risk datasets: the risk-free rate snapshot and the model Greeks per position.

A NaN Greek, a rate outside [-0.05, 0.25] or a priced option without an IV source would put a
wrong number in a trader's risk; such rows are quarantined, never loaded.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.engines import pandas_engine
from pandera.typing import Series

UTC_US = {"unit": "us", "tz": "UTC"}


class RiskFreeRateSchema(pa.DataFrameModel):
    """One row per session: Tastytrade's public risk-free rate, a fraction."""

    as_of_date: Series[pandas_engine.Date]
    risk_free_rate: Series[float] = pa.Field(in_range={"min_value": -0.05, "max_value": 0.25})
    fetched_at: Series[pd.DatetimeTZDtype] = pa.Field(dtype_kwargs=UTC_US)

    class Config:
        name = "risk_free_rate"
        strict = True
        unique = ["as_of_date"]


class PositionGreeksSchema(pa.DataFrameModel):
    """One row per (session, account, position): model price and Greeks, per share and per position."""

    as_of_date: Series[pandas_engine.Date]
    account_number: Series[str] = pa.Field(str_length={"min_value": 1})
    symbol: Series[str] = pa.Field(str_length={"min_value": 1})
    instrument_type: Series[str]
    underlying_symbol: Series[str] = pa.Field(nullable=True)
    root_symbol: Series[str]
    option_type: Series[str] = pa.Field(nullable=True, isin=["C", "P"])
    strike: Series[float] = pa.Field(nullable=True, gt=0)
    expiration_date: Series[pandas_engine.Date] = pa.Field(nullable=True)
    days_to_expiration: Series[float] = pa.Field(nullable=True)
    years_to_expiration: Series[float] = pa.Field(nullable=True, gt=0)
    quantity: Series[float]
    multiplier: Series[float] = pa.Field(gt=0)
    underlying_price: Series[float] = pa.Field(gt=0)
    underlying_price_source: Series[str] = pa.Field(isin=["close", "root_continuous"])
    implied_volatility: Series[float] = pa.Field(nullable=True, gt=0, le=10)
    iv_source: Series[str] = pa.Field(nullable=True, isin=["exact", "interpolated", "extrapolated"])
    risk_free_rate: Series[float] = pa.Field(nullable=True)
    dividend_yield: Series[float] = pa.Field(nullable=True, ge=0)
    model: Series[str] = pa.Field(nullable=True, isin=["black_scholes_merton", "black_76"])
    price: Series[float] = pa.Field(ge=0)
    delta: Series[float] = pa.Field(in_range={"min_value": -1.0, "max_value": 1.0})
    gamma: Series[float] = pa.Field(ge=0)
    theta: Series[float]
    vega: Series[float] = pa.Field(ge=0)
    position_delta: Series[float]
    position_gamma: Series[float]
    position_theta: Series[float]
    position_vega: Series[float]
    beta: Series[float] = pa.Field(nullable=True)
    beta_weighted_delta: Series[float] = pa.Field(nullable=True)

    @pa.check("price", "delta", "gamma", "theta", "vega", "position_delta", "position_gamma",
              "position_theta", "position_vega", name="finite")
    def _finite(cls, values: Series[float]) -> Series[bool]:
        return pd.Series(np.isfinite(values), index=values.index)

    @pa.dataframe_check(name="priced_options_have_a_model_and_iv")
    def _options_complete(cls, frame: pd.DataFrame) -> Series[bool]:
        option = frame["option_type"].notna()
        return ~option | (frame["model"].notna() & frame["iv_source"].notna() & frame["years_to_expiration"].notna())

    class Config:
        name = "position_greeks"
        strict = True
        coerce = True  # nullable extension dtypes (Float64 with <NA>) -> float64 with NaN
        unique = ["as_of_date", "account_number", "symbol"]
