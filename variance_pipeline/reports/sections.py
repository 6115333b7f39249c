"""The sections of the evening report that read the book and the market: the headline, manage
tonight, risk by underlying, this week's expected moves and the earnings calendar.

Each function takes a read-only connection and returns plain data for the template, with the
sentences (``notes``) a trader reads when something is missing: no balances yet, an account
without positions, a first evening. The SQL reads the warehouse's views (``account_summary``,
``manage_tonight``, ``portfolio_risk``, ``expected_move``) and only joins what the page shows
beside them; ``next_earnings`` is passed in, read once by ``evening.py`` (it is the costliest view).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import duckdb

from variance_pipeline.reports import svg
from variance_pipeline.reports.formatting import day, number, pct, short_day


def query_rows(con: duckdb.DuckDBPyConnection, sql: str, params: Any = None) -> list[dict[str, Any]]:
    cursor = con.execute(sql, params) if params is not None else con.execute(sql)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


def query_one(con: duckdb.DuckDBPyConnection, sql: str, params: Any = None) -> dict[str, Any] | None:
    rows = query_rows(con, sql, params)
    return rows[0] if rows else None


@dataclass
class Headline:
    as_of: date | None = None
    basis: str | None = None  # "account_summary", "portfolio_risk" (Greeks only) or None
    values: dict[str, Any] = field(default_factory=dict)  # the account_summary 'ALL' row
    band: dict[str, Any] | None = None  # the bp_guideline row VIX falls in
    accounts: list[dict[str, Any]] = field(default_factory=list)  # per account, when more than one
    gauge: svg.Gauge | None = None
    trend: svg.Sparkline | None = None
    trend_evenings: int = 0
    notes: list[str] = field(default_factory=list)


def headline(con: duckdb.DuckDBPyConnection, evening: date | None) -> Headline:
    """``account_summary``'s ALL row; without balances, the summed Greeks of ``portfolio_risk``."""
    result = Headline()
    summary = query_rows(con, "SELECT * FROM account_summary")
    everything = next((r for r in summary if r["account_number"] == "ALL"), None)
    if everything is not None:
        result.basis, result.values, result.as_of = "account_summary", everything, everything["as_of_date"]
        result.accounts = [r for r in summary if r["account_number"] != "ALL"] if len(summary) > 2 else []
        vix = number(everything["vix"])
        if vix is not None:
            result.band = query_one(con, "SELECT * FROM bp_guideline WHERE ? >= vix_from AND ? < vix_to", [vix, vix])
        else:
            result.notes.append("No VIX close in the warehouse on or before the account snapshot, so BP used has "
                                "no guideline band tonight (VIX is fetched with the candles: add VIX to the watchlist).")
        result.gauge = svg.bp_gauge(everything["bp_used_pct"], everything["bp_guideline_max_pct"])
        history = query_rows(con, """
            SELECT as_of_date, sum(net_liquidating_value) AS net_liq FROM balances
            GROUP BY as_of_date ORDER BY as_of_date DESC LIMIT 60""")
        result.trend = svg.sparkline([r["net_liq"] for r in reversed(history)])
        result.trend_evenings = len(history)
        if everything["theta_per_day"] is None and everything["beta_weighted_delta"] is None:
            result.notes.append("No open positions with model Greeks on the account snapshot's evening: theta, "
                                "delta and vega are shown as a dash (an account without positions holds none).")
        if everything["net_liq_change"] is None:
            result.notes.append("No change in net liq yet: this is the first evening with account balances, "
                                "so there is no earlier one to compare with.")
        if evening is not None and result.as_of is not None and result.as_of < evening:
            result.notes.append(
                f"The account figures are from {day(result.as_of)}, not tonight ({day(evening)}): tonight's account "
                "snapshot did not reach the warehouse (account_book did not run or failed). Market data below is "
                "tonight's."
            )
        return result
    greeks = query_one(con, """
        SELECT max(as_of_date) AS as_of_date, sum(position_theta) AS theta_per_day,
               sum(position_vega) AS vega_per_vol_point, sum(beta_weighted_delta) AS beta_weighted_delta,
               count(*) AS underlyings
        FROM portfolio_risk WHERE account_number = 'ALL'""")
    if greeks and greeks["underlyings"]:
        result.basis, result.as_of = "portfolio_risk", greeks["as_of_date"]
        result.values = {k: greeks[k] for k in ("theta_per_day", "vega_per_vol_point", "beta_weighted_delta")}
        result.notes.append(
            "No account balances in the warehouse, so net liq and BP used are unknown: the account snapshot has "
            "never been loaded (account_book did not run, or failed). Theta, delta and vega below are summed from the "
            "model Greeks of the positions."
        )
    else:
        held = con.execute(
            "SELECT count(*) FROM positions WHERE as_of_date = (SELECT max(as_of_date) FROM positions)"
        ).fetchone()[0]
        result.notes.append(
            "No account data: the warehouse holds no account balances (the account snapshot has never been "
            "loaded), so net liq and BP used are unknown. "
            + ("No positions are held either (an account without positions, or a watchlist-only set-up): there "
               "is no book to size tonight." if held == 0 else
               f"{held} positions are held, but no model Greeks were computed for them.")
        )
    return result


REASON_ORDER = ("tested", "dte", "earnings", "early_assignment", "bp_concentration", "profit_target")


def reason_words(row: dict[str, Any], rules: dict[str, Any]) -> list[dict[str, str]]:
    """Each reason code of a ``manage_tonight`` row as words with its numbers and the threshold."""
    words = {
        "profit_target": f"{pct(row['pct_of_max_profit'], digits=0)} of max profit (target "
                         f"{pct(rules.get('profit_target'), digits=0)}): take it",
        "dte": f"{row['days_to_expiration']} days to expiration (manage at {rules.get('manage_dte')})",
        "tested": "tested: short leg in the money or |\u0394| \u2265 "
                  f"{number(rules.get('tested_delta')) or 0:.2f}"
                  + (f" (short \u0394 {number(row['short_delta']):.2f})" if number(row["short_delta"]) is not None else ""),
        "earnings": f"earnings {short_day(row['earnings_date'])} before expiration",
        "early_assignment": f"early-assignment risk: ex-dividend {short_day(row['ex_dividend_date'])}",
        "bp_concentration": f"{pct(row['bp_share_of_net_liq'])} of net liq in buying power (limit "
                            f"{pct(rules.get('bp_concentration'), digits=0)})",
    }
    codes = sorted(row["reasons"] or [], key=lambda c: REASON_ORDER.index(c) if c in REASON_ORDER else 99)
    return [{"code": code, "text": words.get(code, code)} for code in codes]


@dataclass
class Manage:
    rows: list[dict[str, Any]] = field(default_factory=list)
    open_groups: int = 0
    rules: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def manage(con: duckdb.DuckDBPyConnection) -> Manage:
    result = Manage()
    result.rules = query_one(con, "SELECT * FROM book_settings WHERE id = 1") or {}
    result.rows = query_rows(con, "SELECT * FROM manage_tonight")
    for row in result.rows:
        row["reason_words"] = reason_words(row, result.rules)
    result.open_groups = con.execute("SELECT count(*) FROM book_groups").fetchone()[0]
    positions = con.execute(
        "SELECT count(*) FROM positions WHERE as_of_date = (SELECT max(as_of_date) FROM positions)"
    ).fetchone()[0]
    if positions == 0:
        result.notes.append("No open positions in the latest positions snapshot: nothing to manage tonight.")
    elif result.open_groups == 0:
        result.notes.append(
            f"{positions} positions are held, but no P&L per position was computed for the latest snapshot "
            "(position_pnl did not run), so nothing can be judged against the rules."
        )
    elif not result.rows:
        result.notes.append(f"All {result.open_groups} open trades are within the rules: nothing to manage tonight.")
    return result


@dataclass
class Risk:
    rows: list[dict[str, Any]] = field(default_factory=list)
    total: dict[str, Any] = field(default_factory=dict)
    largest_bwd: float = 0.0
    as_of: date | None = None
    notes: list[str] = field(default_factory=list)


RISK_SQL = """
WITH risk AS (SELECT * FROM portfolio_risk WHERE account_number = 'ALL'),
latest_margin AS (
    SELECT * FROM margin_requirements QUALIFY as_of_date = max(as_of_date) OVER (PARTITION BY account_number)
),
margin AS (
    SELECT underlying_symbol, sum(buying_power) AS buying_power FROM latest_margin GROUP BY underlying_symbol
),
net AS (
    SELECT sum(net_liquidating_value) AS net_liq
    FROM (SELECT * FROM balances QUALIFY as_of_date = max(as_of_date) OVER (PARTITION BY account_number))
)
SELECT coalesce(r.underlying_symbol, m.underlying_symbol)              AS symbol,
       r.as_of_date, r.positions, r.beta_weighted_delta, r.position_theta, r.position_vega,
       r.share_of_account_bwd, m.buying_power,
       m.buying_power / nullif((SELECT net_liq FROM net), 0)          AS bp_share_of_net_liq
FROM risk AS r
FULL OUTER JOIN margin AS m ON m.underlying_symbol = r.underlying_symbol
ORDER BY abs(coalesce(r.beta_weighted_delta, 0)) DESC, symbol
"""


def risk(con: duckdb.DuckDBPyConnection, evening: date, earnings: dict[str, dict[str, Any]]) -> Risk:
    """``portfolio_risk`` (all accounts) beside the margin report's buying power and the next earnings."""
    result = Risk()
    result.rows = query_rows(con, RISK_SQL)
    if not result.rows:
        result.notes.append("No risk to show: no positions with model Greeks and no margin report in the warehouse.")
        return result
    for row in result.rows:
        report = earnings.get(row["symbol"])
        row["earnings_date"] = report["earnings_date"] if report else None
        row["days_to_earnings"] = (report["earnings_date"] - evening).days if report else None
    result.as_of = max((r["as_of_date"] for r in result.rows if r["as_of_date"] is not None), default=None)
    for key in ("positions", "beta_weighted_delta", "position_theta", "position_vega", "buying_power", "bp_share_of_net_liq"):
        known = [number(r[key]) for r in result.rows if number(r[key]) is not None]
        result.total[key] = sum(known) if known else None
    result.largest_bwd = max((abs(number(r["beta_weighted_delta"]) or 0.0) for r in result.rows), default=0.0)
    if all(r["buying_power"] is None for r in result.rows):
        result.notes.append("Buying power per underlying is unknown: no margin report in the warehouse "
                            "(the account snapshot has not been loaded).")
    return result


@dataclass
class Moves:
    week_end: date | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)
    largest_move_pct: float = 0.0
    earnings: list[dict[str, Any]] = field(default_factory=list)
    horizon: int = 45
    notes: list[str] = field(default_factory=list)
    earnings_notes: list[str] = field(default_factory=list)


NAMES_SQL = """
WITH lu AS (SELECT symbol, source FROM universe WHERE as_of_date = (SELECT max(as_of_date) FROM universe))
SELECT symbol, source LIKE 'held%' AS held FROM lu
UNION ALL
-- No universe landed (a warehouse loaded from partitions alone): every symbol with a term structure.
SELECT DISTINCT symbol, false FROM iv_term_structure WHERE NOT EXISTS (SELECT 1 FROM lu)
"""

MOVES_SQL = """
SELECT symbol, as_of_date, expiration_date, days_to_expiration, underlying_price, implied_volatility, expected_move,
       expected_move / nullif(underlying_price, 0) AS move_pct, lower, upper, earnings_before_expiration
FROM expected_move WHERE expiration_date >= $week_end
QUALIFY row_number() OVER (PARTITION BY symbol ORDER BY expiration_date) = 1
"""


def week_end(evening: date) -> date:
    """The Friday that ends the coming week: this Friday, or next Friday on a Friday evening."""
    ahead = (4 - evening.weekday()) % 7 or 7
    return evening + timedelta(days=ahead)


def moves(con: duckdb.DuckDBPyConnection, evening: date, horizon: int, earnings: dict[str, dict[str, Any]]) -> Moves:
    """This week's expected move of every held and watched name, and who reports within ``horizon`` days."""
    result = Moves(week_end=week_end(evening), horizon=horizon)
    names = {row["symbol"]: row["held"] for row in query_rows(con, NAMES_SQL)}
    by_symbol = {row["symbol"]: row for row in query_rows(con, MOVES_SQL, {"week_end": result.week_end})}
    result.rows = [{**by_symbol[s], "held": held} for s, held in names.items() if s in by_symbol]
    result.rows.sort(key=lambda r: (not r["held"], r["symbol"]))
    result.largest_move_pct = max((number(r["move_pct"]) or 0.0 for r in result.rows), default=0.0)
    if not result.rows:
        result.notes.append("No expected moves: no IV term structure with an expiration after "
                            f"{day(result.week_end)} in the warehouse yet (it comes with the volatility metrics snapshot).")
    elif any(r["expiration_date"] > result.week_end for r in result.rows):
        result.notes.append(
            f"Each move runs to the first expiration on or after {short_day(result.week_end)}; a name without a "
            "weekly expiration shows its next one (see its days)."
        )
    last = evening + timedelta(days=horizon)
    result.earnings = [
        {**report, "held": names[s], "days_away": (report["earnings_date"] - evening).days}
        for s, report in earnings.items()
        if s in names and report["earnings_date"] <= last
    ]
    result.earnings.sort(key=lambda r: (r["earnings_date"], not r["held"], r["symbol"]))
    if not result.earnings:
        result.earnings_notes.append(f"No held or watched name reports earnings in the next {horizon} days.")
    elif not any(number(r["median_abs_move"]) is not None for r in result.earnings):
        result.earnings_notes.append("No historic moves yet: past earnings reports are fetched once per name, "
                                     "and their moves need the candles around each report date.")
    return result
