"""Synthetic ``/market-metrics`` items, derived from the same bars the chart endpoint serves.

The units are mixed exactly as in the real API: IV index, ranks, percentile and per-expiration IVs
are fractions; ``implied-volatility-30-day``, ``historical-volatility-*`` and
``iv-hv-30-day-difference`` are percentages. ``historical-volatility-30-day`` is computed from the
chart's own final closes as of the clock, so the pipeline's HV30 reconciles with it exactly.
The term structure is the market's own (``volsurface.atm_curve``): its 30-day point is the
headline IV, so ``implied-volatility-30-day`` is 100 x ``implied-volatility-index`` to rounding.
"""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta, timezone
from typing import Any, Callable, Collection

import numpy as np

from variance_pipeline.simulator import dates
from variance_pipeline.simulator.formats import iso_offset, iso_z, num
from variance_pipeline.simulator.volsurface import atm_curve
from variance_pipeline.simulator.market import (
    TRADING_DAYS,
    Bars,
    Instrument,
    historical_vol,
    keyed_rng,
    lookup,
    series,
    sessions,
)

_CREATED = datetime(2019, 1, 21, 0, 2, 44, 206000, tzinfo=timezone.utc)


def metrics_item(seed: int, bars: Bars, spy: Bars, clock: datetime) -> dict[str, Any] | None:
    """One item as of ``clock``; None when the instrument has too little history to rate."""
    inst = bars.instrument
    done = bars.completed
    if done < 2:
        return None
    closes = bars.close[:done]
    iv_history = bars.iv[:done]
    iv = float(iv_history[-1])
    year = iv_history[-TRADING_DAYS:]
    two_years = iv_history[-2 * TRADING_DAYS :]
    rank = _rank(iv, year)
    today = dates.new_york_date(clock)
    curve = atm_curve(seed, inst.symbol, done - 1)
    term = _term_structure(inst.kind, inst.symbol, today, curve)
    iv30 = round(100 * curve(30), 2)
    hv = {n: historical_vol(closes, n) for n in (30, 60, 90)}
    hv_pct = {n: None if value is None else round(100 * value, 2) for n, value in hv.items()}
    beta, corr = _beta_corr(closes, spy.close[: spy.completed])
    price = float(closes[-1])
    dollar_volume = float(np.mean(bars.volume[:done][-20:] * closes[-20:]))
    updated = clock.astimezone(timezone.utc)
    return {
        "symbol": inst.symbol,
        "implied-volatility-index": num(iv, 9),
        "implied-volatility-index-5-day-change": num(iv - float(iv_history[-6 if done >= 6 else 0]), 9),
        "implied-volatility-index-rank": num(rank, 9),
        "tos-implied-volatility-index-rank": num(rank, 9),
        "tw-implied-volatility-index-rank": num(_rank(iv, two_years), 9),
        "tos-implied-volatility-index-rank-updated-at": iso_z(updated - timedelta(seconds=1)),
        "implied-volatility-index-rank-source": "tos",
        "implied-volatility-percentile": num(float(np.mean(year < iv)), 9),
        "implied-volatility-updated-at": iso_z(updated - timedelta(seconds=1)),
        "liquidity-value": num(dollar_volume / 1e4, 9),
        "liquidity-rank": num(math.log10(1 + dollar_volume) / 7, 9),
        "liquidity-rating": int(min(5, max(0, round(math.log10(1 + dollar_volume) - 6)))),
        "created-at": iso_offset(_CREATED),
        "updated-at": iso_z(updated),
        "option-expiration-implied-volatilities": term,
        "liquidity-running-state": {
            "sum": num(48 * dollar_volume / 1e4, 9),
            "count": 48,
            "started-at": iso_z(updated - timedelta(days=4)),
            "updated-at": iso_z(updated - timedelta(seconds=1)),
        },
        "beta": num(beta, 9),
        "beta-updated-at": iso_z(updated - timedelta(days=3)),
        "corr-spy-3month": num(corr, 2),
        **_dividend_fields(seed, bars, today, price),
        **({"earnings": _earnings(seed, inst.symbol, inst.earnings_months, inst.earnings_day, today, updated)}
           if inst.has_earnings else {}),
        "listed-market": inst.listed_market,
        **_borrow_fields(seed, inst.symbol, inst.kind),
        "market-cap": int(inst.shares_outstanding * price),
        "implied-volatility-30-day": num(iv30, 2),
        "historical-volatility-30-day": _pct(hv_pct[30]),
        "historical-volatility-60-day": _pct(hv_pct[60]),
        "historical-volatility-90-day": _pct(hv_pct[90]),
        "iv-hv-30-day-difference": None if hv_pct[30] is None else num(iv30 - hv_pct[30], 2),
        "price-earnings-ratio": "0.0",
        "earnings-per-share": "0.0",
    }


def _pct(value: float | None) -> str | None:
    return None if value is None else num(value, 2)


def _rank(value: float, history: np.ndarray) -> float:
    low, high = float(history.min()), float(history.max())
    return 0.0 if high <= low else (value - low) / (high - low)


HARD_TO_BORROW_SHARE = 0.06
"""Share of equities that are hard to borrow (a borrow rate in percent, like the real API's "24.5013")."""


def _borrow_fields(seed: int, symbol: str, kind: str) -> dict[str, str]:
    """``lendability`` and ``borrow-rate`` (a percent string): "0.0" for almost everything, a
    hard-to-borrow rate of 3-80 % for a few equities, fixed per (seed, symbol)."""
    if kind != "equity":
        return {"lendability": "Easy To Borrow", "borrow-rate": "0.0"}
    rng = keyed_rng(seed, symbol, "borrow")
    if rng.uniform() >= HARD_TO_BORROW_SHARE:
        return {"lendability": "Easy To Borrow", "borrow-rate": "0.0"}
    return {"lendability": "Locate Required", "borrow-rate": num(float(rng.uniform(3.0, 80.0)), 4)}


NON_STANDARD_CHAINS = frozenset({"AAPL"})
"""Underlyings whose second monthly expiration also lists a ``Non-standard`` chain (adjusted
deliverables after a corporate action) beside the Standard one, on the same date and settlement,
with its own IV (as real term structures do for a while after a split or merger)."""
NON_STANDARD_IV_FACTOR = 1.35
"""The Non-standard chain's IV relative to the Standard one: far enough apart that a pipeline using
it instead of (or averaged with) the Standard row shows in every number derived from it."""


def _term_structure(kind: str, symbol: str, today: date, curve: Callable[[float], float]) -> list[dict[str, Any]]:
    """4-8 future expirations: weeklies plus monthlies for stocks and ETFs, monthlies for futures.

    SPX lists its monthly expirations twice, as in the real term structure: the AM-settled
    standard monthly and the PM-settled SPXW on the same date (a slightly different IV, since AM
    settlement prices the next morning's open); SPX weeklies are PM only. The
    ``NON_STANDARD_CHAINS`` list a Non-standard chain beside the Standard second monthly (on the
    suite's clock, 2025-11-25, the 2026-01-16 expiration of the book's AAPL call).
    """
    monthly = [dates.monthly_expiration(*dates.add_months(today.year, today.month, k)) for k in range(0, 7)]
    monthly = [d for d in monthly if d > today]
    chosen = monthly[:5] if kind == "future" else sorted(set(dates.weekly_expirations(today, 4) + monthly[:3]))
    entries = []
    for expiry in chosen:
        term_iv = curve((expiry - today).days)
        if symbol == "SPX" and expiry in monthly:
            entries.append(_expiration(expiry, "AM", term_iv * 1.004))
        entries.append(_expiration(expiry, "PM", term_iv))
        if symbol in NON_STANDARD_CHAINS and expiry == monthly[1]:
            entries.append(_expiration(expiry, "PM", term_iv * NON_STANDARD_IV_FACTOR, chain="Non-standard"))
    return entries


def _expiration(expiry: date, settlement: str, implied_volatility: float, chain: str = "Standard") -> dict[str, Any]:
    return {
        "expiration-date": expiry.isoformat(),
        "option-chain-type": chain,
        "settlement-type": settlement,
        "implied-volatility": num(implied_volatility, 9),
    }


def _beta_corr(closes: np.ndarray, spy_closes: np.ndarray) -> tuple[float, float]:
    """Beta and correlation to SPY over the last 63 daily log returns (3 months)."""
    count = min(len(closes), len(spy_closes), 64)
    if count < 3:
        return 1.0, 1.0
    own = np.diff(np.log(closes[-count:]))
    market = np.diff(np.log(spy_closes[-count:]))
    cov = np.cov(own, market)
    beta = float(cov[0, 1] / cov[1, 1]) if cov[1, 1] > 0 else 0.0
    corr = float(cov[0, 1] / math.sqrt(cov[0, 0] * cov[1, 1])) if cov[0, 0] * cov[1, 1] > 0 else 0.0
    return beta, corr


def _dividend_fields(seed: int, bars: Bars, today: date, price: float) -> dict[str, Any]:
    """Payers carry ex/next/pay dates; non-payers only the three zero fields (as TSLA does); cash
    indices (SPX, NDX, RUT...) none at all, as their real metrics often come (issue #19: the
    pipeline then prices their options with the tracking ETF's yield)."""
    if bars.instrument.kind == "index":
        return {}
    if not bars.dividends:
        return {"dividend-rate-per-share": "0.0", "annual-dividend-per-share": "0.0", "dividend-yield": "0.0"}
    cal = sessions()
    last_ts, last_amount = bars.dividends[-1]
    year_ago = int((datetime.combine(today, datetime.min.time(), timezone.utc) - timedelta(days=365)).timestamp())
    annual = sum(amount for ts, amount in bars.dividends if ts > year_ago)
    ex_day = dates.new_york_date(datetime.fromtimestamp(last_ts, timezone.utc))
    upcoming = [int(i) for i in series(seed, bars.instrument.symbol).ex_dividend if int(i) >= len(bars.close)]
    next_day = cal.days[upcoming[0]].astype(object) if upcoming else ex_day + timedelta(days=91)
    return {
        "dividend-rate-per-share": num(last_amount, 4),
        "annual-dividend-per-share": num(annual, 4),
        "dividend-yield": num(annual / price, 9),
        "dividend-ex-date": ex_day.isoformat(),
        "dividend-next-date": next_day.isoformat(),
        "dividend-pay-date": (ex_day + timedelta(days=6)).isoformat(),
        "dividend-updated-at": iso_z(datetime.combine(ex_day - timedelta(days=4), datetime.min.time(), timezone.utc)),
    }


def report_dates(months: tuple[int, ...], day: int, years: range) -> list[date]:
    """Every report date of ``years``: the session on or after ``day`` (at most 28) of each month."""
    return [report for _, report in quarter_reports(months, day, years)]


def quarter_reports(months: tuple[int, ...], day: int, years: range) -> list[tuple[date, date]]:
    """(quarter end, report date) of every report of ``years``, by report date. The quarter is the
    calendar quarter that ended before the report's month (a July report is June's quarter, a
    February one December's), taken from the month the report was planned for, so a report moved
    into the next month by a weekend keeps its quarter."""
    found = []
    for year in years:
        for month in months:
            report = dates.session_on_or_after(date(year, month, min(day, 28)))
            found.append((_quarter_end(year, month), report))
    return sorted(found, key=lambda pair: pair[1])


def _quarter_end(year: int, month: int) -> date:
    """The last day of the calendar quarter that ended before ``month`` of ``year``."""
    end_year, end_month = dates.add_months(year, month, -((month - 1) % 3 + 1))
    following_year, following_month = dates.add_months(end_year, end_month, 1)
    return date(following_year, following_month, 1) - timedelta(days=1)


TIMES_OF_DAY = ("BMO", "AMC")
AFTER_CLOSE_SHARE = 0.6
"""Share of equities that report after the close (the rest before the open), fixed per symbol."""


def report_time_of_day(seed: int, symbol: str) -> str:
    """``BMO`` or ``AMC``: when the symbol reports, the same every quarter (the named five: AMC)."""
    if symbol in ("AAPL", "MSFT", "NVDA", "AMZN", "TSLA"):
        return "AMC"
    return "AMC" if keyed_rng(seed, symbol, "time-of-day").uniform() < AFTER_CLOSE_SHARE else "BMO"


def report_eps(seed: int, symbol: str, report: date) -> tuple[float, float]:
    """(consensus, actual) EPS of one report: the metrics show them while the report is next, the
    earnings history serves the actual once it has occurred, so the two always agree."""
    rng = keyed_rng(seed, symbol, "eps", report)
    consensus = round(float(rng.uniform(0.5, 3.0)), 2)
    return consensus, consensus * float(rng.uniform(0.9, 1.15))


def _earnings(
    seed: int, symbol: str, months: tuple[int, ...], day: int, today: date, updated: datetime
) -> dict[str, Any]:
    """The next report (within ~3 months), its time of day, the quarter it reports (the first day
    of the quarter's last month, as the real API sends it) and the consensus/actual EPS."""
    candidates = quarter_reports(months, day, range(today.year - 1, today.year + 2))
    quarter, report = next((q, d) for q, d in candidates if d > today)
    consensus, actual = report_eps(seed, symbol, report)
    return {
        "visible": True,
        "expected-report-date": report.isoformat(),
        "estimated": (report - today).days > 30,
        "late-flag": 0,
        "quarter-end-date": quarter.replace(day=1).isoformat(),
        "time-of-day": report_time_of_day(seed, symbol),
        "actual-eps": num(actual, 2),
        "consensus-estimate": num(consensus, 2),
        "updated-at": iso_z(updated - timedelta(hours=9)),
    }


EARNINGS_HISTORY_START = date(2009, 1, 2)
"""The first session the synthetic market knows: no report is older."""


def earnings_reports(seed: int, inst: Instrument, start: date | None, clock: datetime) -> list[dict[str, Any]]:
    """``historic-corporate-events/earnings-reports`` items as the real endpoint labels them: each
    report whose date is on or before the clock's New York date, as ``occurred-date`` = its fiscal
    quarter's calendar end (AAPL's report of 2022-07-28 is ``2022-06-30``), on or after ``start``,
    oldest first; none for ETFs, futures and indices. The report's own date and time of day are
    only in the metrics snapshots taken before it."""
    if not inst.has_earnings:
        return []
    today = dates.new_york_date(clock)
    first = max(start or EARNINGS_HISTORY_START, EARNINGS_HISTORY_START)
    if first > today:
        return []
    reports = [(q, d) for q, d in quarter_reports(inst.earnings_months, inst.earnings_day, range(first.year - 1, today.year + 1))
               if first <= q and d <= today and d >= EARNINGS_HISTORY_START]
    return [{"occurred-date": q.isoformat(), "eps": num(report_eps(seed, inst.symbol, d)[1], 2)} for q, d in reports]


def tasty_instrument(seed: int, name: str, delisted: Collection[str] = ()) -> Instrument | None:
    """The instrument ``name`` names in Tastytrade's spelling (``/ES``, not ``ES=F``), if listed.

    Yahoo-only names (``ES=F``, ``^SPX``, a caret index outside ``INDEX_NAMES``) and the
    ``delisted`` Tastytrade symbols are unknown, as the real API knows neither.
    """
    inst = lookup(name, seed)
    if inst is None or inst.symbol != name.strip().upper() or inst.symbol.startswith("^") or inst.symbol in delisted:
        return None
    return inst


def synthetic_metrics(
    seed: int,
    symbols: list[str],
    clock: datetime,
    bars_for: Callable[[str], Bars],
    delisted: Collection[str] = (),
) -> list[dict[str, Any]]:
    """Items for the known symbols, in request order, each once (``delisted`` ones are absent)."""
    items: list[dict[str, Any]] = []
    seen: set[str] = set()
    spy = bars_for("SPY")  # every item's beta and correlation; built once, not per symbol
    for name in symbols:
        inst = tasty_instrument(seed, name, delisted)
        if inst is None or inst.symbol in seen:
            continue
        seen.add(inst.symbol)
        item = metrics_item(seed, bars_for(inst.symbol), spy, clock)
        if item is not None:
            items.append(item)
    return items
