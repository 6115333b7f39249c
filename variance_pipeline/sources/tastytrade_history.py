"""The account's history over the Tastytrade API: the transactions journal, net-liq history and
end-of-day balance snapshots (rows are built in ``tastytrade_journal``).

The journal's protocol (``api-facts.md``: the date filters are unreliable, ``per-page`` is at most
2000):

1. the first evening pages through the whole history oldest first (``sort=Asc``, 2000 a page): one
   request per page, every page followed until ``pagination`` says the last, the items adding up
   to ``total-items`` and each page starting at the ``item-offset`` the previous ones end at;
2. a later evening asks newest first (``sort=Desc``) and stops at the first page that reaches back
   past the last ``executed-at`` already landed less an overlap: one request (two when an evening
   holds more than a page), then filters on ``executed-at`` here; rows already landed come back in
   the overlap and are merged by ``id``, so nothing is counted twice. A transaction posted between
   two pages of a newest-first walk shifts the later pages by one: a row is then seen twice (merged
   by ``id``), never skipped.

Every page's body goes to ``on_raw`` before it is parsed. A page that fails, comes back short
before the last, starts at the wrong offset or is truncated raises ``SourceError`` naming the
account's path, the page and why, after the pages before it were landed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Mapping, Sequence
from urllib.parse import quote

from variance_pipeline.sources.http import SourceError
from variance_pipeline.sources.tastytrade import (
    MAX_PAGES,
    Fetched,
    RawCallback,
    TastytradeClient,
    _envelope_items,
    _file_safe,
)

HISTORY_PER_PAGE = 2000
"""The largest page the transactions and balance-snapshots endpoints accept (5000 is rejected)."""
RECENT_PER_PAGE = 250
"""Newest-first page size of a later evening: one page holds any evening's trades."""


@dataclass(frozen=True)
class HistoryPage:
    """Where a page of a paged history request sits: for error messages."""

    path: str
    sort: str
    per_page: int
    offset: int

    def where(self) -> str:
        return f"GET {self.path} page-offset {self.offset} (sort {self.sort}, per-page {self.per_page})"


def _counts(payload: Mapping[str, Any], page: HistoryPage, required: bool = True) -> dict[str, int]:
    """The ``pagination`` block's counts, checked: a journal page without one cannot be trusted (a
    short list of balance snapshots comes without one, as recorded: one page)."""
    block = payload.get("pagination")
    if block is None and not required:
        items = len(_envelope_items(payload, page.path))
        return {"total-items": items, "total-pages": 1, "item-offset": 0}
    if not isinstance(block, dict):
        raise SourceError(f"{page.where()}: the answer has no pagination block", path=page.path)
    counts = {}
    for key in ("total-items", "total-pages", "item-offset"):
        try:
            counts[key] = int(str(block.get(key)))
        except ValueError:
            raise SourceError(
                f"{page.where()}: pagination.{key} = {block.get(key)!r} is not an integer", path=page.path
            ) from None
    return counts


def _page(
    client: TastytradeClient, page: HistoryPage, extra: Sequence[str], raw_name: str, on_raw: RawCallback | None,
    paginated: bool = True,
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    query = "&".join([*extra, f"per-page={page.per_page}", f"page-offset={page.offset}"])
    try:
        _, payload = client.get(page.path, query, raw_name=raw_name, on_raw=on_raw)
        return _envelope_items(payload, page.path), _counts(payload, page, paginated)
    except SourceError as exc:
        message = str(exc)
        if message.startswith(f"GET {page.path}"):
            message = message[len(f"GET {page.path}"):].lstrip(": ")
        if message.startswith(page.where()):
            raise
        raise SourceError(f"{page.where()}: {message}", status=exc.status, path=page.path) from exc


def _path(account_number: str, tail: str) -> str:
    return f"/accounts/{quote(account_number, safe='')}/{tail}"


def transactions_history(
    client: TastytradeClient, account_number: str, on_raw: RawCallback | None = None, per_page: int = HISTORY_PER_PAGE
) -> Fetched:
    """The account's whole journal, oldest first (step 1 of the module docstring)."""
    path = _path(account_number, "transactions")
    name = f"transactions_{_file_safe(account_number)}.asc"
    items: list[dict[str, Any]] = []
    expected: int | None = None
    for offset in range(MAX_PAGES):
        page = HistoryPage(path, "Asc", per_page, offset)
        found, counts = _page(client, page, ("sort=Asc",), f"{name}.page-{offset:03d}.json", on_raw)
        if counts["item-offset"] != len(items):
            raise SourceError(
                f"{page.where()}: pagination.item-offset is {counts['item-offset']}, expected {len(items)}: "
                "a page is missing", path=path)
        expected = counts["total-items"] if expected is None else expected
        items.extend(found)
        last = offset + 1 >= counts["total-pages"]
        if not last and len(found) < per_page:
            raise SourceError(
                f"{page.where()}: {len(found)} items on a page of {per_page} before the last (page {offset + 1} of "
                f"{counts['total-pages']}): a page is missing or truncated", path=path)
        if last:
            if len(items) != expected:
                raise SourceError(
                    f"{page.where()}: {len(items)} transactions received where the pagination promised {expected}: "
                    "a page is missing", path=path)
            return Fetched(tuple(items), ())
    raise SourceError(f"GET {path}: more than {MAX_PAGES} pages; refusing to continue", path=path)


def executed_at(item: Mapping[str, Any], where: str) -> datetime:
    """A transaction's ``executed-at`` (tz-aware), or a ``SourceError`` naming the item."""
    raw = item.get("executed-at")
    try:
        parsed = datetime.fromisoformat(str(raw))
    except ValueError:
        raise SourceError(f"{where}: transaction {item.get('id')!r} has executed-at {raw!r}, not an ISO-8601 time") from None
    if parsed.tzinfo is None:
        raise SourceError(f"{where}: transaction {item.get('id')!r} executed-at {raw!r} has no UTC offset")
    return parsed


def transactions_since(
    client: TastytradeClient, account_number: str, since: datetime, on_raw: RawCallback | None = None,
    per_page: int = RECENT_PER_PAGE,
) -> Fetched:
    """What is new since ``since`` (the last instant landed less an overlap), newest first (step 2)."""
    path = _path(account_number, "transactions")
    name = f"transactions_{_file_safe(account_number)}.desc"
    items: list[tuple[datetime, dict[str, Any]]] = []
    for offset in range(MAX_PAGES):
        page = HistoryPage(path, "Desc", per_page, offset)
        found, counts = _page(client, page, ("sort=Desc",), f"{name}.page-{offset:03d}.json", on_raw)
        stamped = [(executed_at(item, page.where()), item) for item in found]
        items.extend(stamped)
        if offset + 1 >= counts["total-pages"] or not found or min(t for t, _ in stamped) < since:
            return Fetched(tuple(item for t, item in items if t >= since), ())
        if len(found) < per_page:
            raise SourceError(
                f"{page.where()}: {len(found)} items on a page of {per_page} before the last: a page is missing "
                "or truncated", path=path)
    raise SourceError(f"GET {path}: more than {MAX_PAGES} pages; refusing to continue", path=path)


def net_liq_history(
    client: TastytradeClient, account_number: str, time_back: str = "all", on_raw: RawCallback | None = None
) -> tuple[dict[str, Any], ...]:
    """``GET /accounts/{n}/net-liq/history?time-back=...``: OHLC points (not paginated)."""
    path = _path(account_number, "net-liq/history")
    raw_name = f"net_liq_history_{_file_safe(account_number)}.{_file_safe(time_back)}.json"
    _, payload = client.get(path, f"time-back={quote(time_back, safe='')}", raw_name=raw_name, on_raw=on_raw)
    return tuple(_envelope_items(payload, path))


def balance_snapshots(
    client: TastytradeClient, account_number: str, start: date, end: date, on_raw: RawCallback | None = None,
    per_page: int = HISTORY_PER_PAGE,
) -> tuple[dict[str, Any], ...]:
    """End-of-day balance snapshots from ``start`` to ``end``, every page."""
    path = _path(account_number, "balance-snapshots")
    name = f"balance_snapshots_{_file_safe(account_number)}"
    extra = ("time-of-day=EOD", "currency=USD", f"start-date={start.isoformat()}", f"end-date={end.isoformat()}")
    items: list[dict[str, Any]] = []
    for offset in range(MAX_PAGES):
        page = HistoryPage(path, "by date", per_page, offset)
        found, counts = _page(client, page, extra, f"{name}.page-{offset:03d}.json", on_raw, paginated=False)
        items.extend(found)
        if offset + 1 >= counts["total-pages"] or not found:
            return tuple(items)
    raise SourceError(f"GET {path}: more than {MAX_PAGES} pages; refusing to continue", path=path)
