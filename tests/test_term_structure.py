"""IV at a target expiration: exact / interpolated (total variance) / extrapolated (flat)."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

from variance_pipeline.transforms.term_structure import implied_vol_at, node_years, years_between

CLOSE = datetime(2025, 11, 25, 21, 0, tzinfo=timezone.utc)  # 16:00 New York (EST)


def _reference(nodes: dict[date, tuple[float, float]], target: date, t: float) -> tuple[float, str | None]:
    """Plain loop over one symbol's sorted nodes {date: (years, iv)}, valid nodes only."""
    valid = sorted((yrs, iv, d) for d, (yrs, iv) in nodes.items() if iv > 0 and yrs > 0)
    if not valid:
        return float("nan"), None
    for yrs, iv, d in valid:
        if d == target:
            return iv, "exact"
    times = np.array([v[0] for v in valid])
    vols = np.array([v[1] for v in valid])
    if t <= times[0]:
        return float(vols[0]), "extrapolated"
    if t >= times[-1]:
        return float(vols[-1]), "extrapolated"
    j = int(np.searchsorted(times, t))  # times[j-1] < t <= times[j]
    t1, t2, v1, v2 = times[j - 1], times[j], vols[j - 1], vols[j]
    w = v1 * v1 * t1 + (v2 * v2 * t2 - v1 * v1 * t1) * (t - t1) / (t2 - t1)
    return float(np.sqrt(w / t)), "interpolated"


def test_exact_interpolated_extrapolated_on_a_small_curve():
    ts = pd.DataFrame(
        {
            "symbol": ["SPY"] * 3,
            "expiration_date": [date(2025, 12, 5), date(2025, 12, 19), date(2026, 1, 16)],
            "implied_volatility": [0.15, 0.18, 0.20],
            "years_to_expiration": [10 / 365, 24 / 365, 52 / 365],
        }
    )
    targets = pd.DataFrame(
        {
            "symbol": ["SPY", "SPY", "SPY", "SPY", "QQQ"],
            "expiration_date": [date(2025, 12, 19), date(2025, 12, 12), date(2025, 11, 28), date(2026, 6, 18), date(2025, 12, 19)],
            "years_to_expiration": [24 / 365, 17 / 365, 3 / 365, 205 / 365, 24 / 365],
        },
        index=[10, 11, 12, 13, 14],
    )
    out = implied_vol_at(ts, targets)
    assert list(out.index) == [10, 11, 12, 13, 14]
    w = 0.15**2 * 10 / 365 + (0.18**2 * 24 / 365 - 0.15**2 * 10 / 365) * 0.5  # halfway in time
    expected = [0.18, np.sqrt(w / (17 / 365)), 0.15, 0.20, np.nan]
    np.testing.assert_allclose(out["implied_volatility"].to_numpy(dtype=float), expected, rtol=1e-14)
    assert list(out["iv_source"].iloc[:4]) == ["exact", "interpolated", "extrapolated", "extrapolated"]
    assert pd.isna(out["iv_source"].iloc[4])  # QQQ has no term structure: never SPY's IV
    assert list(out["lower_expiration"].iloc[:4]) == [date(2025, 12, 19), date(2025, 12, 5), date(2025, 12, 5), date(2026, 1, 16)]
    assert list(out["upper_expiration"].iloc[:4]) == [date(2025, 12, 19), date(2025, 12, 19), date(2025, 12, 5), date(2026, 1, 16)]


def test_matches_an_independent_loop_on_random_term_structures():
    rng = np.random.default_rng(42)
    ts_rows, target_rows = [], []
    nodes_by_symbol: dict[str, dict[date, tuple[float, float]]] = {}
    start = date(2025, 11, 25)
    for s in range(40):
        symbol = f"S{s:02d}"
        offsets = sorted(rng.choice(np.arange(1, 800), size=rng.integers(0, 9), replace=False))
        nodes = {}
        for offset in offsets:
            d = start + timedelta(days=int(offset))
            iv = float(rng.choice([0.0, np.nan, *rng.uniform(0.05, 1.2, 8)]))  # some unusable nodes
            yrs = offset / 365 + rng.uniform(-0.001, 0.001)
            nodes[d] = (yrs, iv if np.isfinite(iv) else -1.0)
            ts_rows.append((symbol, d, iv, yrs))
        nodes_by_symbol[symbol] = nodes
        for _ in range(25):
            if offsets and rng.random() < 0.3:
                d = start + timedelta(days=int(rng.choice(offsets)))
                t = nodes[d][0]
            else:
                offset = int(rng.integers(1, 900))
                d, t = start + timedelta(days=offset), offset / 365 + 0.0004
            target_rows.append((symbol, d, t))
    ts = pd.DataFrame(ts_rows, columns=["symbol", "expiration_date", "implied_volatility", "years_to_expiration"])
    targets = pd.DataFrame(target_rows, columns=["symbol", "expiration_date", "years_to_expiration"])
    out = implied_vol_at(ts.sample(frac=1.0, random_state=3), targets)  # row order must not matter
    seen = set()
    for (symbol, d, t), iv, source in zip(target_rows, out["implied_volatility"], out["iv_source"]):
        ref_iv, ref_source = _reference(nodes_by_symbol[symbol], d, t)
        seen.add(ref_source)
        if ref_source is None:
            assert np.isnan(iv) and pd.isna(source)
        else:
            assert source == ref_source
            assert iv == pytest.approx(ref_iv, rel=1e-12)
    assert seen == {"exact", "interpolated", "extrapolated", None}


def test_duplicate_expirations_prefer_the_matching_settlement_else_the_mean():
    ts = pd.DataFrame(
        {
            "symbol": ["SPX", "SPX", "SPX"],
            "expiration_date": [date(2025, 12, 19), date(2025, 12, 19), date(2026, 1, 16)],
            "settlement_type": ["AM", "PM", "PM"],
            "implied_volatility": [0.30, 0.20, 0.22],
        }
    )
    ts["years_to_expiration"] = node_years(ts["expiration_date"], ts["settlement_type"], CLOSE)
    targets = pd.DataFrame(
        {
            "symbol": ["SPX"] * 4,
            "expiration_date": [date(2025, 12, 19)] * 3 + [date(2026, 1, 2)],
            "settlement_type": ["AM", "PM", None, None],
        }
    )
    targets["years_to_expiration"] = node_years(targets["expiration_date"], None, CLOSE)
    out = implied_vol_at(ts, targets)
    np.testing.assert_allclose(out["implied_volatility"].iloc[:3], [0.30, 0.20, 0.25], rtol=1e-15)
    assert list(out["iv_source"]) == ["exact", "exact", "exact", "interpolated"]
    # The interpolation node of the duplicated date is the mean of its rows (IV and years).
    t1 = ts["years_to_expiration"].iloc[:2].mean()
    t2 = ts["years_to_expiration"].iloc[2]
    t = targets["years_to_expiration"].iloc[3]
    w = 0.25**2 * t1 + (0.22**2 * t2 - 0.25**2 * t1) * (t - t1) / (t2 - t1)
    assert out["implied_volatility"].iloc[3] == pytest.approx(np.sqrt(w / t), rel=1e-13)


def test_expired_and_unusable_nodes_are_skipped():
    ts = pd.DataFrame(
        {
            "symbol": ["XYZ"] * 4,
            "expiration_date": [date(2025, 11, 25), date(2025, 12, 5), date(2025, 12, 12), date(2025, 12, 19)],
            "implied_volatility": [0.9, 0.0, np.nan, 0.4],
        }
    )
    ts["years_to_expiration"] = node_years(ts["expiration_date"], None, CLOSE)
    assert ts["years_to_expiration"].iloc[0] == 0.0  # expires at the session close itself
    targets = pd.DataFrame({"symbol": ["XYZ", "XYZ"], "expiration_date": [date(2025, 12, 5), date(2025, 12, 1)]})
    targets["years_to_expiration"] = node_years(targets["expiration_date"], None, CLOSE)
    out = implied_vol_at(ts, targets)
    assert list(out["iv_source"]) == ["extrapolated", "extrapolated"]  # the zero IV is not a match
    np.testing.assert_allclose(out["implied_volatility"], [0.4, 0.4])
    none = implied_vol_at(ts.iloc[:3], targets)
    assert none["implied_volatility"].isna().all() and none["iv_source"].isna().all()


def test_empty_inputs():
    empty_ts = pd.DataFrame(columns=["symbol", "expiration_date", "implied_volatility", "years_to_expiration"])
    targets = pd.DataFrame({"symbol": ["SPY"], "expiration_date": [date(2025, 12, 19)], "years_to_expiration": [0.07]})
    out = implied_vol_at(empty_ts, targets)
    assert out["implied_volatility"].isna().all()
    assert len(implied_vol_at(empty_ts, targets.iloc[:0])) == 0


def test_node_years_measure_from_the_close_to_new_york_settlement_times():
    dates = pd.Series([date(2025, 11, 26), date(2025, 11, 26), date(2026, 6, 19)])
    years = node_years(dates, pd.Series(["PM", "AM", None]), CLOSE)
    assert years[0] == pytest.approx(1 / 365, rel=1e-15)
    assert years[1] == pytest.approx((1 - 6.5 / 24) / 365, rel=1e-15)
    # 16:00 EDT on 2026-06-19 is 20:00 UTC.
    end = datetime(2026, 6, 19, 20, 0, tzinfo=timezone.utc)
    assert years[2] == pytest.approx((end - CLOSE).total_seconds() / (365 * 86400), rel=1e-15)
    assert np.isnan(years_between(CLOSE, pd.Series([pd.NaT]))[0])
    with pytest.raises(ValueError, match="timezone-aware"):
        years_between(datetime(2025, 11, 25, 21), pd.Series([end]))
