"""Lesson: BN step by step (Algorithm 1). One real mini-batch through mu_B, sigma_B^2, x_hat and
y; gamma and beta; the sigmoid's linear regime; standardizing vs whitening; the axes BN
normalizes over; and seed 004's sigma + eps."""

import streamlit as st

from bnviz.app import pieces, run, widgets
from bnviz.app.controls import Control, log_grid, seed_control
from bnviz.experiments import bn_steps as bs
from bnviz.figures import bn_steps as figs

PAGE = "bn_steps"
D = bs.DEFAULTS
CONTROLS = [
    Control(
        "lr",
        "Learning rate (training)",
        "grid",
        D["lr"],
        options=log_grid(0.01, 5),
        help="Plain SGD on the paper's net (3 × 100 sigmoid units with BN, batch 60).",
    ),
    Control(
        "steps",
        "Training steps",
        "grid",
        D["steps"],
        options=(200, 500, 1000, 2000, 5000),
        help="The run keeps the net's weights at step 0, halfway and at the end.",
    ),
    seed_control(D["seed"], help="Initial weights, the batch order and the mini-batch shown."),
    Control(
        "at",
        "Net after (steps)",
        "choice",
        D["at"],
        options=bs.AT,
        where="view",
        widget="segmented",
    ),  # fmt: skip
    Control(
        "layer",
        "Hidden layer",
        "int",
        D["layer"],
        lo=1,
        hi=3,
        step=1,
        where="view",
        widget="segmented",
    ),  # fmt: skip
    Control(
        "unit",
        "Unit",
        "int",
        D["unit"],
        lo=-1,
        hi=99,
        step=1,
        labels={-1: "the most off-centre unit"} | {u: f"#{u}" for u in range(100)},
        help="Off-centre: the largest |mean| / std of its input over the batch.",
        where="view",
        widget="select",
    ),
    Control(
        "m",
        "Batch size m",
        "int",
        D["m"],
        lo=bs.M_RANGE[0],
        hi=bs.M_RANGE[1],
        step=1,
        help="Training digits in the mini-batch; a larger m adds digits to the same batch.",
        where="view",
    ),
    Control(
        "affine",
        "γ and β",
        "choice",
        D["affine"],
        options=bs.AFFINES,
        labels={"manual": "by hand", "identity": "identity", "learned": "as trained"},
        help="Recover the identity: γ = √(σ_B² + ε), β = μ_B, so that y = x.",
        where="view",
        widget="segmented",
    ),
    Control("gamma", "γ (scale)", "float", D["gamma"], lo=0.0, hi=5.0, step=0.05, where="view"),
    Control("beta", "β (shift)", "float", D["beta"], lo=-5.0, hi=5.0, step=0.05, where="view"),
    Control(
        "eps",
        "ε (log scale)",
        "grid",
        D["eps"],
        options=log_grid(1e-8, 1, (1, 3)),
        help="Added to σ_B² before the square root. The net itself trains with 1e-5; this ε "
        "is the one of the walk below.",
        where="view",
    ),
    Control(
        "tolerance",
        "Near-linear: within",
        "choice",
        D["tolerance"],
        options=bs.TOLERANCES,
        labels={t: f"{t:.0%} of the tangent" for t in bs.TOLERANCES},
        where="view",
        widget="segmented",
    ),
    Control(
        "rho",
        "Correlation of the generated points",
        "float",
        D["rho"],
        lo=-0.95,
        hi=0.95,
        step=0.05,
        where="view",
    ),
    Control(
        "norm_view",
        "Statistics of",
        "choice",
        D["norm_view"],
        options=figs.NORM_KINDS,
        labels=figs.NORM_TITLES,
        where="view",
        widget="segmented",
    ),
]
BY_NAME = {c.name: c for c in CONTROLS}


def num(v: float, digits: int = 4) -> str:
    """A number for the page: 4 significant digits, exponents for the very small."""
    return "0" if v == 0 else f"{v:.{digits}g}"


def sci(v: float) -> str:
    return "0" if v == 0 else f"{v:.2g}"


pieces.lead(
    "Batch Normalization is four lines of arithmetic (Ioffe & Szegedy's Algorithm 1), done for "
    "every unit over the mini-batch. Here they run on **real** numbers: the inputs one BN "
    "layer of the paper's net (digits, 64 → 3 × 100 sigmoid units → 10, batch 60) receives "
    "at a training step you choose. Follow one unit through every line, then change γ, β, ε "
    "and the batch size m and see what each one does."
)
values = widgets.page_controls(PAGE, CONTROLS, bs.PRESETS, bs.PRESET_HELP)
try:
    cfg = bs.config(values["lr"], values["steps"], values["seed"])
except ValueError as err:
    st.error(f"These settings cannot run: {err}")
    st.stop()
snap = run.run_experiment(bs.EXPERIMENT, cfg)
if snap is None:
    st.stop()
if snap.diverged_at is not None:
    st.warning(
        f"The BN net **diverged at step {snap.diverged_at:,}**: its loss became non-finite or "
        "grew a hundredfold, so training stopped there.",
        icon=":material/trending_up:",
    )

# ----------------------------------------------------------------------------- part 1
st.header("1 · Algorithm 1, line by line, on a real mini-batch")
step_labels = {at: f"{step:,}" for at, step in snap.steps.items()}
c1, c2, c3, c4 = st.columns([3, 2, 2, 3])
at = widgets.view(
    PAGE, BY_NAME["at"], c1, format=step_labels.get,
    help="Step 0 (untrained), halfway, or the end of the run set in the sidebar.",
)  # fmt: skip
layer = widgets.view(PAGE, BY_NAME["layer"], c2)
unit_choice = widgets.view(PAGE, BY_NAME["unit"], c3)
m = widgets.view(PAGE, BY_NAME["m"], c4)
c1, c2, c3, c4 = st.columns([4, 2, 2, 3])
affine = widgets.view(PAGE, BY_NAME["affine"], c1)
gamma = widgets.view(PAGE, BY_NAME["gamma"], c2, disabled=affine != "manual")
beta = widgets.view(PAGE, BY_NAME["beta"], c3, disabled=affine != "manual")
eps = widgets.view(PAGE, BY_NAME["eps"], c4, format=lambda v: f"{v:g}")
try:
    lb = bs.layer_batch(snap, at, layer, m, values["seed"])
    w = bs.walk(lb, unit_choice, affine, gamma, beta, eps)
except ValueError as err:
    st.error(f"These settings cannot run: {err}")
    st.stop()
j = w.unit
st.caption(
    f"Unit **#{j}** of hidden layer {layer}, in the net after {lb.step:,} training steps (test "
    f"accuracy {snap.test_acc[at]:.1%}), fed a mini-batch of **m = {m}** training digits. Its "
    f"input x is the layer's Linear output W u (no bias: β takes its place). The earlier BN "
    f"layers normalize with this same batch, as in training. Each dot is one digit, colored by "
    f"its rank in x: it keeps its color and height on every line."
)
unbiased = w.var * m / (m - 1)
LINES = [
    (
        "x",
        r"\mu_B = \frac{1}{m}\sum_{i=1}^m x_i",
        f"**Line 1, the batch mean:** μ_B = **{num(w.mu, 6)}** (the {m} values range from "
        f"{num(w.x.min())} to {num(w.x.max())}).",
    ),
    (
        "xc",
        r"x_i - \mu_B",
        f"Centred: the deviations sum to {sci(float(w.xc.sum()))}, zero up to rounding.",
    ),
    (
        "sq",
        r"\sigma_B^2 = \frac{1}{m}\sum_{i=1}^m (x_i - \mu_B)^2",
        f"**Line 2, the batch variance:** σ_B² = **{num(w.var, 6)}**, biased (1/m). The unbiased "
        f"1/(m − 1) would give {num(unbiased, 6)}; that one goes into the running average kept "
        f"for inference.",
    ),
    (
        "x_hat",
        r"\hat x_i = \frac{x_i - \mu_B}{\sqrt{\sigma_B^2 + \epsilon}}",
        f"**Line 3, normalize:** divide by √(σ_B² + ε) = {num(w.std_eps, 6)}. Now mean "
        f"{sci(float(w.x_hat.mean()))} and variance σ_B²/(σ_B² + ε) = {w.x_hat_var:.6f}: "
        + (
            "just under 1 because of ε."
            if w.x_hat_var > 0.99
            else "well under 1: σ_B² is not much larger than ε here."
        ),
    ),
    (
        "y",
        r"y_i = \gamma\,\hat x_i + \beta",
        f"**Line 4, scale and shift:** γ = {num(w.gamma, 6)}, β = {num(w.beta, 6)}, so y has mean "
        f"β and spread γ·{w.x_hat.std():.4f} = {w.y.std():.4g}. This unit's trained values: "
        f"γ = {lb.gamma[j]:.4g}, β = {lb.beta[j]:.4g}.",
    ),
]
for line, formula, words in LINES:
    left, right = st.columns([2, 5], vertical_alignment="center")
    with left:
        st.latex(formula)
        st.markdown(words)
    with right:
        pieces.chart(figs.strip(w, line), key=f"strip-{line}")
with st.expander(f"All {m} values through every line (table)"):
    st.dataframe(
        {
            "example": list(range(m)),
            "digit": lb.labels.tolist(),
            "x": w.x.tolist(),
            "x − μ_B": w.xc.tolist(),
            "(x − μ_B)²": w.sq.tolist(),
            "x̂": w.x_hat.tolist(),
            "y": w.y.tolist(),
        },
        hide_index=True,
        height=min(420, 38 + 35 * m),
    )

# ----------------------------------------------------------------------------- part 2
st.header("2 · What γ and β can undo, and what small batches do")
ident = w if affine == "identity" else bs.walk(lb, j, "identity", gamma, beta, eps)
cols = [*st.columns(2), *st.columns(2)]  # two rows: the values fit 1280 pixels
cols[0].metric("γ, β in use", f"{w.gamma:.4g}, {w.beta:.4g}")
cols[1].metric("mean and std of y", f"{w.y.mean():.2g}, {w.y.std():.4g}")
cols[2].metric(
    "max |y − x| now",
    sci(w.identity_error),
    help="How far line 4's output is from the unit's input, with the γ and β in use.",
)
cols[3].metric(
    "max |y − x| with γ = √(σ_B² + ε), β = μ_B",
    sci(ident.identity_error),
    help="0 up to float64 rounding (about 1e-16 × |x|).",
)
if affine == "identity":
    st.success(
        f"**The identity, recovered.** With γ = √(σ_B² + ε) = {w.gamma:.6g} and β = μ_B = "
        f"{w.beta:.6g}, line 4 undoes line 3: y = x for all {m} values, up to "
        f"{sci(w.identity_error)} (float64 rounding). So adding BN never takes anything away "
        f"from what the layer can represent: training can always learn its way back.",
        icon=":material/undo:",
    )
else:
    st.markdown(
        f"Choose **identity** under γ and β above: γ = √(σ_B² + ε) = {ident.gamma:.6g} and "
        f"β = μ_B = {ident.beta:.6g} make line 4 undo line 3, and y = x again (to "
        f"{sci(ident.identity_error)}). BN can represent the identity, so it never takes away "
        f"what the layer could express; training picks γ and β, and can move each unit "
        f"anywhere."
    )
pair = bs.pair_check(lb.x[:, j], eps)
single = bs.single_check(float(lb.x[0, j]), w.gamma, w.beta, eps)
left, right = st.columns(2)
with left:
    st.subheader("m = 2")
    reveal = pieces.predict_choice(
        f"{PAGE}.pair",
        "With a batch of two, what are the two x̂, whatever the two inputs?",
        ["it depends on the inputs", "0 and 0", "−1 and +1, almost exactly", "the inputs"],
        "−1 and +1, almost exactly",
        expanded=m == 2,
    )
    if reveal:
        with reveal:
            st.markdown(
                f"With two values μ_B is their midpoint and both sit the same distance from it: "
                f"σ_B² = v = ((x₁ − x₂)/2)², so x̂ = ±√(v/(v + ε)) whatever x₁ and x₂ are. On the "
                f"first two digits of this batch: x = ({pair.x[0]:.6g}, {pair.x[1]:.6g}), "
                f"v = {pair.var:.6g}, Algorithm 1 gives x̂ = ({pair.x_hat[0]:.12f}, "
                f"{pair.x_hat[1]:.12f}); the closed form ±{pair.magnitude:.12f}; difference "
                f"{sci(pair.error)}. Whatever the net does before it, this unit can only tell the "
                f"next layer *which* of the two was larger."
            )
            if pair.magnitude < 0.99:
                st.markdown(
                    f"Here that is only ±{pair.magnitude:.3f}: the two values are so close that "
                    f"v = {pair.var:.2g} is not much larger than ε = {eps:g}. Lower ε, or pick "
                    f"a unit whose two values differ more, and it comes closer to ±1."
                )
with right:
    st.subheader("m = 1")
    st.markdown(
        f"With one example, the example **is** the mean: x − μ_B = 0, σ_B² = 0, and x̂ = "
        f"0/√ε = {single.x_hat:g}, so y = β = {single.y:.4g} whatever the input "
        f"(here x = {single.x:.4g}). Nothing about the input gets through, and the gradient "
        f"dL/dx is {single.dx:g}: the layers below could never learn. That is why training "
        f"refuses a batch of one. This app's BatchNorm1d says:"
    )
    st.code(single.refusal, language=None, wrap_lines=True)
    st.caption(
        "PyTorch refuses it too (ValueError: Expected more than 1 value per channel when "
        "training). At inference a batch of one is fine: BN then uses the running statistics."
    )

# ----------------------------------------------------------------------------- part 3
st.header("3 · Why γ and β: the sigmoid's linear regime")
tolerance = widgets.view(PAGE, BY_NAME["tolerance"])
sr = bs.sigmoid_regime(w, lb, tolerance)
st.markdown(
    f"Near 0 the sigmoid is almost its tangent ½ + y/4: on |y| < {sr.edge:.2f} it rises at least "
    f"{1 - tolerance:.0%} as much as the tangent. Standardized inputs (γ = 1, β = 0) sit mostly "
    f"there: for N(0, 1) inputs that is **{sr.normal_linear:.0%}**, and only "
    f"{sr.normal_saturated:.2%} beyond |y| = {sr.saturation:.2f}, where the slope is under a "
    f"tenth of its peak. A net of such units would be close to linear. γ and β let each unit "
    f"choose where it works: a larger γ or a shifted β moves its inputs into the curve, or into "
    f"saturation."
)
cols = st.columns(4)
cols[0].metric(
    "this unit: near-linear",
    f"{sr.linear_fraction:.1%}",
    help=f"The share of the batch's y with |y| < {sr.edge:.2f}, with the γ and β above.",
)
cols[1].metric(
    "this unit: saturated",
    f"{sr.saturated_fraction:.1%}",
    help=f"The share with |y| > {sr.saturation:.2f}: there sigmoid'(y) is under 10% of its "
    "peak, and the unit barely passes a gradient.",
)
cols[2].metric("N(0, 1): near-linear", f"{sr.normal_linear:.1%}")
cols[3].metric(
    f"layer {layer}: near-linear",
    f"{sr.layer_linear:.1%}",
    help=f"All {lb.x.shape[1]} units of the layer on this batch, each with the γ and β training "
    f"chose; {sr.layer_saturated:.1%} of their inputs saturated.",
)
pieces.chart(figs.sigmoid_regime(sr, j), key="sigmoid")

# ----------------------------------------------------------------------------- part 4
st.header("4 · Standardize each unit, or whiten the whole layer?")
st.markdown(
    "The paper's first idea was to **whiten** each layer's inputs: remove their correlations "
    "too, so that their covariance becomes the identity. BN only **standardizes** each unit on "
    "its own. On 2-D points: standardizing rescales the axes but leaves a tilted ellipse "
    "tilted (the correlation stays); whitening, (x − μ) C^(−1/2), makes it round."
)
real = bs.real_slice(lb, eps)
pieces.chart(figs.planes(real), key="planes-real")
st.caption(
    f"The two units of layer {layer} whose inputs correlate most over this batch of {m} "
    f"({real.labels[0]} and {real.labels[1]}, r = {real.raw.corr:.3f}). After standardizing "
    f"r is still {real.standardized.corr:.3f}; after whitening {real.whitened.corr:.2g}."
)
rho = widgets.view(PAGE, BY_NAME["rho"], st.columns([2, 3])[0])
gen = bs.generated(rho, eps, values["seed"])
pieces.chart(figs.planes(gen), key="planes-generated")
cost = snap.cost
big = -1
st.markdown(
    f"**Why BN does not whiten: the cost.** Whitening a layer of D units needs the D × D "
    f"covariance of the batch (m·D² multiply-adds), its eigendecomposition (about D³) and a "
    f"product, at every training step, and the gradient must flow back through all of it. BN "
    f"needs one mean and one variance per unit (m·D). Measured with this run, one batch of "
    f"m = {cost.m}: at D = {cost.dims[big]:,} whitening took **{1e3 * cost.whiten[big]:.1f} ms**, "
    f"BN **{1e3 * cost.bn[big]:.3f} ms**, {cost.ratio[big]:,.0f} times longer, for the forward "
    f"pass alone."
)
st.table(cost.rows(), hide_index=True)
left, right = st.columns([2, 3], vertical_alignment="center")
fewest, most = int(cost.repeats.min()), int(cost.repeats.max())
left.caption(
    "Timed where and when this run was made (the default view's run ships with the app), on "
    f"one CPU core with numpy: the best of "
    f"{most if fewest == most else f'{fewest} to {most}'} runs per width. Whitening here is "
    "ZCA: the covariance, numpy.linalg.eigh, then (x − μ) U diag(1/√(λ + ε)) Uᵀ. BN is "
    f"functional.batchnorm_forward. Fitted log-log slopes here: BN {cost.slope(cost.bn):.1f}, "
    f"covariance {cost.slope(cost.covariance):.1f}, eigendecomposition "
    f"{cost.slope(cost.eigen):.1f} (for large D the operation counts give 1, 2 and 3; small "
    "sizes pay fixed overheads)."
)
with right:
    pieces.chart(figs.cost_chart(cost), key="cost")

# ----------------------------------------------------------------------------- part 5
st.header("5 · Which values share a mean: per unit, per channel")
kind = widgets.view(PAGE, BY_NAME["norm_view"])
pieces.chart(figs.axes_picture(kind), key="axes")
st.markdown(
    "In an MLP, BN keeps one mean and one variance **per unit**, over the N examples of the "
    "batch: statistics of shape 1 × D. In a conv net a channel is the same filter at every "
    "position, so BN keeps one per **channel**, over the examples *and* all H × W positions: "
    "shape 1 × C × 1 × 1. LayerNorm and GroupNorm take the other axes: LayerNorm one "
    "statistic per example over all its units, GroupNorm per example and group of units, "
    "InstanceNorm per example and channel."
)
pieces.lesson_link("variants", "Variants and pitfalls: LayerNorm and GroupNorm trained")
cb = bs.conv_batch(lb, values["seed"], eps)
st.markdown(
    f"**On a real tensor.** The same {m} digits, each an 8 × 8 one-channel image, through one "
    f"random 3 × 3 convolution with {cb.z.shape[1]} output channels: a tensor of shape "
    f"(N, C, H, W) = {cb.z.shape}. BatchNorm2d computes {cb.z.shape[1]} means and variances, "
    f"each over N·H·W = {cb.per_statistic:,} values; a per-position BN would keep "
    f"{cb.z.shape[1] * 64} of them, each over only {m}. BatchNorm2d is BatchNorm1d on the "
    f"(N·H·W, C) matrix; the tests check it against torch.nn.BatchNorm2d."
)
st.table(cb.rows(), hide_index=True)
pieces.chart(figs.conv_maps(cb), key="conv")

# ----------------------------------------------------------------------------- part 6
st.header("6 · σ + ε or √(σ² + ε)?")
se = bs.sigma_eps(w, lb)
st.markdown(
    "Some notes (one of this course's seeds among them) write line 3 as (x − μ_B)/(σ_B + ε). "
    "For a unit with a clear spread the two agree; they part where σ_B² is not much larger "
    f"than ε. With ε = {eps:g} they agree to within 1% only for σ_B above "
    f"{se.differ_below:.3g} (the unshaded part of the chart). "
    "For a unit with almost no spread, √(σ² + ε) divides by about √ε and keeps its tiny "
    "values tiny; σ + ε divides by about ε and blows them up to full size."
)
cols = st.columns(3)
cols[0].metric(
    f"unit #{j}: σ_B", f"{se.unit_sigma:.4g}", help="The unit's batch standard deviation."
)
cols[1].metric(
    "max |x̂ (σ + ε) − x̂ (√)|",
    sci(se.max_diff),
    help=f"Over the batch; the ratio of the two scale factors is {se.unit_ratio:.6f}.",
)
cols[2].metric(
    f"units of layer {layer} differing > 1%",
    f"{se.layer_differ:.0%}",
    help="Units whose two scale factors differ by more than 1% on this batch.",
)
pieces.chart(figs.sigma_eps(se), key="sigma-eps")

pieces.notice_box(
    "What to notice",
    f"""
- **Four lines, per unit.** μ_B and σ_B² are computed over the {m} examples of the batch for
  each unit on its own; x̂ has mean 0 and variance just under 1 ({w.x_hat_var:.6f} here);
  y = γ x̂ + β gives it back a scale and an offset. Every dot keeps its order: BN is an
  increasing affine map of each unit's batch (for γ > 0).
- **The identity is one setting away.** γ = √(σ_B² + ε), β = μ_B gives y = x to rounding
  ({sci(ident.identity_error)} on this unit): BN can always be undone by training.
- **Small batches.** With m = 2 every x̂ is ±√(v/(v + ε)), about ±1; with m = 1 the output is
  β and the gradient is zero, so training refuses it.
- **γ and β choose the regime.** γ = 1, β = 0 keeps a standardized input mostly where the
  sigmoid is almost linear ({sr.normal_linear:.0%} of N(0, 1) within {tolerance:.0%}); in
  layer {layer} of this net, with the γ and β training chose, {sr.layer_linear:.0%} are there.
- **Why not whiten?** Standardizing keeps correlations; whitening removes them but costs an
  eigendecomposition per layer and step ({cost.ratio[big]:,.0f} × BN at D = {cost.dims[big]:,},
  measured above). Ioffe & Szegedy proposed BN to reduce *internal covariate shift*, a
  hypothesis later work disputes; the arithmetic on this page holds whatever the explanation.
- **Axes.** MLP: one statistic per unit; conv net: one per channel, shared by every position.
- **ε's place.** √(σ² + ε) and σ + ε agree until σ² comes near ε.
""",
)
with st.expander("Formulas"):
    pieces.formulas(
        r"\mu_B = \frac{1}{m}\sum_{i=1}^m x_i,\qquad "
        r"\sigma_B^2 = \frac{1}{m}\sum_{i=1}^m (x_i-\mu_B)^2,\qquad "
        r"\hat x_i = \frac{x_i-\mu_B}{\sqrt{\sigma_B^2+\epsilon}},\qquad "
        r"y_i = \gamma\,\hat x_i + \beta",
        r"\gamma = \sqrt{\sigma_B^2+\epsilon},\ \beta = \mu_B \;\Rightarrow\; y_i = x_i",
        r"m = 2:\quad \hat x_{1,2} = \pm\sqrt{\frac{v}{v+\epsilon}},\quad "
        r"v = \left(\frac{x_1-x_2}{2}\right)^2",
        r"\text{whitening:}\quad \hat x = (x-\mu)\,C^{-1/2},\quad "
        r"C = \frac{1}{m}(x-\mu)^\top(x-\mu) = U\Lambda U^\top,\quad "
        r"C^{-1/2} = U(\Lambda+\epsilon I)^{-1/2}U^\top",
        r"\text{BatchNorm2d:}\quad \mu_c = \frac{1}{NHW}\sum_{n,h,w} x_{nchw},\qquad "
        r"\sigma_c^2 = \frac{1}{NHW}\sum_{n,h,w}(x_{nchw}-\mu_c)^2",
        r"\text{seed 004:}\quad \hat x_i = \frac{x_i-\mu_B}{\sigma_B+\epsilon}"
        r"\quad\text{vs}\quad \frac{x_i-\mu_B}{\sqrt{\sigma_B^2+\epsilon}}",
    )

st.subheader("Download the data")
pieces.downloads(
    {
        "This unit, every line (CSV)": (lambda: bs.walk_csv(w, lb), "bnviz-bn-steps-unit.csv"),
        "The batch and its gradients (NPZ)": (
            lambda: bs.batch_npz(w, lb, snap),
            "bnviz-bn-steps-batch.npz",
        ),
        "Whitening cost (CSV)": (lambda: bs.cost_csv(cost), "bnviz-bn-steps-cost.csv"),
        "Conv tensor and BN2d (NPZ)": (lambda: bs.conv_npz(cb), "bnviz-bn-steps-conv.npz"),
    },
    key=PAGE,
)
st.caption("Every chart also saves as a PNG from its toolbar (the camera icon).")
