"""The sweep engines (``bnviz.sweep``) against K separate ``train`` runs.

The numpy stack repeats each single-net operation per slice (the same BLAS calls on the same
shapes, the same reductions, the same SGD axpy per run), so here it agrees with ``train`` to the
last bit. The tolerances are those of a different but correct summation order: 1e-9 relative on
float64 losses and weights; records are stored in float32 (``bnviz.record.STORE``), so they are
compared to a few float32 ulps. float32 gets 1e-4: its rounding (6e-8 a step) is amplified along
a run, so any reordering (another BLAS build choosing another kernel) would show up there first.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from bnviz import sweep as S
from bnviz.reference.torch_sweep import sweep_torch
from bnviz.sweep import (
    SHARED,
    SWEPT,
    check_compatible,
    sweep,
)
from bnviz.train import History, TrainConfig, train

LOSS_RTOL = 1e-9
STATE_RTOL = 1e-9
RECORD_RTOL = 1e-6  # a few float32 ulps (records are stored in float32)

BASE = dict(
    dataset="digits",
    hidden=(24, 24),
    batch_size=32,
    steps=120,
    record_every=25,  # records at 0, 25, ..., 100 and at the last step, 120
    probe_size=64,
    dtype="float64",
)
# several rates and init scales, two seeds (shared and unshared batch streams), a momentum /
# weight decay / decaying-rate run, and a run that blows up on its second step
GRID = [
    dict(lr=0.05, seed=0),
    dict(lr=0.5, seed=1, init_scale=2.0),
    dict(lr=2.0, seed=0, init_scale=0.5),
    dict(lr=0.3, seed=1, momentum=0.9, weight_decay=1e-3, schedule="exp", decay_steps=50),
    dict(lr=1000.0, seed=1, init_scale=20.0),
    dict(lr=1.0, seed=0, init="glorot", init_std=0.2),
]
NETS = {
    "plain_sigmoid": dict(batchnorm=False, activation="sigmoid"),
    "plain_relu": dict(batchnorm=False, activation="relu"),
    "bn_before_sigmoid": dict(batchnorm=True, placement="before", activation="sigmoid"),
    "bn_after_sigmoid": dict(batchnorm=True, placement="after", activation="sigmoid"),
    "bn_before_relu": dict(batchnorm=True, placement="before", activation="relu"),
    "bn_after_relu": dict(batchnorm=True, placement="after", activation="relu"),
    "bn_cumulative_tanh": dict(batchnorm=True, activation="tanh", bn_momentum=None),
}


def grid(net: str, **overrides) -> list[TrainConfig]:
    base = {**BASE, **NETS[net], **overrides}
    return [TrainConfig(**{**base, **point}) for point in GRID]


def rel_err(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape
    scale = max(np.max(np.abs(a), initial=0), np.max(np.abs(b), initial=0), 1e-300)
    return float(np.max(np.abs(a - b), initial=0) / scale)


def assert_same(
    a: History,
    b: History,
    loss_rtol: float = LOSS_RTOL,
    state_rtol: float = STATE_RTOL,
    record_rtol: float = RECORD_RTOL,
    record_atol: float = 1e-7,
) -> None:
    """Everything ``train`` returns, field by field."""
    assert a.config == b.config
    assert a.diverged_at == b.diverged_at
    assert a.loss.shape == b.loss.shape
    if len(a.loss):
        assert np.max(np.abs(a.loss - b.loss) / np.abs(b.loss)) <= loss_rtol
    np.testing.assert_array_equal(a.record_steps, b.record_steps)
    np.testing.assert_allclose(a.test_loss, b.test_loss, rtol=record_rtol)
    np.testing.assert_allclose(a.test_acc, b.test_acc, atol=record_rtol)
    assert sorted(a.final_state) == sorted(b.final_state)
    for key in a.final_state:
        assert a.final_state[key].dtype == b.final_state[key].dtype, key
        assert rel_err(a.final_state[key], b.final_state[key]) <= state_rtol, key
    assert len(a.layers) == len(b.layers)
    for la, lb in zip(a.layers, b.layers, strict=True):
        assert (la.index, la.units) == (lb.index, lb.units)
        for name in ("weight_norm", "grad_norm", "update_ratio"):
            np.testing.assert_allclose(getattr(la, name), getattr(lb, name), rtol=record_rtol)
        assert sorted(la.sites) == sorted(lb.sites)
        for site in la.sites:
            for name, value in vars(la.sites[site]).items():
                np.testing.assert_allclose(
                    value, getattr(lb.sites[site], name), rtol=record_rtol, atol=record_atol
                )
    assert a.seconds > 0


_TRAINED: dict[tuple, list[History]] = {}


def trained(configs: list[TrainConfig]) -> list[History]:
    """Sequential ``train`` runs, each config trained once per test session."""
    out = []
    for cfg in configs:
        key = tuple(sorted(cfg.as_dict().items(), key=lambda kv: kv[0]))
        if key not in _TRAINED:
            _TRAINED[key] = train(cfg)
        out.append(_TRAINED[key])
    return out


# ----------------------------------------------------------------------------- numpy sweep


@pytest.mark.parametrize("net", list(NETS))
def test_sweep_equals_separate_train_runs(net):
    configs = grid(net)
    got, want = sweep(configs), trained(configs)
    assert len(got) == len(configs)
    for a, b in zip(got, want, strict=True):
        assert_same(a, b)
    diverged = [h.diverged_at for h in want]
    assert diverged[4] is not None and diverged[4] >= 1  # the blow-up happened, after step 0
    assert len(got[4].loss) == diverged[4]
    np.testing.assert_array_equal(got[4].record_steps, [0])
    for h in got[:4] + got[5:]:  # the others went on to the end, and learned
        assert h.diverged_at is None and len(h.loss) == BASE["steps"]
        np.testing.assert_array_equal(h.record_steps, [0, 25, 50, 75, 100, 120])
    assert max(h.test_acc[-1] for h in got) > 0.5  # chance is 0.1


def test_float32_sweep_matches_train():
    configs = grid("bn_before_sigmoid", dtype="float32")
    got, want = sweep(configs), trained(configs)
    for a, b in zip(got, want, strict=True):
        assert a.final_state["fc1.weight"].dtype == np.float32
        assert_same(a, b, loss_rtol=1e-4, state_rtol=1e-3, record_rtol=1e-3)


@pytest.mark.parametrize("net", ["bn_before_sigmoid", "bn_after_relu", "plain_sigmoid"])
def test_a_stacked_run_is_the_run_alone_to_the_bit(net):
    """One engine: a run in a stack of K computes exactly what it computes alone (K = 1), so
    every float32 loss of a sweep equals its ``train`` run's, bit for bit."""
    configs = grid(net, dtype="float32")[:3]
    for a, b in zip(sweep(configs), trained(configs), strict=True):
        np.testing.assert_array_equal(a.loss, b.loss)


def test_runs_diverging_at_different_steps_leave_the_others_alone():
    """Two runs blow up (steps 6 and 1) in one stack; the stack shrinks and goes on."""
    base = {**BASE, **NETS["plain_sigmoid"]}
    configs = [
        TrainConfig(**base, lr=400.0, init_scale=5.0, seed=1),
        TrainConfig(**base, lr=0.5),
        TrainConfig(**base, lr=1000.0, init_scale=20.0),
        TrainConfig(**base, lr=1.0, seed=1),
    ]
    got, want = sweep(configs), trained(configs)
    assert [h.diverged_at for h in got] == [6, None, 1, None]
    for a, b in zip(got, want, strict=True):
        assert_same(a, b)


def test_a_stack_where_every_run_diverges():
    configs = [
        TrainConfig(**BASE, lr=1000.0, init_scale=20.0, seed=s, batchnorm=False) for s in (0, 1)
    ]
    calls = []
    got = sweep(configs, progress=lambda done, total: calls.append((done, total)))
    for a, b in zip(got, trained(configs), strict=True):
        assert_same(a, b)
        assert a.diverged_at is not None
    assert calls[0] == (0, BASE["steps"]) and calls[-1][0] == max(h.diverged_at for h in got)


def test_one_run_and_a_shared_seed():
    one = [TrainConfig(**BASE, lr=0.7)]
    assert_same(sweep(one)[0], trained(one)[0])
    same_seed = [TrainConfig(**BASE, lr=lr, seed=3) for lr in (0.1, 0.2, 0.4)]
    for a, b in zip(sweep(same_seed), trained(same_seed), strict=True):
        assert_same(a, b)


def test_progress_reports_steps_until_done():
    configs = grid("plain_sigmoid")[:2]
    calls = []
    sweep(configs, progress=lambda done, total: calls.append((done, total)))
    assert calls[0] == (0, 120) and calls[-1] == (120, 120)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


def test_large_groups_run_as_several_stacks(monkeypatch):
    """Past stack_size runs a group is split into stacks taken in turn; nothing changes."""
    assert S.stack_size(TrainConfig(**BASE)) > len(GRID)  # the other tests use one stack
    monkeypatch.setattr(S, "STACK_ELEMENTS", 2 * 32 * 24)  # two runs per stack
    configs = grid("bn_after_relu")
    assert S.stack_size(configs[0]) == 2
    calls = []
    got = sweep(configs, progress=lambda done, total: calls.append((done, total)))
    for a, b in zip(got, trained(configs), strict=True):
        assert_same(a, b)
    assert calls[0] == (0, 360) and calls[-1] == (360, 360)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


# ----------------------------------------------------------------------------- compatibility


@pytest.mark.parametrize(
    "field, value",
    [
        ("hidden", (24, 16)),
        ("norm", "batch"),
        ("norm", "group"),
        ("bn_noise", 1.0),
        ("dropout", 0.2),
        ("placement", "after"),
        ("activation", "tanh"),
        ("batch_size", 16),
        ("steps", 60),
        ("dtype", "float32"),
        ("record_every", 10),
        ("dataset", "moons"),
        ("bn_momentum", None),
    ],
)
def test_incompatible_configs_name_the_field(field, value):
    a = TrainConfig(**BASE, batchnorm=False)
    b = dataclasses.replace(a, lr=0.1, **{field: value})
    with pytest.raises(ValueError, match=rf"configs\[1\]\.{field} = .* differs"):
        sweep([a, b])
    with pytest.raises(ValueError, match=field):
        sweep_torch([a, b], device="cpu")


def test_what_may_differ():
    assert set(SWEPT) | set(SHARED) == set(TrainConfig.__dataclass_fields__)
    assert not set(SWEPT) & set(SHARED)
    a = TrainConfig(**BASE)
    varied = dataclasses.replace(
        a,
        lr=0.1,
        schedule="exp",
        lr_decay=0.5,
        decay_steps=10,
        momentum=0.5,
        weight_decay=0.01,
        init="he",
        init_std=0.3,
        init_scale=2.0,
        seed=9,
    )
    assert check_compatible([a, varied]) == [a, varied]


def test_bad_config_lists():
    with pytest.raises(ValueError, match="at least one"):
        sweep([])
    with pytest.raises(ValueError, match="TrainConfig"):
        sweep([TrainConfig(**BASE), {"lr": 0.1}])


# ----------------------------------------------------------------------------- torch


TORCH_GRID = [
    dict(lr=0.1, seed=0),
    dict(lr=1.0, seed=1, init_scale=2.0),
    dict(lr=0.3, seed=1, momentum=0.9, weight_decay=1e-3, schedule="exp", decay_steps=50),
    dict(lr=1000.0, seed=0, init_scale=20.0),
]


@pytest.mark.parametrize("net", ["plain_sigmoid", "bn_before_sigmoid", "bn_after_relu"])
def test_torch_sweep_equals_numpy_sweep(net):
    """torch sums in other orders (autograd's BN backward, its own reductions): agreement to
    rounding, ~1e-14 on losses here, records to float32 storage."""
    configs = [TrainConfig(**{**BASE, **NETS[net], **point}) for point in TORCH_GRID]
    got, want = sweep_torch(configs, device="cpu"), sweep(configs)
    for a, b in zip(got, want, strict=True):
        assert_same(a, b, record_rtol=1e-5)
    assert got[3].diverged_at is not None


def test_torch_device_choice_and_float32():
    torch = pytest.importorskip("torch")
    configs = [TrainConfig(**{**BASE, "dtype": "float32"}, lr=lr) for lr in (0.2, 2.0)]
    got, want = sweep_torch(configs), sweep(configs)
    for a, b in zip(got, want, strict=True):
        assert a.final_state["fc1.weight"].dtype == np.float32
        assert_same(a, b, loss_rtol=1e-3, state_rtol=1e-2, record_rtol=1e-2, record_atol=1e-4)
    if not torch.cuda.is_available():
        return
    gpu = sweep_torch(grid("bn_before_sigmoid")[:4], device="cuda")
    for a, b in zip(gpu, sweep(grid("bn_before_sigmoid")[:4]), strict=True):
        assert_same(a, b, record_rtol=1e-5)
