"""Option symbols -> (underlying, root, option type, strike, expiration date), vectorised.

Two shapes reach the pipeline (``docs/reference/api-facts.md``, Symbology):

* OCC equity and index options, the root padded to 6 characters, then ``YYMMDD``, ``C``/``P`` and
  the strike times 1000 in 8 digits: ``SPY   240115C00450000`` is the SPY 450 call expiring
  2024-01-15; ``RIVN  230609P00014000`` the RIVN 14 put of 2023-06-09. The underlying is the OCC
  root (``SPXW`` stays ``SPXW``: the position's ``underlying-symbol`` says it is SPX, not this
  parser; nothing here guesses an underlying from a name).
* Tastytrade future options: ``./ZNH6 OZNG6 260123P111`` = the option on the future ``/ZNH6``
  (option product ``OZNG6``), expiring 2026-01-23, put, strike 111. The strike is written as it is
  quoted and may have decimals (``111.5``, ``0.6850``). The underlying is the future ``/ZNH6``; the
  root (``/ZN``) is what market metrics and candles are keyed by. The fields are fixed width (the
  future code padded to 5, the product to 6), so a 5-character future code is followed by its
  product with no space: ``./MESM6EX3H6 260320P6450`` is the option on ``/MESM6``.

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

OPTION_INSTRUMENT_TYPES = frozenset({"Equity Option", "Future Option"})

# Root 1-6 characters then padding (tolerating none, like symbology._OCC), YYMMDD, C/P, 8 digits.
OCC_PATTERN = r"^(?P<root>[A-Z0-9]{1,6}) *(?P<yymmdd>\d{6})(?P<type>[CP])(?P<strike>\d{8})$"
# ./<future contract><padding><option product+month><padding>YYMMDD C/P strike (fixed width: a
# 5-character future code leaves no space before the product, ./MESM6EX3H6 260320P6450)
FUTURE_OPTION_PATTERN = (
    r"^\./(?P<future>[A-Z0-9]+?[FGHJKMNQUVXZ]\d{1,2}) *(?P<product>[A-Z0-9]+) +"
    r"(?P<yymmdd>\d{6})(?P<type>[CP])(?P<strike>\d+(?:\.\d+)?)$"
)
_OCC = re.compile(OCC_PATTERN)
_FUTURE_OPTION = re.compile(FUTURE_OPTION_PATTERN)
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
        if fop:
            future = "/" + fop["future"]
            return OptionSymbol(
                future, _root_symbol(future, "Future", None), fop["type"], float(fop["strike"]),
                _expiration(fop["yymmdd"], symbol), "future_option",
            )
    kind = instrument_type or "option"
    raise ValueError(
        f"malformed {kind} symbol {symbol!r}: expected an OCC symbol like 'SPY   240115C00450000' "
        f"or a future option like './ZNH6 OZNG6 260123P111'"
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
    is_fop = attempt & allow_fop & ~is_occ & fop["future"].notna()

    out = pd.DataFrame(index=raw.index)
    future = "/" + fop["future"]
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
