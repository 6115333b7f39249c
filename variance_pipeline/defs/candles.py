"""The ``candles`` asset: cache-first Yahoo OHLCV for the universe, one request per symbol at most."""

from datetime import timedelta
from typing import Iterator

import dagster as dg

from variance_pipeline.candles.refresh import refresh_candles
from variance_pipeline.candles.sync import sync_lake
from variance_pipeline.schemas.candles import CANDLES
from variance_pipeline.defs.common import ASSET_COMMON, raw_lander, universe_symbols
from variance_pipeline.defs.metadata import column_schema, schema_check_spec, landed, path_value, preview, validation_check
from variance_pipeline.defs.partitions import run_sessions
from variance_pipeline.defs.resources import PipelineResource, YahooResource
from variance_pipeline.sources.http import RequestStats


@dg.asset(
    deps=["universe"],
    metadata={"dagster/column_schema": column_schema(CANDLES)},
    group_name="extract",
    kinds={"python", "parquet"},
    description="Daily OHLCV bars (final bars only) for every universe symbol, cache-first from Yahoo's "
    "chart endpoint: one request per symbol for any range, none when the cache already has it.",
    check_specs=[
        schema_check_spec(CANDLES),
        dg.AssetCheckSpec("candles_fresh", asset="candles", description="No symbol served from a stale cache"),
    ],
    **ASSET_COMMON,
)
def candles(
    context: dg.AssetExecutionContext, pipeline: PipelineResource, yahoo: YahooResource
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    sessions = run_sessions(context)
    lake = pipeline.lake
    stats = RequestStats()
    symbols = universe_symbols(lake, sessions)
    cache = pipeline.candle_cache()
    with yahoo.client(stats) as client:
        context.log.info(
            f"candles: {len(symbols)} symbols, at most one request each: {client.pace_message(len(symbols))} "
            "(cached symbols cost nothing)"
        )
        refresh = refresh_candles(
            symbols,
            sessions[0],
            sessions[-1],
            now=pipeline.clock(),
            client=client,
            cache=cache,
            log=context.log.info,
            on_raw=raw_lander(lake, "candles", sessions[-1]),
            not_found_retry=timedelta(days=yahoo.not_found_retry_days),
        )
    synced = sync_lake(lake, cache, refresh, sessions)
    rebase, rebased = synced.rebase, refresh.rebased_symbols
    if not rebase.empty:
        context.log.warning(
            f"candles: {', '.join(rebased)} re-based; rewrote {len(rebase.sessions)} earlier partition(s) "
            f"({rebase.sessions[0]}..{rebase.sessions[-1]}, {rebase.rows_replaced} rows, "
            f"{rebase.rows_dropped} without a new bar dropped); the warehouse reloads them"
        )
    by_status: dict[str, list[str]] = {}
    for status in refresh.statuses:
        by_status.setdefault(status.status, []).append(status.symbol)
    stale = by_status.get("stale", []) + by_status.get("unavailable", [])
    remembered = [f"{s.symbol} (until {s.not_found_until:%Y-%m-%d})" for s in refresh.statuses if s.not_found_until]
    valid = synced.outcome.valid
    yield dg.MaterializeResult(
        metadata={
            **landed("candles", len(valid)),
            "rows": len(valid),
            "sessions_written": len(synced.sessions_written),
            "symbols": len(symbols),
            "symbols_fetched": len(by_status.get("fetched", [])),
            "cache_hits": len(by_status.get("cached", [])),
            "stale_symbols": dg.MetadataValue.text(", ".join(stale) or "none"),
            "not_found_remembered": dg.MetadataValue.text(", ".join(remembered) or "none"),
            "cache_files_read": cache.files_read,
            "null_bars_dropped": refresh.null_bars_dropped,
            "live_bars_dropped": refresh.live_bars_dropped,
            "rebased_symbols": dg.MetadataValue.text(", ".join(rebased) or "none"),
            "sessions_rewritten": dg.MetadataValue.text(", ".join(str(d) for d in rebase.sessions) or "none"),
            "last_parquet_path": path_value(lake.partition_path("candles", sessions[-1])),
            "preview": preview(valid.sort_values(["session_date", "symbol"]).tail(10)),
            **stats.as_metadata(),
        }
    )
    yield validation_check(synced.outcome)
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
