"""Lesson "Covariate shift and batches": a trained net meets inputs from another distribution,
and a mini-batch's make-up decides what a hidden layer receives, with and without BN.

Two trainings, cached apart so that moving one never retrains the other:

- ``Shift``: a plain and a BN net on a 2-D set; the page scores them on the test points
  translated, rotated and rescaled (``shifted``): covariate shift in its ordinary sense.
- ``Batches``: four nets on the digits from one start, plain and BN, with shuffled and with
  class-sorted mini-batches (same initial weights; the two orders' batches differ, each the
  same for its plain and BN net), every step's BN batch statistics kept
  (``bnviz.batch_trace``). The trained shuffled nets then meet two chosen batches
  (``two_batches``), and the BN net's batch statistics are measured over many batches of each
  size (``Noise``).

Analyses run in float64 on the trained weights; training runs in float32 for speed.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from bnviz import batch_trace, fanout
from bnviz.blas import single_threaded_blas
from bnviz.data import PAGE_DATASETS, BatchSampler
from bnviz.experiment import Executor, Experiment, Progress
from bnviz.export import columns_of, csv_table, npz_bytes
from bnviz.inference import batch_stats_forward, population_stats, recalibrate
from bnviz.measure.batch_stats import batch_statistics
from bnviz.nn import MLP
from bnviz.store import arms_from_npz, arms_to_npz, history_arrays, history_from_arrays
from bnviz.train import Arms, History, TrainConfig, Twins, build_model, load_data

Array = np.ndarray
DIGITS = 6  # significant digits in the CSV downloads

# --------------------------------------------------------------------------- part 1: shift

SHIFT_DATASETS = tuple(d for d in PAGE_DATASETS if d != "digits")
SHIFT_HIDDEN = (32, 32, 32)
SHIFT_STEPS = 3000
MODES = ("plain", "BN, eval mode", "BN, batch statistics")
TRANSFORMS = {  # each transform alone, over the amounts its accuracy curve spans
    "translate": np.round(np.linspace(-3.0, 3.0, 25), 6),
    "rotate": np.round(np.linspace(-180.0, 180.0, 25), 6),
    "rescale": np.round(np.geomspace(0.25, 4.0, 17), 6),
}
IDENTITY = {"translate": 0.0, "rotate": 0.0, "rescale": 1.0}
GRID = 90  # points per side of the decision-region grid


@dataclass(frozen=True)
class Shift:
    """The 2-D nets: plain and BN twins, 3 x 32 tanh units, Glorot init, batch 60."""

    dataset: str = "moons"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.dataset not in SHIFT_DATASETS:
            raise ValueError(f"dataset must be one of {', '.join(SHIFT_DATASETS)}")
        if not isinstance(self.seed, int) or not 0 <= self.seed < 2**31:
            raise ValueError(f"seed must be a non-negative integer; got {self.seed!r}")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def train_config(self) -> TrainConfig:
        return TrainConfig(
            dataset=self.dataset,
            hidden=SHIFT_HIDDEN,
            activation="tanh",
            init="glorot",
            lr=0.5,
            batch_size=60,
            steps=SHIFT_STEPS,
            record_every=SHIFT_STEPS // 30,
            seed=self.seed,
            dtype="float32",
        )


def trained_model(h: History) -> MLP:
    """The run's final net, rebuilt in float64 from its final state."""
    data = load_data(h.config)
    model = build_model(replace(h.config, dtype="float64"), data.n_features, data.n_classes)
    model.load_state_arrays(h.final_state)
    return model.eval()


def transform(x: Array, dx: float = 0.0, angle: float = 0.0, scale: float = 1.0) -> Array:
    """x' = scale * R(angle) x + (dx, 0): rotation (degrees) and rescaling about the origin,
    which is the centre of the standardized training data, then a shift along x1."""
    if not (math.isfinite(dx) and math.isfinite(angle) and math.isfinite(scale) and scale > 0):
        raise ValueError("dx and angle must be finite and scale a positive number")
    a = math.radians(angle)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    return scale * np.asarray(x, dtype=np.float64) @ rot.T + np.array([dx, 0.0])


def act_input(model: MLP, trace: dict[str, Array], layer: int) -> Array:
    """What hidden layer ``layer``'s nonlinearity receives (BN's output when BN sits before it,
    the Linear output in a plain net)."""
    names = [name for name, _ in model.named_layers]
    if f"act{layer}" not in names:
        raise ValueError(f"layer must be a hidden layer in 1..{model.n_hidden}; got {layer}")
    return trace[names[names.index(f"act{layer}") - 1]]


def forward(model: MLP, x: Array, mode: str) -> tuple[Array, dict[str, Array]]:
    """Logits and layer outputs in one of MODES: eval mode (running statistics) or, for
    "batch statistics", BN normalizing with the statistics of x itself."""
    if mode.endswith("batch statistics"):
        return batch_stats_forward(model, x)
    with np.errstate(all="ignore"):
        return model.eval().forward_trace(x)


def accuracy(logits: Array, y: Array) -> float:
    return float(np.mean(np.argmax(logits, axis=1) == y))


@dataclass
class ShiftView:
    """The 2-D nets on the test points, as they are and shifted."""

    dx: float
    angle: float
    scale: float
    layer: int
    x_train: Array  # (n, 2)
    y_train: Array
    x_test: Array  # (n_test, 2)
    y_test: Array
    x_shifted: Array  # (n_test, 2)
    acc: dict[str, tuple[float, float]]  # mode -> (original, shifted)
    predicted: dict[str, Array]  # mode -> predicted class of each shifted test point
    hidden: dict[str, tuple[Array, Array]]  # mode -> layer input (original, shifted), (n, D)
    grid: tuple[Array, Array]  # (GRID,) x1 and x2 of the decision-region grid
    regions: dict[str, Array]  # "plain", "BN" -> (GRID, GRID) predicted class (eval mode)
    curves: dict[str, tuple[Array, dict[str, Array]]]  # transform -> (amounts, mode -> acc)

    def moved(self, mode: str) -> float:
        """How far the layer's input moved: mean over units of |change of the unit's mean| /
        the unit's std on the original test points."""
        before, after = self.hidden[mode]
        sd = before.std(axis=0)
        ok = sd > 0
        return float(np.mean(np.abs(after.mean(axis=0) - before.mean(axis=0))[ok] / sd[ok]))


def shifted(
    twins: Twins, dx: float, angle: float, scale: float, layer: int = 1, grid: int = GRID
) -> ShiftView:
    """Score the trained 2-D nets on the shifted test points; cheap enough for every rerun."""
    with single_threaded_blas():
        return _shifted(twins, dx, angle, scale, layer, grid)


def _shifted(twins: Twins, dx: float, angle: float, scale: float, layer: int, grid: int):
    data = load_data(twins.plain.config)
    nets = {"plain": trained_model(twins.plain), "BN": trained_model(twins.bn)}
    model_of = {"plain": nets["plain"], MODES[1]: nets["BN"], MODES[2]: nets["BN"]}
    x, y = np.asarray(data.x_test, dtype=np.float64), data.y_test
    xs = transform(x, dx, angle, scale)
    acc, hidden, predicted = {}, {}, {}
    for mode, model in model_of.items():
        lo, to = forward(model, x, mode)
        ls, ts = forward(model, xs, mode)
        acc[mode] = (accuracy(lo, y), accuracy(ls, y))
        predicted[mode] = np.argmax(ls, axis=1)
        hidden[mode] = (act_input(model, to, layer), act_input(model, ts, layer))
    pts = np.concatenate([np.asarray(data.x_train), xs])
    lo_, hi_ = pts.min(axis=0), pts.max(axis=0)
    pad = 0.08 * (hi_ - lo_) + 0.1
    g1 = np.linspace(lo_[0] - pad[0], hi_[0] + pad[0], grid)
    g2 = np.linspace(lo_[1] - pad[1], hi_[1] + pad[1], grid)
    mesh = np.column_stack([np.tile(g1, grid), np.repeat(g2, grid)])  # row i: x2 = g2[i]
    regions = {
        name: np.argmax(forward(net, mesh, "eval")[0], axis=1).reshape(grid, grid)
        for name, net in nets.items()
    }
    curves = {}
    for name, amounts in TRANSFORMS.items():
        accs = {mode: np.empty(len(amounts)) for mode in MODES}
        for i, v in enumerate(amounts):
            xt = transform(x, **{_ARG[name]: float(v)})
            for mode, model in model_of.items():
                accs[mode][i] = accuracy(forward(model, xt, mode)[0], y)
        curves[name] = (amounts, accs)
    return ShiftView(
        dx=float(dx),
        angle=float(angle),
        scale=float(scale),
        layer=int(layer),
        x_train=np.asarray(data.x_train, dtype=np.float64),
        y_train=data.y_train,
        x_test=x,
        y_test=y,
        x_shifted=xs,
        acc=acc,
        predicted=predicted,
        hidden=hidden,
        grid=(g1, g2),
        regions=regions,
        curves=curves,
    )


_ARG = {"translate": "dx", "rotate": "angle", "rescale": "scale"}


def shift_csv(view: ShiftView) -> str:
    """The accuracy curves: one row per (transform, amount)."""
    rows = [
        {"transform": name, "amount": float(v), **{m: accs[m][i] for m in MODES}}
        for name, (amounts, accs) in view.curves.items()
        for i, v in enumerate(amounts)
    ]
    return csv_table(columns_of(rows), digits=DIGITS)


def shift_npz(view: ShiftView) -> bytes:
    arrays: dict[str, Any] = {
        "dx": view.dx,
        "angle": view.angle,
        "scale": view.scale,
        "layer": view.layer,
        "x_train": view.x_train,
        "y_train": view.y_train,
        "x_test": view.x_test,
        "y_test": view.y_test,
        "x_shifted": view.x_shifted,
        "grid_x1": view.grid[0],
        "grid_x2": view.grid[1],
    }
    for name, reg in view.regions.items():
        arrays[f"regions/{name}"] = reg
    for mode, (before, after) in view.hidden.items():
        arrays[f"hidden/{mode}/original"] = before
        arrays[f"hidden/{mode}/shifted"] = after
    return npz_bytes(arrays)


# --------------------------------------------------------------------------- parts 2-4: batches

ARMS = {
    "plain shuffled": {"norm": "none", "batch_order": "shuffled"},
    "BN shuffled": {"norm": "batch", "batch_order": "shuffled"},
    "plain class-sorted": {"norm": "none", "batch_order": "class_sorted"},
    "BN class-sorted": {"norm": "batch", "batch_order": "class_sorted"},
}
SHARES = (("plain shuffled", "BN shuffled"), ("plain class-sorted", "BN class-sorted"))
HIDDEN = (100, 100, 100)
BATCH_SIZES = (8, 16, 32, 60, 100, 128)
MAX_STEPS = 10_000
RECORDS = 120  # test-accuracy records per run, about
LATE = 0.75  # "late" accuracy: the mean over the records of the last quarter of training
NOISE_SIZES = (4, 8, 16, 32, 64, 128, 256)
NOISE_BATCHES = 100
BATCH_KINDS = ("shuffled", *(str(c) for c in range(10)), "bright", "faint")


def epoch_length(batch_size: int) -> int:
    """Class-sorted batches in one pass over the digits' training split (every class gives
    as many whole batches as it holds; the rest of a class waits for the next epoch)."""
    y = load_data(TrainConfig()).y_train
    return int(sum(n // batch_size for n in np.bincount(y)))


def record_every(steps: int, epoch: int) -> int:
    """About ``steps / RECORDS``, and coprime with the class-sorted epoch, so records fall at
    every position in it rather than always after the same class."""
    r = max(1, steps // RECORDS)
    while math.gcd(r, epoch) != 1:
        r += 1
    return r


@dataclass(frozen=True)
class Batches:
    """The four digits nets: 3 x 100 units, plain SGD, float32."""

    activation: str = "sigmoid"
    init: str = "glorot"
    lr: float = 1.0
    batch_size: int = 60
    steps: int = 2000
    seed: int = 0

    def __post_init__(self) -> None:
        if self.batch_size not in BATCH_SIZES:
            raise ValueError(f"batch_size must be one of {', '.join(map(str, BATCH_SIZES))}")
        if not isinstance(self.steps, int) or not 1 <= self.steps <= MAX_STEPS:
            raise ValueError(f"steps must be an integer in [1, {MAX_STEPS:,}]; got {self.steps}")
        self._train_config(1)  # the engine's own checks, without loading the digits

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def base(self) -> TrainConfig:
        return self._train_config(record_every(self.steps, epoch_length(self.batch_size)))

    def _train_config(self, every: int) -> TrainConfig:
        return TrainConfig(
            dataset="digits",
            hidden=HIDDEN,
            activation=self.activation,
            init=self.init,
            init_std=0.01,
            lr=self.lr,
            batch_size=self.batch_size,
            steps=self.steps,
            record_every=every,
            seed=self.seed,
            dtype="float32",
        )


@dataclass
class Diagnosis:
    """A trained BN net's test accuracy three ways: eval mode with the running statistics
    it kept, eval mode after recalibrating them over shuffled training batches, and BN with
    the statistics of class-sorted test batches (each batch one digit)."""

    eval_running: float
    eval_recalibrated: float
    class_sorted_batches: float
    pop_mean: Array  # (L, D) the recalibrated statistics (Algorithm 2 over shuffled batches)
    pop_var: Array


@dataclass
class Noise:
    """The trained BN net's batch statistics over NOISE_BATCHES random training batches of each
    size, against the population values (Algorithm 2 at the run's batch size)."""

    sizes: Array  # (S,)
    mu: Array  # (S, L, B, D) mu_B
    sd: Array  # (S, L, B, D) sigma_B (square root of the biased batch variance)
    pop_mean: Array  # (L, D)
    pop_var: Array  # (L, D)
    n_train: int

    def spread(self, layer: int, of: str = "mu") -> Array:
        """(S,) the std across batches of mu_B (or of sigma_B), over the population std, as a
        mean over the layer's units."""
        values = (self.mu if of == "mu" else self.sd).astype(np.float64)
        sd = np.sqrt(self.pop_var[layer - 1])
        ok = sd > 0
        return np.array([np.mean(v.std(axis=0)[ok] / sd[ok]) for v in values[:, layer - 1]])

    def law(self) -> tuple[Array, Array]:
        """1/sqrt(m) and the exact law for a mean of m draws without replacement from N,
        sqrt((N - m) / (m (N - 1)))."""
        m, n = self.sizes.astype(np.float64), float(self.n_train)
        return 1.0 / np.sqrt(m), np.sqrt((n - m) / (m * (n - 1)))


@dataclass
class BatchesResult:
    config: Batches
    arms: Arms  # ARMS, in order
    traces: dict[str, batch_trace.BatchTrace]  # the BN arms'
    batch_class: Array  # (steps,) the digit of each class-sorted batch
    epoch: int  # class-sorted batches per epoch
    diagnosis: dict[str, Diagnosis]  # the BN arms'
    noise: Noise


def _train_share(
    base: TrainConfig, labels: tuple[str, ...], progress: Progress | None = None
) -> tuple[Arms, dict[str, batch_trace.BatchTrace]]:
    """Some of the arms, traced (a worker's job)."""
    return batch_trace.train_traced(base, ARMS, labels, progress)


def _train_all(base: TrainConfig, progress: Progress | None, executor: Executor | None):
    if executor is None:
        return batch_trace.train_traced(base, ARMS, None, progress)
    done = [0] * len(SHARES)

    def relay(i: int, values: tuple) -> None:
        done[i] = values[0]
        if progress:
            progress(min(done), values[1])

    results = executor.run_many([(_train_share, (base, share), {}) for share in SHARES], relay)
    runs, traces = {}, {}
    for arms, tr in results:
        runs.update(arms.items())
        traces.update(tr)
    return Arms({label: runs[label] for label in ARMS}), traces


def class_sorted_batches(y: Array, size: int) -> list[Array]:
    """Row indices in batches of one class each, at most ``size`` rows (a class's last, short
    batch is kept; a lone last row joins the batch before it)."""
    out = []
    for c in np.unique(y):
        rows = np.flatnonzero(y == c)
        chunks = [rows[i : i + size] for i in range(0, len(rows), size)]
        if len(chunks) > 1 and len(chunks[-1]) == 1:
            chunks[-2] = np.concatenate(chunks[-2:])
            chunks.pop()
        out += chunks
    return out


def batched_accuracy(model: MLP, x: Array, y: Array, batches: list[Array]) -> float:
    """Accuracy over all rows in ``batches`` with BN using each batch's own statistics."""
    hits = sum(
        int(np.sum(np.argmax(batch_stats_forward(model, x[b])[0], 1) == y[b])) for b in batches
    )
    return hits / sum(len(b) for b in batches)


def diagnose(h: History) -> Diagnosis:
    data = load_data(h.config)
    model = trained_model(h)
    x_test = np.asarray(data.x_test, dtype=np.float64)
    with np.errstate(all="ignore"):
        running = accuracy(model.forward(x_test), data.y_test)
        cs = batched_accuracy(
            model, x_test, data.y_test, class_sorted_batches(data.y_test, h.config.batch_size)
        )
        recalibrate(model, np.asarray(data.x_train, dtype=np.float64), h.config.batch_size)
        recal = accuracy(model.eval().forward(x_test), data.y_test)
    mean = np.stack([bn.running_mean.copy() for _, bn in model.norm_layers])
    var = np.stack([bn.running_var.copy() for _, bn in model.norm_layers])
    return Diagnosis(running, recal, cs, mean, var)


def measure_noise(h: History, seed: int) -> Noise:
    data = load_data(h.config)
    model = trained_model(h)
    x = np.asarray(data.x_train, dtype=np.float64)
    n = len(x)
    rng = np.random.default_rng([seed, 11])
    mus, sds = [], []
    with np.errstate(all="ignore"):
        for m in NOISE_SIZES:
            rows = np.stack([rng.choice(n, m, replace=False) for _ in range(NOISE_BATCHES)])
            mu, var = batch_statistics(model, x, rows)
            mus.append(mu)
            sds.append(np.sqrt(var))
        stats = population_stats(model, x, h.config.batch_size, seed=0)
    names = [name for name, _ in model.norm_layers]
    return Noise(
        sizes=np.array(NOISE_SIZES),
        mu=np.stack(mus).astype(np.float32),  # 2 x 1.7 MB in float64, kept in every cache entry
        sd=np.stack(sds).astype(np.float32),
        pop_mean=np.stack([stats[k][0] for k in names]),
        pop_var=np.stack([stats[k][1] for k in names]),
        n_train=n,
    )


def run_batches(
    cfg: Batches, progress: Progress | None = None, executor: Executor | None = None
) -> BatchesResult:
    base = cfg.base()
    arms, traces = _train_all(base, progress, executor)
    y = load_data(base).y_train
    rows = BatchSampler(y, cfg.batch_size, "class_sorted", seed=cfg.seed).take(cfg.steps)
    light = Arms({label: replace(h, layers=[]) for label, h in arms.items()})
    with single_threaded_blas():
        diagnosis = {label: diagnose(arms[label]) for label in traces}
        noise = measure_noise(arms["BN shuffled"], cfg.seed)
    return BatchesResult(
        config=cfg,
        arms=light,
        traces=traces,
        batch_class=y[rows[:, 0]],
        epoch=epoch_length(cfg.batch_size),
        diagnosis=diagnosis,
        noise=noise,
    )


def run(
    cfg: Shift | Batches, progress: Progress | None = None, executor: Executor | None = None
) -> Any:
    """Twins for ``Shift``; a BatchesResult for ``Batches``."""
    if isinstance(cfg, Shift):
        return fanout.twins(cfg.train_config(), progress, executor)
    if isinstance(cfg, Batches):
        return run_batches(cfg, progress, executor)
    raise TypeError(f"not a covariate-shift experiment: {cfg!r}")


def result_to_npz(result: Twins | BatchesResult) -> bytes:
    """A result of ``run`` as an npz file (how the page's default runs ship): numbers and JSON
    only. A BatchesResult's nets, losses and batch-noise samples stay float32 as trained or
    measured. Its BN batch traces (every step's mu_B and sigma_B^2; in float32, 9.6 MB of the
    default run's 11) are stored as float16, a relative rounding of 5e-4: the page reads them
    only in a chart of at most 400 steps and in step-to-step means it prints to three figures,
    which this rounding leaves as they are (tests/lessons/test_covariate_shift.py checks it)."""
    if isinstance(result, Twins):
        return arms_to_npz(result)
    arrays: dict[str, Any] = {
        "kind": np.array("BatchesResult"),
        "config": np.array(json.dumps(result.config.as_dict(), sort_keys=True)),
        "arms": np.array(json.dumps(result.arms.labels)),
        "traces": np.array(json.dumps(list(result.traces))),
        "batch_class": result.batch_class,
        "epoch": np.array(result.epoch),
    }
    for i, h in enumerate(result.arms):
        arrays.update(history_arrays(h, f"arm{i}/"))
    for label, tr in result.traces.items():
        arrays[f"trace/{label}/mean"] = tr.mean.astype(np.float16)
        arrays[f"trace/{label}/var"] = tr.var.astype(np.float16)
        arrays[f"trace/{label}/batch_size"] = np.array(tr.batch_size)
    for label, d in result.diagnosis.items():
        for name in _DIAGNOSIS_FIELDS:
            arrays[f"diagnosis/{label}/{name}"] = np.asarray(getattr(d, name))
    for name in _NOISE_FIELDS:
        arrays[f"noise/{name}"] = np.asarray(getattr(result.noise, name))
    return npz_bytes(arrays)


def result_from_npz(raw: bytes) -> Twins | BatchesResult:
    """Back from ``result_to_npz``; never unpickles."""
    with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    if str(arrays.get("kind", "")) != "BatchesResult":
        return arms_from_npz(raw)
    labels = json.loads(str(arrays["arms"]))
    arms = Arms({label: history_from_arrays(arrays, f"arm{i}/") for i, label in enumerate(labels)})
    traced = json.loads(str(arrays["traces"]))
    return BatchesResult(
        config=Batches(**json.loads(str(arrays["config"]))),
        arms=arms,
        traces={
            label: batch_trace.BatchTrace(
                arrays[f"trace/{label}/mean"].astype(np.float32),  # the runs' dtype
                arrays[f"trace/{label}/var"].astype(np.float32),
                int(arrays[f"trace/{label}/batch_size"]),
            )
            for label in traced
        },
        batch_class=arrays["batch_class"],
        epoch=int(arrays["epoch"]),
        diagnosis={
            label: Diagnosis(
                **{n: _scalar(arrays[f"diagnosis/{label}/{n}"]) for n in _DIAGNOSIS_FIELDS}
            )
            for label in traced
        },
        noise=Noise(**{n: _scalar(arrays[f"noise/{n}"]) for n in _NOISE_FIELDS}),
    )


def _scalar(a: Array) -> Any:
    """A 0-d array back to the Python number it was stored from."""
    return a.item() if a.ndim == 0 else a


_DIAGNOSIS_FIELDS = tuple(Diagnosis.__dataclass_fields__)
_NOISE_FIELDS = tuple(Noise.__dataclass_fields__)
EXPERIMENT = Experiment(
    "covariate_shift",
    run,
    processes=2,
    shipped={  # the page's default runs, so its first paint waits for no training
        "covariate-shift-default-shift": Shift(),
        "covariate-shift-default-batches": Batches(),
    },
    encode=result_to_npz,
    decode=result_from_npz,
)


# --------------------------------------------------------------------------- what the runs say


def late_accuracy(h: History) -> float:
    """Mean test accuracy over the records of the last quarter of training: with class-sorted
    batches the accuracy at any one step depends on which digit came last."""
    steps = h.record_steps
    keep = steps >= LATE * steps[-1]
    return float(np.mean(h.test_acc[keep]))


@dataclass
class Bounce:
    """Training loss on the first batch after the digit changed, against the other batches,
    over the second half of training (class-sorted order)."""

    after_switch: float
    otherwise: float


def bounce(h: History, batch_class: Array) -> Bounce:
    n = len(h.loss)
    switch = np.zeros(n, dtype=bool)
    switch[1:] = batch_class[1:n] != batch_class[: n - 1]
    late = np.arange(n) >= n // 2
    loss = h.loss
    ok = np.isfinite(loss)
    first = loss[switch & late & ok]
    rest = loss[~switch & late & ok]
    return Bounce(
        float(np.mean(first)) if first.size else float("nan"),
        float(np.mean(rest)) if rest.size else float("nan"),
    )


def jumpiness(result: BatchesResult, label: str, layer: int) -> float:
    """How much mu_B moves from step to step in the second half of training: the mean over
    units of |mu_B(t) - mu_B(t-1)|, over the unit's population std."""
    trace = result.traces[label]
    d = result.arms[label].config.hidden[layer - 1]
    mu = trace.mean[trace.steps // 2 :, layer - 1, :d].astype(np.float64)
    sd = np.sqrt(result.diagnosis[label].pop_var[layer - 1])
    step = np.abs(np.diff(mu, axis=0))
    ok = (sd > 0) & np.isfinite(step).all(axis=0) & (len(step) > 0)
    if not ok.any():
        return float("nan")  # the run stopped (diverged) before the second half
    return float(np.mean(step[:, ok].mean(axis=0) / sd[ok]))


# --------------------------------------------------------------------------- two batches


def batch_rows(kind: str, size: int, seed: int) -> Array:
    """Rows of the digits' training split: a shuffled batch, one digit, or the brightest
    ("bright") or faintest ("faint") digits, by the mean of their standardized pixels (ink
    above or below each pixel's average)."""
    if kind not in BATCH_KINDS:
        raise ValueError(f"batch must be one of {', '.join(BATCH_KINDS)}; got {kind!r}")
    data = load_data(TrainConfig())
    y, n = data.y_train, len(data.y_train)
    rng = np.random.default_rng([seed, 12, BATCH_KINDS.index(kind)])
    if kind == "shuffled":
        return np.sort(rng.choice(n, size, replace=False))
    if kind in ("bright", "faint"):
        ink = np.asarray(data.x_train).mean(axis=1)
        order = np.argsort(-ink if kind == "bright" else ink, kind="stable")
        return np.sort(order[:size])
    rows = np.flatnonzero(y == int(kind))
    return np.sort(rng.choice(rows, min(size, len(rows)), replace=False))


def batch_title(kind: str) -> str:
    return {"shuffled": "a shuffled batch", "bright": "bright digits", "faint": "faint digits"}.get(
        kind, f"all {kind}s"
    )


@dataclass
class Pair:
    """Two batches through the trained shuffled nets: per mode, what hidden layer ``layer``'s
    nonlinearity receives for each batch, and the accuracy on each."""

    a: str
    b: str
    layer: int
    images: tuple[Array, Array]  # (m, 64) standardized pixels
    labels: tuple[Array, Array]
    hidden: dict[str, tuple[Array, Array]]  # mode -> (batch a, batch b), (m, D)
    acc: dict[str, tuple[float, float]]
    predicted: dict[str, tuple[Array, Array]]  # mode -> predicted classes

    def unit_means(self, mode: str) -> tuple[Array, Array]:
        ha, hb = self.hidden[mode]
        return ha.mean(axis=0), hb.mean(axis=0)

    def mean_gap(self, mode: str) -> float:
        """Mean over units of |mean over batch a - mean over batch b|."""
        ma, mb = self.unit_means(mode)
        return float(np.mean(np.abs(ma - mb)))


def two_batches(result: BatchesResult, a: str, b: str, layer: int) -> Pair:
    with single_threaded_blas():
        return _two_batches(result, a, b, layer)


def _two_batches(result: BatchesResult, a: str, b: str, layer: int) -> Pair:
    cfg = result.config
    data = load_data(TrainConfig())
    x = np.asarray(data.x_train, dtype=np.float64)
    rows = (batch_rows(a, cfg.batch_size, cfg.seed), batch_rows(b, cfg.batch_size, cfg.seed))
    plain = trained_model(result.arms["plain shuffled"])
    bn = trained_model(result.arms["BN shuffled"])
    hidden, acc, predicted = {}, {}, {}
    for mode, model in zip(MODES, (plain, bn, bn), strict=True):
        outs = [forward(model, x[r], mode) for r in rows]
        hidden[mode] = tuple(act_input(model, trace, layer) for _, trace in outs)
        predicted[mode] = tuple(np.argmax(logits, axis=1) for logits, _ in outs)
        acc[mode] = tuple(
            float(np.mean(p == data.y_train[r])) for p, r in zip(predicted[mode], rows, strict=True)
        )
    return Pair(
        a=a,
        b=b,
        layer=layer,
        images=(x[rows[0]], x[rows[1]]),
        labels=(data.y_train[rows[0]], data.y_train[rows[1]]),
        hidden=hidden,
        acc=acc,
        predicted=predicted,
    )


# --------------------------------------------------------------------------- downloads


def loss_csv(result: BatchesResult) -> str:
    """Per-step training loss of the four nets and the digit of each class-sorted batch."""
    n = result.config.steps
    cols: dict[str, Any] = {"step": range(n), "class_sorted_digit": result.batch_class}
    for h in result.arms:
        loss = np.full(n, np.nan)
        loss[: len(h.loss)] = h.loss
        cols[h.label.replace(" ", "_").replace("-", "_") + "_loss"] = loss
    return csv_table(cols, digits=DIGITS)


def accuracy_csv(result: BatchesResult) -> str:
    rows = [
        {"run": h.label, "step": int(s), "test_acc": float(a), "test_loss": float(lo)}
        for h in result.arms
        for s, a, lo in zip(h.record_steps, h.test_acc, h.test_loss, strict=True)
    ]
    return csv_table(columns_of(rows), digits=DIGITS)


def noise_csv(noise: Noise) -> str:
    rows = []
    inv, exact = noise.law()
    for layer in range(1, noise.mu.shape[1] + 1):
        mu, sd = noise.spread(layer, "mu"), noise.spread(layer, "sd")
        for i, m in enumerate(noise.sizes):
            rows.append(
                {
                    "layer": layer,
                    "batch_size": int(m),
                    "spread_mu_over_sigma": mu[i],
                    "spread_sigma_over_sigma": sd[i],
                    "one_over_sqrt_m": inv[i],
                    "without_replacement_law": exact[i],
                }
            )
    return csv_table(columns_of(rows), digits=DIGITS)


def batches_npz(result: BatchesResult) -> bytes:
    arrays: dict[str, Any] = {"batch_class": result.batch_class, "epoch": result.epoch}
    for i, h in enumerate(result.arms):
        arrays.update(history_arrays(h, f"arm{i}/"))
    for label, tr in result.traces.items():
        arrays[f"trace/{label}/mu_B"] = tr.mean
        arrays[f"trace/{label}/sigma2_B"] = tr.var
    for label, d in result.diagnosis.items():
        arrays[f"diagnosis/{label}/pop_mean"] = d.pop_mean
        arrays[f"diagnosis/{label}/pop_var"] = d.pop_var
    nz = result.noise
    arrays |= {"noise/sizes": nz.sizes, "noise/mu_B": nz.mu, "noise/sigma_B": nz.sd}
    arrays |= {"noise/pop_mean": nz.pop_mean, "noise/pop_var": nz.pop_var}
    return npz_bytes(arrays)
