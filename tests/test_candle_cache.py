"""The candle cache against recorded charts served over loopback (``ChartServer``).

Request counts are the point: a cold backfill costs one request per symbol, a warm re-run none,
the next session one small overlapping request, a rescaled history one more for that symbol only,
and a failing symbol costs its bounded retries and leaves its cache untouched.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd
import pytest
from chart_server import FAST, ChartServer, Fault, ny_midnight, recorded, result_of

from variance_pipeline.calendar import session_close, sessions_back, sessions_in_range
from variance_pipeline.candles.refresh import CandleRefresh, refresh_candles
from variance_pipeline.candles.store import CandleCache, read_lookback
from variance_pipeline.sources.http import RetryPolicy
from variance_pipeline.sources.yahoo import YahooChartClient, parse_chart
from variance_pipeline.schemas.candles import CANDLES
from variance_pipeline.schemas.validate import validate_frame

MSFT = "chart_MSFT_1d_2021-02-01_2022-01-28.json"
NVDA = "chart_NVDA_1d_2021-02-01_2022-01-28.json"
TSLA = "chart_TSLA_1d_2010-06-29_2023-08-11.json"
END = date(2022, 1, 28)
NVDA_SPLIT = date(2021, 7, 20)
FAR_FUTURE = datetime(2030, 1, 1, tzinfo=timezone.utc)


def after_close(day: date, hours: float = 1.0) -> datetime:
    return session_close(day) + timedelta(hours=hours)


def recorded_bars(name: str) -> pd.DataFrame:
    return parse_chart(recorded(name), symbol=name, now=FAR_FUTURE).bars.set_index("session_date")


def stamp_of(day: date) -> int:
    """The recorded files stamp daily bars at the New York open."""
    return int(pd.Timestamp(f"{day} 09:30").tz_localize("America/New_York").timestamp())


def remove_bars(payload: dict[str, Any], days: set[date]) -> dict[str, Any]:
    result = result_of(payload)
    drop = {stamp_of(d) for d in days}
    keep = [i for i, ts in enumerate(result["timestamp"]) if ts not in drop]
    result["timestamp"] = [result["timestamp"][i] for i in keep]
    quote_block = result["indicators"]["quote"][0]
    for key in list(quote_block):
        quote_block[key] = [quote_block[key][i] for i in keep]
    adj = result["indicators"]["adjclose"][0]
    adj["adjclose"] = [adj["adjclose"][i] for i in keep]
    return payload


def rescale_before(payload: dict[str, Any], day: date, *, prices: float, adjclose: float) -> dict[str, Any]:
    """Multiply bars before ``day`` as the provider showed them before a split or dividend."""
    result = result_of(payload)
    cutoff = stamp_of(day)
    quote_block = result["indicators"]["quote"][0]
    adj = result["indicators"]["adjclose"][0]["adjclose"]
    for i, ts in enumerate(result["timestamp"]):
        if ts < cutoff:
            for key in ("open", "high", "low", "close"):
                quote_block[key][i] *= prices
            adj[i] *= prices * adjclose
    return payload


@pytest.fixture()
def server() -> Iterator[ChartServer]:
    with ChartServer({"MSFT": recorded(MSFT), "NVDA": recorded(NVDA), "TSLA": recorded(TSLA)}) as running:
        yield running


@pytest.fixture()
def cache(tmp_path: Path) -> CandleCache:
    return CandleCache(tmp_path / "cache" / "candles")


def run(
    server: ChartServer,
    cache: CandleCache,
    symbols: list[str],
    end: date,
    *,
    start: date | None = None,
    lookback: int = 19,
    now: datetime | None = None,
    policy: RetryPolicy = FAST,
    **kwargs: Any,
) -> CandleRefresh:
    with YahooChartClient(server.url, policy=policy, rate_per_second=0) as client:
        return refresh_candles(
            symbols,
            start or end,
            end,
            now=now or after_close(end),
            client=client,
            cache=cache,
            lookback=lookback,
            log=kwargs.pop("log", lambda line: None),
            **kwargs,
        )


def by_symbol(refresh: CandleRefresh) -> dict[str, Any]:
    return {s.symbol: s for s in refresh.statuses}


def test_cold_backfill_is_one_request_per_symbol(server: ChartServer, cache: CandleCache) -> None:
    sessions = sessions_back(END, 20)
    landed: list = []
    refresh = run(server, cache, ["MSFT", "NVDA", "TSLA"], END, start=sessions[0], lookback=0, on_raw=landed.append)
    assert [server.count(t) for t in ("MSFT", "NVDA", "TSLA")] == [1, 1, 1]
    assert refresh.stats.requests == 3
    for request in server.requests:
        assert request["query"]["period1"] == str(ny_midnight(sessions[0]))
        assert request["query"]["period2"] == str(ny_midnight(END + timedelta(days=1)))
    for status in refresh.statuses:
        assert (status.status, status.requests, status.bars_added) == ("fetched", 1, 20)
    frame = refresh.frame()
    assert list(frame.columns) == list(CANDLES.names)
    assert len(frame) == 60
    for symbol, name in (("MSFT", MSFT), ("NVDA", NVDA), ("TSLA", TSLA)):
        cached = cache.read(symbol).set_index("session_date")
        assert list(cached.index) == sessions
        expected = recorded_bars(name).loc[sessions]
        np.testing.assert_array_equal(cached["close"].to_numpy(), expected["close"].to_numpy())
        np.testing.assert_array_equal(cached["adj_close"].to_numpy(), expected["adj_close"].to_numpy())
    assert validate_frame(CANDLES, frame).ok
    windows = [(r.symbol, r.start, r.end) for r in landed]
    assert windows == [(s, sessions[0], END) for s in ("MSFT", "NVDA", "TSLA")]
    assert json.loads(landed[2].body)["chart"]["result"][0]["meta"]["symbol"] == "TSLA"


def test_warm_rerun_of_the_last_session_costs_nothing(server: ChartServer, cache: CandleCache) -> None:
    first = run(server, cache, ["MSFT", "NVDA"], END)
    again = run(server, cache, ["MSFT", "NVDA"], END, now=after_close(END, 5))
    assert server.count() == 2
    assert {s.status for s in again.statuses} == {"cached"}
    assert again.stats.requests == 0
    pd.testing.assert_frame_equal(first.frame(), again.frame())


def test_next_session_is_one_small_overlapping_request(server: ChartServer, cache: CandleCache) -> None:
    previous = date(2022, 1, 27)
    start = sessions_back(previous, 20)[0]
    run(server, cache, ["MSFT", "NVDA"], previous, start=start, lookback=0)
    refresh = run(server, cache, ["MSFT", "NVDA"], END, start=start, lookback=0)
    assert server.count() == 4
    overlap_start = sessions_back(previous, 5)[0]
    for ticker in ("MSFT", "NVDA"):
        query = server.for_ticker(ticker)[-1]["query"]
        assert query["period1"] == str(ny_midnight(overlap_start))
        assert by_symbol(refresh)[ticker].bars_added == 1
        assert cache.read(ticker)["session_date"].max() == END
        assert len(cache.read(ticker)) == 21


def test_a_session_still_open_is_not_expected(server: ChartServer, cache: CandleCache) -> None:
    during = session_close(END) - timedelta(hours=2)
    refresh = run(server, cache, ["MSFT"], END, now=during)
    assert server.requests[0]["query"]["period2"] == str(ny_midnight(END))
    assert cache.read("MSFT")["session_date"].max() == date(2022, 1, 27)
    assert refresh.frame().empty


@pytest.mark.parametrize("lists_split", [True, False], ids=["split-event", "rescale-without-event"])
def test_split_after_the_cache_refetches_only_that_symbol(
    server: ChartServer, cache: CandleCache, lists_split: bool
) -> None:
    before_split = date(2021, 7, 16)
    start = sessions_back(before_split, 30)[0]
    server.charts["NVDA"] = rescale_before(recorded(NVDA), NVDA_SPLIT, prices=4.0, adjclose=1.0)
    del result_of(server.charts["NVDA"])["events"]
    run(server, cache, ["MSFT", "NVDA"], before_split, start=start, lookback=0)
    pre_split = cache.read("NVDA").set_index("session_date")["close"]
    assert pre_split[before_split] == 4 * recorded_bars(NVDA).loc[before_split, "close"]

    adjusted = recorded(NVDA)
    if not lists_split:
        del result_of(adjusted)["events"]
    server.charts["NVDA"] = adjusted
    after = date(2021, 7, 23)
    refresh = run(server, cache, ["MSFT", "NVDA"], after, start=start, lookback=0)
    status = by_symbol(refresh)
    assert (status["MSFT"].requests, status["NVDA"].requests) == (1, 2)
    reason = "split 4:1 on 2021-07-20 after the cached bars" if lists_split else "closes moved by a factor 0.25"
    assert reason in status["NVDA"].message
    full = server.for_ticker("NVDA")[-1]["query"]
    assert full["period1"] == str(ny_midnight(start))
    cached = cache.read("NVDA").set_index("session_date")
    expected = recorded_bars(NVDA).loc[sessions_in_range(start, after)]
    np.testing.assert_array_equal(cached["close"].to_numpy(), expected["close"].to_numpy())
    sidecar = json.loads(cache.meta_path("NVDA").read_text())
    assert sidecar["splits"] == ([{"date": "2021-07-20", "numerator": 4.0, "denominator": 1.0}] if lists_split else [])


def test_a_failed_refetch_keeps_the_old_scale(server: ChartServer, cache: CandleCache) -> None:
    before_split = date(2021, 7, 16)
    server.charts["NVDA"] = rescale_before(recorded(NVDA), NVDA_SPLIT, prices=4.0, adjclose=1.0)
    run(server, cache, ["NVDA"], before_split)
    before = cache.path("NVDA").read_bytes()
    server.charts["NVDA"] = recorded(NVDA)
    server.script("NVDA", Fault(), sticky=Fault(429))
    refresh = run(server, cache, ["NVDA"], date(2021, 7, 23))
    status = refresh.statuses[0]
    assert (status.status, status.requests) == ("stale", 1 + FAST.max_attempts)
    assert "split 4:1" in status.message and "refetch of the full history failed" in status.message
    assert cache.path("NVDA").read_bytes() == before


def test_a_new_dividend_adjustment_refetches_the_history(server: ChartServer, cache: CandleCache) -> None:
    ex_date = date(2021, 8, 18)
    start = sessions_back(date(2021, 8, 13), 30)[0]
    before = rescale_before(recorded(MSFT), ex_date, prices=1.0, adjclose=1.0 / 0.9977)
    del result_of(before)["events"]["dividends"][str(stamp_of(ex_date))]
    server.charts["MSFT"] = before
    run(server, cache, ["MSFT"], date(2021, 8, 13), start=start, lookback=0)
    server.charts["MSFT"] = recorded(MSFT)
    refresh = run(server, cache, ["MSFT"], date(2021, 8, 20), start=start, lookback=0)
    assert refresh.statuses[0].requests == 2
    assert "dividend" in refresh.statuses[0].message
    cached = cache.read("MSFT").set_index("session_date")
    expected = recorded_bars(MSFT).loc[cached.index]
    np.testing.assert_array_equal(cached["adj_close"].to_numpy(), expected["adj_close"].to_numpy())
    assert {d["date"] for d in json.loads(cache.meta_path("MSFT").read_text())["dividends"]} == {"2021-08-18"}


def test_a_revised_last_close_is_overwritten_without_a_refetch(server: ChartServer, cache: CandleCache) -> None:
    last = date(2021, 8, 13)
    revised = recorded(MSFT)
    result = result_of(revised)
    i = result["timestamp"].index(stamp_of(last))
    result["indicators"]["quote"][0]["close"][i] *= 1.001
    result["indicators"]["adjclose"][0]["adjclose"][i] *= 1.001
    server.charts["MSFT"] = revised
    run(server, cache, ["MSFT"], last)
    server.charts["MSFT"] = recorded(MSFT)
    refresh = run(server, cache, ["MSFT"], date(2021, 8, 20))
    assert refresh.statuses[0].requests == 1
    cached = cache.read("MSFT").set_index("session_date")
    assert cached.loc[last, "close"] == recorded_bars(MSFT).loc[last, "close"]


def test_provider_gaps_do_not_cost_a_request_every_run(server: ChartServer, cache: CandleCache) -> None:
    halted = date(2022, 1, 20)
    server.charts["MSFT"] = remove_bars(recorded(MSFT), {halted})
    run(server, cache, ["MSFT"], END)
    assert halted not in cache.sessions_present("MSFT")
    again = run(server, cache, ["MSFT"], END, now=after_close(END, 30))
    assert again.statuses[0].status == "cached"
    assert server.count() == 1


def test_a_trailing_gap_is_retried_until_it_settles(server: ChartServer, cache: CandleCache) -> None:
    server.charts["MSFT"] = remove_bars(recorded(MSFT), {END})
    run(server, cache, ["MSFT"], END, now=after_close(END, 1))
    run(server, cache, ["MSFT"], END, now=after_close(END, 2))
    assert server.count() == 2  # the bar may just be late: ask again
    run(server, cache, ["MSFT"], END, now=after_close(END, 13))
    run(server, cache, ["MSFT"], END, now=after_close(END, 14))
    assert server.count() == 3  # settled: Yahoo has no bar for that session
    assert END not in cache.sessions_present("MSFT")


def test_a_late_bar_is_picked_up_on_the_next_run(server: ChartServer, cache: CandleCache) -> None:
    server.charts["MSFT"] = remove_bars(recorded(MSFT), {END})
    run(server, cache, ["MSFT"], END, now=after_close(END, 1))
    server.charts["MSFT"] = recorded(MSFT)
    refresh = run(server, cache, ["MSFT"], END, now=after_close(END, 2))
    assert refresh.statuses[0].bars_added == 1
    assert END in cache.sessions_present("MSFT")


def test_null_and_off_calendar_bars_never_reach_the_cache(server: ChartServer, cache: CandleCache) -> None:
    payload = recorded(MSFT)
    result = result_of(payload)
    null_day = date(2022, 1, 20)
    result["indicators"]["quote"][0]["close"][result["timestamp"].index(stamp_of(null_day))] = None
    holiday = date(2022, 1, 17)  # Martin Luther King Jr. Day
    i = result["timestamp"].index(stamp_of(date(2022, 1, 18)))
    result["timestamp"].insert(i, stamp_of(holiday))
    for values in result["indicators"]["quote"][0].values():
        values.insert(i, values[i])
    result["indicators"]["adjclose"][0]["adjclose"].insert(i, result["indicators"]["adjclose"][0]["adjclose"][i])
    server.charts["MSFT"] = payload
    refresh = run(server, cache, ["MSFT"], END)
    assert (refresh.null_bars_dropped, refresh.off_calendar_bars_dropped) == (1, 1)
    present = cache.sessions_present("MSFT")
    assert null_day not in present and holiday not in present
    assert len(present) == 19
    assert run(server, cache, ["MSFT"], END).stats.requests == 0


@pytest.mark.parametrize(
    ("fault", "policy", "requests", "fragment"),
    [
        (Fault(429), FAST, FAST.max_attempts, "HTTP 429"),
        (Fault(429, {"Retry-After": "0"}), FAST, FAST.max_attempts, "HTTP 429"),
        (Fault(500, body=b"internal"), FAST, FAST.max_attempts, "HTTP 500"),
        (Fault(truncate=True), FAST, 1, "truncated JSON"),
        (Fault(delay=0.4), RetryPolicy(max_attempts=2, base_delay=0.001, timeout=0.15), 2, "ReadTimeout"),
    ],
    ids=["429-storm", "429-retry-after-storm", "500-storm", "truncated", "timeout"],
)
def test_failures_keep_the_old_cache_and_report_stale(
    server: ChartServer, cache: CandleCache, fault: Fault, policy: RetryPolicy, requests: int, fragment: str
) -> None:
    previous = date(2022, 1, 27)
    run(server, cache, ["MSFT", "NVDA"], previous)
    before = cache.path("NVDA").read_bytes(), cache.meta_path("NVDA").read_bytes()
    server.script("NVDA", sticky=fault)
    refresh = run(server, cache, ["NVDA", "MSFT"], END, policy=policy)
    status = by_symbol(refresh)
    assert status["NVDA"].status == "stale"
    assert status["NVDA"].requests == requests
    assert fragment in status["NVDA"].message
    assert "keeping 20 cached bars" in status["NVDA"].message
    assert status["MSFT"].status == "fetched"
    assert (cache.path("NVDA").read_bytes(), cache.meta_path("NVDA").read_bytes()) == before
    assert refresh.frame(previous, END)["symbol"].tolist() == ["MSFT", "MSFT", "NVDA"]


def test_one_429_with_retry_after_then_success(server: ChartServer, cache: CandleCache) -> None:
    server.script("MSFT", Fault(429, {"Retry-After": "0"}))
    refresh = run(server, cache, ["MSFT"], END)
    assert (refresh.statuses[0].status, refresh.statuses[0].requests) == ("fetched", 2)
    assert refresh.stats.retries == 1
    assert refresh.stats.statuses == {429: 1, 200: 1}


def test_unknown_symbol_is_unavailable_with_the_providers_message(server: ChartServer, cache: CandleCache) -> None:
    refresh = run(server, cache, ["GONE", "MSFT"], END)
    status = by_symbol(refresh)
    assert (status["GONE"].status, status["GONE"].requests) == ("unavailable", 1)
    assert status["GONE"].message == "No data found, symbol may be delisted"
    assert status["MSFT"].status == "fetched"
    assert not cache.path("GONE").exists()


def test_progress_is_logged_every_few_symbols(server: ChartServer, cache: CandleCache) -> None:
    lines: list[str] = []
    run(server, cache, ["MSFT", "NVDA", "TSLA"], END, log=lines.append, progress_every=2)
    run(server, cache, ["MSFT", "NVDA", "TSLA"], END, log=lines.append, progress_every=2)
    assert lines == [
        "candles: 2/3 symbols, 2 requests, 0 cache hits, 0 retries, 0 stale, 0 unavailable",
        "candles: 3/3 symbols, 3 requests, 0 cache hits, 0 retries, 0 stale, 0 unavailable",
        "candles: 2/3 symbols, 0 requests, 2 cache hits, 0 retries, 0 stale, 0 unavailable",
        "candles: 3/3 symbols, 0 requests, 3 cache hits, 0 retries, 0 stale, 0 unavailable",
    ]


def test_futures_symbols_get_safe_file_names(server: ChartServer, cache: CandleCache) -> None:
    server.charts["ES=F"] = recorded(MSFT)
    refresh = run(server, cache, ["/ES"], END)
    assert server.requests[0]["raw_path"] == "/v8/finance/chart/ES%3DF"
    assert sorted(p.name for p in cache.root.iterdir()) == ["%2FES.json", "%2FES.parquet"]
    frame = refresh.frame()
    assert set(frame["symbol"]) == {"/ES"} and set(frame["yahoo_ticker"]) == {"ES=F"}
    for symbol, name in (("BRK/B", "BRK%2FB"), ("^SPX", "%5ESPX"), ("ES=F", "ES%3DF"), ("..", "..")):
        assert cache.path(symbol).name == f"{name}.parquet"
        assert cache.path(symbol).parent == cache.root


def test_a_changed_ticker_mapping_replaces_the_cache(server: ChartServer, cache: CandleCache) -> None:
    run(server, cache, ["MSFT"], END)
    refresh = run(server, cache, ["MSFT"], END, overrides={"MSFT": "NVDA"})
    assert refresh.statuses[0].yahoo_ticker == "NVDA"
    assert server.for_ticker("NVDA")[0]["query"]["period1"] == str(ny_midnight(sessions_back(END, 20)[0]))
    cached = cache.read("MSFT").set_index("session_date")
    assert set(cached["yahoo_ticker"]) == {"NVDA"}
    assert cached.loc[END, "close"] == recorded_bars(NVDA).loc[END, "close"]


def test_cache_round_trip_and_empty_read(cache: CandleCache) -> None:
    empty = cache.read("NONE")
    assert list(empty.columns) == list(CANDLES.names) and empty.empty
    assert str(empty["volume"].dtype) == "Int64"
    assert cache.sessions_present("NONE") == set()
    bars = recorded_bars(MSFT).reset_index().head(5).assign(yahoo_ticker="MSFT")
    bars.loc[2, "volume"] = pd.NA
    cache.write("MSFT", bars.iloc[::-1])
    back = cache.read("MSFT")
    assert back["session_date"].tolist() == bars["session_date"].tolist()
    assert back["volume"].isna().tolist() == [False, False, True, False, False]
    assert cache.sessions_present("MSFT") == set(bars["session_date"])
    assert list(cache.root.glob(".*")) == []  # no temporary files left behind


def test_read_lookback_returns_the_last_sessions_per_symbol(server: ChartServer, cache: CandleCache) -> None:
    run(server, cache, ["MSFT", "NVDA"], END)
    frame = read_lookback(cache, ["MSFT", "NVDA", "NONE"], date(2022, 1, 27), 10)
    assert list(frame.columns) == list(CANDLES.names)
    assert frame.groupby("symbol")["session_date"].agg(["count", "max"]).to_dict("list") == {
        "count": [10, 10],
        "max": [date(2022, 1, 27)] * 2,
    }


# --- CandlesSchema --------------------------------------------------------------------------


def test_schema_quarantines_bad_bars_and_keeps_the_good_ones() -> None:
    frame = recorded_bars(MSFT).reset_index().assign(symbol="MSFT", yahoo_ticker="MSFT")[list(CANDLES.names)]
    frame.loc[3, "high"] = frame.loc[3, "close"] - 1.0  # high below close
    frame.loc[5, "low"] = frame.loc[5, ["open", "close"]].max() + 0.01  # low above the close
    frame.loc[6, "adj_close"] = -1.0  # negative price
    frame.loc[7, "session_date"] = date(2021, 2, 6)  # a Saturday
    frame.loc[9, "close"] = np.nan  # NaN price
    frame.loc[11, "volume"] = -5
    frame.loc[12, "volume"] = pd.NA  # a missing volume is fine
    frame = pd.concat([frame, frame.iloc[[20]]], ignore_index=True)  # a duplicate session
    outcome = validate_frame(CANDLES, frame)
    assert sorted(outcome.quarantined.index) == [3, 5, 6, 7, 9, 11, 20, 252]
    assert len(outcome.valid) == 252 - 7
    checks = set(outcome.failure_cases["check"])
    expected = {"high_covers_open_close", "low_under_open_close", "xnys_session", "multiple_fields_uniqueness"}
    assert expected | {"greater_than(0)", "greater_than_or_equal_to(0)", "not_nullable"} <= checks
    assert validate_frame(CANDLES, outcome.valid.reset_index(drop=True)).ok


def test_schema_accepts_an_empty_frame(cache: CandleCache) -> None:
    assert validate_frame(CANDLES, cache.read("NONE")).ok
