"""The ``market_metrics`` and ``iv_term_structure`` datasets: Tastytrade's volatility snapshot.

Every volatility, rank and percentile here is a fraction. The API mixes fractions and percents
in one item, so a unit slip (a 21.87 where 0.2187 belongs) is the likeliest bug; bounding every
volatility column to [0, 5] (500 % covers the wildest meme stock) catches it per row. The borrow
rate arrives as a percent too ("24.5013") and is stored as a fraction, without an upper bound:
a real hard-to-borrow rate can exceed 500 %.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandera.pandas as pda

from variance_pipeline.schemas.columns import (
    BOOLEAN, DATE, FINITE, FLOAT, INTEGER, NON_EMPTY, STRING, TIMESTAMP, Column, fraction,
)
from variance_pipeline.schemas.dataset import Dataset

STANDARD_CHAIN = "Standard"
"""The chain type of an underlying's own options, and what a missing ``option_chain_type`` means."""


@dataclass(frozen=True)
class MeaningWhenMissing(Column):
    """A required column whose absence has a meaning: validation fills ``when_missing`` in (pandera's
    column default), so an API entry without the field is neither quarantined nor a NULL in the
    grain. The parser keeps what the API sent (nothing); the validated frame, which is what lands,
    holds the meaning."""

    when_missing: str = ""

    def pandera_column(self, unique: bool = False) -> pda.Column:
        column = super().pandera_column(unique)
        column.default = self.when_missing
        return column


def _vol(name: str, description: str) -> Column:
    return Column(name, FLOAT, description, nullable=True, unit="fraction", checks=(fraction(),))


def _signed_vol(name: str, description: str) -> Column:
    return Column(name, FLOAT, description, nullable=True, unit="fraction", checks=(fraction(-5.0, 5.0),))


MARKET_METRICS = Dataset(
    name="market_metrics",
    description="Tastytrade's volatility metrics per underlying (evening snapshot).",
    date_column="as_of_date",
    grain=("as_of_date", "symbol"),
    columns=(
        Column("as_of_date", DATE, "the session whose evening snapshot this is"),
        Column("symbol", STRING, "the underlying", checks=(NON_EMPTY,)),
        _vol("implied_volatility", "Tastytrade's IV index (implied-volatility-index)"),
        _signed_vol("implied_volatility_5_day_change", "change of the IV index over 5 days"),
        _vol("iv_rank", "IV rank (implied-volatility-index-rank)"),
        _vol("tos_iv_rank", "IV rank as thinkorswim computes it"),
        _vol("tw_iv_rank", "IV rank as tastyworks computes it"),
        _vol("iv_percentile", "IV percentile over the year"),
        _vol("iv_30_day", "30-day implied volatility (sent as a percent)"),
        _vol("hv_30_day", "Tastytrade's 30-day historical volatility (sent as a percent)"),
        _vol("hv_60_day", "Tastytrade's 60-day historical volatility"),
        _vol("hv_90_day", "Tastytrade's 90-day historical volatility"),
        _signed_vol("iv_hv_30_day_difference", "iv_30_day - hv_30_day"),
        Column("liquidity_value", FLOAT, "Tastytrade's liquidity value", True, checks=(pda.Check.ge(0), FINITE)),
        Column("liquidity_rank", FLOAT, "Tastytrade's liquidity rank", True, checks=(pda.Check.ge(0), FINITE)),
        Column("liquidity_rating", INTEGER, "liquidity rating, 0 (illiquid) to 5", True, "stars", (pda.Check.in_range(0, 5),)),
        Column("beta", FLOAT, "beta against SPY", True, checks=(FINITE,)),
        Column("corr_spy_3month", FLOAT, "3-month correlation with SPY", True, checks=(pda.Check.in_range(-1.0, 1.0),)),
        Column("earnings_date", DATE, "the next expected earnings report date", True),
        Column("earnings_estimated", BOOLEAN, "true when the earnings date is the broker's estimate", True),
        Column("market_cap", FLOAT, "market capitalisation", True, "USD", (pda.Check.ge(0), FINITE)),
        Column("dividend_yield", FLOAT, "annual dividend yield", True, "fraction", (pda.Check.ge(0), FINITE)),
        Column("dividend_rate_per_share", FLOAT, "the latest dividend per share", True, "USD per share", (pda.Check.ge(0),)),
        Column("dividend_ex_date", DATE, "the latest ex-dividend date", nullable=True),
        Column("dividend_next_date", DATE, "the next ex-dividend date the broker expects", nullable=True),
        # No upper bound: hard-to-borrow names are lent at 500 %+ a year, and a bound would
        # quarantine their whole row (IV, ranks, earnings); the unit is fixed by field at parse.
        Column("borrow_rate", FLOAT, "stock borrow rate (sent as a percent)", True, "fraction", (pda.Check.ge(0), FINITE)),
        Column("lendability", STRING, "Easy To Borrow, Locate Required, ...", True),
        Column("implied_volatility_updated_at", TIMESTAMP, "when the IV index was last computed", True, "UTC"),
        Column("fetched_at", TIMESTAMP, "when the snapshot was taken", unit="UTC"),
    ),
)

IV_TERM_STRUCTURE = Dataset(
    name="iv_term_structure",
    description="Implied volatility per option expiration, settlement and chain of each underlying (evening "
    "snapshot); a Non-standard chain lands beside the Standard one of its date and settlement.",
    date_column="as_of_date",
    # The chain type is part of the grain (schema version 7): a Non-standard entry on the date and
    # settlement of a Standard one is another row, not a duplicate that quarantines both.
    grain=("as_of_date", "symbol", "expiration_date", "settlement_type", "option_chain_type"),
    columns=(
        Column("as_of_date", DATE, "the session whose evening snapshot this is"),
        Column("symbol", STRING, "the underlying", checks=(NON_EMPTY,)),
        Column("expiration_date", DATE, "the option expiration"),
        Column("settlement_type", STRING, "AM or PM settlement"),
        MeaningWhenMissing(
            "option_chain_type", STRING, f"Standard or Non-standard (adjusted deliverables); missing in the API: "
            f"{STANDARD_CHAIN}. Only Standard rows are an expiration's IV", when_missing=STANDARD_CHAIN,
        ),
        _vol("implied_volatility", "the expiration's implied volatility"),
        Column("fetched_at", TIMESTAMP, "when the snapshot was taken", unit="UTC"),
    ),
)
