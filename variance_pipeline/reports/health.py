"""Data health for the evening report: can tonight's numbers be trusted, and what is missing.

Three witnesses, each saying what only it knows: the warehouse's ``load_log`` (which dataset was
loaded for which session, and when), the lake (rows quarantined by validation, sessions waiting to
be reloaded after a split), and Dagster (check results and the last successful run). The report
module never imports Dagster; when the report is built by the ``evening_report`` asset, the asset
hands over what Dagster knows as plain data (``RunFacts``). Built by ``make report``, the page
says that check results live in Dagster and were not asked for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import duckdb
import pyarrow.parquet as pq

from variance_pipeline.lake.layout import Lake
from variance_pipeline.schemas.registry import DATASETS

# What an ordinary evening loads for its session, with the words a trader reads when one is missing.
EVENING_DATASETS: tuple[tuple[str, str], ...] = (
    ("positions", "positions snapshot"),
    ("market_metrics", "volatility metrics snapshot"),
    ("iv_term_structure", "IV term structure snapshot"),
    ("candles", "daily candles"),
    ("realized_volatility", "realised volatility"),
    ("risk_free_rate", "risk-free rate snapshot"),
    ("position_greeks", "model Greeks"),
    ("position_pnl", "P&L per position"),
    ("balances", "account balances snapshot"),
    ("margin_requirements", "margin report snapshot"),
)


@dataclass(frozen=True)
class CheckOutcome:
    """One asset check's latest evaluation, as Dagster recorded it."""

    asset: str
    check: str
    passed: bool
    severity: str  # "ERROR" (failed) or "WARN" (a warning)
    description: str | None = None
    evaluated_at: datetime | None = None
    this_run: bool = False


@dataclass(frozen=True)
class RunFacts:
    """What Dagster knows about the runs, handed to the renderer as plain data."""

    run_id: str | None = None
    job_name: str | None = None
    last_success_at: datetime | None = None  # the last successful run before this one
    last_success_run_id: str | None = None
    last_success_job: str | None = None
    checks: tuple[CheckOutcome, ...] = ()


@dataclass
class Health:
    last_load_at: datetime | None = None
    last_load_run_id: str | None = None
    missing: list[dict[str, Any]] = field(default_factory=list)  # dataset, label, last_session
    stale_symbols: list[dict[str, Any]] = field(default_factory=list)  # symbol, last_candle, last_metrics
    quarantined: list[dict[str, Any]] = field(default_factory=list)  # dataset, rows, path
    checks_failed: list[CheckOutcome] = field(default_factory=list)
    checks_warned: list[CheckOutcome] = field(default_factory=list)
    checks_total: int = 0
    facts: RunFacts | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def problems(self) -> int:
        return (len(self.missing) + len(self.stale_symbols) + len(self.quarantined)
                + len(self.checks_failed) + len(self.checks_warned))


STALE_SQL = """
WITH u AS (SELECT symbol FROM universe WHERE as_of_date = (SELECT max(as_of_date) FROM universe)),
c AS (SELECT symbol, max(session_date) AS last_candle FROM candles WHERE symbol IN (SELECT symbol FROM u) GROUP BY symbol),
m AS (SELECT symbol, max(as_of_date) AS last_metrics FROM market_metrics WHERE symbol IN (SELECT symbol FROM u) GROUP BY symbol)
SELECT u.symbol, c.last_candle, m.last_metrics
FROM u LEFT JOIN c USING (symbol) LEFT JOIN m USING (symbol)
WHERE c.last_candle IS NULL OR c.last_candle < $evening OR m.last_metrics IS NULL OR m.last_metrics < $evening
ORDER BY u.symbol
"""


def data_health(con: duckdb.DuckDBPyConnection, lake: Lake, evening: date | None, facts: RunFacts | None) -> Health:
    """Everything that makes tonight's numbers less than complete, from the three witnesses."""
    health = Health(facts=facts)
    last = con.execute("SELECT loaded_at, run_id FROM load_log ORDER BY loaded_at DESC LIMIT 1").fetchone()
    if last:
        health.last_load_at, health.last_load_run_id = last
    if evening is not None:
        loaded = dict(con.execute("SELECT dataset, max(session_date) FROM load_log GROUP BY dataset").fetchall())
        evening_rows = {
            name for (name,) in con.execute("SELECT dataset FROM load_log WHERE session_date = ?", [evening]).fetchall()
        }
        for dataset, label in EVENING_DATASETS:
            if dataset not in evening_rows:
                health.missing.append({"dataset": dataset, "label": label, "last_session": loaded.get(dataset)})
        cursor = con.execute(STALE_SQL, {"evening": evening})
        health.stale_symbols = [dict(zip(("symbol", "last_candle", "last_metrics"), row)) for row in cursor.fetchall()]
        for dataset in DATASETS:
            path = lake.quarantine_path(dataset.name, evening)
            if path.exists():
                try:
                    rows = pq.ParquetFile(path).metadata.num_rows
                except Exception:  # noqa: BLE001 - an unreadable quarantine file is still worth naming
                    rows = None
                health.quarantined.append({"dataset": dataset.name, "rows": rows, "path": str(path)})
    if facts is None:
        health.notes.append(
            "Check results and run history live in Dagster; this page was built without a run "
            "(make report), so they were not asked for. The evening_report asset includes them."
        )
    else:
        health.checks_total = len(facts.checks)
        health.checks_failed = [c for c in facts.checks if not c.passed and c.severity != "WARN"]
        health.checks_warned = [c for c in facts.checks if not c.passed and c.severity == "WARN"]
    return health
