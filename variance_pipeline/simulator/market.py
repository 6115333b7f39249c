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

Volatility, per session: ``sigma = vol_low x exp(log_vol) x (1 + (vol_high / vol_low - 1) x stress)``.
``log_vol`` is a slow Ornstein-Uhlenbeck wander (half-life ``VOL_HALF_LIFE`` sessions), partly the
market's, partly the instrument's own; ``stress`` jumps at rare events (``MARKET_STRESS_RATE``,
shared by the walks with ``|rho| >= 0.5``) and fades over a couple of weeks. Returns are that sigma
times t(5) shocks loaded on the market's. Implied volatility is not read off past returns: it is the
model's own forecast of the volatility to come (``expected_vol``), times a variance risk premium
that wanders around 1.05-1.15 with a little quote noise, so it exceeds the realised volatility that
follows on most days but not all, and its term structure (``volsurface``) slopes up when calm and
inverts in stress. The 17 are bridged through approximate real price levels (``Instrument.anchors``).

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
from typing import Any, Literal

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
    anchors: tuple[tuple[date, float], ...] = ()
    """More (session, raw traded price) points the walk passes through besides ``ANCHOR``: the
    17 stay near their real price levels from 2020 to late 2025 (``_anchored``)."""

    @property
    def has_earnings(self) -> bool:
        return bool(self.earnings_months)


_QUARTER_ENDS = (3, 6, 9, 12)


def _levels(*prices: float) -> tuple[tuple[date, float], ...]:
    """Approximate real closes on the first session of 2020, 2022, 2023, 2024 and on 2025-11-03
    (raw traded prices, before any later split), the anchors besides ``ANCHOR`` (2025-01-02)."""
    days = (date(2020, 1, 2), date(2022, 1, 3), date(2023, 1, 3), date(2024, 1, 2), date(2025, 11, 3))
    return tuple(zip(days, prices, strict=True))


# vol_low: the calm median volatility; vol_high: the volatility at the peak of a full stress spell.
INSTRUMENTS: tuple[Instrument, ...] = (
    Instrument("SPY", "SPY", "etf", "SPDR S&P 500 ETF Trust", 584.6, 0.125, 0.38, rho=1.0,
               dollar_volume=3e10, dividend_yield=0.013, dividend_months=_QUARTER_ENDS,
               exchange="PCX", full_exchange="NYSEArca", listed_market="ARCX", shares_outstanding=1.0e9,
               anchors=_levels(324.9, 477.7, 380.8, 472.7, 683.3)),
    Instrument("QQQ", "QQQ", "etf", "Invesco QQQ Trust, Series 1", 511.2, 0.165, 0.45, rho=0.9,
               dollar_volume=2e10, dividend_yield=0.006, dividend_months=_QUARTER_ENDS,
               shares_outstanding=6.1e8, anchors=_levels(216.2, 401.7, 264.4, 396.3, 632.1)),
    Instrument("IWM", "IWM", "etf", "iShares Russell 2000 ETF", 220.2, 0.18, 0.46, rho=0.85,
               dollar_volume=6e9, dividend_yield=0.011, dividend_months=_QUARTER_ENDS,
               exchange="PCX", full_exchange="NYSEArca", listed_market="ARCX", shares_outstanding=3.2e8,
               anchors=_levels(166.7, 224.6, 173.4, 198.7, 245.1)),
    Instrument("AAPL", "AAPL", "equity", "Apple Inc.", 243.9, 0.23, 0.45, rho=0.7,
               dollar_volume=1e10, dividend_yield=0.0045, dividend_months=(2, 5, 8, 11),
               splits=(Split(date(2014, 6, 9), 7), Split(date(2020, 8, 31), 4)),
               shares_outstanding=1.5e10, earnings_months=(1, 4, 7, 10), earnings_day=30,
               anchors=_levels(300.4, 182.0, 125.1, 185.6, 269.1)),
    Instrument("MSFT", "MSFT", "equity", "Microsoft Corporation", 418.6, 0.21, 0.42, rho=0.7,
               dollar_volume=8e9, dividend_yield=0.008, dividend_months=(2, 5, 8, 11),
               shares_outstanding=7.43e9, earnings_months=(1, 4, 7, 10), earnings_day=28,
               anchors=_levels(160.6, 334.8, 239.6, 370.9, 517.0)),
    Instrument("NVDA", "NVDA", "equity", "NVIDIA Corporation", 138.3, 0.42, 0.75, rho=0.6,
               dollar_volume=3e10, dividend_yield=0.0003, dividend_months=_QUARTER_ENDS,
               splits=(Split(date(2021, 7, 20), 4), Split(date(2024, 6, 10), 10)),
               shares_outstanding=2.44e10, earnings_months=(2, 5, 8, 11), earnings_day=26,
               anchors=_levels(239.9, 301.2, 143.2, 481.7, 206.9)),
    Instrument("TSLA", "TSLA", "equity", "Tesla, Inc.", 379.3, 0.50, 0.85, rho=0.5,
               dollar_volume=2.5e10, splits=(Split(date(2020, 8, 31), 5), Split(date(2022, 8, 25), 3)),
               shares_outstanding=3.2e9, earnings_months=(1, 4, 7, 10), earnings_day=22,
               anchors=_levels(430.3, 1199.8, 108.1, 248.4, 468.4)),
    Instrument("AMZN", "AMZN", "equity", "Amazon.com, Inc.", 220.2, 0.27, 0.50, rho=0.65,
               dollar_volume=9e9, splits=(Split(date(2022, 6, 6), 20),),
               shares_outstanding=1.05e10, earnings_months=(2, 5, 8, 11), earnings_day=1,
               anchors=_levels(1898.0, 3408.1, 85.8, 149.9, 254.0)),
    Instrument("GLD", "GLD", "etf", "SPDR Gold Shares", 242.1, 0.14, 0.28, rho=0.05, drift=0.05,
               dollar_volume=2e9, exchange="PCX", full_exchange="NYSEArca", listed_market="ARCX",
               shares_outstanding=2.9e8, anchors=_levels(143.9, 168.3, 171.0, 190.6, 367.9)),
    Instrument("TLT", "TLT", "etf", "iShares 20+ Year Treasury Bond ETF", 87.6, 0.13, 0.24, rho=-0.3,
               drift=0.01, dollar_volume=2.5e9, dividend_yield=0.04, dividend_months=tuple(range(1, 13)),
               shares_outstanding=5.8e8, anchors=_levels(136.9, 144.5, 101.5, 97.5, 90.0)),
    Instrument("/ES", "ES=F", "future", "E-Mini S&P 500 Futures", 5942.5, 0.125, 0.38, tick=0.25,
               derive="track", parent="SPY", dollar_volume=2e11, exchange="CME",
               full_exchange="CME", listed_market="XCME"),
    Instrument("/ZN", "ZN=F", "future", "10-Year T-Note Futures", 108.6, 0.05, 0.09, rho=-0.3,
               drift=0.0, tick=0.015625, dollar_volume=1.5e8, exchange="CBT", full_exchange="CBOT",
               listed_market="XCBT", anchors=_levels(129.0, 129.2, 113.3, 112.3, 112.6)),
    Instrument("/CL", "CL=F", "future", "Crude Oil Futures", 73.1, 0.28, 0.55, rho=0.3, drift=0.0,
               dollar_volume=3e7, exchange="NYM", full_exchange="NY Mercantile", listed_market="XNYM",
               anchors=_levels(61.2, 76.1, 76.9, 70.4, 61.0)),
    Instrument("/6E", "6E=F", "future", "Euro FX Futures", 1.0355, 0.07, 0.12, rho=0.1, drift=0.0,
               tick=0.00005, dollar_volume=2e5, exchange="CME", full_exchange="CME",
               listed_market="XCME", anchors=_levels(1.1217, 1.1355, 1.0605, 1.0987, 1.1550)),
    Instrument("/GC", "GC=F", "future", "Gold Futures", 2658.9, 0.15, 0.28, rho=0.05, drift=0.05,
               tick=0.1, dollar_volume=6e8, exchange="CMX", full_exchange="COMEX", listed_market="XCEC",
               anchors=_levels(1528.0, 1801.0, 1846.0, 2073.0, 4001.0)),
    Instrument("SPX", "^SPX", "index", "S&P 500 INDEX", 5868.6, 0.125, 0.38, derive="track",
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
    "XSP": ("Mini-SPX Index", "track", "SPX", 0.0, 0.125, 0.38, 0.1),
    "NDX": ("NASDAQ 100 Index", "track", "QQQ", 21012.2, 0.165, 0.45, None),
    "XND": ("Nasdaq-100 Micro Index", "track", "NDX", 0.0, 0.165, 0.45, 0.01),
    "RUT": ("Russell 2000 Index", "track", "IWM", 2230.2, 0.18, 0.46, None),
    "MRUT": ("Mini-Russell 2000 Index", "track", "RUT", 0.0, 0.18, 0.46, 0.1),
    "DJX": ("Dow Jones Industrial Average (1/100)", "track", "SPY", 425.4, 0.12, 0.36, None),
    "OEX": ("S&P 100 Index", "track", "SPY", 2812.7, 0.125, 0.38, None),
    "XEO": ("S&P 100 Index (European)", "track", "OEX", 0.0, 0.125, 0.38, 1.0),
    "VIX9D": ("CBOE S&P 500 9-Day Volatility Index", "vol_index", "SPY", 0.0, 0.9, 1.5, 0.95),
    "VIX3M": ("CBOE S&P 500 3-Month Volatility Index", "vol_index", "SPY", 0.0, 0.6, 1.0, 1.1),
    "VXN": ("CBOE NASDAQ 100 Volatility Index", "vol_index", "QQQ", 0.0, 0.7, 1.2, 1.0),
    "RVX": ("CBOE Russell 2000 Volatility Index", "vol_index", "IWM", 0.0, 0.7, 1.2, 1.0),
    "VVIX": ("CBOE VIX Volatility Index", "vol_index", "VIX", 0.0, 0.5, 0.9, 1.0),
}
MICRO_FUTURES: dict[str, tuple[str, str]] = {
    "/MES": ("Micro E-Mini S&P 500 Futures", "/ES"),
    "/MCL": ("Micro WTI Crude Oil Futures", "/CL"),
    "/MGC": ("Micro Gold Futures", "/GC"),
}
"""Micro contracts: exactly their full-size future's price path (``track``, scale 1); only the
multiplier differs (``contracts.MULTIPLIERS``)."""
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
    if symbol in MICRO_FUTURES:
        title, parent_symbol = MICRO_FUTURES[symbol]
        full = _BY_NAME[parent_symbol]
        return Instrument(symbol, yahoo, "future", title, full.anchor_price, full.vol_low, full.vol_high,
                          tick=full.tick, derive="track", parent=parent_symbol, scale=1.0,
                          dollar_volume=full.dollar_volume / 10, exchange=full.exchange,
                          full_exchange=full.full_exchange, listed_market=full.listed_market)
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


VOL_HALF_LIFE = 30.0
"""Sessions for a deviation of log volatility from its calm level to halve: calm volatility wanders
over weeks (the HV20 of an index ETF mostly between 8 and 25 %), it does not jump about daily."""
VOL_OF_VOL = 0.25
"""Stationary standard deviation of log volatility around the calm level ``vol_low``."""
STRESS_HALF_LIFE = 12.0
"""Sessions for a stress spell's intensity to halve: spikes are sudden and fade within weeks."""
MARKET_STRESS_RATE = 1 / 320
"""Market stress events per session (about one a year and a quarter), shared by every walk with
``|rho| >= 0.5``; other walks draw their own, rarer ones (``OWN_STRESS_RATE``)."""
OWN_STRESS_RATE = 1 / 450
_STRESS_SIZE = (0.45, 1.0)
IV_HORIZON = 30 * TRADING_DAYS / 365
"""Sessions in 30 calendar days: the headline IV (``implied-volatility-index``) is the 30-day IV."""
_NODES = (np.arange(24) + 0.5) / 24


def _ou(noise: np.ndarray, half_life: float, sd: float) -> np.ndarray:
    """A discrete Ornstein-Uhlenbeck path (AR(1), stationary ``sd``) driven by ``noise``."""
    a = 0.5 ** (1 / half_life)
    kernel = a ** np.arange(int(8 * half_life)) * math.sqrt(1 - a * a) * sd
    return np.convolve(noise, kernel)[: len(noise)]


def _stress(seed: int, key: str, rate: float) -> np.ndarray:
    """Stress intensity in [0, 1]: events at ``rate`` per session jump it up, then it decays."""
    rng = keyed_rng(seed, key, "regime")
    hits = rng.uniform(size=DRAWS) < rate
    size = rng.uniform(*_STRESS_SIZE, DRAWS)
    kernel = (0.5 ** (1 / STRESS_HALF_LIFE)) ** np.arange(int(8 * STRESS_HALF_LIFE))
    return np.minimum(1.0, np.convolve(hits * size, kernel)[:DRAWS])


@lru_cache(maxsize=8)
def _market_state(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The market's log-vol deviation and stress intensity, shared read-only by the walks."""
    log_vol = _ou(_normal(seed, "market", "vol"), VOL_HALF_LIFE, VOL_OF_VOL)
    stress = _stress(seed, "market", MARKET_STRESS_RATE)
    for array in (log_vol, stress):
        array.setflags(write=False)
    return log_vol, stress


def mean_stress(rate: float = MARKET_STRESS_RATE) -> float:
    """The long-run mean of a stress intensity path: what a far forecast expects of it."""
    decay = 0.5 ** (1 / STRESS_HALF_LIFE)
    return rate * sum(_STRESS_SIZE) / 2 / (1 - decay)


def forecast_variance(inst: Instrument, log_vol: Any, stress: Any, ahead: Any, rate: float) -> Any:
    """Expected instantaneous variance ``ahead`` sessions on, given today's state (broadcasts).

    The log-vol deviation reverts at ``VOL_HALF_LIFE`` (its variance grows back to the stationary
    one), stress decays at ``STRESS_HALF_LIFE`` towards its long-run mean: so far forecasts sit above
    a calm day's volatility (term structure upward) and below a stressed day's (inverted).
    """
    a = 0.5 ** (1 / VOL_HALF_LIFE)
    b = 0.5 ** (1 / STRESS_HALF_LIFE)
    mean_x = log_vol * a**ahead
    var_x = VOL_OF_VOL**2 * (1 - a ** (2 * ahead))
    expected_stress = stress * b**ahead + mean_stress(rate) * (1 - b**ahead)
    ratio = inst.vol_high / inst.vol_low
    return inst.vol_low**2 * np.exp(2 * mean_x + 2 * var_x) * (1 + (ratio - 1) * expected_stress) ** 2


def _smooth(noise: np.ndarray, span: float) -> np.ndarray:
    """Causal exponential smoothing with unit variance: slow-moving noise for IV premia."""
    kernel = np.exp(-np.arange(int(4 * span)) / span)
    kernel /= math.sqrt(float(np.sum(kernel**2)))
    return np.convolve(noise, kernel)[: len(noise)]


@dataclass(frozen=True)
class Series:
    """One instrument's whole history in unsplit units; never served directly (see bars_as_of).

    ``log_vol`` and ``stress`` are the volatility state each session (``sigma`` = ``vol_low`` x
    exp(log_vol) x (1 + (vol_high / vol_low - 1) x stress)); ``iv_scale`` is the implied-volatility
    premium over the expected volatility times that day's quote noise; ``iv`` the headline 30-day IV.
    """

    instrument: Instrument
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    dollar_volume: np.ndarray
    stressed: np.ndarray
    iv: np.ndarray
    ex_dividend: np.ndarray
    log_vol: np.ndarray
    stress: np.ndarray
    iv_scale: np.ndarray
    stress_rate: float


def _ohlc(seed: int, symbol: str, close: np.ndarray, sigma_d: np.ndarray) -> tuple[np.ndarray, ...]:
    """Open gaps from the previous close; high/low beyond the open-close body, all positive."""
    n = len(close)
    gap = 0.35 * sigma_d * _normal(seed, symbol, "gap")[:n]
    open_ = np.concatenate([close[:1], close[:-1]]) * np.exp(gap)
    high = np.maximum(open_, close) * np.exp(0.5 * sigma_d * np.abs(_normal(seed, symbol, "high")[:n]))
    low = np.minimum(open_, close) * np.exp(-0.5 * sigma_d * np.abs(_normal(seed, symbol, "low")[:n]))
    return open_, high, low


def _iv_scale(seed: int, symbol: str, n: int) -> np.ndarray:
    """The variance risk premium as a ratio (a slow wander around 1.05-1.15 per symbol) times a
    small daily quote noise: IV exceeds the volatility that follows on about three days in four."""
    rng = keyed_rng(seed, symbol, "premium")
    base = rng.uniform(1.05, 1.15)
    premium = base * np.exp(0.05 * _smooth(rng.standard_normal(DRAWS), 20.0)[:n])
    return premium * np.exp(0.025 * _normal(seed, symbol, "iv-noise")[:n])


def expected_vol(inst: Instrument, log_vol: Any, stress: Any, rate: float, horizon: Any) -> Any:
    """Root mean expected variance over the next ``horizon`` sessions (a real number; midpoint
    rule), broadcast over arrays of states or horizons: the ATM term structure before the premium."""
    ahead = np.multiply.outer(np.asarray(horizon, dtype=float), _NODES)
    variance = forecast_variance(inst, np.asarray(log_vol)[..., None], np.asarray(stress)[..., None], ahead, rate)
    return np.sqrt(variance.mean(axis=-1))


def _headline_iv(inst: Instrument, log_vol: np.ndarray, stress: np.ndarray, scale: np.ndarray, rate: float) -> np.ndarray:
    """30-day IV per session: the premium (with its quote noise) times the expected volatility."""
    return expected_vol(inst, log_vol, stress, rate, IV_HORIZON) * scale


def _ex_dividend_indices(inst: Instrument, cal: Sessions) -> np.ndarray:
    """Ex-dates: the first session on or after the 10th of each dividend month."""
    first, last = cal.days[0].astype(object), cal.days[-1].astype(object)
    targets = [date(y, m, 10) for y in range(first.year, last.year + 1) for m in inst.dividend_months]
    idx = np.unique(np.searchsorted(cal.days, np.array(targets, dtype="datetime64[D]")))
    return idx[(idx >= 1) & (idx < len(cal.days))]


def _anchored(inst: Instrument, log_close: np.ndarray, cal: Sessions) -> np.ndarray:
    """Unsplit closes through every anchor: the walk's log path plus a piecewise-linear correction
    (flat before the first anchor and after the last), so levels stay near the real ones. After the
    last real anchor a trend point a year on (the last price grown at the drift) keeps the next
    year's level plausible rather than wherever the noise wanders."""
    points = sorted({(ANCHOR, inst.anchor_price), *inst.anchors})
    if inst.anchors:
        last_day, last_price = points[-1]
        points.append((last_day + timedelta(days=365), last_price * math.exp(inst.drift)))
    where = np.array([cal.index_on_or_after(day) for day, _ in points], dtype=float)
    target = np.array([
        math.log(price * math.prod(s.factor for s in inst.splits if s.day <= day)) for day, price in points
    ])
    correction = target - log_close[where.astype(int)]
    return np.exp(log_close + np.interp(np.arange(len(log_close)), where, correction))


SERIES_CACHE = 2048
"""Histories kept (~0.4 MB each, ~0.8 GB at most): a 1,000-symbol universe plus the 17 never thrash."""


@lru_cache(maxsize=SERIES_CACHE)
def series(seed: int, symbol: str) -> Series:
    """Generate (once per seed and symbol) the full daily history, vectorised (a few ms)."""
    inst = lookup(symbol, seed)
    if inst is None:
        raise KeyError(f"no instrument {symbol!r}")
    cal = sessions()
    n = len(cal.days)
    anchor = cal.index_on_or_after(ANCHOR)
    parent = series(seed, inst.parent or "SPY") if inst.derive != "walk" else None
    if parent is not None:
        stress, rate = parent.stress, parent.stress_rate
        log_vol = parent.log_vol if inst.derive == "track" else _ou(_normal(seed, symbol, "vol-noise")[:n], VOL_HALF_LIFE, VOL_OF_VOL)
    else:
        market_vol, market_stress = _market_state(seed)
        own = _ou(_normal(seed, symbol, "vol-noise"), VOL_HALF_LIFE, VOL_OF_VOL)
        loading = min(1.0, abs(inst.rho))
        log_vol = (loading * market_vol + math.sqrt(1 - loading**2) * own)[:n]
        shared = abs(inst.rho) >= 0.5
        rate = MARKET_STRESS_RATE if shared else OWN_STRESS_RATE
        stress = (market_stress if shared else _stress(seed, symbol, OWN_STRESS_RATE))[:n]
    sigma = inst.vol_low * np.exp(log_vol) * (1 + (inst.vol_high / inst.vol_low - 1) * stress)
    sigma_d = sigma / math.sqrt(TRADING_DAYS)
    if parent is not None and inst.derive == "track" and inst.scale is not None:
        open_, high, low, close = (x * inst.scale for x in (parent.open, parent.high, parent.low, parent.close))
    elif parent is not None and inst.derive == "track":
        level = inst.anchor_price / parent.close[anchor]
        factor = level * np.exp(0.0005 * _normal(seed, symbol, "basis")[:n])
        open_, high, low, close = (x * factor for x in (parent.open, parent.high, parent.low, parent.close))
    else:
        if parent is not None:  # vol_index
            close = 100.0 * parent.iv * np.exp(0.03 * _normal(seed, symbol, "basis")[:n]) * (inst.scale or 1.0)
        else:
            own_shock = keyed_rng(seed, symbol, "shock").standard_t(5, DRAWS)[:n] / math.sqrt(5 / 3)
            shock = inst.rho * _market_shock(seed)[:n] + math.sqrt(1 - inst.rho**2) * own_shock
            returns = inst.drift / TRADING_DAYS - 0.5 * sigma_d**2 + sigma_d * shock
            returns[0] = 0.0
            close = _anchored(inst, np.cumsum(returns), cal)
        open_, high, low = _ohlc(seed, symbol, close, sigma_d)
    stressed = stress > 0.3
    dollar_volume = inst.dollar_volume * np.exp(0.35 * _normal(seed, symbol, "volume")[:n]) * (1 + 0.6 * stress)
    scale = _iv_scale(seed, symbol, n)
    return Series(
        instrument=inst,
        open=open_,
        high=high,
        low=low,
        close=close,
        dollar_volume=dollar_volume,
        stressed=stressed,
        iv=_headline_iv(inst, log_vol, stress, scale, rate),
        ex_dividend=_ex_dividend_indices(inst, cal) if inst.dividend_yield else np.array([], dtype=np.int64),
        log_vol=log_vol,
        stress=stress,
        iv_scale=scale,
        stress_rate=rate,
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


@lru_cache(maxsize=64)
def traded_closes(seed: int, symbol: str) -> np.ndarray:
    """Each session's close as it traded that day (splits in force then, none later), rounded as
    ``bars_as_of`` rounds its last bar: the prices the account engine trades and marks at."""
    base = series(seed, symbol)
    inst = base.instrument
    cal = sessions()
    step = np.ones(len(base.close))
    for split in inst.splits:
        idx = cal.index_on_or_after(split.day)
        if idx < len(step):
            step[idx] *= split.factor
    raw = base.close / np.cumprod(step)
    closes = np.round(np.maximum(inst.tick, np.round(raw / inst.tick) * inst.tick), 6)
    closes.setflags(write=False)
    return closes


def dividend_amount(seed: int, symbol: str, index: int) -> float:
    """The raw cash dividend per share going ex on session ``index`` (0.0 if none), exactly as
    ``bars_as_of`` serves it in the chart's events."""
    base = series(seed, symbol)
    inst = base.instrument
    where = int(np.searchsorted(base.ex_dividend, index))
    if where >= len(base.ex_dividend) or int(base.ex_dividend[where]) != index:
        return 0.0
    cal = sessions()
    in_force = math.prod(s.factor for s in inst.splits if cal.index_on_or_after(s.day) <= index)
    per_event = inst.dividend_yield / max(1, len(inst.dividend_months))
    return max(0.0, round(per_event * float(base.close[index - 1]) / in_force, 2))


def next_ex_dividend(seed: int, symbol: str, after: int) -> int | None:
    """The first ex-dividend session strictly after session ``after`` (None for non-payers)."""
    ex = series(seed, symbol).ex_dividend
    where = int(np.searchsorted(ex, after, side="right"))
    return int(ex[where]) if where < len(ex) else None
