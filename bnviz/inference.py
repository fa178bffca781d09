"""BN at inference time: population statistics (the paper's Algorithm 2), recalibration, and
folding BN into the neighbouring Linear layer so the deployed net has no BN at all."""

from __future__ import annotations

import numpy as np

from bnviz import functional as F
from bnviz.nn import MLP, BatchNorm1d

Array = np.ndarray


def population_stats(
    model: MLP, x: Array, batch_size: int = 60, seed: int | None = 0
) -> dict[str, tuple[Array, Array]]:
    """Per BN layer, E[x] = mean over batches of mu_B and Var[x] = m/(m-1) mean of sigma_B^2,
    over mini-batches of size m covering the data (Algorithm 2, steps 8-10).

    BN runs in training mode (each layer sees the batch-normalized outputs of the layers
    below, as during training); dropout and noise run as at inference (off), since these are
    the statistics eval mode will use; running statistics and parameters are left untouched.
    With a seed the rows are shuffled first, so class-sorted data still gives mixed batches;
    the last incomplete batch is dropped so every batch has m rows.
    """
    m = int(batch_size)
    n = len(x)
    if not 2 <= m <= n:
        raise ValueError(f"batch_size must be in [2, {n}] for {n} examples; got {batch_size}")
    order = np.random.default_rng(seed).permutation(n) if seed is not None else np.arange(n)
    bns = model.norm_layers
    sums = {name: [0.0, 0.0] for name, _ in bns}
    n_batches = n // m
    was_training = model.training
    model.eval()
    for _, bn in bns:
        bn.train()
    with model.frozen_stats():
        for b in range(n_batches):
            model.forward(x[order[b * m : (b + 1) * m]])
            for name, bn in bns:
                sums[name][0] = sums[name][0] + bn.batch_mean.astype(np.float64)
                sums[name][1] = sums[name][1] + bn.batch_var.astype(np.float64)
    model.train(was_training)
    return {
        name: (s_mu / n_batches, s_var / n_batches * m / (m - 1))
        for name, (s_mu, s_var) in sums.items()
    }


def recalibrate(model: MLP, x: Array, batch_size: int = 60, seed: int | None = 0) -> MLP:
    """Replace every BN layer's running statistics by population statistics over x, in place.

    The fix for statistics that no longer describe the data: after a change of batch order,
    after dropout shifted the variance, or when running averages lag behind fast training.
    """
    stats = population_stats(model, x, batch_size, seed)
    for name, bn in model.norm_layers:
        mean, var = stats[name]
        bn.running_mean[...] = mean
        bn.running_var[...] = var
    return model


def bn_affine(bn: BatchNorm1d) -> tuple[Array, Array]:
    """The inference transform as y = s * x + t with s = gamma / sqrt(Var + eps) and
    t = beta - s * E[x]."""
    s = bn.gamma / np.sqrt(bn.running_var + bn.eps)
    return s, bn.beta - s * bn.running_mean


def fold_batchnorm(model: MLP) -> MLP:
    """A BN-free MLP, in eval mode, that computes what ``model`` computes in eval mode.

    BN before the nonlinearity folds into the Linear before it: W' = s W (row-wise),
    b' = s b + t. BN after the nonlinearity folds into the Linear after it:
    W' = W s (column-wise), b' = b + W t.
    """
    if not model.batchnorm:
        raise ValueError("the model has no BatchNorm to fold")
    cfg = dict(model.config, norm="none", noise=0.0, dropout=0.0)
    folded = MLP(**cfg)
    for key, value in model.params.items():
        if key in folded.params:
            folded.params[key][...] = value
    for name, bn in model.norm_layers:
        i = int(name[2:])
        s, t = bn_affine(bn)
        if model.placement == "before":
            w = folded.params[f"fc{i}.weight"]
            b = folded.params[f"fc{i}.bias"]
            b[...] = t + (s * model.params[f"fc{i}.bias"] if f"fc{i}.bias" in model.params else 0)
            w *= s[:, None]
        else:
            w = folded.params[f"fc{i + 1}.weight"]
            b = folded.params[f"fc{i + 1}.bias"]
            b += w @ t
            w *= s[None, :]
    return folded.eval()


def batch_stats_forward(model: MLP, x: Array) -> tuple[Array, dict[str, Array]]:
    """The logits and every layer's output (by name) when each BN layer normalizes x with x's
    own statistics, as in training: what a net left in train mode predicts. Running
    statistics and parameters are untouched; dropout and noise are off, as at inference.

    Any number of rows, unlike a train-mode ``BatchNorm1d``: a single row is its own batch
    mean, so x - mu_B = 0 and every BN output is exactly beta, whatever the input.
    """
    was_training = model.training
    model.eval()
    trace = {}
    try:
        for name, layer in model.named_layers:
            if isinstance(layer, BatchNorm1d):
                x = F.batchnorm_forward(x, layer.gamma, layer.beta, layer.eps)[0]
            else:
                x = layer.forward(x)
            trace[name] = x
    finally:
        model.train(was_training)
    return x, trace
