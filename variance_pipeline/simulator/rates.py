"""The simulator's risk-free rate: one slowly varying curve for the public configuration endpoint
and for every option the simulator prices, so a client using the served rate reproduces the marks."""

from __future__ import annotations

import math
from datetime import date


def risk_free_rate(day: date) -> float:
    """A slowly varying policy-like rate in [0.035, 0.055]: two slow waves (periods ~3.7 and ~1.3
    years) of the day's ordinal, so consecutive days differ by well under a basis point."""
    t = day.toordinal()
    wave = 0.7 * math.sin(2 * math.pi * t / 1351.0) + 0.3 * math.sin(2 * math.pi * t / 479.0 + 1.0)
    return round(0.045 + 0.01 * wave, 4)
