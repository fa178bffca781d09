"""What the probes share: replaying a training step's forward on a copy of the net."""

from __future__ import annotations

import numpy as np

Array = np.ndarray


def nan_rows(max_records: int, *shape: int) -> Array:
    return np.full((max_records, *shape), np.nan)


def layer_index(key: str) -> int:
    """The hidden block a parameter belongs to: ``fc2.weight`` -> 2, ``bn1.gamma`` -> 1."""
    name = key.split(".")[0]
    return int("".join(ch for ch in name if ch.isdigit()))


def replay_loss(net, x: Array, y: Array, step: int) -> float:
    """The train-mode loss of ``net`` on the batch of training step ``step``, with that step's
    noise and dropout draws and BN's batch statistics; running statistics and counters are
    left as they were, and ``net.grads`` hold the gradient afterwards."""
    net.train()
    with net.frozen_stats():
        for layer in net.stepped_layers():
            layer.step = step
        with np.errstate(all="ignore"):
            loss = net.loss(x, y)
            net.backward()
    return loss
