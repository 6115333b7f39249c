"""The evening report as a trader opens it: headless Chromium (Debian's, through Playwright) on the
file the pipeline wrote, at phone and laptop widths, light, dark and print.

The page must load with no console error and ask nothing of anything outside the file (every
request is listened to; any that is not the file itself is aborted and counted), show every
section, and show in its headline the numbers ``account_summary`` holds. The first evening (no
account data, no history) and an empty warehouse render too, saying what is missing.

Set ``VARIANCE_REPORT_SCREENSHOTS=<dir>`` to keep the phone and laptop screenshots there (the ones
in docs/ were made that way).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pytest

from support import CHROMIUM, CHROMIUM_ARGS, CLOCK, ReportEvening, browser_missing
from variance_pipeline.lake.layout import Lake
from variance_pipeline.reports.evening import build_report
from variance_pipeline.warehouse.connection import warehouse_connection
from variance_pipeline.warehouse.load import migrate

pytestmark = [pytest.mark.slow, pytest.mark.e2e, pytest.mark.browser]

SECTIONS = ("headline", "manage", "risk", "moves", "candidates", "journal", "health")
HEADLINE = ("net_liquidating_value", "net_liq_change", "bp_used_pct", "bp_guideline_max_pct", "theta_per_day",
            "theta_pct_of_net_liq", "beta_weighted_delta", "bwd_dollars_per_spy_1pct", "vega_per_vol_point")
PERCENT = {"bp_used_pct", "bp_guideline_max_pct", "theta_pct_of_net_liq"}
WIDTHS = {"phone": 390, "laptop": 1280}


@dataclass
class Opened:
    page: object
    errors: list[str] = field(default_factory=list)
    outside: set[str] = field(default_factory=set)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if reason := browser_missing():
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def open_report(browser: object, path: Path, *, width: int = 1280, scheme: str = "light") -> Opened:
    """The page in a fresh context; every request that is not the file itself is aborted and recorded."""
    context = browser.new_context(viewport={"width": width, "height": 900}, color_scheme=scheme)
    page = context.new_page()
    opened = Opened(page)
    url = path.as_uri()
    page.on("console", lambda message: opened.errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: opened.errors.append(str(error)))
    page.on("request", lambda request: opened.outside.add(request.url) if request.url != url else None)

    def only_the_file(route: object) -> None:
        if route.request.url == url:
            route.continue_()
        else:
            opened.outside.add(route.request.url)
            route.abort()

    context.route("**/*", only_the_file)
    page.goto(url, wait_until="load")
    return opened


def shown_number(text: str, percent: bool) -> tuple[float, float]:
    """The number a figure shows and half its last shown digit (the rounding it can hide)."""
    match = re.search(r"[\u2212+-]?\$?[\d,]+(?:\.(\d+))?", text.replace("\u202f", " "))
    assert match, f"no number in {text!r}"
    raw = match.group(0)
    value = float(raw.replace("\u2212", "-").replace("$", "").replace(",", "").replace("+", ""))
    half = 0.5 * 10 ** -len(match.group(1) or "")
    return (value / 100, half / 100) if percent else (value, half)


def test_the_evening_page_shows_the_views_numbers_and_asks_nothing_outside(
    browser: object, report_evening: ReportEvening
) -> None:
    opened = open_report(browser, report_evening.report)
    page = opened.page
    assert opened.errors == []
    assert opened.outside == set()
    for name in SECTIONS:
        assert page.locator(f"section#{name}").is_visible(), name
        assert page.locator(f"nav a[href='#{name}']").count() == 1, name
    summary = report_evening.sql("SELECT * FROM account_summary WHERE account_number = 'ALL'").iloc[0]
    for key in HEADLINE:
        element = page.locator(f"#headline [data-metric='{key}']")
        expected = float(summary[key])
        assert float(element.get_attribute("data-value")) == pytest.approx(expected, rel=1e-12), key
        value, half = shown_number(element.inner_text(), key in PERCENT)
        assert abs(value - expected) <= half + 1e-12, (key, element.inner_text(), expected)
    to_manage = report_evening.sql("SELECT count(*) AS n FROM manage_tonight")["n"].iloc[0]
    assert page.locator("#headline [data-metric='groups_to_manage']").inner_text() == str(to_manage)
    assert page.locator("#manage tbody tr").count() == to_manage
    assert page.locator("#simulated").is_visible()  # simulated prices are never mistaken for real ones
    page.context.close()


@pytest.mark.parametrize("device", WIDTHS)
def test_phone_and_laptop_widths_fit_without_sideways_scrolling(
    browser: object, report_evening: ReportEvening, device: str, tmp_path: Path
) -> None:
    width = WIDTHS[device]
    opened = open_report(browser, report_evening.report, width=width)
    page = opened.page
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    # Every trade's reasons stay readable on a phone: each chip is inside the viewport.
    for box in (chip.bounding_box() for chip in page.locator("#manage .chip").all()):
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width + 0.5
    keep = os.environ.get("VARIANCE_REPORT_SCREENSHOTS")
    target = Path(keep) if keep else tmp_path
    target.mkdir(parents=True, exist_ok=True)
    shot = page.screenshot(path=str(target / f"evening-report-{device}.png"), full_page=True)
    assert len(shot) > 10_000
    assert opened.errors == [] and opened.outside == set()
    page.context.close()


def test_dark_scheme_and_print(browser: object, report_evening: ReportEvening) -> None:
    background = "getComputedStyle(document.body).backgroundColor"

    def luminance(css: str) -> float:
        r, g, b = (int(x) for x in re.findall(r"\d+", css)[:3])
        return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255

    light = open_report(browser, report_evening.report, scheme="light").page
    dark = open_report(browser, report_evening.report, scheme="dark").page
    assert luminance(light.evaluate(background)) > 0.8
    assert luminance(dark.evaluate(background)) < 0.2
    light.emulate_media(media="print")
    assert light.locator("nav").is_hidden()
    assert light.evaluate(background) in ("rgb(255, 255, 255)", "rgba(0, 0, 0, 0)")
    assert light.locator("section#headline").is_visible()
    for page in (light, dark):
        page.context.close()


def test_the_first_evening_renders_and_says_what_is_missing(browser: object, report_evening: ReportEvening) -> None:
    opened = open_report(browser, report_evening.first_evening)
    page = opened.page
    assert opened.errors == [] and opened.outside == set()
    for name in SECTIONS:
        assert page.locator(f"section#{name}").is_visible(), name
    assert "No account balances in the warehouse" in page.locator("#headline").inner_text()
    assert page.locator("#headline [data-metric='net_liquidating_value']").count() == 0
    assert "no own IV rank yet" in page.locator("#candidates").inner_text()
    page.context.close()


def test_an_empty_warehouse_renders_a_page_that_says_so(browser: object, tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    with warehouse_connection(lake.warehouse_path) as con:
        migrate(con)
    built = build_report(lake, clock=CLOCK, fallback_evening=CLOCK.date())
    assert built.files.dated.name == "evening-2025-11-25.html"
    opened = open_report(browser, built.files.dated)
    page = opened.page
    assert opened.errors == [] and opened.outside == set()
    assert "The warehouse holds no session yet" in page.locator("main").inner_text()
    for name in SECTIONS:
        assert page.locator(f"section#{name}").is_visible(), name
    assert "No trade was closed in the 30 days up to 2025-11-25." in page.locator("#journal").inner_text()
    page.context.close()
