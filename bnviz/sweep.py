"""Many runs at once: K configs of one architecture trained as one stack by the fast engine.

A learning-rate sweep or a grid trains K small nets that differ only in numbers (learning rate,
init, seed, momentum, weight decay: ``SWEPT``). The fast engine steps them together in one
compiled call per chunk of steps, so a sweep pays the per-call overhead once for all K, and
each result equals what ``bnviz.train.train`` returns for its config: both are the same engine
(a single run is a stack of one). ``bnviz.fanout`` splits any configs over worker processes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields

from bnviz.engine import SWEPT, FastEngine, drive
from bnviz.train import History, Progress, TrainConfig, new_runs

SHARED = tuple(f.name for f in fields(TrainConfig) if f.name not in SWEPT)
STACK_ELEMENTS = 1_536_000  # see stack_size


def shared_key(cfg: TrainConfig) -> tuple:
    """The fields that must be equal for two configs to share one stack."""
    return tuple(getattr(cfg, name) for name in SHARED)


def check_compatible(configs: Sequence[TrainConfig]) -> list[TrainConfig]:
    """The configs as a list, or ValueError naming the first shared field that differs."""
    configs = list(configs)
    if not configs:
        raise ValueError("a sweep needs at least one config")
    for i, cfg in enumerate(configs):
        if not isinstance(cfg, TrainConfig):
            raise ValueError(f"configs[{i}] must be a TrainConfig, got {type(cfg).__name__}")
    first = configs[0]
    for i, cfg in enumerate(configs[1:], start=1):
        for name in SHARED:
            a, b = getattr(first, name), getattr(cfg, name)
            if a != b:
                raise ValueError(
                    f"configs[{i}].{name} = {b!r} differs from configs[0].{name} = {a!r}: "
                    f"runs of one sweep may differ only in {', '.join(SWEPT)} "
                    "(bnviz.fanout.sweep trains incompatible groups)"
                )
    return configs


def compatible_groups(configs: Sequence[TrainConfig]) -> list[list[int]]:
    """Indices of the configs grouped by everything they must share, in first-seen order."""
    groups: dict[tuple, list[int]] = {}
    for i, cfg in enumerate(configs):
        groups.setdefault(shared_key(cfg), []).append(i)
    return list(groups.values())


def stack_size(cfg: TrainConfig) -> int:
    """The most runs one stack holds: its buffers grow with K (about STACK_ELEMENTS values of
    activations, 256 paper nets), so a larger group runs as several stacks in turn."""
    return max(1, STACK_ELEMENTS // (cfg.batch_size * max(cfg.hidden)))


def sweep_stacks(configs: list[TrainConfig], progress: Progress | None = None) -> list[History]:
    """Compatible configs as stacks of at most ``stack_size`` runs, one after the other (each
    takes every n-th config, so early divergences spread out); progress counts their steps."""
    n = -(-len(configs) // stack_size(configs[0]))
    steps = configs[0].steps
    out: list[History | None] = [None] * len(configs)
    for j in range(n):

        def report(done: int, total: int, offset: int = j * steps) -> None:
            if progress:
                progress(offset + done, n * steps)

        runs = new_runs(configs[j::n])
        drive(FastEngine(runs), report)
        out[j::n] = [run.history() for run in runs]
    return out


def sweep(configs: Sequence[TrainConfig], progress: Progress | None = None) -> list[History]:
    """Train compatible configs (see ``SWEPT``) as one stack in this process; one History per
    config, equal to what ``train`` returns for it.

    ``progress(done, total)`` counts steps as ``train`` does (more than one stack, past
    ``stack_size`` runs, counts the steps of each in turn). ``History.seconds`` is each run's
    share of the time (the time of a chunk of steps over the runs in the stack).
    """
    return sweep_stacks(check_compatible(configs), progress)
