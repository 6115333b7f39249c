"""The geometry of the evening report's small charts, drawn by the template as inline SVG.

The report is one file that asks nothing of the network, so its pictures are inline SVG rather
than PNGs or a charting library. Here only numbers are computed (positions in a fixed viewBox,
in percent of its width); the template writes the elements and Jinja escapes every label, so no
text from the data is ever pasted into markup by hand. Colours come from CSS classes, so the
pictures follow the light and dark schemes and print in black and white.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from variance_pipeline.reports.formatting import number


@dataclass(frozen=True)
class Gauge:
    """BP used against the guideline band: a bar from 0 to ``scale`` with a marker at the band."""

    used_width: float  # percent of the track
    band_x: float | None  # percent of the track where the guideline maximum sits
    over: bool
    scale: float  # the fraction the full track stands for
    ticks: tuple[tuple[float, str], ...]


def bp_gauge(used: Any, band_max: Any) -> Gauge | None:
    """``used`` and ``band_max`` are fractions of net liq; None when BP used is unknown."""
    used_f = number(used)
    if used_f is None:
        return None
    band_f = number(band_max)
    top = max(0.6, used_f * 1.1, (band_f or 0) * 1.2)
    scale = min(1.5, top) if used_f <= 1.5 else used_f
    ticks = tuple((t / scale * 100, f"{t * 100:.0f}%") for t in (0.0, 0.25, 0.5, 0.75, 1.0, 1.25) if t <= scale)
    return Gauge(
        used_width=max(0.0, min(100.0, used_f / scale * 100)),
        band_x=None if band_f is None else min(100.0, band_f / scale * 100),
        over=band_f is not None and used_f > band_f,
        scale=scale,
        ticks=ticks,
    )


@dataclass(frozen=True)
class Bar:
    """A bar around the centre line of a 100-wide viewBox (a signed quantity in a table row)."""

    x: float
    width: float
    negative: bool


def diverging(value: Any, largest: Any) -> Bar | None:
    """``value`` against the largest |value| of its column: right of centre when positive."""
    v, top = number(value), number(largest)
    if v is None or not top:
        return None
    width = min(50.0, abs(v) / abs(top) * 50)
    return Bar(50 - width if v < 0 else 50.0, width, v < 0)


def share_width(value: Any, largest: Any) -> float:
    """``value`` as a percent of ``largest`` (a bar inside a table cell), 0 when unknown."""
    v, top = number(value), number(largest)
    if v is None or not top:
        return 0.0
    return max(0.0, min(100.0, abs(v) / abs(top) * 100))


@dataclass(frozen=True)
class Sparkline:
    points: str  # "x,y x,y ..." in a 100 x 30 viewBox
    last_x: float
    last_y: float
    low: float
    high: float
    count: int


def sparkline(values: Sequence[Any], height: float = 30.0) -> Sparkline | None:
    """A line over the evenings (net liq); None with fewer than two known values."""
    known = [number(v) for v in values]
    series = [v for v in known if v is not None]
    if len(series) < 2:
        return None
    low, high = min(series), max(series)
    span = (high - low) or 1.0
    step = 100.0 / (len(series) - 1)
    coords = [(i * step, height - 2 - (v - low) / span * (height - 4)) for i, v in enumerate(series)]
    return Sparkline(
        points=" ".join(f"{x:.2f},{y:.2f}" for x, y in coords),
        last_x=coords[-1][0],
        last_y=coords[-1][1],
        low=low,
        high=high,
        count=len(series),
    )
