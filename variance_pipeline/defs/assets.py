"""The pipeline's assets: extract -> validate -> land -> compute -> load, one NYSE session per key.

Every asset shares the sessions partitions definition and a single-run backfill policy, so a
backfill of any range is one run and each asset sees the whole ``partition_key_range``.
"""

import warnings
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Iterator
from urllib.parse import quote

import dagster as dg
import pandas as pd

from variance_pipeline.calendar import (
    last_closed_session,
    session_close,
    sessions_back,
    sessions_in_range,
    sessions_partitions_def,
)
from variance_pipeline.candle_cache import CandleCache, read_lookback, refresh_candles
from variance_pipeline.defs.metadata import path_value, preview, skipped_check, validation_check
from variance_pipeline.defs.resources import PipelineResource, TastytradeResource, WarehouseResource, YahooResource
from variance_pipeline.lake import Lake
from variance_pipeline.sources.http import RequestStats, SourceError
from variance_pipeline.sources.tastytrade import (
    TastytradeClient,
    TastytradeDataError,
    held_underlyings,
    market_metrics_frames,
    positions_frame,
)
from variance_pipeline.validation.candles import CandlesSchema
from variance_pipeline.validation.market_metrics import MarketMetricsSchema, TermStructureSchema
from variance_pipeline.validation.positions import PositionsSchema
from variance_pipeline.validation.realized_volatility import RealizedVolatilitySchema
from variance_pipeline.validation.report import ValidationOutcome, validate_frame
from variance_pipeline.volatility import compute_realized_volatility
from variance_pipeline.warehouse.load import load_sessions

# BackfillPolicy is "beta" in Dagster 1.13 yet the only way to run a range as one run; the
# warning is known and would drown the run log.
warnings.filterwarnings("ignore", category=dg.BetaWarning)

PARTITIONS = sessions_partitions_def()
BACKFILL = dg.BackfillPolicy.single_run()
HV_LOOKBACK = 253  # HV252 needs 253 closes


def run_sessions(context: dg.AssetExecutionContext) -> list[date]:
    """The NYSE sessions of this run's partition range (one key or a backfill range)."""
    key_range = context.partition_key_range
    return sessions_in_range(date.fromisoformat(key_range.start), date.fromisoformat(key_range.end))


@dataclass(frozen=True)
class SnapshotWindow:
    """Which session (if any) of this run a snapshot may land in, and why."""

    session: date | None
    fetched_at: datetime
    reason: str
    deadline: datetime | None = None  # the next session's close: after it, this snapshot is gone

    def failure(self, dataset: str, exc: Exception, stats: RequestStats, raw_dir: Path | None = None) -> dg.Failure:
        """The run-failing error for a snapshot that could not be taken (or read) this time.

        A snapshot cannot be fetched later, so the message says until when a re-run still can.
        """
        kept = f" The responses received so far are kept under {raw_dir}." if raw_dir is not None else ""
        deadline = f" until {self.deadline.isoformat()} (the next session's close)" if self.deadline else ""
        return dg.Failure(
            description=(
                f"{dataset}: {exc} [{stats.requests} request(s), {stats.retries} retries, "
                f"{stats.waited_seconds:.1f} s waited]. Nothing was written to lake/{dataset} for "
                f"{self.session}; its snapshot can still be taken{deadline} by re-running this "
                f"partition.{kept}"
            ),
            metadata={**stats.as_metadata(), "session": str(self.session)},
        )


def snapshot_window(context: dg.AssetExecutionContext, pipeline: PipelineResource, dataset: str) -> SnapshotWindow:
    """Apply the contract's rule: a snapshot lands only in the current session (by the clock)."""
    now = pipeline.clock()
    current = last_closed_session(now)
    sessions = run_sessions(context)
    if current in sessions:
        following = sessions_in_range(current + timedelta(days=1), current + timedelta(days=15))
        deadline = session_close(following[0]) if following else None
        return SnapshotWindow(current, now, f"snapshot of {now.isoformat()} lands in session {current}", deadline)
    span = f"{sessions[0]}..{sessions[-1]}" if sessions else "(no sessions)"
    reason = (
        f"{dataset} is a snapshot and cannot look back: at {now.isoformat()} the current session is "
        f"{current}, so nothing is written for {span}"
    )
    context.log.warning(reason)
    return SnapshotWindow(None, now, reason)


def land_validated(
    lake: Lake, dataset: str, day: date, outcome: ValidationOutcome
) -> dict[str, dg.MetadataValue | int | str]:
    """Write the valid rows to the lake and the rejected rows to quarantine; report both."""
    path = lake.write_partition(dataset, day, outcome.valid)
    metadata: dict[str, dg.MetadataValue | int | str] = {
        "rows": len(outcome.valid),
        "parquet_path": path_value(path),
        "preview": preview(outcome.valid),
    }
    if not outcome.quarantined.empty:
        metadata["quarantine_path"] = path_value(lake.write_quarantine(dataset, day, outcome.quarantined))
        metadata["rows_quarantined"] = len(outcome.quarantined)
    return metadata


@dataclass(frozen=True)
class PositionsFetch:
    """Position items of every open account, and those listed under an account not theirs."""

    items: list[dict]
    misfiled: list[str]  # "SYMBOL (account-number X, listed under Y)"


def fetch_positions(client: TastytradeClient, lake: Lake | None, day: date | None) -> PositionsFetch:
    """Every position of every open account; raw responses land under raw/ when ``lake`` is given.

    The raw bodies are written as each response arrives, before anything parses them, so a
    parse failure (or a later request failing) never loses what the API already said. An item
    whose ``account-number`` is not the account it was listed under is not that account's
    position: it is left out (and reported) rather than counted twice or under the wrong account.
    """
    items: list[dict] = []
    misfiled: list[str] = []
    accounts = client.accounts()
    if lake is not None and day is not None:
        for raw in accounts.raw:
            lake.write_raw("positions", day, raw.name, raw.body)
    for account in accounts.items:
        number = str(account["account-number"])
        fetched = client.positions(number)
        if lake is not None and day is not None:
            for raw in fetched.raw:
                lake.write_raw("positions", day, raw.name, raw.body)
        for item in fetched.items:
            owner = item.get("account-number")
            if owner not in (None, "") and str(owner) != number:
                misfiled.append(f"{item.get('symbol')!r} (account-number {owner}, listed under {number})")
            else:
                items.append(item)
    return PositionsFetch(items, misfiled)


def resolve_universe(pipeline: PipelineResource, tastytrade: TastytradeResource, stats: RequestStats) -> list[str]:
    """Held underlyings (newest landed positions snapshot, else the API) + the watchlist."""
    lake = pipeline.lake
    latest = lake.latest_partition("positions")
    if latest is not None:
        held = held_underlyings(lake.read_partition("positions", latest))
    else:
        with tastytrade.client(stats) as client:
            items = fetch_positions(client, None, None).items
        now = pipeline.clock()
        held = held_underlyings(positions_frame(items, as_of_date=last_closed_session(now), fetched_at=now))
    return list(dict.fromkeys([*held, *pipeline.watchlist_symbols()]))


ASSET_COMMON = dict(partitions_def=PARTITIONS, backfill_policy=BACKFILL, owners=["team:variance"])


@dg.asset(
    group_name="extract",
    kinds={"python", "parquet"},
    description="Open positions of every open Tastytrade account (snapshot: current session only). "
    "Quantity is signed (short < 0); root_symbol is the underlying whose volatility matters. "
    "Raw responses land under raw/positions/ before parsing. If the API cannot be read (a 429 "
    "storm outlasting the retry budget, 5xx, rejected credentials) or an item lacks a required "
    "field, the run fails naming the cause and writes no lake partition: a snapshot cannot be "
    "fetched later, so a loud failure that says until when a re-run can still take it beats a "
    "silently missing day.",
    check_specs=[dg.AssetCheckSpec("positions_schema", asset="positions", description="pandera PositionsSchema")],
    **ASSET_COMMON,
)
def positions(
    context: dg.AssetExecutionContext, pipeline: PipelineResource, tastytrade: TastytradeResource
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    window = snapshot_window(context, pipeline, "positions")
    if window.session is None:
        yield dg.MaterializeResult(metadata={"landed": False, "reason": window.reason})
        yield skipped_check("positions_schema", "positions", window.reason)
        return
    stats = RequestStats()
    lake = pipeline.lake
    raw_dir = lake.raw_dir("positions", window.session)
    try:
        with tastytrade.client(stats) as client:
            fetched = fetch_positions(client, lake, window.session)
        frame = positions_frame(fetched.items, as_of_date=window.session, fetched_at=window.fetched_at)
    except (SourceError, TastytradeDataError) as exc:
        raise window.failure("positions", exc, stats, raw_dir if raw_dir.exists() else None) from exc
    if fetched.misfiled:
        context.log.warning(
            f"positions: {len(fetched.misfiled)} item(s) listed under an account they do not belong to "
            f"were left out: {'; '.join(fetched.misfiled[:10])}"
        )
    outcome = validate_frame(PositionsSchema, frame, "positions")
    metadata = land_validated(lake, "positions", window.session, outcome)
    yield dg.MaterializeResult(
        metadata={
            **metadata,
            "landed": True,
            "session": str(window.session),
            "accounts": int(frame["account_number"].nunique()) if not frame.empty else 0,
            "underlyings": dg.MetadataValue.text(", ".join(held_underlyings(outcome.valid))),
            "raw_path": path_value(raw_dir),
            "items_misfiled": len(fetched.misfiled),
            **stats.as_metadata(),
        }
    )
    yield validation_check("positions_schema", outcome, "positions")


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            "market_metrics",
            deps=["positions"],
            group_name="extract",
            kinds={"python", "parquet"},
            description="Tastytrade volatility metrics per underlying (snapshot): IV, IV rank/percentile, "
            "HV30/60/90, liquidity, beta, earnings. Every volatility is a fraction. Universe = held "
            "underlyings + watchlist, asked in batches (TastytradeResource.batch_size); symbols the API "
            "does not answer are listed in metadata and warned by metrics_symbols_present. A 429 is "
            "retried with backoff (Retry-After honoured); a 429 storm outlasting the retry budget fails "
            "the run with the cause and the time until which a re-run can still take this session's "
            "snapshot, and lands no partial lake partition (raw bodies received are kept): a snapshot "
            "cannot be backfilled, and a red run is what gets it re-run in time, where a quietly "
            "empty day would leave the dashboard on stale IV.",
            owners=["team:variance"],
        ),
        dg.AssetSpec(
            "iv_term_structure",
            deps=["positions"],
            group_name="extract",
            kinds={"python", "parquet"},
            description="Implied volatility per option expiration of each underlying (snapshot).",
            owners=["team:variance"],
        ),
    ],
    check_specs=[
        dg.AssetCheckSpec("market_metrics_schema", asset="market_metrics"),
        dg.AssetCheckSpec("iv_term_structure_schema", asset="iv_term_structure"),
        dg.AssetCheckSpec(
            "metrics_symbols_present",
            asset="market_metrics",
            description="Every universe symbol came back from /market-metrics (warns with the missing list).",
        ),
    ],
    partitions_def=PARTITIONS,
    backfill_policy=BACKFILL,
)
def market_metrics(
    context: dg.AssetExecutionContext, pipeline: PipelineResource, tastytrade: TastytradeResource
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    window = snapshot_window(context, pipeline, "market_metrics")
    if window.session is None:
        for key in ("market_metrics", "iv_term_structure"):
            yield dg.MaterializeResult(asset_key=key, metadata={"landed": False, "reason": window.reason})
        for check, key in (
            ("market_metrics_schema", "market_metrics"),
            ("iv_term_structure_schema", "iv_term_structure"),
            ("metrics_symbols_present", "market_metrics"),
        ):
            yield skipped_check(check, key, window.reason)
        return
    stats = RequestStats()
    lake = pipeline.lake
    session = window.session
    raw_dir = lake.raw_dir("market_metrics", session)
    try:
        universe = resolve_universe(pipeline, tastytrade, stats)
        with tastytrade.client(stats) as client:
            fetched = client.market_metrics(
                universe,
                batch_size=tastytrade.batch_size,
                on_raw=lambda raw: lake.write_raw("market_metrics", session, raw.name, raw.body),
            )
        metrics, term = market_metrics_frames(fetched.items, as_of_date=session, fetched_at=window.fetched_at)
    except (SourceError, TastytradeDataError) as exc:
        raise window.failure("market_metrics", exc, stats, raw_dir if raw_dir.exists() else None) from exc
    metrics_outcome = validate_frame(MarketMetricsSchema, metrics, "market_metrics")
    term_outcome = validate_frame(TermStructureSchema, term, "iv_term_structure")
    missing = list(fetched.missing)
    if missing:
        context.log.warning(f"market_metrics: the API returned nothing for {', '.join(missing)}")
    yield dg.MaterializeResult(
        asset_key="market_metrics",
        metadata={
            **land_validated(lake, "market_metrics", window.session, metrics_outcome),
            "landed": True,
            "session": str(window.session),
            "symbols_requested": len(universe),
            "symbols_missing": dg.MetadataValue.text(", ".join(missing) or "none"),
            "batches": len(fetched.raw),
            "raw_path": path_value(raw_dir),
            **stats.as_metadata(),
        },
    )
    yield dg.MaterializeResult(
        asset_key="iv_term_structure",
        metadata={**land_validated(lake, "iv_term_structure", window.session, term_outcome), "landed": True},
    )
    yield validation_check("market_metrics_schema", metrics_outcome, "market_metrics")
    yield validation_check("iv_term_structure_schema", term_outcome, "iv_term_structure")
    yield dg.AssetCheckResult(
        check_name="metrics_symbols_present",
        asset_key="market_metrics",
        passed=not missing,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"missing": dg.MetadataValue.text(", ".join(missing) or "none"), "missing_count": len(missing)},
    )


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
    from variance_pipeline.candle_cache import rebase_lake_candles
    from variance_pipeline.warehouse.load import request_reload

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
        name = f"chart_{quote(response.yahoo_ticker, safe='')}_{response.start}_{response.end}.json"
        lake.write_raw("candles", sessions[-1], name, response.body)
    frame = refresh.frame(sessions[0], sessions[-1])
    outcome = validate_frame(CandlesSchema, frame, "candles")
    written = 0
    for day, group in outcome.valid.groupby("session_date", sort=True):
        lake.write_partition("candles", day, group.reset_index(drop=True))
        written += 1
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


@dg.asset(
    deps=["candles"],
    group_name="transform",
    kinds={"python", "duckdb", "parquet"},
    description="Realised volatility per underlying and session from the cached candles: close-to-close "
    "HV20/30/90/252 (NULL until n returns exist) and 20-session range estimators, as fractions.",
    check_specs=[dg.AssetCheckSpec("realized_volatility_schema", asset="realized_volatility")],
    **ASSET_COMMON,
)
def realized_volatility(
    context: dg.AssetExecutionContext, pipeline: PipelineResource, tastytrade: TastytradeResource
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    sessions = run_sessions(context)
    lake = pipeline.lake
    universe = resolve_universe(pipeline, tastytrade, RequestStats())
    window_start = sessions_back(sessions[0], HV_LOOKBACK + 1)[0]
    history = read_lookback(
        CandleCache(lake.candle_cache_dir), universe, sessions[-1], len(sessions_in_range(window_start, sessions[-1]))
    )
    result = compute_realized_volatility(history, sessions)
    outcome = validate_frame(RealizedVolatilitySchema, result, "realized_volatility")
    written = 0
    for day, group in outcome.valid.groupby("session_date", sort=True):
        lake.write_partition("realized_volatility", day, group.reset_index(drop=True))
        written += 1
    latest = outcome.valid[outcome.valid["session_date"] == outcome.valid["session_date"].max()] if written else outcome.valid
    yield dg.MaterializeResult(
        metadata={
            "rows": len(outcome.valid),
            "sessions_written": written,
            "symbols": int(outcome.valid["symbol"].nunique()) if written else 0,
            "hv252_non_null": int(outcome.valid["hv252"].notna().sum()) if written else 0,
            "last_parquet_path": path_value(lake.partition_path("realized_volatility", sessions[-1])),
            "preview": preview(latest),
        }
    )
    yield validation_check("realized_volatility_schema", outcome, "realized_volatility")


@dg.asset(
    deps=["positions", "market_metrics", "iv_term_structure", "candles", "realized_volatility"],
    group_name="warehouse",
    kinds={"duckdb"},
    pool="duckdb",
    description="Loads the run's sessions from the lake into warehouse.duckdb in one transaction "
    "(delete + insert per session: idempotent) and refreshes the vol_dashboard and portfolio views.",
    **ASSET_COMMON,
)
def warehouse(
    context: dg.AssetExecutionContext, pipeline: PipelineResource, warehouse_db: WarehouseResource
) -> dg.MaterializeResult:
    from variance_pipeline.defs.charts import render_vol_chart

    sessions = run_sessions(context)
    with warehouse_db.connect() as con:
        report = load_sessions(con, pipeline.lake, sessions, run_id=context.run_id)
        dashboard = con.execute("SELECT * FROM vol_dashboard ORDER BY symbol").df()
        counts = {
            table: con.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0] for table in report.rows_by_table
        }
        # The picture is a view of data already committed: a drawing error is reported, not fatal.
        try:
            chart = render_vol_chart(
                con, pipeline.lake.root / "reports", sessions[-1], fallback_symbols=pipeline.watchlist_symbols()
            )
            chart_metadata: dict[str, dg.MetadataValue] = chart.metadata()
        except Exception as exc:  # noqa: BLE001
            context.log.warning(f"vol chart not drawn: {exc!r}")
            chart_metadata = {"vol_chart_error": dg.MetadataValue.text(repr(exc))}
    return dg.MaterializeResult(
        metadata={
            "rows_loaded": report.total_rows,
            **{f"rows_loaded_{t}": n for t, n in report.rows_by_table.items()},
            **{f"table_rows_{t}": int(n) for t, n in counts.items()},
            "warehouse_path": path_value(pipeline.lake.warehouse_path),
            "vol_dashboard": preview(dashboard, rows=20),
            **chart_metadata,
        }
    )


ALL_ASSETS = [positions, market_metrics, candles, realized_volatility, warehouse]
