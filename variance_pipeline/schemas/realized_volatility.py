"""The ``realized_volatility`` dataset: HV and range estimators per underlying and session.

Every volatility is nullable: NULL is the honest answer while a window lacks history or spans a
missing session. A value outside [0, 10] (0 % to 1,000 % annualised) means broken input, e.g. an
unadjusted split, and is quarantined rather than loaded.
"""

from __future__ import annotations

import pandera.pandas as pda

from variance_pipeline.schemas.columns import DATE, FLOAT, INTEGER, NON_EMPTY, STRING, Column
from variance_pipeline.schemas.dataset import Dataset

MAX_VOLATILITY = 10.0
HV_WINDOWS = (20, 30, 90, 252)  # close-to-close windows, in returns: columns hv20 ... hv252
RANGE_WINDOW = 20
RANGE_ESTIMATORS = ("parkinson", "garman_klass", "rogers_satchell", "yang_zhang")
_RANGE_NAMES = {
    "parkinson": "Parkinson high-low", "garman_klass": "Garman-Klass OHLC",
    "rogers_satchell": "Rogers-Satchell OHLC", "yang_zhang": "Yang-Zhang OHLC",
}
# The longest window (HV252) needs 252 returns, i.e. 253 closes: the candles stage fetches this
# many sessions before a run's first one, so a session's HV never depends on earlier partitions.
LOOKBACK_SESSIONS = max(HV_WINDOWS)


def _vol(name: str, description: str) -> Column:
    return Column(
        name, FLOAT, description, nullable=True, unit="fraction, annualised",
        checks=(pda.Check.in_range(0.0, MAX_VOLATILITY),),
    )


REALIZED_VOLATILITY = Dataset(
    name="realized_volatility",
    description="Realised volatility from the candles: close-to-close HV (NULL until n returns exist, "
    "and for any window spanning a missing session) and 20-session range estimators.",
    date_column="session_date",
    grain=("symbol", "session_date"),
    columns=(
        Column("symbol", STRING, "the underlying", checks=(NON_EMPTY,)),
        Column("session_date", DATE, "the XNYS session"),
        Column("close", FLOAT, "the session's close the returns end on", unit="USD", checks=(pda.Check.gt(0.0),)),
        *(_vol(f"hv{n}", f"close-to-close HV over {n} returns") for n in HV_WINDOWS),
        *(
            _vol(f"{name}{RANGE_WINDOW}", f"{_RANGE_NAMES[name]} estimator over {RANGE_WINDOW} sessions")
            for name in RANGE_ESTIMATORS
        ),
        Column(
            "returns_available", INTEGER, "consecutive returns behind the session (capped at 252)", unit="returns",
            checks=(pda.Check.in_range(0, LOOKBACK_SESSIONS),),
        ),
    ),
)
