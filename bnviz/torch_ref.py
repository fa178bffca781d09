"""The same models in PyTorch: parity checks, and a torch engine (``train_torch``) that runs a
``TrainConfig`` exactly as ``bnviz.train.train`` does. torch is imported only here, and only when
one of these functions runs (importing it costs seconds).
"""

from __future__ import annotations

from collections import OrderedDict
from contextlib import contextmanager
from typing import Any

import numpy as np

from bnviz import nn
from bnviz.blas import single_threaded_blas
from bnviz.data import Dataset
from bnviz.train import (
    History,
    Progress,
    Run,
    TrainConfig,
    Twins,
    drive,
    load_data,
    twin_runs,
)

_TORCH_DTYPES = {np.dtype(np.float32): "float32", np.dtype(np.float64): "float64"}


def torch_dtype(dtype: Any):
    import torch

    return getattr(torch, _TORCH_DTYPES[np.dtype(dtype)])


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
    elif isinstance(layer, nn.Dropout):
        t = torch.nn.Dropout(layer.p)
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
    elif isinstance(layer, nn.BatchNorm1d | nn.LayerNorm):
        put(t.weight, layer.params["gamma"])
        put(t.bias, layer.params["beta"])
        if isinstance(layer, nn.BatchNorm1d):
            put(t.running_mean, layer.running_mean)
            put(t.running_var, layer.running_var)
            t.num_batches_tracked.fill_(layer.num_batches_tracked)


def to_torch(model: nn.Module):
    """A ``torch.nn.Module`` with the same weights, buffers and train/eval mode.

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


def from_torch(tmodel, model: nn.MLP) -> None:
    """Copy a torch twin's parameters and BN buffers back into a bnviz MLP, in place."""
    import torch

    state = tmodel.state_dict()
    with torch.no_grad():
        for key in model.params:
            model.params[key][...] = state[param_name(key)].cpu().numpy()
        for name, bn in model.norm_layers:
            bn.running_mean[...] = state[f"{name}.running_mean"].cpu().numpy()
            bn.running_var[...] = state[f"{name}.running_var"].cpu().numpy()
            bn.num_batches_tracked = int(state[f"{name}.num_batches_tracked"])


# --------------------------------------------------------------------------- torch engine


def default_device(device=None):
    """The device a torch run uses: the one asked for, else CUDA when there is one, else CPU."""
    import torch

    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class TorchRun(Run):
    """``bnviz.train.Run`` with the steps taken by PyTorch.

    The base class builds everything the two engines must share (initial weights, batch sampler,
    recorder, loss buffer), so a torch run sees the same batches as a numpy run by construction.
    The numpy model stays as the recorder's view of the net: it is overwritten from the torch
    twin before each record and at the end, never trained itself.
    """

    def __init__(
        self, cfg: TrainConfig, data: Dataset, model: nn.MLP | None = None, device=None
    ) -> None:
        import torch

        super().__init__(cfg, data, model)
        self.device = default_device(device)
        self.tmodel = to_torch(self.model).to(self.device)
        self.tx = torch.tensor(self.x, device=self.device)
        self.ty = torch.tensor(self.y, dtype=torch.long, device=self.device)
        self.topt = torch.optim.SGD(
            self.tmodel.parameters(),
            lr=cfg.lr,
            momentum=cfg.momentum,
            weight_decay=cfg.weight_decay,
        )
        self.hidden_w = [
            getattr(self.tmodel, f"fc{i}").weight for i in range(1, self.model.n_hidden + 1)
        ]

    def forward_loss(self, idx) -> float:
        import torch
        import torch.nn.functional as TF

        tidx = torch.tensor(idx, device=self.device)  # idx is a read-only view
        self._out = TF.cross_entropy(self.tmodel(self.tx[tidx]), self.ty[tidx])
        return self._out.item()

    def backward(self) -> None:
        self.topt.zero_grad()
        self._out.backward()

    def step(self, lr: float) -> None:
        for group in self.topt.param_groups:
            group["lr"] = lr
        self.topt.step()

    def grad_norms(self) -> list[float]:
        import torch

        return [float(torch.linalg.vector_norm(w.grad)) for w in self.hidden_w]

    def hidden_weights(self) -> list:
        return [w.detach().clone() for w in self.hidden_w]

    def update_ratios(self, before: list) -> list[float]:
        pairs = zip(before, self.hidden_w, strict=True)
        return [_update_ratio(w0, w1.detach()) for w0, w1 in pairs]

    def sync(self) -> None:
        from_torch(self.tmodel, self.model)

    def history(self) -> History:
        self.sync()
        return super().history()


def _update_ratio(w0, w1) -> float:
    """||W_after - W_before|| / ||W_before||, as ``bnviz.record.update_ratios`` computes it."""
    import torch

    denom = float(torch.linalg.vector_norm(w0))
    return float(torch.linalg.vector_norm(w1 - w0)) / denom if denom > 0 else float("nan")


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


def train_torch(cfg: TrainConfig, progress: Progress | None = None, device=None) -> History:
    """``bnviz.train.train`` with PyTorch taking the steps: same weights, batches, optimizer,
    divergence rule and records, so the two Histories agree to rounding."""
    with single_threaded_blas():  # Run records step 0 as it is built
        run = TorchRun(cfg, load_data(cfg), device=device)
    with single_threaded_torch():
        drive([run], progress)
    return run.history()


def train_twins_torch(cfg: TrainConfig, progress: Progress | None = None, device=None) -> Twins:
    """``bnviz.train.train_twins`` with PyTorch taking the steps."""
    plain, bn = twin_runs(cfg, TorchRun, device=device)
    with single_threaded_torch():
        drive([plain, bn], progress)
    return Twins(plain.history(), bn.history())
