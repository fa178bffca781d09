"""The scale-invariance lesson's identities, checked as numbers in float64.

BN((aW)u) = BN(Wu), d BN/du unchanged, d/d(aW) = (1/a) d/dW, W orthogonal to its gradient,
the bias before BN redundant, and gamma = sqrt(var + eps), beta = mean giving back the input:
each to about 1e-12 at eps = 0, on the paper's net and real digits.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from bnviz import functional as F
from bnviz.experiments import scale
from bnviz.figures import scale as figs
from bnviz.train import TrainConfig

TOL = 1e-12
SCALES = (0.01, 0.3, 7.0, 100.0)


@pytest.fixture(scope="module")
def twins():
    return scale.run(scale.config(lr=2.0, steps=300, seed=0))  # short, yet the plain net learns


@pytest.fixture(scope="module")
def ident():
    return scale.identity(layer=1, a=10.0, eps=0.0, batch_size=60, seed=0)


# --------------------------------------------------------------------------- the bare layer


def test_bn_of_scaled_weights_is_bn_of_weights_and_so_are_its_input_gradients():
    u, _ = scale.real_batch(seed=3, batch_size=32)
    w = np.random.default_rng(0).standard_normal((20, u.shape[1])) * 0.05
    gamma, beta = np.full(20, 1.3), np.full(20, -0.2)
    dy = np.random.default_rng(1).standard_normal((32, 20))

    def layer(w):
        y, cache = F.batchnorm_forward(u @ w.T, gamma, beta, scale.EXACT_EPS)
        dz = F.batchnorm_backward(dy, cache)[0]
        return y, dz @ w, dz.T @ u  # output, dL/du, dL/dW

    y1, du1, dw1 = layer(w)
    for a in SCALES:
        ya, dua, dwa = layer(a * w)
        assert np.max(np.abs(ya - y1)) < TOL
        assert np.max(np.abs(dua - du1)) < TOL * np.max(np.abs(du1))
        assert np.max(np.abs(a * dwa - dw1)) < TOL * np.max(np.abs(dw1))


def test_eps_makes_the_identity_approximate_by_about_eps_over_var():
    u, _ = scale.real_batch(seed=0, batch_size=60)
    w = np.random.default_rng(0).standard_normal((10, u.shape[1])) * 0.01
    ones, zeros = np.ones(10), np.zeros(10)
    eps = 1e-5
    z = u @ w.T
    var = np.var(z, axis=0)
    y1 = F.batchnorm_forward(z, ones, zeros, eps)[0]
    y10 = F.batchnorm_forward(10 * z, ones, zeros, eps)[0]
    # BN(az) = BN(z) sqrt(var + eps) / sqrt(var + eps / a^2): relative gap ~ eps / (2 var)
    expected = np.sqrt(var + eps) / np.sqrt(var + eps / 100) - 1
    rel = np.max(np.abs(y10 / y1 - 1), axis=0)
    np.testing.assert_allclose(rel, expected, rtol=1e-8)
    assert 0 < np.max(expected) < eps / np.min(var)


# --------------------------------------------------------------------------- the experiment


@pytest.mark.parametrize("layer", [1, 2, 3])
@pytest.mark.parametrize("a", [0.01, 10.0, 100.0])
def test_identities_on_the_paper_net_at_eps_zero(layer, a):
    ident = scale.identity(layer=layer, a=a, eps=0.0, batch_size=60, seed=1)
    assert ident.out_diff < TOL
    assert ident.du_change("bn") < TOL
    assert abs(ident.grad_ratio("bn") - 1) < TOL
    assert abs(ident.slope_bn + 1) < TOL
    assert abs(ident.cos_w_grad) < TOL
    assert ident.bias_diff < TOL
    assert np.ptp(ident.loss_bn) < TOL
    np.testing.assert_allclose(ident.grad_norm_bn * ident.grid, ident.grad_norm_bn[20], rtol=TOL)
    assert ident.grid[20] == pytest.approx(1.0)


def test_the_plain_net_is_not_scale_invariant(ident):
    # layer 1 of the plain net passes (aW)u on as it is: dL/du scales by about a
    assert ident.du_change("plain") > 5
    assert np.max(np.abs(ident.plain[1].z - 10 * ident.plain[0].z)) < TOL
    assert np.ptp(ident.loss_plain) > 1e-6  # small at step 0, yet a million times rounding
    assert not np.allclose(ident.grad_norm_plain * ident.grid, ident.grad_norm_plain[20])


def test_a_gradient_step_can_only_lengthen_w(ident):
    """W . g = 0, so ||W - lr g||^2 = ||W||^2 + lr^2 ||g||^2 exactly (the norm grows)."""
    one = ident.bn[0]
    w, g = ident.weight, one.dw
    for lr in (0.1, 0.5, 5.0):
        lhs = np.sum((w - lr * g) ** 2)
        rhs = np.sum(w**2) + lr**2 * np.sum(g**2)
        assert abs(lhs - rhs) < TOL * rhs


def test_the_passes_see_the_layer_and_the_bn_output(ident):
    one, scaled = ident.bn
    assert one.u.shape == (60, 64) and one.z.shape == (60, 100) and one.dw.shape == (100, 64)
    np.testing.assert_allclose(scaled.z, 10 * one.z, rtol=0, atol=TOL)
    np.testing.assert_allclose(one.z, one.u @ ident.weight.T, rtol=0, atol=TOL)
    np.testing.assert_allclose(one.out.mean(axis=0), 0, atol=TOL)
    np.testing.assert_allclose(one.out.std(axis=0), 1, atol=1e-10)


def test_eps_breaks_the_identity_at_tiny_scales():
    ident = scale.identity(layer=1, a=0.01, eps=1e-5, batch_size=60, seed=0)
    assert ident.out_diff > 1  # a^2 var ~ 5e-7 is far below eps: BN stops normalizing
    assert ident.du_change("bn") > 0.1
    big = scale.identity(layer=1, a=100.0, eps=1e-5, batch_size=60, seed=0)
    assert big.out_diff < 0.02  # a^2 var ~ 50 dwarfs eps: nearly exact


def test_a_batch_of_two_has_no_weight_gradient_at_eps_zero():
    ident = scale.identity(layer=1, a=10.0, eps=0.0, batch_size=2, seed=0)
    assert ident.bn_grad_vanishes
    assert np.all(np.abs(np.abs(ident.bn[0].out) - 1) < TOL)
    assert np.max(ident.grad_norm_bn) < 1e-20
    assert not scale.identity(layer=1, a=10.0, eps=0.0, batch_size=4, seed=0).bn_grad_vanishes


def test_identity_is_deterministic_and_refuses_bad_input():
    a = scale.identity(layer=2, a=3.0, eps=1e-5, batch_size=16, seed=4)
    b = scale.identity(layer=2, a=3.0, eps=1e-5, batch_size=16, seed=4)
    assert scale.identity_csv(a) == scale.identity_csv(b)
    for kwargs in (dict(a=0.0), dict(a=float("nan")), dict(eps=-1.0), dict(layer=4)):
        args = dict(layer=1, a=1.0, eps=0.0, batch_size=8, seed=0) | kwargs
        with pytest.raises(ValueError):
            scale.identity(**args)
    with pytest.raises(ValueError):
        scale.real_batch(seed=0, batch_size=1)


# --------------------------------------------------------------------------- training


def test_config_is_the_paper_net_in_float64():
    cfg = scale.config(lr=0.5, steps=2000, seed=0)
    assert cfg.hidden == (100, 100, 100) and cfg.init_std == 0.01 and cfg.dtype == "float64"
    assert cfg.record_every == 20
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.as_dict()))) == cfg
    with pytest.raises(ValueError):
        scale.config(lr=0.5, steps=scale.MAX_STEPS + 1, seed=0)


def test_bn_weights_grow_and_the_effective_rate_falls(twins):
    lr = twins.bn.config.lr
    for w, e in zip(scale.weight_norms(twins.bn), scale.effective_lr(twins.bn), strict=True):
        assert w[-1] > 2 * w[0]
        # the gradient is orthogonal to W (up to eps / var): the norm never shrinks
        assert np.all(np.diff(w) > -1e-5 * w[1:])
        np.testing.assert_allclose(e, lr / w**2, rtol=1e-12)
        assert e[-1] < e[0] / 4


def test_weight_decay_slows_the_growth(twins):
    decayed = scale.run(scale.config(lr=2.0, steps=150, seed=0, weight_decay=1e-2)).bn
    at = int(np.flatnonzero(twins.bn.record_steps == 150)[0])
    for with_decay, free in zip(
        scale.weight_norms(decayed), scale.weight_norms(twins.bn), strict=True
    ):
        assert with_decay[-1] < 0.9 * free[at]


@pytest.mark.parametrize("layer", [1, 3])
def test_scaling_the_trained_nets(twins, layer):
    ts = scale.scale_trained(twins, layer)
    big = ts.grid >= 1
    # train-mode BN: flat in a wherever a^2 var dwarfs the training eps (1e-5)
    assert np.ptp(ts.loss["BN"][big]) < 1e-4
    assert np.ptp(ts.acc["BN"][big]) == 0
    assert np.ptp(ts.loss["plain"]) > 0.05
    one = int(np.argmin(np.abs(np.log(ts.grid))))
    model = scale.trained_model(twins.bn).train()
    data = scale.load_data(twins.bn.config)
    with model.frozen_stats():
        logits = model.forward(np.asarray(data.x_test, dtype=np.float64))
    assert ts.loss["BN"][one] == pytest.approx(F.cross_entropy(logits, data.y_test), rel=1e-12)
    assert scale.trained_csv(ts).count("\n") == len(ts.grid) + 1


# --------------------------------------------------------------------------- gamma and beta


def test_gamma_beta_recover_the_identity(twins):
    for layer in (1, 2, 3):
        gb = scale.gamma_beta(twins, layer, -1, 1.0, 0.0, identity=True)
        assert gb.gamma == pytest.approx(np.sqrt(gb.var + gb.eps), rel=1e-15)
        assert gb.beta == pytest.approx(gb.mean, rel=1e-15)
        assert gb.identity_error < TOL * max(1.0, np.max(np.abs(gb.x)))


def test_gamma_beta_set_the_units_scale_and_offset(twins):
    gb = scale.gamma_beta(twins, 2, 5, 2.5, -1.0)
    assert gb.unit == 5 and not gb.identity
    assert np.mean(gb.y) == pytest.approx(-1.0, abs=TOL)
    assert np.std(gb.y) == pytest.approx(2.5 * np.sqrt(gb.var / (gb.var + gb.eps)), rel=1e-12)
    np.testing.assert_allclose(gb.s, 1 / (1 + np.exp(-gb.y)), rtol=1e-13)
    assert 0.5 < gb.standard_linear_fraction < 0.85  # 68% were the input Gaussian


def test_a_large_gamma_saturates_the_sigmoid(twins):
    calm = scale.gamma_beta(twins, 1, 0, 1.0, 0.0)
    hot = scale.gamma_beta(twins, 1, 0, 5.0, 0.0)
    assert hot.linear_fraction < calm.linear_fraction / 2
    assert hot.saturated_fraction > 0.3 > calm.saturated_fraction
    shifted = scale.gamma_beta(twins, 1, 0, 1.0, 5.0)
    assert shifted.linear_fraction < 0.05


def test_the_off_centre_unit_is_the_largest_mean_over_std(twins):
    gb = scale.gamma_beta(twins, 2, -1, 1.0, 0.0)
    model = scale.trained_model(twins.bn).train()
    x = np.asarray(scale.load_data(twins.bn.config).x_test, dtype=np.float64)
    with model.frozen_stats():
        z = model.forward_trace(x)[1]["fc2"]
    assert gb.unit == int(np.argmax(np.abs(z.mean(axis=0)) / z.std(axis=0)))
    np.testing.assert_array_equal(gb.x, z[:, gb.unit])
    with pytest.raises(ValueError):
        scale.gamma_beta(twins, 2, 100, 1.0, 0.0)
    with pytest.raises(ValueError):
        scale.gamma_beta(twins, 4, 0, 1.0, 0.0)


# --------------------------------------------------------------------------- figures


def _all_figures(ident, twins):
    ts = scale.scale_trained(twins, 1)
    gb = scale.gamma_beta(twins, 2, -1, 1.0, 0.0, identity=True)
    return {
        "overlay": figs.outputs_overlay(ident),
        "du": figs.input_gradients(ident),
        "law": figs.gradient_law(ident),
        "norms": figs.norms_over_training(twins),
        "trained": figs.trained_scaling(ts, 10.0),
        "gamma_beta": figs.gamma_beta(gb),
    }


def test_figures_are_titled_serializable_and_deterministic(ident, twins):
    first = _all_figures(ident, twins)
    again = _all_figures(ident, twins)
    for name, fig in first.items():
        assert fig.layout.title.text, name
        assert fig.to_json() == again[name].to_json(), name


def test_figures_draw_the_data(ident, twins):
    f = _all_figures(ident, twins)
    overlay = {t.name: t for t in f["overlay"].data}
    bn_trace = next(t for n, t in overlay.items() if n.startswith("BN(("))
    assert len(bn_trace.y) == 60
    law = {t.name.split(" ")[0]: t for t in f["law"].data}
    assert "-1.000" in f["law"].layout.title.text
    np.testing.assert_allclose(law["BN"].y, ident.grad_norm_bn, rtol=1e-5)
    assert f["law"].layout.xaxis.type == "log" and f["law"].layout.yaxis.type == "log"
    assert f["law"].layout.shapes[0].x0 == 10.0  # the current a, in data units
    du_titles = [a.text for a in f["du"].layout.annotations]
    assert du_titles[1] == "BN: unchanged" and du_titles[0].startswith("plain: max change")
    assert len(f["norms"].data) == 3 * 2 * 3  # rows x runs x layers
    gb_names = [t.name for t in f["gamma_beta"].data]
    assert "tangent 0.5 + y/4" in gb_names and "x, on the same axis" in gb_names


def test_gradient_law_figure_says_when_the_gradient_is_zero():
    ident = scale.identity(layer=1, a=10.0, eps=0.0, batch_size=2, seed=0)
    fig = figs.gradient_law(ident)
    assert "is 0" in fig.layout.title.text
    assert all(not t.name.startswith("BN") for t in fig.data)


def test_gamma_beta_figure_survives_a_constant_output(twins):
    gb = scale.gamma_beta(twins, 1, 0, 0.0, 2.0)
    assert np.ptp(gb.y) == 0
    fig = figs.gamma_beta(gb)
    fig.to_json()


def test_gamma_beta_figure_survives_values_that_are_not_finite(twins):
    gb = scale.gamma_beta(twins, 1, 0, 1.0, 0.0)
    gb.x[:5] = np.nan
    gb.y[:3] = np.inf
    fig = figs.gamma_beta(gb)
    fig.to_json()
    assert fig.layout.xaxis2.range[1] < 1e3
