"""Lesson "Learning rate": how far each net's rate can be pushed before it stalls or diverges.

Three experiments share the page's net (the paper's: digits, sigmoid, 3 x 100, batch 60):

- ``Curves``: a plain and a BN net, each at its own learning rate, from the same initial weights
  and the same batch order (same seed), so the rate is the only difference besides BN;
- ``Sweep``: final loss and test accuracy on a log grid of rates, plain vs BN;
- ``Grid``: the same over learning rate x initial weight scale, a stability map.

The sweeps train many nets at once through ``bnviz.sweep``. Results are plain arrays (no
weights), so the cache stays small. Every run ends one of three ways, judged by
``bnviz.outcome`` so the charts and the words agree: ``diverged`` (the engine stopped it: loss
non-finite or 100x its first value), ``stalled`` (its final test accuracy got less than halfway
from chance to 100%) or ``learned``.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from bnviz import fanout, outcome
from bnviz.experiment import Executor, Experiment, Progress
from bnviz.export import columns_of, csv_table, npz_bytes, padded
from bnviz.store import arms_from_npz, arms_to_npz
from bnviz.train import History, TrainConfig, Twins, load_data

Array = np.ndarray

FINAL_WINDOW = 0.1  # "final loss": the mean training loss over the last 10% of steps
MAX_STEPS = 10_000  # the two-slider runs
MAX_SWEEP_STEPS = 3_000  # per run of a sweep; a sweep trains 20 to 100 nets
RECORDS = 50  # accuracy records per two-slider run

SWEEP_LRS = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0)
GRID_LRS = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0)
GRID_SCALES = (1.0, 3.0, 10.0, 30.0, 100.0)

DEFAULTS = dict(
    lr_plain=1.0,
    lr_bn=1.0,
    activation="sigmoid",
    depth=3,
    init_scale=1.0,
    steps=1000,
    sweep_steps=1000,
    grid_steps=300,
    seed=0,
)

PRESETS = {
    "Paper-like: same rate for both": dict(DEFAULTS, steps=2000),
    "Too-high learning rate": dict(DEFAULTS, lr_plain=10.0, lr_bn=10.0),
    "BN at 30x": dict(DEFAULTS, lr_plain=1.0, lr_bn=30.0),
    "Large init: plain diverges": dict(DEFAULTS, lr_plain=30.0, lr_bn=30.0, init_scale=30.0),
}
PRESET_HELP = {
    "Paper-like: same rate for both": "Both nets at rate 1 for 2,000 steps, as in the paper's "
    "Figure 1: the same rate, and BN learns much faster",
    "Too-high learning rate": "Both at rate 10: the plain net's sigmoids saturate and it "
    "stalls; the BN net trains",
    "BN at 30x": "Plain at rate 1, BN at 30 (the paper's BN-x30 multiplied its base rate by 30)",
    "Large init: plain diverges": "Initial weights 30x larger and rate 30: the plain net's "
    "loss explodes within a few steps; the BN net trains",
}


# --------------------------------------------------------------------------- configs


def base_config(
    activation: str, depth: int, init_scale: float, steps: int, seed: int
) -> TrainConfig:
    """The page's net: the paper's (digits, 100 sigmoid units a layer, small Gaussian init,
    batch 60, plain SGD), in float32 for speed."""
    return TrainConfig(
        dataset="digits",
        hidden=(100,) * int(depth),
        activation=activation,
        init="gaussian",
        init_std=0.01,
        init_scale=init_scale,
        batch_size=60,
        steps=steps,
        record_every=steps,
        seed=seed,
        dtype="float32",
    )


def _check_steps(steps: int, limit: int, what: str) -> None:
    if not 1 <= steps <= limit:
        raise ValueError(f"{what} must be in [1, {limit:,}]; got {steps}")


def _check_rates(values: Sequence[float], what: str) -> tuple[float, ...]:
    out = tuple(float(v) for v in values)
    if not out or any(not (math.isfinite(v) and v > 0) for v in out):
        raise ValueError(f"{what} must be positive numbers; got {values!r}")
    if list(out) != sorted(set(out)):
        raise ValueError(f"{what} must be increasing; got {values!r}")
    return out


@dataclass(frozen=True)
class Curves:
    """Two nets, each at its own rate, same seed: same initial weights, same batches."""

    base: TrainConfig
    lr_plain: float
    lr_bn: float

    def __post_init__(self) -> None:
        _check_steps(self.base.steps, MAX_STEPS, "steps")
        every = max(1, self.base.steps // RECORDS)
        object.__setattr__(self, "base", replace(self.base, record_every=every))
        for lr in (self.lr_plain, self.lr_bn):
            _check_rates([lr], "learning rates")

    def configs(self) -> tuple[TrainConfig, TrainConfig]:
        return (
            replace(self.base, batchnorm=False, lr=float(self.lr_plain)),
            replace(self.base, batchnorm=True, lr=float(self.lr_bn)),
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": "curves",
            "base": self.base.as_dict(),
            "lr_plain": self.lr_plain,
            "lr_bn": self.lr_bn,
        }


@dataclass(frozen=True)
class Sweep:
    """One run per (net, rate): the base config at each learning rate, plain and BN."""

    base: TrainConfig
    lrs: tuple[float, ...] = SWEEP_LRS

    def __post_init__(self) -> None:
        _check_steps(self.base.steps, MAX_SWEEP_STEPS, "sweep steps")
        object.__setattr__(self, "base", replace(self.base, record_every=self.base.steps))
        object.__setattr__(self, "lrs", _check_rates(self.lrs, "learning rates"))

    def configs(self, batchnorm: bool) -> list[TrainConfig]:
        return [replace(self.base, batchnorm=batchnorm, lr=lr) for lr in self.lrs]

    def as_dict(self) -> dict[str, Any]:
        return {"kind": "sweep", "base": self.base.as_dict(), "lrs": list(self.lrs)}


@dataclass(frozen=True)
class Grid:
    """One run per (net, initial scale, rate): a stability map."""

    base: TrainConfig
    lrs: tuple[float, ...] = GRID_LRS
    scales: tuple[float, ...] = GRID_SCALES

    def __post_init__(self) -> None:
        _check_steps(self.base.steps, MAX_SWEEP_STEPS, "map steps")
        object.__setattr__(self, "base", replace(self.base, record_every=self.base.steps))
        object.__setattr__(self, "lrs", _check_rates(self.lrs, "learning rates"))
        object.__setattr__(self, "scales", _check_rates(self.scales, "initial scales"))

    def configs(self, batchnorm: bool) -> list[TrainConfig]:
        """Row-major over (scale, rate), the layout of the result's arrays."""
        return [
            replace(self.base, batchnorm=batchnorm, lr=lr, init_scale=s)
            for s in self.scales
            for lr in self.lrs
        ]

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": "grid",
            "base": self.base.as_dict(),
            "lrs": list(self.lrs),
            "scales": list(self.scales),
        }


def curves(values: dict[str, Any]) -> Curves:
    """The two-slider runs from the page's control values."""
    base = base_config(
        values["activation"], values["depth"], values["init_scale"], values["steps"], values["seed"]
    )
    return Curves(base, values["lr_plain"], values["lr_bn"])


def lr_sweep(values: dict[str, Any]) -> Sweep:
    base = base_config(
        values["activation"],
        values["depth"],
        values["init_scale"],
        values["sweep_steps"],
        values["seed"],
    )
    return Sweep(base)


def grid(values: dict[str, Any]) -> Grid:
    base = base_config(
        values["activation"], values["depth"], 1.0, values["grid_steps"], values["seed"]
    )
    return Grid(base)


# --------------------------------------------------------------------------- results


@dataclass
class Outcomes:
    """How each run of a sweep ended, one entry per run, as plain arrays."""

    lr: Array  # (n,)
    init_scale: Array  # (n,)
    final_loss: Array  # (n,) mean training loss over the last steps; NaN if diverged
    final_acc: Array  # (n,) test accuracy at the end; NaN if diverged
    diverged_at: Array  # (n,) step of divergence, -1 if none
    first_loss: Array  # (n,) loss of the first mini-batch
    steps: int  # steps each run was given
    chance_loss: float  # loss of a uniform guess: log(number of classes)
    chance_acc: float  # accuracy of always guessing the most common class

    @property
    def diverged(self) -> Array:
        return self.diverged_at >= 0

    @property
    def learned_bar(self) -> float:
        return outcome.learned_bar(self.chance_acc)

    @property
    def stalled(self) -> Array:
        with np.errstate(invalid="ignore"):
            return ~self.diverged & ~(self.final_acc >= self.learned_bar)

    @property
    def outcome(self) -> Array:
        """'diverged', 'stalled' or 'learned' per run."""
        out = np.full(self.lr.shape, "learned", dtype=object)
        out[self.stalled] = "stalled"
        out[self.diverged] = "diverged"
        return out

    def arrays(self, prefix: str) -> dict[str, Array]:
        return {f"{prefix}{k}": np.asarray(v) for k, v in vars(self).items()}

    @classmethod
    def from_arrays(cls, arrays: dict[str, Array], prefix: str) -> Outcomes:
        out = {k: arrays[f"{prefix}{k}"] for k in cls.__dataclass_fields__}
        out["steps"] = int(out["steps"])
        out["chance_loss"], out["chance_acc"] = float(out["chance_loss"]), float(out["chance_acc"])
        return cls(**out)


def final_loss(h: History) -> float:
    """Mean training loss over the last ``FINAL_WINDOW`` of the run (NaN if it diverged)."""
    if h.diverged_at is not None or len(h.loss) == 0:
        return math.nan
    n = max(1, int(round(len(h.loss) * FINAL_WINDOW)))
    return float(np.mean(h.loss[-n:]))


def chance_loss(cfg: TrainConfig) -> float:
    return math.log(load_data(cfg).n_classes)


def outcomes(histories: Sequence[History], chance_acc: float, chance: float) -> Outcomes:
    hs = list(histories)
    return Outcomes(
        lr=np.array([h.config.lr for h in hs]),
        init_scale=np.array([h.config.init_scale for h in hs]),
        final_loss=np.array([final_loss(h) for h in hs]),
        final_acc=np.array([outcome.final_accuracy(h) for h in hs]),
        diverged_at=np.array([-1 if h.diverged_at is None else h.diverged_at for h in hs]),
        first_loss=np.array([float(h.loss[0]) if len(h.loss) else math.nan for h in hs]),
        steps=hs[0].config.steps,
        chance_loss=chance,
        chance_acc=chance_acc,
    )


@dataclass
class SweepResult:
    lrs: Array  # (L,)
    plain: Outcomes  # (L,) each
    bn: Outcomes

    def __iter__(self):
        return iter((("plain", self.plain), ("BN", self.bn)))


@dataclass
class GridResult:
    lrs: Array  # (L,) columns
    scales: Array  # (S,) rows
    plain: Outcomes  # (S * L,) row-major: index s * L + l
    bn: Outcomes

    def __iter__(self):
        return iter((("plain", self.plain), ("BN", self.bn)))

    def cell(self, o: Outcomes, field: str) -> Array:
        """A per-run field of ``o`` as an (S, L) table: rows are scales, columns rates."""
        values = getattr(o, field)
        return np.asarray(values).reshape(len(self.scales), len(self.lrs))


# --------------------------------------------------------------------------- running


def _both(
    plain: list[TrainConfig],
    bn: list[TrainConfig],
    progress: Progress | None,
    executor: Executor | None,
) -> tuple[list[History], list[History]]:
    """Train the plain and the BN configs through the sweep engine, on both cores when the
    work is large enough. Progress is reported in steps per run (the engine counts the steps of
    all runs together), so the bar reads "step 600 of 1,000" rather than "12,000 of 20,000"."""
    n = len(plain) + len(bn)

    def per_run(done: int, total: int) -> None:
        progress(done // n, total // n)

    histories = fanout.sweep(
        [*plain, *bn], progress=per_run if progress else None, executor=executor, workers=2
    )
    return histories[: len(plain)], histories[len(plain) :]


def run(
    cfg: Curves | Sweep | Grid,
    progress: Progress | None = None,
    executor: Executor | None = None,
) -> Any:
    """Twins for ``Curves``; a SweepResult or GridResult for the sweeps."""
    if isinstance(cfg, Curves):
        plain_cfg, bn_cfg = cfg.configs()
        (plain,), (bn,) = _both([plain_cfg], [bn_cfg], progress, executor)
        return Twins(_light(plain), _light(bn))
    chance = outcome.chance_accuracy(cfg.base), chance_loss(cfg.base)
    plain, bn = _both(cfg.configs(False), cfg.configs(True), progress, executor)
    if isinstance(cfg, Sweep):
        return SweepResult(np.array(cfg.lrs), outcomes(plain, *chance), outcomes(bn, *chance))
    if isinstance(cfg, Grid):
        return GridResult(
            np.array(cfg.lrs), np.array(cfg.scales), outcomes(plain, *chance), outcomes(bn, *chance)
        )
    raise TypeError(f"not a learning-rate experiment: {cfg!r}")


def _light(h: History) -> History:
    """The run without its final weights and per-layer records, which nothing on this page
    shows: a cached result of about 10 kB instead of over a megabyte."""
    return replace(h, final_state={}, layers=[])


def result_to_npz(result: Twins | SweepResult | GridResult) -> bytes:
    """A result of ``run`` as an npz file (how the page's default views ship)."""
    if isinstance(result, Twins):
        return arms_to_npz(result)
    arrays = {"kind": np.array(type(result).__name__), "lrs": result.lrs}
    if isinstance(result, GridResult):
        arrays["scales"] = result.scales
    for name, o in (("plain", result.plain), ("bn", result.bn)):
        arrays.update(o.arrays(f"{name}/"))
    return npz_bytes(arrays)


def result_from_npz(raw: bytes) -> Twins | SweepResult | GridResult:
    """Back from ``result_to_npz``; never unpickles."""
    with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    kind = str(arrays.get("kind", ""))
    if kind not in ("SweepResult", "GridResult"):
        return arms_from_npz(raw)
    plain, bn = Outcomes.from_arrays(arrays, "plain/"), Outcomes.from_arrays(arrays, "bn/")
    if kind == "SweepResult":
        return SweepResult(arrays["lrs"], plain, bn)
    return GridResult(arrays["lrs"], arrays["scales"], plain, bn)


EXPERIMENT = Experiment(
    "learning_rate",
    run,
    processes=2,
    shipped={  # the page's default views, so its first paint waits for no training
        "lr-default-curves": curves(DEFAULTS),
        "lr-default-sweep": lr_sweep(DEFAULTS),
        "lr-default-map": grid(DEFAULTS),
    },
    encode=result_to_npz,
    decode=result_from_npz,
)


# --------------------------------------------------------------------------- tables


def sweep_csv(result: SweepResult | GridResult) -> str:
    """One row per run: its net, rate, initial scale and how it ended."""
    rows = [
        {
            "net": name,
            "learning_rate": o.lr[i],
            "init_scale": o.init_scale[i],
            "steps": o.steps,
            "outcome": o.outcome[i],
            "diverged_at": None if o.diverged_at[i] < 0 else int(o.diverged_at[i]),
            "first_loss": o.first_loss[i],
            "final_loss": o.final_loss[i],
            "final_test_acc": o.final_acc[i],
        }
        for name, o in result
        for i in range(len(o.lr))
    ]
    return csv_table(columns_of(rows))


def curves_csv(twins: Twins) -> str:
    """Per-step loss and the recorded test accuracy of the two-slider runs."""
    n = max(len(h.loss) for h in twins) + 1
    columns: dict[str, list] = {"step": list(range(n))}
    for h in twins:
        columns[f"{h.label.lower()}_loss"] = padded(h.loss, n)
    for h in twins:
        acc = dict(zip(h.record_steps.tolist(), h.test_acc.tolist(), strict=True))
        columns[f"{h.label.lower()}_test_acc"] = [acc.get(t) for t in range(n)]
    return csv_table(columns)


# --------------------------------------------------------------------------- the paper's numbers

# Ioffe & Szegedy (2015), Table 2 and Section 4.2: Inception on ImageNet, single crop.
IMAGENET = (
    ("Inception", "31.0M", "72.2%", "the baseline: no BN, initial rate 0.0015"),
    ("BN-Baseline", "13.3M", "72.7%", "Inception with BN before each nonlinearity"),
    ("BN-x5", "2.1M", "73.0%", "BN, initial rate 5x (0.0075), the accelerations below"),
    ("BN-x30", "2.7M", "74.8%", "BN, initial rate 30x (0.045)"),
    (
        "BN-x5-Sigmoid",
        "not reached",
        "69.8%",
        "sigmoid instead of ReLU; without BN, sigmoid Inception never beat 1/1000",
    ),
)
ACCELERATIONS = (
    "Increase the learning rate.",
    "Remove dropout.",
    "Reduce the L2 weight regularization 5x.",
    "Accelerate the learning-rate decay 6x.",
    "Remove local response normalization.",
    "Shuffle training examples more thoroughly.",
    "Reduce photometric distortions.",
)


# --------------------------------------------------------------------------- words from results


def _ranges(rates: Array, mask: Array) -> list[str]:
    """Runs of consecutive grid rates where ``mask`` holds, as "0.001 to 0.3" or "3"."""
    out, start = [], None
    for i, on in enumerate([*mask.tolist(), False]):
        if on and start is None:
            start = i
        elif not on and start is not None:
            a, b = rates[start], rates[i - 1]
            out.append(f"{a:g}" if start == i - 1 else f"{a:g} to {b:g}")
            start = None
    return out


def describe(o: Outcomes) -> str:
    """Where along a sweep a net learned, stalled and diverged, in words, e.g. "learned at
    rates 1 to 3; stalled at 0.001 to 0.3 and 10 to 30". Runs must be in increasing rate."""
    ends = o.outcome
    parts = []
    for what in ("learned", "stalled", "diverged"):
        spans = _ranges(o.lr, ends == what)
        if spans:
            parts.append(f"{what} at {' and '.join(spans)}")
    return "; ".join(parts)


def counts(o: Outcomes) -> dict[str, int]:
    """How many runs learned, stalled and diverged."""
    ends = o.outcome
    return {what: int(np.sum(ends == what)) for what in ("learned", "stalled", "diverged")}
