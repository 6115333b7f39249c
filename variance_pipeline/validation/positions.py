"""The ``positions`` dataset: one row per (session, account, contract), signed quantities.

Checks what a trader's exposure numbers depend on: a quantity whose sign disagrees with its
direction, a zero multiplier or an unknown instrument type would silently corrupt every notional
computed downstream, so such rows are quarantined and reported instead.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.engines import pandas_engine
from pandera.typing import Series

# Tastytrade's instrument types (its API's InstrumentType values, "Unknown" left out on purpose:
# a position the API cannot classify needs a human before it reaches the warehouse).
INSTRUMENT_TYPES = (
    "Bond",
    "Cryptocurrency",
    "Currency Pair",
    "Equity",
    "Equity Offering",
    "Equity Option",
    "Fixed Income Security",
    "Future",
    "Future Option",
    "Index",
    "Liquidity Pool",
    "Warrant",
)
QUANTITY_DIRECTIONS = ("Long", "Short", "Zero")
COST_EFFECTS = ("Credit", "Debit", "None")
UTC_US = {"unit": "us", "tz": "UTC"}


class PositionsSchema(pa.DataFrameModel):
    """Typed, signed positions; extra columns are allowed, the contract's columns are required."""

    as_of_date: Series[pandas_engine.Date]
    account_number: Series[str] = pa.Field(str_length={"min_value": 1})
    symbol: Series[str] = pa.Field(str_length={"min_value": 1})
    instrument_type: Series[str] = pa.Field(isin=INSTRUMENT_TYPES)
    underlying_symbol: Series[str] = pa.Field(nullable=True)
    root_symbol: Series[str] = pa.Field(str_length={"min_value": 1})
    quantity: Series[float]
    quantity_direction: Series[str] = pa.Field(isin=QUANTITY_DIRECTIONS)
    average_open_price: Series[float] = pa.Field(nullable=True)
    close_price: Series[float] = pa.Field(nullable=True)
    mark: Series[float] = pa.Field(nullable=True)
    multiplier: Series[int] = pa.Field(gt=0)
    cost_effect: Series[str] = pa.Field(nullable=True, isin=COST_EFFECTS)
    expires_at: Series[pd.DatetimeTZDtype] = pa.Field(nullable=True, dtype_kwargs=UTC_US)
    streamer_symbol: Series[str] = pa.Field(nullable=True)
    created_at: Series[pd.DatetimeTZDtype] = pa.Field(nullable=True, dtype_kwargs=UTC_US)
    updated_at: Series[pd.DatetimeTZDtype] = pa.Field(nullable=True, dtype_kwargs=UTC_US)
    fetched_at: Series[pd.DatetimeTZDtype] = pa.Field(dtype_kwargs=UTC_US)

    @pa.check("quantity", "average_open_price", "close_price", "mark", name="finite")
    def _finite(cls, values: Series[float]) -> Series[bool]:
        """No infinities (nulls are handled by ``nullable``; prices may be negative, e.g. /CL 2020)."""
        return pd.Series(np.isfinite(values), index=values.index)

    @pa.dataframe_check(name="quantity_sign_matches_direction")
    def _sign_matches_direction(cls, frame: pd.DataFrame) -> Series[bool]:
        """Long > 0, Short < 0, Zero == 0: the sign is what every exposure sum relies on."""
        direction, quantity = frame["quantity_direction"], frame["quantity"]
        return (
            ((direction == "Long") & (quantity > 0))
            | ((direction == "Short") & (quantity < 0))
            | ((direction == "Zero") & (quantity == 0))
        )

    class Config:
        name = "positions"
        strict = False
        unique = ["as_of_date", "account_number", "symbol"]
