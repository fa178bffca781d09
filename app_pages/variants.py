"""Lesson: variants and pitfalls. Which values each normalizer averages over; BN, LN and GN as
the batch shrinks; dropout's variance shift; batch size 1 and recurrent nets."""

import math

import streamlit as st

from bnviz.app import pieces, run, widgets
from bnviz.app.controls import Control, activation_control, log_grid, seed_control
from bnviz.experiments import variants as vr
from bnviz.figures import variants as figs

PAGE = "variants"
D = vr.DEFAULTS
CONTROLS = [
    Control(
        "examples",
        "Examples each net sees",
        "grid",
        D["examples"],
        options=vr.EXAMPLES,
        labels={e: f"{e:,} (≈{e / vr.TRAIN_DIGITS:.0f} passes)" for e in vr.EXAMPLES},
        help="The same for every batch size: batch 2 takes this / 2 steps, batch 64 this / 64.",
    ),
    Control(
        "lr",
        "Learning rate at batch 32",
        "grid",
        D["lr"],
        options=log_grid(0.01, 1),
        help="Batch m trains at this × m / 32, the Group Norm paper's rule (0.1 × N / 32 there).",
    ),
    Control(
        "groups",
        "GroupNorm: groups of the 64 units",
        "grid",
        D["groups"],
        options=vr.GROUPS,
        labels={g: f"{g} ({64 // g} unit{'s' if g < 64 else ''} each)" for g in vr.GROUPS},
        help="1 group would be LayerNorm; 64 groups normalize each unit alone.",
    ),
    activation_control(D["activation"]),
    Control("depth", "Hidden layers (64 units each)", "int", D["depth"], lo=1, hi=4, step=1),
    seed_control(
        D["seed"],
        help="Initial weights and batch order; each cell of the grid trains seeds s and s + 1.",
    ),
    Control(
        "keep",
        "Dropout keep probability p",
        "grid",
        D["keep"],
        options=vr.KEEPS,
        help="Inverted dropout: a unit is kept with probability p and scaled by 1/p.",
        where="view",
    ),
    Control(
        "mean",
        "Mean c of the input (its variance v is 1)",
        "grid",
        D["mean"],
        options=vr.MEANS,
        where="view",
    ),
    Control(
        "digit",
        "Test digit",
        "int",
        D["digit"],
        lo=0,
        hi=vr.TEST_DIGITS - 1,
        step=1,
        where="view",
    ),
]
BY_NAME = {c.name: c for c in CONTROLS}


def seeds_words(n: int, first: int) -> str:
    """How many nets train in each cell of the grid, and their seeds."""
    if n == 1:
        return f"One net per cell (seed {first})"
    seeds = f"{first} and {first + 1}" if n == 2 else f"{first} to {first + n - 1}"
    return f"{n} nets per cell (seeds {seeds})"


@st.cache_resource(show_spinner=False)
def static_charts() -> tuple:
    """The block picture and the Group Norm paper's numbers: the same for every visitor."""
    return figs.nchw_blocks(), figs.paper_chart()


@st.cache_data(max_entries=16, show_spinner=False)
def formula_check(mean: float) -> vr.FormulaCheck:
    return vr.formula_check(mean)


@st.cache_data(max_entries=64, show_spinner=False)
def batch_one(key: str, digit: int, _bn: vr.KindResult, _ln: vr.KindResult) -> vr.BatchOne:
    """BN at batch size 1 on the grid's nets (``key`` names their configs)."""
    return vr.batch_one(_bn, _ln, digit)


pieces.lead(
    "Batch Normalization takes its statistics over the examples of a mini-batch. That is "
    "also where it breaks: a small batch gives noisy statistics, dropout changes them between "
    "training and test, and a batch of one, or a recurrent net's late time steps, leave "
    "nothing to average over. **LayerNorm** (Ba et al. 2016) and **GroupNorm** (Wu & He "
    "2018) take their statistics from the units of one example instead. Below, real nets "
    "with each of them train on the same task, and you see where each one fails."
)
values = widgets.page_controls(PAGE, CONTROLS, vr.PRESETS, vr.PRESET_HELP)
groups = int(values["groups"])

# ----------------------------------------------------------------------------- part 1
st.header("1 · Which values share one mean")
st.markdown(
    "Every normalizer computes x̂ = (x − μ) / sqrt(σ² + ε) and then γ x̂ + β; they differ "
    "only in **which values μ and σ² are taken over**. In a convolutional net the activations "
    "form a block of N examples × C channels × H × W pixels. **BN** averages one channel over "
    "the whole batch and all pixels; **LayerNorm** one example over all its channels and "
    "pixels; **InstanceNorm** one channel of one example; **GroupNorm** a group of channels of "
    "one example. GroupNorm with one group is LayerNorm, with one channel a group it is "
    "InstanceNorm. Only BN's set reaches across examples."
)
blocks_chart, paper_chart = static_charts()
pieces.chart(blocks_chart, key="blocks")
pieces.lesson_link("bn_steps", "BN step by step: the batch statistics, one value at a time")
st.markdown(
    "An MLP has no pixels: a layer's input is N examples × D units. BN averages **each unit "
    "over the batch** (a column below), LN **all units of one example** (a row), GN **a group "
    f"of units of one example** (here {groups} groups of {64 // groups}, from the sidebar). "
    "These are real digits through the first layer of the lesson's net:"
)
try:
    axes = vr.mlp_axes(groups, values["seed"])
except ValueError as err:
    st.error(f"These settings cannot run: {err}")
    st.stop()
axes_view = vr.View("mlp_axes", (groups, values["seed"]))
pieces.chart(run.figure(axes_view, axes, figs.mlp_axes), key="mlp-axes")
stats = []
for kind in ("BN", "LN", "GN"):
    count, mu, sd = axes.shared(kind)
    stats.append(f"{kind}'s set: {count} values, mean {mu:.2f}, std {sd:.2f}")
st.caption(
    "The outlined values are those that share the mean of digit #1's unit "
    f"{axes.unit + 1}. {'; '.join(stats)}. Each set comes out with mean 0 and variance "
    "v / (v + ε), about 1 (bottom row)."
)
if groups == 64:
    st.info(
        "With one unit a group, GN subtracts each value's own mean: every normalized value is "
        "0 and the layer outputs β whatever its input, as BN does with a batch of one (part 4).",
        icon=":material/info:",
    )

# ----------------------------------------------------------------------------- part 2
st.header("2 · Shrink the batch")
try:
    grid_cfgs = [vr.batch_grid(values, norm) for norm in vr.GRID_NORMS]
except ValueError as err:
    st.error(f"These settings cannot run: {err}")
    st.stop()
g0 = grid_cfgs[0]
act_name = vr.activation_name(values["activation"])
st.markdown(
    f"The same net (digits, {values['depth']} × 64 {act_name} units, **He "
    "initialization**) with no normalization, BN, LN and GN, at batch sizes "
    f"{', '.join(str(m) for m in g0.batch_sizes)}. Every net sees the same "
    f"**{g0.examples:,} examples** (batch 2 takes {g0.examples // 2:,} steps, batch 64 "
    f"{g0.examples // 64:,}), and its **learning rate scales with the batch**: "
    f"{values['lr']:g} × m / 32, as the Group Norm paper does (0.1 × N / 32). "
    f"{seeds_words(g0.seeds, values['seed'])}, "
    f"{len(vr.GRID_NORMS) * len(g0.batch_sizes) * g0.seeds} nets in all, trained many at a "
    "time. He init, not the paper's tiny Gaussian (std 0.01), so that no normalizer starts "
    "at a disadvantage: at that scale a layer's units start nearly equal, and LN or GN over a "
    "few nearly equal values divides small differences by a small spread."
)
reveal_grid = pieces.predict(
    f"{PAGE}.batch",
    "At batch 2, which normalization loses the most accuracy? Does any lose none? Then look "
    "at the chart, and at the Group Norm paper's numbers beside it.",
)
results = [run.run_experiment(vr.EXPERIMENT, cfg) for cfg in grid_cfgs]
grid = results if all(r is not None for r in results) else None
grid_view = vr.View("grid", tuple(grid_cfgs))
if grid is not None:
    for r in grid:
        cells = r.diverged_sizes
        if cells:
            st.warning(
                f"A {r.name} net **diverged** at batch size {', '.join(map(str, cells))}: its "
                "loss became non-finite or grew a hundredfold, so training stopped there. It "
                "has no accuracy (an x on the chart). A lower learning rate avoids it.",
                icon=":material/trending_up:",
            )
    if reveal_grid:
        left, right = st.columns(2)
        with left:
            pieces.chart(run.figure(grid_view, grid, figs.batch_size_chart), key="batch-size")
            st.caption(
                f"Each net saw {g0.examples:,} examples at rate {values['lr']:g} × m / 32. Lines: "
                f"the mean of the {g0.seeds} nets of a cell; dots: each net."
            )
        with right:
            pieces.chart(paper_chart, key="paper")
            st.caption(
                "Quoted from Wu & He (2018), Table 2: ImageNet validation error of ResNet-50 by "
                "the images each GPU normalizes over, lr = 0.1 × N / 32."
            )
        st.markdown("\n".join(f"- {line}." for line in vr.describe_falls(grid)))
        st.markdown(f"**{vr.compare_falls(grid)}**")
        with st.expander("The Group Norm paper's Table 2 (ResNet-50, ImageNet validation error)"):
            st.table(
                {
                    "images per GPU": [str(m) for m in vr.GN_PAPER_BATCH],
                    **{
                        name: [f"{e:.1f}%" for e in errs]
                        for name, errs in vr.GN_PAPER_ERROR.items()
                    },
                },
                hide_index=True,
            )
            st.caption(
                "Wu & He (2018), Table 2: BN's error grows from 23.6% to 34.7% as the batch "
                "per GPU falls from 32 to 2; GN's stays between 24.0% and 24.2%. BN's "
                "statistics are computed per GPU, so images per GPU is BN's batch size."
            )

    st.subheader("Train mode against eval mode")
    st.markdown(
        "BN trains with the statistics of its own batch but is tested with running averages "
        "of them. The two agree when batches are large; with small batches the batch "
        "statistics are noisy and the net sees different numbers in the two modes. Below, "
        "each trained net scores the training split twice: with the statistics of batches of "
        "its own batch size, and in eval mode. LN and GN compute the same thing in both modes, "
        "so for them (and for the plain net) the difference is 0 by construction; it is "
        "measured here, not assumed."
    )
    pieces.chart(run.figure(grid_view, grid, figs.gap_chart), key="gap")
    gap_words = vr.describe_gap(grid)
    if gap_words:
        st.markdown(gap_words)

# ----------------------------------------------------------------------------- part 3
st.header("3 · Dropout before BN: the variance shift")
st.markdown(
    "Seed 004 warns: *never apply dropout with Batch Normalization.* Li et al. (2019) found "
    "why. Inverted dropout keeps a unit with probability p and multiplies it by 1/p, so its "
    "mean is unchanged, but its variance is not: an input of mean c and variance v has, after "
    "dropout, variance (c² + v)/p − c² in training and v at test time, when dropout is off. A "
    "BN right after the dropout learns running statistics from the first and meets the second "
    "at test time: its input's variance shrinks by **v / ((c² + v)/p − c²)**, which is p when "
    "c = 0."
)
c1, c2 = st.columns(2)
keep = widgets.view(PAGE, BY_NAME["keep"], c1)
mean = widgets.view(PAGE, BY_NAME["mean"], c2)
check = formula_check(mean)
i = list(check.keeps).index(keep)
left, right = st.columns([3, 2])
with left:
    formula_view = vr.View("formula", (mean,))
    pieces.chart(run.figure(formula_view, check, figs.formula_chart, keep), key="formula")
with right:
    st.markdown(
        f"{check.samples:,} values drawn from a normal distribution of mean {mean:g} and "
        "variance 1, passed through the engine's own dropout at each keep probability; the "
        "ratio of their variance before and after, against the formula."
    )
    st.metric(
        f"measured at p = {keep:g}",
        f"{check.measured[i]:.4f} ± {check.stderr[i]:.4f}",
        help="± one standard error, from the spread of the ratio over 25 blocks of the sample.",
    )
    st.metric("Li et al.'s formula", f"{check.formula[i]:.4f}")
    off = (check.measured[i] - check.formula[i]) / check.stderr[i]
    st.caption(
        f"They differ by {abs(off):.1f} standard errors"
        + (", within sampling error." if abs(off) < 3 else ".")
    )

st.subheader("In trained nets")
st.markdown(
    f"Two BN nets (batch 32, rate {values['lr']:g}, the same start and batches), with dropout "
    f"at keep probability {keep:g}: one **in every block** (Linear → BN → activation → "
    "dropout), so every BN after the first sees dropped inputs through the next Linear, and "
    "one with **dropout after the last BN only**, where no BN sees it. With a Linear W "
    "between the dropout and the BN the formula becomes "
    "Var_eval / (Var_eval + (1/p − 1) Σⱼ W²ₖⱼ E[aⱼ²]) for unit k (Li et al.'s formula when W "
    "is a single weight of 1). After training, each BN's input is measured over the training "
    "split in train mode (dropout on) and in eval mode (off)."
)
reveal_dropout = pieces.predict(
    f"{PAGE}.dropout",
    "Which of the three does best on the test split: dropout in every block, the same net "
    "with its BN statistics re-estimated with dropout off, or dropout after the last BN only?",
)
try:
    dropout_cfg = vr.dropout_arms({**values, "keep": keep})
except ValueError as err:
    st.error(f"These settings cannot run: {err}")
    st.stop()
dropout = run.run_experiment(vr.EXPERIMENT, dropout_cfg)
if dropout is not None:
    for label, at in dropout.diverged.items():
        if at is not None:
            st.warning(
                f"The net *{label}* **diverged at step {at:,}**: it has no accuracy.",
                icon=":material/trending_up:",
            )
    no_dropout = vr.no_dropout_twin(grid[1]) if grid is not None else None
    left, right = st.columns(2)
    with left:
        pieces.chart(run.figure(dropout_cfg, dropout, figs.shift_chart), key="shift")
        st.caption(
            "Var_eval / Var_train of each BN's input, averaged over its 64 units: measured in "
            "both nets, and the formula's value for the net with dropout in every block. 1 is "
            "no shift; the dashed line is p, the ratio right after a dropout on a mean-0 input."
        )
    with right:
        if reveal_dropout:
            pieces.chart(
                run.figure(dropout_cfg, dropout, figs.dropout_accuracy, no_dropout),
                key="dropout-acc",
            )
        st.caption(
            "*every block*: dropout after each hidden block; *recalibrated*: the same weights, "
            "BN's statistics re-estimated on the training split with dropout off; *last BN "
            "only*: dropout only before the output layer"
            + (
                "; *no dropout*: the grid's BN net at batch 32, same start and batches."
                if no_dropout is not None
                else "."
            )
        )
    st.markdown("\n".join(f"- {line}." for line in vr.describe_shift(dropout)))
    notes = vr.describe_shift_gap(dropout)
    if notes:
        st.caption(notes)
    if reveal_dropout:
        st.markdown(f"**{vr.describe_dropout(dropout)}**")
    st.caption(
        "Re-estimating keeps every weight and changes only the BN statistics, so it isolates "
        "the variance shift. Moving the dropout after the last BN also drops fewer units in "
        "all, so part of any difference there is less dropout, not only no shift. Li et al. "
        "report lower error from re-estimating the statistics in every cell of their Table 3."
    )

# ----------------------------------------------------------------------------- part 4
st.header("4 · Where BN does not fit")
st.subheader("A batch of one")
st.markdown(
    "With one example, the batch mean is that example and x − μ = 0 for every unit: x̂ = 0 "
    "and BN outputs **β**, whatever the input. Nothing about the example gets through, and "
    "the gradient to everything below is exactly 0. That is why training here refuses a "
    "batch of 1 (and PyTorch raises an error). LayerNorm has no such problem: one example "
    "has 64 units to average over."
)
reveal_one = pieces.predict(
    f"{PAGE}.one", "What does a trained BN net predict when each digit comes alone?"
)
one = None
if grid is not None:
    digit = widgets.view(PAGE, BY_NAME["digit"])
    try:
        one_view = vr.View("batch_one", (grid_cfgs[1], grid_cfgs[2], digit))
        one = batch_one(run.config_key(one_view), digit, grid[1], grid[2])
    except ValueError as err:
        st.error(f"This cannot be shown: {err}")
        one = None
    if one is not None and reveal_one:
        cols = st.columns(4)
        cols[0].metric(
            "BN output − β, max",
            f"{one.max_from_beta:.0g}",
            help="The largest |BN output − β| over the 64 units of BN layer 1, this digit alone.",
        )
        cols[1].metric(
            "dL/dz through BN, max",
            f"{float(abs(one.dz).max()):.0g}",
            help="The largest |dL/dz| BN passes down, for an upstream gradient of ones: nothing "
            "below learns.",
        )
        classes = one.classes_predicted
        cols[2].metric(
            "BN net, digits alone",
            vr.pct(one.acc_one),
            help="Test accuracy in train mode, every test digit a batch of its own. In eval "
            f"mode (running statistics) the same net scores {vr.pct(one.acc_eval)}.",
        )
        cols[3].metric(
            "LN net, any batch",
            vr.pct(one.acc_ln),
            help="Test accuracy. LayerNorm uses the units of one example: the same in train and "
            "eval mode, at any batch size.",
        )
        pieces.chart(run.figure(one_view, one, figs.batch_one_chart), key="batch-one")
        if len(classes) == 1:
            st.markdown(
                f"Alone in train mode, every one of the {len(one.predicted_one)} test digits "
                f"gets the same answer, **{int(classes[0])}**: the net's output no longer "
                "depends on its input. In eval mode BN divides by running statistics instead, "
                f"and the same net scores {vr.pct(one.acc_eval)}: that is why inference uses "
                "them (Algorithm 2)."
            )
        else:
            st.markdown(
                f"Alone in train mode, the {len(one.predicted_one)} test digits get "
                f"{len(classes)} different answers; in eval mode, with running statistics, the "
                f"same net scores {vr.pct(one.acc_eval)}."
            )
        pieces.lesson_link(
            "inference", "Training vs inference: the running statistics BN tests with"
        )

st.subheader("Recurrent nets")
seqs = vr.sequences(seed=values["seed"])
st.markdown(
    "A recurrent net applies the same layer at every time step of a sequence. BN there needs "
    "**statistics for every time step** (the inputs at step 1 and at step 30 need not be "
    "distributed alike), and sentences in a batch have **different lengths**: at step t only the "
    "sequences still running contribute, so late steps average over a handful of examples, "
    "then one, then none. A test sentence longer than any training one reaches steps that "
    "have no statistics at all. LayerNorm normalizes the units of one example at one step: "
    "the same computation at every step, for any length and any batch size, and the same in "
    "training and test. Ba et al. (2016) proposed it for recurrent nets for this reason; no "
    "RNN is trained here, the picture is only counting."
)
seq_view = vr.View("sequences", (values["seed"],))
pieces.chart(run.figure(seq_view, seqs, figs.sequences_chart), key="sequences")
st.caption(
    f"In this batch of {len(seqs.lengths)} lengths drawn at random from 4 to 40 (seed "
    f"{values['seed']}), BN's statistics at step {seqs.last_shared} still average over "
    f"{int(seqs.bn_count[seqs.last_shared - 1])} sequences; from step {seqs.last_shared + 1} "
    f"one sequence or none is left, up to the test sentence's {seqs.test_length} steps."
)

small_title = "Small batches and BN."
small_batch = (
    "LN and GN never look at other examples, so their statistics do not depend on the batch "
    "size, as in the Group Norm paper's ResNet-50 numbers."
)
if grid is not None:
    falls = "; ".join(f"{r.name} {vr.pct(r.acc_at(32))} → {vr.pct(r.acc_at(2))}" for r in grid[1:])
    small_batch += f" Here, test accuracy from batch 32 to batch 2: {falls}."
    if vr.bn_falls_most(grid):
        small_title = "Small batches hurt BN most."
shift = (
    "Where dropout feeds a BN, its input's variance at test time is a fraction of what BN "
    "learned in training."
)
if dropout is not None:
    ratios = [
        f"BN layer {i + 1} {m:.2f} measured, {p:.2f} by the formula"
        for i, (m, p) in enumerate(
            zip(
                dropout.shifts[vr.EVERY].layer_ratio,
                dropout.shifts[vr.EVERY].layer_predicted,
                strict=True,
            )
        )
        if math.isfinite(p)
    ]
    if ratios:
        shift += f" In the net with dropout in every block: {'; '.join(ratios)}."
worst = float(max(abs(check.measured - check.formula) / check.stderr))
agreement = (
    f"On the synthetic input (mean {mean:g}) the measured ratio is within {worst:.1f} standard "
    "errors of Li et al.'s formula at every p" + (", within sampling error." if worst < 3 else ".")
)
pieces.notice_box(
    "What to notice",
    f"""
- **One formula, different sets.** BN, LN, GN and InstanceNorm all standardize and then scale
  by γ and shift by β; only the values the mean and variance come from differ. Only BN's
  reach across the examples of a batch, and everything below follows from that.
- **{small_title}** BN computes its statistics from m examples: at m = 2 each unit's
  two values normalize to about −1 and +1 whatever they are, and the running averages used at
  test time are averages of such noisy batches. {small_batch}
- **Groups are a dial.** GN with one group is LN; with one unit a group every value
  normalizes to 0 and the layer outputs β. With two units a group, the two values always
  become about ±1, like BN at batch 2.
- **Dropout shifts variance.** {agreement} {shift} The formula counts only the dropout
  right before a layer; deeper layers also inherit the shift of the layers below. Li et al.'s
  fixes: dropout only after the last BN, or re-estimate BN's statistics with dropout off.
- **No batch, no BN.** A batch of one makes BN output β; a recurrent net's late time steps
  and unseen lengths leave BN without statistics. LayerNorm is the usual choice there.
""",
)
with st.expander("Formulas"):
    pieces.formulas(
        r"\hat x = \frac{x - \mu_S}{\sqrt{\sigma_S^2 + \epsilon}},\quad y = \gamma \hat x + "
        r"\beta,\qquad \mu_S = \frac{1}{|S|}\sum_{i \in S} x_i,\ \ "
        r"\sigma_S^2 = \frac{1}{|S|}\sum_{i \in S}(x_i - \mu_S)^2",
        r"S_{\mathrm{BN}} = \{(n, k): n = 1..N\},\quad S_{\mathrm{LN}} = \{(n, k): k = 1..D\},"
        r"\quad S_{\mathrm{GN}} = \{(n, k): k \in \text{group of } k\}",
        r"\eta_m = \eta_{32}\,\frac{m}{32}\qquad(\text{Wu \& He: } 0.1 \cdot N/32)",
        r"\tilde a = \frac{m\,a}{p},\ m \sim \mathrm{Bernoulli}(p):\quad "
        r"\mathrm{Var}_{\mathrm{train}}(\tilde a) = \frac{c^2 + v}{p} - c^2,\quad "
        r"\mathrm{Var}_{\mathrm{test}} = v",
        r"\frac{\mathrm{Var}_{\mathrm{test}}}{\mathrm{Var}_{\mathrm{train}}} = "
        r"\frac{v}{(c^2 + v)/p - c^2}\ \ \overset{c=0}{=}\ \ p",
        r"z_k = \sum_j W_{kj} \tilde a_j:\quad \mathrm{Var}_{\mathrm{train}}(z_k) = "
        r"\mathrm{Var}_{\mathrm{eval}}(z_k) + \Big(\frac1p - 1\Big)\sum_j W_{kj}^2\, "
        r"\mathbb{E}[a_j^2]",
        r"m = 1:\quad \mu_B = x,\ \ \sigma_B^2 = 0,\ \ \hat x = 0,\ \ y = \beta,\ \ "
        r"\frac{\partial L}{\partial x} = 0",
    )
    st.caption(
        "The variance under dropout assumes the masks are independent of the input, as they "
        "are here. S is the set of values one mean is taken over: (n, k) is example n, unit k."
    )

st.subheader("Download the data")
files = {}
if grid is not None:
    files["Batch-size grid (CSV)"] = (lambda: vr.grid_csv(grid), "bnviz-variants-grid.csv")
if dropout is not None:
    files["Variance shift (CSV)"] = (lambda: vr.dropout_csv(dropout), "bnviz-variants-shift.csv")
    files["Dropout check (NPZ)"] = (
        lambda: vr.dropout_npz(dropout, check),
        "bnviz-variants-dropout.npz",
    )
if one is not None:
    files["Batch of one, sequences (NPZ)"] = (
        lambda: vr.pitfalls_npz(one, seqs, axes),
        "bnviz-variants-pitfalls.npz",
    )
if files:
    pieces.downloads(files, key=PAGE)
st.caption("Every chart also saves as a PNG from its toolbar (the camera icon).")
