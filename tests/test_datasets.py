"""Each dataset is declared once: its frame builder, pandera model and DDL columns agree."""

from __future__ import annotations

import duckdb
import pytest

from variance_pipeline.candles.store import PARQUET_SCHEMA
from variance_pipeline.datasets import DATASETS, Dataset
from variance_pipeline.sources.tastytrade_reference import EARNINGS_REPORT_DTYPES, RISK_FREE_RATE_DTYPES
from variance_pipeline.sources.tastytrade_frames import METRIC_DTYPES, POSITION_DTYPES, TERM_STRUCTURE_DTYPES
from variance_pipeline.transforms.position_greeks import PRICED_COLUMNS
from variance_pipeline.transforms.volatility import OUTPUT_COLUMNS
from variance_pipeline.validation.universe import UNIVERSE_DTYPES
from variance_pipeline.warehouse.load import migrate

BUILT_COLUMNS = {
    "positions": tuple(POSITION_DTYPES),
    "universe": tuple(UNIVERSE_DTYPES),
    "market_metrics": tuple(METRIC_DTYPES),
    "iv_term_structure": tuple(TERM_STRUCTURE_DTYPES),
    "candles": tuple(PARQUET_SCHEMA.names),
    "realized_volatility": tuple(OUTPUT_COLUMNS),
    "risk_free_rate": tuple(RISK_FREE_RATE_DTYPES),
    "position_greeks": PRICED_COLUMNS,
    "earnings_reports": tuple(EARNINGS_REPORT_DTYPES),
}


@pytest.fixture(scope="module")
def ddl() -> dict[str, set[str]]:
    con = duckdb.connect()
    migrate(con)
    rows = con.execute("SELECT table_name, column_name FROM information_schema.columns").fetchall()
    tables: dict[str, set[str]] = {}
    for table, column in rows:
        tables.setdefault(table, set()).add(column)
    keys = con.execute(
        "SELECT table_name, constraint_column_names FROM duckdb_constraints() WHERE constraint_type = 'PRIMARY KEY'"
    ).fetchall()
    tables.update({f"{table}:pk": set(columns) for table, columns in keys})
    return tables


def test_every_dataset_has_a_builder() -> None:
    assert {d.name for d in DATASETS} == set(BUILT_COLUMNS)


@pytest.mark.parametrize("dataset", DATASETS, ids=lambda d: d.name)
def test_builder_schema_and_table_agree(dataset: Dataset, ddl: dict[str, set[str]]) -> None:
    built = set(BUILT_COLUMNS[dataset.name])
    assert set(dataset.columns) == built, "pandera model vs frame builder"
    assert ddl[dataset.table] == built, "DDL vs frame builder"
    assert ddl[f"{dataset.table}:pk"] == set(dataset.key), "primary key vs the schema's grain"
    assert dataset.date_column in built
