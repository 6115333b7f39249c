"""The implied volatility of an expiration, or of any horizon, from one evening's IV term structure.

This is the one implementation of that rule. Market metrics give, per underlying, one implied
volatility per listed expiration, chain type and settlement
(``option-expiration-implied-volatilities``); everything that needs "the IV of an expiration"
reads it through this module: the position Greeks (``position_greeks``), ``iv_constant_maturity``,
and, through the warehouse table ``iv_term_structure_by_expiration`` (``expiration_nodes`` as
stored by ``warehouse.constant_maturity``), the ``expected_move`` and ``next_earnings`` views and
``earnings_moves``' implied move. The rules, in the order they apply:

1. **Rows used.** Only ``Standard`` chains (a missing ``option_chain_type`` is ``Standard``): a
   ``Non-standard`` chain (adjusted deliverables after a corporate action) lists its own IV for a
   date that is not the underlying's. Also left out: a missing, zero, negative or non-finite IV,
   and an expiration on or before the snapshot's ``as_of_date`` (expired by the evening snapshot).
   The rows left out still land in ``iv_term_structure``; they are never an IV of an expiration.
2. **Time.** ``T`` is in years of 365 days: seconds from the close of the snapshot's session
   (``calendar.session_close``: 16:00 New York, 13:00 on an early close) to the settlement
   instant in New York, 16:00 for ``PM`` and 09:30 for ``AM`` (the opening settlement of SPX, NDX,
   RUT and XSP monthlies), divided by 365 x 86400. A target brings its own ``T``: a position's is
   its ``expires_at`` minus the same close, a constant maturity of d days is d / 365.
3. **Settlement.** A target that names its settlement takes the row of its own date *and*
   settlement (``exact``): an AM-settled SPX monthly gets the AM IV, the PM SPXW of the same date
   the PM IV, never their mean (a position's settlement is AM when its ``expires_at`` is before
   noon New York, ``settlement_of``). A target that names none takes its date's node. The **node** of a
   date, which is also what interpolation, the expected move, the front IV and the straddle of an
   earnings report use, is its ``PM`` row when one is listed, else its ``AM`` row (else the first
   other settlement by name). Why PM: the PM series (SPXW, NDXP, RUTW, every equity and ETF) is
   listed at every expiration, so the curve between dates stays on one settlement; an AM
   monthly's IV also prices the next morning's opening print and would kink it.
4. **Between nodes** ``T1 < T < T2`` of the same symbol and snapshot (``interpolated``): linear in
   total variance ``w = sigma^2 T``, ``w(T) = w1 + (w2 - w1) (T - T1) / (T2 - T1)``,
   ``sigma = sqrt(w(T) / T)``. This is how the Cboe VIX White Paper weights its near and next
   terms to 30 days (its step 3), and it keeps the curve free of calendar arbitrage whenever the
   nodes are: no calendar arbitrage means total variance non-decreasing in T (Gatheral and
   Jacquier, "Arbitrage-free SVI volatility surfaces", Quantitative Finance 14(1), 2014), which a
   straight line between two such nodes is. A target at a node's T takes that node's IV.
5. **Outside the nodes**: flat, the nearest node's IV, flagged ``extrapolated``. Callers decide:
   the position Greeks use it (and store the flag); constant maturity refuses it and stores NULL
   ("NULL when not bracketed").
6. Nothing from another symbol or snapshot: nodes and targets are matched on ``symbol`` (and
   ``as_of_date`` when both frames carry it). No usable node: NaN with source None.
"""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Callable, Sequence
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from variance_pipeline.calendar import session_close as xnys_session_close
from variance_pipeline.schemas.market_metrics import STANDARD_CHAIN

EXACT = "exact"
INTERPOLATED = "interpolated"
EXTRAPOLATED = "extrapolated"

AM = "AM"
PM = "PM"

SECONDS_PER_YEAR = 365.0 * 86400.0
NEW_YORK = ZoneInfo("America/New_York")
PM_SETTLEMENT = time(16, 0)
AM_SETTLEMENT = time(9, 30)

NODE_COLUMNS = (
    "as_of_date", "symbol", "expiration_date", "settlement_type", "implied_volatility", "years_to_expiration",
    "is_node", "settlement_types",
)

_NODE_DTYPES = {"implied_volatility": "float64", "years_to_expiration": "float64", "is_node": "bool"}

SessionClose = datetime | Callable[[date], datetime]


def years_between(start_utc: datetime | pd.Timestamp, ends: pd.Series) -> np.ndarray:
    """Years of 365 days from ``start_utc`` to each timestamp of ``ends`` (tz-aware), NaN if missing."""
    start = pd.Timestamp(start_utc)
    if start.tzinfo is None:
        raise ValueError("start_utc must be timezone-aware")
    ends = pd.to_datetime(pd.Series(ends), utc=True)
    return ((ends - start).dt.total_seconds() / SECONDS_PER_YEAR).to_numpy(dtype=float)


def _settlements(values: pd.Series | Sequence | None, n: int) -> np.ndarray:
    """Settlement types, stripped, ``AM`` and ``PM`` in any case spelled so; missing values as None."""
    if values is None:
        return np.full(n, None, dtype=object)

    def clean(value: object) -> str | None:
        if not isinstance(value, str) or not value.strip():
            return None
        text = value.strip()
        return text.upper() if text.upper() in (AM, PM) else text

    text = pd.Series(values, dtype="object").reset_index(drop=True)
    spelled = {value: clean(value) for value in pd.unique(text.dropna())}  # a handful of distinct values
    return text.map(spelled).astype("object").where(text.notna(), None).to_numpy(dtype=object)


def settlement_of(expires_at: pd.Series) -> np.ndarray:
    """``AM`` or ``PM`` from each expiration instant's New York time (None when missing).

    An option that expires before noon New York settles on the opening print (SPX, NDX, RUT and XSP
    monthlies: ``expires-at`` 09:30); anything later settles on the close.
    """
    local = pd.to_datetime(pd.Series(expires_at), utc=True).dt.tz_convert(NEW_YORK)
    am = (local.dt.hour < 12).to_numpy(dtype=bool)
    out = np.where(am, AM, PM).astype(object)
    out[local.isna().to_numpy()] = None
    return out


def _closes(as_of_dates: pd.Series, session_close: SessionClose) -> pd.Series:
    """The session close (UTC) of each row's ``as_of_date``; one datetime serves every row."""
    if isinstance(session_close, datetime):
        if session_close.tzinfo is None:
            raise ValueError("session_close must be timezone-aware")
        return pd.Series(pd.Timestamp(session_close).tz_convert("UTC"), index=as_of_dates.index)
    days = pd.to_datetime(as_of_dates, errors="coerce").dt.date
    lookup = {day: pd.Timestamp(session_close(day)).tz_convert("UTC") for day in days.dropna().unique()}
    return pd.to_datetime(days.map(lookup), utc=True)


def settlement_years(
    as_of_dates: pd.Series, expiration_dates: pd.Series, settlement_types: pd.Series | None,
    session_close: SessionClose = xnys_session_close,
) -> np.ndarray:
    """T of each row: years of 365 days from its session's close to its settlement in New York.

    ``AM``: 09:30 America/New_York on the expiration date; ``PM`` or anything else: 16:00.
    ``session_close``: one close for every row, or a function of the row's ``as_of_date`` (default:
    the XNYS close of that session, early closes included).
    """
    expirations = _date_key(pd.Series(expiration_dates).reset_index(drop=True))
    n = len(expirations)
    am = _settlements(settlement_types, n) == AM
    at = np.where(am, AM_SETTLEMENT.hour * 60 + AM_SETTLEMENT.minute, PM_SETTLEMENT.hour * 60 + PM_SETTLEMENT.minute)
    local = expirations + pd.to_timedelta(at, unit="min")
    settle = local.dt.tz_localize(NEW_YORK, nonexistent="shift_forward", ambiguous=False).dt.tz_convert("UTC")
    closes = _closes(pd.Series(as_of_dates).reset_index(drop=True), session_close)
    return ((settle - closes).dt.total_seconds() / SECONDS_PER_YEAR).to_numpy(dtype=float)


def _date_key(values: pd.Series) -> pd.Series:
    """Dates as datetime64 days, so ``date`` objects, strings and timestamps compare alike."""
    return pd.to_datetime(pd.Series(values), errors="coerce").dt.normalize()


def _column(frame: pd.DataFrame, name: str, default: object = None) -> pd.Series:
    if name in frame:
        return frame[name].reset_index(drop=True)
    return pd.Series([default] * len(frame), dtype="object")


def expiration_nodes(term_structure: pd.DataFrame, session_close: SessionClose = xnys_session_close) -> pd.DataFrame:
    """The usable rows of term-structure snapshots, each with its T and whether it is its date's node.

    ``term_structure``: ``as_of_date, symbol, expiration_date, settlement_type, implied_volatility``
    (+ ``option_chain_type``; missing means ``Standard``), any number of snapshots. Returns
    ``NODE_COLUMNS``: one row per usable (as_of_date, symbol, expiration_date, settlement_type)
    (rules 1-3 of the module docstring), ``is_node`` true on exactly one row per date, and
    ``settlement_types``: the settlements the date lists (``AM,PM``). Raises ``ValueError`` on two
    usable rows with one key (the ``iv_term_structure`` grain forbids it).
    """
    n = len(term_structure)
    if n == 0:
        return pd.DataFrame({c: pd.Series(dtype=_NODE_DTYPES.get(c, "object")) for c in NODE_COLUMNS})
    as_of = _column(term_structure, "as_of_date")
    chain = _column(term_structure, "option_chain_type").astype("object")
    rows = pd.DataFrame(
        {
            "as_of_date": as_of.to_numpy(),
            "symbol": _column(term_structure, "symbol").to_numpy(dtype=object),
            "expiration_date": _column(term_structure, "expiration_date").to_numpy(),
            "settlement_type": _settlements(_column(term_structure, "settlement_type"), n),
            "implied_volatility": pd.to_numeric(term_structure["implied_volatility"], errors="coerce").to_numpy(dtype=float),
            "years_to_expiration": settlement_years(
                as_of, term_structure["expiration_date"], _column(term_structure, "settlement_type"), session_close
            ),
        }
    )
    standard = chain.map(lambda c: c is None or c is pd.NA or (isinstance(c, float) and np.isnan(c)) or c == STANDARD_CHAIN)
    expiry, snapshot = _date_key(rows["expiration_date"]), _date_key(rows["as_of_date"])
    usable = (
        standard.to_numpy(dtype=bool)
        & rows["symbol"].notna().to_numpy()
        & expiry.notna().to_numpy()
        & ~(expiry <= snapshot).to_numpy(dtype=bool)
        & np.isfinite(rows["implied_volatility"].to_numpy())
        & (rows["implied_volatility"].to_numpy() > 0)
        & (rows["years_to_expiration"].to_numpy() > 0)
    )
    rows, expiry = rows[usable].reset_index(drop=True), expiry[usable].reset_index(drop=True)
    # The node of a date: PM, else AM, else the first other settlement by name (rule 3).
    rank = np.where(rows["settlement_type"] == PM, 0, np.where(rows["settlement_type"] == AM, 1, 2))
    order = pd.DataFrame({"a": _date_key(rows["as_of_date"]), "s": rows["symbol"], "e": expiry, "rank": rank,
                          "name": rows["settlement_type"].fillna("")})
    if order.duplicated(["a", "s", "e", "name"]).any():
        raise ValueError("two usable term-structure rows share (as_of_date, symbol, expiration_date, settlement_type)")
    order = order.sort_values(["a", "s", "e", "rank", "name"], kind="mergesort")
    first = ~order.duplicated(["a", "s", "e"])
    rows["is_node"] = False
    rows.loc[order.index[first.to_numpy()], "is_node"] = True
    # The settlements each date lists (``AM,PM``); joined only where a date lists more than one.
    names = order.drop_duplicates(["a", "s", "e", "name"])
    several = names.duplicated(["a", "s", "e"], keep=False)
    listed = pd.Series(rows["settlement_type"].fillna("").to_numpy(dtype=object), index=rows.index)
    if several.any():
        joined = names[several].sort_values("name", kind="mergesort").groupby(["a", "s", "e"])["name"].agg(",".join)
        many = order.join(joined.rename("joined"), on=["a", "s", "e"], how="inner")
        listed.loc[many.index] = many["joined"].to_numpy(dtype=object)
    rows["settlement_types"] = listed.to_numpy(dtype=object)
    return rows.loc[:, list(NODE_COLUMNS)]


def _group_codes(nodes: pd.DataFrame, targets: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """One integer per (symbol[, as_of_date]) shared by both frames; -1 where the symbol is missing."""
    keys = ["symbol"] + (["as_of_date"] if "as_of_date" in nodes and "as_of_date" in targets else [])
    both = pd.concat(
        [
            pd.DataFrame({k: (_date_key(f[k]) if k == "as_of_date" else f[k].astype("object")).to_numpy()
                          for k in keys})
            for f in (nodes, targets)
        ],
        ignore_index=True,
    )
    codes = both.groupby(keys, sort=False, dropna=False).ngroup().to_numpy()
    codes = np.where(both["symbol"].isna().to_numpy(), -1, codes)
    return codes[: len(nodes)], codes[len(nodes):]


def implied_vol_at(nodes: pd.DataFrame, targets: pd.DataFrame) -> pd.DataFrame:
    """IV for each target from ``expiration_nodes`` (rules 3-6 of the module docstring).

    ``targets``: ``symbol, years_to_expiration`` (+ optional ``expiration_date``, ``settlement_type``
    and ``as_of_date``); a target without an expiration date (constant maturity) is placed by its T
    alone. Returns, indexed like ``targets``: ``implied_volatility`` (NaN when none), ``iv_source``
    (``exact`` | ``interpolated`` | ``extrapolated`` | None), ``lower_expiration`` and
    ``upper_expiration`` (the node dates used; the target's own date for an exact match).
    """
    n = len(targets)
    iv = np.full(n, np.nan)
    source = np.full(n, None, dtype=object)
    lower = np.full(n, None, dtype=object)
    upper = np.full(n, None, dtype=object)
    if n and len(nodes):
        node_code, target_code = _group_codes(nodes, targets)
        node_dates = _date_key(nodes["expiration_date"]).to_numpy()
        ts = pd.DataFrame(
            {
                "code": node_code,
                "key": node_dates,
                "settlement_type": nodes["settlement_type"].to_numpy(dtype=object),
                "expiration_date": nodes["expiration_date"].to_numpy(),
                "iv": nodes["implied_volatility"].to_numpy(dtype=float),
                "years": nodes["years_to_expiration"].to_numpy(dtype=float),
                "is_node": nodes["is_node"].to_numpy(dtype=bool),
            }
        )
        tg = pd.DataFrame(
            {
                "pos": np.arange(n),
                "code": target_code,
                "key": _date_key(_column(targets, "expiration_date")).to_numpy(),
                "settlement_type": _settlements(_column(targets, "settlement_type"), n),
                "expiration_date": _column(targets, "expiration_date").to_numpy(),
                "years": pd.to_numeric(targets["years_to_expiration"], errors="coerce").to_numpy(dtype=float),
            }
        )
        tg = tg[tg["code"] >= 0]

        # Exact: the row of the target's date and settlement; without a settlement, the date's node.
        named = tg["settlement_type"].notna() & tg["key"].notna()
        exact = pd.concat(
            [
                tg[named].merge(ts[["code", "key", "settlement_type", "iv"]], on=["code", "key", "settlement_type"]),
                tg[~named & tg["key"].notna()].drop(columns="settlement_type").merge(
                    ts.loc[ts["is_node"], ["code", "key", "iv"]], on=["code", "key"]
                ),
            ],
            ignore_index=True,
        )
        if len(exact):
            positions = exact["pos"].to_numpy()
            iv[positions] = exact["iv"].to_numpy(dtype=float)
            source[positions] = EXACT
            lower[positions] = exact["expiration_date"].to_numpy(dtype=object)
            upper[positions] = exact["expiration_date"].to_numpy(dtype=object)

        # Everything else with a usable T: the neighbouring nodes of the same symbol and snapshot.
        rest = tg[np.equal(source[tg["pos"].to_numpy()], None) & np.isfinite(tg["years"].to_numpy())]
        curve = ts.loc[ts["is_node"], ["code", "years", "iv", "expiration_date"]].sort_values("years", kind="mergesort")
        if len(rest) and len(curve):
            left = rest[["pos", "code", "years"]].sort_values("years", kind="mergesort")
            below = pd.merge_asof(
                left, curve.rename(columns={"years": "t1", "iv": "iv1", "expiration_date": "d1"}),
                left_on="years", right_on="t1", by="code", direction="backward",
            )
            above = pd.merge_asof(
                left, curve.rename(columns={"years": "t2", "iv": "iv2", "expiration_date": "d2"}),
                left_on="years", right_on="t2", by="code", direction="forward",
            )
            both = below.merge(above[["pos", "t2", "iv2", "d2"]], on="pos")
            t, t1, t2 = (both[c].to_numpy(dtype=float) for c in ("years", "t1", "t2"))
            iv1, iv2 = both["iv1"].to_numpy(dtype=float), both["iv2"].to_numpy(dtype=float)
            has1, has2 = np.isfinite(t1), np.isfinite(t2)
            inside = has1 & has2
            with np.errstate(invalid="ignore", divide="ignore"):
                span = t2 - t1
                weight = (t - t1) / np.where(span > 0, span, 1.0)
                w1 = iv1 * iv1 * t1
                between = np.sqrt((w1 + (iv2 * iv2 * t2 - w1) * weight) / t)
            value = np.where(span > 0, between, iv1)  # at a node's T: that node's IV
            value = np.where(inside, value, np.where(has1, iv1, np.where(has2, iv2, np.nan)))
            kind = np.where(inside, INTERPOLATED, np.where(has1 | has2, EXTRAPOLATED, None))
            positions = both["pos"].to_numpy()
            iv[positions] = value
            source[positions] = kind
            d1, d2 = both["d1"].to_numpy(dtype=object), both["d2"].to_numpy(dtype=object)
            lower[positions] = np.where(has1, d1, np.where(has2, d2, None))
            upper[positions] = np.where(has2, d2, np.where(has1, d1, None))

    source[~np.isfinite(iv)] = None
    return pd.DataFrame(
        {"implied_volatility": iv, "iv_source": source, "lower_expiration": lower, "upper_expiration": upper},
        index=targets.index,
    )


def constant_maturity(nodes: pd.DataFrame, target_days: Sequence[int] = (30, 60, 90)) -> pd.DataFrame:
    """Per (symbol, as_of_date) with a node: the IV at ``d / 365`` years for each d of ``target_days``
    (``iv<d>``; NULL unless bracketed by nodes: an extrapolated value is refused), the front node
    (``front_iv``, ``front_expiration``, ``front_days`` in calendar days) and the count of nodes."""
    curve = nodes[nodes["is_node"].to_numpy(dtype=bool)]
    if curve.empty:
        return pd.DataFrame(
            {
                "symbol": pd.Series(dtype="object"),
                "as_of_date": pd.Series(dtype="object"),
                **{f"iv{d}": pd.Series(dtype="float64") for d in target_days},
                "front_iv": pd.Series(dtype="float64"),
                "front_expiration": pd.Series(dtype="object"),
                "front_days": pd.Series(dtype="int64"),
                "expirations_used": pd.Series(dtype="int64"),
            }
        )
    curve = curve.sort_values("years_to_expiration", kind="mergesort")
    front = curve.groupby(["symbol", "as_of_date"], sort=True).agg(
        front_iv=("implied_volatility", "first"),
        front_expiration=("expiration_date", "first"),
        expirations_used=("implied_volatility", "size"),
    ).reset_index()
    front["front_days"] = (_date_key(front["front_expiration"]) - _date_key(front["as_of_date"])).dt.days
    out = front[["symbol", "as_of_date"]].copy()
    for days in target_days:
        targets = out.assign(years_to_expiration=days / 365.0)
        at = implied_vol_at(curve, targets)
        out[f"iv{days}"] = at["implied_volatility"].where(at["iv_source"] == INTERPOLATED).to_numpy(dtype=float)
    for column in ("front_iv", "front_expiration", "front_days", "expirations_used"):
        out[column] = front[column].to_numpy()
    return out.reset_index(drop=True)
