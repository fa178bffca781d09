"""Lesson "Training vs inference (Algorithm 2)": where BN's inference statistics come from,
what BN is at inference (one affine map, foldable into the Linear before it), and what goes
wrong when a net predicts with batch statistics.

One training: the paper's net (digits, 3 x 100 sigmoid, small Gaussian init) with BN, every
step's batch statistics kept (``bnviz.batch_trace``) so that any running average can be
replayed at any momentum afterwards, and at every record the statistics of the weights of that
moment over the whole training split (Algorithm 2 with the net frozen there, i.e. Precise BN
at that step: ``inference.population_stats``). The ``eval_gap`` probe scores the training split
in train mode and in eval mode at every record. Training runs in float32; everything measured
on the trained net (folding, the inference bug, accuracies) runs in float64.
"""

from __future__ import annotations

import io
import json
import time
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from bnviz import batch_trace
from bnviz.blas import single_threaded_blas
from bnviz.experiment import Executor, Experiment, Progress
from bnviz.export import columns_of, csv_table, npz_bytes
from bnviz.inference import (
    batch_stats_forward,
    bn_affine,
    fold_batchnorm,
    population_stats,
    recalibrate,
)
from bnviz.nn import MLP, keras_momentum
from bnviz.store import history_arrays, history_from_arrays
from bnviz.train import History, TrainConfig, build_model, load_data

Array = np.ndarray
DIGITS = 6
HIDDEN = (100, 100, 100)
BATCH_SIZES = (4, 8, 16, 32, 60, 128, 256)
MAX_STEPS = 10_000
RECORDS = 100  # at the paper's batch of 60; fewer for small batches, see ``records``
TRAIN_MOMENTUM = 0.1  # the engine's own running averages: PyTorch's default
BASE = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3)
MOMENTA = tuple(sorted({*BASE, 0.5, *(round(1 - v, 6) for v in BASE)}))  # closed under 1 - v
CONVENTIONS = ("pytorch", "keras", "cs231n")
CORRECTION_SIZES = (2, 4, 8, 16, 32, 64, 128, 256)
CORRECTION_PASSES = 20
TEST_BATCHES = (2, 4, 8, 16, 32, 60, 128)


def pytorch_momentum(value: float, convention: str) -> float:
    """The PyTorch momentum (the weight of the new batch) of a momentum written in one of
    CONVENTIONS: Keras and cs231n weight the old average instead, so theirs is 1 - PyTorch's."""
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {', '.join(CONVENTIONS)}; got {convention!r}")
    f = float(value) if convention == "pytorch" else keras_momentum(float(value))
    if not 0 < f <= 1:
        raise ValueError(f"a {convention} momentum of {value} never updates the average")
    return f


def records(batch_size: int) -> int:
    """Records per run. Each one passes the training split through the net in batches of the
    run's size three times (Algorithm 2 and the eval-gap probe's two scores), so with batches
    of 4 a record costs fifteen times what it costs at 60: fewer records keep such runs quick."""
    return int(min(RECORDS, max(40, RECORDS * batch_size // 60)))


@dataclass(frozen=True)
class Inference:
    """The page's training: the paper's net with BN, float32, PyTorch's running averages."""

    lr: float = 0.5
    batch_size: int = 60
    steps: int = 2000
    seed: int = 0

    def __post_init__(self) -> None:
        if self.batch_size not in BATCH_SIZES:
            raise ValueError(f"batch_size must be one of {', '.join(map(str, BATCH_SIZES))}")
        if not isinstance(self.steps, int) or not 1 <= self.steps <= MAX_STEPS:
            raise ValueError(f"steps must be an integer in [1, {MAX_STEPS:,}]; got {self.steps}")
        self.train_config()

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def train_config(self) -> TrainConfig:
        return TrainConfig(
            dataset="digits",
            hidden=HIDDEN,
            activation="sigmoid",
            norm="batch",
            init="gaussian",
            init_std=0.01,
            lr=self.lr,
            batch_size=self.batch_size,
            steps=self.steps,
            record_every=max(1, self.steps // records(self.batch_size)),
            seed=self.seed,
            dtype="float32",
            bn_momentum=TRAIN_MOMENTUM,
            probes=("eval_gap",),
        )


@dataclass
class Correction:
    """Layer 1's batch variances over one pass of batches of each size, against the variance
    over the whole training split (1/N): biased = E_B[sigma_B^2] / Var_N, and the paper's
    corrected m/(m-1) E_B[sigma_B^2] / Var_N, each a mean over units."""

    sizes: Array  # (S,)
    biased: Array  # (S,)
    corrected: Array  # (S,)
    n_train: int

    def expected(self) -> Array:
        """E_B[sigma_B^2] / Var_N for disjoint batches covering the data: (m-1) N / (m (N-1))."""
        m, n = self.sizes.astype(np.float64), float(self.n_train)
        return (m - 1) * n / (m * (n - 1))


@dataclass
class Sweep:
    """For every momentum of MOMENTA (PyTorch's convention), the error of the running average
    against the statistics of the current weights, per layer (a mean over units): at the end
    of training and averaged over the records of its second half."""

    momenta: Array  # (F,)
    mean_final: Array  # (F, L) |running mean - E[x]| / sqrt(Var[x])
    var_final: Array  # (F, L) |running var / Var[x] - 1|
    mean_late: Array  # (F, L)
    var_late: Array  # (F, L)
    cumulative: tuple[Array, Array, Array, Array]  # the same four for momentum None, (L,)


@dataclass
class InferenceResult:
    config: Inference
    history: History  # the BN run (no per-layer records), with its eval_gap probe
    trace: batch_trace.BatchTrace
    pop_steps: Array  # (R,) the record steps
    pop_mean: Array  # (R, L, D) E[x] of the weights at each record (Algorithm 2)
    pop_var: Array  # (R, L, D) Var[x], with the m/(m-1) correction
    sweep: Sweep
    correction: Correction


def trained_model(h: History) -> MLP:
    """The run's final net, rebuilt in float64 (its running statistics the engine's)."""
    data = load_data(h.config)
    model = build_model(replace(h.config, dtype="float64"), data.n_features, data.n_classes)
    model.load_state_arrays(h.final_state)
    return model.eval()


def _train(
    cfg: TrainConfig, progress: Progress | None = None
) -> tuple[History, batch_trace.BatchTrace, Array, Array, Array]:
    """The traced run and, at every record, the statistics of its weights then (a worker's
    job): Algorithm 2 over the training split in batches of the run's size, one fixed order."""
    x = load_data(cfg).x_train
    steps, means, vars_ = [], [], []

    def on_record(label: str, step: int, model: MLP) -> None:
        stats = population_stats(model, np.asarray(x, dtype=model.dtype), cfg.batch_size, 0)
        steps.append(step)
        means.append(np.stack([stats[name][0] for name, _ in model.norm_layers]))
        vars_.append(np.stack([stats[name][1] for name, _ in model.norm_layers]))

    arms, traces = batch_trace.train_traced(cfg, {"BN": {}}, None, progress, on_record)
    return arms["BN"], traces["BN"], np.array(steps), np.stack(means), np.stack(vars_)


def _errors(mean: Array, var: Array, pop_mean: Array, pop_var: Array) -> tuple[Array, Array]:
    """(..., L) the mean over units of |mean - E[x]| / sqrt(Var[x]) and |var / Var[x] - 1|."""
    with np.errstate(all="ignore"):
        return (
            np.nanmean(np.abs(mean - pop_mean) / np.sqrt(pop_var), axis=-1),
            np.nanmean(np.abs(var / pop_var - 1.0), axis=-1),
        )


def _sweep(trace: batch_trace.BatchTrace, steps: Array, pop_mean: Array, pop_var: Array) -> Sweep:
    idx = steps[steps > 0] - 1  # the estimate after step s sits at index s - 1
    pm, pv = pop_mean[steps > 0], pop_var[steps > 0]
    late = steps[steps > 0] >= steps[-1] / 2
    out = []
    for f in (*MOMENTA, None):
        mean, var = batch_trace.running_average(trace.mean, trace.var, trace.batch_size, f)
        em, ev = _errors(mean[idx], var[idx], pm, pv)
        out.append((em[-1], ev[-1], np.nanmean(em[late], axis=0), np.nanmean(ev[late], axis=0)))
    *by_f, cumulative = out
    return Sweep(np.array(MOMENTA), *(np.stack(v) for v in zip(*by_f, strict=True)), cumulative)


def correction(
    model: MLP, x: Array, seed: int = 0, sizes=CORRECTION_SIZES, passes: int = CORRECTION_PASSES
) -> Correction:
    """The m/(m-1) correction measured on hidden layer 1, whose BN input z = W x does not depend
    on the batch: there the exact expectation is known (``Correction.expected``). Each size
    averages ``passes`` shuffled passes of disjoint batches over the training split."""
    n = len(x)
    z = x @ model.params["fc1.weight"].T
    full = z.var(axis=0)
    ok = full > 0
    rng = np.random.default_rng([seed, 22])
    biased = []
    sizes = np.array(sorted({int(v) for v in sizes}))
    for m in sizes:
        ratios = []
        for _ in range(passes):
            rows = rng.permutation(n)[: n // m * m].reshape(n // m, m)
            var = z[rows].var(axis=1)  # (batches, D): sigma_B^2 of every batch, as BN has it
            ratios.append(np.mean(var.mean(axis=0)[ok] / full[ok]))
        biased.append(np.mean(ratios))
    biased = np.array(biased)
    return Correction(sizes, biased, biased * sizes / (sizes - 1), n)


def run(
    cfg: Inference, progress: Progress | None = None, executor: Executor | None = None
) -> InferenceResult:
    """Train (in a worker when given an executor), then measure on the trained net."""
    if not isinstance(cfg, Inference):
        raise TypeError(f"not a training-vs-inference experiment: {cfg!r}")
    train_cfg = cfg.train_config()
    if executor is None:
        h, trace, steps, pm, pv = _train(train_cfg, progress)
    else:
        (out,) = executor.run_many(
            [(_train, (train_cfg,), {})], (lambda i, v: progress(*v)) if progress else None
        )
        h, trace, steps, pm, pv = out
    data = load_data(train_cfg)
    with single_threaded_blas():
        model = trained_model(h)
        x = np.asarray(data.x_train, dtype=np.float64)
        corr = correction(model, x, cfg.seed, (*CORRECTION_SIZES, cfg.batch_size))
        sweep = _sweep(trace, steps, pm, pv)
    return InferenceResult(
        config=cfg,
        history=replace(h, layers=[]),
        trace=trace,
        pop_steps=steps,
        pop_mean=pm,
        pop_var=pv,
        sweep=sweep,
        correction=corr,
    )


SWEEP_FIELDS = ("momenta", "mean_final", "var_final", "mean_late", "var_late")
CORRECTION_FIELDS = ("sizes", "biased", "corrected")


def result_to_npz(result: InferenceResult) -> bytes:
    """A result as an npz file (how the page's default run ships): numbers and JSON only, each
    array in the dtype the run made it (the trace float32, as trained), the loss float32."""
    arrays: dict[str, Any] = history_arrays(result.history, "run/")
    arrays |= {
        "config": np.array(json.dumps(result.config.as_dict(), sort_keys=True)),
        "trace/mean": result.trace.mean,
        "trace/var": result.trace.var,
        "trace/batch_size": np.array(result.trace.batch_size),
        "pop/steps": result.pop_steps,
        "pop/mean": result.pop_mean,
        "pop/var": result.pop_var,
        "sweep/cumulative": np.stack(result.sweep.cumulative),
        "correction/n_train": np.array(result.correction.n_train),
    }
    arrays |= {f"sweep/{k}": getattr(result.sweep, k) for k in SWEEP_FIELDS}
    arrays |= {f"correction/{k}": getattr(result.correction, k) for k in CORRECTION_FIELDS}
    return npz_bytes(arrays)


def result_from_npz(raw: bytes) -> InferenceResult:
    """Back from ``result_to_npz``; never unpickles."""
    with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
        a = {k: npz[k] for k in npz.files}
    return InferenceResult(
        config=Inference(**json.loads(str(a["config"]))),
        history=history_from_arrays(a, "run/"),
        trace=batch_trace.BatchTrace(a["trace/mean"], a["trace/var"], int(a["trace/batch_size"])),
        pop_steps=a["pop/steps"],
        pop_mean=a["pop/mean"],
        pop_var=a["pop/var"],
        sweep=Sweep(*(a[f"sweep/{k}"] for k in SWEEP_FIELDS), tuple(a["sweep/cumulative"])),
        correction=Correction(
            *(a[f"correction/{k}"] for k in CORRECTION_FIELDS), int(a["correction/n_train"])
        ),
    )


EXPERIMENT = Experiment(
    "inference",
    run,
    processes=1,
    shipped={
        "inference-default": Inference()
    },  # the page's default run: its first view trains nothing
    encode=result_to_npz,
    decode=result_from_npz,
)


# --------------------------------------------------------------------------- running statistics


@dataclass
class Estimates:
    """The running averages at one momentum and the cumulative one, after every step,
    against the statistics of the current weights at the records."""

    momentum: float  # PyTorch's convention
    ema_mean: Array  # (steps, L, D)
    ema_var: Array
    cum_mean: Array
    cum_var: Array
    steps: Array  # (R,) record steps
    ema_err: tuple[Array, Array]  # (R, L) mean and variance errors (``_errors``)
    cum_err: tuple[Array, Array]


def estimates(result: InferenceResult, momentum: float) -> Estimates:
    tr = result.trace
    ema = batch_trace.running_average(tr.mean, tr.var, tr.batch_size, momentum)
    cum = batch_trace.running_average(tr.mean, tr.var, tr.batch_size, None)
    steps = result.pop_steps
    idx = np.maximum(steps - 1, 0)

    def at_records(mean: Array, var: Array) -> tuple[Array, Array]:
        m, v = mean[idx].copy(), var[idx].copy()
        m[steps == 0], v[steps == 0] = 0.0, 1.0  # before any step: the initial 0 and 1
        return _errors(m, v, result.pop_mean, result.pop_var)

    return Estimates(
        momentum=float(momentum),
        ema_mean=ema[0],
        ema_var=ema[1],
        cum_mean=cum[0],
        cum_var=cum[1],
        steps=steps,
        ema_err=at_records(*ema),
        cum_err=at_records(*cum),
    )


def with_stats(result: InferenceResult, mean: Array, var: Array) -> MLP:
    """The trained net (float64, eval mode) with its BN layers' statistics replaced by
    ``mean`` and ``var`` (L, D)."""
    model = trained_model(result.history)
    for li, (_, bn) in enumerate(model.norm_layers):
        d = bn.num_features
        bn.running_mean[...] = mean[li, :d]
        bn.running_var[...] = var[li, :d]
    return model


def held_out(result: InferenceResult) -> tuple[Array, Array]:
    data = load_data(result.history.config)
    return np.asarray(data.x_test, dtype=np.float64), data.y_test


def accuracy(model: MLP, x: Array, y: Array) -> float:
    """Eval-mode accuracy."""
    with np.errstate(all="ignore"), single_threaded_blas():
        return float(np.mean(np.argmax(model.eval().forward(x), axis=1) == y))


@dataclass
class FinalAccuracy:
    """Test accuracy (eval mode) of the trained net with four sets of statistics."""

    ema: float  # the running average at the chosen momentum, replayed
    cumulative: float  # momentum None
    engine: float  # the running averages training kept (PyTorch's 0.1)
    precise: float  # Algorithm 2 on the final weights (Precise BN)


def final_accuracy(result: InferenceResult, est: Estimates) -> FinalAccuracy:
    x, y = held_out(result)
    return FinalAccuracy(
        ema=accuracy(with_stats(result, est.ema_mean[-1], est.ema_var[-1]), x, y),
        cumulative=accuracy(with_stats(result, est.cum_mean[-1], est.cum_var[-1]), x, y),
        engine=accuracy(trained_model(result.history), x, y),
        precise=accuracy(with_stats(result, result.pop_mean[-1], result.pop_var[-1]), x, y),
    )


# --------------------------------------------------------------------------- one affine map


@dataclass
class Folded:
    """The trained net in eval mode against the same net with BN folded into its Linears."""

    scale: Array  # (L, D) gamma / sqrt(Var + eps)
    shift: Array  # (L, D) beta - scale E[x]
    max_diff: float  # max |folded logits - eval logits| over the test split
    seconds_eval: float  # one forward of the training split, best of ``repeats``
    seconds_folded: float
    n_rows: int  # test digits compared
    n_timed: int  # training digits timed
    repeats: int
    weight_before: Array  # (D, fan_in) fc1's W
    weight_after: Array  # (D, fan_in) diag(scale) W
    bias_after: Array  # (D,)


def _best_time(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def folded(result: InferenceResult, repeats: int = 20) -> Folded:
    """The fold checked on the test split; timed on the training split (more rows, steadier
    times), each net's best of ``repeats``."""
    model = trained_model(result.history)
    net = fold_batchnorm(model)
    x, _ = held_out(result)
    x_time = np.asarray(load_data(result.history.config).x_train, dtype=np.float64)
    affine = [bn_affine(bn) for _, bn in model.norm_layers]
    with single_threaded_blas(), np.errstate(all="ignore"):
        diff = float(np.max(np.abs(net.forward(x) - model.forward(x))))
        t_eval = _best_time(lambda: model.forward(x_time), repeats)
        t_fold = _best_time(lambda: net.forward(x_time), repeats)
    return Folded(
        scale=np.stack([s for s, _ in affine]),
        shift=np.stack([t for _, t in affine]),
        max_diff=diff,
        seconds_eval=t_eval,
        seconds_folded=t_fold,
        n_rows=len(x),
        n_timed=len(x_time),
        repeats=repeats,
        weight_before=model.params["fc1.weight"].copy(),
        weight_after=net.params["fc1.weight"].copy(),
        bias_after=net.params["fc1.bias"].copy(),
    )


# --------------------------------------------------------------------------- the classic bug


def shuffled_batches(n: int, size: int, seed: int) -> list[Array]:
    """A seeded permutation of n rows cut into batches of ``size`` (a lone last row joins the
    batch before it, so every batch has at least 2 rows)."""
    order = np.random.default_rng([seed, 21]).permutation(n)
    return _chunks(order, size)


def _chunks(rows: Array, size: int) -> list[Array]:
    out = [rows[i : i + size] for i in range(0, len(rows), size)]
    if size > 1 and len(out) > 1 and len(out[-1]) == 1:
        out[-2] = np.concatenate(out[-2:])
        out.pop()
    return out


def class_sorted_batches(y: Array, size: int) -> list[Array]:
    """Batches of one class each, at most ``size`` rows (a lone last row of a class joins the
    batch before it)."""
    return [b for c in np.unique(y) for b in _chunks(np.flatnonzero(y == c), size)]


def batched_predictions(model: MLP, x: Array, batches: list[Array]) -> Array:
    """Every row's predicted class with BN using its batch's own statistics."""
    pred = np.empty(len(x), dtype=np.int64)
    with np.errstate(all="ignore"), single_threaded_blas():
        for b in batches:
            pred[b] = np.argmax(batch_stats_forward(model, x[b])[0], axis=1)
    return pred


CASES = ("eval", "recalibrated", "shuffled", "class-sorted", "pairs", "single")


@dataclass
class Bug:
    """Test accuracy with eval mode (running and recalibrated statistics) and with batch
    statistics on test batches of four kinds; the batch-of-one facts."""

    size: int  # the test batch size of the shuffled and class-sorted cases
    acc: dict[str, float]  # CASES -> accuracy
    single_class: int  # with batches of one, the one class every digit is given
    single_share: float  # the share of test digits of that class (= the accuracy)
    single_beta_gap: float  # max |BN output - beta| over every digit, layer and unit


def bug(result: InferenceResult, size: int) -> Bug:
    if size not in TEST_BATCHES:
        raise ValueError(f"size must be one of {', '.join(map(str, TEST_BATCHES))}")
    x, y = held_out(result)
    model = trained_model(result.history)
    n = len(y)
    cases = {
        "shuffled": shuffled_batches(n, size, result.config.seed),
        "class-sorted": class_sorted_batches(y, size),
        "pairs": shuffled_batches(n, 2, result.config.seed),
        "single": [np.array([i]) for i in range(n)],
    }
    acc = {"eval": accuracy(model, x, y)}
    preds = {name: batched_predictions(model, x, b) for name, b in cases.items()}
    data = load_data(result.history.config)
    with single_threaded_blas(), np.errstate(all="ignore"):
        recalibrate(model, np.asarray(data.x_train, dtype=np.float64), result.config.batch_size)
        beta_gap = 0.0
        for i in range(n):
            _, trace = batch_stats_forward(model, x[i : i + 1])
            for name, bn in model.norm_layers:
                beta_gap = max(beta_gap, float(np.max(np.abs(trace[name][0] - bn.beta))))
    acc["recalibrated"] = accuracy(model, x, y)
    acc |= {name: float(np.mean(p == y)) for name, p in preds.items()}
    single = preds["single"]
    cls = int(single[0])
    return Bug(
        size=size,
        acc=acc,
        single_class=cls if np.all(single == cls) else -1,
        single_share=float(np.mean(y == cls)),
        single_beta_gap=beta_gap,
    )


# --------------------------------------------------------------------------- downloads


def unit_csv(result: InferenceResult, est: Estimates, layer: int, unit: int) -> str:
    """One unit over training: its batch statistics, the two running averages, and the
    statistics of the current weights (on record steps; empty elsewhere)."""
    tr, li = result.trace, layer - 1
    true_mean = np.full(tr.steps, np.nan)
    true_var = np.full(tr.steps, np.nan)
    for s, m, v in zip(result.pop_steps, result.pop_mean, result.pop_var, strict=True):
        if s > 0:
            true_mean[s - 1], true_var[s - 1] = m[li, unit], v[li, unit]
    return csv_table(
        {
            "step": np.arange(1, tr.steps + 1),
            "mu_B": tr.mean[:, li, unit],
            "sigma2_B": tr.var[:, li, unit],
            f"ema_mean_{est.momentum:g}": est.ema_mean[:, li, unit],
            f"ema_var_{est.momentum:g}": est.ema_var[:, li, unit],
            "cumulative_mean": est.cum_mean[:, li, unit],
            "cumulative_var": est.cum_var[:, li, unit],
            "true_mean": true_mean,
            "true_var": true_var,
        },
        digits=DIGITS,
    )


def eval_gap_csv(result: InferenceResult) -> str:
    h = result.history
    gap = h.probes["eval_gap"]
    return csv_table(
        {
            "step": h.record_steps,
            "train_acc_batch_stats": gap.acc_batch,
            "train_acc_eval_mode": gap.acc_running,
            "train_loss_batch_stats": gap.loss_batch,
            "train_loss_eval_mode": gap.loss_running,
            "test_acc_eval_mode": h.test_acc,
        },
        digits=DIGITS,
    )


def bug_csv(b: Bug) -> str:
    rows = [{"case": c, "test_batch": b.size, "accuracy": b.acc[c]} for c in CASES]
    return csv_table(columns_of(rows), digits=DIGITS)


def result_npz(result: InferenceResult) -> bytes:
    arrays: dict[str, Any] = history_arrays(result.history, "run/")
    arrays |= {
        "trace/mu_B": result.trace.mean,
        "trace/sigma2_B": result.trace.var,
        "true/steps": result.pop_steps,
        "true/mean": result.pop_mean,
        "true/var": result.pop_var,
        "sweep/momenta": result.sweep.momenta,
        "sweep/mean_final": result.sweep.mean_final,
        "sweep/var_final": result.sweep.var_final,
        "correction/sizes": result.correction.sizes,
        "correction/biased": result.correction.biased,
        "correction/corrected": result.correction.corrected,
    }
    return npz_bytes(arrays)
