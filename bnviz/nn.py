"""PyTorch-like layers over ``bnviz.functional``, and an MLP built from blocks.

Every layer keeps its parameters and their gradients in two dicts with the same keys and
shapes, ``params`` and ``grads``; ``forward`` keeps the cache its ``backward`` needs; ``train()``
and ``eval()`` switch the behaviour that differs (BN's statistics, noise, dropout). As in
PyTorch's ``batchnorm.py``, a module decides *which* statistics to use and hands the arithmetic
to one function.

The MLP is a stack of hidden blocks, each Linear -> norm -> activation (norm "before" the
nonlinearity, the paper's choice) or Linear -> activation -> norm ("after"), with optional noise
right after the norm and dropout at the end of a block, then an output Linear.
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
NORMS = ("none", "batch", "layer", "group")
DROPOUT_SITES = ("every", "last")  # after every hidden block, or after the last one only
NORM_PREFIX = {"batch": "bn", "layer": "ln", "group": "gn"}


class Module:
    """Base layer: ``params`` and ``grads`` hold arrays with the same keys and shapes."""

    def __init__(self) -> None:
        self.training = True
        self.params: dict[str, Array] = {}
        self.grads: dict[str, Array] = {}

    def train(self, mode: bool = True) -> Module:
        self.training = mode
        return self

    def eval(self) -> Module:
        return self.train(False)

    def forward(self, x: Array) -> Array:
        raise NotImplementedError

    def backward(self, dout: Array) -> Array:
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
            in_features, out_features, init, rng,
            init_std=init_std, init_scale=init_scale, dtype=dtype,
        )  # fmt: skip
        if bias:
            self.params["bias"] = np.zeros(out_features, dtype=dtype)
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        self._x: Array | None = None

    @property
    def weight(self) -> Array:
        return self.params["weight"]

    @property
    def bias(self) -> Array | None:
        return self.params.get("bias")

    def forward(self, x: Array) -> Array:
        self._x = x
        y = x @ self.weight.T
        return y + self.bias if self.bias is not None else y

    def backward(self, dout: Array) -> Array:
        self.grads["weight"][...] = dout.T @ self._x
        if self.bias is not None:
            self.grads["bias"][...] = dout.sum(axis=0)
        return dout @ self.weight


class BatchNorm1d(Module):
    """Batch Normalization over (N, D) inputs, with PyTorch's conventions.

    Train mode normalizes with the batch mean and biased variance and updates the running
    statistics: running = (1 - momentum) * running + momentum * batch, the variance entering
    unbiased (m / (m - 1)). ``momentum=None`` keeps a cumulative average instead, the paper's
    population estimate (Algorithm 2). Eval mode applies the running statistics. Keras writes
    the same average with its momentum the other way round: see ``keras_momentum``.
    ``update_stats = False`` normalizes with batch statistics but leaves the running ones alone
    (a probe batch measured without disturbing training).
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        dtype: Any = np.float64,
    ) -> None:
        super().__init__()
        if not (np.isfinite(eps) and eps > 0):
            raise ValueError(f"eps must be a positive number; got {eps!r}")
        if momentum is not None and not 0 < momentum <= 1:
            raise ValueError(f"momentum must be in (0, 1], or None; got {momentum!r}")
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
        y, self._cache = F.batchnorm_forward(x, self.gamma, self.beta, self.eps)
        self.batch_mean, self.batch_var = self._cache.mu, self._cache.var
        if self.update_stats:
            self.num_batches_tracked += 1
            f = self.momentum if self.momentum is not None else 1.0 / self.num_batches_tracked
            unbiased = self._cache.var * (m / (m - 1))
            self.running_mean[...] = (1.0 - f) * self.running_mean + f * self._cache.mu
            self.running_var[...] = (1.0 - f) * self.running_var + f * unbiased
        return y

    def backward(self, dout: Array) -> Array:
        if self._cache is None:
            raise RuntimeError("BatchNorm1d.backward needs a train-mode forward first")
        dx, self.grads["gamma"][...], self.grads["beta"][...] = F.batchnorm_backward(
            dout, self._cache
        )
        return dx


def keras_momentum(momentum: float) -> float:
    """PyTorch's BN momentum for a Keras one, and back: Keras keeps moving = momentum * moving +
    (1 - momentum) * batch, PyTorch running = (1 - momentum) * running + momentum * batch, so a
    Keras 0.99 is a PyTorch 0.01 (cs231n's running_mean uses Keras's convention)."""
    if not 0 <= momentum <= 1:
        raise ValueError(f"momentum must be in [0, 1]; got {momentum!r}")
    return 1.0 - momentum


class GroupNorm(Module):
    """Per-example normalization over groups of consecutive units, per-unit gamma and beta.
    ``groups=1`` is LayerNorm. Nothing depends on the batch: train and eval are the same."""

    def __init__(
        self, num_features: int, groups: int = 1, eps: float = 1e-5, dtype: Any = np.float64
    ) -> None:
        super().__init__()
        if groups < 1 or num_features % groups:
            raise ValueError(f"groups must divide the {num_features} units; got {groups}")
        if not (np.isfinite(eps) and eps > 0):
            raise ValueError(f"eps must be a positive number; got {eps!r}")
        self.num_features, self.groups, self.eps = num_features, groups, eps
        self.params = {
            "gamma": np.ones(num_features, dtype=dtype),
            "beta": np.zeros(num_features, dtype=dtype),
        }
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        self._cache: Any = None

    def forward(self, x: Array) -> Array:
        y, self._cache = F.groupnorm_forward(
            x, self.params["gamma"], self.params["beta"], self.groups, self.eps
        )
        return y

    def backward(self, dout: Array) -> Array:
        dx, self.grads["gamma"][...], self.grads["beta"][...] = F.groupnorm_backward(
            dout, self._cache
        )
        return dx


class LayerNorm(GroupNorm):
    """Ba et al.'s LayerNorm: GroupNorm with one group, statistics over all units of an example."""

    def __init__(self, num_features: int, eps: float = 1e-5, dtype: Any = np.float64) -> None:
        super().__init__(num_features, 1, eps, dtype)


class NoiseInjection(Module):
    """Noisy BN's noise (``functional.Noise``), drawn from the layer's counter-based stream.

    ``step`` counts train-mode forwards, as a net counts its steps: forward number t draws the
    noise of step t, so any engine that trains the same net draws the same noise. In eval mode
    the layer is the identity; in probe mode (``per_unit_only``) it applies only the step's
    per-unit shift and scale, a <- sigma_t a + mu_t: the part of the noise that moves the
    distribution from step to step, for any number of examples.
    """

    def __init__(self, num_features: int, noise: F.Noise, keys: tuple[int, int]) -> None:
        super().__init__()
        self.num_features, self.noise, self.keys = num_features, noise, keys
        self.step = 0
        self.per_unit_only = False
        self._scale: Array | None = None

    def forward(self, x: Array) -> Array:
        if not self.training:
            self._scale = None
            return x
        m, d = x.shape
        if self.per_unit_only:
            u_mu, u_sigma = F.noise_unit_draws(self.keys, max(self.step - 1, 0), d)
            mu_t, sigma_t = F.noise_shift_scale(self.noise, u_mu, u_sigma)
            self._scale = np.broadcast_to(sigma_t.astype(x.dtype), x.shape)
            return self._scale * x + mu_t.astype(x.dtype)
        y, self._scale = F.noise_forward(x, self.noise, F.noise_draws(self.keys, self.step, m, d))
        self.step += 1
        return y

    def backward(self, dout: Array) -> Array:
        return dout if self._scale is None else F.noise_backward(dout, self._scale)


class Dropout(Module):
    """Inverted dropout from the layer's counter-based stream (forward number t draws step t's
    mask); the identity in eval mode."""

    def __init__(self, p: float = 0.5, key: int = 0) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout p must be in [0, 1), got {p}")
        self.p, self.key = p, key
        self.step = 0
        self._mask: Array | None = None

    def forward(self, x: Array) -> Array:
        if not self.training or self.p == 0.0:
            self._mask = None
            return x
        m, d = x.shape
        y, self._mask = F.dropout_forward(x, self.p, F.dropout_uniforms(self.key, self.step, m, d))
        self.step += 1
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
        self._out = self.spec.fn(x)
        return self._out

    def backward(self, dout: Array) -> Array:
        return self.spec.grad(self._out, dout)


class MLP(Module):
    """A multilayer perceptron for classification, built from hidden blocks.

    ``sizes`` lists input, hidden and output widths. ``norm`` is "none", "batch", "layer" or
    "group" (``groups`` per layer); ``batchnorm=True`` is shorthand for ``norm="batch"``. Each
    hidden block is Linear -> norm -> [noise] -> activation (``placement="before"``) or
    Linear -> activation -> norm -> [noise] ("after"), then dropout (after ``"every"`` block or
    the ``"last"`` one only). Noise without a norm sits where BN would ("plain + noise"). A
    Linear followed directly by BN has no bias: BN subtracts the mean, so beta takes its place.
    Layer names are ``fc1``, ``bn1`` / ``ln1`` / ``gn1``, ``noise1``, ``act1``, ``drop1``, ...,
    with ``fc{L}`` the output layer; keys of ``params`` and ``grads`` are ``"<layer>.<param>"``.
    """

    def __init__(
        self,
        sizes: Sequence[int],
        activation: str = "sigmoid",
        batchnorm: bool = False,
        *,
        norm: str | None = None,
        groups: int = 4,
        placement: str = "before",
        noise: float = 0.0,
        dropout: float = 0.0,
        dropout_where: str = "every",
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
        norm = norm if norm is not None else ("batch" if batchnorm else "none")
        if batchnorm and norm != "batch":
            raise ValueError(f"batchnorm=True contradicts norm={norm!r}")
        for name, value, allowed in (
            ("norm", norm, NORMS),
            ("placement", placement, PLACEMENTS),
            ("dropout_where", dropout_where, DROPOUT_SITES),
        ):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
        self.config = dict(
            sizes=sizes, activation=activation, norm=norm, groups=groups, placement=placement,
            noise=noise, dropout=dropout, dropout_where=dropout_where, init=init,
            init_std=init_std, init_scale=init_scale, eps=eps, momentum=momentum, seed=seed,
            dtype=np.dtype(dtype),
        )  # fmt: skip
        self.sizes, self.activation, self.norm = sizes, activation, norm
        self.placement, self.dtype = placement, np.dtype(dtype)
        self.batchnorm = norm == "batch"
        rng = np.random.default_rng(seed)
        n_hidden = len(sizes) - 2
        layers: list[tuple[str, Module]] = []
        self.blocks: list[list[str]] = []  # layer names of each hidden block, in order
        for i in range(1, n_hidden + 1):
            width = sizes[i]
            block = [(f"fc{i}", Linear(
                sizes[i - 1], width, bias=not (self.batchnorm and placement == "before"),
                init=init, init_std=init_std, init_scale=init_scale, rng=rng, dtype=dtype,
            ))]  # fmt: skip
            site: list[tuple[str, Module]] = []
            if norm == "batch":
                site.append((f"bn{i}", BatchNorm1d(width, eps, momentum, dtype)))
            elif norm != "none":
                site.append((f"{NORM_PREFIX[norm]}{i}", GroupNorm(
                    width, 1 if norm == "layer" else groups, eps, dtype
                )))  # fmt: skip
            if noise > 0:
                keys = F.noise_keys(seed, i)
                site.append((f"noise{i}", NoiseInjection(width, F.Noise(noise), keys)))
            act = [(f"act{i}", Activation(activation))]
            block += site + act if placement == "before" or norm == "none" else act + site
            if dropout > 0 and (dropout_where == "every" or i == n_hidden):
                key = F.stream_key(seed, F.DROPOUT_STREAM, i)
                block.append((f"drop{i}", Dropout(dropout, key)))
            layers += block
            self.blocks.append([name for name, _ in block])
        out = Linear(
            sizes[-2], sizes[-1], bias=True, init=init, init_std=init_std,
            init_scale=init_scale, rng=rng, dtype=dtype,
        )  # fmt: skip
        layers.append((f"fc{n_hidden + 1}", out))
        self.named_layers = layers
        self.layers = dict(layers)
        self.params = {f"{n}.{k}": v for n, layer in layers for k, v in layer.params.items()}
        self.grads = {f"{n}.{k}": v for n, layer in layers for k, v in layer.grads.items()}
        self._dlogits: Array | None = None

    @property
    def norm_layers(self) -> list[tuple[str, Module]]:
        """The BN layers (the ones with running statistics), by name."""
        return [(n, layer) for n, layer in self.named_layers if isinstance(layer, BatchNorm1d)]

    @property
    def n_hidden(self) -> int:
        return len(self.sizes) - 2

    def stepped_layers(self) -> list[Module]:
        """Layers that count their train-mode forwards (noise, dropout)."""
        return [x for _, x in self.named_layers if isinstance(x, NoiseInjection | Dropout)]

    def train(self, mode: bool = True) -> MLP:
        self.training = mode
        for _, layer in self.named_layers:
            layer.train(mode)
        return self

    @contextmanager
    def probe_mode(self) -> Iterator[MLP]:
        """Eval mode, except that BN normalizes with the batch's own statistics (running ones
        untouched) and noise applies the last step's per-unit shift and scale: how a fixed probe
        batch is seen by the net as it trains, free of dropout and of the lag of running
        averages."""
        was_training = self.training
        self.eval()
        noise = [x for _, x in self.named_layers if isinstance(x, NoiseInjection)]
        for layer in [bn for _, bn in self.norm_layers] + noise:
            layer.train()
        for layer in noise:
            layer.per_unit_only = True
        try:
            with self.frozen_stats():
                yield self
        finally:
            for layer in noise:
                layer.per_unit_only = False
            self.train(was_training)

    @contextmanager
    def frozen_stats(self) -> Iterator[MLP]:
        """Train-mode forwards inside this block leave BN running statistics and the noise and
        dropout step counters as they were."""
        bns = [layer for _, layer in self.norm_layers]
        steps = [(layer, layer.step) for layer in self.stepped_layers()]
        for bn in bns:
            bn.update_stats = False
        try:
            yield self
        finally:
            for bn in bns:
                bn.update_stats = True
            for layer, step in steps:
                layer.step = step

    def forward(self, x: Array) -> Array:
        return self.forward_trace(x)[0]

    def forward_trace(self, x: Array) -> tuple[Array, dict[str, Array]]:
        """Logits and every layer's output by layer name, for measuring distributions."""
        trace = {}
        for name, layer in self.named_layers:
            x = trace[name] = layer.forward(x)
        return x, trace

    def loss(self, x: Array, y: Array) -> float:
        """Forward pass and mean softmax cross-entropy; keeps dL/dlogits for ``backward``."""
        loss, self._dlogits = F.softmax_cross_entropy(self.forward(x), y)
        return loss

    def backward(self, dout: Array | None = None) -> Array:
        """Fill ``grads`` from the last ``loss`` (or from an explicit dL/dlogits); returns
        dL/dx, the gradient at the input."""
        d = self._dlogits if dout is None else dout
        if d is None:
            raise RuntimeError("MLP.backward needs a call to loss() first")
        for _, layer in reversed(self.named_layers):
            d = layer.backward(d)
        return d

    def state_arrays(self) -> dict[str, Array]:
        """Parameters, BN buffers (``num_batches_tracked`` too) and the noise and dropout step
        counters, as named copies: everything a reloaded net needs to go on as this one."""
        out = {k: v.copy() for k, v in self.params.items()}
        for name, bn in self.norm_layers:
            out[f"{name}.running_mean"] = bn.running_mean.copy()
            out[f"{name}.running_var"] = bn.running_var.copy()
            out[f"{name}.num_batches_tracked"] = np.array(bn.num_batches_tracked)
        for name, layer in self.named_layers:
            if isinstance(layer, NoiseInjection | Dropout):
                out[f"{name}.step"] = np.array(layer.step)
        return out

    def load_state_arrays(self, state: dict[str, Array]) -> None:
        for k, v in state.items():
            layer_name, attr = k.split(".")
            layer = self.layers[layer_name]
            if k in self.params:
                self.params[k][...] = v
            elif attr in ("num_batches_tracked", "step"):
                setattr(layer, attr, int(v))
            else:
                getattr(layer, attr)[...] = v

    def clone(self) -> MLP:
        """An independent copy with identical weights, statistics, counters and mode."""
        twin = MLP(**self.config)
        twin.load_state_arrays(self.state_arrays())
        return twin.train(self.training)

    def copy_weights_from(self, other: MLP) -> None:
        """Copy every Linear weight (and bias both nets have) from another MLP of equal sizes,
        so nets with different norms can start from identical weight matrices."""
        if other.sizes != self.sizes:
            raise ValueError(f"sizes differ: {other.sizes} vs {self.sizes}")
        for key, value in other.params.items():
            if key.startswith("fc") and key in self.params:
                self.params[key][...] = value
