"""The probes (``bnviz.measure``) on cases with known answers, and in real training runs."""

from __future__ import annotations

import numpy as np
import pytest

from bnviz.engine import StepContext
from bnviz.measure.batch_stats import batch_statistics
from bnviz.measure.common import replay_loss
from bnviz.measure.eval_gap import score
from bnviz.measure.ics import gradient_change
from bnviz.measure.landscape import along_gradient
from bnviz.nn import MLP
from bnviz.store import arms_from_npz, arms_to_npz
from bnviz.train import TrainConfig, load_data, train, train_arms

ALL = ("ics", "landscape", "batch_stats", "eval_gap")


@pytest.fixture(scope="module")
def digits():
    return load_data(TrainConfig())


def batch(digits, n=32, seed=0):
    rows = np.random.default_rng(seed).choice(len(digits.y_train), n, replace=False)
    return digits.x_train[rows], digits.y_train[rows]


@pytest.mark.parametrize("norm", ["none", "batch"])
def test_no_update_is_no_shift(digits, norm):
    """G' is G when no layer moved: ||G - G'|| = 0 and cos = 1 in every layer."""
    net = MLP([64, 20, 20, 20, 10], "tanh", norm=norm, init="he", seed=1)
    x, y = batch(digits)
    change, cos, norm_g = gradient_change(net, net.clone(), x, y, step=0)
    assert np.all(change == 0) and np.allclose(cos, 1, atol=1e-12) and np.all(norm_g > 0)


def test_a_deep_linear_nets_gradient_does_not_change_when_the_layers_below_do_not_move(digits):
    """Only the top hidden layer moves: for every layer i the layers below it stand still,
    so G' = G everywhere; moving layer 1 changes G' of every layer above it, never layer 1's."""
    net = MLP([64, 12, 12, 12, 10], "linear", init="he", seed=2)
    x, y = batch(digits)
    top = net.clone()
    top.params["fc3.weight"][...] += 0.1
    change, cos, _ = gradient_change(net, top, x, y, step=0)
    assert np.all(change == 0) and np.allclose(cos, 1)
    bottom = net.clone()
    bottom.params["fc1.weight"][...] *= 1.5
    change, cos, _ = gradient_change(net, bottom, x, y, step=0)
    assert change[0] == 0 and np.all(change[1:] > 0) and np.all(cos[1:] < 1 - 1e-6)


def test_a_flat_direction_has_no_loss_variation(digits):
    """With g = 0 every point theta - eta g is theta: the loss range is 0, nothing moved, and
    the gradient there is the same at every eta."""
    net = MLP([64, 16, 10], "sigmoid", batchnorm=True, seed=3)
    x, y = batch(digits)
    zero = {k: np.zeros_like(v) for k, v in net.params.items()}
    losses, changes, moved = along_gradient(net, zero, x, y, 0, np.array([0.1, 1.0, 10.0]))
    assert np.ptp(losses) == 0 and np.all(moved == 0) and np.ptp(changes) == 0


def test_the_landscape_is_the_loss_and_gradient_at_each_point(digits):
    net = MLP([64, 16, 16, 10], "sigmoid", seed=4, init="he")
    x, y = batch(digits)
    probe = net.clone()
    replay_loss(probe, x, y, 0)
    g = {k: v.copy() for k, v in probe.grads.items()}
    etas = np.array([0.5, 2.0])
    losses, changes, moved = along_gradient(net, g, x, y, 0, etas)
    for j, eta in enumerate(etas):
        there = net.clone()
        for key in there.params:
            there.params[key] -= eta * g[key]
        assert losses[j] == pytest.approx(replay_loss(there, x, y, 0), rel=1e-14)
        gap = np.concatenate([(there.grads[k] - g[k]).ravel() for k in net.params])
        assert changes[j] == pytest.approx(np.linalg.norm(gap), rel=1e-12)
        flat = np.concatenate([g[k].ravel() for k in net.params])
        assert moved[j] == pytest.approx(eta * np.linalg.norm(flat))


def test_batch_statistics_are_the_batches_own_means_and_variances(digits):
    """With BN right after the input Linear, mu_B and sigma_B^2 are those of x W^T."""
    net = MLP([64, 12, 10], "sigmoid", batchnorm=True, seed=5)
    rows = np.random.default_rng(0).choice(len(digits.y_train), (4, 30))
    mu, var = batch_statistics(net, digits.x_train, rows)
    z = digits.x_train @ net.params["fc1.weight"].T
    for b in range(4):
        np.testing.assert_allclose(mu[0, b], z[rows[b]].mean(axis=0), rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(var[0, b], z[rows[b]].var(axis=0), rtol=1e-12)
    assert net.layers["bn1"].num_batches_tracked == 0  # running statistics untouched


def test_batch_and_running_statistics_agree_without_bn(digits):
    for kw in (dict(norm="layer"), dict(norm="none"), dict(norm="group", groups=4)):
        net = MLP([64, 16, 10], "tanh", seed=6, init="he", **kw)
        assert score(net, digits.x_train, digits.y_train, 60) == score(
            net, digits.x_train[:1380], digits.y_train[:1380], None
        )
    bn = MLP([64, 16, 10], "tanh", batchnorm=True, seed=6, init="he")  # running stats at init
    batch_acc, _ = score(bn, digits.x_train, digits.y_train, 60)
    running_acc, _ = score(bn, digits.x_train, digits.y_train, None)
    assert batch_acc != running_acc


@pytest.fixture(scope="module")
def probed():
    cfg = TrainConfig(hidden=(24, 24), steps=60, record_every=20, probes=ALL, lr=1.0)
    return train_arms(cfg, {"plain": {"norm": "none"}, "BN": {"norm": "batch"}})


def test_probes_record_in_training_and_survive_the_npz(probed):
    for h in probed:
        ics, land = h.probes["ics"], h.probes["landscape"]
        assert ics.grad_change.shape == (4, 2) and land.loss.shape == (4, 8)
        assert np.all(np.isnan(ics.grad_change[0]))  # no step before the first record
        assert np.all(np.isfinite(ics.grad_change[1:])) and np.all(ics.grad_change[1:, 0] == 0)
        assert np.all(np.isfinite(land.beta_smoothness[1:]))
        gap = h.probes["eval_gap"]
        assert np.all(np.isfinite(gap.acc_batch)) and np.all(np.isfinite(gap.acc_running))
    assert probed.plain.probes["batch_stats"].mu_std.shape[1] == 0  # no BN: nothing to spread
    assert np.all(probed.bn.probes["batch_stats"].mu_std > 0)
    np.testing.assert_array_equal(
        probed.plain.probes["eval_gap"].acc_batch, probed.plain.probes["eval_gap"].acc_running
    )
    back = arms_from_npz(arms_to_npz(probed))
    for a, b in zip(probed, back, strict=True):
        assert a.label == b.label and a.probes.keys() == b.probes.keys()
        for name in a.probes:
            for key, value in vars(a.probes[name]).items():
                np.testing.assert_array_equal(getattr(b.probes[name], key), value)


def test_probes_that_are_off_are_not_there():
    h = train(TrainConfig(hidden=(8,), steps=20, record_every=10))
    assert h.probes == {}


def test_a_step_context_carries_the_net_before_its_update():
    cfg = TrainConfig(hidden=(8,), steps=20, record_every=10, probes=("ics",))
    h = train(cfg)
    assert np.isfinite(h.probes["ics"].grad_cos[1:]).all()
    assert StepContext.__dataclass_fields__.keys() >= {"step", "x", "y", "before", "grads", "lr"}
