"""Each dataset is declared once: the live warehouse, the lake files, the builders and the README
all agree with the declaration (names, types, nullability, keys)."""

from __future__ import annotations

from datetime import date, datetime, timezone
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow.parquet as pq
import pytest

from support import recorded_items
from variance_pipeline.candles.bars import new_scale, write_bars
from variance_pipeline.lake.layout import PER_SYMBOL, Lake
from variance_pipeline.schemas.dataset import Dataset, SchemaDriftError
from variance_pipeline.schemas.docs import BEGIN, END, dataset_tables
from variance_pipeline.schemas.market_metrics import IV_TERM_STRUCTURE, MARKET_METRICS
from variance_pipeline.schemas.positions import POSITIONS
from variance_pipeline.schemas.registry import DATASETS
from variance_pipeline.schemas.validate import validate_frame
from variance_pipeline.sources.tastytrade_frames import market_metrics_rows, positions_rows
from variance_pipeline.warehouse.connection import open_warehouse
from variance_pipeline.warehouse.load import load_sessions, migrate

REPO = Path(__file__).resolve().parent.parent
DAY = date(2025, 11, 25)
STAMP = datetime(2025, 11, 25, 22, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def live_warehouse(tmp_path_factory: pytest.TempPathFactory) -> duckdb.DuckDBPyConnection:
    """A real warehouse file migrated from version 0 through every migration."""
    con = open_warehouse(tmp_path_factory.mktemp("warehouse") / "warehouse.duckdb")
    migrate(con)
    yield con
    con.close()


@pytest.mark.parametrize("dataset", DATASETS, ids=lambda d: d.name)
def test_live_table_equals_the_declaration(dataset: Dataset, live_warehouse: duckdb.DuckDBPyConnection) -> None:
    rows = live_warehouse.execute(
        "SELECT column_name, data_type, is_nullable FROM information_schema.columns WHERE table_name = ?",
        [dataset.table],
    ).fetchall()
    live = {name: (sql_type, nullable == "YES") for name, sql_type, nullable in rows}
    declared = {c.name: (c.sql_type, c.nullable) for c in dataset.columns}
    assert live == declared
    keys = live_warehouse.execute(
        "SELECT constraint_column_names FROM duckdb_constraints() WHERE constraint_type = 'PRIMARY KEY' AND table_name = ?",
        [dataset.table],
    ).fetchall()
    assert [tuple(k[0]) for k in keys] == [dataset.grain]


def test_a_new_declared_dataset_gets_its_table_from_the_declaration() -> None:
    con = duckdb.connect()
    con.execute(POSITIONS.ddl().replace('"positions"', '"positions_copy"'))
    described = con.execute("DESCRIBE positions_copy").fetchall()
    assert [(r[0], r[1], r[2] == "YES") for r in described] == [(c.name, c.sql_type, c.nullable) for c in POSITIONS.columns]


@pytest.mark.parametrize("dataset", DATASETS, ids=lambda d: d.name)
def test_empty_frame_round_trips_through_the_lake(dataset: Dataset, tmp_path: Path) -> None:
    empty = dataset.empty()
    assert tuple(empty.columns) == dataset.names
    lake = Lake(tmp_path)
    if dataset.name in PER_SYMBOL:  # one file per symbol (the candle store), not per session
        path = lake.candle_path("SPY")
        write_bars(path, empty, new_scale())
    else:
        path = lake.write_partition(dataset.name, DAY, empty)
    assert pq.read_schema(path).remove_metadata() == dataset.arrow_schema.remove_metadata()


def test_builder_rows_become_the_declared_frame_and_validate() -> None:
    positions = POSITIONS.frame(positions_rows(recorded_items("tastytrade/positions.json"), as_of_date=DAY, fetched_at=STAMP))
    assert tuple(positions.columns) == POSITIONS.names
    assert validate_frame(POSITIONS, positions).ok
    metric_rows, term_rows = market_metrics_rows(recorded_items("tastytrade/market_metrics.json"), as_of_date=DAY, fetched_at=STAMP)
    for dataset, rows in ((MARKET_METRICS, metric_rows), (IV_TERM_STRUCTURE, term_rows)):
        frame = dataset.frame(rows)
        assert tuple(frame.columns) == dataset.names and validate_frame(dataset, frame).ok


def test_rows_that_drift_from_the_declaration_fail_naming_the_column() -> None:
    rows = positions_rows(recorded_items("tastytrade/positions.json"), as_of_date=DAY, fetched_at=STAMP)
    with pytest.raises(SchemaDriftError, match="positions: column.*multiplier.*missing"):
        POSITIONS.frame([{k: v for k, v in row.items() if k != "multiplier"} for row in rows])
    with pytest.raises(SchemaDriftError, match="positions: column.*surprise.*not declared"):
        POSITIONS.frame([{**row, "surprise": 1} for row in rows])


def test_a_landed_file_missing_a_column_fails_the_load_naming_dataset_and_column(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    frame = POSITIONS.frame(positions_rows(recorded_items("tastytrade/positions.json"), as_of_date=DAY, fetched_at=STAMP))
    path = lake.write_partition("positions", DAY, frame)
    pq.write_table(pq.read_table(path).drop(["mark"]), path)  # an older or foreign file
    con = open_warehouse(tmp_path / "warehouse.duckdb")
    try:
        with pytest.raises(SchemaDriftError, match=r"positions: column\(s\) mark missing from .*part-0.parquet"):
            load_sessions(con, lake, [DAY])
        assert con.execute("SELECT count(*) FROM positions").fetchone()[0] == 0
    finally:
        con.close()


def test_a_null_in_a_required_column_never_reaches_the_lake(tmp_path: Path) -> None:
    frame = POSITIONS.frame(positions_rows(recorded_items("tastytrade/positions.json"), as_of_date=DAY, fetched_at=STAMP))
    frame.loc[0, "root_symbol"] = pd.NA
    with pytest.raises(ValueError, match="root_symbol"):
        Lake(tmp_path).write_partition("positions", DAY, frame)
    assert not Lake(tmp_path).has_partition("positions", DAY)


def test_readme_column_tables_are_generated_from_the_declarations() -> None:
    readme = (REPO / "README.md").read_text()
    generated = readme.split(BEGIN, 1)[1].split(END, 1)[0].strip()
    assert generated == dataset_tables(), "run: python -m variance_pipeline.schemas.docs"
    for dataset in DATASETS:
        for column in dataset.columns:
            assert f"| `{column.name}` |" in generated
