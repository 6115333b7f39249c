"""Tonight's book: the engine's accounts, the account endpoints and the market's realism.

Real HTTP over loopback, like ``test_simulator.py``. Everything is recomputed from what the
simulator serves (positions with marks, ``/market-data/by-type``, ``/market-metrics``, the
chart, the public rate), independently of its own code: the Greeks with ``vollib``, the groups
and their cases (a winner at 50 %, 21 DTE, a tested strike, earnings before expiration, a call at
early-assignment risk) by grouping options per underlying and expiration. The ledger is read as
plain data (``engine.run(seed).ledger.fills``) and summed here.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any, Iterator

import httpx
import numpy as np
import pytest
import vollib.black as v_black
import vollib.black.greeks.analytical as v_black_greeks
import vollib.black_scholes_merton as v_bsm
import vollib.black_scholes_merton.greeks.analytical as v_bsm_greeks

from support import RECORDED, assert_shape, login, recorded_bytes
from variance_pipeline.simulator import SimulatorServer, contracts, engine

MARGIN, IRA = "5WT00001", "5WT00002"
YEAR = 365.0 * 86400.0


def _evening(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, 22, tzinfo=timezone.utc)


# The tests' clocks (around 2025-11-25 and 2026-01-16) and evenings of the demo's window (the last
# ~30 sessions before the real clock of late 2026).
EVENINGS = [_evening(d) for d in (
    date(2025, 11, 20), date(2025, 11, 24), date(2025, 11, 25), date(2025, 12, 19),
    date(2026, 1, 13), date(2026, 1, 16), date(2026, 10, 26), date(2026, 11, 20), date(2026, 12, 4),
)]
CLOCK = _evening(date(2026, 1, 16))


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorServer]:
    with SimulatorServer(port=0, now=CLOCK) as server:
        yield server


@pytest.fixture(scope="module")
def api(sim: SimulatorServer) -> Iterator[httpx.Client]:
    with login(sim.url) as client:
        yield client


def _json(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return response.json()


# --- what an evening's book looks like from the served data ------------------------------------


@dataclass
class Leg:
    item: dict[str, Any]
    quote: dict[str, Any] | None  # /market-data/by-type (options)

    @property
    def symbol(self) -> str:
        return self.item["symbol"]

    @property
    def kind(self) -> str:
        return self.item["instrument-type"]

    @property
    def signed(self) -> int:
        return self.item["quantity"] * (1 if self.item["quantity-direction"] == "Long" else -1)

    @property
    def multiplier(self) -> int:
        return self.item["multiplier"]

    @property
    def mark(self) -> float:
        return float(self.item["mark-price"])

    @property
    def expiration(self) -> date:
        return datetime.fromisoformat(self.item["expires-at"]).astimezone(timezone.utc).date()

    @property
    def root(self) -> str:
        if self.kind == "Future Option":
            return self.item["underlying-symbol"][:-2]
        return self.item["underlying-symbol"]

    @property
    def strike(self) -> float:
        if self.kind == "Equity Option":
            return int(self.symbol[-8:]) / 1000
        return float(re.search(r"[CP]([\d.]+)$", self.symbol).group(1))  # type: ignore[union-attr]

    @property
    def call(self) -> bool:
        return (self.symbol[12] if self.kind == "Equity Option" else re.search(r"\d{6}([CP])", self.symbol).group(1)) == "C"  # type: ignore[union-attr]


@dataclass
class Book:
    clock: datetime
    legs: list[Leg]
    balances: dict[str, Any]
    report: dict[str, Any]
    metrics: dict[str, dict[str, Any]]
    prices: dict[str, float]  # underlying (root) -> price, from /market-data/by-type
    rate: float

    def options(self) -> list[Leg]:
        return [leg for leg in self.legs if "Option" in leg.kind]

    def groups(self) -> dict[tuple[str, date], list[Leg]]:
        found: dict[tuple[str, date], list[Leg]] = defaultdict(list)
        for leg in self.options():
            found[(leg.root, leg.expiration)].append(leg)
        return found

    def spot(self, leg: Leg) -> float:
        """A future option's own dated future (its ``underlying-symbol``), else the root's price."""
        if leg.kind == "Future Option":
            return self.prices[leg.item["underlying-symbol"]]
        return self.prices[leg.root]

    def intrinsic(self, leg: Leg) -> float:
        spot = self.spot(leg)
        return max(0.0, spot - leg.strike) if leg.call else max(0.0, leg.strike - spot)


def _chunks(items: list[str], size: int = 100) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def load_book(client: httpx.Client, account: str, clock: datetime) -> Book:
    items = _json(client.get(f"/accounts/{account}/positions", params={"include-marks": "true"}))["data"]["items"]
    quotes: dict[str, dict[str, Any]] = {}
    for kind, key in (("Equity Option", "equity-option"), ("Future Option", "future-option")):
        symbols = [i["symbol"] for i in items if i["instrument-type"] == kind]
        for chunk in _chunks(symbols):
            for quote in _json(client.get("/market-data/by-type", params={key: ",".join(chunk)}))["data"]["items"]:
                quotes[quote["symbol"]] = quote
    legs = [Leg(item, quotes.get(item["symbol"])) for item in items]
    roots = sorted({leg.root for leg in legs})
    stock_roots = [r for r in roots if not r.startswith("/")]
    futures = sorted({i["underlying-symbol"] for i in items if i["instrument-type"] == "Future Option"}
                     | {i["symbol"] for i in items if i["instrument-type"] == "Future"})
    prices: dict[str, float] = {}
    params = {"equity": ",".join(stock_roots), "future": ",".join(futures)}
    for quote in _json(client.get("/market-data/by-type", params={k: v for k, v in params.items() if v}))["data"]["items"]:
        symbol = quote["symbol"]
        prices[symbol] = float(quote["mark"])  # a future's own contract (/ZNH6): the curve prices each
    metrics = {m["symbol"]: m for m in _json(client.get("/market-metrics", params={"symbols": ",".join(roots)}))["data"]["items"]}
    rate = float(_json(client.get("/margin-requirements-public-configuration"))["data"]["risk-free-rate"])
    balances = _json(client.get(f"/accounts/{account}/balances"))["data"]
    report = _json(client.get(f"/margin/accounts/{account}/requirements"))["data"]
    return Book(clock, legs, balances, report, metrics, prices, rate)


@pytest.fixture(scope="module")
def books(sim: SimulatorServer, api: httpx.Client) -> dict[datetime, dict[str, Book]]:
    found = {}
    for clock in EVENINGS:
        sim.now = clock
        found[clock] = {account: load_book(api, account, clock) for account in (MARGIN, IRA)}
    sim.now = CLOCK
    return found


# --- the invariants --------------------------------------------------------------------------------


@pytest.mark.parametrize("account", [MARGIN, IRA])
def test_net_liquidating_value_is_cash_plus_the_positions_own_marks(books: dict, account: str) -> None:
    for clock, per_account in books.items():
        book = per_account[account]
        by_class: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
        for leg in book.legs:
            if leg.kind == "Future":  # settled daily into cash: only the move since the settlement
                value = (leg.mark - float(leg.item["close-price"])) * leg.item["quantity"] * leg.multiplier
            else:
                value = float(leg.item["mark"])
                assert value == pytest.approx(leg.mark * leg.item["quantity"] * leg.multiplier, abs=0.006)
            by_class[leg.kind][0 if leg.signed > 0 else 1] += value
        total = sum(long - short for long, short in by_class.values())
        balances = book.balances
        cash = float(balances["cash-balance"])
        tolerance = 0.01 * max(1, len(book.legs))
        assert float(balances["net-liquidating-value"]) == pytest.approx(cash + total, abs=tolerance), clock
        names = {"Equity": "equity", "Equity Option": "derivative", "Future Option": "futures-derivative"}
        for kind, name in names.items():
            long, short = by_class.get(kind, [0.0, 0.0])
            assert float(balances[f"long-{name}-value"]) == pytest.approx(long, abs=tolerance), (clock, name)
            assert float(balances[f"short-{name}-value"]) == pytest.approx(short, abs=tolerance), (clock, name)
        assert float(balances["margin-equity"]) == float(balances["net-liquidating-value"])


@pytest.mark.parametrize("account", [MARGIN, IRA])
def test_margin_report_groups_sum_to_the_requirement_and_the_balances(books: dict, account: str) -> None:
    for clock, per_account in books.items():
        book = per_account[account]
        report, balances = book.report, book.balances
        total = float(report["maintenance-requirement"])
        assert sum(float(g["maintenance-requirement"]) for g in report["groups"]) == pytest.approx(total, abs=0.01)
        for group in report["groups"]:
            nested = sum(float(n["maintenance-requirement"]) for n in group["groups"])
            assert nested == pytest.approx(float(group["maintenance-requirement"]), abs=0.01), group["underlying-symbol"]
            assert group["margin-requirement-effect"] == "Debit" and group["buying-power-effect"] == "Credit"
        assert float(balances["maintenance-requirement"]) == pytest.approx(total, abs=0.01)
        net_liq = float(balances["net-liquidating-value"])
        used = float(balances["used-derivative-buying-power"])
        derivative = sum(float(n["buying-power"]) for g in report["groups"] for n in g["groups"]
                         if n["description"] not in ("LONG_UNDERLYING", "SHORT_UNDERLYING", "COVERED_CALL"))
        assert used == pytest.approx(derivative, abs=0.01) and 0 <= used <= total + 0.01
        assert float(balances["derivative-buying-power"]) == pytest.approx(max(0.0, net_liq - total), abs=0.01)
        assert float(report["option-buying-power"]) == pytest.approx(float(balances["derivative-buying-power"]), abs=0.01)
        if account == MARGIN:
            assert 0.05 < used / net_liq < 0.8, clock  # a premium seller's usage, never a margin call
        # Every position sits in the report with its whole signed quantity.
        entered: dict[str, float] = defaultdict(float)
        for group in report["groups"]:
            for nested in group["groups"]:
                for entry in nested["position-entries"]:
                    entered[entry["instrument-symbol"]] += float(entry["quantity"])
        assert dict(entered) == {leg.symbol: float(leg.signed) for leg in book.legs}


def test_positions_are_the_sum_of_the_ledger(books: dict) -> None:
    ledger = engine.run(42).ledger.fills
    for clock, per_account in books.items():
        for account, book in per_account.items():
            rows = [f for f in ledger if f.account == account and f.executed_at <= clock]
            net: dict[str, int] = defaultdict(int)
            for row in rows:
                if row.contract is not None:
                    net[row.contract.symbol] += row.quantity
            assert {s: q for s, q in net.items() if q} == {leg.symbol: leg.signed for leg in book.legs}, (clock, account)
            cash = sum(row.value - row.commission - row.clearing_fees - row.regulatory_fees for row in rows)
            assert float(book.balances["cash-balance"]) == pytest.approx(cash, abs=0.01)
            for leg in book.legs:  # opened when the position last came up from zero
                running, opened = 0, None
                for row in (r for r in rows if r.contract is not None and r.contract.symbol == leg.symbol):
                    opened = row.executed_at if running == 0 else opened
                    running += row.quantity
                assert datetime.fromisoformat(leg.item["created-at"]) == opened, leg.symbol


def test_the_ledger_records_a_premium_sellers_trading() -> None:
    rows = engine.run(42).ledger.fills
    kinds = {(r.transaction_type, r.sub_type) for r in rows}
    for kind in [("Trade", "Sell to Open"), ("Trade", "Buy to Close"), ("Receive Deliver", "Expiration"),
                 ("Receive Deliver", "Assignment"), ("Money Movement", "Dividend"), ("Money Movement", "Mark to Market"),
                 ("Money Movement", "Deposit")]:
        assert kind in kinds, kind
    trades = [r for r in rows if r.transaction_type == "Trade"]
    assert all(r.order_id and r.action == r.sub_type and r.price >= 0 and r.fees >= 0 for r in trades)
    by_order: dict[int, set[str]] = defaultdict(set)
    for r in trades:
        by_order[r.order_id or 0].add(r.sub_type.split(" to ")[1])
    assert any(sides == {"Close", "Open"} for sides in by_order.values())  # rolls: one order closing and opening
    assert [r.executed_at for r in rows] == sorted(r.executed_at for r in rows)
    assert len({r.id for r in rows}) == len(rows)
    early = [r for r in rows if r.sub_type == "Sell to Close" and r.description.startswith("Early assignment")]
    assert early, "calls at early-assignment risk do get exercised before ex-dates"


@pytest.mark.parametrize("account", [MARGIN, IRA])
def test_book_theta_is_positive_and_vega_negative_by_vollib(books: dict, account: str) -> None:
    for clock, per_account in books.items():
        book = per_account[account]
        theta = vega = 0.0
        for leg in book.options():
            quote = leg.quote
            assert quote is not None, leg.symbol
            years = (datetime.fromisoformat(leg.item["expires-at"]) - clock).total_seconds() / YEAR
            sigma = float(quote["volatility"])
            flag = "c" if leg.call else "p"
            spot = book.spot(leg)
            if leg.kind == "Future Option":
                price = v_black.black(flag, spot, leg.strike, years, book.rate, sigma)
                assert price == pytest.approx(float(quote["theo-price"]), rel=1e-6, abs=1e-6), leg.symbol
                one = (v_black_greeks.theta(flag, spot, leg.strike, years, book.rate, sigma),
                       v_black_greeks.vega(flag, spot, leg.strike, years, book.rate, sigma))
            else:
                q = float(book.metrics[leg.root].get("dividend-yield") or 0.0)
                price = v_bsm.black_scholes_merton(flag, spot, leg.strike, years, book.rate, sigma, q)
                assert price == pytest.approx(float(quote["theo-price"]), rel=0.03, abs=0.05), leg.symbol
                one = (v_bsm_greeks.theta(flag, spot, leg.strike, years, book.rate, sigma, q),
                       v_bsm_greeks.vega(flag, spot, leg.strike, years, book.rate, sigma, q))
            assert float(quote["mark"]) == leg.mark  # the quote's mark is the position's
            assert leg.mark >= book.intrinsic(leg) - 0.01
            theta += one[0] * leg.signed * leg.multiplier
            vega += one[1] * leg.signed * leg.multiplier
        assert theta > 0 and vega < 0, (clock, account, theta, vega)


# --- what the book holds, evening after evening -----------------------------------------------------


def _profit(group: list[Leg]) -> float | None:
    credit = sum(-leg.signed * float(leg.item["average-open-price"]) * leg.multiplier for leg in group)
    cost = sum(-leg.signed * leg.mark * leg.multiplier for leg in group)
    return None if credit <= 0 else (credit - cost) / credit


def cases(book: Book) -> dict[str, list[str]]:
    """Which groups show each case a premium seller manages (names for the failure messages)."""
    found: dict[str, list[str]] = defaultdict(list)
    today = book.clock.date()
    for (root, expiration), group in book.groups().items():
        name = f"{root} {expiration}"
        profit = _profit(group)
        if profit is not None and profit >= 0.5:
            found["winner"].append(name)
        if (expiration - today).days <= 21:
            found["21 DTE"].append(name)
        for leg in group:
            if leg.signed < 0 and (book.intrinsic(leg) > 0 or abs(float(leg.quote["delta"])) >= 0.30):  # type: ignore[index]
                found["tested"].append(name)
        earnings = book.metrics.get(root, {}).get("earnings")
        if earnings and date.fromisoformat(earnings["expected-report-date"]) <= expiration:
            found["earnings"].append(name)
        metric = book.metrics.get(root, {})
        ex_date, dividend = metric.get("dividend-next-date"), float(metric.get("dividend-rate-per-share") or 0.0)
        for leg in group:
            if (leg.signed < 0 and leg.call and leg.kind == "Equity Option" and ex_date
                    and date.fromisoformat(ex_date) < expiration and leg.mark - book.intrinsic(leg) < dividend):
                found["early assignment"].append(name)
    return found


def test_every_evening_shows_each_case_a_premium_seller_manages(books: dict) -> None:
    for clock, per_account in books.items():
        found = cases(per_account[MARGIN])
        for case in ("winner", "21 DTE", "tested", "earnings", "early assignment"):
            assert found[case], f"{clock:%Y-%m-%d}: no group shows {case!r}; groups: {sorted(per_account[MARGIN].groups())}"


def test_every_evening_holds_what_a_premium_seller_holds(books: dict) -> None:
    ledger = engine.run(42).ledger.fills
    for clock, per_account in books.items():
        book = per_account[MARGIN]
        groups = book.groups()

        def shapes(root: str) -> set[str]:
            kinds = set()
            for (r, _), group in groups.items():
                if r != root:
                    continue
                shorts = {("C" if leg.call else "P") for leg in group if leg.signed < 0}
                longs = {("C" if leg.call else "P") for leg in group if leg.signed > 0}
                kinds.add("iron condor" if shorts == longs == {"C", "P"} else "strangle" if shorts == {"C", "P"} and not longs
                          else "short put" if shorts == {"P"} and not longs else "other")
            return kinds

        assert "strangle" in shapes("SPY") and "strangle" in shapes("IWM") and "iron condor" in shapes("QQQ"), clock
        assert "strangle" in shapes("/MES"), clock
        assert any("short put" in shapes(root) for root in ("MSFT", "NVDA", "AMZN", "TSLA")), clock
        futures = [leg for leg in book.legs if leg.kind == "Future"]
        assert [leg.root for leg in futures] == ["/ES"] and futures[0].multiplier == 50
        shares = {leg.symbol: leg for leg in book.legs if leg.kind == "Equity"}
        assert shares and all(leg.signed > 0 for leg in shares.values())
        covered = [leg for leg in book.options() if leg.call and leg.signed < 0 and leg.kind == "Equity Option"
                   and leg.root in shares and shares[leg.root].signed >= 100]
        assigned = [leg for leg in covered if any(  # the shares came from an assigned put
            row.account == MARGIN and row.transaction_type == "Receive Deliver" and row.contract is not None
            and row.contract.symbol == leg.root and row.quantity > 0
            and row.executed_at == datetime.fromisoformat(shares[leg.root].item["created-at"]) for row in ledger)]
        assert assigned, f"{clock}: no covered call on assigned shares"
        mes = [leg for leg in book.legs if leg.root == "/MES"]
        assert all(leg.multiplier == 5 for leg in mes)
    ira = [per_account[IRA] for per_account in books.values()]
    assert all(any(leg.kind == "Equity" for leg in book.legs) for book in ira)
    assert all(leg.signed > 0 or leg.kind == "Equity Option" for book in ira for leg in book.legs)
    ira_options = [leg for book in ira for leg in book.options()]
    assert {("C" if leg.call else "P") for leg in ira_options if leg.signed < 0} == {"C", "P"}  # covered calls, cash-secured puts


def test_future_option_symbols_are_fixed_width(books: dict) -> None:
    for per_account in books.values():
        for leg in per_account[MARGIN].legs:
            if leg.kind != "Future Option":
                continue
            symbol = leg.symbol
            future, product, ymd = symbol[2:7].strip(), symbol[7:13].strip(), symbol[13:19]
            assert symbol.startswith("./") and leg.item["underlying-symbol"] == "/" + future, symbol
            assert re.fullmatch(r"[A-Z0-9]+[FGHJKMNQUVXZ]\d", product) and re.fullmatch(r"\d{6}", ymd), symbol
            assert ymd == leg.expiration.strftime("%y%m%d") and symbol[19] in "CP", symbol
            assert (product.startswith("EX3"), leg.multiplier) == (True, 5) if future.startswith("MES") else product.startswith("OZN")
    # The examples, as the simulator's contracts write them.
    assert contracts.future_option("/MES", 2026, 3, "P", 6450).symbol == "./MESM6EX3H6 260320P6450"
    assert contracts.future_option("/MCL", 2026, 4, "C", 84).symbol == "./MCLJ6MCOJ6 260317C84"
    assert contracts.future_option("/GC", 2026, 4, "C", 5740).symbol == "./GCJ6 OGJ6  260326C5740"
    assert contracts.future_option("/ZN", 2026, 2, "P", 111).symbol == "./ZNH6 OZNG6 260123P111"


# --- the endpoints' shapes, limits, faults and replay ------------------------------------------------


def _recorded(name: str) -> Any:
    import json

    return json.loads(recorded_bytes(f"tastytrade/{name}"))


def test_account_endpoints_have_the_recorded_shapes(api: httpx.Client) -> None:
    for path in ("/accounts/5WT00001/balances", "/accounts/5WT00001/balances/USD"):
        body = _json(api.get(path))
        assert body["context"] == path
        assert_shape(_recorded("balances.json")["data"], body["data"])
        assert isinstance(body["data"]["used-derivative-buying-power"], str)
    report = _json(api.get("/margin/accounts/5WT00001/requirements"))["data"]
    recorded = _recorded("margin_requirements.json")["data"]
    assert_shape(recorded, report)
    option_entries = [e for g in report["groups"] for n in g["groups"] for e in n["position-entries"] if "strike-price" in e]
    assert option_entries
    assert_shape(recorded["groups"][1]["groups"][0]["position-entries"][0], option_entries[0])
    for account in (MARGIN, IRA, "5WT00003"):
        status = _json(api.get(f"/accounts/{account}/trading-status"))
        assert_shape(_recorded("trading_status.json")["data"], status["data"])
        assert status["data"]["account-number"] == account
    margin, ira = (_json(api.get(f"/accounts/{n}/trading-status"))["data"] for n in (MARGIN, IRA))
    assert (margin["options-level"], margin["is-futures-enabled"], margin["is-portfolio-margin-enabled"]) == ("No Restrictions", True, False)
    assert (ira["options-level"], ira["equities-margin-calculation-type"]) == ("Defined Risk Spreads", "IRA Margin")
    assert not margin["is-in-margin-call"] and not ira["is-in-margin-call"]
    for missing in ("/accounts/NOPE0000/balances", "/margin/accounts/NOPE0000/requirements", "/accounts/NOPE0000/trading-status"):
        assert api.get(missing).status_code == 404
    assert api.get("/accounts/5WT00001/balances/EUR").status_code == 404


def test_market_data_by_type_has_the_recorded_shape_and_limits(api: httpx.Client) -> None:
    recorded = _recorded("market_data_by_type_SPY_options.json")["items"][0]
    positions = _json(api.get("/accounts/5WT00002/positions", params={"include-marks": "true"}))["data"]["items"]
    ira_options = [p for p in positions if p["instrument-type"] == "Equity Option"]
    assert ira_options
    body = _json(api.get("/market-data/by-type", params={"equity-option": ",".join(p["symbol"] for p in ira_options)}))
    assert body["context"] == "/market-data/by-type"
    items = {i["symbol"]: i for i in body["data"]["items"]}
    assert set(items) == {p["symbol"] for p in ira_options}
    for position in ira_options:
        item = items[position["symbol"]]
        assert_shape(recorded, item)
        assert item["mark"] == position["mark-price"]
        assert float(item["bid"]) <= float(item["mark"]) <= float(item["ask"])
    # Repeated keys (as the SDK sends lists), several types, unknown and malformed symbols absent.
    mixed = _json(api.get("/market-data/by-type", params=[
        ("equity", "SPY"), ("equity", "AAPL"), ("index", "SPX"), ("future", "/ESH6"), ("equity", "NOPE"),
        ("equity-option", "SPY   260320P00600000"), ("future-option", "./MESM6EX3H6 260320P6450"),
        ("future-option", "./MCLJ6MCOJ6 260317C84"), ("equity-option", "SPY 2603"),
    ]))["data"]["items"]
    assert [(i["instrument-type"], i["symbol"]) for i in mixed] == [
        ("Equity", "SPY"), ("Equity", "AAPL"), ("Index", "SPX"), ("Future", "/ESH6"),
        ("Equity Option", "SPY   260320P00600000"), ("Future Option", "./MESM6EX3H6 260320P6450"),
        ("Future Option", "./MCLJ6MCOJ6 260317C84"),
    ]
    assert all(isinstance(i["open-interest"], int) for i in mixed if "Option" in i["instrument-type"])
    too_many = api.get("/market-data/by-type", params={"equity": ",".join(["SPY"] * 60), "index": ",".join(["SPX"] * 41)})
    assert too_many.status_code == 400 and "100" in too_many.json()["error"]["message"]
    assert api.get("/market-data/by-type").status_code == 400


def test_new_endpoints_fail_on_demand_and_are_logged_by_name(api: httpx.Client) -> None:
    api.delete("/_sim/requests")
    rules = [
        {"endpoint": "market-data", "kind": "403", "count": 1},
        {"endpoint": "balances", "kind": "503", "count": 1},
        {"endpoint": "margin-requirements", "kind": "429", "count": 1, "retry_after": 2},
        {"endpoint": "trading-status", "kind": "500", "count": 1},
    ]
    assert api.post("/_sim/faults", json=rules).status_code == 200
    try:
        unfunded = api.get("/market-data/by-type", params={"equity": "SPY"})
        assert unfunded.status_code == 403 and unfunded.json()["error"]["code"] == "unfunded_account"
        assert api.get("/accounts/5WT00001/balances").status_code == 503
        limited = api.get("/margin/accounts/5WT00001/requirements")
        assert limited.status_code == 429 and limited.headers["Retry-After"] == "2"
        assert api.get("/accounts/5WT00001/trading-status").status_code == 500
        for path in ("/market-data/by-type?equity=SPY", "/accounts/5WT00001/balances/USD",
                     "/margin/accounts/5WT00001/requirements", "/accounts/5WT00001/trading-status"):
            assert api.get(path).status_code == 200, path
        log = api.get("/_sim/requests").json()
        assert [(e["endpoint"], e["status"]) for e in log] == [
            ("market-data", 403), ("balances", 503), ("margin-requirements", 429), ("trading-status", 500),
            ("market-data", 200), ("balances", 200), ("margin-requirements", 200), ("trading-status", 200),
        ]
        assert log[4]["query"] == {"equity": "SPY"}
    finally:
        api.delete("/_sim/faults")


def test_replay_answers_the_account_endpoints_from_the_recordings() -> None:
    with SimulatorServer(port=0, replay_dir=RECORDED) as server, login(server.url) as client:
        assert _json(client.get("/accounts/5YZ55555/balances")) == _recorded("balances.json")
        assert _json(client.get("/margin/accounts/5YZ55555/requirements")) == _recorded("margin_requirements.json")
        assert _json(client.get("/accounts/5YZ55555/trading-status")) == _recorded("trading_status.json")
        recorded = _recorded("market_data_by_type_SPY_options.json")["items"]
        body = _json(client.get("/market-data/by-type", params={"equity-option": "SPY   250701C00610000,SPY   250101C00100000"}))
        assert body == {"data": {"items": [recorded[1]]}, "context": "/market-data/by-type"}
        assert client.get("/market-data/by-type").status_code == 400


def test_the_book_is_deterministic_per_seed() -> None:
    paths = ["/accounts/5WT00001/positions?include-marks=true", "/accounts/5WT00001/balances",
             "/margin/accounts/5WT00001/requirements", "/accounts/5WT00002/positions"]
    bodies = []
    for seed in (42, 42, 7):
        with SimulatorServer(port=0, now=CLOCK, seed=seed) as server, login(server.url) as client:
            bodies.append([_json(client.get(path)) for path in paths])
    assert bodies[0] == bodies[1]
    assert bodies[2][0] != bodies[0][0] and bodies[2][1] != bodies[0][1]


# --- the market's realism ----------------------------------------------------------------------------

REALISM_START, REALISM_END = date(2022, 1, 3), date(2025, 11, 28)
NAMES = ["SPY", "QQQ", "IWM", "AAPL", "MSFT", "NVDA", "TSLA", "GLD", "TLT", "ABCD", "QWER", "BRK/B", "XYZ", "KLMN"]


@pytest.fixture(scope="module")
def history(sim: SimulatorServer, api: httpx.Client) -> dict[str, Any]:
    """Closes from the chart and every fifth evening's metrics, 2022 to late 2025."""
    sim.now = _evening(REALISM_END)
    closes = {}
    for name in ("SPY", "QQQ", "IWM"):
        result = _json(api.get(f"/v8/finance/chart/{name}", params={"range": "5y", "interval": "1d"}))["chart"]["result"][0]
        days = [datetime.fromtimestamp(t, timezone.utc).date() for t in result["timestamp"]]
        closes[name] = dict(zip(days, result["indicators"]["quote"][0]["close"]))
    sessions = sorted(d for d in closes["SPY"] if REALISM_START <= d <= REALISM_END)
    metrics: dict[date, dict[str, dict[str, Any]]] = {}
    for day in sessions[::5]:
        sim.now = _evening(day)
        metrics[day] = {m["symbol"]: m for m in _json(api.get("/market-metrics", params={"symbols": ",".join(NAMES)}))["data"]["items"]}
    sim.now = CLOCK
    return {"closes": closes, "sessions": sessions, "metrics": metrics}


def _realised(closes: list[float]) -> float:
    returns = np.diff(np.log(np.array(closes)))
    return float(np.std(returns, ddof=1) * math.sqrt(252))


def test_index_etf_volatility_is_mostly_calm_with_rare_short_stress(history: dict) -> None:
    for name in ("SPY", "QQQ", "IWM"):
        series = history["closes"][name]
        days = sorted(series)
        hv20 = [_realised([series[d] for d in days[i - 20 : i + 1]]) for i in range(20, len(days))
                if REALISM_START <= days[i] <= REALISM_END]
        calm = np.mean([(0.08 <= v <= 0.25) for v in hv20])
        assert calm >= 0.75, (name, calm)
        assert np.mean([v > 0.35 for v in hv20]) < 0.05, name  # stress spells are rare and short
        assert max(hv20) < 0.9, name


def test_implied_volatility_carries_a_premium_that_is_usually_but_not_always_earned(history: dict) -> None:
    sessions, metrics = history["sessions"], history["metrics"]
    for name in ("SPY", "QQQ", "IWM"):
        series = history["closes"][name]
        days = sorted(series)
        where = {d: i for i, d in enumerate(days)}
        positive, above_hv = [], []
        for day, items in metrics.items():
            item = items[name]
            iv30 = float(item["implied-volatility-30-day"]) / 100
            assert abs(iv30 - float(item["implied-volatility-index"])) < 0.006, (name, day)  # IV30 is the headline
            above_hv.append(iv30 > float(item["historical-volatility-30-day"]) / 100)
            i = where[day]
            if i + 21 < len(days) and days[i + 21] <= REALISM_END:
                positive.append(iv30 > _realised([series[d] for d in days[i : i + 22]]))
        assert 0.6 <= np.mean(positive) <= 0.92, (name, np.mean(positive))  # about three days in four, not all
        assert np.mean(above_hv) >= 0.6, name
    assert len(sessions) > 900


def test_term_structure_slopes_up_when_calm_and_inverts_in_stress(history: dict) -> None:
    for name in ("SPY", "QQQ", "IWM"):
        slopes: list[tuple[float, float]] = []
        for items in history["metrics"].values():
            ivs = [float(e["implied-volatility"]) for e in items[name]["option-expiration-implied-volatilities"]]
            slopes.append((float(items[name]["implied-volatility-index"]), ivs[-1] - ivs[0]))
        levels = np.array([iv for iv, _ in slopes])
        low, high = np.quantile(levels, 0.3), np.quantile(levels, 0.95)
        calm = [slope for iv, slope in slopes if iv <= low]
        stressed = [slope for iv, slope in slopes if iv >= high]
        assert np.mean([s > 0 for s in calm]) >= 0.9, name
        assert np.mean([s < 0 for s in stressed]) >= 0.6, name


def test_iv_rank_spreads_over_its_range_across_names_and_time(history: dict) -> None:
    ranks = defaultdict(list)
    spreads = []
    for items in history["metrics"].values():
        today = [float(m["implied-volatility-index-rank"]) for m in items.values()]
        spreads.append(max(today) - min(today))
        for symbol, item in items.items():
            ranks[symbol].append(float(item["implied-volatility-index-rank"]))
    assert np.median(spreads) >= 0.5  # on a typical evening some names are cheap, some rich
    for symbol, values in ranks.items():
        assert min(values) < 0.2 and max(values) > 0.8, symbol
        assert 0.2 <= np.median(values) <= 0.65, symbol


def test_known_names_trade_near_their_real_price_levels(api: httpx.Client) -> None:
    real = {  # raw closes on 2024-01-02 and 2025-11-03 (approximate real levels)
        "SPY": (472.7, 683.3), "QQQ": (396.3, 632.1), "IWM": (198.7, 245.1), "AAPL": (185.6, 269.1),
        "MSFT": (370.9, 517.0), "NVDA": (48.17, 206.9), "TLT": (97.5, 90.0), "GLD": (190.6, 367.9),
    }
    for name, (first, second) in real.items():
        result = _json(api.get(f"/v8/finance/chart/{name}", params={"range": "5y", "interval": "1d"}))["chart"]["result"][0]
        closes = dict(zip((datetime.fromtimestamp(t, timezone.utc).date() for t in result["timestamp"]),
                          result["indicators"]["quote"][0]["close"]))
        assert closes[date(2024, 1, 2)] == pytest.approx(first, rel=0.01), name
        assert closes[date(2025, 11, 3)] == pytest.approx(second, rel=0.01), name
    es = _json(api.get("/market-data/by-type", params={"future": "/ESH6"}))["data"]["items"][0]
    assert 5000 < float(es["mark"]) < 9000


def test_market_data_by_type_quotes_a_vx_futures_curve_in_contango(api: httpx.Client) -> None:
    """Issue #19: VIX options settle to the VX future of their expiration, whose price the pipeline
    can only get from ``/market-data/by-type`` (``future=/VXG6``). The simulator lists the next
    months on a contango curve over spot VIX (each later month dearer), the same numbers on every
    request; an expired or unlisted month is omitted, as the real API omits unknown symbols."""
    months = ["/VXG6", "/VXH6", "/VXJ6", "/VXK6", "/VXM6", "/VXN6"]
    body = _json(api.get("/market-data/by-type", params={"future": ",".join(["/VXZ4", *months, "/VXK7"]), "index": "VIX"}))
    items = {i["symbol"]: i for i in body["data"]["items"]}
    assert set(items) == {"VIX", *months}, sorted(items)  # /VXZ4 expired, /VXK7 beyond the listed months
    spot = float(items["VIX"]["mark"])
    marks = [float(items[m]["mark"]) for m in months]
    assert all(i["instrument-type"] == "Future" for s, i in items.items() if s != "VIX")
    assert spot < marks[0] and all(a < b for a, b in zip(marks, marks[1:])), (spot, marks)  # contango
    assert marks[-1] <= spot * 1.4  # capped, not a runaway curve
    closes = [float(items[m]["close"]) for m in months]
    assert all(a < b for a, b in zip(closes, closes[1:])) and float(items[months[0]]["close"]) > float(items["VIX"]["close"])
    for m in months:
        assert float(items[m]["bid"]) < float(items[m]["mark"]) < float(items[m]["ask"])
    again = _json(api.get("/market-data/by-type", params={"future": ",".join(reversed(months[:3]))}))["data"]["items"]
    assert {i["symbol"]: (i["mark"], i["close"], i["prev-close"]) for i in again} == {
        m: (items[m]["mark"], items[m]["close"], items[m]["prev-close"]) for m in months[:3]
    }
