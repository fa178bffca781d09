"""Lesson "Scale invariance and gamma/beta": what BN does to the scale of the weights before it.

Three experiments on the paper's net (64 -> 3 x 100 sigmoid -> 10) and real digits, in float64
so the identities hold to rounding:

- ``identity``: scale the weights W of one hidden Linear layer by a and measure, on one real
  mini-batch, BN(aWu) against BN(Wu), the gradient at the layer's input, and the weight gradient
  over a log grid of a (BN: exactly 1/a when eps = 0). Cheap: the page calls it directly.
- ``run``: plain and BN twins trained in lockstep (``train_twins``), whose recorded weight norms
  show ||W|| growing and lr/||W||^2 falling; ``scale_trained`` then rescales a layer of the
  trained nets and measures the loss.
- ``gamma_beta``: one unit of the trained BN net's BN layer on a real batch, with gamma and beta
  set by hand, through the sigmoid.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

import numpy as np

from bnviz import fanout
from bnviz import functional as F
from bnviz.blas import single_threaded_blas
from bnviz.data import load_dataset
from bnviz.experiment import Executor, Experiment, Progress
from bnviz.export import columns_of, csv_table, npz_bytes
from bnviz.nn import MLP
from bnviz.train import History, TrainConfig, Twins, build_model, load_data

Array = np.ndarray

HIDDEN = (100, 100, 100)  # the paper's MNIST net: 3 hidden layers of 100 sigmoid units
INIT_STD = 0.01  # its "small random Gaussian" initialization
MAX_STEPS = 10_000
RECORDS = 100  # records per training run, whatever its length
A_GRID = np.logspace(-2, 2, 41)  # scales of W for the gradient law and the trained-net test
LINEAR_Y = 1.0  # "near-linear": |y| < 1, where sigmoid(y) is within 0.019 of 0.5 + y/4
SATURATION_Y = F.ACTIVATIONS["sigmoid"].saturation_threshold  # sigmoid'(y) < 10% of its peak
DIGITS = 10  # significant digits in the downloads: these identities hold to ~1e-15
EXACT_EPS = float(np.finfo(np.float64).tiny)  # what eps = 0 is built as, see bn_eps
EPS_CHOICES = ("0", "1e-12", "1e-8", "1e-5", "1e-3", "0.1")
WEIGHT_DECAY_CHOICES = ("0", "1e-4", "1e-3", "1e-2")

DEFAULTS = dict(
    a=10.0,
    eps="0",
    layer=1,
    batch_size=60,
    seed=0,
    lr=0.5,
    steps=2000,
    weight_decay="0",
    gamma=1.0,
    beta=0.0,
    identity=False,
    bn_layer=2,
    unit=-1,  # the most off-centre unit
)
PRESETS = {
    "Weights scaled x100": dict(DEFAULTS, a=100.0),
    "Tiny weights: eps breaks the identity": dict(DEFAULTS, a=0.01, eps="1e-5"),
    "Identity recovered": dict(DEFAULTS, identity=True),
    "Saturating sigmoid": dict(DEFAULTS, gamma=5.0),
    "Weight decay holds the norm": dict(DEFAULTS, weight_decay="1e-3"),
}
PRESET_HELP = {
    "Weights scaled x100": "a = 100: the Linear output is 100 times larger, BN's output is not",
    "Tiny weights: eps breaks the identity": "a = 0.01 with eps = 1e-5: the variance falls "
    "below eps and BN stops normalizing",
    "Identity recovered": "gamma = sqrt(var + eps), beta = mean: BN gives back its input",
    "Saturating sigmoid": "gamma = 5: most of the unit's inputs land where the sigmoid is flat",
    "Weight decay holds the norm": "weight decay 1e-3: it shrinks ||W|| while the gradient "
    "steps grow it",
}


# --------------------------------------------------------------------------- one real layer


def bn_eps(eps: float) -> float:
    """The eps BN is built with for the page's eps: BN refuses 0 (a constant unit would divide
    by zero), so "0" is the smallest positive float64, which leaves var + eps equal to var, bit
    for bit, for every variance above 1e-292."""
    return eps if eps > 0 else EXACT_EPS


def paper_nets(seed: int, eps: float) -> tuple[MLP, MLP]:
    """The plain and BN nets of ``config(seed=seed)`` at step 0, in float64: same weights."""
    sizes = (load_dataset("digits").n_features, *HIDDEN, 10)
    common = dict(init="gaussian", init_std=INIT_STD, seed=seed, dtype=np.float64)
    bn = MLP(sizes, "sigmoid", batchnorm=True, eps=bn_eps(eps), **common)
    plain = MLP(sizes, "sigmoid", batchnorm=False, **common)
    plain.copy_weights_from(bn)
    return plain, bn


def real_batch(seed: int, batch_size: int) -> tuple[Array, Array]:
    """batch_size distinct digits of the training split, drawn with the seed."""
    data = load_dataset("digits")
    n = len(data.y_train)
    if not 2 <= batch_size <= n:
        raise ValueError(f"batch_size must be in [2, {n}]; got {batch_size}")
    idx = np.sort(np.random.default_rng(seed).choice(n, size=batch_size, replace=False))
    return np.asarray(data.x_train[idx], dtype=np.float64), data.y_train[idx]


@dataclass
class Pass:
    """One forward and backward pass of a net whose layer-``layer`` weights were scaled by a."""

    a: float
    loss: float
    u: Array  # (m, fan_in) the layer's input
    z: Array  # (m, D) its Linear output, (aW)u (+ b in the plain net)
    out: Array  # (m, D) what the nonlinearity receives: BN((aW)u), or z without BN
    du: Array  # (m, fan_in) dL/du
    dw: Array  # (D, fan_in) dL/d(aW), the gradient of the scaled weights


def scaled_passes(net: MLP, layer: int, scales: Iterable[float], u: Array, y: Array) -> list[Pass]:
    """For each a in ``scales``: scale fc{layer}'s weights of a copy of ``net`` by a and run one
    train-mode step's forward and backward pass on (u, y). BN uses the batch's statistics;
    ``net`` itself is left untouched."""
    net = net.clone().train()
    fc_name = f"fc{layer}"
    if fc_name not in net.layers or layer > net.n_hidden:
        raise ValueError(f"layer must be a hidden layer in 1..{net.n_hidden}; got {layer}")
    weight = net.params[f"{fc_name}.weight"]
    w0 = weight.copy()
    names = [name for name, _ in net.named_layers]
    i = names.index(fc_name)
    after = names[i + 1]  # the BN layer, or the activation in the plain net
    out = []
    for a in scales:
        np.multiply(w0, a, out=weight)
        with np.errstate(all="ignore"), net.frozen_stats():
            logits, trace = net.forward_trace(u)
            loss, d = F.softmax_cross_entropy(logits, y)
            for name, module in reversed(net.named_layers[i:]):
                d = module.backward(d)
                if name == fc_name:
                    break
        out.append(
            Pass(
                a=float(a),
                loss=float(loss),
                u=u if i == 0 else trace[names[i - 1]],
                z=trace[fc_name],
                out=trace[after] if after.startswith("bn") else trace[fc_name],
                du=np.array(d),
                dw=net.grads[f"{fc_name}.weight"].copy(),
            )
        )
    return out


def loglog_slope(a: Array, g: Array) -> float:
    """Least-squares slope of log g against log a (the exponent of a power law g ~ a^k)."""
    ok = np.isfinite(g) & (g > 0)
    if ok.sum() < 2:
        return float("nan")
    return float(np.polyfit(np.log(a[ok]), np.log(g[ok]), 1)[0])


@dataclass
class Identity:
    """Everything the first part of the page shows, for one (layer, a, eps, batch, seed)."""

    layer: int
    a: float
    eps: float
    plain: tuple[Pass, Pass]  # at a = 1 and at a
    bn: tuple[Pass, Pass]
    grid: Array  # (K,) scales a
    grad_norm_plain: Array  # (K,) ||dL/d(aW)||
    grad_norm_bn: Array
    loss_plain: Array  # (K,)
    loss_bn: Array
    bias_diff: float  # max |BN(Wu + b) - BN(Wu)| for a random bias b
    weight: Array  # (D, fan_in) the layer's unscaled W

    @property
    def out_diff(self) -> float:
        """max |BN((aW)u) - BN(Wu)|: 0 up to rounding when eps = 0."""
        return float(np.max(np.abs(self.bn[1].out - self.bn[0].out)))

    def du_change(self, net: str) -> float:
        """max |dL/du at a - dL/du at 1| relative to max |dL/du at 1|."""
        one, scaled = getattr(self, net)
        return float(np.max(np.abs(scaled.du - one.du)) / np.max(np.abs(one.du)))

    def grad_ratio(self, net: str) -> float:
        """a ||dL/d(aW)|| / ||dL/dW||: exactly 1 with BN at eps = 0 (the 1/a law)."""
        one, scaled = getattr(self, net)
        return float(self.a * np.linalg.norm(scaled.dw) / np.linalg.norm(one.dw))

    @property
    def slope_bn(self) -> float:
        return loglog_slope(self.grid, self.grad_norm_bn)

    @property
    def slope_plain(self) -> float:
        return loglog_slope(self.grid, self.grad_norm_plain)

    @property
    def bn_grad_vanishes(self) -> bool:
        """With 2 examples and eps = 0 BN outputs -1 and +1 whatever W is: the loss does not
        depend on W at all, and its gradient is zero up to rounding (no power law to fit)."""
        return self.eps == 0 and self.bn[0].u.shape[0] == 2

    @property
    def cos_w_grad(self) -> float:
        """cos(aW, dL/d(aW)) in the BN net: 0 when eps = 0, so a gradient step only lengthens W."""
        p = self.bn[1]
        w = p.a * self.weight
        return float(np.sum(w * p.dw) / (np.linalg.norm(w) * np.linalg.norm(p.dw)))


def identity(
    layer: int, a: float, eps: float, batch_size: int, seed: int, grid: Array = A_GRID
) -> Identity:
    """The scale experiment on the step-0 paper nets and one real batch of digits."""
    if not (np.isfinite(a) and a > 0):
        raise ValueError(f"a must be a positive number; got {a}")
    if not (np.isfinite(eps) and eps >= 0):
        raise ValueError(f"eps must be 0 or positive; got {eps}")
    plain, bn = paper_nets(seed, eps)
    nets = {"plain": plain, "bn": bn}
    u, y = real_batch(seed, batch_size)
    with single_threaded_blas():  # 60 x 100 products: a thread pool only costs hand-offs
        passes = {name: scaled_passes(net, layer, (1.0, a), u, y) for name, net in nets.items()}
        sweeps = {name: scaled_passes(net, layer, grid, u, y) for name, net in nets.items()}
    z = passes["bn"][0].z
    if eps == 0 and np.any(np.var(z, axis=0) == 0):
        raise ValueError(
            "with eps = 0 a unit with the same value for the whole batch divides by zero; "
            "choose eps > 0, a larger batch or another seed"
        )
    b = np.random.default_rng([seed, 7]).standard_normal(z.shape[1]) * np.std(z)
    ones, zeros = np.ones(z.shape[1]), np.zeros(z.shape[1])
    with_b = F.batchnorm_forward(z + b, ones, zeros, bn_eps(eps))[0]
    without = F.batchnorm_forward(z, ones, zeros, bn_eps(eps))[0]
    return Identity(
        layer=layer,
        a=float(a),
        eps=float(eps),
        plain=tuple(passes["plain"]),
        bn=tuple(passes["bn"]),
        grid=np.asarray(grid, dtype=np.float64),
        grad_norm_plain=np.array([np.linalg.norm(p.dw) for p in sweeps["plain"]]),
        grad_norm_bn=np.array([np.linalg.norm(p.dw) for p in sweeps["bn"]]),
        loss_plain=np.array([p.loss for p in sweeps["plain"]]),
        loss_bn=np.array([p.loss for p in sweeps["bn"]]),
        bias_diff=float(np.max(np.abs(with_b - without))),
        weight=bn.params[f"fc{layer}.weight"].copy(),
    )


def identity_csv(ident: Identity) -> str:
    """The gradient-law sweep: one row per scale a."""
    return csv_table(
        {
            "a": ident.grid,
            "grad_norm_plain": ident.grad_norm_plain,
            "grad_norm_bn": ident.grad_norm_bn,
            "loss_plain": ident.loss_plain,
            "loss_bn": ident.loss_bn,
        },
        digits=DIGITS,
    )


def identity_npz(ident: Identity) -> bytes:
    """Every array of the identity experiment (no pickle)."""
    arrays = {
        "layer": ident.layer,
        "a": ident.a,
        "eps": ident.eps,
        "W": ident.weight,
        "grid": ident.grid,
        "grad_norm_plain": ident.grad_norm_plain,
        "grad_norm_bn": ident.grad_norm_bn,
        "loss_plain": ident.loss_plain,
        "loss_bn": ident.loss_bn,
    }
    for net in ("plain", "bn"):
        for tag, p in zip(("a1", "a"), getattr(ident, net), strict=True):
            for field in ("u", "z", "out", "du", "dw"):
                arrays[f"{net}/{tag}/{field}"] = getattr(p, field)
    return npz_bytes(arrays)


# --------------------------------------------------------------------------- training


def config(lr: float, steps: int, seed: int, weight_decay: float = 0.0) -> TrainConfig:
    """The twins' config: the paper net on digits in float64, recorded about 100 times."""
    if not 1 <= steps <= MAX_STEPS:
        raise ValueError(f"steps must be in [1, {MAX_STEPS:,}]; got {steps}")
    return TrainConfig(
        dataset="digits",
        hidden=HIDDEN,
        activation="sigmoid",
        placement="before",
        init="gaussian",
        init_std=INIT_STD,
        lr=lr,
        weight_decay=weight_decay,
        batch_size=60,
        steps=steps,
        record_every=max(1, steps // RECORDS),
        seed=seed,
        dtype="float64",
    )


def run(
    cfg: TrainConfig, progress: Progress | None = None, executor: Executor | None = None
) -> Twins:
    """Plain and BN twins for cfg, trained now (in two worker processes given an executor)."""
    return fanout.twins(cfg, progress, executor)


EXPERIMENT = Experiment(
    "scale",
    run,
    processes=2,
    shipped={  # the page's default training run, so its first paint waits for none
        "scale-default": config(DEFAULTS["lr"], DEFAULTS["steps"], DEFAULTS["seed"])
    },
)


def weight_norms(h: History) -> list[Array]:
    """||W_l|| of each hidden Linear layer at each record."""
    return [np.asarray(layer.weight_norm, dtype=np.float64) for layer in h.layers]


def effective_lr(h: History) -> list[Array]:
    """lr / ||W_l||^2 per hidden layer at each record: the step size that BN's scale
    invariance leaves for the direction W / ||W||."""
    return [h.config.lr / w**2 for w in weight_norms(h)]


def trained_model(h: History) -> MLP:
    """The run's final net, rebuilt in float64 from its final state."""
    data = load_data(h.config)
    model = build_model(replace(h.config, dtype="float64"), data.n_features, data.n_classes)
    model.load_state_arrays(h.final_state)
    return model


@dataclass
class TrainedScaling:
    """Loss and accuracy of the trained twins on the test split, with one layer's W scaled."""

    layer: int
    grid: Array  # (K,)
    loss: dict[str, Array]  # run label -> (K,)
    acc: dict[str, Array]
    n_examples: int


def scale_trained(twins: Twins, layer: int, grid: Array = A_GRID) -> TrainedScaling:
    """Scale fc{layer}'s weights of each trained net by every a of ``grid`` and evaluate on
    the whole test split as one batch, BN in train mode (that batch's own statistics)."""
    data = load_data(twins.plain.config)
    x = np.asarray(data.x_test, dtype=np.float64)
    y = data.y_test
    loss, acc = {}, {}
    for h in twins:
        model = trained_model(h).train()
        key = f"fc{layer}.weight"
        if key not in model.params or layer > model.n_hidden:
            raise ValueError(f"layer must be a hidden layer in 1..{model.n_hidden}; got {layer}")
        w0 = model.params[key].copy()
        ls, ac = [], []
        with np.errstate(all="ignore"), model.frozen_stats(), single_threaded_blas():
            for s in grid:
                model.params[key][...] = s * w0
                logits = model.forward(x)
                ls.append(F.cross_entropy(logits, y))
                ac.append(np.mean(np.argmax(logits, axis=1) == y))
        loss[h.label], acc[h.label] = np.array(ls), np.array(ac)
    return TrainedScaling(layer, np.asarray(grid, dtype=np.float64), loss, acc, len(y))


def trained_csv(ts: TrainedScaling) -> str:
    columns = {"a": ts.grid}
    columns |= {f"loss_{run.lower()}": ts.loss[run] for run in ts.loss}
    columns |= {f"acc_{run.lower()}": ts.acc[run] for run in ts.acc}
    return csv_table(columns, digits=DIGITS)


def norms_csv(twins: Twins) -> str:
    """||W_l|| and lr/||W_l||^2 per run, record and hidden layer."""
    rows = [
        {"run": h.label, "step": step, "layer": i, "weight_norm": w[r], "effective_lr": e[r]}
        for h in twins
        for i, (w, e) in enumerate(zip(weight_norms(h), effective_lr(h), strict=True), 1)
        for r, step in enumerate(h.record_steps)
    ]
    return csv_table(columns_of(rows), digits=DIGITS)


# --------------------------------------------------------------------------- gamma and beta


@dataclass
class GammaBeta:
    """One unit of a trained BN layer on a real batch, with gamma and beta set by hand."""

    layer: int
    unit: int
    gamma: float
    beta: float
    eps: float
    identity: bool  # gamma and beta were set to sqrt(var + eps) and mean
    learned_gamma: float
    learned_beta: float
    x: Array  # (n,) the unit's BN input over the batch
    x_hat: Array
    y: Array  # gamma x_hat + beta
    s: Array  # sigmoid(y)

    @property
    def mean(self) -> float:
        return float(np.mean(self.x))

    @property
    def var(self) -> float:
        return float(np.var(self.x))

    @property
    def identity_error(self) -> float:
        """max |y - x|: 0 up to rounding when gamma = sqrt(var + eps) and beta = mean."""
        return float(np.max(np.abs(self.y - self.x)))

    @property
    def linear_fraction(self) -> float:
        return float(np.mean(np.abs(self.y) < LINEAR_Y))

    @property
    def standard_linear_fraction(self) -> float:
        """The near-linear fraction at gamma = 1, beta = 0 (y = x_hat): the share of the
        standardized input within one standard deviation, 68% were it Gaussian."""
        return float(np.mean(np.abs(self.x_hat) < LINEAR_Y))

    @property
    def saturated_fraction(self) -> float:
        return float(np.mean(np.abs(self.y) > SATURATION_Y))


def gamma_beta(
    twins: Twins, layer: int, unit: int, gamma: float, beta: float, identity: bool = False
) -> GammaBeta:
    """The trained BN net's layer-``layer`` BN, unit ``unit``, on the whole test split as one
    batch; with ``identity`` gamma and beta are set to the values that undo the normalization.

    ``unit=-1`` picks the unit whose input sits furthest off centre (largest |mean| / std):
    there the identity visibly needs both a scale and a shift.
    """
    model = trained_model(twins.bn).train()
    bn_name = f"bn{layer}"
    if bn_name not in model.layers:
        raise ValueError(f"layer must be a hidden layer in 1..{model.n_hidden}; got {layer}")
    bn = model.layers[bn_name]
    if not -1 <= unit < bn.num_features:
        raise ValueError(f"unit must be in 0..{bn.num_features - 1}, or -1; got {unit}")
    x_all = np.asarray(load_data(twins.bn.config).x_test, dtype=np.float64)
    with np.errstate(all="ignore"), model.frozen_stats(), single_threaded_blas():
        _, trace = model.forward_trace(x_all)
    z = trace[f"fc{layer}"]
    if unit < 0:
        with np.errstate(all="ignore"):
            off = np.abs(np.mean(z, axis=0)) / np.std(z, axis=0)
        unit = int(np.argmax(np.where(np.isfinite(off), off, -1.0)))
    x = z[:, unit].copy()
    mean, var = float(np.mean(x)), float(np.var(x))
    if identity:
        gamma, beta = float(np.sqrt(var + bn.eps)), mean
    y, cache = F.batchnorm_forward(x[:, None], np.array([gamma]), np.array([beta]), bn.eps)
    x_hat = cache.x_hat[:, 0]
    y = y[:, 0]
    return GammaBeta(
        layer=layer,
        unit=unit,
        gamma=float(gamma),
        beta=float(beta),
        eps=float(bn.eps),
        identity=identity,
        learned_gamma=float(bn.gamma[unit]),
        learned_beta=float(bn.beta[unit]),
        x=x,
        x_hat=x_hat,
        y=y,
        s=F.sigmoid(y),
    )


def gamma_beta_csv(gb: GammaBeta) -> str:
    return csv_table({"x": gb.x, "x_hat": gb.x_hat, "y": gb.y, "sigmoid_y": gb.s}, digits=DIGITS)
