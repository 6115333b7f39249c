"""Column types and columns: one logical type per column, every physical form derived from it.

A dataset's column is declared once (name, type, nullability, checks, unit, description); its
pandas dtype, pandera dtype, Arrow type and DuckDB type all come from the ``ColumnType`` here, so
the lake, the warehouse and the validation can never disagree about one column again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pda
import pyarrow as pa
from pandera.engines import pandas_engine


@dataclass(frozen=True)
class ColumnType:
    """A logical column type and its forms: pandas (nullable / not), pandera, Arrow, DuckDB.

    ``pandas`` dtypes keep a missing value missing on every supported pandas version (text is
    ``string``, whose missing value is ``pd.NA``: ``astype(str)`` on pandas 2.x would write the
    word 'None'); ``sql`` is DuckDB's name as ``information_schema.columns.data_type`` spells it.
    """

    name: str
    arrow: pa.DataType
    sql: str
    pandas: str
    pandas_nullable: str
    pandera: Any
    pandera_nullable: Any


STRING = ColumnType("string", pa.string(), "VARCHAR", "string", "string", str, str)
DATE = ColumnType("date", pa.date32(), "DATE", "object", "object", pandas_engine.Date, pandas_engine.Date)
TIMESTAMP = ColumnType(
    "timestamp",
    pa.timestamp("us", tz="UTC"),
    "TIMESTAMP WITH TIME ZONE",
    "datetime64[us, UTC]",
    "datetime64[us, UTC]",
    pd.DatetimeTZDtype(unit="us", tz="UTC"),
    pd.DatetimeTZDtype(unit="us", tz="UTC"),
)
FLOAT = ColumnType("float", pa.float64(), "DOUBLE", "float64", "float64", float, float)
INTEGER = ColumnType("integer", pa.int64(), "BIGINT", "int64", "Int64", int, pd.Int64Dtype())
BOOLEAN = ColumnType("boolean", pa.bool_(), "BOOLEAN", "bool", "boolean", bool, pd.BooleanDtype())


def _finite(values: pd.Series) -> pd.Series:
    return pd.Series(np.isfinite(values.to_numpy(dtype="float64")), index=values.index)


FINITE = pda.Check(_finite, name="finite")  # no infinities (NaN is handled by `nullable`)
NON_EMPTY = pda.Check.str_length(min_value=1)


def fraction(low: float = 0.0, high: float = 5.0) -> pda.Check:
    """A fraction bounded to catch unit slips (21.87 where 0.2187 belongs)."""
    return pda.Check.in_range(low, high)


@dataclass(frozen=True)
class Column:
    """One column of a dataset: what it holds, in which unit, and what a valid value is."""

    name: str
    type: ColumnType
    description: str
    nullable: bool = False
    unit: str = ""
    checks: tuple[pda.Check, ...] = ()

    @property
    def pandas_dtype(self) -> str:
        return self.type.pandas_nullable if self.nullable else self.type.pandas

    @property
    def sql_type(self) -> str:
        return self.type.sql

    def pandera_column(self, unique: bool = False) -> pda.Column:
        dtype = self.type.pandera_nullable if self.nullable else self.type.pandera
        return pda.Column(
            dtype, checks=list(self.checks), nullable=self.nullable, unique=unique, description=self.description,
            title=self.unit or None,
        )

    def arrow_field(self) -> pa.Field:
        return pa.field(self.name, self.type.arrow, nullable=self.nullable)
