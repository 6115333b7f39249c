"""Dagster definitions, one module per stage; ``dg`` autoloads every asset, check and schedule here.

Nothing is listed by hand: a new asset or check in any module of this package is part of the code
location. ``build_definitions`` adds the resources for one environment.
"""

from __future__ import annotations

import dagster as dg

from variance_pipeline.settings import PROJECT_ROOT, Settings


def pipeline_definitions() -> dg.Definitions:
    """Every asset, asset check, job and schedule in ``variance_pipeline/defs/``, without resources."""
    return dg.load_from_defs_folder(project_root=PROJECT_ROOT)


def build_definitions(settings: Settings) -> dg.Definitions:
    """Everything for one environment; tests build their own with a tmp data dir.

    Runs execute in process: the steps of one run are sequential by data flow anyway, and a
    process per step cost 2-7 s and ~260 MiB each (20-36 s of every run, whatever it fetched).
    Each asset is still its own step, so the UI shows per-asset status, logs and checks, and
    run retries (dagster.yaml) still re-launch a run whose process died.
    """
    from variance_pipeline.defs.resources import build_resources

    return dg.Definitions.merge(
        pipeline_definitions(),
        dg.Definitions(resources=build_resources(settings), executor=dg.in_process_executor),
    )
