"""Synthetic Tastytrade accounts and positions, priced off the synthetic market.

The holdings are fixed (one of each instrument type the pipeline must parse), but every contract
is resolved against the clock: options expire in the months after the clock's month, futures are
the next quarterly contract, strikes sit near the price on the session the position was opened. The
opening session is the one ``held`` sessions before the first session of the clock's month, so a
position keeps its symbol, strike and cost for a whole month, like a real book.

``book(seed, universe)`` adds ``universe`` synthetic underlyings (``universe_symbols``: 3-4 letter
tickers drawn per seed, never one of the 17, an index name or a reserved ``ZZ`` name) held in
extra margin accounts ``5WU00001``, ``5WU00002``... (``PER_ACCOUNT`` underlyings each): every
underlying has a stock position (long or short) and most also an equity option or two, resolved
against the clock like the fixed holdings. ``universe=0`` is exactly the fixed book.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Literal

from variance_pipeline.simulator import dates
from variance_pipeline.simulator.formats import iso_offset, num
from variance_pipeline.simulator.market import (
    INDEX_NAMES,
    INSTRUMENTS,
    RESERVED_PREFIX,
    Bars,
    keyed_rng,
    lookup,
    sessions,
)

RISK_FREE = 0.04
FILL_DELAY_SECONDS = 77 * 60
"""Positions were opened 1h17m after their session's open (any fixed, plausible time will do)."""
_OPENED = datetime(2019, 12, 27, 18, 12, 3, 420000, tzinfo=timezone.utc)


@dataclass(frozen=True)
class Account:
    """Two open accounts (margin with futures, cash IRA) and a closed one the pipeline must skip."""

    number: str
    nickname: str
    type_name: str
    margin_or_cash: str
    futures: bool
    options_level: str
    opened_days_before: int
    closed: bool = False


ACCOUNTS: tuple[Account, ...] = (
    Account("5WT00001", "Individual", "Individual", "Margin", True, "No Restrictions", 0),
    Account("5WT00002", "Roth IRA", "Roth IRA", "Cash", False, "Defined Risk Spreads", 400),
    Account("5WT00003", "Old cash", "Individual", "Cash", False, "Covered And Cash Secured", 900, closed=True),
)

Kind = Literal["Equity", "Equity Option", "Future", "Future Option"]


@dataclass(frozen=True)
class Holding:
    """One position template: ``quantity`` is signed here and unsigned on the wire."""

    account: str
    kind: Kind
    underlying: str
    quantity: int
    held: int
    right: Literal["C", "P"] | None = None
    moneyness: float = 1.0
    months_out: int = 1
    series: str | None = None  # an option root other than the underlying: SPXW, the PM series of SPX


HOLDINGS: tuple[Holding, ...] = (
    Holding("5WT00001", "Equity", "AAPL", 100, 60),
    Holding("5WT00001", "Equity", "TSLA", -50, 12),
    Holding("5WT00001", "Equity Option", "SPY", -2, 5, "P", 0.95, 1),
    Holding("5WT00001", "Equity Option", "AAPL", 3, 3, "C", 1.05, 2),
    Holding("5WT00001", "Future", "/ES", 1, 9),
    Holding("5WT00001", "Future Option", "/ZN", -2, 4, "P", 0.985),
    Holding("5WT00001", "Future", "/6E", -1, 7),
    Holding("5WT00002", "Equity", "SPY", 40, 200),
    Holding("5WT00002", "Equity", "MSFT", 25, 150),
    Holding("5WT00002", "Equity", "NVDA", 60, 90),
    Holding("5WT00002", "Equity", "QQQ", 100, 30),
    Holding("5WT00002", "Equity Option", "QQQ", -1, 2, "C", 1.04, 1),
    Holding("5WT00002", "Equity Option", "IWM", 5, 6, "P", 0.93, 2),
)
AM_SETTLED_MONTHLIES = frozenset({"SPX", "NDX", "RUT", "XSP"})
"""Index roots whose standard monthly options settle on the opening print: ``expires-at`` 09:30 New
York on the expiration date. Their PM-settled series trade under another root (SPXW, NDXP, RUTW)."""
_MULTIPLIERS = {"/ES": 50, "/ZN": 1000, "/6E": 125000, "/CL": 1000, "/GC": 100}
_FUTURE_OPTION_CODES = {"/ZN": "OZN"}
PER_ACCOUNT = 50
"""Universe underlyings per extra account."""
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


@dataclass(frozen=True)
class Book:
    """The accounts ``/customers/me/accounts`` lists and what they hold."""

    accounts: tuple[Account, ...]
    holdings: tuple[Holding, ...]


FIXED_BOOK = Book(ACCOUNTS, HOLDINGS)


@lru_cache(maxsize=16)
def universe_symbols(seed: int, count: int, exclude: frozenset[str] = frozenset()) -> tuple[str, ...]:
    """``count`` distinct 3-4 letter tickers for ``seed``, none of ``exclude`` (the delisted set);
    a prefix of any longer list for the same seed and exclusions."""
    rng = keyed_rng(seed, "universe", "names")
    taken = {*(inst.symbol for inst in INSTRUMENTS), *INDEX_NAMES, *exclude}
    names: list[str] = []
    while len(names) < count:
        letters = rng.integers(0, 26, size=(256, 4))
        lengths = rng.integers(3, 5, size=256)
        for row, length in zip(letters, lengths, strict=True):
            name = "".join(_LETTERS[i] for i in row[:length])
            if name in taken or name.startswith(RESERVED_PREFIX):
                continue
            taken.add(name)
            names.append(name)
            if len(names) == count:
                break
    return tuple(names)


@lru_cache(maxsize=16)
def book(
    seed: int, universe: int = 0, exclude: frozenset[str] = frozenset(), extra: tuple[Holding, ...] = ()
) -> Book:
    """The fixed book plus ``universe`` synthetic underlyings in ``5WU`` accounts (see the docstring),
    plus the ``extra`` holdings (in the fixed accounts: a test's own positions)."""
    if universe <= 0:
        return Book(ACCOUNTS, HOLDINGS + extra) if extra else FIXED_BOOK
    names = universe_symbols(seed, universe, exclude)
    accounts = list(ACCOUNTS)
    holdings = list(HOLDINGS + extra)
    for start in range(0, len(names), PER_ACCOUNT):
        number = f"5WU{start // PER_ACCOUNT + 1:05d}"
        accounts.append(Account(number, f"Universe {start // PER_ACCOUNT + 1}", "Individual", "Margin", False,
                                "No Restrictions", 30 + start // PER_ACCOUNT))
        for name in names[start : start + PER_ACCOUNT]:
            rng = keyed_rng(seed, "universe", "holding", name)
            shares = int(rng.choice([10, 25, 50, 100, 200, 300, 500]))
            holdings.append(Holding(number, "Equity", name, shares if rng.uniform() < 0.8 else -shares,
                                    int(rng.integers(1, 250))))
            for _ in range(int(rng.choice([0, 1, 1, 2]))):
                right = "P" if rng.uniform() < 0.55 else "C"
                out_of_money = float(rng.uniform(0.02, 0.12))
                holdings.append(Holding(
                    number, "Equity Option", name, int(rng.choice([-5, -3, -2, -1, 1, 2, 3])), int(rng.integers(1, 20)),
                    right, 1 - out_of_money if right == "P" else 1 + out_of_money, int(rng.integers(1, 3)),
                ))
    return Book(tuple(accounts), tuple(holdings))


def account_items(book: Book = FIXED_BOOK) -> list[dict[str, Any]]:
    """``/customers/me/accounts`` items, with every field of the recorded response."""
    items = []
    for account in book.accounts:
        opened = _OPENED + timedelta(days=account.opened_days_before)
        items.append(
            {
                "account": {
                    "account-number": account.number,
                    "external-id": f"A{int(account.number[3:]) + 1236585:010d}",
                    "opened-at": iso_offset(opened),
                    "nickname": account.nickname,
                    "account-type-name": account.type_name,
                    "day-trader-status": False,
                    "is-closed": account.closed,
                    "is-firm-error": False,
                    "is-firm-proprietary": False,
                    "is-futures-approved": account.futures,
                    "is-test-drive": False,
                    "margin-or-cash": account.margin_or_cash,
                    "is-foreign": False,
                    "funding-date": (opened + timedelta(days=9)).date().isoformat(),
                    "investment-objective": "GROWTH",
                    "suitable-options-level": account.options_level,
                    "created-at": iso_offset(opened + timedelta(milliseconds=4)),
                },
                "authority-level": "owner",
            }
        )
    return items


def known_account(number: str, book: Book = FIXED_BOOK) -> bool:
    return any(account.number == number for account in book.accounts)


def position_items(
    account: str,
    clock: datetime,
    bars_for: Callable[[str], Bars],
    book: Book = FIXED_BOOK,
    include_marks: bool = False,
) -> list[dict[str, Any]]:
    """The account's positions as of ``clock`` (closed accounts hold nothing).

    ``mark`` and ``mark-price`` are only there with ``include_marks`` (the API sends them only
    for ``include-marks=true``).
    """
    if any(a.number == account and a.closed for a in book.accounts):
        return []
    views: dict[str, Bars] = {}  # one view per underlying, however many holdings it has
    held = [
        (holding, views.get(holding.underlying) or views.setdefault(holding.underlying, bars_for(holding.underlying)))
        for holding in book.holdings
        if holding.account == account
    ]
    items = [_position(holding, clock, bars) for holding, bars in held if bars.completed > 0]
    if not include_marks:
        for item in items:
            item.pop("mark", None)
            item.pop("mark-price", None)
    return items


@dataclass(frozen=True)
class _Contract:
    symbol: str
    underlying_symbol: str
    streamer_symbol: str
    multiplier: int
    expires_at: datetime | None
    strike: float | None = None


def _position(holding: Holding, clock: datetime, bars: Bars) -> dict[str, Any]:
    cal = sessions()
    month_start = dates.session_on_or_after(dates.new_york_date(clock).replace(day=1))
    last_idx = bars.completed - 1
    opened_idx = min(max(0, cal.index_on_or_after(month_start) - holding.held), last_idx)
    opened_at = datetime.fromtimestamp(int(cal.open_ts[opened_idx]) + FILL_DELAY_SECONDS, timezone.utc)
    contract = _contract(holding, clock, float(bars.close[opened_idx]))

    def price(idx: int, at: datetime) -> float:
        spot = float(bars.close[idx])
        if contract.strike is None:
            return spot
        return _option_price(holding, spot, contract.strike, float(bars.iv[idx]), contract.expires_at, at)

    tick = 0.015625 if holding.kind == "Future Option" else bars.instrument.tick
    last_close_at = datetime.fromtimestamp(int(cal.close_ts[last_idx]), timezone.utc)
    open_price = _round_to(price(opened_idx, opened_at), tick)
    close_price = _round_to(price(last_idx, last_close_at), tick)
    mark_price = _round_to(price(len(bars.close) - 1, clock), tick)
    places = 2 if abs(tick * 100 - round(tick * 100)) < 1e-9 else 6
    quantity = abs(holding.quantity)
    long = holding.quantity > 0
    session_day = cal.days[last_idx].astype(object).isoformat()
    item: dict[str, Any] = {
        "account-number": holding.account,
        "symbol": contract.symbol,
        "instrument-type": holding.kind,
        "underlying-symbol": contract.underlying_symbol,
        "streamer-symbol": contract.streamer_symbol,
        "quantity": quantity,
        "quantity-direction": "Long" if long else "Short",
        "close-price": num(close_price, places),
        "average-open-price": num(open_price, places),
        "average-yearly-market-close-price": num(open_price, places),
        "average-daily-market-close-price": num(close_price, places),
        "mark": num(mark_price * quantity * contract.multiplier, 2),
        "mark-price": num(mark_price, places),
        "multiplier": contract.multiplier,
        # As recorded (a short put shows "Debit"): the effect of closing the position.
        "cost-effect": "Credit" if long else "Debit",
        "is-suppressed": False,
        "is-frozen": False,
        "restricted-quantity": 0,
        "realized-day-gain": "0.0",
        "realized-day-gain-effect": "None",
        "realized-day-gain-date": session_day,
        "realized-today": "0.0",
        "realized-today-effect": "None",
        "realized-today-date": session_day,
        "created-at": iso_offset(opened_at),
        "updated-at": iso_offset(clock),
    }
    if contract.expires_at is not None:
        item["expires-at"] = iso_offset(contract.expires_at)
    return item


def _contract(holding: Holding, clock: datetime, spot_at_open: float) -> _Contract:
    """Resolve the holding to a concrete symbol relative to the clock's month."""
    today = dates.new_york_date(clock)
    root = holding.underlying
    if holding.kind == "Equity":
        return _Contract(root, root, root, 1, None)
    if holding.kind == "Equity Option":
        year, month = dates.add_months(today.year, today.month, holding.months_out)
        expiry = dates.monthly_expiration(year, month)
        step = 5.0 if spot_at_open >= 200 else 1.0 if spot_at_open >= 25 else 0.5
        strike = _round_to(spot_at_open * holding.moneyness, step)
        right = holding.right or "C"
        series = holding.series or root
        occ = f"{series:<6}{expiry:%y%m%d}{right}{round(strike * 1000):08d}"
        streamer = f".{series}{expiry:%y%m%d}{right}{_strike_text(strike)}"
        # An index's standard monthly settles at the open; its own series (SPXW) and equities at the close.
        am = series in AM_SETTLED_MONTHLIES
        expires_at = dates.new_york_time(expiry, 9, 30) if am else dates.new_york_time(expiry, 16)
        return _Contract(occ, root, streamer, 100, expires_at, strike)
    listed = lookup(root)
    exchange = listed.listed_market if listed else "XCME"
    if holding.kind == "Future":
        year, month = dates.next_quarter_month(today.year, today.month)
        expiry = dates.monthly_expiration(year, month)
        return _Contract(
            dates.future_code(root, year, month),
            root,
            f"{dates.future_code(root, year, month, 2)}:{exchange}",
            _MULTIPLIERS[root],
            dates.new_york_time(expiry, 9, 30),
        )
    option_year, option_month = dates.add_months(today.year, today.month, 2)
    future_year, future_month = dates.next_quarter_month(*dates.add_months(option_year, option_month, -1))
    expiry = dates.treasury_option_expiration(option_year, option_month)
    strike = _round_to(spot_at_open * holding.moneyness, 0.5)
    right = holding.right or "C"
    future = dates.future_code(root, future_year, future_month)
    product = _FUTURE_OPTION_CODES[root]
    option_code = dates.future_code(product, option_year, option_month)
    text = _strike_text(strike)
    return _Contract(
        f".{future} {option_code} {expiry:%y%m%d}{right}{text}",
        future,
        f"./{dates.future_code(product, option_year, option_month, 2)}{right}{text}:{exchange}",
        _MULTIPLIERS[root],
        dates.new_york_time(expiry, 17),
        strike,
    )


def _strike_text(strike: float) -> str:
    return f"{strike:g}"


def _round_to(value: float, step: float) -> float:
    return max(step, round(value / step) * step)


def _option_price(
    holding: Holding, spot: float, strike: float, iv: float, expires_at: datetime | None, at: datetime
) -> float:
    """Black-Scholes (Black-76 for future options) with a simple put skew; intrinsic at expiry."""
    call = holding.right == "C"
    years = max((expires_at - at).total_seconds(), 0.0) / (365.0 * 86400) if expires_at else 0.0
    if years <= 0:
        return max(0.0, spot - strike if call else strike - spot)
    vol = iv * max(0.5, 1 + 0.8 * math.log(spot / strike))
    carry = 0.0 if holding.kind == "Future Option" else RISK_FREE
    d1 = (math.log(spot / strike) + (carry + 0.5 * vol**2) * years) / (vol * math.sqrt(years))
    d2 = d1 - vol * math.sqrt(years)
    forward = spot * math.exp(carry * years)
    discount = math.exp(-RISK_FREE * years)
    if call:
        return discount * (forward * _cdf(d1) - strike * _cdf(d2))
    return discount * (strike * _cdf(-d2) - forward * _cdf(-d1))


def _cdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))
