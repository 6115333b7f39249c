"""Asset checks that look across datasets: freshness, coverage, and reconciliation with Tastytrade.

The per-dataset pandera checks run inside their assets (the asset already holds the frame); the
checks here read what was landed, so they can be re-run from the UI at any time.
"""

import dagster as dg
import duckdb
from pydantic import Field

from variance_pipeline.calendar import last_closed_session
from variance_pipeline.defs.metadata import preview
from variance_pipeline.defs.resources import PipelineResource, WarehouseResource


@dg.asset_check(
    asset="candles",
    description="Every symbol of the newest landed universe (held underlyings + watchlist) has a bar in "
    "the newest session the candle store holds for them; warns with the missing list (halted, delisted, "
    "or served stale).",
)
def candles_cover_universe(pipeline: PipelineResource) -> dg.AssetCheckResult:
    lake = pipeline.lake
    newest_universe = lake.latest_partition("universe")
    universe = [str(s) for s in lake.read_partition("universe", newest_universe)["symbol"]] if newest_universe else []
    store = pipeline.candle_cache()  # in a run, the candles step's reads: nothing read again
    last = {symbol: bars["session_date"].max() for symbol in universe if len(bars := store.read(symbol))}
    latest = max(last.values(), default=None)
    missing = sorted(symbol for symbol in universe if last.get(symbol) != latest)
    return dg.AssetCheckResult(
        passed=not missing,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "session": str(latest),
            "universe_size": len(universe),
            "missing": dg.MetadataValue.text(", ".join(missing) or "none"),
            "missing_count": len(missing),
        },
    )


@dg.asset_check(
    asset="warehouse",
    description="The warehouse holds the last closed NYSE session (by the pipeline clock).",
)
def warehouse_is_fresh(pipeline: PipelineResource, warehouse_db: WarehouseResource) -> dg.AssetCheckResult:
    expected = last_closed_session(pipeline.clock())
    with warehouse_db.connect() as con:
        latest = con.execute("SELECT max(session_date) FROM candles").fetchone()[0]
    return dg.AssetCheckResult(
        passed=latest is not None and latest >= expected,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"latest_session": str(latest), "expected_session": str(expected)},
        description=None if latest == expected else f"newest candles are from {latest}; expected {expected}",
    )


class HvReconciliationConfig(dg.Config):
    tolerance: float = Field(
        default=0.05, description="largest acceptable |our HV30 - Tastytrade HV30|, as a fraction (0.05 = 5 vol points)"
    )


@dg.asset_check(
    asset="realized_volatility",
    description="Our close-to-close HV30 against Tastytrade's historical-volatility-30-day on the same "
    "session: warns per symbol beyond the tolerance (Tastytrade does not document its window, so this "
    "reconciles rather than proves).",
)
def hv30_reconciles_with_tastytrade(
    config: HvReconciliationConfig, pipeline: PipelineResource
) -> dg.AssetCheckResult:
    lake = pipeline.lake
    day = lake.latest_partition("market_metrics")
    if day is None or not lake.has_partition("realized_volatility", day):
        return dg.AssetCheckResult(
            passed=True, metadata={"skipped": "no session with both market metrics and realised volatility"}
        )
    diffs = duckdb.sql(
        """
        SELECT r.symbol, r.hv30 AS our_hv30, m.hv_30_day AS tastytrade_hv30, r.hv30 - m.hv_30_day AS hv30_diff
        FROM read_parquet($rv) AS r JOIN read_parquet($mm) AS m USING (symbol)
        WHERE r.hv30 IS NOT NULL AND m.hv_30_day IS NOT NULL
        ORDER BY abs(r.hv30 - m.hv_30_day) DESC
        """,
        params={
            "rv": str(lake.partition_path("realized_volatility", day)),
            "mm": str(lake.partition_path("market_metrics", day)),
        },
    ).df()
    beyond = diffs[diffs["hv30_diff"].abs() > config.tolerance]
    return dg.AssetCheckResult(
        passed=beyond.empty,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "session": str(day),
            "tolerance": config.tolerance,
            "symbols_compared": len(diffs),
            "beyond_tolerance": dg.MetadataValue.text(", ".join(beyond["symbol"]) or "none"),
            "largest_differences": preview(diffs),
        },
    )

