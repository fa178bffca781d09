"""Many runs at once in PyTorch: ``bnviz.sweep`` with torch tensors on one device (CUDA when
available), the same runs, batches, optimizer, divergence rule and records, results equal to
rounding. Plain and BN nets (the nets a learning-rate sweep trains).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import numpy as np

from bnviz.blas import single_threaded_blas
from bnviz.data import BatchSampler
from bnviz.engine import DIVERGENCE_FACTOR
from bnviz.optim import learning_rate
from bnviz.reference.torch import default_device, single_threaded_torch, torch_dtype
from bnviz.sweep import check_compatible
from bnviz.train import History, Progress, Run, TrainConfig, new_runs

Array = np.ndarray


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
    configs = check_compatible(configs)
    for cfg in configs[:1]:
        if cfg.norm not in ("none", "batch") or cfg.bn_noise or cfg.dropout:
            raise ValueError("the stacked torch engine trains plain and BN nets only")
    runs = new_runs(configs)
    with single_threaded_blas(), single_threaded_torch():
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
        streams = {seed: s.take(n) for seed, s in samplers.items()}
        batches = np.stack([streams[run.cfg.seed] for run in runs], axis=1)
        idx = torch.tensor(batches, device=dev)
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
