"""The math of every layer, written to be read next to the papers.

Each layer is a pair, as in cs231n's ``layers.py``: ``*_forward(...) -> (out, cache)`` computes
the layer in numbered steps and keeps what the gradient needs, and ``*_backward(dout, cache)``
walks the same steps in reverse, so every derivative sits next to what it differentiates.
Plain numpy on one mini-batch ``x`` of shape (m, D): m examples, D units. Everything works in
the dtype of its inputs.

This is the reference. The fast kernels (``bnviz.fast``) compute the same functions fused and
stacked over many nets, and are tested against these.

Departures from the papers, written down:
- BN's variance is the biased batch variance (1/m), as Algorithm 1; the running variance kept for
  inference is the unbiased one (m/(m-1)), as Algorithm 2 and PyTorch.
- The inference transform is written (x - E[x]) * s + beta, not x * s + (beta - E[x] * s): the
  combined form loses beta in float32 when x sits near a large mean.
- Noisy BN (Santurkar et al. 2018, App. A.2.1) draws its normal noise by inverse-transform
  sampling (Acklam's quantile function, relative error < 1.2e-9) from a counter-based stream,
  so that any engine reproduces the same draws for the same (seed, layer, step).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

Array = np.ndarray


def _check_norm_args(x: Array, eps: float, **per_unit: Array) -> None:
    """eps must be positive and every per-unit vector must have one entry per unit."""
    if not (np.isfinite(eps) and eps > 0):
        raise ValueError(f"eps must be a positive number; got {eps!r}")
    d = x.shape[-1]
    for name, v in per_unit.items():
        if np.shape(v) != (d,):
            raise ValueError(
                f"{name} must have shape ({d},), one entry per unit; got {np.shape(v)}"
            )


# --------------------------------------------------------------------------- batch norm


class BatchNormCache(NamedTuple):
    x_hat: Array  # (m, D) the normalized input
    xc: Array  # (m, D) x - mu
    inv_std: Array  # (D,) 1 / sqrt(var + eps)
    gamma: Array  # (D,)
    mu: Array  # (D,) batch mean
    var: Array  # (D,) biased batch variance (1/m)


def batch_moments(x: Array) -> tuple[Array, Array]:
    """Mean and biased variance of every unit over the batch, in two passes: sum((x - mu)^2)/m
    stays accurate for large offsets, where E[x^2] - E[x]^2 cancels catastrophically."""
    mu = x.mean(axis=0)
    xc = x - mu
    return mu, (xc * xc).mean(axis=0)


def batchnorm_forward(
    x: Array, gamma: Array, beta: Array, eps: float = 1e-5
) -> tuple[Array, BatchNormCache]:
    """Algorithm 1 of Ioffe & Szegedy over a mini-batch x of shape (m, D):

    1. mu_B      = (1/m) sum_i x_i
    2. sigma_B^2 = (1/m) sum_i (x_i - mu_B)^2
    3. x_hat_i   = (x_i - mu_B) / sqrt(sigma_B^2 + eps)
    4. y_i       = gamma x_hat_i + beta
    """
    _check_norm_args(x, eps, gamma=gamma, beta=beta)
    mu, var = batch_moments(x)  # steps 1 and 2
    xc = x - mu
    inv_std = 1.0 / np.sqrt(var + x.dtype.type(eps))
    x_hat = xc * inv_std  # step 3
    y = gamma * x_hat + beta  # step 4
    return y, BatchNormCache(x_hat, xc, inv_std, gamma, mu, var)


def batchnorm_backward(dout: Array, cache: BatchNormCache) -> tuple[Array, Array, Array]:
    """The compact BN gradient: ``dx, dgamma, dbeta``. With g = dL/dx_hat = dout * gamma,

        dx = (1 / (m sqrt(var + eps))) (m g - sum_i g_i - x_hat sum_i g_i x_hat_i)

    The two sums remove from g its component along the mean and along x_hat: BN's output does
    not change when its input shifts or scales, so neither direction gets a gradient.
    """
    m = dout.shape[0]
    dbeta = dout.sum(axis=0)
    dgamma = (dout * cache.x_hat).sum(axis=0)
    g = dout * cache.gamma
    dx = (cache.inv_std / m) * (m * g - g.sum(axis=0) - cache.x_hat * (g * cache.x_hat).sum(axis=0))
    return dx, dgamma, dbeta


class BatchNormSteps(NamedTuple):
    """Every intermediate gradient of the paper's chain rule, for the lesson that shows them."""

    dx_hat: Array
    dvar: Array
    dmu: Array
    dx: Array
    dgamma: Array
    dbeta: Array


def batchnorm_backward_steps(dout: Array, cache: BatchNormCache) -> BatchNormSteps:
    """BN backward exactly as the paper's chain rule writes it, one derivative at a time.

    dL/dx_hat = dL/dy * gamma
    dL/dvar   = sum dL/dx_hat * (x - mu) * (-1/2) (var + eps)^(-3/2)
    dL/dmu    = sum dL/dx_hat * (-1/sqrt(var + eps)) + dL/dvar * sum(-2 (x - mu)) / m
    dL/dx     = dL/dx_hat / sqrt(var + eps) + dL/dvar * 2 (x - mu) / m + dL/dmu / m
    dL/dgamma = sum dL/dy * x_hat,   dL/dbeta = sum dL/dy
    """
    m = dout.shape[0]
    xc, inv_std = cache.xc, cache.inv_std
    dx_hat = dout * cache.gamma
    dvar = (dx_hat * xc).sum(axis=0) * -0.5 * inv_std**3
    dmu = (dx_hat * -inv_std).sum(axis=0) + dvar * (-2.0 * xc).sum(axis=0) / m
    dx = dx_hat * inv_std + dvar * 2.0 * xc / m + dmu / m
    return BatchNormSteps(
        dx_hat=dx_hat,
        dvar=dvar,
        dmu=dmu,
        dx=dx,
        dgamma=(dout * cache.x_hat).sum(axis=0),
        dbeta=dout.sum(axis=0),
    )


def batchnorm_inference(
    x: Array, gamma: Array, beta: Array, mean: Array, var: Array, eps: float = 1e-5
) -> Array:
    """Algorithm 2's inference transform with population statistics: one affine map per unit,
    y = (x - E[x]) * gamma / sqrt(Var[x] + eps) + beta."""
    _check_norm_args(x, eps, gamma=gamma, beta=beta, mean=mean, var=var)
    scale = gamma / np.sqrt(var + x.dtype.type(eps))
    return (x - mean) * scale + beta


# --------------------------------------------------------------------------- layer and group norm


class LayerNormCache(NamedTuple):
    x_hat: Array  # (m, D)
    inv_std: Array  # (m, 1) per example
    gamma: Array  # (D,)


def layernorm_forward(
    x: Array, gamma: Array, beta: Array, eps: float = 1e-5
) -> tuple[Array, LayerNormCache]:
    """Ba et al.'s LayerNorm: BN's steps 1-4 with the axes swapped, statistics over the units of
    each example. Identical at train and test time, for any batch size (even 1)."""
    _check_norm_args(x, eps, gamma=gamma, beta=beta)
    mu = x.mean(axis=-1, keepdims=True)
    xc = x - mu
    var = (xc * xc).mean(axis=-1, keepdims=True)
    inv_std = 1.0 / np.sqrt(var + x.dtype.type(eps))
    x_hat = xc * inv_std
    return gamma * x_hat + beta, LayerNormCache(x_hat, inv_std, gamma)


def layernorm_backward(dout: Array, cache: LayerNormCache) -> tuple[Array, Array, Array]:
    """BN's compact formula per example (row) instead of per unit (column)."""
    d = dout.shape[-1]
    x_hat = cache.x_hat
    g = dout * cache.gamma
    dx = (cache.inv_std / d) * (
        d * g - g.sum(axis=-1, keepdims=True) - x_hat * (g * x_hat).sum(axis=-1, keepdims=True)
    )
    return dx, (dout * x_hat).sum(axis=0), dout.sum(axis=0)


class GroupNormCache(NamedTuple):
    inner: LayerNormCache  # LayerNorm of the (m * G, D / G) groups, without affine
    gamma: Array  # (D,)


def groupnorm_forward(
    x: Array, gamma: Array, beta: Array, groups: int, eps: float = 1e-5
) -> tuple[Array, GroupNormCache]:
    """Wu & He's GroupNorm for an MLP: the D units of each example split into ``groups`` groups of
    consecutive units, each normalized on its own; then a per-unit gamma and beta. It is
    LayerNorm on reshaped groups: groups = 1 is LayerNorm, groups = D normalizes each unit
    alone (InstanceNorm-like)."""
    _check_norm_args(x, eps, gamma=gamma, beta=beta)
    m, d = x.shape
    if groups < 1 or d % groups:
        raise ValueError(f"groups must divide the {d} units; got {groups}")
    size = d // groups
    ones, zeros = np.ones(size, x.dtype), np.zeros(size, x.dtype)
    x_hat, inner = layernorm_forward(x.reshape(m * groups, size), ones, zeros, eps)
    return gamma * x_hat.reshape(m, d) + beta, GroupNormCache(inner, gamma)


def groupnorm_backward(dout: Array, cache: GroupNormCache) -> tuple[Array, Array, Array]:
    m, d = dout.shape
    rows, size = cache.inner.x_hat.shape
    x_hat = cache.inner.x_hat.reshape(m, d)
    dx_hat = (dout * cache.gamma).reshape(rows, size)
    dx, _, _ = layernorm_backward(dx_hat, cache.inner)
    return dx.reshape(m, d), (dout * x_hat).sum(axis=0), dout.sum(axis=0)


# --------------------------------------------------------------------------- activations


def sigmoid(z: Array) -> Array:
    """The logistic function, as 0.5 tanh(z/2) + 0.5: equal to 1 / (1 + exp(-z)), without the
    overflow of exp(-z) for large negative z."""
    half = z.dtype.type(0.5)
    return half * np.tanh(half * z) + half


def sigmoid_grad(a: Array, da: Array) -> Array:
    """dL/dz from the output a = sigmoid(z): da * a * (1 - a)."""
    return da * a * (1 - a)


def tanh(z: Array) -> Array:
    return np.tanh(z)


def tanh_grad(a: Array, da: Array) -> Array:
    """dL/dz from a = tanh(z): da * (1 - a^2)."""
    return da * (1 - a * a)


def relu(z: Array) -> Array:
    return np.maximum(z, 0).astype(z.dtype, copy=False)


def relu_grad(a: Array, da: Array) -> Array:
    """dL/dz from a = relu(z): da where the unit is on (z > 0, i.e. a > 0)."""
    return da * (a > 0)


def identity(z: Array) -> Array:
    return z.copy()


def identity_grad(a: Array, da: Array) -> Array:
    return da.copy()


@dataclass(frozen=True)
class Activation:
    """An activation as an (output, derivative) pair, the derivative written from the output."""

    name: str
    title: str  # as students write it: "ReLU", not "relu"
    fn: Callable[[Array], Array]
    grad: Callable[[Array, Array], Array]  # grad(a, da) -> dz
    saturation_threshold: float | None  # |z| beyond which the gradient is < 10% of its peak


ACTIVATIONS: dict[str, Activation] = {
    # sigmoid'(z) = s(1-s) < 0.1 * 0.25  <=>  |z| > 2 acosh(sqrt(10)) ~= 3.64
    "sigmoid": Activation(
        "sigmoid", "sigmoid", sigmoid, sigmoid_grad, 2.0 * float(np.arccosh(np.sqrt(10.0)))
    ),
    # tanh'(z) = 1 - tanh^2 < 0.1  <=>  |z| > acosh(sqrt(10)) ~= 1.82
    "tanh": Activation("tanh", "tanh", tanh, tanh_grad, float(np.arccosh(np.sqrt(10.0)))),
    "relu": Activation("relu", "ReLU", relu, relu_grad, None),
    "linear": Activation("linear", "linear", identity, identity_grad, None),
}
NONLINEARITIES = ("sigmoid", "tanh", "relu")  # what a page offers; "linear" makes a deep linear net


# --------------------------------------------------------------------------- random streams
# A counter-based stream: draw n of stream (seed, kind, layer) at position c is a hash of those
# numbers alone. Any engine, in any chunking of the steps, reproduces the same draws.

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
NOISE_STREAM, DROPOUT_STREAM = 1, 2


def _splitmix64(z: Array) -> Array:
    """SplitMix64's finalizer: a bijective mix of 64-bit integers (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        z = z + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _MIX1
        z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


def stream_key(seed: int, kind: int, layer: int) -> int:
    """The key of one layer's stream of one kind (noise or dropout) for a run's seed."""
    z = np.uint64(seed) * np.uint64(1 << 20) + np.uint64(kind) * np.uint64(1 << 10)
    return int(_splitmix64(np.array([z + np.uint64(layer)], dtype=np.uint64))[0])


def uniform_pairs(key: int, start: int, n: int) -> tuple[Array, Array]:
    """Draws start, ..., start + n - 1 of a stream, each as two uniforms in [0, 1) (the high and
    the low 32 bits of one 64-bit hash), in float64."""
    with np.errstate(over="ignore"):
        counters = np.arange(start, start + n, dtype=np.uint64) * _GOLDEN + np.uint64(key)
    h = _splitmix64(counters)
    scale = 2.0**-32
    return (h >> np.uint64(32)).astype(np.float64) * scale, (h & np.uint64(0xFFFFFFFF)).astype(
        np.float64
    ) * scale


_ACKLAM_A = (-39.69683028665376, 220.9460984245205, -275.9285104469687, 138.3577518672690,
             -30.66479806614716, 2.506628277459239)  # fmt: skip
_ACKLAM_B = (-54.47609879822406, 161.5858368580409, -155.6989798598866, 66.80131188771972,
             -13.28068155288572)  # fmt: skip
_ACKLAM_C = (-0.007784894002430293, -0.3223964580411365, -2.400758277161838, -2.549732539343734,
             4.374664141464968, 2.938163982698783)  # fmt: skip
_ACKLAM_D = (0.007784695709041462, 0.3224671290700398, 2.445134137142996, 3.754408661907416)
_ACKLAM_LOW = 0.02425


def normal_quantile(u: Array) -> Array:
    """The standard normal quantile function (Acklam's rational approximation, relative error
    below 1.2e-9): a uniform in (0, 1) becomes a N(0, 1) draw. u = 0 is read as 2^-33."""
    a, b, c, d = _ACKLAM_A, _ACKLAM_B, _ACKLAM_C, _ACKLAM_D
    u = np.clip(np.asarray(u, dtype=np.float64), 2.0**-33, 1.0 - 2.0**-33)
    out = np.empty_like(u)
    low, high = u < _ACKLAM_LOW, u > 1.0 - _ACKLAM_LOW
    mid = ~(low | high)
    q = u[mid] - 0.5
    r = q * q
    out[mid] = (
        (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5])
        * q
        / (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1.0)
    )
    for mask, sign, p in ((low, 1.0, u[low]), (high, -1.0, 1.0 - u[high])):
        t = np.sqrt(-2.0 * np.log(p))
        out[mask] = sign * (
            (((((c[0] * t + c[1]) * t + c[2]) * t + c[3]) * t + c[4]) * t + c[5])
            / ((((d[0] * t + d[1]) * t + d[2]) * t + d[3]) * t + 1.0)
        )
    return out


# --------------------------------------------------------------------------- noise injection


@dataclass(frozen=True)
class Noise:
    """Santurkar et al.'s noisy BN (2018, Algorithm 1): after each BN layer, at step t and for
    each unit j, mu_t ~ U(-n_mu, n_mu) and sigma_t ~ U(1, n_sigma); then for each example i an
    additive m ~ U(mu_t - r_mu, mu_t + r_mu) and a multiplicative s ~ N(sigma_t, r_sigma), and
    a <- s a + m. r_sigma is the standard deviation of s. ``strength`` scales the paper's
    constants (n_mu = 0.5, n_sigma = 1.25, r_mu = r_sigma = 0.1): 0 is no noise."""

    strength: float = 1.0

    @property
    def n_mu(self) -> float:
        return 0.5 * self.strength

    @property
    def n_sigma(self) -> float:
        return 1.0 + 0.25 * self.strength

    @property
    def r_mu(self) -> float:
        return 0.1 * self.strength

    @property
    def r_sigma(self) -> float:
        return 0.1 * self.strength


def noise_keys(seed: int, layer: int) -> tuple[int, int]:
    """The two streams of one noise layer: per-unit draws (mu_t, sigma_t) and per-example
    draws (m, s), apart so that a step's per-unit draws do not depend on the batch size."""
    return stream_key(seed, NOISE_STREAM, 2 * layer), stream_key(seed, NOISE_STREAM, 2 * layer + 1)


def noise_unit_draws(keys: tuple[int, int], step: int, d: int) -> tuple[Array, Array]:
    """Step t's (u_mu, u_sigma), one pair per unit: draw index t D + j of the unit stream."""
    return uniform_pairs(keys[0], step * d, d)


def noise_draws(
    keys: tuple[int, int], step: int, m: int, d: int
) -> tuple[Array, Array, Array, Array]:
    """The step's uniforms of one noise layer: (u_mu, u_sigma) per unit (D,), (v_m, v_s) per
    example and unit (m, D), draw index t m D + i D + j of the example stream."""
    u_mu, u_sigma = noise_unit_draws(keys, step, d)
    v_m, v_s = uniform_pairs(keys[1], step * m * d, m * d)
    return u_mu, u_sigma, v_m.reshape(m, d), v_s.reshape(m, d)


def noise_shift_scale(noise: Noise, u_mu: Array, u_sigma: Array) -> tuple[Array, Array]:
    """The step's per-unit mu_t ~ U(-n_mu, n_mu) and sigma_t ~ U(1, n_sigma)."""
    return noise.n_mu * (2.0 * u_mu - 1.0), 1.0 + (noise.n_sigma - 1.0) * u_sigma


def noise_forward(
    x: Array, noise: Noise, draws: tuple[Array, Array, Array, Array]
) -> tuple[Array, Array]:
    """a <- s a + m with the step's draws; returns the output and s (its gradient)."""
    u_mu, u_sigma, v_m, v_s = draws
    mu_t, sigma_t = noise_shift_scale(noise, u_mu, u_sigma)
    add = mu_t + noise.r_mu * (2.0 * v_m - 1.0)
    scale = (sigma_t + noise.r_sigma * normal_quantile(v_s)).astype(x.dtype)
    return scale * x + add.astype(x.dtype), scale


def noise_backward(dout: Array, scale: Array) -> Array:
    return dout * scale


# --------------------------------------------------------------------------- dropout


def dropout_forward(x: Array, p_drop: float, uniforms: Array) -> tuple[Array, Array]:
    """Inverted dropout: a unit is kept where its uniform is below 1 - p and then scaled by
    1/(1 - p), so the expected activation is unchanged and inference needs no rescaling."""
    keep = 1.0 - p_drop
    mask = (uniforms < keep).astype(x.dtype) / x.dtype.type(keep)
    return x * mask, mask


def dropout_backward(dout: Array, mask: Array) -> Array:
    return dout * mask


def dropout_uniforms(key: int, step: int, m: int, d: int) -> Array:
    """The step's uniforms of one dropout layer, (m, D); draw index step * m D + i D + j."""
    return uniform_pairs(key, step * m * d, m * d)[0].reshape(m, d)


# --------------------------------------------------------------------------- loss


def softmax(logits: Array) -> Array:
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def cross_entropy(logits: Array, y: Array) -> float:
    """Mean cross-entropy of integer labels y: log-sum-exp of the row-max-shifted logits (exact
    even when a probability underflows to zero) minus the true class's logit."""
    z = logits - logits.max(axis=1, keepdims=True)
    log_sum = np.log(np.exp(z).sum(axis=1))
    return float(np.mean(log_sum - z[np.arange(len(y)), y]))


def softmax_cross_entropy(logits: Array, y: Array) -> tuple[float, Array]:
    """The mean cross-entropy and its gradient w.r.t. the logits: (softmax - one_hot) / m."""
    m = logits.shape[0]
    dlogits = softmax(logits)
    dlogits[np.arange(m), y] -= 1
    return cross_entropy(logits, y), dlogits / logits.dtype.type(m)
