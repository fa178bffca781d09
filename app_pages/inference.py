"""Lesson: training vs inference (Algorithm 2). Running averages against the statistics of the
current weights, BN at inference as one affine map folded into the Linear before it, and the
classic bug of predicting with batch statistics."""

import numpy as np
import streamlit as st

from bnviz.app import pieces, run, widgets
from bnviz.app.controls import Control, log_grid, seed_control
from bnviz.experiments import inference as inf
from bnviz.figures import inference as figs
from bnviz.nn import keras_momentum

PAGE = "inference"
CONVENTION_LABELS = {"pytorch": "PyTorch", "keras": "Keras", "cs231n": "cs231n"}
GUESSES = ("unsure", "same", "lower", "chance")
GUESS_LABELS = {
    "unsure": "not sure yet",
    "same": "about the same as in eval mode",
    "lower": "a few points lower",
    "chance": "down near chance (10%)",
}
D = dict(
    lr=0.5,
    batch_size=60,
    steps=2000,
    seed=0,
    convention="pytorch",
    momentum=0.1,
    layer=3,
    unit=0,
    affine_layer=1,
    test_batch=60,
    guess="unsure",
    reveal=False,
)
CONTROLS = [
    Control(
        "lr",
        "Learning rate",
        "grid",
        D["lr"],
        options=log_grid(0.01, 10),
        help="Plain SGD. A higher rate moves the weights, and so the statistics, faster.",
    ),
    Control(
        "batch_size",
        "Batch size m",
        "grid",
        D["batch_size"],
        options=inf.BATCH_SIZES,
        help="Training batches; Algorithm 2 averages batches of the same size.",
    ),
    Control(
        "steps", "Training steps", "grid", D["steps"], options=(300, 500, 1000, 2000, 5000, 10000)
    ),
    seed_control(D["seed"]),
    Control(
        "convention",
        "Momentum written as",
        "choice",
        D["convention"],
        options=inf.CONVENTIONS,
        labels=CONVENTION_LABELS,
        where="view",
        widget="segmented",
    ),
    Control(
        "momentum",
        "Momentum",
        "grid",
        D["momentum"],
        options=inf.MOMENTA,
        where="view",
        help="In the convention chosen beside it: PyTorch weights the new batch by it, Keras "
        "and cs231n weight the old average by it.",
    ),
    Control(
        "layer",
        "BN layer",
        "int",
        D["layer"],
        lo=1,
        hi=3,
        step=1,
        where="view",
        widget="segmented",
    ),  # fmt: skip
    Control("unit", "Unit", "int", D["unit"], lo=0, hi=99, step=1, where="view", widget="select"),
    Control(
        "affine_layer",
        "BN layer",
        "int",
        D["affine_layer"],
        lo=1,
        hi=3,
        step=1,
        where="view",
        widget="segmented",
    ),  # fmt: skip
    Control(
        "test_batch",
        "Test batch size",
        "grid",
        D["test_batch"],
        options=inf.TEST_BATCHES,
        where="view",
        help="Of the shuffled and the class-sorted test batches.",
    ),
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
    Control("reveal", "Show the answer", "bool", D["reveal"], where="view"),
]
BY_NAME = {c.name: c for c in CONTROLS}
PRESETS = {
    "PyTorch defaults": dict(D),
    "Keras's default (0.99)": dict(D, convention="keras", momentum=0.99),
    "Keras 0.999, fast weights": dict(D, convention="keras", momentum=0.999, lr=2.0),
    "Last batch only": dict(D, momentum=0.999),
    "Tiny batches (m = 4)": dict(D, batch_size=4, lr=0.1),
    "The bug, revealed": dict(D, reveal=True, guess="chance"),
}
PRESET_HELP = {
    "PyTorch defaults": "momentum 0.1, batch 60, rate 0.5",
    "Keras's default (0.99)": "Keras's momentum 0.99 is PyTorch's 0.01: a 100-step memory",
    "Keras 0.999, fast weights": "a 1,000-step memory while the weights move at rate 2",
    "Last batch only": "PyTorch momentum 0.999: the average is nearly the last batch",
    "Tiny batches (m = 4)": "m/(m-1) = 4/3, and noisy batch statistics",
    "The bug, revealed": "predicting with batch statistics, the answer shown",
}
TRAINING = ("lr", "batch_size", "steps", "seed")


def pct(v: float) -> str:
    return f"{v:.1%}"


def sci(v: float) -> str:
    return "0" if v == 0 else f"{v:.1e}"


pieces.lead(
    "In training, BN normalizes each unit with the mean and variance of the current "
    "mini-batch. At inference there may be no batch (one image at a time), and a prediction "
    "must not depend on which other images came along, so BN switches to fixed statistics of "
    "the whole training set. Where those come from, what BN then is, and what goes wrong when "
    "a net predicts with batch statistics anyway: all measured on a real net, the paper's "
    "(3 × 100 sigmoid units on the handwritten digits). The default settings' net was trained "
    "for the app and ships with it; any other settings train a net when you choose them.",
)
values = widgets.page_controls(PAGE, CONTROLS, PRESETS, PRESET_HELP)
try:
    cfg = inf.Inference(**{k: values[k] for k in TRAINING})
except ValueError as err:
    st.error(f"These settings cannot run: {err}")
    st.stop()
result = run.run_experiment(inf.EXPERIMENT, cfg)
if result is None:
    st.stop()
pieces.divergence_notes([result.history])
if result.history.diverged_at is not None:
    st.info("Choose a smaller learning rate to see the rest of the lesson.", icon=":material/info:")
    st.stop()
m = cfg.batch_size

# ----------------------------------------------------------------------------- part 1
st.header("1 · Running statistics over training")
st.markdown(
    f"""
Three ways to get E[x] and Var[x] for every BN unit, all from the same training run
({cfg.steps:,} steps, batches of {m}):

- a **running average** of the batch statistics, updated every step (PyTorch, Keras);
- the **cumulative average** of all batches so far (PyTorch's `momentum=None`);
- **Algorithm 2** as the paper writes it: freeze the net, pass training batches of size m,
  average μ_B and σ_B² (with m/(m−1)). Done on the weights of each moment, it gives the
  statistics the averages are trying to track (black below); done once after training it is
  what Wu & Johnson (2021) call *Precise BN*.
"""
)
c1, c2, c3, c4 = st.columns([3, 3, 2, 2])
convention = widgets.view(PAGE, BY_NAME["convention"], c1)
momentum = widgets.view(
    PAGE,
    BY_NAME["momentum"],
    c2,
    label=f"Momentum ({CONVENTION_LABELS[convention]})",
)
layer = widgets.view(PAGE, BY_NAME["layer"], c3)
unit = widgets.view(PAGE, BY_NAME["unit"], c4, options=range(inf.HIDDEN[layer - 1]))
try:
    f = inf.pytorch_momentum(momentum, convention)
except ValueError as err:
    st.error(f"{err}")
    st.stop()
est = inf.estimates(result, f)
acc = inf.final_accuracy(result, est)
cols = st.columns(4)
cols[0].metric(
    "PyTorch momentum",
    f"{f:g}",
    help="running = (1 − momentum) · running + momentum · batch",
)
cols[1].metric(
    "Keras / cs231n momentum",
    f"{keras_momentum(f):.6g}",
    help="moving = momentum · moving + (1 − momentum) · batch: the same average, the other way",
)
cols[2].metric(
    "memory, about 1/momentum",
    f"{1 / f:,.0f} steps",
    help="Batch k steps back has weight momentum · (1 − momentum)^k: it falls to 1/e after "
    "about 1/momentum steps.",
)
cols[3].metric(
    "test accuracy with this average",
    pct(acc.ema),
    f"{(acc.ema - acc.precise) * 100:+.1f} points vs Precise BN",
    help="Eval mode on the test split, BN using the running average at this momentum after "
    "the last step, against Algorithm 2 on the final weights.",
)
pieces.chart(figs.running_stats(result, est, layer, unit), key="running")
pieces.chart(figs.lag_over_training(est, layer), key="lag")
pieces.chart(figs.momentum_sweep(result, f, layer), key="sweep")
li = layer - 1
first = 1 if len(est.steps) > 1 else 0
sw = result.sweep
best = float(sw.momenta[int(np.argmin(sw.mean_late[:, li]))])
if best == sw.momenta[0]:
    sweet = (
        f"Below, in layer {layer} the smallest momentum does best over the second half: the "
        "input of this BN layer hardly moves any more, and a long memory averages the noise away."
    )
elif best == sw.momenta[-1]:
    sweet = f"Below, in layer {layer} the largest momentum does best: the lag dominates."
else:
    sweet = (
        f"Below, the error of the mean over the second half of training is lowest at momentum "
        f"{best:g} in layer {layer}: between lag and noise."
    )
cost = (acc.precise - acc.ema) * 100
if abs(cost) < 0.5:
    lag_verdict = (
        f"At momentum {f:g} the lag costs almost nothing at the end of this run: the weights "
        "have nearly stopped moving. Try Keras's 0.999, or a higher learning rate."
    )
elif cost > 0:
    lag_verdict = f"Here the running average costs {cost:.1f} points; Precise BN recovers them."
else:
    lag_verdict = (
        f"Here the running average happens to score {-cost:.1f} points higher: the test split "
        "is small, and a point is under four digits."
    )
st.markdown(
    f"""
**The lag.** At step {est.steps[first]:,} the running average (momentum {f:g}) is
{est.ema_err[0][first, li]:.3g} standard deviations from the current weights' mean (layer
{layer}, mean over units); at the end, {est.ema_err[0][-1, li]:.3g}. Early in training the
weights move fast and an average with a long memory trails them; the cumulative average,
which remembers every batch since step 0 equally, is still {est.cum_err[0][-1, li]:.3g}
standard deviations off at the end. A large momentum has the opposite problem: the average is
little more than the last few batches, as noisy as they are. {sweet}

**The fix: Precise BN.** Freeze the trained net and average the batch statistics of many
training batches (Algorithm 2). Test accuracy with the running average at momentum {f:g}:
{pct(acc.ema)}; with the cumulative average: {pct(acc.cumulative)}; with the averages training
kept (PyTorch's 0.1): {pct(acc.engine)}; with Precise BN: {pct(acc.precise)}. {lag_verdict}
"""
)
st.subheader("Conventions, side by side")
st.markdown(
    f"""
| | running estimate after each batch | default momentum | ε | variance averaged |
|---|---|---|---|---|
| PyTorch `BatchNorm1d` | (1 − momentum) · running + momentum · batch | 0.1 | 1e-5 | unbiased, m/(m−1) σ_B² |
| Keras `BatchNormalization` | momentum · moving + (1 − momentum) · batch | 0.99 | 1e-3 | depends on the version and kernel |
| cs231n `batchnorm_forward` | momentum · running + (1 − momentum) · batch | 0.9 | 1e-5 | biased, σ_B² |
| the paper, Algorithm 2 | mean over batches of the frozen net | none | — | m/(m−1) E_B[σ_B²] |

The same average, with the momentum the other way round: a Keras momentum k is a PyTorch
momentum 1 − k, so **Keras's 0.99 is PyTorch's {keras_momentum(0.99):.2g}** and PyTorch's 0.1
is Keras's {keras_momentum(0.1):g}. Pick "Keras" above and a momentum to convert it; the charts
use the PyTorch value, {f:g}. (Keras has both averaged the biased variance and applied
m/(m−1), depending on its version and on whether the fused kernel ran; see keras#8982 and
tensorflow#55545.)
"""  # noqa: E501
)
corr = result.correction
left, right = st.columns([3, 2])
with left:
    pieces.chart(figs.correction_figure(corr), key="correction")
with right:
    k2 = list(corr.sizes).index(2)
    km = list(corr.sizes).index(m)
    st.markdown(
        f"""
**Why m/(m−1).** σ_B² divides by m, and it measures spread around the batch's own mean,
which sits closer to the batch than the true mean does: on average it is (m−1)/m of the
variance. Measured on hidden layer 1 of the trained net: with batches of 2 the mean of σ_B²
is {corr.biased[k2]:.3f} of the variance over all {corr.n_train:,} training digits (expected
{corr.expected()[k2]:.3f}); times 2/1 it is {corr.corrected[k2]:.3f}. At this run's batch size,
{m}: {corr.biased[km]:.4f}, corrected {corr.corrected[km]:.4f}. PyTorch's
running_var stores the corrected value; the normalization in training uses the biased σ_B².
"""
    )

# ----------------------------------------------------------------------------- part 2
st.header("2 · At inference BN is one affine map")
fo = inf.folded(result)
c1, c2 = st.columns([2, 5])
affine_layer = widgets.view(PAGE, BY_NAME["affine_layer"], c1)
c2.markdown(
    "With E[x] and Var[x] fixed, BN no longer depends on the batch: each unit is "
    "y = s · x + t with s = γ / √(Var[x] + ε) and t = β − s · E[x]. And since the Linear "
    "layer before it is affine too, the two merge: W′ = diag(s) W, b′ = s · b + t. The net "
    "below keeps no BN at all."
)
pieces.chart(figs.affine_figure(fo, affine_layer), key="affine")
cols = st.columns(4)
cols[0].metric(
    "max |folded − eval mode|",
    sci(fo.max_diff),
    help=f"Over all logits of the {fo.n_rows} test digits, in float64: rounding only.",
)
cols[1].metric(
    "eval-mode forward",
    f"{fo.seconds_eval * 1e3:.2f} ms",
    help=f"All {fo.n_timed:,} training digits at once, best of {fo.repeats}, measured now.",
)
cols[2].metric(
    "folded, BN-free forward",
    f"{fo.seconds_folded * 1e3:.2f} ms",
    help=f"The same digits through the folded net, best of {fo.repeats}, measured now.",
)
cols[3].metric(
    "speed-up",
    f"{fo.seconds_eval / fo.seconds_folded:.2f}×",
    help="The three BN layers' arithmetic is gone; the matrix products are the same size.",
)

# ----------------------------------------------------------------------------- part 3
st.header("3 · The classic bug: predicting with batch statistics")
st.markdown(
    "Forget `model.eval()` and BN keeps normalizing with the statistics of whatever batch it "
    "is given, at test time too. PyTorch users meet this constantly (*BatchNorm behaves "
    "different in train() and eval()*, pytorch#5406). A shuffled test batch looks like a "
    "training batch, so the damage hides; a batch that does not look like one exposes it."
)
g1, g2, g3 = st.columns([3, 2, 2])
test_batch = widgets.view(PAGE, BY_NAME["test_batch"], g2)
guess = widgets.view(
    PAGE,
    BY_NAME["guess"],
    g1,
    label=f"**Predict first:** the net is left in train mode and the test digits arrive "
    f"class-sorted, in batches of {test_batch} (all 0s, then all 1s, …). Its test accuracy "
    "will be…",
)
reveal = widgets.view(PAGE, BY_NAME["reveal"], g3)
bug = None
if not reveal:
    g3.caption("Make your prediction, then show the answer.")
else:
    b = bug = inf.bug(result, test_batch)
    _, y_test = inf.held_out(result)
    chance = 1.0 / 10
    pieces.chart(figs.bug_figure(b, chance), key="bug")
    cs_acc, ev = b.acc["class-sorted"], b.acc["eval"]
    if cs_acc >= ev - 0.02:
        truth = "same"
    elif cs_acc > 2 * chance:
        truth = "lower"
    else:
        truth = "chance"
    told = (
        ""
        if guess == "unsure"
        else (" As you predicted." if guess == truth else f" You predicted {GUESS_LABELS[guess]}.")
    )
    st.markdown(
        f"""
**Class-sorted test batches of {test_batch}: {pct(cs_acc)}**, against {pct(ev)} for the same
net in eval mode.{told} Each batch holds one digit, BN subtracts the batch's mean, and with it
what all its images share.

**Batches of one: {pct(b.acc["single"])}.** A single example is its own batch mean, so x − μ_B
= 0 and every BN unit outputs exactly β (largest |output − β| over all {len(y_test)} test
digits and all units: {sci(b.single_beta_gap)}). The net's output no longer depends on the input:
every digit is called a {b.single_class}, right only for the {pct(b.single_share)} of test
digits that are {b.single_class}s. (PyTorch refuses a batch of one in training mode for this
reason.) **Batches of two: {pct(b.acc["pairs"])}**: each unit sees ±1 and little else.
**Shuffled batches of {test_batch}: {pct(b.acc["shuffled"])}**, close to eval mode, which is
why the bug survives testing on shuffled data.

**The fix** is eval mode with statistics that describe the training data: the running
averages ({pct(ev)}), or `inference.recalibrate`, which replaces them by Algorithm 2's over
the training digits ({pct(b.acc["recalibrated"])}). Recalibrating also repairs running
averages that lag (part 1) or were gathered on other data.
"""
    )

# ----------------------------------------------------------------------------- part 4
st.header("4 · Train mode vs eval mode on the training data")
h = result.history
gap = h.probes["eval_gap"]
pieces.chart(figs.eval_gap_figure(result), key="eval-gap")
diff = gap.acc_running - gap.acc_batch
early = 1 if len(diff) > 1 else 0
worst = int(abs(diff[1:]).argmax()) + 1 if len(diff) > 1 else 0
st.markdown(
    f"""
The `eval_gap` probe scores all training digits (in batches of {m}) both ways at every record.
At step {h.record_steps[early]:,}, train mode gets {pct(gap.acc_batch[early])} right and eval
mode {pct(gap.acc_running[early])}; the largest gap is at step {h.record_steps[worst]:,}, eval
mode {abs(diff[worst]) * 100:.1f} points {"above" if diff[worst] > 0 else "below"} train mode;
at the end, {pct(gap.acc_batch[-1])} in train mode and {pct(gap.acc_running[-1])} in eval mode.
They differ for two reasons. Early on, the running averages trail the moving weights: they
start at 0 and 1 and remember about 1/momentum = {1 / inf.TRAIN_MOMENTUM:.0f} steps back,
while the weights change fast, so eval mode normalizes with stale numbers. Later, train
mode's statistics are noisy: each digit's output depends on the other digits in its batch,
the noise BN injects into training (and part of why it regularizes), while eval mode is
deterministic.
"""
)

pieces.notice_box(
    "What to notice",
    f"""
- **Two sets of statistics.** Training normalizes with μ_B and σ_B² of each batch; inference
  with E[x] and Var[x], fixed. Every bug on this page comes from mixing them up.
- **A running average lags.** Its memory is about 1/momentum steps; while the weights move,
  the statistics it averages are of weights that no longer exist. Precise BN recomputes them
  on the final weights.
- **Momentum has two conventions.** PyTorch's 0.1 is Keras's 0.9; Keras's 0.99 is PyTorch's
  0.01. Read the update formula, not the number.
- **m/(m−1).** The batch variance underestimates the variance by (m−1)/m; Algorithm 2 and
  PyTorch's running_var correct it.
- **One affine map.** In eval mode BN is y = s x + t per unit, and folds into the Linear
  before it: max difference {sci(fo.max_diff)}, and one step less per layer.
- **Never predict with batch statistics.** Class-sorted or single-example test batches turn
  a good net into a guess.
""",
)
with st.expander("Formulas"):
    pieces.formulas(
        r"\text{train: } \hat x = \frac{x-\mu_B}{\sqrt{\sigma_B^2+\epsilon}},\qquad "
        r"\text{inference: } \hat x = \frac{x-\mathrm{E}[x]}{\sqrt{\mathrm{Var}[x]+\epsilon}}",
        r"\mathrm{E}[x] \leftarrow \mathrm{E}_B[\mu_B],\qquad "
        r"\mathrm{Var}[x] \leftarrow \frac{m}{m-1}\,\mathrm{E}_B[\sigma_B^2]"
        r"\qquad\text{(Algorithm 2, step 10)}",
        r"\text{PyTorch: } r \leftarrow (1-f)\,r + f\,\mu_B,\qquad "
        r"\text{Keras: } r \leftarrow k\,r + (1-k)\,\mu_B,\qquad k = 1 - f",
        r"y = \frac{\gamma}{\sqrt{\mathrm{Var}[x]+\epsilon}}\,x + \Big(\beta - "
        r"\frac{\gamma\,\mathrm{E}[x]}{\sqrt{\mathrm{Var}[x]+\epsilon}}\Big) = s\,x + t",
        r"W' = \mathrm{diag}(s)\,W,\qquad b' = s\odot b + t",
        r"m = 1:\quad x - \mu_B = 0 \;\Rightarrow\; y = \beta",
    )

st.subheader("Download this run")
files = {
    "This unit over training (CSV)": (
        lambda: inf.unit_csv(result, est, layer, unit),
        f"bnviz-running-stats-layer{layer}-unit{unit}.csv",
    ),
    "Train vs eval mode (CSV)": (lambda: inf.eval_gap_csv(result), "bnviz-eval-gap.csv"),
    "Everything (NPZ)": (lambda: inf.result_npz(result), "bnviz-inference.npz"),
}
if bug is not None:
    files["The bug (CSV)"] = (lambda: inf.bug_csv(bug), "bnviz-inference-bug.csv")
pieces.downloads(files, key=PAGE)
