"""Yahoo chart parsing and the chart client, against recorded responses.

The client's requests go over loopback to the project's simulator, replaying the recorded charts
(``support.chart_replay``); its faults stand in for Yahoo's bad days.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator
from zoneinfo import ZoneInfo

import pandas as pd
import pytest

from support import CHART_RETRY as FAST
from support import FAR_FUTURE, chart_replay, chart_requests, ny_midnight, recorded_bytes, recorded_chart
from support import result_of
from variance_pipeline.calendar import session_close
from variance_pipeline.simulator import SimulatorServer
from variance_pipeline.simulator.faults import parse_rules
from variance_pipeline.sources.http import RawResponse, RequestStats, RetryPolicy
from variance_pipeline.sources.yahoo import (
    ChartError,
    Dividend,
    Split,
    SymbolUnavailable,
    YahooChartClient,
    parse_chart,
    raw_name,
    yahoo_ticker,
)

MSFT = "chart_MSFT_1d_2021-02-01_2022-01-28.json"
NOT_FOUND = {
    "chart": {"result": None, "error": {"code": "Not Found", "description": "No data found, symbol may be delisted"}}
}


def recorded(name: str) -> dict:
    return recorded_chart(name)


def _recorded_bytes(name: str) -> bytes:
    return recorded_bytes(f"yahoo/{name}")


@pytest.mark.parametrize(
    ("symbol", "expected"),
    [
        ("/ES", "ES=F"),
        ("/ZN", "ZN=F"),
        ("/6E", "6E=F"),
        ("/MES", "MES=F"),
        ("/CL", "CL=F"),
        ("SPX", "^SPX"),
        ("VIX", "^VIX"),
        ("RUT", "^RUT"),
        ("NDX", "^NDX"),
        ("XSP", "^XSP"),
        ("NDXP", "^NDX"),
        ("BRK/B", "BRK-B"),
        ("AAPL", "AAPL"),
        ("SPY", "SPY"),
        ("DJX", "^DJX"),
    ],
)
def test_yahoo_ticker(symbol: str, expected: str) -> None:
    assert yahoo_ticker(symbol) == expected


@pytest.mark.parametrize(
    ("symbol", "today", "expected"),
    [
        ("/MESM6", date(2025, 11, 25), "MESM26.CME"),
        ("/ESZ5", date(2025, 11, 25), "ESZ25.CME"),
        ("/ZNH6", date(2025, 11, 25), "ZNH26.CBT"),
        ("/CLJ6", date(2026, 1, 5), "CLJ26.NYM"),
        ("/GCJ6", date(2026, 1, 5), "GCJ26.CMX"),
        ("/M2KZ5", date(2025, 11, 25), "M2KZ25.CME"),
        ("/ESH0", date(2029, 6, 1), "ESH30.CME"),  # the year after the decade turns
        ("/ESZ25", date(2025, 11, 25), "ESZ25.CME"),
    ],
)
def test_dated_futures_contracts_map_to_their_own_ticker(symbol: str, today: date, expected: str) -> None:
    """Yahoo lists a dated contract under the exchange's suffix; ``ESM6=F`` is not a ticker."""
    assert yahoo_ticker(symbol, today=today) == expected


def test_yahoo_ticker_overrides_win() -> None:
    assert yahoo_ticker("/ES", {"/ES": "ESZ25.CME"}) == "ESZ25.CME"
    assert yahoo_ticker("DJX", {"DJX": "^DJI"}) == "^DJI"
    assert yahoo_ticker("SPX", {"/ES": "x"}) == "^SPX"


# --- parse_chart on recorded responses -----------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "chart_NVDA_1d_2021-02-01_2022-01-28.json",
        "chart_AAPL_1d_2020-01-02_2020-12-31.json",
        "chart_MSFT_1d_2021-02-01_2022-01-28.json",
        "chart_TSLA_1d_2010-06-29_2023-08-11.json",
        "chart_MSFT.json",
        "chart_AAPL.json",
    ],
)
def test_recorded_charts_load_bar_for_bar(name: str) -> None:
    payload = recorded(name)
    result = result_of(payload)
    chart = parse_chart(_recorded_bytes(name), symbol=result["meta"]["symbol"], now=FAR_FUTURE)
    quote_block = result["indicators"]["quote"][0]
    expected_dates = pd.to_datetime(result["timestamp"], unit="s", utc=True).tz_convert("America/New_York").date
    assert len(chart.bars) == len(result["timestamp"])
    assert chart.bars["session_date"].tolist() == list(expected_dates)
    assert chart.bars["close"].tolist() == quote_block["close"]
    assert chart.bars["open"].tolist() == quote_block["open"]
    assert chart.bars["adj_close"].tolist() == result["indicators"]["adjclose"][0]["adjclose"]
    assert chart.bars["volume"].tolist() == quote_block["volume"]
    assert list(chart.bars.columns) == ["session_date", "open", "high", "low", "close", "adj_close", "volume"]
    assert str(chart.bars["volume"].dtype) == "Int64"
    assert chart.null_bars_dropped == chart.live_bars_dropped == 0


def test_recorded_events() -> None:
    nvda = parse_chart(_recorded_bytes("chart_NVDA_1d_2021-02-01_2022-01-28.json"), symbol="NVDA", now=FAR_FUTURE)
    assert nvda.splits == [Split(date(2021, 7, 20), 4.0, 1.0)]
    aapl = parse_chart(_recorded_bytes("chart_AAPL_1d_2020-01-02_2020-12-31.json"), symbol="AAPL", now=FAR_FUTURE)
    assert aapl.splits == [Split(date(2020, 8, 31), 4.0, 1.0)]
    assert aapl.dividends[0] == Dividend(date(2020, 2, 7), 0.1925)
    assert len(aapl.dividends) == 4
    # Yahoo's closes are already split-adjusted: the day before the split is about a quarter of
    # the unadjusted ~$500 AAPL traded at.
    before = aapl.bars.loc[aapl.bars["session_date"] == date(2020, 8, 28), "close"].item()
    assert 120 < before < 130


def test_live_bar_is_dropped_until_the_session_closes() -> None:
    """chart_AAPL.json ends with a bar stamped regularMarketTime, 20:00:01Z on 2025-10-29.

    That stamp is after the 16:00 New York close, so the bar is final once the session is closed;
    before the close the same day's bar is live and must not be stored.
    """
    body = _recorded_bytes("chart_AAPL.json")
    close = session_close(date(2025, 10, 29))
    during = parse_chart(body, symbol="AAPL", now=close - timedelta(minutes=1))
    assert during.live_bars_dropped == 1
    assert during.bars["session_date"].iloc[-1] == date(2025, 10, 28)
    after = parse_chart(body, symbol="AAPL", now=close + timedelta(minutes=30))
    assert after.live_bars_dropped == 0
    assert after.bars["session_date"].iloc[-1] == date(2025, 10, 29)
    assert after.bars["close"].iloc[-1] == pytest.approx(269.70001220703125)


def test_bar_stamped_market_time_before_the_close_is_live_only_while_the_session_is_open() -> None:
    """A bar stamped regularMarketTime mid-session is live until the close, then final: a halted
    stock's last trade. ``now`` is the fetch time (the client passes it), so a mid-session
    response is judged live when it is parsed as it arrives."""
    payload = recorded("chart_AAPL.json")
    result = result_of(payload)
    midday = int(datetime(2025, 10, 29, 17, 0, tzinfo=timezone.utc).timestamp())
    result["timestamp"][-1] = midday
    result["meta"]["regularMarketTime"] = midday
    during = parse_chart(payload, symbol="AAPL", now=datetime(2025, 10, 29, 17, 0, 5, tzinfo=timezone.utc))
    assert during.live_bars_dropped == 1
    assert during.bars["session_date"].iloc[-1] == date(2025, 10, 28)
    after = parse_chart(payload, symbol="AAPL", now=FAR_FUTURE)
    assert after.live_bars_dropped == 0
    assert after.bars["session_date"].iloc[-1] == date(2025, 10, 29)


def test_provider_trading_period_keeps_a_futures_bar_live_after_the_nyse_close() -> None:
    """CME futures trade until 17:00 New York; the provider's current period says so."""
    payload = recorded("chart_AAPL.json")
    result = result_of(payload)
    result["timestamp"][-1] = int(datetime(2025, 10, 29, 4, 0, tzinfo=timezone.utc).timestamp())
    result["meta"]["regularMarketTime"] = int(datetime(2025, 10, 29, 20, 30, tzinfo=timezone.utc).timestamp())
    result["meta"]["currentTradingPeriod"]["regular"]["end"] = int(
        datetime(2025, 10, 29, 21, 0, tzinfo=timezone.utc).timestamp()
    )
    live = parse_chart(payload, symbol="ES=F", now=datetime(2025, 10, 29, 20, 40, tzinfo=timezone.utc))
    assert live.live_bars_dropped == 1
    final = parse_chart(payload, symbol="ES=F", now=datetime(2025, 10, 29, 21, 5, tzinfo=timezone.utc))
    assert final.live_bars_dropped == 0
    assert final.bars["session_date"].iloc[-1] == date(2025, 10, 29)


def _calendar_day_chart(symbol: str, kind: str, zone: str, days: list[date], today: date) -> dict:
    """A chart as Yahoo serves a future (a recorded GC=F: ``currentTradingPeriod.regular``
    00:00-23:59 of the New York day, one bar per calendar day stamped 00:00, a Sunday bar among
    them) or a crypto pair (the same in UTC), built on the recorded AAPL body's layout."""
    payload = recorded("chart_AAPL.json")
    result = result_of(payload)
    tz = ZoneInfo(zone)
    midnight = [int(datetime.combine(day, datetime.min.time(), tz).timestamp()) for day in days]
    closes = [2650.0 + i for i in range(len(days))]
    result["timestamp"] = midnight
    result["indicators"] = {
        "quote": [{"open": closes, "high": [c + 5 for c in closes], "low": [c - 5 for c in closes],
                   "close": closes, "volume": [150_000] * len(days)}],
        "adjclose": [{"adjclose": closes}],
    }
    result.pop("events", None)
    start = int(datetime.combine(today, datetime.min.time(), tz).timestamp())
    period = {"timezone": "EST" if zone != "UTC" else "UTC", "start": start, "end": start + 86340,
              "gmtoffset": int(tz.utcoffset(datetime.combine(today, datetime.min.time())).total_seconds())}
    result["meta"].update(symbol=symbol, instrumentType=kind, exchangeTimezoneName=zone,
                          currentTradingPeriod={"pre": period, "regular": period, "post": period},
                          regularMarketTime=start + 17 * 3600)
    return payload


# Sunday 2025-11-23 to Tuesday 2025-11-25: Globex trades Sunday from 18:00, so there is a Sunday bar.
FUTURE_DAYS = [date(2025, 11, 20), date(2025, 11, 21), date(2025, 11, 23), date(2025, 11, 24), date(2025, 11, 25)]
NEW_YORK = ZoneInfo("America/New_York")


def test_futures_day_bar_is_final_after_the_globex_halt_not_the_calendar_day() -> None:
    """Issue 19, defect 1: the evening run (17:30 New York) must keep the day's futures bar.

    Yahoo's period for a future is the whole New York day (00:00-23:59), so the old rule held the
    bar live until midnight and the 17:30 run dropped it. The bar is final after the 17:00 halt;
    until its calendar day ends it is listed as provisional, for the next run to fetch again.
    """
    payload = _calendar_day_chart("GC=F", "FUTURE", "America/New_York", FUTURE_DAYS, date(2025, 11, 25))
    evening = parse_chart(payload, symbol="GC=F", now=datetime(2025, 11, 25, 17, 30, tzinfo=NEW_YORK))
    assert evening.bars["session_date"].tolist() == FUTURE_DAYS  # the Sunday bar too (the store drops it)
    assert evening.live_bars_dropped == 0
    assert evening.bars["close"].iloc[-1] == 2654.0
    assert evening.provisional == (date(2025, 11, 25),)
    before_halt = parse_chart(payload, symbol="GC=F", now=datetime(2025, 11, 25, 16, 55, tzinfo=NEW_YORK))
    assert before_halt.bars["session_date"].iloc[-1] == date(2025, 11, 24)
    assert before_halt.live_bars_dropped == 1
    assert before_halt.provisional == ()  # Monday's calendar day ended at midnight
    next_day = parse_chart(payload, symbol="GC=F", now=datetime(2025, 11, 26, 0, 5, tzinfo=NEW_YORK))
    assert next_day.bars["session_date"].iloc[-1] == date(2025, 11, 25) and next_day.provisional == ()


def test_crypto_day_bar_is_final_when_its_utc_day_ends() -> None:
    """A crypto pair's period is the UTC day: its bar is final at 00:00 UTC, not at the NYSE close."""
    days = [date(2025, 11, 23), date(2025, 11, 24), date(2025, 11, 25)]
    payload = _calendar_day_chart("BTC-USD", "CRYPTOCURRENCY", "UTC", days, date(2025, 11, 25))
    evening = parse_chart(payload, symbol="BTC-USD", now=datetime(2025, 11, 25, 17, 30, tzinfo=NEW_YORK))
    assert evening.bars["session_date"].iloc[-1] == date(2025, 11, 24) and evening.live_bars_dropped == 1
    after = parse_chart(payload, symbol="BTC-USD", now=datetime(2025, 11, 26, 0, 1, tzinfo=timezone.utc))
    assert after.bars["session_date"].iloc[-1] == date(2025, 11, 25) and after.provisional == ()


def test_null_bars_are_dropped_and_counted_never_filled() -> None:
    payload = recorded("chart_MSFT_1d_2021-02-01_2022-01-28.json")
    quote_block = result_of(payload)["indicators"]["quote"][0]
    quote_block["close"][10] = None
    quote_block["open"][20] = None
    quote_block["high"][30] = None
    quote_block["volume"][40] = None
    stamps = result_of(payload)["timestamp"]
    dropped = {pd.Timestamp(stamps[i], unit="s", tz="UTC").tz_convert("America/New_York").date() for i in (10, 20, 30)}
    chart = parse_chart(payload, symbol="MSFT", now=FAR_FUTURE)
    assert chart.null_bars_dropped == 3
    assert len(chart.bars) == 252 - 3
    assert not dropped & set(chart.bars["session_date"])
    assert chart.bars["volume"].isna().sum() == 1
    assert not chart.bars[["open", "high", "low", "close", "adj_close"]].isna().any().any()


def test_foreign_exchange_dates_follow_the_exchange_time_zone() -> None:
    """GS2C.DE bars are stamped 07:00Z (08:00 Berlin); its last bar (16:35Z) is final once the
    XNYS session is over, live before that (the XNYS clock judges every bar)."""
    body = _recorded_bytes("chart_GS2C.DE.json")
    chart = parse_chart(body, symbol="GS2C.DE", now=FAR_FUTURE)
    assert chart.bars["session_date"].tolist() == [date(2025, 10, d) for d in (23, 24, 27, 28, 29)]
    assert chart.live_bars_dropped == 0
    during = parse_chart(body, symbol="GS2C.DE", now=datetime(2025, 10, 29, 19, 0, tzinfo=timezone.utc))
    assert during.bars["session_date"].tolist() == [date(2025, 10, d) for d in (23, 24, 27, 28)]
    assert during.live_bars_dropped == 1


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        (b'{"chart": {"result": [{"meta": {', "malformed or truncated JSON"),
        (b"<html>Too Many Requests</html>", "malformed or truncated JSON"),
        (b"[]", "expected a JSON object"),
        (b'{"finance": {}}', "no 'chart' object"),
        (b'{"chart": {"result": null, "error": null}}', "'chart.result' is missing"),
        (b'{"chart": {"result": [], "error": null}}', "'chart.result' is missing"),
        (json.dumps(NOT_FOUND).encode(), "No data found"),
        (b'{"chart": {"result": [{"timestamp": [1]}], "error": null}}', "unexpected chart layout"),
    ],
)
def test_broken_payloads_raise_chart_error_naming_the_symbol(payload: bytes, fragment: str) -> None:
    with pytest.raises(ChartError, match=fragment) as info:
        parse_chart(payload, symbol="ZZZ", now=FAR_FUTURE)
    assert str(info.value).startswith("ZZZ: ")


def test_schema_drift_raises_chart_error() -> None:
    no_adjclose = recorded("chart_MSFT.json")
    del result_of(no_adjclose)["indicators"]["adjclose"]
    with pytest.raises(ChartError, match="KeyError: 'adjclose'"):
        parse_chart(no_adjclose, symbol="MSFT", now=FAR_FUTURE)
    short = recorded("chart_MSFT.json")
    result_of(short)["indicators"]["quote"][0]["close"].pop()
    with pytest.raises(ChartError, match="differ in length"):
        parse_chart(short, symbol="MSFT", now=FAR_FUTURE)
    no_tz = recorded("chart_MSFT.json")
    del result_of(no_tz)["meta"]["exchangeTimezoneName"]
    with pytest.raises(ChartError, match="exchangeTimezoneName"):
        parse_chart(no_tz, symbol="MSFT", now=FAR_FUTURE)


# --- the client over loopback ---------------------------------------------------------------


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[SimulatorServer]:
    with chart_replay(tmp_path / "replay", {"MSFT": MSFT, "^SPX": MSFT, "ES=F": MSFT}) as running:
        yield running


def make_client(server: SimulatorServer, policy: RetryPolicy = FAST) -> YahooChartClient:
    return YahooChartClient(server.url, policy=policy, rate_per_second=0, stats=RequestStats())


def script(server: SimulatorServer, *rules: dict) -> None:
    """Chart faults for MSFT, in order (see ``simulator.faults``: ``after`` sequences them)."""
    server.faults.replace(parse_rules([{"endpoint": "chart", "symbol": "MSFT", **rule} for rule in rules]))


def test_fetch_sends_one_request_with_the_window_in_new_york_time(server: SimulatorServer) -> None:
    now = datetime(2022, 2, 1, tzinfo=timezone.utc)
    with make_client(server) as client:
        fetched = client.fetch("MSFT", date(2021, 3, 1), date(2021, 3, 31), now=now)
    (request,) = chart_requests(server)
    query = request["query"]
    assert query["period1"] == str(ny_midnight(date(2021, 3, 1)))
    assert query["period2"] == str(ny_midnight(date(2021, 4, 1)))
    assert query["interval"] == "1d"
    assert query["events"] == "div,splits"
    assert query["includeAdjustedClose"] == "true"
    bars = fetched.chart.bars
    assert bars["session_date"].min() == date(2021, 3, 1)
    assert bars["session_date"].max() == date(2021, 3, 31)
    assert len(bars) == 23
    assert json.loads(fetched.raw)["chart"]["result"][0]["meta"]["symbol"] == "MSFT"


@pytest.mark.parametrize(("ticker", "raw_path"), [("^SPX", "%5ESPX"), ("ES=F", "ES%3DF")])
def test_fetch_url_encodes_the_ticker(server: SimulatorServer, ticker: str, raw_path: str) -> None:
    with make_client(server) as client:
        fetched = client.fetch(ticker, date(2021, 3, 1), date(2021, 3, 5), now=FAR_FUTURE)
    assert chart_requests(server)[0]["raw_path"] == f"/v8/finance/chart/{raw_path}"
    assert len(fetched.chart.bars) == 5


def test_404_is_symbol_unavailable_with_the_providers_message(server: SimulatorServer) -> None:
    with make_client(server) as client, pytest.raises(SymbolUnavailable) as info:
        client.fetch("NOPE", date(2021, 3, 1), date(2021, 3, 5), now=FAR_FUTURE)
    assert info.value.description == "No data found, symbol may be delisted"
    assert info.value.status == 404
    assert len(chart_requests(server)) == 1


def test_400_before_the_first_bar_is_no_bars(server: SimulatorServer) -> None:
    with make_client(server) as client:
        fetched = client.fetch("MSFT", date(2020, 1, 2), date(2020, 1, 31), now=FAR_FUTURE)
    assert fetched.chart.bars.empty
    assert list(fetched.chart.bars.columns) == ["session_date", "open", "high", "low", "close", "adj_close", "volume"]
    assert "Data doesn't exist" in fetched.note


def test_window_after_the_last_bar_is_an_empty_chart(server: SimulatorServer) -> None:
    with make_client(server) as client:
        fetched = client.fetch("MSFT", date(2022, 3, 1), date(2022, 3, 4), now=FAR_FUTURE)
    assert fetched.chart.bars.empty
    assert fetched.note == ""


def test_429_and_500_are_retried_with_retry_after(server: SimulatorServer) -> None:
    script(server, {"kind": "429", "retry_after": 0, "count": 1}, {"kind": "500", "after": 1, "count": 1})
    with make_client(server) as client:
        fetched = client.fetch("MSFT", date(2021, 3, 1), date(2021, 3, 5), now=FAR_FUTURE)
        assert client.stats.retries == 2
        assert client.stats.statuses == {429: 1, 500: 1, 200: 1}
    assert len(fetched.chart.bars) == 5
    assert len(chart_requests(server, "MSFT")) == 3


def test_exhausted_retries_raise_chart_error_with_the_status(server: SimulatorServer) -> None:
    script(server, {"kind": "503"})
    with make_client(server) as client, pytest.raises(ChartError, match="HTTP 503") as info:
        client.fetch("MSFT", date(2021, 3, 1), date(2021, 3, 5), now=FAR_FUTURE)
    assert info.value.status == 503
    assert len(chart_requests(server, "MSFT")) == FAST.max_attempts


def test_timeouts_raise_chart_error(server: SimulatorServer) -> None:
    script(server, {"kind": "slow", "delay": 0.5})
    policy = RetryPolicy(max_attempts=2, base_delay=0.001, max_delay=0.01, timeout=0.2)
    with make_client(server, policy) as client, pytest.raises(ChartError, match="Timeout") as info:
        client.fetch("MSFT", date(2021, 3, 1), date(2021, 3, 5), now=FAR_FUTURE)
    assert info.value.status is None


def test_truncated_body_raises_chart_error(server: SimulatorServer) -> None:
    script(server, {"kind": "truncated", "count": 1})
    with make_client(server) as client, pytest.raises(ChartError, match="truncated JSON"):
        client.fetch("MSFT", date(2021, 3, 1), date(2021, 3, 5), now=FAR_FUTURE)


# --- raw before parse -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ticker", "rules", "status", "error"),
    [
        ("MSFT", [], 200, None),
        ("MSFT", [{"kind": "truncated"}], 200, "truncated JSON"),
        ("MSFT", [{"kind": "missing_field", "field": "close"}], 200, "KeyError: 'close'"),
        ("NOPE", [], 404, "No data found"),
        ("MSFT", [{"kind": "503"}], 503, "HTTP 503"),
    ],
    ids=["200", "malformed-200", "drifted-200", "404", "503-after-retries"],
)
def test_every_body_is_handed_on_before_it_is_parsed(
    server: SimulatorServer, ticker: str, rules: list[dict], status: int, error: str | None
) -> None:
    """``on_raw`` sees the answer that ends a request, whatever it is, before the client reads it:
    the body as received, under the one chart name rule (``raw_name``: the status in it when the
    request ended on no answer)."""
    script(server, *rules)
    start, end = date(2021, 3, 1), date(2021, 3, 5)
    landed: list[RawResponse] = []
    raised: list[Exception] = []
    with make_client(server) as client:
        try:
            client.fetch(ticker, start, end, now=FAR_FUTURE, on_raw=landed.append)
        except ChartError as exc:
            raised.append(exc)
    assert [r.name for r in landed] == [raw_name(ticker, start, end, status)]
    assert (status != 503) == (landed[0].name == f"chart_{ticker}_2021-03-01_2021-03-05.json")
    if error is None:
        assert not raised and json.loads(landed[0].body)["chart"]["result"][0]["meta"]["symbol"] == "MSFT"
    else:
        assert len(raised) == 1 and error in str(raised[0])
    if rules and rules[0]["kind"] == "truncated":
        with pytest.raises(ValueError):
            json.loads(landed[0].body)  # kept exactly as it arrived: cut off


def test_the_raw_name_percent_encodes_the_ticker() -> None:
    assert raw_name("^SPX", date(2021, 3, 1), date(2021, 3, 5)) == "chart_%5ESPX_2021-03-01_2021-03-05.json"
    assert raw_name("ES=F", date(2021, 3, 1), date(2021, 3, 5), 404) == "chart_ES%3DF_2021-03-01_2021-03-05.json"
    assert raw_name("SPY", date(2021, 3, 1), date(2021, 3, 5), 503) == "chart_SPY_2021-03-01_2021-03-05_http503.json"
