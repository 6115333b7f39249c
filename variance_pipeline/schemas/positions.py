"""The ``positions`` dataset: one row per (session, account, contract), signed quantities.

Checks what a trader's exposure numbers depend on: a quantity whose sign disagrees with its
direction, a zero multiplier or an unknown instrument type would silently corrupt every notional
computed downstream, so such rows are quarantined and reported instead.
"""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pda

from variance_pipeline.schemas.columns import DATE, FINITE, FLOAT, NON_EMPTY, STRING, TIMESTAMP, Column
from variance_pipeline.schemas.dataset import Dataset

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


def _sign_matches_direction(frame: pd.DataFrame) -> pd.Series:
    """Long > 0, Short < 0, Zero == 0: the sign is what every exposure sum relies on."""
    direction, quantity = frame["quantity_direction"], frame["quantity"]
    return (
        ((direction == "Long") & (quantity > 0))
        | ((direction == "Short") & (quantity < 0))
        | ((direction == "Zero") & (quantity == 0))
    )


POSITIONS = Dataset(
    name="positions",
    description="Open positions of every open account, as the evening snapshot saw them.",
    date_column="as_of_date",
    grain=("as_of_date", "account_number", "symbol"),
    columns=(
        Column("as_of_date", DATE, "the session whose evening snapshot this is"),
        Column("account_number", STRING, "Tastytrade account number", checks=(NON_EMPTY,)),
        Column("symbol", STRING, "the position's instrument, as Tastytrade spells it", checks=(NON_EMPTY,)),
        Column("instrument_type", STRING, "Tastytrade instrument type", checks=(pda.Check.isin(INSTRUMENT_TYPES),)),
        Column("underlying_symbol", STRING, "the API's underlying-symbol (a future option's own future)", nullable=True),
        Column("root_symbol", STRING, "the underlying whose volatility matters (SPY, /ES)", checks=(NON_EMPTY,)),
        Column("quantity", FLOAT, "signed: short < 0", unit="contracts or shares", checks=(FINITE,)),
        Column("quantity_direction", STRING, "Long, Short or Zero", checks=(pda.Check.isin(QUANTITY_DIRECTIONS),)),
        Column("average_open_price", FLOAT, "average price paid or received per unit", True, "USD per unit", (FINITE,)),
        Column("close_price", FLOAT, "the previous session's close of the instrument", True, "USD per unit", (FINITE,)),
        Column("mark", FLOAT, "the position's market value at the broker's mark (mark-price x quantity x "
               "multiplier), unsigned; only with include-marks", True, "USD", (FINITE,)),
        Column("mark_price", FLOAT, "the broker's mark per unit at the snapshot", True, "USD per unit", (FINITE,)),
        Column(
            "multiplier", FLOAT, "units per contract (100 for equity options; 0.1 for /MBT)", unit="units per contract",
            checks=(pda.Check.gt(0), FINITE),
        ),
        Column("cost_effect", STRING, "Credit or Debit: how the position was opened", True, checks=(pda.Check.isin(COST_EFFECTS),)),
        Column("expires_at", TIMESTAMP, "expiration instant (options, futures)", True, "UTC"),
        Column("streamer_symbol", STRING, "the symbol on the quote stream", True),
        Column("created_at", TIMESTAMP, "when the position was opened", True, "UTC"),
        Column("updated_at", TIMESTAMP, "when the broker last changed it", True, "UTC"),
        Column("fetched_at", TIMESTAMP, "when the snapshot was taken", unit="UTC"),
    ),
    checks=(pda.Check(_sign_matches_direction, name="quantity_sign_matches_direction"),),
)
