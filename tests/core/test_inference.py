"""Inference-time BN: population statistics, recalibration, folding; and BN's scale invariance."""

from __future__ import annotations

import numpy as np
import pytest

from bnviz import functional as F
from bnviz.inference import bn_affine, fold_batchnorm, population_stats, recalibrate
from bnviz.nn import MLP, BatchNorm1d, Linear
from bnviz.train import TrainConfig, load_data

TINY = float(np.finfo(np.float64).tiny)


@pytest.fixture(scope="module")
def digits():
    return load_data(TrainConfig())


def trained_model(digits, placement: str, activation: str = "tanh", steps: int = 30) -> MLP:
    """A BN net after some SGD steps, so weights and running statistics are not at their init."""
    model = MLP([64, 32, 16, 10], activation, batchnorm=True, placement=placement, seed=3)
    rng = np.random.default_rng(0)
    for _ in range(steps):
        idx = rng.choice(len(digits.y_train), 50, replace=False)
        model.loss(digits.x_train[idx], digits.y_train[idx])
        model.backward()
        for key, p in model.params.items():
            p -= 0.2 * model.grads[key]
    return model


@pytest.mark.parametrize("placement", ["before", "after"])
def test_folded_net_equals_the_eval_mode_net(digits, placement):
    model = trained_model(digits, placement).eval()
    folded = fold_batchnorm(model)
    assert not folded.batchnorm and not folded.training
    assert not any(isinstance(layer, BatchNorm1d) for _, layer in folded.named_layers)
    np.testing.assert_allclose(
        folded.forward(digits.x_test), model.forward(digits.x_test), rtol=0, atol=1e-12
    )


def test_folding_a_plain_net_is_refused():
    with pytest.raises(ValueError, match="no BatchNorm"):
        fold_batchnorm(MLP([4, 3, 2]))


def test_bn_inference_is_one_affine_map(digits):
    bn = trained_model(digits, "before").layers["bn1"]
    s, t = bn_affine(bn)
    x = np.random.default_rng(1).normal(size=(7, bn.num_features))
    bn.eval()
    np.testing.assert_allclose(bn.forward(x), s * x + t, rtol=1e-13, atol=1e-13)


def test_population_statistics_follow_algorithm_2(digits):
    """One BN layer right after the input Linear: E[x] = mean of batch means and
    Var[x] = m/(m-1) * mean of biased batch variances, over the batches of a permutation."""
    model = MLP([64, 12, 10], "sigmoid", batchnorm=True, seed=0)
    m = 40
    stats = population_stats(model, digits.x_train, batch_size=m, seed=5)
    z = digits.x_train @ model.params["fc1.weight"].T
    order = np.random.default_rng(5).permutation(len(z))
    batches = [z[order[b * m : (b + 1) * m]] for b in range(len(z) // m)]
    mean = np.mean([b.mean(0) for b in batches], axis=0)
    var = np.mean([b.var(0) for b in batches], axis=0) * m / (m - 1)
    np.testing.assert_allclose(stats["bn1"][0], mean, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(stats["bn1"][1], var, rtol=1e-12)
    # with full data in one order, the mean of batch means is the data mean
    assert np.allclose(mean, z[order[: len(batches) * m]].mean(0))


def test_recalibration_replaces_running_statistics_and_leaves_parameters(digits):
    model = trained_model(digits, "before", "sigmoid")
    params = {k: v.copy() for k, v in model.params.items()}
    stats = population_stats(model, digits.x_train)
    recalibrate(model, digits.x_train)
    for name, bn in model.norm_layers:
        np.testing.assert_array_equal(bn.running_mean, stats[name][0])
        np.testing.assert_array_equal(bn.running_var, stats[name][1])
    for key, value in params.items():
        np.testing.assert_array_equal(model.params[key], value)
    assert model.training


def test_recalibration_fixes_statistics_from_class_sorted_batches(digits):
    """Running statistics learned from one-class batches describe the wrong data; population
    statistics over shuffled batches describe the real one, and eval accuracy recovers."""
    model = trained_model(digits, "before", "sigmoid", steps=400)
    model.eval()
    healthy = np.mean(model.forward(digits.x_test).argmax(1) == digits.y_test)
    model.train()
    ones = digits.x_train[digits.y_train == 1][:50]
    for _ in range(40):  # train-mode forwards on batches of one digit only
        model.forward(ones)
    model.eval()
    skewed = np.mean(model.forward(digits.x_test).argmax(1) == digits.y_test)
    recalibrate(model, digits.x_train)
    model.eval()
    fixed = np.mean(model.forward(digits.x_test).argmax(1) == digits.y_test)
    assert healthy > 0.85
    assert skewed < healthy - 0.1
    assert fixed > healthy - 0.03


# ----------------------------------------------------------------------------- scale invariance


@pytest.mark.parametrize("a", [1e-3, 0.5, 7.0, 1e4])
def test_bn_of_scaled_weights_is_unchanged_and_weight_gradients_shrink_by_1_over_a(digits, a):
    """BN(aWu) = BN(Wu), d/du is unchanged, and dL/d(aW) = (1/a) dL/dW (exact with eps = 0)."""
    u = digits.x_train[:64]
    rng = np.random.default_rng(0)
    g = rng.normal(size=(64, 20))  # upstream gradient dL/dy
    outs = {}
    for scale in (1.0, a):
        fc = Linear(64, 20, bias=False, init="he", rng=np.random.default_rng(4))
        fc.params["weight"] *= scale
        bn = BatchNorm1d(20, eps=TINY)  # BN refuses 0; the smallest double changes no sum
        bn.params["gamma"][...] = rng.uniform(0.5, 2, 20) if scale == 1.0 else outs[1.0][3]
        y = bn.forward(fc.forward(u))
        fc.backward(bn.backward(g))
        dx = bn.backward(g) @ fc.weight
        outs[scale] = (y, dx, fc.grads["weight"].copy(), bn.gamma.copy())
    y1, dx1, dw1, _ = outs[1.0]
    ya, dxa, dwa, _ = outs[a]
    np.testing.assert_allclose(ya, y1, rtol=0, atol=1e-12)
    np.testing.assert_allclose(dxa, dx1, rtol=0, atol=1e-12 * max(1.0, np.abs(dx1).max()))
    np.testing.assert_allclose(dwa * a, dw1, rtol=0, atol=1e-12 * np.abs(dw1).max())


def test_scaling_weights_changes_a_plain_layer():
    u = np.random.default_rng(0).normal(size=(10, 5))
    w = np.random.default_rng(1).normal(size=(3, 5))
    plain1, plain2 = F.sigmoid(u @ w.T), F.sigmoid(u @ (2 * w).T)
    assert np.abs(plain1 - plain2).max() > 0.05
