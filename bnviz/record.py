"""What is measured while a net trains: the distributions inside it, on a fixed probe batch.

Every ``record_every`` steps the probe batch goes through the net (in eval mode, except that BN
uses the probe's own batch statistics, running ones untouched) and, per hidden layer and per
*site* (a point in the
layer where a distribution is shown), we keep a quantile sketch of the whole layer's values,
per-unit 15/50/85th percentiles, means and stds, drift and saturation. The quantile sketch is
enough to draw exact histograms later on any fixed axis, so a plain net's growing range shows as
real motion, and it keeps a 50,000-step run to a few megabytes.

Sites, by layer kind:
    ``act_in``  the nonlinearity's input (the paper's "sigmoid input"), every net;
    ``bn_in``   the normalization's input (BN, LN or GN; placement "before": the Linear
                output; "after": the activation output);
    ``bn_out``  its output when it sits after the nonlinearity (before it, bn_out is act_in).

Beyond the distributions, a run can carry probes (``bnviz.measure``): measures taken at the
same record steps, which see the step's batch and the net before its update.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from bnviz import functional as F
from bnviz.nn import MLP

Array = np.ndarray

LEVELS = np.linspace(0.0, 1.0, 201)  # quantile levels of the layer sketch (every 0.5%)
UNIT_LEVELS = np.array([0.15, 0.50, 0.85])  # the paper's Figure 1(b,c) percentiles
STORE = np.float32  # records are for display; float32 halves their memory


def sorted_quantiles(sorted_values: Array, levels: Array) -> Array:
    """Quantiles of data already sorted along the last axis, with numpy's default linear
    interpolation (np.quantile sorts again; this reuses one sort for many levels)."""
    lo, hi, frac = _interpolation(sorted_values.shape[-1], levels.tobytes(), sorted_values.dtype)
    a = sorted_values[..., lo]
    b = sorted_values[..., hi]
    b -= a
    b *= frac
    b += a
    return b


@lru_cache(maxsize=32)
def _interpolation(n: int, levels_bytes: bytes, dtype: np.dtype) -> tuple[Array, Array, Array]:
    pos = np.frombuffer(levels_bytes) * (n - 1)
    lo = np.floor(pos).astype(np.intp)
    return lo, np.minimum(lo + 1, n - 1), (pos - lo).astype(dtype)


def wasserstein1_sorted(a: Array, b: Array) -> float:
    """1-Wasserstein distance between two equal-size samples given sorted: the mean gap
    between matching order statistics."""
    gap = np.subtract(a, b)
    np.abs(gap, out=gap)
    return float(np.add.reduce(gap, axis=None)) / gap.size


@dataclass
class SiteRecord:
    """One distribution point of one layer, over R records of U units."""

    quantiles: Array  # (R, len(LEVELS)) pooled over units and probe examples
    unit_pct: Array  # (R, U, 3) per-unit 15/50/85th percentiles
    unit_mean: Array  # (R, U)
    unit_std: Array  # (R, U)
    mean: Array  # (R,) pooled
    std: Array  # (R,) pooled
    drift_prev: Array  # (R,) W1 to the previous record (0 at the first)
    drift_init: Array  # (R,) W1 to the first record
    saturation: Array  # (R,) see Recorder._saturation; NaN where it does not apply

    @classmethod
    def empty(cls, n_records: int, n_units: int) -> SiteRecord:
        def nan(*shape):
            return np.full(shape, np.nan, dtype=STORE)

        return cls(
            quantiles=nan(n_records, len(LEVELS)),
            unit_pct=nan(n_records, n_units, len(UNIT_LEVELS)),
            unit_mean=nan(n_records, n_units),
            unit_std=nan(n_records, n_units),
            mean=nan(n_records),
            std=nan(n_records),
            drift_prev=nan(n_records),
            drift_init=nan(n_records),
            saturation=nan(n_records),
        )

    def truncated(self, n: int) -> SiteRecord:
        return SiteRecord(**{k: v[:n] for k, v in self.__dict__.items()})


@dataclass
class LayerRecord:
    """Everything recorded about hidden layer ``index`` (1-based)."""

    index: int
    units: int
    sites: dict[str, SiteRecord]
    grad_norm: Array  # (R,) ||dL/dW|| of the layer's Linear weight on the latest mini-batch
    update_ratio: Array  # (R,) ||W_after - W_before|| / ||W_before|| of the latest update
    weight_norm: Array  # (R,) ||W||

    def truncated(self, n: int) -> LayerRecord:
        return LayerRecord(
            index=self.index,
            units=self.units,
            sites={k: s.truncated(n) for k, s in self.sites.items()},
            grad_norm=self.grad_norm[:n],
            update_ratio=self.update_ratio[:n],
            weight_norm=self.weight_norm[:n],
        )


def layer_sites(model: MLP) -> list[dict[str, str]]:
    """For each hidden layer, site name -> name of the model layer whose output it is."""
    out = []
    for names in model.blocks:
        kinds = [n.rstrip("0123456789") for n in names]
        act = kinds.index("act")
        sites = {"act_in": names[act - 1]}
        norm = next((i for i, kind in enumerate(kinds) if kind in ("bn", "ln", "gn")), None)
        if norm is not None:
            sites["bn_in"] = names[norm - 1]
            if norm > act:
                sites["bn_out"] = names[norm]
        out.append(sites)
    return out


@dataclass
class Recorder:
    """Collects records for one model into preallocated arrays (one row per record).

    The probe rows are ``test_x[probe_idx]``. A net without BN computes the same thing in probe
    mode and in eval mode, so one forward pass over the test split (probe rows first) serves
    both the distributions and the test metrics.
    """

    model: MLP
    test_x: Array
    test_y: Array
    probe_idx: Array
    max_records: int
    steps: list[int] = field(default_factory=list)
    probes: list[Any] = field(default_factory=list)

    def __post_init__(self) -> None:
        m = self.model
        rest = np.setdiff1d(np.arange(len(self.test_y)), self.probe_idx)
        order = np.concatenate([self.probe_idx, rest])
        self.test_x = np.ascontiguousarray(self.test_x[order])
        self.test_y = self.test_y[order]
        self.n_probe = len(self.probe_idx)
        self.probe_x = self.test_x[: self.n_probe]
        # eval mode and probe mode agree where no layer depends on the batch or the step
        self.shared_forward = not m.norm_layers and not any(
            name.startswith("noise") for name, _ in m.named_layers
        )
        self.sites = layer_sites(m)
        threshold = F.ACTIVATIONS[m.activation].saturation_threshold
        self.saturation_threshold = threshold
        self.layers = [
            LayerRecord(
                index=i + 1,
                units=m.sizes[i + 1],
                sites={s: SiteRecord.empty(self.max_records, m.sizes[i + 1]) for s in sites},
                grad_norm=np.full(self.max_records, np.nan, dtype=STORE),
                update_ratio=np.full(self.max_records, np.nan, dtype=STORE),
                weight_norm=np.full(self.max_records, np.nan, dtype=STORE),
            )
            for i, sites in enumerate(self.sites)
        ]
        self.test_loss = np.full(self.max_records, np.nan, dtype=STORE)
        self.test_acc = np.full(self.max_records, np.nan, dtype=STORE)
        self._eval_steps: list[int] = []
        self._eval_acc: list[float] = []
        self._first: dict[tuple, Array] = {}  # per group of sites: first and previous record
        self._prev: dict[tuple, Array] = {}
        self._pct_pos = None

    def record(
        self,
        step: int,
        grad_norms: list[float] | None = None,
        update_ratios: list[float] | None = None,
        context: Any = None,
        seen: tuple[dict[str, Array], Array] | None = None,
    ) -> None:
        """Measure the model as it is now, after ``step`` updates; ``context`` (the step's
        batch and the net before the update) goes to the probes. ``seen`` is what the net
        makes of the probe batch (every layer's output, probe mode) and of ``test_x`` (logits,
        eval mode) when an engine has computed them already; else the model computes them."""
        r = len(self.steps)
        if r >= self.max_records:
            raise RuntimeError(f"more than {self.max_records} records")
        self.steps.append(step)
        m = self.model
        with np.errstate(invalid="ignore", over="ignore"):
            if seen is not None:
                trace, logits = seen
            else:
                trace, logits = self.look(m)
            for layer in self.layers:
                w = m.params[f"fc{layer.index}.weight"].ravel()
                layer.weight_norm[r] = np.sqrt(np.dot(w, w))
                if grad_norms is not None:
                    layer.grad_norm[r] = grad_norms[layer.index - 1]
                if update_ratios is not None:
                    layer.update_ratio[r] = update_ratios[layer.index - 1]
            self._measure(r, [(layer, site, trace[source]) for layer, sites in
                              zip(self.layers, self.sites, strict=True)
                              for site, source in sites.items()])  # fmt: skip
            self.test_loss[r] = F.cross_entropy(logits, self.test_y)
            hits = np.count_nonzero(logits.argmax(axis=1) == self.test_y)
            self.test_acc[r] = hits / len(self.test_y)
            for probe in self.probes:
                probe.measure(r, m, context)

    def evaluate(self, step: int, logits: Array | None = None) -> None:
        """Test accuracy alone after ``step`` updates (from the eval-mode logits of
        ``test_x`` when an engine has them, else from the model)."""
        if logits is None:
            was_training = self.model.training
            self.model.eval()
            with np.errstate(all="ignore"):
                logits = self.model.forward(self.test_x)
            self.model.train(was_training)
        self._eval_steps.append(step)
        self._eval_acc.append(np.count_nonzero(logits.argmax(axis=1) == self.test_y) / len(logits))

    def evaluations(self) -> tuple[Array, Array]:
        return np.asarray(self._eval_steps, dtype=np.int64), np.asarray(self._eval_acc, STORE)

    def look(self, m: MLP) -> tuple[dict[str, Array], Array]:
        """Every layer's output on the probe batch (probe mode) and the logits of the test
        split (eval mode); one forward serves both where the two modes agree."""
        p = self.n_probe
        with m.probe_mode():
            if self.shared_forward:
                logits, trace = m.forward_trace(self.test_x)
                return {name: z[:p] for name, z in trace.items()}, logits
            _, trace = m.forward_trace(self.probe_x)
        was_training = m.training
        m.eval()
        logits = m.forward(self.test_x)
        m.train(was_training)
        return trace, logits

    def _measure(self, r: int, sites: list[tuple[LayerRecord, str, Array]]) -> None:
        """Record r of every (layer, site, values) at once: sites of the same shape are
        stacked, so each measure is one numpy call for all of them, not one per site."""
        groups: dict[tuple[int, ...], list[tuple[LayerRecord, str, Array]]] = {}
        for item in sites:
            groups.setdefault(item[2].shape, []).append(item)
        for group in groups.values():
            z = np.stack([values for _, _, values in group])  # (S, P, U)
            by_unit = np.ascontiguousarray(z.transpose(0, 2, 1))  # (S, U, P)
            by_unit.sort(axis=2)  # each unit's values in order
            pooled = np.sort(z.reshape(len(group), -1), axis=1)  # (S, P * U)
            quantiles = sorted_quantiles(pooled, LEVELS)
            unit_pct = sorted_quantiles(by_unit, UNIT_LEVELS)
            # sums over the probe batch as a product with ones (BLAS: several times faster)
            ones = np.ones((1, z.shape[1]), dtype=z.dtype) / z.dtype.type(z.shape[1])
            mean = np.matmul(ones, z)[:, 0]  # (S, U)
            centred = z - mean[:, None, :]
            centred *= centred
            var = np.matmul(ones, centred)[:, 0]
            # pooled moments from per-unit ones: total variance = within + between units
            pooled_mean = mean.mean(axis=1, dtype=np.float64)
            pooled_var = (var + np.square(mean - pooled_mean[:, None])).mean(
                axis=1, dtype=np.float64
            )
            key = tuple((layer.index, site) for layer, site, _ in group)
            first = self._first.setdefault(key, pooled)
            prev = self._prev.get(key, pooled)
            self._prev[key] = pooled
            gap = np.subtract(pooled, prev)
            np.abs(gap, out=gap)
            drift_prev = np.matmul(gap, self._mean_weights(gap))
            np.subtract(pooled, first, out=gap)
            np.abs(gap, out=gap)
            drift_init = np.matmul(gap, self._mean_weights(gap))
            for s, (layer, site, _) in enumerate(group):
                rec = layer.sites[site]
                rec.quantiles[r], rec.unit_pct[r] = quantiles[s], unit_pct[s]
                rec.unit_mean[r], rec.unit_std[r] = mean[s], np.sqrt(var[s])
                rec.mean[r], rec.std[r] = pooled_mean[s], np.sqrt(pooled_var[s])
                rec.drift_prev[r], rec.drift_init[r] = drift_prev[s], drift_init[s]
                if site == "act_in":
                    rec.saturation[r] = self._saturation(pooled[s], by_unit[s])

    @staticmethod
    def _mean_weights(a: Array) -> Array:
        """A column of 1/n: a mean along the last axis as one BLAS product."""
        return np.full(a.shape[-1], 1.0 / a.shape[-1], dtype=a.dtype)

    def _saturation(self, pooled: Array, by_unit: Array) -> float:
        """sigmoid/tanh: fraction of probe values where the gradient is below 10% of its peak;
        ReLU: fraction of units that are off for every probe example (dead units)."""
        if self.saturation_threshold is not None:
            t = pooled.dtype.type(self.saturation_threshold)
            below, above = np.searchsorted(pooled, (-t, t), side="right")
            return (int(below) + pooled.size - int(above)) / pooled.size
        if self.model.activation == "relu":
            return float(np.count_nonzero(by_unit[:, -1] <= 0)) / by_unit.shape[0]
        return float("nan")

    def finalize(self) -> tuple[Array, list[LayerRecord], Array, Array, dict[str, Any]]:
        n = len(self.steps)
        return (
            np.asarray(self.steps, dtype=np.int64),
            [layer.truncated(n) for layer in self.layers],
            self.test_loss[:n],
            self.test_acc[:n],
            {probe.name: probe.result(n) for probe in self.probes},
        )


def grad_norms(grads: Mapping[str, Array], n_hidden: int) -> list[float]:
    """||dL/dW|| of every hidden Linear weight, from a net's gradients by parameter key."""
    return [float(np.linalg.norm(grads[f"fc{i}.weight"])) for i in range(1, n_hidden + 1)]


def hidden_weights(params: Mapping[str, Array], n_hidden: int) -> list[Array]:
    return [params[f"fc{i}.weight"].copy() for i in range(1, n_hidden + 1)]


def update_ratios(params: Mapping[str, Array], before: list[Array]) -> list[float]:
    """||W_after - W_before|| / ||W_before|| for every hidden Linear weight."""
    out = []
    for i, w0 in enumerate(before, start=1):
        w1 = params[f"fc{i}.weight"]
        denom = float(np.linalg.norm(w0))
        out.append(float(np.linalg.norm(w1 - w0)) / denom if denom > 0 else float("nan"))
    return out
