"""Tastytrade reference data -> rows: the public risk-free rate and past earnings reports.

Pure functions like ``tastytrade_frames``: numbers are read exactly (``Decimal``) and a missing
required field fails naming where it was.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Mapping, Sequence

from variance_pipeline.sources.tastytrade_frames import TastytradeDataError, _date, _fetched_utc, _number, _required


def risk_free_rate_rows(data: Mapping[str, Any], *, as_of_date: date, fetched_at: datetime) -> list[dict[str, Any]]:
    """``/margin-requirements-public-configuration``'s ``data`` -> one row (a fraction, as sent)."""
    where = "margin-requirements-public-configuration"
    rate = _number(_required(data, "risk-free-rate", where), "risk-free-rate", where)
    return [{"as_of_date": as_of_date, "risk_free_rate": rate, "fetched_at": _fetched_utc(as_of_date, fetched_at)}]


def earnings_report_rows(symbol: str, items: Sequence[Mapping[str, Any]], *, fetched_at: datetime) -> list[dict[str, Any]]:
    """Historic earnings items of one symbol -> one row per report date (the last listed wins)."""
    rows: dict[date, dict[str, Any]] = {}
    for index, item in enumerate(items):
        where = f"earnings-reports {symbol!r} item {index}"
        if not isinstance(item, Mapping):
            raise TastytradeDataError(f"{where}: not an object")
        occurred = _date(_required(item, "occurred-date", where), "occurred-date", where)
        rows.pop(occurred, None)  # the last listed wins, in its own place
        rows[occurred] = {"symbol": symbol, "occurred_date": occurred, "eps": _number(item.get("eps"), "eps", where),
                          "fetched_at": fetched_at}
    return list(rows.values())
