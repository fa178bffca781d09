"""Internal covariate shift as gradient change: Santurkar et al. (2018), Definition 2.1.

For hidden layer i at step t: G is the gradient of the loss w.r.t. W_i on batch t, and G' the
same gradient on the same batch after layers 1..i-1 have taken their step-t update (layers
i and above, and the batch, unchanged). If what layer i receives did not shift, G' = G:
||G - G'|| = 0 and cos(G, G') = 1. Layer 1 has nothing below it, so G' = G there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bnviz.measure.common import layer_index, nan_rows, replay_loss

Array = np.ndarray


@dataclass
class ICSRecord:
    grad_change: Array  # (R, L) ||G - G'|| per hidden layer
    grad_cos: Array  # (R, L) cos(G, G')
    grad_norm: Array  # (R, L) ||G||


def gradient_change(before, after, x: Array, y: Array, step: int) -> tuple[Array, Array, Array]:
    """(||G - G'||, cos(G, G'), ||G||) of every hidden layer's weight, for the step taken from
    the net ``before`` to the net ``after`` on the batch (x, y)."""
    n = before.n_hidden
    change, cos, norm = np.empty(n), np.empty(n), np.empty(n)
    net = before.clone()
    replay_loss(net, x, y, step)
    grads = {i: net.grads[f"fc{i}.weight"].astype(np.float64) for i in range(1, n + 1)}
    for i in range(1, n + 1):
        net = before.clone()
        for key, value in after.params.items():
            if layer_index(key) < i:
                net.params[key][...] = value
        replay_loss(net, x, y, step)
        g, g2 = grads[i].ravel(), net.grads[f"fc{i}.weight"].astype(np.float64).ravel()
        norm[i - 1] = np.linalg.norm(g)
        change[i - 1] = np.linalg.norm(g - g2)
        denom = norm[i - 1] * np.linalg.norm(g2)
        cos[i - 1] = float(g @ g2) / denom if denom > 0 else np.nan
    return change, cos, norm


class ICSProbe:
    name = "ics"

    def __init__(self, cfg, data, max_records: int) -> None:
        n = len(cfg.hidden)
        self.rec = ICSRecord(*(nan_rows(max_records, n) for _ in range(3)))

    def measure(self, r: int, model, ctx) -> None:
        if ctx is None:
            return
        change, cos, norm = gradient_change(ctx.before, model, ctx.x, ctx.y, ctx.step)
        self.rec.grad_change[r], self.rec.grad_cos[r], self.rec.grad_norm[r] = change, cos, norm

    def result(self, n: int) -> ICSRecord:
        return ICSRecord(**{k: v[:n] for k, v in vars(self.rec).items()})
