"""How much BN's batch statistics vary from batch to batch, as the net trains.

At every record, the net (weights frozen) sees ``N_BATCHES`` fixed training batches of the
run's batch size in train mode; for every unit of every BN layer we keep the mean and the
standard deviation over those batches of mu_B and of sigma_B^2. Their spread is the noise BN
feeds into training, ~ 1/sqrt(m) for the mean; their average, the population value.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bnviz.measure.common import nan_rows

Array = np.ndarray
N_BATCHES = 16


@dataclass
class BatchStatsRecord:
    mu_mean: Array  # (R, L, D) over batches, of each unit's batch mean
    mu_std: Array  # (R, L, D)
    var_mean: Array  # (R, L, D) of each unit's biased batch variance
    var_std: Array  # (R, L, D)


def batch_statistics(model, x: Array, rows: Array) -> tuple[Array, Array]:
    """Per BN layer, the batch means and variances over the batches ``rows`` (B, m):
    arrays (L, B, D), the net in train mode with its running statistics untouched."""
    was_training = model.training
    model.train()
    mus, vars_ = [], []
    with model.frozen_stats(), np.errstate(all="ignore"):
        for batch in rows:
            model.forward(x[batch])
            mus.append([bn.batch_mean.astype(np.float64) for _, bn in model.norm_layers])
            vars_.append([bn.batch_var.astype(np.float64) for _, bn in model.norm_layers])
    model.train(was_training)
    return np.asarray(mus).transpose(1, 0, 2), np.asarray(vars_).transpose(1, 0, 2)


class BatchStatsProbe:
    name = "batch_stats"

    def __init__(self, cfg, data, max_records: int) -> None:
        n_train = len(data.y_train)
        rng = np.random.default_rng([cfg.seed, 3])
        self.rows = np.stack(
            [rng.choice(n_train, cfg.batch_size, replace=False) for _ in range(N_BATCHES)]
        )
        self.x = np.asarray(data.x_train, dtype=np.dtype(cfg.dtype))
        layers = len(cfg.hidden) if cfg.norm == "batch" else 0
        width = max(cfg.hidden)
        self.rec = BatchStatsRecord(*(nan_rows(max_records, layers, width) for _ in range(4)))

    def measure(self, r: int, model, ctx) -> None:
        if not model.norm_layers:
            return
        mu, var = batch_statistics(model, self.x, self.rows)
        d = mu.shape[2]
        self.rec.mu_mean[r, :, :d], self.rec.mu_std[r, :, :d] = mu.mean(axis=1), mu.std(axis=1)
        self.rec.var_mean[r, :, :d] = var.mean(axis=1)
        self.rec.var_std[r, :, :d] = var.std(axis=1)

    def result(self, n: int) -> BatchStatsRecord:
        return BatchStatsRecord(**{k: v[:n] for k, v in vars(self.rec).items()})
