"""Every training step's BN batch statistics, kept: what BN's running averages average.

The engine keeps only BN's running averages; each step's batch mean and variance live in its
buffers until the next step. ``train_traced`` takes the steps one at a time and keeps them: per
BN run, the mean and the biased variance of every unit of every BN layer over that step's
mini-batch. From them ``running_average`` replays any running average, at any momentum, as
``nn.BatchNorm1d`` keeps it; an ``on_record(label, step, model)`` callback sees each run's net
at its record steps (the weights as they are then), e.g. to measure the statistics of the
current weights on the whole training set. The training is the engine's (``FastEngine``): the
runs, records and histories equal ``train_arms``'s.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bnviz import engine, fast
from bnviz.blas import single_threaded_blas
from bnviz.train import Arms, Run, TrainConfig, arm_runs

Array = np.ndarray
OnRecord = Callable[[str, int, Any], None]


@dataclass
class BatchTrace:
    """One run's BN batch statistics at every step it took (NaN after a divergence)."""

    mean: Array  # (steps, L, D) mu_B of step t's mini-batch, per BN layer and unit (run dtype)
    var: Array  # (steps, L, D) its biased variance sigma_B^2 (1/m)
    batch_size: int

    @property
    def steps(self) -> int:
        return int(self.mean.shape[0])


def _stat_slices(e: engine.FastEngine) -> list[tuple[int, int, int]]:
    """(offset of mu_B, offset of sigma_B^2, width) in a buffer row, per hidden layer: where the
    kernels' BN forward (``fast._batchnorm``) leaves the batch's statistics."""
    rows = e.layout.hidden
    return [(int(r[fast.C_MU]), int(r[fast.C_VAR]), int(r[fast.C_OUT])) for r in rows]


def _engines(runs: Sequence[Run]) -> list[engine.FastEngine]:
    """One engine per stack of compatible runs, as ``engine.drive_all`` groups them."""
    groups: dict[str, list[Run]] = {}
    for run in runs:
        key = repr({k: v for k, v in run.cfg.as_dict().items() if k not in engine.SWEPT})
        groups.setdefault(key, []).append(run)
    return [engine.FastEngine(group) for group in groups.values()]


def train_traced(
    base: TrainConfig,
    arms: Mapping[str, Mapping[str, Any]],
    labels: Sequence[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
    on_record: OnRecord | None = None,
) -> tuple[Arms, dict[str, BatchTrace]]:
    """Train the arms (all, or those named in ``labels``) as ``train_arms`` does, from the
    same start, and keep every BN run's batch statistics of every step.

    Returns the arms' histories and, for each arm with BN, its ``BatchTrace``.
    ``progress(done, total)`` is called every few steps; ``on_record(label, step, model)`` at
    step 0 and after every record step, with the run's reference net brought up to date.
    """
    runs = [run for run in arm_runs(base, arms) if labels is None or run.label in labels]
    if not runs:
        raise ValueError(f"labels must name arms among {', '.join(arms)}; got {labels!r}")
    engines = _engines(runs)
    total = max(run.cfg.steps for run in runs)
    traces: dict[str, BatchTrace] = {}
    slots = []  # (engine, k, label, slices)
    for e in engines:
        slices = _stat_slices(e)
        for k, run in enumerate(e.runs):
            if run.cfg.norm == "batch":
                shape = (run.cfg.steps, len(slices), max(d for _, _, d in slices))
                traces[run.label] = BatchTrace(
                    np.full(shape, np.nan, dtype=e.P.dtype),
                    np.full(shape, np.nan, dtype=e.P.dtype),
                    run.cfg.batch_size,
                )
                slots.append((e, k, run.label, slices))
    if on_record:
        for run in runs:
            on_record(run.label, 0, run.model)
    chunk = max(1, min(500, total // 100))
    if progress:
        progress(0, total)
    with single_threaded_blas(), np.errstate(all="ignore"):
        for t in range(total):
            for e in engines:
                live = [e.runs[k] for k in e.live]
                if not live:
                    continue
                start = time.perf_counter()
                record = any(run.is_record_step(t + 1) for run in live)
                if record:
                    e.record_step(t)
                else:
                    e.steps(t, 1)
                share = (time.perf_counter() - start) / len(live)
                for run in live:
                    run.seconds += share
                if record and on_record:
                    for run in live:
                        if run.t == t + 1:
                            on_record(run.label, t + 1, run.model)
            for e, k, label, slices in slots:
                if e.runs[k].t == t + 1:  # the step was taken (not diverged, not done)
                    trace, row = traces[label], e.B[k]
                    for li, (om, ov, d) in enumerate(slices):
                        trace.mean[t, li, :d] = row[om : om + d]
                        trace.var[t, li, :d] = row[ov : ov + d]
            if progress and ((t + 1) % chunk == 0 or t + 1 == total):
                progress(t + 1, total)
    for e in engines:
        for k in range(len(e.runs)):
            e.sync(k)
    return Arms({run.label: run.history() for run in runs}), traces


def running_average(
    batch_mean: Array,
    batch_var: Array,
    batch_size: int,
    momentum: float | None,
    init_mean: float = 0.0,
    init_var: float = 1.0,
) -> tuple[Array, Array]:
    """BN's running mean and variance after every step, replayed from the batch statistics
    (steps, ...) as ``nn.BatchNorm1d`` keeps them: running = (1 - f) running + f batch, with
    f = momentum (PyTorch's convention) or f = 1/t for ``momentum=None`` (the cumulative
    average), the variance entering unbiased, sigma_B^2 m/(m - 1). They start at 0 and 1."""
    if momentum is not None and not 0 < momentum <= 1:
        raise ValueError(f"momentum must be in (0, 1], or None; got {momentum!r}")
    m = int(batch_size)
    if m < 2:
        raise ValueError(f"batch_size must be at least 2; got {batch_size}")
    mu = np.asarray(batch_mean, dtype=np.float64)
    var = np.asarray(batch_var, dtype=np.float64) * (m / (m - 1))
    out_mean, out_var = np.empty_like(mu), np.empty_like(var)
    rm = np.full(mu.shape[1:], init_mean, dtype=np.float64)
    rv = np.full(mu.shape[1:], init_var, dtype=np.float64)
    for t in range(len(mu)):
        f = momentum if momentum is not None else 1.0 / (t + 1)
        rm = (1.0 - f) * rm + f * mu[t]
        rv = (1.0 - f) * rv + f * var[t]
        out_mean[t], out_var[t] = rm, rv
    return out_mean, out_var
