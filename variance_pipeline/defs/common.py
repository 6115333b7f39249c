"""What the assets share: the asset defaults, the raw-landing callback, landing validated frames,
and reading the run's universe.
"""

from __future__ import annotations

from datetime import date
from typing import Any, Callable, Protocol, Sequence

import dagster as dg
import pandas as pd

from variance_pipeline.defs.metadata import landed, path_value, preview
from variance_pipeline.defs.partitions import sessions_partitions, single_run_backfill
from variance_pipeline.lake.layout import Lake
from variance_pipeline.schemas.validate import ValidationOutcome

OWNERS = ["team:variance"]
ASSET_COMMON: dict[str, Any] = dict(
    partitions_def=sessions_partitions, backfill_policy=single_run_backfill, owners=OWNERS
)


class RawBody(Protocol):
    """A response body as received (Tastytrade pages, metric batches, Yahoo charts)."""

    @property
    def name(self) -> str: ...

    @property
    def body(self) -> bytes: ...


def raw_lander(lake: Lake, dataset: str, day: date) -> Callable[[RawBody], None]:
    """The one way every source's responses reach ``raw/<dataset>/date=D/``: called per response
    as it arrives, before anything parses it, so a later failure never loses what an API said."""

    def land(raw: RawBody) -> None:
        lake.write_raw(dataset, day, raw.name, raw.body)

    return land


def land_validated(
    lake: Lake, dataset: str, day: date, outcome: ValidationOutcome
) -> dict[str, Any]:
    """Write the valid rows to the lake and the rejected rows to quarantine; report both."""
    path = lake.write_partition(dataset, day, outcome.valid)
    metadata: dict[str, Any] = {
        **landed(dataset, len(outcome.valid)),
        "rows": len(outcome.valid),
        "parquet_path": path_value(path),
        "preview": preview(outcome.valid),
    }
    if not outcome.quarantined.empty:
        metadata["quarantine_path"] = path_value(lake.write_quarantine(dataset, day, outcome.quarantined))
        metadata["rows_quarantined"] = len(outcome.quarantined)
    return metadata


def run_universe(lake: Lake, sessions: Sequence[date]) -> pd.DataFrame:
    """The universe this run landed (partition of its last session), else the newest one landed.

    Every stage after ``universe`` tracks exactly these symbols; none recomputes the list.
    """
    day = sessions[-1] if lake.has_partition("universe", sessions[-1]) else lake.latest_partition("universe")
    if day is None:
        raise dg.Failure(
            "no symbol universe has been landed yet: materialize the `universe` asset (it follows "
            "`positions`) before the stages that read it"
        )
    return lake.read_partition("universe", day)


def universe_symbols(lake: Lake, sessions: Sequence[date]) -> list[str]:
    return [str(symbol) for symbol in run_universe(lake, sessions)["symbol"]]
