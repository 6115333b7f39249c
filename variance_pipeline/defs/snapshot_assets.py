"""The snapshot rule, written once: ``snapshot_asset`` builds every Tastytrade snapshot asset.

The APIs only say what is true now, so a snapshot lands only in the current session's partition
(the contract's "snapshots cannot look back"): an older partition writes nothing and says so. A
snapshot that cannot be taken fails naming until when a re-run still can (``fatal``), or, for a
snapshot the evening can do without, fails its checks instead and lets the evening go on.
Every response lands in ``raw/<dataset>/`` as it arrives, before anything parses it; the rows are
typed and validated by their dataset's declaration, landed, and reported with the column schema.
"""


from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import dagster as dg

from variance_pipeline.calendar import last_closed_session, session_close, sessions_in_range
from variance_pipeline.defs.common import OWNERS, land_validated, raw_lander
from variance_pipeline.defs.metadata import column_schema, nothing_landed, path_value, schema_check_spec, validation_check
from variance_pipeline.defs.partitions import run_sessions, sessions_partitions, single_run_backfill
from variance_pipeline.defs.resources import PipelineResource, TastytradeResource
from variance_pipeline.lake.layout import Lake
from variance_pipeline.schemas.dataset import Dataset
from variance_pipeline.schemas.validate import ValidationOutcome, validate_frame
from variance_pipeline.sources.http import RequestStats, SourceError
from variance_pipeline.sources.tastytrade import RawCallback, TastytradeClient
from variance_pipeline.sources.tastytrade_frames import TastytradeDataError


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
class SnapshotCall:
    """What a snapshot's fetch gets: a logged-in client, the raw lander, the session and the run."""

    client: TastytradeClient
    on_raw: RawCallback
    session: date
    fetched_at: datetime
    lake: Lake
    sessions: list[date]
    tastytrade: TastytradeResource
    log: Any  # the run's logger (warnings a trader should see)


@dataclass
class SnapshotRows:
    """A fetch's result: rows per dataset name, metadata per dataset, extra check results."""

    rows: dict[str, list[dict[str, Any]]]
    metadata: dict[str, dict[str, Any]] = field(default_factory=dict)
    checks: list[dg.AssetCheckResult] = field(default_factory=list)


def snapshot_asset(
    *,
    name: str,
    datasets: Sequence[Dataset],
    fetch: Callable[[SnapshotCall], SnapshotRows],
    descriptions: dict[str, str],
    deps: Sequence[str] = (),
    fatal: bool = True,
    extra_checks: Sequence[dg.AssetCheckSpec] = (),
) -> dg.AssetsDefinition:
    """A snapshot asset (one step) landing ``datasets`` from one ``fetch`` of the Tastytrade API.

    ``fatal``: a snapshot that cannot be taken fails the step (the run is red and says until when
    a re-run can still take it); otherwise its schema checks fail with that text and the evening
    goes on (the stages that need it say what they miss).
    """
    names = [dataset.name for dataset in datasets]
    raw_folder = names[0]
    schema_checks = [(dataset.check_name, dataset.name) for dataset in datasets]
    all_checks = [*schema_checks, *((spec.name, spec.asset_key.to_user_string()) for spec in extra_checks)]

    @dg.multi_asset(
        name=name,
        specs=[
            dg.AssetSpec(
                dataset.name,
                deps=list(deps),
                group_name="extract",
                kinds={"python", "parquet"},
                description=descriptions[dataset.name],
                owners=OWNERS,
                metadata={"dagster/column_schema": column_schema(dataset)},
            )
            for dataset in datasets
        ],
        check_specs=[
            *(schema_check_spec(dataset) for dataset in datasets),
            *extra_checks,
        ],
        partitions_def=sessions_partitions,
        backfill_policy=single_run_backfill,
    )
    def snapshot(
        context: dg.AssetExecutionContext, pipeline: PipelineResource, tastytrade: TastytradeResource
    ) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        window = snapshot_window(context, pipeline, raw_folder)
        if window.session is None:
            yield from nothing_landed(window.reason, all_checks, assets=names)
            return
        stats = RequestStats()
        lake = pipeline.lake
        raw_dir = lake.raw_dir(raw_folder, window.session)
        try:
            with tastytrade.client(stats) as client:
                call = SnapshotCall(
                    client, raw_lander(lake, raw_folder, window.session), window.session, window.fetched_at,
                    lake, run_sessions(context), tastytrade, context.log,
                )
                fetched = fetch(call)
            frames = {dataset.name: dataset.frame(fetched.rows[dataset.name]) for dataset in datasets}
        except (SourceError, TastytradeDataError) as exc:
            failure = window.failure(raw_folder, exc, stats, raw_dir if raw_dir.exists() else None)
            if fatal:
                raise failure from exc
            yield from _failed_checks(context, str(failure.description), stats, names, all_checks)
            return
        outcomes: dict[str, ValidationOutcome] = {}
        for dataset in datasets:
            outcome = validate_frame(dataset, frames[dataset.name])
            outcomes[dataset.name] = outcome
            yield dg.MaterializeResult(
                asset_key=dataset.name,
                metadata={
                    **land_validated(lake, dataset.name, window.session, outcome),
                    "landed": True,
                    "session": str(window.session),
                    "raw_path": path_value(raw_dir),
                    **(stats.as_metadata() if dataset is datasets[0] else {}),
                    **fetched.metadata.get(dataset.name, {}),
                },
            )
        for dataset in datasets:
            yield validation_check(outcomes[dataset.name])
        yield from fetched.checks

    return snapshot


def _failed_checks(
    context: dg.AssetExecutionContext, message: str, stats: RequestStats, assets: list[str], checks: list[tuple[str, str]]
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """A snapshot the evening can do without: nothing landed, every check fails saying why."""
    context.log.error(message)
    for key in assets:
        yield dg.MaterializeResult(asset_key=key, metadata={"landed": False, "reason": message, **stats.as_metadata()})
    for check, key in checks:
        yield dg.AssetCheckResult(
            check_name=check, asset_key=key, passed=False, metadata={"error": dg.MetadataValue.text(message)}, description=message
        )
