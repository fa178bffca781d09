"""Tests for bnviz.figures: every drift builder on real twin runs, checked for its traces, frames,
axes and numbers against the recorded data they draw."""

import json
from dataclasses import replace

import numpy as np
import plotly.graph_objects as go
import pytest

from bnviz import assets
from bnviz.experiments import drift as exp
from bnviz.figures import animate, common, drift, style
from bnviz.histograms import density_from_quantiles, outside_fraction, robust_ymax, shared_edges
from bnviz.record import LEVELS
from bnviz.train import History, TrainConfig, Twins, train_twins

SMALL = TrainConfig(hidden=(16, 16), steps=200, record_every=20, probe_size=64)


@pytest.fixture(scope="module")
def twins():
    return train_twins(SMALL)


@pytest.fixture(scope="module")
def long_twins():
    """151 records: more than the animation keeps."""
    return train_twins(TrainConfig(hidden=(16, 16), steps=300, record_every=2, probe_size=64))


def crashed(h: History, records: int, step: int) -> History:
    """The run as if it had diverged at ``step``, keeping its first ``records`` records: a
    divergence the tests can place exactly, whatever the training dynamics do."""
    return replace(
        h,
        loss=h.loss[:step],
        record_steps=h.record_steps[:records],
        test_loss=h.test_loss[:records],
        test_acc=h.test_acc[:records],
        layers=[layer.truncated(records) for layer in h.layers],
        diverged_at=step,
    )


@pytest.fixture(scope="module")
def diverged(twins):
    """The small twins with the plain run stopped at step 70 (last record: step 60)."""
    t = Twins(crashed(twins.plain, 4, 70), twins.bn)
    np.testing.assert_array_equal(t.plain.record_steps, [0, 20, 40, 60])
    return t


@pytest.fixture(scope="module")
def exploded():
    """A real divergence: ReLU nets at learning rate 100 from 3x the usual initial weights."""
    t = train_twins(
        TrainConfig(
            hidden=(16, 16),
            steps=50,
            record_every=5,
            probe_size=64,
            lr=100.0,
            init_scale=3.0,
            activation="relu",
        )
    )
    assert t.plain.diverged_at is not None
    return t


def builders(t):
    """Every builder with typical arguments, by name."""
    return {
        "twin_histograms": lambda: animate.histograms_over_training(t, 2),
        "ridge": lambda: drift.ridge(t, 2),
        "percentile_bands": lambda: drift.percentile_bands(t, 2, 3),
        "accuracy_curves": lambda: common.accuracy_curves(t),
        "loss_curves": lambda: common.loss_curves(t, smooth=20),
        "drift_over_time": lambda: drift.drift_over_time(t),
        "saturation_over_time": lambda: drift.saturation_over_time(t),
        "mean_std_over_time": lambda: drift.mean_std_over_time(t, 1),
    }


def named(fig, name):
    found = [d for d in fig.data if d.name == name]
    assert found, f"no trace named {name!r} in {[d.name for d in fig.data]}"
    return found


def close(a, b, rel=2e-3):
    """Figures ship numbers rounded to a few significant digits."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    scale = max(np.nanmax(np.abs(b)), 1e-12)
    np.testing.assert_allclose(a, b, atol=rel * scale, rtol=0)


# --------------------------------------------------------------------------- style


def test_style_labels_and_colors():
    assert style.label("act_in") == "sigmoid input"
    assert style.label("act_in", "tanh") == "tanh input"
    assert style.label("act_in", "relu") == "ReLU input"
    assert style.label("bn_in") == "BN input"
    assert style.label("bn_out") == "BN output"
    with pytest.raises(ValueError, match="site"):
        style.label("bogus")
    assert style.run_color("plain") == style.PLAIN != style.run_color("BN") == style.BN
    with pytest.raises(ValueError):
        style.run_color("other")
    assert style.rgba("#0072B2", 0.25) == "rgba(0,114,178,0.25)"


@pytest.mark.parametrize(
    "name",
    [
        "twin_histograms",
        "ridge",
        "percentile_bands",
        "accuracy_curves",
        "loss_curves",
        "drift_over_time",
        "saturation_over_time",
        "mean_std_over_time",
    ],
)
def test_every_figure_is_titled_styled_serializable_and_deterministic(twins, name):
    fig = builders(twins)[name]()
    assert isinstance(fig, go.Figure)
    assert fig.layout.title.text and fig.layout.height >= style.HEIGHT
    assert fig.layout.template.layout.font.family == style.FONT_FAMILY
    for ax in (fig.layout.xaxis, fig.layout.yaxis):
        assert ax.title.text  # the first panel names both of its axes
    again = builders(twins)[name]()
    assert fig.to_json() == again.to_json()
    json.loads(fig.to_json())
    for d in fig.data:  # run traces wear their run's color
        if d.name in ("plain", "BN") and d.type == "scatter":
            assert d.line.color == style.run_color(d.name)


# --------------------------------------------------------------------------- twin histograms


def test_twin_histograms_traces_and_frames(twins):
    fig = animate.histograms_over_training(twins, 2)
    assert [d.type for d in fig.data] == ["bar", "bar", "scatter", "scatter", "scatter", "scatter"]
    assert [d.name for d in fig.data[:4]] == ["plain", "BN", "step 0", "step 0"]
    assert fig.data[0].marker.color == style.PLAIN and fig.data[1].marker.color == style.BN
    assert (fig.data[0].xaxis, fig.data[1].xaxis) == ("x", "x2")

    steps = twins.plain.record_steps
    assert len(fig.frames) == len(steps) == 11
    assert [f.name for f in fig.frames] == [str(s) for s in steps]
    (slider,) = fig.layout.sliders
    assert [s.label for s in slider.steps] == [f.name for f in fig.frames]
    assert [list(s.args[0]) for s in slider.steps] == [[f.name] for f in fig.frames]
    assert slider.currentvalue.prefix == "step "
    (menu,) = fig.layout.updatemenus
    labels = [b.label for b in menu.buttons]
    assert any("Play" in lb for lb in labels) and any("Pause" in lb for lb in labels)
    assert menu.buttons[0].args[0] is None  # play: all frames, from the current one


def test_twin_histograms_draw_the_recorded_densities(twins):
    fig = animate.histograms_over_training(twins, 2, shared_x=True)
    recs = [h.layers[1].sites["act_in"] for h in twins]
    edges = shared_edges([r.quantiles for r in recs])
    width = np.diff(edges)
    # positions are rounded to a thousandth of a bin at most
    np.testing.assert_allclose(fig.data[0].x, (edges[:-1] + edges[1:]) / 2, atol=1e-3 * width[0])
    np.testing.assert_allclose(fig.data[0].width, width, atol=1e-3 * width[0])
    for f, step in zip(fig.frames, twins.plain.record_steps, strict=True):
        assert list(f.traces) == [0, 1, 4, 5]
        for k, rec in enumerate(recs):
            r = int(np.flatnonzero(twins.plain.record_steps == step)[0])
            want = density_from_quantiles(rec.quantiles[r : r + 1], LEVELS, edges)[0]
            close(f.data[k].y, want)
            inside = 1.0 - outside_fraction(rec.quantiles[r : r + 1], LEVELS, edges).sum()
            assert np.sum(np.asarray(f.data[k].y) * width) == pytest.approx(inside, abs=2e-3)
            assert (
                f"mean {common.fmt_stat(rec.mean[r])}, std {common.fmt_stat(rec.std[r])}"
                in (f.data[2 + k].text[0])
            )
    close(fig.data[0].y, fig.frames[0].data[0].y, rel=0)  # first paint is frame 0
    # the step-0 outline: zero, the step-0 densities, zero
    for k in range(2):
        outline = np.asarray(fig.data[2 + k].y)
        assert outline[0] == 0 and outline[-1] == 0
        close(outline[1:-1], fig.frames[0].data[k].y)
        assert fig.data[2 + k].line.shape == "hv"


def test_twin_histograms_axes_are_fixed_and_cover_the_data(twins):
    fig = animate.histograms_over_training(twins, 1)
    recs = [h.layers[0].sites["act_in"] for h in twins]
    edges = shared_edges([r.quantiles for r in recs])
    for ax in ("xaxis", "xaxis2"):
        assert fig.layout[ax].range == (pytest.approx(edges[0]), pytest.approx(edges[-1]))
        assert fig.layout[ax].autorange is False
    for k, ax in enumerate(("yaxis", "yaxis2")):  # each panel its own height, fixed over time
        bottom, top = fig.layout[ax].range
        tallest = max(max(f.data[k].y) for f in fig.frames)
        assert bottom == 0 and tallest <= top <= 1.2 * tallest
        assert fig.layout[ax].autorange is False
    for f in fig.frames:  # frames change data only, never the axes
        assert f.layout.xaxis.range is None and f.layout.yaxis.range is None
    # the data fits: no record loses more than its clipped 0.5% tails off either side
    for r in recs:
        assert outside_fraction(r.quantiles, LEVELS, edges).max() <= 0.005 + 1e-9


def test_twin_histograms_own_axes_per_run(twins):
    fig = animate.histograms_over_training(twins, 1, shared_x=False)
    for ax, h in (("xaxis", twins.plain), ("xaxis2", twins.bn)):
        e = shared_edges([h.layers[0].sites["act_in"].quantiles])
        assert fig.layout[ax].range == (pytest.approx(e[0]), pytest.approx(e[-1]))
    assert fig.layout.xaxis.range != fig.layout.xaxis2.range


def test_twin_histograms_subsample_long_runs(long_twins):
    steps = long_twins.plain.record_steps
    assert len(steps) == 151
    fig = animate.histograms_over_training(long_twins, 1)
    names = [int(f.name) for f in fig.frames]
    assert len(names) == animate.MAX_FRAMES == len(fig.layout.sliders[0].steps)
    assert names[0] == 0 and names[-1] == steps[-1] == 300
    assert np.all(np.diff(names) > 0) and set(names) <= set(steps.tolist())
    assert set(np.diff(names)) <= {2, 4}  # evenly spread over the records
    fig = animate.histograms_over_training(long_twins, 1, max_frames=10)
    assert [f.name for f in fig.frames][::9] == ["0", "300"] and len(fig.frames) == 10


def test_twin_histograms_diverged_run(diverged):
    fig = animate.histograms_over_training(diverged, 1)
    assert len(fig.frames) == len(diverged.bn.record_steps) == 11
    titles = [a.text for a in fig.layout.annotations]
    assert "plain net (diverged at step 70) (own x axis)" in titles
    assert "BN net (own x axis)" in titles
    # a diverged run gets its own axis, so its blown-up values cannot flatten the other panel
    for ax, h in (("xaxis", diverged.plain), ("xaxis2", diverged.bn)):
        e = shared_edges([h.layers[0].sites["act_in"].quantiles])
        assert fig.layout[ax].range == (pytest.approx(e[0]), pytest.approx(e[-1]))
    for f in fig.frames:
        assert np.any(f.data[1].y)
        if int(f.name) > 60:
            assert not np.any(f.data[0].y) and f.data[2].text[0] == "plain diverged at step 70"
        else:
            assert np.any(f.data[0].y) and f.data[2].text[0].startswith("mean ")


def test_every_figure_survives_a_real_divergence(exploded):
    k = exploded.plain.diverged_at
    note = f"plain diverged at step {k}"
    hist = animate.histograms_over_training(exploded, 1)
    assert any(
        a.text.startswith(f"plain net (diverged at step {k})") for a in hist.layout.annotations
    )
    assert hist.layout.xaxis.range != hist.layout.xaxis2.range
    for name, build in builders(exploded).items():
        fig = build()
        json.loads(fig.to_json())
        if name != "twin_histograms":
            texts = [a.text for a in fig.layout.annotations]
            assert any(note in t or f"(diverged at step {k}" in t for t in texts), (name, texts)
    assert drift.saturation_over_time(exploded).layout.yaxis.title.text == "fraction of dead units"


def test_twin_histograms_bn_input_shows_the_plain_nets_linear_output(twins):
    """The plain net has no BN: for "BN input" its panel shows its Linear output, as the
    page's help says (the same numbers as its act_in)."""
    fig = animate.histograms_over_training(twins, 1, site="bn_in", shared_x=True)
    assert fig.layout.xaxis.title.text == "BN input, hidden layer 1"
    assert all(np.any(f.data[0].y) for f in fig.frames)
    assert all(np.any(f.data[1].y) for f in fig.frames)
    titles = [a.text for a in fig.layout.annotations]
    assert "plain net: its Linear output, no BN" in titles
    x, w = np.asarray(fig.data[0].x), np.asarray(fig.data[0].width)
    edges = np.append(x - w / 2, x[-1] + w[-1] / 2)
    want = density_from_quantiles(twins.plain.layers[0].sites["act_in"].quantiles, LEVELS, edges)
    for f, row in zip(fig.frames, want, strict=True):
        np.testing.assert_allclose(f.data[0].y, row, rtol=1e-3, atol=1e-3 * row.max())


def test_bad_arguments_are_refused(twins):
    with pytest.raises(ValueError, match="layer"):
        animate.histograms_over_training(twins, 3)
    with pytest.raises(ValueError, match="layer"):
        drift.ridge(twins, 0)
    with pytest.raises(ValueError, match="site"):
        animate.histograms_over_training(twins, 1, site="act_out")
    with pytest.raises(ValueError, match="neither run"):
        drift.ridge(twins, 1, site="bn_out")
    with pytest.raises(ValueError, match="unit"):
        drift.percentile_bands(twins, 1, 16)
    with pytest.raises(ValueError, match="metric"):
        drift.drift_over_time(twins, metric="kl")
    with pytest.raises(ValueError, match="smooth"):
        common.loss_curves(twins, smooth=0)


# --------------------------------------------------------------------------- ridge


def curves(trace):
    """Split a ridge trace at its gaps into (step, x, y) per curve."""
    x = np.array([np.nan if v is None else v for v in trace.x], dtype=np.float64)
    y = np.array([np.nan if v is None else v for v in trace.y], dtype=np.float64)
    at = np.array([np.nan if v is None else v for v in trace.customdata], dtype=np.float64)
    cuts = np.flatnonzero(np.isnan(x))
    out, start = [], 0
    for c in cuts:
        out.append((int(at[start]), x[start:c], y[start:c]))
        start = c + 1
    return out


def test_ridge_draws_every_record_of_both_runs(twins):
    fig = drift.ridge(twins, 2, overlap=1.8, shared_x=True)
    assert [d.name for d in fig.data] == ["plain", "BN"]
    for d in fig.data:
        assert d.fill == "toself" and d.line.color == style.run_color(d.name)
    recs = [h.layers[1].sites["act_in"] for h in twins]
    edges = shared_edges([r.quantiles for r in recs], n_bins=80)
    width = edges[1] - edges[0]
    centers = (edges[:-1] + edges[1:]) / 2
    gap, tall = 20.0, 1.8 * 20.0  # each curve is 1.8 record gaps tall at its own peak
    for d, r in zip(fig.data, recs, strict=True):
        cs = sorted(curves(d), key=lambda c: c[0])
        assert [s for s, _, _ in cs] == twins.plain.record_steps.tolist()
        dens = density_from_quantiles(r.quantiles, LEVELS, edges)
        for (s, x, y), want in zip(cs, dens, strict=True):
            assert y[0] == y[-1] == s  # each curve sits on its step
            assert np.max(y) - s == pytest.approx(tall, abs=1e-3 * gap)
            bins = np.rint((x[1:-1] - centers[0]) / width).astype(int)
            np.testing.assert_allclose(x[1:-1], centers[bins], atol=1e-3 * width)
            peak = robust_ymax(want[None, :], headroom=1.0)
            np.testing.assert_allclose(
                y[1:-1] - s, np.minimum(want[bins], peak) * tall / peak, atol=1e-3 * gap
            )
            # trimmed to the bins with mass, plus one empty bin a side
            assert np.all(want[: bins[0]] <= 0.01 * peak)
            assert np.all(want[bins[-1] + 1 :] <= 0.01 * peak)
            np.testing.assert_allclose(
                x[[0, -1]], edges[[bins[0], bins[-1] + 1]], atol=1e-3 * width
            )
    shared = drift.ridge(twins, 2, normalize=False, overlap=1.8, shared_x=True)
    dens = [density_from_quantiles(r.quantiles, LEVELS, edges) for r in recs]
    top = robust_ymax(np.concatenate(dens), headroom=1.0)  # one scale for every curve
    for d, dn in zip(shared.data, dens, strict=True):
        for s, _, y in curves(d):
            row = dn[list(twins.plain.record_steps).index(s)]
            assert np.max(y) - s == pytest.approx(min(row.max(), top) * tall / top, abs=1e-3 * gap)
    assert fig.layout.yaxis.range[0] < 0 and fig.layout.yaxis.range[1] > 200
    assert fig.layout.yaxis.title.text == "training step"


def test_ridge_subsamples_and_marks_divergence(long_twins, diverged):
    fig = drift.ridge(long_twins, 1)
    steps = sorted(s for s, _, _ in curves(fig.data[0]))
    assert len(steps) == drift.MAX_CURVES and steps[0] == 0 and steps[-1] == 300
    fig = drift.ridge(diverged, 1)
    assert max(s for s, _, _ in curves(fig.data[0])) == 60
    assert max(s for s, _, _ in curves(fig.data[1])) == 200
    assert any("diverged at step 70" in a.text for a in fig.layout.annotations)


# --------------------------------------------------------------------------- percentiles


def test_percentile_bands_use_the_units_own_values(twins):
    unit = 3
    fig = drift.percentile_bands(twins, 2, unit)
    for h in twins:
        pct = h.layers[1].sites["act_in"].unit_pct[:, unit, :]
        (hi,) = named(fig, f"{h.label} 85th percentile")
        (band,) = named(fig, f"{h.label}: 15th–85th")
        (med,) = named(fig, f"{h.label}: median")
        np.testing.assert_allclose(hi.y, pct[:, 2])
        np.testing.assert_allclose(band.y, pct[:, 0])
        np.testing.assert_allclose(med.y, pct[:, 1])
        np.testing.assert_array_equal(med.x, h.record_steps)
        assert band.fill == "tonexty" and list(fig.data).index(band) == list(fig.data).index(hi) + 1
        assert med.line.color == band.line.color == style.run_color(h.label)
        assert hi.showlegend is False
    assert named(fig, "plain: median")[0].xaxis == "x" and named(fig, "BN: median")[0].xaxis == "x2"
    assert fig.layout.yaxis2.matches == "y"  # one y scale, so stability compares by eye
    other = drift.percentile_bands(twins, 2, unit + 1)
    assert not np.allclose(named(other, "plain: median")[0].y, named(fig, "plain: median")[0].y)


def test_typical_unit_is_the_median_mover(twins):
    med = twins.plain.layers[1].sites["act_in"].unit_pct[:, :, 1]
    moves = np.abs(med[-1] - med[0])
    u = drift.typical_unit(twins.plain, 2)
    assert 0 <= u < 16
    assert np.sum(moves < moves[u]) == 7 and np.sum(moves > moves[u]) == 8
    fig = drift.percentile_bands(twins, 2)  # the typical unit by default, in both nets
    assert f"unit {u}" in fig.layout.title.text
    for h in twins:
        np.testing.assert_allclose(
            named(fig, f"{h.label}: median")[0].y, h.layers[1].sites["act_in"].unit_pct[:, u, 1]
        )


def test_percentile_bands_diverged(diverged):
    fig = drift.percentile_bands(diverged, 2, 0)
    (mark,) = named(fig, "plain diverged at step 70")
    assert mark.marker.symbol == "x" and mark.x == (60.0,)
    assert mark.y[0] == pytest.approx(diverged.plain.layers[1].sites["act_in"].unit_pct[-1, 0, 1])
    assert [s.x0 for s in fig.layout.shapes] == [70]
    assert "plain diverged at step 70" in [a.text for a in fig.layout.annotations]


# --------------------------------------------------------------------------- curves


def test_accuracy_curves(twins, diverged):
    fig = common.accuracy_curves(twins)
    assert [d.name for d in fig.data] == ["plain", "BN"]
    for d, h in zip(fig.data, twins, strict=True):
        np.testing.assert_allclose(d.y, h.test_acc)
        np.testing.assert_array_equal(d.x, h.record_steps)
        assert d.line.dash == style.RUN_DASH[h.label]
    assert fig.layout.yaxis.range == (0.0, 1.02) and not fig.layout.shapes
    assert twins.bn.test_acc[-1] > 0.5  # the run really learned something
    fig = common.accuracy_curves(diverged)
    (plain,) = named(fig, "plain")
    assert plain.x[-1] == 60 and len(plain.y) == 4
    (mark,) = named(fig, "plain diverged at step 70")
    assert mark.x == (60.0,) and mark.y[0] == pytest.approx(diverged.plain.test_acc[-1])
    assert [s.x0 for s in fig.layout.shapes] == [70]


def test_loss_curves_smoothing(twins):
    fig = common.loss_curves(twins, smooth=20)
    assert fig.layout.yaxis.type == "log"
    for d, h in zip(fig.data, twins, strict=True):
        assert len(d.y) == 200
        want = [np.mean(h.loss[max(0, t - 19) : t + 1]) for t in range(200)]
        close(d.y, want, rel=1e-4)
        np.testing.assert_array_equal(d.x, np.arange(200))
    raw = common.loss_curves(twins, smooth=1)
    close(raw.data[0].y, twins.plain.loss, rel=1e-4)
    thin = common.loss_curves(twins, smooth=5, max_points=50)
    assert len(thin.data[0].x) == 50 and thin.data[0].x[0] == 0 and thin.data[0].x[-1] == 199
    np.testing.assert_allclose(common.smooth_loss(np.array([1.0, 3.0, 5.0, 7.0]), 2), [1, 2, 4, 6])


def test_loss_curves_cut_at_divergence(diverged):
    fig = common.loss_curves(diverged, smooth=5)
    (plain,) = named(fig, "plain")
    assert len(plain.y) == 70 and plain.x[-1] == 69
    assert np.all(np.isfinite(plain.y))
    (mark,) = named(fig, "plain diverged at step 70")
    assert mark.x == (69.0,) and mark.y[0] == pytest.approx(plain.y[-1])
    assert [s.x0 for s in fig.layout.shapes] == [70]
    assert len(named(fig, "BN")[0].y) == 200


# --------------------------------------------------------------------------- per layer


@pytest.mark.parametrize("metric", ["drift_prev", "drift_init"])
def test_drift_over_time(twins, metric):
    fig = drift.drift_over_time(twins, metric=metric)
    assert [(d.name, d.xaxis) for d in fig.data] == [
        ("plain", "x"),
        ("BN", "x"),
        ("plain", "x2"),
        ("BN", "x2"),
    ]
    assert [d.showlegend for d in fig.data] == [True, True, False, False]
    for i, d in enumerate(fig.data):
        h = twins.plain if d.name == "plain" else twins.bn
        np.testing.assert_allclose(d.y, getattr(h.layers[i // 2].sites["act_in"], metric))
        assert d.line.dash == style.RUN_DASH[d.name]
    assert fig.data[0].y[0] == 0.0  # step 0 is its own reference
    # each layer its own y axis: on a shared one a first-record spike of one layer flattened
    # the others to a line at 0
    assert fig.layout.yaxis2.matches is None
    assert fig.layout.yaxis.title.text == drift.METRICS[metric]
    assert fig.layout.xaxis.autorangeoptions.maxallowed == twins.plain.config.steps
    bn_only = drift.drift_over_time(twins, site="bn_in")
    assert [d.name for d in bn_only.data] == ["BN", "BN"]


def test_saturation_over_time(twins, diverged):
    fig = drift.saturation_over_time(twins)
    assert len(fig.data) == 4 and "3.64" in fig.layout.title.text
    for i, d in enumerate(fig.data):
        h = twins.plain if d.name == "plain" else twins.bn
        np.testing.assert_allclose(d.y, h.layers[i // 2].sites["act_in"].saturation)
    assert fig.layout.yaxis.tickformat == ".0%"
    fig = drift.saturation_over_time(diverged)
    assert fig.layout.yaxis.title.text == "fraction saturated"
    assert len(named(fig, "plain diverged at step 70")) == 2  # one mark per layer
    assert [s.x0 for s in fig.layout.shapes] == [70, 70]


def test_saturation_for_linear_units_says_it_does_not_apply():
    t = train_twins(
        TrainConfig(hidden=(8,), steps=20, record_every=5, probe_size=32, activation="linear")
    )
    fig = drift.saturation_over_time(t)
    assert "never saturate" in " ".join(a.text for a in fig.layout.annotations)


def test_mean_std_over_time(twins):
    fig = drift.mean_std_over_time(twins, 2)
    for h in twins:
        rec = h.layers[1].sites["act_in"]
        mean, std = named(fig, h.label)
        assert (mean.xaxis, std.xaxis) == ("x", "x2")
        np.testing.assert_allclose(mean.y, rec.mean)
        np.testing.assert_allclose(std.y, rec.std)
        assert mean.showlegend and not std.showlegend
    assert fig.layout.xaxis.title.text == "training step"
    assert fig.layout.yaxis.title.text == "sigmoid input, hidden layer 2"


def test_each_step_axes_fit_every_frame(long_twins):
    """axes="each step": every frame carries its own ranges, fitted to that step's values,
    and the bars sit on that step's bins."""
    fig = animate.histograms_over_training(long_twins, 1, axes="each step", shared_x=True)
    ranges = {tuple(f.layout.xaxis.range) for f in fig.frames}
    assert len(ranges) > 1
    for f in fig.frames:
        lo, hi = f.layout.xaxis.range
        assert lo <= min(f.data[0].x) and max(f.data[0].x) <= hi
        assert f.layout.yaxis.range[1] >= max(f.data[0].y)
    with pytest.raises(ValueError, match="axes"):
        animate.histograms_over_training(long_twins, 1, axes="sideways")


def test_a_run_twenty_times_wider_gets_its_own_x_axis(twins):
    """A shared axis sized for a run whose values spread twenty times wider squashes the
    other into a bar or two: then each panel gets its own axis, and says so."""
    plain, bn = (h.layers[1].sites["act_in"].quantiles for h in twins)
    width = [float(np.max(q[:, -3] - q[:, 2])) for q in (plain, bn)]
    assert max(width) > animate.SPREAD_RATIO * min(width)  # this fixture's plain net: narrow
    fig = animate.histograms_over_training(twins, 2)
    assert fig.layout.xaxis.range != fig.layout.xaxis2.range
    assert all("own x axis" in a.text for a in fig.layout.annotations[:2])
    assert animate.comparable_spreads([bn, bn * 3])


def test_steps_to_90_percent_does_not_depend_on_the_run_length():
    """The default run (2,000 steps, a record every 20) and the paper preset (50,000 steps, a
    record every 500) share their first 2,000 steps: "steps to 90%" must agree. It read 60
    and 500 when accuracy was measured only at the records."""
    default, paper = assets.load("drift-default"), assets.load("paper-figure-1")
    np.testing.assert_array_equal(default.bn.loss[:2000], paper.bn.loss[:2000])
    reached = [exp.steps_to_accuracy(run.bn, exp.TARGET_ACC) for run in (default, paper)]
    assert reached[0] == reached[1] is not None
    assert reached[0] % exp.EVAL_EVERY == 0
    assert exp.accuracy_resolution(paper.bn, reached[1]) == exp.EVAL_EVERY
    assert exp.accuracy_resolution(paper.bn, 20_000) == paper.bn.config.record_every


def test_movement_reads_the_last_finite_record(twins):
    m = exp.movement(twins.plain, 2)
    rec = twins.plain.layers[1].sites["act_in"]
    assert (m.std_start, m.std_end) == (float(rec.std[0]), float(rec.std[-1]))
    assert m.moved == float(rec.drift_init[-1]) and m.step == twins.plain.record_steps[-1]
    assert [x.layer for x in exp.movements(twins.bn)] == [1, 2]
