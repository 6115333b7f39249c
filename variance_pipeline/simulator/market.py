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
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import date, datetime
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


def lookup(name: str) -> Instrument | None:
    """The instrument a Tastytrade symbol (``/ES``) or Yahoo ticker (``ES=F``) names, if any."""
    return _BY_NAME.get(name.strip().upper())


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


@lru_cache(maxsize=64)
def series(seed: int, symbol: str) -> Series:
    """Generate (once per seed and symbol) the full daily history, vectorised."""
    inst = _BY_NAME[symbol]
    cal = sessions()
    n = len(cal.days)
    anchor = cal.index_on_or_after(ANCHOR)
    if inst.derive == "walk":
        stressed = _stressed(seed, "market" if abs(inst.rho) >= 0.5 else symbol)[:n]
    else:
        parent = series(seed, inst.parent or "SPY")
        stressed = parent.stressed
    regime_vol = np.where(stressed, inst.vol_high, inst.vol_low)
    sigma_d = regime_vol * np.exp(0.15 * _normal(seed, symbol, "vol-noise")[:n]) / math.sqrt(TRADING_DAYS)
    if inst.derive == "track":
        level = inst.anchor_price / parent.close[anchor]
        factor = level * np.exp(0.0005 * _normal(seed, symbol, "basis")[:n])
        open_, high, low, close = (x * factor for x in (parent.open, parent.high, parent.low, parent.close))
    else:
        if inst.derive == "vol_index":
            close = 100.0 * parent.iv * np.exp(0.03 * _normal(seed, symbol, "basis")[:n])
        else:
            own = keyed_rng(seed, symbol, "shock").standard_t(5, DRAWS)[:n] / math.sqrt(5 / 3)
            shock = inst.rho * _normal(seed, "market", "shock")[:n] + math.sqrt(1 - inst.rho**2) * own
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


def bars_as_of(seed: int, symbol: str, clock: datetime, extra_splits: tuple[Split, ...] = ()) -> Bars:
    """The instrument's bars as of ``clock``; ``extra_splits`` are splits injected by faults."""
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
