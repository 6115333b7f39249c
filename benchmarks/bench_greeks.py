"""Benchmark ``position_greeks`` on 10,000 random positions against a per-position vollib loop.

Why: the Greeks asset prices the whole book every evening; it must stay one vectorised pass
(target: well under 1 s for 10,000 positions on the shared 2-core machine), and the price of doing
it the obvious way, a Python loop calling vollib for the price and four Greeks of each position,
should be a known number next to it.

Run (a few seconds):

    /work/main/.venv/bin/python benchmarks/bench_greeks.py
    /work/main/.venv/bin/python benchmarks/bench_greeks.py --positions 50000 --baseline-sample 2000

Cases, one line each (``ours``, ``baseline``, ``ratio`` = ours / baseline, ``target``, pass/fail):

* ``position_greeks``: the full function on ``--positions`` random positions (70 % equity options
  on 300 underlyings, 20 % future options, 10 % stock and futures), from raw frames: symbol
  parsing, price look-ups, term-structure interpolation, both models, position Greeks.
* ``option_values``: the model kernel alone on the same options' inputs.
* The baseline is a plain Python loop calling vollib (price, delta, gamma, theta, vega) per
  option, timed on ``--baseline-sample`` of them and scaled linearly to the full count.

The last line is the largest relative difference from vollib over the sampled options (the
accuracy the tests pin to 1e-8).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from typing import Any

import numpy as np
import pandas as pd
import vollib.black as vblack
import vollib.black.greeks.analytical as vblack_greeks
import vollib.black_scholes_merton as vbsm
import vollib.black_scholes_merton.greeks.analytical as vbsm_greeks

from harness import Result, emit, peak_rss_mib
from variance_pipeline.transforms import option_models as om
from variance_pipeline.transforms.position_greeks import position_greeks

AS_OF = date(2025, 11, 25)
CLOSE = datetime(2025, 11, 25, 21, 0, tzinfo=timezone.utc)
TARGET_SECONDS = 1.0
TARGET_ACCURACY = 1e-8  # what the tests pin
GREEKS = ("price", "delta", "gamma", "theta", "vega")


def make_book(n: int, seed: int) -> tuple[pd.DataFrame, dict[str, float], pd.DataFrame, pd.DataFrame]:
    """Random positions, closes, term structures and metrics in the lake's shapes."""
    rng = np.random.default_rng(seed)
    equities = [f"U{i:03d}" for i in range(300)]
    futures = [f"/F{chr(65 + i)}" for i in range(26)]
    closes = {s: float(rng.uniform(5, 800)) for s in equities}
    closes.update({f: float(rng.uniform(50, 6000)) for f in futures})
    expiries = [AS_OF + timedelta(days=d) for d in (3, 10, 17, 24, 52, 87, 115, 206, 388, 752)]
    term = pd.DataFrame(
        [
            (AS_OF, s, e, "PM", float(rng.uniform(0.1, 1.0)))
            for s in equities + futures for e in expiries if rng.random() < 0.7
        ],
        columns=["as_of_date", "symbol", "expiration_date", "settlement_type", "implied_volatility"],
    )
    metrics = pd.DataFrame(
        {
            "as_of_date": AS_OF,
            "symbol": equities + futures,
            "beta": rng.uniform(0.3, 2.0, len(equities) + len(futures)),
            "dividend_yield": np.r_[rng.uniform(0, 0.05, len(equities)), np.full(len(futures), np.nan)],
        }
    )
    rows = []
    kinds = rng.choice(3, size=int(n * 1.1) + 10, p=[0.7, 0.2, 0.1])  # extra to drop duplicates
    for i, kind in enumerate(kinds):
        expiry = AS_OF + timedelta(days=int(rng.integers(1, 760)))
        expires_at = datetime.combine(expiry, datetime.min.time(), timezone.utc) + timedelta(hours=21)
        right = "C" if rng.random() < 0.5 else "P"
        quantity = float(rng.integers(1, 20) * (1 if rng.random() < 0.5 else -1))
        if kind == 0:
            s = equities[rng.integers(len(equities))]
            strike = round(closes[s] * rng.uniform(0.5, 1.5), 1)
            symbol = f"{s:<6}{expiry:%y%m%d}{right}{int(round(strike * 1000)):08d}"
            rows.append((f"A{i % 7}", symbol, "Equity Option", s, s, quantity, 100, expires_at))
        elif kind == 1:
            root = futures[rng.integers(len(futures))]
            contract = f"{root}H6"
            strike = round(closes[root] * rng.uniform(0.5, 1.5), 2)
            symbol = f".{contract} O{root[1:]}G6 {expiry:%y%m%d}{right}{strike:g}"
            rows.append((f"A{i % 7}", symbol, "Future Option", contract, root, quantity, 50, expires_at))
        elif rng.random() < 0.5:
            s = equities[rng.integers(len(equities))]
            rows.append((f"A{i % 7}", s, "Equity", s, s, quantity * 10, 1, pd.NaT))
        else:
            root = futures[rng.integers(len(futures))]
            rows.append((f"A{i % 7}", f"{root}Z6", "Future", f"{root}Z6", root, quantity, 50, expires_at))
    positions = pd.DataFrame(
        rows, columns=["account_number", "symbol", "instrument_type", "underlying_symbol", "root_symbol",
                       "quantity", "multiplier", "expires_at"]
    )
    positions["expires_at"] = pd.to_datetime(positions["expires_at"], utc=True)
    positions = positions.drop_duplicates(["account_number", "symbol"]).head(n).reset_index(drop=True)
    positions.insert(0, "as_of_date", AS_OF)
    return positions, closes, term, metrics


def vollib_one(row: Any) -> tuple[float, ...]:
    flag = row.option_type.lower()
    S, K, T, r, v = row.underlying_price, row.strike, row.years_to_expiration, row.risk_free_rate, row.implied_volatility
    if row.model == om.MODEL_BLACK_76:
        return (vblack.black(flag, S, K, T, r, v),) + tuple(
            getattr(vblack_greeks, g)(flag, S, K, T, r, v) for g in GREEKS[1:]
        )
    q = row.dividend_yield
    return (vbsm.black_scholes_merton(flag, S, K, T, r, v, q),) + tuple(
        getattr(vbsm_greeks, g)(flag, S, K, T, r, v, q) for g in GREEKS[1:]
    )


def best_of(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--positions", type=int, default=10_000)
    parser.add_argument("--baseline-sample", type=int, default=1_000)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()

    positions, closes, term, metrics = make_book(args.positions, args.seed)
    run = lambda: position_greeks(positions, closes, term, metrics, 0.0425, 670.0, AS_OF, CLOSE)  # noqa: E731
    run()  # warm-up (imports, pandas caches)
    ours_s, (priced, unpriced) = best_of(run, repeat=5)

    options = priced[priced["model"].notna()].reset_index(drop=True)
    kernel_args = (
        options["underlying_price"].to_numpy(), options["strike"].to_numpy(), options["years_to_expiration"].to_numpy(),
        options["risk_free_rate"].to_numpy(), options["dividend_yield"].fillna(0.0).to_numpy(),
        options["implied_volatility"].to_numpy(), (options["option_type"] == "C").to_numpy(),
        (options["model"] == om.MODEL_BLACK_76).to_numpy(),
    )
    kernel_s, _ = best_of(lambda: om.option_values(*kernel_args), repeat=5)

    sample = options.sample(n=min(args.baseline_sample, len(options)), random_state=args.seed)
    start = time.perf_counter()
    reference = np.array([vollib_one(row) for row in sample.itertuples(index=False)])
    sample_s = time.perf_counter() - start
    baseline_positions = sample_s * len(positions) / len(sample)
    baseline_options = sample_s * len(options) / len(sample)

    print(
        f"{len(positions):,} positions ({len(options):,} options priced, {len(priced) - len(options):,} delta-one, "
        f"{len(unpriced):,} unpriced); vollib baseline timed on {len(sample):,} options and scaled"
    )
    print(f"\n{'case':38} {'ours s':>9} {'baseline s':>11} {'ratio':>8} {'target s':>9}  result")
    cases = []
    for name, ours, baseline, target in (
        (f"position_greeks, {len(positions):,} positions", ours_s, baseline_positions, TARGET_SECONDS * len(positions) / 10_000),
        (f"option_values kernel, {len(options):,} options", kernel_s, baseline_options, TARGET_SECONDS * len(options) / 10_000),
    ):
        verdict = "pass" if ours < target else "FAIL"
        print(f"{name:38} {ours:9.4f} {baseline:11.3f} {ours / baseline:8.4f} {target:9.2f}  {verdict}")
        cases.append((name, ours, baseline, target))

    ours_values = sample[list(GREEKS)].to_numpy(dtype=float)
    scale = np.maximum(np.abs(reference), 1e-10 / 1e-8)  # relative, or absolute below 1e-2 * 1e-8
    worst = np.max(np.abs(ours_values - reference) / scale)
    print(f"\nmax relative difference from vollib over the sample (price and four Greeks): {worst:.2e}")
    peak = round(peak_rss_mib(), 1)
    for name, ours, baseline, target in cases:
        emit(Result("greeks", f"{name} (baseline: vollib loop, scaled)", round(ours, 5), round(baseline, 4), "s",
                    f"< {target:.2f} s", ours < target, peak))
    emit(Result("greeks", f"max relative difference from vollib ({len(sample):,} options)", float(f"{worst:.3g}"),
                None, "rel", f"<= {TARGET_ACCURACY:g}", bool(worst <= TARGET_ACCURACY), peak))


if __name__ == "__main__":
    main()
