"""Each dataset declared once (columns, types, nullability, checks, units, descriptions, grain);
pandera, Arrow, DuckDB DDL, Dagster column metadata and the README tables are derived from it."""
