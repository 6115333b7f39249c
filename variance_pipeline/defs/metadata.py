"""Small builders for the metadata a trader reads in the Dagster UI at a glance."""

from __future__ import annotations

import base64

from pathlib import Path
from typing import Any, Iterator, Sequence

import dagster as dg
import pandas as pd

from variance_pipeline.schemas.dataset import Dataset
from variance_pipeline.schemas.registry import BY_NAME
from variance_pipeline.schemas.validate import ValidationOutcome


def column_schema(dataset: Dataset) -> dg.TableSchema:
    """The dataset's declared columns as Dagster's column schema (types, nullability, meaning, key)."""
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                column.name,
                type=column.sql_type,
                description=f"{column.description} [{column.unit}]" if column.unit else column.description,
                constraints=dg.TableColumnConstraints(nullable=column.nullable),
            )
            for column in dataset.columns
        ],
        constraints=dg.TableConstraints(other=[f"primary key ({', '.join(dataset.grain)})"]),
    )


def landed(dataset: str, rows: int) -> dict[str, Any]:
    """What every materialisation that lands a dataset reports: its column schema and row count."""
    return {"dagster/column_schema": column_schema(BY_NAME[dataset]), "dagster/row_count": int(rows)}


def preview(frame: pd.DataFrame, rows: int = 10) -> dg.MetadataValue:
    """A markdown table of the first rows (floats rounded so the table stays readable)."""
    if frame.empty:
        return dg.MetadataValue.md("_no rows_")
    head = frame.head(rows).copy()
    for column in head.select_dtypes("float").columns:
        head[column] = head[column].round(6)
    return dg.MetadataValue.md(head.to_markdown(index=False))


def picture(key: str, path: Path, png: bytes, caption: str) -> dict[str, dg.MetadataValue]:
    """A chart as metadata: ``<key>_path`` (the file) and ``<key>`` (the picture inline for the UI)."""
    encoded = base64.b64encode(png).decode("ascii")
    return {
        f"{key}_path": path_value(path),
        key: dg.MetadataValue.md(f"{caption}\n\n![{key}](data:image/png;base64,{encoded})"),
    }


def path_value(path: Path) -> dg.MetadataValue:
    return dg.MetadataValue.path(str(path))


def schema_check_spec(dataset: Dataset, **kwargs: Any) -> dg.AssetCheckSpec:
    """The ``<dataset>_schema`` check of an asset that lands ``dataset`` (its declaration, by pandera)."""
    kwargs.setdefault("description", f"every row satisfies the {dataset.name} declaration (pandera); bad rows quarantined")
    return dg.AssetCheckSpec(dataset.check_name, asset=dataset.name, **kwargs)


def validation_check(outcome: ValidationOutcome) -> dg.AssetCheckResult:
    """The pandera result as an asset check: failure cases visible in the UI, never hidden."""
    metadata: dict[str, Any] = {
        "rows_valid": len(outcome.valid),
        "rows_quarantined": len(outcome.quarantined),
    }
    if outcome.schema_error:
        metadata["schema_error"] = dg.MetadataValue.text(outcome.schema_error)
    if not outcome.failure_cases.empty:
        metadata["failure_cases"] = preview(outcome.failure_cases.astype(str), rows=50)
        metadata["failure_count"] = len(outcome.failure_cases)
    return dg.AssetCheckResult(
        check_name=BY_NAME[outcome.dataset].check_name,
        asset_key=outcome.dataset,
        passed=outcome.ok,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata=metadata,
        description=outcome.summary(limit=5),
    )


def skipped_check(check_name: str, asset_key: str, reason: str) -> dg.AssetCheckResult:
    """A check on a run that wrote nothing (a snapshot for an old session) passes, saying why."""
    return dg.AssetCheckResult(
        check_name=check_name,
        asset_key=asset_key,
        passed=True,
        metadata={"skipped": dg.MetadataValue.text(reason)},
    )


def nothing_landed(
    reason: str, checks: Sequence[tuple[str, str]], assets: Sequence[str | None] = (None,), **extra: Any
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """A step that rightly wrote nothing (an old partition of a snapshot, nothing due): each asset
    says so and why, and each of its checks (``(check, asset)`` pairs) passes as skipped."""
    for key in assets:
        yield dg.MaterializeResult(asset_key=key, metadata={"landed": False, "reason": reason, **extra})
    for check, key in checks:
        yield skipped_check(check, key, reason)
