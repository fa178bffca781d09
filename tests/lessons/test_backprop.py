"""The lesson "Backprop through BN", checked as numbers in float64.

The paper's chain rule and the compact form agree to rounding; central differences agree to
< 1e-7 at a sensible h, with the error falling as h^2 and rising as 1/h below the best h;
PyTorch's autograd agrees to ~1e-15; sum_i dL/dx_i = 0 and sum_i dL/dx_i x_hat_i = 0 (eps -> 0)
to 1e-12; BN(aWu) gives the same dL/du for every a; a constant upstream gradient gives zero.
"""

from __future__ import annotations

import io

import numpy as np
import pytest

from bnviz import functional as F
from bnviz.experiments import backprop as bp
from bnviz.figures import backprop as figs
from bnviz.gradcheck import rel_error

TOL = 1e-12
GRAD_TOL = 1e-7


@pytest.fixture(scope="module")
def net():
    return bp.untrained(0)


@pytest.fixture(scope="module")
def trained_net():
    h = bp.run(bp.config(500, 0))
    assert h.steps_done == 500 and h.diverged_at is None
    return bp.trained(h), h.config


@pytest.fixture(scope="module")
def loss_check(net):
    return bp.check(*net, layer=2, m=60, seed=0, eps=1e-5, upstream="loss", h=1e-5)


@pytest.mark.parametrize("upstream", ("loss", "random"))
@pytest.mark.parametrize("eps", (0.0, 1e-5, 0.1))
@pytest.mark.parametrize("which", ("untrained", "trained"))
def test_every_way_of_computing_the_gradient_agrees(net, trained_net, upstream, eps, which):
    model, cfg = net if which == "untrained" else trained_net
    c = bp.check(model, cfg, 2, 60, 1, eps, upstream, 1e-5)
    assert c.steps_error < TOL
    assert c.fd_error < GRAD_TOL
    if upstream == "loss":
        assert c.true.error < GRAD_TOL
    t = bp.torch_gradients(c)
    for name, err in t.errors(c).items():
        assert err < 1e-10, name
    # the compact form is what the reference layer's backward returns
    from bnviz.nn import BatchNorm1d

    bn = BatchNorm1d(100, eps=bp.bn_eps(eps))
    bn.params["gamma"][...] = c.batch.gamma
    bn.params["beta"][...] = c.batch.beta
    bn.forward(c.batch.x)
    np.testing.assert_array_equal(bn.backward(c.dout), c.dx)


def test_torch_autograd_matches_the_module_too(loss_check):
    import torch

    c = loss_check
    bn = torch.nn.BatchNorm1d(100, eps=1e-5).double().train()
    with torch.no_grad():
        bn.weight.copy_(torch.tensor(c.batch.gamma))
        bn.bias.copy_(torch.tensor(c.batch.beta))
    x = torch.tensor(c.batch.x, requires_grad=True)
    bn(x).backward(torch.tensor(c.dout))
    assert rel_error(x.grad.numpy(), c.dx) < 1e-12
    assert rel_error(bn.weight.grad.numpy(), c.dgamma) < 1e-12
    assert rel_error(bn.bias.grad.numpy(), c.dbeta) < 1e-12


def test_the_chain_rules_intermediates_are_the_papers(loss_check):
    c = loss_check
    s, cache = c.steps, c.cache
    g = c.dout * c.batch.gamma
    np.testing.assert_array_equal(s.dx_hat, g)
    dvar = (g * cache.xc).sum(axis=0) * -0.5 * (cache.var + 1e-5) ** -1.5
    assert rel_error(s.dvar, dvar) < TOL
    dmu = (-g / np.sqrt(cache.var + 1e-5)).sum(axis=0)  # the second term is zero
    assert rel_error(s.dmu, dmu) < TOL
    assert abs(c.mu_term) < TOL * np.max(np.abs(s.dmu))
    np.testing.assert_allclose(c.dgamma, (c.dout * cache.x_hat).sum(axis=0), rtol=1e-13)
    np.testing.assert_allclose(c.dbeta, c.dout.sum(axis=0), rtol=1e-13)


def test_finite_differences_use_the_core_helper_on_the_units_inputs(loss_check):
    from bnviz.gradcheck import numerical_gradient

    c = loss_check
    j = c.unit
    x = c.batch.x[:, j].copy()
    gam, bet = np.array([c.batch.gamma[j]]), np.array([c.batch.beta[j]])

    def f() -> float:  # L = sum_i dL/dy_i y_i, as a dot product (the rounding of the page's)
        return float(np.dot(c.dout[:, j], F.batchnorm_forward(x[:, None], gam, bet, 1e-5)[0][:, 0]))

    np.testing.assert_array_equal(numerical_gradient(f, x, 1e-5), c.fd)
    np.testing.assert_array_equal(x, c.batch.x[:, j])  # restored


def test_the_error_falls_as_h_squared_until_rounding_takes_over(net):
    for upstream in ("loss", "random"):
        c = bp.check(*net, 2, 60, 0, 1e-5, upstream, 1e-5)
        sw = c.sweep
        assert 1.7 < sw.trunc_slope < 2.3, sw.trunc_slope
        assert -1.4 < sw.round_slope < -0.6, sw.round_slope
        assert 1e-8 <= sw.best_h <= 1e-4
        assert sw.error[sw.best] < 1e-9
        assert sw.error[0] > 1e3 * sw.error[sw.best]  # h = 1e-13: rounding
        assert sw.error[-1] > 1e3 * sw.error[sw.best]  # h = 0.1: truncation


def test_sums_of_the_gradient_vanish(net):
    for upstream in ("loss", "random"):
        for eps in (0.0, 1e-5, 0.1):
            f = bp.check(*net, 3, 60, 2, eps, upstream, 1e-5).facts
            assert f.sum_dx_rel < TOL  # exact for any eps
            assert f.sum_dx_xhat_exact_rel < TOL  # at eps -> 0
            if eps > 0:  # exactly (1/sqrt(var+eps)) sum(g x_hat) eps/(var+eps)
                assert abs(f.sum_dx_xhat - f.sum_dx_xhat_predicted) <= 1e-9 * abs(
                    f.sum_dx_xhat_predicted
                )
                assert abs(f.sum_dx_xhat) > 1e3 * f.sum_dx_xhat_exact


def test_bn_of_scaled_weights_gives_the_same_input_gradient(net):
    for upstream in ("loss", "random"):
        f = bp.check(*net, 2, 60, 0, 0.0, upstream, 1e-5).facts
        assert np.all(f.du_change_exact < TOL)
        np.testing.assert_array_equal(f.du_change, f.du_change_exact)  # eps = 0 on the page
        f5 = bp.check(*net, 2, 60, 0, 1e-5, upstream, 1e-5).facts
        assert f5.du_change[0] > 0.1  # a = 0.01: a^2 var is far below eps


def test_a_constant_upstream_gradient_gives_zero(net, trained_net):
    for model_cfg in (net, trained_net):
        c = bp.check(*model_cfg, 1, 60, 0, 1e-5, "constant", 1e-5)
        assert c.facts.constant_rel < TOL
        assert np.max(np.abs(c.dx)) < TOL * c.facts.constant_scale
        np.testing.assert_array_equal(c.dout, bp.CONSTANT)


def test_a_batch_of_two_passes_almost_no_gradient(net):
    c = bp.check(*net, 2, 2, 0, 0.0, "random", 1e-5)
    assert np.max(np.abs(c.dx)) < TOL * np.max(np.abs(c.naive))
    c5 = bp.check(*net, 2, 2, 0, 1e-5, "random", 1e-5)
    assert 0 < np.max(np.abs(c5.dx)) < np.max(np.abs(c5.naive))


def test_bad_settings_raise_value_errors(net):
    with pytest.raises(ValueError, match="h must be"):
        bp.check(*net, 2, 60, 0, 1e-5, "loss", 0.0)
    with pytest.raises(ValueError, match="eps"):
        bp.check(*net, 2, 60, 0, -1.0, "loss", 1e-5)
    with pytest.raises(ValueError, match="upstream"):
        bp.check(*net, 2, 60, 0, 1e-5, "sideways", 1e-5)
    with pytest.raises(ValueError, match="steps"):
        bp.config(0, 0)
    with pytest.raises(ValueError, match="unit"):
        bp.check(*net, 2, 60, 0, 1e-5, "loss", 1e-5, unit=100)


def test_downloads_hold_the_batch_and_every_gradient(loss_check):
    c = loss_check
    t = bp.torch_gradients(c)
    csv = bp.unit_csv(c, t)
    header = csv.split("\n")[0].split(",")
    assert header[:5] == ["example", "train_row", "x", "x_hat", "dL_dy"]
    assert header[-1] == "dL_dx_torch"
    values = np.loadtxt(io.StringIO(csv), delimiter=",", skiprows=1)
    np.testing.assert_allclose(values[:, 5], c.dx[:, c.unit], rtol=1e-11)
    npz = np.load(io.BytesIO(bp.check_npz(c, t)), allow_pickle=False)
    np.testing.assert_array_equal(npz["dL_dx"], c.dx)
    np.testing.assert_array_equal(npz["chain/dL_dvar"], c.steps.dvar)
    np.testing.assert_array_equal(npz["torch/dL_dx"], t.dx)
    assert str(npz["upstream"]) == "loss"


def test_the_figures_draw_the_check(loss_check):
    c = loss_check
    g = figs.graph(c)
    assert len(g.layout.shapes) == len(figs.NODES)
    texts = " ".join(a.text for a in g.layout.annotations)
    assert f"∂L/∂σ² = {c.steps.dvar[c.unit]:.3g}" in texts
    assert f"{c.cache.mu[c.unit]:.4g}" in texts
    sw = figs.h_sweep(c)
    assert [t.name for t in sw.data][-1] == "measured relative error"
    assert len(sw.data[-1].x) == len(bp.H_SWEEP)
    plain = figs.per_example(c)
    with_torch = figs.per_example(c, bp.torch_gradients(c))
    assert len(with_torch.data) == len(plain.data) + 1
    np.testing.assert_allclose(plain.data[1].y, c.dx[:, c.unit], rtol=1e-9)


def test_every_preset_is_a_valid_view():
    for name, preset in bp.PRESETS.items():
        assert set(preset) == set(bp.DEFAULTS), name
        assert preset["eps"] in bp.EPS_CHOICES and preset["upstream"] in bp.UPSTREAMS
        assert preset["steps"] in bp.NET_STEPS
