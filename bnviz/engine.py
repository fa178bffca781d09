"""The training engines and the loop that drives them.

An engine steps a list of runs (``bnviz.train.Run``): each run holds its config, its reference
net (``bnviz.nn.MLP``), batches, records and losses; the engine holds whatever makes the steps.

- ``FastEngine``: K runs of one architecture as stacked arrays, whole chunks of steps in the
  compiled kernels of ``bnviz.fast``. ``train``, ``train_arms`` and ``sweep`` all use it (a
  single run is K = 1), so they agree by construction.
- ``ReferenceEngine``: each run's own ``MLP`` and ``optim.SGD``, one step at a time in plain
  Python: the readable definition the fast engine is tested against.
- ``bnviz.reference.torch.TorchEngine``: the same with PyTorch modules (CPU or CUDA).

``drive`` advances engines in lockstep and takes the records: at a record step it stops after
the backward pass, lets the recorder see the gradients and the weights before the update
(gradient norms, update ratios, and the probes' "before" state), updates, and records.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bnviz import fast
from bnviz.blas import single_threaded_blas
from bnviz.fast import O_C, O_LOGITS
from bnviz.optim import SGD, learning_rate
from bnviz.record import grad_norms, hidden_weights, update_ratios

Array = np.ndarray
Progress = Callable[[int, int], None]
DIVERGENCE_FACTOR = 100.0  # a loss this many times the first one (max 1) counts as diverged
LOOK_ROWS = 512  # test rows a record's eval-mode forward takes at once

# What may differ between the runs of one stack: numbers that change the weights or the steps,
# never the shapes, the layers or the data. Every other TrainConfig field must be shared.
SWEPT = (
    "lr",
    "schedule",
    "lr_decay",
    "decay_steps",
    "momentum",
    "weight_decay",
    "init",
    "init_std",
    "init_scale",
    "seed",
)


@dataclass
class StepContext:
    """What the probes see of a record step t: its batch, the net before the update (with its
    gradients on that batch) and the rate of the step."""

    step: int
    x: Array
    y: Array
    before: Any  # an MLP clone at theta_t
    grads: dict[str, Array]  # dL/dtheta at theta_t on this batch
    lr: float


def rates(runs: Sequence[Any], t: int, n: int) -> Array:
    """(n, K) learning rates of steps t .. t + n - 1."""
    out = np.empty((n, len(runs)))
    for k, run in enumerate(runs):
        cfg = run.cfg
        out[:, k] = [
            learning_rate(s, cfg.lr, cfg.schedule, cfg.lr_decay, cfg.decay_steps)
            for s in range(t, t + n)
        ]
    return out


class Engine:
    """What ``drive`` needs of an engine. Subclasses provide ``forward_backward``, ``update``
    and ``sync``; ``steps`` defaults to one step at a time."""

    runs: list[Any]

    @property
    def live(self) -> list[int]:
        """Indices of the runs still training."""
        return [k for k, run in enumerate(self.runs) if not run.done]

    def forward_backward(self, t: int) -> list[int]:
        """Step t's forward and backward for every live run (the divergence rule applied, the
        loss kept); returns the runs that go on to their update."""
        raise NotImplementedError

    def update(self, t: int, ks: list[int]) -> None:
        """Step t's SGD update of runs ks (after ``forward_backward``); their ``t`` advances."""
        raise NotImplementedError

    def sync(self, k: int, grads: bool = False) -> None:
        """Bring run k's reference net up to date (parameters, statistics, counters)."""
        raise NotImplementedError

    def steps(self, t: int, n: int) -> None:
        for s in range(t, t + n):
            ks = self.forward_backward(s)
            self.update(s, ks)

    def record_step(self, t: int) -> None:
        """Step t with its record after the update (and the probes' view of it)."""
        ks = self.forward_backward(t)
        before = {}
        for k in ks:
            run = self.runs[k]
            n = run.model.n_hidden
            params, grads = self.arrays(k)
            ctx = None
            if run.recorder.probes:
                self.sync(k, grads=True)
                x, y = self.batch(k, t)
                ctx = StepContext(
                    step=t,
                    x=x,
                    y=y,
                    before=run.model.clone(),
                    grads={key: g.copy() for key, g in run.model.grads.items()},
                    lr=rates([run], t, 1)[0, 0],
                )
            before[k] = grad_norms(grads, n), hidden_weights(params, n), ctx
        self.update(t, ks)
        for k in ks:
            self.sync(k)
            norms, weights, ctx = before[k]
            run = self.runs[k]
            ratios = update_ratios(run.model.params, weights)
            run.recorder.record(t + 1, norms, ratios, ctx, self.seen(k))

    def evaluate(self, t: int) -> None:
        """Test accuracy alone, after step t, of every run that asks for it there."""
        for k, run in enumerate(self.runs):
            if not run.done and run.t == t + 1 and run.is_eval_step(t + 1):
                self.sync(k)
                run.recorder.evaluate(t + 1, self.logits(k))

    def arrays(self, k: int) -> tuple[dict[str, Array], dict[str, Array]]:
        """Run k's parameters and gradients by key as they are now."""
        self.sync(k, grads=True)
        model = self.runs[k].model
        return model.params, model.grads

    def seen(self, k: int) -> tuple[dict[str, Array], Array] | None:
        """What run k's net makes of its recorder's probe batch and test split, if this engine
        computes it (else the recorder asks the reference net)."""
        return None

    def logits(self, k: int) -> Array | None:
        """Run k's eval-mode logits of its recorder's test split, if this engine computes
        them (else the recorder asks the reference net)."""
        return None

    def batch(self, k: int, t: int) -> tuple[Array, Array]:
        """Run k's batch of the step just taken (for the probes)."""
        rows = self._last_rows[k]
        run = self.runs[k]
        return run.x[rows], run.y[rows]


def forwards_done(run: Any) -> int:
    """Forward passes the run has taken: its steps, and the one that diverged."""
    return run.t + (run.diverged_at is not None)


def set_counters(model: Any, forwards: int) -> None:
    """BN's ``num_batches_tracked`` and the noise and dropout counters after ``forwards``."""
    for _, bn in model.norm_layers:
        bn.num_batches_tracked = forwards
    for layer in model.stepped_layers():
        layer.step = forwards


# --------------------------------------------------------------------------- fast


class FastEngine(Engine):
    """K runs of one architecture as stacked arrays in the kernels of ``bnviz.fast``."""

    def __init__(self, runs: Sequence[Any]) -> None:
        self.runs = list(runs)
        check_stackable([run.cfg for run in self.runs])
        first = self.runs[0]
        cfg = first.cfg
        self.layout = lay = fast.Layout.of(first.model, cfg.batch_size)
        k = len(self.runs)
        dtype = first.model.dtype
        self.P = np.stack([lay.pack(run.model) for run in self.runs]).astype(dtype)
        self.G = np.zeros_like(self.P)
        self.V = np.zeros_like(self.P)
        self.R = np.zeros((k, lay.n_running), dtype=dtype)
        for i, run in enumerate(self.runs):
            for name, (om, ov) in lay.running.items():
                bn = run.model.layers[name]
                self.R[i, om : om + bn.num_features] = bn.running_mean
                self.R[i, ov : ov + bn.num_features] = bn.running_var
        self.B = np.zeros((k, lay.n_buffer), dtype=dtype)
        self.X, self.Y = first.x, first.y
        self.momentum = np.array([run.cfg.momentum for run in self.runs], dtype=np.float64)
        self.weight_decay = np.array([run.cfg.weight_decay for run in self.runs])
        self.active = np.array([not run.done for run in self.runs], dtype=np.uint8)
        self.limit = np.full(k, -1.0)
        self.diverged_at = np.full(k, -1, dtype=np.int64)
        keys = [fast.stream_keys(run.model, lay) for run in self.runs]
        self.noise_keys = np.ascontiguousarray(np.stack([n for n, _ in keys]))
        self.drop_keys = np.ascontiguousarray(np.stack([d for _, d in keys]))
        self.samplers: dict[int, Any] = {}
        for run in self.runs:
            self.samplers.setdefault(run.cfg.seed, run.sampler)
        self._last_rows: list[Array] = [np.empty(0, dtype=np.int64)] * k
        self._pending: set[int] = set()  # runs whose forward of step run.t awaits its update
        # the recorders' batches go through a layout of their own (probe batch, test chunks)
        rec = first.recorder
        self.look_rows = max(rec.n_probe, min(len(rec.test_y), LOOK_ROWS))
        self.look = fast.Layout.of(first.model, self.look_rows)
        self.L = np.zeros((k, self.look.n_buffer), dtype=dtype)
        self.look_x = np.ascontiguousarray(rec.test_x, dtype=dtype)
        self._sources = _trace_columns(first.model)

    def _batches(self, n: int) -> Array:
        """The next n batches of every run, (n, K, m). Runs that share a seed share one batch
        stream (their own samplers would repeat it), advanced once per step."""
        streams = {seed: s.take(n) for seed, s in self.samplers.items()}
        return np.ascontiguousarray(
            np.stack([streams[run.cfg.seed] for run in self.runs], axis=1), dtype=np.int64
        )

    def _run(self, t: int, n: int, update: bool) -> None:
        lay = self.layout
        idx = self._batches(n)
        lrs = rates(self.runs, t, n)
        losses = np.empty((n, len(self.runs)))
        fast.steps(
            n, t, self.P, self.G, self.V, self.R, self.B, lay.hidden, lay.output, self.X,
            self.Y, idx, lrs, self.momentum, self.weight_decay, self.active, self.limit,
            losses, self.diverged_at, lay.act, lay.norm, lay.after, lay.eps, lay.momentum,
            np.array(lay.noise), self.noise_keys, lay.dropout, self.drop_keys, update,
            DIVERGENCE_FACTOR,
        )  # fmt: skip
        self._last_rows = list(idx[-1])
        for k, run in enumerate(self.runs):
            if run.done:
                continue
            d = int(self.diverged_at[k])
            if d >= 0:
                run.loss[t:d] = losses[: d - t, k]
                run.diverged_at, run.t = d, d
            else:
                run.loss[t : t + n] = losses[:, k]
                if update:
                    run.t = t + n

    def steps(self, t: int, n: int) -> None:
        self._run(t, n, update=True)

    def forward_backward(self, t: int) -> list[int]:
        self._run(t, 1, update=False)
        ks = [k for k in range(len(self.runs)) if self.active[k]]
        self._pending = set(ks)
        return ks

    def update(self, t: int, ks: list[int]) -> None:
        lrs = rates(self.runs, t, 1)[0]
        fast.sgd(t, self.P, self.G, self.V, lrs, self.momentum, self.weight_decay, self.active)
        for k in ks:
            self.runs[k].t = t + 1
        self._pending = set()

    def arrays(self, k: int) -> tuple[dict[str, Array], dict[str, Array]]:
        """Views of row k of the stacked parameters and gradients (nothing copied)."""
        lay = self.layout

        def views(a: Array) -> dict[str, Array]:
            return {
                key: a[k, lay.offsets[key] : lay.offsets[key] + math.prod(lay.shapes[key])].reshape(
                    lay.shapes[key]
                )
                for key in lay.keys
            }

        return views(self.P), views(self.G)

    def sync(self, k: int, grads: bool = False) -> None:
        run, lay = self.runs[k], self.layout
        model = run.model
        lay.unpack(self.P[k], model)
        if grads:
            for key in lay.keys:
                off, shape = lay.offsets[key], lay.shapes[key]
                model.grads[key][...] = self.G[k, off : off + model.grads[key].size].reshape(shape)
        for name, (om, ov) in lay.running.items():
            bn = model.layers[name]
            bn.running_mean[...] = self.R[k, om : om + bn.num_features]
            bn.running_var[...] = self.R[k, ov : ov + bn.num_features]
        set_counters(model, forwards_done(run) + (k in self._pending))

    def seen(self, k: int) -> tuple[dict[str, Array], Array]:
        """Probe mode on the probe batch (the first rows of the recorder's test split), then
        eval mode on the whole split in chunks: the layer outputs and the logits, computed by
        the kernels from row k (a record's forward passes cost what a step's do)."""
        rec = self.runs[k].recorder
        p = rec.n_probe
        trace: dict[str, Array] = {}

        def first_chunk() -> None:
            nonlocal trace
            if rec.shared_forward:  # eval mode is probe mode for this net
                trace = self._trace(k, p)

        logits = self.logits(k, first_chunk)
        if not rec.shared_forward:
            self._forward(k, np.arange(p, dtype=np.int64), fast.PROBE)
            trace = self._trace(k, p)
        return trace, logits

    def logits(self, k: int, after_first: Callable[[], None] | None = None) -> Array:
        """Eval mode on the recorder's whole test split, in chunks of ``look_rows``."""
        n = len(self.look_x)
        c = int(self.look.output[O_C])
        logits = np.empty((n, c), dtype=self.P.dtype)
        off = int(self.look.output[O_LOGITS])
        for start in range(0, n, self.look_rows):
            rows = np.arange(start, min(n, start + self.look_rows), dtype=np.int64)
            self._forward(k, rows, fast.EVAL)
            logits[rows] = self.L[k, off : off + len(rows) * c].reshape(len(rows), c)
            if start == 0 and after_first is not None:
                after_first()
        return logits

    def _forward(self, k: int, rows: Array, mode: int) -> None:
        lay = self.look
        fast.forward_only(
            k, self.P, self.R, self.L, lay.hidden, lay.output, self.look_x, self.Y, rows,
            forwards_done(self.runs[k]), lay.act, lay.norm, lay.after, lay.eps,
            np.array(lay.noise), self.noise_keys, lay.dropout, self.drop_keys, mode,
        )  # fmt: skip

    def _trace(self, k: int, p: int) -> dict[str, Array]:
        """The first p rows of every recorded layer output in the look buffers."""
        lay, trace = self.look, {}
        for name, (li, col) in self._sources.items():
            d = int(lay.hidden[li, fast.C_OUT])
            off = int(lay.hidden[li, col])
            trace[name] = self.L[k, off : off + p * d].reshape(p, d).copy()
        return trace


def _trace_columns(model: Any) -> dict[str, tuple[int, int]]:
    """Layer name -> (hidden layer, buffer column) of the outputs the recorder measures."""
    columns = {"fc": fast.C_Z, "bn": fast.C_N, "ln": fast.C_N, "gn": fast.C_N,
               "noise": fast.C_NS, "act": fast.C_A}  # fmt: skip
    out = {}
    for li, names in enumerate(model.blocks):
        for name in names:
            kind = name.rstrip("0123456789")
            if kind in columns:
                out[name] = (li, columns[kind])
    return out


def check_stackable(configs: Sequence[Any]) -> None:
    """ValueError naming the first field, other than those of ``SWEPT``, that differs."""
    first = configs[0].as_dict()
    for i, cfg in enumerate(configs[1:], start=1):
        for name, value in cfg.as_dict().items():
            if name not in SWEPT and value != first[name]:
                raise ValueError(
                    f"configs[{i}].{name} = {value!r} differs from configs[0].{name} = "
                    f"{first[name]!r}: runs of one stack may differ only in {', '.join(SWEPT)}"
                )


# --------------------------------------------------------------------------- reference


class ReferenceEngine(Engine):
    """Every run's own reference net and ``optim.SGD``, one step at a time: the readable
    training loop (model.loss, model.backward, opt.step)."""

    def __init__(self, runs: Sequence[Any]) -> None:
        self.runs = list(runs)
        self.opts = [
            SGD(
                list(run.model.params.values()),
                list(run.model.grads.values()),
                lr=run.cfg.lr,
                momentum=run.cfg.momentum,
                weight_decay=run.cfg.weight_decay,
            )
            for run in self.runs
        ]
        self._last_rows = [np.empty(0, dtype=np.int64)] * len(self.runs)

    def forward_backward(self, t: int) -> list[int]:
        ks = []
        for k in self.live:
            run = self.runs[k]
            rows = self._last_rows[k] = run.sampler.next()
            if run.accept(t, run.model.loss(run.x[rows], run.y[rows])):
                run.model.backward()
                ks.append(k)
        return ks

    def update(self, t: int, ks: list[int]) -> None:
        for k in ks:
            run = self.runs[k]
            cfg = run.cfg
            self.opts[k].step(learning_rate(t, cfg.lr, cfg.schedule, cfg.lr_decay, cfg.decay_steps))
            run.t = t + 1

    def sync(self, k: int, grads: bool = False) -> None:
        """The reference net is the state itself: nothing to copy."""


# --------------------------------------------------------------------------- the loop


def drive(engines: Engine | Sequence[Engine], progress: Progress | None = None) -> None:
    """Advance engines in lockstep to the end of their runs, records at record steps, in
    chunks of at most 500 steps with ``progress(steps done, total)`` between chunks."""
    engines = [engines] if isinstance(engines, Engine) else list(engines)
    runs = [run for e in engines for run in e.runs]
    total = max(run.cfg.steps for run in runs)
    chunk = max(1, min(500, total // 100))
    if progress:
        progress(0, total)
    t = 0
    with single_threaded_blas(), np.errstate(all="ignore"):
        while t < total and any(e.live for e in engines):
            end = min(t + chunk, total)
            while t < end:
                active = [e for e in engines if e.live]
                if not active:
                    break
                record = min(_next_record(e, t) for e in active)
                evaluation = min(_next_eval(e, t) for e in active)
                stop = min(record, end, evaluation + 1)
                if stop > t:
                    _timed(active, lambda e, t=t, n=stop - t: e.steps(t, min(n, _left(e, t))))
                    t = stop
                    if t - 1 == evaluation:
                        for e in active:
                            _timed([e], lambda e, s=t - 1: e.evaluate(s))
                if t == record and t < end:
                    for e in active:
                        if _next_record(e, t) == t:
                            _timed([e], lambda e, t=t: e.record_step(t))
                        elif _left(e, t):
                            _timed([e], lambda e, t=t: e.steps(t, 1))
                    t += 1
            if progress:
                progress(min(total, max(run.t for run in runs)), total)
    for e in engines:
        for k in range(len(e.runs)):
            e.sync(k)


def _left(engine: Engine, t: int) -> int:
    return max(0, max(run.cfg.steps for run in engine.runs) - t)


def _next_record(engine: Engine, t: int) -> int:
    """The first step index s >= t after which the engine's runs record (their last step at
    the latest)."""
    cfg = engine.runs[0].cfg
    every, steps = cfg.record_every, cfg.steps
    s = ((t + 1 + every - 1) // every) * every - 1
    return min(s, steps - 1) if t < steps else t


def _next_eval(engine: Engine, t: int) -> int:
    """The first step index s >= t after which the engine's runs measure test accuracy alone
    (a large number when they do not)."""
    cfg = engine.runs[0].cfg
    if not cfg.eval_every:
        return 1 << 62
    s = ((t + 1 + cfg.eval_every - 1) // cfg.eval_every) * cfg.eval_every - 1
    while s + 1 <= (cfg.eval_until or cfg.steps):
        if engine.runs[0].is_eval_step(s + 1):
            return s
        s += cfg.eval_every
    return 1 << 62


def _timed(engines: Sequence[Engine], call: Callable[[Engine], None]) -> None:
    """Run the call per engine and share its wall time among the engine's live runs."""
    for e in engines:
        live = [e.runs[k] for k in e.live]
        start = time.perf_counter()
        call(e)
        share = (time.perf_counter() - start) / max(1, len(live))
        for run in live:
            run.seconds += share


def drive_all(runs: Sequence[Any], progress: Progress | None = None) -> None:
    """Train runs of any architectures: one ``FastEngine`` per stackable group, all driven in
    lockstep."""
    groups: dict[str, list[Any]] = {}
    for run in runs:
        key = repr({k: v for k, v in run.cfg.as_dict().items() if k not in SWEPT})
        groups.setdefault(key, []).append(run)
    drive([FastEngine(group) for group in groups.values()], progress)
