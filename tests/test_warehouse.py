"""The warehouse: versioned DDL, idempotent O(day) loads, lock handling, CLI compatibility."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
import time
from datetime import date, datetime, timezone
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from support import declared_frame
from variance_pipeline.schemas.market_metrics import MARKET_METRICS
from variance_pipeline.schemas.positions import POSITIONS
from variance_pipeline.schemas.realized_volatility import REALIZED_VOLATILITY
from variance_pipeline.candles.store import CandleStore
from variance_pipeline.lake.layout import Lake
from variance_pipeline.warehouse.connection import WarehouseLockedError, open_warehouse, warehouse_connection
from variance_pipeline.warehouse import load
from variance_pipeline.warehouse.publish import publishing
from variance_pipeline.warehouse.load import TABLE_NAMES, VIEW_NAMES, load_sessions, migrate, rebuild

DAYS = [date(2025, 11, 20), date(2025, 11, 21), date(2025, 11, 24)]
FETCHED = datetime(2025, 11, 24, 22, tzinfo=timezone.utc)


def fill_lake(lake: Lake, days: list[date] = DAYS, close_shift: float = 0.0) -> None:
    """A tiny lake: two symbols' candles and volatility per day, snapshots on the last day."""
    for i, day in enumerate(days):
        candles = pd.DataFrame(
            {
                "symbol": ["SPY", "/ES"],
                "yahoo_ticker": ["SPY", "ES=F"],
                "session_date": [day, day],
                "open": [600.0 + i, 6000.0 + i],
                "high": [605.0 + i, 6050.0 + i],
                "low": [595.0 + i, 5950.0 + i],
                "close": [601.0 + i + close_shift, 6010.0 + i],
                "adj_close": [601.0 + i, 6010.0 + i],
                "volume": [1_000_000, 50_000],
            }
        )
        CandleStore(lake.candles_dir).add(candles)
        rv = candles[["symbol", "session_date", "close"]].assign(hv20=[0.15, 0.18], hv252=[0.2, None], returns_available=252)
        lake.write_partition("realized_volatility", day, declared_frame(REALIZED_VOLATILITY, rv))
    last = days[-1]
    lake.write_partition(
        "positions",
        last,
        declared_frame(POSITIONS, 
            {
                "as_of_date": [last],
                "account_number": ["5WX00001"],
                "symbol": ["SPY   251219P00550000"],
                "instrument_type": ["Equity Option"],
                "underlying_symbol": ["SPY"],
                "root_symbol": ["SPY"],
                "quantity": [-2.0],
                "quantity_direction": ["Short"],
                "multiplier": [100],
                "expires_at": [datetime(2025, 12, 19, 21, tzinfo=timezone.utc)],
                "fetched_at": [FETCHED],
            }
        ),
    )
    lake.write_partition(
        "market_metrics",
        last,
        declared_frame(MARKET_METRICS, 
            {"as_of_date": [last], "symbol": ["SPY"], "implied_volatility": [0.19], "iv_rank": [0.3],
             "earnings_date": [None], "fetched_at": [FETCHED]}
        ),
    )


def table_state(path: Path) -> dict[str, list]:
    with duckdb.connect(str(path), read_only=True) as con:
        return {t: con.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall() for t in TABLE_NAMES}


def test_migrate_is_idempotent_and_versioned(tmp_path: Path) -> None:
    with warehouse_connection(tmp_path / "w.duckdb") as con:
        latest = migrate(con)
        files = sorted((Path(load.__file__).parent / "migrations").glob("*.sql"))
        assert latest == max(int(path.name.split("_", 1)[0]) for path in files)  # numbers may skip one
        assert migrate(con) == latest
        assert con.execute("SELECT count(*) FROM schema_version").fetchone()[0] == len(files)
        tables = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    assert set(TABLE_NAMES) | set(VIEW_NAMES) <= tables


def test_reloading_a_session_replaces_it(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    fill_lake(lake)
    with warehouse_connection(lake.warehouse_path) as con:
        report = load_sessions(con, lake, DAYS)
    assert report.rows_by_table["candles"] == 6
    first = table_state(lake.warehouse_path)
    with warehouse_connection(lake.warehouse_path) as con:
        load_sessions(con, lake, DAYS)
    assert table_state(lake.warehouse_path) == first
    # A corrected day replaces only that day's rows.
    fill_lake(lake, [DAYS[0]], close_shift=0.5)
    with warehouse_connection(lake.warehouse_path) as con:
        report = load_sessions(con, lake, [DAYS[0]])
        assert report.rows_by_table["candles"] == 2
        closes = con.execute("SELECT session_date, close FROM candles WHERE symbol = 'SPY' ORDER BY 1").fetchall()
    assert closes == [(DAYS[0], 601.5), (DAYS[1], 602.0), (DAYS[2], 603.0)]


def test_missing_snapshot_partition_keeps_earlier_rows(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    fill_lake(lake)
    with warehouse_connection(lake.warehouse_path) as con:
        load_sessions(con, lake, DAYS)
        shutil.rmtree(lake.partition_path("positions", DAYS[-1]).parent)
        load_sessions(con, lake, DAYS)
        assert con.execute("SELECT count(*) FROM positions").fetchone()[0] == 1


def test_failed_load_rolls_back(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    fill_lake(lake)
    with warehouse_connection(lake.warehouse_path) as con:
        load_sessions(con, lake, DAYS)
    before = table_state(lake.warehouse_path)
    # A duplicate key in one day's file violates the primary key mid-load (after the candles).
    bad = lake.read_partition("realized_volatility", DAYS[1])
    lake.write_partition("realized_volatility", DAYS[1], pd.concat([bad, bad]))
    with warehouse_connection(lake.warehouse_path) as con, pytest.raises(duckdb.ConstraintException):
        load_sessions(con, lake, DAYS)
    assert table_state(lake.warehouse_path) == before


def test_views_compute_spread_and_portfolio(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    fill_lake(lake)
    with warehouse_connection(lake.warehouse_path) as con:
        load_sessions(con, lake, DAYS)
        spy = con.execute("SELECT price, hv20, iv_hv20_spread FROM vol_dashboard WHERE symbol = 'SPY'").fetchone()
        assert spy == pytest.approx((603.0, 0.15, 0.19 - 0.15))
        row = con.execute("SELECT quantity, notional, days_to_expiration FROM portfolio").fetchone()
        assert row == pytest.approx((-2.0, -2.0 * 100 * 603.0, 25))


def test_rebuild_recreates_from_the_lake(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    fill_lake(lake)
    with warehouse_connection(lake.warehouse_path) as con:
        load_sessions(con, lake, DAYS)
    before = table_state(lake.warehouse_path)
    lake.warehouse_path.unlink()
    rebuild(lake)
    assert table_state(lake.warehouse_path) == before


def hold_lock(path: Path, read_only: bool) -> subprocess.Popen[str]:
    code = textwrap.dedent(
        f"""
        import duckdb, sys, time
        con = duckdb.connect({str(path)!r}, read_only={read_only})
        print("locked", flush=True)
        time.sleep(30)
        """
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    return holder


@pytest.mark.parametrize("read_only", [False, True], ids=["writer", "reader"])
def test_a_held_lock_gives_a_bounded_wait_and_names_the_holder(tmp_path: Path, read_only: bool) -> None:
    lake = Lake(tmp_path)
    fill_lake(lake)
    with warehouse_connection(lake.warehouse_path) as con:
        load_sessions(con, lake, DAYS)
    before = table_state(lake.warehouse_path)
    holder = hold_lock(lake.warehouse_path, read_only)
    try:
        started = time.monotonic()
        with pytest.raises(WarehouseLockedError, match=rf"locked by .*PID {holder.pid}"):
            open_warehouse(lake.warehouse_path, wait_seconds=1.0)
        assert time.monotonic() - started < 10
    finally:
        holder.kill()
        holder.wait()
    assert table_state(lake.warehouse_path) == before


HOLD_LOAD_LOCK = """
import sys
from pathlib import Path
from variance_pipeline.warehouse.publish import load_lock
with load_lock(Path(sys.argv[1]), wait_seconds=5, run_id="run-of-the-other-process"):
    print("locked", flush=True)
    sys.stdin.read()
"""


@pytest.mark.parametrize("read_only", [False, True], ids=["writer", "reader"])
def test_a_load_publishes_whatever_session_holds_the_file(tmp_path: Path, read_only: bool) -> None:
    """A DuckDB session on the published file (even a read-write one, or the CLI's) never blocks
    a load: the load works on a private copy and renames it into place."""
    lake = Lake(tmp_path)
    fill_lake(lake, DAYS[:2])
    with publishing(lake.warehouse_path) as con:
        load_sessions(con, lake, DAYS[:2])
    holder = hold_lock(lake.warehouse_path, read_only)
    try:
        fill_lake(lake, DAYS)
        with publishing(lake.warehouse_path, wait_seconds=5) as con:
            load_sessions(con, lake, DAYS)
    finally:
        holder.kill()
        holder.wait()
    with duckdb.connect(str(lake.warehouse_path), read_only=True) as con:
        assert con.execute("SELECT max(session_date) FROM candles").fetchone()[0] == DAYS[-1]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith((".tmp", ".tmp.wal"))]


def test_two_loads_serialise_with_a_bounded_wait_naming_the_holder(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    fill_lake(lake)
    with publishing(lake.warehouse_path) as con:
        load_sessions(con, lake, DAYS)
    before = table_state(lake.warehouse_path)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOAD_LOCK, str(lake.warehouse_path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        started = time.monotonic()
        with pytest.raises(WarehouseLockedError, match=rf"PID {holder.pid} on .*run-of-the-other-process"):
            with publishing(lake.warehouse_path, wait_seconds=1.0) as con:
                load_sessions(con, lake, DAYS)
        assert time.monotonic() - started < 10
    finally:
        holder.kill()
        holder.wait()
    assert table_state(lake.warehouse_path) == before


def test_a_failed_load_leaves_the_published_file_as_it_was(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    fill_lake(lake)
    with publishing(lake.warehouse_path) as con:
        load_sessions(con, lake, DAYS)
    before = lake.warehouse_path.read_bytes()
    with pytest.raises(RuntimeError, match="boom"):
        with publishing(lake.warehouse_path) as con:
            con.execute("DELETE FROM candles")
            raise RuntimeError("boom")
    assert lake.warehouse_path.read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith((".tmp", ".tmp.wal"))]


def test_the_pip_duckdb_cli_opens_the_file_views_included(tmp_path: Path) -> None:
    cli = Path(sys.executable).with_name("duckdb")
    assert cli.exists(), "duckdb-cli is a dev dependency"
    lake = Lake(tmp_path)
    fill_lake(lake)
    with warehouse_connection(lake.warehouse_path) as con:
        load_sessions(con, lake, DAYS)
    done = subprocess.run(
        [str(cli), "-readonly", "-csv", str(lake.warehouse_path), "-c",
         "SELECT symbol, round(iv_hv20_spread, 2) FROM vol_dashboard WHERE symbol = 'SPY'; SELECT count(*) FROM portfolio;"],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "SPY,0.04" in done.stdout


def test_two_loads_started_at_once_both_finish_and_agree(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    fill_lake(lake)
    code = textwrap.dedent(
        f"""
        from datetime import date
        from pathlib import Path
        from variance_pipeline.lake.layout import Lake
        from variance_pipeline.warehouse.connection import warehouse_connection
        from variance_pipeline.warehouse.load import load_sessions
        lake = Lake(Path({str(tmp_path)!r}))
        days = [date.fromisoformat(d) for d in {[d.isoformat() for d in DAYS]!r}]
        for _ in range(5):
            with warehouse_connection(lake.warehouse_path, wait_seconds=60) as con:
                load_sessions(con, lake, days)
        """
    )
    loaders = [subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for loader in loaders:
        _, err = loader.communicate(timeout=120)
        assert loader.returncode == 0, err
    state = table_state(lake.warehouse_path)
    reference = tmp_path / "reference.duckdb"
    with warehouse_connection(reference) as con:
        load_sessions(con, lake, DAYS)
    assert state == table_state(reference)
