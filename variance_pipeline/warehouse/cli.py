"""`variance-warehouse rebuild`: recreate warehouse.duckdb from the lake (bronze/silver stay)."""

from __future__ import annotations

import argparse
import sys

from variance_pipeline.lake.layout import Lake
from variance_pipeline.settings import ConfigurationError, Settings
from variance_pipeline.warehouse.load import rebuild


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="variance-warehouse", description=__doc__)
    parser.add_argument("command", choices=["rebuild"])
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
    except ConfigurationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    lake = Lake(settings.data_dir)
    if args.command == "rebuild":
        report = rebuild(lake)
        print(f"rebuilt {lake.warehouse_path}: {report.rows_by_table}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
