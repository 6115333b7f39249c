"""What the chart fetch remembers per symbol: ``state/candles/<s>.json``, beside the lake.

Not data but memory, so a run does not ask Yahoo again for what it already knows: the Yahoo
ticker the bars were fetched as, when, the splits and dividends seen, the sessions Yahoo was asked
for and had no usable bar for (halts, futures holidays, before the listing, and bars the candle
declaration refused: a known gap costs no request on every run), when Yahoo last answered 404, and
the futures sessions whose stored bar was taken before its calendar day ended (to fetch again).
The bars themselves live only in the lake (``candles.store``). The file is written after the bars,
atomically; losing it costs at most one request (the gaps are checked again).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any, Mapping

from variance_pipeline.candles.bars import set_aside
from variance_pipeline.lake.atomic import write_json_atomic
from variance_pipeline.sources.yahoo import Dividend, Split


@dataclass(frozen=True)
class FetchState:
    """One symbol's fetch state."""

    yahoo_ticker: str
    fetched_at: datetime
    splits: tuple[Split, ...] = ()
    dividends: tuple[Dividend, ...] = ()
    # Sessions without a bar in the store that are not worth asking for again (see the docstring).
    no_bar_sessions: frozenset[date] = frozenset()
    # When Yahoo last answered 404 for the ticker: it is asked again only after an interval
    # (``refresh_candles``' ``not_found_retry``), so an unknown symbol costs no request a day.
    not_found_at: datetime | None = None
    # Futures sessions stored from a bar taken before their calendar day ended (after the Globex
    # halt, before Yahoo's day bar stopped growing): fetched again once that day is over.
    recheck_sessions: frozenset[date] = frozenset()

    def to_json(self, symbol: str) -> dict[str, Any]:
        return {
            "symbol": symbol,
            "yahoo_ticker": self.yahoo_ticker,
            "fetched_at": self.fetched_at.isoformat(),
            "splits": [
                {"date": s.date.isoformat(), "numerator": s.numerator, "denominator": s.denominator}
                for s in self.splits
            ],
            "dividends": [{"date": d.date.isoformat(), "amount": d.amount} for d in self.dividends],
            "no_bar_sessions": sorted(d.isoformat() for d in self.no_bar_sessions),
            "not_found_at": self.not_found_at.isoformat() if self.not_found_at else None,
            "recheck_sessions": sorted(d.isoformat() for d in self.recheck_sessions),
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> FetchState:
        """Also reads the sidecars of the old candle cache (same keys, and a flag no longer used)."""
        return cls(
            yahoo_ticker=str(doc["yahoo_ticker"]),
            fetched_at=datetime.fromisoformat(doc["fetched_at"]),
            splits=tuple(
                Split(date.fromisoformat(s["date"]), float(s["numerator"]), float(s["denominator"]))
                for s in doc.get("splits", [])
            ),
            dividends=tuple(
                Dividend(date.fromisoformat(d["date"]), float(d["amount"])) for d in doc.get("dividends", [])
            ),
            no_bar_sessions=frozenset(date.fromisoformat(d) for d in doc.get("no_bar_sessions", [])),
            not_found_at=datetime.fromisoformat(doc["not_found_at"]) if doc.get("not_found_at") else None,
            recheck_sessions=frozenset(date.fromisoformat(d) for d in doc.get("recheck_sessions", [])),
        )


def read_state(path: Path, symbol: str) -> FetchState | None:
    """The state at ``path``, or None when there is none.

    An unreadable file is moved aside to ``<file>.corrupt`` with a warning naming it and treated
    as missing: it only costs a re-check of the symbol's gaps, and stays for inspection.
    """
    try:
        body = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        return FetchState.from_json(json.loads(body))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:  # UnicodeDecodeError is a ValueError
        set_aside(path, f"candle fetch state of {symbol!r} is unreadable ({type(exc).__name__}: {exc})",
                  "treated as missing: the symbol's provider gaps are checked again")
        return None


def write_state(path: Path, symbol: str, state: FetchState) -> Path:
    return write_json_atomic(path, state.to_json(symbol))
