"""``make report`` / ``variance-report`` / ``python -m variance_pipeline.reports.cli``: rebuild the
evening report from the current warehouse, without a Dagster run, and print its path.

Useful after a manual fix, to change the screen's thresholds for one look, or to read the page
while no scheduled run happens. It reads the warehouse read-only (waiting a bounded time while a
load holds it), writes ``reports/evening-YYYY-MM-DD.html`` and ``reports/latest.html`` atomically,
and says that check results were not asked for (they live in Dagster; the asset includes them).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields

from variance_pipeline.calendar import last_closed_session
from variance_pipeline.lake.layout import Lake
from variance_pipeline.reports.evening import ReportError, build_report
from variance_pipeline.reports.screen import Screen
from variance_pipeline.settings import ConfigurationError, Settings
from variance_pipeline.warehouse.connection import WarehouseCorruptError, WarehouseLockedError

HELP = {
    "min_iv_rank": "own IV rank at least this (fraction)",
    "min_iv_percentile": "... or own IV percentile at least this (fraction)",
    "min_iv_hv_ratio": "implied volatility / HV20 above this",
    "min_liquidity_rating": "Tastytrade liquidity rating at least this (0-5)",
    "dte_window": "no earnings within this many days",
    "max_rows": "candidates listed",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="variance-report", description=__doc__.splitlines()[0])
    defaults = Screen()
    for spec in fields(Screen):
        value = getattr(defaults, spec.name)
        parser.add_argument(f"--{spec.name.replace('_', '-')}", type=type(value), default=value,
                            help=f"{HELP[spec.name]} (default {value})")
    args = parser.parse_args(argv)
    screen = Screen(**{spec.name: getattr(args, spec.name) for spec in fields(Screen)})
    try:
        settings = Settings.from_env()
        clock = settings.now()
        built = build_report(Lake(settings.data_dir), screen=screen, clock=clock,
                             fallback_evening=last_closed_session(clock))
    except ConfigurationError as exc:  # a setting is wrong: the usage exit code, as the other CLIs
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (ReportError, FileNotFoundError, WarehouseLockedError, WarehouseCorruptError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{built.subject} ({built.seconds:.2f} s)", file=sys.stderr)
    print(built.files.dated)
    return 0


if __name__ == "__main__":
    sys.exit(main())
