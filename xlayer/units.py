"""Unit conversion at the edges (CLI, reports): SI inside, readable outside."""
from __future__ import annotations

import math

GIB = 2.0 ** 30


def format_seconds(t: float | None) -> str:
    """3.142 s, 12.30 ms or 45.6 us; '-' for a missing value."""
    if t is None or (isinstance(t, float) and math.isnan(t)):
        return "-"
    if t >= 1:
        return f"{t:.3f} s"
    if t >= 1e-3:
        return f"{t * 1e3:.2f} ms"
    return f"{t * 1e6:.1f} us"
