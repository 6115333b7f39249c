"""The Dagster code location: ``dagster dev -m variance_pipeline.definitions`` loads ``defs``.

The environment decides the wiring (``VARIANCE_SOURCE`` and friends); a missing or invalid
setting fails here, at load time, with a message naming the variable.
"""

from variance_pipeline.defs import build_definitions
from variance_pipeline.settings import Settings

defs = build_definitions(Settings.from_env())
