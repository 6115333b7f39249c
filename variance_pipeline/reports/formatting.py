"""How numbers read on the evening report: dollars, percentages, deltas in SPY terms, days.

One module so the page, the mail's subject and its plain-text part spell a number the same way,
and so a missing value always reads as a dash, never as ``nan`` or ``None``. Every function takes
what DuckDB returns (float, int, Decimal, None, NaN) and returns text.
"""

from __future__ import annotations

import math
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any

DASH = "\u2014"  # a missing value
MINUS = "\u2212"  # a typographic minus: "-" and "−" must not look like two different signs


def number(value: Any) -> float | None:
    """``value`` as a finite float, or None (None, NaN, NaT, pandas NA, text)."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, Decimal):
        value = float(value)
    try:
        result = float(value)
    except (TypeError, ValueError):
        return None
    return result if math.isfinite(result) else None


def _signed(text: str, value: float, sign: bool) -> str:
    if value < 0:
        return MINUS + text
    return ("+" + text) if sign and value > 0 else text


def money(value: Any, *, sign: bool = False, cents: bool | None = None) -> str:
    """``$12,345`` (whole dollars from $100 up, cents below); ``sign`` adds ``+`` to gains."""
    amount = number(value)
    if amount is None:
        return DASH
    if cents is None:
        cents = abs(amount) < 100
    text = f"${abs(amount):,.2f}" if cents else f"${abs(amount):,.0f}"
    if text in ("$0", "$0.00"):
        return text
    return _signed(text, amount, sign)


def pct(value: Any, *, digits: int = 1, sign: bool = False) -> str:
    """A fraction as a percentage: 0.283 -> ``28.3 %``."""
    share = number(value)
    if share is None:
        return DASH
    text = f"{abs(share) * 100:.{digits}f}\u202f%"
    if float(f"{abs(share) * 100:.{digits}f}") == 0:
        return text
    return _signed(text, share, sign)


def vol(value: Any) -> str:
    """A volatility (fraction) as vol points: 0.2345 -> ``23.5``."""
    level = number(value)
    return DASH if level is None else f"{level * 100:.1f}"


def ratio(value: Any, digits: int = 2) -> str:
    x = number(value)
    return DASH if x is None else f"{x:.{digits}f}\u00d7"


def plain(value: Any, digits: int = 0, *, sign: bool = False) -> str:
    """A plain number with thousands separators."""
    x = number(value)
    if x is None:
        return DASH
    text = f"{abs(x):,.{digits}f}"
    if float(text.replace(",", "")) == 0:
        return text
    return _signed(text, x, sign)


def spy_delta(value: Any) -> str:
    """Beta-weighted delta in SPY shares: ``+123.4 SPY``."""
    x = number(value)
    return DASH if x is None else plain(x, 1, sign=True) + " SPY"


def price(value: Any) -> str:
    """A price: two decimals, more for prices under $10 (a currency future trades at 1.0298)."""
    x = number(value)
    if x is None:
        return DASH
    return f"{x:,.4f}" if abs(x) < 10 else f"{x:,.2f}"


def days(value: Any) -> str:
    """Calendar days ahead: ``today``, ``1 day``, ``12 days`` (``3 days ago`` for the past)."""
    x = number(value)
    if x is None:
        return DASH
    n = int(round(x))
    if n == 0:
        return "today"
    if n < 0:
        return "1 day ago" if n == -1 else f"{-n} days ago"
    return "1 day" if n == 1 else f"{n} days"


def day(value: Any) -> str:
    """A date as ``Tue 25 Nov 2025`` (the weekday matters to someone planning the week)."""
    if value is None:
        return DASH
    if isinstance(value, datetime):
        value = value.date()
    if not isinstance(value, date):
        try:
            value = date.fromisoformat(str(value)[:10])
        except ValueError:
            return DASH
    return value.strftime("%a %d %b %Y")


def short_day(value: Any) -> str:
    """``Fri 19 Dec``: an expiration or earnings date inside a table."""
    text = day(value)
    return text if text == DASH else text[: -len(" 2025")]


def instant(value: Any) -> str:
    """A UTC instant as ``2025-11-25 22:03 UTC``."""
    if not isinstance(value, datetime):
        return DASH
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


FILTERS = {
    "money": money,
    "pct": pct,
    "vol": vol,
    "ratio": ratio,
    "plain": plain,
    "spy_delta": spy_delta,
    "price": price,
    "days": days,
    "day": day,
    "short_day": short_day,
    "instant": instant,
}
"""The Jinja filters of the report's template, by name."""
