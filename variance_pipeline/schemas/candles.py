"""The ``candles`` dataset: final daily bars on XNYS sessions.

Yahoo occasionally serves impossible bars (a high below the close, a zero price, a bar dated on a
holiday). Realised volatility takes logs of these prices, so one bad bar poisons 252 sessions of
HV; the checks below let ``validate_frame`` quarantine such rows and keep the rest.
"""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pda

from variance_pipeline.calendar import sessions_in_range
from variance_pipeline.schemas.columns import DATE, FLOAT, INTEGER, NON_EMPTY, STRING, Column
from variance_pipeline.schemas.dataset import Dataset


def xnys_session_mask(dates: pd.Series) -> pd.Series:
    """True where a date is an XNYS session (one calendar lookup for the whole column)."""
    if dates.empty:
        return pd.Series(True, index=dates.index, dtype=bool)
    return dates.isin(set(sessions_in_range(min(dates), max(dates))))


def _price(name: str, description: str) -> Column:
    return Column(name, FLOAT, description, unit="USD (or the quote currency)", checks=(pda.Check.gt(0),))


CANDLES = Dataset(
    name="candles",
    description="Daily OHLCV bars (final bars only) per underlying, from Yahoo's chart endpoint.",
    date_column="session_date",
    grain=("symbol", "session_date"),
    columns=(
        Column("symbol", STRING, "the Tastytrade-style underlying (SPY, /ES)", checks=(NON_EMPTY,)),
        Column("yahoo_ticker", STRING, "the Yahoo ticker it was fetched as (SPY, ES=F)", checks=(NON_EMPTY,)),
        Column(
            "session_date", DATE, "the XNYS session of the bar",
            checks=(pda.Check(xnys_session_mask, name="xnys_session"),),
        ),
        _price("open", "opening price"),
        _price("high", "session high"),
        _price("low", "session low"),
        _price("close", "close, split-adjusted as of the fetch (Yahoo's close)"),
        _price("adj_close", "close, split- and dividend-adjusted"),
        Column("volume", INTEGER, "shares or contracts traded", True, checks=(pda.Check.ge(0),)),
    ),
    checks=(
        pda.Check(lambda f: f["high"] >= f[["open", "close"]].max(axis=1), name="high_covers_open_close"),
        pda.Check(lambda f: f["low"] <= f[["open", "close"]].min(axis=1), name="low_under_open_close"),
    ),
)
