"""Hand-written backward passes against central finite differences, in float64.

Every check reduces a layer to a scalar L = sum(out * R) with a random upstream gradient R (or
uses the loss itself), so dL/d(input) is exactly what the backward pass returns for dout = R.
Errors are measured per array as max|a - b| / max(max|a|, max|b|): relative to the gradient's
own scale, so tiny entries neither hide nor inflate an error. With h = 1e-6 the truncation error
is ~h^2 and the rounding error ~1e-16 |L| / h ~ 1e-10 relative, far below the 1e-7 bound.
"""

from __future__ import annotations

import numpy as np
import pytest

from bnviz import functional as F
from bnviz.nn import MLP, BatchNorm1d, Linear

H = 1e-6
TOL = 1e-7


def rel_err(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape
    scale = max(np.max(np.abs(a)), np.max(np.abs(b)), 1e-300)
    return float(np.max(np.abs(a - b)) / scale)


def num_grad(f, x: np.ndarray, h: float = H) -> np.ndarray:
    """Central differences of the scalar f() w.r.t. the array x, perturbed in place."""
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + h
        fp = f()
        x[i] = old - h
        fm = f()
        x[i] = old
        g[i] = (fp - fm) / (2 * h)
    return g


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


# --------------------------------------------------------------------------- batch norm


def bn_case(rng, m=6, d=4, eps=1e-5):
    x = rng.standard_normal((m, d)) * rng.uniform(0.5, 3.0, d) + rng.uniform(-2, 2, d)
    gamma = rng.uniform(0.5, 2.0, d)
    beta = rng.standard_normal(d)
    dout = rng.standard_normal((m, d))
    return x, gamma, beta, dout, eps


def test_batchnorm_backward_matches_finite_differences(rng):
    x, gamma, beta, dout, eps = bn_case(rng)

    def f():
        return np.sum(F.batchnorm_forward(x, gamma, beta, eps)[0] * dout)

    _, cache = F.batchnorm_forward(x, gamma, beta, eps)
    dx, dgamma, dbeta = F.batchnorm_backward(dout, cache)
    steps = F.batchnorm_backward_steps(dout, cache)
    for name, arr, analytic in [("x", x, dx), ("gamma", gamma, dgamma), ("beta", beta, dbeta)]:
        assert rel_err(analytic, num_grad(f, arr)) < TOL, name
    assert rel_err(steps.dx, num_grad(f, x)) < TOL
    assert rel_err(steps.dgamma, dgamma) < 1e-12
    assert rel_err(steps.dbeta, dbeta) < 1e-12
    assert rel_err(steps.dx, dx) < 1e-12


def test_batchnorm_steps_intermediates(rng):
    """dL/dx_hat, dL/dvar and dL/dmu of the paper's chain rule, each by finite differences
    of L written as a function of (x_hat, var, mu)."""
    x, gamma, beta, dout, eps = bn_case(rng)
    m = x.shape[0]
    _, cache = F.batchnorm_forward(x, gamma, beta, eps)
    mu, var = cache.mu, cache.var
    steps = F.batchnorm_backward_steps(dout, cache)
    x_hat = (x - mu) / np.sqrt(var + eps)
    assert (
        rel_err(steps.dx_hat, num_grad(lambda: np.sum((x_hat * gamma + beta) * dout), x_hat)) < TOL
    )

    def f_var():
        return np.sum(((x - mu) / np.sqrt(var_ + eps) * gamma + beta) * dout)

    var_ = var.copy()
    assert rel_err(steps.dvar, num_grad(f_var, var_)) < TOL
    # dL/dmu holds var fixed as a number but counts mu's path through var = mean((x - mu)^2)
    mu_ = mu.copy()

    def f_mu():
        v = np.sum((x - mu_) ** 2, axis=0) / m
        return np.sum(((x - mu_) / np.sqrt(v + eps) * gamma + beta) * dout)

    assert rel_err(steps.dmu, num_grad(f_mu, mu_)) < TOL


def test_batchnorm_dx_sums_to_zero_over_the_batch(rng):
    x, gamma, beta, dout, eps = bn_case(rng, m=16, d=5)
    _, cache = F.batchnorm_forward(x, gamma, beta, eps)
    dx = F.batchnorm_backward(dout, cache)[0]
    scale = np.max(np.abs(dx))
    assert np.max(np.abs(dx.sum(axis=0))) / scale < 1e-12
    assert np.max(np.abs(F.batchnorm_backward_steps(dout, cache).dx.sum(axis=0))) / scale < 1e-12


def test_batchnorm_dx_orthogonal_to_x_hat_as_eps_vanishes(rng):
    x, gamma, beta, dout, _ = bn_case(rng, m=16, d=5)
    _, cache = F.batchnorm_forward(x, gamma, beta, eps=1e-12)
    mu, var = cache.mu, cache.var
    x_hat = (x - mu) / np.sqrt(var + 1e-12)
    for dx in (F.batchnorm_backward(dout, cache)[0], F.batchnorm_backward_steps(dout, cache).dx):
        cos = np.sum(dx * x_hat, axis=0) / (
            np.linalg.norm(dx, axis=0) * np.linalg.norm(x_hat, axis=0)
        )
        assert np.max(np.abs(cos)) < 1e-12
    # with the default eps the component along x_hat is small but real: the check has teeth
    _, cache = F.batchnorm_forward(x * 1e-3, gamma, beta, eps=1e-5)
    dx = F.batchnorm_backward(dout, cache)[0]
    assert np.max(np.abs(np.sum(dx * cache.xc, axis=0))) > 1e-6 * np.max(np.abs(dx))


# --------------------------------------------------------------------------- layer norm


def test_layernorm_backward_matches_finite_differences(rng):
    x = rng.standard_normal((5, 6)) * 2 + 0.5
    gamma, beta = rng.uniform(0.5, 2.0, 6), rng.standard_normal(6)
    dout = rng.standard_normal((5, 6))

    def f():
        return np.sum(F.layernorm_forward(x, gamma, beta)[0] * dout)

    _, cache = F.layernorm_forward(x, gamma, beta)
    dx, dgamma, dbeta = F.layernorm_backward(dout, cache)
    for name, arr, analytic in [("x", x, dx), ("gamma", gamma, dgamma), ("beta", beta, dbeta)]:
        assert rel_err(analytic, num_grad(f, arr)) < TOL, name


# --------------------------------------------------------------------------- activations


@pytest.mark.parametrize("name", ["sigmoid", "tanh", "relu", "linear"])
def test_activation_grad_matches_finite_differences(rng, name):
    act = F.ACTIVATIONS[name]
    z = rng.standard_normal((6, 5)) * 3
    z = np.where(np.abs(z) < 0.1, 0.1 + np.abs(z), z)  # keep relu's kink out of reach of h
    da = rng.standard_normal(z.shape)
    a = act.fn(z)
    dz = act.grad(a, da)
    assert rel_err(dz, num_grad(lambda: np.sum(act.fn(z) * da), z)) < TOL


def test_sigmoid_is_the_logistic_function(rng):
    z = rng.standard_normal(100) * 10
    assert rel_err(F.sigmoid(z), 1 / (1 + np.exp(-z))) < 1e-15
    assert np.all(np.isfinite(F.sigmoid(np.array([-1e4, 1e4]))))


def test_dropout_backward_with_fixed_mask(rng):
    x = rng.standard_normal((8, 5))
    dout = rng.standard_normal(x.shape)

    u = F.dropout_uniforms(F.stream_key(7, F.DROPOUT_STREAM, 1), 0, *x.shape)

    def f():
        return np.sum(F.dropout_forward(x, 0.3, u)[0] * dout)

    y, mask = F.dropout_forward(x, 0.3, u)
    assert 0 < np.count_nonzero(mask) < mask.size
    np.testing.assert_allclose(mask[mask > 0], 1 / 0.7, rtol=1e-15)
    assert rel_err(F.dropout_backward(dout, mask), num_grad(f, x)) < TOL


# --------------------------------------------------------------------------- loss


def test_softmax_cross_entropy_grad_matches_finite_differences(rng):
    logits = rng.standard_normal((7, 4)) * 2
    y = rng.integers(0, 4, 7)
    loss, dlogits = F.softmax_cross_entropy(logits, y)
    assert loss == pytest.approx(F.cross_entropy(logits, y), rel=1e-14)
    assert rel_err(dlogits, num_grad(lambda: F.softmax_cross_entropy(logits, y)[0], logits)) < TOL


# --------------------------------------------------------------------------- modules


def test_linear_module(rng):
    lin = Linear(5, 3, init="glorot", rng=rng)
    lin.params["bias"][...] = rng.standard_normal(3)
    x = rng.standard_normal((6, 5))
    dout = rng.standard_normal((6, 3))

    def f():
        return np.sum(lin.forward(x) * dout)

    lin.forward(x)
    dx = lin.backward(dout)
    grads = {k: v.copy() for k, v in lin.grads.items()}
    assert rel_err(dx, num_grad(f, x)) < TOL
    for key in ("weight", "bias"):
        assert rel_err(grads[key], num_grad(f, lin.params[key])) < TOL, key


def test_batchnorm1d_module(rng):
    bn = BatchNorm1d(4)
    bn.params["gamma"][...] = rng.uniform(0.5, 2, 4)
    bn.params["beta"][...] = rng.standard_normal(4)
    x = rng.standard_normal((6, 4)) * 2 + 1
    dout = rng.standard_normal((6, 4))

    def f():
        return np.sum(bn.forward(x) * dout)

    bn.forward(x)
    dx = bn.backward(dout)
    grads = {k: v.copy() for k, v in bn.grads.items()}
    assert rel_err(dx, num_grad(f, x)) < TOL
    for key in ("gamma", "beta"):
        assert rel_err(grads[key], num_grad(f, bn.params[key])) < TOL, key


MLP_KINDS = {
    "plain": {},
    "bn_before": {"batchnorm": True, "placement": "before"},
    "bn_after": {"batchnorm": True, "placement": "after"},
    "layernorm": {"norm": "layer"},
    "groupnorm": {"norm": "group", "groups": 2, "placement": "after"},
    "noisy_bn": {"batchnorm": True, "noise": 1.0},
    "plain_noise": {"noise": 0.5},
    "bn_dropout": {"batchnorm": True, "dropout": 0.3},
}


@pytest.mark.parametrize("activation", ["sigmoid", "tanh"])
@pytest.mark.parametrize("kind", list(MLP_KINDS))
def test_mlp_every_parameter(rng, kind, activation):
    model = MLP([5, 6, 8, 3], activation, init="glorot", seed=3, **MLP_KINDS[kind])
    for key, p in model.params.items():  # move gamma/beta/biases off their initial 1 and 0
        if not key.endswith("weight"):
            p += 0.3 * rng.standard_normal(p.shape)
    x = rng.standard_normal((8, 5))
    y = rng.integers(0, 3, 8)
    counters = [(layer, layer.step) for layer in model.stepped_layers()]

    def loss():  # the same step's noise and dropout draws every time
        for layer, step in counters:
            layer.step = step
        return model.loss(x, y)

    loss()
    model.backward()
    grads = {k: v.copy() for k, v in model.grads.items()}
    with model.frozen_stats():
        for key, p in model.params.items():
            assert rel_err(grads[key], num_grad(loss, p)) < TOL, key
    expected = {"fc1.weight", "fc2.weight", "fc3.weight", "fc3.bias"}
    assert expected <= set(model.params)
