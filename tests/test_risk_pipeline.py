"""Position risk end to end: real Dagster runs on the simulator, every number re-derived.

One clean run of the current session (2025-11-25, clock 22:00Z) is checked against independent
computations: vollib re-prices every model row, numpy re-interpolates the IV term structure,
pandas re-sums ``portfolio_risk`` and numpy recomputes ``expected_move``. The clean run's book is
the simulator's plus an AM-settled SPX monthly put and a PM SPXW put on the same date (the SPX term
structure lists that date AM and PM with different IVs), and AAPL's term structure lists a
Non-standard chain beside the Standard one on the date of the book's AAPL call: each position
must take its own settlement's Standard IV, and every table the same IV per expiration.
A second run on a private simulator with faults (no risk-free rate, one symbol's term structure
without IVs) shows the options unpriced with a reason, nothing NaN landed and the run still
succeeding.

The IV rule the references here implement by hand (README, transforms/term_structure.py):
Standard chain only; a position takes the row of its own date and settlement (AM when its
expires_at is before noon New York); a date's node is its PM row, else its AM row; T runs from
the session close to 16:00 (PM) or 09:30 (AM) New York; linear in total variance between nodes,
flat outside.
"""

from __future__ import annotations

from datetime import date, datetime, time, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pytest
import vollib.black as v_black
import vollib.black.greeks.analytical as v_black_greeks
import vollib.black_scholes_merton as v_bsm
import vollib.black_scholes_merton.greeks.analytical as v_bsm_greeks

from support import CLOCK, EXTRACT, materialize, pipeline_settings
from variance_pipeline.simulator import SimulatorServer
from variance_pipeline.simulator.faults import FaultRule
from variance_pipeline.simulator.portfolio import EXTRA_ACCOUNT, Template

pytestmark = pytest.mark.slow

SESSION = date(2025, 11, 25)
PARTITION = SESSION.isoformat()
NEW_YORK = ZoneInfo("America/New_York")
# NYSE closes at 16:00 New York; 2025-11-25 is a regular session (EST, UTC-5).
SESSION_CLOSE = datetime.combine(SESSION, time(16, 0), NEW_YORK)
YEAR_SECONDS = 365.0 * 86400.0
GREEK_COLUMNS = ("price", "delta", "gamma", "theta", "vega")
POSITION_COLUMNS = ("position_delta", "position_gamma", "position_theta", "position_vega")
FAULTED_SYMBOL = "AAPL"  # held as stock and as an option
# position_greeks, its inputs and the warehouse (realized_volatility and earnings_reports feed none of it).
RISK = [*EXTRACT, "candles", "risk_free_rate", "position_greeks", "warehouse"]
# Beside the fixed book: the December SPX monthly (AM-settled, expires-at 09:30 New York) and the
# SPXW (PM) of the same date.
SPX_HOLDINGS = (
    Template(EXTRA_ACCOUNT, "SPX", -1, 5, "P", 0.95, 1),
    Template(EXTRA_ACCOUNT, "SPX", 1, 5, "P", 0.90, 1, series="SPXW"),
    Template(EXTRA_ACCOUNT, "AAPL", -1, 5, "C", 1.10, 2),  # on the second monthly: the Non-standard chain's date
)
SPX_EXPIRATION = date(2025, 12, 19)
NON_STANDARD = ("AAPL", date(2026, 1, 16))  # the simulator's Non-standard chain, beside the AAPL call above


class Run:
    def __init__(self, data_dir: Path, result: dg.ExecuteInProcessResult) -> None:
        self.data_dir = data_dir
        self.result = result

    def sql(self, query: str) -> pd.DataFrame:
        con = duckdb.connect(str(self.data_dir / "warehouse.duckdb"), read_only=True)
        try:
            return con.execute(query).df()
        finally:
            con.close()

    def checks(self) -> dict[str, dg.AssetCheckEvaluation]:
        return {e.check_name: e for e in self.result.get_asset_check_evaluations()}

    def materialization_metadata(self, asset: str) -> dict:
        events = [
            e for e in self.result.get_asset_materialization_events()
            if e.asset_key == dg.AssetKey(asset)
        ]
        assert len(events) == 1, asset
        return events[0].event_specific_data.materialization.metadata


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> Run:
    data_dir = tmp_path_factory.mktemp("risk")
    with SimulatorServer(port=0, now=CLOCK, holdings=SPX_HOLDINGS) as server:
        result = materialize(pipeline_settings(data_dir, server.url), partition_key=PARTITION, select=RISK)
    assert result.success
    return Run(data_dir, result)


@pytest.fixture(scope="module")
def faulted(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """No risk-free rate (500 every time) and AAPL's term structure without any IV."""
    rules = [
        FaultRule.from_json({"endpoint": "risk-free-rate", "kind": "500", "count": 99}),
        FaultRule.from_json(
            {"endpoint": "market-metrics", "symbol": FAULTED_SYMBOL, "kind": "missing_field", "field": "implied-volatility"}
        ),
    ]
    data_dir = tmp_path_factory.mktemp("risk_faulted")
    with SimulatorServer(port=0, now=CLOCK, faults=rules) as server:
        result = materialize(pipeline_settings(data_dir, server.url), partition_key=PARTITION, raise_on_error=False,
                             select=RISK)
    return Run(data_dir, result)


def _greeks(clean: Run) -> pd.DataFrame:
    frame = clean.sql("SELECT * FROM position_greeks WHERE as_of_date = DATE '2025-11-25'")
    assert len(frame) > 0
    return frame


def _close(value: float, expected: float, what: str) -> None:
    assert np.isfinite(value), what
    assert abs(value - expected) <= max(1e-8 * abs(expected), 1e-10), f"{what}: {value!r} != {expected!r}"


def _spy_close(clean: Run) -> float:
    return float(clean.sql("SELECT close FROM candles WHERE symbol = 'SPY' AND session_date = DATE '2025-11-25'")["close"].iloc[0])


# 1. vollib re-prices every model row ----------------------------------------------------------


def test_every_model_row_matches_vollib(clean: Run) -> None:
    greeks = _greeks(clean)
    options = greeks[greeks["model"].notna()]
    assert set(options["model"]) == {"black_scholes_merton", "black_76"}
    for row in options.itertuples():
        flag = "c" if row.option_type == "C" else "p"
        S, K, T, r, sigma = (row.underlying_price, row.strike, row.years_to_expiration, row.risk_free_rate, row.implied_volatility)
        if row.model == "black_scholes_merton":
            q = row.dividend_yield
            assert np.isfinite(q)
            expected = {
                "price": v_bsm.black_scholes_merton(flag, S, K, T, r, sigma, q),
                "delta": v_bsm_greeks.delta(flag, S, K, T, r, sigma, q),
                "gamma": v_bsm_greeks.gamma(flag, S, K, T, r, sigma, q),
                "theta": v_bsm_greeks.theta(flag, S, K, T, r, sigma, q),
                "vega": v_bsm_greeks.vega(flag, S, K, T, r, sigma, q),
            }
        else:
            assert row.instrument_type == "Future Option"
            assert pd.isna(row.dividend_yield)
            expected = {
                "price": v_black.black(flag, S, K, T, r, sigma),
                "delta": v_black_greeks.delta(flag, S, K, T, r, sigma),
                "gamma": v_black_greeks.gamma(flag, S, K, T, r, sigma),
                "theta": v_black_greeks.theta(flag, S, K, T, r, sigma),
                "vega": v_black_greeks.vega(flag, S, K, T, r, sigma),
            }
        size = row.quantity * row.multiplier
        for name, value in expected.items():
            _close(getattr(row, name), value, f"{row.symbol} {name}")
            if name != "price":
                _close(getattr(row, f"position_{name}"), value * size, f"{row.symbol} position_{name}")


def test_position_greeks_and_beta_weighting(clean: Run) -> None:
    greeks = _greeks(clean)
    spy = _spy_close(clean)
    for row in greeks.itertuples():
        size = row.quantity * row.multiplier
        for name in ("delta", "gamma", "theta", "vega"):
            _close(getattr(row, f"position_{name}"), getattr(row, name) * size, f"{row.symbol} position_{name}")
        if row.model is None or pd.isna(row.model):  # delta-one rows
            assert (row.delta, row.gamma, row.theta, row.vega) == (1.0, 0.0, 0.0, 0.0), row.symbol
            assert row.price == row.underlying_price
        assert np.isfinite(row.beta), row.symbol
        _close(row.beta_weighted_delta, row.position_delta * row.beta * row.underlying_price / spy, f"{row.symbol} bwd")


# 2. IV from the same evening's term structure --------------------------------------------------


def _node_years(expiration: date, settlement: str | None) -> float:
    at = time(9, 30) if isinstance(settlement, str) and settlement.strip().upper() == "AM" else time(16, 0)
    # In UTC: two datetimes with one tzinfo subtract as wall clocks, which would ignore DST.
    settles = datetime.combine(expiration, at, NEW_YORK).astimezone(timezone.utc)
    return (settles - SESSION_CLOSE.astimezone(timezone.utc)).total_seconds() / YEAR_SECONDS


def _standard(term: pd.DataFrame) -> pd.DataFrame:
    """The usable rows of the landed term structure: Standard chain, positive IV, not yet expired."""
    rows = term[(term["option_chain_type"] == "Standard") & (term["implied_volatility"] > 0)].copy()
    rows["expiration_date"] = pd.to_datetime(rows["expiration_date"]).dt.date
    return rows[rows["expiration_date"] > SESSION]


def _nodes(term: pd.DataFrame, root: str) -> pd.DataFrame:
    """One row per expiration date of ``root``: its PM row, else its AM row; with T by hand."""
    rows = _standard(term)
    rows = rows[rows["symbol"] == root]
    picked = []
    for expiration, same_day in rows.groupby("expiration_date"):
        by = dict(zip(same_day["settlement_type"], same_day["implied_volatility"]))
        settlement = "PM" if "PM" in by else "AM"
        picked.append((expiration, settlement, float(by[settlement]), _node_years(expiration, settlement)))
    return pd.DataFrame(picked, columns=["expiration_date", "settlement_type", "iv", "t"]).sort_values("t")


def _expected_iv(term: pd.DataFrame, root: str, expiration: date, settlement: str, years: float) -> tuple[float, str]:
    rows = _standard(term)
    own = rows[(rows["symbol"] == root) & (rows["expiration_date"] == expiration) & (rows["settlement_type"] == settlement)]
    if len(own):
        assert len(own) == 1, (root, expiration, settlement)
        return float(own["implied_volatility"].iloc[0]), "exact"
    nodes = _nodes(term, root)
    assert len(nodes), root
    t, iv = nodes["t"].to_numpy(), nodes["iv"].to_numpy()
    if years <= t[0]:
        return float(iv[0]), "extrapolated"
    if years >= t[-1]:
        return float(iv[-1]), "extrapolated"
    hi = int(np.searchsorted(t, years))
    lo = hi - 1
    w1, w2 = iv[lo] ** 2 * t[lo], iv[hi] ** 2 * t[hi]
    w = w1 + (w2 - w1) * (years - t[lo]) / (t[hi] - t[lo])
    return float(np.sqrt(w / years)), "interpolated"


def test_iv_is_the_same_evenings_term_structure(clean: Run) -> None:
    greeks = _greeks(clean)
    term = clean.sql("SELECT * FROM iv_term_structure WHERE as_of_date = DATE '2025-11-25'")
    term["expiration_date"] = pd.to_datetime(term["expiration_date"]).dt.date
    positions = clean.sql("SELECT account_number, symbol, expires_at FROM positions WHERE as_of_date = DATE '2025-11-25'")
    expires = {(a, s): e for a, s, e in positions.itertuples(index=False)}
    options = greeks[greeks["model"].notna()]
    sources = set()
    for row in options.itertuples():
        expires_at = pd.Timestamp(expires[(row.account_number, row.symbol)]).tz_convert("UTC")
        years = (expires_at - pd.Timestamp(SESSION_CLOSE).tz_convert("UTC")).total_seconds() / YEAR_SECONDS
        _close(row.years_to_expiration, years, f"{row.symbol} years_to_expiration")
        expiration = pd.Timestamp(row.expiration_date).date()
        assert row.days_to_expiration == (expiration - SESSION).days
        settlement = "AM" if expires_at.tz_convert(NEW_YORK).hour < 12 else "PM"
        iv, source = _expected_iv(term, row.root_symbol, expiration, settlement, years)
        # The term structure's IV is kept beside the one priced with (the mark's, where it solves).
        if source == "exact":
            assert row.term_structure_iv == iv, row.symbol
        else:
            _close(row.term_structure_iv, iv, f"{row.symbol} term_structure_iv")
        if row.iv_source != "mark":
            assert row.iv_source == source and row.implied_volatility == row.term_structure_iv, row.symbol
        sources.add(source)
    assert {"exact", "interpolated"} <= sources  # the simulator's book exercises both paths


# 3. The inputs are that evening's ---------------------------------------------------------------


def test_rate_and_underlying_price_are_the_sessions(clean: Run) -> None:
    greeks = _greeks(clean)
    rate = clean.sql("SELECT risk_free_rate FROM risk_free_rate WHERE as_of_date = DATE '2025-11-25'")
    assert len(rate) == 1
    assert (greeks["risk_free_rate"] == float(rate["risk_free_rate"].iloc[0])).all()
    closes = clean.sql("SELECT symbol, close FROM candles WHERE session_date = DATE '2025-11-25'").set_index("symbol")["close"]
    for row in greeks.itertuples():
        own = row.underlying_symbol if row.instrument_type in ("Equity Option", "Future Option") else row.symbol
        if own in closes.index:
            assert row.underlying_price_source == "close", row.symbol
            assert row.underlying_price == closes[own], row.symbol
        else:
            assert row.instrument_type in ("Future", "Future Option"), row.symbol
            assert row.underlying_price_source == "root_continuous", row.symbol
            assert row.underlying_price == closes[row.root_symbol], row.symbol
    future_options = greeks[greeks["instrument_type"] == "Future Option"]
    assert {"/ZN", "/MES"} <= set(future_options["root_symbol"])  # the book's /ZN put and /MES strangle
    # Each priced on its own dated contract (issue 19, defect 2), which trades off the continuous.
    assert (future_options["underlying_price_source"] == "close").all()
    for row in future_options.itertuples():
        assert row.underlying_price == closes[row.underlying_symbol] != closes[row.root_symbol], row.symbol


# 4. Every option accounted for; the checks ran and passed ---------------------------------------


def test_every_option_position_is_priced_or_listed(clean: Run) -> None:
    greeks = _greeks(clean)
    positions = clean.sql("SELECT account_number, symbol, instrument_type FROM positions WHERE as_of_date = DATE '2025-11-25'")
    priced = set(zip(greeks["account_number"], greeks["symbol"]))
    unpriced_md = clean.materialization_metadata("position_greeks")["unpriced"].md_str
    options = positions[positions["instrument_type"].isin(["Equity Option", "Future Option"])]
    assert len(options) >= 4
    for account, symbol in zip(options["account_number"], options["symbol"]):
        assert (account, symbol) in priced or symbol in unpriced_md, symbol
    checks = clean.checks()
    for name in ("position_greeks_schema", "options_priced_or_explained", "put_call_parity", "risk_free_rate_schema"):
        assert name in checks, name
        assert checks[name].passed, name
    assert checks["options_priced_or_explained"].metadata["every_position_accounted_for"].value is True


# 5. portfolio_risk = pandas sums ----------------------------------------------------------------


def test_portfolio_risk_equals_pandas_sums(clean: Run) -> None:
    greeks = _greeks(clean)
    risk = clean.sql("SELECT * FROM portfolio_risk")
    sums = ["position_delta", "position_gamma", "position_theta", "position_vega", "beta_weighted_delta"]
    per_account = greeks.groupby(["account_number", "root_symbol"])[sums].sum().reset_index()
    everyone = greeks.groupby("root_symbol")[sums].sum().reset_index().assign(account_number="ALL")
    expected = pd.concat([per_account, everyone]).rename(columns={"root_symbol": "underlying_symbol"})
    merged = expected.merge(risk, on=["account_number", "underlying_symbol"], how="outer", suffixes=("_pd", "_sql"), indicator=True)
    assert (merged["_merge"] == "both").all(), merged[merged["_merge"] != "both"]
    assert not risk.duplicated(["account_number", "underlying_symbol"]).any()
    for column in sums:
        np.testing.assert_allclose(merged[f"{column}_sql"], merged[f"{column}_pd"], rtol=1e-10, atol=1e-9, err_msg=column)
    for account, rows in risk.groupby("account_number"):
        assert rows["share_of_account_bwd"].sum() == pytest.approx(1.0, abs=1e-12), account
        gross = rows["beta_weighted_delta"].abs()
        np.testing.assert_allclose(rows["share_of_account_bwd"], gross / gross.sum(), rtol=1e-12)


# 6. expected_move = numpy on the latest term structure and close --------------------------------


def test_expected_move_equals_numpy(clean: Run) -> None:
    moves = clean.sql("SELECT * FROM expected_move")
    term = clean.sql(
        "SELECT * FROM iv_term_structure WHERE as_of_date = (SELECT max(as_of_date) FROM iv_term_structure)"
    )
    closes = clean.sql("SELECT symbol, close FROM candles WHERE session_date = DATE '2025-11-25'").set_index("symbol")["close"]
    metrics = clean.sql("SELECT symbol, earnings_date FROM market_metrics WHERE as_of_date = DATE '2025-11-25'").set_index("symbol")
    times = clean.sql("SELECT symbol, time_of_day FROM earnings_calendar WHERE as_of_date = DATE '2025-11-25'")
    times = times.set_index("symbol")["time_of_day"]
    standard = _standard(term)
    assert len(moves) == standard.groupby(["symbol", "expiration_date"]).ngroups > 0
    assert not moves.duplicated(["symbol", "expiration_date"]).any()
    nodes = {symbol: _nodes(term, symbol).set_index("expiration_date") for symbol in set(standard["symbol"])}
    for row in moves.itertuples():
        expiration = pd.Timestamp(row.expiration_date).date()
        node = nodes[row.symbol].loc[expiration]
        iv, years = float(node["iv"]), float(node["t"])
        price = float(closes[row.symbol])
        days = (expiration - SESSION).days
        move = price * iv * np.sqrt(years)
        assert row.days_to_expiration == days and row.settlement_type == node["settlement_type"]
        _close(row.years_to_expiration, years, f"{row.symbol} years")
        _close(row.underlying_price, price, f"{row.symbol} price")
        _close(row.implied_volatility, iv, f"{row.symbol} iv")
        _close(row.expected_move, move, f"{row.symbol} {row.expiration_date} move")
        _close(row.lower, price - move, f"{row.symbol} lower")
        _close(row.upper, price + move, f"{row.symbol} upper")
        earnings = metrics["earnings_date"].get(row.symbol)
        # The straddle rule: the report after the snapshot (on its day unless before the open) and
        # before the expiration settles (on its day unless after the close).
        when = times.get(row.symbol)
        day = None if earnings is None or pd.isna(earnings) else pd.Timestamp(earnings).date()
        before = day is not None and (SESSION < day if when == "BMO" else SESSION <= day) and (
            day < expiration if when == "AMC" else day <= expiration)
        assert bool(row.earnings_before_expiration) == before, (row.symbol, row.expiration_date)
    assert moves["earnings_before_expiration"].any() and not moves["earnings_before_expiration"].all()


# 7. One IV per expiration: its own settlement, the Standard chain only, the same in every table ------


def _landed_term(clean: Run) -> pd.DataFrame:
    return clean.sql("SELECT * FROM iv_term_structure WHERE as_of_date = DATE '2025-11-25'")


def test_am_settled_spx_monthly_and_the_spxw_take_their_own_ivs(clean: Run) -> None:
    term = _standard(_landed_term(clean))
    spx = term[(term["symbol"] == "SPX") & (term["expiration_date"] == SPX_EXPIRATION)]
    ivs = spx.set_index("settlement_type")["implied_volatility"]
    assert set(ivs.index) == {"AM", "PM"} and ivs["AM"] != ivs["PM"]  # the date is listed AM and PM
    greeks = _greeks(clean)
    rows = greeks[greeks["root_symbol"] == "SPX"]
    am = rows[rows["symbol"].str.startswith("SPX ")]
    pm = rows[rows["symbol"].str.startswith("SPXW")]
    assert len(am) == 1 and len(pm) == 1
    for row, settlement in ((am.iloc[0], "AM"), (pm.iloc[0], "PM")):
        assert pd.Timestamp(row["expiration_date"]).date() == SPX_EXPIRATION
        assert row["iv_source"] in ("mark", "exact") and row["term_structure_iv"] == ivs[settlement], settlement
        _close(row["years_to_expiration"], _node_years(SPX_EXPIRATION, settlement), settlement)
    # The expected move of the date uses its node, the PM row.
    move = clean.sql("SELECT * FROM expected_move WHERE symbol = 'SPX' AND expiration_date = DATE '2025-12-19'")
    assert move["implied_volatility"].iloc[0] == ivs["PM"] and move["settlement_type"].iloc[0] == "PM"


def test_a_non_standard_chain_lands_beside_the_standard_and_is_never_an_iv(clean: Run) -> None:
    symbol, expiration = NON_STANDARD
    landed = _landed_term(clean)
    both = landed[(landed["symbol"] == symbol) & (pd.to_datetime(landed["expiration_date"]).dt.date == expiration)]
    by_chain = both.set_index("option_chain_type")["implied_volatility"]
    assert set(both["settlement_type"]) == {"PM"} and set(by_chain.index) == {"Standard", "Non-standard"}
    assert by_chain["Standard"] != by_chain["Non-standard"]
    assert clean.checks()["iv_term_structure_schema"].passed  # nothing quarantined
    greeks = _greeks(clean)
    on_date = pd.to_datetime(greeks["expiration_date"]).dt.date == expiration
    call = greeks[(greeks["root_symbol"] == symbol) & on_date & greeks["model"].notna()]
    assert len(call) == 1
    assert call["iv_source"].iloc[0] in ("mark", "exact") and call["term_structure_iv"].iloc[0] == by_chain["Standard"]
    node = clean.sql(f"SELECT * FROM iv_term_structure_by_expiration WHERE symbol = '{symbol}' "
                     f"AND expiration_date = DATE '{expiration}'")
    move = clean.sql(f"SELECT * FROM expected_move WHERE symbol = '{symbol}' AND expiration_date = DATE '{expiration}'")
    assert node["implied_volatility"].iloc[0] == by_chain["Standard"] == move["implied_volatility"].iloc[0]


def test_every_table_reads_the_same_iv_of_an_expiration(clean: Run) -> None:
    """The stored nodes and constant maturities equal numpy over the by-hand nodes, the ones the
    position Greeks were checked against above: one IV per (symbol, expiration) in the warehouse."""
    term = _landed_term(clean)
    stored = clean.sql("SELECT * FROM iv_term_structure_by_expiration WHERE as_of_date = DATE '2025-11-25'")
    curves = clean.sql("SELECT * FROM iv_constant_maturity WHERE as_of_date = DATE '2025-11-25'").set_index("symbol")
    symbols = set(_standard(term)["symbol"])
    assert set(stored["symbol"]) == symbols and symbols <= set(curves.index)
    bracketed = 0
    for symbol in sorted(symbols):
        nodes = _nodes(term, symbol)
        mine = stored[stored["symbol"] == symbol].sort_values("years_to_expiration")
        assert [pd.Timestamp(d).date() for d in mine["expiration_date"]] == list(nodes["expiration_date"])
        assert list(mine["settlement_type"]) == list(nodes["settlement_type"])
        assert list(mine["implied_volatility"]) == list(nodes["iv"])
        np.testing.assert_allclose(mine["years_to_expiration"], nodes["t"], rtol=1e-12)
        t, iv = nodes["t"].to_numpy(), nodes["iv"].to_numpy()
        row = curves.loc[symbol]
        for days in (30, 60, 90):
            target = days / 365.0
            if not t[0] <= target <= t[-1]:
                assert pd.isna(row[f"iv{days}"]), (symbol, days)  # never extrapolated
                continue
            w = np.interp(target, t, iv * iv * t)
            _close(row[f"iv{days}"], float(np.sqrt(w / target)), f"{symbol} iv{days}")
            bracketed += 1
        assert row["front_iv"] == iv[0] and row["expirations_used"] == len(nodes)
    assert bracketed > len(symbols)


# 8. Faults through a real run --------------------------------------------------------------------


def test_faults_leave_options_unpriced_with_reasons_and_no_nan(faulted: Run) -> None:
    assert faulted.result.success
    checks = faulted.checks()
    rate_check = checks["risk_free_rate_schema"]
    assert not rate_check.passed
    assert "until" in (rate_check.description or "") and "re-running" in rate_check.description
    assert faulted.sql("SELECT count(*) AS n FROM risk_free_rate")["n"].iloc[0] == 0

    greeks = faulted.sql("SELECT * FROM position_greeks")
    positions = faulted.sql("SELECT account_number, symbol, instrument_type, root_symbol FROM positions")
    assert len(greeks) > 0 and greeks["model"].isna().all(), "no option can be priced without a rate"
    numeric = greeks.select_dtypes("number").drop(columns=["strike", "years_to_expiration", "implied_volatility",
                                                           "risk_free_rate", "dividend_yield", "days_to_expiration",
                                                           "term_structure_iv"])
    assert not numeric.isna().any().any(), numeric.columns[numeric.isna().any()].tolist()

    metadata = faulted.materialization_metadata("position_greeks")
    unpriced_md = metadata["unpriced"].md_str
    lines = {line.split("|")[2].strip(): line for line in unpriced_md.splitlines()[2:]}
    options = positions[positions["instrument_type"].isin(["Equity Option", "Future Option"])]
    assert metadata["positions_unpriced"].value == len(options)
    # The first missing input is named: the rate, for every option (the IV solved from a mark needs
    # it too); AAPL's missing IV shows below, as its absence from expected_move.
    for symbol in options["symbol"]:
        line = lines[symbol.strip()] if symbol.strip() in lines else next(v for k, v in lines.items() if k in symbol)
        assert "no risk_free_rate for 2025-11-25" in line, line
    check = checks["options_priced_or_explained"]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert check.metadata["every_position_accounted_for"].value is True
    assert checks["position_greeks_schema"].passed and checks["put_call_parity"].passed

    moves = faulted.sql("SELECT * FROM expected_move")
    assert FAULTED_SYMBOL not in set(moves["symbol"])
    assert not moves[["underlying_price", "implied_volatility", "expected_move"]].isna().any().any()
