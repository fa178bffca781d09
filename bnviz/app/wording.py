"""Words a page computes from numbers, so a sentence about a run is true of that run."""

from __future__ import annotations

import math

FAR = 3.0  # "far less" / "far more" past this ratio
ALIKE = 1.25  # "about as much" within this ratio


def compare(a: float, b: float) -> str:
    """How ``a`` relates to ``b`` in words: "far less", "less", "about as much", "more" or "far
    more" (both nonnegative, e.g. distances moved)."""
    if not (math.isfinite(a) and math.isfinite(b)):
        return "incomparably"
    if b <= 0:
        return "about as much" if a <= 0 else "far more"
    ratio = a / b
    if ratio <= 1 / FAR:
        return "far less"
    if ratio < 1 / ALIKE:
        return "less"
    if ratio <= ALIKE:
        return "about as much"
    return "more" if ratio < FAR else "far more"


def times(a: float, b: float) -> str:
    """ "12 times", "1.5 times" or "" (when the ratio is not a meaningful number)."""
    if not (math.isfinite(a) and math.isfinite(b)) or b <= 0 or a <= 0:
        return ""
    r = a / b
    return f"{r:.0f} times" if r >= 10 else f"{r:.1f} times"
