"""The evening_report asset in real Dagster runs: the market part of a simulator evening, then the
account snapshot (crafted: the simulator does not serve it yet) loaded by a real account_book run.

Every expected number is read from the warehouse's views with SQL here, never from the report's
own code; the page is read back as text.
"""

from __future__ import annotations

import re
from datetime import date
from html import unescape

from pathlib import Path

import dagster as dg
import pytest

from support import MARKET, REPORT_SESSION, ReportEvening, land_account_snapshot, materialize, pipeline_settings
from variance_pipeline.lake.layout import Lake
from variance_pipeline.schemas.registry import ACCOUNT_SNAPSHOT
from variance_pipeline.simulator import SimulatorServer
from variance_pipeline.warehouse.connection import warehouse_connection
from variance_pipeline.warehouse.load import load_sessions

pytestmark = pytest.mark.slow

HEADLINE = ("net_liquidating_value", "net_liq_change", "bp_used_pct", "bp_guideline_max_pct", "theta_per_day",
            "beta_weighted_delta", "vega_per_vol_point")


def text(html: str) -> str:
    """The page's visible words, one space between them."""
    body = re.sub(r"<style.*?</style>|<svg.*?</svg>", " ", html, flags=re.S)
    body = re.sub(r"</?(b|span|a)\b[^>]*>", "", body)  # inline: no space of their own
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", body))).strip()


def section(html: str, name: str) -> str:
    match = re.search(rf'<section id="{name}".*?</section>', html, flags=re.S)
    assert match, f"section {name} missing"
    return text(match.group(0))


def data_values(html: str) -> dict[str, float]:
    return {k: float(v) for k, v in re.findall(r'data-metric="([a-z_]+)"[^>]*?data-value="([^"]+)"', html)}


def step_order(result: dg.ExecuteInProcessResult) -> list[str]:
    return [event.step_key for event in result.all_events if event.event_type_value == "STEP_START"]


def report_metadata(result: dg.ExecuteInProcessResult) -> dict:
    events = [e for e in result.get_asset_materialization_events() if e.asset_key == dg.AssetKey("evening_report")]
    assert len(events) == 1
    return {k: v.value for k, v in events[0].event_specific_data.materialization.metadata.items()}


def test_the_report_runs_last_so_it_sees_tonights_account_book(report_evening: ReportEvening) -> None:
    order = step_order(report_evening.result)
    assert "account_book" in order and order[-1] == "evening_report", order
    html = report_evening.report.read_text()
    summary = report_evening.sql("SELECT * FROM account_summary WHERE account_number = 'ALL'").iloc[0]
    assert summary["as_of_date"].date() == REPORT_SESSION
    assert "account as of " in section(html, "headline") and "not tonight" not in section(html, "headline")
    values = data_values(html)
    for key in HEADLINE:
        assert values[key] == pytest.approx(float(summary[key]), rel=1e-12), key


def test_metadata_carries_the_headline_the_path_and_a_link(report_evening: ReportEvening) -> None:
    metadata = report_metadata(report_evening.result)
    summary = report_evening.sql("SELECT * FROM account_summary WHERE account_number = 'ALL'").iloc[0]
    for key in HEADLINE:
        assert metadata[key] == pytest.approx(float(summary[key]), abs=1e-6), key
    assert metadata["path"] == str(report_evening.report)
    assert metadata["latest"] == str(report_evening.report.with_name("latest.html"))
    assert metadata["link"] == report_evening.report.as_uri()
    manage = report_evening.sql("SELECT count(*) AS n FROM manage_tonight")["n"].iloc[0]
    assert metadata["groups_to_manage"] == manage
    assert metadata["evening"] == REPORT_SESSION.isoformat()
    assert f"{manage} to manage" in metadata["subject"]
    assert report_evening.report.read_bytes() == report_evening.report.with_name("latest.html").read_bytes()


def test_manage_and_risk_list_every_row_of_their_views(report_evening: ReportEvening) -> None:
    html = report_evening.report.read_text()
    manage = report_evening.sql("SELECT underlying_symbol, reasons FROM manage_tonight")
    assert len(manage) > 0
    chips = re.findall(r'data-reason="([a-z_]+)"', html)
    assert sorted(chips) == sorted(code for reasons in manage["reasons"] for code in reasons)
    risk = report_evening.sql("SELECT underlying_symbol FROM portfolio_risk WHERE account_number = 'ALL'")
    risk_text = section(html, "risk")
    for symbol in risk["underlying_symbol"]:
        assert f" {symbol} " in f" {risk_text} ", symbol
    total = report_evening.sql("SELECT sum(beta_weighted_delta) AS b FROM portfolio_risk WHERE account_number = 'ALL'")
    assert f"All {float(total['b'].iloc[0]):+,.1f}".replace("-", "\u2212") in risk_text


def test_data_health_shows_dagsters_checks_and_the_stale_symbol(report_evening: ReportEvening) -> None:
    health = section(report_evening.report.read_text(), "health")
    # NOPE is on the watchlist but delisted: no candles, no metrics, and candles_cover_universe warns.
    assert "NOPE: candles none, metrics none" in health
    assert "warning: candles / candles_cover_universe" in health and "(an earlier run)" in health
    assert "Last successful run before this one:" in health and "none recorded" not in health
    assert "margin report snapshot" not in health  # tonight's account snapshot was loaded


def test_first_evening_renders_what_it_has_and_says_what_is_missing(report_evening: ReportEvening) -> None:
    html = report_evening.first_evening.read_text()
    headline = section(html, "headline")
    assert "No account balances in the warehouse" in headline and "Greeks as of" in headline
    assert "net_liquidating_value" not in data_values(html)
    assert "no own IV rank yet" in section(html, "candidates")
    assert "No trade was closed in the 30 days up to 2025-11-25." in section(html, "journal")
    assert "account balances snapshot (balances): never loaded" in section(html, "health")


def test_an_evening_without_account_book_shows_the_older_account_and_says_so(
    tmp_path: Path, simulator: SimulatorServer
) -> None:
    """account_book is not in the run (or failed): the page still renders, from the last account snapshot."""
    lake = Lake(tmp_path)
    earlier = date(2025, 11, 24)
    land_account_snapshot(lake, earlier, {"5WT00001": 80_000.0})
    with warehouse_connection(lake.warehouse_path) as con:
        load_sessions(con, lake, [earlier], tables=ACCOUNT_SNAPSHOT, refresh_history=False)
    settings = pipeline_settings(tmp_path, simulator.url, watchlist="SPY,GLD")
    result = materialize(settings, partition_key=REPORT_SESSION.isoformat(), select=[*MARKET, "evening_report"])
    assert result.success
    html = (lake.reports_dir / "latest.html").read_text()
    assert "The account figures are from Mon 24 Nov 2025, not tonight (Tue 25 Nov 2025)" in section(html, "headline")
    assert data_values(html)["net_liquidating_value"] == 80_000.0
