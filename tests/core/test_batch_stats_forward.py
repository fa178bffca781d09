"""``inference.batch_stats_forward``: a net predicting with its batches' own statistics (the
classic inference bug), equal to a train-mode forward, and defined for a batch of one."""

from __future__ import annotations

import numpy as np
import pytest

from bnviz.inference import batch_stats_forward
from bnviz.nn import MLP
from bnviz.train import TrainConfig, load_data


@pytest.fixture(scope="module")
def x():
    return np.asarray(load_data(TrainConfig()).x_test[:40], dtype=np.float64)


@pytest.mark.parametrize("placement", ["before", "after"])
def test_it_is_the_train_mode_forward_and_leaves_the_net_alone(x, placement):
    model = MLP([64, 20, 15, 10], "tanh", batchnorm=True, placement=placement, seed=2)
    for _, bn in model.norm_layers:
        bn.gamma[...] = np.linspace(0.5, 2.0, bn.num_features)
        bn.beta[...] = np.linspace(-1.0, 1.0, bn.num_features)
    model.eval()
    before = model.state_arrays()
    logits, trace = batch_stats_forward(model, x)
    assert not model.training
    for key, value in model.state_arrays().items():
        np.testing.assert_array_equal(value, before[key])
    model.train()
    with model.frozen_stats():
        expected, expected_trace = model.forward_trace(x)
    np.testing.assert_array_equal(logits, expected)
    assert trace.keys() == expected_trace.keys()
    for name in trace:
        np.testing.assert_array_equal(trace[name], expected_trace[name])


def test_a_batch_of_one_makes_every_bn_output_beta(x):
    model = MLP([64, 20, 15, 10], "sigmoid", batchnorm=True, seed=0)
    for _, bn in model.norm_layers:
        bn.beta[...] = np.random.default_rng(1).normal(size=bn.num_features)
    rows = [batch_stats_forward(model, x[i : i + 1]) for i in range(5)]
    for logits, trace in rows:
        for name, bn in model.norm_layers:
            np.testing.assert_array_equal(trace[name][0], bn.beta)
        np.testing.assert_array_equal(logits, rows[0][0])  # the same output for every input


def test_a_plain_net_is_its_eval_mode(x):
    model = MLP([64, 20, 10], "relu", seed=0)
    logits, _ = batch_stats_forward(model, x)
    np.testing.assert_array_equal(logits, model.eval().forward(x))
