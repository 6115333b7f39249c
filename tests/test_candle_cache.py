"""The candle store and its refresh against recorded charts the simulator replays over loopback.

Request counts are the point: a cold backfill costs one request per symbol, a warm re-run none,
the next session one small overlapping request, a re-scaled history one more for that symbol only
(its one file replaced on a new scale), and a failing symbol costs its bounded retries and leaves
its stored bars untouched. What enters the store has passed the candle declaration; what did not
is handed to the quarantine and remembered as a gap. An old data dir (cache + per-session lake
partitions) becomes the store on first use, without losing a bar.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from support import CHART_RETRY as FAST
from support import FAR_FUTURE, chart_replay, chart_requests, ny_midnight, recorded_chart
from support import result_of
from variance_pipeline.calendar import session_close, sessions_back, sessions_in_range
from variance_pipeline.candles.bars import SCALE_KEY
from variance_pipeline.candles.refresh import CandleRefresh, refresh_candles
from variance_pipeline.candles.store import CandleStore, Landing, read_lookback
from variance_pipeline.lake.layout import Lake
from variance_pipeline.simulator import SimulatorServer
from variance_pipeline.simulator.faults import parse_rules
from variance_pipeline.sources.http import RawResponse, RetryPolicy
from variance_pipeline.sources.yahoo import YahooChartClient, parse_chart, raw_name
from variance_pipeline.schemas.candles import CANDLES
from variance_pipeline.schemas.validate import validate_frame

MSFT = "chart_MSFT_1d_2021-02-01_2022-01-28.json"
NVDA = "chart_NVDA_1d_2021-02-01_2022-01-28.json"
TSLA = "chart_TSLA_1d_2010-06-29_2023-08-11.json"
END = date(2022, 1, 28)
NVDA_SPLIT = date(2021, 7, 20)


def recorded(name: str) -> dict[str, Any]:
    return recorded_chart(name)


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
def server(tmp_path: Path) -> Iterator[SimulatorServer]:
    with chart_replay(tmp_path / "replay", {"MSFT": MSFT, "NVDA": NVDA, "TSLA": TSLA}) as running:
        yield running


@pytest.fixture()
def store(tmp_path: Path) -> CandleStore:
    return CandleStore(Lake(tmp_path / "data").candles_dir)


def faults(server: SimulatorServer, symbol: str, *rules: dict[str, Any]) -> None:
    """Chart faults for ``symbol``, in order (``after`` sequences them; no ``count``: for ever)."""
    server.faults.replace(parse_rules([{"endpoint": "chart", "symbol": symbol, **rule} for rule in rules]))


def count(server: SimulatorServer, ticker: str | None = None) -> int:
    return len(chart_requests(server, ticker))


def run(
    server: SimulatorServer,
    store: CandleStore,
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
            store=store,
            lookback=lookback,
            log=kwargs.pop("log", lambda line: None),
            **kwargs,
        )


def by_symbol(refresh: CandleRefresh) -> dict[str, Any]:
    return {s.symbol: s for s in refresh.statuses}


def test_cold_backfill_is_one_request_per_symbol(server: SimulatorServer, store: CandleStore) -> None:
    sessions = sessions_back(END, 20)
    landed: list[RawResponse] = []
    refresh = run(server, store, ["MSFT", "NVDA", "TSLA"], END, start=sessions[0], lookback=0, on_raw=landed.append)
    assert [count(server, t) for t in ("MSFT", "NVDA", "TSLA")] == [1, 1, 1]
    assert refresh.stats.requests == 3
    for request in chart_requests(server):
        assert request["query"]["period1"] == str(ny_midnight(sessions[0]))
        assert request["query"]["period2"] == str(ny_midnight(END + timedelta(days=1)))
    for status in refresh.statuses:
        assert (status.status, status.requests, status.bars_added) == ("fetched", 1, 20)
    frame = refresh.frame()
    assert list(frame.columns) == list(CANDLES.names)
    assert len(frame) == 60
    for symbol, name in (("MSFT", MSFT), ("NVDA", NVDA), ("TSLA", TSLA)):
        stored = store.read(symbol).set_index("session_date")
        assert list(stored.index) == sessions
        expected = recorded_bars(name).loc[sessions]
        np.testing.assert_array_equal(stored["close"].to_numpy(), expected["close"].to_numpy())
        np.testing.assert_array_equal(stored["adj_close"].to_numpy(), expected["adj_close"].to_numpy())
    assert validate_frame(CANDLES, frame).ok
    assert [r.name for r in landed] == [raw_name(s, sessions[0], END) for s in ("MSFT", "NVDA", "TSLA")]
    assert json.loads(landed[2].body)["chart"]["result"][0]["meta"]["symbol"] == "TSLA"


def test_a_file_holds_exactly_the_declared_columns_and_a_scale(server: SimulatorServer, store: CandleStore) -> None:
    run(server, store, ["MSFT"], END)
    path = store.path("MSFT")
    assert path == store.root / "symbol=MSFT" / "part-0.parquet"
    schema = pq.read_schema(path)
    assert schema.remove_metadata() == CANDLES.arrow_schema.remove_metadata()  # types and nullability
    assert schema.metadata[SCALE_KEY.encode()].decode() == store.scale("MSFT")


def test_warm_rerun_of_the_last_session_costs_nothing(server: SimulatorServer, store: CandleStore) -> None:
    first = run(server, store, ["MSFT", "NVDA"], END)
    again = run(server, store, ["MSFT", "NVDA"], END, now=after_close(END, 5))
    assert count(server) == 2
    assert {s.status for s in again.statuses} == {"cached"}
    assert again.stats.requests == 0
    pd.testing.assert_frame_equal(first.frame(), again.frame())


def test_next_session_is_one_small_overlapping_request(server: SimulatorServer, store: CandleStore) -> None:
    previous = date(2022, 1, 27)
    start = sessions_back(previous, 20)[0]
    run(server, store, ["MSFT", "NVDA"], previous, start=start, lookback=0)
    scales = {t: store.scale(t) for t in ("MSFT", "NVDA")}
    refresh = run(server, store, ["MSFT", "NVDA"], END, start=start, lookback=0)
    assert count(server) == 4
    overlap_start = sessions_back(previous, 5)[0]
    for ticker in ("MSFT", "NVDA"):
        query = chart_requests(server, ticker)[-1]["query"]
        assert query["period1"] == str(ny_midnight(overlap_start))
        assert by_symbol(refresh)[ticker].bars_added == 1
        assert not by_symbol(refresh)[ticker].rescaled
        assert store.read(ticker)["session_date"].max() == END
        assert len(store.read(ticker)) == 21
        assert store.scale(ticker) == scales[ticker]  # appended on the same scale: the warehouse loads O(day)


def test_a_session_still_open_is_not_expected(server: SimulatorServer, store: CandleStore) -> None:
    during = session_close(END) - timedelta(hours=2)
    refresh = run(server, store, ["MSFT"], END, now=during)
    assert chart_requests(server)[0]["query"]["period2"] == str(ny_midnight(END))
    assert store.read("MSFT")["session_date"].max() == date(2022, 1, 27)
    assert refresh.frame().empty


@pytest.mark.parametrize("lists_split", [True, False], ids=["split-event", "rescale-without-event"])
def test_split_after_the_store_refetches_only_that_symbol(
    server: SimulatorServer, store: CandleStore, lists_split: bool
) -> None:
    before_split = date(2021, 7, 16)
    start = sessions_back(before_split, 30)[0]
    unsplit = rescale_before(recorded(NVDA), NVDA_SPLIT, prices=4.0, adjclose=1.0)
    del result_of(unsplit)["events"]
    server.replay_chart("NVDA", unsplit)
    run(server, store, ["MSFT", "NVDA"], before_split, start=start, lookback=0)
    pre_split = store.read("NVDA").set_index("session_date")["close"]
    assert pre_split[before_split] == 4 * recorded_bars(NVDA).loc[before_split, "close"]
    scales = {t: store.scale(t) for t in ("MSFT", "NVDA")}

    adjusted = recorded(NVDA)
    if not lists_split:
        del result_of(adjusted)["events"]
    server.replay_chart("NVDA", adjusted)
    after = date(2021, 7, 23)
    refresh = run(server, store, ["MSFT", "NVDA"], after, start=start, lookback=0)
    status = by_symbol(refresh)
    assert (status["MSFT"].requests, status["NVDA"].requests) == (1, 2)
    reason = "split 4:1 on 2021-07-20 after the stored bars" if lists_split else "closes moved by a factor 0.25"
    assert reason in status["NVDA"].message
    assert (status["NVDA"].rescaled, status["MSFT"].rescaled) == (True, False)
    assert refresh.rescaled_symbols == ["NVDA"]
    full = chart_requests(server, "NVDA")[-1]["query"]
    assert full["period1"] == str(ny_midnight(start))
    stored = store.read("NVDA").set_index("session_date")
    expected = recorded_bars(NVDA).loc[sessions_in_range(start, after)]
    np.testing.assert_array_equal(stored["close"].to_numpy(), expected["close"].to_numpy())
    # One file rewritten, on a new scale; the other symbol's scale is untouched.
    assert store.scale("NVDA") != scales["NVDA"] and store.scale("MSFT") == scales["MSFT"]
    state = json.loads(store.state_path("NVDA").read_text())
    assert state["splits"] == ([{"date": "2021-07-20", "numerator": 4.0, "denominator": 1.0}] if lists_split else [])


def test_a_failed_refetch_keeps_the_old_scale(server: SimulatorServer, store: CandleStore) -> None:
    before_split = date(2021, 7, 16)
    server.replay_chart("NVDA", rescale_before(recorded(NVDA), NVDA_SPLIT, prices=4.0, adjclose=1.0))
    run(server, store, ["NVDA"], before_split)
    before = store.path("NVDA").read_bytes()
    server.replay_chart("NVDA", recorded(NVDA))
    faults(server, "NVDA", {"kind": "429", "after": 1})  # the small request answers, the refetch does not
    refresh = run(server, store, ["NVDA"], date(2021, 7, 23))
    status = refresh.statuses[0]
    assert (status.status, status.requests) == ("stale", 1 + FAST.max_attempts)
    assert "split 4:1" in status.message and "refetch of the full history failed" in status.message
    assert store.path("NVDA").read_bytes() == before


def test_a_new_dividend_adjustment_refetches_the_history(server: SimulatorServer, store: CandleStore) -> None:
    ex_date = date(2021, 8, 18)
    start = sessions_back(date(2021, 8, 13), 30)[0]
    before = rescale_before(recorded(MSFT), ex_date, prices=1.0, adjclose=1.0 / 0.9977)
    del result_of(before)["events"]["dividends"][str(stamp_of(ex_date))]
    server.replay_chart("MSFT", before)
    run(server, store, ["MSFT"], date(2021, 8, 13), start=start, lookback=0)
    server.replay_chart("MSFT", recorded(MSFT))
    refresh = run(server, store, ["MSFT"], date(2021, 8, 20), start=start, lookback=0)
    assert refresh.statuses[0].requests == 2
    assert "dividend" in refresh.statuses[0].message
    stored = store.read("MSFT").set_index("session_date")
    expected = recorded_bars(MSFT).loc[stored.index]
    np.testing.assert_array_equal(stored["adj_close"].to_numpy(), expected["adj_close"].to_numpy())
    assert {d["date"] for d in json.loads(store.state_path("MSFT").read_text())["dividends"]} == {"2021-08-18"}


def test_a_revised_last_close_is_overwritten_without_a_refetch(server: SimulatorServer, store: CandleStore) -> None:
    last = date(2021, 8, 13)
    revised = recorded(MSFT)
    result = result_of(revised)
    i = result["timestamp"].index(stamp_of(last))
    result["indicators"]["quote"][0]["close"][i] *= 1.001
    result["indicators"]["adjclose"][0]["adjclose"][i] *= 1.001
    server.replay_chart("MSFT", revised)
    run(server, store, ["MSFT"], last)
    server.replay_chart("MSFT", recorded(MSFT))
    refresh = run(server, store, ["MSFT"], date(2021, 8, 20))
    assert refresh.statuses[0].requests == 1
    stored = store.read("MSFT").set_index("session_date")
    assert stored.loc[last, "close"] == recorded_bars(MSFT).loc[last, "close"]


def test_provider_gaps_do_not_cost_a_request_every_run(server: SimulatorServer, store: CandleStore) -> None:
    halted = date(2022, 1, 20)
    server.replay_chart("MSFT", remove_bars(recorded(MSFT), {halted}))
    run(server, store, ["MSFT"], END)
    assert halted not in store.sessions_present("MSFT")
    again = run(server, store, ["MSFT"], END, now=after_close(END, 30))
    assert again.statuses[0].status == "cached"
    assert count(server) == 1


def test_a_trailing_gap_is_retried_until_it_settles(server: SimulatorServer, store: CandleStore) -> None:
    server.replay_chart("MSFT", remove_bars(recorded(MSFT), {END}))
    run(server, store, ["MSFT"], END, now=after_close(END, 1))
    run(server, store, ["MSFT"], END, now=after_close(END, 2))
    assert count(server) == 2  # the bar may just be late: ask again
    run(server, store, ["MSFT"], END, now=after_close(END, 13))
    run(server, store, ["MSFT"], END, now=after_close(END, 14))
    assert count(server) == 3  # settled: Yahoo has no bar for that session
    assert END not in store.sessions_present("MSFT")


def test_a_late_bar_is_picked_up_on_the_next_run(server: SimulatorServer, store: CandleStore) -> None:
    server.replay_chart("MSFT", remove_bars(recorded(MSFT), {END}))
    run(server, store, ["MSFT"], END, now=after_close(END, 1))
    server.replay_chart("MSFT", recorded(MSFT))
    refresh = run(server, store, ["MSFT"], END, now=after_close(END, 2))
    assert refresh.statuses[0].bars_added == 1
    assert END in store.sessions_present("MSFT")


def test_null_and_off_calendar_bars_never_reach_the_store(server: SimulatorServer, store: CandleStore) -> None:
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
    server.replay_chart("MSFT", payload)
    refresh = run(server, store, ["MSFT"], END)
    assert (refresh.null_bars_dropped, refresh.off_calendar_bars_dropped) == (1, 1)
    present = store.sessions_present("MSFT")
    assert null_day not in present and holiday not in present
    assert len(present) == 19
    (refused,) = refresh.quarantined.itertuples()  # the null bar, with why; the holiday is not a session
    assert (refused.session_date, "null close" in refused.quarantine_reason) == (str(null_day), True)
    assert run(server, store, ["MSFT"], END).stats.requests == 0


def test_a_bar_the_declaration_refuses_is_quarantined_first_and_remembered(
    server: SimulatorServer, store: CandleStore
) -> None:
    """Yahoo's impossible bar never enters the store: it goes to ``on_rejected`` (the quarantine)
    before the file is written, its session becomes a known gap, and no later run asks for it."""
    bad_day = date(2022, 1, 20)
    payload = recorded(MSFT)
    result = result_of(payload)
    i = result["timestamp"].index(stamp_of(bad_day))
    result["indicators"]["quote"][0]["high"][i] = result["indicators"]["quote"][0]["low"][i] * 0.5
    server.replay_chart("MSFT", payload)
    quarantined: list[tuple[pd.DataFrame, bool]] = []
    refresh = run(
        server, store, ["MSFT"], END,
        on_rejected=lambda rows: quarantined.append((rows, store.path("MSFT").exists())),
    )
    ((rows, file_existed),) = quarantined
    assert not file_existed  # handed on before the symbol's file was written
    assert rows["session_date"].tolist() == [str(bad_day)]
    assert "high_covers_open_close" in rows["quarantine_reason"].iloc[0]
    assert "1 refused by the candle declaration" in refresh.statuses[0].message
    assert not refresh.validation.ok and "high_covers_open_close" in set(refresh.validation.failure_cases["check"])
    assert bad_day not in store.sessions_present("MSFT")
    assert validate_frame(CANDLES, store.read("MSFT")).ok
    assert bad_day.isoformat() in json.loads(store.state_path("MSFT").read_text())["no_bar_sessions"]
    again = run(server, store, ["MSFT"], END, now=after_close(END, 30))
    assert (again.statuses[0].status, count(server)) == ("cached", 1)


@pytest.mark.parametrize(
    ("rules", "policy", "requests", "fragment"),
    [
        ([{"kind": "429"}], FAST, FAST.max_attempts, "HTTP 429"),
        ([{"kind": "429", "retry_after": 0}], FAST, FAST.max_attempts, "HTTP 429"),
        ([{"kind": "500"}], FAST, FAST.max_attempts, "HTTP 500"),
        ([{"kind": "truncated"}], FAST, 1, "truncated JSON"),
        ([{"kind": "slow", "delay": 0.4}], RetryPolicy(max_attempts=2, base_delay=0.001, timeout=0.15), 2, "ReadTimeout"),
    ],
    ids=["429-storm", "429-retry-after-storm", "500-storm", "truncated", "timeout"],
)
def test_failures_keep_the_stored_bars_and_report_stale(
    server: SimulatorServer, store: CandleStore, rules: list[dict], policy: RetryPolicy, requests: int, fragment: str
) -> None:
    previous = date(2022, 1, 27)
    run(server, store, ["MSFT", "NVDA"], previous)
    before = store.path("NVDA").read_bytes(), store.state_path("NVDA").read_bytes()
    faults(server, "NVDA", *rules)
    refresh = run(server, store, ["NVDA", "MSFT"], END, policy=policy)
    status = by_symbol(refresh)
    assert status["NVDA"].status == "stale"
    assert status["NVDA"].requests == requests
    assert fragment in status["NVDA"].message
    assert "keeping 20 stored bars" in status["NVDA"].message
    assert status["MSFT"].status == "fetched"
    assert (store.path("NVDA").read_bytes(), store.state_path("NVDA").read_bytes()) == before
    assert refresh.frame(previous, END)["symbol"].tolist() == ["MSFT", "MSFT", "NVDA"]


def test_one_429_with_retry_after_then_success(server: SimulatorServer, store: CandleStore) -> None:
    faults(server, "MSFT", {"kind": "429", "retry_after": 0, "count": 1})
    refresh = run(server, store, ["MSFT"], END)
    assert (refresh.statuses[0].status, refresh.statuses[0].requests) == ("fetched", 2)
    assert refresh.stats.retries == 1
    assert refresh.stats.statuses == {429: 1, 200: 1}


def test_unknown_symbol_is_unavailable_with_the_providers_message(server: SimulatorServer, store: CandleStore) -> None:
    refresh = run(server, store, ["GONE", "MSFT"], END)
    status = by_symbol(refresh)
    assert (status["GONE"].status, status["GONE"].requests) == ("unavailable", 1)
    assert status["GONE"].message == "No data found, symbol may be delisted"
    assert status["MSFT"].status == "fetched"
    assert not store.path("GONE").exists()
    assert store.read_state("GONE").not_found_at == after_close(END)


def test_progress_is_logged_every_few_symbols(server: SimulatorServer, store: CandleStore) -> None:
    lines: list[str] = []
    run(server, store, ["MSFT", "NVDA", "TSLA"], END, log=lines.append, progress_every=2)
    run(server, store, ["MSFT", "NVDA", "TSLA"], END, log=lines.append, progress_every=2)
    assert lines == [
        "candles: 2/3 symbols, 2 requests, 0 cache hits, 0 retries, 0 stale, 0 unavailable",
        "candles: 3/3 symbols, 3 requests, 0 cache hits, 0 retries, 0 stale, 0 unavailable",
        "candles: 2/3 symbols, 0 requests, 2 cache hits, 0 retries, 0 stale, 0 unavailable",
        "candles: 3/3 symbols, 0 requests, 3 cache hits, 0 retries, 0 stale, 0 unavailable",
    ]


def test_futures_symbols_get_safe_file_names(server: SimulatorServer, store: CandleStore) -> None:
    server.replay_chart("ES=F", recorded(MSFT))
    refresh = run(server, store, ["/ES"], END)
    assert chart_requests(server)[0]["raw_path"] == "/v8/finance/chart/ES%3DF"
    assert sorted(p.name for p in store.root.iterdir()) == ["symbol=%2FES"]
    assert sorted(p.name for p in store.state_path("/ES").parent.iterdir()) == ["%2FES.json"]
    frame = refresh.frame()
    assert set(frame["symbol"]) == {"/ES"} and set(frame["yahoo_ticker"]) == {"ES=F"}
    for symbol, name in (("BRK/B", "BRK%2FB"), ("^SPX", "%5ESPX"), ("ES=F", "ES%3DF"), ("..", "..")):
        assert store.path(symbol).parent.name == f"symbol={name}"
        assert store.path(symbol).parent.parent == store.root
        assert store.state_path(symbol).name == f"{name}.json"


def test_a_changed_ticker_mapping_replaces_the_stored_history(server: SimulatorServer, store: CandleStore) -> None:
    run(server, store, ["MSFT"], END)
    scale = store.scale("MSFT")
    refresh = run(server, store, ["MSFT"], END, overrides={"MSFT": "NVDA"})
    assert refresh.statuses[0].yahoo_ticker == "NVDA" and refresh.statuses[0].rescaled
    assert chart_requests(server, "NVDA")[0]["query"]["period1"] == str(ny_midnight(sessions_back(END, 20)[0]))
    stored = store.read("MSFT").set_index("session_date")
    assert set(stored["yahoo_ticker"]) == {"NVDA"}
    assert stored.loc[END, "close"] == recorded_bars(NVDA).loc[END, "close"]
    assert store.scale("MSFT") != scale


def test_store_round_trip_and_empty_read(store: CandleStore) -> None:
    empty = store.read("NONE")
    assert list(empty.columns) == list(CANDLES.names) and empty.empty
    assert str(empty["volume"].dtype) == "Int64"
    assert store.sessions_present("NONE") == set() and store.scale("NONE") is None
    bars = recorded_bars(MSFT).reset_index().head(5).assign(yahoo_ticker="MSFT")
    bars.loc[2, "volume"] = pd.NA
    store.land([Landing("MSFT", bars.iloc[::-1])])
    back = store.read("MSFT")
    assert back["session_date"].tolist() == bars["session_date"].tolist()
    assert back["volume"].isna().tolist() == [False, False, True, False, False]
    assert store.sessions_present("MSFT") == set(bars["session_date"])
    assert list(store.path("MSFT").parent.glob(".*")) == []  # no temporary files left behind


def test_landing_joins_the_scale_and_replacing_starts_a_new_one(store: CandleStore) -> None:
    bars = recorded_bars(MSFT).reset_index().assign(symbol="MSFT", yahoo_ticker="MSFT")
    store.add(bars.head(5))
    scale = store.scale("MSFT")
    revised = bars.iloc[3:8].assign(close=lambda f: f["close"] * 1.0001)
    landed = store.add(revised)  # two new sessions, three re-served: one history, one scale
    assert store.scale("MSFT") == scale and len(landed.bars["MSFT"]) == 8
    assert landed.bars["MSFT"]["close"].iloc[3] == revised["close"].iloc[0]
    store.replace(bars.head(2))
    assert store.scale("MSFT") not in (None, scale) and len(store.read("MSFT")) == 2


def test_a_bar_breaking_the_declaration_never_enters_the_store(store: CandleStore) -> None:
    bars = recorded_bars(MSFT).reset_index().head(5).assign(symbol="MSFT", yahoo_ticker="MSFT")
    broken = bars.copy()
    broken.loc[2, "high"] = broken.loc[2, "low"] * 0.5  # high below low: not a real bar
    refused: list[pd.DataFrame] = []
    landed = store.land([Landing("MSFT", broken)], on_refused=refused.append)
    assert refused[0]["session_date"].tolist() == [bars.loc[2, "session_date"]]
    assert landed.outcome.quarantined["quarantine_reason"].str.contains("high_covers_open_close").all()
    assert store.sessions_present("MSFT") == set(bars["session_date"]) - {bars.loc[2, "session_date"]}
    # A re-served session keeps its stored bar when the new one is refused.
    store.add(bars)
    landed = store.land([Landing("MSFT", broken.iloc[[2]])])
    assert landed.bars["MSFT"].loc[2, "high"] == bars.loc[2, "high"]


def test_read_lookback_returns_the_last_sessions_per_symbol(server: SimulatorServer, store: CandleStore) -> None:
    run(server, store, ["MSFT", "NVDA"], END)
    frame = read_lookback(store, ["MSFT", "NVDA", "NONE"], date(2022, 1, 27), 10)
    assert list(frame.columns) == list(CANDLES.names)
    assert frame.groupby("symbol")["session_date"].agg(["count", "max"]).to_dict("list") == {
        "count": [10, 10],
        "max": [date(2022, 1, 27)] * 2,
    }


def test_a_session_across_symbols(server: SimulatorServer, store: CandleStore) -> None:
    run(server, store, ["MSFT", "NVDA"], END)
    day = store.session(date(2022, 1, 27), ["MSFT", "NVDA", "NONE"]).set_index("symbol")
    assert sorted(day.index) == ["MSFT", "NVDA"]
    assert day.loc["NVDA", "close"] == recorded_bars(NVDA).loc[date(2022, 1, 27), "close"]


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


def test_schema_accepts_an_empty_frame(store: CandleStore) -> None:
    assert validate_frame(CANDLES, store.read("NONE")).ok


# --- an old data dir becomes the store ------------------------------------------------------


def legacy_dir(data_dir: Path, cached: dict[str, pd.DataFrame], partitions: pd.DataFrame, sidecars: dict[str, dict]) -> None:
    """The layout before the store: ``cache/candles/<s>.parquet`` + ``.json`` (what Yahoo served,
    every column nullable) and ``lake/candles/date=D/part-0.parquet`` (validated, per session)."""
    cache = data_dir / "cache" / "candles"
    cache.mkdir(parents=True)
    loose = pa.schema([f.with_nullable(True) for f in CANDLES.arrow_schema])
    for symbol, bars in cached.items():
        stem = Lake(data_dir).candle_path(symbol).parent.name.removeprefix("symbol=")
        pq.write_table(pa.Table.from_pandas(bars[list(CANDLES.names)], schema=loose, preserve_index=False),
                       cache / f"{stem}.parquet")
        if symbol in sidecars:
            (cache / f"{stem}.json").write_text(json.dumps(sidecars[symbol]))
    for day, rows in partitions.groupby("session_date"):
        path = data_dir / "lake" / "candles" / f"date={day}" / "part-0.parquet"
        path.parent.mkdir(parents=True)
        pq.write_table(CANDLES.arrow_table(rows), path)
    (data_dir / "lake" / "candles" / "_pending_reload.json").write_text('{"dataset": "candles", "sessions": []}')


def sidecar(ticker: str, **extra: Any) -> dict[str, Any]:
    return {"yahoo_ticker": ticker, "fetched_at": after_close(END).isoformat(), "splits": [], "dividends": [],
            "no_bar_sessions": [], "lake_rebase_pending": False, "not_found_at": None, **extra}


def symbol_bars(name: str, symbol: str, days: list[date]) -> pd.DataFrame:
    return recorded_bars(name).loc[days].reset_index().assign(symbol=symbol, yahoo_ticker=symbol)


def test_an_old_data_dir_becomes_the_store_without_losing_a_bar(server: SimulatorServer, tmp_path: Path) -> None:
    data_dir = tmp_path / "old"
    window = sessions_back(END, 20)  # what a refresh of END with lookback 19 expects
    older = sessions_back(window[0], 4)[:3]  # an old backfill's sessions the cache no longer holds
    msft = symbol_bars(MSFT, "MSFT", window)
    partitions = pd.concat([symbol_bars(MSFT, "MSFT", [*older, *window[-3:]]), symbol_bars(NVDA, "NVDA", older)])
    gaps = {"no_bar_sessions": [window[5].isoformat()]}
    legacy_dir(data_dir, {"MSFT": msft}, partitions, {"MSFT": sidecar("MSFT", **gaps)})

    store = CandleStore(Lake(data_dir).candles_dir)  # opening it migrates

    assert store.symbols() == ["MSFT", "NVDA"]
    assert store.read("MSFT")["session_date"].tolist() == [*older, *window]
    np.testing.assert_array_equal(store.read("MSFT")["close"], recorded_bars(MSFT).loc[[*older, *window], "close"])
    assert store.read("NVDA")["session_date"].tolist() == older  # a symbol only the partitions held
    state = store.read_state("MSFT")
    assert (state.yahoo_ticker, state.fetched_at, state.no_bar_sessions) == ("MSFT", after_close(END), {window[5]})
    assert all(store.scale(s) for s in ("MSFT", "NVDA"))
    # The old layout is gone; nothing was refused.
    assert not (data_dir / "cache" / "candles").exists()
    assert sorted(p.name for p in store.root.iterdir()) == ["symbol=MSFT", "symbol=NVDA"]
    assert not (data_dir / "quarantine").exists()
    # The migrated store answers as the cache did: a warm re-run of END asks Yahoo nothing for MSFT.
    refresh = run(server, store, ["MSFT"], END, now=after_close(END, 5))
    assert (refresh.statuses[0].status, count(server)) == ("cached", 0)
    assert CandleStore(store.root).read("MSFT").equals(store.read("MSFT"))  # a second open migrates nothing


def test_migration_refuses_what_would_mix_scales_or_break_the_declaration(tmp_path: Path) -> None:
    data_dir = tmp_path / "old"
    window = sessions_back(END, 10)
    older = sessions_back(window[0], 3)[:2]
    msft = symbol_bars(MSFT, "MSFT", window)
    msft.loc[4, "high"] = msft.loc[4, "low"] * 0.5  # the cache kept an impossible bar Yahoo served
    # NVDA's cache was re-based (4:1) but the run crashed before the lake was: its rows are old-scale.
    nvda_old = symbol_bars(NVDA, "NVDA", [*older, *window]).assign(
        **{c: lambda f, c=c: f[c] * 4 for c in ("open", "high", "low", "close", "adj_close")})
    legacy_dir(
        data_dir, {"MSFT": msft, "NVDA": symbol_bars(NVDA, "NVDA", window)}, nvda_old,
        {"NVDA": sidecar("NVDA", lake_rebase_pending=True)},
    )
    store = CandleStore(Lake(data_dir).candles_dir)
    assert window[4] not in store.sessions_present("MSFT") and len(store.read("MSFT")) == 9
    assert store.read("NVDA")["session_date"].tolist() == window  # the cache's scale, nothing older
    quarantined = pq.read_table(data_dir / "quarantine" / "candles" / "migration" / "part-0.parquet").to_pandas()
    reasons = dict(zip(zip(quarantined["symbol"], quarantined["session_date"]), quarantined["quarantine_reason"]))
    assert "high_covers_open_close" in reasons[("MSFT", str(window[4]))]
    for day in older:  # kept for inspection, never in a history on another scale
        assert "waited for a re-base" in reasons[("NVDA", str(day))]
    assert len(quarantined) == 1 + len(older)
