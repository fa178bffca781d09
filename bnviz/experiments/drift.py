"""Lesson "Distribution drift": plain and BN twins trained in lockstep from the page's controls.

The controls map onto a TrainConfig here, in one place, so that the page, the presets, the
precomputed assets and the tests all build the same config from the same values.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bnviz import fanout
from bnviz.experiment import Executor, Experiment, Progress
from bnviz.train import History, TrainConfig, Twins

TARGET_ACC = 0.9  # "steps to 90% test accuracy", the speed-up the page reports
MAX_STEPS = 50_000  # one student's run must not hold a trainer for minutes
RECORDS = 100  # records per run, whatever its length: enough frames, bounded cost
MIN_RECORD_EVERY = 10  # short runs record less often: a record costs about five steps
EVAL_EVERY = 10  # test accuracy alone this often early on, so "steps to 90%" is exact to it
EVAL_UNTIL = 5000  # ... up to here (later, at the records)

DEFAULTS = dict(
    lr=0.5,
    activation="sigmoid",
    depth=3,
    width=100,
    init_scale=1.0,
    batch_size=60,
    steps=2000,
    dataset="digits",
    seed=0,
    placement="before",
)

PRESETS = {
    "Paper Figure 1": dict(DEFAULTS, steps=50_000),
    "Deep sigmoid, high learning rate": dict(DEFAULTS, depth=6, width=64, lr=5.0, steps=3000),
}
VIEWS = {  # what each preset shows first: the deepest layer, where drift is largest
    "Paper Figure 1": dict(layer=3),
    "Deep sigmoid, high learning rate": dict(layer=6),
}
PRESET_HELP = {
    "Paper Figure 1": "3 x 100 sigmoid, small Gaussian init, batch 60, 50,000 steps (precomputed)",
    "Deep sigmoid, high learning rate": "6 x 64 sigmoid at lr 5: the plain net saturates",
}


def config(
    lr: float,
    activation: str,
    depth: int,
    width: int,
    init_scale: float,
    batch_size: int,
    steps: int,
    dataset: str,
    seed: int,
    placement: str,
) -> TrainConfig:
    """The twins' shared config; the small Gaussian init (std 0.01) is the paper's."""
    if not 1 <= steps <= MAX_STEPS:
        raise ValueError(f"steps must be in [1, {MAX_STEPS:,}]; got {steps}")
    return TrainConfig(
        dataset=dataset,
        hidden=(int(width),) * int(depth),
        activation=activation,
        placement=placement,
        init="gaussian",
        init_std=0.01,
        init_scale=init_scale,
        lr=lr,
        batch_size=batch_size,
        steps=steps,
        record_every=max(MIN_RECORD_EVERY, steps // RECORDS),
        eval_every=EVAL_EVERY,
        eval_until=min(steps, EVAL_UNTIL),
        seed=seed,
    )


def run(
    cfg: TrainConfig, progress: Progress | None = None, executor: Executor | None = None
) -> Twins:
    """The twins for cfg, trained now (in two worker processes when given an executor)."""
    return fanout.twins(cfg, progress, executor)


def steps_to_accuracy(h: History, target: float) -> int | None:
    """The first measured step whose test accuracy reaches the target (None if never): every
    ``EVAL_EVERY`` steps up to ``EVAL_UNTIL``, so the answer does not depend on the run's
    length (which sets its record interval)."""
    steps, acc = h.accuracy_track()
    hits = np.flatnonzero(acc >= target)
    return int(steps[hits[0]]) if len(hits) else None


def accuracy_resolution(h: History, step: int | None) -> int:
    """How finely accuracy was measured around ``step`` (or over the run, if None)."""
    cfg = h.config
    if cfg.eval_every and (step is None or step <= (cfg.eval_until or cfg.steps)):
        return min(cfg.eval_every, cfg.record_every)
    return cfg.record_every


@dataclass(frozen=True)
class Movement:
    """How one hidden layer's input distribution moved over a run, from its first record to its
    last finite one (the last before a divergence)."""

    layer: int
    step: int  # the step of that last record
    std_start: float
    std_end: float
    mean_start: float
    mean_end: float
    moved: float  # W1 distance from the first record's distribution
    saturation_end: float  # Recorder's saturation at the end (NaN where it does not apply)


def movement(h: History, layer: int, site: str = "act_in") -> Movement:
    rec = h.layers[layer - 1].sites[site]
    finite = np.flatnonzero(np.isfinite(rec.std) & np.isfinite(rec.drift_init))
    end = int(finite[-1]) if finite.size else 0
    return Movement(
        layer=layer,
        step=int(h.record_steps[end]),
        std_start=float(rec.std[0]),
        std_end=float(rec.std[end]),
        mean_start=float(rec.mean[0]),
        mean_end=float(rec.mean[end]),
        moved=float(rec.drift_init[end]),
        saturation_end=float(rec.saturation[end]),
    )


def movements(h: History, site: str = "act_in") -> list[Movement]:
    """``movement`` of every hidden layer, first to last."""
    return [movement(h, i, site) for i in range(1, len(h.layers) + 1)]


def median_move(h: History, layer: int, unit: int) -> float:
    """How far one unit's median activation input moved, first record to last finite one."""
    median = h.layers[layer - 1].sites["act_in"].unit_pct[:, unit, 1].astype(np.float64)
    finite = median[np.isfinite(median)]
    return float(abs(finite[-1] - finite[0])) if finite.size else float("nan")


def is_paper_run(cfg: TrainConfig) -> bool:
    """Whether cfg is the paper preset's (so the page may say "reproduced")."""
    return cfg == config(**PRESETS["Paper Figure 1"])


EXPERIMENT = Experiment(
    "drift",
    run,
    processes=2,
    shipped={  # the first paint of the home page and of this lesson's defaults
        "paper-figure-1": config(**PRESETS["Paper Figure 1"]),
        "drift-default": config(**DEFAULTS),
    },
)
