"""Benchmark: the evening report at 500 symbols builds in under a second.

Why: the report is the last step of every evening run and ``make report`` rebuilds it by hand; it
reads the warehouse's views (account_summary, manage_tonight, portfolio_risk, expected_move,
next_earnings, vol_dashboard, ...), renders one HTML page and writes it twice, atomically. Its cost
must stay a small, known number as the universe grows.

Builds a synthetic lake and loads it into a real DuckDB warehouse with the pipeline's own load
(``--symbols`` underlyings, 260 sessions of candles and realised volatility, 30 evenings of
metrics and term structures, 100 held underlyings with two short options each in two accounts,
balances, a margin report, past earnings), then times ``build_report``:

* ``build the report`` (the target): the first build in this process, so the template is
  compiled and every view bound for the first time, as in a pipeline run: open the warehouse
  read-only, query, render, write ``evening-YYYY-MM-DD.html`` and ``latest.html``. Target <= 1 s.
  The baseline, measured in the same run, is reading the same views' rows into Python alone
  (no rendering, no writing): the ratio shows what the page costs beyond its data.
* ``build the report, warm``: the median of five more builds (info).

    .venv/bin/python benchmarks/bench_report.py [--symbols 500]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from harness import Result, emit, peak_rss_mib, timed

from variance_pipeline.calendar import sessions_back
from variance_pipeline.candles.store import CandleStore
from variance_pipeline.lake.layout import Lake
from variance_pipeline.reports.evening import build_report
from variance_pipeline.schemas.registry import BY_NAME
from variance_pipeline.transforms.position_pnl import position_pnl
from variance_pipeline.warehouse.connection import warehouse_connection
from variance_pipeline.warehouse.load import load_sessions

EVENING = date(2025, 11, 25)
TARGET_SECONDS = 1.0
HELD = 100
ACCOUNTS = ("5WT00001", "5WT00002")
VIEWS = ("account_summary", "manage_tonight", "book_groups", "portfolio_risk", "expected_move", "next_earnings",
         "vol_dashboard", "load_log")


def declared(dataset: str, frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with the dataset's other declared columns null, in the declared order and types."""
    spec = BY_NAME[dataset]
    for name in spec.missing_columns(frame.columns):
        frame[name] = None
    return spec.conform(frame)


def build_lake(lake: Lake, symbols: int, seed: int = 11) -> list[date]:
    """A realistic warehouse's worth of partitions; returns the sessions landed."""
    rng = np.random.default_rng(seed)
    names = ["SPY", "VIX"] + [f"S{i:04d}" for i in range(symbols - 2)]
    n = len(names)
    sessions = sessions_back(EVENING, 260)
    evenings = sessions[-30:]
    fetched = datetime(2025, 11, 25, 22, tzinfo=timezone.utc)
    price = rng.uniform(20, 600, n)
    price[0], price[1] = 668.0, 17.2
    base_iv = rng.uniform(0.15, 0.6, n)
    earnings = [EVENING + timedelta(days=int(d)) if rng.random() < 0.6 and i > 1 else None
                for i, d in enumerate(rng.integers(2, 90, n))]
    history: list[pd.DataFrame] = []
    for k, day in enumerate(sessions):
        price = price * np.exp(rng.normal(0, 0.015, n))
        price[1] = 17.2 if day == EVENING else price[1]
        candles = pd.DataFrame({"symbol": names, "yahoo_ticker": names, "session_date": day, "open": price,
                                "high": price * 1.01, "low": price * 0.99, "close": price, "adj_close": price,
                                "volume": rng.integers(10**5, 10**7, n)})
        history.append(declared("candles", candles))
        hv = base_iv * rng.uniform(0.6, 1.1, n)
        lake.write_partition("realized_volatility", day, declared("realized_volatility", candles[
            ["symbol", "session_date", "close"]].assign(hv20=hv, hv30=hv, hv90=hv, hv252=hv, returns_available=252)))
        if day not in evenings:
            continue
        iv = base_iv * rng.uniform(0.85, 1.25, n)
        lake.write_partition("market_metrics", day, declared("market_metrics", pd.DataFrame({
            "as_of_date": day, "symbol": names, "implied_volatility": iv, "iv_rank": rng.uniform(0, 1, n),
            "iv_percentile": rng.uniform(0, 1, n), "hv_30_day": hv, "liquidity_rating": rng.integers(0, 6, n),
            "beta": rng.uniform(0.5, 1.8, n), "earnings_date": earnings, "fetched_at": fetched})))
        expirations = [day + timedelta(days=d) for d in (3, 10, 17, 24, 31, 52, 87, 115, 143, 206)]
        term = pd.DataFrame([(day, s, e, "PM", float(v) * (1 + 0.01 * j))
                             for s, v in zip(names, iv) for j, e in enumerate(expirations)],
                            columns=["as_of_date", "symbol", "expiration_date", "settlement_type", "implied_volatility"]).assign(fetched_at=fetched, option_chain_type="Standard")
        lake.write_partition("iv_term_structure", day, declared("iv_term_structure", term))
        net_liq = [250_000.0 + 400 * k, 120_000.0 - 150 * k]
        lake.write_partition("balances", day, declared("balances", pd.DataFrame({
            "as_of_date": day, "account_number": list(ACCOUNTS), "net_liquidating_value": net_liq,
            "used_derivative_buying_power": [80_000.0, 30_000.0], "derivative_buying_power": [170_000.0, 90_000.0],
            "fetched_at": fetched})))
    CandleStore(lake.candles_dir).add(pd.concat(history, ignore_index=True))
    held = names[2:HELD + 2]
    last = dict(zip(names, price))
    legs = []
    for i, symbol in enumerate(held):
        account = ACCOUNTS[i % 2]
        expiry = EVENING + timedelta(days=int(rng.choice([10, 24, 52])))
        for kind, strike in (("P", last[symbol] * 0.9), ("C", last[symbol] * 1.1)):
            occ = f"{symbol:<6}{expiry:%y%m%d}{kind}{int(strike * 1000):08d}"
            legs.append({"account_number": account, "symbol": occ, "root": symbol, "option_type": kind,
                         "strike": strike, "expiration_date": expiry, "quantity": -1.0,
                         "average_open_price": float(rng.uniform(1, 6)), "mark_price": float(rng.uniform(0.2, 7)),
                         "delta": 0.2 if kind == "C" else -0.2, "underlying_price": last[symbol]})
    book = pd.DataFrame(legs)
    positions = declared("positions", book.assign(
        as_of_date=EVENING, instrument_type="Equity Option", underlying_symbol=book["root"], root_symbol=book["root"],
        quantity_direction="Short", close_price=book["mark_price"], multiplier=100.0, fetched_at=fetched,
        created_at=fetched - timedelta(days=20), expires_at=pd.to_datetime(book["expiration_date"]).dt.tz_localize("UTC"),
    ).drop(columns=["root", "option_type", "strike", "expiration_date", "delta", "underlying_price"]))
    lake.write_partition("positions", EVENING, positions)
    greeks = declared("position_greeks", book.assign(
        as_of_date=EVENING, instrument_type="Equity Option", root_symbol=book["root"], multiplier=100.0,
        underlying_price_source="close", price=book["mark_price"], gamma=0.01, theta=0.05, vega=0.2,
        position_delta=book["delta"] * -100, position_gamma=-1.0, position_theta=5.0, position_vega=-20.0,
        beta_weighted_delta=book["delta"] * -110).drop(columns=["root", "average_open_price", "mark_price"]))
    lake.write_partition("position_greeks", EVENING, greeks)
    metrics = lake.read_partition("market_metrics", EVENING)
    lake.write_partition("position_pnl", EVENING, position_pnl(positions, greeks, metrics, EVENING))
    margin = pd.DataFrame({"as_of_date": EVENING, "account_number": [ACCOUNTS[i % 2] for i in range(len(held))],
                           "underlying_symbol": held, "buying_power": rng.uniform(200, 4000, len(held)), "fetched_at": fetched})
    lake.write_partition("margin_requirements", EVENING, declared("margin_requirements", margin))
    lake.write_partition("universe", EVENING, declared("universe", pd.DataFrame({
        "as_of_date": EVENING, "symbol": names, "source": ["held" if s in set(held) else "watchlist" for s in names],
        "held_positions": [2 if s in set(held) else 0 for s in names], "positions_as_of": EVENING})))
    reports = [(s, sessions[j]) for i, s in enumerate(names[2:int(n * 0.6)]) for j in range(40 + i % 60, 250, 63)]
    lake.write_partition("earnings_reports", EVENING, declared("earnings_reports", pd.DataFrame(
        reports, columns=["symbol", "occurred_date"]).assign(fetched_at=fetched)))
    return sessions


def read_views(lake: Lake) -> None:
    """The baseline: every view the page reads, fetched into Python, nothing rendered."""
    with warehouse_connection(lake.warehouse_path, read_only=True) as con:
        for view in VIEWS:
            con.execute(f"SELECT * FROM {view}").fetchall()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--symbols", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        lake = Lake(Path(tmp), source="simulator")
        started = time.perf_counter()
        sessions = build_lake(lake, args.symbols)
        with warehouse_connection(lake.warehouse_path) as con:
            load_sessions(con, lake, sessions)
        print(f"{args.symbols} symbols, {len(sessions)} sessions landed and loaded in {time.perf_counter() - started:.1f} s")
        cold_box: list = []
        cold = timed(lambda: cold_box.append(build_report(lake, clock=datetime(2025, 11, 25, 22, 30, tzinfo=timezone.utc))))
        baseline = timed(lambda: read_views(lake))
        warm = statistics.median(timed(lambda: build_report(lake)) for _ in range(5))
        built = cold_box[0]
        size_kib = built.files.dated.stat().st_size / 1024
        context = built.context
        print(f"report {built.files.dated} ({size_kib:.0f} KiB): {len(context.risk.rows)} underlyings at risk, "
              f"{len(context.manage.rows)} to manage, {len(context.moves.rows)} expected moves, "
              f"{len(context.moves.earnings)} earnings, {len(context.candidates.passed)} candidates shown")
        print(f"{'case':<44}{'seconds':>10}")
        for name, seconds in (("build the report (first in the process)", cold), ("read the views alone (baseline)", baseline),
                              ("build the report, warm (median of 5)", warm)):
            print(f"{name:<44}{seconds:>10.3f}")
    peak = round(peak_rss_mib(), 1)
    emit(Result("report", f"build the evening report at {args.symbols} symbols (first build in the process)",
                round(cold, 4), round(baseline, 4), "s", f"<= {TARGET_SECONDS:g} s", cold <= TARGET_SECONDS, peak))
    emit(Result("report", f"build the evening report at {args.symbols} symbols, warm (median of 5)", round(warm, 4),
                round(baseline, 4), "s", "info", True, peak))


if __name__ == "__main__":
    main()
