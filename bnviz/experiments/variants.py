"""Lesson "Variants and pitfalls": BN against LayerNorm and GroupNorm as the batch shrinks,
dropout's variance shift, and where BN does not fit.

One net throughout: digits, hidden layers of 64 ReLU units, He initialization. (At the paper's
tiny Gaussian init, std 0.01, a layer's units start nearly equal, and LN or GN over a few nearly
equal values divides by a spread of almost nothing: He init gives every normalizer a fair start.)

- ``BatchGrid``: one normalization (none, BN, LN or GN) trained at batch sizes 2 ... 64 on the
  same number of examples, the learning rate scaled with the batch size as the Group Norm paper
  does (lr = lr_32 * m / 32), two seeds a cell, through ``bnviz.fanout.sweep``; each trained net
  is then scored as the ``eval_gap`` probe scores it (accuracy with batch statistics against
  running ones), all its batches in one pass (the probe's loop of small forwards took longer
  than the training at batch 2). The page asks for one grid per normalization, so the
  GroupNorm slider retrains only the GroupNorm nets.
- ``DropoutArms``: a BN net with dropout in every block (so every BN after the first sees
  dropped inputs) against one with dropout only after the last BN, same start, same batches;
  then, measured on the trained nets, the variance each BN's input has in train mode against
  eval mode (Li et al. 2019's variance shift), and the accuracy after re-estimating the BN
  statistics with dropout off.
- Cheap pieces the page calls directly: ``formula_check`` (Li et al.'s formula against
  measured variances), ``mlp_axes`` (which values share one mean, on a real batch),
  ``batch_one`` (BN at batch size 1) and ``sequences`` (per-time-step statistics of a batch of
  variable-length sequences).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from bnviz import fanout
from bnviz import functional as F
from bnviz.blas import single_threaded_blas
from bnviz.experiment import Executor, Experiment, Progress
from bnviz.export import columns_of, csv_table, npz_bytes
from bnviz.inference import recalibrate
from bnviz.nn import MLP, NORMS, Activation, BatchNorm1d, GroupNorm, Linear
from bnviz.train import NORM_LABELS, History, TrainConfig, build_model, load_data

Array = np.ndarray

WIDTH = 64  # units per hidden layer: groups of 1, 2, 4, ..., 64 units divide it
BATCH_SIZES = (2, 4, 8, 16, 32, 64)
REFERENCE_BATCH = 32  # the Group Norm paper's rule: lr = 0.1 * m / 32
SEEDS = 2  # nets per cell (seeds s and s + 1); with two, each worker takes one of every cell
EXAMPLES = (3200, 6400, 12800, 19200, 25600, 38400)  # examples seen per run, all divisible by 64
GROUPS = (2, 4, 8, 16, 32, 64)
KEEPS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)  # dropout keep probabilities
MEANS = (0.0, 0.5, 1.0, 2.0)  # the synthetic input's mean, in units of its std
DROPOUT_BATCH = 32
DROPOUT_REPS = 8  # train-mode passes over the training split when measuring variances
FORMULA_SAMPLES = 200_000
FORMULA_BLOCKS = 25  # blocks of the sample whose spread gives the standard error
GRID_NORMS = ("none", "batch", "layer", "group")  # the grid's normalizations, in the page's order
HIGHLIGHT_UNIT = 19  # unit 20 of the first layer: its companions are outlined in the figure
RNN_HIDDEN = WIDTH  # LayerNorm's count in the sequence picture: the units of one example

DEFAULTS = dict(
    examples=12800,
    lr=0.1,
    groups=8,
    activation="relu",
    depth=3,
    seed=0,
    keep=0.5,
    mean=0.0,
    digit=0,
)
PRESETS = {
    "Group Norm paper's comparison": dict(DEFAULTS),
    "Tiny groups (2 units each)": dict(DEFAULTS, groups=32),
    "One unit a group: GN outputs beta": dict(DEFAULTS, groups=64),
    "Heavy dropout (keep 0.3)": dict(DEFAULTS, keep=0.3),
    "Sigmoid nets": dict(DEFAULTS, activation="sigmoid", lr=0.5),
    "Short budget": dict(DEFAULTS, examples=3200),
}
PRESET_HELP = {
    "Group Norm paper's comparison": "Batch sizes 2 to 64, the same examples seen, the rate "
    "scaled with the batch as Wu & He do; GroupNorm with 8 groups of 8 units",
    "Tiny groups (2 units each)": "32 groups of 2 units: each group's two values normalize to "
    "about -1 and +1, whatever they were",
    "One unit a group: GN outputs beta": "64 groups of one unit: every unit normalizes to 0 and "
    "GN outputs beta, as BN does at batch size 1",
    "Heavy dropout (keep 0.3)": "Dropout keeps 30% of the units: a large variance shift",
    "Sigmoid nets": "The same comparison with sigmoid units at rate 0.5",
    "Short budget": "3,200 examples per net, a quarter of the default: about 2 passes over the "
    "training digits",
}

# Wu & He (2018), Table 2 (and Figure 1): ResNet-50 on ImageNet, validation error (%), by the
# number of images per GPU (the batch BN's statistics are computed over), lr = 0.1 * N / 32.
GN_PAPER_BATCH = (32, 16, 8, 4, 2)
GN_PAPER_ERROR = {
    "BN": (23.6, 23.7, 24.8, 27.3, 34.7),
    "GN": (24.1, 24.2, 24.0, 24.2, 24.1),
}

EVERY = "BN + dropout in every block"
LAST = "BN + dropout after the last BN"
RECALIBRATED = "BN + dropout in every block, recalibrated"


_DIGITS = load_data(TrainConfig(dataset="digits"))  # the split every net here uses
TRAIN_DIGITS, TEST_DIGITS = len(_DIGITS.y_train), len(_DIGITS.y_test)

# --------------------------------------------------------------------------- configs


def base_config(activation: str, depth: int, seed: int, examples: int = 12800) -> TrainConfig:
    """The lesson's net: digits, ``depth`` hidden layers of 64 units, He init, plain SGD, in
    float32 for speed; batch size, steps, rate and normalization are set per run."""
    return TrainConfig(
        dataset="digits",
        hidden=(WIDTH,) * int(depth),
        activation=activation,
        init="he",
        batch_size=REFERENCE_BATCH,
        steps=max(1, int(examples) // REFERENCE_BATCH),
        record_every=max(1, int(examples) // REFERENCE_BATCH),
        probe_size=64,
        seed=int(seed),
        dtype="float32",
    )


def activation_name(name: str) -> str:
    """The nonlinearity as students write it: "ReLU", "sigmoid"."""
    return F.ACTIVATIONS[name].title


def scaled_lr(lr: float, batch_size: int) -> float:
    """The Group Norm paper's rule (after Goyal et al.): the rate proportional to the batch."""
    return float(lr) * batch_size / REFERENCE_BATCH


def _check_examples(examples: int) -> int:
    examples = int(examples)
    if not max(BATCH_SIZES) <= examples <= 100_000 or examples % max(BATCH_SIZES):
        raise ValueError(
            f"examples must be a multiple of {max(BATCH_SIZES)} in "
            f"[{max(BATCH_SIZES)}, 100,000]; got {examples}"
        )
    return examples


@dataclass(frozen=True)
class BatchGrid:
    """One normalization at every batch size: ``SEEDS`` nets per batch size, each seeing
    ``examples`` examples, at rate ``lr * m / 32``."""

    base: TrainConfig
    norm: str
    examples: int
    lr: float
    groups: int = 8
    batch_sizes: tuple[int, ...] = BATCH_SIZES
    seeds: int = SEEDS

    def __post_init__(self) -> None:
        if self.norm not in NORMS:
            raise ValueError(f"norm must be one of {', '.join(NORMS)}; got {self.norm!r}")
        object.__setattr__(self, "examples", _check_examples(self.examples))
        if not (math.isfinite(self.lr) and 0 < self.lr <= 10):
            raise ValueError(f"lr must be a number in (0, 10]; got {self.lr!r}")
        if self.groups not in GROUPS and self.groups != 1:
            raise ValueError(f"groups must be one of {GROUPS}; got {self.groups!r}")
        sizes = tuple(int(m) for m in self.batch_sizes)
        if not sizes or any(m < 2 or self.examples % m for m in sizes):
            raise ValueError(f"batch sizes must be at least 2 and divide {self.examples}")
        object.__setattr__(self, "batch_sizes", sizes)
        if not 1 <= self.seeds <= 8:
            raise ValueError(f"seeds must be in [1, 8]; got {self.seeds}")

    @property
    def label(self) -> str:
        return NORM_LABELS[self.norm]

    def config(self, batch_size: int, seed_offset: int) -> TrainConfig:
        steps = self.examples // batch_size
        return replace(
            self.base,
            norm=self.norm,
            groups=self.groups if self.norm == "group" else self.base.groups,
            batch_size=batch_size,
            steps=steps,
            record_every=steps,
            lr=scaled_lr(self.lr, batch_size),
            seed=self.base.seed + seed_offset,
        )

    def configs(self) -> list[TrainConfig]:
        """Batch-size-major: index b * seeds + s."""
        return [self.config(m, s) for m in self.batch_sizes for s in range(self.seeds)]

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": "batch_grid",
            "base": self.base.as_dict(),
            "norm": self.norm,
            "examples": self.examples,
            "lr": self.lr,
            "groups": self.groups,
            "batch_sizes": list(self.batch_sizes),
            "seeds": self.seeds,
        }


def batch_grid(values: Mapping[str, Any], norm: str) -> BatchGrid:
    """The grid of one normalization from the page's control values (only GroupNorm's grid
    takes the groups, so moving that slider retrains only the GroupNorm nets)."""
    base = base_config(values["activation"], values["depth"], values["seed"], values["examples"])
    groups = int(values["groups"]) if norm == "group" else BatchGrid.groups
    return BatchGrid(base, norm, values["examples"], float(values["lr"]), groups)


@dataclass(frozen=True)
class DropoutArms:
    """Two BN nets with dropout (keep probability ``keep``) from the same start on the same
    batches: in every block, and after the last BN only."""

    base: TrainConfig
    keep: float

    def __post_init__(self) -> None:
        if self.keep not in KEEPS:
            raise ValueError(f"keep must be one of {', '.join(f'{k:g}' for k in KEEPS)}")
        if self.base.norm != "batch":
            raise ValueError("the dropout experiment trains BN nets")

    def arms(self) -> dict[str, dict[str, Any]]:
        drop = round(1.0 - self.keep, 10)
        return {
            EVERY: {"dropout": drop, "dropout_where": "every"},
            LAST: {"dropout": drop, "dropout_where": "last"},
        }

    def configs(self) -> list[TrainConfig]:
        """The arms' configs. Built from one seed they start from the same Linear weights
        (dropout draws none) and see the same batches, as ``train_arms`` would have them; as a
        sweep, two small nets train here when the workers are cold instead of starting them."""
        return [replace(self.base, **changes) for changes in self.arms().values()]

    def as_dict(self) -> dict[str, Any]:
        return {"kind": "dropout", "base": self.base.as_dict(), "keep": self.keep}


def with_keep(cfg: DropoutArms, keep: float) -> DropoutArms:
    return replace(cfg, keep=float(keep))


def dropout_arms(values: Mapping[str, Any]) -> DropoutArms:
    """The BN net at batch 32 and the page's rate, seeing as many examples as the grid's."""
    base = base_config(values["activation"], values["depth"], values["seed"], values["examples"])
    base = replace(base, norm="batch", lr=float(values["lr"]), batch_size=DROPOUT_BATCH)
    return DropoutArms(base, float(values["keep"]))


@dataclass(frozen=True)
class View:
    """What a figure or a cheap computation of the page is a function of, as a cache key
    (``as_dict``, like a config): a name and the configs or values it depends on."""

    name: str
    parts: tuple = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "parts": [p.as_dict() if hasattr(p, "as_dict") else p for p in self.parts],
        }


# --------------------------------------------------------------------------- the batch grid


@dataclass
class KindResult:
    """One normalization's grid: per batch size (rows) and seed (columns)."""

    norm: str
    groups: int
    batch_sizes: Array  # (B,)
    seeds: Array  # (S,)
    lr: Array  # (B,) the rate each batch size trained at
    steps: Array  # (B,)
    examples: int
    final_acc: Array  # (B, S) test accuracy at the end, eval mode; NaN if diverged
    acc_batch: Array  # (B, S) training split, BN with batch statistics (eval_gap probe)
    acc_running: Array  # (B, S) training split, eval mode
    final_loss: Array  # (B, S) mean training loss of the last 10% of steps; NaN if diverged
    diverged_at: Array  # (B, S) step of divergence, -1 if none
    seconds: Array  # (B, S)
    reference: dict[str, Array] = field(default_factory=dict, repr=False)  # batch-32 net, seed 0
    reference_config: TrainConfig | None = None

    @property
    def label(self) -> str:
        return NORM_LABELS[self.norm]

    @property
    def name(self) -> str:
        """The label with GroupNorm's groups: "GN (8 groups)"."""
        return f"GN ({self.groups} groups)" if self.norm == "group" else self.label

    @property
    def mean_acc(self) -> Array:
        """(B,) test accuracy averaged over the seeds that did not diverge (NaN if none)."""
        return _nanmean(self.final_acc)

    @property
    def gap(self) -> Array:
        """(B, S) accuracy with batch statistics minus with running statistics."""
        return self.acc_batch - self.acc_running

    @property
    def diverged_sizes(self) -> list[int]:
        """The batch sizes at which some net diverged."""
        bad = (self.diverged_at >= 0).any(axis=1)
        return [int(m) for m, b in zip(self.batch_sizes, bad, strict=True) if b]

    def acc_at(self, batch_size: int) -> float:
        return float(self.mean_acc[list(self.batch_sizes).index(batch_size)])

    def fall(self, small: int = 2, large: int = REFERENCE_BATCH) -> float:
        """Accuracy lost (in points of accuracy, 0..1) from batch ``large`` to ``small``."""
        return self.acc_at(large) - self.acc_at(small)


def _nanmean(a: Array) -> Array:
    a = np.asarray(a, dtype=np.float64)
    n = np.sum(np.isfinite(a), axis=-1)
    s = np.nansum(a, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, s / np.maximum(n, 1), np.nan)


def final_loss(h: History) -> float:
    if h.diverged_at is not None or len(h.loss) == 0:
        return math.nan
    n = max(1, len(h.loss) // 10)
    return float(np.mean(h.loss[-n:]))


def forward_in_batches(model: MLP, x: Array, batch_size: int) -> Array:
    """Logits of x cut into consecutive batches of ``batch_size`` rows, every BN layer
    normalizing each batch with that batch's own mean and (biased) variance, as in training;
    dropout and noise off. All batches at once: a (B, m, D) array through the layers, where a
    per-example normalization (LN, GN) takes the rows one by one as it always does."""
    m = int(batch_size)
    n = len(x) // m * m
    h = np.asarray(x[:n], dtype=model.dtype).reshape(n // m, m, -1)
    was_training = model.training
    model.eval()
    for _, layer in model.named_layers:
        if isinstance(layer, BatchNorm1d):
            mu = h.mean(axis=1, keepdims=True)
            xc = h - mu
            var = (xc * xc).mean(axis=1, keepdims=True)
            h = layer.gamma * (xc / np.sqrt(var + h.dtype.type(layer.eps))) + layer.beta
        elif isinstance(layer, Linear):
            h = layer.forward(h.reshape(n, -1)).reshape(n // m, m, -1)
        elif isinstance(layer, GroupNorm):
            h = layer.forward(h.reshape(n, -1)).reshape(n // m, m, -1)
        elif isinstance(layer, Activation):
            h = layer.forward(h)
        # Dropout and NoiseInjection are the identity in eval mode
    model.train(was_training)
    return h.reshape(n, -1)


def train_vs_eval(model: MLP, cfg: TrainConfig) -> tuple[float, float]:
    """(accuracy with batch statistics, accuracy in eval mode) on the training split: what the
    ``eval_gap`` probe measures (the same rows in the same order, whole batches of the run's
    batch size), for the final net only and with every batch in one pass."""
    data = load_data(cfg)
    m = cfg.batch_size
    order = np.random.default_rng([cfg.seed, 4]).permutation(len(data.y_train))
    order = order[: len(order) // m * m]
    x = np.asarray(data.x_train[order], dtype=model.dtype)
    y = data.y_train[order]
    with single_threaded_blas(), np.errstate(all="ignore"):
        batch = forward_in_batches(model, x, m)
        model = model.clone().eval()
        running = model.forward(x)
    return float(np.mean(batch.argmax(axis=1) == y)), float(np.mean(running.argmax(axis=1) == y))


def kind_result(grid: BatchGrid, histories: Sequence[History]) -> KindResult:
    b, s = len(grid.batch_sizes), grid.seeds
    hs = np.array(list(histories), dtype=object).reshape(b, s)

    def table(fn) -> Array:
        return np.array([[fn(h) for h in row] for row in hs], dtype=np.float64)

    scores = [
        [(math.nan, math.nan) if h.diverged_at is not None else train_vs_eval(model_of(h), h.config)
         for h in row]
        for row in hs
    ]  # fmt: skip
    ref = (
        hs[list(grid.batch_sizes).index(REFERENCE_BATCH), 0]
        if (REFERENCE_BATCH in grid.batch_sizes)
        else hs[0, 0]
    )
    return KindResult(
        norm=grid.norm,
        groups=grid.groups,
        batch_sizes=np.array(grid.batch_sizes),
        seeds=np.arange(s) + grid.base.seed,
        lr=np.array([scaled_lr(grid.lr, m) for m in grid.batch_sizes]),
        steps=np.array([grid.examples // m for m in grid.batch_sizes]),
        examples=grid.examples,
        final_acc=table(lambda h: math.nan if h.diverged_at is not None else h.test_acc[-1]),
        acc_batch=np.array([[a for a, _ in row] for row in scores]),
        acc_running=np.array([[r for _, r in row] for row in scores]),
        final_loss=table(final_loss),
        diverged_at=table(lambda h: -1 if h.diverged_at is None else h.diverged_at).astype(int),
        seconds=table(lambda h: h.seconds),
        reference=dict(ref.final_state) if ref.diverged_at is None else {},
        reference_config=ref.config,
    )


def run_grid(
    grid: BatchGrid, progress: Progress | None = None, executor: Executor | None = None
) -> KindResult:
    """Train the grid's nets (in the worker processes when given an executor), then score each
    trained net on the training split with batch and with running statistics."""
    histories = fanout.sweep(grid.configs(), progress=progress, executor=executor, workers=2)
    return kind_result(grid, histories)


# --------------------------------------------------------------------------- dropout


@dataclass
class Shift:
    """The variance of each BN layer's input, per unit, in one trained net; and of the input of
    the dropout before it (the activation of the layer below)."""

    var_train: Array  # (L, D) train mode: dropout on, BN with batch statistics
    var_eval: Array  # (L, D) eval mode: dropout off, BN with running statistics
    running_var: Array  # (L, D) what BN stored during training (and divides by at eval)
    predicted: Array  # (L, D) Var_eval / (Var_eval + (1/p - 1) sum_j W_kj^2 E[a_j^2]); NaN
    #                   where no dropout feeds the layer
    act_train: Array  # (L, D) variance of the activation feeding layer l (row l - 1), train mode
    act_eval: Array  # (L, D) the same in eval mode; row 0 (the data) is NaN

    @property
    def ratio(self) -> Array:
        """(L, D) Var_eval / Var_train per unit: 1 means no shift."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.var_eval / self.var_train

    @property
    def layer_ratio(self) -> Array:
        """(L,) the ratio averaged over the layer's units."""
        return _row_means(self.ratio)

    @property
    def layer_predicted(self) -> Array:
        return _row_means(self.predicted)

    @property
    def input_ratio(self) -> Array:
        """(L,) Var_eval / Var_train of the activations feeding each layer, averaged over units
        that vary (a ReLU unit that is always 0 has no ratio): 1 where the formula's assumption,
        an input distributed alike in both modes, holds."""
        with np.errstate(invalid="ignore", divide="ignore"):
            r = np.where(self.act_train > 0, self.act_eval / self.act_train, np.nan)
        return _row_means(r)


def _row_means(a: Array) -> Array:
    a = np.where(np.isfinite(a), a, np.nan)
    return np.array([np.nanmean(row) if np.isfinite(row).any() else np.nan for row in a])


def variance_shift(
    model: MLP, x: Array, batch_size: int, reps: int = DROPOUT_REPS, seed: int = 0
) -> Shift:
    """Measure every BN layer's input variance in train mode (dropout on, batch statistics,
    ``reps`` shuffled passes over x in batches) and in eval mode (one pass, dropout off, running
    statistics), per unit; and the variance train mode would have if only the dropout right
    before the layer changed it: Var_train = Var_eval + (1/p - 1) sum_j W_kj^2 E[a_j^2], with a
    the dropout's input in eval mode (exact for independent masks and an input distributed
    alike in both modes, which ``act_train`` and ``act_eval`` let one check)."""
    model = model.clone()
    n_layers = model.n_hidden
    sites = [f"fc{i}" for i in range(1, n_layers + 1)] + [f"act{i}" for i in range(1, n_layers)]
    x = np.asarray(x, dtype=model.dtype)
    with single_threaded_blas(), np.errstate(all="ignore"):
        model.eval()
        _, trace = model.forward_trace(x)
        eval_var = {name: trace[name].astype(np.float64).var(axis=0) for name in sites}
        var_eval = np.stack([eval_var[f"fc{i}"] for i in range(1, n_layers + 1)])
        predicted = np.full_like(var_eval, np.nan)
        for i in range(2, n_layers + 1):
            drop = model.layers.get(f"drop{i - 1}")
            if drop is None:
                continue
            keep = 1.0 - drop.p
            a = trace[f"act{i - 1}"].astype(np.float64)
            w = model.params[f"fc{i}.weight"].astype(np.float64)
            extra = (1.0 / keep - 1.0) * (w * w) @ np.mean(a * a, axis=0)
            predicted[i - 1] = var_eval[i - 1] / (var_eval[i - 1] + extra)
        model.train()
        rng = np.random.default_rng(seed)
        sums = {name: 0.0 for name in sites}
        squares = {name: 0.0 for name in sites}
        count = 0
        with model.frozen_stats():
            for _ in range(reps):
                order = rng.permutation(len(x))
                for start in range(0, len(x) - batch_size + 1, batch_size):
                    _, t = model.forward_trace(x[order[start : start + batch_size]])
                    for name in sites:
                        z = t[name].astype(np.float64)
                        sums[name] = sums[name] + z.sum(axis=0)
                        squares[name] = squares[name] + (z * z).sum(axis=0)
                    count += batch_size
        train_var = {n: squares[n] / count - (sums[n] / count) ** 2 for n in sites}
    nan = np.full(var_eval.shape[1], np.nan)
    act_train = np.stack([nan] + [train_var[f"act{i}"] for i in range(1, n_layers)])
    act_eval = np.stack([nan] + [eval_var[f"act{i}"] for i in range(1, n_layers)])
    var_train = np.stack([train_var[f"fc{i}"] for i in range(1, n_layers + 1)])
    running = np.stack([model.layers[f"bn{i}"].running_var for i in range(1, n_layers + 1)])
    return Shift(var_train, var_eval, running.astype(np.float64), predicted, act_train, act_eval)


@dataclass
class DropoutResult:
    keep: float
    test_acc: dict[str, float]  # EVERY, RECALIBRATED, LAST: test accuracy, eval mode
    shifts: dict[str, Shift]  # EVERY and LAST
    diverged: dict[str, int | None]

    @property
    def recalibration_gain(self) -> float:
        """Recalibrated minus as trained (accuracies are counts over the test split: a
        difference under 1e-9 is no difference)."""
        gain = self.test_acc[RECALIBRATED] - self.test_acc[EVERY]
        return 0.0 if abs(gain) < 1e-9 else gain


def no_dropout_twin(bn: KindResult) -> float | None:
    """The test accuracy of the grid's BN net at batch 32 for the first seed: the dropout
    nets' twin without dropout (same start, same batches, same rate), if it trained."""
    if REFERENCE_BATCH not in bn.batch_sizes:
        return None
    v = float(bn.final_acc[list(bn.batch_sizes).index(REFERENCE_BATCH), 0])
    return v if math.isfinite(v) else None


def model_of(h: History) -> MLP:
    """The trained net of a history, rebuilt from its final state."""
    data = load_data(h.config)
    model = build_model(h.config, data.n_features, data.n_classes)
    model.load_state_arrays(h.final_state)
    return model


def accuracy_on_test(model: MLP, cfg: TrainConfig) -> float:
    data = load_data(cfg)
    model = model.clone().eval()
    with single_threaded_blas(), np.errstate(all="ignore"):
        logits = model.forward(np.asarray(data.x_test, dtype=model.dtype))
    return float(np.mean(logits.argmax(axis=1) == data.y_test))


def run_dropout(
    cfg: DropoutArms, progress: Progress | None = None, executor: Executor | None = None
) -> DropoutResult:
    arms = dict(zip(cfg.arms(), fanout.sweep(cfg.configs(), progress, executor), strict=True))
    data = load_data(cfg.base)
    acc, shifts, diverged = {}, {}, {}
    for label in (EVERY, LAST):
        h = arms[label]
        diverged[label] = h.diverged_at
        model = model_of(h)
        acc[label] = math.nan if h.diverged_at is not None else float(h.test_acc[-1])
        shifts[label] = variance_shift(model, data.x_train, cfg.base.batch_size)
        if label == EVERY:
            with single_threaded_blas(), np.errstate(all="ignore"):
                fixed = recalibrate(
                    model.clone(), np.asarray(data.x_train, model.dtype), cfg.base.batch_size
                )
            acc[RECALIBRATED] = (
                math.nan if h.diverged_at is not None else accuracy_on_test(fixed, cfg.base)
            )
    return DropoutResult(
        keep=cfg.keep,
        test_acc={k: acc[k] for k in (EVERY, RECALIBRATED, LAST)},
        shifts=shifts,
        diverged=diverged,
    )


def li_ratio(keep: float | Array, c: float | Array, v: float | Array) -> Array:
    """Li et al. (2019): dropout (keep probability p, inverted) on an input of mean c and
    variance v, then BN: Var_test / Var_train = v / ((c^2 + v) / p - c^2); p when c = 0."""
    keep, c, v = (np.asarray(a, dtype=np.float64) for a in (keep, c, v))
    return v / ((c * c + v) / keep - c * c)


@dataclass
class FormulaCheck:
    mean: float  # the input's mean c (its variance v is 1)
    keeps: Array  # (P,)
    measured: Array  # (P,) Var_eval / Var_train of the sample
    stderr: Array  # (P,) its standard error, from the spread over blocks of the sample
    formula: Array  # (P,) li_ratio with the sample's own mean and variance
    samples: int


def formula_check(
    mean: float, keeps: Sequence[float] = KEEPS, n: int = FORMULA_SAMPLES, seed: int = 0
) -> FormulaCheck:
    """Draw n values of N(mean, 1), put them through the engine's inverted dropout at each keep
    probability, and compare the variance before (eval mode: dropout is the identity) and after
    (train mode) with Li et al.'s formula."""
    if not (math.isfinite(mean) and abs(mean) <= 10):
        raise ValueError(f"mean must be a number in [-10, 10]; got {mean!r}")
    rng = np.random.default_rng(seed)
    x = float(mean) + rng.standard_normal(n)
    c, v = float(x.mean()), float(x.var())
    measured, stderr = [], []
    for p in keeps:
        y, _ = F.dropout_forward(x, 1.0 - float(p), rng.random(n))
        measured.append(v / float(y.var()))
        blocks = [
            float(xb.var() / yb.var())
            for xb, yb in zip(
                np.array_split(x, FORMULA_BLOCKS), np.array_split(y, FORMULA_BLOCKS), strict=True
            )
        ]
        stderr.append(float(np.std(blocks, ddof=1) / math.sqrt(FORMULA_BLOCKS)))
    return FormulaCheck(
        mean=float(mean),
        keeps=np.array(keeps, dtype=np.float64),
        measured=np.array(measured),
        stderr=np.array(stderr),
        formula=li_ratio(np.array(keeps), c, v),
        samples=n,
    )


def run(cfg: BatchGrid | DropoutArms, progress: Progress | None = None, executor=None) -> Any:
    """A KindResult for a ``BatchGrid``, a DropoutResult for ``DropoutArms``."""
    if isinstance(cfg, BatchGrid):
        return run_grid(cfg, progress, executor)
    if isinstance(cfg, DropoutArms):
        return run_dropout(cfg, progress, executor)
    raise TypeError(f"not a variants experiment: {cfg!r}")


EXPERIMENT = Experiment("variants", run, processes=2)


# --------------------------------------------------------------------------- which axes


@dataclass
class Axes:
    """A real batch through the first Linear of the lesson's net at its start, and what BN, LN
    and GN make of it: which values share one mean, and the normalized outputs."""

    z: Array  # (N, D) the Linear output (the normalizers' input)
    groups: int
    out: dict[str, Array]  # "BN", "LN", "GN": (N, D) normalized with gamma = 1, beta = 0
    digits: Array  # (N,) the digits' labels
    unit: int = HIGHLIGHT_UNIT  # the value whose companions the figure outlines: example 0

    def members(self, kind: str, example: int = 0, unit: int | None = None) -> Array:
        """(N, D) mask of the values that share the mean of (example, unit) under ``kind``."""
        unit = self.unit if unit is None else unit
        n, d = self.z.shape
        mask = np.zeros((n, d), dtype=bool)
        if kind == "BN":
            mask[:, unit] = True
        elif kind == "LN":
            mask[example, :] = True
        elif kind == "GN":
            size = d // self.groups
            g = unit // size
            mask[example, g * size : (g + 1) * size] = True
        else:
            raise ValueError(f"kind must be BN, LN or GN; got {kind!r}")
        return mask

    def shared(
        self, kind: str, example: int = 0, unit: int | None = None
    ) -> tuple[int, float, float]:
        """How many values share that mean, their mean and their std."""
        values = self.z[self.members(kind, example, unit)]
        return int(values.size), float(values.mean()), float(values.std())


def mlp_axes(groups: int, seed: int = 0, n: int = 8) -> Axes:
    """The first test digit of each class 0 .. n-1 through the first Linear of the
    He-initialized net (seed), in float64."""
    data = load_data(TrainConfig(dataset="digits"))
    if WIDTH % groups:
        raise ValueError(f"groups must divide the {WIDTH} units; got {groups}")
    if not 2 <= n <= data.n_classes:
        raise ValueError(f"n must be in [2, {data.n_classes}]; got {n}")
    model = MLP((data.n_features, WIDTH, data.n_classes), "relu", init="he", seed=seed)
    rows = [int(np.flatnonzero(data.y_test == k)[0]) for k in range(n)]
    x = np.asarray(data.x_test[rows], dtype=np.float64)
    z = model.layers["fc1"].forward(x)
    ones, zeros = np.ones(WIDTH), np.zeros(WIDTH)
    out = {
        "BN": F.batchnorm_forward(z, ones, zeros)[0],
        "LN": F.layernorm_forward(z, ones, zeros)[0],
        "GN": F.groupnorm_forward(z, ones, zeros, groups)[0],
    }
    return Axes(z=z, groups=int(groups), out=out, digits=np.asarray(data.y_test[rows]))


# --------------------------------------------------------------------------- batch size 1


@dataclass
class BatchOne:
    """One test digit alone through the first hidden layer of the trained BN and LN nets, and
    the BN net's predictions when every test digit is a batch of one in train mode."""

    digit: int  # index in the test split
    label: int
    z_bn: Array  # (D,) the BN net's first Linear output for this digit
    y_bn: Array  # (D,) BN of that batch of one, train mode
    beta: Array  # (D,) the BN layer's learned beta
    dz: Array  # (D,) dL/dz through BN at batch 1 for an upstream gradient of ones
    z_ln: Array  # (D,) the LN net's first Linear output
    y_ln: Array  # (D,) its LayerNorm output (the same in train and eval mode)
    predicted_one: Array  # (n_test,) the BN net's class for each digit alone, train mode
    acc_one: float  # its test accuracy so
    acc_eval: float  # the BN net's test accuracy in eval mode (running statistics)
    acc_ln: float  # the LN net's test accuracy (any batch size)

    @property
    def max_from_beta(self) -> float:
        return float(np.max(np.abs(self.y_bn - self.beta)))

    @property
    def classes_predicted(self) -> Array:
        return np.unique(self.predicted_one)


def forward_batch_one(model: MLP, x: Array) -> Array:
    """Logits of each row of x as a batch of its own, BN in train mode (statistics of that one
    example) computed by ``functional.batchnorm_forward``; the layer ``nn.BatchNorm1d`` itself
    refuses such a batch, as training here does."""
    out = []
    for row in np.asarray(x, dtype=model.dtype):
        h = row[None, :]
        for _, layer in model.named_layers:
            if isinstance(layer, BatchNorm1d):
                h = F.batchnorm_forward(h, layer.gamma, layer.beta, layer.eps)[0]
            else:
                h = layer.forward(h)
        out.append(h[0])
    return np.array(out)


def batch_one(bn: KindResult, ln: KindResult, digit: int) -> BatchOne:
    """BN at batch size 1 on the grid's trained batch-32 nets (first seed)."""
    if not bn.reference or not ln.reference:
        raise ValueError("the batch-32 nets diverged: no trained net to show")
    data = load_data(bn.reference_config)
    n = len(data.y_test)
    if not 0 <= digit < n:
        raise ValueError(f"digit must be in [0, {n - 1}]; got {digit}")
    bn_net = build_model(bn.reference_config, data.n_features, data.n_classes)
    bn_net.load_state_arrays(bn.reference)
    ln_net = build_model(ln.reference_config, data.n_features, data.n_classes)
    ln_net.load_state_arrays(ln.reference)
    bn_net.train()
    ln_net.eval()
    x = np.asarray(data.x_test, dtype=np.float64)
    with single_threaded_blas(), np.errstate(all="ignore"):
        row = x[digit : digit + 1].astype(bn_net.dtype)
        z = bn_net.layers["fc1"].forward(row)
        bn1 = bn_net.layers["bn1"]
        y, cache = F.batchnorm_forward(z, bn1.gamma, bn1.beta, bn1.eps)
        dz, _, _ = F.batchnorm_backward(np.ones_like(y), cache)
        _, trace = ln_net.forward_trace(x[digit : digit + 1].astype(ln_net.dtype))
        predicted = forward_batch_one(bn_net, x).argmax(axis=1)
        acc_eval = accuracy_on_test(bn_net, bn.reference_config)
        acc_ln = accuracy_on_test(ln_net, ln.reference_config)
    return BatchOne(
        digit=int(digit),
        label=int(data.y_test[digit]),
        z_bn=z[0].astype(np.float64),
        y_bn=y[0].astype(np.float64),
        beta=bn1.beta.astype(np.float64).copy(),
        dz=dz[0].astype(np.float64),
        z_ln=trace["fc1"][0].astype(np.float64),
        y_ln=trace["ln1"][0].astype(np.float64),
        predicted_one=predicted,
        acc_one=float(np.mean(predicted == data.y_test)),
        acc_eval=acc_eval,
        acc_ln=acc_ln,
    )


# --------------------------------------------------------------------------- recurrent nets


@dataclass
class Sequences:
    """A batch of variable-length sequences, as an RNN with BN per time step would see it."""

    lengths: Array  # (n,) sorted, longest first
    steps: Array  # (T,) time steps 1 .. T
    bn_count: Array  # (T,) sequences still running at step t: what BN's statistics average over
    ln_count: int  # the hidden units of one example: what LayerNorm averages over, every step
    test_length: int  # a test sentence longer than every training one

    @property
    def last_shared(self) -> int:
        """The last step at which at least two sequences share BN's statistics."""
        ok = np.flatnonzero(self.bn_count >= 2)
        return int(self.steps[ok[-1]]) if ok.size else 0


def sequences(n: int = 16, seed: int = 0, lo: int = 4, hi: int = 40) -> Sequences:
    """n lengths drawn uniformly from [lo, hi] (a stand-in for sentences of a batch)."""
    rng = np.random.default_rng(seed)
    lengths = np.sort(rng.integers(lo, hi + 1, size=n))[::-1]
    test_length = int(lengths.max() + max(4, (hi - lo) // 4))
    steps = np.arange(1, test_length + 1)
    counts = np.array([int(np.sum(lengths >= t)) for t in steps])
    return Sequences(lengths, steps, counts, RNN_HIDDEN, test_length)


# --------------------------------------------------------------------------- words from results


def pct(v: float) -> str:
    return "—" if not math.isfinite(v) else f"{v:.1%}"


def points(v: float) -> str:
    """An accuracy difference in percentage points, signed."""
    if not math.isfinite(v):
        return "—"
    text = f"{100 * v:+.1f}"
    return f"{'±0.0' if text in ('+0.0', '-0.0') else text} points"


def describe_falls(results: Sequence[KindResult], small: int = 2) -> list[str]:
    """Per normalization: its accuracy at batch 32 and at ``small``, in words."""
    out = []
    for r in results:
        out.append(
            f"**{r.name}**: {pct(r.acc_at(REFERENCE_BATCH))} at batch {REFERENCE_BATCH}, "
            f"{pct(r.acc_at(small))} at batch {small} ({points(-r.fall(small))})"
        )
    return out


def compare_falls(results: Sequence[KindResult], small: int = 2) -> str:
    """What the run shows about BN against LN and GN from batch 32 to ``small``, in words."""
    by = {r.norm: r for r in results}
    if not {"batch", "layer", "group"} <= set(by):
        return ""
    bn = by["batch"].fall(small)
    others = [by["layer"], by["group"]]
    if not all(math.isfinite(v) for v in [bn, *(o.fall(small) for o in others)]):
        return (
            f"Some nets diverged, so this run cannot compare the losses from batch "
            f"{REFERENCE_BATCH} to {small}; see the chart."
        )
    more = [o for o in others if bn > o.fall(small)]
    if len(more) == 1:
        others = [more[0], next(o for o in others if o is not more[0])]
    against = " and ".join(f"{100 * o.fall(small):.1f}" for o in others)
    span = f"from batch {REFERENCE_BATCH} to {small}"
    a, b = (o.name for o in others)
    if len(more) == 2:
        claim = f"BN loses more accuracy {span} than {a} and {b} do"
    elif not more:
        claim = f"BN does not lose more accuracy {span} than {a} and {b} do"
    else:
        claim = f"BN loses more accuracy {span} than {a} but not more than {b}"
    return f"In this run {claim}: {100 * bn:.1f} points against {against}."


def bn_falls_most(results: Sequence[KindResult], small: int = 2) -> bool:
    """Whether BN loses more accuracy from batch 32 to ``small`` than LN and GN both do (False
    where any of the three has no accuracy)."""
    by = {r.norm: r for r in results}
    if not {"batch", "layer", "group"} <= set(by):
        return False
    bn = by["batch"].fall(small)
    others = [by[n].fall(small) for n in ("layer", "group")]
    return all(math.isfinite(v) for v in [bn, *others]) and all(bn > o for o in others)


def describe_gap(results: Sequence[KindResult]) -> str:
    """Where BN's train-vs-eval difference is largest, with its sign, in words."""
    by = {r.norm: r for r in results}
    if "batch" not in by:
        return ""
    bn = by["batch"]
    gap = _nanmean(bn.gap)
    if not np.isfinite(gap).any():
        return ""
    i = int(np.nanargmax(np.abs(gap)))
    m = int(bn.batch_sizes[i])
    direction = "lower" if gap[i] < 0 else "higher"
    words = (
        f"BN's two scores differ most at batch {m}: with the statistics of its own batches of "
        f"{m} it scores {100 * abs(gap[i]):.1f} points {direction} on the training split than "
        f"in eval mode (mean of {bn.gap.shape[1]} nets); at batch {int(bn.batch_sizes[-1])} "
        f"the difference is {100 * abs(gap[-1]):.1f} points."
    )
    zero = [r.name for r in results if r.norm != "batch" and np.nanmax(np.abs(r.gap)) == 0]
    if zero:
        words += f" For {', '.join(zero)} it is exactly 0 at every batch size."
    return words


def describe_shift(result: DropoutResult) -> list[str]:
    """The measured and predicted ratios per BN layer of the every-block net, in words."""
    s = result.shifts[EVERY]
    out = []
    for i, (m, p) in enumerate(zip(s.layer_ratio, s.layer_predicted, strict=True), start=1):
        if not math.isfinite(m):
            continue
        if math.isfinite(p):
            out.append(
                f"BN layer {i} (after a dropout): Var_eval / Var_train = {m:.3f} measured, "
                f"{p:.3f} from the formula"
            )
        else:
            out.append(f"BN layer {i} (no dropout before it): {m:.3f} measured")
    return out


def describe_shift_gap(result: DropoutResult) -> str:
    """Why the measured ratio and the formula differ, from the dropout's own input."""
    s = result.shifts[EVERY]
    fed = [i for i in range(len(s.var_eval)) if math.isfinite(s.layer_predicted[i])]
    if not fed:
        return ""
    parts = [
        f"{s.input_ratio[i]:.3f} for the activations feeding BN layer {i + 1}"
        for i in fed
        if math.isfinite(s.input_ratio[i])
    ]
    if not parts:
        return ""
    return (
        "The formula counts only the dropout right before a layer and assumes the dropout's "
        "input a is distributed alike in train and eval mode. Measured, Var_eval(a) / "
        f"Var_train(a) is {'; '.join(parts)}: where it is not 1, the BN layers below already "
        "see different statistics in the two modes, and their shift passes up."
    )


def describe_dropout(result: DropoutResult) -> str:
    """The three accuracies, ordered, in words."""
    acc = result.test_acc
    if not all(math.isfinite(v) for v in acc.values()):
        return "A dropout net diverged; see the notes above."
    gain = result.recalibration_gain
    if gain > 0:
        recal = f"re-estimating its BN statistics with dropout off gains {points(gain)}"
    elif gain < 0:
        recal = f"re-estimating its BN statistics with dropout off loses {points(gain)[1:]}"
    else:
        recal = "re-estimating its BN statistics with dropout off changes nothing here"
    last = acc[LAST] - acc[EVERY]
    return (
        f"Dropout in every block: {pct(acc[EVERY])}; {recal} ({pct(acc[RECALIBRATED])}); "
        f"dropout after the last BN only: {pct(acc[LAST])} ({points(last)} against every "
        "block)."
    )


# --------------------------------------------------------------------------- downloads


def _step(d: int) -> int | None:
    return None if d < 0 else int(d)


def grid_csv(results: Sequence[KindResult]) -> str:
    rows = []
    for r in results:
        for b, m in enumerate(r.batch_sizes):
            for s, seed in enumerate(r.seeds):
                rows.append(
                    {
                        "norm": r.label,
                        "groups": r.groups if r.norm == "group" else None,
                        "batch_size": int(m),
                        "learning_rate": r.lr[b],
                        "steps": int(r.steps[b]),
                        "examples_seen": r.examples,
                        "seed": int(seed),
                        "test_acc": r.final_acc[b, s],
                        "train_acc_batch_stats": r.acc_batch[b, s],
                        "train_acc_running_stats": r.acc_running[b, s],
                        "final_loss": r.final_loss[b, s],
                        "diverged_at": None
                        if r.diverged_at[b, s] < 0
                        else int(r.diverged_at[b, s]),
                    }
                )
    return csv_table(columns_of(rows))


def dropout_csv(result: DropoutResult) -> str:
    rows = []
    for label, s in result.shifts.items():
        for i in range(len(s.var_eval)):
            rows.append(
                {
                    "net": label,
                    "keep_prob": result.keep,
                    "bn_layer": i + 1,
                    "ratio_measured": s.layer_ratio[i],
                    "ratio_formula": s.layer_predicted[i],
                    "var_train_mean": float(np.mean(s.var_train[i])),
                    "var_eval_mean": float(np.mean(s.var_eval[i])),
                    "running_var_mean": float(np.mean(s.running_var[i])),
                }
            )
    return csv_table(columns_of(rows))


def dropout_npz(result: DropoutResult, check: FormulaCheck) -> bytes:
    arrays: dict[str, Any] = {"keep": np.array(result.keep)}
    for key, label in (("every", EVERY), ("last", LAST)):
        s = result.shifts[label]
        for name in ("var_train", "var_eval", "running_var", "predicted"):
            arrays[f"{key}/{name}"] = getattr(s, name)
    for label, acc in result.test_acc.items():
        arrays[f"test_acc/{label}"] = np.array(acc)
    for name in ("keeps", "measured", "stderr", "formula"):
        arrays[f"formula_check/{name}"] = getattr(check, name)
    arrays["formula_check/mean"] = np.array(check.mean)
    return npz_bytes(arrays)


def pitfalls_npz(one: BatchOne, seqs: Sequences, axes: Axes) -> bytes:
    arrays = {f"batch_one/{k}": np.asarray(v) for k, v in vars(one).items()}
    arrays |= {f"sequences/{k}": np.asarray(v) for k, v in vars(seqs).items()}
    arrays["axes/z"] = axes.z
    arrays |= {f"axes/{k}": v for k, v in axes.out.items()}
    arrays["axes/groups"] = np.array(axes.groups)
    return npz_bytes(arrays)
