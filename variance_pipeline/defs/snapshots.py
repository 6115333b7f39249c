"""Snapshot assets: Tastytrade positions, market metrics and the IV term structure.

The APIs only say what is true now, so these land only in the current session's partition (the
contract's "snapshots cannot look back"); an older partition writes nothing and says so.
"""

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Callable, Iterator

import dagster as dg

from variance_pipeline.calendar import last_closed_session, session_close, sessions_in_range
from variance_pipeline.defs.common import ASSET_COMMON, OWNERS, land_validated, raw_lander, universe_symbols
from variance_pipeline.defs.metadata import nothing_landed, path_value, validation_check
from variance_pipeline.defs.partitions import run_sessions, sessions_partitions, single_run_backfill
from variance_pipeline.defs.resources import PipelineResource, TastytradeResource
from variance_pipeline.sources.http import RequestStats, SourceError
from variance_pipeline.sources.tastytrade import RawResponse, TastytradeClient
from variance_pipeline.sources.tastytrade_frames import (
    TastytradeDataError,
    held_underlyings,
    market_metrics_rows,
    positions_rows,
)
from variance_pipeline.schemas.market_metrics import MARKET_METRICS, IV_TERM_STRUCTURE
from variance_pipeline.schemas.positions import POSITIONS
from variance_pipeline.schemas.validate import validate_frame
from variance_pipeline.schemas.universe import UNIVERSE, universe_frame


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


@dataclass(frozen=True)
class PositionsFetch:
    """Position items of every open account, and those listed under an account not theirs."""

    items: list[dict]
    misfiled: list[str]  # "SYMBOL (account-number X, listed under Y)"


def fetch_positions(client: TastytradeClient, on_raw: Callable[[RawResponse], None]) -> PositionsFetch:
    """Every position of every open account; ``on_raw`` gets each response (page) as it arrives.

    An item whose ``account-number`` is not the account it was listed under is not that account's
    position: it is left out (and reported) rather than counted twice or under the wrong account.
    """
    items: list[dict] = []
    misfiled: list[str] = []
    for account in client.accounts(on_raw=on_raw).items:
        number = str(account["account-number"])
        for item in client.positions(number, on_raw=on_raw).items:
            owner = item.get("account-number")
            if owner not in (None, "") and str(owner) != number:
                misfiled.append(f"{item.get('symbol')!r} (account-number {owner}, listed under {number})")
            else:
                items.append(item)
    return PositionsFetch(items, misfiled)


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
        yield from nothing_landed(window.reason, [("positions_schema", "positions")])
        return
    stats = RequestStats()
    lake = pipeline.lake
    raw_dir = lake.raw_dir("positions", window.session)
    try:
        with tastytrade.client(stats) as client:
            fetched = fetch_positions(client, raw_lander(lake, "positions", window.session))
        frame = POSITIONS.frame(positions_rows(fetched.items, as_of_date=window.session, fetched_at=window.fetched_at))
    except (SourceError, TastytradeDataError) as exc:
        raise window.failure("positions", exc, stats, raw_dir if raw_dir.exists() else None) from exc
    if fetched.misfiled:
        context.log.warning(
            f"positions: {len(fetched.misfiled)} item(s) listed under an account they do not belong to "
            f"were left out: {'; '.join(fetched.misfiled[:10])}"
        )
    outcome = validate_frame(POSITIONS, frame)
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


@dg.asset(
    deps=["positions"],
    group_name="extract",
    kinds={"python", "parquet"},
    description="The symbols every later stage tracks: the underlyings of the newest positions snapshot "
    "plus the watchlist, each with where it came from (held, watchlist or both). Landed once per run "
    "(in the run's last session); market metrics, candles, realised volatility and the checks read it "
    "and nothing else. Only when no positions snapshot has ever landed (a first run of old partitions) "
    "does it ask Tastytrade for the current positions itself (raw responses under raw/universe/).",
    check_specs=[dg.AssetCheckSpec("universe_schema", asset="universe", description="pandera UniverseSchema")],
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
    yield validation_check("universe_schema", outcome, "universe")


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            "market_metrics",
            deps=["universe"],
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
            owners=OWNERS,
        ),
        dg.AssetSpec(
            "iv_term_structure",
            deps=["universe"],
            group_name="extract",
            kinds={"python", "parquet"},
            description="Implied volatility per option expiration of each underlying (snapshot).",
            owners=OWNERS,
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
    partitions_def=sessions_partitions,
    backfill_policy=single_run_backfill,
)
def market_metrics(
    context: dg.AssetExecutionContext, pipeline: PipelineResource, tastytrade: TastytradeResource
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    window = snapshot_window(context, pipeline, "market_metrics")
    if window.session is None:
        yield from nothing_landed(
            window.reason,
            [
                ("market_metrics_schema", "market_metrics"),
                ("iv_term_structure_schema", "iv_term_structure"),
                ("metrics_symbols_present", "market_metrics"),
            ],
            assets=("market_metrics", "iv_term_structure"),
        )
        return
    stats = RequestStats()
    lake = pipeline.lake
    session = window.session
    raw_dir = lake.raw_dir("market_metrics", session)
    try:
        symbols = universe_symbols(lake, run_sessions(context))
        with tastytrade.client(stats) as client:
            fetched = client.market_metrics(
                symbols, batch_size=tastytrade.batch_size, on_raw=raw_lander(lake, "market_metrics", session)
            )
        metric_rows, term_rows = market_metrics_rows(fetched.items, as_of_date=session, fetched_at=window.fetched_at)
        metrics, term = MARKET_METRICS.frame(metric_rows), IV_TERM_STRUCTURE.frame(term_rows)
    except (SourceError, TastytradeDataError) as exc:
        raise window.failure("market_metrics", exc, stats, raw_dir if raw_dir.exists() else None) from exc
    metrics_outcome = validate_frame(MARKET_METRICS, metrics)
    term_outcome = validate_frame(IV_TERM_STRUCTURE, term)
    missing = list(fetched.missing)
    if missing:
        context.log.warning(f"market_metrics: the API returned nothing for {', '.join(missing)}")
    yield dg.MaterializeResult(
        asset_key="market_metrics",
        metadata={
            **land_validated(lake, "market_metrics", window.session, metrics_outcome),
            "landed": True,
            "session": str(window.session),
            "symbols_requested": len(symbols),
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
