"""Numerical gradients: what a page (and a test) checks a hand-written gradient against.

Central differences, (f(x + h) - f(x - h)) / 2h, in float64: the error falls as h^2 until the
rounding of f, about eps_machine |f| / h, takes over, so the best h is near 1e-5 for these
functions. The backprop lesson shows that curve on a student's own batch.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Array = np.ndarray


def numerical_gradient(f: Callable[[], float], x: Array, h: float = 1e-5) -> Array:
    """d f / d x by central differences, perturbing x in place one entry at a time (restored
    afterwards); f reads x and returns a scalar."""
    if not (np.isfinite(h) and h > 0):
        raise ValueError(f"h must be a positive number; got {h!r}")
    grad = np.zeros_like(x, dtype=np.float64)
    flat, out = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + h
        up = f()
        flat[i] = old - h
        down = f()
        flat[i] = old
        out[i] = (up - down) / (2.0 * h)
    return grad


def rel_error(a: Array, b: Array) -> float:
    """max |a - b| / max(|a| + |b|), the scale-free gap between two gradients (0 if both are 0)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    scale = float(np.max(np.abs(a) + np.abs(b), initial=0.0))
    return 0.0 if scale == 0 else float(np.max(np.abs(a - b))) / scale
