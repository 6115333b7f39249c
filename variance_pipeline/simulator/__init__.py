"""Embedded market simulator: Tastytrade and Yahoo chart APIs over HTTP, deterministic per seed.

Used by ``make demo``, the tests and ``VARIANCE_SOURCE=simulator``: the pipeline talks to it with
the same HTTP code it uses against the real services. See ``server.SimulatorServer`` and
``python -m variance_pipeline.simulator --help``.
"""

from variance_pipeline.simulator.server import SimulatorServer

__all__ = ["SimulatorServer"]
