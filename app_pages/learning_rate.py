"""Lesson: learning rate. Each net its own rate, a rate sweep, and a rate x init stability map."""

import streamlit as st

from bnviz import outcome
from bnviz.app import pieces, run, widgets
from bnviz.app.controls import Control, activation_control, log_grid, seed_control
from bnviz.experiments import learning_rate as lr
from bnviz.figures import common
from bnviz.figures import learning_rate as figs

PAGE = "learning_rate"
D = lr.DEFAULTS
RATES = log_grid(1e-3, 30)
CONTROLS = [
    Control(
        "lr_plain",
        "Plain net's learning rate",
        "grid",
        D["lr_plain"],
        options=RATES,
        help="Log scale.",
        where="view",
    ),
    Control(
        "lr_bn",
        "BN net's learning rate",
        "grid",
        D["lr_bn"],
        options=RATES,
        help="Log scale.",
        where="view",
    ),
    activation_control(D["activation"]),
    Control("depth", "Hidden layers (100 units each)", "int", D["depth"], lo=1, hi=6, step=1),
    Control(
        "init_scale",
        "Initial weight scale",
        "grid",
        D["init_scale"],
        options=log_grid(0.1, 100),
        help="Multiplies the small Gaussian initialization (std 0.01). The stability "
        "map varies it itself.",
    ),
    Control(
        "steps",
        "Training steps (the two nets above)",
        "grid",
        D["steps"],
        options=(200, 500, 1000, 2000, 3000, 5000, 10000),
    ),
    Control(
        "sweep_steps",
        "Steps per run of the sweep",
        "grid",
        D["sweep_steps"],
        options=(200, 300, 500, 1000, 2000, 3000),
        help=f"The sweep trains {2 * len(lr.SWEEP_LRS)} nets.",
    ),
    Control(
        "grid_steps",
        "Steps per run of the stability map",
        "grid",
        D["grid_steps"],
        options=(100, 200, 300, 500, 1000),
        help=f"The map trains {2 * len(lr.GRID_LRS) * len(lr.GRID_SCALES)} nets.",
    ),
    seed_control(
        D["seed"], help="Initial weights and batch order, shared by every net on this page."
    ),
]
BY_NAME = {c.name: c for c in CONTROLS}

pieces.lead(
    "The paper's big practical claim: with Batch Normalization a network tolerates far higher "
    "learning rates, so it trains in fewer steps. Here two real networks, one plain and one "
    "with BN, start from the same weights and see the same batches (digits, 100 units a layer, "
    "batch 60); each has its own learning rate. Push the BN net's rate far past where the "
    "plain one stops learning.",
)
values = widgets.page_controls(PAGE, CONTROLS, lr.PRESETS, lr.PRESET_HELP)

st.subheader("Each net its own learning rate")
pieces.predict(
    f"{PAGE}.rates",
    "If both nets train at rate 10, which one learns? Then press the preset *Too-high "
    "learning rate*.",
)
left, right = st.columns(2)
for col, name in ((left, "lr_plain"), (right, "lr_bn")):
    values[name] = widgets.view(PAGE, BY_NAME[name], col)
try:
    curves_cfg = lr.curves(values)
    sweep_cfg = lr.lr_sweep(values)
    grid_cfg = lr.grid(values)
except ValueError as err:
    pieces.cannot_run(err)
    st.stop()

chance = outcome.chance_accuracy(curves_cfg.base)
bar = outcome.learned_bar(chance)
twins = run.run_experiment(lr.EXPERIMENT, curves_cfg)
if twins is not None:
    for col, h in zip(st.columns(2), twins, strict=True):
        ended = outcome.outcome(h, chance)
        col.metric(
            f"{h.label} net at rate {common.fmt_value(h.config.lr)}: test accuracy",
            "diverged" if ended == "diverged" else f"{h.test_acc[-1]:.1%}",
            help=f"On the whole test split after {h.steps_done:,} steps."
            if ended != "diverged"
            else f"It diverged at step {h.diverged_at:,}: its weights hold no answer.",
        )
        if ended == "stalled":
            col.info(
                f"The {h.label} net **stalled**: after {h.steps_done:,} steps its test accuracy "
                f"({h.test_acc[-1]:.0%}) is less than halfway from chance ({chance:.0%}, always "
                f"guessing the commonest digit) to 100%, the {bar:.0%} this page counts as "
                "learned. It did not diverge: it is stuck, or too slow to have got going.",
                icon=":material/pause_circle:",
            )
    pieces.divergence_notes(twins)
    c1, c2 = st.columns(2)
    with c1:
        pieces.chart(figs.loss_curves(twins), key="loss")
    with c2:
        pieces.chart(figs.accuracy_curves(twins), key="acc")

st.subheader("Sweep the learning rate")
st.markdown(
    f"Both nets at each of {len(lr.SWEEP_LRS)} rates from {lr.SWEEP_LRS[0]:g} to "
    f"{lr.SWEEP_LRS[-1]:g}, {len(lr.SWEEP_LRS) * 2} nets trained at once. An x is a run that "
    f"diverged, an open circle one that stalled (test accuracy under {bar:.0%}); the dotted "
    "lines are the two rates chosen above."
)
result = run.run_experiment(lr.EXPERIMENT, sweep_cfg)
if result is not None:
    pieces.chart(figs.sweep_chart(result, values["lr_plain"], values["lr_bn"]), key="sweep")
    for name, o in result:
        st.markdown(f"- **{name}** {lr.describe(o)}.")

st.subheader("Stability map: learning rate x initial weight scale")
st.markdown(
    "How a net is initialized matters as much as its rate. Each cell is one run, colored by "
    "its final test accuracy; ○ marks a run that stalled, ✕ one that diverged. The initial "
    "weights are the paper's small Gaussian (std 0.01) times the scale on the left, so 10 is "
    "std 0.1 and 100 is std 1."
)
grid_result = run.run_experiment(lr.EXPERIMENT, grid_cfg)
if grid_result is not None:
    pieces.chart(figs.stability_map(grid_result), key="map")
    cells = len(grid_result.lrs) * len(grid_result.scales)
    for name, o in grid_result:
        n = lr.counts(o)
        st.markdown(
            f"- **{name}**: learned in {n['learned']} of {cells} cells, stalled in "
            f"{n['stalled']}, diverged in {n['diverged']}."
        )

pieces.notice_box(
    "What to notice",
    f"""
- **Diverging and stalling are different failures.** A run *diverged* when its loss became
  non-finite or a hundred times its first value: training stops there, its curve ends with an
  x and the page says at which step. A run *stalled* when it finished without getting halfway
  from chance to a perfect score: under {bar:.0%} test accuracy, where always guessing the
  commonest digit scores {chance:.0%}. Sigmoid nets rarely diverge: at a too-high rate the
  first steps throw the sigmoid inputs far into the flat tails, the gradient through them all
  but vanishes, and the net stays stuck. Try the preset *Too-high learning rate*: the plain
  net stalls, it does not diverge. To see a real divergence, try *Large init: plain
  diverges*.
- **The plain net has a narrow window.** With the paper's small initialization it also stalls
  at *low* rates: tiny weights pass tiny gradients back through every sigmoid, and in a
  thousand steps it barely moves. Only a band of rates in between trains it, and the
  stability map shows how that band moves with the initial scale: the plain net needs a
  careful initialization.
- **BN widens the window.** Each BN layer rescales its input to the mean beta and spread
  gamma it has learned, whatever the weights below it do, so a large step does not throw the
  units into saturation and small weights do not starve the gradient. Compare the two sweep
  curves, and the two halves of the map.
- **Why?** The paper's *hypothesis* is that BN reduces internal covariate shift (the drift of
  each layer's input distribution), which would otherwise force small rates. Its Section 3.3
  adds a mechanism you can check in the formulas below: a layer's output does not depend on
  its weights' scale, so larger weights get smaller gradients. Bjorck et al. (2018) attribute
  BN's tolerance of large rates to its keeping activations from blowing up with depth: without
  BN a large step inflates each layer's inputs more than the last. Try 5 or 6 hidden layers.
- **Not a free pass.** Choose tanh or ReLU and look at the top of the sweep: does the BN
  net still learn at every rate? BN moves the upper edge of the window; does it remove it?
""",
)
with st.expander("Formulas"):
    pieces.formulas(
        r"\text{SGD step:}\quad W \leftarrow W - \eta\, \frac{\partial L}{\partial W}",
        r"\text{BN is scale invariant:}\quad \mathrm{BN}((aW)u) = \mathrm{BN}(Wu),\qquad "
        r"\frac{\partial\, \mathrm{BN}((aW)u)}{\partial (aW)} = "
        r"\frac{1}{a}\,\frac{\partial\, \mathrm{BN}(Wu)}{\partial W}",
        r"\text{diverged at step } t:\quad L_t \text{ not finite, or } "
        r"L_t > 100 \max(L_0, 1)",
        r"\text{stalled:}\quad \text{acc}_{\text{final}} < \text{acc}_{\text{chance}} + "
        r"\tfrac12\,(1 - \text{acc}_{\text{chance}})"
        f"\\quad ({chance:.3f} + \\tfrac12 \\cdot {1 - chance:.3f} = {bar:.3f})",
    )
    st.caption(
        "With BN, scaling a layer's weights by a leaves its output unchanged (up to eps) and "
        "divides its gradient by a: weights that grow under a large rate slow their own "
        "updates down."
    )

st.subheader("In the paper: ImageNet with Inception")
st.markdown(
    "Ioffe & Szegedy added BN to Inception and raised the learning rate. Steps to reach the "
    "plain Inception's best accuracy (72.2%, single crop), and the best each model reached:"
)
st.table(
    {
        "model": [row[0] for row in lr.IMAGENET],
        "steps to 72.2%": [row[1] for row in lr.IMAGENET],
        "max accuracy": [row[2] for row in lr.IMAGENET],
        "what changed": [row[3] for row in lr.IMAGENET],
    },
    hide_index=True,
)
st.markdown(
    "BN-x5 reached 72.2% in 14 times fewer steps than Inception. A higher rate alone was not "
    "all of it; the paper also changed the recipe (Section 4.2.1):\n\n"
    + "\n".join(f"{i}. {step}" for i, step in enumerate(lr.ACCELERATIONS, start=1))
)

st.subheader("Download these runs")
downloads = {}
if twins is not None:
    downloads["Two-rate curves (CSV)"] = (lambda: lr.curves_csv(twins), "bnviz-lr-curves.csv")
if result is not None:
    downloads["Sweep (CSV)"] = (lambda: lr.sweep_csv(result), "bnviz-lr-sweep.csv")
if grid_result is not None:
    downloads["Stability map (CSV)"] = (lambda: lr.sweep_csv(grid_result), "bnviz-lr-map.csv")
if downloads:
    pieces.downloads(downloads, key=PAGE)
st.caption("Every chart also saves as a PNG from its toolbar (the camera icon).")
