"""The ``earnings_reports`` dataset: past earnings dates per symbol, from Tastytrade's history."""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa
from pandera.engines import pandas_engine
from pandera.typing import Series

UTC_US = {"unit": "us", "tz": "UTC"}


class EarningsReportsSchema(pa.DataFrameModel):
    """One row per (symbol, report date); the API gives no time of day."""

    symbol: Series[str] = pa.Field(str_length={"min_value": 1})
    occurred_date: Series[pandas_engine.Date]
    eps: Series[float] = pa.Field(nullable=True)
    fetched_at: Series[pd.DatetimeTZDtype] = pa.Field(dtype_kwargs=UTC_US)

    class Config:
        name = "earnings_reports"
        strict = True
        unique = ["symbol", "occurred_date"]
