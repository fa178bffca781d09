"""The numpy engine (``bnviz.train``) and the torch engine (``bnviz.torch_ref``) run the same
config to the same numbers: per-step losses, records, final weights and BN running statistics.

In float64 the two differ only in rounding (summation order inside matrix products and
reductions), ~1e-16 per step. At the paper's learning rates that stays at 1e-12 or less over 200
steps. At very large learning rates training is chaotic and such differences grow ~10x every
couple of steps, so the diverging cases compare only the few steps before the blow-up.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bnviz.torch_ref import default_device, train_torch, train_twins_torch
from bnviz.train import History, TrainConfig, train, train_twins

LOSS_TOL = 1e-9
STATE_TOL = 1e-9
RECORD_RTOL = 1e-5  # records are stored in float32 (bnviz.record.STORE)

BASE = dict(
    dataset="digits",
    hidden=(32, 32, 32),
    activation="sigmoid",
    batch_size=60,
    steps=200,
    record_every=30,  # records at 0, 30, ..., 180 and at the last step, 200
    dtype="float64",
)
CASES = {
    "bn": dict(batchnorm=True),
    "plain": dict(batchnorm=False),
    "momentum_wd_exp": dict(
        batchnorm=True,
        lr=0.2,
        momentum=0.9,
        weight_decay=1e-3,
        schedule="exp",
        lr_decay=0.1,
        decay_steps=100,
    ),
    "bn_after_relu": dict(batchnorm=True, placement="after", activation="relu"),
    "class_sorted": dict(batchnorm=True, batch_order="class_sorted"),
    "bn_cumulative_stats": dict(batchnorm=True, bn_momentum=None, activation="tanh", lr=0.1),
    "diverging": dict(batchnorm=False, activation="tanh", lr=200.0, init_scale=5.0),
}


def rel_err(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape
    scale = max(np.max(np.abs(a), initial=0), np.max(np.abs(b), initial=0), 1e-300)
    return float(np.max(np.abs(a - b), initial=0) / scale)


def assert_same_history(a: History, b: History, loss_tol: float = LOSS_TOL) -> None:
    assert a.config == b.config
    assert a.diverged_at == b.diverged_at
    assert a.loss.shape == b.loss.shape
    assert np.max(np.abs(a.loss - b.loss) / np.abs(a.loss), initial=0) < loss_tol
    np.testing.assert_array_equal(a.record_steps, b.record_steps)
    np.testing.assert_array_equal(a.test_acc, b.test_acc)
    np.testing.assert_allclose(a.test_loss, b.test_loss, rtol=RECORD_RTOL)
    assert sorted(a.final_state) == sorted(b.final_state)
    for key in a.final_state:
        assert rel_err(a.final_state[key], b.final_state[key]) < STATE_TOL, key
    assert len(a.layers) == len(b.layers)
    for la, lb in zip(a.layers, b.layers, strict=True):
        for name in ("weight_norm", "grad_norm", "update_ratio"):
            np.testing.assert_allclose(getattr(la, name), getattr(lb, name), rtol=RECORD_RTOL)
        assert sorted(la.sites) == sorted(lb.sites)
        for site in la.sites:
            sa, sb = la.sites[site], lb.sites[site]
            for name in ("quantiles", "unit_mean", "unit_std", "std", "saturation"):
                np.testing.assert_allclose(
                    getattr(sa, name), getattr(sb, name), rtol=RECORD_RTOL, atol=1e-6
                )


_RUNS: dict[str, tuple[History, History]] = {}


def both_engines(case: str) -> tuple[History, History]:
    if case not in _RUNS:
        cfg = TrainConfig(**{**BASE, **CASES[case]})
        _RUNS[case] = train(cfg), train_torch(cfg)
    return _RUNS[case]


@pytest.mark.parametrize("case", list(CASES))
def test_engines_agree(case):
    a, b = both_engines(case)
    assert_same_history(a, b)
    if case == "diverging":  # a few steps, then a loss over the limit
        assert a.diverged_at is not None and a.diverged_at >= 2
        assert len(a.loss) == a.diverged_at
        np.testing.assert_array_equal(a.record_steps, [0])
    else:
        assert a.diverged_at is None and len(a.loss) == 200
        np.testing.assert_array_equal(a.record_steps, [0, 30, 60, 90, 120, 150, 180, 200])
        assert np.all(a.layers[0].update_ratio[1:] > 0)  # the weights did move


def test_final_state_holds_bn_running_stats():
    a, b = both_engines("bn")
    for i in (1, 2, 3):
        for stat in ("running_mean", "running_var"):
            key = f"bn{i}.{stat}"
            assert key in b.final_state
            assert rel_err(a.final_state[key], b.final_state[key]) < STATE_TOL
    assert not np.allclose(b.final_state["bn1.running_var"], 1.0)  # they moved
    assert b.test_acc[-1] > 0.8 and b.test_loss[-1] < 0.5 * b.test_loss[0]  # it learned


def test_float32_engines_agree_to_rounding():
    """float32 sums in a different order in each engine: agreement to ~1e-3 (seen: ~1e-6)."""
    cfg = TrainConfig(**{**BASE, "dtype": "float32", "batchnorm": True})
    a, b = train(cfg), train_torch(cfg)
    assert a.final_state["fc1.weight"].dtype == b.final_state["fc1.weight"].dtype == np.float32
    assert len(a.loss) == len(b.loss) == 200
    assert abs(a.loss[-1] - b.loss[-1]) < 1e-3 * a.loss[-1]
    assert np.max(np.abs(a.loss - b.loss) / a.loss) < 1e-3
    assert abs(a.test_acc[-1] - b.test_acc[-1]) <= 0.01


def test_twins_agree():
    cfg = TrainConfig(**BASE)
    a, b = train_twins(cfg), train_twins_torch(cfg)
    assert (b.plain.label, b.bn.label) == ("plain", "BN")
    assert_same_history(a.plain, b.plain)
    assert_same_history(a.bn, b.bn)
    np.testing.assert_array_equal(  # the same initial weight matrices in both nets
        b.plain.layers[0].weight_norm[0], b.bn.layers[0].weight_norm[0]
    )


def test_twins_agree_when_one_diverges():
    """lr 200 from large weights: the plain net blows up within a few steps, the BN net goes
    on (chaotically at this rate, so only a few steps are compared)."""
    cfg = TrainConfig(**{**BASE, "steps": 3, "lr": 200.0, "init_scale": 20.0})
    a, b = train_twins(cfg), train_twins_torch(cfg)
    assert a.plain.diverged_at is not None
    assert a.bn.diverged_at is None
    assert_same_history(a.plain, b.plain)
    assert_same_history(a.bn, b.bn)


def test_progress_reports_match():
    cfg = TrainConfig(**{**BASE, "steps": 50, "hidden": (8,)})
    calls_np, calls_torch = [], []
    train(cfg, progress=lambda done, total: calls_np.append((done, total)))
    train_torch(cfg, progress=lambda done, total: calls_torch.append((done, total)))
    assert calls_torch == calls_np
    assert calls_np[0] == (0, 50) and calls_np[-1] == (50, 50)


def test_device_choice():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert default_device().type == expected
    assert default_device("cpu").type == "cpu"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_engine_agrees_with_numpy():
    cfg = TrainConfig(**{**BASE, **CASES["bn"]})
    a = both_engines("bn")[0]
    b = train_torch(cfg, device="cuda")
    assert_same_history(a, b)


def test_engine_restores_torch_threads():
    before = torch.get_num_threads()
    train_torch(TrainConfig(**{**BASE, "steps": 5, "hidden": (8,)}))
    assert torch.get_num_threads() == before
