"""The Dagster code location: ``dagster dev -m variance_pipeline.definitions`` and ``dg`` load ``defs``.

Lazy (``@dg.definitions``): nothing is wired at import. When Dagster loads the location, the
environment decides the wiring (``VARIANCE_SOURCE`` and friends, read in ``defs/resources.py``);
a missing or invalid setting fails that load with a message naming the variable.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Mapping

import dagster as dg

DEFS_FOLDER = Path(__file__).resolve().parent / "defs"


def load_definitions() -> dg.Definitions:
    """Everything in ``defs/`` (assets, checks, schedules, sensors, resources, executor)."""
    return dg.load_from_defs_folder(path_within_project=DEFS_FOLDER)


@contextmanager
def environment(variables: Mapping[str, str]) -> Iterator[None]:
    """``variables`` set in ``os.environ`` for the duration (a loader that reads the environment
    once, such as ``load_definitions`` in the demo's evenings and the tests), then restored."""
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@dg.definitions
def defs() -> dg.Definitions:
    return load_definitions()
