"""Lesson: distribution drift. Twin runs in lockstep, their hidden layers' inputs animated."""

import streamlit as st

from bnviz import functional as F
from bnviz.app import pieces, run, widgets, wording
from bnviz.app.controls import Control, activation_control, log_grid, seed_control
from bnviz.data import DATASET_TITLES, PAGE_DATASETS, examples_word
from bnviz.experiments import drift
from bnviz.figures import animate, common
from bnviz.figures import drift as figs
from bnviz.figures.style import label
from bnviz.store import loss_csv, records_csv, twins_to_npz
from bnviz.train import CHOICES

PAGE = "drift"
D = drift.DEFAULTS
CONTROLS = [
    Control(
        "lr",
        "Learning rate",
        "grid",
        D["lr"],
        options=log_grid(1e-3, 30),
        help="Log scale. Both nets use the same rate.",
    ),
    activation_control(D["activation"]),
    Control("depth", "Hidden layers", "int", D["depth"], lo=1, hi=6, step=1),
    Control(
        "width",
        "Units per hidden layer",
        "grid",
        D["width"],
        options=(8, 16, 32, 50, 64, 100, 128, 200, 256),
    ),
    Control(
        "init_scale",
        "Initial weight scale",
        "grid",
        D["init_scale"],
        options=log_grid(0.1, 30),
        help="Multiplies the small Gaussian initialization (std 0.01).",
    ),
    Control(
        "batch_size",
        "Batch size",
        "grid",
        D["batch_size"],
        options=(4, 8, 16, 32, 60, 64, 128, 256, 512),
    ),
    Control(
        "steps",
        "Training steps",
        "grid",
        D["steps"],
        options=(200, 500, 1000, 2000, 3000, 5000, 10000, 20000, 50000),
        help="Up to 50,000; long runs take a while unless precomputed.",
    ),
    Control(
        "dataset",
        "Dataset",
        "choice",
        D["dataset"],
        options=PAGE_DATASETS,
        labels=DATASET_TITLES,
    ),
    seed_control(D["seed"]),
    Control(
        "placement",
        "BN placement",
        "choice",
        D["placement"],
        options=CHOICES["placement"],
        labels={"before": "before the nonlinearity (paper)", "after": "after the nonlinearity"},
    ),
    Control(
        "layer", "Hidden layer", "int", 3, lo=1, hi=6, step=1, where="view", widget="segmented"
    ),
    Control(
        "site",
        "Distribution of",
        "choice",
        "act_in",
        options=("act_in", "bn_in"),
        labels={"act_in": "nonlinearity input", "bn_in": "BN input"},
        where="view",
        widget="segmented",
    ),
    Control(
        "unit",
        "Unit",
        "int",
        -1,
        lo=-1,
        hi=255,
        step=1,
        labels={-1: "a typical unit (median drift)"},
        where="view",
        widget="select",
    ),
    Control(
        "view",
        "Show",
        "choice",
        "animated",
        options=("animated", "ridge"),
        labels={"animated": "animated histograms", "ridge": "all steps at once"},
        where="view",
        widget="segmented",
    ),
    Control(
        "axes",
        "x axes",
        "choice",
        animate.AXES[0],
        options=animate.AXES,
        labels={"fixed": "fixed over training", "each step": "fitted to each step"},
        help="Fixed: what moves on screen is the distribution. Fitted: each step fills the "
        "panel, so a distribution that grew a hundredfold is still readable at step 0.",
        where="view",
        widget="segmented",
    ),
    Control(
        "metric",
        "Drift measured against",
        "choice",
        "drift_prev",
        options=tuple(figs.METRICS),
        labels={"drift_prev": "the previous record", "drift_init": "step 0"},
        where="view",
        widget="radio",
    ),
]
BY_NAME = {c.name: c for c in CONTROLS}
TRAINING = [c.name for c in CONTROLS if c.where == "sidebar"]
PRESETS = {name: {**p, **drift.VIEWS.get(name, {})} for name, p in drift.PRESETS.items()}

values = widgets.page_controls(PAGE, CONTROLS, PRESETS, drift.PRESET_HELP)
pieces.lead(
    "Two networks train side by side on the same batches from the same initial weights: one "
    "plain, one with Batch Normalization. Each panel shows what the units of a hidden layer "
    f"receive as input, measured on one fixed batch of test {examples_word(values['dataset'])}, "
    "so any change you see comes from the weights changing, not from the data.",
)
try:
    cfg = drift.config(**{k: values[k] for k in TRAINING})
except ValueError as err:
    pieces.cannot_run(err)
    st.stop()
twins = run.run_experiment(drift.EXPERIMENT, cfg)
if twins is None:
    st.stop()

act = label("act_in", values["activation"])
depth = len(cfg.hidden)
plain_moves, bn_moves = drift.movements(twins.plain), drift.movements(twins.bn)
cols = st.columns(4)
for col, h in zip(cols[:2], twins, strict=True):
    if h.diverged_at is None:
        col.metric(
            f"{h.label} net: test accuracy",
            f"{h.test_acc[-1]:.1%}",
            help=f"On the whole test split after {h.record_steps[-1]:,} steps.",
        )
    else:
        col.metric(
            f"{h.label} net: test accuracy",
            "diverged",
            help=f"It diverged at step {h.diverged_at:,}; its last measured test accuracy, at "
            f"step {h.record_steps[-1]:,}, was {h.test_acc[-1]:.1%}.",
        )
for col, h in zip(cols[2:], twins, strict=True):
    reached = drift.steps_to_accuracy(h, drift.TARGET_ACC)
    fine = drift.accuracy_resolution(h, reached)
    col.metric(
        f"{h.label} net: steps to {drift.TARGET_ACC:.0%}",
        "not reached" if reached is None else f"{reached:,}",
        help=f"The first step at which test accuracy was {drift.TARGET_ACC:.0%} or more. It is "
        f"measured every {cfg.eval_every} steps up to step {cfg.eval_until:,}"
        + (f", then every {cfg.record_every:,}" if cfg.eval_until < cfg.steps else "")
        + f", so this is exact to {fine:,} steps.",
    )
pieces.divergence_notes(twins)


def moved_words(h, m) -> str:
    until = f" (until it diverged, at step {h.diverged_at:,})" if h.diverged_at is not None else ""
    return (
        f"{m.moved:.2f} from where it started, its spread {m.std_start:.2f} → "
        f"{m.std_end:.2f}{until}"
    )


last_p, last_b = plain_moves[-1], bn_moves[-1]
most = max(plain_moves, key=lambda m: m.moved).layer
if cfg.placement == "before":
    bn_role = (
        f"With BN before the nonlinearity, each unit's {act} is BN's output: on the probe batch "
        "its mean is the unit's β and its spread its γ, whatever the layers below do, so it "
        "moves only as fast as training changes β and γ."
    )
else:
    bn_role = (
        f"Here BN sits after the nonlinearity, so what the {act} receives is a Linear output in "
        "both nets; choose *BN input* to see what BN normalizes."
    )
sat = F.ACTIVATIONS[cfg.activation].saturation_threshold
if sat is not None:
    saturation = (
        f"- **Saturation.** With {values['activation']} units, inputs beyond |z| = {sat:.1f} get "
        f"less than a tenth of the peak gradient. At the end of this run "
        f"{last_p.saturation_end:.0%} of the plain net's layer-{depth} inputs were there, "
        f"{last_b.saturation_end:.0%} of the BN net's. Watch the saturation chart when you raise "
        "the learning rate or the initial weight scale."
    )
elif cfg.activation == "relu":
    saturation = (
        "- **Dead units.** A ReLU unit that is off for every probe example passes no gradient. "
        f"At the end of this run {last_p.saturation_end:.0%} of the plain net's layer-{depth} "
        f"units were dead, {last_b.saturation_end:.0%} of the BN net's."
    )
else:
    saturation = ""
compared = wording.compare(last_b.moved, last_p.moved)
notes = pieces.Notes(
    "What to notice",
    f"""
- **How far did the inputs move?** In layer {depth} the plain net's {act} ended
  {moved_words(twins.plain, last_p)}; the BN net's {moved_words(twins.bn, last_b)} (W1
  distances, in the input's own units). BN's moved **{compared}**. In the plain net layer
  {most} moved most. {bn_role}
- **Is the wandering what slows the plain net down?** Ioffe & Szegedy called it *internal
  covariate shift* and proposed BN to remove it. That is their **hypothesis**, not a measured
  fact: later work (Santurkar et al., 2018) trained nets whose distributions moved *more* than
  the plain net's, yet trained as fast as BN. Compare the drift chart with the accuracy chart:
  does the net that drifts less always learn faster? Try tanh, ReLU, a smaller learning rate.
{saturation}
- **Same start, same batches.** At step 0 the BN input of the BN net *is* the plain net's
  input (same weights); everything that differs later is BN's doing.
""",
)

st.subheader("Inside one hidden layer")
left, mid, right = st.columns([3, 3, 4])
layer = widgets.view(PAGE, BY_NAME["layer"], left, options=range(1, depth + 1))
site = widgets.view(
    PAGE,
    BY_NAME["site"],
    mid,
    help=f"The {act} is what the nonlinearity receives (in the BN net: BN's output, when BN "
    "sits before it). The BN input is the Linear layer's output. The plain net has no BN: "
    "both show its Linear output.",
)
shown = widgets.view(PAGE, BY_NAME["view"], right)
axes = widgets.view(PAGE, BY_NAME["axes"], right, disabled=shown != "animated")
if pieces.predict(
    f"{PAGE}.hist",
    "Will the plain net's inputs stay where they start? And the BN net's? Then press play, "
    "or drag the step slider.",
):
    with notes.beside():
        if shown == "animated":
            hist = run.figure(cfg, twins, animate.histograms_over_training, layer, site, axes=axes)
            pieces.chart(hist, key="hist")
            st.caption(
                (
                    "The axes stay fixed over training, so what moves is the distribution. "
                    if axes == "fixed"
                    else "Each step fits its own axes: read the scale off the axis. "
                )
                + "The grey outline is step 0."
            )
        else:
            pieces.chart(run.figure(cfg, twins, figs.ridge, layer, site), key="ridge")

paper = drift.is_paper_run(cfg)
st.subheader("The paper's Figure 1, reproduced" if paper else "The paper's Figure 1, this run")
typical = figs.typical_unit(twins.plain, depth)
width = cfg.hidden[0]
unit = widgets.view(
    PAGE,
    BY_NAME["unit"],
    options=range(-1, width),
    label=f"Unit of hidden layer {depth}",
)
chosen = typical if unit < 0 else unit
moves = [drift.median_move(h, depth, chosen) for h in twins]
st.markdown(
    "Ioffe & Szegedy trained 3 hidden layers of 100 sigmoid units on MNIST for 50,000 steps: "
    "(a) with BN test accuracy rose faster and higher; (b, c) the 15th, 50th and 85th "
    "percentiles of a typical unit's sigmoid input in the last hidden layer moved in mean and "
    f"spread without BN, and much less with it. This run: {depth} × {width} "
    f"{values['activation']} units on {DATASET_TITLES[cfg.dataset]}, {cfg.steps:,} steps. "
    f"Unit #{chosen}'s median {act} moved {moves[0]:.2f} in the plain net and {moves[1]:.2f} "
    f"with BN." + ("" if paper else " Choose the preset *Paper Figure 1* for the paper's settings.")
)
if unit < 0:
    st.caption(
        f"The typical unit is #{typical}: of layer {depth}'s units, its median {act} moved the "
        "median amount in the plain net."
    )
fig_a, fig_bc = st.columns([2, 3])
with fig_a:
    pieces.chart(run.figure(cfg, twins, common.accuracy_curves), key="acc")
with fig_bc:
    pieces.chart(run.figure(cfg, twins, figs.percentile_bands, depth, chosen), key="bands")

st.subheader("How much does each layer move?")
metric = widgets.view(PAGE, BY_NAME["metric"])
pieces.chart(run.figure(cfg, twins, figs.drift_over_time, metric), key="drift")
pieces.chart(run.figure(cfg, twins, figs.saturation_over_time), key="sat")
c1, c2 = st.columns(2)
with c1:
    pieces.chart(run.figure(cfg, twins, figs.mean_std_over_time, layer, "act_in"), "meanstd")
with c2:
    pieces.chart(run.figure(cfg, twins, common.loss_curves), key="loss")

notes.box()
with st.expander("Formulas"):
    pieces.formulas(
        r"\mu_B = \frac{1}{m}\sum_{i=1}^m x_i,\qquad "
        r"\sigma_B^2 = \frac{1}{m}\sum_{i=1}^m (x_i-\mu_B)^2",
        r"\hat x_i = \frac{x_i-\mu_B}{\sqrt{\sigma_B^2+\epsilon}},\qquad "
        r"y_i = \gamma\,\hat x_i + \beta",
        r"\text{drift}_t = W_1(P_t, P_{t-k}) = \int_0^1 \left|F_t^{-1}(q) - "
        r"F_{t-k}^{-1}(q)\right|\,dq",
    )
    st.caption(
        "W1 (the 1-Wasserstein or earth mover's distance) is the average distance each value "
        "would travel to turn one distribution into the other: same units as the values."
    )

st.subheader("Download this run")
pieces.downloads(
    {
        "Records (CSV)": (lambda: records_csv(twins), "bnviz-drift-records.csv"),
        "Loss per step (CSV)": (lambda: loss_csv(twins), "bnviz-drift-loss.csv"),
        "Everything (NPZ)": (lambda: twins_to_npz(twins), "bnviz-drift.npz"),
    },
    key=PAGE,
)
