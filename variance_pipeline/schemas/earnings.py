"""The earnings datasets: the reports Tastytrade's history lists (``earnings_reports``) and the
report dates the metrics snapshots announced, evening by evening (``earnings_calendar``).

The historic endpoint labels each report by its fiscal quarter's calendar end (AAPL's report of
2022-07-28 is ``occurred-date`` 2022-06-30), so that date is the quarter and EPS label, never the
day the stock moved. The day, and whether it came before the open or after the close, is only in
the snapshot's ``earnings`` object while the report is still ahead; keeping every evening's
announcement is what dates a report once it has passed (``warehouse/earnings_moves.py``).
"""

from __future__ import annotations

import pandera.pandas as pda

from variance_pipeline.schemas.columns import BOOLEAN, DATE, FLOAT, NON_EMPTY, STRING, TIMESTAMP, Column
from variance_pipeline.schemas.dataset import Dataset

EARNINGS_REPORTS = Dataset(
    name="earnings_reports",
    description="Past earnings reports as Tastytrade's historic earnings endpoint lists them.",
    date_column="occurred_date",
    grain=("symbol", "occurred_date"),
    load="upsert",
    columns=(
        Column("symbol", STRING, "the underlying", checks=(NON_EMPTY,)),
        Column("occurred_date", DATE, "the fiscal quarter's calendar end the API labels the report with "
               "(occurred-date; not the day of the report: earnings_moves.report_date is)"),
        Column("eps", FLOAT, "earnings per share as reported", True, "currency per share"),
        Column("fetched_at", TIMESTAMP, "when it was fetched", unit="UTC"),
    ),
)

TIMES_OF_DAY = ("BMO", "AMC")
"""Before the market opens, after it closes: the metrics' ``earnings.time-of-day``."""

EARNINGS_CALENDAR = Dataset(
    name="earnings_calendar",
    description="The next earnings report each evening's metrics snapshot announced per symbol: its date, "
    "whether that date was still an estimate, its time of day and the quarter it reports.",
    date_column="as_of_date",
    grain=("as_of_date", "symbol"),
    columns=(
        Column("as_of_date", DATE, "the session whose evening snapshot announced it"),
        Column("symbol", STRING, "the underlying", checks=(NON_EMPTY,)),
        Column("expected_report_date", DATE, "the report date announced (earnings.expected-report-date)"),
        Column("estimated", BOOLEAN, "true while the date is the broker's estimate, not the company's", True),
        Column("time_of_day", STRING, "BMO (before the open) or AMC (after the close); NULL when not sent or "
               "not one of the two", True, checks=(pda.Check.isin(TIMES_OF_DAY),)),
        Column("quarter_end_date", DATE, "the fiscal quarter reported (earnings.quarter-end-date as sent: the "
               "first day of the quarter's last month)", True),
        Column("fetched_at", TIMESTAMP, "when the snapshot was taken", unit="UTC"),
    ),
)
