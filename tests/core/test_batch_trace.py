"""The per-step batch statistics of ``bnviz.batch_trace``: the same training as ``train_arms``,
the same statistics the reference net computes, and running averages replayed from them that
equal the ones the engine kept."""

from __future__ import annotations

import numpy as np
import pytest

from bnviz import batch_trace
from bnviz.engine import ReferenceEngine
from bnviz.train import TrainConfig, arm_runs, train_arms

BASE = TrainConfig(
    dataset="digits",
    hidden=(16, 12),
    activation="tanh",
    init="glorot",
    lr=0.3,
    batch_size=20,
    steps=60,
    record_every=25,
    dtype="float64",
)
ARMS = {"plain": {"norm": "none"}, "BN": {"norm": "batch"}}


@pytest.fixture(scope="module")
def traced():
    steps = []

    def on_record(label, step, model):
        steps.append((label, step, model.params["fc1.weight"].copy()))

    arms, traces = batch_trace.train_traced(BASE, ARMS, on_record=on_record)
    return arms, traces, steps


def test_the_training_is_train_arms_s(traced):
    arms, _, _ = traced
    plain = train_arms(BASE, ARMS)
    for a, b in zip(arms, plain, strict=True):
        assert a.label == b.label
        np.testing.assert_array_equal(a.loss, b.loss)
        np.testing.assert_array_equal(a.record_steps, b.record_steps)
        np.testing.assert_array_equal(a.test_acc, b.test_acc)
        for key, value in b.final_state.items():
            np.testing.assert_array_equal(a.final_state[key], value)


def test_only_bn_runs_are_traced_and_labels_pick_arms(traced):
    _, traces, _ = traced
    assert set(traces) == {"BN"}
    assert traces["BN"].mean.shape == (60, 2, 16)
    assert np.isnan(traces["BN"].mean[:, 1, 12:]).all()  # layer 2 has 12 units
    arms, only = batch_trace.train_traced(BASE, ARMS, labels=["BN"])
    assert arms.labels == ["BN"]
    np.testing.assert_array_equal(only["BN"].mean, traces["BN"].mean)
    with pytest.raises(ValueError, match="labels"):
        batch_trace.train_traced(BASE, ARMS, labels=["nothing"])


def test_the_trace_is_the_reference_nets_batch_statistics(traced):
    """The readable loop (model.loss, backward, SGD) from the same start: after each step its
    BN layers hold that batch's mean and biased variance."""
    _, traces, _ = traced
    (run,) = [r for r in arm_runs(BASE, ARMS) if r.label == "BN"]
    ref = ReferenceEngine([run])
    trace = traces["BN"]
    for t in range(BASE.steps):
        ref.update(t, ref.forward_backward(t))
        for li, (_, bn) in enumerate(run.model.norm_layers):
            d = bn.num_features
            np.testing.assert_allclose(trace.mean[t, li, :d], bn.batch_mean, rtol=0, atol=1e-12)
            np.testing.assert_allclose(trace.var[t, li, :d], bn.batch_var, rtol=1e-10, atol=0)


@pytest.mark.parametrize("momentum", [0.1, None, 1.0])
def test_running_averages_replayed_from_the_trace_are_the_engines(momentum):
    cfg = TrainConfig(**{**BASE.as_dict(), "bn_momentum": momentum, "norm": "batch"})
    arms, traces = batch_trace.train_traced(cfg, {"BN": {}})
    trace, state = traces["BN"], arms["BN"].final_state
    mean, var = batch_trace.running_average(trace.mean, trace.var, cfg.batch_size, momentum)
    for li, name in enumerate(("bn1", "bn2")):
        d = state[f"{name}.running_mean"].size
        np.testing.assert_allclose(mean[-1, li, :d], state[f"{name}.running_mean"], atol=1e-12)
        np.testing.assert_allclose(var[-1, li, :d], state[f"{name}.running_var"], rtol=1e-12)
    if momentum == 1.0:  # the last batch alone, its variance unbiased
        m = cfg.batch_size
        np.testing.assert_allclose(var[-1], trace.var[-1] * m / (m - 1), rtol=1e-15)


def test_on_record_sees_the_net_at_each_record_step(traced):
    arms, _, seen = traced
    for label in ARMS:
        steps = [step for lab, step, _ in seen if lab == label]
        assert steps == list(arms[label].record_steps)
    first = [w for lab, step, w in seen if lab == "BN"]
    assert not np.array_equal(first[0], first[-1])  # the weights moved between records


def test_running_average_rejects_bad_arguments():
    z = np.zeros((3, 2))
    with pytest.raises(ValueError, match="momentum"):
        batch_trace.running_average(z, z, 4, 0.0)
    with pytest.raises(ValueError, match="batch_size"):
        batch_trace.running_average(z, z, 1, 0.1)
