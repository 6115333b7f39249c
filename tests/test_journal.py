"""The journal without Dagster: the history protocol over real HTTP, and the trades against plain
computations written here (signed positions, FIFO lots), never by the code under test.

Real HTTP over loopback against the module's simulator; the recorded responses where they exist.
"""

from __future__ import annotations

import json
from collections import defaultdict, deque
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pandas as pd
import pytest

from support import CLOCK, RECORDED, login, recorded_items
from variance_pipeline.schemas.journal import TRADE_TRANSACTIONS, TRADES, TRANSACTIONS
from variance_pipeline.schemas.validate import validate_frame
from variance_pipeline.simulator import SimulatorServer
from variance_pipeline.simulator.faults import parse_rules
from variance_pipeline.sources.http import RawResponse, SourceError
from variance_pipeline.sources.tastytrade import TastytradeClient, TastytradeCredentials
from variance_pipeline.sources.tastytrade_history import net_liq_history, transactions_history, transactions_since
from variance_pipeline.sources.tastytrade_journal import balance_snapshot_rows, net_liq_rows, transaction_rows
from variance_pipeline.transforms.trades import build_journal

MARGIN, IRA = "5WT00001", "5WT00002"
EVENINGS = [datetime(2025, 11, 20, 22, tzinfo=timezone.utc), datetime(2025, 12, 19, 22, tzinfo=timezone.utc),
            datetime(2026, 1, 16, 22, tzinfo=timezone.utc), CLOCK]
TRANSFERS = {"Deposit", "Withdrawal"}


def client(url: str) -> TastytradeClient:
    return TastytradeClient(url, TastytradeCredentials("secret", "refresh"))


def journal_items(api: httpx.Client, account: str) -> list[dict[str, Any]]:
    """The whole journal oldest first, read here with plain paging (not the pipeline's client)."""
    items, page = [], 0
    while True:
        body = api.get(f"/accounts/{account}/transactions", params={"sort": "Asc", "per-page": 2000, "page-offset": page}).json()
        items += body["data"]["items"]
        page += 1
        if page >= body["pagination"]["total-pages"]:
            return items


def signed_positions(items: list[dict[str, Any]], start: dict[str, float] | None = None) -> dict[str, float]:
    """Positions from transactions: an action's side (Buy +, Sell -), or for a removal without one
    (expiration, assignment, exercise) the opposite of what is held."""
    held: dict[str, float] = defaultdict(float, start or {})
    for item in sorted(items, key=lambda i: (i["executed-at"], "action" in i)):
        if not item.get("symbol") or item["transaction-type"] == "Money Movement":
            continue
        quantity = float(item["quantity"])
        if "action" in item:
            held[item["symbol"]] += quantity if item["action"].startswith("Buy") else -quantity
        else:
            held[item["symbol"]] -= quantity if held[item["symbol"]] > 0 else -quantity
    return {s: q for s, q in held.items() if abs(q) > 1e-9}


def fifo_realized(items: list[dict[str, Any]]) -> dict[str, float]:
    """Realised P&L per underlying by classic FIFO matching: for every closed unit, the price it
    was closed at less the price it was opened at (cash per unit), plus every fee, dividend and
    futures settlement; deposits and withdrawals are not P&L."""

    def cash(item: dict[str, Any], field: str) -> float:
        amount = float(item.get(field) or 0.0)
        return -amount if item.get(f"{field}-effect") == "Debit" else amount

    lots: dict[str, deque[list[float]]] = defaultdict(deque)  # symbol -> [signed quantity, cash per unit]
    realized: dict[str, float] = defaultdict(float)
    for item in sorted(items, key=lambda i: (i["executed-at"], "action" in i)):
        if item["transaction-sub-type"] in TRANSFERS or not item.get("symbol"):
            continue
        root = item["underlying-symbol"]
        root = root[:-2] if item["instrument-type"] == "Future Option" else root  # /MESM6 -> /MES
        realized[root] += cash(item, "net-value") - cash(item, "value")  # fees (and nothing else)
        if item["transaction-type"] == "Money Movement":
            realized[root] += cash(item, "value")  # dividends, settlements
            continue
        quantity = float(item["quantity"])
        book = lots[item["symbol"]]
        held = sum(q for q, _ in book)
        if "action" in item:
            signed = quantity if item["action"].startswith("Buy") else -quantity
        else:
            signed = -quantity if held > 0 else quantity
        per_unit = cash(item, "value") / signed if signed else 0.0  # cash received per unit bought (< 0)
        left = signed
        while left and book and (book[0][0] > 0) != (left > 0):
            lot = book[0]
            take = min(abs(left), abs(lot[0])) * (1 if left > 0 else -1)
            # the closing cash of these units less the opening cash they were bought or sold for
            realized[root] += take * per_unit - take * lot[1]
            lot[0] += take
            left -= take
            if abs(lot[0]) < 1e-9:
                book.popleft()
        if abs(left) > 1e-9:
            book.append([left, per_unit])
    return dict(realized)


@pytest.fixture(scope="module")
def api(sim: SimulatorServer) -> Any:
    with login(sim.url) as http:
        yield http


@pytest.fixture(scope="module")
def journals(api: httpx.Client) -> dict[str, list[dict[str, Any]]]:
    return {account: journal_items(api, account) for account in (MARGIN, IRA)}


# --- the simulator's history --------------------------------------------------------------------


def test_positions_rebuilt_from_transactions_equal_the_snapshot_on_every_evening(sim: SimulatorServer, api: httpx.Client) -> None:
    try:
        for evening in EVENINGS:
            sim.now = evening
            for account in (MARGIN, IRA):
                items = journal_items(api, account)
                assert all(datetime.fromisoformat(i["executed-at"]) <= evening for i in items)
                served = api.get(f"/accounts/{account}/positions").json()["data"]["items"]
                snapshot = {p["symbol"]: float(p["quantity"]) * (1 if p["quantity-direction"] == "Long" else -1) for p in served}
                assert signed_positions(items) == snapshot, (evening, account)
                assert snapshot, "the book is never empty"
    finally:
        sim.now = CLOCK


def test_recorded_transactions_close_the_recorded_position() -> None:
    """The recorded short 40 RIVN put (positions of 2023-05-24) is removed by the recorded assignment;
    its 4000 shares come in at the strike; the recorded call is sold."""
    position = recorded_items("tastytrade/positions.json")[0]
    start = {position["symbol"]: -float(position["quantity"])}
    after = signed_positions(recorded_items("tastytrade/transactions.json"), start)
    assert after == {"RIVN": 4000.0, "RIVN  230623C00015000": -40.0}
    rows = transaction_rows(recorded_items("tastytrade/transactions.json"), fetched_at=CLOCK)
    frame = TRANSACTIONS.frame(rows)
    assert validate_frame(TRANSACTIONS, frame).ok
    by_id = frame.set_index("id")
    assert by_id.loc[2455333333, "value"] == 1880.0 and by_id.loc[2455333333, "net_value"] == 1878.858  # as sent
    assert by_id.loc[2455333333, "commission"] == -40.0 and by_id.loc[2455333333, "regulatory_fees"] == -0.042
    assert by_id.loc[245478958, "value"] == -56000.0 and by_id.loc[245478958, "net_value"] == -56200.0
    assert pd.isna(by_id.loc[2454865989, "action"]) and by_id.loc[2454865989, "value"] == 0.0
    built = build_journal(frame, CLOCK.date())
    # The put's opening is older than the recording: its removal finds no lot and is counted, not guessed.
    assert built.orphans == 1
    # The delivered shares open a trade; the call sold against them makes it a covered call. Realised
    # so far: the delivery's 200.00 of fees and the call's 1.142 (net value as sent, below its value).
    assert len(built.trades) == 1
    wheel = built.trades.iloc[0]
    assert wheel["strategy"] == "covered_call" and wheel["status"] == "open" and wheel["open_legs"] == 2
    assert wheel["realized_pnl"] == pytest.approx(-200.0 - (1880.0 - 1878.858))


def test_recorded_net_liq_history_and_balance_snapshot_become_rows() -> None:
    points = net_liq_rows("5YZ55555", recorded_items("tastytrade/net_liq_history.json"), fetched_at=CLOCK)
    assert len(points) == 1  # three 5-minute points of 2023-06-08
    row = points[0]
    assert (row["open"], row["high"], row["low"], row["close"]) == (4498.667, 4507.5383, 4498.667, 4507.5383)
    assert row["points"] == 3 and str(row["session_date"]) == "2023-06-08"
    snapshot = balance_snapshot_rows("5YZ55555", recorded_items("tastytrade/balance_snapshots.json"), fetched_at=CLOCK)
    assert snapshot[0]["close"] == 4544.727 and snapshot[0]["source"] == "balance_snapshot"
    thin = balance_snapshot_rows("A", [{"snapshot-date": "2024-01-02", "net-liquidating-value": "10.5"}], fetched_at=CLOCK)
    assert thin[0]["close"] == 10.5 and thin[0]["pending_cash_close"] is None


def test_realised_pnl_equals_an_independent_fifo(journals: dict[str, list[dict[str, Any]]]) -> None:
    items = journals[MARGIN] + journals[IRA]
    frame = TRANSACTIONS.frame(transaction_rows(items, fetched_at=CLOCK))
    built = build_journal(frame, CLOCK.date())
    assert built.orphans == 0
    trades = built.trades
    assert validate_frame(TRADES, TRADES.conform(trades.assign(**{c: None for c in TRADES.missing_columns(trades.columns)}))).ok
    for account in (MARGIN, IRA):
        expected = fifo_realized(journals[account])
        mine = trades[trades["account_number"] == account].groupby("underlying_symbol")["realized_pnl"].sum()
        assert set(mine.index) == set(expected)
        for root, pnl in expected.items():
            assert mine[root] == pytest.approx(pnl, abs=0.01), (account, root)
    # A closed trade's realised P&L is the sum of its transactions' net value.
    legs = built.trade_transactions.merge(frame[["id", "net_value"]], on="id")
    closed = trades[trades["status"] == "closed"].set_index("trade_id")
    sums = legs.groupby("trade_id")["net_value"].sum()
    shared = [t for t in closed.index if abs(sums[t] - closed.loc[t, "realized_pnl"]) > 0.005]
    assert len(shared) <= 0.01 * len(closed), shared  # rows shared by two trades (rule 2) are rare
    assert {"short_put", "strangle", "iron_condor", "vertical", "covered_call"} <= set(trades["strategy"])
    # A spread settled in shares keeps its loss: no stock trade opens and closes at one instant.
    legs_at = legs.merge(frame[["id", "executed_at"]], on="id").groupby("trade_id")["executed_at"].agg(["min", "max"])
    stock = closed[closed["strategy"] == "stock"]
    assert not [t for t in stock.index if legs_at.loc[t, "min"] == legs_at.loc[t, "max"]]
    assert (closed.loc[closed["strategy"] == "vertical", "outcome"] == "loss").any()
    # A trade holding shares is judged against the premium it sold, never the shares' notional.
    wheels = closed[closed["strategy"].isin(["covered_call", "stock"])]
    assert len(wheels) > 0
    for trade in wheels.itertuples():
        pnl, band = trade.realized_pnl, max(1.0, 0.05 * abs(trade.premium_sold))
        assert trade.outcome == ("scratch" if abs(pnl) <= band else "win" if pnl > 0 else "loss"), trade.Index
    assert (trades["rolls"] > 0).any() and trades["assigned"].any() and trades["parent_trade_id"].notna().any()


def test_trades_sum_to_the_positions_they_hold(journals: dict[str, list[dict[str, Any]]]) -> None:
    items = journals[MARGIN] + journals[IRA]
    frame = TRANSACTIONS.frame(transaction_rows(items, fetched_at=CLOCK))
    built = build_journal(frame, CLOCK.date())
    assert validate_frame(TRADE_TRANSACTIONS, TRADE_TRANSACTIONS.conform(built.trade_transactions)).ok
    legs = built.trade_transactions.merge(frame[["id", "symbol"]], on="id").dropna(subset=["signed_quantity"])
    held = legs.groupby(["account_number", "symbol"])["signed_quantity"].sum()
    held = held[held.abs() > 1e-9]
    for account in (MARGIN, IRA):
        assert {s: q for (a, s), q in held.items() if a == account} == signed_positions(journals[account])


# --- the protocol: pages, requests, failures ------------------------------------------------------


def test_whole_history_pages_with_a_small_page_size_one_request_a_page(sim: SimulatorServer, journals: dict) -> None:
    landed: list[RawResponse] = []
    sim.requests.clear()
    with client(sim.url) as tasty:
        fetched = transactions_history(tasty, MARGIN, landed.append, per_page=97)
    pages = -(-len(journals[MARGIN]) // 97)
    assert [i["id"] for i in fetched.items] == [i["id"] for i in journals[MARGIN]]
    asked = [r for r in sim.requests.entries() if r["endpoint"] == "transactions"]
    assert len(asked) == pages == len(landed)
    assert [r["query"]["page-offset"] for r in asked] == [str(p) for p in range(pages)]
    assert all(r["query"]["sort"] == "Asc" and r["query"]["per-page"] == "97" for r in asked)


def test_a_later_evening_costs_one_request_per_account(sim: SimulatorServer, journals: dict) -> None:
    sim.requests.clear()
    last = max(datetime.fromisoformat(i["executed-at"]) for i in journals[MARGIN])
    with client(sim.url) as tasty:
        try:
            sim.now = CLOCK + timedelta(days=1)  # the next session's evening
            new = transactions_since(tasty, MARGIN, last - timedelta(days=3)).items
        finally:
            sim.now = CLOCK
    asked = [r for r in sim.requests.entries() if r["endpoint"] == "transactions"]
    assert len(asked) == 1 and asked[0]["query"]["sort"] == "Desc"
    assert new and all(datetime.fromisoformat(i["executed-at"]) >= last - timedelta(days=3) for i in new)
    assert any(datetime.fromisoformat(i["executed-at"]) > last for i in new)  # tonight's fills are there


@pytest.mark.parametrize("rule,reason", [
    ({"endpoint": "transactions", "kind": "500", "page": 1}, "HTTP 500"),
    ({"endpoint": "transactions", "kind": "truncated", "page": 1}, "JSON"),
    ({"endpoint": "transactions", "kind": "reply", "status": 200, "page": 1,
      "body": {"data": {"items": []}, "pagination": {"total-items": 2082, "total-pages": 22, "item-offset": 100}}},
     "a page is missing"),
])
def test_a_missing_or_truncated_page_fails_naming_account_and_page_after_landing_the_pages_before(
    sim: SimulatorServer, rule: dict, reason: str
) -> None:
    landed: list[RawResponse] = []
    sim.app.faults.replace(parse_rules(rule))
    try:
        with client(sim.url) as tasty:
            with pytest.raises(SourceError) as failure:
                transactions_history(tasty, MARGIN, landed.append, per_page=100)
    finally:
        sim.app.faults.clear()
    message = str(failure.value)
    assert f"/accounts/{MARGIN}/transactions page-offset 1" in message and reason in message, message
    assert landed and landed[0].name.endswith("page-000.json")
    assert len(json.loads(landed[0].body)["data"]["items"]) == 100


def test_the_recorded_journal_misses_its_later_pages_and_says_so(recorded_dir: Any) -> None:
    with SimulatorServer(port=0, replay_dir=RECORDED) as replay, client(replay.url) as tasty:
        with pytest.raises(SourceError, match=r"page-offset 1 .*(404|missing)") as failure:
            transactions_history(tasty, "5YZ55555", per_page=3)
        assert "5YZ55555" in str(failure.value)
        assert len(net_liq_history(tasty, "5YZ55555", "1d")) == 3


def test_drop_fee_makes_the_journal_forget_a_fee(sim: SimulatorServer, api: httpx.Client) -> None:
    honest = api.get(f"/accounts/{MARGIN}/transactions", params={"sort": "Asc", "per-page": 50}).json()["data"]["items"]
    sim.app.faults.replace(parse_rules({"endpoint": "transactions", "kind": "drop_fee", "field": "commission"}))
    try:
        forgot = api.get(f"/accounts/{MARGIN}/transactions", params={"sort": "Asc", "per-page": 50}).json()["data"]["items"]
    finally:
        sim.app.faults.clear()
    changed = [(h, f) for h, f in zip(honest, forgot) if h != f]
    assert changed
    for h, f in changed:
        assert f["commission"] == "0.0" and float(f["net-value"]) * (1 if f["net-value-effect"] == "Credit" else -1) == pytest.approx(
            float(h["net-value"]) * (1 if h["net-value-effect"] == "Credit" else -1) + float(h["commission"]))
