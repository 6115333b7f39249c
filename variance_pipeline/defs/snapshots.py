"""Snapshot assets: Tastytrade positions, market metrics with the IV term structure, and the
universe every later stage tracks. The snapshot rule itself is ``snapshot_assets.snapshot_asset``.
"""

from typing import Iterator

import dagster as dg

from variance_pipeline.calendar import last_closed_session
from variance_pipeline.defs.common import ASSET_COMMON, land_validated, raw_lander, universe_symbols
from variance_pipeline.defs.metadata import column_schema, schema_check_spec, validation_check
from variance_pipeline.defs.partitions import run_sessions
from variance_pipeline.defs.resources import PipelineResource, TastytradeResource
from variance_pipeline.defs.snapshot_assets import SnapshotCall, SnapshotRows, snapshot_asset
from variance_pipeline.schemas.account import ACCOUNTS
from variance_pipeline.schemas.earnings import EARNINGS_CALENDAR
from variance_pipeline.schemas.market_metrics import IV_TERM_STRUCTURE, MARKET_METRICS
from variance_pipeline.schemas.positions import POSITIONS
from variance_pipeline.schemas.universe import UNIVERSE, universe_frame
from variance_pipeline.schemas.validate import validate_frame
from variance_pipeline.sources.http import RequestStats, SourceError
from variance_pipeline.sources.tastytrade import fetch_positions
from variance_pipeline.sources.tastytrade_account import account_rows
from variance_pipeline.sources.tastytrade_frames import (
    TastytradeDataError, earnings_calendar_rows, market_metrics_rows, positions_rows,
)


def _positions(call: SnapshotCall) -> SnapshotRows:
    fetched = fetch_positions(call.client, call.on_raw)
    if fetched.misfiled:
        call.log.warning(
            f"positions: {len(fetched.misfiled)} item(s) listed under an account they do not belong to "
            f"were left out: {'; '.join(fetched.misfiled[:10])}"
        )
    rows = positions_rows(fetched.items, as_of_date=call.session, fetched_at=call.fetched_at)
    accounts = account_rows(fetched.accounts, as_of_date=call.session, fetched_at=call.fetched_at)
    metadata = {
        "accounts": len({row["account_number"] for row in rows}),
        "underlyings": dg.MetadataValue.text(", ".join(sorted({str(row["root_symbol"]) for row in rows}))),
        "items_misfiled": len(fetched.misfiled),
    }
    return SnapshotRows({"positions": rows, "accounts": accounts}, {"positions": metadata})


positions = snapshot_asset(
    name="positions",
    datasets=[POSITIONS, ACCOUNTS],
    fetch=_positions,
    descriptions={
        "positions": "Open positions of every open Tastytrade account (snapshot: current session only). "
        "Quantity is signed (short < 0); root_symbol is the underlying whose volatility matters. "
        "Raw responses land under raw/positions/ before parsing. If the API cannot be read (a 429 "
        "storm outlasting the retry budget, 5xx, rejected credentials) or an item lacks a required "
        "field, the run fails naming the cause and writes no lake partition: a snapshot cannot be "
        "fetched later, so a loud failure that says until when a re-run can still take it beats a "
        "silently missing day.",
        "accounts": "The trader's accounts as /customers/me/accounts lists them (closed ones included), from "
        "the same request the positions snapshot makes.",
    },
)


@dg.asset(
    deps=["positions"],
    metadata={"dagster/column_schema": column_schema(UNIVERSE)},
    group_name="extract",
    kinds={"python", "parquet"},
    description="The symbols every later stage tracks: the underlyings of the newest positions snapshot "
    "plus the watchlist, each with where it came from (held, watchlist or both). Landed once per run "
    "(in the run's last session); market metrics, candles, realised volatility and the checks read it "
    "and nothing else. Only when no positions snapshot has ever landed (a first run of old partitions) "
    "does it ask Tastytrade for the current positions itself (raw responses under raw/universe/).",
    check_specs=[schema_check_spec(UNIVERSE)],
    **ASSET_COMMON,
)
def universe(
    context: dg.AssetExecutionContext, pipeline: PipelineResource, tastytrade: TastytradeResource
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    session = run_sessions(context)[-1]
    lake = pipeline.lake
    stats = RequestStats()
    snapshot = lake.latest_partition("positions")
    if snapshot is not None:
        held = lake.read_partition("positions", snapshot)
        origin = f"positions snapshot of {snapshot}"
    else:
        now = pipeline.clock()
        snapshot = last_closed_session(now)
        try:
            with tastytrade.client(stats) as client:
                items = fetch_positions(client, raw_lander(lake, "universe", session)).items
            held = POSITIONS.frame(positions_rows(items, as_of_date=snapshot, fetched_at=now))
        except (SourceError, TastytradeDataError) as exc:
            raise dg.Failure(f"universe: no positions snapshot landed yet and the API could not be read: {exc}") from exc
        origin = f"current positions from the API ({snapshot}; not landed: this run's partitions are older)"
    counts = held.groupby("root_symbol").size() if not held.empty else {}
    frame = universe_frame(session, {str(s): int(n) for s, n in dict(counts).items()}, pipeline.watchlist_symbols(), snapshot)
    outcome = validate_frame(UNIVERSE, frame)
    context.log.info(f"universe: {len(outcome.valid)} symbols from the {origin} and the watchlist")
    yield dg.MaterializeResult(
        metadata={
            **land_validated(lake, "universe", session, outcome),
            "symbols": len(outcome.valid),
            "held": int((outcome.valid["held_positions"] > 0).sum()),
            "watchlist_only": int((outcome.valid["source"] == "watchlist").sum()),
            "positions_from": origin,
            **stats.as_metadata(),
        }
    )
    yield validation_check(outcome)


def _market_metrics(call: SnapshotCall) -> SnapshotRows:
    symbols = universe_symbols(call.lake, call.sessions)
    fetched = call.client.market_metrics(symbols, batch_size=call.tastytrade.batch_size, on_raw=call.on_raw)
    metric_rows, term_rows = market_metrics_rows(fetched.items, as_of_date=call.session, fetched_at=call.fetched_at)
    calendar_rows = earnings_calendar_rows(fetched.items, as_of_date=call.session, fetched_at=call.fetched_at)
    missing = list(fetched.missing)
    if missing:
        call.log.warning(f"market_metrics: the API returned nothing for {', '.join(missing)}")
    metadata = {
        "symbols_requested": len(symbols),
        "symbols_missing": dg.MetadataValue.text(", ".join(missing) or "none"),
        "batches": len(fetched.raw),
    }
    present = dg.AssetCheckResult(
        check_name="metrics_symbols_present",
        asset_key="market_metrics",
        passed=not missing,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"missing": dg.MetadataValue.text(", ".join(missing) or "none"), "missing_count": len(missing)},
    )
    rows = {"market_metrics": metric_rows, "iv_term_structure": term_rows, "earnings_calendar": calendar_rows}
    return SnapshotRows(rows, {"market_metrics": metadata}, [present])


market_metrics = snapshot_asset(
    name="market_metrics",
    datasets=[MARKET_METRICS, IV_TERM_STRUCTURE, EARNINGS_CALENDAR],
    fetch=_market_metrics,
    deps=["universe"],
    descriptions={
        "market_metrics": "Tastytrade volatility metrics per underlying (snapshot): IV, IV rank/percentile, "
        "HV30/60/90, liquidity, beta, earnings. Every volatility is a fraction. Universe = held "
        "underlyings + watchlist, asked in batches (TastytradeResource.batch_size); symbols the API "
        "does not answer are listed in metadata and warned by metrics_symbols_present. A 429 is "
        "retried with backoff (Retry-After honoured); a 429 storm outlasting the retry budget fails "
        "the run with the cause and the time until which a re-run can still take this session's "
        "snapshot, and lands no partial lake partition (raw bodies received are kept): a snapshot "
        "cannot be backfilled, and a red run is what gets it re-run in time, where a quietly "
        "empty day would leave the dashboard on stale IV.",
        "iv_term_structure": "Implied volatility per option expiration of each underlying (snapshot).",
        "earnings_calendar": "The next earnings report each metrics item announces (snapshot): its date, "
        "estimated or not, BMO/AMC and its quarter. Kept evening after evening, it is what dates a "
        "report once it has passed: the historic earnings endpoint labels a report by its quarter's end "
        "and gives no time of day (warehouse earnings_moves).",
    },
    extra_checks=[
        dg.AssetCheckSpec(
            "metrics_symbols_present",
            asset="market_metrics",
            description="Every universe symbol came back from /market-metrics (warns with the missing list).",
        )
    ],
)
