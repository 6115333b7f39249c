"""What answers the API calls once auth and faults are dealt with: the synthetic market or a replay.

The server talks to a ``Backend`` only, so replay mode and the synthetic market share the HTTP,
auth, fault and request-log machinery and cannot drift apart in those respects.

Unknown symbols: the synthetic market lists every well-formed name (``market`` module docstring)
except the reserved ``ZZ...`` names and the backend's ``delisted`` set (``DEFAULT_DELISTED`` unless
given: the names tests rely on being unknown). A delisted symbol answers exactly as the real APIs
answer an unknown one: the chart's 404 body, absent from ``/market-metrics``, no earnings.
"""

from __future__ import annotations

import random
import string
import threading
from datetime import date, datetime, timezone
from typing import Callable, Iterable, Mapping, Protocol
from urllib.parse import quote

from variance_pipeline.simulator import balances, chart, curve, dates, engine, journal, marketdata, metrics, portfolio
from variance_pipeline.simulator.formats import Reply, iso_z, tt_error, tt_items
from variance_pipeline.simulator.market import Bars, Split, bars_as_of, lookup, spellings
from variance_pipeline.simulator.rates import risk_free_rate

DEFAULT_DELISTED = frozenset({"NOPE", "GONE"})
"""Well-formed names no synthetic market lists unless told otherwise (tests expect their 404)."""
EARNINGS_CONTEXT = "/market-metrics/historic-corporate-events/earnings-reports"


def known_tickers(count: int, seed: int = 500) -> list[str]:
    """``count`` distinct 4-letter tickers, the same for a seed, that every synthetic market knows:
    none reserved as unknown (``ZZ...``) or in ``DEFAULT_DELISTED``. For scale tests and benchmarks."""
    rng = random.Random(seed)
    chosen: dict[str, None] = {}
    while len(chosen) < count:
        symbol = "".join(rng.choices(string.ascii_uppercase, k=4))
        if not symbol.startswith("ZZ") and symbol not in DEFAULT_DELISTED:
            chosen[symbol] = None
    return sorted(chosen)
MARGIN_CONTEXT = "/margin-requirements-public-configuration"


def margin_configuration(clock: datetime) -> dict[str, object]:
    """``/margin-requirements-public-configuration``: the rate as of the clock's New York date, plus
    a few fixed margin settings (their names are the simulator's; clients read ``risk-free-rate``)."""
    return {
        "data": {
            "risk-free-rate": f"{risk_free_rate(dates.new_york_date(clock)):.4f}",
            "equity-initial-margin-requirement": "0.5",
            "equity-maintenance-margin-requirement": "0.25",
            "short-equity-maintenance-margin-requirement": "0.3",
            "naked-option-minimum-requirement": "0.1",
            "updated-at": iso_z(datetime.combine(dates.new_york_date(clock), datetime.min.time(), timezone.utc)),
        },
        "context": MARGIN_CONTEXT,
    }


def parse_start_date(query: Mapping[str, str]) -> date | None | Reply:
    """``start-date`` as a date (None when absent), or the 400 the API sends for a bad one."""
    raw = query.get("start-date")
    if not raw:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        return Reply(400, tt_error("invalid_parameter", f"start-date must be YYYY-MM-DD, got {raw!r}"))


class Backend(Protocol):
    def accounts(self, clock: datetime) -> Reply: ...

    def positions(self, account: str, clock: datetime, include_marks: bool = False) -> Reply: ...

    def market_metrics(self, symbols: list[str], clock: datetime) -> Reply: ...

    def chart(self, ticker: str, query: Mapping[str, str], clock: datetime) -> Reply: ...

    def margin_configuration(self, clock: datetime) -> Reply: ...

    def earnings(self, symbol: str, query: Mapping[str, str], clock: datetime) -> Reply: ...

    def balances(self, account: str, currency: str | None, clock: datetime) -> Reply: ...

    def margin_requirements(self, account: str, clock: datetime) -> Reply: ...

    def trading_status(self, account: str, clock: datetime) -> Reply: ...

    def market_data(self, query: Mapping[str, str], clock: datetime) -> Reply: ...

    def transactions(self, account: str, query: Mapping[str, str], clock: datetime) -> Reply: ...

    def net_liq_history(self, account: str, query: Mapping[str, str], clock: datetime) -> Reply: ...

    def balance_snapshots(self, account: str, query: Mapping[str, str], clock: datetime) -> Reply: ...


def account_not_found(account: str) -> Reply:
    return Reply(404, tt_error("record_not_found", f"Account {account} not found"))


class SyntheticBackend:
    """Answers from the deterministic synthetic market for ``seed``.

    ``extra_splits`` returns the splits injected by faults for a symbol; it is asked on every
    request so that installing or removing a split fault takes effect immediately. ``delisted``
    names symbols (either spelling) to treat as unknown; settable while serving (``/_sim/delisted``).
    ``universe`` adds that many synthetic underlyings in extra accounts (``portfolio.book``), named
    avoiding the constructor's delisted set; ``holdings`` (``portfolio.Template``) adds a test's own
    positions, held in ``portfolio.EXTRA_ACCOUNT``.
    """

    def __init__(
        self,
        seed: int,
        extra_splits: Callable[[str], tuple[Split, ...]],
        delisted: Iterable[str] | None = None,
        universe: int = 0,
        holdings: Iterable[portfolio.Template] = (),
    ) -> None:
        self.seed = seed
        self.extra_splits = extra_splits
        self._lock = threading.Lock()
        self._delisted: frozenset[str] = frozenset()
        self.delisted = DEFAULT_DELISTED if delisted is None else delisted
        self.book = portfolio.book(seed, max(0, int(universe)), self.delisted, tuple(holdings))
        engine.warm_up(seed)  # the accounts' history: ready before the first positions request

    @property
    def delisted(self) -> frozenset[str]:
        """The delisted Tastytrade symbols (names given in Yahoo spelling are stored as Tastytrade's)."""
        return self._delisted

    @delisted.setter
    def delisted(self, names: Iterable[str]) -> None:
        if isinstance(names, str):
            raise TypeError("delisted must be a collection of symbols, not one string")
        canonical: set[str] = set()
        for name in names:
            spelled = spellings(str(name))
            canonical.add(spelled[0] if spelled else str(name).strip())
        with self._lock:
            self._delisted = frozenset(canonical)

    def bars(self, symbol: str, clock: datetime) -> Bars:
        return bars_as_of(self.seed, symbol, clock, self.extra_splits(symbol))

    def accounts(self, clock: datetime) -> Reply:
        return Reply(200, tt_items(portfolio.account_items(self.book), "/customers/me/accounts"))

    def positions(self, account: str, clock: datetime, include_marks: bool = False) -> Reply:
        if not portfolio.known_account(account, self.book):
            return account_not_found(account)
        items = portfolio.position_items(
            self.seed, account, clock, lambda symbol: self.bars(symbol, clock), self.book, include_marks=include_marks
        )
        return Reply(200, tt_items(items, f"/accounts/{account}/positions"))

    def market_metrics(self, symbols: list[str], clock: datetime) -> Reply:
        items = metrics.synthetic_metrics(
            self.seed, symbols, clock, lambda symbol: self.bars(symbol, clock), self._delisted
        )
        return Reply(200, tt_items(items, "/market-metrics"))

    def chart(self, ticker: str, query: Mapping[str, str], clock: datetime) -> Reply:
        dated = curve.parse_ticker(ticker, self.seed)
        if dated is not None:  # a dated futures contract (ESM26.CME): its own prices on the curve
            root, year, month = dated
            bars = None if root in self._delisted else curve.contract_bars(self.bars(root, clock), root, year, month, self.seed)
            if bars is None:
                return chart.not_found()
            return chart.answer(chart.synthetic_chart(bars, clock), query, int(clock.timestamp()))
        inst = lookup(ticker, self.seed)
        if inst is None or inst.yahoo != ticker.strip().upper() or inst.symbol in self._delisted:
            return chart.not_found()
        data = chart.synthetic_chart(self.bars(inst.symbol, clock), clock)
        return chart.answer(data, query, int(clock.timestamp()))

    def margin_configuration(self, clock: datetime) -> Reply:
        return Reply(200, margin_configuration(clock))

    def earnings(self, symbol: str, query: Mapping[str, str], clock: datetime) -> Reply:
        """Past reports of ``symbol`` (Tastytrade spelling); unknown symbols answer an empty list."""
        start = parse_start_date(query)
        if isinstance(start, Reply):
            return start
        inst = metrics.tasty_instrument(self.seed, symbol, self._delisted)
        items = [] if inst is None else metrics.earnings_reports(self.seed, inst, start, clock)
        return Reply(200, tt_items(items, f"{EARNINGS_CONTEXT}/{quote(symbol, safe='')}"))

    def _state(self, account: str, clock: datetime) -> balances.State | None:
        found = portfolio.account_of(account, self.book)
        if found is None:
            return None
        return balances.state(self.seed, found, clock, lambda symbol: self.bars(symbol, clock), self.book)

    def balances(self, account: str, currency: str | None, clock: datetime) -> Reply:
        """``/accounts/{n}/balances`` and ``/balances/USD``: one object in ``data`` (no other currency)."""
        state = self._state(account, clock)
        if state is None:
            return account_not_found(account)
        context = f"/accounts/{account}/balances" + (f"/{currency}" if currency else "")
        if currency is not None and currency.upper() != "USD":
            return Reply(404, tt_error("record_not_found", f"No {currency} balances for account {account}"))
        return Reply(200, {"data": balances.balances(state), "context": context})

    def margin_requirements(self, account: str, clock: datetime) -> Reply:
        state = self._state(account, clock)
        if state is None:
            return account_not_found(account)
        report = balances.margin_report(state, balances.calculation_type(state.account), state.account.options_level)
        return Reply(200, {"data": report, "context": f"/margin/accounts/{account}/requirements"})

    def trading_status(self, account: str, clock: datetime) -> Reply:
        state = self._state(account, clock)
        if state is None:
            return account_not_found(account)
        called = state.net_liquidating_value < sum(g.requirement for g in state.groups())
        return Reply(200, {"data": balances.trading_status(state.account, clock, called),
                           "context": f"/accounts/{account}/trading-status"})

    def market_data(self, query: Mapping[str, str], clock: datetime) -> Reply:
        return marketdata.by_type(self.seed, query, clock, lambda symbol: self.bars(symbol, clock), self._delisted)

    def transactions(self, account: str, query: Mapping[str, str], clock: datetime) -> Reply:
        """The ledger's rows of an engine account (``journal``); other open accounts have none."""
        if not portfolio.known_account(account, self.book):
            return account_not_found(account)
        return journal.transactions(self.seed, account, query, clock)

    def net_liq_history(self, account: str, query: Mapping[str, str], clock: datetime) -> Reply:
        if not portfolio.known_account(account, self.book):
            return account_not_found(account)
        return journal.net_liq_history(self.seed, account, query, clock)

    def balance_snapshots(self, account: str, query: Mapping[str, str], clock: datetime) -> Reply:
        if not portfolio.known_account(account, self.book):
            return account_not_found(account)
        return journal.balance_snapshots(self.seed, account, query, clock)
