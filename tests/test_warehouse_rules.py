"""The warehouse's rules written once: "an expiration straddles an earnings report" (the
``straddles_earnings`` macro of migration 007, with the report's time of day since 010) and the schema-version-7 migration of a warehouse
that predates it (the chain type in the term structure's key, the IV tables derived again by the
one IV rule). Real DuckDB files, real lake Parquet, expectations written out by hand.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from support import declared_frame
from variance_pipeline.lake.layout import Lake
from variance_pipeline.schemas.market_metrics import IV_TERM_STRUCTURE
from variance_pipeline.warehouse import load
from variance_pipeline.warehouse.connection import open_warehouse, warehouse_connection
from variance_pipeline.warehouse.load import load_sessions, migrate
from variance_pipeline.warehouse.vol_history import refresh_vol_history

WAREHOUSE = Path(load.__file__).parent
NEW_YORK = ZoneInfo("America/New_York")
SNAPSHOT = date(2025, 11, 24)  # a Monday; 16:00 EST close
FETCHED = datetime(2025, 11, 24, 22, tzinfo=timezone.utc)
FRIDAYS = [date(2025, 11, 28), date(2025, 12, 5), date(2025, 12, 12)]
# symbol -> the next earnings date the snapshot lists, and its time of day (earnings_calendar)
EARNINGS = {
    "AAA": date(2025, 12, 5),   # on an expiration day: before the open, it moves that expiration
    "BBB": SNAPSHOT,            # on the snapshot's own day: after the close, it is still ahead
    "CCC": date(2025, 11, 21),  # before the snapshot: straddles nothing
    "DDD": date(2025, 12, 5),   # on an expiration day after the close: that expiration settled first
    "FFF": SNAPSHOT,            # on the snapshot's own day before the open: already in its prices
    "GGG": date(2025, 12, 5),   # time not sent: counted in at both ends (the rule of version 7)
}
TIME_OF_DAY = {"AAA": "BMO", "BBB": "AMC", "CCC": "AMC", "DDD": "AMC", "FFF": "BMO", "GGG": None}


def _insert(con: duckdb.DuckDBPyConnection, table: str, frame: pd.DataFrame) -> None:
    con.register("_frame", frame)
    con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM _frame")
    con.unregister("_frame")


def _straddles(snapshot: date, report: date | None, expiration: date, when: str | None = None) -> bool:
    """The rule by hand: the report after the snapshot's evening (on its day unless before the
    open) and before the expiration's settlement (on its day unless after the close)."""
    if report is None:
        return False
    after_snapshot = snapshot < report if when == "BMO" else snapshot <= report
    before_settlement = report < expiration if when == "AMC" else report <= expiration
    return after_snapshot and before_settlement


@pytest.fixture(scope="module")
def earnings_warehouse(tmp_path_factory: pytest.TempPathFactory) -> duckdb.DuckDBPyConnection:
    """One snapshot (2025-11-24) for AAA, BBB, CCC with three Friday expirations, positions on each
    Friday, and EEE whose report on Friday 2025-12-05 (an expiration day) has a snapshot the evening
    before and closes on both sides."""
    con = open_warehouse(tmp_path_factory.mktemp("straddle") / "warehouse.duckdb")
    migrate(con)
    metrics, term, positions, calendar = [], [], [], []
    for symbol, earnings in EARNINGS.items():
        metrics.append({"as_of_date": SNAPSHOT, "symbol": symbol, "implied_volatility": 0.3, "earnings_date": earnings,
                        "fetched_at": FETCHED})
        calendar.append({"as_of_date": SNAPSHOT, "symbol": symbol, "expected_report_date": earnings, "estimated": False,
                         "time_of_day": TIME_OF_DAY[symbol], "fetched_at": FETCHED})
        for i, friday in enumerate(FRIDAYS):
            term.append({"as_of_date": SNAPSHOT, "symbol": symbol, "expiration_date": friday, "settlement_type": "PM",
                         "option_chain_type": "Standard", "implied_volatility": 0.3 + 0.01 * i, "fetched_at": FETCHED})
            expires = datetime.combine(friday, time(16), NEW_YORK).astimezone(timezone.utc)
            positions.append({"as_of_date": SNAPSHOT, "account_number": "5WT1", "symbol": f"{symbol}{friday:%y%m%d}",
                              "instrument_type": "Equity Option", "underlying_symbol": symbol, "root_symbol": symbol,
                              "quantity": -1.0, "quantity_direction": "Short", "multiplier": 100.0,
                              "expires_at": expires, "fetched_at": FETCHED})
    eve = date(2025, 12, 4)
    metrics.append({"as_of_date": eve, "symbol": "EEE", "implied_volatility": 0.4, "iv_30_day": 0.4,
                    "earnings_date": date(2025, 12, 5), "fetched_at": FETCHED})
    # EEE announces Friday's report before the open; the history lists it under its quarter's end.
    calendar.append({"as_of_date": eve, "symbol": "EEE", "expected_report_date": date(2025, 12, 5), "estimated": False,
                     "time_of_day": "BMO", "quarter_end_date": date(2025, 10, 1), "fetched_at": FETCHED})
    for friday, iv in ((date(2025, 12, 5), 0.9), (date(2025, 12, 12), 0.6)):
        term.append({"as_of_date": eve, "symbol": "EEE", "expiration_date": friday, "settlement_type": "PM",
                     "option_chain_type": "Standard", "implied_volatility": iv, "fetched_at": FETCHED})
    candles = [{"symbol": "EEE", "session_date": d, "yahoo_ticker": "EEE", "open": c, "high": c, "low": c, "close": c,
                "adj_close": c, "volume": 1} for d, c in ((eve, 100.0), (date(2025, 12, 5), 108.0), (date(2025, 12, 8), 99.0))]
    _insert(con, "market_metrics", pd.DataFrame(metrics))
    _insert(con, "iv_term_structure", pd.DataFrame(term))
    _insert(con, "positions", pd.DataFrame(positions))
    _insert(con, "candles", pd.DataFrame(candles))
    _insert(con, "earnings_calendar", pd.DataFrame(calendar))
    _insert(con, "earnings_reports", pd.DataFrame([{"symbol": "EEE", "occurred_date": date(2025, 10, 31), "eps": 1.0,
                                                    "fetched_at": FETCHED}]))
    refresh_vol_history(con, [SNAPSHOT, eve])
    yield con
    con.close()


@pytest.mark.parametrize(
    "query",
    [
        "SELECT symbol, expiration_date, earnings_before_expiration FROM expected_move WHERE symbol <> 'EEE'",
        "SELECT root_symbol, expires_at, earnings_before_expiration FROM portfolio",
    ],
    ids=["expected_move", "portfolio"],
)
def test_views_flag_the_expirations_that_straddle_the_report(earnings_warehouse, query: str) -> None:
    rows = earnings_warehouse.execute(query).fetchall()
    assert len(rows) == 3 * len(EARNINGS)
    flagged = set()
    for symbol, expires, flag in rows:
        # A position's expiration date is its expires_at's date in New York.
        expiration = expires.astimezone(NEW_YORK).date() if isinstance(expires, datetime) else expires
        assert flag == _straddles(SNAPSHOT, EARNINGS[symbol], expiration, TIME_OF_DAY[symbol]), (symbol, expiration)
        if flag:
            flagged.add((symbol, expiration))
    assert ("AAA", date(2025, 12, 5)) in flagged and ("AAA", date(2025, 11, 28)) not in flagged
    assert ("BBB", date(2025, 11, 28)) in flagged and not any(s == "CCC" for s, _ in flagged)
    # After the close on the expiration day: that expiration is not exposed, the next one is.
    assert ("DDD", date(2025, 12, 5)) not in flagged and ("DDD", date(2025, 12, 12)) in flagged
    assert not any(s == "FFF" for s, _ in flagged)  # before the open on the snapshot's day: already priced
    assert ("GGG", date(2025, 12, 5)) in flagged


def test_next_earnings_straddles_with_the_first_such_expiration(earnings_warehouse) -> None:
    got = {r[0]: r[1:] for r in earnings_warehouse.execute(
        "SELECT symbol, straddle_expiration, straddle_iv, straddle_years, expected_move_fraction FROM next_earnings "
        "WHERE symbol <> 'EEE'").fetchall()}
    close = datetime(2025, 11, 24, 21, tzinfo=timezone.utc)
    for symbol, (expiration, iv, years, fraction) in got.items():
        want = next((f for f in FRIDAYS if _straddles(SNAPSHOT, EARNINGS[symbol], f, TIME_OF_DAY[symbol])), None)
        assert expiration == want, symbol
        if want is None:
            assert iv is None and fraction is None
            continue
        t = (datetime.combine(want, time(16), NEW_YORK) - close).total_seconds() / (365 * 86400)
        assert years == pytest.approx(t, rel=1e-12)
        assert fraction == pytest.approx(iv * np.sqrt(t), rel=1e-12)
    assert got["AAA"][0] == date(2025, 12, 5) and got["BBB"][0] == date(2025, 11, 28) and got["CCC"][0] is None
    assert got["DDD"][0] == date(2025, 12, 12) and got["FFF"][0] is None


def test_earnings_moves_price_the_expiration_on_the_report_day(earnings_warehouse) -> None:
    row = earnings_warehouse.execute(
        "SELECT snapshot_date, implied_expiration, implied_iv, implied_move, move, implied_source, occurred_date, "
        "report_date, report_time_of_day, session_before, session_after FROM earnings_moves WHERE symbol = 'EEE'").fetchone()
    snapshot, expiration, iv, implied, move, source = row[:6]
    # Listed under its quarter's end, dated by the announcement; before the open: Thursday to Friday.
    assert row[6:] == (date(2025, 10, 31), date(2025, 12, 5), "BMO", date(2025, 12, 4), date(2025, 12, 5))
    assert (snapshot, expiration, iv, source) == (date(2025, 12, 4), date(2025, 12, 5), 0.9, "term_structure")
    close = datetime(2025, 12, 4, 21, tzinfo=timezone.utc)
    t = (datetime.combine(date(2025, 12, 5), time(16), NEW_YORK) - close).total_seconds() / (365 * 86400)
    assert implied == pytest.approx(0.9 * np.sqrt(t), rel=1e-12)
    assert move == pytest.approx(np.log(108.0 / 100.0), rel=1e-12)  # not Monday's close


def test_the_rule_is_written_once() -> None:
    """Every question "does this expiration straddle that report" goes through the macro: no SQL of
    the warehouse compares an earnings or report date with an expiration date by itself."""
    sources = {path.name: re.sub(r"--[^\n]*", "", path.read_text())  # code, not the comments
               for path in [*WAREHOUSE.glob("*.sql"), *WAREHOUSE.glob("*.py")]}
    direct = re.compile(
        r"(earnings_date|occurred_date)\s*(<=|>=|<|>)[^\n,]*expir|expir[\w.]*\s*(<=|>=|<|>)[^\n,]*(earnings_date|occurred_date)",
        re.IGNORECASE,
    )
    for name, text in sources.items():
        assert not direct.search(text), (name, direct.search(text))
    # The predicate in the views that flag; its first expiration where a report's straddle is priced.
    assert {name for name, text in sources.items() if "straddles_earnings(" in text} == {
        "views.sql", "account_views.sql", "journal.sql"}
    assert {name for name, text in sources.items() if "straddling_expiration(" in text} == {
        "vol_history.sql", "earnings_moves.py"}
    # Defined by 007 and redefined (with the time of day) by 010, the last word; used by the other.
    defining = {path.name for path in (WAREHOUSE / "migrations").glob("*.sql")
                if "CREATE OR REPLACE MACRO straddles_earnings(" in path.read_text()}
    assert defining == {"007_one_iv_rule.sql", "010_earnings_dates.sql"}
    latest = (WAREHOUSE / "migrations" / "010_earnings_dates.sql").read_text()
    assert "CREATE OR REPLACE MACRO straddling_expiration(" in latest
    assert re.sub(r"--[^\n]*", "", latest).count("straddles_earnings(") == 2


# --- migration 007 (one IV rule) on a warehouse that predates it ----------------------------------------------


def _warehouse_at_version_5(path: Path) -> duckdb.DuckDBPyConnection:
    """A warehouse as version 5 left it: migrations 001-005, the old term-structure key, and the old
    view named iv_term_structure_by_expiration (PM, else the mean of the settlements)."""
    con = open_warehouse(path)
    con.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, name VARCHAR NOT NULL,"
                " applied_at TIMESTAMPTZ NOT NULL)")
    for version, name, sql in load._migrations():
        if version <= 5:
            con.execute(sql)
            con.execute("INSERT INTO schema_version VALUES (?, ?, ?)", [version, name, FETCHED])
    con.execute("CREATE VIEW iv_term_structure_by_expiration AS SELECT symbol, as_of_date, expiration_date, "
                "avg(implied_volatility) AS implied_volatility FROM iv_term_structure GROUP BY ALL")
    return con


def test_migration_007_keeps_every_row_and_derives_the_iv_tables_again(tmp_path: Path) -> None:
    con = _warehouse_at_version_5(tmp_path / "warehouse.duckdb")
    term = pd.DataFrame(
        {
            "as_of_date": [SNAPSHOT] * 4,
            "symbol": ["SPX"] * 4,
            "expiration_date": [date(2025, 12, 19), date(2025, 12, 19), date(2026, 1, 16), date(2026, 2, 20)],
            "settlement_type": ["AM", "PM", "PM", "PM"],
            "option_chain_type": [None, "Standard", None, "Standard"],
            "implied_volatility": [0.30, 0.20, 0.22, 0.24],
            "fetched_at": [FETCHED] * 4,
        }
    )
    _insert(con, "iv_term_structure", term)
    _insert(con, "market_metrics", pd.DataFrame([{"as_of_date": SNAPSHOT, "symbol": "SPX", "iv_30_day": 0.21,
                                                  "fetched_at": FETCHED}]))
    # What the old SQL had derived (here: nonsense, so that a row not derived again shows).
    con.execute("INSERT INTO iv_constant_maturity (symbol, as_of_date, iv30, expirations_used) VALUES ('SPX', ?, 9.9, 1)",
                [SNAPSHOT])
    assert migrate(con) == load._migrations()[-1][0]  # the newest version (numbers may skip one)
    keys = con.execute("SELECT constraint_column_names FROM duckdb_constraints() WHERE constraint_type = 'PRIMARY KEY' "
                       "AND table_name = 'iv_term_structure'").fetchall()
    assert [tuple(k[0]) for k in keys] == [IV_TERM_STRUCTURE.grain]
    kept = con.execute("SELECT expiration_date, settlement_type, option_chain_type, implied_volatility "
                       "FROM iv_term_structure ORDER BY ALL").fetchall()
    assert kept == sorted(zip(term["expiration_date"], term["settlement_type"], ["Standard"] * 4,
                              term["implied_volatility"]))
    # A Non-standard chain now lands beside the Standard row of its date and settlement.
    con.execute("INSERT INTO iv_term_structure VALUES (?, 'SPX', DATE '2026-01-16', 'PM', 'Non-standard', 0.9, ?)",
                [SNAPSHOT, FETCHED])
    # The tables derived from the term structure were derived again, by the one rule.
    nodes = con.execute("SELECT expiration_date, settlement_type, implied_volatility FROM iv_term_structure_by_expiration "
                        "ORDER BY 1").fetchall()
    assert nodes == [(date(2025, 12, 19), "PM", 0.20), (date(2026, 1, 16), "PM", 0.22), (date(2026, 2, 20), "PM", 0.24)]
    iv30, tt = con.execute("SELECT iv30, tastytrade_iv30 FROM iv_constant_maturity WHERE symbol = 'SPX'").fetchone()
    close = datetime(2025, 11, 24, 21, tzinfo=timezone.utc)
    t1, t2 = ((datetime.combine(d, time(16), NEW_YORK) - close).total_seconds() / (365 * 86400)
              for d in (date(2025, 12, 19), date(2026, 1, 16)))
    t = 30 / 365
    assert iv30 == pytest.approx(np.sqrt(np.interp(t, [t1, t2], [0.2**2 * t1, 0.22**2 * t2]) / t), rel=1e-12)
    assert tt == 0.21
    con.close()


def test_a_lake_file_landed_without_chain_types_loads_as_standard(tmp_path: Path) -> None:
    """Partitions landed before version 6 could hold a NULL chain type; a load (or a rebuild) reads
    it as Standard instead of failing on the key."""
    lake = Lake(tmp_path)
    frame = declared_frame(IV_TERM_STRUCTURE, {
        "as_of_date": [SNAPSHOT] * 2, "symbol": ["SPY"] * 2, "expiration_date": [date(2025, 12, 19), date(2026, 1, 16)],
        "settlement_type": ["PM", "PM"], "option_chain_type": ["Standard", "Standard"], "implied_volatility": [0.15, 0.16],
        "fetched_at": [FETCHED] * 2,
    })
    old_schema = pa.schema([f.with_nullable(True) for f in IV_TERM_STRUCTURE.arrow_schema])
    table = pa.Table.from_pandas(frame.assign(option_chain_type=[None, "Standard"]), schema=old_schema, preserve_index=False)
    path = lake.partition_path("iv_term_structure", SNAPSHOT)
    path.parent.mkdir(parents=True)
    pq.write_table(table, path)
    with warehouse_connection(lake.warehouse_path) as con:
        load_sessions(con, lake, [SNAPSHOT])
        rows = con.execute("SELECT expiration_date, option_chain_type FROM iv_term_structure ORDER BY 1").fetchall()
        nodes = con.execute("SELECT count(*) FROM iv_term_structure_by_expiration").fetchone()[0]
    assert rows == [(date(2025, 12, 19), "Standard"), (date(2026, 1, 16), "Standard")] and nodes == 2
