"""Spreading training over worker processes: twin runs side by side, sweeps split into shares,
and the rules for when a second process is worth starting.

This sits above the engine: ``train`` and ``sweep`` train in the calling process and know
nothing of processes. Every function here takes an ``Executor`` (``bnviz.experiment``); with
none, or when the work is too small to pay for a process, it runs everything here. Results are
the same either way: each net is a pure function of its config and seed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from bnviz.data import Dataset
from bnviz.engine import FastEngine, drive
from bnviz.experiment import Executor, Progress
from bnviz.sweep import compatible_groups, sweep_stacks
from bnviz.train import (
    TWIN_ARMS,
    Arms,
    History,
    TrainConfig,
    Twins,
    arm_configs,
    arm_runs,
    load_data,
    train_arms,
)

# Below this much work (multiply-adds of all forward passes; 1e9 take ~0.1 s here) a second
# process does not pay: starting the kept worker costs ~0.4 s, so a job must be worth ~1 s
# before the first start; once the worker is up, ~0.05 s is enough (bench/bench_sweep.py).
MIN_PARALLEL_MACS = 5e9
MIN_PARALLEL_MACS_WARM = 5e8

Share = list[tuple[list[int], list[TrainConfig], Dataset]]  # one process's stacks of runs


def forward_macs(cfg: TrainConfig, n_features: int, n_classes: int) -> float:
    """Multiply-adds of one run's forward passes over all its steps: a proxy for its cost."""
    sizes = (n_features, *cfg.hidden, n_classes)
    per_example = sum(a * b for a, b in zip(sizes, sizes[1:], strict=False))
    return float(per_example) * cfg.batch_size * cfg.steps


# --------------------------------------------------------------------------- arms


def train_arm(
    base: TrainConfig, arms: Mapping[str, Mapping[str, Any]], label: str, progress=None
) -> History:
    """One arm of ``train_arms(base, arms)``, alone: the same start (every arm's net is built
    and the first arm's Linear weights copied, as there), so it equals that arm there."""
    (run,) = [run for run in arm_runs(base, arms) if run.label == label]
    drive(FastEngine([run]), progress)
    return run.history()


def arms(
    base: TrainConfig,
    arms: Mapping[str, Mapping[str, Any]],
    progress: Progress | None = None,
    executor: Executor | None = None,
) -> Arms:
    """``train_arms(base, arms)``; with an executor every arm trains in its own worker."""
    if executor is None:
        return train_arms(base, arms, progress)
    labels = list(arms)
    steps = max(cfg.steps for cfg in arm_configs(base, arms).values())
    done = [0] * len(labels)

    def relay(i: int, values: tuple) -> None:
        done[i] = values[0]
        if progress:
            progress(min(done), values[1])

    if progress:
        progress(0, steps)
    calls = [(train_arm, (base, dict(arms), label), {}) for label in labels]
    histories = executor.run_many(calls, relay)
    if progress:
        progress(steps, steps)
    return Arms(dict(zip(labels, histories, strict=True)))


def twins(
    cfg: TrainConfig, progress: Progress | None = None, executor: Executor | None = None
) -> Arms:
    """``train_twins(cfg)``; with an executor the two nets train at once in two workers."""
    pair = arms(cfg, TWIN_ARMS, progress, executor)
    return Twins(pair.plain, pair.bn)


# --------------------------------------------------------------------------- sweeps


def _run_share(share: Share, progress: Callable[[int], None] | None = None) -> list[History]:
    """Train each stack of a share in turn; progress counts net-steps over the whole share."""
    out: list[History] = []
    offset = 0
    for _, configs, _ in share:
        k = len(configs)

        def on_progress(
            done: int, total: int, offset: int = offset, k: int = k, steps: int = configs[0].steps
        ) -> None:
            if progress is not None:
                progress(offset + done * k * steps // total)

        out += sweep_stacks(configs, on_progress)
        offset += k * configs[0].steps
    return out


def plan_shares(configs: Sequence[TrainConfig], workers: int) -> list[Share]:
    """Split configs into per-process shares of compatible stacks: worker j takes every
    ``workers``-th run of every group, so each process gets the same mix of plain and BN nets,
    small and large rates (and their early divergences)."""
    groups = compatible_groups(configs)
    data = [load_data(configs[g[0]]) for g in groups]
    shares = []
    for j in range(max(1, workers)):
        share = [
            (g[j::workers], [configs[i] for i in g[j::workers]], d)
            for g, d in zip(groups, data, strict=True)
            if g[j::workers]
        ]
        if share:
            shares.append(share)
    return shares


def sweep(
    configs: Sequence[TrainConfig],
    progress: Progress | None = None,
    executor: Executor | None = None,
    workers: int = 2,
) -> list[History]:
    """Train any configs (grouped into compatible stacks); one History per config, in order,
    each equal to ``train``'s.

    With an executor and ``workers`` > 1 the configs split into shares, one per worker
    process, unless the work is small (under MIN_PARALLEL_MACS of work, MIN_PARALLEL_MACS_WARM
    once the workers are up): then, and without an executor, everything runs here.
    ``progress(done, total)`` counts net-steps (a step of one run) over all configs.
    """
    configs = list(configs)
    for i, cfg in enumerate(configs):
        if not isinstance(cfg, TrainConfig):
            raise ValueError(f"configs[{i}] must be a TrainConfig, got {type(cfg).__name__}")
    if not configs:
        return []
    workers = max(1, int(workers)) if executor is not None else 1
    shares = plan_shares(configs, workers)
    work = sum(
        forward_macs(cfg, d.n_features, d.n_classes)
        for share in shares
        for _, cfgs, d in share
        for cfg in cfgs
    )
    warm = executor is not None and executor.is_running(len(shares))
    if work < (MIN_PARALLEL_MACS_WARM if warm else MIN_PARALLEL_MACS):
        shares = plan_shares(configs, 1)
    total = sum(cfg.steps for cfg in configs)
    done = [0] * len(shares)

    def report(worker: int, value: int) -> None:
        done[worker] = value
        if progress:
            progress(min(total, sum(done)), total)

    if progress:
        progress(0, total)
    if len(shares) == 1:
        results = [_run_share(shares[0], lambda d: report(0, d))]
    else:
        calls = [(_run_share, (share,), {}) for share in shares]
        results = executor.run_many(calls, lambda j, values: report(j, values[0]))
    out: list[History | None] = [None] * len(configs)
    for j, (share, histories) in enumerate(zip(shares, results, strict=True)):
        indices = [i for idx, _, _ in share for i in idx]
        for i, h in zip(indices, histories, strict=True):
            out[i] = h
        # a worker's last progress message may trail its result: settle the count from results
        report(j, sum(len(idx) * max(out[i].steps_done for i in idx) for idx, _, _ in share))
    return out
