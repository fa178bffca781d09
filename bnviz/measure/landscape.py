"""The loss landscape along the gradient: Santurkar et al. (2018), Section 3.2 and Figure 4.

At step t, with theta the weights and g the step's gradient on its batch, move to
theta - eta g for a range of eta (``TrainConfig.landscape`` times the step's learning rate)
and measure, on the same batch:

- the loss there (its range over eta: "loss variation");
- ||grad(theta - eta g) - g||, how much the gradient changes ("gradient predictiveness": the
  smaller, the better the gradient here predicts the gradient there);
- the effective beta-smoothness, max over eta of ||grad(theta - eta g) - g|| / ||eta g||.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bnviz.measure.common import nan_rows, replay_loss

Array = np.ndarray
N_ETAS = 8


@dataclass
class LandscapeRecord:
    etas: Array  # (N,) multiples of the learning rate probed
    loss: Array  # (R, N) loss at theta - eta g
    grad_change: Array  # (R, N) ||grad(theta - eta g) - g||
    loss_range: Array  # (R,) max - min of the loss over eta
    predictiveness: Array  # (R,) max grad_change over eta
    beta_smoothness: Array  # (R,) max grad_change / ||eta g|| over eta


def along_gradient(
    before, grads: dict, x: Array, y: Array, step: int, etas: Array
) -> tuple[Array, Array, Array]:
    """Loss, gradient change and distance moved at theta - eta g for each eta (absolute)."""
    g = np.concatenate([grads[k].astype(np.float64).ravel() for k in before.params])
    losses, changes, moved = np.empty(len(etas)), np.empty(len(etas)), np.empty(len(etas))
    for j, eta in enumerate(etas):
        net = before.clone()
        for key, value in net.params.items():
            value -= value.dtype.type(eta) * grads[key]
        losses[j] = replay_loss(net, x, y, step)
        g2 = np.concatenate([net.grads[k].astype(np.float64).ravel() for k in net.params])
        changes[j] = np.linalg.norm(g2 - g)
        moved[j] = eta * np.linalg.norm(g)
    return losses, changes, moved


class LandscapeProbe:
    name = "landscape"

    def __init__(self, cfg, data, max_records: int) -> None:
        lo, hi = cfg.landscape
        n = max_records
        self.rec = LandscapeRecord(
            etas=np.geomspace(lo, hi, N_ETAS),
            loss=nan_rows(n, N_ETAS),
            grad_change=nan_rows(n, N_ETAS),
            loss_range=nan_rows(n),
            predictiveness=nan_rows(n),
            beta_smoothness=nan_rows(n),
        )

    def measure(self, r: int, model, ctx) -> None:
        if ctx is None:
            return
        etas = ctx.lr * self.rec.etas
        losses, changes, moved = along_gradient(ctx.before, ctx.grads, ctx.x, ctx.y, ctx.step, etas)
        rec = self.rec
        rec.loss[r], rec.grad_change[r] = losses, changes
        with np.errstate(all="ignore"):
            rec.loss_range[r] = np.max(losses) - np.min(losses)
            rec.predictiveness[r] = np.max(changes)
            rec.beta_smoothness[r] = np.max(np.where(moved > 0, changes / moved, np.nan))

    def result(self, n: int) -> LandscapeRecord:
        rec = self.rec
        return LandscapeRecord(
            etas=rec.etas, **{k: v[:n] for k, v in vars(rec).items() if k != "etas"}
        )
