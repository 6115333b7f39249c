"""Synthetic Tastytrade accounts, what they hold as of a clock, and the positions endpoint's items.

The margin account ``5WT00001`` and the Roth IRA ``5WT00002`` hold what the premium-selling
engine (``engine.py``) holds after the ledger rows executed up to the clock: their positions are
the ledger's sums, never written down. ``5WT00003`` is closed and holds nothing.

``book(seed, universe)`` adds ``universe`` synthetic underlyings (``universe_symbols``: 3-4 letter
tickers drawn per seed, never one of the 17, an index name or a reserved ``ZZ`` name) held in
extra margin accounts ``5WU00001``, ``5WU00002``... (``PER_ACCOUNT`` underlyings each): every
underlying has a stock position (long or short) and most also an equity option or two. These are
templates resolved against the clock's month (options expire in the months after it, strikes sit
near the price on the session the position was opened, ``held`` sessions before the month's first),
so a position keeps its symbol, strike and cost for a whole month; each such account started with
``UNIVERSE_DEPOSIT`` in cash and paid for its positions at their opening prices. ``universe=0``
is exactly the engine's accounts.

Every value (``mark``, ``close-price``) comes from ``quotes``: the same numbers the balances, the
margin report and ``/market-data/by-type`` use.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from typing import Any, Callable

from variance_pipeline.simulator import contracts, dates, engine, quotes
from variance_pipeline.simulator.contracts import Contract
from variance_pipeline.simulator.formats import iso_offset, num
from variance_pipeline.simulator.ledger import Holding
from variance_pipeline.simulator.market import INDEX_NAMES, INSTRUMENTS, RESERVED_PREFIX, Bars, keyed_rng, sessions
from variance_pipeline.simulator.strategy import ENGINE_ACCOUNTS

FILL_DELAY_SECONDS = 77 * 60
"""Universe positions were opened 1h17m after their session's open (any fixed, plausible time)."""
_OPENED = datetime(2019, 12, 27, 18, 12, 3, 420000, tzinfo=timezone.utc)
OPENED = _OPENED
"""When the accounts were opened (plus each account's ``opened_days_before``)."""
UNIVERSE_DEPOSIT = 500_000.0


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

    @property
    def cash_account(self) -> bool:
        return self.margin_or_cash == "Cash"


ACCOUNTS: tuple[Account, ...] = (
    Account(engine.MARGIN, "Individual", "Individual", "Margin", True, "No Restrictions", 0),
    Account(engine.IRA, "Roth IRA", "Roth IRA", "Cash", False, "Defined Risk Spreads", 400),
    Account("5WT00003", "Old cash", "Individual", "Cash", False, "Covered And Cash Secured", 900, closed=True),
)
@dataclass(frozen=True)
class Template:
    """A universe position, resolved against the clock: ``quantity`` is signed."""

    account: str
    underlying: str
    quantity: int
    held: int
    right: str | None = None
    moneyness: float = 1.0
    months_out: int = 1
    series: str | None = None  # the option root when it is not the underlying's (SPXW)


EXTRA_ACCOUNT = "5WT00004"
"""The open margin account a server's ``holdings`` (a test's own positions) are held in."""
PER_ACCOUNT = 50
"""Universe underlyings per extra account."""
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


@dataclass(frozen=True)
class Book:
    """The accounts ``/customers/me/accounts`` lists and the universe accounts' templates."""

    accounts: tuple[Account, ...]
    templates: tuple[Template, ...] = ()


FIXED_BOOK = Book(ACCOUNTS)


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
    seed: int, universe: int = 0, exclude: frozenset[str] = frozenset(), extra: tuple[Template, ...] = ()
) -> Book:
    """The engine's accounts plus ``universe`` synthetic underlyings in ``5WU`` accounts, plus the
    ``extra`` templates (a test's own positions, in ``EXTRA_ACCOUNT``)."""
    if universe <= 0 and not extra:
        return FIXED_BOOK
    names = universe_symbols(seed, universe, exclude) if universe > 0 else ()
    accounts = list(ACCOUNTS)
    templates: list[Template] = [replace(t, account=EXTRA_ACCOUNT) for t in extra]
    if extra:
        accounts.append(Account(EXTRA_ACCOUNT, "Index options", "Individual", "Margin", False, "No Restrictions", 10))
    for start in range(0, len(names), PER_ACCOUNT):
        number = f"5WU{start // PER_ACCOUNT + 1:05d}"
        accounts.append(Account(number, f"Universe {start // PER_ACCOUNT + 1}", "Individual", "Margin", False,
                                "No Restrictions", 30 + start // PER_ACCOUNT))
        for name in names[start : start + PER_ACCOUNT]:
            rng = keyed_rng(seed, "universe", "holding", name)
            shares = int(rng.choice([10, 25, 50, 100, 200, 300, 500]))
            templates.append(Template(number, name, shares if rng.uniform() < 0.8 else -shares,
                                      int(rng.integers(1, 250))))
            for _ in range(int(rng.choice([0, 1, 1, 2]))):
                right = "P" if rng.uniform() < 0.55 else "C"
                out_of_money = float(rng.uniform(0.02, 0.12))
                templates.append(Template(
                    number, name, int(rng.choice([-5, -3, -2, -1, 1, 2, 3])), int(rng.integers(1, 20)),
                    right, 1 - out_of_money if right == "P" else 1 + out_of_money, int(rng.integers(1, 3)),
                ))
    return Book(tuple(accounts), tuple(templates))


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


def account_of(number: str, book: Book = FIXED_BOOK) -> Account | None:
    return next((account for account in book.accounts if account.number == number), None)


def known_account(number: str, book: Book = FIXED_BOOK) -> bool:
    return account_of(number, book) is not None


def holdings(seed: int, account: str, clock: datetime, bars_for: Callable[[str], Bars], book: Book = FIXED_BOOK) -> list[Holding]:
    """What ``account`` holds at ``clock``: the engine's ledger sums, or the universe templates."""
    found = account_of(account, book)
    if found is None or found.closed:
        return []
    if account in ENGINE_ACCOUNTS:
        held = engine.run(seed).ledger.positions_at(account, clock)
        return sorted(held, key=lambda h: (h.opened_at, h.contract.symbol))
    resolved = (_resolve(seed, t, clock, bars_for) for t in book.templates if t.account == account)
    return [h for h in resolved if h is not None]


def cash(seed: int, account: str, clock: datetime, bars_for: Callable[[str], Bars], book: Book = FIXED_BOOK) -> float:
    """The cash balance at ``clock``: the ledger's sum, or a universe account's deposit less its buys."""
    found = account_of(account, book)
    if found is None or found.closed:
        return 0.0
    if account in ENGINE_ACCOUNTS:
        return engine.run(seed).ledger.cash_at(account, clock)
    spent = sum(h.quantity * h.average_open_price * h.contract.multiplier for h in holdings(seed, account, clock, bars_for, book))
    return UNIVERSE_DEPOSIT - spent


def _resolve(seed: int, template: Template, clock: datetime, bars_for: Callable[[str], Bars]) -> Holding | None:
    bars = bars_for(template.underlying)
    if bars.completed == 0:
        return None
    cal = sessions()
    month_start = dates.session_on_or_after(dates.new_york_date(clock).replace(day=1))
    opened_idx = min(max(0, cal.index_on_or_after(month_start) - template.held), bars.completed - 1)
    opened_at = datetime.fromtimestamp(int(cal.open_ts[opened_idx]) + FILL_DELAY_SECONDS, timezone.utc)
    spot = float(bars.close[opened_idx])
    if template.right is None:
        contract = contracts.equity(template.underlying)
    else:
        today = dates.new_york_date(clock)
        year, month = dates.add_months(today.year, today.month, template.months_out)
        step = 5.0 if spot >= 200 else 1.0 if spot >= 25 else 0.5
        strike = max(step, round(spot * template.moneyness / step) * step)
        contract = contracts.equity_option(
            template.underlying, dates.monthly_expiration(year, month), template.right, strike, template.series
        )
    price = quotes.value(seed, contract, spot, opened_idx, opened_at).mark
    return Holding(template.account, contract, template.quantity, price, opened_at, ())


def close_value(seed: int, contract: Contract, bars: Bars) -> quotes.Value:
    """The contract at the close of the last completed session (the positions' ``close-price``)."""
    last = bars.completed - 1
    closed_at = datetime.fromtimestamp(int(sessions().close_ts[last]), timezone.utc)
    return quotes.value(seed, contract, float(bars.close[last]), last, closed_at)


def position_items(
    seed: int,
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
    items = []
    for held in holdings(seed, account, clock, bars_for, book):
        bars = bars_for(held.contract.root)
        if bars.completed == 0:
            continue
        mark = quotes.quote(seed, held.contract, bars_for, clock)
        assert mark is not None
        items.append(_item(held, mark, close_value(seed, held.contract, bars), bars, clock, include_marks))
    return items


def _places(tick: float) -> int:
    return 2 if abs(tick * 100 - round(tick * 100)) < 1e-9 else 6


def _item(held: Holding, mark: quotes.Value, close: quotes.Value, bars: Bars, clock: datetime, include_marks: bool) -> dict[str, Any]:
    contract = held.contract
    places = _places(mark.tick)
    quantity = abs(held.quantity)
    long = held.quantity > 0
    session_day = sessions().days[bars.completed - 1].astype(object).isoformat()
    item: dict[str, Any] = {
        "account-number": held.account,
        "symbol": contract.symbol,
        "instrument-type": contract.instrument_type,
        "underlying-symbol": contract.underlying_symbol,
        "streamer-symbol": contract.streamer_symbol,
        "quantity": quantity,
        "quantity-direction": "Long" if long else "Short",
        "close-price": num(close.mark, places),
        "average-open-price": num(held.average_open_price, places),
        "average-yearly-market-close-price": num(held.average_open_price, places),
        "average-daily-market-close-price": num(close.mark, places),
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
        "created-at": iso_offset(held.opened_at),
        "updated-at": iso_offset(clock),
    }
    if include_marks:
        item["mark"] = num(mark.mark * quantity * contract.multiplier, 2)
        item["mark-price"] = num(mark.mark, places)
    if contract.expires_at is not None:
        item["expires-at"] = iso_offset(contract.expires_at)
    return item
