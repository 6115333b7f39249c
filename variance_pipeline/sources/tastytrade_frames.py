"""Tastytrade items -> rows of the declared datasets (``schemas/``): pure functions, no network.

Pure, so the recorded real responses pin their exact output. Numbers arrive as strings or ints
and are read exactly through ``Decimal``; units are converted by field, never by value.
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, Mapping, Sequence

import pandas as pd

from variance_pipeline.instruments.symbology import root_symbol


class TastytradeDataError(ValueError):
    """An item lacks a field the pipeline cannot do without, or holds a value it cannot read."""


_MISSING = (None, "")


def _required(item: Mapping[str, Any], field: str, where: str) -> Any:
    value = item.get(field)
    if value in _MISSING:
        raise TastytradeDataError(f"{where}: missing required field {field!r}")
    return value


def _decimal(value: Any, field: str, where: str) -> Decimal | None:
    """Exact parse of a number sent as a string or a JSON number (``str`` first, never float)."""
    if value in _MISSING:
        return None
    if isinstance(value, bool):
        raise TastytradeDataError(f"{where}: field {field!r} is a boolean, expected a number")
    try:
        parsed: Decimal | None = Decimal(str(value))
    except InvalidOperation:
        parsed = None
    if parsed is None or parsed.is_snan():  # float() cannot take a signalling NaN either
        raise TastytradeDataError(f"{where}: field {field!r} = {value!r} is not a number")
    return parsed


def _number(value: Any, field: str, where: str, divisor: Decimal = Decimal(1)) -> float | None:
    parsed = _decimal(value, field, where)
    return None if parsed is None else float(parsed / divisor)


def _integer(value: Any, field: str, where: str) -> int | None:
    parsed = _decimal(value, field, where)
    if parsed is None:
        return None
    if not parsed.is_finite() or parsed != parsed.to_integral_value():
        raise TastytradeDataError(f"{where}: field {field!r} = {value!r} is not an integer")
    return int(parsed)


def _timestamp(value: Any, field: str, where: str) -> datetime | None:
    if value in _MISSING:
        return None
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError as exc:
        raise TastytradeDataError(f"{where}: field {field!r} = {value!r} is not an ISO-8601 time") from exc
    if parsed.tzinfo is None:
        raise TastytradeDataError(f"{where}: field {field!r} = {value!r} has no UTC offset")
    return parsed.astimezone(timezone.utc)


def _date(value: Any, field: str, where: str) -> date | None:
    if value in _MISSING:
        return None
    try:
        return date.fromisoformat(str(value))
    except ValueError as exc:
        raise TastytradeDataError(f"{where}: field {field!r} = {value!r} is not an ISO date") from exc


def _boolean(value: Any, field: str, where: str) -> bool | None:
    if value in _MISSING:
        return None
    if isinstance(value, bool):
        return value
    if str(value).lower() in ("true", "false"):
        return str(value).lower() == "true"
    raise TastytradeDataError(f"{where}: field {field!r} = {value!r} is not a boolean")


def _text(value: Any) -> str | None:
    return None if value in _MISSING else str(value)


def _fetched_utc(as_of_date: date, fetched_at: datetime) -> datetime:
    """The snapshot stamp, checked: a naive time or a datetime-as-date would shift a partition."""
    if isinstance(as_of_date, datetime) or not isinstance(as_of_date, date):
        raise TypeError(f"as_of_date must be a datetime.date, got {type(as_of_date).__name__}")
    if fetched_at.tzinfo is None:
        raise ValueError("fetched_at must be timezone-aware (it is stored as UTC)")
    return fetched_at.astimezone(timezone.utc)


_DIRECTION_SIGN = {"Long": Decimal(1), "Short": Decimal(-1), "Zero": Decimal(1)}


def _position_row(item: Mapping[str, Any], where: str) -> dict[str, Any]:
    account = str(_required(item, "account-number", where))
    symbol = str(_required(item, "symbol", where))
    instrument_type = str(_required(item, "instrument-type", where))
    direction = str(_required(item, "quantity-direction", where))
    if direction not in _DIRECTION_SIGN:
        raise TastytradeDataError(
            f"{where}: quantity-direction {direction!r} is not one of {sorted(_DIRECTION_SIGN)}"
        )
    quantity = _decimal(_required(item, "quantity", where), "quantity", where)
    assert quantity is not None
    underlying = _text(item.get("underlying-symbol"))
    try:
        root = root_symbol(symbol, instrument_type, underlying)
    except ValueError as exc:
        raise TastytradeDataError(f"{where}: {exc}") from exc
    return {
        "account_number": account,
        "symbol": symbol,
        "instrument_type": instrument_type,
        "underlying_symbol": underlying,
        "root_symbol": root,
        # The API sends an unsigned quantity; the sign lives in quantity-direction. A "Zero"
        # position keeps what was reported so that the schema can flag a non-zero one.
        "quantity": float(quantity * _DIRECTION_SIGN[direction]),
        "quantity_direction": direction,
        "average_open_price": _number(item.get("average-open-price"), "average-open-price", where),
        "close_price": _number(item.get("close-price"), "close-price", where),
        "mark": _number(item.get("mark"), "mark", where),
        "mark_price": _number(item.get("mark-price"), "mark-price", where),
        "multiplier": _number(_required(item, "multiplier", where), "multiplier", where),
        "cost_effect": _text(item.get("cost-effect")),
        "expires_at": _timestamp(item.get("expires-at"), "expires-at", where),
        "streamer_symbol": _text(item.get("streamer-symbol")),
        "created_at": _timestamp(item.get("created-at"), "created-at", where),
        "updated_at": _timestamp(item.get("updated-at"), "updated-at", where),
    }


def _where(dataset: str, index: int, item: Mapping[str, Any]) -> str:
    """``positions item 3 ('AAPL', account 5WT00001)``: enough to find the item in raw/."""
    symbol, account = item.get("symbol"), item.get("account-number")
    named = [repr(symbol)] if symbol not in _MISSING else []
    if dataset == "positions" and account not in _MISSING:
        named.append(f"account {account}")
    return f"{dataset} item {index}" + (f" ({', '.join(named)})" if named else "")


def positions_rows(
    items: Sequence[Mapping[str, Any]], *, as_of_date: date, fetched_at: datetime
) -> list[dict[str, Any]]:
    """Position items -> one row per position (signed quantities), the ``positions`` columns.

    Raises ``TastytradeDataError`` (a ``ValueError``) naming the item and field when a field the
    warehouse key or the position's meaning depends on is missing or unreadable.
    """
    stamp = _fetched_utc(as_of_date, fetched_at)
    return [
        {"as_of_date": as_of_date, **_position_row(item, _where("positions", index, item)), "fetched_at": stamp}
        for index, item in enumerate(items)
    ]


def held_underlyings(positions: pd.DataFrame) -> list[str]:
    """The sorted distinct underlyings the positions are exposed to (their ``root_symbol``)."""
    return sorted(str(symbol) for symbol in positions["root_symbol"].dropna().unique())


_AS_SENT = Decimal(1)
_PERCENT = Decimal(100)

# (column, API field, divisor). Units are fixed per field by the API, never inferred from the
# value: the IV index, ranks and percentile are fractions; the 30-day IV, the HVs, their
# difference and the borrow rate are percentages ("21.87", "24.5013"), so they are divided by 100.
METRIC_NUMBERS: tuple[tuple[str, str, Decimal], ...] = (
    ("implied_volatility", "implied-volatility-index", _AS_SENT),
    ("implied_volatility_5_day_change", "implied-volatility-index-5-day-change", _AS_SENT),
    ("iv_rank", "implied-volatility-index-rank", _AS_SENT),
    ("tos_iv_rank", "tos-implied-volatility-index-rank", _AS_SENT),
    ("tw_iv_rank", "tw-implied-volatility-index-rank", _AS_SENT),
    ("iv_percentile", "implied-volatility-percentile", _AS_SENT),
    ("iv_30_day", "implied-volatility-30-day", _PERCENT),
    ("hv_30_day", "historical-volatility-30-day", _PERCENT),
    ("hv_60_day", "historical-volatility-60-day", _PERCENT),
    ("hv_90_day", "historical-volatility-90-day", _PERCENT),
    ("iv_hv_30_day_difference", "iv-hv-30-day-difference", _PERCENT),
    ("liquidity_value", "liquidity-value", _AS_SENT),
    ("liquidity_rank", "liquidity-rank", _AS_SENT),
)

def _metric_row(item: Mapping[str, Any], symbol: str, where: str) -> dict[str, Any]:
    earnings = item.get("earnings")
    if earnings is not None and not isinstance(earnings, dict):
        raise TastytradeDataError(f"{where}: field 'earnings' is not an object")
    earnings = earnings or {}
    return {
        "symbol": symbol,
        **{
            column: _number(item.get(field), field, where, divisor)
            for column, field, divisor in METRIC_NUMBERS
        },
        "liquidity_rating": _integer(item.get("liquidity-rating"), "liquidity-rating", where),
        "beta": _number(item.get("beta"), "beta", where),
        "corr_spy_3month": _number(item.get("corr-spy-3month"), "corr-spy-3month", where),
        "earnings_date": _date(earnings.get("expected-report-date"), "earnings.expected-report-date", where),
        "earnings_estimated": _boolean(earnings.get("estimated"), "earnings.estimated", where),
        "market_cap": _number(item.get("market-cap"), "market-cap", where),
        "dividend_yield": _number(item.get("dividend-yield"), "dividend-yield", where),
        "dividend_rate_per_share": _number(item.get("dividend-rate-per-share"), "dividend-rate-per-share", where),
        "dividend_ex_date": _date(item.get("dividend-ex-date"), "dividend-ex-date", where),
        "dividend_next_date": _date(item.get("dividend-next-date"), "dividend-next-date", where),
        "borrow_rate": _number(item.get("borrow-rate"), "borrow-rate", where, _PERCENT),
        "lendability": _text(item.get("lendability")),
        "implied_volatility_updated_at": _timestamp(
            item.get("implied-volatility-updated-at"), "implied-volatility-updated-at", where
        ),
    }


def _term_rows(item: Mapping[str, Any], symbol: str, where: str) -> list[dict[str, Any]]:
    expirations = item.get("option-expiration-implied-volatilities") or []
    if not isinstance(expirations, list):
        raise TastytradeDataError(f"{where}: option-expiration-implied-volatilities is not a list")
    rows = []
    for number, entry in enumerate(expirations):
        at = f"{where} expiration {number}"
        if not isinstance(entry, dict):
            raise TastytradeDataError(f"{at}: not an object")
        rows.append(
            {
                "symbol": symbol,
                "expiration_date": _date(_required(entry, "expiration-date", at), "expiration-date", at),
                "settlement_type": _text(entry.get("settlement-type")),
                "option_chain_type": _text(entry.get("option-chain-type")),
                "implied_volatility": _number(entry.get("implied-volatility"), "implied-volatility", at),
            }
        )
    return rows


def market_metrics_rows(
    items: Sequence[Mapping[str, Any]], *, as_of_date: date, fetched_at: datetime
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Metric items -> (``market_metrics`` rows, ``iv_term_structure`` rows), fractions throughout.

    Optional fields that are absent become nulls; an item without ``symbol`` (or an expiration
    without a date) raises ``TastytradeDataError`` naming the item's index.
    """
    stamp = _fetched_utc(as_of_date, fetched_at)
    metrics: list[dict[str, Any]] = []
    terms: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        where = _where("market-metrics", index, item)
        symbol = str(_required(item, "symbol", where))
        metrics.append({"as_of_date": as_of_date, **_metric_row(item, symbol, where), "fetched_at": stamp})
        terms.extend(
            {"as_of_date": as_of_date, **row, "fetched_at": stamp} for row in _term_rows(item, symbol, where)
        )
    return metrics, terms


_TIMES_OF_DAY = ("BMO", "AMC")


def earnings_calendar_rows(
    items: Sequence[Mapping[str, Any]], *, as_of_date: date, fetched_at: datetime
) -> list[dict[str, Any]]:
    """Metric items -> one ``earnings_calendar`` row per item that announces a report date.

    The evening's announcement is all the pipeline will ever know of the report's day and time:
    the historic endpoint later lists it under its quarter's end, without either. ``time-of-day``
    is kept when it is ``BMO`` or ``AMC`` (any case); anything else is unknown (NULL), never a
    reason to lose the date, and the metrics row itself does not depend on it.
    """
    stamp = _fetched_utc(as_of_date, fetched_at)
    rows: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        where = _where("market-metrics", index, item)
        symbol = str(_required(item, "symbol", where))
        earnings = item.get("earnings")
        if not isinstance(earnings, dict):
            continue  # no earnings (ETFs, indices, futures); a malformed one fails market_metrics_rows
        report = _date(earnings.get("expected-report-date"), "earnings.expected-report-date", where)
        if report is None:
            continue
        time_of_day = (_text(earnings.get("time-of-day")) or "").strip().upper()
        rows.append({
            "as_of_date": as_of_date,
            "symbol": symbol,
            "expected_report_date": report,
            "estimated": _boolean(earnings.get("estimated"), "earnings.estimated", where),
            "time_of_day": time_of_day if time_of_day in _TIMES_OF_DAY else None,
            "quarter_end_date": _date(earnings.get("quarter-end-date"), "earnings.quarter-end-date", where),
            "fetched_at": stamp,
        })
    return rows
