"""Volatility history built the way production builds it: the real pipeline, evening after evening.

One module-scoped history: a private simulator and the pipeline share one clock, advanced to 22:00
UTC of each of the 30 XNYS sessions ending 2025-11-25. The first evening is a ranged backfill
(candles and realised volatility from 2025-06-30, the snapshots of that evening), every later one a
single-partition run, as the schedule runs them. Nothing is written to the lake by hand. The tests
then recompute iv_constant_maturity, iv_rank_own, vrp and earnings_moves with numpy from the landed
tables (iv_term_structure, market_metrics, candles, earnings_calendar, earnings_reports) and compare.

The watchlist adds three synthetic equities: ADR (reports 2025-07-03 and 10-03) and ABD (09-02)
report before the first evening, so the pipeline never saw their days (no move, and why); ABT
reports Friday 2025-11-14 before the open, inside the evenings, so its day comes from the
snapshots and its implied move from a real one.
"""

from __future__ import annotations

import math
from collections import Counter
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import duckdb
import exchange_calendars as xcals
import httpx
import numpy as np
import pandas as pd
import pytest

from support import EXTRACT, NO_CHARTS, materialize, pipeline_settings
from variance_pipeline.simulator import SimulatorServer

pytestmark = pytest.mark.slow

LAST = date(2025, 11, 25)
EVENINGS = 30
BACKFILL_START = date(2025, 6, 30)
WATCHLIST = "SPY,QQQ,/ES,ABT,ABD,ADR"
EARNINGS_PREFIX = "/market-metrics/historic-corporate-events/earnings-reports/"
MIN_RANK = 20
# What the vol-history tables and views read (realized_volatility: vol_dashboard); the risk assets
# (risk_free_rate, position_greeks) feed nothing the tests read.
HISTORY = [*EXTRACT, "candles", "realized_volatility", "earnings_reports", "warehouse"]

XNYS = xcals.get_calendar("XNYS", start="2024-01-01", end="2026-12-31")
NEW_YORK = ZoneInfo("America/New_York")


def _sessions(start: date, end: date) -> list[date]:
    return [d.date() for d in XNYS.sessions_in_range(pd.Timestamp(start), pd.Timestamp(end))]


ALL_SESSIONS = _sessions(date(2024, 1, 2), date(2026, 12, 31))
EVENING_DAYS = [d for d in ALL_SESSIONS if d <= LAST][-EVENINGS:]


def evening(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, 22, tzinfo=timezone.utc)


def _frame(con: duckdb.DuckDBPyConnection, sql: str) -> pd.DataFrame:
    return con.execute(sql).df()


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> dict:
    data_dir = tmp_path_factory.mktemp("history")
    per_evening: dict[date, dict] = {}
    earnings_asked: dict[date, list[tuple[str, str]]] = {}
    first = EVENING_DAYS[0]
    with SimulatorServer(port=0, now=evening(first)) as sim:
        for i, day in enumerate(EVENING_DAYS):
            sim.now = evening(day)
            settings = pipeline_settings(data_dir, sim.url, now=evening(day), watchlist=WATCHLIST)
            # Only the last evening draws the charts (as the demo does): the data is the same.
            config = None if day == EVENING_DAYS[-1] else NO_CHARTS
            if i == 0:
                result = materialize(
                    settings, partition_range=(str(BACKFILL_START), str(day)), select=HISTORY, run_config=config
                )
            else:
                result = materialize(settings, partition_key=str(day), select=HISTORY, run_config=config)
            assert result.success, day
            asked = [e for e in sim.requests.entries() if e["path"].startswith(EARNINGS_PREFIX)]
            earnings_asked[day] = [(e["path"].removeprefix(EARNINGS_PREFIX), e["query"].get("start-date")) for e in asked]
            sim.requests.clear()
            with duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True) as con:
                per_evening[day] = {
                    "rank": _frame(con, "SELECT * FROM iv_rank_own ORDER BY symbol"),
                    "vrp": _frame(con, "SELECT * FROM vrp ORDER BY symbol, as_of_date"),
                    "metrics": _frame(con, "SELECT symbol, as_of_date, implied_volatility FROM market_metrics"),
                }
    return {"data_dir": data_dir, "per_evening": per_evening, "earnings_asked": earnings_asked}


@pytest.fixture(scope="module")
def con(history: dict):
    with duckdb.connect(str(history["data_dir"] / "warehouse.duckdb"), read_only=True) as connection:
        yield connection


def test_every_evening_landed_one_snapshot(con) -> None:
    days = [r[0] for r in con.execute("SELECT DISTINCT as_of_date FROM market_metrics ORDER BY 1").fetchall()]
    assert days == EVENING_DAYS
    candle_days = {r[0] for r in con.execute("SELECT DISTINCT session_date FROM candles").fetchall()}
    assert set(_sessions(BACKFILL_START, LAST)) <= candle_days


# --- constant maturity ------------------------------------------------------------------------


def _numpy_constant_maturity(ts: pd.DataFrame) -> dict[tuple[str, date, int], float | None]:
    """The IV rule by hand (README): Standard chain only; an expiration's IV is its PM row, else its
    AM row; T = years of 365 days from the session's XNYS close to 16:00 (09:30 for AM) New York;
    iv<d> at T = d / 365, linear in total variance, NULL unless bracketed."""
    out: dict[tuple[str, date, int], float | None] = {}
    ts = ts[ts["implied_volatility"].notna() & (ts["implied_volatility"] > 0) & (ts["option_chain_type"] == "Standard")]
    ts = ts[ts["expiration_date"] > ts["as_of_date"]]
    for (symbol, day), group in ts.groupby(["symbol", "as_of_date"]):
        close = XNYS.session_close(pd.Timestamp(day)).to_pydatetime()
        per_exp = {}
        for exp, rows in group.groupby("expiration_date"):
            by = dict(zip(rows["settlement_type"].str.upper(), rows["implied_volatility"]))
            settlement = "PM" if "PM" in by else "AM"
            at = datetime.combine(exp, time(16, 0) if settlement == "PM" else time(9, 30), NEW_YORK)
            per_exp[(at - close).total_seconds() / (365 * 86400)] = float(by[settlement])
        years = np.array(sorted(per_exp))
        for target in (30, 60, 90):
            t = target / 365
            below, above = years[years <= t], years[years >= t]
            if not len(below) or not len(above):
                out[(symbol, day, target)] = None
                continue
            t1, t2 = below.max(), above.min()
            v1, v2 = per_exp[t1], per_exp[t2]
            if t1 == t2:
                out[(symbol, day, target)] = v1
                continue
            w1, w2 = v1 * v1 * t1, v2 * v2 * t2
            w = w1 + (w2 - w1) * (t - t1) / (t2 - t1)
            out[(symbol, day, target)] = math.sqrt(w / t)
    return out


def test_constant_maturity_equals_numpy_on_the_landed_term_structure(con) -> None:
    ts = _frame(con, "SELECT symbol, as_of_date, expiration_date, settlement_type, option_chain_type, implied_volatility "
                     "FROM iv_term_structure")
    # The held AAPL's term structure lists a Non-standard chain beside the Standard one: both landed.
    assert set(ts.loc[ts["symbol"] == "AAPL", "option_chain_type"]) == {"Standard", "Non-standard"}
    ts["as_of_date"] = pd.to_datetime(ts["as_of_date"]).dt.date
    ts["expiration_date"] = pd.to_datetime(ts["expiration_date"]).dt.date
    expected = _numpy_constant_maturity(ts)
    got = _frame(con, "SELECT symbol, as_of_date, iv30, iv60, iv90, term_slope FROM iv_constant_maturity")
    assert len(got) == len({(s, d) for s, d, _ in expected}) == len(EVENING_DAYS) * con.execute(
        "SELECT count(DISTINCT symbol) FROM market_metrics").fetchone()[0]
    nulls = 0
    for row in got.itertuples(index=False):
        day = pd.Timestamp(row.as_of_date).date()
        for target, value in ((30, row.iv30), (60, row.iv60), (90, row.iv90)):
            want = expected[(row.symbol, day, target)]
            if want is None:
                nulls += 1
                assert value is None or np.isnan(value), (row.symbol, day, target)
            else:
                assert value == pytest.approx(want, rel=1e-12), (row.symbol, day, target)
        if not (np.isnan(row.iv30) or np.isnan(row.iv90)):
            assert row.term_slope == pytest.approx(row.iv90 - row.iv30, abs=1e-12)
    # Some simulated chains end before 60/90 days: those maturities are NULL, never extrapolated.
    # No symbol here lists AM beside PM, so "PM over AM" is proven on a copy below.
    assert nulls > 0


def test_constant_maturity_rules_on_a_copy_of_the_warehouse(history: dict, tmp_path: Path) -> None:
    """PM over AM and NULL-when-not-bracketed, on the landed warehouse with two edits in SQL."""
    from variance_pipeline.warehouse.vol_history import refresh_vol_history

    copy = tmp_path / "warehouse.duckdb"
    copy.write_bytes((history["data_dir"] / "warehouse.duckdb").read_bytes())
    with duckdb.connect(str(copy)) as con:
        before = con.execute("SELECT iv30, iv60, iv90 FROM iv_constant_maturity WHERE symbol = 'SPY' AND as_of_date = ?",
                             [LAST]).fetchone()
        # An AM listing beside every PM expiration of SPY with an absurd IV: must be ignored.
        con.execute("INSERT INTO iv_term_structure SELECT * REPLACE ('AM' AS settlement_type, 3.0 AS implied_volatility)"
                    " FROM iv_term_structure WHERE symbol = 'SPY' AND as_of_date = ?", [LAST])
        qqq_before = con.execute("SELECT iv30, iv60 FROM iv_constant_maturity WHERE symbol = 'QQQ' AND as_of_date = ?",
                                 [LAST]).fetchone()
        # QQQ loses every expiration beyond 60 days: iv60 is not bracketed any more.
        con.execute("DELETE FROM iv_term_structure WHERE symbol = 'QQQ' AND as_of_date = ? AND expiration_date > ?",
                    [LAST, LAST + timedelta(days=60)])
        refresh_vol_history(con, [LAST])
        after = con.execute("SELECT iv30, iv60, iv90 FROM iv_constant_maturity WHERE symbol = 'SPY' AND as_of_date = ?",
                            [LAST]).fetchone()
        qqq = con.execute("SELECT iv30, iv60, iv90 FROM iv_constant_maturity WHERE symbol = 'QQQ' AND as_of_date = ?",
                          [LAST]).fetchone()
    nan = float("nan")
    assert [nan if v is None else v for v in after] == pytest.approx(
        [nan if v is None else v for v in before], rel=1e-12, nan_ok=True)
    assert before[0] is not None
    assert qqq_before[1] is not None, "the simulated QQQ chain reaches past 60 days"
    assert qqq[0] == pytest.approx(qqq_before[0], rel=1e-12) and qqq[1] is None and qqq[2] is None


# --- own IV rank ------------------------------------------------------------------------------


def test_own_iv_rank_is_null_with_a_reason_until_20_sessions_then_numpy(history: dict) -> None:
    checked = 0
    for k, day in enumerate(EVENING_DAYS, start=1):
        state = history["per_evening"][day]
        rank, metrics = state["rank"], state["metrics"]
        assert len(rank) > 0
        for row in rank.itertuples(index=False):
            assert row.sessions_of_history == k, (day, row.symbol)
            if k < MIN_RANK:
                assert np.isnan(row.iv_rank_own) and np.isnan(row.iv_percentile_own)
                assert row.iv_rank_own_reason == f"only {k} sessions of history (need {MIN_RANK})"
                continue
            ivs = metrics.loc[metrics["symbol"] == row.symbol, "implied_volatility"].to_numpy(dtype=float)
            today = metrics.loc[(metrics["symbol"] == row.symbol)
                                & (pd.to_datetime(metrics["as_of_date"]).dt.date == day), "implied_volatility"].iloc[0]
            assert row.iv_rank_own == pytest.approx((today - ivs.min()) / (ivs.max() - ivs.min()), abs=1e-12)
            assert row.iv_percentile_own == pytest.approx(np.mean(ivs < today), abs=1e-12)
            assert row.iv_rank_own_reason is None
            checked += 1
    assert checked >= (EVENINGS - MIN_RANK + 1) * 5


def test_vol_dashboard_carries_the_own_rank(con) -> None:
    rows = con.execute("SELECT symbol, iv_rank_own, iv_percentile_own FROM vol_dashboard WHERE symbol = 'SPY'").fetchall()
    assert rows and rows[0][1] is not None and 0 <= rows[0][1] <= 1


# --- VRP --------------------------------------------------------------------------------------


def _next_sessions(day: date, n: int) -> list[date]:
    i = ALL_SESSIONS.index(day)
    return ALL_SESSIONS[i + 1 : i + 1 + n]


def test_vrp_equals_numpy_and_fills_in_21_sessions_later(history: dict, con) -> None:
    candles = _frame(con, "SELECT symbol, session_date, close FROM candles")
    closes = {(s, pd.Timestamp(d).date()): c for s, d, c in candles.itertuples(index=False)}
    cm = _frame(con, "SELECT symbol, as_of_date, iv30 FROM iv_constant_maturity")
    iv30 = {(s, pd.Timestamp(d).date()): v for s, d, v in cm.itertuples(index=False)}
    tt = _frame(con, "SELECT symbol, as_of_date, iv_30_day FROM market_metrics")
    tt_iv30 = {(s, pd.Timestamp(d).date()): v for s, d, v in tt.itertuples(index=False)}
    vrp = _frame(con, "SELECT * FROM vrp")
    assert len(vrp) == len(iv30)
    complete = 0
    for row in vrp.itertuples(index=False):
        day = pd.Timestamp(row.as_of_date).date()
        ahead = _next_sessions(day, 21)
        # Our constant-maturity iv30, else (not bracketed) Tastytrade's iv_30_day.
        ours = iv30[(row.symbol, day)]
        if np.isnan(ours):
            assert row.iv30 == pytest.approx(tt_iv30[(row.symbol, day)], rel=1e-12)
            assert row.iv30_source == "tastytrade_iv30"
        else:
            assert row.iv30 == pytest.approx(ours, rel=1e-12) and row.iv30_source == "constant_maturity"
        assert row.forward_sessions == sum(1 for d in ahead if d <= LAST)
        if ahead[-1] > LAST:
            assert np.isnan(row.hv_forward_21) and np.isnan(row.vrp), (row.symbol, day)
            continue
        path = np.array([closes[(row.symbol, d)] for d in [day, *ahead]])
        hv = math.sqrt(252) * np.std(np.diff(np.log(path)), ddof=1)
        assert row.hv_forward_21 == pytest.approx(hv, rel=1e-10), (row.symbol, day)
        assert row.vrp == pytest.approx(row.iv30 - hv, rel=1e-9, abs=1e-12)
        assert pd.Timestamp(row.forward_end_date).date() == ahead[-1]
        complete += 1
    # 30 evenings: the first 9 have their 21 later sessions.
    assert complete == 9 * vrp["symbol"].nunique()

    # The first evening's row, as every later evening saw it: NULL until the 21st session after.
    first = EVENING_DAYS[0]
    for k, day in enumerate(EVENING_DAYS):
        seen = history["per_evening"][day]["vrp"]
        row = seen[(seen["symbol"] == "SPY") & (pd.to_datetime(seen["as_of_date"]).dt.date == first)].iloc[0]
        assert row["forward_sessions"] == min(k, 21)
        if k < 21:
            assert np.isnan(row["vrp"]), day
        else:
            final = vrp[(vrp["symbol"] == "SPY") & (pd.to_datetime(vrp["as_of_date"]).dt.date == first)].iloc[0]
            assert row["vrp"] == pytest.approx(final["vrp"], rel=1e-12), day


def test_vrp_summary_counts_only_complete_windows(con) -> None:
    rows = dict(con.execute("SELECT symbol, dates FROM vrp_summary").fetchall())
    assert rows and set(rows.values()) == {9}


# --- earnings ---------------------------------------------------------------------------------


def test_earnings_moves_span_the_session_of_each_announced_report(con) -> None:
    """Each report is dated by the last announcement of its quarter in the snapshots (the history
    lists it under the quarter's end) and measured over its one session: BMO, the session before
    to the day; AMC, the day to the session after. Reports announced before the first evening
    have no day: NULL, with the reason, never a quarter-end move."""
    candles = _frame(con, "SELECT symbol, session_date, close FROM candles")
    closes = {(s, pd.Timestamp(d).date()): c for s, d, c in candles.itertuples(index=False)}
    reports = _frame(con, "SELECT symbol, occurred_date FROM earnings_reports")
    moves = _frame(con, "SELECT * FROM earnings_moves")
    assert len(moves) == len(reports)
    calendar = _frame(con, "SELECT * FROM earnings_calendar")
    measured = {}
    for row in moves.itertuples(index=False):
        occurred = pd.Timestamp(row.occurred_date).date()
        assert (occurred + timedelta(days=1)).day == 1, (row.symbol, occurred)  # a quarter's end
        if pd.isna(row.report_date):
            assert occurred < EVENING_DAYS[0] and pd.isna(row.move) and pd.isna(row.session_before)
            assert "before this project's history" in row.move_note
            continue
        day = pd.Timestamp(row.report_date).date()
        # The announcement by hand: that quarter's, the last one on or before the day it names.
        own = calendar[(calendar["symbol"] == row.symbol)
                       & (pd.to_datetime(calendar["quarter_end_date"]).dt.to_period("M") == pd.Period(occurred, "M"))
                       & (pd.to_datetime(calendar["as_of_date"]) <= pd.to_datetime(calendar["expected_report_date"]))]
        last = own.sort_values("as_of_date").iloc[-1]
        assert pd.Timestamp(last["expected_report_date"]).date() == day and row.report_time_of_day == last["time_of_day"]
        if row.report_time_of_day == "BMO":
            before, after = max(d for d in ALL_SESSIONS if d < day), day
        else:
            before, after = day, min(d for d in ALL_SESSIONS if d > day)
        assert (pd.Timestamp(row.session_before).date(), pd.Timestamp(row.session_after).date()) == (before, after)
        want = math.log(closes[(row.symbol, after)] / closes[(row.symbol, before)])
        assert row.move == pytest.approx(want, rel=1e-12), (row.symbol, day)
        assert row.abs_move == pytest.approx(abs(want), rel=1e-12)
        measured[(row.symbol, day)] = (row.report_time_of_day, before, after)
    assert measured[("TSLA", date(2025, 10, 22))] == ("AMC", date(2025, 10, 22), date(2025, 10, 23))
    assert measured[("AAPL", date(2025, 10, 28))] == ("AMC", date(2025, 10, 28), date(2025, 10, 29))
    assert measured[("ABT", date(2025, 11, 14))] == ("BMO", date(2025, 11, 13), date(2025, 11, 14))  # a Friday
    # A report inside the evenings has its implied move from the last snapshot before its session.
    abt = moves[(moves["symbol"] == "ABT") & (pd.to_datetime(moves["report_date"]).dt.date == date(2025, 11, 14))].iloc[0]
    assert pd.Timestamp(abt["snapshot_date"]).date() == date(2025, 11, 13)
    assert abt["implied_move"] > 0 and abt["implied_source"] == "term_structure"


def test_earnings_reports_are_fetched_incrementally(history: dict, con) -> None:
    asked = history["earnings_asked"]
    per_symbol = Counter(symbol for calls in asked.values() for symbol, _ in calls)
    symbols = {r[0] for r in con.execute("SELECT DISTINCT symbol FROM earnings_reports").fetchall()}
    assert set(per_symbol) == symbols == {"AAPL", "AMZN", "MSFT", "NVDA", "TSLA", "ABT", "ABD", "ADR"}
    # Everyone once on the first evening (three years back), then only after an expected report passed.
    assert sorted(s for s, _ in asked[EVENING_DAYS[0]]) == sorted(symbols)
    reports_in_window = Counter(  # by the report's own day (occurred_date is its quarter's end)
        s for s, d in con.execute("SELECT symbol, report_date FROM earnings_moves WHERE report_date IS NOT NULL").fetchall()
        if EVENING_DAYS[0] < d < LAST
    )
    for symbol in symbols:
        assert per_symbol[symbol] == 1 + reports_in_window[symbol], symbol
    total = sum(per_symbol.values())
    assert total <= 2 * len(symbols) < EVENINGS  # not one per evening
    # A re-ask happens on the first evening after the report and starts 120 days before the last fetch.
    for day, calls in asked.items():
        for symbol, start in calls:
            if day == EVENING_DAYS[0]:
                assert start == str(EVENING_DAYS[0] - timedelta(days=3 * 366))
            else:
                assert start == str(EVENING_DAYS[0] - timedelta(days=120)), (day, symbol)


# --- the simulator's clock route (the demo steps it) ------------------------------------------


def test_simulator_clock_admin_route() -> None:
    with SimulatorServer(port=0, now=evening(LAST)) as sim:
        got = httpx.post(f"{sim.url}/_sim/clock", json={"now": "2025-10-14T22:00:00+00:00"})
        assert got.status_code == 200 and got.json() == {"now": "2025-10-14T22:00:00+00:00"}
        assert sim.now == evening(date(2025, 10, 14))
        assert httpx.get(f"{sim.url}/_sim/clock").json()["now"].startswith("2025-10-14T22:00")
        assert httpx.post(f"{sim.url}/_sim/clock", json={"now": "2025-10-14T22:00:00"}).status_code == 400
        assert httpx.post(f"{sim.url}/_sim/clock", content=b"nope").status_code == 400
        assert httpx.delete(f"{sim.url}/_sim/clock").json() == {"now": None}
        assert sim.now is None
