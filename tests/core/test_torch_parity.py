"""bnviz's layers, models, optimizer and loss against PyTorch's, in float64.

Errors are measured per array relative to its largest entry (see ``rel_err``): the outputs of a
constant feature are rounding noise around 0 in both libraries, and only their scale relative
to the rest of the output means anything.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bnviz import functional as F
from bnviz.nn import MLP, BatchNorm1d, LayerNorm
from bnviz.optim import SGD
from bnviz.torch_ref import from_torch, param_name, single_threaded_torch, to_torch

TOL = 1e-10


def rel_err(a, b) -> float:
    a = a.detach().numpy() if isinstance(a, torch.Tensor) else np.asarray(a, dtype=np.float64)
    b = b.detach().numpy() if isinstance(b, torch.Tensor) else np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape
    scale = max(np.max(np.abs(a)), np.max(np.abs(b)), 1e-300)
    return float(np.max(np.abs(a - b)) / scale)


def t(x: np.ndarray, grad: bool = False) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.float64, requires_grad=grad)


@pytest.fixture
def rng():
    return np.random.default_rng(99)


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny tensors: a torch thread pool only adds hand-offs (see bnviz.blas)."""
    with single_threaded_torch():
        yield


# --------------------------------------------------------------------------- BatchNorm1d


def bn_pair(d: int, rng, momentum=0.1, random_affine=True, eps=1e-5):
    ours = BatchNorm1d(d, eps=eps, momentum=momentum)
    if random_affine:
        ours.params["gamma"][...] = rng.uniform(-2, 2, d)
        ours.params["beta"][...] = rng.standard_normal(d)
    theirs = to_torch(ours)
    assert isinstance(theirs, torch.nn.BatchNorm1d) and theirs.momentum == momentum
    return ours, theirs


def check_bn_steps(ours, theirs, batches, rng, tol=TOL):
    """Train-mode forward and backward on each batch, then running stats and eval output."""
    for x in batches:
        y = ours.forward(x.copy())
        dout = rng.standard_normal(x.shape)
        dx = ours.backward(dout.copy())
        xt = t(x, grad=True)
        theirs.zero_grad()
        yt = theirs(xt)
        yt.backward(t(dout))
        assert rel_err(y, yt) < tol
        assert rel_err(dx, xt.grad) < tol
        assert rel_err(ours.grads["gamma"], theirs.weight.grad) < tol
        assert rel_err(ours.grads["beta"], theirs.bias.grad) < tol
    assert ours.num_batches_tracked == int(theirs.num_batches_tracked) == len(batches)
    assert rel_err(ours.running_mean, theirs.running_mean) < tol
    assert rel_err(ours.running_var, theirs.running_var) < tol
    ours.eval()
    theirs.eval()
    x = batches[0] + 0.5 * rng.standard_normal(batches[0].shape)
    assert rel_err(ours.forward(x.copy()), theirs(t(x))) < tol
    # a single example is fine in eval mode
    assert rel_err(ours.forward(x[:1].copy()), theirs(t(x[:1]))) < tol


@pytest.mark.parametrize("momentum", [0.1, None])
@pytest.mark.parametrize(
    ("m", "d"), [(2, 3), (16, 1), (60, 8)], ids=["batch_of_2", "one_feature", "batch_60"]
)
def test_batchnorm1d_matches_torch(rng, momentum, m, d):
    ours, theirs = bn_pair(d, rng, momentum)
    batches = [rng.standard_normal((m, d)) * rng.uniform(0.2, 5, d) + 3 for _ in range(5)]
    check_bn_steps(ours, theirs, batches, rng)


@pytest.mark.parametrize("momentum", [0.1, None])
def test_batchnorm1d_identity_affine(rng, momentum):
    ours, theirs = bn_pair(4, rng, momentum, random_affine=False)
    check_bn_steps(ours, theirs, [rng.standard_normal((10, 4)) for _ in range(4)], rng)


def test_batchnorm1d_constant_feature(rng):
    """A zero-variance column normalizes to (rounding noise around) beta in both libraries,
    and its gradient w.r.t. x is dout * gamma / sqrt(eps) minus its batch mean."""
    ours, theirs = bn_pair(3, rng)
    batches = []
    for c in (0.1, 7.7, -3.0):
        x = rng.standard_normal((12, 3))
        x[:, 1] = c
        batches.append(x)
    check_bn_steps(ours, theirs, batches, rng)
    ours.train()
    y = ours.forward(batches[0].copy())
    beta = ours.params["beta"][1]
    assert np.max(np.abs(y[:, 1] - beta)) < 1e-12 * max(1.0, abs(beta))


def test_batchnorm1d_large_offsets(rng):
    """x = 1e6 + N(0, 1). The input itself is only known to ulp(1e6) ~ 1.2e-10, so the
    normalized output is determined to ~1e-10 absolute, and the two libraries (both two-pass,
    summing in different orders) agree to a few 1e-10: the tolerance is 1e-9, not 1e-10.
    Both stay that close to an extended-precision reference, while a one-pass E[x^2] - E[x]^2
    variance is already off by ~1e-4 here (1e-16 * 1e12)."""
    ours, theirs = bn_pair(5, rng)
    batches = [1e6 + rng.standard_normal((32, 5)) for _ in range(3)]
    check_bn_steps(ours, theirs, batches, rng, tol=1e-9)
    x = batches[0].astype(np.longdouble)
    exact = (x - x.mean(0)) / np.sqrt(((x - x.mean(0)) ** 2).mean(0) + ours.eps)
    ours.train()
    y = (ours.forward(batches[0].copy()) - ours.beta) / ours.gamma
    assert float(np.max(np.abs(y - exact))) < 1e-8
    x64 = batches[0]
    naive_var = (x64**2).mean(0) - x64.mean(0) ** 2
    assert np.max(np.abs(naive_var - x64.var(0))) > 1e-5  # what two-pass avoids


# --------------------------------------------------------------------------- LayerNorm


def test_layernorm_matches_torch(rng):
    ours = LayerNorm(6)
    ours.params["gamma"][...] = rng.uniform(-2, 2, 6)
    ours.params["beta"][...] = rng.standard_normal(6)
    theirs = to_torch(ours)
    assert isinstance(theirs, torch.nn.LayerNorm)
    x = rng.standard_normal((5, 6)) * 3 + 1
    x[0] = 4.0  # a constant row
    dout = rng.standard_normal(x.shape)
    y = ours.forward(x)
    dx = ours.backward(dout)
    xt = t(x, grad=True)
    theirs(xt).backward(t(dout))
    assert rel_err(y, theirs(t(x))) < TOL
    assert rel_err(dx, xt.grad) < TOL
    assert rel_err(ours.grads["gamma"], theirs.weight.grad) < TOL
    assert rel_err(ours.grads["beta"], theirs.bias.grad) < TOL
    assert rel_err(ours.forward(x[:1]), theirs(t(x[:1]))) < TOL  # any batch size, train or eval


# --------------------------------------------------------------------------- MLP via to_torch

MLP_KINDS = {
    "plain": {},
    "bn_before": {"batchnorm": True, "placement": "before"},
    "bn_after": {"batchnorm": True, "placement": "after"},
    "layernorm": {"norm": "layer"},
    "groupnorm": {"norm": "group", "groups": 3},
    "groupnorm_after": {"norm": "group", "groups": 4, "placement": "after"},
    "noisy_bn": {"batchnorm": True, "noise": 1.0},
    "plain_noise": {"noise": 1.0},
    "bn_dropout": {"batchnorm": True, "dropout": 0.3},
}


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu"])
@pytest.mark.parametrize("kind", list(MLP_KINDS))
def test_mlp_matches_torch(rng, kind, activation):
    model = MLP([8, 12, 12, 12, 4], activation, init="glorot", seed=5, **MLP_KINDS[kind])
    for key, p in model.params.items():
        if not key.endswith("weight"):
            p += 0.3 * rng.standard_normal(p.shape)
    for _ in range(3):  # give the BN layers running statistics of their own
        model.forward(rng.standard_normal((16, 8)) + 1)
    x = rng.standard_normal((16, 8))
    y = rng.integers(0, 4, 16)
    tmodel = to_torch(model)
    assert [n for n, _ in tmodel.named_children()] == [n for n, _ in model.named_layers]
    assert tmodel.training

    loss = model.loss(x, y)
    model.backward()
    tloss = torch.nn.functional.cross_entropy(tmodel(t(x)), torch.tensor(y))
    tloss.backward()
    assert abs(loss - tloss.item()) <= TOL * abs(loss)
    tparams = dict(tmodel.named_parameters())
    assert sorted(tparams) == sorted(param_name(k) for k in model.params)
    for key, g in model.grads.items():
        assert rel_err(g, tparams[param_name(key)].grad) < TOL, key
    for name, bn in model.norm_layers:  # both took the same train-mode step on their stats
        tbn = getattr(tmodel, name)
        assert rel_err(bn.running_mean, tbn.running_mean) < TOL
        assert rel_err(bn.running_var, tbn.running_var) < TOL
        assert bn.num_batches_tracked == int(tbn.num_batches_tracked) == 4

    model.eval()
    tmodel_eval = to_torch(model)
    assert not tmodel_eval.training
    with torch.no_grad():
        assert rel_err(model.forward(x), tmodel_eval(t(x))) < TOL
        assert rel_err(model.forward(x[:1]), tmodel_eval(t(x[:1]))) < TOL


def test_from_torch_round_trip(rng):
    model = MLP([4, 6, 5, 3], "tanh", batchnorm=True, seed=1)
    tmodel = to_torch(model)
    with torch.no_grad():
        for p in tmodel.parameters():
            p.copy_(torch.randn_like(p))
    tmodel(t(rng.standard_normal((10, 4))))  # moves the running statistics
    other = MLP([4, 6, 5, 3], "tanh", batchnorm=True, seed=2)
    from_torch(tmodel, other)
    state = tmodel.state_dict()
    for key, p in other.params.items():
        np.testing.assert_array_equal(p, state[param_name(key)].numpy())
    for name, bn in other.norm_layers:
        np.testing.assert_array_equal(bn.running_mean, state[f"{name}.running_mean"].numpy())
        np.testing.assert_array_equal(bn.running_var, state[f"{name}.running_var"].numpy())
        assert bn.num_batches_tracked == 1
    x = rng.standard_normal((7, 4))
    with torch.no_grad():
        assert rel_err(other.forward(x), tmodel(t(x))) < TOL


def test_to_torch_keeps_float32():
    model = MLP([4, 5, 3], "sigmoid", batchnorm=True, dtype=np.float32)
    tmodel = to_torch(model)
    assert all(p.dtype == torch.float32 for p in tmodel.parameters())
    assert all(b.dtype == torch.float32 for b in tmodel.buffers() if b.is_floating_point())


# --------------------------------------------------------------------------- SGD


@pytest.mark.parametrize(
    ("momentum", "weight_decay"), [(0.0, 0.0), (0.9, 0.0), (0.0, 1e-2), (0.9, 5e-3)]
)
def test_sgd_matches_torch(rng, momentum, weight_decay):
    shapes = [(4, 3), (3,), (2, 5)]
    params = [rng.standard_normal(s) for s in shapes]
    grads = [np.zeros(s) for s in shapes]
    tparams = [torch.nn.Parameter(t(p)) for p in params]
    opt = SGD(params, grads, lr=0.1, momentum=momentum, weight_decay=weight_decay)
    topt = torch.optim.SGD(tparams, lr=0.1, momentum=momentum, weight_decay=weight_decay)
    for step in range(20):
        lr = 0.1 * 0.9**step
        for g, tp in zip(grads, tparams, strict=True):
            g[...] = rng.standard_normal(g.shape)
            tp.grad = t(g)
        opt.step(lr)
        topt.param_groups[0]["lr"] = lr
        topt.step()
        for p, tp in zip(params, tparams, strict=True):
            assert rel_err(p, tp) < 1e-13, step


def test_sgd_updates_2d_arrays_in_place_and_refuses_strided_ones(rng):
    """BLAS axpy silently returns a copy for anything but a contiguous 1-D array; SGD must
    still update the caller's (matrix-shaped) arrays, and refuse arrays it cannot update."""
    w, g = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    w0 = w.copy()
    SGD([w], [g], lr=0.5, weight_decay=0.1).step()
    np.testing.assert_allclose(w, w0 - 0.5 * (g + 0.1 * w0), rtol=1e-15)
    big = np.zeros((4, 6))
    with pytest.raises(ValueError, match="contiguous"):
        SGD([big[:, ::2]], [np.zeros((4, 3))], lr=0.1)
    with pytest.raises(ValueError, match="shape"):
        SGD([np.zeros(3)], [np.zeros(4)], lr=0.1)


def test_sgd_on_an_mlp_equals_torch(rng):
    """SGD over an MLP's parameter arrays, torch over its tensors: the same updates."""
    model = MLP([6, 7, 3], "sigmoid", batchnorm=True, seed=0)
    tmodel = to_torch(model)
    opt = SGD(
        list(model.params.values()),
        list(model.grads.values()),
        lr=0.3,
        momentum=0.8,
        weight_decay=1e-3,
    )
    topt = torch.optim.SGD(tmodel.parameters(), lr=0.3, momentum=0.8, weight_decay=1e-3)
    for _ in range(20):
        x, y = rng.standard_normal((10, 6)), rng.integers(0, 3, 10)
        model.loss(x, y)
        model.backward()
        opt.step()
        topt.zero_grad()
        torch.nn.functional.cross_entropy(tmodel(t(x)), torch.tensor(y)).backward()
        topt.step()
    tparams = dict(tmodel.named_parameters())
    for key, p in model.params.items():
        assert rel_err(p, tparams[param_name(key)]) < 1e-11, key


# --------------------------------------------------------------------------- loss


def test_softmax_cross_entropy_matches_torch(rng):
    logits = rng.standard_normal((9, 5)) * 3
    y = rng.integers(0, 5, 9)
    loss, d = F.softmax_cross_entropy(logits, y)
    lt = t(logits, grad=True)
    tl = torch.nn.functional.cross_entropy(lt, torch.tensor(y))
    tl.backward()
    assert abs(loss - tl.item()) <= 1e-14 * abs(loss)
    assert abs(F.cross_entropy(logits, y) - tl.item()) <= 1e-14 * abs(loss)
    assert rel_err(d, lt.grad) < 1e-14


def test_softmax_cross_entropy_extreme_logits():
    logits = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 0.0], [0.0, 1e4, -1e4], [1e4, 1e4, -1e4]])
    y = np.array([0, 0, 2, 1])
    loss, d = F.softmax_cross_entropy(logits, y)
    lt = t(logits, grad=True)
    tl = torch.nn.functional.cross_entropy(lt, torch.tensor(y))
    tl.backward()
    assert np.isfinite(loss) and np.all(np.isfinite(d))
    # per example: 0, 2e4, 2e4, log 2
    assert loss == pytest.approx((4e4 + np.log(2)) / 4, rel=1e-15)
    assert abs(loss - tl.item()) <= 1e-15 * loss
    assert F.cross_entropy(logits, y) == pytest.approx(loss, rel=1e-15)
    assert rel_err(d, lt.grad) < 1e-15
