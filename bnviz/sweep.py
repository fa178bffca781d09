"""Many runs at once: K configs of one architecture trained as stacked arrays in one pass.

A learning-rate sweep or a grid trains K small nets that differ only in numbers (learning rate,
init, seed, momentum, weight decay). Training them one by one pays numpy's per-call overhead K
times on tiny arrays; stacking them pays it once on arrays K times larger: weights (K, out, in),
activations (K, m, D), batched matrix products, per-feature vectors (K, 1, D).

Every result equals K separate ``bnviz.train.train`` runs: each run keeps its own ``Run`` (initial
weights, batch order, recorder, loss buffer), the stacked step repeats the single-net operations
one for one (the same BLAS kernels on the same shapes, the same reductions, the same SGD axpy per
run), and each run's numpy MLP is synced from the stack whenever it is measured. A run that
diverges is snapshotted and dropped from the stack, so it stops costing anything.

``sweep`` runs one compatible group in this process (``bnviz.fanout`` splits any configs over
worker processes); ``sweep_torch`` runs the same stacked step with torch tensors (CUDA when
available).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import fields
from functools import lru_cache

import numpy as np
from scipy.linalg.blas import get_blas_funcs

from bnviz.blas import single_threaded_blas
from bnviz.data import BatchSampler, Dataset
from bnviz.functional import row_offsets
from bnviz.optim import learning_rate
from bnviz.record import grad_norms, hidden_weights, update_ratios
from bnviz.train import DIVERGENCE_FACTOR, History, Progress, Run, TrainConfig, load_data

Array = np.ndarray

# What may differ between the runs of one sweep: numbers that change the weights or the steps,
# never the shapes or the data. Every other TrainConfig field must be shared.
SWEPT = (
    "lr",
    "schedule",
    "lr_decay",
    "decay_steps",
    "momentum",
    "weight_decay",
    "init",
    "init_std",
    "init_scale",
    "seed",
)
SHARED = tuple(f.name for f in fields(TrainConfig) if f.name not in SWEPT)

STACK_ELEMENTS = 96_000  # see stack_size


# --------------------------------------------------------------------------- configs


def shared_key(cfg: TrainConfig) -> tuple:
    """The fields that must be equal for two configs to share one stack."""
    return tuple(getattr(cfg, name) for name in SHARED)


def check_compatible(configs: Sequence[TrainConfig]) -> list[TrainConfig]:
    """The configs as a list, or ValueError naming the first shared field that differs."""
    configs = list(configs)
    if not configs:
        raise ValueError("a sweep needs at least one config")
    for i, cfg in enumerate(configs):
        if not isinstance(cfg, TrainConfig):
            raise ValueError(f"configs[{i}] must be a TrainConfig, got {type(cfg).__name__}")
    first = configs[0]
    for i, cfg in enumerate(configs[1:], start=1):
        for name in SHARED:
            a, b = getattr(first, name), getattr(cfg, name)
            if a != b:
                raise ValueError(
                    f"configs[{i}].{name} = {b!r} differs from configs[0].{name} = {a!r}: "
                    f"runs of one sweep may differ only in {', '.join(SWEPT)} "
                    "(bnviz.fanout.sweep trains incompatible groups)"
                )
    return configs


def compatible_groups(configs: Sequence[TrainConfig]) -> list[list[int]]:
    """Indices of the configs grouped by everything they must share, in first-seen order."""
    groups: dict[tuple, list[int]] = {}
    for i, cfg in enumerate(configs):
        groups.setdefault(shared_key(cfg), []).append(i)
    return list(groups.values())


# --------------------------------------------------------------------------- stacked kernels
# Each mirrors a function of bnviz.functional operation for operation (so every slice of the
# stack rounds exactly as the single net does) but writes into preallocated buffers: on arrays
# of a few hundred kB a fresh allocation costs as much as the arithmetic.


@lru_cache(maxsize=64)
def _ones(shape: tuple[int, ...], dtype: np.dtype) -> Array:
    ones = np.ones(shape, dtype=dtype)
    ones.flags.writeable = False
    return ones


def _batch_sum(x: Array, out: Array) -> Array:
    """``F.batch_sum`` of every slice into out (K, 1, D). A stacked matmul against a row of ones
    runs the single net's BLAS call per slice; np.dot on 3-D arrays takes a slower generic path
    that also sums in another order."""
    return np.matmul(_ones((1, x.shape[-2]), x.dtype), x, out=out)


def _batch_dot(a: Array, b: Array, scratch: Array, out2d: Array) -> Array:
    """``F.batch_dot`` of every slice: the product (into scratch, like a) then ``_batch_sum``;
    out2d is (K, D), returned as a (K, 1, D) view."""
    return _batch_sum(np.multiply(a, b, out=scratch), out2d[:, None, :])


def _softmax_cross_entropy(logits: Array, y: Array, s: Array) -> tuple[Array, Array]:
    """``F.softmax_cross_entropy`` per slice: (K,) losses and dL/dlogits (overwrites logits).

    Rows of all slices are handled as one (K*m, C) table, except the row sums, which go through
    a stacked matmul (s is a (K, m, 1) buffer) so that each slice sums as the 2-D call does.
    """
    k, n, c = logits.shape
    flat = logits.reshape(k * n, c)
    offsets = row_offsets(k * n, c)
    rows = y.reshape(-1) + offsets
    z = flat - flat.ravel()[flat.argmax(axis=1) + offsets][:, None]
    e = np.exp(z, out=flat)
    np.matmul(logits, _ones((c, 1), logits.dtype), out=s)
    picked = z.ravel()[rows].reshape(k, n)
    loss = (np.add.reduce(np.log(s[..., 0]), axis=-1) - np.add.reduce(picked, axis=-1)) * (1.0 / n)
    logits /= s
    e.ravel()[rows] -= 1
    logits *= logits.dtype.type(1.0 / n)
    return loss, logits


def _activation_grad(name: str, a: Array, d: Array, scratch: Array, mask: Array) -> None:
    """dL/dz in place on d from the activation output a, as ``F.<name>_grad(overwrite=True)``."""
    if name == "sigmoid":
        np.subtract(1, a, out=scratch)
        d *= a
        d *= scratch
    elif name == "tanh":
        np.multiply(a, a, out=scratch)
        np.subtract(1, scratch, out=scratch)
        d *= scratch
    elif name == "relu":
        np.greater(a, 0, out=mask)
        d *= mask
    elif name != "linear":
        raise ValueError(f"no stacked gradient for activation {name!r}")


# --------------------------------------------------------------------------- numpy stack


class _Block:
    """One hidden layer of the stack: views into the stacked parameters and gradients, the
    running statistics, and the buffers its forward and backward write into."""

    def __init__(self, index: int, width: int, bn: bool) -> None:
        self.index, self.width, self.bn = index, width, bn
        self.running_mean: Array | None = None
        self.running_var: Array | None = None


class NumpyStack:
    """K nets of one architecture trained in lockstep as stacked numpy arrays.

    All parameters live in one (K, P) array laid out as each ``MLP.flat_params`` is, so a run's
    row syncs to (or from) its model with one copy, and the SGD step is one BLAS axpy per run,
    exactly the call ``bnviz.optim.SGD`` makes.
    """

    def __init__(self, runs: list[Run]) -> None:
        model = runs[0].model
        cfg = runs[0].cfg
        self.runs = list(runs)
        self.dtype = model.dtype
        self.activation = cfg.activation
        self.batchnorm, self.placement = cfg.batchnorm, cfg.placement
        self.eps, self.bn_momentum = cfg.bn_eps, cfg.bn_momentum
        self.batch_size = cfg.batch_size
        self.sizes = model.sizes
        self.slices = dict(model.slices)
        self.shapes = {key: value.shape for key, value in model.params.items()}
        self.x, self.y = runs[0].x, runs[0].y
        self.params = np.stack([r.model.flat_params for r in runs])
        self.grads = np.zeros_like(self.params)
        self.momentum = any(r.cfg.momentum for r in runs)
        self.velocity = np.zeros_like(self.params) if self.momentum else None
        self._tmp = np.empty(self.params.shape[1], dtype=self.dtype)
        self._axpy = get_blas_funcs("axpy", (self._tmp,))
        self.blocks = [
            _Block(i, self.sizes[i], self.batchnorm) for i in range(1, len(self.sizes) - 1)
        ]
        for b in self.blocks:
            if b.bn:
                layers = [r.model.layers[f"bn{b.index}"] for r in runs]
                b.running_mean = np.stack([bn.running_mean for bn in layers])[:, None, :]
                b.running_var = np.stack([bn.running_var for bn in layers])[:, None, :]
        self.batches_tracked = 0
        self._bind()

    @property
    def k(self) -> int:
        return len(self.runs)

    def _view(self, flat: Array, key: str, vector: bool = False) -> Array:
        """A parameter's stacked view: (K, out, in) weights, (K, 1, D) per-feature vectors.
        Splitting the contiguous last axis of a (K, P) column slice never copies, so products
        written into these views land in the stacked arrays."""
        part = flat[:, self.slices[key]]
        return part[:, None, :] if vector else part.reshape(self.k, *self.shapes[key])

    def _bind(self) -> None:
        """(Re)build the views and buffers for the current K."""
        k, m, dt = self.k, self.batch_size, self.dtype
        P, G = self.params, self.grads

        def buf(*shape):
            return np.empty(shape, dtype=dt)

        for b in self.blocks:
            fc, bn = f"fc{b.index}", f"bn{b.index}"
            b.w, b.gw = self._view(P, f"{fc}.weight"), self._view(G, f"{fc}.weight")
            has_bias = f"{fc}.bias" in self.slices
            b.bias = self._view(P, f"{fc}.bias", vector=True) if has_bias else None
            b.gbias = G[:, self.slices[f"{fc}.bias"]] if has_bias else None
            b.z, b.d, b.scratch = buf(k, m, b.width), buf(k, m, b.width), buf(k, m, b.width)
            b.mask = np.empty((k, m, b.width), dtype=bool) if self.activation == "relu" else None
            if b.bn:
                b.gamma, b.beta = (self._view(P, f"{bn}.{p}", True) for p in ("gamma", "beta"))
                b.ggamma, b.gbeta = (self._view(G, f"{bn}.{p}", True) for p in ("gamma", "beta"))
                b.y = buf(k, m, b.width)
                b.xc = buf(k, m, b.width) if self.placement == "after" else b.z
                b.mu, b.inv_std, b.scale = (
                    buf(k, 1, b.width),
                    buf(k, 1, b.width),
                    buf(k, 1, b.width),
                )
                b.dbeta, b.kvec, b.cvec = buf(k, 1, b.width), buf(k, 1, b.width), buf(k, 1, b.width)
                b.var2d, b.sdx2d = buf(k, b.width), buf(k, b.width)
        out = f"fc{len(self.sizes) - 1}"
        self.w_out, self.gw_out = self._view(P, f"{out}.weight"), self._view(G, f"{out}.weight")
        self.b_out = self._view(P, f"{out}.bias", vector=True)
        self.gb_out = G[:, self.slices[f"{out}.bias"]]
        self.xb = buf(k, m, self.sizes[0])
        self.yb = np.empty((k, m), dtype=self.y.dtype)
        self.logits = buf(k, m, self.sizes[-1])
        self.rowsum = buf(k, m, 1)

    # ------------------------------------------------------------------ one step

    def forward(self, idx: Array) -> Array:
        """Loss of every net on its batch (rows idx, shape (K, m)); BN running stats advance."""
        np.take(self.x, idx, axis=0, out=self.xb)
        np.take(self.y, idx, out=self.yb)
        self.batches_tracked += 1
        h = self.xb
        for b in self.blocks:
            np.matmul(h, b.w.transpose(0, 2, 1), out=b.z)
            if b.bias is not None:
                b.z += b.bias
            if b.bn and self.placement == "before":
                # sigmoid(y) starts by halving y; BN can hand over y/2 directly (exactly:
                # halving scale and beta is exact, and rounding commutes with a power of 2)
                halved = self.activation == "sigmoid"
                h = self._act(self._bn_forward(b, b.z, halved), halved)
            else:
                h = self._act(b.z)
                if b.bn:
                    h = self._bn_forward(b, h)
            b.out = h
        np.matmul(h, self.w_out.transpose(0, 2, 1), out=self.logits)
        self.logits += self.b_out
        loss, self.dlogits = _softmax_cross_entropy(self.logits, self.yb, self.rowsum)
        return loss

    def _act(self, z: Array, halved: bool = False) -> Array:
        """The activation in place, as ``F.<name>(overwrite=True)``; ``halved``: z is already
        the halved input that sigmoid = 0.5 tanh(z/2) + 0.5 starts from."""
        name = self.activation
        if name == "sigmoid":
            half = z.dtype.type(0.5)
            if not halved:
                z *= half
            np.tanh(z, out=z)
            z *= half
            z += half
        elif name == "tanh":
            np.tanh(z, out=z)
        elif name == "relu":
            np.maximum(z, 0, out=z)
        return z

    def _bn_forward(self, b: _Block, x: Array, halved: bool = False) -> Array:
        """``F.batchnorm_forward`` (in place on x when BN directly follows the Linear, as the MLP
        does) and ``BatchNorm1d``'s running-statistics update; ``halved`` returns y/2."""
        inv_m = x.dtype.type(1.0 / x.shape[-2])
        mu = _batch_sum(x, b.mu)
        mu *= inv_m
        xc = b.xc
        if xc is x:
            xc -= mu
        else:
            np.subtract(x, mu, out=xc)
        var = _batch_dot(xc, xc, b.scratch, b.var2d)
        var *= inv_m
        np.add(var, x.dtype.type(self.eps), out=b.inv_std)
        np.sqrt(b.inv_std, out=b.inv_std)
        np.reciprocal(b.inv_std, out=b.inv_std)
        np.multiply(b.gamma, b.inv_std, out=b.scale)
        if halved:
            half = x.dtype.type(0.5)
            np.multiply(xc, np.multiply(b.scale, half, out=b.kvec), out=b.y)
            b.y += np.multiply(b.beta, half, out=b.cvec)
        else:
            np.multiply(xc, b.scale, out=b.y)
            b.y += b.beta
        m = x.shape[-2]
        f = self.bn_momentum if self.bn_momentum is not None else 1.0 / self.batches_tracked
        b.running_mean *= 1.0 - f
        b.running_mean += f * mu
        b.running_var *= 1.0 - f
        b.running_var += (f * m / (m - 1)) * var
        return b.y

    def backward(self) -> None:
        """Fill the stacked gradients from the last forward."""
        d = self.dlogits
        last = self.blocks[-1]
        np.matmul(d.transpose(0, 2, 1), last.out, out=self.gw_out)
        np.add.reduce(d, axis=-2, out=self.gb_out)
        np.matmul(d, self.w_out, out=last.d)
        for i in range(len(self.blocks) - 1, -1, -1):
            b = self.blocks[i]
            d = b.d
            if b.bn and self.placement == "after":
                self._bn_backward(b, d)
                _activation_grad(self.activation, b.z, d, b.scratch, b.mask)
            else:
                a = b.y if b.bn else b.z
                _activation_grad(self.activation, a, d, b.scratch, b.mask)
                if b.bn:
                    self._bn_backward(b, d)
            h = self.blocks[i - 1].out if i else self.xb
            np.matmul(d.transpose(0, 2, 1), h, out=b.gw)
            if b.gbias is not None:
                np.add.reduce(d, axis=-2, out=b.gbias)
            if i:
                np.matmul(d, b.w, out=self.blocks[i - 1].d)

    def _bn_backward(self, b: _Block, d: Array) -> None:
        """``F.batchnorm_backward(overwrite=True)`` in place on d; fills dgamma and dbeta."""
        neg_inv_m = d.dtype.type(-1.0 / d.shape[-2])
        dbeta = _batch_sum(d, b.dbeta)
        sdx = _batch_dot(d, b.xc, b.scratch, b.sdx2d)
        np.multiply(sdx, b.inv_std, out=b.ggamma)
        kv = np.multiply(b.scale, b.inv_std, out=b.kvec)
        kv *= b.inv_std
        kv *= sdx
        kv *= neg_inv_m
        c = np.multiply(b.scale, dbeta, out=b.cvec)
        c *= neg_inv_m
        d *= b.scale
        d += np.multiply(b.xc, kv, out=b.scratch)
        d += c
        b.gbeta[...] = dbeta

    def update(self, t: int, rows: Sequence[int]) -> None:
        """One SGD step for each of the given runs with its own rate, momentum and weight decay,
        as ``bnviz.optim.SGD.step`` takes it: the same BLAS axpy calls on the same vectors."""
        axpy, tmp = self._axpy, self._tmp
        for k in rows:
            cfg = self.runs[k].cfg
            lr = learning_rate(t, cfg.lr, cfg.schedule, cfg.lr_decay, cfg.decay_steps)
            p, g = self.params[k], self.grads[k]
            if cfg.weight_decay:
                tmp[...] = g
                axpy(p, tmp, a=cfg.weight_decay)
                g = tmp
            if cfg.momentum:
                v = self.velocity[k]
                if t == 0:
                    v[...] = g
                else:
                    v *= cfg.momentum
                    v += g
                g = v
            axpy(g, p, a=-lr)

    # ------------------------------------------------------------------ runs in and out

    def sync(self, k: int, grads: bool = False) -> None:
        """Copy row k of the stack into its run's model (parameters and BN statistics)."""
        model = self.runs[k].model
        model.flat_params[...] = self.params[k]
        if grads:
            model.flat_grads[...] = self.grads[k]
        for b in self.blocks:
            if b.bn:
                bn = model.layers[f"bn{b.index}"]
                bn.running_mean[...] = b.running_mean[k, 0]
                bn.running_var[...] = b.running_var[k, 0]
                bn.num_batches_tracked = self.batches_tracked

    def keep(self, rows: Array) -> None:
        """Drop every run not in ``rows`` (the others are done) and rebuild for the new K."""
        self.runs = [self.runs[k] for k in rows]
        self.params = self.params[rows]
        self.grads = np.zeros_like(self.params)
        if self.velocity is not None:
            self.velocity = self.velocity[rows]
        for b in self.blocks:
            if b.bn:
                b.running_mean = b.running_mean[rows]
                b.running_var = b.running_var[rows]
        self._bind()


def _batches(samplers: dict[int, BatchSampler], runs: list[Run], n: int) -> Array:
    """The next n batches of every run as (n, K, m) row indices. Runs that share a seed share
    one batch stream (their own samplers would repeat it), advanced once per step."""
    streams: dict[int, Array] = {}
    for run in runs:
        if run.cfg.seed not in streams:
            streams[run.cfg.seed] = samplers[run.cfg.seed].take(n)
    return np.stack([streams[run.cfg.seed] for run in runs], axis=1)


def _train_stack(runs: list[Run], progress: Progress | None) -> None:
    """Advance the runs to the end together (the stacked ``Run.run``), in progress chunks."""
    stack = NumpyStack(runs)
    cfg = runs[0].cfg
    total = cfg.steps
    chunk = max(1, min(500, total // 100))
    samplers: dict[int, BatchSampler] = {}
    for run in runs:
        samplers.setdefault(run.cfg.seed, run.sampler)
    t = 0
    if progress:
        progress(0, total)
    with single_threaded_blas(), np.errstate(all="ignore"):
        while t < total and stack.k:
            t0 = time.perf_counter()
            members = list(stack.runs)
            n = min(chunk, total - t)
            idx = _batches(samplers, stack.runs, n)
            for j in range(n):
                loss = stack.forward(idx[j])
                # Run.accept keeps each loss or ends its run; an ended run is snapshotted now
                # and dropped from the stack after this step
                live = [k for k, run in enumerate(stack.runs) if run.accept(t, float(loss[k]))]
                if len(live) < stack.k:
                    for k in sorted(set(range(stack.k)) - set(live)):
                        stack.sync(k)
                        stack.runs[k].t = t
                    if not live:
                        stack.keep(live)
                        break
                stack.backward()
                recording = runs[0].is_record_step(t + 1)
                if recording:
                    before = {}
                    for k in live:
                        stack.sync(k, grads=True)
                        model = stack.runs[k].model
                        before[k] = grad_norms(model), hidden_weights(model)
                stack.update(t, live)
                t += 1
                if recording:
                    for k in live:
                        stack.sync(k)
                        norms, weights = before[k]
                        run = stack.runs[k]
                        run.recorder.record(t, norms, update_ratios(run.model, weights))
                if len(live) < stack.k:
                    stack.keep(live)
                    idx = idx[:, live]
            share = (time.perf_counter() - t0) / len(members)
            for run in members:
                run.seconds += share
            for run in stack.runs:
                run.t = t
            if progress:
                progress(max(r.t for r in runs), total)
    for k in range(stack.k):
        stack.sync(k)


def stack_size(cfg: TrainConfig) -> int:
    """The most runs one stack should hold: past about STACK_ELEMENTS values per activation
    buffer (16 paper nets at batch 60) the buffers fall out of cache and a step costs more per
    net than two smaller stacks do."""
    return max(1, STACK_ELEMENTS // (cfg.batch_size * max(cfg.hidden)))


def sweep_stacks(
    configs: list[TrainConfig], data: Dataset, progress: Progress | None = None
) -> list[History]:
    """Compatible configs as stacks of at most ``stack_size`` runs, one after the other (each
    takes every n-th config, so early divergences spread out); progress counts their steps."""
    n = -(-len(configs) // stack_size(configs[0]))
    steps = configs[0].steps
    out: list[History | None] = [None] * len(configs)
    for j in range(n):

        def report(done: int, total: int, offset: int = j * steps) -> None:
            if progress:
                progress(offset + done, n * steps)

        with single_threaded_blas():  # each Run records step 0 as it is built
            runs = [Run(cfg, data) for cfg in configs[j::n]]
        _train_stack(runs, report)
        out[j::n] = [run.history() for run in runs]
    return out


def sweep(configs: Sequence[TrainConfig], progress: Progress | None = None) -> list[History]:
    """Train compatible configs (see ``SWEPT``) as stacked arrays in this process; one History
    per config, equal to what ``train`` returns for it.

    ``progress(done, total)`` counts steps as ``train`` does (more than one stack, past
    ``stack_size`` runs, counts the steps of each in turn). ``History.seconds`` is each run's
    share of the time (the time of a chunk of steps over the runs in the stack).
    """
    configs = check_compatible(configs)
    return sweep_stacks(configs, load_data(configs[0]), progress)


# --------------------------------------------------------------------------- torch


class TorchStack:
    """The same K stacked nets as torch tensors on one device (CUDA when available), stepped
    with batched products and autograd (the sum of the K losses: each net's gradient is its
    own, the nets share nothing).

    Nothing leaves the device between progress chunks: divergence is decided on the device
    (a run that diverges keeps its parameters through masked updates; its NaNs stay in its own
    slice), and losses, parameters and flags come back per chunk and at record steps.
    """

    def __init__(self, runs: list[Run], device=None) -> None:
        import torch

        from bnviz.torch_ref import default_device, torch_dtype

        self.runs = runs
        cfg = runs[0].cfg
        self.cfg = cfg
        self.device = dev = default_device(device)
        self.dtype = torch_dtype(runs[0].model.dtype)
        model = runs[0].model
        self.n_hidden = model.n_hidden
        self.shapes = {key: value.shape for key, value in model.params.items()}
        k = len(runs)

        def tensor(array, dtype=None):
            return torch.tensor(np.ascontiguousarray(array), dtype=dtype or self.dtype, device=dev)

        self.params = {}
        for key, shape in self.shapes.items():
            stacked = np.stack([r.model.params[key] for r in runs])
            if len(shape) == 1:
                stacked = stacked[:, None, :]
            self.params[key] = tensor(stacked).requires_grad_(True)
        self.running = {}
        for name, _ in model.norm_layers:
            layers = [r.model.layers[name] for r in runs]
            self.running[name] = [
                tensor(np.stack([bn.running_mean for bn in layers])[:, None, :]),
                tensor(np.stack([bn.running_var for bn in layers])[:, None, :]),
            ]

        def column(values):
            return tensor(np.array(values, dtype=np.float64).reshape(k, 1, 1))

        self.momentum = column([r.cfg.momentum for r in runs])
        self.weight_decay = column([r.cfg.weight_decay for r in runs])
        self.use_momentum = any(r.cfg.momentum for r in runs)
        self.use_decay = any(r.cfg.weight_decay for r in runs)
        self.velocity = {key: torch.zeros_like(p) for key, p in self.params.items()}
        self.x = tensor(runs[0].x)
        self.y = torch.tensor(runs[0].y, dtype=torch.long, device=dev)
        self.active = torch.ones(k, dtype=torch.bool, device=dev)
        self.diverged_at = torch.full((k,), -1, dtype=torch.long, device=dev)
        self.limit = torch.full((k,), math.inf, dtype=torch.float64, device=dev)
        self.unset = torch.ones(k, dtype=torch.bool, device=dev)
        self.batches_tracked = 0

    def _bn(self, name: str, x, active):
        import torch

        gamma, beta = self.params[f"{name}.gamma"], self.params[f"{name}.beta"]
        m = x.shape[1]
        mu = x.mean(dim=1, keepdim=True)
        xc = x - mu
        var = (xc * xc).mean(dim=1, keepdim=True)
        y = xc * (gamma * torch.rsqrt(var + self.cfg.bn_eps)) + beta
        with torch.no_grad():
            f = self.cfg.bn_momentum
            f = f if f is not None else 1.0 / self.batches_tracked
            mean, var_run = self.running[name]
            mask = active.view(-1, 1, 1)
            mean.copy_(torch.where(mask, mean * (1.0 - f) + f * mu, mean))
            var_run.copy_(torch.where(mask, var_run * (1.0 - f) + (f * m / (m - 1)) * var, var_run))
        return y

    def _act(self, z):
        import torch

        name = self.cfg.activation
        if name == "sigmoid":
            return torch.sigmoid(z)
        if name == "tanh":
            return torch.tanh(z)
        if name == "relu":
            return torch.relu(z)
        return z

    def step(self, t: int, idx, losses_row) -> None:
        """One step of every net still running: forward, divergence, backward, masked SGD."""
        import torch
        import torch.nn.functional as TF

        cfg, P = self.cfg, self.params
        self.batches_tracked += 1
        active = self.active
        h = self.x[idx]
        for i in range(1, self.n_hidden + 1):
            z = torch.matmul(h, P[f"fc{i}.weight"].transpose(1, 2))
            if f"fc{i}.bias" in P:
                z = z + P[f"fc{i}.bias"]
            if cfg.batchnorm and cfg.placement == "before":
                z = self._bn(f"bn{i}", z, active)
            h = self._act(z)
            if cfg.batchnorm and cfg.placement == "after":
                h = self._bn(f"bn{i}", h, active)
        out = f"fc{self.n_hidden + 1}"
        logits = torch.matmul(h, P[f"{out}.weight"].transpose(1, 2)) + P[f"{out}.bias"]
        k, m, c = logits.shape
        y = self.y[idx]
        loss = TF.cross_entropy(logits.reshape(k * m, c), y.reshape(-1), reduction="none")
        loss = loss.view(k, m).mean(dim=1)
        with torch.no_grad():
            value = loss.detach().to(torch.float64)
            fresh = self.unset & torch.isfinite(value)
            self.limit = torch.where(
                fresh, DIVERGENCE_FACTOR * torch.clamp(value, min=1.0), self.limit
            )
            self.unset &= ~fresh
            ok = value <= self.limit
            self.diverged_at = torch.where(active & ~ok, t, self.diverged_at)
            self.active = active & ok
            losses_row.copy_(value)
        loss.sum().backward()

    def update(self, lr) -> None:
        """SGD with momentum and weight decay as torch.optim.SGD, per run, frozen runs masked."""
        import torch

        mask = self.active.view(-1, 1, 1)
        with torch.no_grad():
            for key, p in self.params.items():
                g = p.grad
                if self.use_decay:
                    g = g + self.weight_decay * p
                if self.use_momentum:
                    v = self.velocity[key]
                    v.mul_(self.momentum).add_(g)
                    g = v
                p.copy_(torch.where(mask, p - lr * g, p))
                p.grad = None

    def hidden_weights(self):
        return [self.params[f"fc{i}.weight"] for i in range(1, self.n_hidden + 1)]

    def to_host(self) -> tuple[dict[str, Array], dict[str, list[Array]]]:
        params = {key: p.detach().cpu().numpy() for key, p in self.params.items()}
        running = {name: [s.cpu().numpy() for s in stats] for name, stats in self.running.items()}
        return params, running

    def sync(self, k: int, params, running) -> None:
        model = self.runs[k].model
        for key, shape in self.shapes.items():
            model.params[key][...] = params[key][k].reshape(shape)
        for name, (mean, var) in running.items():
            bn = model.layers[name]
            bn.running_mean[...] = mean[k, 0]
            bn.running_var[...] = var[k, 0]
            bn.num_batches_tracked = self.batches_tracked


def sweep_torch(
    configs: Sequence[TrainConfig], progress: Progress | None = None, device=None
) -> list[History]:
    """``sweep`` with torch tensors, on CUDA when available (else CPU, or ``device``): the same
    runs, batches, optimizer, divergence rule and records; results equal to rounding."""
    from bnviz.torch_ref import single_threaded_torch

    configs = check_compatible(configs)
    data = load_data(configs[0])
    with single_threaded_blas(), single_threaded_torch():
        runs = [Run(cfg, data) for cfg in configs]
        _train_torch(runs, progress, device)
    return [run.history() for run in runs]


def _train_torch(runs: list[Run], progress: Progress | None, device) -> None:
    import torch

    stack = TorchStack(runs, device)
    cfg, dev = runs[0].cfg, stack.device
    total = cfg.steps
    chunk = max(1, min(500, total // 100))
    samplers: dict[int, BatchSampler] = {}
    for run in runs:
        samplers.setdefault(run.cfg.seed, run.sampler)
    k = len(runs)
    t = 0
    if progress:
        progress(0, total)
    while t < total:
        t0 = time.perf_counter()
        n = min(chunk, total - t)
        idx = torch.tensor(_batches(samplers, runs, n), device=dev)
        rates = [
            [
                learning_rate(s, r.cfg.lr, r.cfg.schedule, r.cfg.lr_decay, r.cfg.decay_steps)
                for r in runs
            ]
            for s in range(t, t + n)
        ]
        lrs = torch.tensor(rates, dtype=stack.dtype, device=dev).view(n, k, 1, 1)
        losses = torch.empty((n, k), dtype=torch.float64, device=dev)
        start = t
        for j in range(n):
            stack.step(t, idx[j], losses[j])
            recording = runs[0].is_record_step(t + 1)
            if recording:
                with torch.no_grad():
                    ws = stack.hidden_weights()
                    norms = torch.stack([torch.linalg.vector_norm(w.grad, dim=(1, 2)) for w in ws])
                    before = [w.detach().clone() for w in ws]
            stack.update(lrs[j])
            t += 1
            if recording:
                with torch.no_grad():
                    after = stack.hidden_weights()
                    denom = torch.stack([torch.linalg.vector_norm(w, dim=(1, 2)) for w in before])
                    diff = torch.stack(
                        [
                            torch.linalg.vector_norm(w1 - w0, dim=(1, 2))
                            for w0, w1 in zip(before, after, strict=True)
                        ]
                    )
                    ratios = torch.where(denom > 0, diff / denom, torch.nan)
                norms_h, ratios_h = norms.double().cpu().numpy(), ratios.double().cpu().numpy()
                live = stack.active.cpu().numpy()
                params, running = stack.to_host()
                with np.errstate(all="ignore"):
                    for r, run in enumerate(runs):
                        if live[r]:
                            stack.sync(r, params, running)
                            run.recorder.record(
                                t,
                                [float(v) for v in norms_h[:, r]],
                                [float(v) for v in ratios_h[:, r]],
                            )
        values = losses.cpu().numpy()
        ends = stack.diverged_at.cpu().numpy()
        for r, run in enumerate(runs):
            end = t if ends[r] < 0 else int(ends[r])
            if end > start:
                run.loss[start:end] = values[: end - start, r]
            if run.diverged_at is None:
                run.t = end
                if ends[r] >= 0:
                    run.diverged_at = end
        share = (time.perf_counter() - t0) / max(1, k)
        for run in runs:
            run.seconds += share
        if progress:
            progress(max(r.t for r in runs), total)
        if not bool(stack.active.any()):
            break
    params, running = stack.to_host()
    for r, run in enumerate(runs):
        stack.sync(r, params, running)
        if run.diverged_at is not None:  # its statistics stopped with its diverging forward
            for name in running:
                run.model.layers[name].num_batches_tracked = run.diverged_at + 1
