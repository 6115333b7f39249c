"""Option symbols -> (underlying, root, option type, strike, expiration date), vectorised.

Two shapes reach the pipeline (``docs/reference/api-facts.md``, Symbology):

* OCC equity and index options, the root padded to 6 characters, then ``YYMMDD``, ``C``/``P`` and
  the strike times 1000 in 8 digits: ``SPY   240115C00450000`` is the SPY 450 call expiring
  2024-01-15; ``RIVN  230609P00014000`` the RIVN 14 put of 2023-06-09. The underlying is the OCC
  root (``SPXW`` stays ``SPXW``: the position's ``underlying-symbol`` says it is SPX, not this
  parser; nothing here guesses an underlying from a name).
* Tastytrade future options, fixed width: ``./``, the future contract padded to 5, the option
  product padded to 6, then ``YYMMDD``, ``C``/``P`` and the strike as quoted (decimals allowed:
  ``111.5``, ``0.6850``). ``./ZNH6 OZNG6 260123P111`` is the option on ``/ZNH6`` (product
  ``OZNG6``), expiring 2026-01-23, put, strike 111; ``./MESM6EX3H6 260320P6450`` the 6450 put on
  ``/MESM6`` (product ``EX3H6``: no space between the fields when they fill their width);
  ``./GCJ6 OGJ6  260326C5740`` the 5740 call on ``/GCJ6``. The fields are read by position, never
  by splitting on spaces. The underlying is the future (``/MESM6``); the root (``/MES``) is what
  market metrics and candles are keyed by.

Symbols of other instruments (``AAPL``, ``BRK/B``, ``/ESZ5``, ``BTC/USD``) are not options: they
parse to None. A symbol that is meant to be an option (its instrument type says so, or it has the
shape of one: it starts with ``./``, contains a space, or has a ``YYMMDD[CP]digit`` run) but does
not match either grammar, or names an impossible date, raises ``ValueError`` naming the symbol.
"""

from __future__ import annotations

import re
from datetime import date
from typing import NamedTuple

import numpy as np
import pandas as pd

from variance_pipeline.instruments.symbology import root_symbol as _root_symbol
from variance_pipeline.instruments.symbology import volatility_future

OPTION_INSTRUMENT_TYPES = frozenset({"Equity Option", "Future Option"})

# Root 1-6 characters then padding (tolerating none, like symbology._OCC), YYMMDD, C/P, 8 digits.
OCC_PATTERN = r"^(?P<root>[A-Z0-9]{1,6}) *(?P<yymmdd>\d{6})(?P<type>[CP])(?P<strike>\d{8})$"
# ./ then the future contract in 5 characters and the option product in 6 (each left-aligned,
# padded with spaces), then YYMMDD, C/P and the strike; the future must be a dated contract.


def _field(width: int) -> str:
    """A left-aligned field of ``width`` characters: n symbol characters, then spaces."""
    return "|".join(f"[A-Z0-9]{{{n}}}{' ' * (width - n)}" for n in range(width, 0, -1))


FUTURE_OPTION_PATTERN = (
    rf"^\./(?P<future>{_field(5)})(?P<product>{_field(6)})"
    r"(?P<yymmdd>\d{6})(?P<type>[CP])(?P<strike>\d+(?:\.\d+)?)$"
)
FUTURE_CONTRACT_PATTERN = r"[A-Z0-9]+?[FGHJKMNQUVXZ]\d{1,2}"
_OCC = re.compile(OCC_PATTERN)
_FUTURE_OPTION = re.compile(FUTURE_OPTION_PATTERN)
_FUTURE_CONTRACT = re.compile(FUTURE_CONTRACT_PATTERN)
_LOOKS_LIKE_OPTION = re.compile(r"^\./|\s|\d{6}[CP]\d")

COLUMNS = ("underlying_symbol", "root_symbol", "option_type", "strike", "expiration_date", "symbol_style")


class OptionSymbol(NamedTuple):
    underlying_symbol: str  # OCC root (``SPY``) or the future contract (``/ZNH6``)
    root_symbol: str  # what metrics are keyed by: ``SPY``, ``/ZN``
    option_type: str  # 'C' or 'P'
    strike: float
    expiration_date: date
    symbol_style: str  # 'occ' or 'future_option'


def _expiration(yymmdd: str, symbol: str) -> date:
    try:
        return date(2000 + int(yymmdd[:2]), int(yymmdd[2:4]), int(yymmdd[4:6]))
    except ValueError as exc:
        raise ValueError(f"option symbol {symbol!r} has an impossible expiration date {yymmdd!r}") from exc


def _is_option_attempt(symbol: str, instrument_type: str | None) -> bool:
    if instrument_type is not None:
        return instrument_type in OPTION_INSTRUMENT_TYPES
    return bool(_LOOKS_LIKE_OPTION.search(symbol))


def parse_option_symbol(symbol: str, instrument_type: str | None = None) -> OptionSymbol | None:
    """Parse one symbol; None for a non-option; ``ValueError`` naming a malformed option symbol.

    With ``instrument_type`` (Tastytrade's ``instrument-type``) the decision option / not option
    is the API's; without it, the symbol's shape decides (see the module docstring).
    """
    text = symbol.strip() if isinstance(symbol, str) else ""
    if not isinstance(symbol, str):
        if instrument_type in OPTION_INSTRUMENT_TYPES:
            raise ValueError(f"option symbol {symbol!r} is not a string")
        return None
    if not _is_option_attempt(text, instrument_type):
        return None
    if instrument_type in (None, "Equity Option"):
        occ = _OCC.match(text)
        if occ:
            return OptionSymbol(
                occ["root"], occ["root"], occ["type"], int(occ["strike"]) / 1000.0,
                _expiration(occ["yymmdd"], symbol), "occ",
            )
    if instrument_type in (None, "Future Option"):
        fop = _FUTURE_OPTION.match(text)
        if fop and _FUTURE_CONTRACT.fullmatch(fop["future"].rstrip()):
            future = "/" + fop["future"].rstrip()
            return OptionSymbol(
                future, _root_symbol(future, "Future", None), fop["type"], float(fop["strike"]),
                _expiration(fop["yymmdd"], symbol), "future_option",
            )
    kind = instrument_type or "option"
    raise ValueError(
        f"malformed {kind} symbol {symbol!r}: expected an OCC symbol like 'SPY   240115C00450000' "
        f"or a fixed-width future option like './MESM6EX3H6 260320P6450'"
    )


def parse_option_symbols(
    symbols: pd.Series, instrument_types: pd.Series | None = None, *, errors: str = "raise"
) -> pd.DataFrame:
    """Vectorised ``parse_option_symbol`` over a Series (``str.extract``), index preserved.

    Columns ``COLUMNS`` plus ``is_option`` (bool) and ``error`` (None, or the message the scalar
    parser would raise). Non-options have ``is_option`` False and nulls elsewhere.
    ``errors='raise'`` raises the first malformed symbol's ``ValueError``; ``'coerce'`` reports it
    in ``error`` and leaves that row's fields null.
    """
    if errors not in ("raise", "coerce"):
        raise ValueError(f"errors must be 'raise' or 'coerce', not {errors!r}")
    raw = pd.Series(symbols, dtype="object")
    text = raw.where(raw.map(lambda s: isinstance(s, str)), None).str.strip()
    if instrument_types is None:
        attempt = text.str.contains(_LOOKS_LIKE_OPTION, na=False)
        allow_occ = allow_fop = pd.Series(True, index=raw.index)
    else:
        kinds = pd.Series(instrument_types, index=raw.index, dtype="object")
        attempt = kinds.isin(OPTION_INSTRUMENT_TYPES)
        allow_occ, allow_fop = kinds.eq("Equity Option"), kinds.eq("Future Option")

    occ = text.str.extract(OCC_PATTERN)
    fop = text.str.extract(FUTURE_OPTION_PATTERN)
    is_occ = attempt & allow_occ & occ["root"].notna()
    contract = fop["future"].str.rstrip()
    is_fop = attempt & allow_fop & ~is_occ & contract.str.fullmatch(FUTURE_CONTRACT_PATTERN).fillna(False).astype(bool)

    out = pd.DataFrame(index=raw.index)
    future = "/" + contract
    out["underlying_symbol"] = occ["root"].where(is_occ, future.where(is_fop))
    roots = future[is_fop].map(lambda f: _root_symbol(f, "Future", None))
    out["root_symbol"] = occ["root"].where(is_occ, roots.reindex(raw.index))
    out["option_type"] = occ["type"].where(is_occ, fop["type"].where(is_fop))
    strike_occ = pd.to_numeric(occ["strike"], errors="coerce") / 1000.0
    strike_fop = pd.to_numeric(fop["strike"], errors="coerce")
    out["strike"] = strike_occ.where(is_occ, strike_fop.where(is_fop)).astype("float64")
    yymmdd = occ["yymmdd"].where(is_occ, fop["yymmdd"].where(is_fop))
    parsed = pd.to_datetime("20" + yymmdd, format="%Y%m%d", errors="coerce")
    bad_date = yymmdd.notna() & parsed.isna()
    dates = parsed.dt.date.to_numpy(dtype=object)
    out["expiration_date"] = pd.Series(np.where(parsed.notna().to_numpy(), dates, None), index=raw.index, dtype="object")
    out["symbol_style"] = pd.Series(None, index=raw.index, dtype="object")
    out.loc[is_occ, "symbol_style"] = "occ"
    out.loc[is_fop, "symbol_style"] = "future_option"
    out["is_option"] = (is_occ | is_fop) & ~bad_date

    malformed = (attempt & ~(is_occ | is_fop)) | bad_date
    error = pd.Series(None, index=raw.index, dtype="object")
    for index in raw.index[malformed.to_numpy()]:
        kind = None if instrument_types is None else kinds[index]
        try:
            parse_option_symbol(raw[index], kind)
        except ValueError as exc:
            error[index] = str(exc)
        else:  # pragma: no cover - the scalar and vector grammars are the same regexes
            error[index] = f"option symbol {raw[index]!r} could not be parsed"
    if malformed.any():
        if errors == "raise":
            raise ValueError(error[malformed].iloc[0])
        out.loc[malformed, list(COLUMNS)] = None
        out["strike"] = out["strike"].astype("float64")
    out["error"] = error
    for column in ("underlying_symbol", "root_symbol", "option_type", "symbol_style", "error"):
        out[column] = out[column].astype("object").where(out[column].notna(), None)
    return out


def held_volatility_futures(positions: pd.DataFrame) -> list[str]:
    """The futures the held volatility-index options settle to (``/VXZ5`` for a December VIX
    call), sorted, each once: what the option-quotes snapshot asks Tastytrade's quote of, since
    Yahoo has no ticker for a dated VX future. The root is the position's ``root_symbol`` (else the
    OCC root), the expiration the symbol's, as ``transforms.position_greeks`` reads them."""
    if positions.empty or "instrument_type" not in positions:
        return []
    options = positions[positions["instrument_type"] == "Equity Option"]
    roots = options["root_symbol"] if "root_symbol" in options else pd.Series(None, index=options.index, dtype="object")
    found: set[str] = set()
    for symbol, root in zip(options["symbol"], roots):
        try:
            parsed = parse_option_symbol(symbol, "Equity Option")
        except ValueError:
            continue  # position_greeks lists it unpriced with the parse error
        if parsed is None:
            continue
        own_root = root if isinstance(root, str) and root else parsed.root_symbol
        future = volatility_future(own_root, parsed.expiration_date)
        if future:
            found.add(future)
    return sorted(found)
