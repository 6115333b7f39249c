"""P&L per position and what a premium seller manages tonight, from the landed snapshot.

Formulas (quantity is signed: short < 0, so one formula serves short and long, options, futures
options and stock; the multiplier is the contract's: 100, 50 for /ES, 5 for /MES, 0.1 for /MBT):

* ``opening_credit = -average_open_price x quantity x multiplier`` (> 0 received, < 0 paid);
* ``market_value = mark x quantity x multiplier`` (a short position is worth minus its cost to close);
* ``unrealized_pnl = (mark - average_open_price) x quantity x multiplier``;
* short options: ``max_profit = opening_credit`` (what expiring worthless earns) and
  ``pct_of_max_profit = (credit - cost to close) / credit = unrealized_pnl / opening_credit``;
  a trade's (group's) share is the same ratio of its legs' sums (``manage_tonight``);
* ``tested``: a short option in the money (intrinsic value > 0) or with |model delta| at or above
  ``Thresholds.tested_delta`` (0.30, tastylive's common line);
* ``earnings_date``: the underlying's next report; whether it falls inside the option's life is
  decided in the warehouse by the one rule every view uses (``straddles_earnings``);
* ``early_assignment_risk``: a short call with an ex-dividend date after the session and on or
  before expiration whose extrinsic value (mark - intrinsic) is below the dividend: holders of the
  call are better off exercising the day before the ex-date (Options Industry Council, "early
  exercise"). The next ex-date is the metrics' ``dividend_next_date`` when it is still ahead, else
  their ``dividend_ex_date`` when that is; the dividend is ``dividend_rate_per_share``.

Groups: the legs of one account, underlying (root) and expiration opened on the same New York
date form one trade (``group_id``) until the journal links real orders; shares and futures group
per account, underlying and opening date.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from variance_pipeline.schemas.book import POSITION_PNL

NEW_YORK = ZoneInfo("America/New_York")


@dataclass(frozen=True)
class Thresholds:
    """When a trade needs attention (tastylive's defaults; configurable on the ``book_rules`` resource)."""

    profit_target: float = 0.50  # close winners at 50 % of max profit
    manage_dte: int = 21  # manage (close or roll) at 21 days to expiration
    tested_delta: float = 0.30  # a short strike at |delta| 0.30 or beyond is tested
    bp_concentration: float = 0.05  # one underlying using more than 5 % of net liq in buying power


def _date_column(frame: pd.DataFrame, column: str) -> pd.Series:
    if column not in frame:
        return pd.Series(pd.NaT, index=frame.index, dtype="datetime64[ns]")
    return pd.to_datetime(frame[column], errors="coerce")


def position_pnl(
    positions: pd.DataFrame,
    greeks: pd.DataFrame,
    metrics: pd.DataFrame,
    as_of_date: date,
    thresholds: Thresholds = Thresholds(),
) -> pd.DataFrame:
    """One row per position of ``positions`` (one session's snapshot), the ``position_pnl`` columns.

    ``greeks``: that session's priced ``position_greeks`` (option type, strike, expiration, delta,
    the underlying price); an unpriced option still gets its P&L, with NULL Greeks and ``tested``
    from moneyness alone when the price is unknown. ``metrics``: that session's market metrics.
    """
    pos = positions.reset_index(drop=True)
    if pos.empty:
        return POSITION_PNL.empty()
    g = greeks.drop_duplicates(["account_number", "symbol"]).set_index(["account_number", "symbol"])
    key = pd.MultiIndex.from_arrays([pos["account_number"], pos["symbol"]])
    joined = g.reindex(key)

    def from_greeks(column: str) -> pd.Series:
        return pd.Series(joined[column].to_numpy(), index=pos.index) if column in joined else pd.Series(np.nan, index=pos.index)

    quantity = pd.to_numeric(pos["quantity"], errors="coerce")
    multiplier = pd.to_numeric(pos["multiplier"], errors="coerce")
    average = pd.to_numeric(pos["average_open_price"], errors="coerce")
    broker_mark = pd.to_numeric(pos.get("mark_price"), errors="coerce") if "mark_price" in pos else pd.Series(np.nan, index=pos.index)
    total_mark = pd.to_numeric(pos.get("mark"), errors="coerce") if "mark" in pos else pd.Series(np.nan, index=pos.index)
    broker_mark = broker_mark.where(broker_mark.notna(), total_mark / (quantity.abs() * multiplier))
    close = pd.to_numeric(pos["close_price"], errors="coerce")
    mark = broker_mark.where(broker_mark.notna(), close)
    mark_source = np.where(broker_mark.notna(), "mark", np.where(close.notna(), "close_price", None))

    size = quantity * multiplier
    opening_credit = -average * size
    market_value = mark * size
    unrealized = (mark - average) * size

    option_type = from_greeks("option_type").astype("object")
    is_option = pos["instrument_type"].isin(["Equity Option", "Future Option"]).to_numpy() & option_type.notna().to_numpy()
    short_option = is_option & (quantity < 0).to_numpy()
    max_profit = opening_credit.where(short_option & (opening_credit > 0).to_numpy())
    with np.errstate(invalid="ignore", divide="ignore"):
        pct = (unrealized / max_profit).where(max_profit.notna())

    strike = pd.to_numeric(from_greeks("strike"), errors="coerce")
    S = pd.to_numeric(from_greeks("underlying_price"), errors="coerce")
    delta = pd.to_numeric(from_greeks("delta"), errors="coerce")
    call = (option_type == "C").to_numpy()
    intrinsic = pd.Series(np.where(call, np.maximum(S - strike, 0.0), np.maximum(strike - S, 0.0)), index=pos.index)
    intrinsic = intrinsic.where(is_option & S.notna().to_numpy() & strike.notna().to_numpy())
    extrinsic = mark - intrinsic
    tested = short_option & ((intrinsic > 0).to_numpy() | (delta.abs() >= thresholds.tested_delta).to_numpy())

    expiration = _date_column(joined.reset_index(drop=True).set_index(pos.index), "expiration_date")
    session = pd.Timestamp(as_of_date)
    dte = (expiration - session).dt.days

    mx = metrics.drop_duplicates("symbol", keep="last").set_index("symbol") if len(metrics) else pd.DataFrame()
    root = pos["root_symbol"].astype("object")

    def metric(column: str) -> pd.Series:
        if column not in mx:
            return pd.Series(np.nan, index=pos.index, dtype="object")
        return pd.Series(root.map(mx[column]).to_numpy(), index=pos.index)

    earnings = pd.to_datetime(metric("earnings_date"), errors="coerce")
    next_ex = pd.to_datetime(metric("dividend_next_date"), errors="coerce")
    last_ex = pd.to_datetime(metric("dividend_ex_date"), errors="coerce")
    ex_date = next_ex.where(next_ex > session, last_ex.where(last_ex > session))
    dividend = pd.to_numeric(metric("dividend_rate_per_share"), errors="coerce")
    early = (
        short_option & call
        & (ex_date <= expiration).to_numpy()
        & (extrinsic < dividend).to_numpy()
    )

    opened = pd.to_datetime(pos["created_at"], utc=True, errors="coerce").dt.tz_convert(NEW_YORK).dt.date
    expiry_text = expiration.dt.strftime("%Y-%m-%d").fillna("none")
    group_id = (
        pos["account_number"].astype(str) + "|" + root.astype(str) + "|" + expiry_text.astype(str) + "|"
        + opened.astype(str).where(opened.notna(), "unknown")
    )
    rows = pd.DataFrame(
        {
            "as_of_date": [as_of_date] * len(pos),
            "account_number": pos["account_number"],
            "symbol": pos["symbol"],
            "underlying_symbol": root,
            "instrument_type": pos["instrument_type"],
            "group_id": group_id,
            "opened_on": opened.where(opened.notna(), None),
            "option_type": option_type.where(option_type.notna(), None),
            "strike": strike,
            "expiration_date": expiration.dt.date.where(expiration.notna(), None),
            "days_to_expiration": dte.astype("Int64"),
            "quantity": quantity,
            "multiplier": multiplier,
            "average_open_price": average,
            "mark": mark,
            "mark_source": mark_source,
            "opening_credit": opening_credit,
            "market_value": market_value,
            "unrealized_pnl": unrealized,
            "max_profit": max_profit,
            "pct_of_max_profit": pct,
            "underlying_price": S,
            "delta": delta,
            "intrinsic_value": intrinsic,
            "extrinsic_value": extrinsic,
            "tested": tested,
            "earnings_date": earnings.dt.date.where(earnings.notna(), None),
            "ex_dividend_date": ex_date.dt.date.where(ex_date.notna(), None),
            "dividend_amount": dividend,
            "early_assignment_risk": early,
        }
    )
    return POSITION_PNL.conform(rows)
