"""The ``realized_volatility`` asset: HV and range estimators from the candle store."""

from typing import Iterator

import dagster as dg

from variance_pipeline.calendar import sessions_back, sessions_in_range
from variance_pipeline.candles.store import read_lookback
from variance_pipeline.defs.common import ASSET_COMMON, universe_symbols
from variance_pipeline.defs.metadata import column_schema, schema_check_spec, landed, path_value, preview, validation_check
from variance_pipeline.defs.partitions import run_sessions
from variance_pipeline.defs.resources import PipelineResource
from variance_pipeline.transforms.volatility import compute_realized_volatility
from variance_pipeline.schemas.realized_volatility import LOOKBACK_SESSIONS, REALIZED_VOLATILITY
from variance_pipeline.schemas.validate import validate_frame


@dg.asset(
    deps=["candles", "universe"],
    metadata={"dagster/column_schema": column_schema(REALIZED_VOLATILITY)},
    group_name="transform",
    kinds={"python", "numpy", "parquet"},
    description="Realised volatility per underlying and session from the stored candles: close-to-close "
    "HV20/30/90/252 (NULL until n returns exist) and 20-session range estimators, as fractions.",
    check_specs=[
        schema_check_spec(
            REALIZED_VOLATILITY,
            blocking=True,
            description="the realized_volatility declaration (pandera); blocking: wrong volatility never reaches "
            "the warehouse",
        )
    ],
    **ASSET_COMMON,
)
def realized_volatility(
    context: dg.AssetExecutionContext, pipeline: PipelineResource
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    sessions = run_sessions(context)
    lake = pipeline.lake
    # HV252 of the first session needs the 252 sessions before it: read that from the store, so a
    # session's volatility never depends on which earlier runs covered those sessions.
    window_start = sessions_back(sessions[0], LOOKBACK_SESSIONS + 1)[0]
    # The run's view of the store: bars the candles step just read or wrote cost no second read.
    store = pipeline.candle_cache()
    files_read_before = store.files_read
    # Validated bars only (the store refuses the rest, remembering their sessions as gaps), so a
    # bar that broke the declaration is simply missing here: the gap rule NULLs its windows.
    bars = read_lookback(
        store,
        universe_symbols(lake, sessions),
        sessions[-1],
        len(sessions_in_range(window_start, sessions[-1])),
    )
    result = compute_realized_volatility(bars, sessions)
    outcome = validate_frame(REALIZED_VOLATILITY, result)
    written = len(lake.write_by_session("realized_volatility", outcome.valid))
    latest = outcome.valid[outcome.valid["session_date"] == outcome.valid["session_date"].max()] if written else outcome.valid
    yield dg.MaterializeResult(
        metadata={
            **landed("realized_volatility", len(outcome.valid)),
            "rows": len(outcome.valid),
            "sessions_written": written,
            "symbols": int(outcome.valid["symbol"].nunique()) if written else 0,
            "hv252_non_null": int(outcome.valid["hv252"].notna().sum()) if written else 0,
            "cache_files_read": store.files_read - files_read_before,
            "last_parquet_path": path_value(lake.partition_path("realized_volatility", sessions[-1])),
            "preview": preview(latest),
        }
    )
    yield validation_check(outcome)
