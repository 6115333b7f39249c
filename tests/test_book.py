"""Tonight's book: P&L per position and the account views, against plain computations.

Every expected number here is computed in the test from the inputs with plain Python (quantity x
multiplier x price differences, ratios of sums), never by the code under test.
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from pathlib import Path

import pandas as pd
import pytest

from support import declared_frame
from variance_pipeline.candles.store import CandleStore
from variance_pipeline.lake.layout import Lake
from variance_pipeline.schemas.account import BALANCES, MARGIN_REQUIREMENTS
from variance_pipeline.schemas.candles import CANDLES
from variance_pipeline.schemas.market_metrics import MARKET_METRICS
from variance_pipeline.schemas.positions import POSITIONS
from variance_pipeline.schemas.risk import POSITION_GREEKS
from variance_pipeline.schemas.validate import validate_frame
from variance_pipeline.schemas.book import POSITION_PNL
from variance_pipeline.transforms.position_pnl import Thresholds, position_pnl
from variance_pipeline.warehouse.connection import warehouse_connection
from variance_pipeline.warehouse.load import load_sessions

DAY = date(2025, 11, 25)
OPENED = datetime(2025, 10, 14, 15, 30, tzinfo=timezone.utc)
LATER = datetime(2025, 10, 20, 15, 30, tzinfo=timezone.utc)
FETCHED = datetime(2025, 11, 25, 22, 0, tzinfo=timezone.utc)
ACCOUNT = "5WT00001"

# (symbol, type, root, quantity, multiplier, average open, mark per unit, created, option, strike,
#  expiration, model delta, underlying close)
LEGS = [
    ("SPY   251219P00640000", "Equity Option", "SPY", -2, 100, 5.10, 2.40, OPENED, "P", 640.0, date(2025, 12, 19), -0.18, 668.0),
    ("SPY   251219C00700000", "Equity Option", "SPY", -2, 100, 3.20, 1.10, OPENED, "C", 700.0, date(2025, 12, 19), 0.12, 668.0),
    ("SPY   251219P00630000", "Equity Option", "SPY", 2, 100, 3.50, 1.60, OPENED, "P", 630.0, date(2025, 12, 19), -0.12, 668.0),
    ("AAPL  251212P00280000", "Equity Option", "AAPL", -1, 100, 4.00, 9.50, LATER, "P", 280.0, date(2025, 12, 12), -0.62, 272.0),
    ("AAPL  260116C00290000", "Equity Option", "AAPL", -1, 100, 2.00, 1.20, LATER, "C", 290.0, date(2026, 1, 16), 0.31, 272.0),
    ("MSFT  251205C00470000", "Equity Option", "MSFT", -1, 100, 6.00, 5.10, LATER, "C", 470.0, date(2025, 12, 5), 0.93, 475.0),
    ("./MESH6EX3F6 260116P6450", "Future Option", "/MES", -3, 5, 40.0, 12.0, OPENED, "P", 6450.0, date(2026, 1, 16), -0.11, 6820.0),
    ("AAPL", "Equity", "AAPL", 100, 1, 250.0, 272.0, LATER, None, None, None, 1.0, 272.0),
]


def positions_and_greeks() -> tuple[pd.DataFrame, pd.DataFrame]:
    rows, greeks = [], []
    for symbol, kind, root, qty, mult, avg, mark, created, option, strike, expiry, delta, close in LEGS:
        rows.append({
            "as_of_date": DAY, "account_number": ACCOUNT, "symbol": symbol, "instrument_type": kind,
            "underlying_symbol": root, "root_symbol": root, "quantity": float(qty),
            "quantity_direction": "Long" if qty > 0 else "Short", "average_open_price": avg, "close_price": mark,
            "mark": abs(mark * qty * mult), "mark_price": mark, "multiplier": float(mult), "created_at": created,
            "fetched_at": FETCHED,
        })
        greeks.append({
            "as_of_date": DAY, "account_number": ACCOUNT, "symbol": symbol, "option_type": option, "strike": strike,
            "expiration_date": expiry, "delta": delta, "underlying_price": close,
        })
    return declared_frame(POSITIONS, rows), pd.DataFrame(greeks)


def metrics() -> pd.DataFrame:
    return declared_frame(MARKET_METRICS, {
        "as_of_date": [DAY] * 3, "symbol": ["SPY", "AAPL", "MSFT"], "fetched_at": [FETCHED] * 3,
        # AAPL reports on 2026-01-29: after the December put, before... no: after the January call too.
        "earnings_date": [None, date(2026, 1, 15), date(2026, 1, 28)],
        "dividend_rate_per_share": [None, 0.26, 0.91],
        "dividend_next_date": [None, date(2026, 2, 9), date(2025, 12, 3)],
    })


@pytest.fixture(scope="module")
def book() -> pd.DataFrame:
    positions, greeks = positions_and_greeks()
    frame = position_pnl(positions, greeks, metrics(), DAY, Thresholds())
    assert validate_frame(POSITION_PNL, frame).ok
    return frame.set_index("symbol")


@pytest.mark.parametrize("leg", LEGS, ids=lambda leg: leg[0])
def test_pnl_of_every_leg_is_price_change_times_signed_size(book: pd.DataFrame, leg: tuple) -> None:
    symbol, _, _, qty, mult, avg, mark, *_ = leg
    row = book.loc[symbol]
    assert row["unrealized_pnl"] == pytest.approx((mark - avg) * qty * mult, abs=1e-9)
    assert row["opening_credit"] == pytest.approx(-avg * qty * mult, abs=1e-9)
    assert row["market_value"] == pytest.approx(mark * qty * mult, abs=1e-9)
    if qty < 0 and leg[8] is not None:
        credit = avg * abs(qty) * mult
        cost_to_close = mark * abs(qty) * mult
        assert row["max_profit"] == pytest.approx(credit)
        assert row["pct_of_max_profit"] == pytest.approx((credit - cost_to_close) / credit)
    else:
        assert pd.isna(row["pct_of_max_profit"])


def test_days_tested_and_events(book: pd.DataFrame) -> None:
    assert book.loc["SPY   251219P00640000", "days_to_expiration"] == (date(2025, 12, 19) - DAY).days
    # The AAPL put is in the money (strike 280 > close 272); the AAPL call has |delta| 0.31 >= 0.30.
    assert book.loc["AAPL  251212P00280000", "tested"] and book.loc["AAPL  260116C00290000", "tested"]
    assert not book.loc["SPY   251219P00640000", "tested"] and not book.loc["SPY   251219P00630000", "tested"]
    assert book.loc["AAPL  260116C00290000", "earnings_date"] == date(2026, 1, 15)
    # MSFT call: ex-dividend 12-03 before its 12-05 expiry, extrinsic 5.10 - (475 - 470) = 0.10 < 0.91.
    msft = book.loc["MSFT  251205C00470000"]
    assert msft["extrinsic_value"] == pytest.approx(5.10 - 5.0)
    assert msft["early_assignment_risk"] and msft["ex_dividend_date"] == date(2025, 12, 3)
    assert not book.loc["AAPL  260116C00290000", "early_assignment_risk"]  # ex-date 02-09 after its expiry


def test_legs_of_one_trade_share_a_group(book: pd.DataFrame) -> None:
    spy = {book.loc[s, "group_id"] for s in book.index if s.startswith("SPY")}
    assert len(spy) == 1
    assert book.loc["AAPL  251212P00280000", "group_id"] != book.loc["AAPL  260116C00290000", "group_id"]
    assert book.loc["./MESH6EX3F6 260116P6450", "underlying_symbol"] == "/MES"


def land_evening(lake: Lake) -> None:
    positions, greeks = positions_and_greeks()
    lake.write_partition("positions", DAY, positions)
    model = declared_frame(POSITION_GREEKS, greeks.assign(
        instrument_type=positions["instrument_type"], root_symbol=positions["root_symbol"],
        quantity=positions["quantity"], multiplier=positions["multiplier"], underlying_price_source="close",
        price=positions["mark_price"], gamma=0.0, theta=[-0.08, -0.05, 0.04, -0.10, -0.04, -0.02, -1.5, 0.0],
        vega=[0.5, 0.4, 0.4, 0.2, 0.3, 0.05, 3.0, 0.0],
    ).assign(
        position_delta=lambda f: f["delta"] * f["quantity"] * f["multiplier"],
        position_gamma=0.0,
        position_theta=lambda f: f["theta"] * f["quantity"] * f["multiplier"],
        position_vega=lambda f: f["vega"] * f["quantity"] * f["multiplier"],
        beta_weighted_delta=lambda f: f["delta"] * f["quantity"] * f["multiplier"] * 1.1,
    ))
    lake.write_partition("position_greeks", DAY, model)
    lake.write_partition("market_metrics", DAY, metrics())
    lake.write_partition("position_pnl", DAY, position_pnl(positions, greeks, metrics(), DAY))
    lake.write_partition("balances", DAY, declared_frame(BALANCES, {
        "as_of_date": [DAY], "account_number": [ACCOUNT], "net_liquidating_value": [100_000.0],
        "used_derivative_buying_power": [28_000.0], "derivative_buying_power": [72_000.0], "fetched_at": [FETCHED],
    }))
    lake.write_partition("margin_requirements", DAY, declared_frame(MARGIN_REQUIREMENTS, {
        "as_of_date": [DAY] * 3, "account_number": [ACCOUNT] * 3, "underlying_symbol": ["SPY", "AAPL", "/MES"],
        "buying_power": [2_000.0, 7_500.0, 18_500.0], "fetched_at": [FETCHED] * 3,
    }))
    bars = [("SPY", "SPY", 668.0), ("VIX", "^VIX", 17.2)]
    CandleStore(lake.candles_dir).add(declared_frame(CANDLES, {
        "symbol": [b[0] for b in bars], "yahoo_ticker": [b[1] for b in bars], "session_date": [DAY] * 2,
        "open": [b[2] for b in bars], "high": [b[2] for b in bars], "low": [b[2] for b in bars],
        "close": [b[2] for b in bars], "adj_close": [b[2] for b in bars],
    }))


def test_account_summary_and_manage_tonight_in_a_real_warehouse(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    land_evening(lake)
    with warehouse_connection(lake.warehouse_path) as con:
        load_sessions(con, lake, [DAY])
        summary = con.execute("SELECT * FROM account_summary WHERE account_number = ?", [ACCOUNT]).df().iloc[0]
        everything = con.execute("SELECT * FROM account_summary WHERE account_number = 'ALL'").df().iloc[0]
        manage = con.execute("SELECT underlying_symbol, expiration_date, reasons, pct_of_max_profit FROM manage_tonight").df()
    _, greeks = positions_and_greeks()
    theta = sum(t * leg[3] * leg[4] for t, leg in zip([-0.08, -0.05, 0.04, -0.10, -0.04, -0.02, -1.5, 0.0], LEGS))
    bwd = sum(leg[11] * leg[3] * leg[4] * 1.1 for leg in LEGS)
    assert summary["bp_used_pct"] == pytest.approx(28_000 / 100_000)
    assert summary["theta_per_day"] == pytest.approx(theta) and summary["theta_pct_of_net_liq"] == pytest.approx(theta / 100_000)
    assert summary["beta_weighted_delta"] == pytest.approx(bwd)
    assert summary["bwd_dollars_per_spy_1pct"] == pytest.approx(bwd * 668.0 * 0.01)
    # VIX 17.2 sits in the 15-20 band of the guideline: at most 30 % of net liq in use.
    assert summary["vix"] == pytest.approx(17.2) and summary["bp_guideline_max_pct"] == pytest.approx(0.30)
    assert summary["bp_within_guideline"]
    assert summary["largest_bp_underlying"] == "/MES" and summary["largest_bp_share"] == pytest.approx(18_500 / 28_000)
    assert everything["net_liquidating_value"] == pytest.approx(100_000) and everything["groups_to_manage"] == len(manage)
    reasons = {(r.underlying_symbol, str(r.expiration_date)[:10]): set(r.reasons) for r in manage.itertuples()}
    # SPY condor: credit 2x100x(5.10+3.20-3.50)=960, now 2x100x(2.40+1.10-1.60)=380 to close: 60.4 % >= 50 %.
    assert reasons[("SPY", "2025-12-19")] == {"profit_target"}  # 24 days left: not yet 21
    spy = manage[manage["underlying_symbol"] == "SPY"].iloc[0]
    assert spy["pct_of_max_profit"] == pytest.approx((960 - 380) / 960)
    assert reasons[("AAPL", "2025-12-12")] == {"tested", "dte", "bp_concentration"}  # 7,500 > 5 % of 100,000
    assert reasons[("AAPL", "2026-01-16")] == {"tested", "earnings", "bp_concentration"}
    assert reasons[("MSFT", "2025-12-05")] == {"tested", "dte", "early_assignment"}
    assert reasons[("/MES", "2026-01-16")] == {"profit_target", "bp_concentration"}  # (40-12)/40 = 70 %
    assert ("AAPL", "none") not in reasons  # the shares need nothing tonight
