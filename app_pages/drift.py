"""Lesson: distribution drift. Twin runs in lockstep, their hidden layers' inputs animated."""

import streamlit as st

from bnviz.app import pieces, run, widgets
from bnviz.app.controls import Control, activation_control, log_grid, seed_control
from bnviz.data import DATASET_TITLES, PAGE_DATASETS
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
        where="view",
        widget="segmented",
    ),
    Control("unit", "Unit", "int", -1, lo=-1, hi=255, step=1, where="view", widget="select"),
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

pieces.lead(
    "Two networks train side by side on the same batches from the same initial weights: one "
    "plain, one with Batch Normalization. Each panel shows what the units of a hidden layer "
    "receive as input, measured on one fixed batch of test images, so any change you see comes "
    "from the weights changing, not from the data.",
)
PRESETS = {name: {**p, **drift.VIEWS.get(name, {})} for name, p in drift.PRESETS.items()}
values = widgets.page_controls(PAGE, CONTROLS, PRESETS, drift.PRESET_HELP)
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
cols = st.columns(4)
for col, h in zip(cols[:2], twins, strict=True):
    col.metric(
        f"{h.label} net: test accuracy",
        f"{h.test_acc[-1]:.1%}",
        help=f"On the whole test split after {h.record_steps[-1]:,} steps.",
    )
for col, h in zip(cols[2:], twins, strict=True):
    reached = drift.steps_to_accuracy(h, drift.TARGET_ACC)
    col.metric(
        f"{h.label} net: steps to {drift.TARGET_ACC:.0%}",
        "not reached" if reached is None else f"{reached:,}",
        help="The first recorded step at which test accuracy reached the target.",
    )
pieces.divergence_notes(twins)

st.subheader("Inside one hidden layer")
left, mid, right = st.columns([2, 2, 3])
layer = widgets.view(PAGE, BY_NAME["layer"], left, options=range(1, depth + 1))
site = widgets.view(
    PAGE,
    BY_NAME["site"],
    mid,
    format=lambda s: act if s == "act_in" else "BN input",
    help=f"The {act} is what the nonlinearity receives (in the BN net: BN's output, when BN "
    "sits before it). The BN input is the Linear layer's output. The plain net has no BN: "
    "both show its Linear output.",
)
right.caption(
    "**Predict first:** will the plain net's inputs stay where they start? And the BN net's? "
    "Then press play, or drag the step slider. The axes stay fixed, so what moves is the "
    "distribution; the grey outline is step 0."
)
tab_anim, tab_ridge = st.tabs(["Animated histograms", "All steps at once"])
with tab_anim:
    pieces.chart(run.figure(cfg, twins, animate.histograms_over_training, layer, site), "hist")
with tab_ridge:
    pieces.chart(run.figure(cfg, twins, figs.ridge, layer, site), key="ridge")

st.subheader("The paper's Figure 1, reproduced")
st.markdown(
    f"Ioffe & Szegedy trained 3 hidden layers of 100 sigmoid units on MNIST for 50,000 steps. "
    f"(a) BN reaches higher test accuracy faster; (b, c) the 15th, 50th and 85th percentiles "
    f"of a typical unit's {act} in the last hidden layer move in mean and spread without BN, "
    f"and much less with it. Choose the preset *Paper Figure 1* for the full-length run."
)
width = cfg.hidden[0]
typical = figs.typical_unit(twins.plain, depth)
unit = widgets.view(
    PAGE,
    BY_NAME["unit"],
    options=range(-1, width),
    label=f"Unit of hidden layer {depth}",
    format=lambda u: f"a typical unit (#{typical}, median drift)" if u < 0 else f"#{u}",
)
fig_a, fig_bc = st.columns([2, 3])
with fig_a:
    pieces.chart(run.figure(cfg, twins, common.accuracy_curves), key="acc")
with fig_bc:
    pieces.chart(
        run.figure(cfg, twins, figs.percentile_bands, depth, typical if unit < 0 else unit),
        key="bands",
    )

st.subheader("How much does each layer move?")
c1, c2 = st.columns(2)
with c1:
    metric = widgets.view(PAGE, BY_NAME["metric"])
    pieces.chart(run.figure(cfg, twins, figs.drift_over_time, metric), key="drift")
with c2:
    pieces.chart(run.figure(cfg, twins, figs.mean_std_over_time, layer, "act_in"), "meanstd")
c3, c4 = st.columns(2)
with c3:
    pieces.chart(run.figure(cfg, twins, figs.saturation_over_time), key="sat")
with c4:
    pieces.chart(run.figure(cfg, twins, common.loss_curves), key="loss")

pieces.notice_box(
    "What to notice",
    f"""
- **Without BN the inputs wander.** Step through the animation: the plain net's {act} shifts
  and widens as its weights grow, most in the deeper layers. With BN each unit's input keeps
  the mean beta and spread gamma it has learned, whatever the layers below do.
- **Is the wandering what slows the plain net down?** Ioffe & Szegedy called it *internal
  covariate shift* and proposed BN to remove it. That is their **hypothesis**, not a measured
  fact: later work (Santurkar et al., 2018) trained nets whose distributions moved *more* than
  the plain net's, yet trained as fast as BN. Compare the drift chart with the accuracy chart:
  does the net that drifts less always learn faster? Try tanh, ReLU, a smaller learning rate.
- **Saturation.** With sigmoid units, inputs beyond about |z| = 3.6 get less than a tenth of
  the peak gradient. Watch the saturation chart when you raise the learning rate or the
  initial weight scale.
- **Same start, same batches.** At step 0 the BN input of the BN net *is* the plain net's
  input (same weights); everything that differs later is BN's doing.
""",
)
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
