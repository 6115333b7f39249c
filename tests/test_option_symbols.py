"""Option symbol parsing: OCC equity options and Tastytrade future options, scalar and vectorised."""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest

from variance_pipeline.instruments.option_symbols import OptionSymbol, parse_option_symbol, parse_option_symbols

GOOD = [
    ("SPY   240115C00450000", "Equity Option", OptionSymbol("SPY", "SPY", "C", 450.0, date(2024, 1, 15), "occ")),
    # The recorded positions fixture.
    ("RIVN  230609P00014000", "Equity Option", OptionSymbol("RIVN", "RIVN", "P", 14.0, date(2023, 6, 9), "occ")),
    ("AAPL  260116C00282500", "Equity Option", OptionSymbol("AAPL", "AAPL", "C", 282.5, date(2026, 1, 16), "occ")),
    ("SPXW  251219P06500000", "Equity Option", OptionSymbol("SPXW", "SPXW", "P", 6500.0, date(2025, 12, 19), "occ")),
    ("F     251219C00012500", "Equity Option", OptionSymbol("F", "F", "C", 12.5, date(2025, 12, 19), "occ")),
    ("BRKB  251219C00000500", "Equity Option", OptionSymbol("BRKB", "BRKB", "C", 0.5, date(2025, 12, 19), "occ")),
    # The research note's and api-facts' future options.
    ("./ZNH6 OZNG6 260123P111", "Future Option",
     OptionSymbol("/ZNH6", "/ZN", "P", 111.0, date(2026, 1, 23), "future_option")),
    ("./ESH6 E2CF6 260114P5990", "Future Option",
     OptionSymbol("/ESH6", "/ES", "P", 5990.0, date(2026, 1, 14), "future_option")),
    ("./ZNH6 OZNG6 260123C111.5", "Future Option",
     OptionSymbol("/ZNH6", "/ZN", "C", 111.5, date(2026, 1, 23), "future_option")),
    ("./6EH6 EUUG6 260206C1.185", "Future Option",
     OptionSymbol("/6EH6", "/6E", "C", 1.185, date(2026, 2, 6), "future_option")),
    ("./CLG26 LOG26 260115C70", "Future Option",
     OptionSymbol("/CLG26", "/CL", "C", 70.0, date(2026, 1, 15), "future_option")),
    # Fixed width: a 5-character future code runs into its option product.
    ("./MESM6EX3H6 260320P6450", "Future Option",
     OptionSymbol("/MESM6", "/MES", "P", 6450.0, date(2026, 3, 20), "future_option")),
    ("./MCLJ6MCOJ6 260317C84", "Future Option",
     OptionSymbol("/MCLJ6", "/MCL", "C", 84.0, date(2026, 3, 17), "future_option")),
    ("./GCJ6 OGJ6  260326C5740", "Future Option",
     OptionSymbol("/GCJ6", "/GC", "C", 5740.0, date(2026, 3, 26), "future_option")),
]

NOT_OPTIONS = [("AAPL", "Equity"), ("BRK/B", "Equity"), ("/ESZ5", "Future"), ("/ZNH6", "Future"), ("BTC/USD", "Cryptocurrency")]

MALFORMED = [
    "SPY   241315C00450000",  # month 13
    "SPY   240230C00450000",  # 30 February
    "SPY   240115X00450000",  # neither call nor put
    "SPY   240115C0045000",  # 7 strike digits
    "TOOLONGX240115C00450000",  # root longer than 6
    "./ZNH6 260123P111",  # no option product code
    "./ZNH6 OZNG6 260123P",  # no strike
    "./ZNH6 OZNG6 26012P111",  # 5-digit date
    "./ZN OZNG6 260123P111",  # the underlying is a root, not a contract
    "./ZNH6 OZNG6 260123P111.",  # dangling decimal point
]


@pytest.mark.parametrize(("symbol", "instrument_type", "expected"), GOOD)
def test_parses_known_symbols(symbol, instrument_type, expected):
    assert parse_option_symbol(symbol, instrument_type) == expected
    assert parse_option_symbol(symbol) == expected  # the shape alone is enough


@pytest.mark.parametrize(("symbol", "instrument_type"), NOT_OPTIONS)
def test_non_options_are_none(symbol, instrument_type):
    assert parse_option_symbol(symbol, instrument_type) is None
    assert parse_option_symbol(symbol) is None


@pytest.mark.parametrize("symbol", MALFORMED)
def test_malformed_option_symbols_raise_naming_the_symbol(symbol):
    with pytest.raises(ValueError) as excinfo:
        parse_option_symbol(symbol, "Future Option" if symbol.startswith("./") else "Equity Option")
    assert repr(symbol) in str(excinfo.value)
    with pytest.raises(ValueError, match="symbol"):
        parse_option_symbol(symbol)


def test_instrument_type_decides_the_grammar():
    # An OCC symbol reported as a future option is malformed, not silently parsed as equity.
    with pytest.raises(ValueError, match="Future Option"):
        parse_option_symbol("SPY   240115C00450000", "Future Option")
    with pytest.raises(ValueError, match="Equity Option"):
        parse_option_symbol("./ZNH6 OZNG6 260123P111", "Equity Option")
    with pytest.raises(ValueError, match="Equity Option"):
        parse_option_symbol("AAPL", "Equity Option")


def test_vectorised_parse_matches_the_scalar_parser():
    symbols = [s for s, _, _ in GOOD] + [s for s, _ in NOT_OPTIONS]
    kinds = [k for _, k, _ in GOOD] + [k for _, k in NOT_OPTIONS]
    index = pd.Index(range(100, 100 + len(symbols)))
    for types in (pd.Series(kinds, index=index), None):
        out = parse_option_symbols(pd.Series(symbols, index=index), types)
        assert list(out.index) == list(index)
        for (i, row), symbol, kind in zip(out.iterrows(), symbols, kinds):
            expected = parse_option_symbol(symbol, kind)
            if expected is None:
                assert not row["is_option"]
                assert pd.isna(row["strike"]) and pd.isna(row["underlying_symbol"]) and row["expiration_date"] is None
            else:
                assert row["is_option"]
                got = OptionSymbol(*(row[c] for c in OptionSymbol._fields))
                assert got == expected
            assert pd.isna(row["error"])


def test_vectorised_parse_raises_or_coerces_malformed_rows():
    symbols = pd.Series(["SPY   240115C00450000", MALFORMED[0], "AAPL", MALFORMED[5]])
    with pytest.raises(ValueError, match="241315"):
        parse_option_symbols(symbols)
    out = parse_option_symbols(symbols, errors="coerce")
    assert list(out["is_option"]) == [True, False, False, False]
    assert pd.isna(out.loc[0, "error"]) and pd.isna(out.loc[2, "error"])
    assert repr(MALFORMED[0]) in out.loc[1, "error"] and repr(MALFORMED[5]) in out.loc[3, "error"]
    assert pd.isna(out.loc[1, "strike"]) and out.loc[1, "expiration_date"] is None
    with pytest.raises(ValueError, match="errors must be"):
        parse_option_symbols(symbols, errors="ignore")
