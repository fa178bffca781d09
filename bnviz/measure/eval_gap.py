"""Train mode against eval mode: the same net scored with BN's batch statistics (as in
training) and with its running statistics (as at inference), on the training split.

The batches are the training split in a fixed shuffled order, cut into the run's batch size
(the rows past the last whole batch are left out of both scores); dropout and noise are off
in both (only the statistics differ). For a net without BN the two
agree by construction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bnviz import functional as F
from bnviz.measure.common import nan_rows

Array = np.ndarray


@dataclass
class EvalGapRecord:
    acc_batch: Array  # (R,) accuracy with batch statistics
    acc_running: Array  # (R,) accuracy with running statistics (eval mode)
    loss_batch: Array  # (R,)
    loss_running: Array  # (R,)


def score(model, x: Array, y: Array, batch: int | None) -> tuple[float, float]:
    """(accuracy, mean loss): BN with batch statistics over batches of ``batch`` rows, or in
    eval mode (running statistics) with ``batch`` None; dropout and noise off."""
    was_training = model.training
    model.eval()
    with model.frozen_stats(), np.errstate(all="ignore"):
        if batch is None:
            logits = model.forward(x)
            n = len(y)
        else:
            for _, bn in model.norm_layers:
                bn.train()
            n = len(y) // batch * batch
            logits = np.concatenate([model.forward(x[i : i + batch]) for i in range(0, n, batch)])
    model.train(was_training)
    return float(np.mean(logits.argmax(axis=1) == y[:n])), F.cross_entropy(logits, y[:n])


class EvalGapProbe:
    name = "eval_gap"

    def __init__(self, cfg, data, max_records: int) -> None:
        order = np.random.default_rng([cfg.seed, 4]).permutation(len(data.y_train))
        order = order[: len(order) // cfg.batch_size * cfg.batch_size]  # whole batches only
        self.x = np.asarray(data.x_train[order], dtype=np.dtype(cfg.dtype))
        self.y = data.y_train[order]
        self.batch = cfg.batch_size
        self.rec = EvalGapRecord(*(nan_rows(max_records) for _ in range(4)))

    def measure(self, r: int, model, ctx) -> None:
        rec = self.rec
        rec.acc_batch[r], rec.loss_batch[r] = score(model, self.x, self.y, self.batch)
        rec.acc_running[r], rec.loss_running[r] = score(model, self.x, self.y, None)

    def result(self, n: int) -> EvalGapRecord:
        return EvalGapRecord(**{k: v[:n] for k, v in vars(self.rec).items()})
