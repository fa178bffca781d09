"""Lesson: why does BN work? Noisy BN, internal covariate shift as gradient change, and the loss
landscape along the gradient, measured on four arms trained side by side."""

import streamlit as st

from bnviz import functional as F
from bnviz.app import pieces, run, widgets
from bnviz.app.controls import Control, log_grid, seed_control
from bnviz.experiments import debate
from bnviz.figures import common
from bnviz.figures import debate as figs
from bnviz.nn import INITS

PAGE = "debate"
D = debate.DEFAULTS
ACTIVATIONS = (*F.NONLINEARITIES, "linear")
CONTROLS = [
    Control(
        "lr",
        "Learning rate (every arm)",
        "grid",
        D["lr"],
        options=log_grid(1e-3, 30),
        help="Log scale. All four nets use the same rate.",
    ),
    Control(
        "noise",
        "Noise strength",
        "float",
        D["noise"],
        lo=debate.NOISE[0],
        hi=debate.NOISE[1],
        step=0.25,
        help="1 = Santurkar et al.'s constants (n_mu 0.5, n_sigma 1.25, r_mu = r_sigma = 0.1); "
        "every constant scales with it. Used by noisy BN and by plain + noise.",
    ),
    Control(
        "activation",
        "Activation",
        "choice",
        D["activation"],
        options=ACTIVATIONS,
        labels={n: F.ACTIVATIONS[n].title for n in ACTIVATIONS},
        help="Linear (no nonlinearity) makes a deep linear net, the paper's second testbed.",
    ),
    Control("depth", "Hidden layers", "int", D["depth"], lo=1, hi=8, step=1),
    Control(
        "width",
        "Units per hidden layer",
        "grid",
        D["width"],
        options=(16, 32, 64, 100, 128, 200),
    ),
    Control(
        "init",
        "Initial weights",
        "choice",
        D["init"],
        options=INITS,
        labels={
            "gaussian": "small Gaussian, std 0.01 (the BN paper's)",
            "glorot": "Glorot (uniform)",
            "he": "He (Gaussian)",
        },
    ),
    Control(
        "steps",
        "Training steps",
        "grid",
        D["steps"],
        options=(200, 500, 1000, 2000, 3000, 5000),
    ),
    Control(
        "probe_every",
        "Probe every ... steps",
        "grid",
        D["probe_every"],
        options=(10, 20, 25, 50, 100, 200, 500),
        help="The gradient-change and landscape probes (and the distributions) are measured at "
        f"these steps, at most {debate.MAX_PROBES} times a run. Each probe costs about a dozen "
        "extra forward and backward passes.",
    ),
    seed_control(D["seed"], help="Initial weights, batch order and noise draws, for every arm."),
    Control(
        "layer", "Hidden layer", "int", 3, lo=1, hi=8, step=1, where="view", widget="segmented"
    ),
    Control("unit", "Unit", "int", -1, lo=-1, hi=199, step=1, where="view", widget="select"),
    Control(
        "compare",
        "Arms",
        "choice",
        "pair",
        options=tuple(figs.LANDSCAPE_VIEWS),
        labels={"pair": "plain vs BN (as in the paper)", "all": "all four arms"},
        where="view",
        widget="segmented",
    ),
    Control(
        "at",
        "Update",
        "int",
        D["probe_every"],
        lo=1,
        hi=debate.MAX_STEPS,
        step=1,
        where="view",
        widget="select",
    ),  # fmt: skip
]
BY_NAME = {c.name: c for c in CONTROLS}
TRAINING = [c.name for c in CONTROLS if c.where == "sidebar"]

pieces.lead(
    "Ioffe & Szegedy proposed that BN works by reducing *internal covariate shift* (ICS): the "
    "drift of each layer's input distribution while the layers below it learn. That is a "
    "**hypothesis**. Santurkar et al. (2018) put it to three tests, on a VGG net and a deep "
    "linear net; here the same tests run for real on a small nonlinear net (digits, batch 60), "
    "something the paper did not do. Four nets train from the same initial weights on the "
    "same batches: **plain**, **BN**, **noisy BN** (BN followed by random shifts and scales, "
    "a distribution shift injected on purpose) and **plain + noise** (the same noise without "
    "BN). Decide for yourself which story the numbers favour."
)
values = widgets.page_controls(PAGE, CONTROLS, debate.PRESETS, debate.PRESET_HELP)
train_values = {k: values[k] for k in TRAINING}
try:
    cap_cfg = debate.cap_config(train_values)
except ValueError as err:
    st.error(f"These settings cannot run: {err}")
    st.stop()
every = debate.record_every(values["steps"], values["probe_every"])
if every != values["probe_every"]:
    st.info(
        f"Probing every {values['probe_every']} steps over {values['steps']:,} steps would be "
        f"more than {debate.MAX_PROBES} probe points; this run probes every {every} steps.",
        icon=":material/info:",
    )
cap = run.run_experiment(debate.EXPERIMENT, cap_cfg)
if cap is None:
    st.stop()
try:
    cfg = debate.configs(train_values, cap.landscape)
except ValueError as err:
    st.error(f"These settings cannot run: {err}")
    st.stop()
arms = run.run_experiment(debate.EXPERIMENT, cfg)
if arms is None:
    st.stop()

board = {s.label: s for s in debate.scoreboard(arms)}
found = debate.findings(arms)
n_probes = len(arms[0].record_steps)
st.caption(
    f"Every arm trained {cfg.base.steps:,} steps at rate {common.fmt_value(cfg.base.lr)}; "
    f"distributions, gradient change and the landscape were measured every {every} steps "
    f"({n_probes} records, the first at step 0 before any update)."
    + (
        " This is the default settings' run, made by this code and shipped with the app; "
        "any other settings train when you choose them."
        if debate.EXPERIMENT.shipped_name(cfg) is not None
        else ""
    )
)
for col, label in zip(st.columns(len(board)), board, strict=True):
    s = board[label]
    reached = "not reached" if s.steps_to_target is None else f"{s.steps_to_target:,}"
    col.metric(
        f"{label}: test accuracy",
        debate.pct(s.final_acc) if s.diverged_at is None else "diverged",
        help="On the whole test split at the last record."
        if s.diverged_at is None
        else f"Diverged at step {s.diverged_at:,}; its last record read {debate.pct(s.final_acc)}.",
    )
    col.caption(f"steps to {debate.TARGET_ACC:.0%}: **{reached}**")
pieces.divergence_notes(arms)

# --------------------------------------------------------------------------- 1. noisy BN
st.header("1. Noisy BN: shift the distributions on purpose")
noise = F.Noise(float(cfg.noise))
st.markdown(
    f"If BN helped by keeping each layer's input distribution still, then shaking that "
    f"distribution after every BN layer should undo the benefit. Santurkar et al.'s noisy BN "
    f"(their Algorithm 1) does exactly that: at every step each unit gets a random mean shift "
    f"μ_t ~ U(−{noise.n_mu:g}, {noise.n_mu:g}) and scale σ_t ~ U(1, {noise.n_sigma:g}), "
    f"and each example on top of that its own m ~ U(μ_t − {noise.r_mu:g}, μ_t + "
    f"{noise.r_mu:g}) and s ~ N(σ_t, {noise.r_sigma:g}) (here {noise.r_sigma:g} is the "
    f"**standard deviation** of s: the paper does not say whether it meant a variance). The "
    f"unit's value a becomes s·a + m. Strength {cfg.noise:g}"
    + (" is the paper's constants." if cfg.noise == 1 else " scales every constant.")
)
pieces.predict(
    f"{PAGE}.predict-1",
    "Noisy BN's units are pushed around afresh at every step. Will it train "
    "as well as BN? Will its distributions move more or less than the plain net's? And the "
    "same noise without BN? Then look at the charts and open *What this run shows*.",
    gate=False,
)
c1, c2 = st.columns(2)
with c1:
    pieces.chart(run.figure(cfg, arms, figs.loss_curves), key="loss")
with c2:
    pieces.chart(run.figure(cfg, arms, figs.accuracy_curves), key="acc")

depth = len(cfg.base.hidden)
left, right = st.columns([2, 3])
layer = widgets.view(PAGE, BY_NAME["layer"], left, options=range(1, depth + 1))
right.caption(
    "The drift lesson's view, one panel per net: what the units of this layer feed their "
    "nonlinearity, on one fixed batch of test images, over training (press play). The noisy "
    "nets' panels include the step's per-unit noise, which is what the next layer receives."
)
pieces.chart(run.figure(cfg, arms, figs.histograms, layer), key="hist")
width = cfg.base.hidden[0]
typical = figs.typical_unit(arms[0], layer)
unit = widgets.view(
    PAGE,
    BY_NAME["unit"],
    st.columns([1, 2])[0],
    options=range(-1, width),
    label=f"Unit of hidden layer {layer}",
    format=lambda u: "a typical unit (median drift)" if u < 0 else f"#{u}",
)
if unit < 0:  # the number stays out of the option's label: a label must not change per run
    st.caption(f"The typical unit is #{typical}.")
pieces.chart(run.figure(cfg, arms, figs.unit_percentiles, layer, unit), key="unit")
pieces.chart(run.figure(cfg, arms, figs.drift_by_arm, layer), key="drift")
with st.expander("What this run shows", icon=":material/visibility:"):
    st.markdown("\n".join(f"- {s}" for s in found.noisy_bn))
    st.caption(
        "Drift numbers are means over every hidden layer and every record, each measured "
        f"against the record {every} steps earlier."
    )

# --------------------------------------------------------------------------- 2. ICS
st.header("2. ICS as gradient change")
st.markdown(
    "Santurkar et al. also asked what ICS should mean for *optimization*: a layer's update is "
    "computed as if the layers below it stood still, but they move in the same step. So "
    "compare layer i's gradient G with the gradient G′ it would have after the layers below "
    "it took their step (Definition 2.1). If the layers below did not shift what layer i "
    "sees, G′ = G: ||G − G′|| = 0 and cos(G, G′) = 1."
)
pieces.chart(figs.ics_diagram(), key="ics-diagram")
pieces.formulas(
    r"G_{t,i} = \nabla_{W_i} L\big(W_1^{t}, \dots, W_{i-1}^{t},\, W_i^{t}, \dots, "
    r"W_k^{t};\ x_t, y_t\big)",
    r"G'_{t,i} = \nabla_{W_i} L\big(W_1^{t+1}, \dots, W_{i-1}^{t+1},\, W_i^{t}, \dots, "
    r"W_k^{t};\ x_t, y_t\big)",
    r"\text{ICS}_{t,i} = \lVert G_{t,i} - G'_{t,i} \rVert_2, \qquad "
    r"\cos\angle(G_{t,i}, G'_{t,i})",
)
pieces.predict(
    f"{PAGE}.predict-2",
    "BN was proposed to stop the layers below from shifting what a layer "
    "sees. Should the BN net's G′ then be closer to its G than the plain net's? Change the "
    "learning rate in the sidebar and look again.",
    gate=False,
)
pieces.chart(run.figure(cfg, arms, figs.ics_over_training), key="ics")
with st.expander("What this run shows", icon=":material/visibility:"):
    st.markdown("\n".join(f"- {s}" for s in found.ics))
    st.caption(
        "||G − G′|| depends on how large the gradients are (a plain net's can be tiny with "
        "the small initialization), so the relative change ||G − G′|| / ||G|| and the "
        "cosine are the fairer comparison. In the paper, BN nets showed similar or larger "
        "gradient change, and in the deep linear net G and G′ were almost uncorrelated with BN "
        "(try the preset *Deep linear net*)."
    )

# --------------------------------------------------------------------------- 3. landscape
st.header("3. The landscape along the gradient")
lo, hi = cap.landscape
st.markdown(
    f"Santurkar et al.'s own explanation: BN makes the loss smoother, so a step along the "
    f"gradient lands where the gradient predicted. At every record step the probe moves the "
    f"net before its update to θ − ηg along that step's gradient g, for {debate.N_ETAS} "
    f"step sizes η from {lo:.3g} to {hi:.3g} times the learning rate, and measures on the "
    f"step's own batch: the loss there, how much the gradient there differs from g "
    f"(*gradient predictiveness*: the smaller, the better g predicts it) and the effective "
    f"β-smoothness, the largest gradient change per distance moved. {cap.describe()}"
)
pieces.predict(
    f"{PAGE}.predict-3",
    "Which net's loss will vary less along its gradient, and whose "
    "gradient will change less when it takes a step?",
    gate=False,
)
compare = widgets.view(PAGE, BY_NAME["compare"])
shown = figs.LANDSCAPE_VIEWS[compare]
pieces.chart(run.figure(cfg, arms, figs.landscape_over_training, shown), key="land")
st.markdown(
    "**A step back.** Pick one update and see the line itself: the loss along θ − ηg for "
    "every arm (η = 0 is the loss the step started from; η = 1 is the step actually taken)."
)
probed = debate.steps_of(arms)[1:]
at = widgets.view(
    PAGE,
    BY_NAME["at"],
    st.columns([1, 3])[0],
    options=probed,
    format=lambda s: f"update {s:,}",
    label="Update",
)
pieces.chart(run.figure(cfg, arms, figs.step_back, at), key="stepback")
with st.expander("What this run shows", icon=":material/visibility:"):
    st.markdown("\n".join(f"- {s}" for s in found.landscape))

# --------------------------------------------------------------------------- 4. scoreboard
st.header("4. The scoreboard")
st.markdown(
    "Every number each story argues from, for every arm of this run. Drift: mean over layers "
    "and records (per unit, and for the whole layer as W1). Gradient change: mean over layers "
    "2 and up and over records. Landscape: mean over records."
)
rows = debate.scoreboard_rows(arms)
table = {}
for name, column in rows.items():
    if name == "arm":
        table[name] = column
    elif name == "final test accuracy":
        table[name] = [debate.pct(v) for v in column]
    elif name.startswith("steps to") or name == "diverged at":
        table[name] = ["—" if v is None else f"{v:,}" for v in column]
    else:
        table[name] = [debate.num(v) for v in column]
st.dataframe(table, hide_index=True, width="stretch")
st.markdown(
    """
Which story do these numbers favour? Some other findings to weigh:

- **Normalizing without the statistics of BN works too.** Santurkar et al. (Sec. 3.3)
  normalized by the l1, l2 or l∞ norm of the activations instead: those nets trained as well
  as BN while their distributions shifted *more*.
- **The larger learning rate.** Bjorck et al. (2018) found BN's main gift to be that it lets
  a net train at a much larger rate (its activations do not blow up with depth), and the
  larger rate is what speeds training and helps generalization; trained at the same small
  rate, their BN nets lost most of their advantage. See the lesson *Learning rate*, and try
  the preset *High learning rate* here.
- **A bound, not just a picture.** Santurkar et al.'s Theorem 4.1 bounds the gradient of the
  loss with respect to a BN layer's output by the plain net's gradient, scaled by γ²/σ² and
  minus two terms BN removes (the gradient's mean and its part along the normalized input).
- **The debate is open.** Later work defends a role for distributional stability, questions
  how ICS should be measured, and proposes other mechanisms (scale invariance and the
  effective learning rate, lesson *Scale invariance*). No single measure on this page
  settles it, which is why you can test each one.
"""
)

pieces.notice_box(
    "What to notice",
    """
- **Was stability what made noisy BN train?** Compare the unit percentiles with the accuracy
  curves: do noisy BN's units move more than the BN net's, more than the plain net's, and does
  its accuracy follow BN's anyway? If BN worked by keeping distributions still, noisy BN should
  lose BN's advantage.
- **Two drift numbers can give two answers.** The per-unit drift follows single units (the
  view of the paper's figures); the W1 of the whole layer pools all of a layer's units, whose
  independent random shifts partly cancel. Which one you call "the distribution" can change the
  verdict: say which you use.
- **Does BN reduce ICS by Definition 2.1?** Compare cos(G, G′) and the relative change
  ||G − G′|| / ||G|| of the BN and the plain net, layer by layer. A measure can miss the idea,
  though: the definition is one reading of "internal covariate shift".
- **Where should smoothing show?** In the loss variation and the gradient change along the
  gradient, at the same step sizes for every net. The β-smoothness is a ratio: a net stuck on
  a flat plateau scores as smooth without learning.
- **Same start, same batches, same noise draws.** The four nets differ only in BN and in
  the noise, so every difference on this page is theirs.
""",
)
with st.expander("Formulas"):
    pieces.formulas(
        r"\text{noisy BN: } \mu_t \sim U(-n_\mu, n_\mu),\ \ \sigma_t \sim U(1, n_\sigma),\ \ "
        r"m_i \sim U(\mu_t - r_\mu, \mu_t + r_\mu),\ \ s_i \sim N(\sigma_t, r_\sigma^2),\ \ "
        r"a_i \leftarrow s_i a_i + m_i",
        r"G'_{t,i} = \nabla_{W_i} L(W_{<i}^{t+1}, W_{\geq i}^{t}; x_t, y_t),\qquad "
        r"\lVert G - G' \rVert_2,\ \ \frac{\langle G, G'\rangle}{\lVert G\rVert\,\lVert G'\rVert}",
        r"\text{loss variation: } \max_\eta L(\theta - \eta g) - \min_\eta L(\theta - \eta g),"
        r"\qquad \text{gradient change: } \max_\eta \lVert \nabla L(\theta - \eta g) - g \rVert",
        r"\beta_{\text{eff}} = \max_\eta \frac{\lVert \nabla L(\theta - \eta g) - g\rVert}"
        r"{\lVert \eta g \rVert},\qquad \eta \in [\tfrac12, 4] \times \text{the learning rate}",
        r"\text{unit drift}_t = \frac{1}{3U}\sum_{u=1}^{U}\sum_{q \in \{.15,.5,.85\}} "
        r"\big|F_{u,t}^{-1}(q) - F_{u,t-k}^{-1}(q)\big|",
    )

st.subheader("Download this run")
pieces.downloads(
    {
        "Scoreboard (CSV)": (lambda: debate.scoreboard_csv(arms), "bnviz-debate-scoreboard.csv"),
        "Every record (CSV)": (lambda: debate.records_csv(arms), "bnviz-debate-records.csv"),
        "Loss per step (CSV)": (lambda: debate.loss_csv(arms), "bnviz-debate-loss.csv"),
        "Everything (NPZ)": (lambda: debate.arms_npz(arms, cap), "bnviz-debate.npz"),
    },
    key=PAGE,
)
st.caption("Every chart also saves as a PNG from its toolbar (the camera icon).")
