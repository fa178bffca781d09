"""PyTorch-like layers with hand-written backward passes over ``bnviz.functional``.

Each layer keeps what its backward needs from the last forward. ``MLP`` stores all of its
parameters (and gradients) as views into one flat array, so an optimizer step is a couple of
vector operations and a model can be cloned by copying two arrays.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from bnviz import functional as F

Array = np.ndarray
INITS = ("gaussian", "glorot", "he")
PLACEMENTS = ("before", "after")


class Module:
    """Base layer: ``params`` and ``grads`` are dicts of arrays with the same keys and shapes.

    ``overwrite_input`` / ``overwrite_grad`` let a layer reuse the array it is given in forward /
    backward instead of allocating; an ``MLP`` sets them where nobody else holds that array.
    ``output_is_private`` says whether this layer's forward output is referenced by nothing else.
    """

    output_is_private = False

    def __init__(self) -> None:
        self.training = True
        self.params: dict[str, Array] = {}
        self.grads: dict[str, Array] = {}
        self.overwrite_input = False
        self.overwrite_grad = False

    def train(self, mode: bool = True) -> Module:
        self.training = mode
        return self

    def eval(self) -> Module:
        return self.train(False)

    def forward(self, x: Array) -> Array:
        raise NotImplementedError

    def backward(self, dout: Array) -> Array | None:
        raise NotImplementedError

    def __call__(self, x: Array) -> Array:
        return self.forward(x)

    def zero_grad(self) -> None:
        for g in self.grads.values():
            g.fill(0)


def init_weight(
    fan_in: int,
    fan_out: int,
    init: str,
    rng: np.random.Generator,
    *,
    init_std: float = 0.1,
    init_scale: float = 1.0,
    dtype: Any = np.float64,
) -> Array:
    """A (fan_out, fan_in) weight matrix, the layout PyTorch uses.

    gaussian: N(0, init_std^2), the paper's small random Gaussian; glorot: uniform with
    variance 2/(fan_in+fan_out); he: N(0, 2/fan_in). ``init_scale`` multiplies any of them.
    """
    shape = (fan_out, fan_in)
    if init == "gaussian":
        w = rng.standard_normal(shape) * init_std
    elif init == "glorot":
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        w = rng.uniform(-limit, limit, size=shape)
    elif init == "he":
        w = rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)
    else:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    return (w * init_scale).astype(dtype)


class Linear(Module):
    """y = x W^T + b with W of shape (out_features, in_features)."""

    output_is_private = True

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        init: str = "gaussian",
        init_std: float = 0.1,
        init_scale: float = 1.0,
        rng: np.random.Generator | None = None,
        dtype: Any = np.float64,
    ) -> None:
        super().__init__()
        rng = rng if rng is not None else np.random.default_rng(0)
        self.in_features, self.out_features = in_features, out_features
        self.params["weight"] = init_weight(
            in_features,
            out_features,
            init,
            rng,
            init_std=init_std,
            init_scale=init_scale,
            dtype=dtype,
        )
        if bias:
            self.params["bias"] = np.zeros(out_features, dtype=dtype)
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        self.needs_input_grad = True
        self._x: Array | None = None

    @property
    def weight(self) -> Array:
        return self.params["weight"]

    @property
    def bias(self) -> Array | None:
        return self.params.get("bias")

    def forward(self, x: Array) -> Array:
        self._x = x
        y = x @ self.params["weight"].T
        if "bias" in self.params:
            y += self.params["bias"]
        return y

    def backward(self, dout: Array) -> Array | None:
        np.matmul(dout.T, self._x, out=self.grads["weight"])
        if "bias" in self.params:
            np.add.reduce(dout, axis=0, out=self.grads["bias"])
        return dout @ self.params["weight"] if self.needs_input_grad else None


class BatchNorm1d(Module):
    """Batch Normalization over (N, D) inputs, with PyTorch's conventions.

    Train mode normalizes with the batch mean and biased variance and updates the running
    statistics as running = (1 - momentum) * running + momentum * batch, the variance entering
    unbiased (m / (m - 1)); ``momentum=None`` uses a cumulative average instead, which is the
    paper's population estimate (Algorithm 2). Eval mode applies the running statistics.
    ``update_stats = False`` normalizes with batch statistics but leaves the running ones alone
    (used to measure a probe batch without disturbing training).
    """

    output_is_private = True

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        dtype: Any = np.float64,
    ) -> None:
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.params = {
            "gamma": np.ones(num_features, dtype=dtype),
            "beta": np.zeros(num_features, dtype=dtype),
        }
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        self.running_mean = np.zeros(num_features, dtype=dtype)
        self.running_var = np.ones(num_features, dtype=dtype)
        self.num_batches_tracked = 0
        self.update_stats = True
        self.batch_mean: Array | None = None
        self.batch_var: Array | None = None
        self._cache: F.BatchNormCache | None = None

    @property
    def gamma(self) -> Array:
        return self.params["gamma"]

    @property
    def beta(self) -> Array:
        return self.params["beta"]

    def forward(self, x: Array) -> Array:
        if not self.training:
            self._cache = None
            return F.batchnorm_inference(
                x, self.gamma, self.beta, self.running_mean, self.running_var, self.eps
            )
        m = x.shape[0]
        if m < 2:
            raise ValueError(
                "BatchNorm1d needs at least 2 examples per batch in training mode "
                f"(got {m}): the batch variance of one example is 0"
            )
        y, self._cache, mu, var = F.batchnorm_forward(
            x, self.gamma, self.beta, self.eps, overwrite=self.overwrite_input
        )
        self.batch_mean, self.batch_var = mu, var
        if self.update_stats:
            self._update_running(mu, var, m)
        return y

    def _update_running(self, mu: Array, var: Array, m: int) -> None:
        self.num_batches_tracked += 1
        f = self.momentum if self.momentum is not None else 1.0 / self.num_batches_tracked
        self.running_mean *= 1.0 - f
        self.running_mean += f * mu
        self.running_var *= 1.0 - f
        self.running_var += (f * m / (m - 1)) * var

    def backward(self, dout: Array) -> Array:
        if self._cache is None:
            raise RuntimeError("BatchNorm1d.backward needs a train-mode forward first")
        dx, dgamma, dbeta = F.batchnorm_backward(dout, self._cache, self.overwrite_grad)
        self.grads["gamma"][...] = dgamma
        self.grads["beta"][...] = dbeta
        return dx


class LayerNorm(Module):
    """Per-example normalization over features, with per-feature gamma and beta."""

    output_is_private = True

    def __init__(self, num_features: int, eps: float = 1e-5, dtype: Any = np.float64) -> None:
        super().__init__()
        self.num_features, self.eps = num_features, eps
        self.params = {
            "gamma": np.ones(num_features, dtype=dtype),
            "beta": np.zeros(num_features, dtype=dtype),
        }
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        self._cache: F.LayerNormCache | None = None

    def forward(self, x: Array) -> Array:
        y, self._cache = F.layernorm_forward(x, self.params["gamma"], self.params["beta"], self.eps)
        return y

    def backward(self, dout: Array) -> Array:
        dx, dgamma, dbeta = F.layernorm_backward(dout, self._cache)
        self.grads["gamma"][...] = dgamma
        self.grads["beta"][...] = dbeta
        return dx


class Dropout(Module):
    """Inverted dropout; the identity in eval mode."""

    def __init__(self, p: float = 0.5, rng: np.random.Generator | None = None) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout p must be in [0, 1), got {p}")
        self.p = p
        self.rng = rng if rng is not None else np.random.default_rng(0)
        self._mask: Array | None = None

    def forward(self, x: Array) -> Array:
        if not self.training or self.p == 0.0:
            self._mask = None
            return x
        y, self._mask = F.dropout_forward(x, self.p, self.rng)
        return y

    def backward(self, dout: Array) -> Array:
        return dout if self._mask is None else F.dropout_backward(dout, self._mask)


class Activation(Module):
    """A nonlinearity from ``functional.ACTIVATIONS``; backward uses the stored output."""

    def __init__(self, name: str) -> None:
        super().__init__()
        if name not in F.ACTIVATIONS:
            raise ValueError(f"activation must be one of {tuple(F.ACTIVATIONS)}, got {name!r}")
        self.name = name
        self.spec = F.ACTIVATIONS[name]
        self._out: Array | None = None

    def forward(self, x: Array) -> Array:
        self._out = self.spec.fn(x, self.overwrite_input)
        return self._out

    def backward(self, dout: Array) -> Array:
        return self.spec.grad(self._out, dout, self.overwrite_grad)


class Sigmoid(Activation):
    def __init__(self) -> None:
        super().__init__("sigmoid")


class Tanh(Activation):
    def __init__(self) -> None:
        super().__init__("tanh")


class ReLU(Activation):
    def __init__(self) -> None:
        super().__init__("relu")


class MLP(Module):
    """A multilayer perceptron for classification, optionally with BatchNorm or LayerNorm.

    ``sizes`` lists input, hidden and output widths. Each hidden block is
    Linear -> BN -> activation (``placement="before"``, the paper's choice) or
    Linear -> activation -> BN (``"after"``), then optional dropout. A Linear followed directly
    by BN has no bias: BN subtracts the mean, so beta takes its place. Layer names are
    ``fc1``, ``bn1``/``ln1``, ``act1``, ``drop1``, ..., with ``fc{L}`` the output layer; keys of
    ``params`` and ``grads`` are ``"<layer>.<param>"``.
    """

    def __init__(
        self,
        sizes: Sequence[int],
        activation: str = "sigmoid",
        batchnorm: bool = False,
        *,
        placement: str = "before",
        layernorm: bool = False,
        dropout: float = 0.0,
        init: str = "gaussian",
        init_std: float = 0.1,
        init_scale: float = 1.0,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        seed: int = 0,
        dtype: Any = np.float64,
    ) -> None:
        super().__init__()
        sizes = tuple(int(s) for s in sizes)
        if len(sizes) < 2 or min(sizes) < 1:
            raise ValueError(f"sizes needs an input and an output width >= 1, got {sizes}")
        if placement not in PLACEMENTS:
            raise ValueError(f"placement must be one of {PLACEMENTS}, got {placement!r}")
        if batchnorm and layernorm:
            raise ValueError("choose batchnorm or layernorm, not both")
        self.config = dict(
            sizes=sizes,
            activation=activation,
            batchnorm=batchnorm,
            placement=placement,
            layernorm=layernorm,
            dropout=dropout,
            init=init,
            init_std=init_std,
            init_scale=init_scale,
            eps=eps,
            momentum=momentum,
            seed=seed,
            dtype=np.dtype(dtype),
        )
        self.sizes, self.activation, self.batchnorm = sizes, activation, batchnorm
        self.placement, self.dtype = placement, np.dtype(dtype)
        rng = np.random.default_rng(seed)
        drop_rng = np.random.default_rng([seed, 1])
        layers: list[tuple[str, Module]] = []
        n_hidden = len(sizes) - 2
        self.blocks: list[list[str]] = []  # layer names of each hidden block, in order
        for i in range(1, n_hidden + 1):
            start = len(layers)
            norm: Module | None = None
            if batchnorm:
                norm = BatchNorm1d(sizes[i], eps=eps, momentum=momentum, dtype=dtype)
            elif layernorm:
                norm = LayerNorm(sizes[i], eps=eps, dtype=dtype)
            fc = Linear(
                sizes[i - 1],
                sizes[i],
                bias=not (batchnorm and placement == "before"),
                init=init,
                init_std=init_std,
                init_scale=init_scale,
                rng=rng,
                dtype=dtype,
            )
            norm_name = ("bn" if batchnorm else "ln") + str(i)
            layers.append((f"fc{i}", fc))
            if norm is not None and placement == "before":
                layers.append((norm_name, norm))
            layers.append((f"act{i}", Activation(activation)))
            if norm is not None and placement == "after":
                layers.append((norm_name, norm))
            if dropout > 0:
                layers.append((f"drop{i}", Dropout(dropout, drop_rng)))
            self.blocks.append([name for name, _ in layers[start:]])
        out = Linear(
            sizes[-2],
            sizes[-1],
            bias=True,
            init=init,
            init_std=init_std,
            init_scale=init_scale,
            rng=rng,
            dtype=dtype,
        )
        layers.append((f"fc{n_hidden + 1}", out))
        layers[0][1].needs_input_grad = False
        for (_, prev), (_, layer) in zip(layers, layers[1:], strict=False):
            layer.overwrite_input = prev.output_is_private
        for _, layer in layers[:-1]:
            layer.overwrite_grad = True
        self.named_layers = layers
        self.layers = dict(layers)
        self._bind_flat()
        self._dlogits: Array | None = None

    def _bind_flat(self) -> None:
        """Move every parameter and gradient into views of one flat array each."""
        entries = [(f"{n}.{k}", layer, k) for n, layer in self.named_layers for k in layer.params]
        total = sum(layer.params[k].size for _, layer, k in entries)
        self.flat_params = np.empty(total, dtype=self.dtype)
        self.flat_grads = np.zeros(total, dtype=self.dtype)
        self.params, self.grads, self.slices = {}, {}, {}
        offset = 0
        for key, layer, k in entries:
            value = layer.params[k]
            n = value.size
            p = self.flat_params[offset : offset + n].reshape(value.shape)
            g = self.flat_grads[offset : offset + n].reshape(value.shape)
            p[...] = value
            layer.params[k], layer.grads[k] = p, g
            self.params[key], self.grads[key] = p, g
            self.slices[key] = slice(offset, offset + n)
            offset += n

    @property
    def norm_layers(self) -> list[tuple[str, Module]]:
        return [(n, layer) for n, layer in self.named_layers if isinstance(layer, BatchNorm1d)]

    @property
    def n_hidden(self) -> int:
        return len(self.sizes) - 2

    def train(self, mode: bool = True) -> MLP:
        self.training = mode
        for _, layer in self.named_layers:
            layer.train(mode)
        return self

    @contextmanager
    def probe_mode(self) -> Iterator[MLP]:
        """Eval mode, except that BN normalizes with the batch's own statistics (running ones
        untouched): how a fixed probe batch is seen by the net as it trains, free of dropout
        noise and of the lag of running averages."""
        was_training = self.training
        self.eval()
        bns = [layer for _, layer in self.norm_layers]
        for bn in bns:
            bn.train()
        try:
            with self.frozen_stats():
                yield self
        finally:
            self.train(was_training)

    @contextmanager
    def frozen_stats(self) -> Iterator[MLP]:
        """Train-mode forwards inside this block leave BN running statistics untouched."""
        bns = [layer for _, layer in self.norm_layers]
        for bn in bns:
            bn.update_stats = False
        try:
            yield self
        finally:
            for bn in bns:
                bn.update_stats = True

    def forward(self, x: Array) -> Array:
        for _, layer in self.named_layers:
            x = layer.forward(x)
        return x

    def forward_trace(self, x: Array) -> tuple[Array, dict[str, Array]]:
        """Logits and every layer's output by layer name, for measuring distributions."""
        overwrite = [layer.overwrite_input for _, layer in self.named_layers]
        trace = {}
        try:
            for name, layer in self.named_layers:
                layer.overwrite_input = False  # keep every output intact for the trace
                x = trace[name] = layer.forward(x)
        finally:
            for (_, layer), flag in zip(self.named_layers, overwrite, strict=True):
                layer.overwrite_input = flag
        return x, trace

    def loss(self, x: Array, y: Array) -> float:
        """Forward pass and mean softmax cross-entropy; keeps dL/dlogits for ``backward``."""
        loss, self._dlogits = F.softmax_cross_entropy(self.forward(x), y)
        return loss

    def backward(self, dout: Array | None = None) -> None:
        """Fill ``grads`` from the last ``loss`` (or from an explicit dL/dlogits)."""
        d = self._dlogits if dout is None else dout
        if d is None:
            raise RuntimeError("MLP.backward needs a call to loss() first")
        for _, layer in reversed(self.named_layers):
            d = layer.backward(d)

    def state_arrays(self) -> dict[str, Array]:
        """Parameters and BN buffers as named copies (for saving or comparing models)."""
        out = {k: v.copy() for k, v in self.params.items()}
        for name, bn in self.norm_layers:
            out[f"{name}.running_mean"] = bn.running_mean.copy()
            out[f"{name}.running_var"] = bn.running_var.copy()
        return out

    def load_state_arrays(self, state: dict[str, Array]) -> None:
        for k, v in state.items():
            layer_name, attr = k.split(".")
            if k in self.params:
                self.params[k][...] = v
            else:
                getattr(self.layers[layer_name], attr)[...] = v

    def clone(self) -> MLP:
        """An independent copy with identical weights, statistics and mode."""
        twin = MLP(**self.config)
        twin.flat_params[...] = self.flat_params
        for (_, a), (_, b) in zip(self.norm_layers, twin.norm_layers, strict=True):
            b.running_mean[...] = a.running_mean
            b.running_var[...] = a.running_var
            b.num_batches_tracked = a.num_batches_tracked
        return twin.train(self.training)

    def copy_weights_from(self, other: MLP) -> None:
        """Copy every Linear weight (and bias both nets have) from another MLP of equal sizes,
        so a plain and a BN net can start from identical weight matrices."""
        if other.sizes != self.sizes:
            raise ValueError(f"sizes differ: {other.sizes} vs {self.sizes}")
        for key, value in other.params.items():
            if key.startswith("fc") and key in self.params:
                self.params[key][...] = value
