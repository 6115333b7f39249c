"""The Tastytrade normalisers and schemas, on the recorded responses: pure functions, no network."""

from __future__ import annotations

from datetime import date, datetime, timezone
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from support import market_metrics_frames, positions_frame, recorded_items as _recorded_items
from variance_pipeline.sources.tastytrade_frames import (
    TastytradeDataError,
    held_underlyings,
)
from variance_pipeline.schemas.market_metrics import MARKET_METRICS, IV_TERM_STRUCTURE
from variance_pipeline.schemas.positions import POSITIONS
from variance_pipeline.schemas.validate import validate_frame

AS_OF = date(2023, 6, 8)
FETCHED_AT = datetime(2023, 6, 8, 21, 5, tzinfo=timezone.utc)


def recorded_items(name: str) -> list[dict[str, Any]]:
    return _recorded_items(f"tastytrade/{name}")


# --------------------------------------------------------------------------------------------
# Normalisation: positions
# --------------------------------------------------------------------------------------------


def test_recorded_short_put_is_normalised() -> None:
    frame = positions_frame(recorded_items("positions.json"), as_of_date=AS_OF, fetched_at=FETCHED_AT)
    row = frame.iloc[0]
    assert row["quantity"] == -40.0
    assert row["multiplier"] == 100
    assert row["root_symbol"] == "RIVN"
    assert row["underlying_symbol"] == "RIVN"
    assert row["expires_at"] == pd.Timestamp("2023-06-09 20:00", tz="UTC")
    assert (row["average_open_price"], row["close_price"]) == (0.79, 0.41)
    assert row["as_of_date"] == AS_OF and row["fetched_at"] == pd.Timestamp(FETCHED_AT)
    assert pd.isna(row["mark"]) and pd.isna(row["streamer_symbol"])
    assert validate_frame(POSITIONS, frame).ok
    schema = pa.Table.from_pandas(frame, preserve_index=False).schema
    assert schema.field("as_of_date").type == pa.date32()
    assert schema.field("expires_at").type == pa.timestamp("us", tz="UTC")
    assert schema.field("multiplier").type == pa.float64()  # /MBT options: 0.1


def future_option(**overrides: Any) -> dict[str, Any]:
    """The shape of a live future-option position (docs/reference/tastytrade-api-research.md), strings and all."""
    item = {
        "account-number": "5WZ12558",
        "instrument-type": "Future Option",
        "symbol": "./ZNH6 OZNG6 260123P111",
        "underlying-symbol": "/ZNH6",
        "quantity": "1",
        "quantity-direction": "Short",
        "average-open-price": 0.125,
        "close-price": "0.046875",
        "cost-effect": "Debit",
        "multiplier": "1000",
        "streamer-symbol": "./OZNG26P111:XCBT",
        "expires-at": "2026-01-23T19:00:00Z",
        "brand-new-field": {"ignored": True},
    }
    return {**item, **overrides}


def test_strings_ints_and_floats_are_parsed_exactly() -> None:
    items = [
        future_option(),
        future_option(**{"symbol": "/MESZ5", "instrument-type": "Future", "quantity": 2, "quantity-direction": "Long", "multiplier": 5}),
        future_option(**{"symbol": "AAPL", "instrument-type": "Equity", "quantity": "0", "quantity-direction": "Zero", "multiplier": 1}),
    ]
    frame = positions_frame(items, as_of_date=AS_OF, fetched_at=FETCHED_AT)
    assert frame["quantity"].tolist() == [-1.0, 2.0, 0.0]
    assert frame["multiplier"].tolist() == [1000, 5, 1]
    assert frame["root_symbol"].tolist() == ["/ZN", "/MES", "AAPL"]
    assert frame["average_open_price"].iloc[0] == 0.125 and frame["close_price"].iloc[0] == 0.046875
    assert frame["expires_at"].iloc[0] == pd.Timestamp("2026-01-23 19:00", tz="UTC")
    assert "brand-new-field" not in frame.columns
    assert validate_frame(POSITIONS, frame).ok
    assert held_underlyings(frame) == ["/MES", "/ZN", "AAPL"]


@pytest.mark.parametrize("missing", ["symbol", "quantity", "quantity-direction", "instrument-type", "account-number", "multiplier"])
def test_missing_required_position_field_is_named(missing: str) -> None:
    item = future_option()
    del item[missing]
    with pytest.raises(TastytradeDataError, match=f"missing required field '{missing}'") as info:
        positions_frame([future_option(), item], as_of_date=AS_OF, fetched_at=FETCHED_AT)
    assert "positions item 1" in str(info.value)
    if missing != "symbol":
        assert "./ZNH6 OZNG6 260123P111" in str(info.value)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"quantity-direction": "Sideways"}, "quantity-direction 'Sideways'"),
        ({"quantity": "lots"}, "'quantity' = 'lots' is not a number"),
        ({"multiplier": "ten"}, "'multiplier' = 'ten' is not a number"),
        ({"expires-at": "tomorrow"}, "'expires-at' = 'tomorrow' is not an ISO-8601 time"),
        ({"symbol": "ZN", "underlying-symbol": None}, "cannot find the futures root"),
    ],
)
def test_unreadable_position_values_are_named(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(TastytradeDataError, match=message):
        positions_frame([future_option(**overrides)], as_of_date=AS_OF, fetched_at=FETCHED_AT)


def test_snapshot_stamp_must_be_unambiguous() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        positions_frame([], as_of_date=AS_OF, fetched_at=datetime(2023, 6, 8, 21))
    with pytest.raises(TypeError, match="datetime.date"):
        positions_frame([], as_of_date=FETCHED_AT, fetched_at=FETCHED_AT)


def test_no_positions_is_an_empty_valid_frame() -> None:
    frame = positions_frame([], as_of_date=AS_OF, fetched_at=FETCHED_AT)
    assert frame.empty and "quantity" in frame.columns
    assert validate_frame(POSITIONS, frame).ok
    assert held_underlyings(frame) == []


# --------------------------------------------------------------------------------------------
# Normalisation: market metrics
# --------------------------------------------------------------------------------------------


def test_recorded_metrics_units_by_field() -> None:
    metrics, term = market_metrics_frames(recorded_items("market_metrics.json"), as_of_date=AS_OF, fetched_at=FETCHED_AT)
    aapl = metrics.set_index("symbol").loc["AAPL"]
    assert aapl["implied_volatility"] == 0.224186663
    assert aapl["hv_30_day"] == 0.2002
    assert aapl["iv_30_day"] == 0.2187
    assert aapl["iv_rank"] == 0.02231313
    assert aapl["tw_iv_rank"] == 0.037374278
    assert aapl["iv_percentile"] == 0.031249801
    assert (aapl["hv_60_day"], aapl["hv_90_day"], aapl["iv_hv_30_day_difference"]) == (0.1955, 0.2024, 0.0185)
    assert aapl["liquidity_rating"] == 4
    assert aapl["earnings_date"] == date(2023, 7, 27)
    assert not aapl["earnings_estimated"]
    assert aapl["market_cap"] == 2846108626900
    assert aapl["implied_volatility_updated_at"] == pd.Timestamp("2023-06-07 19:55:22.110", tz="UTC")
    assert str(metrics["liquidity_rating"].dtype) == "Int64"
    assert len(term) == 6
    first = term.iloc[0]
    assert (first["symbol"], first["expiration_date"], first["settlement_type"], first["option_chain_type"]) == (
        "AAPL",
        date(2023, 6, 9),
        "PM",
        "Standard",
    )
    assert first["implied_volatility"] == 0.288187496
    assert validate_frame(MARKET_METRICS, metrics).ok
    assert validate_frame(IV_TERM_STRUCTURE, term).ok


def test_missing_optional_metrics_are_null_and_missing_symbol_is_named() -> None:
    metrics, term = market_metrics_frames(
        [{"symbol": "/ES", "implied-volatility-index": "0.15", "unknown-field": 1}], as_of_date=AS_OF, fetched_at=FETCHED_AT
    )
    row = metrics.iloc[0]
    assert row["implied_volatility"] == 0.15
    assert pd.isna(row["hv_30_day"]) and pd.isna(row["earnings_date"]) and pd.isna(row["liquidity_rating"])
    assert term.empty and list(term.columns)[:3] == ["as_of_date", "symbol", "expiration_date"]
    assert validate_frame(MARKET_METRICS, metrics).ok
    with pytest.raises(TastytradeDataError, match=r"market-metrics item 1: missing required field 'symbol'"):
        market_metrics_frames([{"symbol": "SPY"}, {"implied-volatility-index": "0.2"}], as_of_date=AS_OF, fetched_at=FETCHED_AT)
    with pytest.raises(TastytradeDataError, match=r"'SPY'\) expiration 0: missing required field 'expiration-date'"):
        market_metrics_frames(
            [{"symbol": "SPY", "option-expiration-implied-volatilities": [{"implied-volatility": "0.2"}]}],
            as_of_date=AS_OF,
            fetched_at=FETCHED_AT,
        )


# --------------------------------------------------------------------------------------------
# Schemas
# --------------------------------------------------------------------------------------------


def failed_checks(outcome: Any) -> set[str]:
    return set(outcome.failure_cases["check"].astype(str))


def test_positions_schema_rejects_bad_rows() -> None:
    items = [future_option(**{"symbol": f"./ZNH6 OZNG6 260123P11{i}"}) for i in range(5)]
    frame = positions_frame(items, as_of_date=AS_OF, fetched_at=FETCHED_AT)
    frame.loc[0, "quantity"] = np.nan
    frame.loc[1, "quantity"] = 1.0  # a Short with a positive quantity
    frame.loc[2, "multiplier"] = 0
    frame.loc[3, "instrument_type"] = "Unknown"
    outcome = validate_frame(POSITIONS, frame)
    assert not outcome.ok
    assert {"not_nullable", "quantity_sign_matches_direction", "greater_than(0)"} <= failed_checks(outcome)
    assert any(check.startswith("isin") for check in failed_checks(outcome))
    assert len(outcome.quarantined) == 4 and len(outcome.valid) == 1
    assert "quantity_sign_matches_direction" in outcome.summary(limit=50)


def test_positions_schema_rejects_duplicates_and_missing_columns() -> None:
    frame = positions_frame([future_option(), future_option()], as_of_date=AS_OF, fetched_at=FETCHED_AT)
    outcome = validate_frame(POSITIONS, frame)
    assert "multiple_fields_uniqueness" in failed_checks(outcome) and outcome.valid.empty
    outcome = validate_frame(POSITIONS, frame.iloc[:1].drop(columns=["multiplier"]))
    assert "column_in_dataframe" in failed_checks(outcome) and outcome.valid.empty


def test_metrics_schema_rejects_percent_leaks_nan_rank_and_duplicates() -> None:
    items = recorded_items("market_metrics.json")
    metrics, term = market_metrics_frames(items, as_of_date=AS_OF, fetched_at=FETCHED_AT)
    metrics.loc[0, "hv_30_day"] = 20.02  # a percent where a fraction belongs
    metrics.loc[1, "liquidity_rating"] = 7
    outcome = validate_frame(MARKET_METRICS, metrics)
    assert {"in_range(0.0, 5.0)", "in_range(0, 5)"} <= failed_checks(outcome)
    assert set(outcome.failure_cases["column"]) == {"hv_30_day", "liquidity_rating"}

    doubled, _ = market_metrics_frames(items + items[:1], as_of_date=AS_OF, fetched_at=FETCHED_AT)
    assert "multiple_fields_uniqueness" in failed_checks(validate_frame(MARKET_METRICS, doubled))

    metrics, _ = market_metrics_frames(items, as_of_date=AS_OF, fetched_at=FETCHED_AT)
    metrics.loc[0, "beta"] = np.inf
    assert "finite" in failed_checks(validate_frame(MARKET_METRICS, metrics))


def test_term_structure_schema_rejects_out_of_range_and_duplicates() -> None:
    _, term = market_metrics_frames(recorded_items("market_metrics.json"), as_of_date=AS_OF, fetched_at=FETCHED_AT)
    bad = term.copy()
    bad.loc[0, "implied_volatility"] = 28.8
    bad.loc[1, "settlement_type"] = np.nan
    outcome = validate_frame(IV_TERM_STRUCTURE, bad)
    assert {"in_range(0.0, 5.0)", "not_nullable"} <= failed_checks(outcome)
    assert len(outcome.quarantined) == 2
    doubled = pd.concat([term, term.iloc[:1]], ignore_index=True)
    assert "multiple_fields_uniqueness" in failed_checks(validate_frame(IV_TERM_STRUCTURE, doubled))


def test_a_micro_future_option_position_is_held_under_its_root() -> None:
    """Fixed-width symbology (issue #19): the root comes from underlying-symbol (/MESM6 -> /MES),
    never from the symbol up to its first space (which gave /MESM6EX3 and a Yahoo 404)."""
    micro = future_option(**{
        "symbol": "./MESM6EX3H6 260320P6450", "underlying-symbol": "/MESM6", "multiplier": "5",
        "streamer-symbol": "./EX3H26P6450:XCME", "expires-at": "2026-03-20T20:00:00Z",
    })
    frame = positions_frame([micro], as_of_date=AS_OF, fetched_at=FETCHED_AT)
    assert frame.loc[0, "root_symbol"] == "/MES" and frame.loc[0, "underlying_symbol"] == "/MESM6"
    assert held_underlyings(frame) == ["/MES"]
    assert validate_frame(POSITIONS, frame).ok
