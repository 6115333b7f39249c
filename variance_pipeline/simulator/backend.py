"""What answers the API calls once auth and faults are dealt with: the synthetic market or a replay.

The server talks to a ``Backend`` only, so replay mode and the synthetic market share the HTTP,
auth, fault and request-log machinery and cannot drift apart in those respects.
"""

from __future__ import annotations

from datetime import datetime
from typing import Callable, Mapping, Protocol

from variance_pipeline.simulator import chart, metrics, portfolio
from variance_pipeline.simulator.formats import Reply, tt_error, tt_items
from variance_pipeline.simulator.market import Bars, Split, bars_as_of, lookup


class Backend(Protocol):
    def accounts(self, clock: datetime) -> Reply: ...

    def positions(self, account: str, clock: datetime) -> Reply: ...

    def market_metrics(self, symbols: list[str], clock: datetime) -> Reply: ...

    def chart(self, ticker: str, query: Mapping[str, str], clock: datetime) -> Reply: ...


class SyntheticBackend:
    """Answers from the deterministic synthetic market for ``seed``.

    ``extra_splits`` returns the splits injected by faults for a symbol; it is asked on every
    request so that installing or removing a split fault takes effect immediately.
    """

    def __init__(self, seed: int, extra_splits: Callable[[str], tuple[Split, ...]]) -> None:
        self.seed = seed
        self.extra_splits = extra_splits

    def bars(self, symbol: str, clock: datetime) -> Bars:
        return bars_as_of(self.seed, symbol, clock, self.extra_splits(symbol))

    def accounts(self, clock: datetime) -> Reply:
        return Reply(200, tt_items(portfolio.account_items(), "/customers/me/accounts"))

    def positions(self, account: str, clock: datetime) -> Reply:
        if not portfolio.known_account(account):
            return Reply(404, tt_error("record_not_found", f"Account {account} not found"))
        items = portfolio.position_items(account, clock, lambda symbol: self.bars(symbol, clock))
        return Reply(200, tt_items(items, f"/accounts/{account}/positions"))

    def market_metrics(self, symbols: list[str], clock: datetime) -> Reply:
        items = metrics.synthetic_metrics(self.seed, symbols, clock, lambda symbol: self.bars(symbol, clock))
        return Reply(200, tt_items(items, "/market-metrics"))

    def chart(self, ticker: str, query: Mapping[str, str], clock: datetime) -> Reply:
        inst = lookup(ticker)
        if inst is None or inst.yahoo != ticker.strip().upper():
            return chart.not_found()
        data = chart.synthetic_chart(self.bars(inst.symbol, clock), clock)
        return chart.answer(data, query, int(clock.timestamp()))
