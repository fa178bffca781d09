"""Lesson: backprop through BN. The computation graph, the paper's chain rule and the compact
form, checked live on the student's batch against finite differences and PyTorch autograd."""

import numpy as np
import streamlit as st

from bnviz.app import pieces, run, widgets
from bnviz.app.controls import Control, log_grid, seed_control
from bnviz.experiments import backprop as bp
from bnviz.figures import backprop as figs
from bnviz.gradcheck import rel_error

PAGE = "backprop"
D = bp.DEFAULTS
CONTROLS = [
    Control(
        "m",
        "Batch size m",
        "int",
        D["m"],
        lo=2,
        hi=256,
        step=1,
        help="Training digits in the mini-batch; a larger m adds digits to the same batch.",
    ),  # fmt: skip
    seed_control(D["seed"], help="The batch, the net's initial weights, the random gradient."),
    Control(
        "eps",
        "ε",
        "choice",
        D["eps"],
        options=bp.EPS_CHOICES,
        labels={"0": "0 (the exact identities)", "1e-5": "1e-5 (PyTorch's default)"},
        help="Of the BN layer being differentiated. 0 is built as the smallest positive float.",
    ),
    Control(
        "upstream",
        "Upstream gradient ∂L/∂y",
        "choice",
        D["upstream"],
        options=bp.UPSTREAMS,
        labels={
            "loss": "from the real loss",
            "random": "random, N(0, 1)",
            "constant": "the same number everywhere",
        },
        widget="radio",
    ),
    Control("layer", "Hidden layer", "int", D["layer"], lo=1, hi=3, step=1, widget="segmented"),
    Control(
        "steps",
        "The net",
        "choice",
        D["steps"],
        options=bp.NET_STEPS,
        labels={0: "untrained (step 0)"} | {s: f"trained {s:,} steps" for s in bp.NET_STEPS[1:]},
        help="The paper's net on digits (3 × 100 sigmoid units with BN), lr 0.5, batch 60.",
        widget="segmented",
    ),
    Control(
        "h",
        "Finite-difference step h (log scale)",
        "grid",
        D["h"],
        options=log_grid(1e-12, 0.1, (1, 3)),
        where="view",
    ),
    Control(
        "unit",
        "Unit checked",
        "int",
        D["unit"],
        lo=-1,
        hi=99,
        step=1,
        labels={-1: "the most off-centre unit"} | {u: f"#{u}" for u in range(100)},
        where="view",
        widget="select",
    ),
    Control(
        "torch",
        "Also check with PyTorch autograd",
        "bool",
        D["torch"],
        help="Imports torch (a few seconds the first time) and differentiates "
        "torch.nn.functional.batch_norm in training mode, in float64.",
        where="view",
    ),
]
BY_NAME = {c.name: c for c in CONTROLS}


def sci(v: float) -> str:
    return "0" if v == 0 else f"{v:.2g}"


def agrees(err: float) -> str:
    return "yes" if err < bp.TOL else "no"


pieces.lead(
    "Backpropagation through BN is the chain rule through a node most layers do not have: the "
    "batch statistics μ_B and σ_B² depend on *every* example, so each input's gradient gets a "
    "share of everyone's. Below, the paper's equations one by one, and the compact form they "
    "collapse to, computed on a batch of real activations of the paper's net and checked "
    "three independent ways."
)
values = widgets.page_controls(PAGE, CONTROLS, bp.PRESETS, bp.PRESET_HELP)
eps = float(values["eps"])
if values["steps"] == 0:
    model, net_cfg = bp.untrained(values["seed"])
    net_words = "the untrained net (step 0)"
else:
    try:
        train_cfg = bp.config(values["steps"], values["seed"])
    except ValueError as err:
        st.error(f"These settings cannot run: {err}")
        st.stop()
    history = run.run_experiment(bp.EXPERIMENT, train_cfg)
    if history is None:
        st.stop()
    pieces.divergence_notes([history])
    model, net_cfg = bp.trained(history), history.config
    net_words = f"the net after {history.steps_done:,} training steps"
try:
    c = bp.check(
        model, net_cfg, values["layer"], values["m"], values["seed"], eps,
        values["upstream"], values["h"], values["unit"],
    )  # fmt: skip
except ValueError as err:
    st.error(f"These settings cannot run: {err}")
    st.stop()
j, m, f = c.unit, c.m, c.facts
st.caption(
    f"The batch: {m} training digits through {net_words}; x is hidden layer {c.batch.layer}'s "
    f"BN input (100 units), with the γ and β the net has, ε = {eps:g}, and ∂L/∂y "
    f"{figs.UPSTREAM_NAMES[c.upstream]}. Numbers in the graph and the equations are for unit "
    f"#{j}."
)

# ----------------------------------------------------------------------------- part 1
st.header("1 · The computation graph")
pieces.chart(figs.graph(c), key="graph")
st.markdown(
    "Each input x_i reaches the loss along **three paths**: directly through x − μ_B into x̂, "
    "through the mean μ_B (which shifts every x̂), and through the variance σ_B² (which scales "
    "every x̂). The backward pass (vermillion) collects all three; the paper's equations below "
    "do it one node at a time, from y back to x."
)

# ----------------------------------------------------------------------------- part 2
st.header("2 · The chain rule, in the paper's order")
s = c.steps
EQUATIONS = [
    (
        r"\frac{\partial L}{\partial \hat x_i} = \frac{\partial L}{\partial y_i}\cdot\gamma",
        f"example 0: {s.dx_hat[0, j]:.6g}",
    ),
    (
        r"\frac{\partial L}{\partial \sigma_B^2} = \sum_{i=1}^m "
        r"\frac{\partial L}{\partial \hat x_i}\,(x_i-\mu_B)\cdot"
        r"\left(-\tfrac12\right)(\sigma_B^2+\epsilon)^{-3/2}",
        f"{s.dvar[j]:.6g}",
    ),
    (
        r"\frac{\partial L}{\partial \mu_B} = \left(\sum_{i=1}^m \frac{\partial L}{\partial "
        r"\hat x_i}\cdot\frac{-1}{\sqrt{\sigma_B^2+\epsilon}}\right) + \frac{\partial L}"
        r"{\partial \sigma_B^2}\cdot\frac{\sum_{i=1}^m -2(x_i-\mu_B)}{m}",
        f"{s.dmu[j]:.6g} (the second term is {sci(c.mu_term)}: the deviations sum to zero)",
    ),
    (
        r"\frac{\partial L}{\partial x_i} = \frac{\partial L}{\partial \hat x_i}\cdot"
        r"\frac{1}{\sqrt{\sigma_B^2+\epsilon}} + \frac{\partial L}{\partial \sigma_B^2}\cdot"
        r"\frac{2(x_i-\mu_B)}{m} + \frac{\partial L}{\partial \mu_B}\cdot\frac{1}{m}",
        f"example 0: {s.dx[0, j]:.6g}",
    ),
    (
        r"\frac{\partial L}{\partial \gamma} = \sum_{i=1}^m \frac{\partial L}{\partial y_i}"
        r"\,\hat x_i",
        f"{s.dgamma[j]:.6g}",
    ),
    (
        r"\frac{\partial L}{\partial \beta} = \sum_{i=1}^m \frac{\partial L}{\partial y_i}",
        f"{s.dbeta[j]:.6g}",
    ),
]
for latex, number in EQUATIONS:
    left, right = st.columns([3, 1], vertical_alignment="center")
    left.latex(latex)
    right.markdown(f"unit #{j}: **{number}**")
st.markdown(
    "Substitute the middle two into the fourth and the sums collapse. With g_i = ∂L/∂x̂_i, "
    "the **compact form** (`functional.batchnorm_backward`, which the app's reference "
    "BatchNorm1d uses):"
)
left, right = st.columns([3, 1], vertical_alignment="center")
left.latex(
    r"\frac{\partial L}{\partial x_i} = \frac{1}{m\sqrt{\sigma_B^2+\epsilon}}\left(m\,g_i - "
    r"\sum_{k=1}^m g_k - \hat x_i\sum_{k=1}^m g_k\,\hat x_k\right)"
)
right.markdown(
    f"example 0: **{c.dx[0, j]:.6g}**; the two forms differ by {sci(rel_error(c.dx, s.dx))} "
    "(relative, whole layer)"
)

# ----------------------------------------------------------------------------- part 3
st.header("3 · Check it on your batch")
c1, c2, c3 = st.columns([3, 2, 2])
widgets.view(PAGE, BY_NAME["h"], c1, format=lambda v: f"{v:g}")
widgets.view(PAGE, BY_NAME["unit"], c2)
use_torch = widgets.view(PAGE, BY_NAME["torch"], c3)
torch_check, torch_note = None, None
if use_torch:
    try:
        torch_check = bp.torch_gradients(c)
    except ImportError as err:
        torch_note = f"PyTorch is not installed here ({err}); the other checks stand."
rows = [
    {
        "gradient": "∂L/∂x, ∂L/∂γ, ∂L/∂β (whole layer)",
        "computed by": "the paper's chain rule (batchnorm_backward_steps)",
        "against": "the compact form",
        "relative error": f"{c.steps_error:.1e}",
        "max abs. difference": f"{float(np.max(np.abs(c.steps.dx - c.dx))):.1e}",
        "< 1e-7": agrees(c.steps_error),
    },
    {
        "gradient": f"∂L/∂x, unit #{j} ({m} entries)",
        "computed by": f"central differences, h = {c.h:g} (gradcheck.numerical_gradient)",
        "against": "the compact form",
        "relative error": f"{c.fd_error:.1e}",
        "max abs. difference": f"{c.fd_abs_error:.1e}",
        "< 1e-7": agrees(c.fd_error),
    },
]
if c.true is not None:
    rows.append(
        {
            "gradient": f"∂L/∂x, unit #{j} ({len(c.true.examples)} entries)",
            "computed by": f"central differences of the real loss through the net, h = {c.h:g}",
            "against": "backprop of ∂L/∂y (the net's ε = 1e-5)",
            "relative error": f"{c.true.error:.1e}",
            "max abs. difference": f"{float(np.max(np.abs(c.true.fd - c.true.backprop))):.1e}",
            "< 1e-7": agrees(c.true.error),
        }
    )
if torch_check is not None:
    errs = torch_check.errors(c)
    for what, key, against in (
        ("∂L/∂x (whole layer)", "dx vs compact", "the compact form"),
        ("∂L/∂x (whole layer)", "dx vs chain rule", "the paper's chain rule"),
        ("∂L/∂γ", "dgamma", "the compact form"),
        ("∂L/∂β", "dbeta", "the compact form"),
    ):
        rows.append(
            {
                "gradient": what,
                "computed by": f"PyTorch {torch_check.version} autograd",
                "against": against,
                "relative error": f"{errs[key]:.1e}",
                "max abs. difference": "",
                "< 1e-7": agrees(errs[key]),
            }
        )
st.table(rows, hide_index=True)
if torch_note:
    st.warning(torch_note)
elif not use_torch:
    st.caption("Switch on the PyTorch check above to add torch's autograd to the table.")
st.caption(
    "Relative error: max |a − b| / max(|a| + |b|), over the entries compared. The finite "
    "differences perturb one input at a time by ±h and difference L = Σ ∂L/∂y · y, whose "
    "gradient is exactly what backprop hands down."
)
if c.upstream == "constant":
    st.info(
        f"Every upstream gradient is the same number, so ∂L/∂x is zero up to rounding "
        f"(largest entry {sci(f.constant_dx)}, against γ/√(σ²+ε) = {sci(f.constant_scale)}): "
        f"the relative errors above compare rounding noise with rounding noise and mean "
        f"nothing. The absolute differences are all at the level of rounding.",
        icon=":material/info:",
    )
sw = c.sweep
sigma_j = float(np.sqrt(c.cache.var[j]))
if c.upstream != "constant" and c.fd_error >= bp.TOL and c.h > sw.best_h:
    st.info(
        f"Finite differences miss by {c.fd_error:.1e} here: h = {c.h:g} is not small against "
        f"this unit's spread σ_B = {sigma_j:.3g} (the truncation error grows as (h/σ_B)²). "
        f"The sweep's best h for this unit is {sw.best_h:.0e}.",
        icon=":material/info:",
    )
elif c.upstream != "constant" and c.fd_error >= bp.TOL:
    st.info(
        f"Finite differences miss by {c.fd_error:.1e} here: with h = {c.h:g} the rounding of "
        f"each evaluation of L (about 1e-16 |L|) divided by 2h dominates. The sweep's best h "
        f"for this unit is {sw.best_h:.0e}.",
        icon=":material/info:",
    )
left, right = st.columns(2)
with left:
    pieces.chart(figs.h_sweep(c), key="h-sweep")
with right:
    pieces.chart(figs.per_example(c, torch_check), key="per-example")
st.markdown(
    f"**The error against h.** Central differences err by about f‴·h²/6 (truncation), and "
    f"each evaluation of L is rounded by about 1e-16·|L|, an error of 1e-16·|L|/h in the "
    f"difference quotient (rounding). Fitted slopes on this batch: **{sw.trunc_slope:.2f}** "
    f"right of the best h (truncation, expect 2) and **{sw.round_slope:.2f}** left of it "
    f"(rounding, expect −1); the best h here is {sw.best_h:.0e} (error "
    f"{sw.error[sw.best]:.1e}). The grey diamonds on the right chart are what backprop would "
    "give if μ_B and σ_B² were constants: the gap is the share of the two extra paths."
)

# ----------------------------------------------------------------------------- part 4
st.header("4 · Three facts, measured on this batch")
cols = st.columns(3)
cols[0].metric(
    "Σᵢ ∂L/∂xᵢ, relative",
    sci(f.sum_dx_rel),
    help=f"The worst unit; absolute {sci(f.sum_dx)}. Relative to Σᵢ |γ ∂L/∂yᵢ| / √(σ² + ε), "
    "the size of the terms that cancel. Exact for any ε.",
)
cols[1].metric(
    "Σᵢ ∂L/∂xᵢ x̂ᵢ at ε → 0, relative",
    sci(f.sum_dx_xhat_exact_rel),
    help=f"The worst unit; absolute {sci(f.sum_dx_xhat_exact)}.",
)
cols[2].metric(
    "∂L/∂u, a = 0.01 … 100, ε → 0: max change",
    sci(float(f.du_change_exact.max())),
    help="Relative to max |∂L/∂u| at a = 1, for BN((aW)u).",
)
st.markdown(
    f"""
1. **Σᵢ ∂L/∂xᵢ = 0** ({sci(f.sum_dx_rel)} here, relative to the terms that cancel):
   shifting every input of a unit by the same amount changes nothing after BN, so the
   gradient has no component along (1, …, 1).
2. **Σᵢ ∂L/∂xᵢ x̂ᵢ = 0 as ε → 0** ({sci(f.sum_dx_xhat_exact_rel)} at ε → 0): scaling a unit's
   centred inputs changes nothing either, so no component along x̂. With ε = {eps:g} it is
   not quite zero: exactly (1/√(σ²+ε))·Σ gᵢx̂ᵢ·ε/(σ²+ε), which is {f.sum_dx_xhat_predicted:.4g}
   on the unit where it is largest; measured {f.sum_dx_xhat:.4g}. BN removes the mean and
   the scale directions from the gradient.
3. **BN(aWu) has the same ∂L/∂u for every a.** x = W u, so scaling W by a scales x by a,
   which BN undoes; the input u gets exactly the same gradient (the scale lesson, linked
   below, follows this through training). Measured on this batch:
"""
)
pieces.lesson_link("scale", "Scale invariance and gamma/beta: the same fact through training")
left, right = st.columns([3, 2])
left.table(
    {
        "a": [f"{a:g}" for a in f.scales],
        "change of ∂L/∂u, ε → 0": [sci(v) for v in f.du_change_exact],
        f"change of ∂L/∂u, ε = {eps:g}": [sci(v) for v in f.du_change],
    },
    hide_index=True,
)
right.caption(
    "With ε > 0 the invariance breaks where a²σ_B² is not much larger than ε: small a on a "
    f"layer whose inputs vary little (here the smallest σ_B² of the layer is "
    f"{float(c.cache.var.min()):.2g})."
)

# ----------------------------------------------------------------------------- part 5
st.header("5 · Predict, then reveal")
reveal = pieces.predict_choice(
    f"{PAGE}.constant",
    "If every upstream gradient ∂L/∂yᵢ is the same number, what is ∂L/∂x?",
    ["that number times γ/√(σ²+ε)", "that number divided by m", "zero", "it depends on x"],
    "zero",
    expanded=c.upstream == "constant",
)
if reveal:
    with reveal:
        st.markdown(
            f"**Zero.** Adding the same number c to every yᵢ is what β does: the loss changes by "
            f"c·Σᵢ ∂L/∂yᵢ through β, and nothing reaches x, because x̂ has mean 0 whatever x is. In "
            f"the compact form, g is constant, so m gᵢ − Σ g = 0 and Σ g x̂ = c Σ x̂ = 0. On this "
            f"batch with ∂L/∂y = {bp.CONSTANT:g} everywhere: the largest |∂L/∂xᵢ| is "
            f"**{sci(f.constant_dx)}**, against {sci(f.constant_scale)} for a single entry of "
            f"γ ∂L/∂y/√(σ²+ε)"
            + (
                ": zero up to float64 rounding."
                if f.constant_dx <= 1e-10 * f.constant_scale
                else "."
            )
        )

pieces.notice_box(
    "What to notice",
    f"""
- **Three paths, one formula.** The chain rule through μ_B and σ_B² (paper's order) and the
  compact form agree to {sci(c.steps_error)}: float64 rounding.
- **Finite differences agree** to {c.fd_error:.1e} at h = {c.h:g}, and to
  {sw.error[sw.best]:.1e} at the best h of the sweep, {sw.best_h:.0e}. Make h smaller and
  rounding takes over; larger, and truncation does.
- **The gradient is projected.** Σ ∂L/∂x = 0 and Σ ∂L/∂x · x̂ = 0 (at ε → 0): the gradient
  cannot move a unit's batch mean or its spread, which BN throws away in the forward pass.
- **m = 2 and m = 1.** With two examples x̂ = ±1 whatever x is (up to ε), so ∂L/∂x all but
  vanishes (exactly at ε → 0); try the preset. With one example it is exactly zero.
- **Scale invariance** gives ∂L/∂u independent of the scale of W: larger weights get
  proportionally smaller weight gradients (the scale lesson's slope −1).
""",
)
with st.expander("Formulas"):
    pieces.formulas(
        r"g_i = \frac{\partial L}{\partial \hat x_i},\qquad \frac{\partial L}{\partial x_i} = "
        r"\frac{1}{\sqrt{\sigma_B^2+\epsilon}}\left(g_i - \bar g - \hat x_i\,"
        r"\overline{g\hat x}\right),\quad \bar g = \frac1m\sum_k g_k,\ "
        r"\overline{g\hat x} = \frac1m\sum_k g_k\hat x_k",
        r"\sum_i \frac{\partial L}{\partial x_i} = 0,\qquad "
        r"\sum_i \frac{\partial L}{\partial x_i}\hat x_i = \frac{1}{\sqrt{\sigma_B^2+\epsilon}}"
        r"\,\frac{\epsilon}{\sigma_B^2+\epsilon}\sum_i g_i\hat x_i \;\to\; 0",
        r"\frac{f(x+h)-f(x-h)}{2h} = f'(x) + \frac{f'''(x)}{6}h^2 + O(h^4),\qquad "
        r"\text{rounding} \approx \frac{\epsilon_{\text{mach}}\,|f|}{h}",
        r"\frac{\partial\,\mathrm{BN}((aW)u)}{\partial u} = \frac{\partial\,\mathrm{BN}(Wu)}"
        r"{\partial u}\quad(\epsilon = 0,\ a > 0)",
    )

st.subheader("Download the data")
pieces.downloads(
    {
        "This unit, every gradient (CSV)": (
            lambda: bp.unit_csv(c, torch_check),
            "bnviz-backprop-unit.csv",
        ),
        "The batch and its gradients (NPZ)": (
            lambda: bp.check_npz(c, torch_check),
            "bnviz-backprop-batch.npz",
        ),
    },
    key=PAGE,
)
st.caption("Every chart also saves as a PNG from its toolbar (the camera icon).")
