"""The evening report's sections against real DuckDB warehouses built from crafted lake data.

Each warehouse is loaded by the pipeline's own load; every expected value is worked out here from
the crafted inputs (which symbol fails which rule, what a win rate is), never by the report's code.
Also: the set-ups that must render a sentence instead of an error (no positions, watchlist only),
the journal once a trades table exists, data health from the lake, escaping, atomic files, the
``make report`` entry, the number formats, and the mail's settings and SMTP conversation.
"""

from __future__ import annotations

import dataclasses
import re
from datetime import date, datetime, timedelta, timezone
from email.message import EmailMessage
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from support import (
    SMTP_PASSWORD,
    SmtpServer,
    declared_frame,
    land_account_snapshot,
)
from variance_pipeline import demo
from variance_pipeline.calendar import sessions_back
from variance_pipeline.candles.store import CandleStore
from variance_pipeline.lake.layout import Lake
from variance_pipeline.reports import cli, formatting
from variance_pipeline.reports.evening import build_report, evening_context
from variance_pipeline.reports.mail import MailError, report_subject, send
from variance_pipeline.reports.screen import Screen
from variance_pipeline.reports.sections import week_end
from variance_pipeline.schemas.candles import CANDLES
from variance_pipeline.schemas.journal import TRADES
from variance_pipeline.schemas.market_metrics import MARKET_METRICS
from variance_pipeline.schemas.positions import POSITIONS
from variance_pipeline.schemas.realized_volatility import REALIZED_VOLATILITY
from variance_pipeline.schemas.universe import UNIVERSE
from variance_pipeline.settings import ConfigurationError, Settings, parse_smtp_url
from variance_pipeline.warehouse.connection import warehouse_connection
from variance_pipeline.warehouse.load import load_sessions

EVENING = date(2025, 11, 25)  # a Tuesday
FETCHED = datetime(2025, 11, 25, 22, tzinfo=timezone.utc)
SESSIONS = sessions_back(EVENING, 25)

# symbol: (today's IV, history IVs low..high, HV20, liquidity, earnings in days or None, sessions of history, held)
NAMES = {
    "PASS": (0.40, (0.20, 0.35), 0.25, 4, None, 25, False),
    "LATE": (0.40, (0.20, 0.35), 0.25, 4, 60, 25, False),  # earnings after the 45-day window: passes
    "LOWRANK": (0.20, (0.25, 0.50), 0.10, 4, None, 25, False),  # IV at its lowest of the history
    "CHEAP": (0.40, (0.20, 0.35), 0.50, 4, None, 25, False),  # IV below HV20
    "ILLIQ": (0.40, (0.20, 0.35), 0.25, 1, None, 25, False),
    "EARN": (0.40, (0.20, 0.35), 0.25, 4, 10, 25, False),
    "NEW": (0.40, (0.20, 0.35), 0.25, 4, None, 5, False),  # too few evenings for an own IV rank
    "HELD": (0.40, (0.20, 0.35), 0.25, 4, None, 25, True),
}


def own_rank_and_percentile(name: str) -> tuple[float, float]:
    """iv_rank_own and iv_percentile_own as the view defines them, from the crafted series."""
    series = iv_series(name)
    today = series[-1]
    return (today - min(series)) / (max(series) - min(series)), sum(v < today for v in series) / len(series)


def iv_series(name: str) -> list[float]:
    today, (low, high), *_rest = NAMES[name]
    history = NAMES[name][5]
    return [*np.linspace(low, high, history - 1), today]


def land_market(lake: Lake, names: dict = NAMES) -> None:
    """Metrics over the evenings, tonight's candles, realised volatility and universe (SPY and VIX for
    the guideline band), and a short put on every held name."""
    for i, day in enumerate(SESSIONS):
        rows = []
        for name, (_, _, _, liquidity, earnings, history, _) in names.items():
            offset = len(SESSIONS) - history
            if i < offset:
                continue
            rows.append({"as_of_date": day, "symbol": name, "implied_volatility": iv_series(name)[i - offset],
                         "liquidity_rating": liquidity, "fetched_at": FETCHED,
                         "earnings_date": EVENING + timedelta(days=earnings) if earnings else None})
        lake.write_partition("market_metrics", day, declared_frame(MARKET_METRICS, pd.DataFrame(rows)))
    symbols = [*names, "SPY", "VIX"]
    closes = [100.0] * len(names) + [668.0, 17.2]
    CandleStore(lake.candles_dir).add(declared_frame(CANDLES, {
        "symbol": symbols, "yahoo_ticker": symbols, "session_date": [EVENING] * len(symbols), "open": closes,
        "high": closes, "low": closes, "close": closes, "adj_close": closes}))
    lake.write_partition("realized_volatility", EVENING, declared_frame(REALIZED_VOLATILITY, {
        "symbol": list(names), "session_date": [EVENING] * len(names), "close": [100.0] * len(names),
        "hv20": [spec[2] for spec in names.values()], "returns_available": [252] * len(names)}))
    lake.write_partition("universe", EVENING, declared_frame(UNIVERSE, {
        "as_of_date": [EVENING] * len(names), "symbol": list(names),
        "source": ["held" if spec[6] else "watchlist" for spec in names.values()],
        "held_positions": [1 if spec[6] else 0 for spec in names.values()], "positions_as_of": [EVENING] * len(names)}))
    held = [name for name, spec in names.items() if spec[6]]
    lake.write_partition("positions", EVENING, declared_frame(POSITIONS, {
        "as_of_date": [EVENING] * len(held), "account_number": ["5WT00001"] * len(held),
        "symbol": [f"{n:<6}251219P00090000" for n in held], "instrument_type": ["Equity Option"] * len(held),
        "underlying_symbol": held, "root_symbol": held, "quantity": [-1.0] * len(held),
        "quantity_direction": ["Short"] * len(held), "multiplier": [100.0] * len(held), "fetched_at": [FETCHED] * len(held)}))


def load_everything(lake: Lake) -> None:
    days = sorted({d for dataset in ("market_metrics", "candles", "balances", "positions") for d in lake.partition_days(dataset)})
    with warehouse_connection(lake.warehouse_path) as con:
        load_sessions(con, lake, days)


@pytest.fixture
def market(tmp_path: Path) -> Lake:
    lake = Lake(tmp_path, source="simulator")
    land_market(lake)
    load_everything(lake)
    return lake


def context_of(lake: Lake, **kwargs: object):  # noqa: ANN201 - EveningContext
    with warehouse_connection(lake.warehouse_path, read_only=True) as con:
        return evening_context(con, lake, **kwargs)


# -- the candidate screen -----------------------------------------------------------------------


def test_the_screen_passes_exactly_the_names_that_meet_every_threshold(market: Lake) -> None:
    screen = Screen()
    expected = set()
    for name, (iv, _, hv20, liquidity, earnings, history, held) in NAMES.items():
        rank, percentile = own_rank_and_percentile(name) if history >= 20 else (None, None)
        ok = (not held and rank is not None and (rank >= screen.min_iv_rank or percentile >= screen.min_iv_percentile)
              and iv / hv20 > screen.min_iv_hv_ratio and liquidity >= screen.min_liquidity_rating
              and (earnings is None or earnings > screen.dte_window))
        if ok:
            expected.add(name)
    assert expected == {"PASS", "LATE"}  # the crafted data means what its names say
    candidates = context_of(market).candidates
    assert {row["symbol"] for row in candidates.passed} == expected
    reasons = {row["symbol"]: "; ".join(row["reasons"]) for row in candidates.rejected}
    assert "too low" in reasons["LOWRANK"]
    assert "IV / HV20 0.80\u00d7 not above 1.00\u00d7" in reasons["CHEAP"]
    assert "liquidity 1 below 3" in reasons["ILLIQ"]
    assert "earnings in 10 days" in reasons["EARN"]
    assert "no own IV rank yet (only 5 sessions of history (need 20))" in reasons["NEW"]
    assert reasons["HELD"] == "already held"
    passed = {row["symbol"]: row for row in candidates.passed}
    assert passed["PASS"]["iv_rank_own"] == pytest.approx(own_rank_and_percentile("PASS")[0])


def test_thresholds_are_printed_and_change_the_screen(market: Lake) -> None:
    strict = Screen(min_iv_hv_ratio=1.7, dte_window=90)
    context = context_of(market, screen=strict)
    assert context.candidates.passed == []  # 0.40 / 0.25 = 1.6 is not above 1.7; LATE reports inside 90 days
    html = build_report(market, screen=strict).html
    assert "&gt; 1.70\u00d7" in html and "90 days" in html
    assert "No candidate passes tonight" in html


# -- set-ups that must render a sentence --------------------------------------------------------


def test_an_account_without_positions_shows_its_balances_and_says_nothing_is_held(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    names = {k: v for k, v in NAMES.items() if not v[6]}
    land_market(lake, names)
    land_account_snapshot(lake, EVENING, {"5WT00001": 50_000.0}, used_share=0.0)
    load_everything(lake)
    context = context_of(lake)
    assert context.headline.basis == "account_summary"
    assert context.headline.values["net_liquidating_value"] == 50_000.0
    assert any("No open positions" in note for note in context.headline.notes)
    assert context.manage.notes == ["No open positions in the latest positions snapshot: nothing to manage tonight."]
    assert context.risk.rows == [] and context.risk.notes
    html = build_report(lake).html
    assert 'data-metric="net_liquidating_value" data-value="50000.0"' in html


def test_a_watchlist_only_set_up_renders_the_market_and_says_there_is_no_book(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    land_market(lake, {k: v for k, v in NAMES.items() if not v[6]})
    load_everything(lake)
    context = context_of(lake)
    assert context.headline.basis is None
    assert "watchlist-only set-up" in context.headline.notes[0]
    assert {row["symbol"] for row in context.candidates.passed} == {"PASS", "LATE"}
    assert context.manage.notes == ["No open positions in the latest positions snapshot: nothing to manage tonight."]


def test_the_earnings_calendar_keeps_the_usual_trade_window(market: Lake) -> None:
    earnings = context_of(market).moves.earnings
    assert [(row["symbol"], row["days_away"]) for row in earnings] == [("EARN", 10)]


def test_the_week_ends_on_this_friday_or_on_the_next_one_on_a_friday() -> None:
    assert week_end(date(2025, 11, 25)) == date(2025, 11, 28)
    assert week_end(date(2025, 11, 28)) == date(2025, 12, 5)
    assert week_end(date(2025, 12, 1)) == date(2025, 12, 5)


# -- the journal --------------------------------------------------------------------------------


def _closed_trades(con, trades: list[tuple[date, str, str, float]]) -> None:
    """Closed trades into the warehouse's own ``trades`` table: the given columns, the outcome by
    the sign of the P&L, and plain values for the other NOT NULL columns of its declaration."""
    plain = {"VARCHAR": "x", "DATE": EVENING, "TIMESTAMP WITH TIME ZONE": FETCHED, "BIGINT": 1, "DOUBLE": 0.0, "BOOLEAN": False}
    for i, (closed, underlying, strategy, pnl) in enumerate(trades):
        row = {c.name: plain[c.sql_type] for c in TRADES.columns if not c.nullable}
        row.update(trade_id=f"T{i}", underlying_symbol=underlying, strategy=strategy, status="closed",
                   closed_date=closed, realized_pnl=pnl, outcome="win" if pnl > 0 else "loss")
        names = ", ".join(f'"{name}"' for name in row)
        con.execute(f"INSERT INTO trades ({names}) VALUES ({', '.join('?' * len(row))})", list(row.values()))


def test_the_journal_reads_the_closed_trades_and_escapes_what_it_shows(market: Lake) -> None:
    assert context_of(market).journal.notes == ["No trade was closed in the 30 days up to 2025-11-25."]
    trades = [  # (closed, underlying, strategy, P&L)
        (EVENING - timedelta(days=1), "SPY", "strangle", 250.0),
        (EVENING - timedelta(days=5), "SPY", "strangle", -400.0),
        (EVENING - timedelta(days=12), "AAPL", "short put", 120.0),
        (EVENING - timedelta(days=29), "QQQ", "<script>alert(1)</script>", 80.0),
        (EVENING - timedelta(days=31), "IWM", "short put", 999.0),  # outside the 30 days
    ]
    with warehouse_connection(market.warehouse_path) as con:
        _closed_trades(con, trades)
    journal = context_of(market).journal
    recent = [t for t in trades if (EVENING - t[0]).days < 30]
    assert len(journal.trades) == len(recent) == 4
    assert journal.win_rate == pytest.approx(sum(t[3] > 0 for t in recent) / len(recent))
    assert journal.total_pnl == pytest.approx(sum(t[3] for t in recent))
    strangle = next(g for g in journal.by_strategy if g["strategy"] == "strangle")
    assert (strangle["trades"], strangle["wins"], strangle["pnl"]) == (2, 1, -150.0)
    html = build_report(market).html
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_a_warehouse_from_before_the_journal_is_named_not_fatal(market: Lake) -> None:
    with warehouse_connection(market.warehouse_path) as con:
        con.execute("DROP TABLE trades CASCADE")
    notes = context_of(market).journal.notes
    assert notes == ["The journal is not in this warehouse yet: its trades table is created by the next load "
                     "(the pipeline builds it from the broker's transactions)."]


# -- data health from the lake ------------------------------------------------------------------


def test_data_health_names_missing_snapshots_and_quarantined_rows(market: Lake) -> None:
    market.write_quarantine("candles", EVENING, pd.DataFrame({"symbol": ["BAD", "WORSE"], "reason": ["zero", "null"]}))
    health = context_of(market).health
    missing = {m["dataset"] for m in health.missing}
    assert {"iv_term_structure", "risk_free_rate", "balances", "margin_requirements"} <= missing
    assert {"market_metrics", "candles", "positions"}.isdisjoint(missing)
    assert health.quarantined == [{"dataset": "candles", "rows": 2, "path": str(market.quarantine_path("candles", EVENING))}]
    assert any("make report" in note for note in health.notes)  # no Dagster facts: said so


# -- the files and make report ------------------------------------------------------------------


def test_files_are_replaced_whole_and_make_report_prints_the_path(
    market: Lake, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("VARIANCE_SOURCE", "simulator")
    monkeypatch.setenv("VARIANCE_DATA_DIR", str(market.root))
    monkeypatch.setenv("VARIANCE_NOW", FETCHED.isoformat())
    assert cli.main(["--min-iv-hv-ratio", "1.5"]) == 0
    out = capsys.readouterr()
    dated = market.reports_dir / "evening-2025-11-25.html"
    assert out.out.strip() == str(dated)
    assert "&gt; 1.50\u00d7" in dated.read_text()
    assert (market.reports_dir / "latest.html").read_bytes() == dated.read_bytes()
    assert cli.main([]) == 0
    assert "&gt; 1.00\u00d7" in dated.read_text()
    assert [p.name for p in market.reports_dir.iterdir() if p.name.endswith(".tmp")] == []


def test_make_report_without_a_warehouse_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("VARIANCE_SOURCE", "simulator")
    monkeypatch.setenv("VARIANCE_DATA_DIR", str(tmp_path))
    assert cli.main([]) == 1
    assert f"no warehouse at {tmp_path / 'warehouse.duckdb'}: run the pipeline first" in capsys.readouterr().err


def test_the_page_asks_for_nothing_outside_itself(market: Lake) -> None:
    html = build_report(market).html
    assert "<script" not in html
    assert not re.search(r"""(src|href)\s*=\s*["'](?!#)""", html)  # only in-page anchors
    assert "@import" not in html and "url(" not in html
    assert "default-src 'none'" in html


# -- formats ------------------------------------------------------------------------------------


@pytest.mark.parametrize("value, kwargs, text", [
    (1234567.891, {}, "$1,234,568"),
    (-42.5, {"sign": True}, "\u2212$42.50"),
    (1250.0, {"sign": True}, "+$1,250"),
    (float("nan"), {}, "\u2014"),
    (None, {}, "\u2014"),
])
def test_money(value: object, kwargs: dict, text: str) -> None:
    assert formatting.money(value, **kwargs) == text


def test_percent_spy_delta_and_days() -> None:
    assert formatting.pct(0.2834) == "28.3\u202f%"
    assert formatting.pct(-0.00004, digits=3) == "\u22120.004\u202f%"
    assert formatting.spy_delta(-12.345) == "\u221212.3 SPY"
    assert formatting.spy_delta(780.0) == "+780.0 SPY"
    assert [formatting.days(n) for n in (0, 1, 12, -3)] == ["today", "1 day", "12 days", "3 days ago"]
    assert formatting.day(date(2025, 11, 25)) == "Tue 25 Nov 2025"


# -- the mail's settings and SMTP ---------------------------------------------------------------


def test_mail_settings_are_both_or_neither_and_a_url_password_is_refused_unechoed() -> None:
    base = {"VARIANCE_SOURCE": "simulator"}
    assert not Settings.from_env(base).mail_enabled
    with pytest.raises(ConfigurationError, match="VARIANCE_REPORT_TO is not set"):
        Settings.from_env({**base, "VARIANCE_SMTP_URL": "smtp://me@mail.example.com:587"})
    with pytest.raises(ConfigurationError, match="VARIANCE_SMTP_URL is not set"):
        Settings.from_env({**base, "VARIANCE_REPORT_TO": "me@example.com"})
    with pytest.raises(ConfigurationError) as refused:
        parse_smtp_url("smtps://me:hunter2secret@mail.example.com")
    assert "hunter2secret" not in str(refused.value) and "VARIANCE_SMTP_PASSWORD" in str(refused.value)
    settings = Settings.from_env({**base, "VARIANCE_SMTP_URL": "smtps://me%40example.com@mail.example.com",
                                  "VARIANCE_REPORT_TO": "a@example.com, b@example.com", "VARIANCE_SMTP_PASSWORD": "x"})
    assert settings.mail_enabled and settings.smtp_password_set
    assert settings.report_to == ("a@example.com", "b@example.com")
    # A child process reads back the same settings, the password excepted: it never travels in the environment
    # handed over (the child's own VARIANCE_SMTP_PASSWORD does).
    assert Settings.from_env(settings.environment()) == dataclasses.replace(settings, smtp_password_set=False)
    assert "VARIANCE_SMTP_PASSWORD" not in settings.environment()


def note(to: str = "me@example.com") -> EmailMessage:
    message = EmailMessage()
    message["Subject"], message["From"], message["To"] = "a test", "trader@example.com", to
    message.set_content("hello")
    return message


def test_smtp_login_and_delivery_on_loopback(smtp_server: SmtpServer) -> None:
    target = parse_smtp_url(smtp_server.url)
    send(note(), target, SMTP_PASSWORD)
    assert smtp_server.logins == [(smtp_server.user, True)] and smtp_server.messages[0]["Subject"] == "a test"
    with pytest.raises(MailError) as wrong:
        send(note(), target, "not-the-password")
    assert "535" in str(wrong.value) and "not-the-password" not in str(wrong.value)
    with pytest.raises(MailError, match="VARIANCE_SMTP_PASSWORD is not set"):
        send(note(), target, None)
    leaky = note()
    leaky.set_content(f"the password is {SMTP_PASSWORD}")
    with pytest.raises(MailError, match="contains the SMTP password") as refused:
        send(leaky, target, SMTP_PASSWORD)
    assert SMTP_PASSWORD not in str(refused.value)
    assert len(smtp_server.messages) == 1


def test_the_subject_line_carries_the_headline() -> None:
    metrics = {"evening": "2025-11-25", "net_liquidating_value": 100_000.0, "net_liq_change": 1_250.0,
               "bp_used_pct": 0.28, "beta_weighted_delta": 12.5, "groups_to_manage": 3}
    assert report_subject(metrics) == ("Evening report Tue 25 Nov 2025: net liq $100,000 (+$1,250), "
                                       "BP 28.0\u202f%, +12.5 SPY, 3 to manage")


def test_make_demo_names_the_evenings_report_and_builds_it_when_missing(market: Lake) -> None:
    settings = Settings(source="simulator", data_dir=market.root, tastytrade_api_url="http://127.0.0.1:9",
                        yahoo_chart_url="http://127.0.0.1:9", now_override=FETCHED)
    dated = market.reports_dir / "evening-2025-11-25.html"
    assert not dated.exists()
    assert demo.evening_report(settings, EVENING) == dated and dated.exists()
    dated.write_text("the run's own page")
    assert demo.evening_report(settings, EVENING) == dated and dated.read_text() == "the run's own page"
