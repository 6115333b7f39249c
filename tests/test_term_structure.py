"""The IV of an expiration (the one rule, transforms/term_structure.py) against plain-Python references.

Every reference here is written from the rule's text, one row at a time: T from the session's close
to 16:00 (PM) or 09:30 (AM) New York with zoneinfo, Standard rows only, a date's node its PM row
else its AM row, exact on (date, settlement), linear in total variance between nodes (numpy), flat
and flagged outside. The code under test is never used to compute an expected number.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest

from variance_pipeline.schemas.market_metrics import IV_TERM_STRUCTURE
from variance_pipeline.schemas.validate import validate_frame
from variance_pipeline.transforms.term_structure import (
    constant_maturity,
    expiration_nodes,
    implied_vol_at,
    settlement_of,
    settlement_years,
    years_between,
)

from support import declared_frame, market_metrics_frames

AS_OF = date(2025, 11, 25)
CLOSE = datetime(2025, 11, 25, 21, 0, tzinfo=timezone.utc)  # 16:00 New York (EST)
NEW_YORK = ZoneInfo("America/New_York")
YEAR = 365 * 86400


def t_of(expiration: date, settlement: str = "PM", close: datetime = CLOSE) -> float:
    """T by hand: the close to the settlement instant in New York, years of 365 days."""
    at = time(9, 30) if settlement == "AM" else time(16, 0)
    return (datetime.combine(expiration, at, NEW_YORK) - close).total_seconds() / YEAR


def term(rows: list[tuple], as_of: date = AS_OF) -> pd.DataFrame:
    """(symbol, expiration, settlement, iv[, chain]) rows -> a term-structure frame of one snapshot."""
    return pd.DataFrame(
        [(as_of, s, e, st, iv, (rest[0] if rest else "Standard")) for s, e, st, iv, *rest in rows],
        columns=["as_of_date", "symbol", "expiration_date", "settlement_type", "implied_volatility", "option_chain_type"],
    )


def reference(rows: list[tuple], symbol: str, expiration: date | None, settlement: str | None, t: float,
              close: datetime = CLOSE, as_of: date = AS_OF) -> tuple[float, str | None]:
    """The rule, written out for one target over plain tuples."""
    usable = [
        (e, st, iv) for s, e, st, iv, *chain in rows
        if s == symbol and (not chain or chain[0] in (None, "Standard")) and iv is not None
        and np.isfinite(iv) and iv > 0 and e > as_of and t_of(e, st, close) > 0
    ]
    if expiration is not None:
        same_day = {st: iv for e, st, iv in usable if e == expiration}
        if settlement is not None and settlement in same_day:
            return same_day[settlement], "exact"
        if settlement is None and same_day:
            return same_day["PM" if "PM" in same_day else "AM" if "AM" in same_day else min(same_day)], "exact"
    nodes: dict[date, tuple[float, float]] = {}
    for e in sorted({e for e, _, _ in usable}):
        by = {st: iv for d, st, iv in usable if d == e}
        chosen = "PM" if "PM" in by else "AM" if "AM" in by else min(by)
        nodes[e] = (t_of(e, chosen, close), by[chosen])
    if not nodes:
        return float("nan"), None
    times = np.array(sorted(v[0] for v in nodes.values()))
    vols = np.array([v[1] for v in sorted(nodes.values())])
    if t < times[0]:
        return float(vols[0]), "extrapolated"
    if t > times[-1]:
        return float(vols[-1]), "extrapolated"
    j = int(np.searchsorted(times, t))  # times[j-1] < t <= times[j]
    if times[j] == t:
        return float(vols[j]), "interpolated"
    t1, t2, v1, v2 = times[j - 1], times[j], vols[j - 1], vols[j]
    w = np.interp(t, [t1, t2], [v1 * v1 * t1, v2 * v2 * t2])
    return float(np.sqrt(w / t)), "interpolated"


def test_exact_interpolated_extrapolated_on_a_small_curve() -> None:
    rows = [("SPY", date(2025, 12, 5), "PM", 0.15), ("SPY", date(2025, 12, 19), "PM", 0.18),
            ("SPY", date(2026, 1, 16), "PM", 0.20)]
    nodes = expiration_nodes(term(rows), CLOSE)
    targets = pd.DataFrame(
        {
            "symbol": ["SPY", "SPY", "SPY", "SPY", "QQQ"],
            "expiration_date": [date(2025, 12, 19), date(2025, 12, 12), date(2025, 11, 28), date(2026, 6, 18),
                                date(2025, 12, 19)],
            "settlement_type": ["PM"] * 5,
        },
        index=[10, 11, 12, 13, 14],
    )
    targets["years_to_expiration"] = [t_of(d) for d in targets["expiration_date"]]
    out = implied_vol_at(nodes, targets)
    assert list(out.index) == [10, 11, 12, 13, 14]
    t1, t2, t = t_of(date(2025, 12, 5)), t_of(date(2025, 12, 19)), t_of(date(2025, 12, 12))
    w = 0.15**2 * t1 + (0.18**2 * t2 - 0.15**2 * t1) * (t - t1) / (t2 - t1)
    np.testing.assert_allclose(out["implied_volatility"], [0.18, np.sqrt(w / t), 0.15, 0.20, np.nan], rtol=1e-14)
    assert list(out["iv_source"].iloc[:4]) == ["exact", "interpolated", "extrapolated", "extrapolated"]
    assert pd.isna(out["iv_source"].iloc[4])  # QQQ has no term structure: never SPY's IV
    assert list(out["lower_expiration"].iloc[:4]) == [date(2025, 12, 19), date(2025, 12, 5), date(2025, 12, 5), date(2026, 1, 16)]
    assert list(out["upper_expiration"].iloc[:4]) == [date(2025, 12, 19), date(2025, 12, 19), date(2025, 12, 5), date(2026, 1, 16)]


def test_matches_an_independent_loop_on_random_term_structures() -> None:
    rng = np.random.default_rng(42)
    rows, targets = [], []
    for s in range(40):
        symbol = f"S{s:02d}"
        offsets = sorted(rng.choice(np.arange(0, 800), size=rng.integers(0, 9), replace=False))
        for offset in offsets:
            expiration = AS_OF + timedelta(days=int(offset))
            for settlement in rng.choice(["AM", "PM", "Other"], size=rng.integers(1, 3), replace=False):
                iv = float(rng.choice([0.0, np.nan, *rng.uniform(0.05, 1.2, 8)]))  # some unusable rows
                chain = str(rng.choice(["Standard", "Standard", "Non-standard", None]))
                rows.append((symbol, expiration, str(settlement), iv, None if chain == "None" else chain))
        for _ in range(25):
            if offsets and rng.random() < 0.4:
                expiration = AS_OF + timedelta(days=int(rng.choice(offsets)))
            else:
                expiration = AS_OF + timedelta(days=int(rng.integers(1, 900)))
            settlement = [None, "AM", "PM"][int(rng.integers(0, 3))]
            targets.append((symbol, expiration, settlement, t_of(expiration, settlement or "PM")))
    frame = term(rows).sample(frac=1.0, random_state=3)  # row order must not matter
    target_frame = pd.DataFrame(targets, columns=["symbol", "expiration_date", "settlement_type", "years_to_expiration"])
    out = implied_vol_at(expiration_nodes(frame, CLOSE), target_frame)
    seen = set()
    for (symbol, expiration, settlement, t), iv, source in zip(targets, out["implied_volatility"], out["iv_source"]):
        ref_iv, ref_source = reference(rows, symbol, expiration, settlement, t)
        seen.add(ref_source)
        if ref_source is None:
            assert np.isnan(iv) and pd.isna(source)
        else:
            assert source == ref_source, (symbol, expiration, settlement)
            assert iv == pytest.approx(ref_iv, rel=1e-12), (symbol, expiration, settlement)
    assert seen == {"exact", "interpolated", "extrapolated", None}


def test_am_and_pm_of_one_date_each_keep_their_own_iv() -> None:
    """Issue #19 (a): an AM-settled SPX monthly got the mean of the date's AM and PM IVs."""
    rows = [("SPX", date(2025, 12, 19), "AM", 0.30), ("SPX", date(2025, 12, 19), "PM", 0.20),
            ("SPX", date(2026, 1, 16), "PM", 0.22), ("SPX", date(2026, 1, 16), "AM", 0.40),
            ("SPX", date(2026, 2, 20), "AM", 0.26)]
    nodes = expiration_nodes(term(rows), CLOSE)
    dec, jan = date(2025, 12, 19), date(2026, 1, 16)
    targets = pd.DataFrame(
        [("SPX", dec, "AM"), ("SPX", dec, "PM"), ("SPX", dec, None), ("SPX", date(2026, 1, 2), "PM"),
         ("SPX", date(2026, 2, 20), "PM"), ("SPX", date(2026, 2, 6), "PM")],
        columns=["symbol", "expiration_date", "settlement_type"],
    )
    targets["years_to_expiration"] = [t_of(d, s or "PM") for d, s in zip(targets["expiration_date"], targets["settlement_type"])]
    out = implied_vol_at(nodes, targets)
    assert list(out["implied_volatility"].iloc[:3]) == [0.30, 0.20, 0.20]  # own settlement; none named: PM
    assert list(out["iv_source"]) == ["exact", "exact", "exact", "interpolated", "extrapolated", "interpolated"]
    # Between dates the nodes are the PM rows (never a mean), each at 16:00.
    t1, t2, t = t_of(dec), t_of(jan), targets["years_to_expiration"].iloc[3]
    assert out["implied_volatility"].iloc[3] == pytest.approx(
        np.sqrt(np.interp(t, [t1, t2], [0.2**2 * t1, 0.22**2 * t2]) / t), rel=1e-13)
    # A PM target on a date listed only AM is no exact match: 16:00 lies after the last node (09:30).
    feb_am = t_of(date(2026, 2, 20), "AM")
    assert out["implied_volatility"].iloc[4] == 0.26
    t = targets["years_to_expiration"].iloc[5]
    assert out["implied_volatility"].iloc[5] == pytest.approx(
        np.sqrt(np.interp(t, [t2, feb_am], [0.22**2 * t2, 0.26**2 * feb_am]) / t), rel=1e-13)
    node_rows = nodes[nodes["is_node"]].set_index("expiration_date")
    assert list(node_rows["settlement_type"]) == ["PM", "PM", "AM"]
    assert node_rows.loc[dec, "settlement_types"] == "AM,PM"
    assert node_rows.loc[date(2026, 2, 20), "years_to_expiration"] == pytest.approx(feb_am, rel=1e-15)


def test_only_standard_chains_are_an_expirations_iv() -> None:
    """Issue #19 (b): a Non-standard chain on the same date and settlement is never used."""
    rows = [("AAPL", date(2025, 12, 19), "PM", 0.30, "Standard"), ("AAPL", date(2025, 12, 19), "PM", 0.90, "Non-standard"),
            ("AAPL", date(2026, 1, 16), "PM", 0.28, None), ("AAPL", date(2026, 2, 20), "PM", 0.70, "Non-standard")]
    nodes = expiration_nodes(term(rows), CLOSE)
    assert sorted(nodes["expiration_date"]) == [date(2025, 12, 19), date(2026, 1, 16)]  # missing chain = Standard
    targets = pd.DataFrame({"symbol": ["AAPL"] * 3, "expiration_date": [date(2025, 12, 19), date(2026, 1, 2), date(2026, 2, 20)],
                            "settlement_type": ["PM"] * 3})
    targets["years_to_expiration"] = [t_of(d) for d in targets["expiration_date"]]
    out = implied_vol_at(nodes, targets)
    t1, t2, t = t_of(date(2025, 12, 19)), t_of(date(2026, 1, 16)), targets["years_to_expiration"].iloc[1]
    np.testing.assert_allclose(
        out["implied_volatility"], [0.30, np.sqrt(np.interp(t, [t1, t2], [0.3**2 * t1, 0.28**2 * t2]) / t), 0.28], rtol=1e-13
    )
    assert list(out["iv_source"]) == ["exact", "interpolated", "extrapolated"]
    # Both rows are valid rows of the declared dataset: the chain type is part of the grain.
    frame = declared_frame(IV_TERM_STRUCTURE, term(rows).assign(option_chain_type=lambda f: f["option_chain_type"].fillna("Standard"),
                                                                fetched_at=CLOSE))
    outcome = validate_frame(IV_TERM_STRUCTURE, frame)
    assert outcome.ok and len(outcome.valid) == 4


def test_expired_unusable_and_duplicate_rows() -> None:
    rows = [("XYZ", date(2025, 11, 25), "PM", 0.9), ("XYZ", date(2025, 12, 5), "PM", 0.0),
            ("XYZ", date(2025, 12, 12), "PM", np.nan), ("XYZ", date(2025, 12, 19), "PM", 0.4)]
    nodes = expiration_nodes(term(rows), CLOSE)
    assert list(nodes["expiration_date"]) == [date(2025, 12, 19)]  # the expired, zero and NaN rows are not nodes
    targets = pd.DataFrame({"symbol": ["XYZ", "XYZ"], "expiration_date": [date(2025, 12, 5), date(2025, 12, 1)]})
    targets["years_to_expiration"] = [t_of(d) for d in targets["expiration_date"]]
    out = implied_vol_at(nodes, targets)
    assert list(out["iv_source"]) == ["extrapolated", "extrapolated"]  # the zero IV is not a match
    np.testing.assert_allclose(out["implied_volatility"], [0.4, 0.4])
    none = implied_vol_at(expiration_nodes(term(rows[:3]), CLOSE), targets)
    assert none["implied_volatility"].isna().all() and none["iv_source"].isna().all()
    with pytest.raises(ValueError, match="share"):
        expiration_nodes(term(rows[-1:] * 2), CLOSE)


def test_empty_inputs() -> None:
    empty = expiration_nodes(term([]), CLOSE)
    assert empty.empty and empty["implied_volatility"].dtype == np.float64
    targets = pd.DataFrame({"symbol": ["SPY"], "expiration_date": [date(2025, 12, 19)], "years_to_expiration": [0.07]})
    assert implied_vol_at(empty, targets)["implied_volatility"].isna().all()
    assert len(implied_vol_at(empty, targets.iloc[:0])) == 0
    assert constant_maturity(empty).empty


def test_time_is_measured_from_the_sessions_close_to_the_settlement_in_new_york() -> None:
    dates = pd.Series([date(2025, 11, 26), date(2025, 11, 26), date(2026, 6, 19)])
    years = settlement_years(pd.Series([AS_OF] * 3), dates, pd.Series(["PM", "am", None]), CLOSE)
    assert years[0] == pytest.approx(1 / 365, rel=1e-15)
    assert years[1] == pytest.approx((1 - 6.5 / 24) / 365, rel=1e-15)
    # 16:00 EDT on 2026-06-19 is 20:00 UTC: one hour less than whole days after the EST close.
    end = datetime(2026, 6, 19, 20, 0, tzinfo=timezone.utc)
    assert years[2] == pytest.approx((end - CLOSE).total_seconds() / YEAR, rel=1e-15)
    # The default close is the session's XNYS close: 13:00 New York on the day after Thanksgiving.
    early = settlement_years(pd.Series([date(2025, 11, 28)]), pd.Series([date(2025, 12, 5)]), pd.Series(["PM"]))
    assert early[0] == pytest.approx((7 * 24 + 3) * 3600 / YEAR, rel=1e-15)
    assert np.isnan(years_between(CLOSE, pd.Series([pd.NaT]))[0])
    with pytest.raises(ValueError, match="timezone-aware"):
        years_between(datetime(2025, 11, 25, 21), pd.Series([end]))


def test_settlement_of_expires_at() -> None:
    stamps = pd.Series(pd.to_datetime(["2025-12-19T14:30:00Z", "2025-12-19T21:00:00Z", "2026-06-18T13:30:00Z", None], utc=True))
    assert list(settlement_of(stamps)) == ["AM", "PM", "AM", None]  # 09:30 EST, 16:00 EST, 09:30 EDT


def test_constant_maturity_refuses_extrapolation_and_matches_numpy() -> None:
    rows = [("AAA", AS_OF + timedelta(days=d), "PM", iv) for d, iv in ((3, 0.40), (24, 0.25), (52, 0.27), (87, 0.30))]
    rows += [("BBB", AS_OF + timedelta(days=30), "PM", 0.5), ("BBB", AS_OF + timedelta(days=31), "AM", 0.6)]
    nodes = expiration_nodes(term(rows), CLOSE)
    out = constant_maturity(nodes).set_index("symbol")
    for symbol in ("AAA", "BBB"):
        for days in (30, 60, 90):
            want, source = reference(rows, symbol, None, None, days / 365)
            got = out.loc[symbol, f"iv{days}"]
            if source == "interpolated":
                assert got == pytest.approx(want, rel=1e-13), (symbol, days)
            else:
                assert np.isnan(got), (symbol, days)  # not bracketed: NULL, never the flat value
    assert out.loc["BBB", "iv30"] == 0.5  # a node exactly at 30 days (no DST between): its own IV
    assert np.isnan(out.loc["AAA", "iv90"])
    assert out.loc["AAA", "front_iv"] == 0.40 and out.loc["AAA", "front_days"] == 3
    assert out.loc["AAA", "expirations_used"] == 4 and out.loc["BBB", "expirations_used"] == 2


def test_api_items_through_the_parser_validation_and_the_rule() -> None:
    """A metrics item as the API sends it: SPX with AM and PM IVs on one date, AAPL with a Standard and
    a Non-standard chain on one date and settlement, and an entry without a chain type. Every row is
    valid (the chain type is in the grain; missing = Standard) and the rule picks per settlement."""
    items = [
        {"symbol": "SPX", "option-expiration-implied-volatilities": [
            {"expiration-date": "2025-12-19", "option-chain-type": "Standard", "settlement-type": "AM", "implied-volatility": "0.161"},
            {"expiration-date": "2025-12-19", "option-chain-type": "Standard", "settlement-type": "PM", "implied-volatility": "0.152"},
            {"expiration-date": "2026-01-16", "option-chain-type": "Standard", "settlement-type": "PM", "implied-volatility": "0.158"},
        ]},
        {"symbol": "AAPL", "option-expiration-implied-volatilities": [
            {"expiration-date": "2025-12-19", "option-chain-type": "Standard", "settlement-type": "PM", "implied-volatility": "0.25"},
            {"expiration-date": "2025-12-19", "option-chain-type": "Non-standard", "settlement-type": "PM", "implied-volatility": "0.61"},
            {"expiration-date": "2026-01-16", "settlement-type": "PM", "implied-volatility": "0.27"},
        ]},
    ]
    _, frame = market_metrics_frames(items, as_of_date=AS_OF, fetched_at=CLOSE)
    outcome = validate_frame(IV_TERM_STRUCTURE, frame)
    assert outcome.ok and len(outcome.valid) == 6
    assert list(outcome.valid["option_chain_type"]) == ["Standard"] * 4 + ["Non-standard", "Standard"]
    targets = pd.DataFrame(
        [("SPX", date(2025, 12, 19), "AM"), ("SPX", date(2025, 12, 19), "PM"), ("AAPL", date(2025, 12, 19), "PM"),
         ("AAPL", date(2026, 1, 2), "PM")],
        columns=["symbol", "expiration_date", "settlement_type"],
    )
    targets["years_to_expiration"] = [t_of(d, s) for d, s in zip(targets["expiration_date"], targets["settlement_type"])]
    out = implied_vol_at(expiration_nodes(outcome.valid, CLOSE), targets)
    t1, t2, t = t_of(date(2025, 12, 19)), t_of(date(2026, 1, 16)), targets["years_to_expiration"].iloc[3]
    np.testing.assert_allclose(
        out["implied_volatility"],
        [0.161, 0.152, 0.25, np.sqrt(np.interp(t, [t1, t2], [0.25**2 * t1, 0.27**2 * t2]) / t)],
        rtol=1e-13,
    )
