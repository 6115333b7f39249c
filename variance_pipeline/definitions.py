"""The Dagster code location: ``dagster dev -m variance_pipeline.definitions`` loads ``defs``."""

from __future__ import annotations

import dagster as dg

from variance_pipeline.defs.assets import ALL_ASSETS
from variance_pipeline.defs.resources import build_resources
from variance_pipeline.defs.schedules import eod_job, eod_schedule
from variance_pipeline.settings import Settings


def build_definitions(settings: Settings) -> dg.Definitions:
    """Everything for one environment; tests build their own with a tmp data dir."""
    return dg.Definitions(
        assets=ALL_ASSETS, jobs=[eod_job], schedules=[eod_schedule], resources=build_resources(settings)
    )


defs = build_definitions(Settings.from_env())
