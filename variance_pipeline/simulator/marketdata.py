"""``GET /market-data/by-type``: quotes for any equity, index, future, equity option or future option.

Query keys ``equity``, ``index``, ``future``, ``equity-option``, ``future-option`` and
``cryptocurrency``, each a comma-separated list (repeated keys are joined by the server); at most
``MAX_SYMBOLS`` symbols in total and at least one, else 400. Symbols the market does not list, or
that are malformed, are simply absent (as ``/market-metrics`` does). Options carry the fields of
the recorded SPY items (``mark``, ``bid``/``ask``, ``volatility``, Greeks per share, ``theo-price``,
an integer ``open-interest``...) from ``quotes.value``, so an option's ``mark`` is the positions'
``mark-price`` to the cent, and ``volatility`` is the IV that reprices the theoretical value.
The session fields (``open``, ``day-high-price``, ``day-low-price``, ``close``, ``prev-close``)
price the contract at the underlying's bar of the last completed session and of the one before.
VIX futures (``future=/VXZ5``) are quoted on ``curve``'s VX curve over spot VIX, the months it lists.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Callable, Collection, Mapping

from variance_pipeline.simulator import contracts, curve, quotes
from variance_pipeline.simulator.contracts import Contract
from variance_pipeline.simulator.formats import Reply, iso_z, num, tt_error, tt_items
from variance_pipeline.simulator.market import Bars, keyed_rng, sessions
from variance_pipeline.simulator.metrics import tasty_instrument

MAX_SYMBOLS = 100
CONTEXT = "/market-data/by-type"
TYPES = {
    "equity": "Equity",
    "index": "Index",
    "future": "Future",
    "equity-option": "Equity Option",
    "future-option": "Future Option",
    "cryptocurrency": "Cryptocurrency",
}


def requested(query: Mapping[str, str]) -> list[tuple[str, str]]:
    """(instrument type, symbol) pairs in request order."""
    pairs = []
    for key, kind in TYPES.items():
        for symbol in (query.get(key) or "").split(","):
            if symbol.strip():
                pairs.append((kind, symbol.strip()))
    return pairs


def _contract(seed: int, kind: str, symbol: str, delisted: Collection[str]) -> Contract | None:
    contract = contracts.parse(symbol, kind)
    if contract is None:
        return None
    if kind == "Future" and contract.root in curve.VOLATILITY_FUTURES:
        return contract  # priced off its index; listed or not depends on the session (by_type)
    inst = tasty_instrument(seed, contract.root, delisted)
    if inst is None or (kind == "Index") != (inst.kind == "index") or (kind == "Equity" and inst.kind not in ("equity", "etf")):
        return None
    if kind in ("Future", "Future Option") and inst.kind != "future":
        return None
    if kind == "Equity Option" and inst.kind == "future":
        return None
    return contract


def by_type(
    seed: int, query: Mapping[str, str], clock: datetime, bars_for: Callable[[str], Bars], delisted: Collection[str]
) -> Reply:
    pairs = requested(query)
    if not pairs:
        return Reply(400, tt_error("invalid_parameter", "at least one symbol is required (equity=, equity-option=, ...)"))
    if len(pairs) > MAX_SYMBOLS:
        return Reply(400, tt_error("invalid_parameter", f"at most {MAX_SYMBOLS} symbols per request, got {len(pairs)}"))
    items = []
    seen: set[tuple[str, str]] = set()
    for kind, symbol in pairs:
        contract = _contract(seed, kind, symbol, delisted)
        if contract is None or (kind, contract.symbol) in seen:
            continue
        seen.add((kind, contract.symbol))
        bars = bars_for(curve.spot_symbol(contract.root))
        if bars.completed < 2:
            continue
        if contract.root in curve.VOLATILITY_FUTURES and not curve.volatility_future_listed(contract.symbol, len(bars.close) - 1):
            continue  # a VX month not listed (expired or too far out): omitted, as the real API does
        items.append(item(seed, contract, kind, bars, clock, bars_for))
    return Reply(200, tt_items(items, CONTEXT))


def _session_values(seed: int, contract: Contract, bars: Bars, index: int) -> dict[str, float]:
    """The contract at the session's open, high, low and close of its underlying."""
    cal = sessions()
    closed_at = datetime.fromtimestamp(int(cal.close_ts[index]), timezone.utc)
    opened_at = datetime.fromtimestamp(int(cal.open_ts[index]), timezone.utc)
    prices = {
        "open": (float(bars.open[index]), opened_at),
        "high": (float(bars.high[index]), closed_at),
        "low": (float(bars.low[index]), closed_at),
        "close": (float(bars.close[index]), closed_at),
    }
    marks = {name: quotes.value(seed, contract, spot, index, at).mark for name, (spot, at) in prices.items()}
    if contract.is_option and not contract.call:
        marks["high"], marks["low"] = marks["low"], marks["high"]
    marks["high"] = max(marks.values())
    marks["low"] = min(marks.values())
    return marks


def item(seed: int, contract: Contract, kind: str, bars: Bars, clock: datetime, bars_for: Callable[[str], Bars]) -> dict[str, Any]:
    cal = sessions()
    last = bars.completed - 1
    now = quotes.quote(seed, contract, bars_for, clock)
    assert now is not None
    today = _session_values(seed, contract, bars, last)
    before = _session_values(seed, contract, bars, last - 1)
    places = 2 if abs(now.tick * 100 - round(now.tick * 100)) < 1e-9 else 6
    bid, ask = now.spread()
    rng = keyed_rng(seed, contract.symbol, "market-data", int(cal.close_ts[last]))
    volume = float(int(rng.integers(0, 3000)) if contract.is_option else int(bars.volume[last]))
    body: dict[str, Any] = {
        "symbol": contract.symbol,
        "instrument-type": kind,
        "updated-at": iso_z(clock),
        "bid": num(bid, places),
        "bid-size": num(float(rng.integers(1, 100)), 1),
        "ask": num(ask, places),
        "ask-size": num(float(rng.integers(1, 100)), 1),
        "mid": num((bid + ask) / 2, places + 1),
        "mark": num(now.mark, places),
        "last": num(today["close"], places),
        "last-mkt": num(today["close"], places),
        "open": num(today["open"], places),
        "day-high-price": num(today["high"], places),
        "day-low-price": num(today["low"], places),
        "close": num(today["close"], places),
        "close-price-type": "Regular",
        "prev-close": num(before["close"], places),
        "prev-close-price-type": "Regular",
        "summary-date": cal.days[last].astype(object).isoformat(),
        "prev-close-date": cal.days[last - 1].astype(object).isoformat(),
        "is-trading-halted": False,
        "halt-start-time": -1,
        "halt-end-time": -1,
        "volume": num(volume, 1),
    }
    if contract.is_option:
        greeks = now.greeks
        body |= {
            "volatility": num(float(now.volatility or 0.0), 9),
            "delta": num(greeks.delta, 9),
            "gamma": num(greeks.gamma, 9),
            "theta": num(greeks.theta, 9),
            "rho": num(greeks.rho, 9),
            "vega": num(greeks.vega, 9),
            "theo-price": num(now.theo, 9),
            "dx-mark": num(now.theo, 9),
            "tick-size": num(now.tick, 6),
            "open-interest": int(rng.integers(50, 20000)),
        }
    elif contract.root in curve.VOLATILITY_FUTURES:  # no year range of its own (priced off VIX)
        body["tick-size"] = num(now.tick, 6)
    else:
        year = bars.close[max(0, last - 251) : last + 1]
        body |= {
            "year-low-price": num(float(year.min()), places),
            "year-high-price": num(float(year.max()), places),
            "tick-size": num(now.tick, 6),
        }
    return body
