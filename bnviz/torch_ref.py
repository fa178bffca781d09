"""The same models in PyTorch, for parity checks. torch is imported only here, and only when
one of these functions runs (importing it costs seconds)."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np

from bnviz import nn

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
