"""The same models in PyTorch (``to_torch``), and a torch engine that trains runs exactly as
``bnviz.engine`` does: the same initial weights, batches, noise and dropout draws, optimizer,
divergence rule and records, so its Histories agree with the fast engine's to rounding.

torch is imported only inside these functions (importing it costs seconds).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

import numpy as np

from bnviz import functional as F
from bnviz import nn
from bnviz.blas import single_threaded_blas
from bnviz.engine import Engine, drive
from bnviz.optim import learning_rate
from bnviz.train import TWIN_ARMS, Arms, arm_runs, new_runs

_TORCH_DTYPES = {np.dtype(np.float32): "float32", np.dtype(np.float64): "float64"}


def torch_dtype(dtype: Any):
    import torch

    return getattr(torch, _TORCH_DTYPES[np.dtype(dtype)])


@lru_cache(maxsize=1)
def _stream_modules():
    """torch modules for the layers that draw from bnviz's counter-based streams."""
    import torch

    class Noise(torch.nn.Module):
        """``nn.NoiseInjection``: the same draws, applied to a tensor."""

        def __init__(self, layer: nn.NoiseInjection) -> None:
            super().__init__()
            self.noise, self.keys, self.step = layer.noise, layer.keys, layer.step

        def forward(self, x):
            if not self.training:
                return x
            m, d = x.shape
            u_mu, u_sigma, v_m, v_s = F.noise_draws(self.keys, self.step, m, d)
            mu_t, sigma_t = F.noise_shift_scale(self.noise, u_mu, u_sigma)
            dtype = np.dtype(str(x.dtype).split(".")[-1])
            add = (mu_t + self.noise.r_mu * (2.0 * v_m - 1.0)).astype(dtype)
            scale = (sigma_t + self.noise.r_sigma * F.normal_quantile(v_s)).astype(dtype)
            self.step += 1
            as_tensor = lambda a: torch.from_numpy(a).to(x.device)  # noqa: E731
            return as_tensor(scale) * x + as_tensor(add)

    class Dropout(torch.nn.Module):
        """``nn.Dropout``: the same masks, applied to a tensor."""

        def __init__(self, layer: nn.Dropout) -> None:
            super().__init__()
            self.p, self.key, self.step = layer.p, layer.key, layer.step

        def forward(self, x):
            if not self.training or self.p == 0:
                return x
            m, d = x.shape
            dtype = np.dtype(str(x.dtype).split(".")[-1])
            u = F.dropout_uniforms(self.key, self.step, m, d)
            mask = ((u < 1.0 - self.p) / (1.0 - self.p)).astype(dtype)
            self.step += 1
            return x * torch.from_numpy(mask).to(x.device)

    return Noise, Dropout


def _torch_layer(layer: nn.Module, dtype):
    import torch

    if isinstance(layer, nn.Linear):
        t = torch.nn.Linear(
            layer.in_features, layer.out_features, bias=layer.bias is not None, dtype=dtype
        )
    elif isinstance(layer, nn.BatchNorm1d):
        t = torch.nn.BatchNorm1d(
            layer.num_features, eps=layer.eps, momentum=layer.momentum, dtype=dtype
        )
    elif isinstance(layer, nn.LayerNorm):
        t = torch.nn.LayerNorm(layer.num_features, eps=layer.eps, dtype=dtype)
    elif isinstance(layer, nn.GroupNorm):
        t = torch.nn.GroupNorm(layer.groups, layer.num_features, eps=layer.eps, dtype=dtype)
    elif isinstance(layer, nn.NoiseInjection):
        t = _stream_modules()[0](layer)
    elif isinstance(layer, nn.Dropout):
        t = _stream_modules()[1](layer)
    elif isinstance(layer, nn.Activation):
        t = {
            "sigmoid": torch.nn.Sigmoid,
            "tanh": torch.nn.Tanh,
            "relu": torch.nn.ReLU,
            "linear": torch.nn.Identity,
        }[layer.name]()
    else:
        raise TypeError(f"no torch counterpart for {type(layer).__name__}")
    copy_into_torch(layer, t)
    return t.train(layer.training)


def copy_into_torch(layer: nn.Module, t) -> None:
    """Copy a bnviz layer's parameters and buffers into its torch counterpart."""
    import torch

    def put(dst, src):
        with torch.no_grad():
            dst.copy_(torch.from_numpy(np.ascontiguousarray(src)))

    if isinstance(layer, nn.Linear):
        put(t.weight, layer.weight)
        if layer.bias is not None:
            put(t.bias, layer.bias)
    elif isinstance(layer, nn.BatchNorm1d | nn.GroupNorm):
        put(t.weight, layer.params["gamma"])
        put(t.bias, layer.params["beta"])
        if isinstance(layer, nn.BatchNorm1d):
            put(t.running_mean, layer.running_mean)
            put(t.running_var, layer.running_var)
            t.num_batches_tracked.fill_(layer.num_batches_tracked)


def to_torch(model: nn.Module):
    """A ``torch.nn.Module`` with the same weights, buffers, counters and train/eval mode.

    An ``MLP`` becomes a ``torch.nn.Sequential`` whose children carry bnviz's layer names
    (``fc1``, ``bn1``, ``act1``, ...); a single layer becomes its torch counterpart.
    """
    import torch

    if isinstance(model, nn.MLP):
        dtype = torch_dtype(model.dtype)
        seq = torch.nn.Sequential(
            OrderedDict((name, _torch_layer(layer, dtype)) for name, layer in model.named_layers)
        )
        return seq.train(model.training)
    params = getattr(model, "params", {})
    dtype = torch_dtype(next(iter(params.values())).dtype) if params else torch.float64
    return _torch_layer(model, dtype)


def param_name(key: str) -> str:
    """bnviz's ``bn1.gamma`` is torch's ``bn1.weight``; ``beta`` is ``bias``."""
    layer, p = key.split(".")
    return f"{layer}.{ {'gamma': 'weight', 'beta': 'bias'}.get(p, p) }"


def from_torch(tmodel, model: nn.MLP, grads: bool = False) -> None:
    """Copy a torch twin's parameters, BN buffers and counters (and with ``grads`` its
    gradients) back into a bnviz MLP, in place."""
    import torch

    state = tmodel.state_dict()
    named = dict(tmodel.named_parameters())
    with torch.no_grad():
        for key in model.params:
            model.params[key][...] = state[param_name(key)].cpu().numpy()
            if grads:
                g = named[param_name(key)].grad
                model.grads[key][...] = 0 if g is None else g.cpu().numpy()
        for name, bn in model.norm_layers:
            bn.running_mean[...] = state[f"{name}.running_mean"].cpu().numpy()
            bn.running_var[...] = state[f"{name}.running_var"].cpu().numpy()
            bn.num_batches_tracked = int(state[f"{name}.num_batches_tracked"])
        for name, layer in model.named_layers:
            if isinstance(layer, nn.NoiseInjection | nn.Dropout):
                layer.step = getattr(tmodel, name).step


# --------------------------------------------------------------------------- torch engine


def default_device(device=None):
    """The device a torch run uses: the one asked for, else CUDA when there is one, else CPU."""
    import torch

    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class TorchEngine(Engine):
    """Each run's net as a torch module with ``torch.optim.SGD``, one step at a time."""

    def __init__(self, runs: Sequence[Any], device=None) -> None:
        import torch

        self.runs = list(runs)
        self.device = default_device(device)
        self.tmodels, self.opts, self.data = [], [], []
        for run in self.runs:
            tmodel = to_torch(run.model).to(self.device)
            self.tmodels.append(tmodel)
            self.opts.append(
                torch.optim.SGD(
                    tmodel.parameters(),
                    lr=run.cfg.lr,
                    momentum=run.cfg.momentum,
                    weight_decay=run.cfg.weight_decay,
                )
            )
            self.data.append(
                (
                    torch.tensor(run.x, device=self.device),
                    torch.tensor(run.y, dtype=torch.long, device=self.device),
                )
            )
        self._losses: dict[int, Any] = {}
        self._last_rows = [np.empty(0, dtype=np.int64)] * len(self.runs)

    def forward_backward(self, t: int) -> list[int]:
        import torch
        import torch.nn.functional as TF

        ks = []
        for k in self.live:
            run, (tx, ty) = self.runs[k], self.data[k]
            rows = self._last_rows[k] = run.sampler.next()
            idx = torch.tensor(rows, device=self.device)
            out = TF.cross_entropy(self.tmodels[k](tx[idx]), ty[idx])
            if run.accept(t, out.item()):
                self.opts[k].zero_grad()
                out.backward()
                ks.append(k)
        return ks

    def update(self, t: int, ks: list[int]) -> None:
        for k in ks:
            cfg = self.runs[k].cfg
            for group in self.opts[k].param_groups:
                group["lr"] = learning_rate(t, cfg.lr, cfg.schedule, cfg.lr_decay, cfg.decay_steps)
            self.opts[k].step()
            self.runs[k].t = t + 1

    def sync(self, k: int, grads: bool = False) -> None:
        from_torch(self.tmodels[k], self.runs[k].model, grads)


@contextmanager
def single_threaded_torch():
    """One CPU thread for torch inside the block, for the reason in ``bnviz.blas``: on tiny
    matrices a thread pool costs more than it saves, and on a busy machine torch's spinning
    threads were measured here 10-20x slower than one thread."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def train_torch(cfg, progress=None, device=None):
    """``bnviz.train.train`` with PyTorch taking the steps."""
    (run,) = new_runs([cfg])
    with single_threaded_torch():
        drive(TorchEngine([run], device), progress)
    return run.history()


def train_arms_torch(base, arms, progress=None, device=None):
    """``bnviz.train.train_arms`` with PyTorch taking the steps."""
    runs = arm_runs(base, arms)
    with single_threaded_torch(), single_threaded_blas():
        drive(TorchEngine(runs, device), progress)
    return Arms({run.label: run.history() for run in runs})


def train_twins_torch(cfg, progress=None, device=None):
    """``bnviz.train.train_twins`` with PyTorch taking the steps."""
    return train_arms_torch(cfg, TWIN_ARMS, progress, device)
