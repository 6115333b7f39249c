"""Issue 19's account on consecutive evenings: futures candles every evening, each option on its own contract.

A simulated account holds what premium sellers hold: the engine's /ES future, /ZN put and /MES
strangle (future options on their own dated futures, ``./MESM6EX3H6``-style symbols), plus VIX calls
and an AM-settled SPX monthly put (``SimulatorServer(holdings=...)``). The pipeline runs four
evenings one after another, the clock at 17:30 New York each time (after the 17:00 Globex halt,
before the 18:00 reopen), as the schedule runs it.

Each evening every futures symbol (the continuous roots and the held dated contracts) has that
session's candle, which the old live-bar rule dropped (Yahoo's period for a future is the whole
calendar day); every future and future option is priced on its own contract's close; the SPX
monthly on its AM row; VIX options with Black-76 on the VX future of their expiration, at
Tastytrade's mark of it (asked for with the option quotes: the future has no Yahoo ticker). A futures bar taken at 17:30 grows after the reopen: the next evening's run
stores the bar as Yahoo serves it once the day is over.
"""

from __future__ import annotations

from datetime import date, datetime, time
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import duckdb
import httpx
import pandas as pd
import pytest

from support import EXTRACT, GRANT, UA, materialize, pipeline_settings
from variance_pipeline.simulator import SimulatorServer
from variance_pipeline.simulator.portfolio import EXTRA_ACCOUNT, Template

pytestmark = pytest.mark.slow

NEW_YORK = ZoneInfo("America/New_York")
EVENINGS = (date(2025, 11, 19), date(2025, 11, 20), date(2025, 11, 21), date(2025, 11, 24))  # a weekend inside
HOLDINGS = (
    Template(EXTRA_ACCOUNT, "SPX", -1, 5, "P", 0.95, 1),  # the December monthly: AM-settled
    Template(EXTRA_ACCOUNT, "VIX", -2, 5, "C", 1.3, 1),
)
SELECT = [*EXTRACT, "candles", "risk_free_rate", "option_quotes", "position_greeks", "warehouse"]


def _vx_marks(url: str, futures: list[str]) -> dict[str, float]:
    """The simulator's VX futures marks, as ``/market-data/by-type`` serves them now."""
    with httpx.Client(base_url=url, headers=UA, timeout=60) as client:
        token = client.post("/oauth/token", json=GRANT).json()["access_token"]
        body = client.get("/market-data/by-type", params={"future": ",".join(futures)},
                          headers={"Authorization": f"Bearer {token}"}).json()
    return {item["symbol"]: float(item["mark"]) for item in body["data"]["items"]}


def _at_evening(day: date) -> datetime:
    return datetime.combine(day, time(17, 30), NEW_YORK)


def _sql(data_dir: Path, query: str) -> pd.DataFrame:
    con = duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True)
    try:
        return con.execute(query).df()
    finally:
        con.close()


def _metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict:
    (event,) = [e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == asset]
    return event.materialization.metadata


def _yahoo_close(url: str, ticker: str, day: date) -> float:
    start = int(datetime.combine(day, time(), NEW_YORK).timestamp())
    body = httpx.get(f"{url}/v8/finance/chart/{ticker}", params={"period1": start, "period2": start + 86400, "interval": "1d"})
    return float(body.json()["chart"]["result"][0]["indicators"]["quote"][0]["close"][-1])


@pytest.fixture(scope="module")
def evenings(tmp_path_factory: pytest.TempPathFactory) -> dict:
    data_dir = tmp_path_factory.mktemp("futures-evenings") / "data"
    found: dict = {"data_dir": data_dir, "runs": {}, "final": {}}
    with SimulatorServer(port=0, now=_at_evening(EVENINGS[0]), holdings=HOLDINGS) as sim:
        for day in EVENINGS:
            sim.now = _at_evening(day)
            settings = pipeline_settings(data_dir, sim.url, now=sim.now, watchlist="SPY,/ES")
            result = materialize(settings, partition_key=day.isoformat(), select=SELECT)
            assert result.success, day
            found["runs"][day] = result
            # That evening's closes, as it priced with them (the next evening re-checks futures bars).
            closes = _sql(data_dir, f"SELECT symbol, close FROM candles WHERE session_date = DATE '{day}'")
            found.setdefault("closes", {})[day] = closes.set_index("symbol")["close"]
            # The VX futures the evening's VIX options settle to, as the simulator quotes them.
            futures = [f"/VX{m}{y}" for y in (5, 6) for m in "FGHJKMNQUVXZ"]
            found.setdefault("vx", {})[day] = _vx_marks(sim.url, futures)
        # What Yahoo serves for each evening's bar once its calendar day is over (the evening's trades in).
        sim.now = _at_evening(EVENINGS[-1])
        for day in EVENINGS[:-1]:
            found["final"][day] = _yahoo_close(sim.url, "ES=F", day)
        found["at_halt"] = {}
        for day in EVENINGS[:-1]:
            sim.now = _at_evening(day)
            found["at_halt"][day] = _yahoo_close(sim.url, "ES=F", day)
    return found


def test_futures_have_a_candle_on_every_evening(evenings: dict) -> None:
    data_dir = evenings["data_dir"]
    for day in EVENINGS:
        positions = _sql(data_dir, f"SELECT symbol, instrument_type, underlying_symbol, root_symbol FROM positions "
                                   f"WHERE as_of_date = DATE '{day}'")
        futures = positions[positions["instrument_type"].isin(["Future", "Future Option"])]
        contracts = set(futures.loc[futures["instrument_type"] == "Future", "symbol"])
        contracts |= set(futures.loc[futures["instrument_type"] == "Future Option", "underlying_symbol"])
        roots = set(futures["root_symbol"])
        assert {"/ES", "/MES", "/ZN"} <= roots, roots
        candles = set(_sql(data_dir, f"SELECT symbol FROM candles WHERE session_date = DATE '{day}'")["symbol"])
        missing = (roots | contracts) - candles
        assert not missing, f"{day}: no candle for {sorted(missing)}"


def test_a_futures_bar_taken_at_the_halt_is_stored_as_final_once_its_day_is_over(evenings: dict) -> None:
    data_dir = evenings["data_dir"]
    stored = _sql(data_dir, "SELECT session_date, close FROM candles WHERE symbol = '/ES'")
    stored = dict(zip(pd.to_datetime(stored["session_date"]).dt.date, stored["close"]))
    moved = 0
    for day in EVENINGS[:-1]:
        assert stored[day] == evenings["final"][day], day
        moved += evenings["final"][day] != evenings["at_halt"][day]
    assert moved, "the evening's trades move some day's close (else this test shows nothing)"


def test_every_future_and_option_is_priced_on_its_own_contract_or_listed(evenings: dict) -> None:
    data_dir = evenings["data_dir"]
    for day in EVENINGS:
        greeks = _sql(data_dir, f"SELECT * FROM position_greeks WHERE as_of_date = DATE '{day}'")
        closes = evenings["closes"][day]
        futures = greeks[greeks["instrument_type"].isin(["Future", "Future Option"])]
        assert {"/ES", "/MES", "/ZN"} <= set(futures["root_symbol"])
        for row in futures.itertuples():
            own = row.symbol if row.instrument_type == "Future" else row.underlying_symbol
            assert own != row.root_symbol and row.underlying_price_source == "close", row.symbol
            assert row.underlying_price == closes[own], row.symbol
        options = futures[futures["instrument_type"] == "Future Option"]
        assert (options["model"] == "black_76").all() and len(options) >= 3
        # The SPX monthly: its own (AM) settlement's row of the term structure.
        spx = greeks[(greeks["root_symbol"] == "SPX") & (greeks["account_number"] == EXTRA_ACCOUNT)]
        assert len(spx) == 1 and spx["underlying_price"].iloc[0] == closes["SPX"]
        expiration = pd.Timestamp(spx["expiration_date"].iloc[0]).date()
        am = _sql(data_dir, f"SELECT implied_volatility FROM iv_term_structure WHERE as_of_date = DATE '{day}' "
                            f"AND symbol = 'SPX' AND expiration_date = DATE '{expiration}' AND settlement_type = 'AM' "
                            "AND option_chain_type = 'Standard'")
        assert len(am) == 1 and spx["term_structure_iv"].iloc[0] == am["implied_volatility"].iloc[0]
        # VIX options: never on spot ^VIX; Black-76 on the VX future of their expiration, at the
        # broker's mark of it (no candle: Yahoo has no dated VX ticker).
        vix = greeks[greeks["root_symbol"] == "VIX"]
        assert len(vix) == 1, _metadata(evenings["runs"][day], "position_greeks")["unpriced"].md_str
        expiration = pd.Timestamp(vix["expiration_date"].iloc[0]).date()
        future = f"/VX{'FGHJKMNQUVXZ'[expiration.month - 1]}{expiration.year % 10}"
        assert vix["model"].iloc[0] == "black_76" and vix["underlying_price_source"].iloc[0] == "quote_mark"
        assert vix["underlying_price"].iloc[0] == evenings["vx"][day][future], (future, evenings["vx"][day])
        assert vix["underlying_price"].iloc[0] != closes.get("VIX")
        quoted = _sql(data_dir, f"SELECT instrument_type, mark FROM option_quotes WHERE as_of_date = DATE '{day}' "
                                f"AND symbol = '{future}'")
        assert quoted.to_dict("records") == [{"instrument_type": "Future", "mark": evenings["vx"][day][future]}]
        unpriced = _metadata(evenings["runs"][day], "position_greeks")["unpriced"].md_str
        assert "VIX" not in unpriced, unpriced
        assert _metadata(evenings["runs"][day], "position_greeks")["priced_on_root_continuous"].value == "none"
