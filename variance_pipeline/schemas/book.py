"""Tonight's book: the broker's quotes of the option positions, and P&L per position.

``position_pnl`` is what a premium seller manages from: per position the open price, the mark,
the unrealised P&L in dollars with the right sign for short and long (quantity is signed, so
``(mark - average_open_price) x quantity x multiplier`` is the P&L of either), the share of the
maximum profit a credit position has captured, the days left, whether a short leg is tested, and
the event risks before expiration. ``group_id`` ties the legs of one trade together (see
``transforms/position_pnl.py``).
"""

from __future__ import annotations

import pandera.pandas as pda

from variance_pipeline.schemas.columns import BOOLEAN, DATE, FINITE, FLOAT, INTEGER, NON_EMPTY, STRING, TIMESTAMP, Column
from variance_pipeline.schemas.dataset import Dataset

OPTION_QUOTES = Dataset(
    name="option_quotes",
    description="The broker's quote, IV and Greeks of each option position, and the quote of the VX future "
    "each held VIX option settles to (GET /market-data/by-type; funded accounts only: absent when the API "
    "does not answer).",
    date_column="as_of_date",
    grain=("as_of_date", "symbol"),
    columns=(
        Column("as_of_date", DATE, "the session whose evening snapshot this is"),
        Column("symbol", STRING, "the option (or a VIX option's VX future: /VXZ5)", checks=(NON_EMPTY,)),
        Column("instrument_type", STRING, "Equity Option, Future Option, or Future (a VIX option's VX future)"),
        Column("mark", FLOAT, "the broker's mark", True, "USD per unit", (FINITE,)),
        Column("bid", FLOAT, "bid", True, "USD per unit", (FINITE,)),
        Column("ask", FLOAT, "ask", True, "USD per unit", (FINITE,)),
        Column("volatility", FLOAT, "the broker's implied volatility", True, "fraction", (pda.Check.ge(0), FINITE)),
        Column("delta", FLOAT, "the broker's delta", True, "per unit", (pda.Check.in_range(-1.0, 1.0),)),
        Column("gamma", FLOAT, "the broker's gamma", True, "per unit", (FINITE,)),
        Column("theta", FLOAT, "the broker's theta", True, "USD per unit per day", (FINITE,)),
        Column("vega", FLOAT, "the broker's vega", True, "USD per unit per vol point", (FINITE,)),
        Column("theo_price", FLOAT, "the broker's theoretical price", True, "USD per unit", (FINITE,)),
        Column("open_interest", INTEGER, "open interest", True, "contracts", (pda.Check.ge(0),)),
        Column("fetched_at", TIMESTAMP, "when the quote was fetched", unit="UTC"),
    ),
)

POSITION_PNL = Dataset(
    name="position_pnl",
    description="P&L and what to manage, per position of the evening's positions snapshot.",
    date_column="as_of_date",
    grain=("as_of_date", "account_number", "symbol"),
    columns=(
        Column("as_of_date", DATE, "the positions snapshot's session"),
        Column("account_number", STRING, "Tastytrade account number", checks=(NON_EMPTY,)),
        Column("symbol", STRING, "the position's instrument", checks=(NON_EMPTY,)),
        Column("underlying_symbol", STRING, "the underlying (its root: SPY, /ES)", checks=(NON_EMPTY,)),
        Column("instrument_type", STRING, "Tastytrade instrument type"),
        Column("group_id", STRING, "the trade this leg belongs to: account, underlying, expiration, opening session"),
        Column("opened_on", DATE, "the New York date the position was opened", nullable=True),
        Column("option_type", STRING, "C or P; NULL for stock and futures", nullable=True),
        Column("strike", FLOAT, "strike price", True, "USD"),
        Column("expiration_date", DATE, "expiration date", nullable=True),
        Column("days_to_expiration", INTEGER, "calendar days from the session to expiration", True, "days"),
        Column("quantity", FLOAT, "signed: short < 0", unit="contracts or shares"),
        Column("multiplier", FLOAT, "units per contract", unit="units per contract", checks=(pda.Check.gt(0),)),
        Column("average_open_price", FLOAT, "average price paid or received", True, "USD per unit", (FINITE,)),
        Column("mark", FLOAT, "the evening's mark (the broker's, else the close)", True, "USD per unit", (FINITE,)),
        Column("mark_source", STRING, "mark (the broker's) or close_price (no mark sent)", nullable=True),
        Column("opening_credit", FLOAT, "-average_open_price x quantity x multiplier: > 0 received, < 0 paid",
               True, "USD", (FINITE,)),
        Column("market_value", FLOAT, "mark x quantity x multiplier (short positions are negative)", True, "USD", (FINITE,)),
        Column("unrealized_pnl", FLOAT, "(mark - average_open_price) x quantity x multiplier", True, "USD", (FINITE,)),
        Column("max_profit", FLOAT, "a short option's credit (what expiring worthless earns); NULL otherwise",
               True, "USD", (FINITE,)),
        Column("pct_of_max_profit", FLOAT, "(credit - cost to close) / credit, short options only", True, "fraction",
               (FINITE,)),
        Column("underlying_price", FLOAT, "the underlying's close the model used", True, "USD"),
        Column("delta", FLOAT, "model delta per unit (position_greeks)", True, "per unit"),
        Column("intrinsic_value", FLOAT, "max(0, S - K) for a call, max(0, K - S) for a put", True, "USD per unit"),
        Column("extrinsic_value", FLOAT, "mark - intrinsic value", True, "USD per unit"),
        Column("tested", BOOLEAN, "a short option in the money or with |delta| >= the tested threshold"),
        Column("earnings_date", DATE, "the underlying's next earnings report date (whether it falls inside "
               "the option's life is the warehouse's one rule, straddles_earnings, in book_groups)", nullable=True),
        Column("ex_dividend_date", DATE, "the underlying's next ex-dividend date", nullable=True),
        Column("dividend_amount", FLOAT, "the dividend per share expected on it", True, "USD per share"),
        Column("early_assignment_risk", BOOLEAN, "a short call with an ex-dividend date before expiration and "
               "extrinsic value below the dividend"),
    ),
)
