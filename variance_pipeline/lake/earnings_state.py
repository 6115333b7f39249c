"""What the earnings history fetch remembers per symbol, and when a symbol is due again.

History does not change, so a symbol is asked again only after the report the last fetch expected
(the snapshot's ``earnings_date``) has passed, or after ``REFETCH_DAYS`` as a safety net. The
state of each symbol is one small JSON file under ``cache/earnings/`` (written atomically, after
the lake partition, so a crash re-asks rather than forgets).
"""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import quote

from variance_pipeline.lake.atomic import write_json_atomic

HISTORY_DAYS = 3 * 366  # the first fetch of a symbol reaches this far back
REFETCH_DAYS = 100  # ask again at least this often, even if no report was expected
OVERLAP_DAYS = 120  # a later fetch starts this long before the previous one (late corrections)


def due(state: dict, today: date) -> bool:
    """Whether a symbol's history must be asked again today."""
    if not state.get("fetched_on"):
        return True
    fetched = date.fromisoformat(state["fetched_on"])
    expected = state.get("next_expected")
    if expected and date.fromisoformat(expected) < today and fetched <= date.fromisoformat(expected):
        return True
    return (today - fetched).days >= REFETCH_DAYS


def fetch_start(state: dict, today: date) -> date:
    """Where a symbol's request starts: the whole history once, then an overlap before the last fetch."""
    if state.get("fetched_on"):
        return date.fromisoformat(state["fetched_on"]) - timedelta(days=OVERLAP_DAYS)
    return today - timedelta(days=HISTORY_DAYS)


class EarningsState:
    """One JSON file per symbol (percent-encoded, so ``/ES`` is one file name)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, symbol: str) -> Path:
        return self.root / f"{quote(symbol, safe='')}.json"

    def read(self, symbol: str) -> dict:
        try:
            doc = json.loads(self.path(symbol).read_text())
            return doc if isinstance(doc, dict) else {}
        except (FileNotFoundError, ValueError):
            return {}

    def write(self, symbol: str, fetched_on: date, next_expected: object) -> None:
        write_json_atomic(
            self.path(symbol), {"symbol": symbol, "fetched_on": fetched_on.isoformat(), "next_expected": str(next_expected)}
        )
