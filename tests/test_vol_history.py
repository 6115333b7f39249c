"""Volatility history (constant-maturity IV, VRP, earnings moves, own IV rank) against plain
numpy/python references.

A synthetic but realistic warehouse (four underlyings over ~140 XNYS sessions, daily candles with
earnings jumps and a missing bar, evening snapshots with weekly and monthly expirations, SPX AM
monthlies beside PM weeklies) is loaded session by session, as the daily load would, with
``refresh_vol_history`` after each session. Every quantity is then re-derived in Python from the
same input frames, one row at a time, never calling the code under test. Session boundaries
around reports are written out by hand below.

The IV rule the references apply (README, transforms/term_structure.py): an expiration's IV is its
PM row, else its AM row (else the first other settlement by name); T is in years of 365 days from
the session's XNYS close (exchange_calendars, read here directly) to 16:00 New York (09:30 for AM)
on the expiration date; constant maturity d is T = d / 365, NULL unless bracketed. An expiration
straddles a report dated d, seen from the snapshot of s, when s < d (BMO) or s <= d (AMC, unknown)
and d < expiration (AMC) or d <= expiration (BMO, unknown).

Reports are listed as the real historic endpoint lists them, by a quarter's end (``QUARTER``); their
day and BMO/AMC are only in the snapshots' announcements (earnings_calendar), as in production.
"""

from __future__ import annotations

import math
import subprocess
import sys
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from variance_pipeline.calendar import sessions_back, sessions_in_range
import exchange_calendars as xcals
from variance_pipeline.warehouse.connection import open_warehouse
from variance_pipeline.warehouse.load import migrate
from variance_pipeline.warehouse.vol_history import (
    TABLE_NAMES,
    VIEW_NAMES,
    apply_vol_history_schema,
    refresh_vol_history,
)

TOL = 1e-9
SESSIONS = sessions_in_range(date(2025, 6, 2), date(2025, 12, 19))
START_PRICE = {"AAA": 100.0, "BBB": 50.0, "SPX": 6000.0, "CCC": 20.0}

# Earnings reports: (symbol, report day) -> (session_before, session_after) of the one session the
# move is, by hand from the NYSE calendar and the time of day (TIME_OF_DAY); None: no known day.
REPORTS = {
    ("AAA", date(2024, 10, 30)): None,  # before our snapshots: no announcement, a row with NULL move
    ("AAA", date(2025, 7, 25)): (date(2025, 7, 25), date(2025, 7, 28)),    # a Friday, after the close
    ("AAA", date(2025, 10, 31)): (date(2025, 10, 30), date(2025, 10, 31)),  # a Friday, before the open; no term structure
    ("AAA", date(2025, 11, 26)): (date(2025, 11, 26), date(2025, 11, 28)),  # the day before Thanksgiving, after the close
    ("BBB", date(2025, 8, 2)): None,    # a Saturday, before BBB's snapshots began: no known day
    ("BBB", date(2025, 11, 27)): (date(2025, 11, 26), date(2025, 11, 28)),  # Thanksgiving itself, time not sent
}
TIME_OF_DAY = {("AAA", date(2025, 7, 25)): "AMC", ("AAA", date(2025, 10, 31)): "BMO",
               ("AAA", date(2025, 11, 26)): "AMC", ("AAA", date(2026, 1, 29)): "AMC"}
# The label the historic endpoint lists each report under (a quarter's end); AAA's November report
# closes a quarter ending in October (a fiscal year of its own), as the metrics' quarter-end-date says.
QUARTER = {("AAA", date(2024, 10, 30)): date(2024, 9, 30), ("AAA", date(2025, 7, 25)): date(2025, 6, 30),
           ("AAA", date(2025, 10, 31)): date(2025, 9, 30), ("AAA", date(2025, 11, 26)): date(2025, 10, 31),
           ("AAA", date(2026, 1, 29)): date(2025, 12, 31),
           ("BBB", date(2025, 8, 2)): date(2025, 6, 30), ("BBB", date(2025, 11, 27)): date(2025, 9, 30)}
JUMPS = {("AAA", date(2025, 7, 28)): 0.09, ("AAA", date(2025, 10, 31)): -0.015,
         ("AAA", date(2025, 11, 28)): -0.07, ("BBB", date(2025, 8, 4)): 0.06, ("BBB", date(2025, 11, 28)): 0.011}
NEXT_EARNINGS = {"AAA": [date(2025, 7, 25), date(2025, 10, 31), date(2025, 11, 26), date(2026, 1, 29)],
                 "BBB": [date(2025, 11, 27)]}
MISSING_CANDLE = ("AAA", date(2025, 9, 15))
AAA_NO_TERM_STRUCTURE = date(2025, 10, 30)
AAA_SKIPPED_SNAPSHOTS = {date(2025, 8, 15), date(2025, 9, 2)}


# --- synthetic inputs ------------------------------------------------------------------------


def _fridays(start: date, end: date) -> list[date]:
    first = start + timedelta(days=(4 - start.weekday()) % 7)
    out = []
    while first <= end:
        out.append(first)
        first += timedelta(days=7)
    return out


def _third_friday(year: int, month: int) -> date:
    first = date(year, month, 1)
    return first + timedelta(days=(4 - first.weekday()) % 7 + 14)


def _monthlies(start: date, end: date) -> list[date]:
    out, y, m = [], start.year, start.month
    while date(y, m, 1) <= end:
        d = _third_friday(y, m)
        if start <= d <= end:
            out.append(d)
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


def _snapshot_days(symbol: str) -> list[date]:
    if symbol == "AAA":
        return [d for d in SESSIONS if d >= date(2025, 7, 1) and d not in AAA_SKIPPED_SNAPSHOTS]
    if symbol == "SPX":
        return [d for d in SESSIONS if d >= date(2025, 7, 1)]
    if symbol == "BBB":
        return [d for d in SESSIONS if d >= date(2025, 11, 10)]
    return SESSIONS[-10:]  # CCC: too little history for an own rank


def build_inputs(seed: int = 7) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    candles, metrics, terms, calendar = [], [], [], []
    for symbol, price in START_PRICE.items():
        close = price
        for day in SESSIONS:
            r = rng.normal(0.0, 0.22 / math.sqrt(252)) + JUMPS.get((symbol, day), 0.0)
            open_ = close
            close = close * math.exp(r)
            if (symbol, day) == MISSING_CANDLE:
                continue
            candles.append({"symbol": symbol, "session_date": day, "yahoo_ticker": "^SPX" if symbol == "SPX" else symbol,
                            "open": open_, "high": max(open_, close) * 1.004, "low": min(open_, close) * 0.996,
                            "close": close, "adj_close": close, "volume": 1_000_000})
        level = 0.22
        snapshot_days = set(_snapshot_days(symbol))
        for day in SESSIONS:
            level = float(np.clip(level + rng.normal(0, 0.01), 0.08, 0.6))
            if day not in snapshot_days:
                continue
            fetched = datetime.combine(day, datetime.min.time(), timezone.utc) + timedelta(hours=22)
            upcoming = [d for d in NEXT_EARNINGS.get(symbol, []) if d >= day]
            metrics.append({"as_of_date": day, "symbol": symbol, "implied_volatility": level,
                            "iv_30_day": level + 0.01, "iv_rank": 0.5, "iv_percentile": 0.5,
                            "earnings_date": upcoming[0] if upcoming else None, "fetched_at": fetched})
            if upcoming:
                calendar.append({"as_of_date": day, "symbol": symbol, "expected_report_date": upcoming[0],
                                 "estimated": False, "time_of_day": TIME_OF_DAY.get((symbol, upcoming[0])),
                                 "quarter_end_date": QUARTER[(symbol, upcoming[0])].replace(day=1), "fetched_at": fetched})
            if symbol == "AAA" and day == AAA_NO_TERM_STRUCTURE:
                continue
            horizon = 75 if symbol == "CCC" else 200
            expirations = sorted(set(_fridays(day, day + timedelta(days=84 if symbol != "CCC" else 75)))
                                 | set(_monthlies(day, day + timedelta(days=horizon))))
            monthly = set(_monthlies(day, day + timedelta(days=horizon)))
            mean_done = False
            for exp in expirations:
                days = (exp - day).days
                iv = level + 0.03 * math.sqrt(max(days, 1) / 30) - 0.02 + rng.normal(0, 0.004)
                base = {"as_of_date": day, "symbol": symbol, "expiration_date": exp, "option_chain_type": "Standard",
                        "fetched_at": fetched}
                if symbol == "SPX" and exp in monthly:
                    terms.append({**base, "settlement_type": "PM", "implied_volatility": iv})
                    terms.append({**base, "settlement_type": "AM", "implied_volatility": iv + 0.03})
                elif symbol == "CCC" and days > 40 and not mean_done:
                    mean_done = True
                    terms.append({**base, "settlement_type": "AM", "implied_volatility": iv - 0.01})
                    terms.append({**base, "settlement_type": "Other", "implied_volatility": iv + 0.02})
                else:
                    terms.append({**base, "settlement_type": "PM", "implied_volatility": iv})
    reports = [{"symbol": s, "occurred_date": QUARTER[(s, d)], "eps": 1.23, "report_date": d,
                "fetched_at": datetime(2025, 12, 19, 22, tzinfo=timezone.utc)} for (s, d) in REPORTS]
    return {
        "candles": pd.DataFrame(candles),
        "market_metrics": pd.DataFrame(metrics),
        "iv_term_structure": pd.DataFrame(terms),
        "earnings_reports": pd.DataFrame(reports),
        "earnings_calendar": pd.DataFrame(calendar),
    }


def _insert(con: duckdb.DuckDBPyConnection, table: str, frame: pd.DataFrame) -> None:
    if frame.empty:
        return
    con.register("_frame", frame)
    con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM _frame")
    con.unregister("_frame")


def _on(frame: pd.DataFrame, column: str, day: date) -> pd.DataFrame:
    return frame[frame[column] == day]


def open_db(path: Path) -> duckdb.DuckDBPyConnection:
    con = open_warehouse(path)
    migrate(con)
    apply_vol_history_schema(con)
    apply_vol_history_schema(con)  # idempotent
    return con


def state(con: duckdb.DuckDBPyConnection) -> dict[str, list]:
    names = [*TABLE_NAMES, *VIEW_NAMES]
    return {t: con.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall() for t in names}


def rows(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> list[dict]:
    cur = con.execute(sql, params or [])
    cols = [c[0] for c in cur.description]
    return [dict(zip(cols, r)) for r in cur.fetchall()]


def close(a: float | None, b: float | None, tol: float = TOL) -> bool:
    if a is None or b is None or (isinstance(b, float) and math.isnan(b)):
        return a is None and (b is None or math.isnan(b))
    return abs(a - b) <= tol


@pytest.fixture(scope="module")
def inputs() -> dict[str, pd.DataFrame]:
    return build_inputs()


@pytest.fixture(scope="module")
def daily(inputs, tmp_path_factory) -> dict:
    """The warehouse loaded session by session; records what the tables said along the way."""
    path = tmp_path_factory.mktemp("daily") / "warehouse.duckdb"
    con = open_db(path)
    seen_reports: set = set()
    along: dict = {"vrp": {}, "moves": {}}
    for i, day in enumerate(SESSIONS):
        _insert(con, "candles", _on(inputs["candles"], "session_date", day))
        _insert(con, "market_metrics", _on(inputs["market_metrics"], "as_of_date", day))
        _insert(con, "iv_term_structure", _on(inputs["iv_term_structure"], "as_of_date", day))
        _insert(con, "earnings_calendar", _on(inputs["earnings_calendar"], "as_of_date", day))
        # The historic-earnings endpoint lists a report (by its quarter's end) from its day on.
        reports = inputs["earnings_reports"]
        new = reports[[(s, d) not in seen_reports and d <= day for s, d in zip(reports.symbol, reports.report_date)]]
        seen_reports |= set(zip(new.symbol, new.report_date))
        _insert(con, "earnings_reports", new.drop(columns="report_date"))
        result = refresh_vol_history(con, [day])
        assert result["iv_constant_maturity"] == int((inputs["market_metrics"].as_of_date == day).sum())
        # O(day): a daily refresh rewrites at most 22 sessions of vrp and the reports near the day.
        assert result["vrp"] <= 22 * len(START_PRICE)
        assert result["earnings_moves"] <= 2 + len(new)
        if i >= 21:
            along["vrp"][day] = {
                r["as_of_date"]: r for r in rows(
                    con, "SELECT * FROM vrp WHERE symbol = 'SPX' AND as_of_date IN (?, ?)",
                    [SESSIONS[i - 21], SESSIONS[i - 20]])
            }
        along["moves"][day] = {(r["symbol"], r["report_date"] or r["occurred_date"]): r
                               for r in rows(con, "SELECT * FROM earnings_moves")}
    yield {"con": con, "path": path, "along": along}
    con.close()


# --- independent references ------------------------------------------------------------------


_CURVES: dict[int, tuple[pd.DataFrame, dict]] = {}


def ref_curves(terms: pd.DataFrame) -> dict[tuple[str, date], list[tuple[int, float, date, float]]]:
    """Memoised per input frame (the module's inputs fixture lives for the whole module)."""
    cached = _CURVES.get(id(terms))
    if cached is None or cached[0] is not terms:
        cached = _CURVES[id(terms)] = (terms, _ref_curves(terms))
    return cached[1]


XNYS = xcals.get_calendar("XNYS", start="2024-01-02")
NEW_YORK = ZoneInfo("America/New_York")


def ref_years(as_of: date, expiration: date, settlement: str) -> float:
    """T by hand: the session's XNYS close to the settlement instant in New York, years of 365 days."""
    close_utc = XNYS.session_close(pd.Timestamp(as_of)).to_pydatetime()
    at = time(9, 30) if settlement == "AM" else time(16, 0)
    return (datetime.combine(expiration, at, NEW_YORK) - close_utc).total_seconds() / (365 * 86400)


def _ref_curves(terms: pd.DataFrame) -> dict[tuple[str, date], list[tuple[int, float, date, float]]]:
    """(symbol, as_of) -> [(days, iv, expiration, years)] sorted by date: PM, else AM, else the first
    other settlement by name."""
    out: dict = {}
    for (symbol, as_of, exp), group in terms.groupby(["symbol", "as_of_date", "expiration_date"]):
        days = (exp - as_of).days
        if days <= 0:
            continue
        by_settlement = dict(zip(group.settlement_type, group.implied_volatility))
        settlement = "PM" if "PM" in by_settlement else "AM" if "AM" in by_settlement else min(by_settlement)
        out.setdefault((symbol, as_of), []).append(
            (days, float(by_settlement[settlement]), exp, ref_years(as_of, exp, settlement))
        )
    return {k: sorted(v) for k, v in out.items()}


def ref_constant_maturity(curve: list[tuple[int, float, date, float]], target: int) -> float | None:
    years = np.array([c[3] for c in curve])
    ivs = np.array([c[1] for c in curve])
    t = target / 365
    below, above = years[years <= t], years[years >= t]
    if not len(below) or not len(above):
        return None
    t1, t2 = below.max(), above.min()
    v1, v2 = ivs[years == t1][0], ivs[years == t2][0]
    if t1 == t2:
        return float(v1)
    w = np.interp(t, [t1, t2], [v1**2 * t1, v2**2 * t2])
    return float(np.sqrt(w / t))


def ref_forward_hv(candles: pd.DataFrame, symbol: str, as_of: date) -> float | None:
    closes = candles[candles.symbol == symbol].set_index("session_date")["close"]
    i = SESSIONS.index(as_of)
    window = SESSIONS[i : i + 22]
    if len(window) < 22 or any(d not in closes.index for d in window):
        return None
    c = np.array([closes[d] for d in window])
    return float(np.sqrt(252) * np.std(np.diff(np.log(c)), ddof=1))


# --- tests -------------------------------------------------------------------------------------


def test_constant_maturity_matches_reference(daily, inputs) -> None:
    con = daily["con"]
    curves = ref_curves(inputs["iv_term_structure"])
    got = {(r["symbol"], r["as_of_date"]): r for r in rows(con, "SELECT * FROM iv_constant_maturity")}
    metrics = inputs["market_metrics"]
    assert set(got) == set(zip(metrics.symbol, metrics.as_of_date))
    not_bracketed = 0
    for (symbol, as_of), row in got.items():
        curve = curves.get((symbol, as_of))
        tt = metrics[(metrics.symbol == symbol) & (metrics.as_of_date == as_of)].iv_30_day.iloc[0]
        assert close(row["tastytrade_iv30"], tt)
        if curve is None:
            assert (symbol, as_of) == ("AAA", AAA_NO_TERM_STRUCTURE)
            assert row["iv30"] is None and row["expirations_used"] == 0
            continue
        refs = {t: ref_constant_maturity(curve, t) for t in (30, 60, 90)}
        for t in (30, 60, 90):
            assert close(row[f"iv{t}"], refs[t]), (symbol, as_of, t, row[f"iv{t}"], refs[t])
        not_bracketed += refs[90] is None
        assert close(row["term_slope"], None if refs[90] is None else refs[90] - refs[30])
        assert row["front_expiration"] == curve[0][2] and row["front_days"] == curve[0][0]
        assert close(row["front_iv"], curve[0][1])
        assert close(row["front_to_30_ratio"], curve[0][1] / refs[30])
        assert row["expirations_used"] == len(curve)
    # CCC lists nothing beyond 75 days: iv90 is NULL there, never extrapolated.
    assert not_bracketed == 10
    assert all(r["iv90"] is None for k, r in got.items() if k[0] == "CCC")


def test_settlement_rule_pm_else_am(daily, inputs) -> None:
    con = daily["con"]
    terms = inputs["iv_term_structure"]
    spx = terms[(terms.symbol == "SPX") & (terms.settlement_type == "AM")].iloc[0]
    view = rows(con, "SELECT * FROM iv_term_structure_by_expiration WHERE symbol = 'SPX' AND as_of_date = ? "
                "AND expiration_date = ?", [spx.as_of_date, spx.expiration_date])
    pm = terms[(terms.symbol == "SPX") & (terms.as_of_date == spx.as_of_date)
               & (terms.expiration_date == spx.expiration_date) & (terms.settlement_type == "PM")]
    assert len(view) == 1 and close(view[0]["implied_volatility"], float(pm.implied_volatility.iloc[0]))
    assert view[0]["settlement_type"] == "PM" and view[0]["settlement_types"] == "AM,PM"
    assert close(view[0]["years_to_expiration"], ref_years(spx.as_of_date, spx.expiration_date, "PM"), 1e-15)
    # No PM row: the AM one (never a mean), at its own 09:30 settlement.
    ccc = terms[(terms.symbol == "CCC") & (terms.settlement_type == "Other")].iloc[0]
    am = terms[(terms.symbol == "CCC") & (terms.as_of_date == ccc.as_of_date)
               & (terms.expiration_date == ccc.expiration_date) & (terms.settlement_type == "AM")]
    view = rows(con, "SELECT * FROM iv_term_structure_by_expiration WHERE symbol = 'CCC' AND as_of_date = ? "
                "AND expiration_date = ?", [ccc.as_of_date, ccc.expiration_date])
    assert close(view[0]["implied_volatility"], float(am.implied_volatility.iloc[0]))
    assert view[0]["settlement_type"] == "AM" and view[0]["settlement_types"] == "AM,Other"
    assert close(view[0]["years_to_expiration"], ref_years(ccc.as_of_date, ccc.expiration_date, "AM"), 1e-15)
    # A same-day expiration (Friday evenings) has expired: never in the curve.
    friday = next(d for d in SESSIONS if d.weekday() == 4 and d >= date(2025, 7, 1))
    assert terms[(terms.as_of_date == friday) & (terms.expiration_date == friday)].shape[0] > 0
    assert con.execute("SELECT count(*) FROM iv_term_structure_by_expiration WHERE expiration_date <= as_of_date"
                       ).fetchone()[0] == 0


def test_vrp_matches_reference_and_fills_in(daily, inputs) -> None:
    con = daily["con"]
    candles = inputs["candles"]
    curves = ref_curves(inputs["iv_term_structure"])
    metrics = inputs["market_metrics"]
    got = {(r["symbol"], r["as_of_date"]): r for r in rows(con, "SELECT * FROM vrp")}
    assert set(got) == set(zip(metrics.symbol, metrics.as_of_date))
    complete = 0
    for (symbol, as_of), row in got.items():
        curve = curves.get((symbol, as_of))
        iv30 = ref_constant_maturity(curve, 30) if curve else None
        source = "constant_maturity"
        if iv30 is None:
            iv30 = float(metrics[(metrics.symbol == symbol) & (metrics.as_of_date == as_of)].iv_30_day.iloc[0])
            source = "tastytrade_iv30"
        hv = ref_forward_hv(candles, symbol, as_of)
        assert row["iv30_source"] == source and close(row["iv30"], iv30)
        assert close(row["hv_forward_21"], hv), (symbol, as_of)
        assert close(row["vrp"], None if hv is None else iv30 - hv)
        i = SESSIONS.index(as_of)
        if i + 21 < len(SESSIONS):
            assert row["forward_end_date"] == SESSIONS[i + 21]
        complete += hv is not None
    assert complete > 100
    # The last 21 sessions cannot know their future yet; AAA's windows over the missing bar are NULL.
    assert all(got[("SPX", d)]["vrp"] is None for d in SESSIONS[-21:])
    assert got[("SPX", SESSIONS[-21])]["forward_sessions"] == 20
    assert got[("SPX", SESSIONS[-22])]["forward_sessions"] == 21
    gap = SESSIONS.index(MISSING_CANDLE[1])
    assert all(got[("AAA", d)]["vrp"] is None for d in SESSIONS[gap - 21 : gap + 1] if ("AAA", d) in got)
    assert got[("AAA", SESSIONS[gap + 1])]["vrp"] is not None
    assert got[("AAA", AAA_NO_TERM_STRUCTURE)]["iv30_source"] == "tastytrade_iv30"
    # Along the daily loads: on session i, the row of session i-20 still waits, i-21 just filled in.
    along = daily["along"]["vrp"]
    for i in range(40, len(SESSIONS)):
        day = SESSIONS[i]
        seen = along[day]
        older, newer = SESSIONS[i - 21], SESSIONS[i - 20]
        if ("SPX", older) in got:
            assert seen[older]["vrp"] is not None and close(seen[older]["vrp"], got[("SPX", older)]["vrp"])
        if ("SPX", newer) in got:
            assert seen[newer]["vrp"] is None and seen[newer]["forward_sessions"] == 20


def test_vrp_summary(daily) -> None:
    con = daily["con"]
    for symbol in START_PRICE:
        values = [r[0] for r in con.execute("SELECT vrp FROM vrp WHERE symbol = ? AND vrp IS NOT NULL",
                                            [symbol]).fetchall()]
        summary = rows(con, "SELECT * FROM vrp_summary WHERE symbol = ?", [symbol])[0]
        assert summary["dates"] == len(values)
        if values:
            assert close(summary["mean_vrp"], float(np.mean(values)))
            assert close(summary["positive_share"], float(np.mean(np.array(values) > 0)))
        else:
            assert summary["mean_vrp"] is None and summary["positive_share"] is None


def ref_moves(inputs) -> dict:
    candles = inputs["candles"].set_index(["symbol", "session_date"])["close"]
    curves = ref_curves(inputs["iv_term_structure"])
    metrics = inputs["market_metrics"]
    out = {}
    for (symbol, d), around in REPORTS.items():
        if around is None:
            out[(symbol, d)] = {"move": None, "implied_move": None}
            continue
        before, after = around
        move = math.log(candles[(symbol, after)] / candles[(symbol, before)])
        # The last snapshot at or before the close the move starts from.
        snaps = sorted(metrics[(metrics.symbol == symbol) & (metrics.as_of_date <= before)
                               & (metrics.as_of_date >= d - timedelta(days=10))].as_of_date)
        implied = source = None
        when = TIME_OF_DAY.get((symbol, d))
        if snaps:
            snap = snaps[-1]
            curve = [c for c in curves.get((symbol, snap), [])  # straddles d, by its time of day
                     if (snap < d if when == "BMO" else snap <= d) and (d < c[2] if when == "AMC" else d <= c[2])]
            if curve:
                implied, source = curve[0][1] * math.sqrt(curve[0][3]), "term_structure"
            else:
                iv30 = float(metrics[(metrics.symbol == symbol) & (metrics.as_of_date == snap)].iv_30_day.iloc[0])
                implied, source = iv30 * math.sqrt((after - snap).days / 365), "iv30"
        out[(symbol, d)] = {"before": before, "after": after, "move": move, "implied_move": implied,
                            "source": source, "snapshot": snaps[-1] if snaps else None}
    return out


def test_earnings_moves_around_known_dates(daily, inputs) -> None:
    con = daily["con"]
    expected = ref_moves(inputs)
    got = {(r["symbol"], r["occurred_date"]): r for r in rows(con, "SELECT * FROM earnings_moves")}
    assert set(got) == {(s, QUARTER[(s, d)]) for s, d in REPORTS}
    for key, ref in expected.items():
        row = got[(key[0], QUARTER[key])]
        assert close(row["move"], ref["move"]), key
        assert close(row["implied_move"], ref["implied_move"]), key
        if REPORTS[key] is None:  # never announced: no day, no sessions, no move, and why
            assert row["report_date"] is None and row["session_before"] is None and row["session_after"] is None
            assert row["abs_move"] is None and row["exceeded_implied"] is None
            assert "report date unknown" in row["move_note"] and "before this project's history" in row["move_note"]
            continue
        assert row["report_date"] == key[1] and row["report_time_of_day"] == TIME_OF_DAY.get(key), key
        assert (row["session_before"], row["session_after"]) == (ref["before"], ref["after"]), key
        assert close(row["abs_move"], abs(ref["move"]))
        assert row["snapshot_date"] == ref["snapshot"] and row["implied_source"] == ref["source"]
        want = None if ref["implied_move"] is None else abs(ref["move"]) > ref["implied_move"]
        assert row["exceeded_implied"] == want, key
    assert got[("BBB", date(2025, 6, 30))]["move"] is None  # reported before BBB's first snapshot
    assert got[("AAA", date(2025, 9, 30))]["implied_source"] == "iv30"
    assert got[("AAA", date(2025, 6, 30))]["exceeded_implied"] is True  # the 9 % jump
    # After the close on a Friday: the week's Friday expiration settled before it, so the straddle
    # is the next one (the one rule with the time of day).
    assert got[("AAA", date(2025, 6, 30))]["implied_expiration"] == date(2025, 8, 1)
    assert got[("BBB", date(2025, 9, 30))]["move_note"].startswith("time of day unknown")
    # The report dated the day before Thanksgiving landed before its session after: NULL, then filled in.
    along = daily["along"]["moves"]
    key = ("AAA", date(2025, 11, 26))
    assert along[date(2025, 11, 26)][key]["move"] is None
    assert close(along[date(2025, 11, 28)][key]["move"], expected[key]["move"])


def test_next_earnings(daily, inputs) -> None:
    con = daily["con"]
    expected = ref_moves(inputs)
    got = {r["symbol"]: r for r in rows(con, "SELECT * FROM next_earnings")}
    assert set(got) == set(START_PRICE)
    last = SESSIONS[-1]
    aaa = got["AAA"]
    assert aaa["earnings_date"] == date(2026, 1, 29) and aaa["days_to_earnings"] == (date(2026, 1, 29) - last).days
    moves = [abs(expected[k]["move"]) for k in expected if k[0] == "AAA" and expected[k]["move"] is not None]
    assert aaa["moves_counted"] == len(moves) == 3
    assert close(aaa["median_abs_move"], float(np.median(moves)))
    assert close(aaa["max_abs_move"], max(moves))
    exceeded = sum(bool(expected[k]["implied_move"] is not None and abs(expected[k]["move"]) > expected[k]["implied_move"])
                   for k in expected if k[0] == "AAA" and expected[k]["move"] is not None)
    assert aaa["exceeded_last_8"] == exceeded
    curve = [c for c in ref_curves(inputs["iv_term_structure"])[("AAA", last)] if c[2] >= date(2026, 1, 29)][0]
    candles = inputs["candles"]
    price = float(candles[(candles.symbol == "AAA") & (candles.session_date == last)].close.iloc[0])
    fraction = curve[1] * math.sqrt(curve[3])
    assert aaa["straddle_expiration"] == curve[2]
    assert close(aaa["expected_move_fraction"], fraction)
    assert close(aaa["expected_move"], price * fraction, 1e-7)
    # BBB's last report is past and the metrics know no next one.
    bbb = got["BBB"]
    assert bbb["earnings_date"] is None and bbb["expected_move"] is None and bbb["moves_counted"] == 1
    assert bbb["reports_undated"] == 1 and aaa["reports_undated"] == 1
    assert aaa["last_report_date"] == date(2025, 11, 26) and aaa["earnings_time_of_day"] == "AMC"
    assert got["SPX"]["moves_counted"] == 0 and got["SPX"]["exceeded_last_8"] == 0


def ref_rank(metrics: pd.DataFrame, symbol: str) -> dict:
    own = metrics[metrics.symbol == symbol].sort_values("as_of_date")
    latest = own.iloc[-1]
    window = set(sessions_back(latest.as_of_date, 252))
    hist = own[own.as_of_date.isin(window)].implied_volatility.to_numpy()
    iv = latest.implied_volatility
    return {"n": len(hist), "rank": (iv - hist.min()) / (hist.max() - hist.min()),
            "percentile": float(np.mean(hist < iv))}


def test_iv_rank_own_and_threshold(daily, inputs) -> None:
    con = daily["con"]
    metrics = inputs["market_metrics"]
    got = {r["symbol"]: r for r in rows(con, "SELECT * FROM iv_rank_own")}
    for symbol in ("AAA", "SPX", "BBB"):
        ref = ref_rank(metrics, symbol)
        row = got[symbol]
        assert row["sessions_of_history"] == ref["n"] >= 20
        assert close(row["iv_rank_own"], ref["rank"]) and close(row["iv_percentile_own"], ref["percentile"])
        assert row["iv_rank_own_reason"] is None
    ccc = got["CCC"]
    assert ccc["sessions_of_history"] == 10
    assert ccc["iv_rank_own"] is None and ccc["iv_percentile_own"] is None
    assert ccc["iv_rank_own_reason"] == "only 10 sessions of history (need 20)"


def test_threshold_is_configurable(inputs, tmp_path) -> None:
    con = open_db(tmp_path / "w.duckdb")
    days = SESSIONS[-12:]
    for table, column in (("market_metrics", "as_of_date"), ("iv_term_structure", "as_of_date"),
                          ("candles", "session_date")):
        frame = inputs[table]
        _insert(con, table, frame[frame[column].isin(days)])
    refresh_vol_history(con, days, min_rank_sessions=8)
    row = rows(con, "SELECT * FROM iv_rank_own WHERE symbol = 'CCC'")[0]
    ref = ref_rank(inputs["market_metrics"], "CCC")
    assert close(row["iv_rank_own"], ref["rank"]) and row["min_rank_sessions"] == 8
    bbb = rows(con, "SELECT * FROM iv_rank_own WHERE symbol = 'BBB'")[0]
    assert bbb["sessions_of_history"] == 12 and bbb["iv_rank_own_reason"] is None
    refresh_vol_history(con, days[-1:], min_rank_sessions=11)
    assert rows(con, "SELECT * FROM iv_rank_own WHERE symbol = 'CCC'")[0]["iv_rank_own_reason"] == \
        "only 10 sessions of history (need 11)"
    assert con.execute("SELECT count(*) FROM vol_history_settings").fetchone()[0] == 1
    with pytest.raises(ValueError):
        refresh_vol_history(con, days, min_rank_sessions=0)
    con.close()


def test_idempotent_and_equal_to_one_shot_refresh(daily, inputs, tmp_path) -> None:
    con = daily["con"]
    before = state(con)
    refresh_vol_history(con, [SESSIONS[-1]])
    refresh_vol_history(con, SESSIONS[50:53])
    after = state(con)
    # Stored rows are identical; views aggregate floats in storage order, so compare those closely.
    for name in TABLE_NAMES:
        assert after[name] == before[name], name
    assert_same(after, before, VIEW_NAMES)
    # Everything loaded first, then a single refresh over all sessions: the same tables.
    full = open_db(tmp_path / "full.duckdb")
    for table in ("candles", "market_metrics", "iv_term_structure", "earnings_calendar", "earnings_reports"):
        _insert(full, table, inputs[table].drop(columns="report_date", errors="ignore"))
    refresh_vol_history(full, SESSIONS)
    once = state(full)
    full.close()
    assert_same(once, before, ("iv_constant_maturity", "vrp", "earnings_moves", *VIEW_NAMES))


def assert_same(left: dict[str, list], right: dict[str, list], names) -> None:
    for name in names:
        assert len(left[name]) == len(right[name]), name
        for a, b in zip(left[name], right[name]):
            for x, y in zip(a, b):
                assert close(x, y, 1e-12) if isinstance(x, float) else x == y, (name, a, b)


def test_refresh_inside_a_callers_transaction_and_without_sessions(tmp_path) -> None:
    con = open_db(tmp_path / "w.duckdb")
    con.execute("BEGIN TRANSACTION")
    result = refresh_vol_history(con, [])
    con.execute("ROLLBACK")
    assert result["vrp"] == 0
    assert con.execute("SELECT count(*) FROM vol_history_settings").fetchone()[0] == 0
    refresh_vol_history(con, [])
    for view in VIEW_NAMES:
        con.execute(f"SELECT * FROM {view}").fetchall()
    con.close()


def test_the_pip_duckdb_cli_reads_the_vol_history_views(inputs, tmp_path) -> None:
    cli = Path(sys.executable).with_name("duckdb")
    assert cli.exists(), "duckdb-cli is a dev dependency"
    path = tmp_path / "w.duckdb"
    con = open_db(path)
    days = SESSIONS[-30:]
    for table, column in (("market_metrics", "as_of_date"), ("iv_term_structure", "as_of_date"),
                          ("candles", "session_date"), ("earnings_calendar", "as_of_date"),
                          ("earnings_reports", "occurred_date")):
        frame = inputs[table].drop(columns="report_date", errors="ignore")
        _insert(con, table, frame[frame[column].isin(days)] if table != "earnings_reports" else frame)
    refresh_vol_history(con, days)
    expected = con.execute("SELECT count(*) FROM next_earnings WHERE expected_move IS NOT NULL").fetchone()[0]
    con.close()
    queries = " ".join(f"SELECT '{v}', count(*) FROM {v};" for v in VIEW_NAMES)
    done = subprocess.run(
        [str(cli), "-readonly", "-csv", str(path), "-c",
         queries + " SELECT count(*) FROM next_earnings WHERE expected_move IS NOT NULL;"],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert expected == 1 and done.stdout.strip().endswith("1")
    for view in VIEW_NAMES:
        assert f"{view}," in done.stdout
