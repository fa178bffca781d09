"""How a run ended, judged once for every page from what a student reads: its test accuracy.

A run *diverged* when the engine stopped it (its loss became non-finite or a hundred times its
first value). Otherwise it *learned* when its final test accuracy got at least halfway from
chance to perfect (digits: 55%, two classes: 75%), and *stalled* when it did not: a 22%
digits net has learned next to nothing, whatever its loss says.
"""

from __future__ import annotations

import math

import numpy as np

from bnviz.train import History, TrainConfig, load_data

LEARNED_SHARE = 0.5  # of the way from chance to 100% test accuracy
OUTCOMES = ("learned", "stalled", "diverged")


def chance_accuracy(cfg: TrainConfig) -> float:
    """The test accuracy of always guessing the test split's most common class."""
    y = load_data(cfg).y_test
    return float(np.bincount(y).max() / len(y))


def learned_bar(chance: float) -> float:
    """The final test accuracy a run needs to count as learned."""
    return chance + LEARNED_SHARE * (1.0 - chance)


def final_accuracy(h: History) -> float:
    """Test accuracy at the end of the run; NaN if it diverged (its last record is not its end)."""
    if h.diverged_at is not None or len(h.test_acc) == 0:
        return math.nan
    return float(h.test_acc[-1])


def judge(diverged: bool, final_acc: float, chance: float) -> str:
    if diverged:
        return "diverged"
    return "learned" if final_acc >= learned_bar(chance) else "stalled"


def outcome(h: History, chance: float) -> str:
    """'learned', 'stalled' or 'diverged' for one run."""
    return judge(h.diverged_at is not None, final_accuracy(h), chance)
