"""Tastytrade symbology: which underlying a position belongs to, and which watchlist symbols are sane.

Positions arrive as contract symbols (``/ZNH6``, ``./ZNH6 OZNG6 260123P111``,
``RIVN  230609P00014000``) but volatility is tracked per underlying (``/ZN``, ``RIVN``): market
metrics, candles and the ``portfolio`` view all join on that underlying, so the mapping lives in
one place. Watchlist symbols come from a user's file or environment variable and end up in URLs,
file names and SQL, so they are checked against the shapes real tickers have before anything
else sees them.
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

FUTURE_TYPES = frozenset({"Future", "Future Option"})
EQUITY_OPTION_TYPES = frozenset({"Equity Option"})

# A dated futures contract: root, CME month code, 1- or 2-digit year (``/ESZ5``, ``/ESZ25``).
# The root is matched lazily so the month code is the letter just before the trailing year.
_FUTURE_CONTRACT = re.compile(r"^(/[A-Z0-9]+?)[FGHJKMNQUVXZ]\d{1,2}$")
_FUTURE_ROOT = re.compile(r"^/[A-Z0-9]+$")
# OCC option symbol: root padded to 6, YYMMDD, C/P, strike * 1000 padded to 8.
_OCC = re.compile(r"^([A-Z0-9]{1,6}) *\d{6}[CP]\d{8}$")

# Tastytrade-style underlyings a watchlist may name: equities and indices (``SPY``, ``SPX``),
# share classes and crypto pairs with a slash (``BRK/B``, ``BTC/USD``), futures roots (``/ES``).
_WATCHLIST_SYMBOL = re.compile(r"^(?:[A-Z0-9]{1,10}(?:/[A-Z0-9]{1,6})?|/[A-Z0-9]{1,8})$")
_MAX_SYMBOL_LENGTH = 24


# Volatility indices whose options settle to a future of the same expiration (Cboe: a VIX option
# expires with that month's VX future and settles to the same SOQ), so that future, never the spot
# index, is the option's underlying. None: no listed future this pipeline can price (VXN, RVX
# options stay unpriced rather than priced on the spot index).
VOLATILITY_INDEX_ROOTS: dict[str, str | None] = {"VIX": "/VX", "VIXW": "/VX", "VXN": None, "RVX": None}
MONTH_CODES = "FGHJKMNQUVXZ"


def volatility_future(root: str | None, expiration: date | None) -> str | None:
    """The future an option on a volatility index settles to: ``/VX`` + month code + year digit
    (a VIX option expiring 2025-12-17 -> ``/VXZ5``); None for other roots or without a date.

    One rule for both places that need it: the option-quotes snapshot asks Tastytrade for this
    future's quote (``sources``), and the model prices the option on it (``transforms``)."""
    future = VOLATILITY_INDEX_ROOTS.get(root) if isinstance(root, str) else None
    if future is None or expiration is None:
        return None
    return f"{future}{MONTH_CODES[expiration.month - 1]}{expiration.year % 10}"


def _future_root(symbol: str) -> str | None:
    """``/ZNH6`` -> ``/ZN``; ``/MESM6`` -> ``/MES``; ``/ZN`` -> ``/ZN``; a future option's own
    future (``./MESM6EX3H6 260320P6450`` -> ``/MES``), read by position: the contract fills the
    5 characters after ``./`` (fixed width), never up to the first space."""
    text = symbol.strip()
    contract = "/" + text[2:7].rstrip() if text.startswith("./") else text
    dated = _FUTURE_CONTRACT.match(contract)
    if dated:
        return dated.group(1)
    if _FUTURE_ROOT.match(contract):
        return contract
    return None


def root_symbol(symbol: str, instrument_type: str, underlying_symbol: str | None) -> str:
    """The underlying a position is exposed to, as market metrics and candles key it.

    Futures and future options map to the futures root (``/ZN``) whatever the root's length;
    equity options to their underlying stock or index (Tastytrade's ``underlying-symbol``, which
    is ``SPX`` for an ``SPXW`` option, or the OCC root when the API left it out); everything else
    (equities, crypto, indices) is its own underlying.

    Raises ``ValueError`` for a future whose symbol has no recognisable root: guessing would
    silently join the position to the wrong volatility.
    """
    if instrument_type in FUTURE_TYPES:
        # A future option's underlying-symbol is its own future (/MESM6): the API's word first.
        candidates = (underlying_symbol, symbol) if instrument_type == "Future Option" else (symbol, underlying_symbol)
        for candidate in candidates:
            if candidate:
                root = _future_root(candidate)
                if root is not None:
                    return root
        raise ValueError(
            f"cannot find the futures root of {instrument_type} {symbol!r} "
            f"(underlying-symbol {underlying_symbol!r})"
        )
    if instrument_type in EQUITY_OPTION_TYPES:
        if underlying_symbol:
            return underlying_symbol.strip()
        occ = _OCC.match(symbol.strip())
        if occ is None:
            raise ValueError(f"{symbol!r} is not an OCC option symbol and has no underlying-symbol")
        return occ.group(1)
    return symbol.strip()


# Cash-settled indices whose market metrics often carry no dividend yield, and the ETF that
# tracks each (whose yield is the index's, near enough: the ETF passes the constituents'
# dividends through). q = 0 instead skews an index option by about 1.4 deltas ATM at 45 days.
DIVIDEND_PROXIES: dict[str, str] = {
    "SPX": "SPY", "SPXW": "SPY", "XSP": "SPY",
    "NDX": "QQQ", "NDXP": "QQQ", "XND": "QQQ",
    "RUT": "IWM", "RUTW": "IWM", "MRUT": "IWM",
    "DJX": "DIA", "OEX": "OEF", "XEO": "OEF",
}


def _shown(raw: str, limit: int = 40) -> str:
    """``repr`` of a user value, cut short so a 10,000-character input cannot flood a log."""
    text = repr(raw)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(raw)} characters)"


def clean_symbol(raw: str) -> str:
    """Normalise one user-supplied underlying (strip, upper-case) or raise ``ValueError``.

    Only Tastytrade-style underlyings are accepted, because the whole warehouse is keyed by them.
    Yahoo spellings (``^VIX``, ``ES=F``, ``BRK-B``) are rejected with the Tastytrade spelling to
    use instead, rather than being silently translated or sent to an API that would not know them.
    """
    symbol = raw.strip().upper()
    if not symbol:
        raise ValueError(f"empty watchlist symbol {_shown(raw)}")
    if len(symbol) > _MAX_SYMBOL_LENGTH:
        raise ValueError(
            f"watchlist symbol {_shown(raw)} is longer than {_MAX_SYMBOL_LENGTH} characters"
        )
    if _WATCHLIST_SYMBOL.match(symbol):
        return symbol
    hint = _tastytrade_spelling(symbol)
    suggestion = f"; use the Tastytrade symbol {hint!r}" if hint else ""
    raise ValueError(
        f"invalid watchlist symbol {_shown(raw)}: expected a ticker such as SPY, BRK/B or /ES"
        f"{suggestion}"
    )


def _tastytrade_spelling(symbol: str) -> str | None:
    """The Tastytrade symbol a Yahoo-style ticker probably meant, if the shape is unambiguous."""
    candidate: str | None = None
    if symbol.startswith("^"):
        candidate = symbol[1:]
    elif symbol.endswith("=F"):
        candidate = "/" + symbol[:-2]
    elif symbol.count("-") == 1 or symbol.count(".") == 1:
        candidate = re.sub(r"[-.]", "/", symbol)
    if candidate and _WATCHLIST_SYMBOL.match(candidate):
        return candidate
    return None


def _comma_list(text: str) -> list[str]:
    """Split on commas, dropping blank pieces (a trailing comma is harmless)."""
    return [piece for piece in text.split(",") if piece.strip()]


def _existing_file(spec: str) -> Path | None:
    """``spec`` as a file path if one exists; a symbol list too long or odd to be a path is not."""
    try:
        path = Path(spec)
        return path if path.is_file() else None
    except (OSError, ValueError):  # ENAMETOOLONG, embedded NUL
        return None


def parse_watchlist(spec: str | None, default_file: Path) -> list[str]:
    """The extra underlyings to track, cleaned and deduplicated in first-seen order.

    ``spec`` (``VARIANCE_WATCHLIST``) is either a path to an existing file (one symbol per line,
    ``#`` comments) or a comma list; unset or blank falls back to ``default_file`` when it exists,
    else no extra symbols. A bad symbol fails the whole list with its location: a watchlist that
    silently dropped a typo would quietly stop tracking that underlying. A comma list made only
    of separators (``,,``) is rejected too: it was set on purpose, yet names nothing, which is
    likelier a broken shell substitution than a wish to track no extra symbols. (A stray comma
    beside real symbols, ``SPY,,QQQ,``, is harmless and ignored.)
    """
    entries: list[tuple[str, str]] = []  # (raw symbol, where it came from)
    if spec is None or not spec.strip():
        source_file = default_file if default_file.is_file() else None
    else:
        source_file = _existing_file(spec.strip())
        if source_file is None:
            where = "VARIANCE_WATCHLIST (no such file, read as a comma list)"
            entries = [(piece, where) for piece in _comma_list(spec)]
            if not entries:
                raise ValueError(
                    f"{where}: {_shown(spec)} names no symbols; give a comma list such as "
                    "SPY,QQQ,/ES or a file, or leave VARIANCE_WATCHLIST unset"
                )
    if source_file is not None:
        lines = source_file.read_text(encoding="utf-8").splitlines()
        entries = [
            (piece, f"{source_file}:{number}")
            for number, line in enumerate(lines, start=1)
            for piece in _comma_list(line.split("#", 1)[0])
        ]
    seen: dict[str, None] = {}
    for raw, where in entries:
        try:
            seen.setdefault(clean_symbol(raw), None)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
    return list(seen)
