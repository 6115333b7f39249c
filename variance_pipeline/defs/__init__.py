"""Dagster definitions, one module per stage, resources included (``resources.py``).

``dg.load_from_defs_folder`` on this package is the whole code location: nothing is listed by
hand, and a new asset, check, schedule, sensor or resource in any module here is part of it.
"""
