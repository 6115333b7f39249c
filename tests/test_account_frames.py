"""Account responses -> rows, on the recorded real responses: pure functions, no network."""

from __future__ import annotations

import json
from datetime import date, datetime, timezone

import pytest

from support import recorded_bytes
from variance_pipeline.schemas.account import ACCOUNTS, BALANCES, MARGIN_REQUIREMENTS, TRADING_STATUS
from variance_pipeline.schemas.book import OPTION_QUOTES
from variance_pipeline.schemas.validate import validate_frame
from variance_pipeline.sources.tastytrade_account import (
    account_rows,
    balance_rows,
    margin_requirement_rows,
    option_quote_rows,
    trading_status_rows,
)
from variance_pipeline.sources.tastytrade_frames import TastytradeDataError

STAMP = {"as_of_date": date(2023, 6, 8), "fetched_at": datetime(2023, 6, 8, 21, 5, tzinfo=timezone.utc)}


def recorded(name: str) -> dict:
    return json.loads(recorded_bytes(f"tastytrade/{name}"))


def test_recorded_balances() -> None:
    frame = BALANCES.frame(balance_rows("5YZ55555", recorded("balances.json")["data"], **STAMP))
    assert validate_frame(BALANCES, frame).ok
    row = frame.iloc[0]
    assert row["net_liquidating_value"] == 543557.677 and row["cash_balance"] == 51600.762
    assert row["maintenance_requirement"] == 432279.234 and row["derivative_buying_power"] == 20078.762
    assert row["short_derivative_value"] == 82680.5
    # The 2023 API did not send used-derivative-buying-power: unknown, never 0 %.
    assert row["used_derivative_buying_power"] != row["used_derivative_buying_power"]
    assert row["snapshot_date"] == date(2023, 6, 8)


def test_balances_in_items_shape_with_effects_and_unknown_fields() -> None:
    """The spec's ``data.items`` shape is unwrapped by the client; here: Debit effects negate,
    unknown fields are ignored, a thin item (only net liq) lands with NULLs."""
    data = {
        "net-liquidating-value": "1000.5", "pending-cash": "25.0", "pending-cash-effect": "Debit",
        "used-derivative-buying-power": "300.0", "brand-new-field": {"x": 1},
    }
    row = BALANCES.frame(balance_rows("5WT00001", data, **STAMP)).iloc[0]
    assert row["pending_cash"] == -25.0 and row["used_derivative_buying_power"] == 300.0
    assert row["cash_balance"] != row["cash_balance"]  # absent -> NULL
    with pytest.raises(TastytradeDataError, match="balances of account 5WT00001: missing required field 'net-liquidating-value'"):
        balance_rows("5WT00001", {"cash-balance": "1"}, **STAMP)


def test_recorded_margin_report_one_row_per_underlying() -> None:
    frame = MARGIN_REQUIREMENTS.frame(margin_requirement_rows("5YZ55555", recorded("margin_requirements.json")["data"], **STAMP))
    assert validate_frame(MARGIN_REQUIREMENTS, frame).ok
    rivn = frame.set_index("underlying_symbol").loc["RIVN"]
    assert (rivn["buying_power"], rivn["maintenance_requirement"]) == (54440.0, 56000.0)
    assert rivn["expected_price_range_down_percent"] == 0.5 and rivn["point_of_no_return_percent"] == 1.01
    assert set(frame["margin_calculation_type"]) == {"IRA Margin"}
    empty_group = margin_requirement_rows("5YZ55555", {"groups": [{}]}, **STAMP)
    assert empty_group == []  # the SDK documents {} groups


def test_recorded_trading_status_and_accounts() -> None:
    status = TRADING_STATUS.frame(trading_status_rows("5YZ55555", recorded("trading_status.json")["data"], **STAMP))
    assert validate_frame(TRADING_STATUS, status).ok
    row = status.iloc[0]
    assert row["options_level"] == "Defined Risk Spreads" and not row["is_in_margin_call"]
    assert not row["is_portfolio_margin_enabled"] and row["day_trade_count"] == 0
    accounts = ACCOUNTS.frame(account_rows(recorded("customer_accounts.json")["data"]["items"], **STAMP))
    assert validate_frame(ACCOUNTS, accounts).ok and len(accounts) == 3


def test_recorded_broker_quotes_keep_the_brokers_greeks() -> None:
    items = recorded("market_data_by_type_SPY_options.json")["items"]
    frame = OPTION_QUOTES.frame(option_quote_rows(items, **STAMP))
    assert validate_frame(OPTION_QUOTES, frame).ok
    first = frame.set_index("symbol").loc["SPY   250701C00605000"]
    assert first["open_interest"] == 927 and first["volatility"] == pytest.approx(float(items[0]["volatility"]))
    assert first["delta"] == pytest.approx(float(items[0]["delta"]))
