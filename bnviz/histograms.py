"""Histograms drawn from recorded quantile sketches, on fixed bins.

A record keeps a layer's values as quantiles at fixed levels (``bnviz.record.LEVELS``). Read as a
piecewise-linear CDF (the mass between two consecutive quantiles spread uniformly between them),
the sketch gives the mass of any bin, so every record of every run can be drawn on one fixed axis
and motion on screen is motion of the distribution, not of the axis. Plain numpy, no plotting.

Conventions for awkward sketches: equal consecutive quantiles are a point mass; a mass bounded by
an infinite quantile sits at that infinity (it is outside every axis); NaN (a value the net could
not compute) sorts above +inf, as ``np.sort`` puts it, so it counts as outside above.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from bnviz.record import LEVELS

Array = np.ndarray


def _clean(q: Array) -> Array:
    """Sketch rows as float64 with NaN moved to +inf (np.sort's place for NaN)."""
    q = np.atleast_2d(np.asarray(q, dtype=np.float64))
    return np.where(np.isnan(q), np.inf, q)


def _check_levels(q: Array, levels: Array) -> Array:
    levels = np.asarray(levels, dtype=np.float64)
    if levels.ndim != 1 or q.shape[-1] != levels.size or levels.size < 2:
        raise ValueError(
            f"levels must be 1-D with one level per sketch column ({q.shape[-1]}); "
            f"got shape {levels.shape}"
        )
    if np.any(np.diff(levels) <= 0) or levels[0] < 0 or levels[-1] > 1:
        raise ValueError("levels must increase strictly within [0, 1]")
    return levels


def cdf(q: Array, levels: Array, x: Array) -> Array:
    """The sketch's P(value < x) at points x: (R, L) sketches, (X,) points -> (R, X).

    The strict inequality (the CDF's left limit) makes bins [a, b), as in ``np.histogram``, so a
    point mass sitting on an edge falls in the bin to its right. Mass below the first quantile
    sits at it, and mass above the last one at it, so every row runs from 0 to 1.
    """
    q = _clean(q)
    levels = _check_levels(q, levels)
    x = np.asarray(x, dtype=np.float64).ravel()
    n_levels = levels.size
    out = np.empty((q.shape[0], x.size))
    for r, row in enumerate(q):
        # j: the last knot strictly below x, so row[j] < x <= row[j + 1] and the gap is not empty
        j = np.searchsorted(row, x, side="left") - 1
        inside = (j >= 0) & (j < n_levels - 1)
        jc = np.clip(j, 0, n_levels - 2)
        lo, hi = row[jc], row[jc + 1]
        with np.errstate(invalid="ignore", divide="ignore"):
            frac = (x - lo) / (hi - lo)
        frac = np.where(np.isneginf(lo), 1.0, np.where(np.isposinf(hi), 0.0, frac))
        frac = np.clip(np.nan_to_num(frac, nan=0.0), 0.0, 1.0)
        between = levels[jc] + (levels[jc + 1] - levels[jc]) * frac
        out[r] = np.where(inside, between, np.where(j < 0, 0.0, 1.0))
    out[:, np.isneginf(x)] = 0.0
    out[:, np.isposinf(x)] = 1.0
    return out


def bin_masses(q: Array, levels: Array, edges: Array) -> Array:
    """Fraction of each record's values in each bin [edges[k], edges[k+1]): (R, n_bins).

    A row sums to 1 minus its mass outside [edges[0], edges[-1]].
    """
    edges = _check_edges(edges)
    return np.diff(cdf(q, levels, edges), axis=1)


def density_from_quantiles(q: Array, levels: Array, edges: Array) -> Array:
    """Histogram density (mass / bin width) of each record on fixed bins: (R, n_bins).

    Like ``np.histogram(..., density=True)`` except that mass outside the edges is not
    renormalized away: it is simply not drawn (see ``outside_fraction``).
    """
    edges = _check_edges(edges)
    return bin_masses(q, levels, edges) / np.diff(edges)


def outside_fraction(q: Array, levels: Array, edges: Array) -> Array:
    """Fraction of each record's values below edges[0] and at or above edges[-1]: (R, 2)."""
    edges = _check_edges(edges)
    f = cdf(q, levels, edges[[0, -1]])
    return np.stack([f[:, 0], 1.0 - f[:, 1]], axis=1)


def _check_edges(edges: Array) -> Array:
    edges = np.asarray(edges, dtype=np.float64)
    if edges.ndim != 1 or edges.size < 2 or not np.all(np.isfinite(edges)):
        raise ValueError("edges must be a 1-D array of at least 2 finite values")
    if np.any(np.diff(edges) <= 0):
        raise ValueError("edges must increase strictly")
    return edges


def quantile_at(q: Array, levels: Array, p: Array) -> Array:
    """Each sketch's quantile at levels p, interpolating between its knots: (R, len(p))."""
    q = np.atleast_2d(np.asarray(q, dtype=np.float64))
    levels = _check_levels(q, levels)
    p = np.clip(np.asarray(p, dtype=np.float64).ravel(), levels[0], levels[-1])
    pos = np.interp(p, levels, np.arange(levels.size, dtype=np.float64))
    lo = np.floor(pos).astype(np.intp)
    hi = np.minimum(lo + 1, levels.size - 1)
    frac = pos - lo
    a, b = q[:, lo], q[:, hi]
    with np.errstate(invalid="ignore"):
        return np.where(frac == 0.0, a, a + (b - a) * frac)


def shared_edges(
    sketches: Iterable[Array],
    n_bins: int = 60,
    clip: tuple[float, float] = (0.005, 0.995),
    levels: Array = LEVELS,
    pad: float = 0.02,
) -> Array:
    """One set of bin edges covering every record of every sketch given (e.g. both runs of a
    twin pair, so they share an axis).

    The range runs from the lowest ``clip[0]`` quantile to the highest ``clip[1]`` quantile over
    all records (so a few extreme values do not flatten everything), widened by ``pad`` of the
    span on each side. Non-finite quantiles are ignored; a range of zero width (a constant
    distribution) is widened to a unit-wide one around it.
    """
    if n_bins < 1:
        raise ValueError(f"n_bins must be at least 1; got {n_bins}")
    if not 0.0 <= clip[0] < clip[1] <= 1.0:
        raise ValueError(f"clip must be two levels 0 <= lo < hi <= 1; got {clip}")
    lows, highs = [], []
    for q in sketches:
        q = np.atleast_2d(np.asarray(q, dtype=np.float64))
        if q.size == 0:
            continue
        at = quantile_at(q, levels, clip)
        lows.append(at[:, 0][np.isfinite(at[:, 0])])
        highs.append(at[:, 1][np.isfinite(at[:, 1])])
    lo_all = np.concatenate(lows) if lows else np.empty(0)
    hi_all = np.concatenate(highs) if highs else np.empty(0)
    if lo_all.size == 0 or hi_all.size == 0:
        lo, hi = -1.0, 1.0
    else:
        lo, hi = float(lo_all.min()), float(hi_all.max())
        if hi < lo:
            lo, hi = hi, lo
        span = hi - lo
        if span <= 1e-12 * max(1.0, abs(lo), abs(hi)):
            lo, hi = lo - 0.5, hi + 0.5
        else:
            lo, hi = lo - pad * span, hi + pad * span
    return np.linspace(lo, hi, n_bins + 1)


def robust_ymax(density: Array, headroom: float = 1.1, max_ratio: float = 4.0) -> float:
    """A fixed y-axis top for a stack of histograms (frames x bins), kept for every frame.

    Usually the tallest bar of any frame (times ``headroom``). A lone spike (one bin far above
    its frame's second-tallest, e.g. a point mass of dead ReLU units) is cut at ``max_ratio``
    times the tallest second-tallest bar, so it does not squash every other frame flat.
    """
    d = np.atleast_2d(np.asarray(density, dtype=np.float64))
    d = np.where(np.isfinite(d), d, 0.0)
    if d.size == 0 or not np.any(d > 0):
        return 1.0
    top = d.max()
    if d.shape[1] >= 2:
        second = np.sort(d, axis=1)[:, -2].max()
        if second > 0:
            top = min(top, max_ratio * second)
    return float(headroom * top)


def even_indices(n: int, cap: int) -> Array:
    """At most ``cap`` indices into range(n), evenly spread, always keeping the first and last."""
    if cap < 2:
        raise ValueError(f"cap must be at least 2 (the first and the last); got {cap}")
    if n <= cap:
        return np.arange(max(n, 0), dtype=np.intp)
    return np.unique(np.round(np.linspace(0, n - 1, cap)).astype(np.intp))
