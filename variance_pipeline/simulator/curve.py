"""Dated futures contracts: their own prices (a contango curve over the continuous) and tickers.

Yahoo lists a dated contract under its exchange's suffix (``ESM26.CME``, ``ZNH26.CBT``,
``CLJ26.NYM``, ``GCJ26.CMX``; ``ESM6=F`` is not a ticker) beside the front-month continuous
(``ES=F``). Tastytrade names the contract a future option exercises into (``/MESM6``), so a
contract priced as the continuous would be off by the calendar basis.

The simulator's curve: on each session a contract trades at the continuous (the front contract
of the root's listing cycle) times ``exp(carry x (T_contract - T_front))``, T in years from the
session to each contract's expiration (the third Friday: ``contracts.future_expiration``) and
``carry`` per root (``CARRY``: financing less yield; positive is contango). So the front contract
is the continuous itself, later ones are dearer (contango) or cheaper (``/ZN``), and a contract's
bars end on its expiration. Everything else (calendar-day bars, stamps, meta) is the root's.

VIX futures (``/VX``, Cboe) have no continuous here: a VX contract is priced off spot VIX, in
contango, ``VIX x (1 + VX_CONTANGO_PER_MONTH x months to its expiration)`` on the tick, so each
later month is dearer and every request of a session gets the same numbers. The monthly contracts
of the next ``VX_LISTED_MONTHS`` months are listed (expiring with that month's VIX options, the
third Friday here); any other VX symbol is unknown and ``/market-data/by-type`` omits it, as the
real API does. A VIX option is valued with Black-76 on the VX contract of its expiration month.
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import date
from functools import lru_cache

import numpy as np

from variance_pipeline.simulator import dates
from variance_pipeline.simulator.market import Bars, lookup, sessions

CARRY = {"/ES": 0.03, "/MES": 0.03, "/ZN": -0.01, "/CL": 0.06, "/MCL": 0.06, "/GC": 0.045, "/MGC": 0.045, "/6E": 0.015}
"""Per year; any other future root: ``DEFAULT_CARRY``."""
DEFAULT_CARRY = 0.03
MONTHLY_ROOTS = frozenset({"/CL", "/MCL"})
EVEN_MONTH_ROOTS = frozenset({"/GC", "/MGC"})
VOLATILITY_FUTURES = {"/VX": "VIX"}
"""Futures on a volatility index -> the index whose bars price them (no continuous of their own)."""
VX_CONTANGO_PER_MONTH = 0.04
VX_LISTED_MONTHS = 9
VX_TICK = 0.05
DAYS_PER_MONTH = 365.25 / 12
_TICKER = re.compile(r"^([A-Z0-9]+?)([FGHJKMNQUVXZ])(\d{2})\.([A-Z]{3})$")


def cycle_months(root: str) -> tuple[int, ...]:
    """The months a root lists contracts in: crude monthly, gold even months, the rest quarterly."""
    if root in MONTHLY_ROOTS:
        return tuple(range(1, 13))
    if root in EVEN_MONTH_ROOTS:
        return (2, 4, 6, 8, 10, 12)
    return dates.QUARTER_MONTHS


def expiration(root: str, year: int, month: int) -> date:
    return dates.monthly_expiration(year, month)


def parse_ticker(ticker: str, seed: int) -> tuple[str, int, int] | None:
    """``ESM26.CME`` -> (``/ES``, 2026, 6) when ``/ES`` is a listed future on that exchange."""
    match = _TICKER.match(ticker.strip())
    if match is None:
        return None
    root, month, year, exchange = match.groups()
    inst = lookup(f"/{root}", seed)
    if inst is None or inst.kind != "future" or inst.exchange != exchange:
        return None
    return f"/{root}", 2000 + int(year), dates.FUTURE_MONTH_CODES.index(month) + 1


def yahoo_ticker(root: str, year: int, month: int, seed: int) -> str | None:
    inst = lookup(root, seed)
    if inst is None or inst.kind != "future":
        return None
    return f"{root[1:]}{dates.FUTURE_MONTH_CODES[month - 1]}{year % 100:02d}.{inst.exchange}"


@lru_cache(maxsize=64)
def _front_expirations(root: str) -> np.ndarray:
    """Every contract expiration of the root's cycle over the calendar (datetime64[D], sorted)."""
    cal = sessions()
    first, last = cal.days[0].astype(object), cal.days[-1].astype(object)
    months = cycle_months(root)
    found = [
        expiration(root, year, month)
        for year in range(first.year, last.year + 2)
        for month in months
    ]
    return np.array(sorted(found), dtype="datetime64[D]")


@lru_cache(maxsize=256)
def factors(root: str, year: int, month: int) -> np.ndarray:
    """Per session of the calendar: the contract's price over the continuous (NaN after it expired)."""
    cal = sessions()
    fronts = _front_expirations(root)
    front = fronts[np.minimum(np.searchsorted(fronts, cal.days), len(fronts) - 1)]
    own = np.datetime64(expiration(root, year, month), "D")
    carry = CARRY.get(root, DEFAULT_CARRY)
    years_own = (own - cal.days).astype("float64") / 365.0
    years_front = (front - cal.days).astype("float64") / 365.0
    out = np.exp(carry * (years_own - years_front))
    out[cal.days > own] = np.nan
    return out


def factor_on(root: str, year: int, month: int, index: int) -> float:
    """The contract over the continuous on session ``index`` (1.0 once expired: settled at it)."""
    value = float(factors(root, year, month)[index])
    return value if np.isfinite(value) else 1.0


def contract_bars(root_bars: Bars, root: str, year: int, month: int, seed: int) -> Bars | None:
    """The dated contract's bars: the root's times its factor, rounded to the tick, ending on its
    expiration; None before the contract has a bar."""
    inst = root_bars.instrument
    n = len(root_bars.close)
    scale = factors(root, year, month)[:n]
    keep = np.isfinite(scale)
    if not keep.any():
        return None
    count = int(np.flatnonzero(keep)[-1]) + 1
    scale = scale[:count]

    def priced(values: np.ndarray) -> np.ndarray:
        return np.round(np.maximum(inst.tick, np.round(values[:count] * scale / inst.tick) * inst.tick), 6)

    ticker = yahoo_ticker(root, year, month, seed) or inst.yahoo
    code = dates.future_code(root, year, month)
    name = f"{inst.name.removesuffix(' Futures')} {dates.FUTURE_MONTH_CODES[month - 1]}{year % 100:02d}"
    return replace(
        root_bars,
        instrument=replace(inst, symbol=code, yahoo=ticker, name=name),
        timestamp=root_bars.timestamp[:count],
        open=priced(root_bars.open),
        high=priced(root_bars.high),
        low=priced(root_bars.low),
        close=priced(root_bars.close),
        adjclose=priced(root_bars.close),
        volume=root_bars.volume[:count],
        live=root_bars.live and count == n,
        iv=root_bars.iv[:count],
    )


def contract_of(symbol: str) -> tuple[str, int, int] | None:
    """A Tastytrade contract (``/MESM6``) -> (root, year, month); the year's decade from the 2020s."""
    match = re.match(r"^(/[A-Z0-9]+?)([FGHJKMNQUVXZ])(\d{1,2})$", symbol.strip())
    if match is None:
        return None
    digits = int(match.group(3))
    year = 2000 + digits if len(match.group(3)) == 2 else 2020 + digits
    return match.group(1), year, dates.FUTURE_MONTH_CODES.index(match.group(2)) + 1


def spot_symbol(root: str) -> str:
    """Whose bars price ``root``'s contracts: the index for a volatility future (``/VX`` -> VIX)."""
    return VOLATILITY_FUTURES.get(root, root)


def volatility_future_months(symbol: str, index: int) -> float | None:
    """Months from session ``index`` to a volatility future's expiration (negative once expired);
    None when the symbol is no such future."""
    parsed = contract_of(symbol)
    if parsed is None or parsed[0] not in VOLATILITY_FUTURES:
        return None
    cal = sessions()
    day = cal.days[min(max(index, 0), len(cal.days) - 1)]
    return float((np.datetime64(expiration(*parsed), "D") - day).astype("float64")) / DAYS_PER_MONTH


def volatility_future_listed(symbol: str, index: int) -> bool:
    """Whether ``/market-data/by-type`` quotes the VX contract on session ``index``: not expired,
    at most ``VX_LISTED_MONTHS`` out."""
    months = volatility_future_months(symbol, index)
    return months is not None and 0 <= months <= VX_LISTED_MONTHS


def volatility_future_price(symbol: str, spot: float, index: int) -> float | None:
    """A VX contract on session ``index`` with spot VIX at ``spot``: the contango factor of its
    months out, capped at ``VX_LISTED_MONTHS`` (and spot once expired), on the tick."""
    months = volatility_future_months(symbol, index)
    if months is None:
        return None
    factor = 1 + VX_CONTANGO_PER_MONTH * min(max(months, 0.0), VX_LISTED_MONTHS)
    return round(max(VX_TICK, round(spot * factor / VX_TICK) * VX_TICK), 2)


def volatility_option_future(root: str, expiration_day: date) -> str | None:
    """The VX contract a VIX option settles to: the one of its expiration's month (``/VXZ5``)."""
    future = next((f for f, index in VOLATILITY_FUTURES.items() if index == root), None)
    return dates.future_code(future, expiration_day.year, expiration_day.month) if future else None


def dated_price(symbol: str, continuous: float, index: int, seed: int) -> float:
    """A contract's price on session ``index`` given the continuous's, rounded to the tick as its
    chart rounds it; the continuous itself for a root. A volatility future: ``continuous`` is its
    index (see the module docstring)."""
    vx = volatility_future_price(symbol, continuous, index)
    if vx is not None:
        return vx
    parsed = contract_of(symbol)
    inst = lookup(parsed[0], seed) if parsed else None
    if parsed is None or inst is None:
        return continuous
    return round(max(inst.tick, round(continuous * factor_on(*parsed, index) / inst.tick) * inst.tick), 6)
