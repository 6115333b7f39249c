"""Tastytrade account responses -> rows: the account list, balances, margin report, trading status
and the broker's option quotes. Pure functions like ``tastytrade_frames``.

Money the API sends unsigned with a ``*-effect`` sibling is signed by it (Debit negative, Credit
positive; as the SDK does, utils.py). Requirements and buying power are kept as magnitudes (a
requirement is never "negative"). Unknown fields are ignored and missing optional ones are None,
so a thinner response (the 2023 recordings lack ``used-derivative-buying-power``) still lands.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Mapping, Sequence

from variance_pipeline.sources.tastytrade_frames import (
    TastytradeDataError,
    _boolean,
    _date,
    _fetched_utc,
    _integer,
    _number,
    _required,
    _text,
    _timestamp,
)


def _signed(data: Mapping[str, Any], field: str, where: str) -> float | None:
    """``field`` signed by ``field-effect``: Debit negative, Credit positive, else as sent."""
    value = _number(data.get(field), field, where)
    if value is None:
        return None
    effect = data.get(f"{field}-effect")
    if effect == "Debit":
        return -abs(value)
    if effect == "Credit":
        return abs(value)
    return value


def _magnitude(data: Mapping[str, Any], field: str, where: str) -> float | None:
    value = _number(data.get(field), field, where)
    return None if value is None else abs(value)


def account_rows(entries: Sequence[Mapping[str, Any]], *, as_of_date: date, fetched_at: datetime) -> list[dict[str, Any]]:
    """``/customers/me/accounts`` entries -> one row per account (closed ones included)."""
    stamp = _fetched_utc(as_of_date, fetched_at)
    rows = []
    for index, entry in enumerate(entries):
        where = f"accounts item {index}"
        account = entry.get("account") or {}
        rows.append({
            "as_of_date": as_of_date,
            "account_number": str(_required(account, "account-number", where)),
            "nickname": _text(account.get("nickname")),
            "account_type_name": _text(account.get("account-type-name")),
            "margin_or_cash": _text(account.get("margin-or-cash")),
            "is_closed": bool(_boolean(account.get("is-closed"), "is-closed", where)),
            "is_futures_approved": _boolean(account.get("is-futures-approved"), "is-futures-approved", where),
            "suitable_options_level": _text(account.get("suitable-options-level")),
            "authority_level": _text(entry.get("authority-level")),
            "fetched_at": stamp,
        })
    return rows


_BALANCE_MAGNITUDES = (
    "equity-buying-power", "derivative-buying-power", "used-derivative-buying-power", "maintenance-requirement",
    "futures-margin-requirement",
)
_BALANCE_VALUES = (
    "net-liquidating-value", "cash-balance", "margin-equity", "maintenance-excess", "pending-cash",
    "long-equity-value", "short-equity-value", "long-derivative-value", "short-derivative-value",
    "long-futures-value", "short-futures-value", "long-futures-derivative-value", "short-futures-derivative-value",
    "maintenance-call-value",
)


def balance_rows(
    account_number: str, data: Mapping[str, Any], *, as_of_date: date, fetched_at: datetime
) -> list[dict[str, Any]]:
    """``/accounts/{n}/balances`` ``data`` -> one row; net liquidating value is required."""
    where = f"balances of account {account_number}"
    _required(data, "net-liquidating-value", where)
    row: dict[str, Any] = {"as_of_date": as_of_date, "account_number": account_number}
    for field in _BALANCE_VALUES:
        row[field.replace("-", "_")] = _signed(data, field, where)
    for field in _BALANCE_MAGNITUDES:
        row[field.replace("-", "_")] = _magnitude(data, field, where)
    row["snapshot_date"] = _date(data.get("snapshot-date"), "snapshot-date", where)
    row["updated_at"] = _timestamp(data.get("updated-at"), "updated-at", where)
    row["fetched_at"] = _fetched_utc(as_of_date, fetched_at)
    return [row]


def margin_requirement_rows(
    account_number: str, report: Mapping[str, Any], *, as_of_date: date, fetched_at: datetime
) -> list[dict[str, Any]]:
    """The margin report -> one row per underlying group (empty ``{}`` groups are skipped)."""
    stamp = _fetched_utc(as_of_date, fetched_at)
    groups = report.get("groups") or []
    if not isinstance(groups, list):
        raise TastytradeDataError(f"margin report of account {account_number}: groups is not a list")
    calculation = _text(report.get("margin-calculation-type"))
    rows = []
    for index, group in enumerate(groups):
        if not isinstance(group, Mapping) or not group:
            continue
        where = f"margin report of account {account_number} group {index}"
        rows.append({
            "as_of_date": as_of_date,
            "account_number": account_number,
            "underlying_symbol": str(_required(group, "underlying-symbol", where)),
            "description": _text(group.get("description")),
            "buying_power": _magnitude(group, "buying-power", where),
            "margin_requirement": _magnitude(group, "margin-requirement", where),
            "maintenance_requirement": _magnitude(group, "maintenance-requirement", where),
            "expected_price_range_up_percent": _number(
                group.get("expected-price-range-up-percent"), "expected-price-range-up-percent", where
            ),
            "expected_price_range_down_percent": _number(
                group.get("expected-price-range-down-percent"), "expected-price-range-down-percent", where
            ),
            "point_of_no_return_percent": _number(group.get("point-of-no-return-percent"), "point-of-no-return-percent", where),
            "margin_calculation_type": calculation,
            "fetched_at": stamp,
        })
    return rows


def trading_status_rows(
    account_number: str, data: Mapping[str, Any], *, as_of_date: date, fetched_at: datetime
) -> list[dict[str, Any]]:
    where = f"trading status of account {account_number}"

    def flag(field: str) -> bool | None:
        return _boolean(data.get(field), field, where)

    return [{
        "as_of_date": as_of_date,
        "account_number": account_number,
        "options_level": _text(data.get("options-level")),
        "is_in_margin_call": flag("is-in-margin-call"),
        "is_portfolio_margin_enabled": flag("is-portfolio-margin-enabled"),
        "is_closing_only": flag("is-closing-only"),
        "is_frozen": flag("is-frozen"),
        "is_futures_enabled": flag("is-futures-enabled"),
        "short_calls_enabled": flag("short-calls-enabled"),
        "is_pattern_day_trader": flag("is-pattern-day-trader"),
        "day_trade_count": _integer(data.get("day-trade-count"), "day-trade-count", where),
        "equities_margin_calculation_type": _text(data.get("equities-margin-calculation-type")),
        "updated_at": _timestamp(data.get("updated-at"), "updated-at", where),
        "fetched_at": _fetched_utc(as_of_date, fetched_at),
    }]


QUOTE_GREEKS = ("volatility", "delta", "gamma", "theta", "vega")


def option_quote_rows(items: Sequence[Mapping[str, Any]], *, as_of_date: date, fetched_at: datetime) -> list[dict[str, Any]]:
    """``/market-data/by-type`` items -> rows: options (the broker's IV and Greeks where sent) and
    futures (``instrument_type`` Future: mark, bid and ask; no Greeks)."""
    stamp = _fetched_utc(as_of_date, fetched_at)
    rows = []
    for index, item in enumerate(items):
        where = f"market-data item {index} ({item.get('symbol')!r})"
        row: dict[str, Any] = {
            "as_of_date": as_of_date,
            "symbol": str(_required(item, "symbol", where)),
            "instrument_type": _text(item.get("instrument-type")),
        }
        for field in ("mark", "bid", "ask", *QUOTE_GREEKS, "theo-price"):
            row[field.replace("-", "_")] = _number(item.get(field), field, where)
        row["open_interest"] = _integer(item.get("open-interest"), "open-interest", where)
        row["fetched_at"] = stamp
        rows.append(row)
    return rows
