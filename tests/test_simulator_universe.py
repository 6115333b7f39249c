"""The simulator's any-symbol market, ``--universe``, the two newer endpoints and past clocks.

Real HTTP over loopback against ``SimulatorServer(port=0, now=...)``, like ``test_simulator.py``:
any well-formed symbol has a chart and metrics that agree with each other, deterministically per
seed; delisted, reserved and junk names answer as the real APIs answer unknown symbols; a large
universe is served quickly; and a server set to any past evening serves that evening's snapshot.
"""

from __future__ import annotations

import math
import re
import subprocess
import sys
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import quote

import httpx
import numpy as np
import pytest

from support import UA, chart_result as _chart, login as _login
from variance_pipeline.simulator import SimulatorServer
from variance_pipeline.simulator import market
from variance_pipeline.simulator.backend import DEFAULT_DELISTED, risk_free_rate
from variance_pipeline.simulator.portfolio import PER_ACCOUNT, universe_symbols

REPO = Path(__file__).resolve().parent.parent
CLOCK = datetime(2026, 1, 16, 22, 0, tzinfo=timezone.utc)  # Friday, after the close
PAST = datetime(2024, 3, 15, 22, 0, tzinfo=timezone.utc)  # an older Friday evening
SIMULATOR = {"now": CLOCK}  # the module's ``sim`` (conftest.py); ``api`` is logged in to it
NOT_FOUND = {"chart": {"result": None, "error": {"code": "Not Found", "description": "No data found, symbol may be delisted"}}}
EARNINGS = "/market-metrics/historic-corporate-events/earnings-reports/"
MARGIN = "/margin-requirements-public-configuration"
SYNTHETIC = ["ABCD", "BRK/B", "QWER", "/XX", "NDX", "XSP", "VIX9D"]
YAHOO = {"ABCD": "ABCD", "BRK/B": "BRK-B", "QWER": "QWER", "/XX": "XX=F", "NDX": "^NDX", "XSP": "^XSP", "VIX9D": "^VIX9D"}


def _metrics(client: httpx.Client, symbols: list[str]) -> dict[str, dict[str, Any]]:
    response = client.get("/market-metrics", params={"symbols": ",".join(symbols)})
    assert response.status_code == 200, response.text
    return {item["symbol"]: item for item in response.json()["data"]["items"]}


def _hv(closes: list[float], returns: int) -> float:
    log_returns = np.diff(np.log(np.array(closes[-(returns + 1) :], dtype=float)))
    return float(np.std(log_returns, ddof=1) * math.sqrt(252))


def _earnings(client: httpx.Client, symbol: str, start: str) -> list[dict[str, Any]]:
    response = client.get(EARNINGS + quote(symbol, safe=""), params={"start-date": start})
    assert response.status_code == 200, response.text
    return response.json()["data"]["items"]


def _final_closes(result: dict[str, Any], clock: datetime) -> list[float]:
    """Closes of the bars whose session is over at ``clock`` (after the close: all of them)."""
    assert result["meta"]["regularMarketTime"] <= int(clock.timestamp())
    return result["indicators"]["quote"][0]["close"]


# --- any symbol --------------------------------------------------------------------------------


def test_any_symbol_chart_and_metrics_agree(api: httpx.Client) -> None:
    items = _metrics(api, SYNTHETIC)
    assert list(items) == SYNTHETIC
    for symbol in SYNTHETIC:
        item = items[symbol]
        result = _chart(api, YAHOO[symbol], range="6mo", events="div,splits")
        assert result["meta"]["symbol"] == YAHOO[symbol]
        closes = _final_closes(result, CLOCK)
        # A future's chart is calendar-day bars whose close includes the Globex evening after the
        # session, plus Sunday bars: the metrics' HV (session closes) agrees only roughly.
        future = symbol.startswith("/")
        for days in (30, 60, 90):
            expected = round(100 * _hv(closes, days), 2)
            wanted = pytest.approx(expected, rel=0.25) if future else pytest.approx(expected, abs=0.006)
            assert float(item[f"historical-volatility-{days}-day"]) == wanted, (symbol, days)
        assert 0.02 < float(item["implied-volatility-index"]) < 3
        assert 0 <= float(item["implied-volatility-index-rank"]) <= 1
        expirations = item["option-expiration-implied-volatilities"]
        assert 4 <= len(expirations) <= 8
        assert all(date.fromisoformat(e["expiration-date"]) > CLOCK.date() for e in expirations)
        kind = market.lookup(symbol)
        assert kind is not None
        assert ("earnings" in item) == kind.has_earnings
    assert items["/XX"]["option-expiration-implied-volatilities"][0]["settlement-type"] == "PM"
    assert "earnings" not in items["NDX"] and "earnings" not in items["/XX"]


def test_both_spellings_name_one_instrument_and_xsp_is_a_tenth_of_spx(api: httpx.Client) -> None:
    for tasty, yahoo in YAHOO.items():
        assert market.lookup(tasty) is market.lookup(yahoo) is not None, tasty
    assert market.lookup("^FOO") is not None and market.lookup("FOO").kind in ("equity", "etf")  # type: ignore[union-attr]
    xsp = _chart(api, "^XSP", range="1y")["indicators"]["quote"][0]
    spx = _chart(api, "^SPX", range="1y")["indicators"]["quote"][0]
    for key in ("open", "high", "low", "close"):
        assert np.allclose(np.array(xsp[key]), np.array(spx[key]) / 10, atol=0.006), key
    # A Yahoo-only caret index has a chart but is unknown to Tastytrade, like a Yahoo spelling.
    assert _chart(api, "^FOO", range="5d")["meta"]["instrumentType"] == "INDEX"
    assert _metrics(api, ["^FOO", "ES=F", "BRK-B", "^SPX", "ABCD"]).keys() == {"ABCD"}


def test_synthetic_instruments_vary_like_a_market() -> None:
    names = universe_symbols(42, 600)
    insts = [market.lookup(name) for name in names]
    assert all(inst is not None and inst.symbol == name for inst, name in zip(insts, names))
    rhos = [inst.rho for inst in insts if inst]
    assert min(rhos) < -0.05 and max(rhos) > 0.8
    assert {inst.kind for inst in insts if inst} == {"equity", "etf"}
    payers = sum(1 for inst in insts if inst and inst.dividend_yield > 0)
    assert 0.25 * len(names) < payers < 0.75 * len(names)
    split = [inst for inst in insts if inst and inst.splits]
    assert 0.02 * len(names) < len(split) < 0.15 * len(names)
    assert all(len(inst.splits) == 1 and date(2016, 1, 1) <= inst.splits[0].day <= date(2026, 1, 1) for inst in split)
    for inst in insts:
        assert inst is not None
        if inst.kind == "equity":
            months = inst.earnings_months
            assert len(months) == 4 and all(b - a == 3 for a, b in zip(months, months[1:]))
        else:
            assert not inst.has_earnings
    prices = sorted(inst.anchor_price for inst in insts if inst)
    assert prices[0] < 20 and prices[-1] > 200


def test_one_series_is_generated_in_a_few_milliseconds() -> None:
    market.series(42, "SPY")  # the calendar and the market shock, once
    names = [f"Q{a}{b}" for a in "ABCDEFGHIJ" for b in "ABCDEFGHIJ"]
    started = time.perf_counter()
    for name in names:
        market.series(1234, name)
    per_series = (time.perf_counter() - started) / len(names)
    assert per_series < 0.025, f"{1000 * per_series:.1f} ms per series"  # ~4 ms alone; the box is shared
    assert market.series.cache_info().maxsize >= 2000


def test_metrics_reconcile_across_a_natural_split(api: httpx.Client) -> None:
    """A synthetic split inside the HV window: the chart is split-adjusted, the metrics agree."""
    candidates = (f"{a}{b}{c}{d}" for a in "PQRSTUVWXY" for b in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                  for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ" for d in "AEIOU")
    chosen = next(
        name for name in candidates
        if (inst := market.lookup(name)) and inst.splits
        and CLOCK.date() - timedelta(days=40) < inst.splits[0].day < CLOCK.date() - timedelta(days=5)
    )
    result = _chart(api, chosen, range="6mo", events="splits")
    assert len(result["events"]["splits"]) == 1
    closes = _final_closes(result, CLOCK)
    assert max(abs(math.log(b / a)) for a, b in zip(closes, closes[1:])) < 0.5  # no raw split jump
    item = _metrics(api, [chosen])[chosen]
    assert float(item["historical-volatility-30-day"]) == pytest.approx(round(100 * _hv(closes, 30), 2), abs=0.006)


def test_same_seed_same_market_other_seed_other_market(api: httpx.Client) -> None:
    symbols = ["ABCD", "BRK/B", "/XX"]
    first = _metrics(api, symbols)
    chart = _chart(api, "BRK-B", range="1y")
    with SimulatorServer(port=0, now=CLOCK) as other, _login(other.url) as client:
        assert _metrics(client, symbols) == first
        assert _chart(client, "BRK-B", range="1y") == chart
    with SimulatorServer(port=0, now=CLOCK, seed=7) as other, _login(other.url) as client:
        different = _metrics(client, symbols)
        assert different.keys() == first.keys()
        assert different["ABCD"]["implied-volatility-index"] != first["ABCD"]["implied-volatility-index"]
        assert _chart(client, "BRK-B", range="1y")["indicators"] != chart["indicators"]


# --- unknown symbols -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["NOPE", "GONE", "ZZZ", "ZZTOP", "abcd", "A1", "TOOLONG", "AB.C", "BRK/B"])
def test_delisted_reserved_and_junk_symbols_are_unknown(api: httpx.Client, name: str) -> None:
    response = api.get(f"/v8/finance/chart/{quote(name, safe='')}", params={"range": "1mo", "interval": "1d"})
    assert response.status_code == 404 and response.json() == NOT_FOUND
    if name != "BRK/B":  # BRK/B is known to Tastytrade (its Yahoo spelling is BRK-B)
        assert _metrics(api, [name, "SPY"]).keys() == {"SPY"}
        assert _earnings(api, name, "2020-01-01") == []


def test_delisted_set_from_constructor_admin_and_cli() -> None:
    assert {"NOPE", "GONE"} <= DEFAULT_DELISTED
    with SimulatorServer(port=0, now=CLOCK, delisted=["ABCD", "XX=F"]) as sim, _login(sim.url) as client:
        assert client.get("/v8/finance/chart/ABCD", params={"range": "5d"}).status_code == 404
        assert client.get("/v8/finance/chart/XX%3DF", params={"range": "5d"}).status_code == 404
        assert _metrics(client, ["ABCD", "/XX", "NOPE"]).keys() == {"NOPE"}  # the given set replaces the default
        assert client.get("/_sim/delisted").json() == ["/XX", "ABCD"]
        assert client.post("/_sim/delisted", json=["BRK-B", "NOPE"]).json() == ["BRK/B", "NOPE"]
        assert client.get("/v8/finance/chart/BRK-B", params={"range": "5d"}).status_code == 404
        assert client.get("/v8/finance/chart/ABCD", params={"range": "5d"}).status_code == 200
        assert _metrics(client, ["BRK/B", "ABCD"]).keys() == {"ABCD"}
        assert client.post("/_sim/delisted", json={"not": "a list"}).status_code == 400
        assert client.delete("/_sim/delisted").json() == sorted(DEFAULT_DELISTED)
        assert not any(e["path"].startswith("/_sim") for e in client.get("/_sim/requests").json())
    process = subprocess.Popen(
        [sys.executable, "-m", "variance_pipeline.simulator", "--port", "0", "--now", "2026-01-16T22:00:00Z",
         "--delisted", "ABCD,QWER", "--universe", "60"],
        stdout=subprocess.PIPE, text=True, cwd=REPO,
    )
    try:
        assert process.stdout is not None
        match = re.fullmatch(r"simulator listening on (http://127\.0\.0\.1:\d+)", process.stdout.readline().strip())
        assert match
        with _login(match.group(1)) as client:
            assert client.get("/v8/finance/chart/ABCD", params={"range": "5d"}).status_code == 404
            assert client.get("/v8/finance/chart/NOPE", params={"range": "5d"}).status_code == 200
            assert client.get("/_sim/delisted").json() == ["ABCD", "QWER"]
            numbers = [i["account"]["account-number"] for i in client.get("/customers/me/accounts").json()["data"]["items"]]
            assert numbers[-2:] == ["5WU00001", "5WU00002"] and len(numbers) == 5
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0


# --- scale ---------------------------------------------------------------------------------------


def test_500_symbols_of_market_metrics_in_batches_of_100(api: httpx.Client) -> None:
    names = list(universe_symbols(42, 500, DEFAULT_DELISTED))
    started = time.perf_counter()
    answered: list[str] = []
    for start in range(0, len(names), 100):
        answered += list(_metrics(api, names[start : start + 100]))
    elapsed = time.perf_counter() - started
    assert answered == names
    assert elapsed < 60, f"{elapsed:.1f} s"  # ~4 s cold on an idle 2-core box


@pytest.fixture(scope="module")
def universe() -> Iterator[httpx.Client]:
    with SimulatorServer(port=0, now=CLOCK, universe=500) as server, _login(server.url) as client:
        yield client


def test_universe_adds_accounts_and_positions_on_known_underlyings(universe: httpx.Client, api: httpx.Client) -> None:
    accounts = [i["account"] for i in universe.get("/customers/me/accounts").json()["data"]["items"]]
    base = [i["account"] for i in api.get("/customers/me/accounts").json()["data"]["items"]]
    assert accounts[: len(base)] == base
    extra = accounts[len(base) :]
    assert [a["account-number"] for a in extra] == [f"5WU{n:05d}" for n in range(1, 11)]
    assert not any(a["is-closed"] for a in extra)
    underlyings: dict[str, set[str]] = {}
    kinds: set[tuple[str, str]] = set()
    for account in extra:
        number = account["account-number"]
        items = universe.get(f"/accounts/{number}/positions").json()["data"]["items"]
        held = {item["underlying-symbol"] for item in items}
        assert len(held) == PER_ACCOUNT
        for item in items:
            assert item["account-number"] == number and item["quantity"] > 0
            kinds.add((item["instrument-type"], item["quantity-direction"]))
            if item["instrument-type"] == "Equity Option":
                root = item["underlying-symbol"]
                assert re.fullmatch(rf"{root:<6}\d{{6}}[CP]\d{{8}}", item["symbol"]), item["symbol"]
                assert datetime.fromisoformat(item["expires-at"]) > CLOCK and item["multiplier"] == 100
            else:
                assert item["instrument-type"] == "Equity" and item["symbol"] == item["underlying-symbol"]
        for symbol in held:
            underlyings.setdefault(symbol, set()).add(number)
    assert len(underlyings) == 500 and all(len(numbers) == 1 for numbers in underlyings.values())
    assert set(underlyings) == set(universe_symbols(42, 500, DEFAULT_DELISTED))
    assert set(underlyings).isdisjoint(inst.symbol for inst in market.INSTRUMENTS)
    assert kinds == {("Equity", "Long"), ("Equity", "Short"), ("Equity Option", "Long"), ("Equity Option", "Short")}
    for symbol in sorted(underlyings):
        response = universe.get(f"/v8/finance/chart/{symbol}", params={"range": "5d", "interval": "1d"})
        assert response.status_code == 200, symbol
    # The fixed accounts hold exactly what a server without a universe holds.
    for number in ("5WT00001", "5WT00002"):
        assert universe.get(f"/accounts/{number}/positions").json() == api.get(f"/accounts/{number}/positions").json()


def test_universe_names_are_a_stable_prefix_per_seed() -> None:
    assert universe_symbols(42, 100) == universe_symbols(42, 500)[:100]
    assert universe_symbols(7, 100) != universe_symbols(42, 100)
    assert all(re.fullmatch(r"[A-Z]{3,4}", name) and not name.startswith("ZZ") for name in universe_symbols(42, 1000))


# --- the two newer endpoints --------------------------------------------------------------------


def test_margin_configuration_is_public_and_carries_a_slow_rate(sim: SimulatorServer) -> None:
    with httpx.Client(base_url=sim.url, headers=UA) as client:  # no token needed
        response = client.get(MARGIN)
        assert response.status_code == 200
        body = response.json()
        assert body["context"] == MARGIN
        rate = body["data"]["risk-free-rate"]
        assert re.fullmatch(r"0\.0\d{3}", rate) and 0.035 <= float(rate) <= 0.055
        assert float(rate) == risk_free_rate(CLOCK.date())
        assert len(body["data"]) >= 3
        assert client.get(MARGIN, headers={"User-Agent": ""}).status_code == 401
    days = [date(2020, 1, 1) + timedelta(days=n) for n in range(0, 3000)]
    rates = [risk_free_rate(day) for day in days]
    assert min(rates) >= 0.035 and max(rates) <= 0.055 and max(rates) - min(rates) > 0.01
    assert max(abs(b - a) for a, b in zip(rates, rates[1:])) <= 0.0002


def test_earnings_history_shape_auth_and_symbols_without_earnings(api: httpx.Client, sim: SimulatorServer) -> None:
    with httpx.Client(base_url=sim.url, headers=UA) as anonymous:
        assert anonymous.get(EARNINGS + "AAPL", params={"start-date": "2024-01-01"}).status_code == 401
    response = api.get(EARNINGS + "AAPL", params={"start-date": "2024-01-01"})
    body = response.json()
    assert body["context"] == EARNINGS + "AAPL"
    items = body["data"]["items"]
    # Labelled by quarter end, as the real endpoint does (2024-03-31 .. 2025-09-30 by the clock).
    assert 7 <= len(items) <= 8
    for item in items:
        assert set(item) == {"occurred-date", "eps"}
        assert date(2024, 1, 1) <= date.fromisoformat(item["occurred-date"]) <= CLOCK.date()
        assert re.fullmatch(r"\d+\.\d{1,2}", item["eps"])
    assert [i["occurred-date"] for i in items] == sorted(i["occurred-date"] for i in items)
    # AAPL reports in months 1, 4, 7, 10; each is listed under the calendar quarter's end before it.
    assert {date.fromisoformat(i["occurred-date"]).month for i in items} == {3, 6, 9, 12}
    assert all((date.fromisoformat(i["occurred-date"]) + timedelta(days=1)).day == 1 for i in items)
    for symbol in ("SPY", "/ES", "SPX", "NDX", "/XX", "NOPE"):
        assert _earnings(api, symbol, "2020-01-01") == [], symbol
    brk = api.get(EARNINGS + "BRK%2FB", params={"start-date": "2025-01-01"})
    assert brk.status_code == 200 and brk.json()["context"] == EARNINGS + "BRK%2FB"
    assert (len(brk.json()["data"]["items"]) > 0) == market.lookup("BRK/B").has_earnings  # type: ignore[union-attr]
    assert api.get(EARNINGS + "AAPL", params={"start-date": "last year"}).status_code == 400


def test_a_report_joins_the_history_once_its_date_has_passed() -> None:
    symbol = "ABCD"
    with SimulatorServer(port=0, now=PAST) as sim, _login(sim.url) as client:
        before = _metrics(client, [symbol])[symbol]["earnings"]
        report = date.fromisoformat(before["expected-report-date"])
        start = (report - timedelta(days=200)).isoformat()
        history_before = _earnings(client, symbol, start)
        # The history lists the report under its quarter's end (the metrics' quarter-end-date is the
        # first day of that quarter's last month); its day and time are only in the metrics.
        first = date.fromisoformat(before["quarter-end-date"])
        quarter = (first.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)
        assert first.day == 1 and quarter < report and before["time-of-day"] in ("BMO", "AMC")
        assert quarter.isoformat() not in {i["occurred-date"] for i in history_before}
        assert all(date.fromisoformat(i["occurred-date"]) <= PAST.date() for i in history_before)
        sim.now = datetime.combine(report - timedelta(days=1), datetime.min.time(), timezone.utc) + timedelta(hours=22)
        assert quarter.isoformat() not in {i["occurred-date"] for i in _earnings(client, symbol, start)}
        sim.now = datetime.combine(report, datetime.min.time(), timezone.utc) + timedelta(hours=22)
        history_after = _earnings(client, symbol, start)
        assert history_after[: len(history_before)] == history_before
        assert history_after[-1] == {"occurred-date": quarter.isoformat(), "eps": before["actual-eps"]}
        after = _metrics(client, [symbol])[symbol]["earnings"]
        assert date.fromisoformat(after["expected-report-date"]) > report


def test_new_endpoints_are_logged_and_can_fail_on_demand(api: httpx.Client) -> None:
    api.delete("/_sim/requests")
    rules = [
        {"endpoint": "risk-free-rate", "kind": "503", "count": 1},
        {"endpoint": "earnings", "symbol": "AAPL", "kind": "429", "count": 1, "retry_after": 2},
    ]
    assert api.post("/_sim/faults", json=rules).status_code == 200
    try:
        assert api.get(MARGIN).status_code == 503
        assert api.get(MARGIN).status_code == 200
        assert api.get(EARNINGS + "MSFT").status_code == 200  # the rule names AAPL
        limited = api.get(EARNINGS + "AAPL")
        assert limited.status_code == 429 and limited.headers["Retry-After"] == "2"
        assert api.get(EARNINGS + "AAPL").status_code == 200
        log = api.get("/_sim/requests").json()
        assert [(e["path"], e["status"]) for e in log] == [
            (MARGIN, 503), (MARGIN, 200), (EARNINGS + "MSFT", 200), (EARNINGS + "AAPL", 429), (EARNINGS + "AAPL", 200),
        ]
    finally:
        api.delete("/_sim/faults")


def test_replay_answers_the_new_endpoints_from_the_folder(tmp_path: Path) -> None:
    tasty = tmp_path / "tastytrade"
    tasty.mkdir()
    (tasty / "margin_requirements_public_configuration.json").write_text(
        '{"data": {"risk-free-rate": "0.0431"}, "context": "/margin-requirements-public-configuration"}'
    )
    (tasty / "earnings_AAPL.json").write_text(
        '{"data": {"items": [{"occurred-date": "2024-08-01", "eps": "1.4"}, {"occurred-date": "2024-10-31", "eps": "0.97"}]}}'
    )
    with SimulatorServer(port=0, replay_dir=tmp_path) as sim, _login(sim.url) as client:
        assert client.get(MARGIN).json()["data"]["risk-free-rate"] == "0.0431"
        assert _earnings(client, "AAPL", "2024-09-01") == [{"occurred-date": "2024-10-31", "eps": "0.97"}]
        assert _earnings(client, "MSFT", "2024-09-01") == []
        assert client.post("/_sim/delisted", json=["X"]).status_code == 400
    (tasty / "margin_requirements_public_configuration.json").unlink()
    with SimulatorServer(port=0, replay_dir=tmp_path) as sim, httpx.Client(base_url=sim.url, headers=UA) as client:
        assert client.get(MARGIN).json()["data"] == {}


# --- a consistent snapshot as of any clock --------------------------------------------------------


def _snapshot(client: httpx.Client, symbols: list[str]) -> dict[str, Any]:
    accounts = [i["account"]["account-number"] for i in client.get("/customers/me/accounts").json()["data"]["items"]]
    return {
        "accounts": accounts,
        "positions": {n: client.get(f"/accounts/{n}/positions").json() for n in accounts},
        "metrics": client.get("/market-metrics", params={"symbols": ",".join(symbols)}).json(),
        "charts": {s: _chart(client, YAHOO.get(s, s), range="5y", events="div,splits") for s in ("AAPL", "ABCD", "BRK/B")},
        "earnings": {s: _earnings(client, s, "2020-01-01") for s in ("AAPL", "ABCD")},
        "margin": client.get(MARGIN).json(),
    }


def test_a_past_evening_is_served_as_it_was_and_deterministically() -> None:
    symbols = ["AAPL", "SPY", "/ES", "VIX", *SYNTHETIC]
    with SimulatorServer(port=0, now=PAST, universe=60) as fresh, _login(fresh.url) as client:
        past = _snapshot(client, symbols)
    with SimulatorServer(port=0, now=CLOCK, universe=60) as stepped, _login(stepped.url) as client:
        later = _snapshot(client, symbols)
        stepped.now = PAST  # a server that served a later evening first, then steps back
        assert _snapshot(client, symbols) == past
    assert later != past

    # What that evening served is what it would have been: nothing from after the clock.
    for account, body in past["positions"].items():
        for item in body["data"]["items"]:
            assert datetime.fromisoformat(item["updated-at"]) == PAST
            assert datetime.fromisoformat(item["created-at"]) < PAST
            if "expires-at" in item:
                assert datetime.fromisoformat(item["expires-at"]) > PAST, (account, item["symbol"])
    items = {i["symbol"]: i for i in past["metrics"]["data"]["items"]}
    assert list(items) == symbols
    for symbol, item in items.items():
        assert item["updated-at"].startswith("2024-03-15T22:00:00")
        assert all(date.fromisoformat(e["expiration-date"]) > PAST.date() for e in item["option-expiration-implied-volatilities"])
        if "earnings" in item:
            assert date.fromisoformat(item["earnings"]["expected-report-date"]) > PAST.date()
    for symbol, result in past["charts"].items():
        assert result["timestamp"][-1] <= int(PAST.timestamp())
        closes = _final_closes(result, PAST)
        assert float(items[symbol]["historical-volatility-30-day"]) == pytest.approx(round(100 * _hv(closes, 30), 2), abs=0.006)
        # The later evening's history agrees up to the past clock wherever no split came in between.
        newer = later["charts"][symbol]
        if not any(int(ts) > PAST.timestamp() for ts in newer.get("events", {}).get("splits", {})):
            overlap = [t for t in newer["timestamp"] if t in set(result["timestamp"])]
            old = dict(zip(result["timestamp"], closes))
            new = dict(zip(newer["timestamp"], newer["indicators"]["quote"][0]["close"]))
            assert overlap and [old[t] for t in overlap] == [new[t] for t in overlap]
    for symbol, reports in past["earnings"].items():
        assert all(date.fromisoformat(r["occurred-date"]) <= PAST.date() for r in reports)
        assert later["earnings"][symbol][: len(reports)] == reports
    assert past["margin"]["data"]["risk-free-rate"] == f"{risk_free_rate(PAST.date()):.4f}"
