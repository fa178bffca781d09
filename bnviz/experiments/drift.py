"""Lesson "Distribution drift": plain and BN twins trained in lockstep from the page's controls.

The controls map onto a TrainConfig here, in one place, so that the page, the presets, the
precomputed assets and the tests all build the same config from the same values.
"""

from __future__ import annotations

import numpy as np

from bnviz import fanout
from bnviz.experiment import Executor, Experiment, Progress
from bnviz.train import History, TrainConfig, Twins

TARGET_ACC = 0.9  # "steps to 90% test accuracy", the speed-up the page reports
MAX_STEPS = 50_000  # one student's run must not hold a trainer for minutes
RECORDS = 100  # records per run, whatever its length: enough frames, bounded cost
MIN_RECORD_EVERY = 10  # short runs record less often: a record costs about five steps

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
        seed=seed,
    )


def run(
    cfg: TrainConfig, progress: Progress | None = None, executor: Executor | None = None
) -> Twins:
    """The twins for cfg, trained now (in two worker processes when given an executor)."""
    return fanout.twins(cfg, progress, executor)


def steps_to_accuracy(h: History, target: float) -> int | None:
    """The first recorded step whose test accuracy reaches the target (None if never)."""
    hits = np.flatnonzero(h.test_acc >= target)
    return int(h.record_steps[hits[0]]) if len(hits) else None


EXPERIMENT = Experiment(
    "drift",
    run,
    processes=2,
    shipped={  # the first paint of the home page and of this lesson's defaults
        "paper-figure-1": config(**PRESETS["Paper Figure 1"]),
        "drift-default": config(**DEFAULTS),
    },
)
