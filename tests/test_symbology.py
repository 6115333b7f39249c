"""Tastytrade symbology and watchlist sanitising: pure functions, checked on real symbol shapes."""

from __future__ import annotations

from pathlib import Path

import pytest

from variance_pipeline.instruments.symbology import clean_symbol, parse_watchlist, root_symbol


@pytest.mark.parametrize(
    ("symbol", "instrument_type", "underlying", "expected"),
    [
        ("/ZNH6", "Future", "/ZN", "/ZN"),
        ("/MESZ5", "Future", None, "/MES"),
        ("/6EH6", "Future", None, "/6E"),
        ("/ESZ25", "Future", None, "/ES"),
        ("/M2KZ5", "Future", None, "/M2K"),
        ("./ZNH6 OZNG6 260123P111", "Future Option", "/ZNH6", "/ZN"),
        ("./ESH6 E2CF6 260114P5990", "Future Option", None, "/ES"),
        ("./MESM6EX3H6 260320P6450", "Future Option", "/MESM6", "/MES"),
        ("./MCLJ6MCOJ6 260317C84", "Future Option", None, "/MCL"),
        # The recorded position, and a weekly SPX option whose OCC root (SPXW) is not the underlying.
        ("RIVN  230609P00014000", "Equity Option", "RIVN", "RIVN"),
        ("SPXW  240115C04500000", "Equity Option", "SPX", "SPX"),
        ("SPY   240115C00450000", "Equity Option", None, "SPY"),
        ("AAPL", "Equity", "AAPL", "AAPL"),
        ("BRK/B", "Equity", None, "BRK/B"),
        ("BTC/USD", "Cryptocurrency", None, "BTC/USD"),
    ],
)
def test_root_symbol(symbol: str, instrument_type: str, underlying: str | None, expected: str) -> None:
    assert root_symbol(symbol, instrument_type, underlying) == expected


def test_future_root_falls_back_to_the_underlying_symbol() -> None:
    assert root_symbol("weird", "Future Option", "/CLZ5") == "/CL"


def test_unparseable_future_and_option_symbols_raise() -> None:
    with pytest.raises(ValueError, match="futures root"):
        root_symbol("ZNH6", "Future", None)
    with pytest.raises(ValueError, match="OCC"):
        root_symbol("not an option", "Equity Option", None)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("SPY", "SPY"), (" spy ", "SPY"), ("brk/b", "BRK/B"), ("/es", "/ES"), ("/6E", "/6E"), ("VIX", "VIX")],
)
def test_clean_symbol_accepts_tickers(raw: str, expected: str) -> None:
    assert clean_symbol(raw) == expected


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("", "empty watchlist symbol ''"),
        ("   ", "empty watchlist symbol"),
        ("../x", "invalid watchlist symbol '../x'"),
        ('"; DROP', "invalid watchlist symbol '\"; DROP'"),
        ("SP Y", "invalid watchlist symbol 'SP Y'"),
        ("SPY'", "invalid watchlist symbol"),
        ("A" * 25, "longer than 24 characters"),
    ],
)
def test_clean_symbol_rejects_hostile_input(raw: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        clean_symbol(raw)
    assert message in str(info.value)


def test_ten_thousand_characters_are_rejected_with_a_short_message() -> None:
    with pytest.raises(ValueError) as info:
        clean_symbol("X" * 10_000)
    message = str(info.value)
    assert "10000 characters" in message
    assert len(message) < 150


@pytest.mark.parametrize(("yahoo", "tastytrade"), [("^VIX", "VIX"), ("ES=F", "/ES"), ("BRK-B", "BRK/B"), ("BRK.B", "BRK/B")])
def test_yahoo_spellings_are_rejected_with_the_tastytrade_symbol(yahoo: str, tastytrade: str) -> None:
    with pytest.raises(ValueError, match=f"use the Tastytrade symbol '{tastytrade}'"):
        clean_symbol(yahoo)


def test_watchlist_comma_list_is_cleaned_and_deduplicated_in_order(tmp_path: Path) -> None:
    assert parse_watchlist("spy, /es,QQQ,SPY,", tmp_path / "absent.txt") == ["SPY", "/ES", "QQQ"]


def test_watchlist_file_with_comments(tmp_path: Path) -> None:
    listing = tmp_path / "mine.txt"
    listing.write_text("# my underlyings\nSPY\n\n  /zn   # rates\nbrk/b\nSPY\n")
    assert parse_watchlist(str(listing), tmp_path / "absent.txt") == ["SPY", "/ZN", "BRK/B"]


def test_watchlist_defaults_to_the_default_file_or_nothing(tmp_path: Path) -> None:
    default = tmp_path / "watchlist.txt"
    assert parse_watchlist(None, default) == []
    assert parse_watchlist("  ", default) == []
    default.write_text("IWM\n")
    assert parse_watchlist(None, default) == ["IWM"]


def test_watchlist_errors_say_where(tmp_path: Path) -> None:
    listing = tmp_path / "mine.txt"
    listing.write_text("SPY\n../etc/passwd\n")
    with pytest.raises(ValueError, match=r"mine\.txt:2: invalid watchlist symbol '../etc/passwd'"):
        parse_watchlist(str(listing), tmp_path / "absent.txt")
    with pytest.raises(ValueError, match=r"VARIANCE_WATCHLIST \(no such file, read as a comma list\)"):
        parse_watchlist("SPY,data/mylist.txt", tmp_path / "absent.txt")


def test_watchlist_of_ten_thousand_characters_is_not_taken_for_a_path(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="10000 characters"):
        parse_watchlist("X" * 10_000, tmp_path / "absent.txt")
