"""What every asset shares: the sessions partitions, single-run backfills, and landing helpers.

Every asset uses the one sessions partitions definition and a single-run backfill policy, so a
backfill of any range is one run and each asset sees the whole ``partition_key_range``.
"""

import warnings
from datetime import date
from typing import Any

import dagster as dg
import pandas as pd

from variance_pipeline.calendar import sessions_in_range, sessions_partitions_def
from variance_pipeline.defs.metadata import path_value, preview
from variance_pipeline.lake import Lake
from variance_pipeline.validation.report import ValidationOutcome

# BackfillPolicy is "beta" in Dagster 1.13 yet the only way to run a range as one run; the
# warning is known and would drown the run log.
warnings.filterwarnings("ignore", category=dg.BetaWarning)

PARTITIONS = sessions_partitions_def()
BACKFILL = dg.BackfillPolicy.single_run()
OWNERS = ["team:variance"]
ASSET_COMMON: dict[str, Any] = dict(partitions_def=PARTITIONS, backfill_policy=BACKFILL, owners=OWNERS)


def run_sessions(context: dg.AssetExecutionContext) -> list[date]:
    """The NYSE sessions of this run's partition range (one key or a backfill range)."""
    key_range = context.partition_key_range
    return sessions_in_range(date.fromisoformat(key_range.start), date.fromisoformat(key_range.end))


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


def land_by_session(lake: Lake, dataset: str, frame: pd.DataFrame) -> int:
    """Write one lake partition per ``session_date`` in ``frame`` (replacing it); returns how many."""
    written = 0
    for day, group in frame.groupby("session_date", sort=True):
        lake.write_partition(dataset, day, group.reset_index(drop=True))
        written += 1
    return written
