"""The fast engine against the readable reference loop and against PyTorch, for every kind of
net; arms trained together against arms trained alone.

Nets are kept small and their runs short and well conditioned: a net whose dynamics amplify
rounding (e.g. GroupNorm over groups of a few nearly equal units) turns 1e-16 differences
into visible ones within a hundred steps, whichever two engines are compared.
"""

from __future__ import annotations

import numpy as np
import pytest

from bnviz.engine import FastEngine, ReferenceEngine, drive
from bnviz.reference.torch import train_arms_torch
from bnviz.train import TrainConfig, arm_runs, new_runs, train, train_arms
from tests.core.test_sweep import assert_same

BASE = dict(hidden=(16, 16), steps=40, record_every=10, probe_size=32, dtype="float64")
KINDS = {
    "plain": dict(norm="none"),
    "BN": dict(norm="batch"),
    "BN after, ReLU": dict(norm="batch", placement="after", activation="relu"),
    "BN cumulative": dict(norm="batch", bn_momentum=None, activation="tanh"),
    "LN": dict(norm="layer", init="he"),
    "GN": dict(norm="group", groups=2, init="he"),
    "GN after": dict(norm="group", groups=2, placement="after", activation="tanh", init="he"),
    "noisy BN": dict(norm="batch", bn_noise=1.0),
    "noisy BN after": dict(norm="batch", bn_noise=0.5, placement="after"),
    "plain + noise": dict(norm="none", bn_noise=1.0),
    "BN + dropout": dict(norm="batch", dropout=0.3),
    "BN + dropout at the end": dict(norm="batch", dropout=0.3, dropout_where="last"),
    "deep linear": dict(norm="none", activation="linear", lr=0.05),
    "momentum and decay": dict(norm="batch", momentum=0.9, weight_decay=1e-3, schedule="exp"),
}


def trained(engine_type, cfg: TrainConfig):
    (run,) = new_runs([cfg])
    drive(engine_type([run]))
    return run.history()


@pytest.mark.parametrize("kind", list(KINDS))
def test_the_fast_engine_computes_what_the_reference_loop_computes(kind):
    cfg = TrainConfig(**BASE, **KINDS[kind])
    fast, ref = trained(FastEngine, cfg), trained(ReferenceEngine, cfg)
    assert_same(fast, ref, loss_rtol=1e-11, state_rtol=1e-10, record_rtol=1e-6)


@pytest.mark.parametrize("kind", ["plain", "BN", "LN", "noisy BN"])
def test_float32_agrees_to_rounding(kind):
    cfg = TrainConfig(**{**BASE, "dtype": "float32"}, **KINDS[kind])
    fast, ref = trained(FastEngine, cfg), trained(ReferenceEngine, cfg)
    assert fast.final_state["fc1.weight"].dtype == np.float32
    assert_same(fast, ref, loss_rtol=1e-4, state_rtol=1e-3, record_rtol=1e-3, record_atol=1e-4)


def test_a_diverging_run_stops_at_the_same_step_in_both():
    cfg = TrainConfig(**BASE, norm="none", lr=200.0, init_scale=5.0, init_std=0.1)
    fast, ref = trained(FastEngine, cfg), trained(ReferenceEngine, cfg)
    assert fast.diverged_at is not None and fast.diverged_at == ref.diverged_at
    assert_same(fast, ref, loss_rtol=1e-11, state_rtol=1e-10, record_rtol=1e-6)
    assert int(fast.final_state["fc1.weight"].size) > 0


ARMS = {
    "plain": {"norm": "none"},
    "BN": {"norm": "batch"},
    "noisy BN": {"norm": "batch", "bn_noise": 1.0},
    "plain + noise": {"norm": "none", "bn_noise": 1.0},
    "LN": {"norm": "layer"},
    "GN": {"norm": "group", "groups": 4},
    "BN + dropout": {"norm": "batch", "dropout": 0.2},
}


ARMS_BASE = {**BASE, "init": "he"}  # GroupNorm of 4 units is ill-conditioned at a tiny init


@pytest.fixture(scope="module")
def arms():
    return train_arms(TrainConfig(**ARMS_BASE), ARMS)


def test_arms_start_from_the_same_weights_and_equal_separate_runs_bit_for_bit(arms):
    assert arms.labels == list(ARMS)
    runs = arm_runs(TrainConfig(**ARMS_BASE), ARMS)
    for key in ("fc1.weight", "fc2.weight", "fc3.weight"):
        w = runs[0].model.params[key]
        assert all(np.array_equal(r.model.params[key], w) for r in runs), key
    for label, changes in ARMS.items():
        h = arms[label]
        assert h.label == label
        alone = train(TrainConfig(**{**ARMS_BASE, **changes}))
        np.testing.assert_array_equal(h.loss, alone.loss)
        np.testing.assert_array_equal(h.test_acc, alone.test_acc)
        for key in h.final_state:
            np.testing.assert_array_equal(h.final_state[key], alone.final_state[key])


def test_the_torch_engine_trains_every_kind_of_arm_alike(arms):
    theirs = train_arms_torch(TrainConfig(**ARMS_BASE), ARMS, device="cpu")
    for ours, other in zip(arms, theirs, strict=True):
        assert ours.label == other.label
        assert_same(ours, other, loss_rtol=1e-10, state_rtol=1e-9, record_rtol=1e-5)


def test_arms_of_one_architecture_share_a_stack():
    """Arms that differ only in numbers (here the rate) train as one stack, and equal
    their runs alone."""
    arms = train_arms(TrainConfig(**BASE), {"slow": {"lr": 0.1}, "fast": {"lr": 1.0}})
    for label, lr in (("slow", 0.1), ("fast", 1.0)):
        alone = train(TrainConfig(**BASE, lr=lr))
        np.testing.assert_array_equal(arms[label].loss, alone.loss)


@pytest.mark.skipif("not __import__('torch').cuda.is_available()", reason="needs a CUDA device")
def test_the_torch_engine_on_cuda_agrees():
    theirs = train_arms_torch(TrainConfig(**ARMS_BASE), ARMS, device="cuda")
    for ours, other in zip(train_arms(TrainConfig(**ARMS_BASE), ARMS), theirs, strict=True):
        assert_same(ours, other, loss_rtol=1e-8, state_rtol=1e-7, record_rtol=1e-5)


def test_test_accuracy_between_records_is_what_a_record_there_would_measure():
    """eval_every=5 adds accuracy at steps 5, 15, 25, 35 (the records keep 10, 20, ...), and
    each equals the record a run with record_every=5 takes at that step; the loss is the same
    run's loss, bit for bit, so evaluating changes nothing about training."""
    dense = TrainConfig(**BASE, norm="batch", eval_every=5)
    every5 = TrainConfig(**{**BASE, "record_every": 5}, norm="batch")
    for engine in (FastEngine, ReferenceEngine):
        h, ref = trained(engine, dense), trained(engine, every5)
        assert list(h.eval_steps) == [5, 15, 25, 35]
        steps, acc = h.accuracy_track()
        assert list(steps) == [0, 5, 10, 15, 20, 25, 30, 35, 40]
        assert list(ref.record_steps) == list(steps)
        np.testing.assert_allclose(acc, ref.test_acc, rtol=0, atol=1e-12)
        np.testing.assert_array_equal(h.loss, ref.loss)


def test_evaluations_stop_at_eval_until_and_at_divergence():
    h = trained(FastEngine, TrainConfig(**BASE, norm="batch", eval_every=3, eval_until=20))
    assert list(h.eval_steps) == [3, 6, 9, 12, 15, 18]
    cfg = TrainConfig(**BASE, norm="none", lr=200.0, init_scale=5.0, init_std=0.1, eval_every=1)
    h = trained(FastEngine, cfg)
    assert h.diverged_at is not None
    assert h.eval_steps.max() <= h.diverged_at
