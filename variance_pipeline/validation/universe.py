"""The ``universe`` dataset: the symbols every later stage tracks, and where each came from.

Held underlyings come from one positions snapshot (named in ``positions_as_of``), the rest from
the watchlist; a symbol both held and watched says so. Later stages read this and nothing else,
so one run never tracks two different symbol lists.
"""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa
from pandera.engines import pandas_engine
from pandera.typing import Series

UNIVERSE_SOURCES = ("held", "watchlist", "held+watchlist")

UNIVERSE_DTYPES = {
    "as_of_date": "object",
    "symbol": "object",
    "source": "object",
    "held_positions": "int64",
    "positions_as_of": "object",
}


class UniverseSchema(pa.DataFrameModel):
    """One row per symbol of one run's universe."""

    as_of_date: Series[pandas_engine.Date]
    symbol: Series[str] = pa.Field(str_length={"min_value": 1})
    source: Series[str] = pa.Field(isin=UNIVERSE_SOURCES)
    held_positions: Series[int] = pa.Field(ge=0)
    positions_as_of: Series[pandas_engine.Date] = pa.Field(nullable=True)

    class Config:
        name = "universe"
        strict = True
        unique = ["as_of_date", "symbol"]


def universe_frame(
    as_of_date: object, held: dict[str, int], watchlist: list[str], positions_as_of: object | None
) -> pd.DataFrame:
    """Held underlyings (symbol -> position count) first, then the watchlist, without duplicates."""
    symbols = list(dict.fromkeys([*held, *watchlist]))
    watched = set(watchlist)
    rows = [
        {
            "as_of_date": as_of_date,
            "symbol": symbol,
            "source": "held+watchlist" if symbol in held and symbol in watched else "held" if symbol in held else "watchlist",
            "held_positions": int(held.get(symbol, 0)),
            "positions_as_of": positions_as_of if symbol in held else None,
        }
        for symbol in symbols
    ]
    return pd.DataFrame(rows, columns=list(UNIVERSE_DTYPES)).astype(UNIVERSE_DTYPES)
