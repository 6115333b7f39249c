"""Live fidelity: what the real APIs do that the parser, the clients and the simulator must match.

Each test pins one fact from ``docs/reference/api-facts.md`` (or a recorded response) through the
real code path: the parsers on recorded bodies, the clients over loopback HTTP against the
simulator, or the simulator's own answers.
"""

from __future__ import annotations

import json
import random
import shutil
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pandas as pd
import pyarrow as pa
import pytest

from variance_pipeline.calendar import session_close
from variance_pipeline.defs.resources import YahooResource, build_resources
from variance_pipeline.settings import ConfigurationError, Settings
from variance_pipeline.simulator import SimulatorServer
from variance_pipeline.simulator.faults import parse_rules
from variance_pipeline.simulator.metrics import HARD_TO_BORROW_SHARE, _borrow_fields
from variance_pipeline.simulator.replay import merge_charts
from variance_pipeline.simulator.chart import Window, render
from variance_pipeline.sources import http as http_module
from variance_pipeline.sources import tastytrade as tastytrade_module
from variance_pipeline.sources.http import RateLimiter, RawResponse, RequestStats, RetryPolicy, SourceError
from variance_pipeline.sources.tastytrade import TastytradeClient, TastytradeCredentials
from variance_pipeline.sources.yahoo import (
    INDEX_TICKERS,
    ChartError,
    SymbolUnavailable,
    YahooChartClient,
    estimate_seconds,
    pace_message,
    parse_chart,
    yahoo_ticker,
)
from variance_pipeline.schemas.market_metrics import MARKET_METRICS, IV_TERM_STRUCTURE
from variance_pipeline.schemas.positions import POSITIONS
from variance_pipeline.schemas.validate import validate_frame
from variance_pipeline.schemas.universe import universe_frame
from variance_pipeline.transforms.position_greeks import position_greeks

from support import RECORDED, market_metrics_frames, positions_frame  # noqa: E402

NY = ZoneInfo("America/New_York")
FAST = RetryPolicy(max_attempts=3, base_delay=0.001, max_delay=0.01, max_total_wait=1.0, timeout=5.0)
CREDENTIALS = TastytradeCredentials(client_secret="simulator", refresh_token="simulator")
# Monday 2025-11-24, 19:48 New York: CME Globex reopened at 18:00 for Tuesday's session.
EVENING = datetime(2025, 11, 24, 19, 48, tzinfo=NY)
BEFORE_REOPEN = datetime(2025, 11, 24, 17, 30, tzinfo=NY)
SUNDAY_EVENING = datetime(2025, 11, 23, 19, 0, tzinfo=NY)
AFTER_CLOSE = datetime(2025, 11, 25, 22, 0, tzinfo=timezone.utc)


def recorded_chart(name: str) -> dict[str, Any]:
    return json.loads((RECORDED / "yahoo" / name).read_text())


def ny_date(epoch: int) -> date:
    return datetime.fromtimestamp(epoch, NY).date()


def chart_client(url: str, policy: RetryPolicy = FAST) -> YahooChartClient:
    return YahooChartClient(url, policy=policy, rate_per_second=0, stats=RequestStats())


def raw_chart(url: str, ticker: str, start: date, end: date) -> dict[str, Any]:
    params = {
        "period1": int(datetime.combine(start, datetime.min.time(), NY).timestamp()),
        "period2": int(datetime.combine(end + timedelta(days=1), datetime.min.time(), NY).timestamp()),
        "interval": "1d",
    }
    return httpx.get(f"{url}/v8/finance/chart/{ticker}", params=params).json()["chart"]["result"][0]


# --- 1. futures evening session ------------------------------------------------------------


def test_futures_are_calendar_day_bars_final_after_the_globex_halt() -> None:
    """ES=F as Yahoo serves a future: bars stamped 00:00 New York, the period the whole day.

    At 17:30 (after the 17:00 halt) Monday's bar is final and provisional; from the 18:00 reopen
    the same bar grows (the evening's trades are filed under the same calendar day), so the
    parser keeps the same dates and the candle store fetches the bar again the next day.
    """
    start, end = date(2025, 11, 17), date(2025, 11, 24)
    with SimulatorServer(port=0, now=BEFORE_REOPEN) as sim, chart_client(sim.url) as client:
        at_halt = raw_chart(sim.url, "ES=F", start, end)
        before = client.fetch("ES=F", start, end, now=BEFORE_REOPEN).chart
        sim.now = EVENING
        body = raw_chart(sim.url, "ES=F", start, end)
        evening = client.fetch("ES=F", start, end, now=EVENING).chart
    midnight = int(datetime.combine(end, datetime.min.time(), NY).timestamp())
    assert at_halt["timestamp"][-1] == body["timestamp"][-1] == midnight
    assert all(datetime.fromtimestamp(ts, NY).time() == datetime.min.time() for ts in body["timestamp"])
    assert date(2025, 11, 23) in {ny_date(ts) for ts in body["timestamp"]}  # the Sunday evening's bar
    period = body["meta"]["currentTradingPeriod"]["regular"]
    assert (period["start"], period["end"]) == (midnight, midnight + 86340)  # 00:00-23:59
    halted, grown = at_halt["indicators"]["quote"][0], body["indicators"]["quote"][0]
    assert grown["volume"][-1] > halted["volume"][-1]
    assert abs(grown["close"][-1] / halted["close"][-1] - 1) < 0.01
    assert before.bars["session_date"].iloc[-1] == evening.bars["session_date"].iloc[-1] == end
    assert before.provisional == evening.provisional == (end,)
    assert before.live_bars_dropped == evening.live_bars_dropped == 0


def test_sunday_bar_is_live_until_its_day_ends() -> None:
    """Globex reopens Sunday 18:00: a Sunday bar (off the XNYS calendar) is live until midnight."""
    with SimulatorServer(port=0, now=SUNDAY_EVENING) as sim, chart_client(sim.url) as client:
        body = raw_chart(sim.url, "ES=F", date(2025, 11, 17), date(2025, 11, 24))
        chart = client.fetch("ES=F", date(2025, 11, 17), date(2025, 11, 24), now=SUNDAY_EVENING).chart
        friday_evening = datetime(2025, 11, 21, 19, 0, tzinfo=NY)
        sim.now = friday_evening  # Globex is closed Friday evening to Sunday 18:00
        friday = raw_chart(sim.url, "ES=F", date(2025, 11, 17), date(2025, 11, 21))
        equity = raw_chart(sim.url, "SPY", date(2025, 11, 17), date(2025, 11, 21))
    assert ny_date(body["timestamp"][-1]) == date(2025, 11, 23)
    assert chart.bars["session_date"].iloc[-1] == date(2025, 11, 21)
    assert chart.live_bars_dropped == 1
    assert ny_date(friday["timestamp"][-1]) == date(2025, 11, 21) and len(friday["timestamp"]) == 5
    assert len(equity["timestamp"]) == 5


def test_dated_contracts_trade_on_a_contango_curve_over_the_continuous() -> None:
    """``ESZ25.CME`` (the front) is ``ES=F``; ``ESH26.CME`` is dearer; ``ESM6=F`` is no ticker."""
    with SimulatorServer(port=0, now=BEFORE_REOPEN) as sim:
        front = raw_chart(sim.url, "ESZ25.CME", date(2025, 11, 17), date(2025, 11, 24))
        continuous = raw_chart(sim.url, "ES=F", date(2025, 11, 17), date(2025, 11, 24))
        march = raw_chart(sim.url, "ESH26.CME", date(2025, 11, 17), date(2025, 11, 24))
        micro = raw_chart(sim.url, "MESH26.CME", date(2025, 11, 17), date(2025, 11, 24))
        notes = raw_chart(sim.url, "ZNH26.CBT", date(2025, 11, 17), date(2025, 11, 24))
        bonds = raw_chart(sim.url, "ZN=F", date(2025, 11, 17), date(2025, 11, 24))
        assert httpx.get(f"{sim.url}/v8/finance/chart/ESM6=F").status_code == 404
        assert httpx.get(f"{sim.url}/v8/finance/chart/ZNH26.CME").status_code == 404  # wrong exchange
    close = lambda body: body["indicators"]["quote"][0]["close"]  # noqa: E731
    assert close(front) == close(continuous) and front["timestamp"] == continuous["timestamp"]
    assert all(1.003 < m / c < 1.02 for m, c in zip(close(march), close(continuous)))
    assert march["meta"]["symbol"] == "ESH26.CME" and micro["meta"]["symbol"] == "MESH26.CME"
    assert all(abs(m / e - 1) < 0.01 for m, e in zip(close(micro), close(march)))  # the micro tracks /ES
    assert all(n < b for n, b in zip(close(notes), close(bonds)))  # /ZN's carry is negative


def test_recorded_shape_evening_stub_is_dropped() -> None:
    """The recorded AAPL body with an evening stub appended on the same date (as BZ=F shows)."""
    payload = recorded_chart("chart_AAPL.json")
    result = payload["chart"]["result"][0]
    stub = int(datetime(2025, 10, 29, 19, 48, tzinfo=NY).timestamp())
    result["timestamp"].append(stub)
    for key, value in {"open": 269.7, "high": 269.9, "low": 269.6, "close": 269.8, "volume": 958}.items():
        result["indicators"]["quote"][0][key].append(value)
    result["indicators"]["adjclose"][0]["adjclose"].append(269.8)
    chart = parse_chart(payload, symbol="AAPL", now=datetime(2025, 10, 30, 1, 0, tzinfo=timezone.utc))
    last = chart.bars.iloc[-1]
    assert last["session_date"] == date(2025, 10, 29)
    assert last["close"] == pytest.approx(269.70001220703125) and last["volume"] != 958
    assert chart.live_bars_dropped == 1


# --- 5. a last trade before the NYSE close -------------------------------------------------


def test_foreign_listing_last_bar_is_final_once_its_session_is_over() -> None:
    """GS2C.DE's last bar is stamped regularMarketTime 16:35Z, before the NYSE close."""
    body = (RECORDED / "yahoo" / "chart_GS2C.DE.json").read_bytes()
    later = parse_chart(body, symbol="GS2C.DE", now=datetime(2025, 10, 30, 12, 0, tzinfo=timezone.utc))
    assert later.bars["session_date"].iloc[-1] == date(2025, 10, 29)
    assert later.live_bars_dropped == 0 and len(later.bars) == 5
    during = parse_chart(body, symbol="GS2C.DE", now=datetime(2025, 10, 29, 16, 40, tzinfo=timezone.utc))
    assert during.bars["session_date"].iloc[-1] == date(2025, 10, 28) and during.live_bars_dropped == 1


def test_halted_stock_keeps_its_bar_once_the_session_closed() -> None:
    payload = recorded_chart("chart_AAPL.json")
    result = payload["chart"]["result"][0]
    halted = int(datetime(2025, 10, 29, 17, 0, tzinfo=timezone.utc).timestamp())
    result["timestamp"][-1] = result["meta"]["regularMarketTime"] = halted
    close = session_close(date(2025, 10, 29))
    assert parse_chart(payload, symbol="AAPL", now=close + timedelta(minutes=5)).bars["session_date"].iloc[-1] == date(
        2025, 10, 29
    )
    assert parse_chart(payload, symbol="AAPL", now=close - timedelta(minutes=5)).live_bars_dropped == 1


# --- 8a. the last bar at the close + 1 s ---------------------------------------------------


def test_simulator_stamps_the_closed_sessions_last_bar_at_the_close_plus_one_second() -> None:
    recorded = recorded_chart("chart_AAPL.json")["chart"]["result"][0]
    assert recorded["timestamp"][-1] == recorded["meta"]["regularMarketTime"]
    assert recorded["timestamp"][-1] == int(session_close(date(2025, 10, 29)).timestamp()) + 1
    with SimulatorServer(port=0, now=AFTER_CLOSE) as sim, chart_client(sim.url) as client:
        body = raw_chart(sim.url, "SPY", date(2025, 11, 17), date(2025, 11, 25))
        chart = client.fetch("SPY", date(2025, 11, 17), date(2025, 11, 25), now=AFTER_CLOSE).chart
    final = int(session_close(date(2025, 11, 25)).timestamp()) + 1
    assert body["timestamp"][-1] == body["meta"]["regularMarketTime"] == final
    assert ny_date(body["timestamp"][-2]) == date(2025, 11, 24)  # earlier bars stay at the open
    assert body["timestamp"][-2] == int(datetime(2025, 11, 24, 9, 30, tzinfo=NY).timestamp())
    assert chart.bars["session_date"].iloc[-1] == date(2025, 11, 25) and chart.live_bars_dropped == 0


# --- 2. index tickers ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("symbol", "expected"),
    [
        ("SPX", "^SPX"),
        ("SPXW", "^SPX"),
        ("XSP", "^XSP"),
        ("NDX", "^NDX"),
        ("NDXP", "^NDX"),
        ("RUT", "^RUT"),
        ("RUTW", "^RUT"),
        ("VIX", "^VIX"),
        ("VIX9D", "^VIX9D"),
        ("VVIX", "^VVIX"),
        ("VXN", "^VXN"),
        ("RVX", "^RVX"),
        ("OEX", "^OEX"),
        ("XEO", "^OEX"),
        # Scaled indices map to their own tickers (issue #19): ^DJI would be 100 x DJX.
        ("DJX", "^DJX"),
        ("MRUT", "^MRUT"),
        ("XND", "^XND"),
    ],
)
def test_index_tickers(symbol: str, expected: str) -> None:
    assert yahoo_ticker(symbol) == expected


def test_every_index_entry_is_tested() -> None:
    assert set(INDEX_TICKERS) == {
        "SPX", "SPXW", "XSP", "NDX", "NDXP", "RUT", "RUTW", "VIX", "VIX9D", "VVIX", "VXN", "RVX", "OEX", "XEO",
        "DJX", "MRUT", "XND",
    }


# --- 3. missing text stays missing ---------------------------------------------------------


POSITION = {
    "account-number": "5WT00001",
    "symbol": "AAPL",
    "instrument-type": "Equity",
    "underlying-symbol": "AAPL",
    "quantity": 100,
    "quantity-direction": "Long",
    "average-open-price": "180.0",
    "close-price": "190.0",
    "multiplier": 1,
}
STAMP = dict(as_of_date=date(2025, 11, 25), fetched_at=AFTER_CLOSE)


def _text_columns_are_strings(frame: pd.DataFrame, columns: list[str]) -> None:
    table = pa.Table.from_pandas(frame, preserve_index=False)
    for column in columns:
        kind = table.schema.field(column).type
        assert pa.types.is_string(kind) or pa.types.is_large_string(kind), (column, kind)


def test_absent_position_text_stays_missing_not_the_string_none() -> None:
    """On pandas 2.x ``.astype("str")`` turned None into 'None'; absent must stay missing."""
    frame = positions_frame([POSITION], **STAMP)
    assert frame["streamer_symbol"].isna().all() and frame["cost_effect"].isna().all()
    text = frame.select_dtypes(exclude=["number", "datetimetz", "bool"])
    assert not (text.astype(object) == "None").any().any()
    POSITIONS.pandera.validate(frame)
    _text_columns_are_strings(frame, ["symbol", "streamer_symbol", "cost_effect", "underlying_symbol"])
    empty = positions_frame([], **STAMP)
    POSITIONS.pandera.validate(empty)
    _text_columns_are_strings(empty, ["symbol", "streamer_symbol"])


def test_absent_metric_text_stays_missing() -> None:
    item = {
        "symbol": "AAPL",
        "option-expiration-implied-volatilities": [{"expiration-date": "2025-12-19", "settlement-type": "PM"}],
    }
    metrics, terms = market_metrics_frames([item], **STAMP)
    assert metrics["lendability"].isna().all() and terms["option_chain_type"].isna().all()
    assert not (metrics["lendability"].astype(object) == "None").any()
    assert not (terms["option_chain_type"].astype(object) == "None").any()
    MARKET_METRICS.pandera.validate(metrics)
    IV_TERM_STRUCTURE.pandera.validate(terms)
    _text_columns_are_strings(metrics, ["symbol", "lendability"])
    _text_columns_are_strings(terms, ["settlement_type", "option_chain_type"])


# --- 4. borrow rate is a percent -----------------------------------------------------------


def test_borrow_rate_percent_is_stored_as_a_fraction() -> None:
    metrics, _ = market_metrics_frames([{"symbol": "HTB", "borrow-rate": "24.5013"}], **STAMP)
    assert metrics["borrow_rate"].item() == pytest.approx(0.245013)
    MARKET_METRICS.pandera.validate(metrics)
    negative = metrics.assign(borrow_rate=-0.01)
    with pytest.raises(Exception, match="borrow_rate"):
        MARKET_METRICS.pandera.validate(negative)
    recorded = json.loads((RECORDED / "tastytrade" / "market_metrics.json").read_text())["data"]["items"]
    frame, _ = market_metrics_frames(recorded, **STAMP)
    assert frame["borrow_rate"].tolist() == [0.0, 0.0]


def test_a_borrow_rate_above_500_percent_keeps_the_metrics_row() -> None:
    """Issue #19: hard-to-borrow names are lent at 500 %+ a year; the [0, 5] bound quarantined
    the whole row (IV, ranks, beta, earnings) for a borrow rate that was simply real. The unit is
    fixed by field when parsing (percent / 100), so no upper bound is needed to catch a slip."""
    item = {"symbol": "HTB", "borrow-rate": "734.5", "implied-volatility-index": "1.42",
            "implied-volatility-index-rank": "0.61", "earnings": {"expected-report-date": "2025-12-04"}}
    metrics, _ = market_metrics_frames([item], **STAMP)
    outcome = validate_frame(MARKET_METRICS, metrics)
    assert outcome.ok and len(outcome.valid) == 1
    row = outcome.valid.iloc[0]
    assert row["borrow_rate"] == pytest.approx(7.345) and row["implied_volatility"] == pytest.approx(1.42)


def test_a_fractional_multiplier_is_accepted_and_priced() -> None:
    """Issue #19: /MBT and /MET options have a multiplier of 0.1 (the SDK types it a decimal); an
    integer-only parse failed the whole positions snapshot, and the Greeks truncated it to 0."""
    mbt = {**POSITION, "symbol": "./MBTZ5MBTZ5 251226C100000", "instrument-type": "Future Option",
           "underlying-symbol": "/MBTZ5", "multiplier": "0.1", "quantity": "2", "quantity-direction": "Short",
           "expires-at": "2025-12-26T21:00:00Z"}
    frame = positions_frame([mbt], **STAMP)
    assert frame["multiplier"].item() == pytest.approx(0.1) and frame["root_symbol"].item() == "/MBT"
    assert validate_frame(POSITIONS, frame).ok
    term = pd.DataFrame({"symbol": ["/MBT"], "expiration_date": [date(2025, 12, 26)], "settlement_type": ["PM"],
                         "implied_volatility": [0.55], "as_of_date": [STAMP["as_of_date"]]})
    priced, unpriced = position_greeks(
        frame, {"/MBTZ5": 98_000.0}, term, pd.DataFrame(columns=["symbol", "beta", "dividend_yield"]), 0.04, None,
        STAMP["as_of_date"], session_close(STAMP["as_of_date"]),
    )
    assert unpriced.empty and priced["multiplier"].item() == pytest.approx(0.1)
    assert priced["position_delta"].item() == pytest.approx(priced["delta"].item() * -2 * 0.1)


def test_simulator_borrow_rate_is_a_realistic_percent() -> None:
    names = [a + b + c for a in "ABCDEFGH" for b in "KLMNOP" for c in "RSTUV"]
    rates = {name: _borrow_fields(42, name, "equity") for name in names}
    hard = {name: float(f["borrow-rate"]) for name, f in rates.items() if f["borrow-rate"] != "0.0"}
    assert 0 < len(hard) < 3 * HARD_TO_BORROW_SHARE * len(names)
    assert all(3.0 <= rate <= 80.0 for rate in hard.values())
    assert _borrow_fields(42, "SPY", "etf")["borrow-rate"] == "0.0"
    name = sorted(hard)[0]
    with SimulatorServer(port=0, now=AFTER_CLOSE) as sim, TastytradeClient(sim.url, CREDENTIALS, policy=FAST) as client:
        items = client.market_metrics([name, "SPY"]).items
    by_symbol = {item["symbol"]: item for item in items}
    assert by_symbol[name]["borrow-rate"] == rates[name]["borrow-rate"]
    assert by_symbol["SPY"]["borrow-rate"] == "0.0"
    frame, _ = market_metrics_frames(items, **STAMP)
    MARKET_METRICS.pandera.validate(frame)
    assert frame.set_index("symbol").loc[name, "borrow_rate"] == pytest.approx(hard[name] / 100)


# --- 8b. SPX monthlies AM and PM -----------------------------------------------------------


def test_spx_monthlies_are_listed_am_and_pm() -> None:
    with SimulatorServer(port=0, now=AFTER_CLOSE) as sim, TastytradeClient(sim.url, CREDENTIALS, policy=FAST) as client:
        items = client.market_metrics(["SPX", "SPY"]).items
    spx = next(item for item in items if item["symbol"] == "SPX")
    terms = spx["option-expiration-implied-volatilities"]
    by_date: dict[str, dict[str, str]] = {}
    for entry in terms:
        by_date.setdefault(entry["expiration-date"], {})[entry["settlement-type"]] = entry["implied-volatility"]
    both = {day: ivs for day, ivs in by_date.items() if set(ivs) == {"AM", "PM"}}
    assert len(both) == 3 and all(ivs["AM"] != ivs["PM"] for ivs in both.values())
    assert all(set(ivs) == {"PM"} for day, ivs in by_date.items() if day not in both)  # weeklies
    assert date.fromisoformat(min(both)).weekday() == 4  # a third Friday
    spy = next(item for item in items if item["symbol"] == "SPY")
    assert {e["settlement-type"] for e in spy["option-expiration-implied-volatilities"]} == {"PM"}
    _, frame = market_metrics_frames(items, **STAMP)
    IV_TERM_STRUCTURE.pandera.validate(frame)
    assert frame.duplicated(["as_of_date", "symbol", "expiration_date"]).sum() == 3


# --- 8c. replay keeps one dividend basis per response ---------------------------------------


def _by_stamp(result: dict[str, Any]) -> dict[int, Any]:
    return dict(zip(result["timestamp"], result["indicators"]["adjclose"][0]["adjclose"], strict=True))


def test_replay_never_mixes_dividend_bases_of_non_overlapping_recordings() -> None:
    names = ["chart_AAPL.json", "chart_AAPL_1d_2020-01-02_2020-12-31.json"]
    new, old = (recorded_chart(name)["chart"]["result"][0] for name in names)
    data = merge_charts([RECORDED / "yahoo" / name for name in names])
    everything = render(data, Window(0, 2_000_000_000, ""), set())["chart"]["result"][0]
    merged = _by_stamp(everything)
    assert {t: merged[t] for t in new["timestamp"]} == _by_stamp(new)  # the newest basis, as recorded
    assert all(merged[t] is None for t in old["timestamp"])  # cannot be put on it: null, not mixed
    only_2020 = render(data, Window(old["timestamp"][0], old["timestamp"][-1] + 1, ""), set())["chart"]["result"][0]
    assert _by_stamp(only_2020) == _by_stamp(old)  # wholly inside the old recording: as it was recorded
    # Through the simulator and the parser: the old bars are dropped as null, never stored mixed.
    with SimulatorServer(port=0, replay_dir=RECORDED) as sim, chart_client(sim.url) as client:
        mixed = client.fetch("AAPL", date(2020, 1, 2), date(2025, 10, 29), now=AFTER_CLOSE).chart
        alone = client.fetch("AAPL", date(2020, 1, 2), date(2020, 12, 31), now=AFTER_CLOSE).chart
    assert mixed.bars["session_date"].min() == date(2025, 4, 30) and mixed.null_bars_dropped == len(old["timestamp"])
    assert len(alone.bars) == len(old["timestamp"])


def test_replay_rescales_an_overlapping_older_recording(tmp_path: Path) -> None:
    """An older recording of AAPL (adjclose on an older basis, 2 % higher) overlapping the newest."""
    folder = tmp_path / "yahoo"
    folder.mkdir()
    shutil.copy(RECORDED / "yahoo" / "chart_AAPL.json", folder / "chart_AAPL.json")
    older = recorded_chart("chart_AAPL.json")
    result = older["chart"]["result"][0]
    result["meta"]["regularMarketTime"] -= 30 * 86400
    keep = 80  # the first 80 bars: 2025-04-30 .. 2025-08-22, all overlapping
    result["timestamp"] = result["timestamp"][:keep]
    for key in list(result["indicators"]["quote"][0]):
        result["indicators"]["quote"][0][key] = result["indicators"]["quote"][0][key][:keep]
    new_adj = result["indicators"]["adjclose"][0]["adjclose"][:keep]
    result["indicators"]["adjclose"][0]["adjclose"] = [v * 1.02 for v in new_adj]
    # ...plus 3 earlier bars only the older recording has.
    first = result["timestamp"][0]
    result["timestamp"] = [first - 3 * 86400, first - 2 * 86400, first - 86400, *result["timestamp"]]
    for key, values in result["indicators"]["quote"][0].items():
        result["indicators"]["quote"][0][key] = [values[0]] * 3 + values
    result["indicators"]["adjclose"][0]["adjclose"] = [200.0 * 1.02] * 3 + result["indicators"]["adjclose"][0]["adjclose"]
    (folder / "chart_AAPL_1d_older.json").write_text(json.dumps(older))
    data = merge_charts(sorted(folder.glob("chart_*.json")))
    merged = _by_stamp(render(data, Window(0, 2_000_000_000, ""), set())["chart"]["result"][0])
    newest = _by_stamp(recorded_chart("chart_AAPL.json")["chart"]["result"][0])
    assert all(merged[t] == newest[t] for t in newest)
    assert [merged[first - d * 86400] for d in (3, 2, 1)] == pytest.approx([200.0] * 3)


# --- 6. marks ------------------------------------------------------------------------------


def test_positions_ask_for_marks_and_the_simulator_sends_them_only_then() -> None:
    with SimulatorServer(port=0, now=AFTER_CLOSE) as sim:
        with httpx.Client(base_url=sim.url, headers={"User-Agent": "test/1"}) as raw:
            token = raw.post(
                "/oauth/token",
                json={"grant_type": "refresh_token", "refresh_token": "x", "client_secret": "y"},
            ).json()["access_token"]
            auth = {"Authorization": f"Bearer {token}"}
            bare = raw.get("/accounts/5WT00001/positions", headers=auth).json()["data"]["items"]
            marked = raw.get(
                "/accounts/5WT00001/positions", params={"include-marks": "true"}, headers=auth
            ).json()["data"]["items"]
        assert bare and all("mark" not in i and "mark-price" not in i for i in bare)
        assert all("mark" in i and "mark-price" in i for i in marked)
        sim.requests.clear()
        with TastytradeClient(sim.url, CREDENTIALS, policy=FAST, per_page=3) as client:
            fetched = client.positions("5WT00001")
        log = [entry for entry in sim.requests.entries() if entry["path"].endswith("/positions")]
    pages = -(-len(marked) // 3)  # every page of the book, three positions a page
    assert len(log) == pages > 1 and all(entry["query"]["include-marks"] == "true" for entry in log)
    assert [entry["query"].get("page-offset") for entry in log] == [None, *(str(n) for n in range(1, pages))]
    assert len(fetched.items) == len(marked)
    frame = positions_frame(fetched.items, **STAMP)
    assert frame["mark"].notna().all()


# --- 7. Yahoo pacing -----------------------------------------------------------------------


def test_rate_limiter_jitter_scales_each_gap_within_bounds_and_is_seeded() -> None:
    def gaps(seed: int) -> list[float]:
        now = [100.0]
        slept: list[float] = []

        def sleep(seconds: float) -> None:
            slept.append(seconds)
            now[0] += seconds

        limiter = RateLimiter(1.0, clock=lambda: now[0], jitter=0.5, rng=random.Random(seed), sleep=sleep)
        for _ in range(20):
            limiter.wait()
        return slept

    first = gaps(7)
    assert len(first) == 19 and all(1.0 <= gap <= 1.5 for gap in first)
    assert len({round(gap, 6) for gap in first}) > 10  # not a fixed beat
    assert gaps(7) == first and gaps(8) != first
    assert RateLimiter(1.0, jitter=0.5).mean_interval == pytest.approx(1.25)


def test_pace_estimate_for_the_candles_log() -> None:
    assert estimate_seconds(301, 1.0) == pytest.approx(300.0)
    assert estimate_seconds(301, 1.0, jitter=0.5) == pytest.approx(375.0)
    assert estimate_seconds(10, 0) == 0.0
    assert pace_message(301, 1.0) == "301 requests at 1/s: about 5 min"
    with YahooChartClient("http://127.0.0.1:9", rate_per_second=2.0, jitter=0.0) as client:
        assert client.estimate_seconds(121) == pytest.approx(60.0)
        assert client.pace_message(121) == "121 requests at 2/s: about 60 s"


def test_yahoo_defaults_are_one_request_a_second_with_jitter_and_a_long_retry_budget() -> None:
    resource = YahooResource(base_url="http://127.0.0.1:9")
    assert resource.rate_per_second == 1.0 and resource.jitter > 0
    policy = resource.retry.policy()
    assert policy.max_retry_after == 600.0 and policy.max_total_wait >= 600.0
    with YahooChartClient("http://127.0.0.1:9") as client:
        assert client.rate_per_second == 1.0 and client.jitter > 0


def test_yahoo_rate_comes_from_the_environment() -> None:
    env = {"VARIANCE_SOURCE": "simulator"}
    assert Settings.from_env(env).yahoo_rate == 1.0
    settings = Settings.from_env({**env, "VARIANCE_YAHOO_RATE": "0.5"})
    assert settings.yahoo_rate == 0.5
    assert build_resources(settings)["yahoo"].rate_per_second == 0.5
    for bad in ("0", "-1", "fast", "nan", "inf"):
        with pytest.raises(ConfigurationError, match="VARIANCE_YAHOO_RATE"):
            Settings.from_env({**env, "VARIANCE_YAHOO_RATE": bad})


def test_retry_after_is_honoured_in_full_not_cut_to_max_delay() -> None:
    rule = {"endpoint": "market-metrics", "kind": "429", "count": 1, "retry_after": 45}
    slept: list[float] = []
    policy = RetryPolicy(max_attempts=3, base_delay=0.001, max_delay=30.0, max_total_wait=120.0, timeout=5.0)
    with (
        SimulatorServer(port=0, now=AFTER_CLOSE, faults=parse_rules(rule)) as sim,
        TastytradeClient(sim.url, CREDENTIALS, policy=policy, sleep=slept.append) as client,
    ):
        assert client.market_metrics(["SPY"]).items
    assert slept == [45.0]


@pytest.mark.parametrize(
    ("retry_after", "policy", "asked"),
    [
        (900, RetryPolicy(max_attempts=3, max_total_wait=3600.0, timeout=5.0), "15.0 min"),  # above the ceiling
        (5, RetryPolicy(max_attempts=3, max_total_wait=1.0, timeout=5.0), "5 s"),  # beyond the wait budget
    ],
)
def test_a_longer_retry_after_fails_fast_saying_how_long(retry_after: int, policy: RetryPolicy, asked: str) -> None:
    rule = {"endpoint": "chart", "kind": "429", "retry_after": retry_after}
    with SimulatorServer(port=0, now=AFTER_CLOSE, faults=parse_rules(rule)) as sim, chart_client(sim.url, policy) as client:
        started = datetime.now(timezone.utc)
        with pytest.raises(ChartError, match=f"asked to wait {asked}") as info:
            client.fetch("SPY", date(2025, 11, 17), date(2025, 11, 21), now=AFTER_CLOSE)
        elapsed = (datetime.now(timezone.utc) - started).total_seconds()
    assert info.value.status == 429 and "Retry-After" in str(info.value)
    assert client.stats.retries == 0 and client.stats.requests == 1 and elapsed < 2


# --- 9. one raw-landing callback, per response as it arrives --------------------------------


def test_raw_response_lives_in_http_and_is_re_exported() -> None:
    assert tastytrade_module.RawResponse is http_module.RawResponse is RawResponse


def test_page_one_reaches_on_raw_even_when_page_two_fails() -> None:
    landed: list[RawResponse] = []
    with SimulatorServer(port=0, now=AFTER_CLOSE) as sim:

        def on_raw(response: RawResponse) -> None:
            landed.append(response)
            # From now on every positions request fails (after the first page arrived).
            sim.faults.replace(parse_rules({"endpoint": "positions", "kind": "500", "count": 99}))

        with TastytradeClient(sim.url, CREDENTIALS, policy=FAST, per_page=3) as client:
            accounts: list[RawResponse] = []
            client.accounts(on_raw=accounts.append)
            with pytest.raises(SourceError, match="HTTP 500"):
                client.positions("5WT00001", on_raw=on_raw)
    assert [r.name for r in accounts] == ["accounts.json"]
    assert [r.name for r in landed] == ["positions_5WT00001.json"]
    assert len(json.loads(landed[0].body)["data"]["items"]) == 3


def test_chart_fetch_hands_every_body_to_on_raw_with_a_safe_name() -> None:
    landed: list[RawResponse] = []
    with SimulatorServer(port=0, now=AFTER_CLOSE) as sim, chart_client(sim.url) as client:
        fetched = client.fetch("^SPX", date(2025, 11, 17), date(2025, 11, 21), now=AFTER_CLOSE, on_raw=landed.append)
        with pytest.raises(SymbolUnavailable):
            client.fetch("NOPE", date(2025, 11, 17), date(2025, 11, 21), now=AFTER_CLOSE, on_raw=landed.append)
        before_first = client.fetch("ES=F", date(2000, 1, 3), date(2000, 1, 7), now=AFTER_CLOSE, on_raw=landed.append)
    assert [r.name for r in landed] == [
        "chart_%5ESPX_2025-11-17_2025-11-21.json",
        "chart_NOPE_2025-11-17_2025-11-21.json",
        "chart_ES%3DF_2000-01-03_2000-01-07.json",
    ]
    assert landed[0].body == fetched.raw
    assert json.loads(landed[1].body)["chart"]["error"]["code"] == "Not Found"
    assert landed[2].body == before_first.raw and before_first.note


def _index_and_adjusted_book() -> pd.DataFrame:
    spx = {**POSITION, "symbol": "SPX   260116P06500000", "instrument-type": "Equity Option",
           "underlying-symbol": "SPX", "quantity": "1", "multiplier": 100,
           "quantity-direction": "Short", "expires-at": "2026-01-16T14:30:00Z"}
    adjusted = {**POSITION, "symbol": "AAPL1 260116C00250000", "instrument-type": "Equity Option",
                "underlying-symbol": "AAPL", "quantity": "1", "multiplier": 100,
                "quantity-direction": "Short", "expires-at": "2026-01-16T21:00:00Z"}
    return positions_frame([spx, adjusted], **STAMP)


def _price_index_book(metrics: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    day = STAMP["as_of_date"]
    term = pd.DataFrame({"symbol": ["SPX", "AAPL"], "expiration_date": [date(2026, 1, 16)] * 2,
                         "settlement_type": ["PM", "PM"], "implied_volatility": [0.16, 0.25], "as_of_date": [day, day]})
    return position_greeks(_index_and_adjusted_book(), {"SPX": 6700.0, "AAPL": 270.0}, term, metrics, 0.04, 670.0,
                           day, session_close(day))


def test_an_index_without_a_dividend_yield_takes_its_etfs() -> None:
    """Issue #19: SPX metrics often carry no dividend-yield; q = 0 skews an SPX option by about
    1.4 deltas ATM at 45 days. The tracking ETF's yield (SPY's) of the same snapshot is used, and
    the row says so."""
    from vollib.black_scholes_merton.greeks.analytical import delta as bsm_delta

    metrics = pd.DataFrame({"symbol": ["SPX", "SPY"], "beta": [1.0, 1.0], "dividend_yield": [float("nan"), 0.0121],
                            "as_of_date": [STAMP["as_of_date"]] * 2})
    priced, _ = _price_index_book(metrics)
    spx = priced.set_index("symbol").loc["SPX   260116P06500000"]
    assert spx["dividend_yield"] == pytest.approx(0.0121) and spx["dividend_yield_source"] == "proxy:SPY"
    assert spx["delta"] == pytest.approx(
        bsm_delta("p", 6700.0, 6500.0, spx["years_to_expiration"], 0.04, spx["implied_volatility"], 0.0121), abs=1e-9
    )
    assert universe_frame(STAMP["as_of_date"], {"SPX": 1}, [], STAMP["as_of_date"]).set_index("symbol")["source"].to_dict() == {
        "SPX": "held", "SPY": "dividend_proxy",
    }


def test_an_adjusted_deliverable_is_never_priced_as_100_shares() -> None:
    """Issue #19: AAPL1 (an OCC root = the underlying plus a digit) delivers something else after a
    corporate action: unpriced with the reason, never priced on AAPL's close as 100 shares."""
    metrics = pd.DataFrame({"symbol": ["SPX"], "beta": [1.0], "dividend_yield": [0.013], "as_of_date": [STAMP["as_of_date"]]})
    priced, unpriced = _price_index_book(metrics)
    assert "AAPL1 260116C00250000" not in set(priced["symbol"])
    reason = unpriced.set_index("symbol").loc["AAPL1 260116C00250000", "reason"]
    assert reason.startswith("adjusted deliverable: OCC root AAPL1 of AAPL")


def test_vix_options_are_priced_on_their_own_future_with_black76() -> None:
    """Issue #19: a VIX option settles to the VX future of its expiration, not to spot VIX.
    Spot 17.5, future 21.0, IV 1.10, 27 days, the 20 call: BSM on spot gave 1.19 and delta 0.38;
    Black-76 on the future gives 2.96 and 0.62 (vollib)."""
    from vollib.black import black
    from vollib.black.greeks.analytical import delta as black_delta

    day = STAMP["as_of_date"]
    close = session_close(day)
    expires = close + timedelta(days=27)
    call = {**POSITION, "symbol": f"VIX   {expires:%y%m%d}C00020000", "instrument-type": "Equity Option",
            "underlying-symbol": "VIX", "quantity": "1", "quantity-direction": "Short", "multiplier": 100,
            "expires-at": expires.isoformat()}
    frame = positions_frame([call], **STAMP)
    future = f"/VX{'FGHJKMNQUVXZ'[expires.month - 1]}{expires.year % 10}"
    term = pd.DataFrame({"symbol": ["VIX"], "expiration_date": [expires.date()], "settlement_type": ["AM"],
                         "implied_volatility": [1.10], "as_of_date": [day]})
    no_metrics = pd.DataFrame(columns=["symbol", "beta", "dividend_yield"])
    priced, unpriced = position_greeks(frame, {"VIX": 17.5, future: 21.0}, term, no_metrics, 0.04, None, day, close)
    assert unpriced.empty
    row = priced.iloc[0]
    T = row["years_to_expiration"]
    assert row["model"] == "black_76" and row["underlying_price"] == 21.0
    assert row["price"] == pytest.approx(black("c", 21.0, 20.0, T, 0.04, 1.10), abs=1e-9)
    assert row["delta"] == pytest.approx(black_delta("c", 21.0, 20.0, T, 0.04, 1.10), abs=1e-9)
    assert row["price"] == pytest.approx(2.96, abs=0.05) and row["delta"] == pytest.approx(0.62, abs=0.01)
    _, unpriced = position_greeks(frame, {"VIX": 17.5}, term, no_metrics, 0.04, None, day, close)
    assert f"no close for {future}" in unpriced["reason"].item() and "own future" in unpriced["reason"].item()


def test_vix_options_are_priced_on_the_brokers_mark_of_their_future() -> None:
    """Issue #19, item 4: Yahoo has no dated VX ticker, so a VIX option's future has no candle
    close; its price is Tastytrade's mark of the future (``/market-data/by-type``, kind
    ``future``, asked for beside the option quotes). The issue's numbers through that path: future
    21.0, IV 1.10, 27 days, the 20 call -> 2.96 and delta 0.62 (Black-76, vollib), not 1.19 and
    0.38 on spot 17.5. Without the quote it stays unpriced, naming the future."""
    from vollib.black import black
    from vollib.black.greeks.analytical import delta as black_delta

    from variance_pipeline.instruments.option_symbols import held_volatility_futures
    from variance_pipeline.schemas.book import OPTION_QUOTES
    from variance_pipeline.sources.tastytrade_account import option_quote_rows
    from variance_pipeline.transforms.position_greeks import quoted_future_marks

    day = STAMP["as_of_date"]
    close = session_close(day)
    expires = close + timedelta(days=27)
    symbol = f"VIX   {expires:%y%m%d}C00020000"
    call = {**POSITION, "symbol": symbol, "instrument-type": "Equity Option", "underlying-symbol": "VIX",
            "quantity": "1", "quantity-direction": "Short", "multiplier": 100, "expires-at": expires.isoformat()}
    frame = positions_frame([call], **STAMP)
    future = f"/VX{'FGHJKMNQUVXZ'[expires.month - 1]}{expires.year % 10}"
    assert held_volatility_futures(frame) == [future]  # what the option-quotes snapshot asks for
    items = [  # as by-type answers: decimal strings; the future carries no Greeks
        {"symbol": future, "instrument-type": "Future", "mark": "21.0", "bid": "20.95", "ask": "21.05",
         "close": "20.8", "prev-close": "20.6"},
        {"symbol": symbol, "instrument-type": "Equity Option", "mark": "2.95", "volatility": "1.1", "delta": "0.62"},
    ]
    quotes = validate_frame(OPTION_QUOTES, OPTION_QUOTES.frame(option_quote_rows(items, **STAMP)))
    assert quotes.quarantined.empty
    marks = quoted_future_marks(quotes.valid, day)
    assert marks.to_dict() == {future: 21.0}
    term = pd.DataFrame({"symbol": ["VIX"], "expiration_date": [expires.date()], "settlement_type": ["AM"],
                         "implied_volatility": [1.10], "as_of_date": [day]})
    no_metrics = pd.DataFrame(columns=["symbol", "beta", "dividend_yield"])
    priced, unpriced = position_greeks(frame, {"VIX": 17.5}, term, no_metrics, 0.04, None, day, close, marks)
    assert unpriced.empty
    row = priced.iloc[0]
    T = row["years_to_expiration"]
    assert row["model"] == "black_76" and row["underlying_price"] == 21.0 and row["underlying_price_source"] == "quote_mark"
    assert row["price"] == pytest.approx(black("c", 21.0, 20.0, T, 0.04, 1.10), abs=1e-9)
    assert row["delta"] == pytest.approx(black_delta("c", 21.0, 20.0, T, 0.04, 1.10), abs=1e-9)
    assert row["price"] == pytest.approx(2.96, abs=0.05) and row["delta"] == pytest.approx(0.62, abs=0.01)
    # A candle close of the future, when one exists, comes first; no price at all: unpriced.
    priced, _ = position_greeks(frame, {"VIX": 17.5, future: 20.5}, term, no_metrics, 0.04, None, day, close, marks)
    assert priced["underlying_price"].item() == 20.5 and priced["underlying_price_source"].item() == "close"
    _, unpriced = position_greeks(frame, {"VIX": 17.5}, term, no_metrics, 0.04, None, day, close,
                                  quoted_future_marks(None, day))
    assert f"no close for {future} and no quote of it" in unpriced["reason"].item()
