"""Per-position price and Greeks from the lake's end-of-day snapshot: no streaming quotes.

``position_greeks`` prices every held option with the session's underlying close and the IV of
its expiration from the same snapshot's term structure (``term_structure``: the row of its own date
and settlement, AM-settled index monthlies by their ``expires_at`` before noon New York, else
interpolated between the Standard chain's nodes; the module's rules are the warehouse's too),
through BSM (equity, ETF and index options, dividend yield from market metrics) or Black-76
(future options, on the future's close), all vectorised (``option_models``). Stock, crypto and
futures positions are included as delta-one rows so the book sums per underlying.

Conventions (the contract's ``position_greeks`` table):

* ``years_to_expiration`` = seconds from ``session_close_utc`` to the position's ``expires_at``
  / (365 * 86400): the exact T the model used. ``days_to_expiration`` = calendar days from
  ``as_of_date`` to the expiration date (the option symbol's date; a future's ``expires_at`` date
  in New York).
* Per-unit Greeks: ``delta`` per $1 of the underlying (per point of the future), ``gamma`` per $1
  per $1, ``theta`` per calendar day, ``vega`` per vol point. Position Greeks = per-unit Greek x
  signed ``quantity`` x ``multiplier``: ``position_delta`` is in shares (units) of the underlying,
  ``position_theta`` and ``position_vega`` in currency per day / per vol point.
  ``beta_weighted_delta`` = ``position_delta * beta * underlying_price / spy_price``: SPY
  shares with the same beta-adjusted dollar exposure (NULL when the beta or the SPY close is
  unknown; SPY's own beta is 1 by definition when metrics leave it out).
* Delta-one rows (``Equity``, ``Cryptocurrency``, ``Future``): ``delta`` 1 per unit, gamma, theta
  and vega 0, ``model`` NULL, ``price`` = the close.
* Underlying price: the close of the underlying (a future option's own future contract,
  ``/ZNH6``, the ``underlying-symbol``). When a future or future option's own contract has no
  close, the root's continuous close (``/ZN``, the front month) is used and
  ``underlying_price_source`` says ``root_continuous`` instead of ``close``.
* Options on VIX settle to the VX future of their expiration (``/VXF6`` for a January 2026 VIX
  option): Black-76 on that future, never BSM on the spot index. Its price is its candle close when
  one exists, else Tastytrade's mark of the future from the same evening's ``option_quotes``
  snapshot (``future_marks``; Yahoo has no ticker for a dated VX future), and then
  ``underlying_price_source`` says ``quote_mark``. With neither the option is unpriced with the
  reason (VXN and RVX options always, having no future here).
* Dividend yield: market metrics' ``dividend_yield`` (a fraction) of the root; for an index whose
  metrics carry none (SPX, NDX, RUT...), its tracking ETF's from the same snapshot
  (``instruments.symbology.DIVIDEND_PROXIES``: SPY for SPX); else 0. ``dividend_yield_source``
  says which: ``metrics``, ``proxy:SPY`` or ``none``.
  Black-76 rows have no dividend yield (NULL).
* Only the snapshot of ``as_of_date`` is read: term-structure and metric rows carrying another
  ``as_of_date`` are ignored; IVs are matched on the position's root symbol exactly.

Every position lands in exactly one of the two frames. A row that cannot be priced honestly
(expired at or before the session, no positive IV in the term structure, no underlying close, no
risk-free rate, an unparseable symbol, an unsupported instrument type, a missing quantity or
multiplier) goes to the unpriced frame with a human-readable ``reason``; the priced frame never
holds a NaN Greek.
European models: American early exercise is ignored (see ``option_models``).
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Callable, Mapping

import numpy as np
import pandas as pd

from variance_pipeline.transforms import option_models as om
from variance_pipeline.schemas.risk import POSITION_GREEKS
from variance_pipeline.instruments.option_symbols import parse_option_symbols
from variance_pipeline.instruments.symbology import DIVIDEND_PROXIES, VOLATILITY_INDEX_ROOTS
from variance_pipeline.instruments.symbology import volatility_future as _volatility_future
from variance_pipeline.transforms.implied_vol import implied_vol_from_mark
from variance_pipeline.transforms.term_structure import (
    NEW_YORK,
    expiration_nodes,
    implied_vol_at,
    settlement_of,
    years_between,
)

OPTION_TYPES = frozenset({"Equity Option", "Future Option"})
FUTURE_TYPES = frozenset({"Future", "Future Option"})
DELTA_ONE_TYPES = frozenset({"Equity", "Cryptocurrency", "Future"})

PRICED_COLUMNS = POSITION_GREEKS.names
UNPRICED_COLUMNS: tuple[str, ...] = (
    "as_of_date", "account_number", "symbol", "instrument_type", "underlying_symbol", "root_symbol",
    "option_type", "strike", "expiration_date", "quantity", "multiplier", "reason",
)
GREEKS = ("price", "delta", "gamma", "theta", "vega")
ADJUSTED_ROOT = re.compile(r"[A-Z]+\d+")
IV_FROM_MARK = "mark"
QUOTE_MARK = "quote_mark"  # underlying_price_source: the broker's mark of the future (option_quotes)


def _mark_per_unit(pos: pd.DataFrame, quantity: np.ndarray, multiplier: np.ndarray) -> np.ndarray:
    """The broker's mark per unit: ``mark_price``, else the position's ``mark`` / (|quantity| x multiplier)."""
    per_unit = pd.to_numeric(pos["mark_price"], errors="coerce").to_numpy(dtype=float) if "mark_price" in pos else np.full(len(pos), np.nan)
    total = pd.to_numeric(pos["mark"], errors="coerce").to_numpy(dtype=float) if "mark" in pos else np.full(len(pos), np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        derived = total / (np.abs(quantity) * multiplier)
    return np.where(np.isfinite(per_unit), per_unit, derived)


def _prices(underlying_prices: Mapping[str, float] | pd.Series) -> pd.Series:
    prices = pd.Series(underlying_prices, dtype="float64") if not isinstance(underlying_prices, pd.Series) else underlying_prices
    prices = pd.to_numeric(prices, errors="coerce").astype("float64")
    return prices[prices > 0]  # a zero or negative close is no close


def _snapshot(frame: pd.DataFrame, as_of_date: date) -> pd.DataFrame:
    if "as_of_date" not in frame or frame.empty:
        return frame
    days = pd.to_datetime(frame["as_of_date"], errors="coerce").dt.date
    return frame[(days == as_of_date).to_numpy()]


def _text(series: pd.Series) -> np.ndarray:
    """Strings as an object array, missing values as None."""
    values = series.astype("object").to_numpy()
    return np.where(pd.isna(values), None, values)


def _first_missing(reason: np.ndarray, condition: np.ndarray, message: str | Callable[[int], str]) -> None:
    """Set ``reason`` where ``condition`` holds and no earlier reason was recorded.

    ``message`` is the text, or a function of the row number building it (called only for the
    rows that take it, so a clean book costs no string formatting).
    """
    take = np.asarray(condition, dtype=bool) & np.equal(reason, None)
    if take.any():
        if isinstance(message, str):
            reason[take] = message
        else:
            for i in np.flatnonzero(take):
                reason[i] = message(int(i))


def position_greeks(
    positions: pd.DataFrame,
    underlying_prices: Mapping[str, float] | pd.Series,
    term_structure: pd.DataFrame,
    metrics: pd.DataFrame,
    risk_free_rate: float,
    spy_price: float | None,
    as_of_date: date,
    session_close_utc: datetime,
    future_marks: Mapping[str, float] | pd.Series | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(priced, unpriced) frames for one session's positions; see the module docstring.

    ``positions``: the lake's positions frame (``tastytrade_frames.POSITION_DTYPES``; uses
    ``account_number, symbol, instrument_type, underlying_symbol, root_symbol, quantity`` (signed),
    ``multiplier, expires_at``). ``underlying_prices``: symbol -> the session's close (``SPY``,
    ``/ZNH6``, ``/ZN``). ``term_structure``: ``symbol, expiration_date, settlement_type,
    implied_volatility`` (+ ``option_chain_type``, ``as_of_date``), symbol = the root. ``metrics``: ``symbol, beta,
    dividend_yield`` (+ ``as_of_date``). ``risk_free_rate``: a continuously compounded fraction.
    ``future_marks``: future symbol -> the broker's mark of the same evening (``/VXZ5``), the
    price of a volatility-index option's future when it has no close.
    """
    if isinstance(as_of_date, datetime) or not isinstance(as_of_date, date):
        raise TypeError(f"as_of_date must be a datetime.date, got {type(as_of_date).__name__}")
    if session_close_utc.tzinfo is None:
        raise ValueError("session_close_utc must be timezone-aware")
    if "as_of_date" in positions and len(positions):
        days = set(pd.to_datetime(positions["as_of_date"]).dt.date)
        if days != {as_of_date}:
            raise ValueError(f"positions hold as_of_date {sorted(days)}, expected only {as_of_date}")

    pos = positions.reset_index(drop=True)
    n = len(pos)
    itype = _text(pos["instrument_type"])
    symbol = _text(pos["symbol"])
    is_option = np.isin(itype, list(OPTION_TYPES))
    is_future_option = itype == "Future Option"
    is_future = itype == "Future"
    is_futurish = is_future | is_future_option
    quantity = pd.to_numeric(pos["quantity"], errors="coerce").to_numpy(dtype=float)
    multiplier = pd.to_numeric(pos["multiplier"], errors="coerce").to_numpy(dtype=float)
    expires_at = pd.to_datetime(pos["expires_at"], utc=True)
    reason = np.full(n, None, dtype=object)

    _first_missing(
        reason,
        ~(is_option | np.isin(itype, list(DELTA_ONE_TYPES))),
        lambda i: f"unsupported instrument type {itype[i]!r}",
    )
    parsed = parse_option_symbols(pos["symbol"], pd.Series(itype, dtype="object"), errors="coerce")
    parse_error = _text(parsed["error"])
    _first_missing(reason, is_option & np.not_equal(parse_error, None),
                   lambda i: f"unparseable option symbol: {parse_error[i]}")
    # An adjusted option (after a split or merger: OCC root = the underlying plus a digit, AAPL1)
    # delivers something other than 100 shares; pricing it as 100 shares would be a wrong number.
    occ_root = _text(parsed["underlying_symbol"])
    api_underlying = _text(pos["underlying_symbol"]) if "underlying_symbol" in pos else np.full(n, None, dtype=object)
    adjusted = np.array([
        bool(kind == "Equity Option" and r and u and r != u and ADJUSTED_ROOT.fullmatch(r) and r.rstrip("0123456789") == u)
        for kind, r, u in zip(itype, occ_root, api_underlying)
    ], dtype=bool)
    _first_missing(
        reason, adjusted,
        lambda i: f"adjusted deliverable: OCC root {occ_root[i]} of {api_underlying[i]} (after a corporate action the "
        "contract does not deliver 100 shares; not priced as if it did)",
    )
    _first_missing(reason, ~np.isfinite(quantity), "missing quantity")
    _first_missing(reason, ~(np.isfinite(multiplier) & (multiplier > 0)), "missing or non-positive multiplier")

    # Identities: what the API says, filled from the symbol where it left a field out.
    parsed_underlying = _text(parsed["underlying_symbol"])
    underlying = _text(pos["underlying_symbol"]) if "underlying_symbol" in pos else np.full(n, None, dtype=object)
    underlying = np.where(np.equal(underlying, None), np.where(is_option, parsed_underlying, symbol), underlying)
    root = _text(pos["root_symbol"]) if "root_symbol" in pos else np.full(n, None, dtype=object)
    root = np.where(np.equal(root, None), np.where(is_option, _text(parsed["root_symbol"]), underlying), root)

    # Expiration: the option symbol's date; a future's expires_at date in New York.
    expiration = parsed["expiration_date"].to_numpy(dtype=object).copy()
    future_dates = expires_at.dt.tz_convert(NEW_YORK).dt.date.to_numpy(dtype=object)
    expiration = np.where(is_future & ~pd.isna(expires_at).to_numpy(), future_dates, expiration)
    expiration = np.where(pd.isna(expiration), None, expiration)
    exp_days = pd.to_datetime(pd.Series(expiration, dtype="object"), errors="coerce")
    days_to_expiration = (exp_days - pd.Timestamp(as_of_date)).dt.days.to_numpy(dtype=float)
    years = years_between(session_close_utc, expires_at)

    missing_expiry = is_option & np.isnan(years)
    _first_missing(reason, missing_expiry, "missing expires_at: the exact time to expiration is unknown")
    expired = (is_option | is_future) & ((days_to_expiration <= 0) | (years <= 0))
    _first_missing(
        reason, expired,
        lambda i: f"expired: expires {expiration[i]} (at {expires_at.iloc[i]}), on or before the session of {as_of_date}",
    )

    # Options on a volatility index settle to (and are priced off) the index's future of the same
    # expiration (Cboe: a VIX option expires with that month's VX future, AM-settled to the SOQ),
    # never the spot index: Black-76 on /VX<month><year> (e.g. /VXF6), unpriced without its price.
    vol_root = np.isin(root, list(VOLATILITY_INDEX_ROOTS)) & is_option
    vol_future = np.array(
        [_volatility_future(r, e) if v else None for r, e, v in zip(root, expiration, vol_root)], dtype=object
    )
    _first_missing(
        reason, vol_root & np.equal(vol_future, None),
        lambda i: f"options on {root[i]} settle to its future of the same expiration, which has no listed "
        "contract here: not priced on the spot index",
    )
    black = is_future_option | vol_root

    # Underlying price: own contract's close, else (futures only) the root's continuous close.
    prices = _prices(underlying_prices)
    price_key = np.where(vol_root, vol_future, np.where(is_option, underlying, symbol))
    S = pd.Series(price_key, dtype="object").map(prices).to_numpy(dtype=float)
    price_source = np.where(np.isfinite(S), "close", None).astype(object)
    # A VX future has no candle (no Yahoo ticker): the broker's mark of it, from the same evening.
    quoted = pd.Series(price_key, dtype="object").map(_prices(future_marks if future_marks is not None else {}))
    use_quote = vol_root & ~np.isfinite(S) & np.isfinite(quoted.to_numpy(dtype=float))
    S = np.where(use_quote, quoted.to_numpy(dtype=float), S)
    price_source[use_quote] = QUOTE_MARK
    root_close = pd.Series(root, dtype="object").map(prices).to_numpy(dtype=float)
    use_root = is_futurish & ~np.isfinite(S) & np.isfinite(root_close)
    S = np.where(use_root, root_close, S)
    price_source[use_root] = "root_continuous"
    _first_missing(
        reason, ~np.isfinite(S),
        lambda i: f"no close for {price_key[i]}"
        + (f" or its root {root[i]}" if is_futurish[i] and root[i] != price_key[i] else "")
        + (f" and no quote of it in option_quotes (the {root[i]} option's own future)" if vol_root[i] else "")
        + f" on {as_of_date}",
    )

    # Implied volatility of the option's own expiration and settlement, same symbol, same snapshot.
    nodes = expiration_nodes(_snapshot(term_structure, as_of_date), session_close_utc)
    want = is_option & np.equal(reason, None)
    targets = pd.DataFrame(
        {"symbol": root, "expiration_date": expiration, "settlement_type": settlement_of(expires_at),
         "years_to_expiration": years}
    )[want]
    vols = implied_vol_at(nodes, targets)
    term_iv = np.full(n, np.nan)
    term_source = np.full(n, None, dtype=object)
    term_iv[want] = vols["implied_volatility"].to_numpy(dtype=float)
    term_source[want] = _text(vols["iv_source"])

    # Metrics of the root: dividend yield (BSM only) and beta.
    mx = _snapshot(metrics, as_of_date)
    mx = mx.drop_duplicates("symbol", keep="last").set_index("symbol") if len(mx) else pd.DataFrame(columns=["beta", "dividend_yield"])
    root_series = pd.Series(root, dtype="object")
    yields = pd.to_numeric(mx["dividend_yield"], errors="coerce") if "dividend_yield" in mx else pd.Series(dtype=float)
    own_q = root_series.map(yields).to_numpy(dtype=float)
    proxy = root_series.map(DIVIDEND_PROXIES)
    proxy_q = proxy.map(yields).to_numpy(dtype=float)
    q = np.where(np.isfinite(own_q), own_q, np.where(np.isfinite(proxy_q), proxy_q, 0.0))
    q_source = np.where(
        np.isfinite(own_q), "metrics", np.where(np.isfinite(proxy_q), "proxy:" + proxy.fillna("").to_numpy(dtype=str), "none")
    ).astype(object)
    q = np.where(is_futurish | black, np.nan, q)
    q_source = np.where(is_futurish | black, None, q_source)
    beta = root_series.map(pd.to_numeric(mx["beta"], errors="coerce")).to_numpy(dtype=float) if "beta" in mx else np.full(n, np.nan)
    beta = np.where(~np.isfinite(beta) & (root == "SPY"), 1.0, beta)
    r = np.full(n, float(risk_free_rate) if risk_free_rate is not None else np.nan)
    _first_missing(
        reason, is_option & ~np.isfinite(r),
        f"no risk_free_rate for {as_of_date}: the rate snapshot was not taken (re-run the partition to price)",
    )

    # The option's own mark carries its strike's IV (the skew): use it when it can be solved,
    # else the term structure's IV of the expiration (implied_vol.py says why not, per row).
    strike = parsed["strike"].to_numpy(dtype=float)
    is_call = _text(parsed["option_type"]) == "C"
    mark_price = _mark_per_unit(pos, quantity, multiplier)
    mark_iv = np.full(n, np.nan)
    mark_note = np.full(n, None, dtype=object)
    solvable = is_option & np.equal(reason, None) & np.isfinite(S) & np.isfinite(r)
    if solvable.any():
        mark_iv[solvable], mark_note[solvable] = implied_vol_from_mark(
            mark_price[solvable], S[solvable], strike[solvable], years[solvable], r[solvable],
            np.where(np.isnan(q), 0.0, q)[solvable], is_call[solvable], black[solvable],
        )
    use_mark = np.isfinite(mark_iv) & (mark_iv > 0)
    sigma = np.where(use_mark, mark_iv, term_iv)
    iv_source = np.where(use_mark, IV_FROM_MARK, term_source).astype(object)
    _first_missing(
        reason, is_option & ~(sigma > 0),
        lambda i: f"no positive implied volatility for {root[i]} in the {as_of_date} term structure"
        + (f" and none from the mark ({mark_note[i]})" if mark_note[i] else ""),
    )

    # Price the options that survived, all at once.
    price_now = is_option & np.equal(reason, None)
    values = {name: np.full(n, np.nan) for name in GREEKS}
    if price_now.any():
        result = om.option_values(
            S[price_now], strike[price_now], years[price_now], r[price_now],
            np.where(np.isnan(q), 0.0, q)[price_now], sigma[price_now], is_call[price_now],
            black[price_now],
        )
        for name in GREEKS:
            values[name][price_now] = getattr(result, name)
        model_reason = np.full(n, None, dtype=object)
        model_reason[price_now] = result.reason
        _first_missing(
            reason, np.not_equal(model_reason, None),
            lambda i: f"model inputs invalid: {om.REASONS.get(model_reason[i], model_reason[i])}",
        )
    delta_one = ~is_option & np.equal(reason, None)
    values["price"][delta_one] = S[delta_one]
    values["delta"][delta_one] = 1.0
    for name in ("gamma", "theta", "vega"):
        values[name][delta_one] = 0.0
    nan_greek = np.equal(reason, None) & ~np.all([np.isfinite(values[g]) for g in GREEKS], axis=0)
    _first_missing(reason, nan_greek, "the model returned a non-finite value")

    model = np.where(is_option, np.where(black, om.MODEL_BLACK_76, om.MODEL_BSM), None).astype(object)
    size = quantity * multiplier
    position_delta = values["delta"] * size
    with np.errstate(invalid="ignore", divide="ignore"):
        spy = float(spy_price) if spy_price is not None and np.isfinite(spy_price) and spy_price > 0 else np.nan
        bwd = position_delta * beta * S / spy

    frame = pd.DataFrame(
        {
            "as_of_date": pd.Series([as_of_date] * n, dtype="object"),
            "account_number": _text(pos["account_number"]),
            "symbol": symbol,
            "instrument_type": itype,
            "underlying_symbol": underlying,
            "root_symbol": root,
            "option_type": _text(parsed["option_type"]),
            "strike": strike,
            "expiration_date": pd.Series(expiration, dtype="object"),
            "days_to_expiration": pd.array(np.where(np.isfinite(days_to_expiration), days_to_expiration, np.nan), dtype="Float64").astype("Int64"),
            "years_to_expiration": np.where(is_option, years, np.nan),
            "quantity": quantity,
            "multiplier": multiplier,
            "underlying_price": S,
            "underlying_price_source": price_source,
            "implied_volatility": sigma,
            "iv_source": iv_source,
            "mark_price": mark_price,
            "term_structure_iv": term_iv,
            "mark_iv_note": np.where(is_option & ~use_mark, mark_note, None),
            "risk_free_rate": r,
            "dividend_yield": q,
            "dividend_yield_source": q_source,
            "model": model,
            **values,
            "position_delta": position_delta,
            "position_gamma": values["gamma"] * size,
            "position_theta": values["theta"] * size,
            "position_vega": values["vega"] * size,
            "beta": beta,
            "beta_weighted_delta": bwd,
        }
    )
    ok = np.equal(reason, None)
    priced = frame.loc[ok, list(PRICED_COLUMNS)].reset_index(drop=True)
    unpriced = frame.loc[~ok].assign(reason=reason[~ok])[list(UNPRICED_COLUMNS)].reset_index(drop=True)
    whole = unpriced["multiplier"].isna() | (unpriced["multiplier"] % 1 == 0)
    if whole.all():
        unpriced["multiplier"] = unpriced["multiplier"].astype("Float64").astype("Int64")
    return priced, unpriced


def quoted_future_marks(option_quotes: pd.DataFrame | None, as_of_date: date) -> pd.Series:
    """Future symbol -> the broker's mark, from one evening's ``option_quotes`` rows of instrument
    type ``Future`` (the VX futures the held VIX options settle to, asked for beside the options):
    the ``future_marks`` of ``position_greeks``. Empty when the snapshot is absent."""
    if option_quotes is None or option_quotes.empty:
        return pd.Series(dtype="float64")
    rows = _snapshot(option_quotes, as_of_date)
    rows = rows[rows["instrument_type"] == "Future"]
    marks = pd.to_numeric(rows["mark"], errors="coerce").astype("float64")
    return pd.Series(marks.to_numpy(), index=rows["symbol"].astype(str).to_numpy()).dropna().groupby(level=0).last()


def put_call_parity_gaps(priced: pd.DataFrame) -> pd.DataFrame:
    """Parity residual of every priced option, from the model's call and put at its inputs.

    ``parity_gap = C - P - (S e^{-qT} - K e^{-rT})`` for BSM and ``C - P - e^{-rT} (F - K)`` for
    Black-76, where C and P are recomputed from the row's own inputs; ``price_gap`` = the row's
    ``price`` minus the recomputed price of its own side. Both are ~0 (rounding) for a correct
    model; an asset check asserts that. Delta-one rows are skipped.
    """
    options = priced[priced["model"].notna()]
    S = options["underlying_price"].to_numpy(dtype=float)
    K = options["strike"].to_numpy(dtype=float)
    T = options["years_to_expiration"].to_numpy(dtype=float)
    r = options["risk_free_rate"].to_numpy(dtype=float)
    black = (options["model"] == om.MODEL_BLACK_76).to_numpy()
    q = np.where(black, r, options["dividend_yield"].fillna(0.0).to_numpy(dtype=float))
    sigma = options["implied_volatility"].to_numpy(dtype=float)
    call = om.black_scholes_merton(S, K, T, r, q, sigma, True).price
    put = om.black_scholes_merton(S, K, T, r, q, sigma, False).price
    forward_value = S * np.exp(-q * T) - K * np.exp(-r * T)
    own = np.where((options["option_type"] == "C").to_numpy(), call, put)
    return pd.DataFrame(
        {
            "as_of_date": options["as_of_date"].to_numpy(dtype=object),
            "account_number": options["account_number"].to_numpy(dtype=object),
            "symbol": options["symbol"].to_numpy(dtype=object),
            "model": options["model"].to_numpy(dtype=object),
            "call_price": call,
            "put_price": put,
            "forward_value": forward_value,
            "parity_gap": call - put - forward_value,
            "price_gap": options["price"].to_numpy(dtype=float) - own,
        }
    )
