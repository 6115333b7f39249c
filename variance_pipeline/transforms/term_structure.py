"""Implied volatility at a target expiration from one snapshot's IV term structure, vectorised.

Market metrics give, per underlying, one implied volatility per listed expiration
(``option-expiration-implied-volatilities``). A position needs the IV of *its* expiration:

* ``exact``: the term structure lists the target's expiration date: that IV.
* ``interpolated``: the target lies between two listed expirations ``T1 < T < T2`` of the same
  symbol: linear interpolation in total variance ``w = sigma^2 T``,
  ``w(T) = w1 + (w2 - w1) (T - T1) / (T2 - T1)``, ``sigma = sqrt(w(T) / T)``. Linear in total
  variance is the standard no-calendar-arbitrage-preserving choice and is exact when the forward
  variance between the two expirations is constant.
* ``extrapolated``: before the first or after the last listed expiration: flat volatility, the
  nearest expiration's IV.
* no usable term structure for the symbol: NaN with source None.

Rules the caller relies on:

* Only the rows passed in are used, matched on ``symbol`` exactly: never another symbol's or
  (the caller filters the snapshot) another day's IV.
* Rows with a missing, zero or negative IV, or with ``years_to_expiration <= 0`` (already
  expired at the session close), are not nodes; the remaining nodes of the same symbol and
  snapshot still serve (interpolated across the gap).
* Years are passed explicitly (``years_to_expiration`` on both frames) so the caller decides how
  time is measured; ``node_years`` gives the convention used by ``position_greeks``: from the
  session close to 16:00 America/New_York on the expiration date (09:30 for AM-settled rows).
* Duplicate expirations of one symbol (AM and PM settlement of the same date, e.g. SPX and SPXW
  monthlies): for an exact match the row whose ``settlement_type`` equals the target's is taken
  when the target says (``settlement_type`` column on the targets, optional); otherwise, and
  always for interpolation nodes, the rows of that date are averaged (IV and years alike).
"""

from __future__ import annotations

from datetime import date, datetime, time
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

EXACT = "exact"
INTERPOLATED = "interpolated"
EXTRAPOLATED = "extrapolated"

SECONDS_PER_YEAR = 365.0 * 86400.0
NEW_YORK = ZoneInfo("America/New_York")
PM_EXPIRY = time(16, 0)
AM_EXPIRY = time(9, 30)


def years_between(start_utc: datetime | pd.Timestamp, ends: pd.Series) -> np.ndarray:
    """Years of 365 days from ``start_utc`` to each timestamp of ``ends`` (tz-aware), NaN if missing."""
    start = pd.Timestamp(start_utc)
    if start.tzinfo is None:
        raise ValueError("start_utc must be timezone-aware")
    ends = pd.to_datetime(pd.Series(ends), utc=True)
    return ((ends - start).dt.total_seconds() / SECONDS_PER_YEAR).to_numpy(dtype=float)


def node_years(
    expiration_dates: pd.Series, settlement_types: pd.Series | None, session_close_utc: datetime
) -> np.ndarray:
    """Years from the session close to each expiration's settlement time in New York.

    PM (or unknown) settlement: 16:00 America/New_York on the expiration date; ``AM``: 09:30.
    """
    dates = pd.Series(expiration_dates).reset_index(drop=True)
    if settlement_types is None:
        settlement = pd.Series([None] * len(dates), dtype="object")
    else:
        settlement = pd.Series(settlement_types).reset_index(drop=True)
    am = settlement.astype("object").map(lambda s: isinstance(s, str) and s.strip().upper() == "AM")
    stamps = [
        None
        if (d is None or pd.isna(d))
        else datetime.combine(pd.Timestamp(d).date(), AM_EXPIRY if is_am else PM_EXPIRY, NEW_YORK)
        for d, is_am in zip(dates, am)
    ]
    return years_between(session_close_utc, pd.Series(stamps, dtype="object"))


def _date_key(values: pd.Series) -> pd.Series:
    """Expiration dates as datetime64 days, so ``date`` objects and strings compare alike."""
    return pd.to_datetime(pd.Series(values), errors="coerce").dt.normalize()


def implied_vol_at(term_structure: pd.DataFrame, targets: pd.DataFrame) -> pd.DataFrame:
    """IV for each target (symbol, expiration) from the term structure; index = ``targets.index``.

    ``term_structure``: ``symbol, expiration_date, implied_volatility, years_to_expiration``
    (+ optional ``settlement_type``), one snapshot. ``targets``: ``symbol, expiration_date,
    years_to_expiration`` (+ optional ``settlement_type``).

    Returns ``implied_volatility`` (float, NaN when none), ``iv_source`` ('exact' |
    'interpolated' | 'extrapolated' | None), ``lower_expiration`` and ``upper_expiration`` (the
    node dates used; both the target's date for an exact match).
    """
    n = len(targets)
    out = pd.DataFrame(
        {
            "implied_volatility": np.full(n, np.nan),
            "iv_source": pd.Series([None] * n, dtype="object").to_numpy(),
            "lower_expiration": pd.Series([None] * n, dtype="object").to_numpy(),
            "upper_expiration": pd.Series([None] * n, dtype="object").to_numpy(),
        },
        index=targets.index,
    )
    if n == 0:
        return out

    ts = pd.DataFrame(
        {
            "symbol": term_structure["symbol"].to_numpy(dtype=object),
            "key": _date_key(term_structure["expiration_date"]).to_numpy(),
            "expiration_date": term_structure["expiration_date"].to_numpy(dtype=object),
            "settlement_type": (
                term_structure["settlement_type"].to_numpy(dtype=object)
                if "settlement_type" in term_structure
                else np.full(len(term_structure), None, dtype=object)
            ),
            "iv": pd.to_numeric(term_structure["implied_volatility"], errors="coerce").to_numpy(dtype=float),
            "years": pd.to_numeric(term_structure["years_to_expiration"], errors="coerce").to_numpy(dtype=float),
        }
    )
    valid = ts["symbol"].notna() & ts["key"].notna() & (ts["iv"] > 0) & np.isfinite(ts["iv"]) & (ts["years"] > 0)
    ts = ts[valid]

    tg = pd.DataFrame(
        {
            "pos": np.arange(n),
            "symbol": targets["symbol"].to_numpy(dtype=object),
            "key": _date_key(targets["expiration_date"]).to_numpy(),
            "expiration_date": targets["expiration_date"].to_numpy(dtype=object),
            "settlement_type": (
                targets["settlement_type"].to_numpy(dtype=object)
                if "settlement_type" in targets
                else np.full(n, None, dtype=object)
            ),
            "years": pd.to_numeric(targets["years_to_expiration"], errors="coerce").to_numpy(dtype=float),
        }
    )
    iv = np.full(n, np.nan)
    source = np.full(n, None, dtype=object)
    lower = np.full(n, None, dtype=object)
    upper = np.full(n, None, dtype=object)

    # Exact date: the matching settlement's row if the target names one, else the date's mean.
    by_date = ts.groupby(["symbol", "key"], as_index=False).agg(
        iv=("iv", "mean"), years=("years", "mean"), expiration_date=("expiration_date", "first")
    )
    exact = tg.merge(by_date[["symbol", "key", "iv"]], on=["symbol", "key"], how="inner")
    if len(exact):
        has_settlement = ts["settlement_type"].notna()
        by_settlement = (
            ts[has_settlement].groupby(["symbol", "key", "settlement_type"], as_index=False)["iv"].mean()
        )
        exact = exact.merge(
            by_settlement.rename(columns={"iv": "iv_settlement"}),
            on=["symbol", "key", "settlement_type"],
            how="left",
        )
        chosen = exact["iv_settlement"].where(exact["iv_settlement"].notna(), exact["iv"])
        positions = exact["pos"].to_numpy()
        iv[positions] = chosen.to_numpy(dtype=float)
        source[positions] = EXACT
        lower[positions] = exact["expiration_date"].to_numpy(dtype=object)
        upper[positions] = exact["expiration_date"].to_numpy(dtype=object)

    # Everything else with a usable T: the neighbouring nodes of the same symbol.
    rest = tg[np.equal(source, None) & np.isfinite(tg["years"].to_numpy()) & tg["symbol"].notna().to_numpy()]
    if len(rest) and len(by_date):
        nodes = by_date.sort_values("years", kind="mergesort")[["symbol", "years", "iv", "expiration_date"]]
        left = rest[["pos", "symbol", "years"]].sort_values("years", kind="mergesort")
        below = pd.merge_asof(
            left, nodes.rename(columns={"years": "t1", "iv": "iv1", "expiration_date": "d1"}),
            left_on="years", right_on="t1", by="symbol", direction="backward",
        )
        above = pd.merge_asof(
            left, nodes.rename(columns={"years": "t2", "iv": "iv2", "expiration_date": "d2"}),
            left_on="years", right_on="t2", by="symbol", direction="forward",
        )
        both = below.merge(above[["pos", "t2", "iv2", "d2"]], on="pos")
        t, t1, t2 = (both[c].to_numpy(dtype=float) for c in ("years", "t1", "t2"))
        iv1, iv2 = both["iv1"].to_numpy(dtype=float), both["iv2"].to_numpy(dtype=float)
        has1, has2 = np.isfinite(t1), np.isfinite(t2)
        inside = has1 & has2
        with np.errstate(invalid="ignore", divide="ignore"):
            w1, w2 = iv1 * iv1 * t1, iv2 * iv2 * t2
            span = t2 - t1
            weight = np.where(span > 0, (t - t1) / np.where(span > 0, span, 1.0), 0.0)
            interpolated = np.sqrt((w1 + (w2 - w1) * weight) / t)
        value = np.where(inside, interpolated, np.where(has1, iv1, np.where(has2, iv2, np.nan)))
        kind = np.where(inside, INTERPOLATED, np.where(has1 | has2, EXTRAPOLATED, None))
        positions = both["pos"].to_numpy()
        iv[positions] = value
        source[positions] = kind
        d1 = both["d1"].to_numpy(dtype=object)
        d2 = both["d2"].to_numpy(dtype=object)
        lower[positions] = np.where(has1, d1, np.where(has2, d2, None))
        upper[positions] = np.where(has2, d2, np.where(has1, d1, None))

    source[~np.isfinite(iv)] = None
    out["implied_volatility"] = iv
    out["iv_source"] = source
    out["lower_expiration"] = lower
    out["upper_expiration"] = upper
    return out
