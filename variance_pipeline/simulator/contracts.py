"""Contracts the simulated accounts hold and quote, written in Tastytrade's symbology.

* Equities: the ticker (``SPY``, ``BRK/B``).
* Equity options: OCC, the root padded to 6, ``YYMMDD``, ``C``/``P``, strike x 1000 in 8 digits
  (``SPY   251219P00600000``); streamer ``.SPY251219P600``; 100 shares; expire 16:00 New York.
* Futures: root + month code + one-digit year (``/ESZ5``); streamer ``/ESZ25:XCME``.
* Future options, **fixed width**: ``./`` + the future code padded to 5 + the option product code
  padded to 6 + ``YYMMDD`` + ``C``/``P`` + the strike as quoted: ``./MESM6EX3H6 260320P6450``,
  ``./ZNH6 OZNG6 260123P111``, ``./GCJ6 OGJ6  260326C5740``. ``underlying-symbol`` is the option's
  own future (``/MESM6``); the streamer symbol is ``./EX3H26P6450:XCME`` as in the recorded chain.
  The simulator's monthly future options: /MES ``EX3`` (third Friday of the option month, on the
  next quarterly future strictly after it, as ``./MESM6EX3H6``), /ZN ``OZN`` (CBOT rule, on the
  next quarterly after the month before), /ES ``EW3``, /GC ``OG``, /CL ``LO``, /MCL ``MCO``.

``parse`` reads any such symbol back (``/market-data/by-type`` quotes whatever it is asked).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime

import numpy as np

from variance_pipeline.simulator import dates
from variance_pipeline.simulator.market import lookup

MULTIPLIERS = {
    "/ES": 50, "/MES": 5, "/ZN": 1000, "/6E": 125000, "/CL": 1000, "/MCL": 100, "/GC": 100, "/MGC": 10,
}
"""Dollars per point; a future option has its future's multiplier. Other roots: 100."""
OPTION_PRODUCTS = {"/ES": "EW3", "/MES": "EX3", "/ZN": "OZN", "/GC": "OG", "/CL": "LO", "/MCL": "MCO", "/MGC": "MGC"}
FUTURE_OPTION_TICKS = {"/ES": 0.25, "/MES": 0.25, "/ZN": 1 / 64, "/GC": 0.1, "/MGC": 0.1, "/CL": 0.01, "/MCL": 0.01}
EQUITY_OPTION_MULTIPLIER = 100

_OCC = re.compile(r"^(?P<root>[A-Z0-9/]{1,6}) *(?P<ymd>\d{6})(?P<right>[CP])(?P<strike>\d{8})$")
_FUTURE = re.compile(r"^(?P<root>/[A-Z0-9]+?)(?P<month>[FGHJKMNQUVXZ])(?P<year>\d{1,2})$")
_FUTURE_OPTION = re.compile(
    r"^\./(?P<future>[A-Z0-9]+?[FGHJKMNQUVXZ]\d) *(?P<product>[A-Z0-9]+?) +(?P<ymd>\d{6})(?P<right>[CP])"
    r"(?P<strike>\d+(?:\.\d+)?)$"
)


@dataclass(frozen=True)
class Contract:
    """One tradable instrument: what a position, a fill or a quote is about."""

    symbol: str
    instrument_type: str  # Equity | Equity Option | Future | Future Option
    root: str  # the market instrument it derives from: SPY, /ES, /MES
    underlying_symbol: str  # as the API sends it: SPY, /ES (a future's), /MESM6 (a future option's)
    streamer_symbol: str
    multiplier: int
    expiration: date | None = None
    expires_at: datetime | None = None
    strike: float | None = None
    right: str | None = None  # "C" | "P"

    @property
    def is_option(self) -> bool:
        return self.strike is not None

    @property
    def call(self) -> bool:
        return self.right == "C"


def strike_text(strike: float) -> str:
    """A strike as quoted: ``6450``, ``111.5``, ``1.185``."""
    return f"{strike:.6f}".rstrip("0").rstrip(".")


def equity(root: str) -> Contract:
    return Contract(root, "Equity", root, root, root, 1)


AM_SETTLED_MONTHLIES = frozenset({"SPX", "NDX", "RUT", "XSP"})
"""Index roots whose standard monthly options settle on the opening print (``expires-at`` 09:30 New
York); their PM-settled series trade under another root (SPXW, NDXP, RUTW)."""


def equity_option(root: str, expiration: date, right: str, strike: float, series: str | None = None) -> Contract:
    """An OCC option on ``root``; ``series`` is the option root when it is not the underlying's
    (``SPXW`` for SPX's PM-settled series). An index's standard monthly expires at 09:30."""
    code = series or root
    occ = f"{code:<6}{expiration:%y%m%d}{right}{round(strike * 1000):08d}"
    streamer = f".{code}{expiration:%y%m%d}{right}{strike_text(strike)}"
    expires_at = dates.new_york_time(expiration, 9, 30) if code in AM_SETTLED_MONTHLIES else dates.new_york_time(expiration, 16)
    return Contract(occ, "Equity Option", root, root, streamer, EQUITY_OPTION_MULTIPLIER, expiration, expires_at, strike, right)


def _exchange(root: str) -> str:
    listed = lookup(root)
    return listed.listed_market if listed else "XCME"


def future_expiration(root: str, year: int, month: int) -> date:
    """Equity-index futures stop at the third Friday's open; the simulator uses that for all."""
    return dates.monthly_expiration(year, month)


def future(root: str, year: int, month: int) -> Contract:
    expiration = future_expiration(root, year, month)
    return Contract(
        dates.future_code(root, year, month), "Future", root, root,
        f"{dates.future_code(root, year, month, 2)}:{_exchange(root)}", MULTIPLIERS.get(root, 100),
        expiration, dates.new_york_time(expiration, 9, 30),
    )


def _business_days_before(day: date, count: int) -> date:
    return np.busday_offset(np.datetime64(day, "D"), -count, roll="backward").astype(object)


def future_option_expiration(root: str, year: int, month: int) -> date:
    """When the option of option month ``year``/``month`` expires (weekdays; holidays aside but
    snapped to a session): /ZN by the CBOT rule, in the month before; crude (/CL, /MCL) three
    business days before the future's last trade, itself three business days before the 25th of
    the month before; gold (/GC, /MGC) the fourth-last business day of the month before; equity
    index futures (/ES, /MES) the third Friday of the month."""
    if root == "/ZN":
        return dates.treasury_option_expiration(year, month)
    before_year, before_month = dates.add_months(year, month, -1)
    if root in ("/CL", "/MCL"):
        last_trade = _business_days_before(date(before_year, before_month, 25), 3)
        return dates.session_on_or_before(_business_days_before(last_trade, 3))
    if root in ("/GC", "/MGC"):
        first = date(year, month, 1)
        return dates.session_on_or_before(_business_days_before(first, 4))
    return dates.monthly_expiration(year, month)


def option_future_month(root: str, year: int, month: int) -> tuple[int, int]:
    """The future a monthly option of ``month`` exercises into: /ZN the next quarterly after the
    month before; /ES and /MES the next quarterly strictly after (``./MESM6EX3H6``); crude and gold
    their own month (``./MCLJ6MCOJ6``, ``./GCJ6 OGJ6``)."""
    if root == "/ZN":
        return dates.next_quarter_month(*dates.add_months(year, month, -1))
    if root in ("/CL", "/MCL", "/GC", "/MGC"):
        return year, month
    return dates.next_quarter_month(year, month)


def future_option(root: str, year: int, month: int, right: str, strike: float) -> Contract:
    """The monthly option of ``root`` for option month ``year``/``month`` (see the docstring)."""
    expiration = future_option_expiration(root, year, month)
    future_year, future_month = option_future_month(root, year, month)
    future_code = dates.future_code(root, future_year, future_month)
    product = dates.future_code(OPTION_PRODUCTS.get(root, root[1:]), year, month)
    text = strike_text(strike)
    symbol = f"./{future_code[1:]:<5}{product:<6}{expiration:%y%m%d}{right}{text}"
    streamer = f"./{dates.future_code(OPTION_PRODUCTS.get(root, root[1:]), year, month, 2)}{right}{text}:{_exchange(root)}"
    return Contract(symbol, "Future Option", root, future_code, streamer, MULTIPLIERS.get(root, 100),
                    expiration, dates.new_york_time(expiration, 16), strike, right)


def _yymmdd(text: str) -> date | None:
    """An OCC symbol's expiration (``YYMMDD``), or None when it is no date."""
    try:
        return date(2000 + int(text[:2]), int(text[2:4]), int(text[4:]))
    except ValueError:
        return None


def parse(symbol: str, instrument_type: str) -> Contract | None:
    """A contract from its API symbol and type (``/market-data/by-type``); None if malformed."""
    text = symbol.strip()
    if instrument_type in ("Equity", "Index"):
        return equity(text) if text and " " not in text else None
    if instrument_type == "Equity Option":
        match = _OCC.match(text)
        if not match:
            return None
        expiration = _yymmdd(match["ymd"])
        if expiration is None:
            return None
        return equity_option(match["root"], expiration, match["right"], int(match["strike"]) / 1000)
    if instrument_type == "Future":
        match = _FUTURE.match(text)
        if not match:
            return None
        year = _decade_year(int(match["year"]))
        return future(match["root"], year, dates.FUTURE_MONTH_CODES.index(match["month"]) + 1)
    if instrument_type == "Future Option":
        match = _FUTURE_OPTION.match(text)
        head = _FUTURE.match("/" + match["future"]) if match else None
        if not match or not head:
            return None
        expiration = _yymmdd(match["ymd"])
        if expiration is None:
            return None
        root = head["root"]
        product = match["product"]
        if product[-1].isdigit() and not product[-2:].isdigit():  # EX3H6 -> EX3H26, as streamed
            product = f"{product[:-1]}{_decade_year(int(product[-1])) % 100:02d}"
        return Contract(
            text, "Future Option", root, "/" + match["future"],
            f"./{product}{match['right']}{match['strike']}:{_exchange(root)}",
            MULTIPLIERS.get(root, 100), expiration, dates.new_york_time(expiration, 16),
            float(match["strike"]), match["right"],
        )
    return None


def _decade_year(digit: int) -> int:
    """``Z5`` -> 2025; two digits pass through (``Z25`` -> 2025)."""
    return 2000 + digit if digit >= 10 else 2020 + digit
