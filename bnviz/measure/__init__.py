"""Measures a run can take besides its distributions, at its record steps: the probes.

Each probe sees the net after the record step's update and, for the measures that are about
the step itself, its ``StepContext`` (the batch, the net before the update and its gradients).
A probe that a config does not ask for is never built, so it costs nothing.

- ``ics``: Santurkar et al.'s internal covariate shift as gradient change (Definition 2.1);
- ``landscape``: the loss and the gradient along the step's gradient direction (their Sec 3.2);
- ``batch_stats``: how much BN's batch mean and variance vary from batch to batch;
- ``eval_gap``: accuracy with batch statistics (train mode) against running ones (eval mode).
"""

from __future__ import annotations

from typing import Any

from bnviz.measure.batch_stats import BatchStatsProbe, BatchStatsRecord
from bnviz.measure.eval_gap import EvalGapProbe, EvalGapRecord
from bnviz.measure.ics import ICSProbe, ICSRecord
from bnviz.measure.landscape import LandscapeProbe, LandscapeRecord

PROBES = {
    "ics": ICSProbe,
    "landscape": LandscapeProbe,
    "batch_stats": BatchStatsProbe,
    "eval_gap": EvalGapProbe,
}

PROBE_RECORDS = {
    "ics": ICSRecord,
    "landscape": LandscapeRecord,
    "batch_stats": BatchStatsRecord,
    "eval_gap": EvalGapRecord,
}


def make_probes(cfg: Any, data: Any, max_records: int) -> list[Any]:
    """The probes a config asks for, each ready to fill ``max_records`` records."""
    return [PROBES[name](cfg, data, max_records) for name in cfg.probes]
