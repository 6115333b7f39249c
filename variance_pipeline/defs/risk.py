"""Position risk without streaming: the public risk-free rate and model Greeks per position.

DXLink streaming (and so streamed Greeks) is not available to our users, but the evening REST
snapshot is enough: the position, the underlying's close, the IV of its expiration from the same
snapshot's term structure, the dividend yield and Tastytrade's public risk-free rate. The maths
lives in ``transforms/`` (vectorised BSM and Black-76); this module only reads the lake,
lands the result and checks it.
"""


from datetime import date
from typing import Iterator

import dagster as dg
import numpy as np
import pandas as pd

from variance_pipeline.calendar import session_close
from variance_pipeline.candles.store import CandleStore
from variance_pipeline.defs.common import ASSET_COMMON, candle_symbols, land_validated
from variance_pipeline.defs.metadata import column_schema, schema_check_spec, landed, nothing_landed, preview, validation_check
from variance_pipeline.defs.partitions import run_sessions
from variance_pipeline.defs.resources import PipelineResource
from variance_pipeline.defs.snapshot_assets import SnapshotCall, SnapshotRows, snapshot_asset
from variance_pipeline.lake.layout import Lake
from variance_pipeline.sources.tastytrade_reference import risk_free_rate_rows
from variance_pipeline.transforms.position_greeks import position_greeks as price_positions
from variance_pipeline.transforms.position_greeks import put_call_parity_gaps, quoted_future_marks
from variance_pipeline.schemas.validate import validate_frame
from variance_pipeline.schemas.risk import POSITION_GREEKS, RISK_FREE_RATE

PARITY_TOLERANCE = 1e-8  # relative to the strike: rounding, never a model error


def _risk_free_rate(call: SnapshotCall) -> SnapshotRows:
    data = call.client.margin_configuration(on_raw=call.on_raw)
    rows = risk_free_rate_rows(data, as_of_date=call.session, fetched_at=call.fetched_at)
    return SnapshotRows({"risk_free_rate": rows}, {"risk_free_rate": {"risk_free_rate": float(rows[0]["risk_free_rate"])}})


# Not fatal for the evening: candles, volatility and the warehouse still load; the options are
# listed as unpriced ("no risk_free_rate") and the failing check says until when to re-run.
risk_free_rate = snapshot_asset(
    name="risk_free_rate",
    datasets=[RISK_FREE_RATE],
    fetch=_risk_free_rate,
    fatal=False,
    descriptions={
        "risk_free_rate": "Tastytrade's public risk-free rate (GET /margin-requirements-public-configuration, "
        "no auth; a fraction), the rate of the model Greeks. A snapshot: current session only.",
    },
)


def _read(lake: Lake, dataset: str, day: date) -> pd.DataFrame | None:
    return lake.read_partition(dataset, day) if lake.has_partition(dataset, day) else None


def _price_session(
    lake: Lake, store: CandleStore, symbols: list[str], day: date
) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """(priced, unpriced, notes) for one session with a landed positions snapshot; the
    underlyings' closes of that session come from the candle store (``symbols``: the universe)."""
    positions = lake.read_partition("positions", day)
    notes: list[str] = []
    term = _read(lake, "iv_term_structure", day)
    metrics = _read(lake, "market_metrics", day)
    candles = store.session(day, symbols)
    candles = candles if len(candles) else None
    rate_frame = _read(lake, "risk_free_rate", day)
    if term is None:
        notes.append(f"no iv_term_structure for {day}: options are unpriced")
        term = pd.DataFrame(columns=["as_of_date", "symbol", "expiration_date", "settlement_type", "implied_volatility"])
    if metrics is None:
        notes.append(f"no market_metrics for {day}: no betas or dividend yields")
        metrics = pd.DataFrame(columns=["as_of_date", "symbol", "beta", "dividend_yield"])
    closes = pd.Series(dtype=float) if candles is None else candles.set_index("symbol")["close"]
    if candles is None:
        notes.append(f"no candles for {day}: no underlying prices")
    rate = float("nan") if rate_frame is None else float(rate_frame["risk_free_rate"].iloc[0])
    if rate_frame is None:
        notes.append(f"no risk_free_rate for {day}: options are unpriced")
    spy = float(closes["SPY"]) if "SPY" in closes.index else None
    if spy is None:
        notes.append("SPY has no close this session: beta_weighted_delta is NULL (add SPY to the watchlist)")
    # VIX options' VX futures have no candle: their price is the broker's mark, asked for with the
    # option quotes (absent when the account is not funded: then those options stay unpriced).
    marks = quoted_future_marks(_read(lake, "option_quotes", day), day)
    priced, unpriced = price_positions(positions, closes, term, metrics, rate, spy, day, session_close(day), marks)
    fallback = priced.loc[priced["underlying_price_source"] == "root_continuous"]
    if len(fallback):
        notes.append(
            f"{len(fallback)} future/future-option position(s) priced on the front-month continuous, not their own "
            f"contract (no close for it on {day}; the calendar basis is ignored): "
            + ", ".join(f"{s} ({u})" for s, u in zip(fallback["symbol"], fallback["underlying_symbol"]))
        )
    return priced, unpriced, notes


@dg.asset(
    deps=["positions", "iv_term_structure", "market_metrics", "candles", "risk_free_rate", "option_quotes"],
    metadata={"dagster/column_schema": column_schema(POSITION_GREEKS)},
    group_name="transform",
    kinds={"python", "parquet"},
    description="Model price and Greeks of every position of each landed positions snapshot: Black-Scholes-"
    "Merton with the dividend yield (equity, ETF, index options), Black-76 (future options; VIX options on "
    "their VX future, at its close or else the broker's mark from option_quotes), European "
    "(early exercise ignored), IV of the option's expiration from the same evening's term structure "
    "(linear in total variance between expirations, flagged when extrapolated), Tastytrade's public "
    "risk-free rate. Per share and per position (times quantity and multiplier), plus beta-weighted "
    "delta in SPY shares. Positions that cannot be priced honestly are listed with the reason.",
    check_specs=[
        schema_check_spec(POSITION_GREEKS, description="no NaN Greek, sane ranges"),
        dg.AssetCheckSpec(
            "options_priced_or_explained",
            asset="position_greeks",
            description="every option position is priced, or listed as unpriced with the reason (warns)",
        ),
        dg.AssetCheckSpec(
            "put_call_parity", asset="position_greeks", description="the model's call and put satisfy parity"
        ),
    ],
    **ASSET_COMMON,
)
def position_greeks(
    context: dg.AssetExecutionContext, pipeline: PipelineResource
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    lake = pipeline.lake
    days = [day for day in run_sessions(context) if lake.has_partition("positions", day)]
    if not days:
        reason = "no positions snapshot landed for this run's sessions (snapshots cannot look back)"
        checks = (POSITION_GREEKS.check_name, "options_priced_or_explained", "put_call_parity")
        yield from nothing_landed(reason, [(check, "position_greeks") for check in checks])
        return
    priced_all, unpriced_all, outcomes, metadata = [], [], [], {}
    store, symbols = pipeline.candle_cache(), candle_symbols(lake, run_sessions(context))
    for day in days:
        priced, unpriced, notes = _price_session(lake, store, symbols, day)
        for note in notes:
            context.log.warning(f"position_greeks: {note}")
        outcome = validate_frame(POSITION_GREEKS, priced)
        metadata = land_validated(lake, "position_greeks", day, outcome)
        priced_all.append(outcome.valid)
        unpriced_all.append(unpriced)
        outcomes.append(outcome)
    priced = pd.concat(priced_all, ignore_index=True)
    unpriced = pd.concat(unpriced_all, ignore_index=True)
    options = priced["option_type"].notna()
    yield dg.MaterializeResult(
        metadata={
            **metadata,
            **landed("position_greeks", len(priced)),
            "landed": True,
            "sessions": dg.MetadataValue.text(", ".join(str(d) for d in days)),
            "options_priced": int(options.sum()),
            "positions_unpriced": len(unpriced),
            # Deltas of different underlyings do not add up; beta-weighted (SPY shares) they do.
            "net_beta_weighted_delta_spy_shares": round(float(priced["beta_weighted_delta"].sum()), 1),
            "net_theta_per_day_usd": round(float(priced["position_theta"].sum()), 2),
            "net_vega_per_vol_point_usd": round(float(priced["position_vega"].sum()), 2),
            "options_iv_from_mark": int((priced["iv_source"] == "mark").sum()),
            # The fallback, loudly: priced on the continuous (/ES) because the own contract had no close.
            "priced_on_root_continuous": dg.MetadataValue.text(
                ", ".join(priced.loc[priced["underlying_price_source"] == "root_continuous", "symbol"]) or "none"
            ),
            "unpriced": preview(unpriced[["account_number", "symbol", "reason"]], rows=50),
        }
    )
    worst = max(outcomes, key=lambda o: len(o.quarantined))
    yield validation_check(worst)
    yield dg.AssetCheckResult(
        check_name="options_priced_or_explained",
        asset_key="position_greeks",
        passed=unpriced.empty,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "unpriced_count": len(unpriced),
            "unpriced": preview(unpriced[["account_number", "symbol", "reason"]], rows=50),
            "every_position_accounted_for": bool(
                sum(len(lake.read_partition("positions", d)) for d in days) == len(priced) + len(unpriced)
                + sum(len(o.quarantined) for o in outcomes)
            ),
        },
    )
    gaps = put_call_parity_gaps(priced)
    scale = np.maximum(priced.loc[priced["model"].notna(), "strike"].to_numpy(dtype=float), 1.0)
    worst_gap = float(np.max(np.abs(gaps["parity_gap"].to_numpy()) / scale)) if len(gaps) else 0.0
    worst_price = float(np.max(np.abs(gaps["price_gap"].to_numpy()) / scale)) if len(gaps) else 0.0
    yield dg.AssetCheckResult(
        check_name="put_call_parity",
        asset_key="position_greeks",
        passed=max(worst_gap, worst_price) <= PARITY_TOLERANCE,
        metadata={"options_checked": len(gaps), "max_relative_parity_gap": worst_gap, "max_relative_price_gap": worst_price},
    )
