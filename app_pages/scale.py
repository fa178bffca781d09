"""Lesson: scale invariance and gamma/beta. BN(aWu) = BN(Wu), its gradients, and the affine
parameters that take over a unit's scale and offset, on real layers and real digits."""

import streamlit as st

from bnviz.app import pieces, run, widgets
from bnviz.app.controls import Control, log_grid, seed_control
from bnviz.experiments import scale
from bnviz.figures import scale as figs
from bnviz.store import twins_to_npz

PAGE = "scale"
D = scale.DEFAULTS
EPS_LABELS = {"0": "0 (exact identity)", "1e-5": "1e-5 (PyTorch's default)"}
CONTROLS = [
    Control(
        "eps",
        "BN's eps",
        "choice",
        D["eps"],
        options=scale.EPS_CHOICES,
        labels=EPS_LABELS,
        help="BN divides by sqrt(var + eps). With eps = 0 the identities are exact; "
        "with eps > 0 they hold while a²·var is much larger than eps.",
    ),
    Control(
        "layer",
        "Layer whose weights are scaled",
        "int",
        D["layer"],
        lo=1,
        hi=3,
        step=1,
        help="W of this hidden layer's Linear, the weights that feed its BN.",
    ),
    Control(
        "batch_size",
        "Batch size",
        "grid",
        D["batch_size"],
        options=(2, 4, 8, 16, 32, 60, 128, 256),
        help="The real mini-batch of digits the identities are measured on.",
    ),
    seed_control(D["seed"], help="Initial weights, the batch, and the training batch order."),
    Control(
        "lr",
        "Learning rate (training)",
        "grid",
        D["lr"],
        options=log_grid(0.01, 10),
        help="Plain SGD; both nets use the same rate.",
    ),
    Control("steps", "Training steps", "grid", D["steps"], options=(500, 1000, 2000, 5000, 10000)),
    Control(
        "weight_decay",
        "Weight decay (training)",
        "choice",
        D["weight_decay"],
        options=scale.WEIGHT_DECAY_CHOICES,
        help="L2 penalty. It pulls ||W|| back while the gradient steps push it out.",
    ),
    Control(
        "a", "Scale a of the weights", "grid", D["a"], options=log_grid(0.01, 100), where="view"
    ),
    Control("gamma", "gamma (scale)", "float", D["gamma"], lo=0.0, hi=5.0, step=0.05, where="view"),
    Control("beta", "beta (offset)", "float", D["beta"], lo=-5.0, hi=5.0, step=0.05, where="view"),
    Control(
        "identity",
        "Recover the identity",
        "bool",
        D["identity"],
        help="Sets gamma = sqrt(var + eps) and beta = mean of this unit's input: y = x.",
        where="view",
    ),
    Control(
        "bn_layer",
        "Hidden layer of the BN net",
        "int",
        D["bn_layer"],
        lo=1,
        hi=3,
        step=1,
        where="view",
        widget="segmented",
    ),
    Control(
        "unit",
        "Unit",
        "int",
        D["unit"],
        lo=-1,
        hi=99,
        step=1,
        labels={-1: "the most off-centre unit"} | {u: f"#{u}" for u in range(100)},
        help="Off-centre: the largest |mean| / std of its BN input, where undoing the "
        "normalization needs both a scale and a shift.",
        where="view",
        widget="select",
    ),
]
BY_NAME = {c.name: c for c in CONTROLS}


def sci(v: float) -> str:
    """A small number for a metric: 3.1e-16, or 0 when it is exactly 0."""
    return "0" if v == 0 else f"{v:.2g}"


pieces.lead(
    "Batch Normalization divides each unit's input by its own spread over the batch, so it "
    "does not care how large the weights before it are: **BN((aW)u) = BN(Wu)** for any a > 0. "
    "Below you scale the weights of a real layer, on real handwritten digits, and watch what "
    "changes and what does not: the output, the gradients, and over a whole training run the "
    "length of the weights. Then you set a BN unit's **gamma** and **beta** by hand.",
)
values = widgets.page_controls(PAGE, CONTROLS, scale.PRESETS, scale.PRESET_HELP)
eps = float(values["eps"])

# ----------------------------------------------------------------------------- part 1
st.header("1 · Scale the weights that feed a BN layer")
pieces.predict(
    f"{PAGE}.scale",
    "Multiply the weights that feed a BN layer by 100. How much does BN's output change? "
    "And the gradient of those weights? Then move the slider.",
)
slider_col, note_col = st.columns([3, 2])
a = widgets.view(PAGE, BY_NAME["a"], slider_col)
note_col.caption(
    f"The page takes the paper's net (64 → 3 × 100 sigmoid → 10) at step 0, scales the "
    f"weights W of hidden layer {values['layer']} by a, and runs one training step's forward "
    f"and backward pass on a batch of {values['batch_size']} real digits, with BN and without. "
    f"Layer and eps are in the sidebar."
)
try:
    ident = scale.identity(values["layer"], a, eps, values["batch_size"], values["seed"])
except ValueError as err:
    pieces.cannot_run(err)
    st.stop()

cols = st.columns(4)
cols[0].metric(
    "max |BN((aW)u) − BN(Wu)|",
    sci(ident.out_diff),
    help="Over every unit and example of the batch. 0 up to rounding (about 1e-15) when "
    "eps = 0; about eps / var otherwise.",
)
cols[1].metric(
    "dL/du with BN: max change",
    "no gradient" if ident.bn_grad_vanishes else sci(ident.du_change("bn")),
    help="Relative to the largest entry of dL/du at a = 1. The plain net's changes by "
    f"{ident.du_change('plain'):.2g}.",
)
cols[2].metric(
    "a · ‖∂L/∂(aW)‖ / ‖∂L/∂W‖ with BN",
    "no gradient" if ident.bn_grad_vanishes else f"{ident.grad_ratio('bn'):.6f}",
    help="Exactly 1 means the gradient of the scaled weights is 1/a times the original.",
)
cols[3].metric(
    "fitted slope, log-log",
    "no gradient" if ident.bn_grad_vanishes else f"{ident.slope_bn:.3f}",
    help="Least-squares slope of log ‖∂L/∂(aW)‖ against log a over a = 0.01 … 100.",
)
pieces.chart(figs.outputs_overlay(ident), key="overlay")
pieces.chart(figs.input_gradients(ident), key="du")
left, right = st.columns(2)
with left:
    pieces.chart(figs.gradient_law(ident), key="law")
right.markdown(
    """
**Why larger weights get smaller gradients.** Scale W by a and BN's output does not move, so
neither does the loss: L(aW) = L(W). Differentiate both sides with respect to W: a · ∂L/∂(aW) =
∂L/∂W. The gradient of the scaled weights is **1/a** times the original: the straight line of
slope −1 on the left. The gradient at the input, ∂L/∂u, does not change at all (above), so the
layers below see exactly the same signal whatever the scale of W. Without BN (orange) scaling
W scales what the next layer receives and changes the loss and every gradient.
"""
)
if ident.bn_grad_vanishes:
    st.info(
        "With a batch of 2 and eps = 0, BN turns any two different values into −1 and +1, so "
        "the loss does not depend on W at all and its gradient is zero. Take a larger batch.",
        icon=":material/info:",
    )
if eps > 0 and ident.out_diff > 1e-6:
    st.info(
        f"With eps = {eps:g} the identity is only approximate: BN divides by "
        f"sqrt(a²·var + eps) instead of a·sqrt(var), so where a²·var is not much larger than "
        f"eps the scale leaks through. Set eps to 0 to see it exact.",
        icon=":material/info:",
    )
orthogonal_note = (
    "zero up to float64 rounding, since eps = 0 here"
    if eps == 0
    else f"near zero; exactly zero only at eps = 0, and here eps = {eps:g}"
)
st.markdown(
    f"""
**Why the gradient is orthogonal to W.** L(aW) = L(W) for all a means moving W along itself
changes nothing: W · ∂L/∂W = 0 (measured here: cos(W, ∂L/∂W) = {ident.cos_w_grad:.1e},
{orthogonal_note}). So a gradient step W − lr·g (g = ∂L/∂W) is the hypotenuse of a right
triangle, ‖W − lr·g‖² = ‖W‖² + lr²‖g‖²: plain SGD can only make ‖W‖ grow. Part 2 shows it
in a real training run.

**Why the bias before BN is redundant.** BN subtracts the batch mean, and a bias b shifts every
example of a unit by the same amount, so BN(Wu + b) = BN(Wu) (measured here: max difference
{sci(ident.bias_diff)}). That is why a BN net's Linear layers have no bias: beta takes its
place, z = g(BN(Wu)) with g the nonlinearity.
"""
)

# ----------------------------------------------------------------------------- part 2
st.header("2 · Over training: ‖W‖ grows, lr/‖W‖² falls by itself")
try:
    cfg = scale.config(values["lr"], values["steps"], values["seed"], float(values["weight_decay"]))
except ValueError as err:
    pieces.cannot_run(err)
    st.stop()
st.markdown(
    f"The same two nets train side by side for {cfg.steps:,} steps at learning rate "
    f"{cfg.lr:g} (batch 60, same initial weights, same batches). For the BN net the length of W "
    f"is irrelevant to the output, only its direction matters, and a step of size lr turns "
    f"W by about lr·‖g‖/‖W‖ = (lr/‖W‖²)·‖g₁‖, where g₁ is the gradient W would have at length "
    f"1: **lr/‖W‖² is the step size that counts**. For the plain net the length of W matters "
    f"and lr/‖W‖² has no such meaning; it is drawn for comparison."
)
twins = run.run_experiment(scale.EXPERIMENT, cfg)
if twins is None:
    st.stop()
pieces.divergence_notes(twins)
norms = {h.label: scale.weight_norms(h) for h in twins}
elr = scale.effective_lr(twins.bn)
layer = values["layer"]
cols = st.columns(4)
w_bn, lr_bn = norms["BN"][layer - 1], elr[layer - 1]
cols[0].metric(
    f"BN net ‖W{layer}‖: step 0 → end",
    f"{w_bn[0]:.3g} → {w_bn[-1]:.3g}",
    help="The norm of the layer's weight matrix at the first and the last record.",
)
cols[1].metric(
    f"BN net lr/‖W{layer}‖²: step 0 → end",
    f"{lr_bn[0]:.3g} → {lr_bn[-1]:.3g}",
    help=f"The effective learning rate fell {lr_bn[0] / lr_bn[-1]:.0f}-fold with lr constant.",
)
for col, h in zip(cols[2:], twins, strict=True):
    col.metric(
        f"{h.label} net: test accuracy",
        f"{h.test_acc[-1]:.1%}",
        help=f"On the test split after {h.record_steps[-1]:,} steps (eval mode).",
    )
pieces.chart(figs.norms_over_training(twins), key="norms")
st.caption(
    "Bottom row: ‖W_after − W_before‖ / ‖W_before‖ of single updates, recorded every "
    f"{cfg.record_every} steps and averaged (geometric mean) over {figs.SMOOTH} records, since "
    "one mini-batch's step is noisy. Does the BN net's step follow lr/‖W‖² down?"
)
st.markdown(
    "**Now scale a layer of the trained nets.** Below, W of the layer chosen in the sidebar is "
    "multiplied by a, from 0.01 to 100, and both trained nets are evaluated on the test split. "
    "BN is in **training mode** here: it normalizes with the statistics of that batch, which "
    "scale with W. (In eval mode BN uses running averages gathered at a = 1, which do not "
    "scale, so the BN net's loss would change too until they are re-estimated.)"
)
pieces.lesson_link("inference", "Training vs inference: running averages and what eval mode uses")
trained = scale.scale_trained(twins, layer)
pieces.chart(figs.trained_scaling(trained, a), key="trained")

# ----------------------------------------------------------------------------- part 3
st.header("3 · gamma and beta: the unit's scale and offset")
st.markdown(
    "After BN every unit has mean 0 and variance 1 over the batch, and for a sigmoid that "
    "means most inputs fall where it is nearly a straight line, 0.5 + y/4: the net would be "
    "close to linear. So BN does not stop at x̂; it outputs **y = γ x̂ + β**, with a learned "
    "scale γ and offset β per unit. They can put the unit anywhere on the sigmoid, and with "
    "γ = sqrt(var + eps), β = mean they undo the normalization entirely: BN can represent the "
    "identity, so adding it never takes representation power away. The unit's scale and "
    "offset now live in γ and β rather than in the weights and the bias before it."
)
pieces.lesson_link("bn_steps", "BN step by step: where γ and β enter the computation")
c1, c2, c3 = st.columns([2, 2, 3])
with c1:
    identity = widgets.view(PAGE, BY_NAME["identity"])
    gamma = widgets.view(PAGE, BY_NAME["gamma"], disabled=identity)
    beta = widgets.view(PAGE, BY_NAME["beta"], disabled=identity)
bn_layer = widgets.view(PAGE, BY_NAME["bn_layer"], c2)
unit = widgets.view(PAGE, BY_NAME["unit"], c2)
gb = scale.gamma_beta(twins, bn_layer, unit, gamma, beta, identity)
c3.markdown(
    f"Unit **#{gb.unit}** of BN layer {gb.layer} in the trained BN net, fed all "
    f"{len(gb.x)} test digits as one batch. Its input has mean {gb.mean:.3f} and variance "
    f"{gb.var:.4f}; training chose γ = {gb.learned_gamma:.3f}, β = {gb.learned_beta:.3f}."
)
cols = st.columns(4)
cols[0].metric(
    "near-linear: |y| < 1",
    f"{gb.linear_fraction:.1%}",
    help="There the sigmoid is within 0.019 of its tangent 0.5 + y/4.",
)
cols[1].metric(
    f"saturated: |y| > {scale.SATURATION_Y:.2f}",
    f"{gb.saturated_fraction:.1%}",
    help="There the sigmoid's slope is under 10% of its peak: the unit barely learns.",
)
cols[2].metric("γ, β in use", f"{gb.gamma:.4g}, {gb.beta:.4g}")
cols[3].metric(
    "max |y − x| (0 at the identity)",
    sci(gb.identity_error),
    help="0 up to rounding when γ = sqrt(var + eps) and β = mean.",
)
notes = pieces.Notes(
    "What to notice",
    f"""
- **The overlay is exact.** At eps = 0 the BN outputs for W and aW agree to about 1e-15, the
  rounding of float64, for every a from 0.01 to 100. Raise eps and shrink a: once a²·var
  approaches eps, BN stops normalizing and the scale leaks through.
- **Slope −1.** The gradient of the scaled weights falls as 1/a: a layer whose weights have
  grown gets proportionally smaller gradients, and one whose weights are small gets larger
  ones. The scale of W regulates how fast that layer learns.
- **‖W‖ only grows.** In the BN net every gradient is orthogonal to W, so plain SGD lengthens
  W at every step and the effective step lr/‖W‖² falls by itself, without a schedule: a built-in
  learning-rate decay. Add weight decay and the two forces balance.
- **The plain net is not scale invariant.** Scaling a trained plain net's weights wrecks its
  loss; the BN net's loss is flat in a (in training mode, up to eps at tiny a).
- **γ and β.** γ = 1, β = 0 keeps {gb.standard_linear_fraction:.0%} of this unit's inputs in the
  sigmoid's near-linear band; a large γ pushes them into saturation; the identity preset gives the
  input back unchanged. Ioffe & Szegedy proposed BN to reduce *internal covariate shift*, a
  hypothesis later work questions; the scale invariance shown here is a plain fact of the
  algebra, whatever explains BN's speed-up.
""",
)
with notes.beside():
    pieces.chart(figs.gamma_beta(gb), key="gamma-beta")

notes.box()
with st.expander("Formulas"):
    pieces.formulas(
        r"\mathrm{BN}(x) = \gamma\,\frac{x-\mu_B}{\sqrt{\sigma_B^2+\epsilon}} + \beta,\qquad "
        r"\mu_B(aWu) = a\,\mu_B(Wu),\quad \sigma_B^2(aWu) = a^2\,\sigma_B^2(Wu)",
        r"\mathrm{BN}((aW)u) = \mathrm{BN}(Wu)\quad(\epsilon = 0,\ a > 0)",
        r"\frac{\partial\,\mathrm{BN}((aW)u)}{\partial u} = \frac{\partial\,\mathrm{BN}(Wu)}"
        r"{\partial u},\qquad \frac{\partial\,\mathrm{BN}((aW)u)}{\partial (aW)} = \frac{1}{a}\,"
        r"\frac{\partial\,\mathrm{BN}(Wu)}{\partial W}",
        r"W\cdot\nabla_W L = 0 \;\Rightarrow\; "
        r"\|W - \eta\nabla_W L\|^2 = \|W\|^2 + \eta^2\|\nabla_W L\|^2,\qquad "
        r"\eta_{\mathrm{eff}} = \frac{\eta}{\|W\|^2}",
        r"\mathrm{BN}(Wu + b) = \mathrm{BN}(Wu),\qquad z = g(\mathrm{BN}(Wu))\quad"
        r"(g\text{: the nonlinearity})",
        r"\gamma = \sqrt{\sigma_B^2+\epsilon},\ \beta = \mu_B \;\Rightarrow\; y = x,\qquad "
        r"\sigma(y) \approx \tfrac12 + \tfrac{y}{4}\ \text{ for } |y| < 1",
    )
    st.caption(
        "With eps > 0: BN((aW)u) = γ (aWu − aμ) / sqrt(a²σ² + eps) + β, equal to BN(Wu) when "
        "a²σ² ≫ eps. Saturation: sigmoid'(y) is under 10% of its peak for "
        f"|y| > {scale.SATURATION_Y:.2f}."
    )

st.subheader("Download the data")
pieces.downloads(
    {
        "Gradient law (CSV)": (lambda: scale.identity_csv(ident), "bnviz-scale-gradient-law.csv"),
        "Scaled layer (NPZ)": (lambda: scale.identity_npz(ident), "bnviz-scale-layer.npz"),
        "Weight norms (CSV)": (lambda: scale.norms_csv(twins), "bnviz-scale-norms.csv"),
    },
    key=f"{PAGE}-1",
)
pieces.downloads(
    {
        "Trained nets, scaled (CSV)": (
            lambda: scale.trained_csv(trained),
            "bnviz-scale-trained.csv",
        ),
        "gamma/beta unit (CSV)": (lambda: scale.gamma_beta_csv(gb), "bnviz-scale-unit.csv"),
        "Training run (NPZ)": (lambda: twins_to_npz(twins), "bnviz-scale-run.npz"),
    },
    key=f"{PAGE}-2",
)
