"""Realised volatility against independent numpy references.

The references below re-derive every estimator from its textbook formula with numpy, one window
at a time, on the full XNYS session grid with NaN where a bar is missing (so a window that spans
a gap is NaN by plain NaN propagation). They never call the code under test, so an error in the
implementation cannot hide in a shared helper (tests/test_volatility_reference.py has a vectorised
reference for whole universes with gaps).
"""

from __future__ import annotations

import json
import math
from datetime import date, datetime
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from variance_pipeline.calendar import sessions_in_range
from variance_pipeline.schemas.realized_volatility import REALIZED_VOLATILITY
from variance_pipeline.transforms.volatility import OUTPUT_COLUMNS, compute_realized_volatility

from support import RECORDED as RECORDED_ROOT  # noqa: E402

RECORDED = RECORDED_ROOT / "yahoo"
N = 252
HV_WINDOWS = (20, 30, 90, 252)
RANGE_N = 20
VOLS = ["hv20", "hv30", "hv90", "hv252", "parkinson20", "garman_klass20", "rogers_satchell20", "yang_zhang20"]
TOL = 1e-9


# --- independent references ---------------------------------------------------------------


def _hv(close: np.ndarray, t: int, n: int) -> float:
    if t < n:
        return math.nan
    returns = np.diff(np.log(close[: t + 1]))[-n:]
    return float(np.sqrt(N) * np.std(returns, ddof=1))


def _parkinson(h: np.ndarray, l: np.ndarray, t: int, n: int = RANGE_N) -> float:
    if t < n - 1:
        return math.nan
    w = slice(t - n + 1, t + 1)
    return float(np.sqrt(N / (4 * n * np.log(2)) * np.sum(np.log(h[w] / l[w]) ** 2)))


def _gk_var(o: np.ndarray, h: np.ndarray, l: np.ndarray, c: np.ndarray, t: int, n: int = RANGE_N) -> float:
    w = slice(t - n + 1, t + 1)
    terms = 0.5 * np.log(h[w] / l[w]) ** 2 - (2 * np.log(2) - 1) * np.log(c[w] / o[w]) ** 2
    return float(N / n * np.sum(terms))


def _rs_var(o: np.ndarray, h: np.ndarray, l: np.ndarray, c: np.ndarray, t: int, n: int = RANGE_N) -> float:
    w = slice(t - n + 1, t + 1)
    terms = np.log(h[w] / c[w]) * np.log(h[w] / o[w]) + np.log(l[w] / c[w]) * np.log(l[w] / o[w])
    return float(N / n * np.sum(terms))


def _yz(o: np.ndarray, h: np.ndarray, l: np.ndarray, c: np.ndarray, t: int, n: int = RANGE_N) -> float:
    if t < n:
        return math.nan
    w = slice(t - n + 1, t + 1)
    overnight = np.log(o[w] / c[t - n : t])
    open_close = np.log(c[w] / o[w])
    k = 0.34 / (1.34 + (n + 1) / (n - 1))
    s2_o = N * np.var(overnight, ddof=1)
    s2_c = N * np.var(open_close, ddof=1)
    var = s2_o + k * s2_c + (1 - k) * _rs_var(o, h, l, c, t, n)
    return float(np.sqrt(var))


def _sqrt_or_nan(var: float) -> float:
    return math.sqrt(var) if var >= 0 else math.nan


def reference(bars: pd.DataFrame) -> pd.DataFrame:
    """Every estimator for one symbol's bars, laid on the XNYS grid from its first to last bar."""
    bars = bars.sort_values("session_date")
    grid = sessions_in_range(bars["session_date"].iloc[0], bars["session_date"].iloc[-1])
    on_grid = bars.set_index("session_date").reindex(grid)
    o, h, l, c = (on_grid[k].to_numpy(dtype=float) for k in ("open", "high", "low", "close"))
    rows = []
    for t, day in enumerate(grid):
        if np.isnan(c[t]):
            continue
        row: dict[str, object] = {"symbol": bars["symbol"].iloc[0], "session_date": day, "close": c[t]}
        for n in HV_WINDOWS:
            row[f"hv{n}"] = _hv(c, t, n)
        row["parkinson20"] = _parkinson(h, l, t)
        enough = t >= RANGE_N - 1
        row["garman_klass20"] = _sqrt_or_nan(_gk_var(o, h, l, c, t)) if enough else math.nan
        row["rogers_satchell20"] = _sqrt_or_nan(_rs_var(o, h, l, c, t)) if enough else math.nan
        row["yang_zhang20"] = _yz(o, h, l, c, t)
        rows.append(row)
    return pd.DataFrame(rows)


def assert_matches_reference(result: pd.DataFrame, candles: pd.DataFrame) -> None:
    expected = pd.concat([reference(g) for _, g in candles.groupby("symbol")], ignore_index=True)
    merged = expected.merge(
        result, on=["symbol", "session_date"], how="outer", suffixes=("_ref", ""), indicator=True
    )
    unmatched = merged.loc[merged["_merge"] != "both", ["symbol", "session_date", "_merge"]]
    assert unmatched.empty, unmatched
    for col in ["close", *VOLS]:
        ref = merged[f"{col}_ref"].to_numpy(dtype=float)
        got = merged[col].to_numpy(dtype=float)
        assert (np.isnan(ref) == np.isnan(got)).all(), f"{col}: NULL pattern differs"
        np.testing.assert_allclose(got, ref, rtol=0, atol=TOL, equal_nan=True, err_msg=col)


# --- data ----------------------------------------------------------------------------------


def random_walk(symbol: str, days: list[date], seed: int, vol: float = 0.02) -> pd.DataFrame:
    """Daily OHLC bars with a consistent range (L <= O, C <= H) and an overnight gap."""
    rng = np.random.default_rng(seed)
    sigma = vol * np.exp(0.5 * np.sin(np.linspace(0, 6, len(days))))  # slow volatility regimes
    close = 50 * np.exp(np.cumsum(rng.normal(0, sigma)))
    prev_close = np.concatenate([[50.0], close[:-1]])
    open_ = prev_close * np.exp(rng.normal(0, sigma / 3))
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0, sigma / 2)))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0, sigma / 2)))
    return pd.DataFrame(
        {
            "symbol": symbol,
            "session_date": days,
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "volume": rng.integers(1_000, 10_000, len(days)),
        }
    )


SESSIONS_400 = sessions_in_range(date(2022, 1, 3), date(2023, 12, 29))[:400]


@pytest.fixture(scope="module")
def synthetic() -> pd.DataFrame:
    """Four symbols over 400 XNYS sessions; one lists late and one stops early."""
    frames = [
        random_walk("AAA", SESSIONS_400, seed=1),
        random_walk("BBB", SESSIONS_400, seed=2, vol=0.04),
        random_walk("CCC", SESSIONS_400[120:], seed=3),
        random_walk("DDD", SESSIONS_400[:300], seed=4, vol=0.01),
    ]
    return pd.concat(frames, ignore_index=True)


def load_chart(name: str) -> pd.DataFrame:
    """Minimal parse of a recorded Yahoo chart: New York session dates, OHLC, null bars dropped."""
    result = json.loads((RECORDED / name).read_text())["chart"]["result"][0]
    tz = ZoneInfo(result["meta"]["exchangeTimezoneName"])
    quote = result["indicators"]["quote"][0]
    frame = pd.DataFrame(
        {
            "symbol": result["meta"]["symbol"],
            "session_date": [datetime.fromtimestamp(ts, tz).date() for ts in result["timestamp"]],
            **{k: quote[k] for k in ("open", "high", "low", "close")},
        }
    )
    return frame.dropna(subset=["open", "high", "low", "close"]).reset_index(drop=True)


def sessions_of(frame: pd.DataFrame) -> list[date]:
    return sorted(set(frame["session_date"]))


def row(result: pd.DataFrame, symbol: str, day: date) -> pd.Series:
    match = result[(result["symbol"] == symbol) & (result["session_date"] == day)]
    assert len(match) == 1, (symbol, day)
    return match.iloc[0]


# --- against the references ----------------------------------------------------------------


@pytest.mark.parametrize("as_arrow", [False, True], ids=["pandas", "arrow"])
def test_synthetic_random_walks_match_numpy(synthetic: pd.DataFrame, as_arrow: bool) -> None:
    candles = pa.Table.from_pandas(synthetic, preserve_index=False) if as_arrow else synthetic
    result = compute_realized_volatility(candles, SESSIONS_400)
    assert list(result.columns) == list(OUTPUT_COLUMNS)
    assert len(result) == len(synthetic)
    assert_matches_reference(result, synthetic)
    assert result["hv252"].notna().sum() == (400 - 252) * 2 + (280 - 252) + (300 - 252)
    REALIZED_VOLATILITY.pandera.validate(result)


def test_tsla_full_history_matches_numpy() -> None:
    candles = load_chart("chart_TSLA_1d_2010-06-29_2023-08-11.json")
    result = compute_realized_volatility(candles, sessions_of(candles))
    assert_matches_reference(result, candles)
    assert result["hv252"].notna().sum() == len(candles) - 252 > 3000
    REALIZED_VOLATILITY.pandera.validate(result)


def test_msft_year_matches_numpy() -> None:
    candles = load_chart("chart_MSFT_1d_2021-02-01_2022-01-28.json")
    result = compute_realized_volatility(candles, sessions_of(candles))
    assert_matches_reference(result, candles)
    # 252 bars are 251 returns: one short of HV252 on the last day.
    assert result["hv252"].isna().all()
    assert result["hv90"].notna().sum() == len(candles) - 90


# --- the window rules ----------------------------------------------------------------------


def test_exactly_n_returns_give_a_value_and_n_minus_one_give_null() -> None:
    days = SESSIONS_400[:253]
    candles = random_walk("X", days, seed=7)
    result = compute_realized_volatility(candles, days).set_index("session_date")
    close = candles["close"].to_numpy()
    for n in HV_WINDOWS:
        assert math.isnan(result.loc[days[n - 1], f"hv{n}"])  # n closes = n - 1 returns
        assert result.loc[days[n], f"hv{n}"] == pytest.approx(_hv(close, n, n), abs=TOL)
        assert result.loc[days[n], "returns_available"] == n
    # Range estimators: 20 bars suffice, except Yang-Zhang which needs the close before them.
    assert math.isnan(result.loc[days[18], "parkinson20"])
    assert not math.isnan(result.loc[days[19], "parkinson20"])
    assert not math.isnan(result.loc[days[19], "rogers_satchell20"])
    assert math.isnan(result.loc[days[19], "yang_zhang20"])
    assert not math.isnan(result.loc[days[20], "yang_zhang20"])


def test_missing_session_nulls_every_window_that_spans_it(synthetic: pd.DataFrame) -> None:
    full = synthetic[synthetic["symbol"] == "AAA"].reset_index(drop=True)
    gap = 100
    candles = full.drop(index=gap).reset_index(drop=True)
    result = compute_realized_volatility(candles, SESSIONS_400).set_index("session_date")
    days = SESSIONS_400
    assert days[gap] not in result.index
    # HV20 at t reads closes t-20..t: NULL while the gap is among them, a value again after.
    for t in range(gap + 1, gap + 21):
        assert math.isnan(result.loc[days[t], "hv20"]), days[t]
        assert math.isnan(result.loc[days[t], "yang_zhang20"]), days[t]
    for t in range(gap + 1, gap + 20):
        assert math.isnan(result.loc[days[t], "parkinson20"]), days[t]
    assert not math.isnan(result.loc[days[gap + 20], "parkinson20"])
    after = full["close"].to_numpy()[gap + 1 : gap + 22]
    assert result.loc[days[gap + 21], "hv20"] == pytest.approx(_hv(after, 20, 20), abs=TOL)
    assert result.loc[days[gap + 21], "returns_available"] == 20
    assert not math.isnan(result.loc[days[gap + 21], "yang_zhang20"])
    # HV252 needs 252 returns after the gap before it is back.
    assert result.loc[days[gap + 1] : days[gap + 252], "hv252"].isna().all()
    after = full["close"].to_numpy()[gap + 1 : gap + 254]
    assert result.loc[days[gap + 253], "hv252"] == pytest.approx(_hv(after, 252, 252), abs=TOL)
    # Before the gap nothing changes.
    before = compute_realized_volatility(full, days).set_index("session_date")
    pd.testing.assert_frame_equal(result.loc[: days[gap - 1]], before.loc[: days[gap - 1]])
    assert_matches_reference(result.reset_index()[list(OUTPUT_COLUMNS)], candles)


@pytest.mark.parametrize("bad_price", [math.nan, 0.0, -1.0, math.inf])
def test_unusable_bar_counts_as_missing_but_keeps_its_row(synthetic: pd.DataFrame, bad_price: float) -> None:
    candles = synthetic[synthetic["symbol"] == "AAA"].reset_index(drop=True)
    bad = 150
    broken = candles.copy()
    broken.loc[bad, "low"] = bad_price
    # Built column by column from numpy, so that a NaN stays a NaN (Table.from_pandas makes it NULL).
    as_arrow = pa.table(
        {
            col: pa.array(list(broken[col]) if col == "session_date" else broken[col].to_numpy())
            for col in broken.columns
        }
    )
    if math.isnan(bad_price):
        assert pc.is_nan(as_arrow["low"]).to_numpy(zero_copy_only=False).any()
    result = compute_realized_volatility(as_arrow, SESSIONS_400)
    gap = compute_realized_volatility(candles.drop(index=bad), SESSIONS_400)
    flagged = result[result["session_date"] == SESSIONS_400[bad]].iloc[0]
    assert flagged[VOLS].isna().all() and flagged["returns_available"] == 0
    pd.testing.assert_frame_equal(
        result[result["session_date"] != SESSIONS_400[bad]].reset_index(drop=True), gap.reset_index(drop=True)
    )


def test_bars_on_non_sessions_are_ignored(synthetic: pd.DataFrame) -> None:
    candles = synthetic[synthetic["symbol"] == "AAA"]
    saturday = date(2022, 1, 8)
    assert saturday not in SESSIONS_400
    extra = candles.iloc[[0]].assign(session_date=saturday, close=1.0)
    with_extra = pd.concat([candles, extra], ignore_index=True)
    requested = [*SESSIONS_400, saturday]
    pd.testing.assert_frame_equal(
        compute_realized_volatility(with_extra, requested), compute_realized_volatility(candles, SESSIONS_400)
    )


def test_zero_range_bars_contribute_zero_not_nan() -> None:
    days = SESSIONS_400[:60]
    candles = random_walk("Z", days, seed=9)
    flat = 30  # one zero-range bar inside a window ...
    candles.loc[flat, ["open", "high", "low", "close"]] = candles.loc[flat, "close"]
    candles.loc[40:, ["open", "high", "low", "close"]] = 42.0  # ... and 20 flat sessions at the end
    result = compute_realized_volatility(candles, days)
    assert_matches_reference(result, candles)
    last = result.iloc[-1]
    # One jump to 42, then 19 zero returns: HV is finite; the 20 flat bars give exactly 0 ranges.
    assert np.isfinite(last[VOLS[:2]].to_numpy(dtype=float)).all()
    for col in ("parkinson20", "garman_klass20", "rogers_satchell20"):
        assert last[col] == 0.0
    assert np.isfinite(result.loc[result["session_date"] == days[flat], VOLS[:2]].to_numpy(dtype=float)).all()
    assert (result[VOLS].fillna(0.0) >= 0).all().all()


def test_negative_range_variance_from_inconsistent_bars_is_null() -> None:
    """High == low but open != close (bad data): GK and RS sums go negative, reported as NULL."""
    days = SESSIONS_400[:25]
    close = np.linspace(10, 12, len(days))
    candles = pd.DataFrame(
        {
            "symbol": "BAD",
            "session_date": days,
            "open": close * 0.98,
            "high": close,
            "low": close,
            "close": close * 1.02,
        }
    )
    last = compute_realized_volatility(candles, days).iloc[-1]
    assert last["parkinson20"] == 0.0
    assert math.isnan(last["garman_klass20"])
    assert math.isnan(last["rogers_satchell20"])


def test_only_requested_sessions_with_a_bar_get_rows(synthetic: pd.DataFrame) -> None:
    days = SESSIONS_400
    requested = [days[350], days[310], days[399], date(2022, 1, 8), date(2030, 1, 2)]
    result = compute_realized_volatility(synthetic, requested)
    # DDD stops after session 299 and so has no bar on any requested day: no row, not a NULL row.
    assert set(result["symbol"]) == {"AAA", "BBB", "CCC"}
    assert list(result["session_date"].unique()) == sorted([days[310], days[350], days[399]])
    assert list(result.columns) == list(OUTPUT_COLUMNS)
    assert result.equals(result.sort_values(["symbol", "session_date"]).reset_index(drop=True))
    everything = compute_realized_volatility(synthetic, days)
    expected = everything[everything["session_date"].isin(requested)].reset_index(drop=True)
    pd.testing.assert_frame_equal(result, expected)


def test_daily_load_with_only_the_lookback_equals_the_full_history(synthetic: pd.DataFrame) -> None:
    last = SESSIONS_400[-1]
    lookback = synthetic[synthetic["session_date"] >= SESSIONS_400[-253]]
    daily = compute_realized_volatility(lookback, [last])
    full = compute_realized_volatility(synthetic, SESSIONS_400)
    pd.testing.assert_frame_equal(daily, full[full["session_date"] == last].reset_index(drop=True))
    assert daily["hv252"].notna().all()
    # One session less of lookback and HV252 is out of reach.
    shorter = synthetic[synthetic["session_date"] >= SESSIONS_400[-252]]
    assert compute_realized_volatility(shorter, [last])["hv252"].isna().all()


def test_returns_available_tells_which_hv_exist(synthetic: pd.DataFrame) -> None:
    result = compute_realized_volatility(synthetic.drop(index=[50, 51, 700]), SESSIONS_400)
    for n in HV_WINDOWS:
        assert (result[f"hv{n}"].notna() == (result["returns_available"] >= n)).all()
    assert result["returns_available"].between(0, 252).all()


def test_datetime_session_dates_are_accepted(synthetic: pd.DataFrame) -> None:
    as_datetime = synthetic.assign(session_date=pd.to_datetime(synthetic["session_date"]))
    pd.testing.assert_frame_equal(
        compute_realized_volatility(as_datetime, SESSIONS_400),
        compute_realized_volatility(synthetic, SESSIONS_400),
    )


def test_empty_input_and_empty_request_give_empty_frames(synthetic: pd.DataFrame) -> None:
    for result in (
        compute_realized_volatility(synthetic.iloc[0:0], SESSIONS_400),
        compute_realized_volatility(synthetic, []),
    ):
        assert result.empty
        assert list(result.columns) == list(OUTPUT_COLUMNS)


def test_duplicate_bars_and_missing_columns_are_rejected(synthetic: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="more than one bar"):
        compute_realized_volatility(pd.concat([synthetic, synthetic.iloc[[5]]]), SESSIONS_400)
    with pytest.raises(ValueError, match="open"):
        compute_realized_volatility(synthetic.drop(columns="open"), SESSIONS_400)


# --- the schema ----------------------------------------------------------------------------


def test_schema_flags_out_of_range_values_and_duplicates(synthetic: pd.DataFrame) -> None:
    import pandera.errors

    result = compute_realized_volatility(synthetic, SESSIONS_400[-5:])
    bad = pd.concat([result, result.iloc[[0]]], ignore_index=True)
    bad.loc[1, "hv20"] = 12.0
    bad.loc[2, "parkinson20"] = -0.1
    bad.loc[3, "close"] = 0.0
    with pytest.raises(pandera.errors.SchemaErrors) as caught:
        REALIZED_VOLATILITY.pandera.validate(bad, lazy=True)
    cases = caught.value.failure_cases
    assert {"hv20", "parkinson20", "close"} <= set(cases["column"])
    assert cases["check"].str.contains("multiple_fields_uniqueness").any()
