"""Lesson "Backprop through BN": the chain rule through mu_B and sigma_B^2, checked live.

On one mini-batch of real BN inputs (a hidden layer of the paper's net on digits, untrained or
trained by ``run``), with an upstream gradient dL/dy from the real loss, random, or the same
number everywhere, ``check`` computes:

- the hand-written gradient both ways: the paper's chain rule one derivative at a time
  (``functional.batchnorm_backward_steps``) and the compact form
  (``functional.batchnorm_backward``);
- central finite differences (``bnviz.gradcheck.numerical_gradient``) of L = sum(dL/dy * y)
  on one unit's m inputs at the student's step h, and over a sweep of h (the error falls as h^2
  until rounding, about 1e-16 |L| / h, takes over); and, for the real loss, of the loss itself
  through the rest of the net;
- the facts: sum_i dL/dx_i = 0, sum_i dL/dx_i x_hat_i = 0 at eps -> 0 (measured against its
  exact value at eps > 0), and BN(aWu) giving the same dL/du for every a.

PyTorch's autograd (``torch_gradients``) runs only when the page asks, importing torch then.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from bnviz import fanout
from bnviz import functional as F
from bnviz.blas import single_threaded_blas
from bnviz.experiment import Executor, Experiment, Progress
from bnviz.experiments.bn_steps import NET_EPS, LayerBatch, layer_of, pick_unit
from bnviz.experiments.bn_steps import config as net_config
from bnviz.export import csv_table, npz_bytes
from bnviz.gradcheck import numerical_gradient, rel_error
from bnviz.nn import MLP
from bnviz.train import History, TrainConfig, build_model, load_data

Array = np.ndarray

EPS_CHOICES = ("0", "1e-8", "1e-5", "1e-3", "0.1", "1")
EXACT_EPS = float(np.finfo(np.float64).tiny)  # what eps = 0 is built as: var + eps == var
UPSTREAMS = ("loss", "random", "constant")
NET_STEPS = (0, 500, 2000)  # the net the batch goes through: untrained, or trained this long
H_SWEEP = np.logspace(-13, -1, 25)  # finite-difference steps of the error-vs-h chart
A_GRID = (0.01, 0.1, 10.0, 100.0)  # weight scales of the BN(aWu) check
TRUE_LOSS_ENTRIES = 8  # entries of dL/dx checked against the real loss through the net
CONSTANT = 1.0  # the "same number" every upstream gradient is in the predict-then-reveal
TOL = 1e-7  # what "agrees" means for a relative error of two gradients
DIGITS = 12

DEFAULTS = dict(
    m=60,
    seed=0,
    eps="1e-5",
    upstream="loss",
    layer=2,
    steps=0,
    h=1e-5,
    unit=-1,
    torch=False,
)
PRESETS = {
    "Real loss, untrained net": dict(DEFAULTS),
    "Random upstream gradient": dict(DEFAULTS, upstream="random"),
    "Same upstream gradient everywhere": dict(DEFAULTS, upstream="constant"),
    "Rounding takes over (h = 1e-10)": dict(DEFAULTS, h=1e-10),
    "Batch of two": dict(DEFAULTS, m=2),
    "Large eps": dict(DEFAULTS, eps="0.1", upstream="random"),
    "Trained net, with PyTorch": dict(DEFAULTS, steps=2000, torch=True),
}
PRESET_HELP = {
    "Real loss, untrained net": "dL/dy from the cross-entropy of the step-0 net, batch 60",
    "Random upstream gradient": "dL/dy drawn N(0, 1) with the seed",
    "Same upstream gradient everywhere": "dL/dy = 1 for every example: what is dL/dx?",
    "Rounding takes over (h = 1e-10)": "A tiny step: rounding error ~1e-16 |L| / h dominates",
    "Batch of two": "m = 2: x_hat = +-1 whatever x is, so the gradient all but vanishes",
    "Large eps": "eps = 0.1: the gradient keeps a component along x_hat",
    "Trained net, with PyTorch": "The net after 2,000 steps, checked against torch autograd",
}


def bn_eps(eps: float) -> float:
    """BN refuses eps = 0 (a constant unit would divide by zero), so "0" is the smallest
    positive float64: var + eps is then var, bit for bit, for every variance above 1e-292."""
    return eps if eps > 0 else EXACT_EPS


# --------------------------------------------------------------------------- the net


def config(steps: int, seed: int) -> TrainConfig:
    """The trained net's config: bn_steps' paper net (float64, lr 0.5, batch 60)."""
    if steps not in NET_STEPS or steps == 0:
        raise ValueError(f"steps must be one of {NET_STEPS[1:]}; got {steps}")
    return net_config(0.5, steps, seed)


def run(
    cfg: TrainConfig, progress: Progress | None = None, executor: Executor | None = None
) -> History:
    """The BN net trained for cfg.steps (in a worker process, given an executor)."""
    return fanout.arms(cfg, {"BN": {}}, progress, executor)["BN"]


EXPERIMENT = Experiment("backprop", run, processes=1)


def untrained(seed: int) -> tuple[MLP, TrainConfig]:
    """The step-0 paper net for ``seed`` (what ``run`` starts from) and its config."""
    cfg = net_config(0.5, NET_STEPS[1], seed)
    data = load_data(cfg)
    return build_model(cfg, data.n_features, data.n_classes).train(), cfg


def trained(h: History) -> MLP:
    data = load_data(h.config)
    model = build_model(h.config, data.n_features, data.n_classes)
    model.load_state_arrays(h.final_state)
    return model.train()


# --------------------------------------------------------------------------- the check


def upstream_gradient(lb: LayerBatch, kind: str, seed: int) -> Array:
    """dL/dy at BN's output: the real loss's (backpropagated through the net above), N(0, 1)
    draws, or the same number for every example and unit."""
    if kind == "loss":
        return lb.dy.copy()
    if kind == "random":
        return np.random.default_rng([seed, 41]).standard_normal(lb.x.shape)
    if kind == "constant":
        return np.full(lb.x.shape, CONSTANT)
    raise ValueError(f"upstream must be one of {', '.join(UPSTREAMS)}; got {kind!r}")


def unit_loss(x: Array, g: Array, gamma: float, beta: float, eps: float):
    """L(x) = sum_i g_i y_i for one unit's m inputs, read from x each call: the loss to first
    order in y, whose gradient is exactly what backprop hands down for dL/dy = g."""
    gam, bet = np.array([gamma]), np.array([beta])

    def f() -> float:
        y, _ = F.batchnorm_forward(x[:, None], gam, bet, eps)
        return float(np.dot(g, y[:, 0]))

    return f


def fd_unit(x: Array, g: Array, gamma: float, beta: float, eps: float, h: float) -> Array:
    """Central differences of ``unit_loss`` at step h: dL/dx_i for each of the m inputs."""
    xv = np.array(x, dtype=np.float64)
    return numerical_gradient(unit_loss(xv, g, gamma, beta, eps), xv, h)


@dataclass
class HSweep:
    """The finite-difference error against the compact gradient, over a sweep of h."""

    h: Array  # (K,)
    error: Array  # (K,) relative error of the unit's m entries
    best: int  # index of the smallest error
    trunc_slope: float  # fitted log-log slope right of the best h (truncation: ~2)
    round_slope: float  # left of it (rounding: ~-1)
    trunc_guide: Array  # (K,) c h^2 through the points right of the best h
    round_guide: Array  # (K,) c / h through the points left of it

    @property
    def best_h(self) -> float:
        return float(self.h[self.best])


def _slope(h: Array, e: Array) -> float:
    ok = np.isfinite(e) & (e > 0)
    if ok.sum() < 2:
        return float("nan")
    return float(np.polyfit(np.log10(h[ok]), np.log10(e[ok]), 1)[0])


def _guide(h: Array, e: Array, power: float, grid: Array) -> Array:
    """c h^power with c the geometric mean of e / h^power over the points given."""
    ok = np.isfinite(e) & (e > 0)
    if not ok.any():
        return np.full(len(grid), np.nan)
    c = 10 ** np.mean(np.log10(e[ok]) - power * np.log10(h[ok]))
    return c * grid**power


def h_sweep(x: Array, g: Array, gamma: float, beta: float, eps: float, exact: Array) -> HSweep:
    """Finite differences of one unit at every h of H_SWEEP against the compact gradient.
    The fits leave out the two points next to the best h, where both errors are comparable."""
    err = np.array([rel_error(fd_unit(x, g, gamma, beta, eps, h), exact) for h in H_SWEEP])
    finite = np.where(np.isfinite(err) & (err > 0), err, np.inf)
    best = int(np.argmin(finite))
    right, left = slice(best + 2, None), slice(0, max(0, best - 1))
    return HSweep(
        h=H_SWEEP.copy(),
        error=err,
        best=best,
        trunc_slope=_slope(H_SWEEP[right], err[right]),
        round_slope=_slope(H_SWEEP[left], err[left]),
        trunc_guide=_guide(H_SWEEP[right], err[right], 2.0, H_SWEEP),
        round_guide=_guide(H_SWEEP[left], err[left], -1.0, H_SWEEP),
    )


@dataclass
class TrueLoss:
    """Finite differences of the real cross-entropy through BN and the rest of the net (eps
    NET_EPS, the net's own), on a few entries of one unit, against backprop."""

    examples: Array  # (k,) the entries' examples (of unit ``Check.unit``)
    fd: Array  # (k,)
    backprop: Array  # (k,)
    h: float

    @property
    def error(self) -> float:
        return rel_error(self.fd, self.backprop)


def true_loss(model: MLP, lb: LayerBatch, unit: int, h: float) -> TrueLoss:
    """dL/dx of the real loss, by central differences through the net above the layer's BN
    input (train mode, this batch's statistics), against the compact backward of lb.dy."""
    names = [name for name, _ in model.named_layers]
    rest = model.named_layers[names.index(f"bn{lb.layer}") :]
    k = min(TRUE_LOSS_ENTRIES, lb.m)
    examples = np.arange(k)
    picked = lb.x[examples, unit].copy()
    full = lb.x.copy()

    def loss() -> float:
        full[examples, unit] = picked
        z = full
        for _, module in rest:
            z = module.forward(z)
        return F.cross_entropy(z, lb.labels)

    model.train()
    with np.errstate(all="ignore"), model.frozen_stats(), single_threaded_blas():
        fd = numerical_gradient(loss, picked, h)
    _, cache = F.batchnorm_forward(lb.x, lb.gamma, lb.beta, NET_EPS)
    dx = F.batchnorm_backward(lb.dy, cache)[0]
    return TrueLoss(examples, fd, dx[examples, unit], float(h))


@dataclass
class Facts:
    """The facts of BN's gradient, each measured on the check's batch. The sums are measured
    against the size of the terms that cancel in them: per unit, (1/sqrt(var + eps)) sum_i
    |g_i| with g = gamma dL/dy, the sum of magnitudes the gradient would have if mu_B and
    sigma_B^2 were constants (``Check.naive``)."""

    sum_dx: float  # max over units of |sum_i dL/dx_i|
    sum_dx_rel: float  # max over units of |sum_i dL/dx_i| / scale
    sum_dx_xhat: float  # sum_i dL/dx_i x_hat_i at the page's eps, of the unit where |.| is
    # largest
    sum_dx_xhat_predicted: float  # its exact value there, (1/s) sum(g x_hat) eps / (var + eps)
    sum_dx_xhat_exact: float  # max over units of |sum_i dL/dx_i x_hat_i| at eps -> 0
    sum_dx_xhat_exact_rel: float  # the same over scale
    scales: Array  # (K,) a of the BN(aWu) check
    du_change: Array  # (K,) max |dL/du(a) - dL/du(1)| / max |dL/du(1)| at the page's eps
    du_change_exact: Array  # (K,) the same at eps -> 0
    constant_dx: float  # max |dL/dx| when every upstream gradient is CONSTANT
    constant_scale: float  # CONSTANT * max gamma / sqrt(var + eps): a gradient entry's size

    @property
    def constant_rel(self) -> float:
        return self.constant_dx / self.constant_scale if self.constant_scale > 0 else 0.0


def _ratio(values: Array, scale: Array) -> float:
    """max over units of |values| / scale, units with a zero scale left out."""
    ok = scale > 0
    return float(np.max(np.abs(values[ok]) / scale[ok], initial=0.0))


def _sums(x: Array, gamma: Array, beta: Array, dout: Array, eps: float):
    """Per unit: sum_i dL/dx_i, sum_i dL/dx_i x_hat_i, the latter's exact value
    (1 / sqrt(var + eps)) sum_i g_i x_hat_i eps / (var + eps), and the scale
    (1 / sqrt(var + eps)) sum_i |g_i|, g = dout gamma."""
    _, cache = F.batchnorm_forward(x, gamma, beta, eps)
    dx = F.batchnorm_backward(dout, cache)[0]
    g = dout * gamma
    exact = cache.inv_std * (g * cache.x_hat).sum(axis=0) * eps / (cache.var + eps)
    scale = cache.inv_std * np.abs(g).sum(axis=0)
    return dx.sum(axis=0), (dx * cache.x_hat).sum(axis=0), exact, scale


def _du_change(lb: LayerBatch, dout: Array, eps: float) -> Array:
    """max |dL/du at aW - dL/du at W| / max |dL/du at W| for each a of A_GRID: x = u W^T, so
    the scaled layer's BN input is a x, and dL/du = dL/dx (aW)."""

    def du(a: float) -> Array:
        _, cache = F.batchnorm_forward(a * lb.x, lb.gamma, lb.beta, eps)
        return F.batchnorm_backward(dout, cache)[0] @ (a * lb.weight)

    one = du(1.0)
    top = float(np.max(np.abs(one)))
    return np.array([float(np.max(np.abs(du(a) - one))) / top if top > 0 else 0.0 for a in A_GRID])


def facts(lb: LayerBatch, dout: Array, eps: float) -> Facts:
    col, col_xhat, predicted, scale = _sums(lb.x, lb.gamma, lb.beta, dout, eps)
    _, col_xhat0, _, scale0 = _sums(lb.x, lb.gamma, lb.beta, dout, EXACT_EPS)
    k = int(np.argmax(np.abs(col_xhat)))
    _, cache = F.batchnorm_forward(lb.x, lb.gamma, lb.beta, eps)
    dx_c = F.batchnorm_backward(np.full_like(dout, CONSTANT), cache)[0]
    return Facts(
        sum_dx=float(np.max(np.abs(col))),
        sum_dx_rel=_ratio(col, scale),
        sum_dx_xhat=float(col_xhat[k]),
        sum_dx_xhat_predicted=float(predicted[k]),
        sum_dx_xhat_exact=float(np.max(np.abs(col_xhat0))),
        sum_dx_xhat_exact_rel=_ratio(col_xhat0, scale0),
        scales=np.array(A_GRID),
        du_change=_du_change(lb, dout, eps),
        du_change_exact=_du_change(lb, dout, EXACT_EPS),
        constant_dx=float(np.max(np.abs(dx_c))),
        constant_scale=float(CONSTANT * np.max(np.abs(lb.gamma) * cache.inv_std)),
    )


@dataclass
class Check:
    """Everything the live check shows, for one batch, eps, upstream gradient and h."""

    batch: LayerBatch
    upstream: str
    eps: float  # as the page names it (0 is built as EXACT_EPS)
    h: float
    unit: int
    dout: Array  # (m, D) dL/dy
    cache: F.BatchNormCache
    dx: Array  # (m, D) compact form
    dgamma: Array
    dbeta: Array
    steps: F.BatchNormSteps  # the paper's chain rule
    fd: Array  # (m,) finite differences of the unit at h
    sweep: HSweep
    true: TrueLoss | None  # only for the real loss
    facts: Facts

    @property
    def m(self) -> int:
        return self.batch.m

    @property
    def steps_error(self) -> float:
        """The paper's chain rule against the compact form, over the whole layer."""
        return max(
            rel_error(self.steps.dx, self.dx),
            rel_error(self.steps.dgamma, self.dgamma),
            rel_error(self.steps.dbeta, self.dbeta),
        )

    @property
    def fd_error(self) -> float:
        return rel_error(self.fd, self.dx[:, self.unit])

    @property
    def fd_abs_error(self) -> float:
        return float(np.max(np.abs(self.fd - self.dx[:, self.unit])))

    @property
    def naive(self) -> Array:
        """What the unit's dL/dx would be if mu_B and sigma_B^2 did not depend on x:
        gamma dL/dy / sqrt(var + eps). The two sums of the compact form are the difference."""
        j = self.unit
        return self.dout[:, j] * self.batch.gamma[j] * self.cache.inv_std[j]

    @property
    def mu_term(self) -> float:
        """The second term of the paper's dL/dmu for the unit, dL/dvar sum(-2 (x - mu)) / m:
        zero in exact arithmetic, since the deviations from the mean sum to zero."""
        j = self.unit
        return float(self.steps.dvar[j] * (-2.0 * self.cache.xc[:, j]).sum() / self.m)


def check(
    model: MLP,
    cfg: TrainConfig,
    layer: int,
    m: int,
    seed: int,
    eps: float,
    upstream: str,
    h: float,
    unit: int = -1,
) -> Check:
    """The live check on m training digits through ``model`` at hidden layer ``layer`` (BN's
    own gamma and beta as trained, the page's eps): ``unit=-1`` checks the unit whose input
    sits furthest off centre."""
    if not (math.isfinite(h) and h > 0):
        raise ValueError(f"h must be a positive number; got {h!r}")
    if not (math.isfinite(eps) and eps >= 0):
        raise ValueError(f"eps must be 0 or positive; got {eps!r}")
    lb = layer_of(model, cfg, layer, m, seed)
    if not np.all(np.isfinite(lb.x)):
        raise ValueError("the net's weights are not finite; choose another net")
    e = bn_eps(eps)
    j = pick_unit(lb.x, unit)
    dout = upstream_gradient(lb, upstream, seed)
    _, cache = F.batchnorm_forward(lb.x, lb.gamma, lb.beta, e)
    dx, dgamma, dbeta = F.batchnorm_backward(dout, cache)
    steps = F.batchnorm_backward_steps(dout, cache)
    args = (lb.x[:, j], dout[:, j], float(lb.gamma[j]), float(lb.beta[j]), e)
    return Check(
        batch=lb,
        upstream=upstream,
        eps=float(eps),
        h=float(h),
        unit=j,
        dout=dout,
        cache=cache,
        dx=dx,
        dgamma=dgamma,
        dbeta=dbeta,
        steps=steps,
        fd=fd_unit(*args, h),
        sweep=h_sweep(*args, dx[:, j]),
        true=true_loss(model, lb, j, h) if upstream == "loss" else None,
        facts=facts(lb, dout, e),
    )


# --------------------------------------------------------------------------- PyTorch


@dataclass
class TorchCheck:
    dx: Array
    dgamma: Array
    dbeta: Array
    version: str

    def errors(self, c: Check) -> dict[str, float]:
        """Relative errors against the compact form and the paper's chain rule."""
        return {
            "dx vs compact": rel_error(self.dx, c.dx),
            "dx vs chain rule": rel_error(self.dx, c.steps.dx),
            "dgamma": rel_error(self.dgamma, c.dgamma),
            "dbeta": rel_error(self.dbeta, c.dbeta),
        }


def torch_gradients(c: Check) -> TorchCheck:
    """The same gradients by PyTorch's autograd through torch.nn.functional.batch_norm in
    training mode (float64): torch is imported here, only when the page asks for it."""
    import torch

    b = c.batch
    x = torch.tensor(b.x, dtype=torch.float64, requires_grad=True)
    gamma = torch.tensor(b.gamma, dtype=torch.float64, requires_grad=True)
    beta = torch.tensor(b.beta, dtype=torch.float64, requires_grad=True)
    y = torch.nn.functional.batch_norm(
        x, None, None, gamma, beta, training=True, momentum=0.0, eps=bn_eps(c.eps)
    )
    y.backward(torch.tensor(c.dout, dtype=torch.float64))
    return TorchCheck(
        x.grad.numpy().copy(), gamma.grad.numpy().copy(), beta.grad.numpy().copy(),
        torch.__version__,
    )  # fmt: skip


# --------------------------------------------------------------------------- downloads


def unit_csv(c: Check, torch_check: TorchCheck | None = None) -> str:
    """The checked unit's m entries: input, x_hat, upstream gradient and dL/dx every way."""
    j = c.unit
    columns = {
        "example": np.arange(c.m),
        "train_row": c.batch.rows,
        "x": c.batch.x[:, j],
        "x_hat": c.cache.x_hat[:, j],
        "dL_dy": c.dout[:, j],
        "dL_dx_compact": c.dx[:, j],
        "dL_dx_chain_rule": c.steps.dx[:, j],
        f"dL_dx_finite_diff_h{c.h:g}": c.fd,
    }
    if torch_check is not None:
        columns["dL_dx_torch"] = torch_check.dx[:, j]
    return csv_table(columns, digits=DIGITS)


def check_npz(c: Check, torch_check: TorchCheck | None = None) -> bytes:
    """The whole batch and every gradient of the check."""
    arrays = {
        "layer": c.batch.layer,
        "unit": c.unit,
        "eps": c.eps,
        "h": c.h,
        "upstream": c.upstream,
        "train_rows": c.batch.rows,
        "labels": c.batch.labels,
        "x": c.batch.x,
        "gamma": c.batch.gamma,
        "beta": c.batch.beta,
        "x_hat": c.cache.x_hat,
        "dL_dy": c.dout,
        "dL_dx": c.dx,
        "dL_dgamma": c.dgamma,
        "dL_dbeta": c.dbeta,
        "chain/dL_dx_hat": c.steps.dx_hat,
        "chain/dL_dvar": c.steps.dvar,
        "chain/dL_dmu": c.steps.dmu,
        "chain/dL_dx": c.steps.dx,
        "fd/dL_dx_unit": c.fd,
        "sweep/h": c.sweep.h,
        "sweep/rel_error": c.sweep.error,
        "scale/a": c.facts.scales,
        "scale/du_change": c.facts.du_change,
    }
    if torch_check is not None:
        arrays |= {
            "torch/dL_dx": torch_check.dx,
            "torch/dL_dgamma": torch_check.dgamma,
            "torch/dL_dbeta": torch_check.dbeta,
        }
    return npz_bytes(arrays)
