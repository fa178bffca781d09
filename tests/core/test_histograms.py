"""Tests for bnviz.histograms: densities from quantile sketches against np.histogram of the very
samples the sketch was taken from, conservation of mass, and awkward sketches."""

import numpy as np
import pytest

from bnviz.histograms import (
    bin_masses,
    cdf,
    density_from_quantiles,
    even_indices,
    outside_fraction,
    quantile_at,
    robust_ymax,
    shared_edges,
)
from bnviz.record import LEVELS, sorted_quantiles


def sketch(samples: np.ndarray) -> np.ndarray:
    """The sketch the recorder keeps: quantiles at LEVELS, one row."""
    return sorted_quantiles(np.sort(np.asarray(samples, dtype=np.float64)), LEVELS)[None, :]


@pytest.fixture(scope="module")
def normal():
    return np.random.default_rng(0).standard_normal(25_600)


@pytest.mark.parametrize("n_bins", [20, 60])
def test_density_matches_np_histogram_of_normal_samples(normal, n_bins):
    edges = np.linspace(normal.min(), normal.max(), n_bins + 1)
    ours = density_from_quantiles(sketch(normal), LEVELS, edges)[0]
    ref, _ = np.histogram(normal, edges, density=True)
    assert ours.shape == (n_bins,)
    assert np.max(np.abs(ours - ref)) < 0.015  # peak density is ~0.4
    # total variation of the masses; most of it is the outer 0.5% a side, which the sketch
    # spreads evenly out to the extreme sample
    assert np.sum(np.abs(ours - ref) * np.diff(edges)) < 0.02
    core = (edges[:-1] > np.quantile(normal, 0.005)) & (edges[1:] < np.quantile(normal, 0.995))
    assert np.sum((np.abs(ours - ref) * np.diff(edges))[core]) < 0.01


@pytest.mark.parametrize(
    "make",
    [
        lambda rng: rng.exponential(2.0, 25_600),
        lambda rng: np.concatenate([rng.normal(-3, 0.5, 12_800), rng.normal(2, 1.0, 12_800)]),
        lambda rng: rng.uniform(-1, 1, 25_600),
    ],
    ids=["exponential", "bimodal", "uniform"],
)
def test_density_matches_np_histogram_of_other_shapes(make):
    x = make(np.random.default_rng(1))
    edges = np.linspace(x.min(), x.max(), 41)
    ours = density_from_quantiles(sketch(x), LEVELS, edges)[0]
    ref, _ = np.histogram(x, edges, density=True)
    assert np.sum(np.abs(ours - ref) * np.diff(edges)) < 0.03


def test_masses_in_and_outside_sum_to_one():
    rng = np.random.default_rng(2)
    q = np.sort(rng.normal(0, rng.uniform(0.5, 5, (50, 1)), (50, LEVELS.size)), axis=1)
    edges = np.linspace(-2.0, 3.0, 31)
    masses = bin_masses(q, LEVELS, edges)
    outside = outside_fraction(q, LEVELS, edges)
    assert masses.shape == (50, 30) and outside.shape == (50, 2)
    assert np.all(masses >= 0) and np.all(outside >= 0)
    np.testing.assert_allclose(masses.sum(axis=1) + outside.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(
        density_from_quantiles(q, LEVELS, edges) * np.diff(edges), masses, atol=1e-15
    )
    assert outside[:, 0].max() > 0.1 and outside[:, 1].max() > 0.1  # the test saw both tails


def test_outside_fraction_counts_the_tails(normal):
    edges = np.linspace(-1.0, 1.0, 11)
    below, above = outside_fraction(sketch(normal), LEVELS, edges)[0]
    assert below == pytest.approx(np.mean(normal < -1.0), abs=0.003)
    assert above == pytest.approx(np.mean(normal > 1.0), abs=0.003)


def test_cdf_is_monotone_from_zero_to_one(normal):
    x = np.linspace(-6, 6, 500)
    f = cdf(sketch(normal), LEVELS, x)[0]
    assert f[0] == 0.0 and f[-1] == 1.0
    assert np.all(np.diff(f) >= 0)
    np.testing.assert_allclose(f, np.mean(normal[:, None] <= x, axis=0), atol=0.003)


def test_constant_distribution_is_one_tall_bin():
    q = np.full((1, LEVELS.size), 0.37)
    edges = np.linspace(0.0, 1.0, 11)
    d = density_from_quantiles(q, LEVELS, edges)[0]
    assert d[3] == pytest.approx(10.0)  # all mass in (0.3, 0.4], width 0.1
    assert np.count_nonzero(d) == 1
    np.testing.assert_array_equal(outside_fraction(q, LEVELS, edges), [[0.0, 0.0]])
    e = shared_edges([q], n_bins=4)
    np.testing.assert_allclose(e[[0, -1]], [-0.13, 0.87])  # widened to unit width around it


def test_point_mass_inside_a_spread_distribution():
    rng = np.random.default_rng(3)
    x = np.concatenate([np.zeros(12_800), rng.uniform(1, 2, 12_800)])  # like dead ReLU units
    edges = np.linspace(-0.5, 2.5, 31)
    assert edges[5] == 0.0
    ours = bin_masses(sketch(x), LEVELS, edges)[0]
    ref, _ = np.histogram(x, edges)
    np.testing.assert_allclose(ours, ref / x.size, atol=0.006)
    assert ours[5] == pytest.approx(0.5, abs=0.006)  # [0, 0.1) holds the mass on its left edge
    assert ours[4] == 0.0


@pytest.mark.parametrize("shift, side", [(-100.0, 0), (100.0, 1)])
def test_all_values_outside_the_edges(normal, shift, side):
    q = sketch(normal + shift)
    edges = np.linspace(-3.0, 3.0, 13)
    np.testing.assert_array_equal(density_from_quantiles(q, LEVELS, edges), 0.0)
    out = outside_fraction(q, LEVELS, edges)[0]
    assert out[side] == 1.0 and out[1 - side] == 0.0


def test_non_finite_values_count_as_outside():
    edges = np.linspace(-1.0, 1.0, 5)
    all_nan = np.full((1, LEVELS.size), np.nan)
    np.testing.assert_array_equal(density_from_quantiles(all_nan, LEVELS, edges), 0.0)
    np.testing.assert_array_equal(outside_fraction(all_nan, LEVELS, edges), [[0.0, 1.0]])
    # the top 10% overflowed to +inf, the bottom 5% to -inf: those masses, and the gaps between
    # them and the nearest finite quantile (0.5% each), are outside the axis
    q = np.linspace(-1.0, 1.0, LEVELS.size)[None, :]
    q[0, LEVELS >= 0.9] = np.inf
    q[0, LEVELS <= 0.05] = -np.inf
    masses = bin_masses(q, LEVELS, np.linspace(-2.0, 2.0, 9))[0]
    out = outside_fraction(q, LEVELS, np.linspace(-2.0, 2.0, 9))[0]
    np.testing.assert_allclose(out, [0.055, 0.105], atol=1e-12)
    assert masses.sum() == pytest.approx(0.84)
    assert np.all(np.isfinite(masses))


def test_bad_edges_and_levels_are_refused():
    q = np.zeros((1, LEVELS.size))
    with pytest.raises(ValueError, match="increase"):
        density_from_quantiles(q, LEVELS, np.array([0.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="finite"):
        density_from_quantiles(q, LEVELS, np.array([0.0, np.inf]))
    with pytest.raises(ValueError, match="one level per sketch column"):
        density_from_quantiles(q, LEVELS[:-1], np.array([0.0, 1.0]))


def test_quantile_at_interpolates_between_knots(normal):
    q = sketch(normal)
    np.testing.assert_allclose(quantile_at(q, LEVELS, LEVELS)[0], q[0])
    p = np.array([0.01, 0.123, 0.5, 0.99])  # inside the knots, not in the sparse outer tails
    np.testing.assert_allclose(quantile_at(q, LEVELS, p)[0], np.quantile(normal, p), atol=0.01)


def test_shared_edges_cover_every_record_of_every_sketch():
    rng = np.random.default_rng(4)
    a = np.stack([sketch(rng.normal(m, 1.0, 2000))[0] for m in (0.0, 1.0, 2.0)])
    b = np.stack([sketch(rng.normal(0.0, s, 2000))[0] for s in (0.5, 3.0)])
    e = shared_edges([a, b], n_bins=50)
    assert e.shape == (51,)
    np.testing.assert_allclose(np.diff(e), np.diff(e)[0])
    lo = min(quantile_at(s, LEVELS, [0.005]).min() for s in (a, b))
    hi = max(quantile_at(s, LEVELS, [0.995]).max() for s in (a, b))
    span = hi - lo
    assert e[0] == pytest.approx(lo - 0.02 * span) and e[-1] == pytest.approx(hi + 0.02 * span)
    # each record loses at most its clipped tails (0.5% a side) off the axis
    for s in (a, b):
        assert np.all(outside_fraction(s, LEVELS, e) <= 0.005 + 1e-12)


def test_shared_edges_clip_one_outlier(normal):
    x = normal.copy()
    x[0] = 1e6
    e = shared_edges([sketch(x)])
    assert e[-1] < 4.0  # the outlier is off the axis, not flattening the histogram
    assert shared_edges([sketch(x)], clip=(0.0, 1.0))[-1] > 1e6


def test_shared_edges_ignore_non_finite_records(normal):
    q = np.concatenate([sketch(normal), np.full((1, LEVELS.size), np.nan)])
    np.testing.assert_allclose(shared_edges([q]), shared_edges([sketch(normal)]))
    np.testing.assert_allclose(shared_edges([q[1:]], n_bins=2), [-1.0, 0.0, 1.0])


def test_robust_ymax():
    rng = np.random.default_rng(5)
    smooth = np.abs(rng.normal(1.0, 0.1, (20, 30)))
    assert robust_ymax(smooth) == pytest.approx(1.1 * smooth.max())
    spike = smooth.copy()
    spike[3, 7] = 1000.0
    assert robust_ymax(spike) == pytest.approx(1.1 * 4.0 * np.sort(spike, axis=1)[:, -2].max())
    assert robust_ymax(np.zeros((3, 4))) == 1.0
    assert robust_ymax(np.full((2, 3), np.nan)) == 1.0


def test_even_indices():
    idx = even_indices(301, 120)
    assert len(idx) == 120 and idx[0] == 0 and idx[-1] == 300
    assert set(np.diff(idx)) <= {2, 3}
    np.testing.assert_array_equal(even_indices(7, 120), np.arange(7))
    np.testing.assert_array_equal(even_indices(5, 2), [0, 4])
    assert len(even_indices(0, 10)) == 0
    with pytest.raises(ValueError):
        even_indices(10, 1)
