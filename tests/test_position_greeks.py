"""position_greeks on a hand-built book and on the recorded RIVN position, checked against vollib."""

from __future__ import annotations

import json
from datetime import date, datetime, timezone

import numpy as np
import pandas as pd
import pytest
import vollib.black as vblack
import vollib.black.greeks.analytical as vblack_greeks
import vollib.black_scholes_merton as vbsm
import vollib.black_scholes_merton.greeks.analytical as vbsm_greeks

from support import RECORDED, positions_frame
from variance_pipeline.schemas.positions import POSITIONS

from variance_pipeline.transforms.position_greeks import (
    PRICED_COLUMNS,
    UNPRICED_COLUMNS,
    position_greeks,
    put_call_parity_gaps,
)

RECORDED_POSITIONS = RECORDED / "tastytrade" / "positions.json"
AS_OF = date(2025, 11, 25)
CLOSE = datetime(2025, 11, 25, 21, 0, tzinfo=timezone.utc)  # 16:00 New York
RATE = 0.0425
SPY_CLOSE = 670.0
YEAR = 365 * 86400
CONTRACT_COLUMNS = (
    "as_of_date account_number symbol underlying_symbol option_type strike expiration_date days_to_expiration "
    "years_to_expiration underlying_price implied_volatility iv_source risk_free_rate dividend_yield model price "
    "delta gamma theta vega position_delta position_gamma position_theta position_vega beta_weighted_delta "
    "instrument_type quantity multiplier root_symbol underlying_price_source"
).split()
GREEKS = ("price", "delta", "gamma", "theta", "vega")


def _positions(rows) -> pd.DataFrame:
    frame = pd.DataFrame(
        rows, columns=["account_number", "symbol", "instrument_type", "underlying_symbol", "root_symbol",
                       "quantity", "multiplier", "expires_at"]
    )
    frame["as_of_date"] = AS_OF
    frame["expires_at"] = pd.to_datetime(frame["expires_at"], utc=True)
    return frame


BOOK = [
    ("5WT1", "SPY   251219P00650000", "Equity Option", "SPY", "SPY", -2, 100, "2025-12-19T21:00:00Z"),  # short put
    ("5WT1", "AAPL  260116C00280000", "Equity Option", "AAPL", "AAPL", 3, 100, "2026-01-16T21:00:00Z"),  # long call
    ("5WT1", "./ZNH6 OZNG6 260123P111", "Future Option", "/ZNH6", "/ZN", -1, 1000, "2026-01-23T19:00:00Z"),
    ("5WT1", "AAPL", "Equity", "AAPL", "AAPL", 100, 1, None),
    ("5WT2", "/ESZ5", "Future", "/ESZ5", "/ES", 2, 50, "2025-12-19T14:30:00Z"),
    ("5WT2", "SPY   251125C00650000", "Equity Option", "SPY", "SPY", 1, 100, "2025-11-25T21:00:00Z"),  # expired today
    ("5WT2", "QQQ   251219C00600000", "Equity Option", "QQQ", "QQQ", 1, 100, "2025-12-19T21:00:00Z"),  # no IV
]
TERM = pd.DataFrame(
    {
        "as_of_date": [AS_OF] * 5 + [date(2025, 11, 24)],
        "symbol": ["SPY", "SPY", "AAPL", "/ZN", "/ES", "QQQ"],  # QQQ only in yesterday's snapshot
        "expiration_date": [date(2025, 12, 12), date(2026, 1, 16), date(2026, 1, 16), date(2026, 1, 23),
                            date(2025, 12, 19), date(2025, 12, 19)],
        "settlement_type": ["PM", "PM", "PM", "PM", "AM", "PM"],
        "implied_volatility": [0.14, 0.16, 0.25, 0.06, 0.15, 0.22],
    }
)
METRICS = pd.DataFrame(
    {
        "as_of_date": [AS_OF] * 4,
        "symbol": ["SPY", "AAPL", "/ZN", "/ES"],
        "beta": [1.0, 1.2, -0.1, 1.0],
        "dividend_yield": [0.012, 0.004, None, None],
    }
)
PRICES = {"SPY": SPY_CLOSE, "AAPL": 275.0, "QQQ": 600.0, "/ZN": 112.5, "/ZNH6": 112.25, "/ES": 6700.0}


def _vollib(row: pd.Series) -> dict[str, float]:
    flag = row["option_type"].lower()
    S, K, T, r, v = (row[c] for c in ("underlying_price", "strike", "years_to_expiration", "risk_free_rate", "implied_volatility"))
    if row["model"] == "black_76":
        return {
            "price": vblack.black(flag, S, K, T, r, v),
            **{g: getattr(vblack_greeks, g)(flag, S, K, T, r, v) for g in GREEKS[1:]},
        }
    q = row["dividend_yield"]
    return {
        "price": vbsm.black_scholes_merton(flag, S, K, T, r, v, q),
        **{g: getattr(vbsm_greeks, g)(flag, S, K, T, r, v, q) for g in GREEKS[1:]},
    }


def _assert_matches_vollib(priced: pd.DataFrame) -> None:
    for _, row in priced[priced["model"].notna()].iterrows():
        expected = _vollib(row)
        size = row["quantity"] * row["multiplier"]
        for greek in GREEKS:
            assert row[greek] == pytest.approx(expected[greek], rel=1e-8, abs=1e-10), (row["symbol"], greek)
        for greek in ("delta", "gamma", "theta", "vega"):
            assert row[f"position_{greek}"] == pytest.approx(expected[greek] * size, rel=1e-8, abs=1e-8)


def _price(**overrides):
    args = dict(
        positions=_positions(BOOK), underlying_prices=PRICES, term_structure=TERM, metrics=METRICS,
        risk_free_rate=RATE, spy_price=SPY_CLOSE, as_of_date=AS_OF, session_close_utc=CLOSE,
    )
    args.update(overrides)
    return position_greeks(**args)


def test_hand_built_book():
    priced, unpriced = _price()
    assert set(CONTRACT_COLUMNS) <= set(priced.columns)
    assert list(priced.columns) == list(PRICED_COLUMNS) and list(unpriced.columns) == list(UNPRICED_COLUMNS)
    assert len(priced) + len(unpriced) == len(BOOK)
    assert not priced[list(GREEKS) + [c for c in priced.columns if c.startswith("position_")]].isna().any().any()
    by_symbol = priced.set_index("symbol")

    _assert_matches_vollib(priced)

    spy = by_symbol.loc["SPY   251219P00650000"]
    assert spy["model"] == "black_scholes_merton" and spy["iv_source"] == "interpolated"
    assert spy["option_type"] == "P" and spy["strike"] == 650.0 and spy["expiration_date"] == date(2025, 12, 19)
    assert spy["days_to_expiration"] == 24
    assert spy["years_to_expiration"] == pytest.approx(24 * 86400 / YEAR, rel=1e-15)
    assert spy["dividend_yield"] == 0.012 and spy["risk_free_rate"] == RATE
    assert spy["underlying_price"] == SPY_CLOSE and spy["underlying_price_source"] == "close"
    assert spy["delta"] < 0 and spy["position_delta"] > 0 and spy["position_theta"] > 0  # short put
    assert spy["position_delta"] == pytest.approx(spy["delta"] * -200)
    assert spy["beta_weighted_delta"] == pytest.approx(spy["position_delta"])  # SPY: beta 1, same price
    # The interpolated IV from the SPY curve, in total variance, recomputed by hand.
    t1 = (datetime(2025, 12, 12, 21, tzinfo=timezone.utc) - CLOSE).total_seconds() / YEAR
    t2 = (datetime(2026, 1, 16, 21, tzinfo=timezone.utc) - CLOSE).total_seconds() / YEAR
    t = spy["years_to_expiration"]
    w = 0.14**2 * t1 + (0.16**2 * t2 - 0.14**2 * t1) * (t - t1) / (t2 - t1)
    assert spy["implied_volatility"] == pytest.approx(np.sqrt(w / t), rel=1e-13)

    aapl = by_symbol.loc["AAPL  260116C00280000"]
    assert aapl["iv_source"] == "exact" and aapl["implied_volatility"] == 0.25 and aapl["delta"] > 0
    assert aapl["beta_weighted_delta"] == pytest.approx(aapl["position_delta"] * 1.2 * 275.0 / SPY_CLOSE)

    zn = by_symbol.loc["./ZNH6 OZNG6 260123P111"]
    assert zn["model"] == "black_76" and zn["underlying_symbol"] == "/ZNH6" and zn["root_symbol"] == "/ZN"
    assert zn["underlying_price"] == 112.25 and zn["underlying_price_source"] == "close"  # its own future
    assert pd.isna(zn["dividend_yield"]) and zn["multiplier"] == 1000
    assert zn["years_to_expiration"] == pytest.approx(
        (datetime(2026, 1, 23, 19, tzinfo=timezone.utc) - CLOSE).total_seconds() / YEAR, rel=1e-15
    )

    stock = by_symbol.loc["AAPL"]
    assert (stock["price"], stock["delta"], stock["gamma"], stock["theta"], stock["vega"]) == (275.0, 1.0, 0.0, 0.0, 0.0)
    assert pd.isna(stock["model"]) and stock["position_delta"] == 100.0
    assert stock["beta_weighted_delta"] == pytest.approx(100 * 1.2 * 275.0 / SPY_CLOSE)

    future = by_symbol.loc["/ESZ5"]
    assert future["underlying_price_source"] == "root_continuous" and future["underlying_price"] == 6700.0
    assert future["delta"] == 1.0 and future["position_delta"] == 100.0  # 2 contracts x 50
    assert future["beta_weighted_delta"] == pytest.approx(100.0 * 6700.0 / SPY_CLOSE)
    assert future["expiration_date"] == date(2025, 12, 19) and pd.isna(future["model"])

    reasons = unpriced.set_index("symbol")["reason"]
    assert set(reasons.index) == {"SPY   251125C00650000", "QQQ   251219C00600000"}
    assert reasons["SPY   251125C00650000"].startswith("expired")
    assert "no positive implied volatility for QQQ" in reasons["QQQ   251219C00600000"]  # not yesterday's

    gaps = put_call_parity_gaps(priced)
    assert len(gaps) == 3
    assert np.abs(gaps["parity_gap"]).max() < 1e-9
    assert np.abs(gaps["price_gap"]).max() == 0.0


def test_future_option_falls_back_to_the_root_close_and_flags_it():
    prices = {k: v for k, v in PRICES.items() if k != "/ZNH6"}
    priced, _ = _price(underlying_prices=prices)
    zn = priced.set_index("symbol").loc["./ZNH6 OZNG6 260123P111"]
    assert zn["underlying_price"] == 112.5 and zn["underlying_price_source"] == "root_continuous"
    _assert_matches_vollib(priced)


def test_missing_underlying_prices_are_unpriced_with_a_reason():
    prices = {k: v for k, v in PRICES.items() if k not in ("/ZNH6", "/ZN", "AAPL")}
    prices["/ES"] = 0.0  # a zero close is no close
    priced, unpriced = _price(underlying_prices=prices)
    reasons = unpriced.set_index("symbol")["reason"]
    assert reasons["./ZNH6 OZNG6 260123P111"] == f"no close for /ZNH6 or its root /ZN on {AS_OF}"
    assert reasons["AAPL"] == f"no close for AAPL on {AS_OF}"
    assert "no close for AAPL" in reasons["AAPL  260116C00280000"]
    assert "no close for /ESZ5 or its root /ES" in reasons["/ESZ5"]
    assert list(priced["symbol"]) == ["SPY   251219P00650000"]


def test_bad_rows_never_reach_the_priced_frame():
    rows = BOOK[:1] + [
        ("5WT1", "SPY   25121XC00650000", "Equity Option", "SPY", "SPY", 1, 100, "2025-12-19T21:00:00Z"),
        ("5WT1", "SPY   251219C00650000", "Equity Option", "SPY", "SPY", 1, 100, None),
        ("5WT1", "XYZ", "Bond", "XYZ", "XYZ", 1, 1, None),
        ("5WT1", "AAPL  251120C00280000", "Equity Option", "AAPL", "AAPL", 1, 100, "2025-11-20T21:00:00Z"),
    ]
    term = TERM.copy()
    term.loc[term["symbol"] == "SPY", "implied_volatility"] = [0.0, np.nan]  # SPY: no usable IV at all
    priced, unpriced = _price(positions=_positions(rows), term_structure=term)
    assert priced.empty and list(priced.columns) == list(PRICED_COLUMNS)
    reasons = list(unpriced["reason"])
    assert reasons[0].startswith("no positive implied volatility for SPY")
    assert reasons[1].startswith("unparseable option symbol") and "'SPY   25121XC00650000'" in reasons[1]
    assert reasons[2].startswith("missing expires_at")
    assert reasons[3] == "unsupported instrument type 'Bond'"
    assert reasons[4].startswith("expired")


def test_another_days_positions_are_refused():
    positions = _positions(BOOK)
    positions.loc[0, "as_of_date"] = date(2025, 11, 24)
    with pytest.raises(ValueError, match="as_of_date"):
        _price(positions=positions)


def test_recorded_rivn_position_against_vollib():
    payload = json.loads(RECORDED_POSITIONS.read_text())
    as_of = date(2023, 5, 24)
    close = datetime(2023, 5, 24, 20, 0, tzinfo=timezone.utc)  # 16:00 EDT
    positions = positions_frame(payload["data"]["items"], as_of_date=as_of, fetched_at=datetime(2023, 5, 24, 21, 5, tzinfo=timezone.utc))
    assert list(positions.columns) == list(POSITIONS.names)
    term = pd.DataFrame(
        {
            "as_of_date": [as_of] * 3,
            "symbol": ["RIVN"] * 3,
            "expiration_date": [date(2023, 6, 2), date(2023, 6, 9), date(2023, 6, 16)],
            "settlement_type": ["PM"] * 3,
            "implied_volatility": [0.74, 0.71, 0.69],
        }
    )
    metrics = pd.DataFrame({"as_of_date": [as_of], "symbol": ["RIVN"], "beta": [1.9], "dividend_yield": [None]})
    priced, unpriced = position_greeks(positions, {"RIVN": 13.1, "SPY": 414.5}, term, metrics, 0.0515, 414.5, as_of, close)
    assert unpriced.empty and len(priced) == 1
    row = priced.iloc[0]
    assert (row["account_number"], row["symbol"], row["underlying_symbol"]) == ("5YZ55555", "RIVN  230609P00014000", "RIVN")
    assert (row["option_type"], row["strike"], row["expiration_date"]) == ("P", 14.0, date(2023, 6, 9))
    assert row["quantity"] == -40 and row["multiplier"] == 100
    assert row["days_to_expiration"] == 16
    assert row["years_to_expiration"] == pytest.approx(16 / 365, rel=1e-15)  # 20:00 UTC to 20:00 UTC
    assert row["iv_source"] == "exact" and row["implied_volatility"] == 0.71
    assert row["dividend_yield"] == 0.0 and row["model"] == "black_scholes_merton"

    expected = {
        "price": vbsm.black_scholes_merton("p", 13.1, 14.0, 16 / 365, 0.0515, 0.71, 0.0),
        **{g: getattr(vbsm_greeks, g)("p", 13.1, 14.0, 16 / 365, 0.0515, 0.71, 0.0) for g in GREEKS[1:]},
    }
    for greek in GREEKS:
        assert row[greek] == pytest.approx(expected[greek], rel=1e-8), greek
    for greek in GREEKS[1:]:
        assert row[f"position_{greek}"] == pytest.approx(expected[greek] * -4000, rel=1e-8), greek
    assert row["position_delta"] > 0  # short an in-the-money put: long the stock
    assert row["beta_weighted_delta"] == pytest.approx(row["position_delta"] * 1.9 * 13.1 / 414.5, rel=1e-12)
    gaps = put_call_parity_gaps(priced)
    assert abs(gaps["parity_gap"].iloc[0]) < 1e-12


def test_empty_book():
    empty = POSITIONS.empty()
    priced, unpriced = _price(positions=empty)
    assert priced.empty and unpriced.empty
    assert list(priced.columns) == list(PRICED_COLUMNS)
    assert put_call_parity_gaps(priced).empty


def test_am_settled_monthly_and_pm_series_each_take_their_own_iv() -> None:
    """Issue #19 (a): an SPX monthly (AM, expires-at 09:30 New York) priced with the mean of the
    date's AM and PM IVs. Each position takes its own settlement's IV; vollib re-prices both."""
    rows = [
        ("5WT1", "SPX   251219P06500000", "Equity Option", "SPX", "SPX", -1, 100, "2025-12-19T14:30:00Z"),  # AM
        ("5WT1", "SPXW  251219P06500000", "Equity Option", "SPX", "SPX", 1, 100, "2025-12-19T21:00:00Z"),  # PM
    ]
    term = pd.DataFrame(
        {
            "as_of_date": [AS_OF] * 3,
            "symbol": ["SPX"] * 3,
            "expiration_date": [date(2025, 12, 19), date(2025, 12, 19), date(2026, 1, 16)],
            "settlement_type": ["AM", "PM", "PM"],
            "option_chain_type": ["Standard"] * 3,
            "implied_volatility": [0.21, 0.17, 0.18],
        }
    )
    metrics = pd.DataFrame({"as_of_date": [AS_OF], "symbol": ["SPX"], "beta": [1.0], "dividend_yield": [0.013]})
    priced, unpriced = _price(positions=_positions(rows), term_structure=term, metrics=metrics,
                              underlying_prices={"SPX": 6700.0, "SPY": SPY_CLOSE})
    assert unpriced.empty
    by_symbol = priced.set_index("symbol")
    am, pm = by_symbol.loc["SPX   251219P06500000"], by_symbol.loc["SPXW  251219P06500000"]
    assert (am["implied_volatility"], am["iv_source"]) == (0.21, "exact")
    assert (pm["implied_volatility"], pm["iv_source"]) == (0.17, "exact")
    assert am["years_to_expiration"] == pytest.approx((24 * 86400 - 6.5 * 3600) / YEAR, rel=1e-15)
    assert pm["years_to_expiration"] == pytest.approx(24 * 86400 / YEAR, rel=1e-15)
    _assert_matches_vollib(priced)


def test_a_non_standard_chain_is_never_an_expirations_iv() -> None:
    """Issue #19 (b): the Non-standard chain's IV on the same date and settlement was averaged in."""
    term = pd.concat(
        [TERM, pd.DataFrame({"as_of_date": [AS_OF], "symbol": ["AAPL"], "expiration_date": [date(2026, 1, 16)],
                             "settlement_type": ["PM"], "implied_volatility": [0.90]})],
        ignore_index=True,
    ).assign(option_chain_type=["Standard"] * len(TERM) + ["Non-standard"])
    priced, _ = _price(term_structure=term)
    aapl = priced.set_index("symbol").loc["AAPL  260116C00280000"]
    assert (aapl["implied_volatility"], aapl["iv_source"]) == (0.25, "exact")
    _assert_matches_vollib(priced)
