"""Schema of the candles frame (lake and warehouse): final daily bars on XNYS sessions.

Yahoo occasionally serves impossible bars (a high below the close, a zero price, a bar dated on a
holiday). Realised volatility takes logs of these prices, so one bad bar poisons 252 sessions of
HV; the checks below let ``validate_frame`` quarantine such rows and keep the rest.
"""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa
from pandera.engines.pandas_engine import Date
from pandera.typing import Series

from variance_pipeline.calendar import sessions_in_range

CANDLE_COLUMNS = ("symbol", "yahoo_ticker", "session_date", "open", "high", "low", "close", "adj_close", "volume")


def xnys_session_mask(dates: pd.Series) -> pd.Series:
    """True where a date is an XNYS session (one calendar lookup for the whole column)."""
    if dates.empty:
        return pd.Series(True, index=dates.index, dtype=bool)
    return dates.isin(set(sessions_in_range(min(dates), max(dates))))


class CandlesSchema(pa.DataFrameModel):
    """One row per (symbol, session_date); prices positive and consistent with the day's range."""

    symbol: Series[str] = pa.Field(str_length={"min_value": 1})
    yahoo_ticker: Series[str] = pa.Field(str_length={"min_value": 1})
    session_date: Series[Date]
    open: Series[float] = pa.Field(gt=0)
    high: Series[float] = pa.Field(gt=0)
    low: Series[float] = pa.Field(gt=0)
    close: Series[float] = pa.Field(gt=0)
    adj_close: Series[float] = pa.Field(gt=0)
    volume: Series[pd.Int64Dtype] = pa.Field(ge=0, nullable=True)

    @pa.check("session_date", name="xnys_session")
    def xnys_session(cls, dates: Series[Date]) -> Series[bool]:
        """Every partition and HV window counts XNYS sessions; other dates cannot be placed."""
        return xnys_session_mask(dates)

    @pa.dataframe_check(name="high_covers_open_close")
    def high_covers_open_close(cls, frame: pd.DataFrame) -> Series[bool]:
        return frame["high"] >= frame[["open", "close"]].max(axis=1)

    @pa.dataframe_check(name="low_under_open_close")
    def low_under_open_close(cls, frame: pd.DataFrame) -> Series[bool]:
        return frame["low"] <= frame[["open", "close"]].min(axis=1)

    class Config:
        unique = ["symbol", "session_date"]
