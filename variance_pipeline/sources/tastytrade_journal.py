"""The account's history -> rows: transactions, net-liq history points and balance snapshots.

Pure functions like ``tastytrade_account``. Money the API sends unsigned with a ``*-effect`` is
signed by it (Debit negative, Credit positive), fees included (a fee charged is negative), as the
SDK does (account.py, ``set_sign_for``). ``net-value`` is taken as sent, never recomputed from the
fees: a recorded row's net value differs from its value less its listed fees, and the cash the
account moved by is the broker's word. Every field but those a transaction cannot lack (``id``,
type, sub-type, ``executed-at``, ``value``, ``net-value``) is optional: a snapshot row with ten
fields still lands.
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from typing import Any, Mapping, Sequence
from zoneinfo import ZoneInfo

from variance_pipeline.instruments.symbology import root_symbol
from variance_pipeline.sources.tastytrade_account import _signed
from variance_pipeline.sources.tastytrade_frames import (
    TastytradeDataError,
    _boolean,
    _date,
    _integer,
    _number,
    _required,
    _text,
    _timestamp,
)

NEW_YORK = ZoneInfo("America/New_York")
FEE_FIELDS = ("commission", "clearing-fees", "regulatory-fees", "proprietary-index-option-fees", "other-charge")


def _utc(fetched_at: datetime) -> datetime:
    if fetched_at.tzinfo is None:
        raise ValueError("fetched_at must be timezone-aware (it is stored as UTC)")
    return fetched_at.astimezone(timezone.utc)


def transaction_rows(items: Sequence[Mapping[str, Any]], *, fetched_at: datetime) -> list[dict[str, Any]]:
    """``/accounts/{n}/transactions`` items -> one row each (see the module docstring)."""
    stamp = _utc(fetched_at)
    rows = []
    for index, item in enumerate(items):
        where = f"transaction item {index} (id {item.get('id')!r})"
        executed = _timestamp(_required(item, "executed-at", where), "executed-at", where)
        assert executed is not None
        symbol = _text(item.get("symbol"))
        kind = _text(item.get("instrument-type"))
        underlying = _text(item.get("underlying-symbol"))
        root = None
        if symbol and kind:
            try:
                root = root_symbol(symbol, kind, underlying)
            except ValueError as exc:
                raise TastytradeDataError(f"{where}: {exc}") from exc
        value = _signed(item, "value", where)
        net_value = _signed(item, "net-value", where)
        if value is None or net_value is None:
            raise TastytradeDataError(f"{where}: missing required field {'value' if value is None else 'net-value'!r}")
        row: dict[str, Any] = {
            "id": _integer(_required(item, "id", where), "id", where),
            "account_number": str(_required(item, "account-number", where)),
            "executed_at": executed,
            "transaction_date": _date(item.get("transaction-date"), "transaction-date", where)
            or executed.astimezone(NEW_YORK).date(),
            "transaction_type": str(_required(item, "transaction-type", where)),
            "transaction_sub_type": str(_required(item, "transaction-sub-type", where)),
            "action": _text(item.get("action")),
            "symbol": symbol,
            "instrument_type": kind,
            "underlying_symbol": underlying,
            "root_symbol": root,
            "quantity": _number(item.get("quantity"), "quantity", where),
            "price": _number(item.get("price"), "price", where),
            "value": value,
            "net_value": net_value,
        }
        for fee in FEE_FIELDS:
            row[fee.replace("-", "_")] = _signed(item, fee, where)
        row |= {
            "description": _text(item.get("description")),
            "order_id": _integer(item.get("order-id"), "order-id", where),
            "is_estimated_fee": _boolean(item.get("is-estimated-fee"), "is-estimated-fee", where),
            "trade_id": None,
            "fetched_at": stamp,
        }
        rows.append(row)
    return rows


def _point_time(raw: Any, where: str) -> datetime:
    """``"2023-06-08 13:30:00+00"`` (space, hour-only offset, as recorded) or any ISO-8601 time."""
    text = str(raw).strip()
    if len(text) >= 3 and text[-3] in "+-" and text[-3:].replace("+", "").replace("-", "").isdigit():
        text += ":00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as exc:
        raise TastytradeDataError(f"{where}: field 'time' = {raw!r} is not a time") from exc
    if parsed.tzinfo is None:
        raise TastytradeDataError(f"{where}: field 'time' = {raw!r} has no UTC offset")
    return parsed


def net_liq_rows(
    account_number: str, items: Sequence[Mapping[str, Any]], *, fetched_at: datetime
) -> list[dict[str, Any]]:
    """Net-liq history points -> one OHLC row per New York date (its points in time order)."""
    stamp = _utc(fetched_at)
    by_day: dict[date, list[tuple[datetime, Mapping[str, Any], str]]] = {}
    for index, item in enumerate(items):
        where = f"net-liq history of account {account_number} point {index}"
        when = _point_time(_required(item, "time", where), where)
        by_day.setdefault(when.astimezone(NEW_YORK).date(), []).append((when, item, where))
    rows = []
    for day, points in sorted(by_day.items()):
        points.sort(key=lambda p: p[0])
        first, last = points[0], points[-1]
        highs = [_number(p[1].get("high"), "high", p[2]) for p in points]
        lows = [_number(p[1].get("low"), "low", p[2]) for p in points]
        close = _number(_required(last[1], "close", last[2]), "close", last[2])
        rows.append({
            "account_number": account_number,
            "session_date": day,
            "open": _number(first[1].get("open"), "open", first[2]),
            "high": max((h for h in highs if h is not None), default=None),
            "low": min((v for v in lows if v is not None), default=None),
            "close": close,
            "pending_cash_close": _number(last[1].get("pending-cash-close"), "pending-cash-close", last[2]),
            "total_close": _number(last[1].get("total-close"), "total-close", last[2]),
            "points": len(points),
            "source": "net_liq_history",
            "fetched_at": stamp,
        })
    return rows


def balance_snapshot_rows(
    account_number: str, items: Sequence[Mapping[str, Any]], *, fetched_at: datetime
) -> list[dict[str, Any]]:
    """End-of-day balance snapshots -> net-liq rows (``source`` balance_snapshot): only
    ``net-liquidating-value`` and ``snapshot-date`` are needed; anything else may be absent."""
    stamp = _utc(fetched_at)
    rows = []
    for index, item in enumerate(items):
        where = f"balance snapshot {index} of account {account_number}"
        day = _date(_required(item, "snapshot-date", where), "snapshot-date", where)
        net_liq = _signed(item, "net-liquidating-value", where)
        if net_liq is None:
            raise TastytradeDataError(f"{where}: missing required field 'net-liquidating-value'")
        pending = _signed(item, "pending-cash", where)
        rows.append({
            "account_number": account_number, "session_date": day, "open": net_liq, "high": net_liq,
            "low": net_liq, "close": net_liq, "pending_cash_close": pending,
            "total_close": None if pending is None else net_liq + pending, "points": 1,
            "source": "balance_snapshot", "fetched_at": stamp,
        })
    return rows
