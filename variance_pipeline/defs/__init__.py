"""Dagster definitions: assets, checks, schedules and resources of the pipeline."""

import dagster as dg

from variance_pipeline.defs.assets import ALL_ASSETS
from variance_pipeline.defs.checks import ALL_CHECKS
from variance_pipeline.defs.resources import build_resources
from variance_pipeline.defs.schedules import eod_job, eod_schedule
from variance_pipeline.settings import Settings


def build_definitions(settings: Settings) -> dg.Definitions:
    """Everything for one environment; tests build their own with a tmp data dir."""
    return dg.Definitions(
        assets=ALL_ASSETS,
        asset_checks=ALL_CHECKS,
        jobs=[eod_job], schedules=[eod_schedule], resources=build_resources(settings)
    )
