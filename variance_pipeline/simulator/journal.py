"""The accounts' history as Tastytrade serves it: transactions, net-liq history, balance snapshots.

Everything here is read from the engine's ledger (``ledger.py``), never written down: a
transaction item is a ``Fill`` in the shape of the recorded ``transactions.json`` (unsigned money
with a ``*-effect``, quantities as decimal strings, ids and order ids as ints; a ``Receive
Deliver`` removal of an option carries neither price nor action, as recorded), and an evening's
net liquidating value is the ledger's cash plus the holdings valued at that session's close by
``quotes.value`` (the engine's own marks; futures are settled into cash at the close, so they add
nothing). So positions on any evening equal the sum of the transactions up to then, and the
history follows from them.

What the simulator does not reproduce: the real ``net-liq/history`` answers ``1d`` with
5-minute points; here every window answers one point per session (at its close), ``1d`` the last
session's. Dividends and futures settlements (``Mark to Market``) carry the symbol they concern
(the ledger keeps it in the description; a real row's ``symbol``).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any, Mapping

from variance_pipeline.simulator import contracts, dates, engine, quotes
from variance_pipeline.simulator.formats import Reply, iso_offset, num, tt_error
from variance_pipeline.simulator.ledger import Fill, positions
from variance_pipeline.simulator.market import sessions, traded_closes
from variance_pipeline.simulator.strategy import ENGINE_ACCOUNTS

MAX_PER_PAGE = 2000
"""The API's largest ``per-page`` for transactions and balance snapshots (5000 is rejected)."""
DEFAULT_PER_PAGE = 250
TIME_BACK = {"1d": 1, "1w": 7, "1m": 31, "3m": 92, "6m": 183, "1y": 366}
"""``time-back`` windows in calendar days (``all``: everything)."""
FEES = ("commission", "clearing-fees", "regulatory-fees", "proprietary-index-option-fees")


def _effect(amount: float) -> str:
    return "Credit" if amount > 0 else "Debit" if amount < 0 else "None"


def _symbol_row(fill: Fill) -> tuple[str, str, str] | None:
    """(symbol, instrument type, underlying) of a row: its contract, or for a dividend or a
    futures settlement the symbol its description starts with."""
    if fill.contract is not None:
        c = fill.contract
        return c.symbol, c.instrument_type, c.underlying_symbol
    if fill.sub_type == "Dividend":
        symbol = fill.description.split()[0]
        return symbol, "Equity", symbol
    if fill.sub_type == "Mark to Market":
        symbol = fill.description.split()[0]
        future = contracts.parse(symbol, "Future")
        return symbol, "Future", future.underlying_symbol if future else symbol
    return None


def transaction_item(fill: Fill) -> dict[str, Any]:
    """One ledger row as a ``/transactions`` item (see the module docstring)."""
    item: dict[str, Any] = {"id": fill.id, "account-number": fill.account}
    found = _symbol_row(fill)
    if found is not None:
        item |= {"symbol": found[0], "instrument-type": found[1], "underlying-symbol": found[2]}
    item |= {
        "transaction-type": fill.transaction_type,
        "transaction-sub-type": fill.sub_type,
        "description": fill.description,
    }
    if fill.action:
        item["action"] = fill.action
    if fill.contract is not None:
        item["quantity"] = num(abs(fill.quantity), 1)
        if fill.action or fill.transaction_type == "Trade":
            item["price"] = num(fill.price, 6)
    elif fill.sub_type == "Dividend":
        item["price"] = num(fill.price, 6)
    item |= {
        "executed-at": iso_offset(fill.executed_at),
        "transaction-date": dates.new_york_date(fill.executed_at).isoformat(),
        "value": num(abs(fill.value), 2),
        "value-effect": _effect(fill.value),
    }
    if fill.transaction_type == "Trade":
        item |= {
            "regulatory-fees": num(fill.regulatory_fees, 3), "regulatory-fees-effect": _effect(-fill.regulatory_fees),
            "clearing-fees": num(fill.clearing_fees, 3), "clearing-fees-effect": _effect(-fill.clearing_fees),
        }
    elif fill.clearing_fees:
        item |= {"clearing-fees": num(fill.clearing_fees, 3), "clearing-fees-effect": "Debit"}
    net = round(fill.net_value, 3)
    item |= {"net-value": num(abs(net), 3), "net-value-effect": _effect(net)}
    if fill.transaction_type == "Trade":
        item |= {
            "commission": num(fill.commission, 3), "commission-effect": _effect(-fill.commission),
            "proprietary-index-option-fees": "0.0", "proprietary-index-option-fees-effect": "None",
        }
    item["is-estimated-fee"] = True
    if fill.order_id is not None:
        item |= {"order-id": fill.order_id, "ext-global-order-number": fill.order_id % 100_000, "leg-count": 1}
    return item


def _int(query: Mapping[str, str], key: str, default: int) -> int | Reply:
    raw = query.get(key)
    if raw in (None, ""):
        return default
    try:
        return int(str(raw))
    except ValueError:
        return Reply(400, tt_error("invalid_parameter", f"{key}: is invalid"))


def _date(query: Mapping[str, str], key: str) -> date | None | Reply:
    raw = query.get(key)
    if not raw:
        return None
    try:
        return date.fromisoformat(str(raw))
    except ValueError:
        return Reply(400, tt_error("invalid_parameter", f"{key}: is invalid"))


def page(items: list[dict[str, Any]], query: Mapping[str, str], context: str) -> Reply:
    """Items paged as the transactions and snapshots endpoints page them: always with a
    ``pagination`` block, ``per-page`` at most ``MAX_PER_PAGE`` (more is a 400, as 5000 is)."""
    per_page = _int(query, "per-page", DEFAULT_PER_PAGE)
    offset = _int(query, "page-offset", 0)
    if isinstance(per_page, Reply):
        return per_page
    if isinstance(offset, Reply):
        return offset
    if not 1 <= per_page <= MAX_PER_PAGE:
        return Reply(400, tt_error("invalid_parameter", f"per-page: must be between 1 and {MAX_PER_PAGE}"))
    offset = max(0, offset)
    start = offset * per_page
    chunk = items[start : start + per_page]
    pages = (len(items) + per_page - 1) // per_page
    return Reply(200, {
        "data": {"items": chunk},
        "context": context,
        "pagination": {
            "per-page": per_page, "page-offset": offset, "item-offset": start, "total-items": len(items),
            "total-pages": pages, "current-item-count": len(chunk), "previous-link": None, "next-link": None,
            "paging-link-template": None,
        },
    })


def transactions(seed: int, account: str, query: Mapping[str, str], clock: datetime) -> Reply:
    """``GET /accounts/{n}/transactions``: the account's ledger rows executed by ``clock``, sorted
    by execution (``sort`` Desc by default, as the API; Asc oldest first), ``start-date`` and
    ``end-date`` applied to ``transaction-date``, paged (see ``page``)."""
    sort = str(query.get("sort") or "Desc")
    if sort not in ("Asc", "Desc"):
        return Reply(400, tt_error("invalid_parameter", "sort: must be Asc or Desc"))
    start, end = _date(query, "start-date"), _date(query, "end-date")
    for bound in (start, end):
        if isinstance(bound, Reply):
            return bound
    rows = engine.run(seed).ledger.upto(clock, account) if account in ENGINE_ACCOUNTS else []
    items = [transaction_item(row) for row in rows]
    if start is not None or end is not None:
        items = [i for i in items if (start is None or i["transaction-date"] >= start.isoformat())  # type: ignore[union-attr]
                 and (end is None or i["transaction-date"] <= end.isoformat())]  # type: ignore[union-attr]
    if sort == "Desc":
        items.reverse()
    return page(items, query, f"/accounts/{account}/transactions")


@dataclass(frozen=True)
class Evening:
    """An account at one session's close, from the ledger."""

    day: date
    close: datetime
    cash: float
    long_equity: float
    short_equity: float
    long_derivative: float
    short_derivative: float

    @property
    def net_liq(self) -> float:
        return self.cash + self.long_equity - self.short_equity + self.long_derivative - self.short_derivative


_EVENINGS: dict[tuple[int, str], list[Evening]] = {}
_LOCK = threading.Lock()


def evenings(seed: int, account: str) -> list[Evening]:
    """Every session's close of ``account`` from its first ledger row to the engine's last session
    (computed once per seed and account: about a second)."""
    key = (seed, account)
    with _LOCK:
        if key in _EVENINGS:
            return _EVENINGS[key]
    book = engine.run(seed)
    fills = [f for f in book.ledger.fills if f.account == account]
    cal = sessions()
    found: list[Evening] = []
    if fills:
        first = cal.index_on_or_after(dates.new_york_date(fills[0].executed_at))
        held: list = []
        cursor = 0
        cash = 0.0
        for i in range(first, len(cal.days)):
            close = datetime.fromtimestamp(int(cal.close_ts[i]), timezone.utc)
            start = cursor
            while cursor < len(fills) and fills[cursor].executed_at <= close:
                cash += fills[cursor].net_value
                cursor += 1
            if cursor != start or i == first:
                held = positions(fills[:cursor])
            sums = {"Equity": [0.0, 0.0], "Option": [0.0, 0.0]}
            for h in held:
                if h.contract.instrument_type == "Future":
                    continue  # settled into cash at the close
                spot = float(traded_closes(seed, h.contract.root)[i])
                value = quotes.value(seed, h.contract, spot, i, close).mark * h.quantity * h.contract.multiplier
                side = sums["Equity" if h.contract.instrument_type == "Equity" else "Option"]
                side[0 if value >= 0 else 1] += abs(value)
            found.append(Evening(cal.days[i].astype(object), close, round(cash, 6), *sums["Equity"], *sums["Option"]))
    with _LOCK:
        _EVENINGS[key] = found
    return found


def _closed_by(seed: int, account: str, clock: datetime) -> list[Evening]:
    return [e for e in evenings(seed, account) if e.close <= clock]


def net_liq_history(seed: int, account: str, query: Mapping[str, str], clock: datetime) -> Reply:
    """``GET /accounts/{n}/net-liq/history``: ``start-time`` (wins) or ``time-back``; one OHLC
    point per session close (open = high = low = close: the simulator keeps no intraday path)."""
    context = f"/accounts/{account}/net-liq/history"
    start_time = query.get("start-time")
    time_back = query.get("time-back")
    history = _closed_by(seed, account, clock) if account in ENGINE_ACCOUNTS else []
    if start_time:
        try:
            since = datetime.fromisoformat(str(start_time).replace("Z", "+00:00"))
        except ValueError:
            return Reply(400, tt_error("invalid_parameter", "start-time: is invalid"))
        if since.tzinfo is None:
            since = since.replace(tzinfo=timezone.utc)
        history = [e for e in history if e.close >= since]
    elif time_back == "all":
        pass
    elif time_back in TIME_BACK:
        if time_back == "1d":
            history = history[-1:]
        else:
            since = clock - timedelta(days=TIME_BACK[time_back])
            history = [e for e in history if e.close >= since]
    else:
        return Reply(400, tt_error("invalid_parameter", "time-back or start-time is required: time-back one of "
                                   "1d, 1w, 1m, 3m, 6m, 1y, all"))
    items = []
    for e in history:
        value = num(e.net_liq, 3)
        items.append({
            "open": value, "high": value, "low": value, "close": value,
            "pending-cash-open": "0.0", "pending-cash-high": "0.0", "pending-cash-low": "0.0", "pending-cash-close": "0.0",
            "total-open": value, "total-high": value, "total-low": value, "total-close": value,
            "time": e.close.strftime("%Y-%m-%d %H:%M:%S+00"),
        })
    return Reply(200, {"data": {"items": items}, "context": context})


def balance_snapshots(seed: int, account: str, query: Mapping[str, str], clock: datetime) -> Reply:
    """``GET /accounts/{n}/balance-snapshots``: one end-of-day (``time-of-day`` EOD) or start-of-day
    (BOD: the previous close) snapshot per session in ``start-date``..``end-date`` (or on
    ``snapshot-date``; neither: the last five), paged. Rows are thin, as some real EOD rows are:
    ten fields, the values by class and net liquidating value."""
    time_of_day = str(query.get("time-of-day") or "EOD")
    if time_of_day not in ("EOD", "BOD"):
        return Reply(400, tt_error("invalid_parameter", "time-of-day: must be BOD or EOD"))
    bounds = [_date(query, key) for key in ("start-date", "end-date", "snapshot-date")]
    for bound in bounds:
        if isinstance(bound, Reply):
            return bound
    start, end, on = bounds  # type: ignore[misc]
    history = _closed_by(seed, account, clock) if account in ENGINE_ACCOUNTS else []
    rows: list[tuple[date, Evening]] = []
    for k, evening in enumerate(history):
        if time_of_day == "EOD":
            rows.append((evening.day, evening))
        elif k + 1 < len(history):
            rows.append((history[k + 1].day, evening))
    if on is not None:
        rows = [r for r in rows if r[0] == on]
    elif start is not None or end is not None:
        rows = [r for r in rows if (start is None or r[0] >= start) and (end is None or r[0] <= end)]
    else:
        rows = rows[-5:]
    items = [{
        "account-number": account,
        "cash-balance": num(e.cash, 3),
        "long-equity-value": num(e.long_equity, 3),
        "short-equity-value": num(e.short_equity, 3),
        "long-derivative-value": num(e.long_derivative, 3),
        "short-derivative-value": num(e.short_derivative, 3),
        "net-liquidating-value": num(e.net_liq, 3),
        "pending-cash": "0.0",
        "snapshot-date": day.isoformat(),
        "time-of-day": time_of_day,
    } for day, e in rows]
    return page(items, query, f"/accounts/{account}/balance-snapshots")
