"""Lesson: covariate shift and batches. A trained net meets moved inputs; two batches reach
one hidden layer; class-sorted batches against shuffled ones; how noisy batch statistics are."""

import numpy as np
import streamlit as st

from bnviz.app import pieces, run, widgets
from bnviz.app.controls import Control, activation_control, log_grid, seed_control
from bnviz.data import DATASET_TITLES
from bnviz.experiments import covariate_shift as cs
from bnviz.figures import covariate_shift as figs
from bnviz.train import CHOICES

PAGE = "covariate_shift"
KIND_LABELS = {k: cs.batch_title(k) for k in cs.BATCH_KINDS}
GUESSES = ("unsure", "better", "same", "worse")
GUESS_LABELS = {
    "unsure": "not sure yet",
    "better": "BN copes better",
    "same": "no real difference",
    "worse": "BN does worse",
}
D = dict(
    dataset="moons",
    activation="sigmoid",
    init="glorot",
    lr=1.0,
    batch_size=60,
    steps=2000,
    seed=0,
    dx=1.0,
    angle=0.0,
    scale=1.0,
    shift_layer=1,
    batch_a="0",
    batch_b="7",
    pair_layer=1,
    guess="unsure",
    reveal=False,
    window=40,
    stat_layer=1,
    stat_unit=0,
    noise_layer=1,
    noise_unit=0,
)
CONTROLS = [
    Control(
        "dataset",
        "2-D dataset (part 1)",
        "choice",
        D["dataset"],
        options=cs.SHIFT_DATASETS,
        labels=DATASET_TITLES,
        help="The set the part-1 nets learn (3 × 32 tanh units, 3,000 steps).",
    ),
    activation_control(D["activation"]),
    Control(
        "init",
        "Initial weights",
        "choice",
        D["init"],
        options=CHOICES["init"],
        labels={
            "gaussian": "small Gaussian (std 0.01, the paper's)",
            "glorot": "Glorot (uniform)",
            "he": "He (Gaussian, 2/fan-in)",
        },
        help="Parts 2-4 train on the digits. With the paper's small Gaussian the plain net "
        "learns slowly at these rates.",
    ),
    Control(
        "lr",
        "Learning rate",
        "grid",
        D["lr"],
        options=log_grid(0.01, 10),
        help="Plain SGD, the same rate for all four digits nets.",
    ),
    Control(
        "batch_size",
        "Batch size",
        "grid",
        D["batch_size"],
        options=cs.BATCH_SIZES,
        help="Class-sorted batches hold one digit each, so a batch is at most one class.",
    ),
    Control(
        "steps",
        "Training steps",
        "grid",
        D["steps"],
        options=(300, 500, 1000, 2000, 3000, 5000, 10000),
    ),
    seed_control(D["seed"]),
    Control("dx", "Shift along x1", "float", D["dx"], lo=-3.0, hi=3.0, step=0.1, where="view"),
    Control(
        "angle",
        "Rotation (degrees)",
        "float",
        D["angle"],
        lo=-180.0,
        hi=180.0,
        step=5.0,
        where="view",
    ),  # fmt: skip
    Control(
        "scale",
        "Scale",
        "grid",
        D["scale"],
        options=(0.25, 0.35, 0.5, 0.7, 1.0, 1.4, 2.0, 2.8, 4.0),
        where="view",
    ),
    Control(
        "shift_layer",
        "Hidden layer",
        "int",
        D["shift_layer"],
        lo=1,
        hi=3,
        step=1,
        where="view",
        widget="segmented",
    ),  # fmt: skip
    Control(
        "batch_a",
        "Batch A",
        "choice",
        D["batch_a"],
        options=cs.BATCH_KINDS,
        labels=KIND_LABELS,
        where="view",
    ),  # fmt: skip
    Control(
        "batch_b",
        "Batch B",
        "choice",
        D["batch_b"],
        options=cs.BATCH_KINDS,
        labels=KIND_LABELS,
        where="view",
    ),  # fmt: skip
    Control(
        "pair_layer",
        "Hidden layer",
        "int",
        D["pair_layer"],
        lo=1,
        hi=3,
        step=1,
        where="view",
        widget="segmented",
    ),  # fmt: skip
    Control(
        "guess",
        "Your prediction",
        "choice",
        D["guess"],
        options=GUESSES,
        labels=GUESS_LABELS,
        where="view",
        widget="radio",
    ),  # fmt: skip
    Control("reveal", "Show the runs", "bool", D["reveal"], where="view"),
    Control(
        "window",
        "Steps shown",
        "grid",
        D["window"],
        options=(40, 100, 200, 400),
        where="view",
    ),  # fmt: skip
    Control(
        "stat_layer",
        "BN layer",
        "int",
        D["stat_layer"],
        lo=1,
        hi=3,
        step=1,
        where="view",
        widget="segmented",
    ),  # fmt: skip
    Control(
        "stat_unit",
        "Unit",
        "int",
        D["stat_unit"],
        lo=0,
        hi=99,
        step=1,
        where="view",
        widget="select",
    ),  # fmt: skip
    Control(
        "noise_layer",
        "BN layer",
        "int",
        D["noise_layer"],
        lo=1,
        hi=3,
        step=1,
        where="view",
        widget="segmented",
    ),  # fmt: skip
    Control(
        "noise_unit",
        "Unit",
        "int",
        D["noise_unit"],
        lo=0,
        hi=99,
        step=1,
        where="view",
        widget="select",
    ),  # fmt: skip
]
BY_NAME = {c.name: c for c in CONTROLS}
PRESETS = {
    "All 0s vs all 7s": dict(D),
    "Bright vs faint digits": dict(D, batch_a="bright", batch_b="faint"),
    "Shuffled vs one class": dict(D, batch_a="shuffled", batch_b="3", pair_layer=3),
    "Rotated spirals": dict(D, dataset="spirals", dx=0.0, angle=60.0),
    "Small class-sorted batches": dict(D, batch_size=16, reveal=True),
    "tanh net, He init": dict(D, activation="tanh", init="he", lr=0.1, reveal=True),
}
PRESET_HELP = {
    "All 0s vs all 7s": "The defaults: two one-digit batches, moons moved right by 1",
    "Bright vs faint digits": "Batches of the brightest and the faintest digits",
    "Shuffled vs one class": "A mixed batch against a batch of 3s, seen by the last layer",
    "Rotated spirals": "The three spiral arms turned by 60 degrees",
    "Small class-sorted batches": "Batches of 16: eight or nine batches of one digit in a row",
    "tanh net, He init": "Another net: tanh units, He initialization, rate 0.1",
}
TRAINING = ("activation", "init", "lr", "batch_size", "steps", "seed")


def late_loss(h, start: int) -> float:
    """Mean training loss from step ``start`` on (NaN when the run stopped before it)."""
    loss = h.loss[start:]
    loss = loss[np.isfinite(loss)]
    return float(loss.mean()) if loss.size else float("nan")


def pct(v: float) -> str:
    return f"{v:.0%}" if abs(v - round(v, 2)) < 5e-4 or v in (0.0, 1.0) else f"{v:.1%}"


pieces.lead(
    "A model trained on one distribution of inputs and used on another is said to face "
    "**covariate shift**. Ioffe and Szegedy borrowed the word for what a hidden layer faces "
    "while the layers below it learn (*internal* covariate shift). This page starts with the "
    "ordinary kind, then shows what the make-up of a mini-batch does to a hidden layer: two "
    "very different batches in one trained net, training on class-sorted batches instead of "
    "shuffled ones, and how noisy BN's batch statistics are. Every number comes from nets "
    "trained for real: the default settings' nets were trained for the app and ship with it; "
    "any other setting trains its nets when you choose it.",
)
values = widgets.page_controls(PAGE, CONTROLS, PRESETS, PRESET_HELP)

# ----------------------------------------------------------------------------- part 1
st.header("1 · Covariate shift: the same nets, moved inputs")
try:
    shift_cfg = cs.Shift(values["dataset"], values["seed"])
except ValueError as err:
    st.error(f"These settings cannot run: {err}")
    st.stop()
twins = run.run_experiment(cs.EXPERIMENT, shift_cfg)
if twins is None:
    st.stop()
pieces.divergence_notes(twins)
c1, c2, c3, c4 = st.columns([3, 3, 2, 2])
dx = widgets.view(PAGE, BY_NAME["dx"], c1)
angle = widgets.view(PAGE, BY_NAME["angle"], c2)
scale = widgets.view(PAGE, BY_NAME["scale"], c3)
shift_layer = widgets.view(PAGE, BY_NAME["shift_layer"], c4)
view = cs.shifted(twins, dx, angle, scale, shift_layer)
st.caption(
    f"A plain and a BN net (3 × 32 tanh units) learned {DATASET_TITLES[values['dataset']]} "
    f"from the same initial weights. Now the {len(view.y_test)} test points are moved: rotated "
    "and rescaled about the centre of the training data, then shifted along x1."
)
if pieces.predict(
    f"{PAGE}.shift",
    "Which keeps its accuracy: the plain net, the BN net in eval mode (the statistics it "
    "gathered in training), or the BN net normalizing with the moved test set's own "
    "statistics?",
):
    cols = st.columns(3)
    for col, mode in zip(cols, cs.MODES, strict=True):
        before, after = view.acc[mode]
        col.metric(
            f"{figs.MODE_NAMES[mode]}: test accuracy",
            pct(after),
            f"{(after - before) * 100:+.1f} points",
            help=f"On the moved test points; {pct(before)} on the test points as they are.",
        )
    pieces.chart(figs.decision_regions(view), key="regions")
    pieces.chart(figs.accuracy_vs_shift(view), key="shift-curves")
    pieces.chart(figs.hidden_shift(view), key="shift-hidden")
    st.caption(
        "Moved: how far each unit's mean moved, in units of that unit's standard deviation on the "
        "test points as they are, averaged over the layer's units."
    )
    curves = view.curves
    flat = {
        name: float(curves[name][1][cs.MODES[2]].max() - curves[name][1][cs.MODES[2]].min())
        for name in cs.TRANSFORMS
    }
    worst = {
        mode: min(float(curves[name][1][mode].min()) for name in cs.TRANSFORMS) for mode in cs.MODES
    }
    st.markdown(
        f"""
**What moved.** Shifting the inputs shifts what every first-layer unit receives: its input
moved by {view.moved("plain"):.2f} of its own standard deviation in the plain net and
{view.moved(cs.MODES[1]):.2f} in the BN net in eval mode (layer {shift_layer}, mean over
units). Neither net has seen inputs there, and over the transforms drawn above their accuracy
falls as low as {pct(worst["plain"])} (plain) and {pct(worst[cs.MODES[1]])} (BN, eval mode).

**BN with the moved set's own statistics** is another story. A shift of every input by δ
shifts every unit's input by Wδ, and BN subtracts the batch mean, so BN(W(x + δ)) = BN(Wx);
a rescaling by s multiplies it by s, and BN divides that out too. Over the curves above its
accuracy varies by {flat["translate"] * 100:.1f} points across translations and
{flat["rescale"] * 100:.1f} across rescalings, but {flat["rotate"] * 100:.1f} across
rotations, which BN cannot undo. Normalizing a test set with its own statistics is a known
trick for a shifted domain (AdaBN, Li et al. 2016); it works only when the test batch is a
fair sample of the new domain. The next part shows what happens when it is not.
"""
    )

# ----------------------------------------------------------------------------- shared training
st.header("2 · Two very different batches, one trained net")
try:
    batches_cfg = cs.Batches(**{k: values[k] for k in TRAINING})
except ValueError as err:
    st.error(f"These settings cannot run: {err}")
    st.stop()
result = run.run_experiment(cs.EXPERIMENT, batches_cfg)
if result is None:
    st.stop()
pieces.divergence_notes(result.arms)
act = values["activation"]
st.markdown(
    f"Four nets learned the handwritten digits (8 × 8 pixels) from the same initial weights: "
    f"3 × 100 {act} units, plain SGD at rate {batches_cfg.lr:g}, batches of "
    f"{batches_cfg.batch_size}, {batches_cfg.steps:,} steps; plain and BN, each with shuffled "
    "and with class-sorted batches (part 3). Here the two trained on **shuffled** batches meet "
    "two batches you choose from the training digits."
)
c1, c2, c3 = st.columns([2, 2, 2])
batch_a = widgets.view(PAGE, BY_NAME["batch_a"], c1)
batch_b = widgets.view(PAGE, BY_NAME["batch_b"], c2)
pair_layer = widgets.view(PAGE, BY_NAME["pair_layer"], c3)
pair = cs.two_batches(result, batch_a, batch_b, pair_layer)
pieces.chart(figs.batch_images(pair), key="pair-images")
cols = st.columns(3)
for col, mode in zip(cols, cs.MODES, strict=True):
    a_acc, b_acc = pair.acc[mode]
    col.metric(
        f"{mode}: accuracy on A / B",
        f"{pct(a_acc)} / {pct(b_acc)}",
        help="The share of each batch's digits the net labels right.",
    )
pieces.chart(figs.pair_histograms(pair), key="pair-hist")
pieces.chart(figs.unit_means(pair), key="pair-means")
st.caption("Mean gap: the mean over units of |mean over A − mean over B|.")
gap = {mode: pair.mean_gap(mode) for mode in cs.MODES}
bn_acc = pair.acc[cs.MODES[2]]
eval_acc = pair.acc[cs.MODES[1]]
st.markdown(
    f"""
**In the plain net and in the BN net in eval mode** the two batches reach hidden layer
{pair_layer} as two different distributions: each unit's mean differs between them by
{gap["plain"]:.3g} (plain) and {gap[cs.MODES[1]]:.3g} (BN, eval mode) on average. That
difference *is* the information the net uses to tell the digits apart.

**BN in train mode** normalizes each batch with its own mean and variance, so every unit's
mean over a batch is exactly β, whatever the batch: the gap is {gap[cs.MODES[2]]:.1e}, zero up
to rounding, and the points sit on the diagonal. For a mixed batch that costs nothing. For a
batch of one digit it removes what all its digits share, the very thing that makes them that
digit: accuracy {pct(bn_acc[0])} on A and {pct(bn_acc[1])} on B, against {pct(eval_acc[0])} and
{pct(eval_acc[1])} for the same net in eval mode. This is why BN must not use test batches'
statistics (the lesson *Training vs inference* reproduces the bug), and what class-sorted
training batches do to BN in part 3.
"""
)

# ----------------------------------------------------------------------------- part 3
st.header("3 · Shuffled or class-sorted mini-batches")
arms = result.arms
st.markdown(
    f"With **class-sorted** batches every mini-batch holds a single digit and the digits come in "
    f"turn: {result.epoch} batches per pass over the data, "
    f"{result.epoch // 10 if result.epoch >= 10 else 1} or so of each digit in a row. The seed "
    "notes describe what follows: the net learns one distribution for a few steps, then the "
    "next, and *bounces* between them. The same four nets again: plain and BN, shuffled and "
    "class-sorted, same initial weights."
)
g1, g2 = st.columns([3, 2])
guess = widgets.view(
    PAGE,
    BY_NAME["guess"],
    g1,
    label="**Predict first:** with class-sorted batches, how does the BN net do compared with "
    "the plain net?",
)
reveal = widgets.view(PAGE, BY_NAME["reveal"], g2)
if not reveal:
    g2.caption("Make your prediction, then show the runs.")
else:
    late = {h.label: cs.late_accuracy(h) for h in arms}
    st.caption("Test accuracy late in training (eval mode):")
    cols = st.columns(4)
    for col, h in zip(cols, arms, strict=True):
        col.metric(
            h.label,
            pct(late[h.label]),
            help="Eval mode, mean over the records of the last quarter of training (with "
            "class-sorted batches the accuracy at one step depends on which digit came last); "
            f"{pct(h.test_acc[-1])} at the last step.",
        )
    pieces.chart(figs.loss_by_order(result), key="order-loss")
    w1, _ = st.columns([2, 3])
    window = widgets.view(PAGE, BY_NAME["window"], w1)
    pieces.chart(figs.bounce_zoom(result, window), key="bounce")
    pieces.chart(figs.accuracy_by_order(result), key="order-acc")
    b_plain = cs.bounce(arms["plain class-sorted"], result.batch_class)
    b_bn = cs.bounce(arms["BN class-sorted"], result.batch_class)
    p_cs, b_cs = late["plain class-sorted"], late["BN class-sorted"]
    p_sh, b_sh = late["plain shuffled"], late["BN shuffled"]
    diff = b_cs - p_cs
    if abs(diff) < 0.02:
        verdict = "about the same as"
    elif diff > 0:
        verdict = "better than"
    else:
        verdict = "worse than"
    said = {"better": diff >= 0.02, "same": abs(diff) < 0.02, "worse": diff <= -0.02}
    answer = (
        ""
        if guess == "unsure"
        else (" You predicted it." if said[guess] else " Not what you predicted.")
    )
    diag = result.diagnosis["BN class-sorted"]
    half = batches_cfg.steps // 2
    bn_loss = late_loss(arms["BN class-sorted"], half)
    plain_loss = late_loss(arms["plain class-sorted"], half)
    chance = float(np.log(10))
    if diag.eval_recalibrated > diag.eval_running + 0.05:
        blame = (
            "Recalibrating helps: much of the damage is in the running averages, which "
            "remember mostly the last few digits."
        )
    elif bn_loss > 0.8 * chance:
        blame = (
            "Recalibrating does not help, so the fault is in the weights, not in the running "
            "averages: the net never learned to tell the digits apart (its training loss stayed "
            "near chance)."
        )
    else:
        blame = (
            "Recalibrating does not help, so the fault is in the weights, not in the running "
            "averages: the net fitted its one-digit training batches (loss "
            f"{bn_loss:.2g}) in a way that does not carry over to digits normalized with "
            "statistics of all the digits."
        )
    gone = [h for h in arms if h.diverged_at is not None]
    if gone:
        names = ", ".join(f"the {h.label} net (step {h.diverged_at:,})" for h in gone)
        st.markdown(
            f"**This run cannot answer:** {names} diverged, so its accuracy says nothing about "
            "the batch order. Lower the learning rate."
        )
    else:
        st.markdown(
            f"""
**The answer in this run: with class-sorted batches the BN net does {verdict} the plain
net**: {pct(b_cs)} against {pct(p_cs)} test accuracy late in training (shuffled:
{pct(b_sh)} and {pct(p_sh)}).{answer}

**The bounce.** Right after the digit changes, the plain net's loss on the new batch is
{b_plain.after_switch:.3g} against {b_plain.otherwise:.3g} on the other batches (second half of
training): it has drifted toward the last digit it saw and must come back. The BN net's is
{b_bn.after_switch:.3g} against {b_bn.otherwise:.3g}.

**Why BN is hit.** In training BN normalizes every one-digit batch with that batch's mean, and
so removes what the digit's images share (part 2); its statistics jump with the digit (below).
Over the second half of training the BN net's loss averaged {bn_loss:.2f}, against
ln 10 = {chance:.2f} for a uniform guess, and the plain net's {plain_loss:.2f}. The trained
class-sorted BN net scores {pct(diag.eval_running)} in eval mode; with its statistics
recalibrated on shuffled training batches, {pct(diag.eval_recalibrated)}; fed class-sorted test
batches, as it was trained, {pct(diag.class_sorted_batches)}. {blame}
"""
        )
    c1, c2, c3 = st.columns([2, 2, 3])
    stat_layer = widgets.view(PAGE, BY_NAME["stat_layer"], c1)
    width = batches_cfg.base().hidden[stat_layer - 1]
    stat_unit = widgets.view(PAGE, BY_NAME["stat_unit"], c2, options=range(width))
    jumps = {label: cs.jumpiness(result, label, stat_layer) for label in result.traces}
    if all(np.isfinite(v) for v in jumps.values()):
        c3.caption(
            f"From one step to the next, μ_B moves by {jumps['BN class-sorted']:.3g} population "
            f"standard deviations with class-sorted batches and {jumps['BN shuffled']:.3g} with "
            f"shuffled ones (layer {stat_layer}, mean over units, second half of training)."
        )
    pieces.chart(figs.batch_means(result, stat_layer, stat_unit, window), key="batch-means")
    st.markdown(
        'Ioffe & Szegedy list *"shuffle training examples more thoroughly"* among the changes '
        "that make BN networks train well: shuffling within shards, so that the same examples "
        "do not always appear in a mini-batch together, gave about **1%** better validation "
        "accuracy on ImageNet, which they read as BN acting as a regularizer. Class-sorted "
        "batches are the extreme opposite of thorough shuffling."
    )

# ----------------------------------------------------------------------------- part 4
st.header("4 · How noisy are batch statistics?")
noise = result.noise
c1, c2, c3 = st.columns([2, 2, 3])
noise_layer = widgets.view(PAGE, BY_NAME["noise_layer"], c1)
width = batches_cfg.base().hidden[noise_layer - 1]
noise_unit = widgets.view(PAGE, BY_NAME["noise_unit"], c2, options=range(width))
inv, exact = noise.law()
s1 = noise.spread(1)
sl = noise.spread(noise_layer)
c3.caption(
    f"The trained BN net (shuffled), weights frozen, sees {noise.mu.shape[2]} random training "
    f"batches of each size m, drawn without replacement from N = {noise.n_train:,} digits."
)
pieces.chart(figs.noise_figure(noise, noise_layer, noise_unit), key="noise")
m = noise.sizes
deeper = (
    ""
    if noise_layer == 1
    else f" In layer {noise_layer} the spread is {sl[0]:.3g} σ at m = {m[0]}: "
    + ("far less" if sl[0] < 0.5 * s1[0] else "not less")
    + " than in layer 1. There every batch's input has passed through the BN below, which "
    "gave every unit the same batch mean β."
)
st.markdown(
    f"""
A batch mean of m examples scatters around the population mean by σ/√m, and by
σ·√((N−m)/(m(N−1))) when the m are drawn without replacement from N. In **hidden layer 1**,
whose input does not depend on the rest of the batch, the measured spread of μ_B is
{s1[0]:.3f} σ at m = {m[0]} and {s1[-1]:.3f} σ at m = {m[-1]}, against {exact[0]:.3f} and
{exact[-1]:.3f} from the law. This noise is what BN injects into training, and it grows as the
batch shrinks: one reason BN struggles at small batch sizes. In layer {noise_layer} the spread
is {sl[0]:.3g} σ at m = {m[0]}{"" if noise_layer == 1 else ": far less, because the BN below already gave every batch the same mean β"}.
"""  # noqa: E501
)

pieces.notice_box(
    "What to notice",
    """
- **Covariate shift is about inputs, not weights.** Part 1's nets never changed; only the test
  points moved, and the hidden layers' inputs moved with them. Ioffe & Szegedy's *internal*
  covariate shift is the hypothesis that the same thing, caused by the lower layers' learning,
  slows training; the lesson *Distribution drift* measures it, and later work doubts it is why
  BN helps.
- **A batch is a sample, and BN trusts it.** In train mode BN sets every unit's mean over the
  batch to β and its spread to γ. A mixed batch is a fair sample and nothing is lost; a batch
  of one digit is not, and BN erases what its images share.
- **Batch order matters to BN.** With class-sorted batches training bounces from digit to
  digit, and BN's batch statistics (μ_B, σ_B) jump with it: part 3 measures how much, and
  what it does to each net's accuracy.
- **The noise of μ_B falls as 1/√m.** Halve the batch and BN's statistics get √2 noisier.
""",
)
with st.expander("Formulas"):
    pieces.formulas(
        r"p_{\text{train}}(x) \neq p_{\text{test}}(x),\qquad p(y\mid x)\ \text{unchanged}",
        r"\mu_B = \frac{1}{m}\sum_{i=1}^m x_i,\qquad \sigma_B^2 = \frac{1}{m}\sum_{i=1}^m "
        r"(x_i-\mu_B)^2,\qquad y_i = \gamma\,\frac{x_i-\mu_B}{\sqrt{\sigma_B^2+\epsilon}}+\beta",
        r"\mathrm{BN}\big(W(x+\delta)\big) = \mathrm{BN}(Wx),\qquad \mathrm{BN}(sWx) = "
        r"\mathrm{BN}(Wx)\ \ (s>0,\ \epsilon\to 0)",
        r"\frac{1}{m}\sum_{i=1}^m \mathrm{BN}(x_i) = \beta\quad\text{for every batch}",
        r"\operatorname{sd}(\mu_B) = \frac{\sigma}{\sqrt m}\sqrt{\frac{N-m}{N-1}}",
    )

st.subheader("Download these runs")
pieces.downloads(
    {
        "Part 1 curves (CSV)": (lambda: cs.shift_csv(view), "bnviz-covariate-shift.csv"),
        "Part 1 points (NPZ)": (lambda: cs.shift_npz(view), "bnviz-covariate-shift.npz"),
        "Loss per step (CSV)": (lambda: cs.loss_csv(result), "bnviz-batch-order-loss.csv"),
        "Test accuracy (CSV)": (lambda: cs.accuracy_csv(result), "bnviz-batch-order-acc.csv"),
        "Batch noise (CSV)": (lambda: cs.noise_csv(noise), "bnviz-batch-noise.csv"),
        "Everything (NPZ)": (lambda: cs.batches_npz(result), "bnviz-batches.npz"),
    },
    key=PAGE,
)
