"""Lesson "BN step by step (Algorithm 1)": the four lines of Algorithm 1 on real activations.

The paper's MNIST net (64 -> 3 x 100 sigmoid -> 10, small Gaussian init, batch 60, BN before
each sigmoid) trains on digits in float64 (``run``, through ``bnviz.fanout``), and its weights
are kept at three steps: 0, mid-run and the end. Everything else is cheap and the page calls
it directly, on one mini-batch of m training digits pushed through the net at the step the
student picks:

- ``layer_batch``: a hidden layer's BN input x (m, 100), its learned gamma and beta, what the
  net's BN made of it and the real loss's gradient at BN's output;
- ``walk``: one unit through mu_B, sigma_B^2, x - mu_B, x_hat and y = gamma x_hat + beta, with
  gamma and beta set by hand, to undo the normalization, or as training chose them;
- ``pair_check`` and ``single_check``: m = 2 (x_hat = +-sqrt(v / (v + eps))) and m = 1;
- ``sigmoid_regime``: where N(0, 1) inputs land on the sigmoid, and where gamma, beta move them;
- ``standardize_whiten`` and ``whitening_cost``: per-feature standardization vs ZCA whitening,
  and the measured cost of whitening a D-unit layer against BN's;
- ``conv_batch``: BatchNorm2d's per-channel statistics on digits seen as 8x8 images;
- ``sigma_eps``: seed 004's (x - mu) / (sigma + eps) against (x - mu) / sqrt(sigma^2 + eps).
"""

from __future__ import annotations

import io
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from bnviz import fanout
from bnviz import functional as F
from bnviz.blas import single_threaded_blas
from bnviz.experiment import Executor, Experiment, Progress
from bnviz.export import csv_table, npz_bytes
from bnviz.nn import MLP, BatchNorm1d
from bnviz.train import TrainConfig, build_model, load_data

Array = np.ndarray

HIDDEN = (100, 100, 100)  # the paper's MNIST net: 3 hidden layers of 100 sigmoid units
INIT_STD = 0.01  # its "small random Gaussian" initialization
TRAIN_BATCH = 60  # its mini-batch
NET_EPS = 1e-5  # the eps the net trains with (PyTorch's default)
MAX_STEPS = 10_000
M_RANGE = (2, 256)  # the batch sizes the walk offers
AT = ("start", "mid", "end")  # the three kept states of the run
AFFINES = ("manual", "identity", "learned")  # how the walk's gamma and beta are set
SATURATION = F.ACTIVATIONS["sigmoid"].saturation_threshold  # sigmoid' < 10% of its peak
TOLERANCES = (0.01, 0.05, 0.1, 0.2)  # "near-linear": within this fraction of the tangent
COST_DIMS = (100, 200, 500, 1000)  # layer widths the whitening cost is measured for
COST_M = TRAIN_BATCH
DIGITS = 12  # significant digits in the downloads: the identities hold to ~1e-15
GENERATED_N = 400
GENERATED_SCALES = (3.0, 1.0)  # std of the two generated features: unequal, so that
# standardizing visibly rescales them

DEFAULTS = dict(
    lr=0.5,
    steps=1000,
    seed=0,
    at="end",
    layer=3,
    unit=-1,  # the most off-centre unit
    m=60,
    affine="manual",
    gamma=1.0,
    beta=0.0,
    eps=1e-5,
    tolerance=0.05,
    rho=0.8,
    norm_view="batch",
)
PRESETS = {
    "Algorithm 1 on the trained net": dict(DEFAULTS),
    "Untrained net (step 0)": dict(DEFAULTS, at="start"),
    "Recover the identity": dict(DEFAULTS, affine="identity"),
    "Batch of two": dict(DEFAULTS, m=2),
    "Into saturation": dict(DEFAULTS, gamma=4.0, beta=2.0),
    "Large eps: sigma + eps differs": dict(DEFAULTS, at="start", eps=0.01),
}
PRESET_HELP = {
    "Algorithm 1 on the trained net": "The net after 1,000 steps, batch 60, gamma = 1, beta = 0",
    "Untrained net (step 0)": "The same unit before any training step",
    "Recover the identity": "gamma = sqrt(sigma^2 + eps), beta = mu: y = x",
    "Batch of two": "m = 2: every x_hat is +-sqrt(v / (v + eps)), almost exactly +-1",
    "Into saturation": "gamma = 4, beta = 2: most inputs land where the sigmoid is flat",
    "Large eps: sigma + eps differs": "eps = 0.01 on the untrained net's small variances",
}


# --------------------------------------------------------------------------- training


def config(lr: float, steps: int, seed: int) -> TrainConfig:
    """The BN net's config: the paper's net on digits in float64, recorded at the ends only."""
    if not 2 <= steps <= MAX_STEPS:
        raise ValueError(f"steps must be in [2, {MAX_STEPS:,}]; got {steps}")
    return TrainConfig(
        dataset="digits",
        hidden=HIDDEN,
        activation="sigmoid",
        norm="batch",
        placement="before",
        init="gaussian",
        init_std=INIT_STD,
        lr=lr,
        batch_size=TRAIN_BATCH,
        steps=steps,
        record_every=steps,
        probe_size=8,
        seed=seed,
        dtype="float64",
        bn_eps=NET_EPS,
    )


@dataclass
class Snapshots:
    """The run's net at step 0, mid-run and the end, and the whitening cost measured with it."""

    config: TrainConfig
    steps: dict[str, int]  # "start" / "mid" / "end" -> step
    states: dict[str, dict[str, Array]]  # the same keys -> MLP.state_arrays()
    test_acc: dict[str, float]
    diverged_at: int | None  # of the run to the end (the mid-run one stops earlier or there)
    cost: WhiteningCost

    def step_of(self, at: str) -> int:
        if at not in self.steps:
            raise ValueError(f"at must be one of {', '.join(AT)}; got {at!r}")
        return self.steps[at]


def run(
    cfg: TrainConfig, progress: Progress | None = None, executor: Executor | None = None
) -> Snapshots:
    """Train the BN net to mid-run and to the end (two arms with the same start and the same
    batches, each in its own worker given an executor), keep their weights, then measure the
    whitening cost on this machine."""
    mid = cfg.steps // 2
    arms = fanout.arms(
        cfg, {"mid": {"steps": mid, "record_every": mid}, "end": {}}, progress, executor
    )
    data = load_data(cfg)
    start = build_model(cfg, data.n_features, data.n_classes)  # what both arms start from
    end = arms["end"]
    return Snapshots(
        config=cfg,
        steps={"start": 0, "mid": mid, "end": cfg.steps},
        states={
            "start": start.state_arrays(),
            "mid": arms["mid"].final_state,
            "end": end.final_state,
        },
        test_acc={
            "start": float(end.test_acc[0]),
            "mid": float(arms["mid"].test_acc[-1]),
            "end": float(end.test_acc[-1]),
        },
        diverged_at=end.diverged_at,
        cost=whitening_cost(),
    )


def snapshots_to_npz(snap: Snapshots) -> bytes:
    """A run as an npz file (how the page's default run ships): numbers and JSON only."""
    arrays = {
        "config": np.array(json.dumps(snap.config.as_dict(), sort_keys=True)),
        "steps": np.array([snap.steps[at] for at in AT]),
        "test_acc": np.array([snap.test_acc[at] for at in AT]),
        "diverged_at": np.array(-1 if snap.diverged_at is None else snap.diverged_at),
    }
    for at in AT:
        arrays.update({f"state/{at}/{k}": v for k, v in snap.states[at].items()})
    c = snap.cost
    arrays.update({f"cost/{k}": getattr(c, k) for k in COST_FIELDS})
    arrays["cost/m"] = np.array(c.m)
    return npz_bytes(arrays)


def snapshots_from_npz(raw: bytes) -> Snapshots:
    """Back from ``snapshots_to_npz``; never unpickles."""
    with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    diverged = int(arrays["diverged_at"])
    return Snapshots(
        config=TrainConfig.from_dict(json.loads(str(arrays["config"]))),
        steps={at: int(v) for at, v in zip(AT, arrays["steps"], strict=True)},
        states={
            at: {k.split("/", 2)[2]: v for k, v in arrays.items() if k.startswith(f"state/{at}/")}
            for at in AT
        },
        test_acc={at: float(v) for at, v in zip(AT, arrays["test_acc"], strict=True)},
        diverged_at=None if diverged < 0 else diverged,
        cost=WhiteningCost(int(arrays["cost/m"]), *(arrays[f"cost/{k}"] for k in COST_FIELDS)),
    )


EXPERIMENT = Experiment(
    "bn_steps",
    run,
    processes=2,
    shipped={  # the page's default run, so its first paint waits for no training
        "bn-steps-default": config(DEFAULTS["lr"], DEFAULTS["steps"], DEFAULTS["seed"])
    },
    encode=snapshots_to_npz,
    decode=snapshots_from_npz,
)
COST_FIELDS = ("dims", "bn", "covariance", "eigen", "apply", "repeats")  # WhiteningCost's arrays


def net_at(snap: Snapshots, at: str) -> MLP:
    """The net at one of the kept steps, rebuilt in float64, in train mode."""
    snap.step_of(at)
    data = load_data(snap.config)
    model = build_model(snap.config, data.n_features, data.n_classes)
    model.load_state_arrays(snap.states[at])
    return model.train()


# --------------------------------------------------------------------------- one real batch


def batch_rows(seed: int, m: int, n: int) -> Array:
    """The first m rows of a seeded permutation of the n training rows: a larger m adds
    examples to the same batch instead of drawing a new one."""
    if not 1 <= m <= n:
        raise ValueError(f"the batch size m must be in [1, {n}]; got {m}")
    return np.random.default_rng([seed, 11]).permutation(n)[:m]


@dataclass
class LayerBatch:
    """One mini-batch of training digits at one hidden layer of the net at one step."""

    at: str  # start, mid or end of the run ("" for a net from elsewhere)
    step: int
    layer: int
    rows: Array  # (m,) training rows of the batch
    labels: Array  # (m,)
    digits: Array  # (m, 64) the standardized pixels the net sees
    u: Array  # (m, fan_in) the layer's input (the digits, or the sigmoid outputs below)
    weight: Array  # (D, fan_in) its Linear weights: x = u W^T (no bias before BN)
    x: Array  # (m, D) BN's input
    gamma: Array  # (D,) as trained
    beta: Array  # (D,)
    bn_out: Array  # (m, D) the net's own BN output: learned gamma, beta and eps NET_EPS
    dy: Array  # (m, D) dL/dy at BN's output for the real loss on this batch
    loss: float

    @property
    def m(self) -> int:
        return len(self.rows)


def layer_batch(snap: Snapshots, at: str, layer: int, m: int, seed: int) -> LayerBatch:
    """``layer_of`` for the net at one of the run's kept steps."""
    lb = layer_of(net_at(snap, at), snap.config, layer, m, seed)
    if not np.all(np.isfinite(lb.x)):
        raise ValueError(
            f"the net's weights at step {snap.step_of(at):,} are not finite (the run diverged "
            f"at step {snap.diverged_at}); choose a smaller learning rate"
        )
    lb.at, lb.step = at, snap.step_of(at)
    return lb


def layer_of(model: MLP, cfg: TrainConfig, layer: int, m: int, seed: int) -> LayerBatch:
    """Push m training digits (``batch_rows``) through the net in train mode (every BN layer
    normalizes with this batch's statistics, running ones untouched) and keep hidden layer
    ``layer``'s BN input, and the real loss's gradient at BN's output."""
    if not 1 <= layer <= model.n_hidden:
        raise ValueError(f"layer must be a hidden layer in 1..{model.n_hidden}; got {layer}")
    if not M_RANGE[0] <= m <= M_RANGE[1]:
        raise ValueError(f"the batch size m must be in [{M_RANGE[0]}, {M_RANGE[1]}]; got {m}")
    data = load_data(cfg)
    rows = batch_rows(seed, m, len(data.y_train))
    xs = np.asarray(data.x_train[rows], dtype=np.float64)
    ys = data.y_train[rows]
    names = [name for name, _ in model.named_layers]
    fc, bn = f"fc{layer}", f"bn{layer}"
    model.train()
    with np.errstate(all="ignore"), model.frozen_stats(), single_threaded_blas():
        logits, trace = model.forward_trace(xs)
        loss, d = F.softmax_cross_entropy(logits, ys)
        for name, module in reversed(model.named_layers):
            if name == bn:
                break
            d = module.backward(d)
    i = names.index(fc)
    return LayerBatch(
        at="",
        step=-1,
        layer=layer,
        rows=rows,
        labels=np.asarray(ys),
        digits=xs,
        u=xs if i == 0 else trace[names[i - 1]],
        weight=model.params[f"{fc}.weight"].copy(),
        x=trace[fc],
        gamma=model.params[f"{bn}.gamma"].copy(),
        beta=model.params[f"{bn}.beta"].copy(),
        bn_out=trace[bn],
        dy=np.array(d),
        loss=float(loss),
    )


def pick_unit(x: Array, unit: int) -> int:
    """``unit``, or for -1 the unit furthest off centre (largest |mean| / std over the batch):
    there the walk moves visibly at every line."""
    d = x.shape[1]
    if not -1 <= unit < d:
        raise ValueError(f"unit must be in 0..{d - 1}, or -1; got {unit}")
    if unit >= 0:
        return int(unit)
    with np.errstate(all="ignore"):
        off = np.abs(x.mean(axis=0)) / x.std(axis=0)
    return int(np.argmax(np.where(np.isfinite(off), off, -1.0)))


# --------------------------------------------------------------------------- Algorithm 1


@dataclass
class Walk:
    """One unit of one mini-batch through Algorithm 1's four lines."""

    unit: int
    affine: str  # manual, identity or learned
    gamma: float
    beta: float
    eps: float
    x: Array  # (m,)
    mu: float  # line 1
    var: float  # line 2, biased (1/m)
    xc: Array  # x - mu
    sq: Array  # (x - mu)^2, whose mean is var
    x_hat: Array  # line 3
    y: Array  # line 4

    @property
    def m(self) -> int:
        return len(self.x)

    @property
    def std_eps(self) -> float:
        """sqrt(var + eps): what line 3 divides by."""
        return math.sqrt(self.var + self.eps)

    @property
    def identity_error(self) -> float:
        """max |y - x|: 0 up to rounding when gamma = sqrt(var + eps) and beta = mu."""
        return float(np.max(np.abs(self.y - self.x)))

    @property
    def x_hat_var(self) -> float:
        """The variance of x_hat: var / (var + eps), just under 1."""
        return float(np.var(self.x_hat))


def walk(lb: LayerBatch, unit: int, affine: str, gamma: float, beta: float, eps: float) -> Walk:
    """Algorithm 1 for one unit of the batch (``unit=-1``: the most off-centre one), in float64.
    ``affine`` sets gamma and beta: "manual" takes the given ones, "identity" sqrt(var + eps)
    and mu (y = x), "learned" the net's own."""
    if affine not in AFFINES:
        raise ValueError(f"affine must be one of {', '.join(AFFINES)}; got {affine!r}")
    if not (math.isfinite(eps) and eps > 0):
        raise ValueError(f"eps must be a positive number; got {eps!r}")
    j = pick_unit(lb.x, unit)
    x = lb.x[:, j].copy()
    mu, var = (float(v[0]) for v in F.batch_moments(x[:, None]))
    if affine == "identity":
        gamma, beta = math.sqrt(var + eps), mu
    elif affine == "learned":
        gamma, beta = float(lb.gamma[j]), float(lb.beta[j])
    y, cache = F.batchnorm_forward(x[:, None], np.array([gamma]), np.array([beta]), eps)
    xc = cache.xc[:, 0]
    return Walk(
        unit=j,
        affine=affine,
        gamma=float(gamma),
        beta=float(beta),
        eps=float(eps),
        x=x,
        mu=mu,
        var=var,
        xc=xc,
        sq=xc * xc,
        x_hat=cache.x_hat[:, 0],
        y=y[:, 0],
    )


@dataclass
class PairCheck:
    """m = 2: the two x_hat against the closed form +-sqrt(v / (v + eps))."""

    x: Array  # (2,)
    var: float  # ((x1 - x2) / 2)^2
    eps: float
    x_hat: Array  # (2,) as Algorithm 1 computes them
    closed: Array  # (2,) sign(x_i - mu) sqrt(v / (v + eps))

    @property
    def error(self) -> float:
        return float(np.max(np.abs(self.x_hat - self.closed)))

    @property
    def magnitude(self) -> float:
        return math.sqrt(self.var / (self.var + self.eps))


def pair_check(x: Array, eps: float) -> PairCheck:
    """Algorithm 1 on the first two values of x, and its closed form: with two values,
    mu is their midpoint, both sit one deviation from it, v = ((x1 - x2) / 2)^2, and
    x_hat = +-sqrt(v / (v + eps)), within eps / (2v) of +-1, whatever the two values are."""
    pair = np.asarray(x[:2], dtype=np.float64)
    if len(pair) < 2:
        raise ValueError("the pair check needs two values")
    _, cache = F.batchnorm_forward(pair[:, None], np.ones(1), np.zeros(1), eps)
    v = ((pair[0] - pair[1]) / 2.0) ** 2
    closed = np.sign(pair - pair.mean()) * math.sqrt(v / (v + eps))
    return PairCheck(pair, float(v), float(eps), cache.x_hat[:, 0], closed)


@dataclass
class SingleCheck:
    """m = 1: what Algorithm 1 makes of a batch of one, and why training refuses it."""

    x: float
    gamma: float
    beta: float
    x_hat: float  # 0: the example is its own mean
    y: float  # beta, whatever x is
    dx: float  # dL/dx for dL/dy = 1: 0, the input gets no gradient
    refusal: str  # what bnviz.nn.BatchNorm1d says in training mode


def single_check(x: float, gamma: float, beta: float, eps: float) -> SingleCheck:
    """Algorithm 1 with m = 1 (through the functional layer, which allows it), and the
    training-mode layer's refusal."""
    xs = np.array([[float(x)]])
    y, cache = F.batchnorm_forward(xs, np.array([gamma]), np.array([beta]), eps)
    dx = F.batchnorm_backward(np.ones_like(xs), cache)[0]
    try:
        BatchNorm1d(1, eps=eps).train().forward(xs)
    except ValueError as err:
        refusal = str(err)
    else:  # pragma: no cover - BatchNorm1d refuses one example in training mode
        refusal = ""
    return SingleCheck(
        float(x), float(gamma), float(beta), float(cache.x_hat[0, 0]), float(y[0, 0]),
        float(dx[0, 0]), refusal,
    )  # fmt: skip


# --------------------------------------------------------------------------- the sigmoid


def linear_edge(tolerance: float) -> float:
    """The c with sigmoid near-linear on |y| < c: there sigmoid(y) - 1/2 is at least
    (1 - tolerance) times the tangent's rise y/4, i.e. tanh(y/2) / (y/2) >= 1 - tolerance
    (solved by bisection; tanh(u)/u falls monotonically from 1 at u = 0)."""
    if not 0 < tolerance < 1:
        raise ValueError(f"tolerance must be in (0, 1); got {tolerance}")
    lo, hi = 0.0, 50.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if math.tanh(mid) / mid >= 1.0 - tolerance:
            lo = mid
        else:
            hi = mid
    return 2.0 * lo


def normal_within(c: float) -> float:
    """P(|Z| < c) for Z ~ N(0, 1)."""
    return math.erf(c / math.sqrt(2.0))


@dataclass
class SigmoidRegime:
    """Where one unit's y lands on the sigmoid, against N(0, 1) and the layer's own BN."""

    tolerance: float
    edge: float  # near-linear on |y| < edge
    saturation: float  # saturated on |y| > saturation
    grid: Array  # y values for the curves
    sigmoid: Array
    tangent: Array  # 1/2 + y/4
    y: Array  # the walk's y
    layer_y: Array  # (m * D,) the net's own BN output, every unit of the layer

    @property
    def normal_pdf(self) -> Array:
        """The N(0, 1) density on ``grid``."""
        return np.exp(-0.5 * self.grid**2) / math.sqrt(2.0 * math.pi)

    @property
    def linear_fraction(self) -> float:
        return float(np.mean(np.abs(self.y) < self.edge))

    @property
    def saturated_fraction(self) -> float:
        return float(np.mean(np.abs(self.y) > self.saturation))

    @property
    def normal_linear(self) -> float:
        return normal_within(self.edge)

    @property
    def normal_saturated(self) -> float:
        return 1.0 - normal_within(self.saturation)

    @property
    def layer_linear(self) -> float:
        return float(np.mean(np.abs(self.layer_y) < self.edge))

    @property
    def layer_saturated(self) -> float:
        return float(np.mean(np.abs(self.layer_y) > self.saturation))


def sigmoid_regime(w: Walk, lb: LayerBatch, tolerance: float) -> SigmoidRegime:
    reach = max(8.0, float(np.max(np.abs(w.y))) * 1.05)
    grid = np.linspace(-reach, reach, 401)
    return SigmoidRegime(
        tolerance=float(tolerance),
        edge=linear_edge(tolerance),
        saturation=float(SATURATION),
        grid=grid,
        sigmoid=F.sigmoid(grid),
        tangent=0.5 + grid / 4.0,
        y=w.y,
        layer_y=lb.bn_out.ravel(),
    )


# --------------------------------------------------------------------------- whitening


def ellipse(mean: Array, cov: Array, k: float = 2.0, n: int = 121) -> Array:
    """(n, 2) points of the k-sigma ellipse of a 2-D Gaussian: mean + k L (cos t, sin t),
    with L L^T = cov (from the eigendecomposition, which also takes a singular cov)."""
    vals, vecs = np.linalg.eigh(cov)
    root = vecs * np.sqrt(np.clip(vals, 0.0, None))
    t = np.linspace(0.0, 2.0 * np.pi, n)
    return mean + k * (np.stack([np.cos(t), np.sin(t)], axis=1) @ root.T)


@dataclass
class Plane:
    """One panel of the standardize-vs-whiten picture."""

    name: str
    points: Array  # (n, 2)
    cov: Array  # (2, 2), biased
    ellipse: Array  # (k, 2) its 2-sigma ellipse

    @property
    def corr(self) -> float:
        c = self.cov
        denom = math.sqrt(c[0, 0] * c[1, 1])
        return float(c[0, 1] / denom) if denom > 0 else float("nan")


@dataclass
class Whitening:
    """2-D points as they are, standardized per feature (what BN does), and ZCA-whitened."""

    source: str  # "real" or "generated"
    labels: tuple[str, str]  # the two features
    eps: float
    planes: tuple[Plane, Plane, Plane]

    @property
    def raw(self) -> Plane:
        return self.planes[0]

    @property
    def standardized(self) -> Plane:
        return self.planes[1]

    @property
    def whitened(self) -> Plane:
        return self.planes[2]


def _plane(name: str, points: Array) -> Plane:
    mean = points.mean(axis=0)
    xc = points - mean
    cov = xc.T @ xc / len(points)
    return Plane(name, points, cov, ellipse(mean, cov))


def standardize_whiten(
    points: Array, eps: float, source: str, labels: tuple[str, str]
) -> Whitening:
    """Standardize each feature, (x - mu_k) / sqrt(var_k + eps), as BN does; and whiten,
    (x - mu) C^(-1/2) with C^(-1/2) = U diag(1 / sqrt(lambda + eps)) U^T from the covariance
    C = U diag(lambda) U^T (ZCA: the whitening that moves the points least)."""
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 2 or len(points) < 2:
        raise ValueError("standardize_whiten needs at least two 2-D points")
    mean = points.mean(axis=0)
    xc = points - mean
    cov = xc.T @ xc / len(points)
    standardized = xc / np.sqrt(np.diag(cov) + eps)
    vals, vecs = np.linalg.eigh(cov)
    whitened = xc @ (vecs @ np.diag(1.0 / np.sqrt(vals + eps)) @ vecs.T)
    planes = (
        _plane("as they are", points),
        _plane("standardized per feature (BN)", standardized),
        _plane("whitened (ZCA)", whitened),
    )
    return Whitening(source, labels, float(eps), planes)


def most_correlated_pair(x: Array) -> tuple[int, int]:
    """The two units of x (m, D) whose values over the batch correlate most (in |r|)."""
    with np.errstate(all="ignore"):
        r = np.corrcoef(x, rowvar=False)
    r = np.where(np.isfinite(r), np.abs(r), -1.0)
    np.fill_diagonal(r, -1.0)
    i, j = np.unravel_index(int(np.argmax(r)), r.shape)
    return (int(min(i, j)), int(max(i, j)))


def real_slice(lb: LayerBatch, eps: float) -> Whitening:
    """The batch's two most correlated units of the layer's BN input."""
    i, j = most_correlated_pair(lb.x)
    return standardize_whiten(lb.x[:, [i, j]], eps, "real", (f"unit #{i}", f"unit #{j}"))


def generated(rho: float, eps: float, seed: int, n: int = GENERATED_N) -> Whitening:
    """n Gaussian points with correlation rho and unequal scales (GENERATED_SCALES)."""
    if not -1 < rho < 1:
        raise ValueError(f"the correlation must be in (-1, 1); got {rho}")
    s1, s2 = GENERATED_SCALES
    cov = np.array([[s1 * s1, rho * s1 * s2], [rho * s1 * s2, s2 * s2]])
    z = np.random.default_rng([seed, 23]).standard_normal((n, 2))
    points = np.array([2.0, -1.0]) + z @ np.linalg.cholesky(cov).T
    return standardize_whiten(points, eps, "generated", ("feature 1", "feature 2"))


@dataclass
class WhiteningCost:
    """Seconds per mini-batch (best of ``repeats`` runs, one core) to normalize a D-unit layer:
    BN's per-unit statistics against whitening's covariance, eigendecomposition and product."""

    m: int
    dims: Array  # (K,) layer widths D
    bn: Array  # (K,) seconds: batchnorm_forward
    covariance: Array  # (K,) (x - mu)^T (x - mu) / m
    eigen: Array  # (K,) eigh of the D x D covariance
    apply: Array  # (K,) U diag(1/sqrt(lambda + eps)) U^T and (x - mu) times it
    repeats: Array  # (K,)

    @property
    def whiten(self) -> Array:
        return self.covariance + self.eigen + self.apply

    @property
    def ratio(self) -> Array:
        return self.whiten / self.bn

    def slope(self, seconds: Array) -> float:
        """The fitted log-log slope of a time against D: its measured order in D."""
        return float(np.polyfit(np.log(self.dims), np.log(seconds), 1)[0])

    def rows(self) -> list[dict[str, object]]:
        """The table the page shows: milliseconds and the operation counts."""
        return [
            {
                "units D": int(d),
                "BN, ms": f"{1e3 * b:.3f}",
                "covariance, ms": f"{1e3 * c:.3f}",
                "eigh, ms": f"{1e3 * e:.2f}",
                "whitening, ms": f"{1e3 * w:.2f}",
                "ratio": f"{r:,.0f}×",
                "work m·D vs m·D² + D³": f"{self.m * d:,} vs {self.m * d * d + d**3:,}",
            }
            for d, b, c, e, w, r in zip(
                self.dims,
                self.bn,
                self.covariance,
                self.eigen,
                self.whiten,
                self.ratio,
                strict=True,
            )  # fmt: skip
        ]


def best_time(fn: Callable[[], object], budget: float = 0.1, max_repeats: int = 50) -> tuple:
    """The best wall time of fn over repeats (at least one, until ``budget`` seconds)."""
    best, spent, n = math.inf, 0.0, 0
    while n < max_repeats and (n == 0 or spent < budget):
        start = time.perf_counter()
        fn()
        took = time.perf_counter() - start
        best, spent, n = min(best, took), spent + took, n + 1
    return best, n


def whitening_cost(
    m: int = COST_M, dims: tuple[int, ...] = COST_DIMS, eps: float = NET_EPS, seed: int = 0
) -> WhiteningCost:
    """Time BN and whitening of an (m, D) batch for each D, here and now, on one BLAS thread
    (the per-core cost; a BLAS thread pool divides both by about the core count)."""
    rng = np.random.default_rng([seed, 5])
    out = {k: [] for k in ("bn", "covariance", "eigen", "apply", "repeats")}
    with single_threaded_blas():
        for d in dims:
            x = rng.standard_normal((m, d))
            ones, zeros = np.ones(d), np.zeros(d)
            xc = x - x.mean(axis=0)
            cov = xc.T @ xc / m
            vals, vecs = np.linalg.eigh(cov)
            bn, n = best_time(lambda x=x, o=ones, z=zeros: F.batchnorm_forward(x, o, z, eps))
            c, _ = best_time(lambda x=x: (x - x.mean(axis=0)).T @ (x - x.mean(axis=0)) / m)
            e, _ = best_time(lambda c=cov: np.linalg.eigh(c))
            a, _ = best_time(lambda xc=xc, v=vals, u=vecs: xc @ ((u / np.sqrt(v + eps)) @ u.T))
            for k, v in (("bn", bn), ("covariance", c), ("eigen", e), ("apply", a)):
                out[k].append(v)
            out["repeats"].append(n)
    return WhiteningCost(m, np.array(dims), *(np.array(out[k]) for k in out))


# --------------------------------------------------------------------------- conv axes


def conv2d(x: Array, w: Array) -> Array:
    """A 3x3 convolution with zero padding 1 (cross-correlation, as torch.nn.Conv2d):
    x (N, C_in, H, W), w (C_out, C_in, 3, 3) -> (N, C_out, H, W)."""
    k = w.shape[-1]
    p = k // 2
    padded = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, (k, k), axis=(2, 3))
    return np.einsum("nchwij,ocij->nohw", windows, w)


def batchnorm2d(x: Array, eps: float) -> tuple[Array, Array, Array]:
    """BatchNorm2d (gamma = 1, beta = 0) as BatchNorm1d on the (N H W, C) matrix: one mean and
    one variance per channel, over every example and every position. Returns x_hat, mu, var."""
    n, c, h, w = x.shape
    rows = x.transpose(0, 2, 3, 1).reshape(n * h * w, c)
    y, cache = F.batchnorm_forward(rows, np.ones(c), np.zeros(c), eps)
    return y.reshape(n, h, w, c).transpose(0, 3, 1, 2), cache.mu, cache.var


@dataclass
class ConvBatch:
    """The batch's digits as 1-channel 8x8 images through one random 3x3 conv, then BN2d."""

    images: Array  # (m, 1, 8, 8) the standardized pixels the MLP sees, as images
    kernels: Array  # (C, 1, 3, 3)
    z: Array  # (m, C, 8, 8) the conv's output
    x_hat: Array  # (m, C, 8, 8) BatchNorm2d's output (gamma 1, beta 0)
    mean: Array  # (C,) one per channel, over N, H, W
    var: Array  # (C,) biased
    eps: float
    labels: Array  # (m,)

    @property
    def per_statistic(self) -> int:
        """Values behind each channel's mean: N H W."""
        n, _, h, w = self.z.shape
        return n * h * w

    @property
    def out_mean(self) -> Array:
        return self.x_hat.mean(axis=(0, 2, 3))

    @property
    def out_var(self) -> Array:
        return self.x_hat.var(axis=(0, 2, 3))

    def rows(self) -> list[dict[str, object]]:
        return [
            {
                "channel": c,
                "mean μ_c": f"{mu:.6f}",
                "variance σ_c²": f"{v:.6f}",
                "values per statistic": f"{self.per_statistic:,}",
                "mean after BN": f"{om:.1e}",
                "variance after BN": f"{ov:.9f}",
            }
            for c, (mu, v, om, ov) in enumerate(
                zip(self.mean, self.var, self.out_mean, self.out_var, strict=True)
            )
        ]


CONV_CHANNELS = 4


def conv_batch(lb: LayerBatch, seed: int, eps: float, channels: int = CONV_CHANNELS) -> ConvBatch:
    """The batch's digits (the same rows as ``lb``) as 8x8 images, one seeded random conv with
    ``channels`` output channels (He-scaled: std sqrt(2 / 9)), and BatchNorm2d."""
    images = lb.digits.reshape(-1, 1, 8, 8)
    kernels = np.random.default_rng([seed, 31]).standard_normal((channels, 1, 3, 3))
    kernels *= math.sqrt(2.0 / 9.0)
    z = conv2d(images, kernels)
    x_hat, mean, var = batchnorm2d(z, eps)
    return ConvBatch(images, kernels, z, x_hat, mean, var, float(eps), lb.labels)


# --------------------------------------------------------------------------- sigma + eps


@dataclass
class SigmaEps:
    """Seed 004's (x - mu) / (sigma + eps) against Algorithm 1's (x - mu) / sqrt(sigma^2 + eps)."""

    eps: float
    sigma: Array  # (K,) a log grid of standard deviations
    scale_sqrt: Array  # 1 / sqrt(sigma^2 + eps)
    scale_plus: Array  # 1 / (sigma + eps)
    unit_sigma: float
    layer_sigma: Array  # (D,) every unit of the layer
    x_hat_sqrt: Array  # the walk's unit, both ways
    x_hat_plus: Array
    differ_below: float  # above this sigma the two scales agree to 1%

    @property
    def max_diff(self) -> float:
        return float(np.max(np.abs(self.x_hat_plus - self.x_hat_sqrt)))

    @property
    def layer_scale_sqrt(self) -> Array:
        """1 / sqrt(sigma^2 + eps) of every unit of the layer."""
        return 1.0 / np.sqrt(self.layer_sigma**2 + self.eps)

    @property
    def unit_ratio(self) -> float:
        """(1 / (sigma + eps)) / (1 / sqrt(sigma^2 + eps)) at the unit's sigma."""
        s = self.unit_sigma
        return math.sqrt(s * s + self.eps) / (s + self.eps)

    @property
    def layer_differ(self) -> float:
        """The fraction of the layer's units where the two scales differ by more than 1%."""
        s = self.layer_sigma
        ratio = np.sqrt(s * s + self.eps) / (s + self.eps)
        return float(np.mean(np.abs(ratio - 1.0) > 0.01))


def differ_below(eps: float, by: float = 0.01) -> float:
    """The sigma above which sqrt(sigma^2 + eps) / (sigma + eps) stays within 1 +- ``by``: the
    two normalizations agree there. (Below it they need not differ everywhere: for eps near 1
    the ratio passes through 1 at sigma = (1 - eps) / 2.) The last crossing on a fine log grid,
    refined by bisection."""

    def gap(s: float) -> float:
        return abs(math.sqrt(s * s + eps) / (s + eps) - 1.0) - by

    grid = np.logspace(-12, 8, 2001)
    outside = [i for i, g in enumerate(grid) if gap(float(g)) > 0]
    if not outside:
        return float(grid[0])
    lo, hi = float(grid[outside[-1]]), float(grid[min(outside[-1] + 1, len(grid) - 1)])
    for _ in range(100):
        mid = math.sqrt(lo * hi)
        if gap(mid) > 0:
            lo = mid
        else:
            hi = mid
    return hi


def sigma_eps(w: Walk, lb: LayerBatch) -> SigmaEps:
    eps = w.eps
    sigma = np.logspace(-6, 1, 141)
    s = math.sqrt(w.var)
    return SigmaEps(
        eps=eps,
        sigma=sigma,
        scale_sqrt=1.0 / np.sqrt(sigma * sigma + eps),
        scale_plus=1.0 / (sigma + eps),
        unit_sigma=s,
        layer_sigma=lb.x.std(axis=0),
        x_hat_sqrt=w.x_hat,
        x_hat_plus=w.xc / (s + eps),
        differ_below=differ_below(eps),
    )


# --------------------------------------------------------------------------- downloads


def walk_csv(w: Walk, lb: LayerBatch) -> str:
    """The unit's m values through every line of Algorithm 1, one row per example."""
    return csv_table(
        {
            "example": np.arange(w.m),
            "train_row": lb.rows,
            "label": lb.labels,
            "x": w.x,
            "x_minus_mu": w.xc,
            "squared_deviation": w.sq,
            "x_hat": w.x_hat,
            "y": w.y,
            "sigmoid_y": F.sigmoid(w.y),
            "dL_dy_real_loss": lb.dy[:, w.unit],
        },
        digits=DIGITS,
    )


def batch_npz(w: Walk, lb: LayerBatch, snap: Snapshots) -> bytes:
    """The whole batch at the layer, the walk of its unit, the real loss's gradients at BN
    (dL/dy, and dL/dx through the net's own BN), and the net's weights at that step."""
    _, cache = F.batchnorm_forward(lb.x, lb.gamma, lb.beta, NET_EPS)
    dx, dgamma, dbeta = F.batchnorm_backward(lb.dy, cache)
    arrays = {
        "step": lb.step,
        "layer": lb.layer,
        "unit": w.unit,
        "train_rows": lb.rows,
        "labels": lb.labels,
        "u": lb.u,
        "W": lb.weight,
        "x": lb.x,
        "gamma_learned": lb.gamma,
        "beta_learned": lb.beta,
        "bn_out": lb.bn_out,
        "dL_dy": lb.dy,
        "dL_dx": dx,
        "dL_dgamma": dgamma,
        "dL_dbeta": dbeta,
        "loss": lb.loss,
        "walk/gamma": w.gamma,
        "walk/beta": w.beta,
        "walk/eps": w.eps,
        "walk/mu": w.mu,
        "walk/var": w.var,
        "walk/x_hat": w.x_hat,
        "walk/y": w.y,
    }
    arrays |= {f"net/{k}": v for k, v in snap.states[lb.at].items()}
    return npz_bytes(arrays)


def cost_csv(cost: WhiteningCost) -> str:
    return csv_table(
        {
            "units_D": cost.dims,
            "batch_m": [cost.m] * len(cost.dims),
            "bn_seconds": cost.bn,
            "covariance_seconds": cost.covariance,
            "eigh_seconds": cost.eigen,
            "apply_seconds": cost.apply,
            "whiten_seconds": cost.whiten,
            "repeats": cost.repeats,
        }
    )


def conv_npz(cb: ConvBatch) -> bytes:
    return npz_bytes(
        {
            "images": cb.images,
            "kernels": cb.kernels,
            "conv_out": cb.z,
            "bn2d_out": cb.x_hat,
            "channel_mean": cb.mean,
            "channel_var": cb.var,
            "eps": cb.eps,
            "labels": cb.labels,
        }
    )
