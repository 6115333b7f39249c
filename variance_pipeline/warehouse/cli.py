"""`variance-warehouse rebuild`: recreate warehouse.duckdb from the lake (bronze/silver stay).

`variance-warehouse gc [--grace-hours H] [--dry-run]`: for an s3:// data dir, delete the objects
its manifest no longer lists (superseded versions, a killed run's uploads) once older than the
grace period. A rebuild of an s3:// data dir pulls its working copy first and commits the new
warehouse after, as a run does.
"""

from __future__ import annotations

import argparse
import sys

from variance_pipeline.lake.layout import DataDirConflict, Lake
from variance_pipeline.lake.mirror import Mirror
from variance_pipeline.lake.object_store import (
    DEFAULT_GC_GRACE_SECONDS,
    ObjectStore,
    ObjectStoreError,
    S3Credentials,
)
from variance_pipeline.settings import ConfigurationError, Settings
from variance_pipeline.warehouse.load import rebuild

SYNC_WAIT_SECONDS = 60.0


def _rebuild(settings: Settings) -> None:
    lake = Lake(settings.data_dir)
    if settings.remote is None:
        report = rebuild(lake)
        print(f"rebuilt {lake.warehouse_path}: {report.rows_by_table}")
        return
    mirror = Mirror(ObjectStore(settings.remote, S3Credentials.from_env()), settings.data_dir, settings.source)
    with mirror.locked(wait_seconds=SYNC_WAIT_SECONDS, run_id="rebuild"):
        print(mirror.pull().summary("pulled"))
        report = rebuild(lake)
        print(f"rebuilt {lake.warehouse_path}: {report.rows_by_table}")
        print(mirror.push("rebuild").summary("pushed"))


def _gc(settings: Settings, grace_hours: float, dry_run: bool) -> None:
    if settings.remote is None:
        raise ConfigurationError("gc is for an s3:// data dir (VARIANCE_DATA_DIR=s3://bucket/prefix); a local one has no garbage")
    store = ObjectStore(settings.remote, S3Credentials.from_env())
    keys = store.collect_garbage(grace_seconds=grace_hours * 3600, dry_run=dry_run)
    verb = "would delete" if dry_run else "deleted"
    print(f"{verb} {len(keys)} object(s) {store.url}/manifest.json does not list (older than {grace_hours:g} h)")
    for key in keys:
        print(f"  {key}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="variance-warehouse", description=__doc__)
    parser.add_argument("command", choices=["rebuild", "gc"])
    parser.add_argument("--grace-hours", type=float, default=DEFAULT_GC_GRACE_SECONDS / 3600,
                        help="gc: keep unlisted objects younger than this (a commit may still be coming)")
    parser.add_argument("--dry-run", action="store_true", help="gc: list, delete nothing")
    args = parser.parse_args(argv)
    if args.grace_hours < 0:
        parser.error("--grace-hours must be >= 0")
    try:
        settings = Settings.from_env()
        if args.command == "rebuild":
            _rebuild(settings)
        else:
            _gc(settings, args.grace_hours, args.dry_run)
    except (ConfigurationError, ObjectStoreError, DataDirConflict) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
