"""Realised volatility per (symbol, session), computed set-based in DuckDB.

Why DuckDB window functions: the same SQL runs over a few hundred rows (the daily load) or
millions (a backfill) without a Python loop per symbol or per row, and the windows read like the
textbook formulas (``ROWS BETWEEN n - 1 PRECEDING AND CURRENT ROW``).

Conventions (formulas as in R's TTR package), all annualised with N = 252 and returned as
fractions (0.20 = 20 %):

* ``hv20``, ``hv30``, ``hv90``, ``hv252``: close-to-close, ``sqrt(252) * stdev_sample(ln(C_t /
  C_{t-1}))`` over the last n log returns (n + 1 closes), ddof = 1.
* ``parkinson20``: ``sqrt(N / (4 n ln2) * sum ln(H/L)^2)``.
* ``garman_klass20``: ``sqrt(N / n * sum(0.5 ln(H/L)^2 - (2 ln2 - 1) ln(C/O)^2))``.
* ``rogers_satchell20``: ``sqrt(N / n * sum(ln(H/C) ln(H/O) + ln(L/C) ln(L/O)))``.
* ``yang_zhang20``: ``sqrt(s_o^2 + k s_c^2 + (1 - k) s_rs^2)`` with ``k = 0.34 / (1.34 + (n + 1)
  / (n - 1))``, ``s_o^2 = N * var_sample(ln(O_t / C_{t-1}))``, ``s_c^2 = N * var_sample(ln(C_t /
  O_t))`` and ``s_rs^2`` the Rogers-Satchell variance above.

The gap rule (a window never silently bridges a missing session):
    The expected sessions are the XNYS sessions (``calendar.sessions_in_range``) between each
    symbol's first and last bar in the input. Each symbol is laid onto that session grid with a
    LEFT JOIN, so a session without a bar (halted, not delivered) becomes a grid row whose prices
    are NULL, and every return or range term that touches it is NULL. An estimator over n
    sessions is reported only when all n of its terms in the window are non-NULL; otherwise it
    is NULL, exactly as when the history is too short. Once the window has moved past the gap,
    values come back. Bars dated on a non-XNYS day are ignored. A bar with a NULL, NaN, infinite or
    non-positive price is unusable and counts as missing for every estimator (its row is still
    reported, with the close as delivered, so that validation can flag it).

    "All n terms non-NULL" is evaluated through ``run``, the number of usable bars in a row
    ending at the session (its grid index minus that of the last missing or unusable session).
    Over a dense grid, ``count(term) OVER (n rows) = n`` is the same condition as: HVn needs
    ``run >= n + 1`` (n returns need n + 1 closes); Parkinson, Garman-Klass and Rogers-Satchell
    need ``run >= 20``; Yang-Zhang needs ``run >= 21`` (its 20 overnight returns need the close
    before the window). One running maximum replaces a ``count`` window per estimator, which
    made the full-history run about a third slower. ``returns_available`` reports ``run - 1``
    capped at 252: HVn is non-NULL exactly when ``returns_available >= n``.

Negative variance: the Garman-Klass, Rogers-Satchell and Yang-Zhang variances cannot be negative
for consistent bars (L <= O, C <= H); a sum below zero is either floating-point rounding (within
``1e-12``, clamped to 0) or a bar whose open or close lies outside its high-low range, which gives
NULL rather than a made-up number. A zero-range bar (H = L = O = C) contributes exactly 0.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from datetime import date

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from variance_pipeline.calendar import sessions_in_range

TRADING_DAYS = 252
HV_WINDOWS = (20, 30, 90, 252)
RANGE_WINDOW = 20
# Sessions of history needed before a requested session: HV252 reads 252 returns, i.e. the
# closes of the 252 sessions before it plus its own.
LOOKBACK_SESSIONS = max(HV_WINDOWS)
# Rounding can push a variance that is analytically >= 0 a hair below zero; beyond this it is bad data.
NEGATIVE_VARIANCE_TOLERANCE = 1e-12

INPUT_COLUMNS = ("symbol", "session_date", "open", "high", "low", "close")
RANGE_ESTIMATORS = ("parkinson", "garman_klass", "rogers_satchell", "yang_zhang")
VOL_COLUMNS = (*(f"hv{n}" for n in HV_WINDOWS), *(f"{name}{RANGE_WINDOW}" for name in RANGE_ESTIMATORS))
OUTPUT_COLUMNS = ("symbol", "session_date", "close", *VOL_COLUMNS, "returns_available")


def _double(value: float) -> str:
    """A float as a DuckDB DOUBLE literal (a bare ``0.139`` would be a DECIMAL and can overflow)."""
    return f"CAST({value!r} AS DOUBLE)"


def _hv_sql(n: int) -> str:
    """HVn, reported only when the last n + 1 sessions all have a usable bar (n returns)."""
    return (
        f"CASE WHEN run >= {n + 1} "
        f"THEN {_double(math.sqrt(TRADING_DAYS))} * stddev_samp(r) OVER w{n} END AS hv{n}"
    )


def _range_variances_sql() -> str:
    """Annualised variances of the 20-session range estimators, NULL without 20 (21) usable bars."""
    n, big_n = RANGE_WINDOW, TRADING_DAYS
    k = 0.34 / (1.34 + (n + 1) / (n - 1))
    parkinson = _double(big_n / (4 * n * math.log(2.0)))
    return f"""
        CASE WHEN run >= {n} THEN {parkinson} * sum(hl2) OVER w{n} END AS parkinson_var,
        CASE WHEN run >= {n} THEN {_double(big_n / n)} * sum(gk) OVER w{n} END AS gk_var,
        CASE WHEN run >= {n} THEN {_double(big_n / n)} * sum(rs) OVER w{n} END AS rs_var,
        CASE WHEN run >= {n + 1}
             THEN {_double(big_n)} * var_samp(overnight) OVER w{n}
                  + {_double(k * big_n)} * var_samp(oc) OVER w{n}
                  + {_double((1 - k) * big_n / n)} * sum(rs) OVER w{n} END AS yz_var"""


def _windows_sql() -> str:
    return "WINDOW " + ",\n       ".join(
        f"w{n} AS (PARTITION BY symbol ORDER BY idx ROWS BETWEEN {n - 1} PRECEDING AND CURRENT ROW)"
        for n in sorted({*HV_WINDOWS, RANGE_WINDOW})
    )


def _safe_sqrt(variance: str) -> str:
    """sqrt that clamps rounding-level negatives to 0 and gives NULL for genuinely negative sums."""
    tolerance = _double(-NEGATIVE_VARIANCE_TOLERANCE)
    return f"CASE WHEN {variance} >= {tolerance} THEN sqrt(greatest({variance}, 0)) END"


_SQL = f"""
WITH bars AS (
    -- A bar is usable when all four prices can enter a logarithm (NaN > 0 is true in DuckDB,
    -- hence isfinite).
    SELECT symbol, session_date, close AS close_reported,
           coalesce(open > 0 AND high > 0 AND low > 0 AND close > 0
                    AND isfinite(open + high + low + close), false) AS usable,
           open AS o, high AS h, low AS l, close AS c
    FROM candles
),
span AS (
    -- Inner join with the grid: bars on non-session dates drop out here.
    SELECT b.symbol, min(g.idx) AS lo, max(g.idx) AS hi
    FROM bars b JOIN grid g USING (session_date)
    GROUP BY b.symbol
),
laid AS (
    -- The gap rule: every expected session gets a row; a missing or unusable bar has NULL prices.
    SELECT s.symbol, s.lo, g.idx, g.session_date, b.close_reported,
           b.symbol IS NOT NULL AS has_bar,
           coalesce(b.usable, false) AS usable,
           CASE WHEN b.usable THEN b.o END AS o,
           CASE WHEN b.usable THEN b.h END AS h,
           CASE WHEN b.usable THEN b.l END AS l,
           CASE WHEN b.usable THEN b.c END AS c
    FROM span s
    JOIN grid g ON g.idx BETWEEN s.lo AND s.hi
    LEFT JOIN bars b ON b.symbol = s.symbol AND b.session_date = g.session_date
),
terms AS (
    SELECT symbol, idx, session_date, close_reported, has_bar,
           -- run: usable bars in a row ending here (0 when this session's bar is missing).
           idx - coalesce(max(CASE WHEN NOT usable THEN idx END) OVER upto, lo - 1) AS run,
           ln(c / lag(c) OVER upto) AS r,
           ln(o / lag(c) OVER upto) AS overnight,
           ln(c / o) AS oc,
           ln(h / l) * ln(h / l) AS hl2,
           {_double(0.5)} * ln(h / l) * ln(h / l)
               - {_double(2 * math.log(2.0) - 1)} * ln(c / o) * ln(c / o) AS gk,
           ln(h / c) * ln(h / o) + ln(l / c) * ln(l / o) AS rs
    FROM laid
    WINDOW upto AS (PARTITION BY symbol ORDER BY idx ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
),
windowed AS (
    SELECT symbol, session_date, has_bar, close_reported AS close,
        {", ".join(_hv_sql(n) for n in HV_WINDOWS)},{_range_variances_sql()},
        least(greatest(run - 1, 0), {max(HV_WINDOWS)}) AS returns_available
    FROM terms
    {_windows_sql()}
)
SELECT symbol, session_date, close, {", ".join(f"hv{n}" for n in HV_WINDOWS)},
       sqrt(parkinson_var) AS parkinson{RANGE_WINDOW},
       {_safe_sqrt("gk_var")} AS garman_klass{RANGE_WINDOW},
       {_safe_sqrt("rs_var")} AS rogers_satchell{RANGE_WINDOW},
       {_safe_sqrt("yz_var")} AS yang_zhang{RANGE_WINDOW},
       returns_available
FROM windowed
WHERE has_bar AND session_date IN (SELECT session_date FROM requested)
ORDER BY symbol, session_date
"""


def _as_arrow(candles: pd.DataFrame | pa.Table) -> pa.Table:
    """The six input columns as Arrow, with ``session_date`` as date32 and prices as float64."""
    names = candles.column_names if isinstance(candles, pa.Table) else list(candles.columns)
    missing = [c for c in INPUT_COLUMNS if c not in names]
    if missing:
        raise ValueError(f"candles lack column(s) {missing}; need {list(INPUT_COLUMNS)}")
    if isinstance(candles, pd.DataFrame):
        table = pa.Table.from_pandas(candles[list(INPUT_COLUMNS)], preserve_index=False)
    else:
        table = candles.select(list(INPUT_COLUMNS))
    return pa.table(
        {
            "symbol": pc.cast(table["symbol"], pa.string()),
            "session_date": pc.cast(table["session_date"], pa.date32()),
            **{c: pc.cast(table[c], pa.float64()) for c in INPUT_COLUMNS[2:]},
        }
    )


def _session_grid(table: pa.Table, requested: list[date]) -> list[date]:
    """The XNYS sessions the windows run over: the input's span, cut to the requested sessions.

    It starts ``LOOKBACK_SESSIONS`` sessions before the first requested session (or at the first
    bar) and ends at the last requested session (or the last bar); empty when nothing requested
    can have a bar.
    """
    bounds = pc.min_max(table["session_date"]).as_py()
    if not requested or bounds["min"] is None:
        return []
    expected = sessions_in_range(bounds["min"], min(bounds["max"], requested[-1]))
    first = bisect.bisect_left(expected, requested[0])
    if first == len(expected):
        return []
    return expected[max(first - LOOKBACK_SESSIONS, 0) :]


def compute_realized_volatility(
    candles: pd.DataFrame | pa.Table,
    sessions: Sequence[date],
    con: duckdb.DuckDBPyConnection | None = None,
) -> pd.DataFrame:
    """Realised volatility for every requested session on which a symbol has a bar.

    ``candles`` holds one daily bar per (symbol, session_date) with ``open, high, low, close``
    (other columns are ignored) and must include the lookback: the 252 sessions before the first
    requested session for HV252 (21 for Yang-Zhang, 20 for the other range estimators). Older
    history is trimmed before the windows run, so passing a long history for a daily load costs
    little.
    ``sessions`` are the sessions to report; the rest of ``candles`` only feeds the windows.

    Returns one row per (symbol, session_date), sorted by both, with columns ``symbol,
    session_date`` (``datetime.date``), ``close``, the float64 volatilities ``hv20, hv30, hv90,
    hv252, parkinson20, garman_klass20, rogers_satchell20, yang_zhang20`` (NaN = NULL: too
    little history, or a gap in the window, see the module docstring), and ``returns_available``
    (int64): the number of consecutive close-to-close returns ending at the session, capped at
    252, so that HVn is non-NULL exactly when ``returns_available >= n``.

    ``con`` lets a caller reuse a DuckDB connection; by default a throwaway in-memory one is used
    (opening it is cheap, and it keeps the warehouse file's single-writer lock out of this).
    Raises ``ValueError`` on missing columns or duplicate (symbol, session_date) bars, which
    would otherwise make every window silently wrong.
    """
    table = _as_arrow(candles)
    requested = sorted(set(sessions))
    grid_dates = _session_grid(table, requested)
    # Bars outside the grid cannot reach a requested window: drop them now so that the work
    # is O(lookback + requested span), whatever length of history the caller passed.
    if grid_dates:
        table = table.filter(
            pc.and_(
                pc.greater_equal(table["session_date"], pa.scalar(grid_dates[0], pa.date32())),
                pc.less_equal(table["session_date"], pa.scalar(grid_dates[-1], pa.date32())),
            )
        )
    else:
        table = table.slice(0, 0)
    inputs = {
        "candles": table,
        "grid": pa.table(
            {
                "session_date": pa.array(grid_dates, pa.date32()),
                "idx": pa.array(range(len(grid_dates)), pa.int64()),
            }
        ),
        "requested": pa.table({"session_date": pa.array(requested, pa.date32())}),
    }

    own = con is None
    con = duckdb.connect() if con is None else con
    try:
        for name, data in inputs.items():
            con.register(name, data)
        duplicates = con.sql(
            "SELECT symbol, session_date FROM candles GROUP BY ALL HAVING count(*) > 1 LIMIT 5"
        ).fetchall()
        if duplicates:
            raise ValueError(f"candles have more than one bar per (symbol, session_date), e.g. {duplicates}")
        result = con.sql(_SQL).to_arrow_table()
    finally:
        for name in inputs:
            con.unregister(name)
        if own:
            con.close()
    return result.to_pandas()
