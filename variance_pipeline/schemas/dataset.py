"""A dataset declared once: its grain, its columns, its checks; every other form derived here.

The pandera schema, the typed frame a builder's rows become, the Arrow schema the lake writes,
the DuckDB DDL of the warehouse table and the README's column table are all computed from one
``Dataset``, so adding a column is one line and nothing can drift (``tests/test_datasets.py``
compares the live warehouse with these declarations).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Iterable, Literal, Mapping

import pandas as pd
import pandera.pandas as pda
import pyarrow as pa

from variance_pipeline.schemas.columns import Column


class SchemaDriftError(ValueError):
    """A frame or file lacks (or adds) a declared column: names the dataset, the column and where."""


@dataclass(frozen=True)
class Dataset:
    """One lake dataset (``lake/<name>/date=D/part-0.parquet``; candles one file per symbol,
    ``lake/candles/symbol=S/``) and the warehouse table it loads into.

    ``load``: ``replace_session`` deletes the table's rows of that session (``date_column``) and
    inserts the partition (re-running a day replaces it); ``upsert`` inserts or replaces by the
    grain, for data whose key is not the session it was fetched on (past earnings reports, the
    transactions); ``replace_all`` replaces the whole table by the partition, for a dataset each
    evening recomputes whole (the trades built from every transaction).
    ``coerce``: let pandera cast (nullable extension dtypes from a computation to plain floats).
    """

    name: str
    description: str
    date_column: str
    grain: tuple[str, ...]
    columns: tuple[Column, ...]
    checks: tuple[pda.Check, ...] = ()
    load: Literal["replace_session", "upsert", "replace_all"] = "replace_session"
    coerce: bool = False
    # Hash/eq by name: a dataset is its name (the checks inside are not comparable values).
    _index: dict[str, Column] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_index", {c.name: c for c in self.columns})
        unknown = [c for c in (*self.grain, self.date_column) if c not in self._index]
        if unknown:
            raise ValueError(f"{self.name}: grain/date column(s) {unknown} are not declared columns")
        if len(self._index) != len(self.columns):
            raise ValueError(f"{self.name}: a column is declared twice")

    def __hash__(self) -> int:
        return hash(self.name)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Dataset) and other.name == self.name

    # -- names ---------------------------------------------------------------------------

    @property
    def table(self) -> str:
        """The warehouse table (same name as the dataset)."""
        return self.name

    @property
    def key(self) -> tuple[str, ...]:
        """The grain: unique per row, and the table's primary key."""
        return self.grain

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def check_name(self) -> str:
        """The asset check that reports this dataset's pandera validation."""
        return f"{self.name}_schema"

    def column(self, name: str) -> Column:
        return self._index[name]

    # -- derived forms -------------------------------------------------------------------

    @cached_property
    def pandera(self) -> pda.DataFrameSchema:
        """The pandera schema: declared columns only (strict), unique by the grain."""
        return pda.DataFrameSchema(
            {c.name: c.pandera_column() for c in self.columns},
            checks=list(self.checks),
            unique=list(self.grain),
            strict=True,
            coerce=self.coerce,
            name=self.name,
            description=self.description,
        )

    @cached_property
    def arrow_schema(self) -> pa.Schema:
        return pa.schema([c.arrow_field() for c in self.columns], metadata={"dataset": self.name})

    @cached_property
    def pandas_dtypes(self) -> dict[str, str]:
        return {c.name: c.pandas_dtype for c in self.columns}

    def frame(self, rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
        """A builder's rows -> a frame with exactly the declared columns, in order, typed.

        A row without a declared column, or with one that is not declared, is a programming
        error (the builder and the declaration drifted) and raises naming both.
        """
        rows = list(rows)
        if not rows:
            return self.empty()
        keys = set(rows[0])
        for row in rows[1:]:
            keys |= set(row)
        self._require(keys, "the builder's rows")
        return pd.DataFrame.from_records(rows, columns=list(self.names)).astype(self.pandas_dtypes)

    def conform(self, frame: pd.DataFrame, where: str = "the frame") -> pd.DataFrame:
        """``frame`` with the declared columns in order and dtypes (a computed frame's last step)."""
        self._require(set(frame.columns), where)
        return frame.loc[:, list(self.names)].astype(self.pandas_dtypes)

    def empty(self) -> pd.DataFrame:
        return pd.DataFrame({name: pd.Series(dtype=dtype) for name, dtype in self.pandas_dtypes.items()})

    def arrow_table(self, frame: pd.DataFrame) -> pa.Table:
        """The frame as the lake stores it: declared columns only, declared Arrow types."""
        self._require(set(frame.columns), f"the {self.name} frame being written", extra_ok=True)
        return pa.Table.from_pandas(frame.loc[:, list(self.names)], schema=self.arrow_schema, preserve_index=False)

    def missing_columns(self, present: Iterable[str]) -> list[str]:
        have = set(present)
        return [name for name in self.names if name not in have]

    def _require(self, present: set[str], where: str, *, extra_ok: bool = False) -> None:
        missing = self.missing_columns(present)
        extra = sorted(present - set(self.names))
        if missing:
            raise SchemaDriftError(f"{self.name}: column(s) {', '.join(missing)} missing from {where}")
        if extra and not extra_ok:
            raise SchemaDriftError(f"{self.name}: column(s) {', '.join(extra)} in {where} are not declared")

    # -- the warehouse -------------------------------------------------------------------

    def ddl(self) -> str:
        """``CREATE TABLE IF NOT EXISTS`` for this dataset (new tables; old ones have migrations)."""
        lines = [f'    "{c.name}" {c.sql_type}{"" if c.nullable else " NOT NULL"}' for c in self.columns]
        lines.append(f"    PRIMARY KEY ({', '.join(self.grain)})")
        return f'CREATE TABLE IF NOT EXISTS "{self.name}" (\n' + ",\n".join(lines) + "\n);"

    # -- documentation -------------------------------------------------------------------

    def markdown(self) -> str:
        """The README's table of this dataset: column, type, null, unit, meaning."""
        head = [
            f"#### `{self.name}`",
            "",
            f"{self.description} Grain: `{', '.join(self.grain)}`.",
            "",
            "| column | type | null | unit | description |",
            "|---|---|---|---|---|",
        ]
        body = [
            f"| `{c.name}` | {c.sql_type} | {'yes' if c.nullable else 'no'} | {c.unit} | {c.description} |"
            for c in self.columns
        ]
        return "\n".join(head + body)
