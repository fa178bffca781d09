"""Lesson "Why does BN work? The debate": the measures of Santurkar et al. (2018) on a real MLP.

Four arms train from the same initial Linear weights on the same batches: plain, BN, noisy BN
(their Algorithm 1 after every BN layer) and plain + the same noise. At every record step the
engine's probes measure internal covariate shift as gradient change (their Definition 2.1,
probe ``ics``) and the loss landscape along the step's gradient (their Section 3.2, probe
``landscape``); the distributions are recorded as in the drift lesson.

The landscape is probed at theta - eta g for eta in [1/2, 4] x the step size, capped below the
rate at which the plain net diverges. That rate is found first by a run of its own (``Cap``): the
plain net trained briefly at each of the probe's step sizes.

Everything a page says about a run is computed here from the run (``scoreboard``, ``findings``),
so the words and the numbers cannot disagree.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from bnviz import fanout
from bnviz.experiment import Executor, Experiment, Progress
from bnviz.export import csv_table, npz_bytes, padded
from bnviz.measure.landscape import N_ETAS
from bnviz.store import arms_from_npz, arms_to_npz
from bnviz.train import Arms, History, TrainConfig, load_data

Array = np.ndarray

TARGET_ACC = 0.9  # "steps to 90% test accuracy"
CLOSE_ACC = 0.03  # accuracies within 3 points are "about as well"
MAX_STEPS = 5000
MAX_PROBES = 200  # probe points per run at most: each costs about a dozen forward passes
ETA_RANGE = (0.5, 4.0)  # the paper's landscape range, x the step size (VGG)
CAP_STEPS = 300  # steps of each plain run that looks for the divergence rate
CAP_MARGIN = 0.9  # "slightly below" the rate where the plain net diverges
PROBES = ("ics", "landscape")
ARMS = ("plain", "BN", "noisy BN", "plain + noise")
GROUPS = (("noisy BN", "plain"), ("plain + noise", "BN"))  # the arms each worker trains
NOISE = (0.25, 4.0)  # the noise strength slider (1 = the paper's constants)
SIMILAR = 1.25  # two measures within this factor of each other are "similar"
STALL_FRACTION = 0.9  # a final loss above this fraction of chance level: "stalled"

DEFAULTS = dict(
    lr=1.0,
    noise=1.0,
    activation="sigmoid",
    depth=3,
    width=100,
    init="gaussian",
    steps=2000,
    probe_every=50,
    seed=0,
)

PRESETS = {
    "Paper constants": dict(DEFAULTS),
    "Strong noise": dict(DEFAULTS, noise=3.0),
    "High learning rate": dict(DEFAULTS, lr=10.0),
    "Deep linear net": dict(
        DEFAULTS, activation="linear", depth=8, width=64, init="glorot", lr=0.05, steps=1000
    ),
}
PRESET_HELP = {
    "Paper constants": "Noisy BN with Santurkar et al.'s constants (n_mu 0.5, n_sigma 1.25, "
    "r_mu = r_sigma = 0.1); 3 x 100 sigmoid units, small Gaussian init, rate 1",
    "Strong noise": "The same noise three times as strong: mean shifts up to 1.5, scales up "
    "to 1.75",
    "High learning rate": "Every arm at rate 10",
    "Deep linear net": "8 linear layers of 64 units (no nonlinearity), as in the paper's deep "
    "linear net experiment (theirs had 25)",
}


# --------------------------------------------------------------------------- configs


def check_steps(steps: int) -> None:
    if not 1 <= steps <= MAX_STEPS:
        raise ValueError(f"steps must be in [1, {MAX_STEPS:,}]; got {steps}")


def record_every(steps: int, probe_every: int) -> int:
    """The probe interval: as asked, or wider where that would exceed MAX_PROBES points."""
    return max(int(probe_every), -(-int(steps) // MAX_PROBES))


def base_config(
    lr: float,
    activation: str,
    depth: int,
    width: int,
    init: str,
    steps: int,
    probe_every: int,
    seed: int,
    landscape: tuple[float, float] = ETA_RANGE,
) -> TrainConfig:
    """The arms' shared config: digits, batch 60, plain SGD; the small Gaussian init is the
    BN paper's (std 0.01). float32 for speed; the probes compute in the net's dtype."""
    check_steps(steps)
    return TrainConfig(
        dataset="digits",
        hidden=(int(width),) * int(depth),
        activation=activation,
        init=init,
        init_std=0.01,
        lr=float(lr),
        batch_size=60,
        steps=int(steps),
        record_every=record_every(steps, probe_every),
        seed=int(seed),
        probes=PROBES,
        landscape=landscape,
    )


def eta_grid(lo: float, hi: float) -> Array:
    """The step sizes (x lr) the landscape probe visits for a range: the probe's own grid."""
    return np.geomspace(lo, hi, N_ETAS)


@dataclass(frozen=True)
class Cap:
    """Where the plain net diverges: one short plain run at each step size the landscape probe
    would visit, lr x eta for eta on the [1/2, 4] grid, from the arms' start and batches."""

    base: TrainConfig  # the plain net (norm none, no noise, no probes)

    def __post_init__(self) -> None:
        steps = min(self.base.steps, CAP_STEPS)
        plain = replace(
            self.base, norm="none", bn_noise=0.0, probes=(), steps=steps, record_every=steps
        )
        object.__setattr__(self, "base", plain)
        top = self.base.lr * ETA_RANGE[1]
        if top > 1e3:
            raise ValueError(f"the landscape's largest step, 4 x lr = {top:g}, exceeds 1000")

    @property
    def multiples(self) -> Array:
        return eta_grid(*ETA_RANGE)

    def configs(self) -> list[TrainConfig]:
        return [replace(self.base, lr=float(self.base.lr * m)) for m in self.multiples]

    def as_dict(self) -> dict[str, Any]:
        return {"kind": "cap", "base": self.base.as_dict()}


@dataclass
class CapResult:
    """The plain runs at each step size and the landscape range they allow."""

    lr: float  # the arms' learning rate
    multiples: Array  # (N,) step sizes tried, x lr
    diverged_at: Array  # (N,) step at which each plain run diverged, -1 if it did not
    steps: int  # steps each was given

    @property
    def first_diverging(self) -> float | None:
        """The smallest multiple of lr at which the plain net diverged (None: at none)."""
        hits = np.flatnonzero(self.diverged_at >= 0)
        return float(self.multiples[hits[0]]) if len(hits) else None

    @property
    def landscape(self) -> tuple[float, float]:
        """The probe's range, x lr: [1/2, 4], or capped at CAP_MARGIN x the first diverging
        step size (its bottom lowered where needed to keep at least a factor of 2)."""
        m = self.first_diverging
        if m is None:
            return ETA_RANGE
        hi = CAP_MARGIN * m
        lo = min(ETA_RANGE[0], hi / 2)
        return (float(f"{lo:.6g}"), float(f"{hi:.6g}"))

    @property
    def capped(self) -> bool:
        return self.landscape != ETA_RANGE

    def describe(self) -> str:
        """The cap in one sentence, from the runs."""
        tried = f"{self.multiples[0] * self.lr:g} to {self.multiples[-1] * self.lr:g}"
        m = self.first_diverging
        if m is None:
            return (
                f"Trained alone for {self.steps:,} steps at each step size from {tried}, the "
                f"plain net diverged at none of them, so the range [1/2, 4] x lr needs no cap."
            )
        lo, hi = self.landscape
        return (
            f"Trained alone for {self.steps:,} steps at step sizes from {tried}, the plain net "
            f"first diverged at {m * self.lr:.3g} ({m:.3g} x lr), so the range is capped just "
            f"below it: [{lo:.3g}, {hi:.3g}] x lr."
        )


@dataclass(frozen=True)
class Debate:
    """The four arms: plain, BN, noisy BN (noise strength ``noise``), plain + the same noise."""

    base: TrainConfig
    noise: float = 1.0

    def __post_init__(self) -> None:
        check_steps(self.base.steps)
        lo, hi = NOISE
        if not (isinstance(self.noise, int | float) and lo <= self.noise <= hi):
            raise ValueError(f"noise must be a strength in [{lo:g}, {hi:g}]; got {self.noise!r}")
        if tuple(self.base.probes) != PROBES:
            object.__setattr__(self, "base", replace(self.base, probes=PROBES))

    def arms(self) -> dict[str, dict[str, Any]]:
        s = float(self.noise)
        return {
            "plain": {"norm": "none", "bn_noise": 0.0},
            "BN": {"norm": "batch", "bn_noise": 0.0},
            "noisy BN": {"norm": "batch", "bn_noise": s},
            "plain + noise": {"norm": "none", "bn_noise": s},
        }

    def as_dict(self) -> dict[str, Any]:
        return {"kind": "arms", "base": self.base.as_dict(), "noise": float(self.noise)}


def configs(values: dict[str, Any], landscape: tuple[float, float] = ETA_RANGE) -> Debate:
    """The arms from a page's control values (and the landscape range their cap allows)."""
    names = ("lr", "activation", "depth", "width", "init", "steps", "probe_every", "seed")
    base = base_config(**{k: values[k] for k in names}, landscape=landscape)
    return Debate(base, values["noise"])


def cap_config(values: dict[str, Any]) -> Cap:
    return Cap(configs(values).base)


# --------------------------------------------------------------------------- running


def run(
    cfg: Debate | Cap, progress: Progress | None = None, executor: Executor | None = None
) -> Arms | CapResult:
    """The arms (each in its own worker with an executor), or the cap's plain runs."""
    if isinstance(cfg, Cap):
        hists = fanout.sweep(cfg.configs(), _per_run(progress, N_ETAS), executor, workers=2)
        return CapResult(
            lr=cfg.base.lr,
            multiples=cfg.multiples,
            diverged_at=np.array([-1 if h.diverged_at is None else h.diverged_at for h in hists]),
            steps=cfg.base.steps,
        )
    if isinstance(cfg, Debate):
        arms = train_arms(cfg, progress, executor)
        return Arms({h.label: replace(h, final_state={}) for h in arms})
    raise TypeError(f"not a debate experiment: {cfg!r}")


def train_group(
    base: TrainConfig,
    arms: dict[str, dict],
    labels: Sequence[str],
    progress: Progress | None = None,
) -> list[History]:
    """Some of the arms, one after the other in this process, each equal to that arm of
    ``train_arms(base, arms)`` (``fanout.train_arm``); progress counts the steps of all."""
    out = []
    for i, label in enumerate(labels):
        report = None
        if progress is not None:

            def report(done: int, total: int, i: int = i) -> None:
                progress(i * total + done, len(labels) * total)

        out.append(fanout.train_arm(base, arms, label, report))
    return out


def train_arms(
    cfg: Debate, progress: Progress | None = None, executor: Executor | None = None
) -> Arms:
    """The four arms from one start on the same batches. With an executor they train in
    two worker processes, a plain and a noisy arm in each (the noise costs about as much again as
    a step, so the two shares take about as long): a two-core server keeps its two warm
    trainers busy rather than starting four processes that would share the same two cores."""
    arms = cfg.arms()
    if executor is None:
        return fanout.arms(cfg.base, arms, progress)
    steps = cfg.base.steps
    done = [0] * len(GROUPS)

    def relay(j: int, values: tuple) -> None:
        done[j] = values[0]
        if progress:
            progress(sum(done) // len(ARMS), steps)

    if progress:
        progress(0, steps)
    calls = [(train_group, (cfg.base, arms, group), {}) for group in GROUPS]
    shares = executor.run_many(calls, relay, size=len(GROUPS))
    if progress:
        progress(steps, steps)
    by_label = {h.label: h for share in shares for h in share}
    return Arms({label: by_label[label] for label in ARMS})


def _per_run(progress: Progress | None, n: int) -> Progress | None:
    """Progress in steps of one run, where the sweep counts the steps of all n."""
    if progress is None:
        return None
    return lambda done, total: progress(done // n, total // n)


def result_to_npz(result: Arms | CapResult) -> bytes:
    """A result of ``run`` as an npz file (how the page's default run ships): the arms as
    ``bnviz.store`` writes them, or the cap's few numbers."""
    if isinstance(result, CapResult):
        return npz_bytes(
            {
                "kind": np.array("CapResult"),
                "lr": np.array(result.lr),
                "multiples": result.multiples,
                "diverged_at": result.diverged_at,
                "steps": np.array(result.steps),
            }
        )
    return arms_to_npz(result)


def result_from_npz(raw: bytes) -> Arms | CapResult:
    """Back from ``result_to_npz``; never unpickles."""
    with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    if str(arrays.get("kind", "")) != "CapResult":
        return arms_from_npz(raw)
    return CapResult(
        lr=float(arrays["lr"]),
        multiples=arrays["multiples"],
        diverged_at=arrays["diverged_at"],
        steps=int(arrays["steps"]),
    )


EXPERIMENT = Experiment(
    "debate",
    run,
    processes=len(GROUPS),
    shipped={  # the page's default view (the cap, then the arms), so it waits for no training
        "debate-default-cap": cap_config(DEFAULTS),
        "debate-default": configs(DEFAULTS),  # the default needs no cap: the full range
    },
    encode=result_to_npz,
    decode=result_from_npz,
)


# --------------------------------------------------------------------------- measures


def steps_to_accuracy(h: History, target: float = TARGET_ACC) -> int | None:
    """The first recorded step whose test accuracy reaches the target (None if never)."""
    hits = np.flatnonzero(h.test_acc >= target)
    return int(h.record_steps[hits[0]]) if len(hits) else None


def unit_drift(h: History, layer: int) -> Array:
    """(R,) per-unit drift of a layer's activation input: the mean over units and over the
    15th, 50th and 85th percentiles of how far each moved since the previous record (a
    three-point 1-Wasserstein distance per unit, averaged); NaN at the first record."""
    pct = h.layers[layer - 1].sites["act_in"].unit_pct.astype(np.float64)  # (R, U, 3)
    out = np.full(len(pct), np.nan)
    if len(pct) > 1:
        with np.errstate(invalid="ignore"):
            out[1:] = np.nanmean(np.abs(np.diff(pct, axis=0)), axis=(1, 2))
    return out


def layer_drift(h: History, layer: int) -> Array:
    """(R,) the drift lesson's number: W1 of the layer's pooled activation input to the previous
    record (0 at the first)."""
    return h.layers[layer - 1].sites["act_in"].drift_prev.astype(np.float64)


def _mean(values: Any) -> float:
    a = np.asarray(values, dtype=np.float64)
    a = a[np.isfinite(a)]
    return float(a.mean()) if a.size else math.nan


@dataclass(frozen=True)
class Score:
    """One arm's line of the scoreboard: the numbers each story argues from."""

    label: str
    final_acc: float
    steps_to_target: int | None
    diverged_at: int | None
    learned: bool  # neither diverged nor stalled (final loss still near chance level)
    layer_drift: float  # mean over layers and records of the pooled W1 to the previous record
    unit_drift: float  # mean over layers and records of the per-unit drift
    grad_change: float  # mean over layers 2..L and records of ||G - G'||
    grad_rel: float  # the same over ||G||
    grad_cos: float  # mean over layers 2..L and records of cos(G, G')
    loss_range: float  # mean over records of the loss range along the gradient
    predictiveness: float  # mean over records of max ||grad(theta - eta g) - g||
    beta: float  # mean over records of the effective beta-smoothness


def learned(h: History) -> bool:
    """The run neither diverged nor stalled: its mean loss over the last 10% of its steps is
    below STALL_FRACTION of chance level (the loss of a uniform guess, log of the classes)."""
    if h.diverged_at is not None or len(h.loss) == 0:
        return False
    tail = h.loss[-max(1, len(h.loss) // 10) :]
    return float(np.mean(tail)) < STALL_FRACTION * math.log(load_data(h.config).n_classes)


def score(h: History) -> Score:
    n = len(h.layers)
    ics, land = h.probes["ics"], h.probes["landscape"]
    upper = slice(1, None)  # layer 1 has nothing below it: G' = G there by definition
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = ics.grad_change[:, upper] / ics.grad_norm[:, upper]
    return Score(
        label=h.label,
        final_acc=float(h.test_acc[-1]) if len(h.test_acc) else math.nan,
        steps_to_target=steps_to_accuracy(h),
        diverged_at=h.diverged_at,
        learned=learned(h),
        layer_drift=_mean([layer_drift(h, i)[1:] for i in range(1, n + 1)]),
        unit_drift=_mean([unit_drift(h, i)[1:] for i in range(1, n + 1)]),
        grad_change=_mean(ics.grad_change[:, upper]) if n > 1 else math.nan,
        grad_rel=_mean(rel) if n > 1 else math.nan,
        grad_cos=_mean(ics.grad_cos[:, upper]) if n > 1 else math.nan,
        loss_range=_mean(land.loss_range),
        predictiveness=_mean(land.predictiveness),
        beta=_mean(land.beta_smoothness),
    )


def scoreboard(arms: Arms) -> list[Score]:
    return [score(h) for h in arms]


# --------------------------------------------------------------------------- words from runs


def pct(v: float) -> str:
    return "—" if not math.isfinite(v) else f"{v:.1%}"


def num(v: float) -> str:
    if not math.isfinite(v):
        return "—"
    return f"{v:.3g}"


def compare(a: float, b: float) -> str:
    """ "larger", "smaller" or "similar": a against b, similar within a factor SIMILAR."""
    if not (math.isfinite(a) and math.isfinite(b)) or a <= 0 or b <= 0:
        return "not comparable"
    if a > b * SIMILAR:
        return "larger"
    if b > a * SIMILAR:
        return "smaller"
    return "similar"


def ratio(a: float, b: float) -> str:
    """a / b as "3.2x" or "260x", or "—"."""
    if not (math.isfinite(a) and math.isfinite(b)) or a < 0 or b <= 0:
        return "—"
    r = a / b
    return f"{r:,.0f}x" if r >= 100 else f"{r:.2g}x"


def status(s: Score) -> str:
    """How an arm ended, for a sentence: "diverged at step 3", "stalled" or its accuracy."""
    if s.diverged_at is not None:
        return f"diverged at step {s.diverged_at:,}"
    if not s.learned:
        return f"stalled at {pct(s.final_acc)}"
    return pct(s.final_acc)


@dataclass(frozen=True)
class Findings:
    """What the run shows about each story, as booleans and sentences (the page prints the
    sentences; the tests check the booleans against the numbers)."""

    noisy_close_to_bn: bool  # noisy BN's final accuracy within CLOSE_ACC of BN's
    noisy_above_plain: bool  # noisy BN's final accuracy above plain's
    noisy_unit_drift_above_plain: bool
    noisy_layer_drift_above_plain: bool
    noise_hurts_plain: bool  # plain + noise ends CLOSE_ACC or more below plain, or fails
    bn_ics: str  # BN's ||G - G'|| / ||G|| against plain's: larger, similar, smaller
    bn_cos: str  # BN's 1 - cos against plain's
    bn_beta: str  # BN's effective beta-smoothness against plain's
    bn_loss_range: str
    bn_predictiveness: str
    noisy_bn: list[str]
    ics: list[str]
    landscape: list[str]


ICS_WORDS = {
    "larger": "more internal covariate shift than",
    "similar": "about as much internal covariate shift as",
    "smaller": "less internal covariate shift than",
}
UNCORRELATED = 0.3  # a mean cos(G, G') below this: G and G' "almost uncorrelated"
NO_DRIFT = "An arm diverged before its second record: there is no drift to compare."


def comparable(*values: float) -> bool:
    return all(math.isfinite(v) for v in values)


def findings(arms: Arms) -> Findings:
    s = {row.label: row for row in scoreboard(arms)}
    plain, bn, noisy, plain_noise = (s[k] for k in ARMS)
    close = abs(noisy.final_acc - bn.final_acc) <= CLOSE_ACC
    above = noisy.final_acc > plain.final_acc
    unit_above = comparable(noisy.unit_drift, plain.unit_drift) and (
        noisy.unit_drift > plain.unit_drift
    )
    layer_above = comparable(noisy.layer_drift, plain.layer_drift) and (
        noisy.layer_drift > plain.layer_drift
    )
    hurts = not plain_noise.learned or plain_noise.final_acc <= plain.final_acc - CLOSE_ACC

    acc = (
        f"Final test accuracy: plain {status(plain)}, BN {status(bn)}, noisy BN "
        f"{status(noisy)}, plain + noise {status(plain_noise)}."
    )
    if close and above:
        acc += " Noisy BN trains about as well as BN, and better than the plain net."
    elif close:
        acc += " Noisy BN trains about as well as BN, but not better than the plain net here."
    elif above:
        acc += (
            f" Noisy BN beats the plain net but ends more than {CLOSE_ACC:.0%} below BN: "
            "here the noise costs accuracy."
        )
    else:
        acc += " Here the noise costs noisy BN its lead: it does not beat the plain net."
    drift = (
        f"Per-unit drift (the mean move of a unit's 15/50/85th percentiles between records): "
        f"plain {num(plain.unit_drift)}, BN {num(bn.unit_drift)}, noisy BN "
        f"{num(noisy.unit_drift)}, plain + noise {num(plain_noise.unit_drift)}. "
    )
    if not comparable(noisy.unit_drift, plain.unit_drift):
        drift += NO_DRIFT
    elif unit_above:
        drift += "Noisy BN's units move more than even the plain net's, as in the paper."
    else:
        drift += (
            "Noisy BN's units move no more than the plain net's: the paper's result does not "
            "show by this measure here."
        )
    pooled = (
        f"Whole-layer drift (W1 of the pooled layer, the drift lesson's number): plain "
        f"{num(plain.layer_drift)}, BN {num(bn.layer_drift)}, noisy BN {num(noisy.layer_drift)}, "
        f"plain + noise {num(plain_noise.layer_drift)}. "
    )
    if not comparable(noisy.layer_drift, plain.layer_drift):
        pooled += NO_DRIFT
    elif layer_above:
        pooled += "By this measure too noisy BN moves more than the plain net."
    else:
        pooled += (
            "By this measure noisy BN moves *less* than the plain net: each unit gets its own "
            "random shift, and across the layer's units the shifts largely average out in the "
            "pooled distribution. The paper's claim is about single units' distributions."
        )
    plain_noise_words = (
        f"The same noise in the plain net: {status(plain_noise)} against the plain net's "
        f"{status(plain)}. "
    )
    if not plain.learned:
        plain_noise_words += (
            "The plain net itself did not learn here, so this run cannot tell whether the "
            "noise would stop it."
        )
    elif not plain_noise.learned:
        plain_noise_words += "The noise stops the net without BN from training, as in the paper."
    elif hurts:
        plain_noise_words += (
            "It hurts the net without BN, though less than in the paper, where the plain net "
            "with noise did not train at all."
        )
    else:
        plain_noise_words += (
            "On this small task it does not stop the plain net from training, unlike in the "
            "paper, where the plain net with noise did not train at all."
        )

    rel_cmp = compare(bn.grad_rel, plain.grad_rel)
    cos_cmp = compare(1 - bn.grad_cos, 1 - plain.grad_cos)
    ics = [
        f"Mean over layers 2 and up and over training: ||G − G′|| plain {num(plain.grad_change)}, "
        f"BN {num(bn.grad_change)}, noisy BN {num(noisy.grad_change)}; relative to ||G||: plain "
        f"{num(plain.grad_rel)}, BN {num(bn.grad_rel)}, noisy BN {num(noisy.grad_rel)}; "
        f"cos(G, G′): plain {num(plain.grad_cos)}, BN {num(bn.grad_cos)}, noisy BN "
        f"{num(noisy.grad_cos)}."
    ]
    if rel_cmp == "not comparable":
        ics.append(
            "The two nets cannot be compared by this measure here (a net with one hidden layer, "
            "or a net that diverged before its first probe)."
        )
    else:
        sentence = (
            f"By this measure the BN net shows **{ICS_WORDS[rel_cmp]}** the plain net "
            f"(relative gradient change {ratio(bn.grad_rel, plain.grad_rel)} the plain net's; "
            f"1 − cos {ratio(1 - bn.grad_cos, 1 - plain.grad_cos)})."
        )
        if rel_cmp == "smaller":
            sentence += (
                " Here the measure sides with the ICS story; Santurkar et al. saw BN nets with "
                "similar or larger gradient change, on VGG and on a deep linear net."
            )
        else:
            sentence += (
                " If BN worked by reducing ICS in this sense, its G′ should stay closer to G "
                "than the plain net's; it does not, which is what Santurkar et al. saw too."
            )
        ics.append(sentence)
    if arms[0].config.activation == "linear" and math.isfinite(bn.grad_cos):
        ics.append(
            f"In this deep linear net BN's mean cos(G, G′) is {num(bn.grad_cos)}: "
            + (
                "G and G′ are almost uncorrelated, as in the paper's 25-layer linear net."
                if bn.grad_cos < UNCORRELATED
                else "far from the near-zero correlation the paper saw in its 25-layer linear "
                f"net (with {len(arms[0].layers)} layers, at this rate, it does not show)."
            )
        )

    beta_cmp = compare(bn.beta, plain.beta)
    range_cmp = compare(bn.loss_range, plain.loss_range)
    pred_cmp = compare(bn.predictiveness, plain.predictiveness)
    landscape = [
        f"Mean over training, BN against plain: loss variation along the gradient "
        f"{num(bn.loss_range)} vs {num(plain.loss_range)} ({range_cmp}), gradient change "
        f"{num(bn.predictiveness)} vs {num(plain.predictiveness)} ({pred_cmp}), effective "
        f"beta-smoothness {num(bn.beta)} vs {num(plain.beta)} ({beta_cmp}).",
    ]
    names = ("loss variation", "gradient change", "beta-smoothness")
    smoother = [c == "smaller" for c in (range_cmp, pred_cmp, beta_cmp)]
    if "not comparable" in (range_cmp, pred_cmp, beta_cmp):
        landscape.append("Some of these cannot be compared here (a net diverged early).")
    elif all(smoother):
        landscape.append(
            "All three are smaller with BN: along its gradient the BN net's loss is smoother "
            "and its gradient more predictive, the smoothing story of Santurkar et al."
        )
    elif any(smoother):
        which = [name for name, c in zip(names, smoother, strict=True) if c]
        landscape.append(f"Only part of the picture is smoother with BN here ({', '.join(which)}).")
    else:
        landscape.append(
            "None of the three is smaller with BN in this run: here the smoothing story does "
            "not show."
        )
    slower = plain.diverged_at is None and plain.final_acc < bn.final_acc - CLOSE_ACC
    if not all(smoother) and slower:
        landscape.append(
            f"Keep in mind that the plain net learns more slowly ({status(plain)} against BN's "
            f"{status(bn)}): a net still on a flat plateau has a flat landscape too, smooth "
            "without being easy to train. The paper compared nets that both trained."
        )
    return Findings(
        noisy_close_to_bn=close,
        noisy_above_plain=above,
        noisy_unit_drift_above_plain=unit_above,
        noisy_layer_drift_above_plain=layer_above,
        noise_hurts_plain=hurts,
        bn_ics=rel_cmp,
        bn_cos=cos_cmp,
        bn_beta=beta_cmp,
        bn_loss_range=range_cmp,
        bn_predictiveness=pred_cmp,
        noisy_bn=[acc, drift, pooled, plain_noise_words],
        ics=ics,
        landscape=landscape,
    )


# --------------------------------------------------------------------------- downloads


def scoreboard_rows(arms: Arms) -> dict[str, list]:
    """The scoreboard as columns (for the page's table and the CSV)."""
    rows = scoreboard(arms)
    return {
        "arm": [r.label for r in rows],
        "final test accuracy": [r.final_acc for r in rows],
        f"steps to {TARGET_ACC:.0%}": [r.steps_to_target for r in rows],
        "diverged at": [r.diverged_at for r in rows],
        "unit drift": [r.unit_drift for r in rows],
        "layer drift (W1)": [r.layer_drift for r in rows],
        "||G - G'||": [r.grad_change for r in rows],
        "||G - G'|| / ||G||": [r.grad_rel for r in rows],
        "cos(G, G')": [r.grad_cos for r in rows],
        "loss variation": [r.loss_range for r in rows],
        "gradient change": [r.predictiveness for r in rows],
        "beta-smoothness": [r.beta for r in rows],
    }


def scoreboard_csv(arms: Arms) -> str:
    return csv_table(scoreboard_rows(arms))


def _key(label: str) -> str:
    return label.replace(" + ", "_").replace(" ", "_").lower()


def records_csv(arms: Arms) -> str:
    """Every recorded curve, one row per (arm, record): accuracy, drift per layer, ICS per
    layer, the landscape summaries and the loss at each probed step size."""
    rows: dict[str, list] = {}
    n_layers = max(len(h.layers) for h in arms)
    n_etas = N_ETAS
    for h in arms:
        ics, land = h.probes["ics"], h.probes["landscape"]
        for r, step in enumerate(h.record_steps.tolist()):
            row: dict[str, Any] = {"arm": h.label, "step": step, "test_acc": h.test_acc[r]}
            row["test_loss"] = h.test_loss[r]
            for i in range(1, n_layers + 1):
                row[f"layer{i}_w1_drift"] = layer_drift(h, i)[r]
                row[f"layer{i}_unit_drift"] = unit_drift(h, i)[r]
                row[f"layer{i}_grad_change"] = ics.grad_change[r, i - 1]
                row[f"layer{i}_grad_cos"] = ics.grad_cos[r, i - 1]
                row[f"layer{i}_grad_norm"] = ics.grad_norm[r, i - 1]
            row["loss_range"] = land.loss_range[r]
            row["predictiveness"] = land.predictiveness[r]
            row["beta_smoothness"] = land.beta_smoothness[r]
            for j in range(n_etas):
                row[f"loss_at_eta{j}"] = land.loss[r, j]
            for key, value in row.items():
                rows.setdefault(key, []).append(value)
    return csv_table(rows)


def loss_csv(arms: Arms) -> str:
    """The training loss of every step, one column per arm."""
    n = max(len(h.loss) for h in arms)
    columns: dict[str, list] = {"step": list(range(n))}
    for h in arms:
        columns[f"{_key(h.label)}_loss"] = padded(h.loss, n)
    return csv_table(columns)


def arms_npz(arms: Arms, cap: CapResult | None = None) -> bytes:
    """Every curve of every arm as named arrays, with the probed step sizes and the cap."""
    out: dict[str, Any] = {}
    for h in arms:
        p = f"{_key(h.label)}/"
        out[f"{p}loss"] = h.loss
        out[f"{p}record_steps"] = h.record_steps
        out[f"{p}test_acc"] = h.test_acc
        out[f"{p}test_loss"] = h.test_loss
        out[f"{p}diverged_at"] = np.array(-1 if h.diverged_at is None else h.diverged_at)
        for i in range(1, len(h.layers) + 1):
            out[f"{p}layer{i}/w1_drift"] = layer_drift(h, i)
            out[f"{p}layer{i}/unit_drift"] = unit_drift(h, i)
            out[f"{p}layer{i}/quantiles"] = h.layers[i - 1].sites["act_in"].quantiles
            out[f"{p}layer{i}/unit_pct"] = h.layers[i - 1].sites["act_in"].unit_pct
        for name, record in h.probes.items():
            for key, value in vars(record).items():
                out[f"{p}{name}/{key}"] = np.asarray(value)
    if cap is not None:
        out["cap/multiples"] = cap.multiples
        out["cap/diverged_at"] = cap.diverged_at
        out["cap/steps"] = np.array(cap.steps)
        out["cap/landscape"] = np.array(cap.landscape)
    return npz_bytes(out)


def steps_of(arms: Sequence[History]) -> list[int]:
    """The record steps of the arms (the longest run's), for the "step back" view."""
    longest = max(arms, key=lambda h: len(h.record_steps))
    return [int(s) for s in longest.record_steps]
