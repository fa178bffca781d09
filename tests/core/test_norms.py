"""The normalizations and the noise beyond BN: GroupNorm and LayerNorm against PyTorch and
finite differences, noisy BN's draws against the moments Santurkar et al. state, and the fixes
of a review against PyTorch, Keras and cs231n (checked input, eval-mode arithmetic, saved
state, the momentum conventions, recalibration with dropout)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bnviz import functional as F
from bnviz.gradcheck import numerical_gradient, rel_error
from bnviz.inference import population_stats, recalibrate
from bnviz.nn import MLP, BatchNorm1d, GroupNorm, LayerNorm, NoiseInjection, keras_momentum

TOL = 1e-9


@pytest.fixture
def rng():
    return np.random.default_rng(77)


def case(rng, m=6, d=8):
    x = rng.standard_normal((m, d)) * rng.uniform(0.5, 3.0, d) + rng.uniform(-2, 2, d)
    return x, rng.uniform(0.5, 2.0, d), rng.standard_normal(d), rng.standard_normal((m, d))


@pytest.mark.parametrize("groups", [1, 2, 4, 8])
def test_groupnorm_matches_torch(rng, groups):
    """groups = 8 on 8 units normalizes each unit alone: its x_hat is 0 and so is dL/dx."""
    x, gamma, beta, dout = case(rng)
    y, cache = F.groupnorm_forward(x, gamma, beta, groups)
    dx, dgamma, dbeta = F.groupnorm_backward(dout, cache)
    xt = torch.tensor(x, requires_grad=True)
    gt, bt = torch.tensor(gamma, requires_grad=True), torch.tensor(beta, requires_grad=True)
    yt = torch.nn.functional.group_norm(xt, groups, gt, bt, eps=1e-5)
    yt.backward(torch.tensor(dout))
    assert rel_error(y, yt.detach()) < 1e-12
    for ours, theirs in ((dx, xt.grad), (dgamma, gt.grad), (dbeta, bt.grad)):
        np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("groups", [1, 2])
def test_groupnorm_backward_matches_finite_differences(rng, groups):
    x, gamma, beta, dout = case(rng)
    _, cache = F.groupnorm_forward(x, gamma, beta, groups)
    dx, dgamma, dbeta = F.groupnorm_backward(dout, cache)

    def f():
        return float(np.sum(F.groupnorm_forward(x, gamma, beta, groups)[0] * dout))

    for ours, arr in ((dx, x), (dgamma, gamma), (dbeta, beta)):
        assert rel_error(ours, numerical_gradient(f, arr)) < TOL


def test_layernorm_is_groupnorm_with_one_group_and_matches_torch(rng):
    x, gamma, beta, dout = case(rng)
    y, cache = F.layernorm_forward(x, gamma, beta)
    y1, _ = F.groupnorm_forward(x, gamma, beta, 1)
    assert rel_error(y, y1) < 1e-15
    yt = torch.nn.functional.layer_norm(
        torch.tensor(x), (8,), torch.tensor(gamma), torch.tensor(beta)
    )
    assert rel_error(y, yt) < 1e-12
    ln, tln = LayerNorm(8), torch.nn.LayerNorm(8, dtype=torch.float64)
    assert rel_error(ln.forward(x[:1]), tln(torch.tensor(x[:1])).detach()) < 1e-12  # batch of 1


def test_groupnorm_module_is_the_same_in_train_and_eval(rng):
    x, *_ = case(rng)
    gn = GroupNorm(8, groups=4)
    np.testing.assert_array_equal(gn.train().forward(x), gn.eval().forward(x))
    with pytest.raises(ValueError, match="divide"):
        GroupNorm(8, groups=3)


def test_noise_has_the_moments_santurkar_et_al_state():
    """mu_t ~ U(-n_mu, n_mu), sigma_t ~ U(1, n_sigma) per unit and step; per example
    m ~ U(mu_t - r_mu, mu_t + r_mu) and s ~ N(sigma_t, r_sigma). With the paper's constants
    (0.5, 1.25, 0.1, 0.1): E[s] = 1.125, Var[s] = 0.25^2/12 + 0.1^2, E[m] = 0,
    Var[m] = 1/12 + 0.2^2/12."""
    noise = F.Noise(1.0)
    keys = F.noise_keys(seed=3, layer=1)
    m, d, steps = 64, 50, 400
    scales, adds = [], []
    x = np.zeros((m, d))
    ones = np.ones((m, d))
    for t in range(steps):
        draws = F.noise_draws(keys, t, m, d)
        adds.append(F.noise_forward(x, noise, draws)[0])
        scales.append(F.noise_forward(ones, noise, draws)[0] - adds[-1])
    s, a = np.concatenate(scales).ravel(), np.concatenate(adds).ravel()
    n = s.size
    assert abs(s.mean() - 1.125) < 4 * np.sqrt((0.25**2 / 12 + 0.01) / (steps * d))
    assert s.var() == pytest.approx(0.25**2 / 12 + 0.01, rel=0.05)
    assert abs(a.mean()) < 4 * np.sqrt(1 / 12 / (steps * d))
    assert a.var() == pytest.approx(1 / 12 + 0.2**2 / 12, rel=0.05)
    # within one step and unit, s spreads by r_sigma around sigma_t: a normal of std 0.1
    within = np.stack(scales)  # (steps, m, d)
    assert within.std(axis=1).mean() == pytest.approx(0.1, rel=0.03)
    assert n == steps * m * d
    assert F.Noise(0.0).n_mu == 0 and F.Noise(0.0).n_sigma == 1 and F.Noise(2.0).r_sigma == 0.2


@pytest.mark.parametrize("strength", [0.25, 3.0])
def test_noise_strength_scales_every_constant_and_the_moments_follow(strength):
    """The debate lesson's slider: strength s gives n_mu = 0.5 s, n_sigma = 1 + 0.25 s,
    r_mu = r_sigma = 0.1 s, so E[s] = 1 + 0.125 s, Var[s] = (0.25 s)^2 / 12 + (0.1 s)^2,
    E[m] = 0 and Var[m] = s^2 / 12 + (0.2 s)^2 / 12."""
    noise = F.Noise(strength)
    assert (noise.n_mu, noise.n_sigma) == (0.5 * strength, 1 + 0.25 * strength)
    assert noise.r_mu == noise.r_sigma == pytest.approx(0.1 * strength)
    keys = F.noise_keys(seed=5, layer=2)
    m, d, steps = 32, 40, 300
    scales, adds = [], []
    for t in range(steps):
        draws = F.noise_draws(keys, t, m, d)
        add = F.noise_forward(np.zeros((m, d)), noise, draws)[0]
        adds.append(add)
        scales.append(F.noise_forward(np.ones((m, d)), noise, draws)[0] - add)
    s, a = np.concatenate(scales).ravel(), np.concatenate(adds).ravel()
    var_s = (0.25 * strength) ** 2 / 12 + (0.1 * strength) ** 2
    var_m = strength**2 / 12 + (0.2 * strength) ** 2 / 12
    assert abs(s.mean() - (1 + 0.125 * strength)) < 4 * np.sqrt(var_s / (steps * d))
    assert s.var() == pytest.approx(var_s, rel=0.06)
    assert abs(a.mean()) < 4 * np.sqrt(var_m / (steps * d))
    assert a.var() == pytest.approx(var_m, rel=0.06)


def test_the_normal_quantile_is_accurate_and_its_draws_are_normal():
    from scipy.special import ndtri

    u = np.concatenate([np.linspace(1e-9, 1 - 1e-9, 200_001), [0.02425, 0.97575, 2.0**-33]])
    z = F.normal_quantile(u)
    assert np.max(np.abs(z - ndtri(u)) / np.maximum(1, np.abs(ndtri(u)))) < 1.2e-9
    draws = F.normal_quantile(F.uniform_pairs(F.stream_key(1, 1, 1), 0, 400_000)[1])
    assert abs(draws.mean()) < 0.01 and draws.std() == pytest.approx(1, abs=0.005)
    assert np.mean(np.abs(draws) > 1.96) == pytest.approx(0.05, abs=0.002)


def test_streams_do_not_depend_on_how_the_draws_are_split():
    key = F.stream_key(5, F.NOISE_STREAM, 2)
    whole = F.uniform_pairs(key, 100, 1000)
    parts = [F.uniform_pairs(key, 100 + i, 250) for i in (0, 250, 500, 750)]
    for w, p in zip(whole, zip(*parts, strict=True), strict=True):
        np.testing.assert_array_equal(w, np.concatenate(p))
    assert F.stream_key(5, 1, 2) != F.stream_key(5, 1, 3) != F.stream_key(6, 1, 2)


def test_a_noise_layer_replays_its_step():
    layer = NoiseInjection(4, F.Noise(1.0), F.noise_keys(0, 1))
    x = np.ones((3, 4))
    first = layer.forward(x)
    assert layer.step == 1 and not np.array_equal(layer.forward(x), first)
    layer.step = 0
    np.testing.assert_array_equal(layer.forward(x), first)
    np.testing.assert_array_equal(layer.eval().forward(x), x)


# --------------------------------------------------------------------------- the review's fixes


def test_batchnorm_refuses_a_bad_eps_and_per_unit_vectors_of_the_wrong_size(rng):
    x, gamma, beta, _ = case(rng)
    for eps in (0.0, -1e-5, float("nan")):
        with pytest.raises(ValueError, match="eps"):
            BatchNorm1d(8, eps=eps)
        with pytest.raises(ValueError, match="eps"):
            F.batchnorm_forward(x, gamma, beta, eps)
    with pytest.raises(ValueError, match="gamma"):
        F.batchnorm_forward(x, gamma[:1], beta)
    with pytest.raises(ValueError, match="mean"):
        F.batchnorm_inference(x, gamma, beta, np.zeros(1), np.ones(8))
    with pytest.raises(ValueError, match="var"):
        F.batchnorm_inference(x, gamma, beta, np.zeros(8), np.ones(3))


def test_eval_mode_keeps_beta_near_a_large_mean_in_float32():
    """(x - mean) * s + beta, not x * s + (beta - mean * s): near a large mean the difference
    x - mean is exact in float32, while x * s and mean * s each round at the large value and
    their difference loses what beta and the deviation contribute."""
    d = 4
    mean = np.full(d, 12345.678, np.float32)
    x = mean + np.array([0.0, 0.001, 0.002, 0.004], np.float32)
    x = np.tile(x, (3, 1))
    gamma, beta = np.ones(d, np.float32), np.full(d, 0.25, np.float32)
    var = np.full(d, 9.0, np.float32)
    y = F.batchnorm_inference(x, gamma, beta, mean, var, eps=1e-5)
    s64 = 1.0 / np.sqrt(9.0 + 1e-5)
    exact = (x.astype(np.float64) - mean.astype(np.float64)) * s64 + 0.25
    s = gamma / np.sqrt(var + np.float32(1e-5))
    combined = x * s + (beta - mean * s)
    assert np.max(np.abs(y - exact)) < 1e-6
    assert np.max(np.abs(combined - exact)) > 50 * np.max(np.abs(y - exact))


def test_saved_state_keeps_num_batches_tracked_so_a_cumulative_average_goes_on(rng):
    model = MLP([5, 6, 3], "tanh", batchnorm=True, momentum=None, seed=0)
    batches = [rng.standard_normal((8, 5)) for _ in range(6)]
    for b in batches[:3]:
        model.forward(b)
    saved = model.state_arrays()
    assert int(saved["bn1.num_batches_tracked"]) == 3
    reloaded = MLP([5, 6, 3], "tanh", batchnorm=True, momentum=None, seed=1)
    reloaded.load_state_arrays(saved)
    for b in batches[3:]:
        model.forward(b)
        reloaded.forward(b)
    bn, bn2 = model.layers["bn1"], reloaded.layers["bn1"]
    np.testing.assert_allclose(bn2.running_mean, bn.running_mean, rtol=1e-14)
    np.testing.assert_allclose(bn2.running_var, bn.running_var, rtol=1e-14)


def test_the_keras_momentum_is_one_minus_pytorchs():
    assert keras_momentum(0.99) == pytest.approx(0.01)
    assert keras_momentum(keras_momentum(0.9)) == pytest.approx(0.9)
    bn = BatchNorm1d(3, momentum=keras_momentum(0.99))
    bn.forward(np.array([[1.0, 2.0, 3.0], [3.0, 4.0, 5.0]]))
    np.testing.assert_allclose(bn.running_mean, 0.99 * 0 + 0.01 * np.array([2.0, 3.0, 4.0]))
    with pytest.raises(ValueError):
        keras_momentum(1.5)


def test_recalibration_runs_dropout_in_eval_mode(rng):
    """The statistics eval mode uses are those of the net without dropout: recalibrated with
    dropout on, BN's running variance was 0.39-0.42x what eval mode then sees (p = 0.5)."""
    model = MLP([20, 30, 30, 4], "relu", batchnorm=True, dropout=0.5, seed=2)
    x = rng.standard_normal((600, 20))
    recalibrate(model, x, batch_size=60)
    model.eval()
    _, trace = model.forward_trace(x)
    seen = trace["fc2"].var(axis=0)  # what bn2 receives in eval mode
    ratio = model.layers["bn2"].running_var / seen
    assert np.all(np.abs(ratio - 1) < 0.15), ratio.round(2)
    stats = population_stats(model, x, batch_size=60)
    np.testing.assert_array_equal(stats["bn2"][1], model.layers["bn2"].running_var)
