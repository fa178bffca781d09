"""Training runs: a validated config in, a History of everything measured out.

``train_twins`` trains a plain and a BN net in lockstep from the same initial weight matrices on
the same mini-batch sequence, so any difference between the two runs is BN's doing. A run that
diverges stops there and says when; it never raises.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np

from bnviz import functional as F
from bnviz.blas import single_threaded_blas
from bnviz.data import BATCH_ORDERS, DATASETS, BatchSampler, Dataset, load_dataset
from bnviz.nn import INITS, MLP, PLACEMENTS
from bnviz.optim import SCHEDULES, SGD, learning_rate
from bnviz.record import LayerRecord, Recorder, grad_norms, hidden_weights, update_ratios

Array = np.ndarray
Progress = Callable[[int, int], None]

DIVERGENCE_FACTOR = 100.0  # a loss this many times the first one counts as diverged
DTYPES = ("float32", "float64")

# Allowed values, declared once: validation, error messages and the app's widgets use them.
CHOICES: dict[str, tuple] = {
    "dataset": DATASETS,
    "activation": tuple(F.ACTIVATIONS),
    "placement": PLACEMENTS,
    "init": INITS,
    "schedule": SCHEDULES,
    "batch_order": BATCH_ORDERS,
    "dtype": DTYPES,
}
INT_RANGES: dict[str, tuple[int, int]] = {
    "n_samples": (20, 100_000),
    "decay_steps": (1, 1_000_000),
    "batch_size": (2, 4096),
    "steps": (1, 1_000_000),
    "record_every": (1, 1_000_000),
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
    "bn_eps": (1e-12, 1.0),
    "bn_momentum": (1e-4, 1.0),
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
    batchnorm: bool = True
    placement: str = "before"
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
    probe_size: int = 128
    seed: int = 0
    dtype: str = "float32"
    bn_eps: float = 1e-5
    bn_momentum: float | None = 0.1

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
        if not isinstance(self.batchnorm, bool | np.bool_):
            raise ValueError(f"batchnorm must be True or False; got {self.batchnorm!r}")
        object.__setattr__(self, "batchnorm", bool(self.batchnorm))
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

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Inverse of ``as_dict`` (also after a JSON round trip, which turns tuples to lists)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: tuple(v) if k == "hidden" else v for k, v in values.items() if k in known})


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
        cfg.batchnorm,
        placement=cfg.placement,
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
    """Everything a run measured. Per-record arrays share ``record_steps`` (updates done)."""

    config: TrainConfig
    loss: Array  # (steps,) training loss of each step's mini-batch; shorter if diverged
    record_steps: Array  # (R,)
    test_loss: Array  # (R,) eval mode, whole test split
    test_acc: Array  # (R,)
    layers: list[LayerRecord]
    diverged_at: int | None = None
    seconds: float = 0.0
    final_state: dict[str, Array] = field(default_factory=dict, repr=False)

    @property
    def label(self) -> str:
        return "BN" if self.config.batchnorm else "plain"

    def nbytes(self) -> int:
        """Memory held by the arrays of this history (records, losses, final weights)."""
        arrays = [self.loss, self.record_steps, self.test_loss, self.test_acc]
        arrays += list(self.final_state.values())
        for layer in self.layers:
            arrays += [layer.grad_norm, layer.update_ratio, layer.weight_norm]
            for site in layer.sites.values():
                arrays += list(vars(site).values())
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
    """One net being trained step by step; ``train`` and ``train_twins`` drive these."""

    def __init__(self, cfg: TrainConfig, data: Dataset, model: MLP | None = None) -> None:
        if cfg.batch_size > len(data.y_train):
            raise ValueError(
                f"batch_size must be at most the training set size ({len(data.y_train)}); "
                f"got {cfg.batch_size}"
            )
        dtype = np.dtype(cfg.dtype)
        self.cfg = cfg
        self.model = model or build_model(cfg, data.n_features, data.n_classes)
        self.x = np.ascontiguousarray(data.x_train, dtype=dtype)
        self.y = data.y_train
        self.sampler = BatchSampler(self.y, cfg.batch_size, cfg.batch_order, seed=cfg.seed)
        self.opt = SGD(
            [self.model.flat_params],
            [self.model.flat_grads],
            lr=cfg.lr,
            momentum=cfg.momentum,
            weight_decay=cfg.weight_decay,
        )
        self.recorder = Recorder(
            self.model,
            np.asarray(data.x_test, dtype=dtype),
            data.y_test,
            data.probe_indices(cfg.probe_size, seed=0),
            max_records=cfg.steps // cfg.record_every + 2,
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

    def accept(self, t: int, loss: float) -> bool:
        """Keep step t's loss, or mark the run diverged: the loss is non-finite or a hundred
        times the first one."""
        if self._limit is None and math.isfinite(loss):
            self._limit = DIVERGENCE_FACTOR * max(loss, 1.0)
        if not loss <= (self._limit or math.inf):  # also true for NaN
            self.diverged_at = t
            return False
        self.loss[t] = loss
        return True

    def run(self, n: int) -> None:
        """Take up to n more steps (fewer if the run ends)."""
        cfg, t0 = self.cfg, time.perf_counter()
        with np.errstate(all="ignore"):
            for _ in range(n):
                if self.done:
                    break
                t = self.t
                if not self.accept(t, self.forward_loss(self.sampler.next())):
                    break
                self.backward()
                recording = self.is_record_step(t + 1)
                if recording:
                    norms, before = self.grad_norms(), self.hidden_weights()
                self.step(learning_rate(t, cfg.lr, cfg.schedule, cfg.lr_decay, cfg.decay_steps))
                self.t = t + 1
                if recording:
                    ratios = self.update_ratios(before)
                    self.sync()
                    self.recorder.record(t + 1, norms, ratios)
        self.seconds += time.perf_counter() - t0

    # The engine: numpy here; bnviz.torch_ref.TorchRun swaps these for PyTorch.

    def forward_loss(self, idx: Array) -> float:
        return self.model.loss(self.x[idx], self.y[idx])

    def backward(self) -> None:
        self.model.backward()

    def step(self, lr: float) -> None:
        self.opt.step(lr)

    def grad_norms(self) -> list[float]:
        return grad_norms(self.model)

    def hidden_weights(self) -> list[Array]:
        return hidden_weights(self.model)

    def update_ratios(self, before: list[Array]) -> list[float]:
        return update_ratios(self.model, before)

    def sync(self) -> None:
        """Bring ``self.model`` up to date before a record (nothing to do for numpy)."""

    def history(self) -> History:
        steps, layers, test_loss, test_acc = self.recorder.finalize()
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
        )


def drive(runs: list[Run], progress: Progress | None) -> None:
    """Advance runs in lockstep, in chunks, reporting progress between chunks."""
    total = max(r.cfg.steps for r in runs)
    chunk = max(1, min(500, total // 100))
    if progress:
        progress(0, total)
    with single_threaded_blas():
        while not all(r.done for r in runs):
            for r in runs:
                r.run(chunk)
            if progress:
                progress(min(total, max(r.t for r in runs)), total)


def train(cfg: TrainConfig, progress: Progress | None = None) -> History:
    """Train one net as configured; ``progress(done, total)`` is called as steps complete."""
    with single_threaded_blas():  # Run records step 0 as it is built
        run = Run(cfg, load_data(cfg))
    drive([run], progress)
    return run.history()


@dataclass
class Twins:
    """A plain and a BN run on the same start and batches; a sequence of the two runs."""

    plain: History
    bn: History

    def __iter__(self):
        return iter((self.plain, self.bn))

    def __len__(self) -> int:
        return 2

    def __getitem__(self, i: int) -> History:
        return (self.plain, self.bn)[i]


def train_twins(cfg: TrainConfig, progress: Progress | None = None) -> Twins:
    """A plain and a BN net, same initial weight matrices, same batch sequence, in lockstep.

    The BN net's hidden Linear layers have no bias (beta replaces it); the plain net's biases
    start at zero. Everything else in ``cfg`` is shared; ``cfg.batchnorm`` is ignored. The
    initial weights are drawn before any bias or BN parameter, so the two nets are also equal
    to two separate ``train`` runs (``bnviz.fanout.twins`` trains them in two processes).
    """
    plain, bn = twin_runs(cfg)
    drive([plain, bn], progress)
    return Twins(plain.history(), bn.history())


def twin_runs(cfg: TrainConfig, run_type: type[Run] = Run, **kwargs: Any) -> tuple[Run, Run]:
    """The plain and the BN run of a twin pair, built with identical weight matrices (a run
    type other than ``Run``, e.g. the torch engine's, takes ``kwargs`` too)."""
    data = load_data(cfg)
    bn_cfg = replace(cfg, batchnorm=True)
    with single_threaded_blas():  # Run records step 0 as it is built
        plain = run_type(replace(cfg, batchnorm=False), data, **kwargs)
        bn_model = build_model(bn_cfg, data.n_features, data.n_classes)
        bn_model.copy_weights_from(plain.model)
        bn = run_type(bn_cfg, data, bn_model, **kwargs)
    return plain, bn
