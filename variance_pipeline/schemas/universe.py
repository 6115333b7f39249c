"""The ``universe`` dataset: the symbols every later stage tracks, and where each came from.

Held underlyings come from one positions snapshot (named in ``positions_as_of``), the rest from
the watchlist; a symbol both held and watched says so. A held index whose metrics may lack a
dividend yield brings its tracking ETF (``dividend_proxy``: SPY for SPX), whose yield prices it. Later stages read this and nothing else,
so one run never tracks two different symbol lists.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import pandera.pandas as pda

from variance_pipeline.instruments.symbology import DIVIDEND_PROXIES
from variance_pipeline.schemas.columns import DATE, INTEGER, NON_EMPTY, STRING, Column
from variance_pipeline.schemas.dataset import Dataset

UNIVERSE_SOURCES = ("held", "watchlist", "held+watchlist", "dividend_proxy")

UNIVERSE = Dataset(
    name="universe",
    description="The symbols of one run (held underlyings + watchlist), landed in the run's last session.",
    date_column="as_of_date",
    grain=("as_of_date", "symbol"),
    columns=(
        Column("as_of_date", DATE, "the last session of the run that landed it"),
        Column("symbol", STRING, "an underlying (SPY, /ES, ^VIX-style index as Tastytrade spells it)", checks=(NON_EMPTY,)),
        Column("source", STRING, "held, watchlist, held+watchlist or dividend_proxy (the ETF of a held index)",
               checks=(pda.Check.isin(UNIVERSE_SOURCES),)),
        Column("held_positions", INTEGER, "position rows exposed to the symbol (0: watchlist only)", checks=(pda.Check.ge(0),)),
        Column("positions_as_of", DATE, "the positions snapshot the held symbols came from", nullable=True),
    ),
)


def universe_frame(as_of_date: object, held: dict[str, int], watchlist: list[str], positions_as_of: object | None) -> pd.DataFrame:
    """Held underlyings (symbol -> position count) first, then the watchlist, then the dividend
    proxies of held indices not already there, without duplicates."""
    proxies = [DIVIDEND_PROXIES[s] for s in held if s in DIVIDEND_PROXIES]
    symbols = list(dict.fromkeys([*held, *watchlist, *proxies]))
    watched = set(watchlist)
    rows: list[dict[str, Any]] = [
        {
            "as_of_date": as_of_date,
            "symbol": symbol,
            "source": (
                "held+watchlist" if symbol in held and symbol in watched
                else "held" if symbol in held else "watchlist" if symbol in watched else "dividend_proxy"
            ),
            "held_positions": int(held.get(symbol, 0)),
            "positions_as_of": positions_as_of if symbol in held else None,
        }
        for symbol in symbols
    ]
    return UNIVERSE.frame(rows)
