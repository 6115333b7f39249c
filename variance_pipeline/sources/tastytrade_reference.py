"""Tastytrade reference data -> typed frames: the public risk-free rate and past earnings reports.

Pure functions like ``tastytrade_frames``: numbers are read exactly (``Decimal``) and a missing
required field fails naming where it was.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Mapping, Sequence

import pandas as pd

from variance_pipeline.sources.tastytrade_frames import (
    TastytradeDataError,
    _date,
    _fetched_utc,
    _frame,
    _number,
    _required,
)

_TIMESTAMP = "datetime64[us, UTC]"
RISK_FREE_RATE_DTYPES: Mapping[str, str] = {"as_of_date": "object", "risk_free_rate": "float64", "fetched_at": _TIMESTAMP}
EARNINGS_REPORT_DTYPES: Mapping[str, str] = {
    "symbol": "object",
    "occurred_date": "object",
    "eps": "float64",
    "fetched_at": _TIMESTAMP,
}


def risk_free_rate_frame(data: Mapping[str, Any], *, as_of_date: date, fetched_at: datetime) -> pd.DataFrame:
    """``/margin-requirements-public-configuration``'s ``data`` -> one row (a fraction, as sent)."""
    where = "margin-requirements-public-configuration"
    rate = _number(_required(data, "risk-free-rate", where), "risk-free-rate", where)
    row = {"as_of_date": as_of_date, "risk_free_rate": rate, "fetched_at": _fetched_utc(as_of_date, fetched_at)}
    return _frame([row], RISK_FREE_RATE_DTYPES)


def earnings_reports_frame(symbol: str, items: Sequence[Mapping[str, Any]], *, fetched_at: datetime) -> pd.DataFrame:
    """Historic earnings items of one symbol -> one row per report date (the last listed wins)."""
    rows = []
    for index, item in enumerate(items):
        where = f"earnings-reports {symbol!r} item {index}"
        if not isinstance(item, Mapping):
            raise TastytradeDataError(f"{where}: not an object")
        occurred = _date(_required(item, "occurred-date", where), "occurred-date", where)
        rows.append({"symbol": symbol, "occurred_date": occurred, "eps": _number(item.get("eps"), "eps", where),
                     "fetched_at": fetched_at})
    frame = _frame(rows, EARNINGS_REPORT_DTYPES)
    return frame.drop_duplicates(["symbol", "occurred_date"], keep="last").reset_index(drop=True)
