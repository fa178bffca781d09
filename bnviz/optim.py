"""Stochastic gradient descent with PyTorch's conventions, and learning-rate schedules."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.linalg.blas import get_blas_funcs

Array = np.ndarray
SCHEDULES = ("constant", "exp")


class SGD:
    """SGD with momentum and L2 weight decay, exactly as ``torch.optim.SGD`` (dampening 0):

        g = grad + weight_decay * p
        v = g on the first step, then v = momentum * v + g
        p = p - lr * v

    ``params`` and ``grads`` are parallel lists of arrays updated in place; an ``MLP`` passes its
    single flat parameter and gradient arrays, so a step is a few vector operations in all,
    each a BLAS axpy (y += a x) in place.
    """

    def __init__(
        self,
        params: Sequence[Array],
        grads: Sequence[Array],
        lr: float,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
    ) -> None:
        if len(params) != len(grads):
            raise ValueError("params and grads must pair up")
        for p, g in zip(params, grads, strict=True):
            if p.shape != g.shape or not (p.flags.c_contiguous and g.flags.c_contiguous):
                raise ValueError("each param and its grad must be C-contiguous, of equal shape")
        # BLAS axpy updates y in place only when y is a contiguous 1-D array (otherwise it
        # returns an updated copy and the step is lost), so the step works on flat views
        self.params = [p.reshape(-1) for p in params]
        self.grads = [g.reshape(-1) for g in grads]
        self.lr, self.momentum, self.weight_decay = lr, momentum, weight_decay
        self._velocity: list[Array] | None = None
        self._scratch = [np.empty_like(p) for p in self.params]
        self._axpy = [get_blas_funcs("axpy", (p,)) for p in self.params]

    def step(self, lr: float | None = None) -> None:
        lr = self.lr if lr is None else lr
        first = self.momentum and self._velocity is None
        if first:
            self._velocity = [np.empty_like(p) for p in self.params]
        velocity = self._velocity or [None] * len(self.params)
        for p, g, v, tmp, axpy in zip(
            self.params, self.grads, velocity, self._scratch, self._axpy, strict=True
        ):
            if self.weight_decay:
                tmp[...] = g
                axpy(p, tmp, a=self.weight_decay)
                g = tmp
            if v is not None:
                if first:
                    v[...] = g
                else:
                    v *= self.momentum
                    v += g
                g = v
            axpy(g, p, a=-lr)


def learning_rate(
    step: int, lr: float, schedule: str = "constant", decay: float = 0.1, decay_steps: int = 1000
) -> float:
    """The rate at a step: constant, or exponential decay lr * decay^(step / decay_steps)."""
    if schedule == "constant":
        return lr
    if schedule == "exp":
        return lr * decay ** (step / decay_steps)
    raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
