"""Schema of the ``realized_volatility`` dataset (output of ``volatility.compute_realized_volatility``).

Every volatility is nullable: NULL is the honest answer while a window lacks history or spans a
missing session. A value outside [0, 10] (0 % to 1,000 % annualised) means broken input, e.g. an
unadjusted split, and is quarantined rather than loaded.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import pandera.pandas as pa
from pandera.typing import Series

MAX_VOLATILITY = 10.0


def _vol_field() -> Any:
    """A volatility: NULL allowed, otherwise a fraction in [0, MAX_VOLATILITY]."""
    return pa.Field(nullable=True, ge=0.0, le=MAX_VOLATILITY)


class RealizedVolatilitySchema(pa.DataFrameModel):
    """One row per (symbol, session_date); volatilities are annualised fractions (0.2 = 20 %)."""

    symbol: Series[str] = pa.Field(nullable=False, str_length={"min_value": 1})
    session_date: Series[date] = pa.Field(nullable=False)
    close: Series[float] = pa.Field(nullable=False, gt=0.0)
    hv20: Series[float] = _vol_field()
    hv30: Series[float] = _vol_field()
    hv90: Series[float] = _vol_field()
    hv252: Series[float] = _vol_field()
    parkinson20: Series[float] = _vol_field()
    garman_klass20: Series[float] = _vol_field()
    rogers_satchell20: Series[float] = _vol_field()
    yang_zhang20: Series[float] = _vol_field()
    returns_available: Series[int] = pa.Field(nullable=False, ge=0, le=252)

    class Config:
        unique = ["symbol", "session_date"]
        strict = False
        coerce = False
