"""Wire formats shared by the simulated APIs: Tastytrade's number strings and timestamps.

Tastytrade sends most numbers as strings ("0.41", "0.0", "0.224186663") and instants in two
styles (``2023-05-24T17:17:57.615+00:00`` on accounts/positions, ``...Z`` on market metrics).
Getting these exactly right is the point of the simulator, so they are written once here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any


@dataclass(frozen=True)
class Reply:
    """An HTTP answer before encoding: dict/list bodies become JSON, str bodies plain text.

    Frozen because backends hand out bodies they cache (replay): the server derives a new Reply
    (``dataclasses.replace``) and deep-copies the body before any fault alters it.
    """

    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)
    truncate: bool = False
    """Send only the first half of the encoded body (the ``truncated`` fault)."""
    raw: bytes | None = None
    """The exact bytes to send for ``body`` (a recording replayed unchanged: re-encoding would
    change its spacing); whatever alters the body drops them."""


def num(value: float, places: int = 2) -> str:
    """A plain decimal string with at most ``places`` decimals and at least one ("0.0", "212.5").

    Never scientific notation and never "-0.0": clients parse these with ``Decimal(str(x))``.
    """
    text = f"{value:.{places}f}".rstrip("0")
    if text.endswith("."):
        text += "0"
    return "0.0" if float(text) == 0 else text


def iso_offset(instant: datetime) -> str:
    """``2023-05-24T17:17:57.615+00:00``: the style of accounts and positions."""
    return instant.astimezone(timezone.utc).isoformat(timespec="milliseconds")


def iso_z(instant: datetime) -> str:
    """``2023-06-07T19:55:22.110Z``: the style of market metrics."""
    return iso_offset(instant).removesuffix("+00:00") + "Z"


def tt_error(code: str, message: str) -> dict[str, Any]:
    """Tastytrade's error envelope."""
    return {"error": {"code": code, "message": message}}


def tt_items(items: list[dict[str, Any]], context: str) -> dict[str, Any]:
    """Tastytrade's list envelope."""
    return {"data": {"items": items}, "context": context}


def paginate(body: dict[str, Any], per_page: int, page_offset: int) -> dict[str, Any]:
    """Slice a list envelope to one page and add Tastytrade's ``pagination`` object."""
    items = body["data"]["items"]
    total = len(items)
    start = page_offset * per_page
    page = items[start : start + per_page]
    pages = (total + per_page - 1) // per_page
    return {
        **body,
        "data": {**body["data"], "items": page},
        "pagination": {
            "per-page": per_page,
            "page-offset": page_offset,
            "item-offset": start,
            "total-items": total,
            "total-pages": pages,
            "current-item-count": len(page),
            "previous-link": None,
            "next-link": None,
            "paging-link-template": None,
        },
    }
