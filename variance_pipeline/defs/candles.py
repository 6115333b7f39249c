"""The ``candles`` asset: store-first Yahoo OHLCV for the universe, one request per symbol at most."""

from dataclasses import replace
from datetime import date, timedelta
from typing import Callable, Iterator

import dagster as dg
import pandas as pd

from variance_pipeline.candles.refresh import refresh_candles
from variance_pipeline.schemas.candles import CANDLES
from variance_pipeline.defs.common import ASSET_COMMON, candle_symbols, raw_lander
from variance_pipeline.defs.metadata import column_schema, schema_check_spec, landed, path_value, preview, validation_check
from variance_pipeline.defs.partitions import run_sessions
from variance_pipeline.defs.resources import PipelineResource, YahooResource
from variance_pipeline.lake.layout import Lake
from variance_pipeline.sources.http import RequestStats


def quarantine_lander(lake: Lake, day: date) -> Callable[[pd.DataFrame], None]:
    """Refused bars to ``quarantine/candles/date=<day>/`` as they are refused: the run's file is
    rewritten with every row so far, so it is whole at any moment and a re-run replaces it."""
    rows: list[pd.DataFrame] = []

    def land(frame: pd.DataFrame) -> None:
        rows.append(frame)
        lake.write_quarantine("candles", day, pd.concat(rows, ignore_index=True))

    return land


@dg.asset(
    deps=["universe"],
    metadata={"dagster/column_schema": column_schema(CANDLES)},
    group_name="extract",
    kinds={"python", "parquet"},
    description="Daily OHLCV bars (final bars only) for every universe symbol and every held dated futures "
    "contract (/MESM6 as MESM26.CME: future options are priced on it), store-first from Yahoo's "
    "chart endpoint: one request per symbol for any range, none when the store already has it. One "
    "file per symbol (lake/candles/symbol=<s>/), validated bars only.",
    check_specs=[
        schema_check_spec(CANDLES),
        dg.AssetCheckSpec("candles_fresh", asset="candles", description="No symbol served from stale stored bars"),
    ],
    **ASSET_COMMON,
)
def candles(
    context: dg.AssetExecutionContext, pipeline: PipelineResource, yahoo: YahooResource
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    sessions = run_sessions(context)
    lake = pipeline.lake
    stats = RequestStats()
    symbols = candle_symbols(lake, sessions)
    store = pipeline.candle_cache()
    with yahoo.client(stats) as client:
        context.log.info(
            f"candles: {len(symbols)} symbols, at most one request each: {client.pace_message(len(symbols))} "
            "(symbols the store already covers cost nothing)"
        )
        refresh = refresh_candles(
            symbols,
            sessions[0],
            sessions[-1],
            now=pipeline.clock(),
            client=client,
            store=store,
            log=context.log.info,
            on_raw=raw_lander(lake, "candles", sessions[-1]),
            on_rejected=quarantine_lander(lake, sessions[-1]),
            not_found_retry=timedelta(days=yahoo.not_found_retry_days),
        )
    rescaled = refresh.rescaled_symbols
    if rescaled:
        context.log.warning(
            f"candles: {', '.join(rescaled)} re-scaled (split, dividend adjustment or another ticker): each "
            "symbol's file was replaced with its whole history; the warehouse reloads what it holds of them"
        )
    by_status: dict[str, list[str]] = {}
    for status in refresh.statuses:
        by_status.setdefault(status.status, []).append(status.symbol)
    stale = by_status.get("stale", []) + by_status.get("unavailable", [])
    remembered = [f"{s.symbol} (until {s.not_found_until:%Y-%m-%d})" for s in refresh.statuses if s.not_found_until]
    valid = refresh.frame(sessions[0], sessions[-1])
    quarantined = refresh.quarantined
    yield dg.MaterializeResult(
        metadata={
            **landed("candles", len(valid)),
            "rows": len(valid),
            "sessions_written": int(valid["session_date"].nunique()),
            "symbols": len(symbols),
            "symbols_fetched": len(by_status.get("fetched", [])),
            "cache_hits": len(by_status.get("cached", [])),
            "stale_symbols": dg.MetadataValue.text(", ".join(stale) or "none"),
            "not_found_remembered": dg.MetadataValue.text(", ".join(remembered) or "none"),
            "cache_files_read": store.files_read,
            "null_bars_dropped": refresh.null_bars_dropped,
            "live_bars_dropped": refresh.live_bars_dropped,
            "rows_quarantined": len(quarantined),
            "rescaled_symbols": dg.MetadataValue.text(", ".join(rescaled) or "none"),
            "store_path": path_value(lake.candles_dir),
            **({"quarantine_path": path_value(lake.quarantine_path("candles", sessions[-1]))} if len(quarantined) else {}),
            "preview": preview(valid.sort_values(["session_date", "symbol"]).tail(10)),
            **stats.as_metadata(),
        }
    )
    # The declaration's verdict on what was fetched, reported against the run's stored rows.
    yield validation_check(replace(refresh.validation, valid=valid))
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
