"""The ``earnings_reports`` dataset: past earnings dates per symbol, from Tastytrade's history."""

from __future__ import annotations

from variance_pipeline.schemas.columns import DATE, FLOAT, NON_EMPTY, STRING, TIMESTAMP, Column
from variance_pipeline.schemas.dataset import Dataset

EARNINGS_REPORTS = Dataset(
    name="earnings_reports",
    description="Past earnings reports as Tastytrade's historic earnings endpoint lists them.",
    date_column="occurred_date",
    grain=("symbol", "occurred_date"),
    load="upsert",
    columns=(
        Column("symbol", STRING, "the underlying", checks=(NON_EMPTY,)),
        Column("occurred_date", DATE, "the report date as the API lists it"),
        Column("eps", FLOAT, "earnings per share as reported", True, "currency per share"),
        Column("fetched_at", TIMESTAMP, "when it was fetched", unit="UTC"),
    ),
)
