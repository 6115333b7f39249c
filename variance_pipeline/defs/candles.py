"""The ``candles`` asset: cache-first Yahoo OHLCV for the universe, one request per symbol at most."""

from typing import Iterator

import dagster as dg
import pandas as pd

from variance_pipeline.candle_cache import CandleCache, file_stem, refresh_candles
from variance_pipeline.candle_rebase import rebase_lake_candles
from variance_pipeline.defs.common import ASSET_COMMON, land_by_session, run_sessions
from variance_pipeline.defs.metadata import path_value, preview, validation_check
from variance_pipeline.defs.resources import PipelineResource, TastytradeResource, YahooResource
from variance_pipeline.defs.snapshots import resolve_universe
from variance_pipeline.sources.http import RequestStats
from variance_pipeline.validation.candles import CandlesSchema
from variance_pipeline.validation.report import validate_frame
from variance_pipeline.warehouse.load import request_reload


@dg.asset(
    deps=["positions"],
    group_name="extract",
    kinds={"python", "parquet"},
    description="Daily OHLCV bars (final bars only) for every underlying, cache-first from Yahoo's chart "
    "endpoint: one request per symbol for any range, none when the cache already has it.",
    check_specs=[
        dg.AssetCheckSpec("candles_schema", asset="candles", description="pandera CandlesSchema"),
        dg.AssetCheckSpec("candles_fresh", asset="candles", description="No symbol served from a stale cache"),
    ],
    **ASSET_COMMON,
)
def candles(
    context: dg.AssetExecutionContext,
    pipeline: PipelineResource,
    tastytrade: TastytradeResource,
    yahoo: YahooResource,
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    sessions = run_sessions(context)
    lake = pipeline.lake
    stats = RequestStats()
    universe = resolve_universe(pipeline, tastytrade, RequestStats())
    cache = CandleCache(lake.candle_cache_dir)
    with yahoo.client(stats) as client:
        refresh = refresh_candles(
            universe,
            sessions[0],
            sessions[-1],
            now=pipeline.clock(),
            client=client,
            cache=cache,
            lookback=yahoo.lookback_sessions,
            log=context.log.info,
        )
    for response in refresh.responses:
        name = f"chart_{file_stem(response.yahoo_ticker)}_{response.start}_{response.end}.json"
        lake.write_raw("candles", sessions[-1], name, response.body)
    frame = refresh.frame(sessions[0], sessions[-1])
    outcome = validate_frame(CandlesSchema, frame, "candles")
    written = land_by_session(lake, "candles", outcome.valid)
    # A re-based symbol (split, new dividend adjustment, other ticker): its rows in partitions
    # landed by earlier runs are on the old scale. Rewrite them from the cache, have the warehouse
    # reload those sessions, and only then clear the cache's pending flag (a crash redoes it).
    rebased = refresh.rebased_symbols
    rebase = rebase_lake_candles(lake, cache, rebased, skip=sessions)
    if not rebase.empty:
        request_reload(lake, "candles", rebase.sessions, reason=f"re-based {', '.join(rebased)}")
        context.log.warning(
            f"candles: {', '.join(rebased)} re-based; rewrote {len(rebase.sessions)} earlier partition(s) "
            f"({rebase.sessions[0]}..{rebase.sessions[-1]}, {rebase.rows_replaced} rows, "
            f"{rebase.rows_dropped} without a new bar dropped); the warehouse reloads them"
        )
    cache.mark_lake_synced(rebased)
    quarantined = outcome.quarantined
    if not rebase.quarantined.empty:
        quarantined = pd.concat([quarantined.astype(str), rebase.quarantined.astype(str)], ignore_index=True)
    if not quarantined.empty:
        lake.write_quarantine("candles", sessions[-1], quarantined)
    by_status: dict[str, list[str]] = {}
    for status in refresh.statuses:
        by_status.setdefault(status.status, []).append(status.symbol)
    stale = by_status.get("stale", []) + by_status.get("unavailable", [])
    yield dg.MaterializeResult(
        metadata={
            "rows": len(outcome.valid),
            "sessions_written": written,
            "symbols": len(universe),
            "symbols_fetched": len(by_status.get("fetched", [])),
            "cache_hits": len(by_status.get("cached", [])),
            "stale_symbols": dg.MetadataValue.text(", ".join(stale) or "none"),
            "null_bars_dropped": refresh.null_bars_dropped,
            "live_bars_dropped": refresh.live_bars_dropped,
            "rebased_symbols": dg.MetadataValue.text(", ".join(rebased) or "none"),
            "sessions_rewritten": dg.MetadataValue.text(", ".join(str(d) for d in rebase.sessions) or "none"),
            "last_parquet_path": path_value(lake.partition_path("candles", sessions[-1])),
            "preview": preview(outcome.valid.sort_values(["session_date", "symbol"]).tail(10)),
            **stats.as_metadata(),
        }
    )
    yield validation_check("candles_schema", outcome, "candles")
    yield dg.AssetCheckResult(
        check_name="candles_fresh",
        asset_key="candles",
        passed=not stale,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "stale_or_unavailable": dg.MetadataValue.md(
                "\n".join(f"- {s.symbol}: {s.status} ({s.message})" for s in refresh.statuses if s.symbol in stale)
                or "none"
            )
        },
    )
