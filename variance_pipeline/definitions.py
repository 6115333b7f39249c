"""The Dagster code location: ``dagster dev -m variance_pipeline.definitions`` and ``dg`` load ``defs``.

Lazy (``@dg.definitions``): nothing is wired at import. When Dagster loads the location, the
environment decides the wiring (``VARIANCE_SOURCE`` and friends); a missing or invalid setting
fails that load with a message naming the variable.
"""

import dagster as dg

from variance_pipeline.defs import build_definitions
from variance_pipeline.settings import Settings


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions(Settings.from_env())
