"""The risk datasets: the risk-free rate snapshot and the model Greeks per position.

A NaN Greek, a rate outside [-0.05, 0.25] or a priced option without an IV source would put a
wrong number in a trader's risk; such rows are quarantined, never loaded.
"""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pda

from variance_pipeline.schemas.columns import DATE, FINITE, FLOAT, NON_EMPTY, STRING, TIMESTAMP, Column
from variance_pipeline.schemas.dataset import Dataset

RISK_FREE_RATE = Dataset(
    name="risk_free_rate",
    description="Tastytrade's public risk-free rate (the Black-Scholes rate of its clients), per session.",
    date_column="as_of_date",
    grain=("as_of_date",),
    columns=(
        Column("as_of_date", DATE, "the session whose evening snapshot this is"),
        Column("risk_free_rate", FLOAT, "annual rate", unit="fraction", checks=(pda.Check.in_range(-0.05, 0.25),)),
        Column("fetched_at", TIMESTAMP, "when it was fetched", unit="UTC"),
    ),
)

IV_SOURCES = ("mark", "exact", "interpolated", "extrapolated")
MODELS = ("black_scholes_merton", "black_76")
UNDERLYING_PRICE_SOURCES = ("close", "root_continuous", "quote_mark")


def _greek(name: str, description: str, unit: str, *checks: pda.Check) -> Column:
    return Column(name, FLOAT, description, unit=unit, checks=(*checks, FINITE))


def _options_complete(frame: pd.DataFrame) -> pd.Series:
    option = frame["option_type"].notna()
    return ~option | (frame["model"].notna() & frame["iv_source"].notna() & frame["years_to_expiration"].notna())


POSITION_GREEKS = Dataset(
    name="position_greeks",
    description="Model price and Greeks per position of the evening snapshot: Black-Scholes-Merton with "
    "a dividend yield (equity, ETF, index options) or Black-76 (future options); stock and futures "
    "have delta 1 per unit. position_* = per-unit Greek x signed quantity x multiplier.",
    date_column="as_of_date",
    grain=("as_of_date", "account_number", "symbol"),
    coerce=True,  # nullable extension dtypes (Float64 with <NA>) -> float64 with NaN
    columns=(
        Column("as_of_date", DATE, "the positions snapshot's session"),
        Column("account_number", STRING, "Tastytrade account number", checks=(NON_EMPTY,)),
        Column("symbol", STRING, "the position's instrument", checks=(NON_EMPTY,)),
        Column("instrument_type", STRING, "Tastytrade instrument type"),
        Column("underlying_symbol", STRING, "the API's underlying-symbol", nullable=True),
        Column("root_symbol", STRING, "the underlying whose volatility is used"),
        Column("option_type", STRING, "C or P; NULL for stock and futures", True, checks=(pda.Check.isin(["C", "P"]),)),
        Column("strike", FLOAT, "strike price", True, "USD", (pda.Check.gt(0),)),
        Column("expiration_date", DATE, "expiration date", True),
        Column("days_to_expiration", FLOAT, "calendar days from the session close to expiry", True, "days"),
        Column("years_to_expiration", FLOAT, "the exact T the model used (365-day year)", True, "years", (pda.Check.gt(0),)),
        Column("quantity", FLOAT, "signed: short < 0", unit="contracts or shares"),
        Column("multiplier", FLOAT, "units per contract", unit="units per contract", checks=(pda.Check.gt(0),)),
        Column("underlying_price", FLOAT, "the underlying's close the model used", unit="USD", checks=(pda.Check.gt(0),)),
        Column(
            "underlying_price_source", STRING, "close, or root_continuous (the future's own close unknown), or "
            "quote_mark (a VIX option's VX future: the broker's mark in option_quotes, no close)",
            checks=(pda.Check.isin(UNDERLYING_PRICE_SOURCES),),
        ),
        Column("implied_volatility", FLOAT, "the IV the model used", True, "fraction", (pda.Check.gt(0), pda.Check.le(10))),
        Column(
            "iv_source", STRING, "mark (solved from the position's own mark), else the term structure's exact, "
            "interpolated or extrapolated IV", True, checks=(pda.Check.isin(IV_SOURCES),),
        ),
        Column("mark_price", FLOAT, "the broker's mark per unit the IV was solved from", True, "USD per unit"),
        Column("term_structure_iv", FLOAT, "the term structure's IV of the expiration (for comparison)", True, "fraction"),
        Column("mark_iv_note", STRING, "why the mark gave no IV (no mark, expires today, below intrinsic, ...)", True),
        Column("risk_free_rate", FLOAT, "rate the model used", True, "fraction"),
        Column("dividend_yield", FLOAT, "continuous dividend yield the model used", True, "fraction", (pda.Check.ge(0),)),
        Column(
            "dividend_yield_source", STRING, "metrics (the root's own), proxy:<ETF> (an index's tracking ETF) or none",
            nullable=True,
        ),
        Column("model", STRING, "black_scholes_merton or black_76", True, checks=(pda.Check.isin(MODELS),)),
        _greek("price", "model value per unit", "USD per unit", pda.Check.ge(0)),
        _greek("delta", "per unit", "per 1 USD of the underlying", pda.Check.in_range(-1.0, 1.0)),
        _greek("gamma", "per unit", "per 1 USD squared", pda.Check.ge(0)),
        _greek("theta", "per unit, per calendar day", "USD per day"),
        _greek("vega", "per unit, per vol point (0.01)", "USD per vol point", pda.Check.ge(0)),
        _greek("position_delta", "delta x quantity x multiplier", "underlying units"),
        _greek("position_gamma", "gamma x quantity x multiplier", "underlying units per USD"),
        _greek("position_theta", "theta x quantity x multiplier", "USD per day"),
        _greek("position_vega", "vega x quantity x multiplier", "USD per vol point"),
        Column("beta", FLOAT, "the underlying's beta against SPY", True),
        Column(
            "beta_weighted_delta", FLOAT, "position_delta x beta x underlying_price / SPY close (NULL without beta "
            "or SPY)", True, "SPY shares",
        ),
    ),
    checks=(pda.Check(_options_complete, name="priced_options_have_a_model_and_iv"),),
)
