"""The math of every layer as pure functions: ``forward(...) -> out, cache`` and
``backward(dout, cache)``, side by side, so each gradient sits next to what it differentiates.

Everything works in the dtype of its inputs. These functions run hundreds of thousands of times
per lesson on small arrays, where each numpy call costs more than its arithmetic, so the hot ones
sum over the batch with a dot product against a vector of ones, and accept ``overwrite=True`` to
reuse an input array the caller no longer needs instead of allocating a new one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

import numpy as np

Array = np.ndarray


# --------------------------------------------------------------------------- batch norm
# The batch is axis -2, features axis -1. Leading axes stack independent networks (the sweep
# engine trains K nets at once on arrays of shape (K, m, D)); per-feature vectors then have shape
# (K, 1, D). For a single net x is (m, D) and per-feature vectors are (D,).


@lru_cache(maxsize=64)
def _ones(m: int, dtype: np.dtype) -> Array:
    ones = np.ones(m, dtype=dtype)
    ones.flags.writeable = False
    return ones


def batch_sum(x: Array) -> Array:
    """Sum over the batch axis, shaped to broadcast back against x ((D,) or (K, 1, D)).

    A product with a vector of ones: BLAS, several times cheaper than a reduction here. Stacks
    go through matmul (np.dot's N-d path is slow), which sums each slice as the 2-D call does.
    """
    ones = _ones(x.shape[-2], x.dtype)
    return np.dot(ones, x) if x.ndim == 2 else np.matmul(ones[None, :], x)


def batch_dot(a: Array, b: Array) -> Array:
    """sum_i a[i, j] * b[i, j] per feature j, shaped like ``batch_sum`` (a product then the
    same BLAS sum: a third cheaper here than einsum, whose call costs more than its work)."""
    return batch_sum(np.multiply(a, b))


class BatchNormCache(NamedTuple):
    """What the backward pass needs: centred inputs, 1/sqrt(var+eps) and gamma/sqrt(var+eps)."""

    xc: Array
    inv_std: Array
    scale: Array
    gamma: Array


def batch_moments(x: Array, overwrite: bool = False) -> tuple[Array, Array, Array]:
    """Batch mean, centred input and biased variance (1/m), computed in two passes.

    The two-pass form sum((x - mu)^2)/m gives ~0 (rounding only) for constant features and stays
    accurate for large offsets, where E[x^2] - E[x]^2 cancels catastrophically.
    """
    inv_m = x.dtype.type(1.0 / x.shape[-2])
    mu = batch_sum(x)
    mu *= inv_m
    if overwrite:
        xc = x
        xc -= mu
    else:
        xc = x - mu
    var = batch_dot(xc, xc)
    var *= inv_m
    return mu, xc, var


def batchnorm_forward(
    x: Array, gamma: Array, beta: Array, eps: float = 1e-5, overwrite: bool = False
) -> tuple[Array, BatchNormCache, Array, Array]:
    """Algorithm 1 of the paper over a mini-batch x of shape (..., m, D).

    Returns ``y, cache, mu, var`` where ``var`` is the biased batch variance used for
    normalizing; the caller keeps running statistics from ``mu`` and ``var``. With
    ``overwrite=True`` x itself becomes the centred copy kept in the cache.
    """
    mu, xc, var = batch_moments(x, overwrite)
    inv_std = var + x.dtype.type(eps)
    np.sqrt(inv_std, out=inv_std)
    np.reciprocal(inv_std, out=inv_std)
    scale = gamma * inv_std
    y = np.multiply(xc, scale)
    y += beta
    return y, BatchNormCache(xc, inv_std, scale, gamma), mu, var


def batchnorm_backward(
    dout: Array, cache: BatchNormCache, overwrite: bool = False
) -> tuple[Array, Array, Array]:
    """Compact BN backward: ``dx, dgamma, dbeta`` (the last two shaped like gamma).

    With g = dL/dx_hat = dout * gamma and x_hat = xc * inv_std,
        dx = inv_std / m * (m g - sum(g) - x_hat * sum(g * x_hat)),
    computed as dout * scale + xc * k + c with per-feature vectors k and c: the same
    expression with the common factors gathered (four full-size operations instead of ten).
    """
    xc, inv_std, scale, gamma = cache
    neg_inv_m = dout.dtype.type(-1.0 / dout.shape[-2])
    dbeta = batch_sum(dout)
    sum_dout_xc = batch_dot(dout, xc)
    dgamma = sum_dout_xc * inv_std
    k = scale * inv_std
    k *= inv_std
    k *= sum_dout_xc
    k *= neg_inv_m
    c = scale * dbeta
    c *= neg_inv_m
    dx = dout if overwrite else dout.copy()
    dx *= scale
    dx += np.multiply(xc, k)
    dx += c
    return dx, dgamma.reshape(gamma.shape), dbeta.reshape(gamma.shape)


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
    xc, inv_std, _, gamma = cache
    m = dout.shape[-2]
    x_hat = xc * inv_std
    dx_hat = dout * gamma
    dvar = np.sum(dx_hat * xc, axis=-2, keepdims=True) * -0.5 * inv_std**3
    dmu = (
        np.sum(dx_hat * -inv_std, axis=-2, keepdims=True)
        + dvar * np.sum(-2.0 * xc, axis=-2, keepdims=True) / m
    )
    dx = dx_hat * inv_std + dvar * 2.0 * xc / m + dmu / m
    return BatchNormSteps(
        dx_hat=dx_hat,
        dvar=dvar.reshape(gamma.shape),
        dmu=dmu.reshape(gamma.shape),
        dx=dx,
        dgamma=np.sum(dout * x_hat, axis=-2).reshape(gamma.shape),
        dbeta=np.sum(dout, axis=-2).reshape(gamma.shape),
    )


def batchnorm_inference(
    x: Array, gamma: Array, beta: Array, mean: Array, var: Array, eps: float = 1e-5
) -> Array:
    """The inference transform: one affine map per feature with population statistics,
    y = gamma / sqrt(var + eps) * x + (beta - gamma * mean / sqrt(var + eps))."""
    scale = gamma / np.sqrt(var + eps)
    y = x * scale
    y += beta - mean * scale
    return y


# --------------------------------------------------------------------------- layer norm


class LayerNormCache(NamedTuple):
    xc: Array
    inv_std: Array
    gamma: Array


def layernorm_forward(
    x: Array, gamma: Array, beta: Array, eps: float = 1e-5
) -> tuple[Array, LayerNormCache]:
    """Normalize each example over its features: identical at train and test time, any batch."""
    mu = np.mean(x, axis=-1, keepdims=True)
    xc = x - mu
    var = np.mean(xc * xc, axis=-1, keepdims=True)
    inv_std = 1.0 / np.sqrt(var + eps)
    return xc * inv_std * gamma + beta, LayerNormCache(xc, inv_std, gamma)


def layernorm_backward(dout: Array, cache: LayerNormCache) -> tuple[Array, Array, Array]:
    """The BN compact formula with the roles of the axes swapped (per-row statistics)."""
    xc, inv_std, gamma = cache
    d = xc.shape[-1]
    x_hat = xc * inv_std
    g = dout * gamma
    dx = (inv_std / d) * (
        d * g - g.sum(axis=-1, keepdims=True) - x_hat * (g * x_hat).sum(axis=-1, keepdims=True)
    )
    dgamma = np.sum(dout * x_hat, axis=-2).reshape(gamma.shape)
    return dx, dgamma, np.sum(dout, axis=-2).reshape(gamma.shape)


# --------------------------------------------------------------------------- activations


def sigmoid(z: Array, overwrite: bool = False) -> Array:
    """Logistic function as 0.5 tanh(z/2) + 0.5: one vectorized transcendental and no overflow
    for large |z|, unlike 1 / (1 + exp(-z))."""
    half = z.dtype.type(0.5)
    out = z if overwrite else np.empty_like(z)
    np.multiply(z, half, out=out)
    np.tanh(out, out=out)
    out *= half
    out += half
    return out


def sigmoid_grad(a: Array, da: Array, overwrite: bool = False) -> Array:
    """dL/dz from the output a = sigmoid(z): da * a * (1 - a)."""
    dz = da if overwrite else da.copy()
    dz *= a
    dz *= np.subtract(a.dtype.type(1), a)
    return dz


def tanh(z: Array, overwrite: bool = False) -> Array:
    return np.tanh(z, out=z) if overwrite else np.tanh(z)


def tanh_grad(a: Array, da: Array, overwrite: bool = False) -> Array:
    """dL/dz from a = tanh(z): da * (1 - a^2)."""
    dz = da if overwrite else da.copy()
    one_minus_a2 = np.multiply(a, a)
    np.subtract(1, one_minus_a2, out=one_minus_a2)
    dz *= one_minus_a2
    return dz


def relu(z: Array, overwrite: bool = False) -> Array:
    return np.maximum(z, 0, out=z) if overwrite else np.maximum(z, 0, dtype=z.dtype)


def relu_grad(a: Array, da: Array, overwrite: bool = False) -> Array:
    """dL/dz from a = relu(z): da where the unit is on (z > 0, i.e. a > 0)."""
    dz = da if overwrite else da.copy()
    dz *= a > 0
    return dz


def identity(z: Array, overwrite: bool = False) -> Array:
    return z if overwrite else z.copy()


def identity_grad(a: Array, da: Array, overwrite: bool = False) -> Array:
    return da if overwrite else da.copy()


@dataclass(frozen=True)
class Activation:
    """An activation as an (output, derivative) pair, the derivative written from the output."""

    name: str
    title: str  # as students write it: "ReLU", not "relu"
    fn: Callable[..., Array]  # fn(z, overwrite=False) -> a
    grad: Callable[..., Array]  # grad(a, da, overwrite=False) -> dz
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


# --------------------------------------------------------------------------- dropout


def dropout_forward(x: Array, p_drop: float, rng: np.random.Generator) -> tuple[Array, Array]:
    """Inverted dropout: zero each unit with probability p and scale survivors by 1/(1-p), so
    the expected activation is unchanged and inference needs no rescaling."""
    keep = 1.0 - p_drop
    mask = (rng.random(x.shape) < keep).astype(x.dtype) / x.dtype.type(keep)
    return x * mask, mask


def dropout_backward(dout: Array, mask: Array) -> Array:
    return dout * mask


# --------------------------------------------------------------------------- loss


def softmax(logits: Array) -> Array:
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    e /= e.sum(axis=-1, keepdims=True)
    return e


@lru_cache(maxsize=64)
def row_offsets(n: int, c: int) -> Array:
    """Flat index of the first entry of each row of an (n, c) array (cached, read-only)."""
    offsets = np.arange(n) * c
    offsets.flags.writeable = False
    return offsets


def _pick(z: Array, y: Array) -> Array:
    """z[..., i, y[..., i]] for every example i: the logit of the true class."""
    if z.ndim == 2:
        return z.ravel()[y + row_offsets(*z.shape)]
    return np.take_along_axis(z, y[..., None], axis=-1)[..., 0]


def _row_max(z: Array) -> Array:
    """Per-example maximum, keeping the class axis; argmax has a fast path that max lacks
    along a short contiguous axis."""
    if z.ndim == 2:
        return _pick(z, z.argmax(axis=1))[:, None]
    return z.max(axis=-1, keepdims=True)


def _log_softmax_loss(logits: Array, y: Array) -> tuple[Array, Array, Array]:
    """Mean cross-entropy via the row-max-shifted log-sum-exp, with exp(z) and its row sums
    (the gradient's softmax is ``e / s``)."""
    n, c = logits.shape[-2:]
    z = logits - _row_max(logits)
    e = np.exp(z)
    ones = _ones(c, e.dtype)
    s = np.dot(e, ones) if e.ndim == 2 else np.matmul(e, ones[:, None])[..., 0]
    loss = (np.add.reduce(np.log(s), axis=-1) - np.add.reduce(_pick(z, y), axis=-1)) * (1.0 / n)
    return loss, e, s


def softmax_cross_entropy(logits: Array, y: Array) -> tuple[float | Array, Array]:
    """Mean cross-entropy of integer labels y and its gradient w.r.t. the logits.

    Shifting by the row maximum keeps exp() finite; log-sum-exp keeps the loss exact when a
    probability underflows to zero. For stacked logits (K, m, C) the loss is a (K,) array.
    """
    n, c = logits.shape[-2:]
    loss, e, s = _log_softmax_loss(logits, y)
    e /= s[..., None]
    if logits.ndim == 2:
        e.ravel()[y + row_offsets(n, c)] -= 1
    else:
        np.put_along_axis(e, y[..., None], _pick(e, y)[..., None] - 1, axis=-1)
    e *= e.dtype.type(1.0 / n)
    return (float(loss) if logits.ndim == 2 else loss), e


def cross_entropy(logits: Array, y: Array) -> float | Array:
    """Loss only, for evaluation (the same shifted log-sum-exp, no gradient)."""
    loss = _log_softmax_loss(logits, y)[0]
    return float(loss) if logits.ndim == 2 else loss
