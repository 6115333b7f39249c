"""``compute_realized_volatility`` against an independent reference on universes with gaps.

The reference re-derives every estimator for one symbol at a time from the textbook formulas:
the symbol's bars are laid onto the XNYS session grid from its first to its last bar, with NaN
for a missing session or an unusable bar, and every window is a plain numpy slice (two-pass
variance, ``np.std(ddof=1)``); a window that touches a NaN is NaN, which is the gap rule. It
shares no code with the implementation (which works on running sums over sorted rows, in
blocks), so an error in one cannot hide in the other. Tolerance: 1e-9, and the NULL pattern and
``returns_available`` must be identical.

Data: random walks with every irregularity the gap rule is about (late listings, delistings,
halts, single missing bars, unusable prices, bars on non-sessions), and the inputs that stress
floating point (constant non-zero returns, a flat price after a volatile history, tiny moves on
a high price, ten years of history).
"""

from __future__ import annotations

import math
from datetime import date

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from variance_pipeline.calendar import sessions_in_range
from variance_pipeline.transforms import volatility
from variance_pipeline.transforms.volatility import OUTPUT_COLUMNS, compute_realized_volatility
from variance_pipeline.schemas.realized_volatility import REALIZED_VOLATILITY

N = 252
TOL = 1e-9
VOLS = ["hv20", "hv30", "hv90", "hv252", "parkinson20", "garman_klass20", "rogers_satchell20", "yang_zhang20"]
DAYS = sessions_in_range(date(2019, 1, 2), date(2022, 12, 30))  # 1008 sessions
LONG = sessions_in_range(date(2010, 1, 4), date(2024, 12, 31))  # 3774 sessions


# --- the reference ---------------------------------------------------------------------------


def _windows(x: np.ndarray, n: int) -> np.ndarray:
    """(len(x), n): row t holds x[t - n + 1 .. t] (NaN-padded before the start)."""
    return sliding_window_view(np.r_[np.full(n - 1, np.nan), x], n)


def _sqrt_tolerant(var: np.ndarray) -> np.ndarray:
    out = np.sqrt(np.maximum(var, 0.0))
    out[~(var >= -1e-12)] = np.nan
    return out


def reference_symbol(bars: pd.DataFrame, sessions: list[date]) -> pd.DataFrame:
    """Every output column for one symbol's bars (all of its sessions reported)."""
    on_session = bars[bars["session_date"].isin(set(sessions))].sort_values("session_date")
    grid = [d for d in sessions if on_session["session_date"].iloc[0] <= d <= on_session["session_date"].iloc[-1]]
    laid = on_session.set_index("session_date").reindex(grid)
    prices = laid[["open", "high", "low", "close"]].to_numpy(dtype=float)
    with np.errstate(invalid="ignore", over="ignore"):
        usable = (prices > 0).all(axis=1) & np.isfinite(prices.sum(axis=1))
        logs = np.where(usable[:, None], np.log(np.where(usable[:, None], prices, 1.0)), np.nan)
    o, h, l, c = logs.T
    out: dict[str, np.ndarray] = {}
    returns = np.r_[np.nan, np.diff(c)]
    for n in (20, 30, 90, 252):
        out[f"hv{n}"] = math.sqrt(N) * np.std(_windows(returns, n), axis=1, ddof=1)
    n = 20
    out["parkinson20"] = np.sqrt(N / (4 * n * math.log(2)) * np.sum(_windows((h - l) ** 2, n), axis=1))
    gk = N / n * np.sum(_windows(0.5 * (h - l) ** 2 - (2 * math.log(2) - 1) * (c - o) ** 2, n), axis=1)
    out["garman_klass20"] = _sqrt_tolerant(gk)
    rs = N / n * np.sum(_windows((h - c) * (h - o) + (l - c) * (l - o), n), axis=1)
    out["rogers_satchell20"] = _sqrt_tolerant(rs)
    k = 0.34 / (1.34 + (n + 1) / (n - 1))
    overnight = np.var(_windows(np.r_[np.nan, o[1:] - c[:-1]], n), axis=1, ddof=1)
    open_close = np.var(_windows(c - o, n), axis=1, ddof=1)
    out["yang_zhang20"] = _sqrt_tolerant(N * overnight + k * N * open_close + (1 - k) * rs)
    run = np.zeros(len(grid), np.int64)
    for t in range(len(grid)):
        run[t] = (run[t - 1] + 1 if t else 1) if usable[t] else 0
    out["returns_available"] = np.clip(run - 1, 0, N)
    has_bar = laid["symbol"].notna().to_numpy()
    frame = pd.DataFrame(
        {"symbol": bars["symbol"].iloc[0], "session_date": grid, "close": laid["close"].to_numpy(float), **out}
    )
    return frame[has_bar]


def reference(candles: pd.DataFrame, sessions: list[date]) -> pd.DataFrame:
    with np.errstate(all="ignore"):  # NaN windows are the point
        return pd.concat([reference_symbol(g, sessions) for _, g in candles.groupby("symbol")], ignore_index=True)


def assert_matches(result: pd.DataFrame, expected: pd.DataFrame) -> None:
    assert list(result.columns) == list(OUTPUT_COLUMNS)
    merged = expected.merge(result, on=["symbol", "session_date"], how="outer", suffixes=("_ref", ""), indicator=True)
    unmatched = merged.loc[merged["_merge"] != "both", ["symbol", "session_date", "_merge"]]
    assert unmatched.empty, unmatched
    for col in ["close", *VOLS]:
        ref, got = merged[f"{col}_ref"].to_numpy(float), merged[col].to_numpy(float)
        nulls = np.isnan(ref) != np.isnan(got)
        assert not nulls.any(), f"{col}: NULL pattern differs at {merged.loc[nulls, ['symbol', 'session_date']].head()}"
        np.testing.assert_allclose(got, ref, rtol=0, atol=TOL, equal_nan=True, err_msg=col)
    assert (merged["returns_available"] == merged["returns_available_ref"]).all()


# --- data --------------------------------------------------------------------------------------


def walk(symbol: str, days: list[date], rng: np.random.Generator, vol: float = 0.02, price: float = 50.0) -> pd.DataFrame:
    """Consistent OHLC bars (L <= O, C <= H) of a log random walk with an overnight gap."""
    sigma = vol * np.exp(0.5 * np.sin(np.linspace(0, 6, len(days)) + rng.uniform(0, 6)))
    close = price * np.exp(np.cumsum(rng.normal(0, sigma)))
    open_ = np.r_[price, close[:-1]] * np.exp(rng.normal(0, sigma / 3))
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0, sigma / 2)))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0, sigma / 2)))
    return pd.DataFrame({"symbol": symbol, "session_date": days, "open": open_, "high": high, "low": low, "close": close})


def universe(seed: int = 11) -> pd.DataFrame:
    """Twelve symbols over DAYS, each with its own kind of gap."""
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(12):
        bars = walk(f"S{i:02d}", DAYS, rng, vol=rng.uniform(0.005, 0.05))
        if i % 4 == 1:  # listed late
            bars = bars.iloc[int(rng.integers(100, 700)) :]
        if i % 4 == 2:  # delisted
            bars = bars.iloc[: int(rng.integers(300, 900))]
        if i % 3 == 0:  # a halt of 5 to 30 sessions
            at = int(rng.integers(50, 900))
            bars = bars.drop(bars.index[at : at + int(rng.integers(5, 31))])
        # single missing bars, and a few unusable prices
        bars = bars.drop(bars.index[rng.random(len(bars)) < 0.01])
        bad = rng.random(len(bars)) < 0.003
        column = rng.choice(["open", "high", "low", "close"], bad.sum())
        for row, col, value in zip(np.flatnonzero(bad), column, rng.choice([np.nan, 0.0, -1.0, np.inf], bad.sum())):
            bars.iloc[row, bars.columns.get_loc(col)] = value
        frames.append(bars)
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def gappy() -> pd.DataFrame:
    return universe()


# --- against the reference -----------------------------------------------------------------


def test_universe_with_gaps_matches_reference(gappy: pd.DataFrame) -> None:
    result = compute_realized_volatility(gappy, DAYS)
    assert len(result) == len(gappy)
    assert_matches(result, reference(gappy, DAYS))
    # Every kind of NULL is there: short history, gaps, unusable bars.
    assert result["hv252"].isna().any() and result["hv252"].notna().any()
    assert (result["returns_available"] == 0).sum() >= 12


def test_valid_rows_pass_the_schema(gappy: pd.DataFrame) -> None:
    result = compute_realized_volatility(gappy, DAYS)
    usable = result["close"].gt(0) & np.isfinite(result["close"])
    REALIZED_VOLATILITY.pandera.validate(result[usable].reset_index(drop=True))


def test_blocks_of_any_size_give_the_same_frame(gappy: pd.DataFrame, monkeypatch: pytest.MonkeyPatch) -> None:
    whole = compute_realized_volatility(gappy, DAYS)
    for rows in (1, 700, 5000):  # one symbol per block, a few, several
        monkeypatch.setattr(volatility, "_BLOCK_ROWS", rows)
        pd.testing.assert_frame_equal(compute_realized_volatility(gappy, DAYS), whole)


def test_row_order_and_container_do_not_matter(gappy: pd.DataFrame) -> None:
    expected = compute_realized_volatility(gappy, DAYS)
    shuffled = gappy.sample(frac=1.0, random_state=3)
    pd.testing.assert_frame_equal(compute_realized_volatility(shuffled, DAYS), expected)
    pd.testing.assert_frame_equal(compute_realized_volatility(shuffled.reset_index(drop=True), DAYS), expected)
    as_arrow = pa.Table.from_pandas(gappy, preserve_index=False)
    pd.testing.assert_frame_equal(compute_realized_volatility(as_arrow, DAYS), expected)
    descending = gappy.sort_values(["symbol", "session_date"], ascending=[False, True])
    pd.testing.assert_frame_equal(compute_realized_volatility(descending, DAYS), expected)


def test_requested_subsets_equal_the_backfill(gappy: pd.DataFrame) -> None:
    everything = compute_realized_volatility(gappy, DAYS)
    for requested in ([DAYS[-1]], DAYS[600:650], DAYS[::37], [DAYS[252], DAYS[700], date(2020, 7, 4)]):
        got = compute_realized_volatility(gappy, requested)
        want = everything[everything["session_date"].isin(requested)].reset_index(drop=True)
        pd.testing.assert_frame_equal(got, want)


def test_daily_load_from_the_lookback_alone(gappy: pd.DataFrame) -> None:
    everything = compute_realized_volatility(gappy, DAYS)
    for last in (DAYS[-1], DAYS[500]):
        at = DAYS.index(last)
        lookback = gappy[(gappy["session_date"] >= DAYS[at - 252]) & (gappy["session_date"] <= last)]
        daily = compute_realized_volatility(lookback, [last])
        pd.testing.assert_frame_equal(daily, everything[everything["session_date"] == last].reset_index(drop=True))


def test_bars_on_non_sessions_are_ignored_but_duplicates_there_are_not(gappy: pd.DataFrame) -> None:
    saturday = date(2020, 6, 13)
    assert saturday not in DAYS
    one = gappy[gappy["symbol"] == "S00"]
    extra = one.iloc[[0]].assign(session_date=saturday, close=1.0)
    with_weekend = pd.concat([one, extra], ignore_index=True)
    pd.testing.assert_frame_equal(compute_realized_volatility(with_weekend, DAYS), compute_realized_volatility(one, DAYS))
    with pytest.raises(ValueError, match="more than one bar"):
        compute_realized_volatility(pd.concat([with_weekend, extra], ignore_index=True), DAYS)


def test_result_does_not_write_through_to_the_input(gappy: pd.DataFrame) -> None:
    """A full backfill shares symbol, session_date and close with the input: copy-on-write."""
    candles = gappy.sort_values(["symbol", "session_date"]).reset_index(drop=True)
    before = candles.copy()
    result = compute_realized_volatility(candles, DAYS)
    if int(pd.__version__.split(".")[0]) >= 3:  # copy-on-write: shared until written
        assert np.shares_memory(result["close"].to_numpy(), candles["close"].to_numpy())
        assert np.shares_memory(result["session_date"].to_numpy(), candles["session_date"].to_numpy())
    result.loc[0, "close"] = -1.0
    result.loc[1, "symbol"] = "ZZZ"
    result.loc[2, "session_date"] = date(1999, 1, 1)
    pd.testing.assert_frame_equal(candles, before)
    assert result.loc[0, "close"] == -1.0


# --- floating point ------------------------------------------------------------------------------


def stress() -> pd.DataFrame:
    rng = np.random.default_rng(5)
    frames = []
    # Constant non-zero log returns (a geometric series): variance 0 by cancellation, not by zeros.
    close = 10 * np.exp(0.01 * np.arange(len(DAYS)))
    frames.append(pd.DataFrame({"symbol": "GEOM", "session_date": DAYS, "open": close, "high": close * 1.001,
                                "low": close * 0.999, "close": close}))
    # Volatile for three years, then pinned at a deal price with tiny moves, then exactly flat.
    wild = walk("PIN", DAYS, rng, vol=0.08)
    pinned = 41.25 * np.exp(np.cumsum(rng.normal(0, 2e-6, 200)))
    ohlc = ["open", "high", "low", "close"]
    wild.loc[wild.index[700:900], ohlc] = np.c_[pinned, pinned * (1 + 1e-6), pinned * (1 - 1e-6), pinned]
    wild.loc[wild.index[900:], ohlc] = 41.25
    frames.append(wild)
    # A very high price moving a tick at a time.
    ticks = 600_000 + np.cumsum(rng.choice([-1.0, 0.0, 1.0], len(DAYS)))
    previous = np.r_[ticks[0], ticks[:-1]]
    frames.append(pd.DataFrame({"symbol": "TICK", "session_date": DAYS, "open": previous,
                                "high": np.maximum(ticks, previous) + 1, "low": np.minimum(ticks, previous) - 1,
                                "close": ticks}))
    # Overnight returns that are all equal: Yang-Zhang's overnight variance cancels.
    close = 30 * np.exp(np.cumsum(rng.normal(0, 0.01, len(DAYS))))
    frames.append(pd.DataFrame({"symbol": "GAPUP", "session_date": DAYS, "open": np.r_[close[0], close[:-1]] * 1.003,
                                "high": np.maximum(close, np.r_[close[0], close[:-1]] * 1.003) * 1.01,
                                "low": np.minimum(close, np.r_[close[0], close[:-1]] * 1.003) * 0.99, "close": close}))
    # Inconsistent bars (open and close outside the high-low range): negative range sums.
    bad = walk("BAD", DAYS, rng)
    bad.loc[bad.index[300:340], "open"] *= 1.2
    bad.loc[bad.index[500:520], ["high", "low"]] = np.repeat(bad.loc[bad.index[500:520], ["close"]].to_numpy(), 2, axis=1)
    frames.append(bad)
    # Inconsistent bars whose Garman-Klass terms cancel (|ln C/O| = sqrt(0.5 / (2 ln2 - 1)) ln H/L),
    # and whose Rogers-Satchell terms cancel (ln-prices L = 0, H = d, C = d/3, O = 2d): the sums
    # are rounding noise around 0, recomputed term by term as the reference does.
    base = 40 * np.exp(np.cumsum(rng.normal(0, 0.01, len(DAYS))))
    d = rng.uniform(0.01, 0.03, len(DAYS))
    open_ = base * np.exp(-d * math.sqrt(0.5 / (2 * math.log(2) - 1)))
    frames.append(pd.DataFrame({"symbol": "GKZERO", "session_date": DAYS, "open": open_,
                                "high": base * np.exp(d / 2), "low": base * np.exp(-d / 2), "close": base}))
    frames.append(pd.DataFrame({"symbol": "RSZERO", "session_date": DAYS, "open": base * np.exp(2 * d),
                                "high": base * np.exp(d), "low": base, "close": base * np.exp(d / 3)}))
    return pd.concat(frames, ignore_index=True)


def test_floating_point_stress_matches_reference() -> None:
    candles = stress()
    result = compute_realized_volatility(candles, DAYS)
    assert_matches(result, reference(candles, DAYS))
    geometric = result[result["symbol"] == "GEOM"]
    assert geometric["hv20"].dropna().abs().max() < TOL  # not the ~1e-8 the plain formula leaves
    flat = result[(result["symbol"] == "PIN") & (result["session_date"] >= DAYS[1000])]
    assert (flat[["hv20", "parkinson20", "garman_klass20", "rogers_satchell20"]] == 0).all().all()


def test_long_history_of_a_volatile_symbol_matches_reference() -> None:
    rng = np.random.default_rng(8)
    candles = pd.concat([walk("LONG", LONG, rng, vol=0.06), walk("CALM", LONG, rng, vol=0.0005, price=100.0)])
    result = compute_realized_volatility(candles, LONG)
    assert_matches(result, reference(candles, LONG))
