"""Training runs: a validated config in, a History of everything measured out.

``train`` trains one net; ``train_arms`` trains any number of nets (plain, BN, noisy BN, LN,
GN, with dropout, ...) from the same initial Linear weights on the same mini-batch sequence, so
any difference between them is the normalization's doing; ``train_twins`` is its plain-vs-BN
case. A run that diverges stops there and says when; it never raises. The stepping is the
engine's (``bnviz.engine``): K nets of one architecture at once, a single run is K = 1.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np

from bnviz import engine
from bnviz import functional as F
from bnviz.blas import single_threaded_blas
from bnviz.data import BATCH_ORDERS, DATASETS, BatchSampler, Dataset, load_dataset
from bnviz.measure import PROBES, make_probes
from bnviz.nn import DROPOUT_SITES, INITS, MLP, NORMS, PLACEMENTS
from bnviz.optim import SCHEDULES
from bnviz.record import LayerRecord, Recorder

Array = np.ndarray
Progress = Callable[[int, int], None]

DIVERGENCE_FACTOR = engine.DIVERGENCE_FACTOR  # a loss this many times the first one diverged
DTYPES = ("float32", "float64")
NORM_LABELS = {"none": "plain", "batch": "BN", "layer": "LN", "group": "GN"}

# Allowed values, declared once: validation, error messages and the app's widgets use them.
CHOICES: dict[str, tuple] = {
    "dataset": DATASETS,
    "activation": tuple(F.ACTIVATIONS),
    "norm": NORMS,
    "placement": PLACEMENTS,
    "dropout_where": DROPOUT_SITES,
    "init": INITS,
    "schedule": SCHEDULES,
    "batch_order": BATCH_ORDERS,
    "dtype": DTYPES,
}
INT_RANGES: dict[str, tuple[int, int]] = {
    "n_samples": (20, 100_000),
    "groups": (1, 1024),
    "decay_steps": (1, 1_000_000),
    "batch_size": (2, 4096),
    "steps": (1, 1_000_000),
    "record_every": (1, 1_000_000),
    "eval_every": (0, 1_000_000),
    "eval_until": (0, 1_000_000),
    "probe_size": (8, 4096),
    "seed": (0, 2**31 - 1),
}
FLOAT_RANGES: dict[str, tuple[float, float]] = {
    "noise": (0.0, 2.0),
    "test_fraction": (0.05, 0.5),
    "init_std": (1e-4, 10.0),
    "init_scale": (1e-3, 1e3),
    "lr": (1e-6, 1e3),
    "lr_decay": (1e-3, 1.0),
    "momentum": (0.0, 0.999),
    "weight_decay": (0.0, 1.0),
    "bn_eps": (1e-300, 1.0),
    "bn_momentum": (1e-4, 1.0),
    "bn_noise": (0.0, 4.0),
    "dropout": (0.0, 0.9),
}
HIDDEN_LAYERS = (1, 8)
HIDDEN_WIDTH = (1, 1024)


@dataclass(frozen=True)
class TrainConfig:
    """Every knob of a run. Invalid values raise ValueError naming the field and its range."""

    dataset: str = "digits"
    n_samples: int = 1000  # synthetic 2-D sets only
    noise: float = 0.1  # synthetic 2-D sets only
    test_fraction: float = 0.2
    data_dir: str | None = None  # MNIST only: folder with the IDX files
    hidden: tuple[int, ...] = (100, 100, 100)
    activation: str = "sigmoid"
    norm: str = "batch"  # none, batch, layer, group; ``batchnorm=True/False`` is shorthand
    groups: int = 4  # GroupNorm: groups of consecutive units per layer
    placement: str = "before"
    bn_noise: float = 0.0  # noisy BN's strength, 1 = Santurkar et al.'s constants
    dropout: float = 0.0  # drop probability
    dropout_where: str = "every"  # after every hidden block, or after the last one only
    init: str = "gaussian"
    init_std: float = 0.01  # the paper's "small random Gaussian"
    init_scale: float = 1.0
    lr: float = 0.5
    schedule: str = "constant"
    lr_decay: float = 0.1
    decay_steps: int = 1000
    momentum: float = 0.0
    weight_decay: float = 0.0
    batch_size: int = 60
    batch_order: str = "shuffled"
    steps: int = 2000
    record_every: int = 50
    eval_every: int = 0  # also test accuracy alone every this many steps (0: only at records)
    eval_until: int = 0  # ... up to this step (0: the whole run)
    probe_size: int = 128
    seed: int = 0
    dtype: str = "float32"
    bn_eps: float = 1e-5
    bn_momentum: float | None = 0.1
    probes: tuple[str, ...] = ()  # measures beyond the distributions (bnviz.measure.PROBES)
    landscape: tuple[float, float] = (0.5, 4.0)  # the landscape probe's steps, x lr

    def __post_init__(self) -> None:
        for name, allowed in CHOICES.items():
            value = getattr(self, name)
            if value not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
        for name, (lo, hi) in INT_RANGES.items():
            value = getattr(self, name)
            ok = isinstance(value, int | np.integer) and not isinstance(value, bool)
            if isinstance(value, float) and value.is_integer():
                object.__setattr__(self, name, int(value))
                ok = True
            if not ok or not lo <= int(value) <= hi:
                raise ValueError(f"{name} must be an integer in [{lo}, {hi}]; got {value!r}")
            object.__setattr__(self, name, int(value))
        for name, (lo, hi) in FLOAT_RANGES.items():
            value = getattr(self, name)
            if name == "bn_momentum" and value is None:
                continue
            ok = isinstance(value, int | float | np.number) and not isinstance(value, bool)
            if not ok or not math.isfinite(float(value)) or not lo <= float(value) <= hi:
                raise ValueError(f"{name} must be a number in [{lo:g}, {hi:g}]; got {value!r}")
            object.__setattr__(self, name, float(value))
        try:
            hidden = tuple(self.hidden)
        except TypeError:
            hidden = None
        lo, hi = HIDDEN_WIDTH
        if (
            hidden is None
            or not HIDDEN_LAYERS[0] <= len(hidden) <= HIDDEN_LAYERS[1]
            or not all(isinstance(h, int | np.integer) and lo <= h <= hi for h in hidden)
        ):
            raise ValueError(
                f"hidden must list {HIDDEN_LAYERS[0]} to {HIDDEN_LAYERS[1]} layer widths, "
                f"each an integer in [{lo}, {hi}]; got {self.hidden!r}"
            )
        object.__setattr__(self, "hidden", tuple(int(h) for h in hidden))
        if self.dataset == "mnist" and not self.data_dir:
            raise ValueError("data_dir must name the folder holding the MNIST IDX files")
        if self.norm == "group" and any(h % self.groups for h in self.hidden):
            raise ValueError(
                f"groups must divide every hidden width {self.hidden}; got {self.groups}"
            )
        probes = tuple(self.probes)
        unknown = [p for p in probes if p not in PROBES]
        if unknown:
            raise ValueError(f"probes must be among {', '.join(PROBES)}; got {unknown}")
        object.__setattr__(self, "probes", probes)
        lo, hi = (float(v) for v in self.landscape)
        if not (math.isfinite(lo) and math.isfinite(hi) and 0 < lo < hi <= 1000):
            raise ValueError(f"landscape must be two steps 0 < lo < hi <= 1000; got {lo}, {hi}")
        object.__setattr__(self, "landscape", (lo, hi))

    @property
    def batchnorm(self) -> bool:
        return self.norm == "batch"

    @property
    def label(self) -> str:
        """The run as the pages name it: plain, BN, LN, GN, noisy BN, plain + noise, ..."""
        name = NORM_LABELS[self.norm]
        if self.bn_noise > 0:
            name = "noisy BN" if self.norm == "batch" else f"{name} + noise"
        if self.dropout > 0:
            name += " + dropout"
        return name

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Inverse of ``as_dict`` (also after a JSON round trip, which turns tuples to lists)."""
        known = {f.name for f in fields(cls)} | {"batchnorm"}
        tuples = ("hidden", "probes", "landscape")
        return cls(**{k: tuple(v) if k in tuples else v for k, v in values.items() if k in known})


_dataclass_init = TrainConfig.__init__


def _init(self: TrainConfig, *args: Any, batchnorm: bool | None = None, **kwargs: Any) -> None:
    """``batchnorm=True/False`` is shorthand for ``norm="batch"/"none"`` and wins over ``norm``
    (so ``dataclasses.replace(cfg, batchnorm=False)`` makes the plain twin of a BN config)."""
    if batchnorm is not None:
        if not isinstance(batchnorm, bool | np.bool_):
            raise ValueError(f"batchnorm must be True or False; got {batchnorm!r}")
        kwargs["norm"] = "batch" if batchnorm else "none"
    _dataclass_init(self, *args, **kwargs)


TrainConfig.__init__ = _init


def load_data(cfg: TrainConfig) -> Dataset:
    """The config's dataset. The split is fixed (seed 0): ``cfg.seed`` varies only the initial
    weights and the batch order, so two seeds are two runs on the same data."""
    return load_dataset(
        cfg.dataset,
        n_samples=cfg.n_samples,
        noise=cfg.noise,
        seed=0,
        test_fraction=cfg.test_fraction,
        data_dir=cfg.data_dir,
    )


def build_model(cfg: TrainConfig, n_features: int, n_classes: int) -> MLP:
    return MLP(
        (n_features, *cfg.hidden, n_classes),
        cfg.activation,
        norm=cfg.norm,
        groups=cfg.groups,
        placement=cfg.placement,
        noise=cfg.bn_noise,
        dropout=cfg.dropout,
        dropout_where=cfg.dropout_where,
        init=cfg.init,
        init_std=cfg.init_std,
        init_scale=cfg.init_scale,
        eps=cfg.bn_eps,
        momentum=cfg.bn_momentum,
        seed=cfg.seed,
        dtype=np.dtype(cfg.dtype),
    )


@dataclass
class History:
    """Everything a run measured. Per-record arrays share ``record_steps`` (updates done);
    ``probes`` holds what the optional measures recorded, by probe name."""

    config: TrainConfig
    loss: Array  # (steps,) training loss of each step's mini-batch; shorter if diverged
    record_steps: Array  # (R,)
    test_loss: Array  # (R,) eval mode, whole test split
    test_acc: Array  # (R,)
    layers: list[LayerRecord]
    diverged_at: int | None = None
    seconds: float = 0.0
    final_state: dict[str, Array] = field(default_factory=dict, repr=False)
    label: str = ""  # how pages name the run; its config's label unless an arm names it
    probes: dict[str, Any] = field(default_factory=dict, repr=False)
    eval_steps: Array = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    eval_acc: Array = field(default_factory=lambda: np.zeros(0, dtype=np.float32))

    def __post_init__(self) -> None:
        if not self.label:
            self.label = self.config.label

    def accuracy_track(self) -> tuple[Array, Array]:
        """Test accuracy at every step it was measured: the records and, where the config asks
        for them, the evaluations between records; sorted by step."""
        steps = np.concatenate([self.record_steps, self.eval_steps])
        acc = np.concatenate([self.test_acc, self.eval_acc]).astype(np.float64)
        order = np.argsort(steps, kind="stable")
        return steps[order], acc[order]

    @property
    def kind(self) -> str:
        """The run's normalization: none, batch, layer or group."""
        return self.config.norm

    def nbytes(self) -> int:
        """Memory held by the arrays of this history (records, losses, final weights)."""
        arrays = [self.loss, self.record_steps, self.test_loss, self.test_acc]
        arrays += list(self.final_state.values())
        for layer in self.layers:
            arrays += [layer.grad_norm, layer.update_ratio, layer.weight_norm]
            for site in layer.sites.values():
                arrays += list(vars(site).values())
        for probe in self.probes.values():
            arrays += [v for v in vars(probe).values() if isinstance(v, np.ndarray)]
        return sum(a.nbytes for a in arrays)

    @property
    def steps_done(self) -> int:
        return len(self.loss)

    def summary(self) -> str:
        acc = self.test_acc[-1] if len(self.test_acc) else float("nan")
        end = (
            f"diverged at step {self.diverged_at}"
            if self.diverged_at is not None
            else f"final loss {np.mean(self.loss[-50:]):.4f}"
        )
        return (
            f"{self.label:5s} {self.steps_done} steps in {self.seconds:.2f} s, {end}, "
            f"test accuracy {acc:.3f}"
        )


class Run:
    """One net's training state: its config, its net (the reference ``MLP``, which the engine
    keeps up to date whenever something is measured), its batches, records and losses. The
    engine (``bnviz.engine``) takes the steps."""

    def __init__(
        self, cfg: TrainConfig, data: Dataset, model: MLP | None = None, label: str = ""
    ) -> None:
        if cfg.batch_size > len(data.y_train):
            raise ValueError(
                f"batch_size must be at most the training set size ({len(data.y_train)}); "
                f"got {cfg.batch_size}"
            )
        dtype = np.dtype(cfg.dtype)
        self.cfg, self.data, self.label = cfg, data, label or cfg.label
        self.model = model or build_model(cfg, data.n_features, data.n_classes)
        self.x = np.ascontiguousarray(data.x_train, dtype=dtype)
        self.y = np.ascontiguousarray(data.y_train, dtype=np.int64)
        self.sampler = BatchSampler(self.y, cfg.batch_size, cfg.batch_order, seed=cfg.seed)
        max_records = cfg.steps // cfg.record_every + 2
        self.recorder = Recorder(
            self.model,
            np.asarray(data.x_test, dtype=dtype),
            data.y_test,
            data.probe_indices(cfg.probe_size, seed=0),
            max_records=max_records,
            probes=make_probes(cfg, data, max_records),
        )
        self.loss = np.empty(cfg.steps, dtype=np.float64)
        self.t = 0
        self.diverged_at: int | None = None
        self._limit: float | None = None
        self.seconds = 0.0
        with np.errstate(all="ignore"):
            self.recorder.record(0)

    @property
    def done(self) -> bool:
        return self.diverged_at is not None or self.t >= self.cfg.steps

    def is_record_step(self, t: int) -> bool:
        """Records are taken after every ``record_every`` updates and after the last one."""
        return t % self.cfg.record_every == 0 or t == self.cfg.steps

    def is_eval_step(self, t: int) -> bool:
        """Test accuracy alone is measured after every ``eval_every`` updates (up to
        ``eval_until``) where no record is taken."""
        cfg = self.cfg
        until = cfg.eval_until or cfg.steps
        return (
            bool(cfg.eval_every)
            and t % cfg.eval_every == 0
            and t <= until
            and not (self.is_record_step(t))
        )

    def accept(self, t: int, loss: float) -> bool:
        """Keep step t's loss, or mark the run diverged: the loss is non-finite or a hundred
        times the first one (max 1). The fast kernels apply the same rule in compiled code."""
        if self._limit is None and math.isfinite(loss):
            self._limit = DIVERGENCE_FACTOR * max(loss, 1.0)
        if not loss <= (self._limit or math.inf):  # also true for NaN
            self.diverged_at = t
            return False
        self.loss[t] = loss
        return True

    def history(self) -> History:
        steps, layers, test_loss, test_acc, probes = self.recorder.finalize()
        eval_steps, eval_acc = self.recorder.evaluations()
        return History(
            config=self.cfg,
            loss=self.loss[: self.t].copy(),
            record_steps=steps,
            test_loss=test_loss,
            test_acc=test_acc,
            layers=layers,
            diverged_at=self.diverged_at,
            seconds=self.seconds,
            final_state=self.model.state_arrays(),
            label=self.label,
            probes=probes,
            eval_steps=eval_steps,
            eval_acc=eval_acc,
        )


def new_runs(configs: list[TrainConfig], labels: list[str] | None = None) -> list[Run]:
    """Runs for configs sharing a dataset, step 0 recorded on one BLAS thread."""
    data = load_data(configs[0])
    labels = labels or [""] * len(configs)
    with single_threaded_blas():
        return [Run(cfg, data, label=label) for cfg, label in zip(configs, labels, strict=True)]


def train(cfg: TrainConfig, progress: Progress | None = None) -> History:
    """Train one net as configured; ``progress(done, total)`` is called as steps complete."""
    (run,) = new_runs([cfg])
    engine.drive(engine.FastEngine([run]), progress)
    return run.history()


class Arms:
    """Runs trained side by side from the same start, by label, in order: a sequence of
    Histories (``arms[0]``, ``for h in arms``) that also answers ``arms["BN"]``."""

    def __init__(self, runs: Mapping[str, History]) -> None:
        self._runs = dict(runs)

    def __iter__(self) -> Iterator[History]:
        return iter(self._runs.values())

    def __len__(self) -> int:
        return len(self._runs)

    def __getitem__(self, key: int | str) -> History:
        if isinstance(key, str):
            return self._runs[key]
        return list(self._runs.values())[key]

    def __contains__(self, label: object) -> bool:
        return label in self._runs

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Arms) and self._runs == other._runs

    def __repr__(self) -> str:
        return f"Arms({', '.join(self._runs)})"

    @property
    def labels(self) -> list[str]:
        return list(self._runs)

    def items(self):
        return self._runs.items()

    @property
    def plain(self) -> History:
        return self._runs["plain"]

    @property
    def bn(self) -> History:
        return self._runs["BN"]


class Twins(Arms):
    """The plain and the BN arm."""

    def __init__(self, plain: History, bn: History) -> None:
        super().__init__({"plain": plain, "BN": bn})


def arm_configs(base: TrainConfig, arms: Mapping[str, Mapping[str, Any]]) -> dict[str, TrainConfig]:
    """Each arm's config: the base with the arm's changes."""
    if not arms:
        raise ValueError("train_arms needs at least one arm")
    return {label: replace(base, **dict(changes)) for label, changes in arms.items()}


def arm_runs(base: TrainConfig, arms: Mapping[str, Mapping[str, Any]]) -> list[Run]:
    """The arms' runs, every net starting from the first arm's Linear weights (the same matrix
    for every arm; biases start at zero, norm parameters at one and zero)."""
    configs = arm_configs(base, arms)
    data = load_data(base)
    with single_threaded_blas():  # Run records step 0 as it is built
        first_cfg = next(iter(configs.values()))
        first = build_model(first_cfg, data.n_features, data.n_classes)
        runs = []
        for label, cfg in configs.items():
            model = build_model(cfg, data.n_features, data.n_classes)
            model.copy_weights_from(first)
            runs.append(Run(cfg, data, model, label=label))
    return runs


def train_arms(
    base: TrainConfig, arms: Mapping[str, Mapping[str, Any]], progress: Progress | None = None
) -> Arms:
    """Train every arm (label -> changes to ``base``, e.g. ``{"plain": {"norm": "none"},
    "noisy BN": {"norm": "batch", "bn_noise": 1.0}}``) from the same initial Linear weights on
    the same batch order; an ``Arms`` of label -> History, in the order given. Arms of the same
    architecture (differing only in numbers, e.g. the learning rate) train as one stack.
    """
    runs = arm_runs(base, arms)
    engine.drive_all(runs, progress)
    return Arms({run.label: run.history() for run in runs})


TWIN_ARMS = {"plain": {"batchnorm": False}, "BN": {"batchnorm": True}}


def train_twins(cfg: TrainConfig, progress: Progress | None = None) -> Twins:
    """A plain and a BN net, same initial weight matrices, same batch sequence: the two-arm
    case of ``train_arms``. The BN net's hidden Linear layers have no bias (beta replaces it);
    the plain net's biases start at zero; ``cfg``'s own norm is ignored. The initial weights are
    drawn before any bias or norm parameter, so each twin also equals a separate ``train`` run
    (``bnviz.fanout`` trains them in two processes)."""
    arms = train_arms(cfg, TWIN_ARMS, progress)
    return Twins(arms.plain, arms.bn)


def warm_up() -> float:
    """Compile the fast kernels (or load them from numba's cache, ``NUMBA_CACHE_DIR``) for
    both dtypes, before anyone waits for a run; returns the seconds it took."""
    import time

    start = time.perf_counter()
    for dtype in DTYPES:
        tiny = TrainConfig(hidden=(4,), steps=2, record_every=1, dtype=dtype, probe_size=8)
        train(tiny)
    return time.perf_counter() - start
