"""The synthetic market: a deterministic daily history per instrument, seen "as of" a clock.

Each instrument's whole history (every XNYS session from the calendar's first, 2009-01-02, to
its last) is generated once per ``(seed, symbol)`` with numpy and cached. Every random component
draws a fixed number of values (``DRAWS``) from its own generator keyed by ``(seed, symbol,
component)``, so a bar never depends on the request window, on the clock or on how far ahead the
installed ``exchange_calendars`` happens to reach.

The walk is generated in *unsplit* units (as if no split ever happened). A view as of a clock
(``bars_as_of``) derives what Yahoo would serve at that instant: raw traded prices are the
unsplit ones divided by the splits already in force (rounded to the tick), and the served
history is split-adjusted by every split effective at or before the clock, dividends
back-adjusted into ``adjclose``. Splits injected by faults go through the same path, so a fault
split rescales the whole visible history exactly like a real one.

Any well-formed symbol is known. ``INSTRUMENTS`` lists 17 hand-tuned instruments (whose numbers
tests pin). Every other well-formed name gets a synthetic instrument drawn from
``keyed_rng(seed, symbol, "instrument")``: price level, volatility regime, market loading (so
betas vary, some negative), dividends (some payers), quarterly earnings months (equities only)
and, for about one symbol in 15, one split between 2016 and 2025. Well-formed means, in
either spelling (``lookup`` accepts both):

    Tastytrade            Yahoo        kind
    ABCD, BRK/B           ABCD, BRK-B  equity or ETF  (``[A-Z]{1,5}(/[A-Z])?``)
    /XX, /6E              XX=F, 6E=F   future root    (``/[A-Z0-9]{1,3}``)
    SPX, XSP, NDX, VIX... ^SPX, ^XSP   index          (``INDEX_NAMES``; XSP is SPX / 10)
    -                     ^ABC         other caret index (Yahoo only: absent from Tastytrade)

A caret-less name outside ``INDEX_NAMES`` is an equity. Synthetic names are case-sensitive
(``abcd`` is junk); the 17 keep their case-insensitive lookup. **Reserved convention:** a name
whose root (the letters after any ``/`` or ``^``) starts with ``ZZ`` (``ZZZ``, ``ZZTOP``, ``/ZZ``,
``^ZZX``) is never listed, for any seed, so tests have unknown symbols without configuring
anything. The servers add a configurable ``delisted`` set on top (``backend.DEFAULT_DELISTED``).
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Literal

import numpy as np

from variance_pipeline.calendar import exchange_calendar, session_close, session_open, sessions_in_range

ANCHOR = date(2025, 1, 2)
"""Each walk is levelled so that its raw price on this session is ``Instrument.anchor_price``."""
DRAWS = 9000
"""Values per random component: one per session from 2009-01-02 to 2044-10-25, far past the
calendar's horizon (about a year ahead), so extending the calendar never reshuffles a bar."""
TRADING_DAYS = 252

Derivation = Literal["walk", "track", "vol_index"]
Kind = Literal["equity", "etf", "future", "index"]


@dataclass(frozen=True)
class Split:
    """A stock split effective at the open of ``day`` (the next session if ``day`` is none)."""

    day: date
    numerator: int
    denominator: int = 1

    @property
    def factor(self) -> float:
        return self.numerator / self.denominator


@dataclass(frozen=True)
class Instrument:
    """Static description of one underlying: how its walk is made and how the APIs name it."""

    symbol: str
    yahoo: str
    kind: Kind
    name: str
    anchor_price: float
    vol_low: float
    vol_high: float
    rho: float = 0.0
    """Loading on the common market shock (SPY has 1.0)."""
    drift: float = 0.07
    tick: float = 0.01
    dollar_volume: float = 5e9
    derive: Derivation = "walk"
    parent: str | None = None
    """``track``: follows the parent's path scaled (SPX, /ES); ``vol_index``: 100 x parent's IV."""
    dividend_yield: float = 0.0
    dividend_months: tuple[int, ...] = ()
    splits: tuple[Split, ...] = ()
    exchange: str = "NMS"
    full_exchange: str = "NasdaqGS"
    listed_market: str = "XNAS"
    shares_outstanding: float = 0.0
    earnings_months: tuple[int, ...] = ()
    earnings_day: int = 25
    scale: float | None = None
    """``track``: exactly the parent times ``scale`` (XSP = SPX / 10) instead of an anchored level
    with basis noise; ``vol_index``: a multiplier on 100 x parent's IV. None for the 17."""

    @property
    def has_earnings(self) -> bool:
        return bool(self.earnings_months)


_QUARTER_ENDS = (3, 6, 9, 12)
INSTRUMENTS: tuple[Instrument, ...] = (
    Instrument("SPY", "SPY", "etf", "SPDR S&P 500 ETF Trust", 584.6, 0.11, 0.34, rho=1.0,
               dollar_volume=3e10, dividend_yield=0.013, dividend_months=_QUARTER_ENDS,
               exchange="PCX", full_exchange="NYSEArca", listed_market="ARCX", shares_outstanding=1.0e9),
    Instrument("QQQ", "QQQ", "etf", "Invesco QQQ Trust, Series 1", 511.2, 0.15, 0.42, rho=0.9,
               dollar_volume=2e10, dividend_yield=0.006, dividend_months=_QUARTER_ENDS,
               shares_outstanding=6.1e8),
    Instrument("IWM", "IWM", "etf", "iShares Russell 2000 ETF", 220.2, 0.17, 0.45, rho=0.85,
               dollar_volume=6e9, dividend_yield=0.011, dividend_months=_QUARTER_ENDS,
               exchange="PCX", full_exchange="NYSEArca", listed_market="ARCX", shares_outstanding=3.2e8),
    Instrument("AAPL", "AAPL", "equity", "Apple Inc.", 243.9, 0.20, 0.48, rho=0.7,
               dollar_volume=1e10, dividend_yield=0.0045, dividend_months=(2, 5, 8, 11),
               splits=(Split(date(2014, 6, 9), 7), Split(date(2020, 8, 31), 4)),
               shares_outstanding=1.5e10, earnings_months=(1, 4, 7, 10), earnings_day=30),
    Instrument("MSFT", "MSFT", "equity", "Microsoft Corporation", 418.6, 0.18, 0.44, rho=0.7,
               dollar_volume=8e9, dividend_yield=0.008, dividend_months=(2, 5, 8, 11),
               shares_outstanding=7.43e9, earnings_months=(1, 4, 7, 10), earnings_day=28),
    Instrument("NVDA", "NVDA", "equity", "NVIDIA Corporation", 138.3, 0.35, 0.70, rho=0.6,
               dollar_volume=3e10, dividend_yield=0.0003, dividend_months=_QUARTER_ENDS,
               splits=(Split(date(2021, 7, 20), 4), Split(date(2024, 6, 10), 10)),
               shares_outstanding=2.44e10, earnings_months=(2, 5, 8, 11), earnings_day=26),
    Instrument("TSLA", "TSLA", "equity", "Tesla, Inc.", 379.3, 0.40, 0.75, rho=0.5,
               dollar_volume=2.5e10, splits=(Split(date(2020, 8, 31), 5), Split(date(2022, 8, 25), 3)),
               shares_outstanding=3.2e9, earnings_months=(1, 4, 7, 10), earnings_day=22),
    Instrument("AMZN", "AMZN", "equity", "Amazon.com, Inc.", 220.2, 0.25, 0.55, rho=0.65,
               dollar_volume=9e9, splits=(Split(date(2022, 6, 6), 20),),
               shares_outstanding=1.05e10, earnings_months=(2, 5, 8, 11), earnings_day=1),
    Instrument("GLD", "GLD", "etf", "SPDR Gold Shares", 242.1, 0.12, 0.28, rho=0.05, drift=0.05,
               dollar_volume=2e9, exchange="PCX", full_exchange="NYSEArca", listed_market="ARCX",
               shares_outstanding=2.9e8),
    Instrument("TLT", "TLT", "etf", "iShares 20+ Year Treasury Bond ETF", 87.6, 0.10, 0.24, rho=-0.3,
               drift=0.01, dollar_volume=2.5e9, dividend_yield=0.04, dividend_months=tuple(range(1, 13)),
               shares_outstanding=5.8e8),
    Instrument("/ES", "ES=F", "future", "E-Mini S&P 500 Futures", 5942.5, 0.11, 0.34, tick=0.25,
               derive="track", parent="SPY", dollar_volume=2e11, exchange="CME",
               full_exchange="CME", listed_market="XCME"),
    Instrument("/ZN", "ZN=F", "future", "10-Year T-Note Futures", 108.6, 0.04, 0.09, rho=-0.3,
               drift=0.0, tick=0.015625, dollar_volume=1.5e8, exchange="CBT", full_exchange="CBOT",
               listed_market="XCBT"),
    Instrument("/CL", "CL=F", "future", "Crude Oil Futures", 73.1, 0.25, 0.60, rho=0.3, drift=0.0,
               dollar_volume=3e7, exchange="NYM", full_exchange="NY Mercantile", listed_market="XNYM"),
    Instrument("/6E", "6E=F", "future", "Euro FX Futures", 1.0355, 0.06, 0.13, rho=0.1, drift=0.0,
               tick=0.00005, dollar_volume=2e5, exchange="CME", full_exchange="CME",
               listed_market="XCME"),
    Instrument("/GC", "GC=F", "future", "Gold Futures", 2658.9, 0.12, 0.26, rho=0.05, drift=0.05,
               tick=0.1, dollar_volume=6e8, exchange="CMX", full_exchange="COMEX", listed_market="XCEC"),
    Instrument("SPX", "^SPX", "index", "S&P 500 INDEX", 5868.6, 0.11, 0.34, derive="track",
               parent="SPY", dollar_volume=2e13, exchange="SNP", full_exchange="SNP",
               listed_market="XCBO"),
    Instrument("VIX", "^VIX", "index", "CBOE Volatility Index", 17.9, 0.80, 1.30, derive="vol_index",
               parent="SPY", dollar_volume=0.0, exchange="CBO", full_exchange="Cboe Indices",
               listed_market="XCBO"),
)
_BY_NAME = {key: inst for inst in INSTRUMENTS for key in (inst.symbol, inst.yahoo)}

DEFAULT_SEED = 42
"""The seed ``lookup`` assumes when none is given (the servers' default)."""
RESERVED_PREFIX = "ZZ"
"""Roots starting with this are never listed (see the module docstring)."""

# Index names Tastytrade spells without a caret (Yahoo: ``^NAME``), beyond SPX and VIX of the 17:
# (name, derive, parent, anchor price, vol_low, vol_high, scale).
_INDICES: dict[str, tuple[str, Derivation, str, float, float, float, float | None]] = {
    "XSP": ("Mini-SPX Index", "track", "SPX", 0.0, 0.11, 0.34, 0.1),
    "NDX": ("NASDAQ 100 Index", "track", "QQQ", 21012.2, 0.15, 0.42, None),
    "XND": ("Nasdaq-100 Micro Index", "track", "NDX", 0.0, 0.15, 0.42, 0.01),
    "RUT": ("Russell 2000 Index", "track", "IWM", 2230.2, 0.17, 0.45, None),
    "MRUT": ("Mini-Russell 2000 Index", "track", "RUT", 0.0, 0.17, 0.45, 0.1),
    "DJX": ("Dow Jones Industrial Average (1/100)", "track", "SPY", 425.4, 0.10, 0.32, None),
    "OEX": ("S&P 100 Index", "track", "SPY", 2812.7, 0.11, 0.35, None),
    "XEO": ("S&P 100 Index (European)", "track", "OEX", 0.0, 0.11, 0.35, 1.0),
    "VIX9D": ("CBOE S&P 500 9-Day Volatility Index", "vol_index", "SPY", 0.0, 0.9, 1.5, 0.95),
    "VIX3M": ("CBOE S&P 500 3-Month Volatility Index", "vol_index", "SPY", 0.0, 0.6, 1.0, 1.1),
    "VXN": ("CBOE NASDAQ 100 Volatility Index", "vol_index", "QQQ", 0.0, 0.7, 1.2, 1.0),
    "RVX": ("CBOE Russell 2000 Volatility Index", "vol_index", "IWM", 0.0, 0.7, 1.2, 1.0),
    "VVIX": ("CBOE VIX Volatility Index", "vol_index", "VIX", 0.0, 0.5, 0.9, 1.0),
}
INDEX_NAMES = frozenset({"SPX", "VIX", *_INDICES})
_TASTY_EQUITY = re.compile(r"[A-Z]{1,5}(?:/[A-Z])?")
_YAHOO_EQUITY = re.compile(r"[A-Z]{1,5}(?:-[A-Z])?")
_TASTY_FUTURE = re.compile(r"/[A-Z0-9]{1,3}")
_YAHOO_FUTURE = re.compile(r"([A-Z0-9]{1,3})=F")
_YAHOO_INDEX = re.compile(r"\^([A-Z][A-Z0-9]{0,5})")


def spellings(name: str) -> tuple[str, str, Kind] | None:
    """(Tastytrade symbol, Yahoo ticker, kind) a name spells, or None when not well-formed.

    Pure spelling: says nothing about whether the market lists it (see ``lookup``).
    """
    key = name.strip()
    known = _BY_NAME.get(key.upper())
    if known is not None:
        return known.symbol, known.yahoo, known.kind
    if key.lstrip("/^").startswith(RESERVED_PREFIX):
        return None
    if key in INDEX_NAMES:
        return key, f"^{key}", "index"
    if match := _YAHOO_INDEX.fullmatch(key):
        root = match.group(1)
        return (root, key, "index") if root in INDEX_NAMES else (key, key, "index")
    if _TASTY_FUTURE.fullmatch(key):
        return key, f"{key[1:]}=F", "future"
    if match := _YAHOO_FUTURE.fullmatch(key):
        return f"/{match.group(1)}", key, "future"
    if _TASTY_EQUITY.fullmatch(key):
        return key, key.replace("/", "-"), "equity"
    if _YAHOO_EQUITY.fullmatch(key):
        return key.replace("-", "/"), key, "equity"
    return None


def lookup(name: str, seed: int = DEFAULT_SEED) -> Instrument | None:
    """The instrument a Tastytrade symbol (``/ES``) or Yahoo ticker (``ES=F``) names, if any.

    The 17 of ``INSTRUMENTS`` first (any case), else a synthetic instrument for a well-formed
    name (see the module docstring); None for junk and reserved names.
    """
    spelled = spellings(name)
    if spelled is None:
        return None
    symbol, yahoo, kind = spelled
    return _BY_NAME.get(symbol) or synthetic_instrument(seed, symbol, yahoo, kind)


def _lognormal(rng: np.random.Generator, low: float, high: float) -> float:
    return float(math.exp(rng.uniform(math.log(low), math.log(high))))


@lru_cache(maxsize=8192)
def synthetic_instrument(seed: int, symbol: str, yahoo: str, kind: Kind) -> Instrument:
    """A deterministic instrument for a well-formed name outside the 17 (one draw per field)."""
    if symbol in _INDICES:
        title, derive, parent, anchor, vol_low, vol_high, scale = _INDICES[symbol]
        return Instrument(symbol, yahoo, "index", title, anchor or 100.0, vol_low, vol_high, derive=derive,
                          parent=parent, scale=scale, dollar_volume=0.0 if derive == "vol_index" else 1e12,
                          exchange="CBO" if derive == "vol_index" else "SNP",
                          full_exchange="Cboe Indices" if derive == "vol_index" else "SNP", listed_market="XCBO")
    rng = keyed_rng(seed, symbol, "instrument")
    vol_low = float(rng.uniform(0.12, 0.45) if kind == "equity" else rng.uniform(0.06, 0.35))
    vol_high = vol_low * float(rng.uniform(1.6, 2.4))
    negative = rng.uniform() < 0.12
    rho = float(rng.uniform(-0.5, -0.05) if negative else rng.uniform(0.05, 0.92))
    drift = float(rng.uniform(-0.03, 0.12))
    if kind == "future":
        price = _lognormal(rng, 0.5, 6000.0)
        tick = 0.25 if price >= 1000 else 0.01 if price >= 5 else 0.0001
        return Instrument(symbol, yahoo, "future", f"{symbol[1:]} Futures (synthetic)", price, vol_low, vol_high,
                          rho=rho, drift=0.0, tick=tick, dollar_volume=_lognormal(rng, 1e6, 5e10),
                          exchange="CME", full_exchange="CME", listed_market="XCME")
    if kind == "index":
        price = _lognormal(rng, 50.0, 20000.0)
        return Instrument(symbol, yahoo, "index", f"{symbol[1:]} Index (synthetic)", price, vol_low, vol_high,
                          rho=abs(rho), drift=drift, dollar_volume=0.0, exchange="SNP", full_exchange="SNP",
                          listed_market="XCBO")
    etf = rng.uniform() < 0.15
    price = _lognormal(rng, 4.0, 700.0)
    market_cap = _lognormal(rng, 3e8, 2e12)
    dividend_yield = 0.0
    dividend_months: tuple[int, ...] = ()
    if rng.uniform() < (0.7 if etf else 0.45):
        dividend_yield = float(rng.uniform(0.004, 0.05))
        first = int(rng.integers(1, 4))
        monthly = etf and rng.uniform() < 0.3
        dividend_months = tuple(range(1, 13)) if monthly else tuple(range(first, 13, 3))
    splits: tuple[Split, ...] = ()
    if rng.uniform() < 1 / 15:
        numerator, denominator = ((2, 1), (3, 1), (4, 1), (5, 1), (10, 1), (3, 2))[int(rng.integers(0, 6))]
        day = date(2016, 1, 4) + timedelta(days=int(rng.integers(0, 3650)))
        splits = (Split(day, numerator, denominator),)
        if day > ANCHOR:  # the anchor price is pre-split: keep the post-split price plausible
            price = max(price, 40.0 * numerator / denominator)
    earnings_months: tuple[int, ...] = ()
    earnings_day = 25
    if not etf:
        earnings_months = tuple(range(int(rng.integers(1, 4)), 13, 3))
        earnings_day = int(rng.integers(1, 29))
    nasdaq = rng.uniform() < 0.55
    return Instrument(
        symbol, yahoo, "etf" if etf else "equity",
        f"{symbol} {'Trust ETF' if etf else 'Holdings Inc.'} (synthetic)", price, vol_low, vol_high,
        rho=rho, drift=drift, dollar_volume=market_cap * float(rng.uniform(0.002, 0.01)),
        dividend_yield=dividend_yield, dividend_months=dividend_months, splits=splits,
        exchange="NMS" if nasdaq else "NYQ", full_exchange="NasdaqGS" if nasdaq else "NYSE",
        listed_market="XNAS" if nasdaq else "XNYS", shares_outstanding=market_cap / price,
        earnings_months=earnings_months, earnings_day=earnings_day,
    )


@dataclass(frozen=True)
class Sessions:
    """Every XNYS session the calendar knows, with its open and close as epoch seconds."""

    days: np.ndarray
    open_ts: np.ndarray
    close_ts: np.ndarray

    def index_on_or_after(self, day: date) -> int:
        return int(np.searchsorted(self.days, np.datetime64(day, "D")))


@lru_cache(maxsize=1)
def sessions() -> Sessions:
    """Loaded once: ~4,800 sessions, a third of a second of calendar look-ups."""
    days = sessions_in_range(date(2009, 1, 2), exchange_calendar().last_session.date())
    return Sessions(
        days=np.array(days, dtype="datetime64[D]"),
        open_ts=np.array([int(session_open(d).timestamp()) for d in days], dtype=np.int64),
        close_ts=np.array([int(session_close(d).timestamp()) for d in days], dtype=np.int64),
    )


def keyed_rng(seed: int, *keys: object) -> np.random.Generator:
    """A generator per (seed, keys), stable across processes (unlike ``hash()``)."""
    digest = hashlib.sha256(repr((seed, *keys)).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _normal(seed: int, *keys: str) -> np.ndarray:
    return keyed_rng(seed, *keys).standard_normal(DRAWS)


@lru_cache(maxsize=8)
def _market_shock(seed: int) -> np.ndarray:
    """The common market shock every walk loads on: drawn once per seed, shared read-only."""
    shock = _normal(seed, "market", "shock")
    shock.setflags(write=False)
    return shock


@lru_cache(maxsize=8)
def _market_stressed(seed: int) -> np.ndarray:
    """The market's regime path (shared by every walk with ``|rho| >= 0.5``), read-only."""
    states = _stressed(seed, "market")
    states.setflags(write=False)
    return states


def _stressed(seed: int, key: str) -> np.ndarray:
    """A two-state Markov regime path (geometric spells: calm ~250 sessions, stressed ~50)."""
    rng = keyed_rng(seed, key, "regime")
    spells = np.column_stack([rng.geometric(1 / 250, 400), rng.geometric(1 / 50, 400)]).ravel()
    states = np.repeat(np.tile([False, True], 400), spells)
    return np.resize(states, DRAWS)


def _smooth(noise: np.ndarray, span: float) -> np.ndarray:
    """Causal exponential smoothing with unit variance: slow-moving noise for IV premia."""
    kernel = np.exp(-np.arange(int(4 * span)) / span)
    kernel /= math.sqrt(float(np.sum(kernel**2)))
    return np.convolve(noise, kernel)[: len(noise)]


@dataclass(frozen=True)
class Series:
    """One instrument's whole history in unsplit units; never served directly (see bars_as_of)."""

    instrument: Instrument
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    dollar_volume: np.ndarray
    stressed: np.ndarray
    iv: np.ndarray
    ex_dividend: np.ndarray


def _ohlc(seed: int, symbol: str, close: np.ndarray, sigma_d: np.ndarray) -> tuple[np.ndarray, ...]:
    """Open gaps from the previous close; high/low beyond the open-close body, all positive."""
    n = len(close)
    gap = 0.35 * sigma_d * _normal(seed, symbol, "gap")[:n]
    open_ = np.concatenate([close[:1], close[:-1]]) * np.exp(gap)
    high = np.maximum(open_, close) * np.exp(0.5 * sigma_d * np.abs(_normal(seed, symbol, "high")[:n]))
    low = np.minimum(open_, close) * np.exp(-0.5 * sigma_d * np.abs(_normal(seed, symbol, "low")[:n]))
    return open_, high, low


def _implied_vol(seed: int, symbol: str, close: np.ndarray, regime_vol: np.ndarray) -> np.ndarray:
    """IV = mix of regime vol and HV20, times a slow premium in [1.0, 1.4], times daily noise."""
    n = len(close)
    returns = np.diff(np.log(close))
    hv20 = regime_vol.copy()
    windows = np.lib.stride_tricks.sliding_window_view(returns, 20)
    hv20[20:] = windows.std(axis=1, ddof=1) * math.sqrt(TRADING_DAYS)
    rng = keyed_rng(seed, symbol, "premium")
    base = rng.uniform(1.08, 1.28)
    premium = np.clip(base + 0.08 * _smooth(rng.standard_normal(DRAWS), 15.0)[:n], 1.0, 1.4)
    noise = np.exp(0.04 * _normal(seed, symbol, "iv-noise")[:n])
    return (0.5 * regime_vol + 0.5 * hv20) * premium * noise


def _ex_dividend_indices(inst: Instrument, cal: Sessions) -> np.ndarray:
    """Ex-dates: the first session on or after the 10th of each dividend month."""
    first, last = cal.days[0].astype(object), cal.days[-1].astype(object)
    targets = [date(y, m, 10) for y in range(first.year, last.year + 1) for m in inst.dividend_months]
    idx = np.unique(np.searchsorted(cal.days, np.array(targets, dtype="datetime64[D]")))
    return idx[(idx >= 1) & (idx < len(cal.days))]


SERIES_CACHE = 2048
"""Histories kept (~0.25 MB each, ~0.5 GB at most): a 1,000-symbol universe plus the 17 never thrash."""


@lru_cache(maxsize=SERIES_CACHE)
def series(seed: int, symbol: str) -> Series:
    """Generate (once per seed and symbol) the full daily history, vectorised (a few ms)."""
    inst = lookup(symbol, seed)
    if inst is None:
        raise KeyError(f"no instrument {symbol!r}")
    cal = sessions()
    n = len(cal.days)
    anchor = cal.index_on_or_after(ANCHOR)
    if inst.derive == "walk":
        stressed = (_market_stressed(seed) if abs(inst.rho) >= 0.5 else _stressed(seed, symbol))[:n]
    else:
        parent = series(seed, inst.parent or "SPY")
        stressed = parent.stressed
    regime_vol = np.where(stressed, inst.vol_high, inst.vol_low)
    sigma_d = regime_vol * np.exp(0.15 * _normal(seed, symbol, "vol-noise")[:n]) / math.sqrt(TRADING_DAYS)
    if inst.derive == "track" and inst.scale is not None:
        open_, high, low, close = (x * inst.scale for x in (parent.open, parent.high, parent.low, parent.close))
    elif inst.derive == "track":
        level = inst.anchor_price / parent.close[anchor]
        factor = level * np.exp(0.0005 * _normal(seed, symbol, "basis")[:n])
        open_, high, low, close = (x * factor for x in (parent.open, parent.high, parent.low, parent.close))
    else:
        if inst.derive == "vol_index":
            close = 100.0 * parent.iv * np.exp(0.03 * _normal(seed, symbol, "basis")[:n]) * (inst.scale or 1.0)
        else:
            own = keyed_rng(seed, symbol, "shock").standard_t(5, DRAWS)[:n] / math.sqrt(5 / 3)
            shock = inst.rho * _market_shock(seed)[:n] + math.sqrt(1 - inst.rho**2) * own
            returns = inst.drift / TRADING_DAYS - 0.5 * sigma_d**2 + sigma_d * shock
            returns[0] = 0.0
            log_close = np.cumsum(returns)
            in_force = math.prod(s.factor for s in inst.splits if s.day <= ANCHOR)
            close = np.exp(log_close - log_close[anchor]) * inst.anchor_price * in_force
        open_, high, low = _ohlc(seed, symbol, close, sigma_d)
    dollar_volume = inst.dollar_volume * np.exp(0.35 * _normal(seed, symbol, "volume")[:n]) * np.where(stressed, 1.6, 1.0)
    return Series(
        instrument=inst,
        open=open_,
        high=high,
        low=low,
        close=close,
        dollar_volume=dollar_volume,
        stressed=stressed,
        iv=_implied_vol(seed, symbol, close, regime_vol),
        ex_dividend=_ex_dividend_indices(inst, cal) if inst.dividend_yield else np.array([], dtype=np.int64),
    )


@dataclass(frozen=True)
class Bars:
    """What Yahoo serves for one instrument at one instant: every bar whose session has opened.

    Prices are split-adjusted as of the instant and rounded to 6 decimals (so anything computed
    from them, like the metrics' HV, reconciles with the chart exactly). When the instant is
    inside a session the last bar is live: partial values, stamped with the instant itself.
    """

    instrument: Instrument
    timestamp: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    adjclose: np.ndarray
    volume: np.ndarray
    live: bool
    splits: tuple[tuple[int, Split], ...]
    dividends: tuple[tuple[int, float], ...]
    iv: np.ndarray

    @property
    def completed(self) -> int:
        """How many bars are final (the live one, if any, is not)."""
        return len(self.close) - int(self.live)


@lru_cache(maxsize=1024)
def bars_as_of(seed: int, symbol: str, clock: datetime, extra_splits: tuple[Split, ...] = ()) -> Bars:
    """The instrument's bars as of ``clock``; ``extra_splits`` are splits injected by faults.

    Cached: one evening asks for the same symbol's bars from the positions, metrics and chart
    endpoints alike. The arrays are shared between callers, who only read them.
    """
    base = series(seed, symbol)
    inst = base.instrument
    cal = sessions()
    now = int(clock.timestamp())
    n = int(np.searchsorted(cal.open_ts, now, side="right"))
    live = n > 0 and now < int(cal.close_ts[n - 1])
    effective = sorted(
        ((idx, split) for split in (*inst.splits, *extra_splits) if (idx := cal.index_on_or_after(split.day)) < n),
        key=lambda pair: pair[0],
    )
    step = np.ones(n)
    for idx, split in effective:
        step[idx] *= split.factor
    in_force = np.cumprod(step)
    scale = in_force / (in_force[-1] if n else 1.0)

    unsplit = [x[:n].copy() for x in (base.open, base.high, base.low, base.close, base.dollar_volume)]
    if live:
        _make_live(unsplit, (now - int(cal.open_ts[n - 1])) / (int(cal.close_ts[n - 1]) - int(cal.open_ts[n - 1])))
    open_, high, low, close = (
        np.round(np.maximum(inst.tick, np.round(x / in_force / inst.tick) * inst.tick) * scale, 6)
        for x in unsplit[:4]
    )
    volume = np.round(unsplit[4] / close).astype(np.int64)

    dividends: list[tuple[int, float]] = []
    weight = np.ones(n)
    per_event = inst.dividend_yield / max(1, len(inst.dividend_months))
    for idx in (int(i) for i in base.ex_dividend if i < n):
        raw_amount = round(per_event * base.close[idx - 1] / in_force[idx], 2)
        if raw_amount <= 0:
            continue
        amount = round(float(raw_amount * scale[idx]), 6)
        weight[idx - 1] *= 1.0 - amount / close[idx - 1]
        dividends.append((int(cal.open_ts[idx]), amount))
    adjclose = np.round(close * np.cumprod(weight[::-1])[::-1], 6)

    timestamp = cal.open_ts[:n].copy()
    if live:
        timestamp[-1] = now
    return Bars(
        instrument=inst,
        timestamp=timestamp,
        open=open_,
        high=high,
        low=low,
        close=close,
        adjclose=adjclose,
        volume=volume,
        live=live,
        splits=tuple((int(cal.open_ts[idx]), split) for idx, split in effective),
        dividends=tuple(dividends),
        iv=base.iv[:n],
    )


def _make_live(unsplit: list[np.ndarray], fraction: float) -> None:
    """Turn the last bar into the part of the session elapsed so far (a geometric path to close)."""
    open_, high, low, close, dollar_volume = unsplit
    o, h, lo, c = open_[-1], high[-1], low[-1], close[-1]
    partial = o * (c / o) ** fraction
    high[-1] = max(o, partial) * (h / max(o, c)) ** fraction
    low[-1] = min(o, partial) * (lo / min(o, c)) ** fraction
    close[-1] = partial
    dollar_volume[-1] *= max(fraction, 0.01)


def historical_vol(closes: np.ndarray, returns: int) -> float | None:
    """Close-to-close HV over the last ``returns`` log returns (ddof 1, annualised); None if short."""
    if len(closes) < returns + 1:
        return None
    log_returns = np.diff(np.log(closes[-(returns + 1) :]))
    return float(np.std(log_returns, ddof=1) * math.sqrt(TRADING_DAYS))
