"""Figures for the covariate-shift lesson, drawn from ``bnviz.experiments.covariate_shift``.

Pure functions of the data: nothing here trains. Plain is orange and dashed, BN blue; BN with
the batch's own statistics is blue and dotted. Where two batches are compared, batch A is green
and batch B vermillion; the digits' classes have their own colors.
"""

from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from bnviz.experiments.covariate_shift import (
    MODES,
    TRANSFORMS,
    BatchesResult,
    Noise,
    Pair,
    ShiftView,
    batch_title,
    late_accuracy,
)
from bnviz.figures import common, style

Array = np.ndarray
CLASS_COLORS = (
    "#56B4E9",  # sky blue
    "#E69F00",  # orange
    "#009E73",  # bluish green
    "#CC79A7",  # reddish purple
    "#F0E442",  # yellow
    "#0072B2",  # blue
    "#D55E00",  # vermillion
    "#999999",  # grey
    "#882255",  # wine
    "#44AA99",  # teal
)
A_COLOR, B_COLOR = "#009E73", "#D55E00"
MODE_LINES = {
    "plain": {"color": style.PLAIN, "dash": "dash", "width": 2.5},
    "BN, eval mode": {"color": style.BN, "dash": "solid", "width": 2.5},
    "BN, batch statistics": {"color": style.BN, "dash": "dot", "width": 3},
}
MODE_NAMES = {
    "plain": "plain",
    "BN, eval mode": "BN, eval mode (running statistics)",
    "BN, batch statistics": "BN with the batch's own statistics",
}
SHORT = {"plain": "plain", "BN, eval mode": "BN, eval", "BN, batch statistics": "BN, own stats"}
PANEL_TITLE = 14  # px: three panels' titles must fit a third of a 1280-pixel screen
UNITS = {"translate": "shift along x1", "rotate": "rotation (degrees)", "rescale": "scale"}
BINS = 40
LOSS_FLOOR = 1e-4  # a loss of exactly 0 (float32: the net is sure, and right) has no log


def _hist(values: Array, edges: Array) -> Array:
    v = np.asarray(values, dtype=np.float64).ravel()
    counts, _ = np.histogram(v[np.isfinite(v)], bins=edges)
    return counts / max(v.size, 1)


def _edges(*arrays: Array, bins: int = BINS) -> Array:
    v = np.concatenate([np.asarray(a, dtype=np.float64).ravel() for a in arrays])
    v = v[np.isfinite(v)]
    if v.size == 0:
        return np.linspace(-1, 1, bins + 1)
    lo, hi = np.quantile(v, [0.002, 0.998])
    if hi - lo < 1e-9:
        lo, hi = lo - 0.5, hi + 0.5
    pad = 0.05 * (hi - lo)
    return np.linspace(lo - pad, hi + pad, bins + 1)


def _bars(fig, values, edges, color, name, row, col, show, outline=False, group=None):
    centres = (edges[:-1] + edges[1:]) / 2
    y = _hist(values, edges)
    if outline:
        trace = go.Scatter(
            x=common.rounded(np.repeat(edges, 2)[1:-1], 5),
            y=common.rounded(np.repeat(y, 2), 5),
            mode="lines",
            line={"color": color, "width": 2},
            name=name,
            legendgroup=group or name,
            showlegend=show,
            hoverinfo="skip",
        )
    else:
        trace = go.Bar(
            x=common.rounded(centres, 5),
            y=common.rounded(y, 5),
            width=float(edges[1] - edges[0]),
            marker={"color": style.rgba(color, 0.55), "line": {"width": 0}},
            name=name,
            legendgroup=group or name,
            showlegend=show,
            hovertemplate="%{x:.3g}: %{y:.1%}<extra>" + name + "</extra>",
        )
    fig.add_trace(trace, row=row, col=col)


# --------------------------------------------------------------------------- part 1: shift


def decision_regions(view: ShiftView) -> go.Figure:
    """The plain and the BN net's decision regions (eval mode), the training points in grey
    and the shifted test points in their class's color (a cross where the net is wrong)."""
    (a_plain, s_plain), (a_bn, s_bn) = view.acc["plain"], view.acc[MODES[1]]
    fig = make_subplots(
        rows=1,
        cols=2,
        horizontal_spacing=0.07,
        subplot_titles=[
            f"plain: {s_plain:.0%} right ({a_plain:.0%} unmoved)",
            f"BN, eval mode: {s_bn:.0%} right ({a_bn:.0%} unmoved)",
        ],
    )
    g1, g2 = view.grid
    k = int(max(view.y_train.max(), view.y_test.max())) + 1
    scale = []
    for c in range(k):
        color = style.rgba(CLASS_COLORS[c % len(CLASS_COLORS)], 0.22)
        scale += [[c / k, color], [(c + 1) / k, color]]
    for col, name in ((1, "plain"), (2, "BN")):
        fig.add_trace(
            go.Heatmap(
                x=common.rounded(g1, 4),
                y=common.rounded(g2, 4),
                z=view.regions[name].tolist(),
                zmin=-0.5,
                zmax=k - 0.5,
                colorscale=scale,
                showscale=False,
                hoverinfo="skip",
            ),
            row=1,
            col=col,
        )
        fig.add_trace(
            go.Scattergl(
                x=common.rounded(view.x_train[:, 0], 4),
                y=common.rounded(view.x_train[:, 1], 4),
                mode="markers",
                marker={"color": style.MUTED, "size": 3, "opacity": 0.35},
                name="training points",
                legendgroup="train",
                showlegend=col == 1,
                hoverinfo="skip",
            ),
            row=1,
            col=col,
        )
        pred = view.predicted["plain" if name == "plain" else MODES[1]]
        for c in range(k):
            sel = view.y_test == c
            for right in (True, False):
                pts = sel & (pred == c) if right else sel & (pred != c)
                if not pts.any():
                    continue
                fig.add_trace(
                    go.Scattergl(
                        x=common.rounded(view.x_shifted[pts, 0], 4),
                        y=common.rounded(view.x_shifted[pts, 1], 4),
                        mode="markers",
                        marker={
                            "color": CLASS_COLORS[c % len(CLASS_COLORS)],
                            "size": 7 if right else 9,
                            "symbol": "circle" if right else "x",
                            "line": {"width": 1, "color": "#222222"},
                        },
                        name=f"moved test point, class {c}" + ("" if right else ", wrong"),
                        legendgroup=f"c{c}{right}",
                        showlegend=col == 1,
                        hovertemplate=f"class {c}<extra></extra>",
                    ),
                    row=1,
                    col=col,
                )
        fig.update_xaxes(title_text="x1", range=[float(g1[0]), float(g1[-1])], row=1, col=col)
        fig.update_yaxes(range=[float(g2[0]), float(g2[-1])], row=1, col=col)
    fig.update_yaxes(title_text="x2", row=1, col=1)
    fig.update_layout(margin={"t": 135})  # a legend of two rows on a small screen
    return style.styled(
        fig,
        f"The test points moved (shift {view.dx:g}, rotation {view.angle:g}°, scale "
        f"{view.scale:g}), on each net's decision regions",
        height=560,
        wide=True,
    )


def accuracy_vs_shift(view: ShiftView) -> go.Figure:
    """Test accuracy against each transform alone, for the three ways to run the nets."""
    now = {"translate": view.dx, "rotate": view.angle, "rescale": view.scale}
    fig = make_subplots(
        rows=1,
        cols=3,
        horizontal_spacing=0.06,
        subplot_titles=list(TRANSFORMS),
        shared_yaxes=True,
    )
    for col, (name, (amounts, accs)) in enumerate(view.curves.items(), 1):
        for mode in MODES:
            fig.add_trace(
                go.Scatter(
                    x=amounts,
                    y=common.rounded(accs[mode], 4),
                    mode="lines",
                    line=MODE_LINES[mode],
                    name=MODE_NAMES[mode],
                    legendgroup=mode,
                    showlegend=col == 1,
                    hovertemplate=f"{UNITS[name]} %{{x:g}}: %{{y:.1%}}<extra>{mode}</extra>",
                ),
                row=1,
                col=col,
            )
        fig.add_vline(
            x=now[name], line={"color": style.MUTED, "dash": "dot", "width": 1.5}, row=1, col=col
        )
        if name == "rescale":
            fig.update_xaxes(type="log", tickvals=[0.25, 0.5, 1, 2, 4], row=1, col=col)
        fig.update_xaxes(title_text=UNITS[name], row=1, col=col)
    fig.update_yaxes(title_text="test accuracy", range=[0, 1.03], tickformat=".0%", row=1, col=1)
    return style.styled(fig, "Accuracy as the test points move (each transform alone)", wide=True)


def hidden_shift(view: ShiftView) -> go.Figure:
    """What hidden layer ``view.layer``'s nonlinearity receives, pooled over its units, for
    the test points as they are (grey outline) and shifted (filled)."""
    fig = make_subplots(
        rows=1,
        cols=3,
        horizontal_spacing=0.06,
        subplot_titles=[f"{SHORT[m]}: moved {view.moved(m):.2f} sd" for m in MODES],
    )
    fig.update_annotations(font={"size": PANEL_TITLE})
    for col, mode in enumerate(MODES, 1):
        before, after = view.hidden[mode]
        edges = _edges(before, after)
        _bars(fig, after, edges, MODE_LINES[mode]["color"], "shifted test points", 1, col,
              col == 1, group="shifted")  # fmt: skip
        _bars(fig, before, edges, style.MUTED, "test points as they are", 1, col, col == 1,
              outline=True, group="orig")  # fmt: skip
        fig.update_xaxes(title_text=f"tanh input, layer {view.layer}", row=1, col=col)
    fig.update_yaxes(tickformat=".0%")
    fig.update_yaxes(title_text="share of values (all units)", row=1, col=1)
    return style.styled(fig, f"Hidden layer {view.layer}'s input moves with the input", wide=True)


# --------------------------------------------------------------------------- part 2: two batches


def batch_images(pair: Pair, n: int = 8) -> go.Figure:
    """The first n digits of each batch, as the net sees them (standardized pixels)."""
    fig = make_subplots(
        rows=2,
        cols=n,
        horizontal_spacing=0.01,
        vertical_spacing=0.12,
        row_titles=["A", "B"],
    )
    for r, (images, labels) in enumerate(zip(pair.images, pair.labels, strict=True), 1):
        for c in range(min(n, len(images))):
            fig.add_trace(
                go.Heatmap(
                    z=np.round(images[c].reshape(8, 8)[::-1], 3).tolist(),
                    colorscale="Greys",
                    reversescale=True,
                    zmin=-1.5,
                    zmax=2.5,
                    showscale=False,
                    hovertemplate=f"a {labels[c]}<extra></extra>",
                ),
                row=r,
                col=c + 1,
            )
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    for i in range(1, 2 * n + 1):  # square pixels
        fig.layout[f"yaxis{'' if i == 1 else i}"].scaleanchor = f"x{'' if i == 1 else i}"
    return style.styled(
        fig,
        f"Batch A: {batch_title(pair.a)}; batch B: {batch_title(pair.b)} (the first {n} of each, "
        "pixels standardized as the net sees them: dark is more ink than that pixel's average)",
        height=380,
        wide=True,
    )


def pair_histograms(pair: Pair) -> go.Figure:
    """Hidden layer input, pooled over units, for batch A and batch B: plain, BN in eval mode,
    BN in train mode (each batch its own statistics)."""
    fig = make_subplots(
        rows=1,
        cols=3,
        horizontal_spacing=0.06,
        subplot_titles=[
            f"{SHORT[m]}: A {pair.acc[m][0]:.0%}, B {pair.acc[m][1]:.0%} right" for m in MODES
        ],
    )
    fig.update_annotations(font={"size": PANEL_TITLE})
    for col, mode in enumerate(MODES, 1):
        ha, hb = pair.hidden[mode]
        edges = _edges(ha, hb)
        _bars(fig, ha, edges, A_COLOR, f"batch A: {batch_title(pair.a)}", 1, col, col == 1)
        _bars(fig, hb, edges, B_COLOR, f"batch B: {batch_title(pair.b)}", 1, col, col == 1)
        fig.update_xaxes(title_text=f"sigmoid input, layer {pair.layer}", row=1, col=col)
    fig.update_layout(barmode="overlay")
    fig.update_yaxes(tickformat=".0%")
    fig.update_yaxes(title_text="share of values (all units)", row=1, col=1)
    return style.styled(fig, f"What hidden layer {pair.layer} receives from each batch", wide=True)


def unit_means(pair: Pair) -> go.Figure:
    """Each unit's mean over batch A (x) against its mean over batch B (y): on the diagonal
    the two batches look alike to that unit."""
    fig = make_subplots(
        rows=1,
        cols=3,
        horizontal_spacing=0.07,
        subplot_titles=[f"{SHORT[m]}: gap {pair.mean_gap(m):.2g}" for m in MODES],
    )
    fig.update_annotations(font={"size": PANEL_TITLE})
    for col, mode in enumerate(MODES, 1):
        ma, mb = pair.unit_means(mode)
        lo = float(min(ma.min(), mb.min()))
        hi = float(max(ma.max(), mb.max()))
        fig.add_trace(
            go.Scatter(
                x=[lo, hi],
                y=[lo, hi],
                mode="lines",
                line={"color": style.MUTED, "dash": "dot", "width": 1.5},
                name="same mean for both batches",
                legendgroup="diag",
                showlegend=col == 1,
                hoverinfo="skip",
            ),
            row=1,
            col=col,
        )
        fig.add_trace(
            go.Scatter(
                x=common.rounded(ma, 5),
                y=common.rounded(mb, 5),
                mode="markers",
                marker={"color": MODE_LINES[mode]["color"], "size": 6, "opacity": 0.7},
                name="one unit",
                legendgroup="unit",
                showlegend=col == 1,
                hovertemplate="A %{x:.3g}, B %{y:.3g}<extra>" + mode + "</extra>",
            ),
            row=1,
            col=col,
        )
        fig.update_xaxes(title_text="unit's mean over batch A", row=1, col=col)
    fig.update_yaxes(title_text="unit's mean over batch B", row=1, col=1)
    return style.styled(fig, f"Each unit of layer {pair.layer}: its mean over A and over B", wide=True)


# --------------------------------------------------------------------------- part 3: batch order


ORDERS = (("shuffled", "shuffled batches"), ("class-sorted", "class-sorted batches"))


def loss_by_order(result: BatchesResult, smooth: int = 1) -> go.Figure:
    """Training loss per step, shuffled (left) and class-sorted (right), plain and BN."""
    fig = make_subplots(
        rows=1,
        cols=2,
        shared_yaxes=True,
        horizontal_spacing=0.05,
        subplot_titles=[title for _, title in ORDERS],
    )
    for col, (order, _) in enumerate(ORDERS, 1):
        for net in ("plain", "BN"):
            h = result.arms[f"{net} {order}"]
            y = common.smooth_loss(h.loss, smooth)
            keep = np.arange(len(y))
            fig.add_trace(
                go.Scatter(
                    x=keep,
                    y=common.rounded(np.maximum(y, LOSS_FLOOR), 4),
                    mode="lines",
                    line=common.line(net, 1.2),
                    opacity=0.85,
                    name=net,
                    legendgroup=net,
                    showlegend=col == 1,
                    hovertemplate="step %{x}: %{y:.3g}<extra>" + h.label + "</extra>",
                ),
                row=1,
                col=col,
            )
            common.mark_divergence(fig, h, keep, y, row=1, col=col, annotate=False)
        fig.update_xaxes(title_text="training step", row=1, col=col)
    top = max(float(np.nanmax(h.loss)) if len(h.loss) else 1.0 for h in result.arms)
    ticks = common.log_ticks(LOSS_FLOOR, max(top, 1.0))
    fig.update_yaxes(type="log", tickvals=ticks)  # both panels: a shared axis keeps its own type
    fig.update_yaxes(
        title_text=f"training loss (under {LOSS_FLOOR:g}: at {LOSS_FLOOR:g})", row=1, col=1
    )
    return style.styled(fig, "Training loss at every step, by batch order", wide=True)


def bounce_zoom(result: BatchesResult, window: int) -> go.Figure:
    """The last ``window`` steps of the class-sorted runs: each step's loss, labelled with the
    digit its batch holds."""
    n = min(window, result.config.steps)
    steps = np.arange(result.config.steps - n, result.config.steps)
    digits = result.batch_class[steps]
    fig = go.Figure()
    starts = [0] + [i for i in range(1, n) if digits[i] != digits[i - 1]] + [n]
    label = len(starts) <= 41  # a digit over each run while there is room for it
    shapes, notes = [], []  # built as plain dicts: add_vrect costs ~0.1 s a call
    for a, b in zip(starts, starts[1:], strict=False):
        d = int(digits[a])
        x0, x1 = float(steps[a] - 0.5), float(steps[b - 1] + 0.5)
        shapes.append(
            {"type": "rect", "xref": "x", "yref": "paper", "x0": x0, "x1": x1, "y0": 0, "y1": 1,
             "fillcolor": style.rgba(CLASS_COLORS[d], 0.18), "line": {"width": 0},
             "layer": "below"}
        )  # fmt: skip
        if label:
            notes.append(
                {"x": (x0 + x1) / 2, "y": 1.0, "xref": "x", "yref": "paper", "text": str(d),
                 "showarrow": False, "yanchor": "bottom"}
            )  # fmt: skip
    fig.update_layout(shapes=shapes, annotations=notes)
    for net in ("plain", "BN"):
        h = result.arms[f"{net} class-sorted"]
        loss = np.full(n, np.nan)
        ok = steps < len(h.loss)
        loss[ok] = np.maximum(h.loss[steps[ok]], LOSS_FLOOR)
        fig.add_trace(
            go.Scatter(
                x=steps,
                y=common.rounded(loss, 4),
                mode="lines+markers",
                line=common.line(net, 2),
                marker={"size": 5},
                name=f"{net}, class-sorted",
                customdata=digits,
                hovertemplate="step %{x}, a batch of %{customdata}s: loss %{y:.3g}<extra>"
                + net
                + "</extra>",
            )
        )
    fig.update_xaxes(title_text="training step (shading: the digit in the step's batch)")
    fig.update_yaxes(
        title_text=f"training loss (under {LOSS_FLOOR:g}: at {LOSS_FLOOR:g})", type="log"
    )
    return style.styled(fig, f"The last {n} steps of class-sorted training", wide=True)


def accuracy_by_order(result: BatchesResult) -> go.Figure:
    """Test accuracy (eval mode) over training, shuffled (left) and class-sorted (right)."""
    fig = make_subplots(
        rows=1,
        cols=2,
        shared_yaxes=True,
        horizontal_spacing=0.05,
        subplot_titles=[f"{order}: {', '.join(_late(result, order))}" for order, _ in ORDERS],
    )
    for col, (order, _) in enumerate(ORDERS, 1):
        for net in ("plain", "BN"):
            h = result.arms[f"{net} {order}"]
            fig.add_trace(
                go.Scatter(
                    x=h.record_steps,
                    y=common.rounded(h.test_acc, 4),
                    mode="lines",
                    line=common.line(net, 2),
                    name=net,
                    legendgroup=net,
                    showlegend=col == 1,
                    hovertemplate="step %{x}: %{y:.1%}<extra>" + h.label + "</extra>",
                ),
                row=1,
                col=col,
            )
        fig.update_xaxes(title_text="training step", row=1, col=col)
    fig.update_yaxes(title_text="test accuracy", range=[0, 1.02], tickformat=".0%", row=1, col=1)
    return style.styled(fig, "Test accuracy (titles: mean over the last quarter)", wide=True)


def _late(result: BatchesResult, order: str) -> list[str]:
    return [f"{net} {late_accuracy(result.arms[f'{net} {order}']):.0%}" for net in ("plain", "BN")]


def batch_means(result: BatchesResult, layer: int, unit: int, window: int) -> go.Figure:
    """mu_B and sigma_B of one BN unit at each of the last ``window`` steps, shuffled and
    class-sorted, with each net's population values (Algorithm 2 over shuffled batches)."""
    n = min(window, result.config.steps)
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.1)
    for order, dash in (("shuffled", "solid"), ("class-sorted", "dot")):
        label = f"BN {order}"
        tr = result.traces[label]
        steps = np.arange(tr.steps - n, tr.steps)
        mu = tr.mean[steps, layer - 1, unit].astype(np.float64)
        sd = np.sqrt(tr.var[steps, layer - 1, unit].astype(np.float64))
        diag = result.diagnosis[label]
        pops = (diag.pop_mean[layer - 1, unit], math.sqrt(diag.pop_var[layer - 1, unit]))
        marker = {"size": 5}
        if order == "class-sorted":
            marker["color"] = [CLASS_COLORS[int(d)] for d in result.batch_class[steps]]
        for row, values, pop, what in ((1, mu, pops[0], "μ_B"), (2, sd, pops[1], "σ_B")):
            fig.add_trace(
                go.Scatter(
                    x=steps,
                    y=common.rounded(values, 5),
                    mode="lines+markers",
                    line={"color": style.BN, "dash": dash, "width": 1.5},
                    marker=marker,
                    name=f"BN, {order} batches",
                    legendgroup=order,
                    showlegend=row == 1,
                    customdata=result.batch_class[steps] if order == "class-sorted" else None,
                    hovertemplate=f"step %{{x}}: {what} %{{y:.3g}}"
                    + (" (a batch of %{customdata}s)" if order == "class-sorted" else "")
                    + f"<extra>{label}</extra>",
                ),
                row=row,
                col=1,
            )
            fig.add_hline(
                y=float(pop),
                line={"color": style.MUTED, "dash": "dash" if order == "shuffled" else "dot"},
                row=row,
                col=1,
            )
    fig.update_yaxes(title_text=f"μ_B, unit {unit}", row=1, col=1)
    fig.update_yaxes(title_text=f"σ_B, unit {unit}", row=2, col=1)
    fig.update_xaxes(title_text="training step (class-sorted markers: the batch's digit)", row=2)
    return style.styled(
        fig,
        f"BN's batch statistics, layer {layer}, unit {unit}, over the last {n} steps (grey: "
        "each net's population values)",
        height=560,
        wide=True,
    )


# --------------------------------------------------------------------------- part 4: noise


def noise_figure(noise: Noise, layer: int, unit: int) -> go.Figure:
    """Left: one unit's mu_B over many batches of each size, around its population mean.
    Right: the spread of mu_B and sigma_B across batches (a mean over the layer's units, in
    units of the population std) against 1/sqrt(m)."""
    fig = make_subplots(
        rows=1,
        cols=2,
        horizontal_spacing=0.1,
        subplot_titles=[
            f"μ_B of unit {unit} over {noise.mu.shape[2]} batches of each size",
            f"Spread, layer {layer} (mean of units)",
        ],
    )
    rng = np.random.default_rng(0)
    pop = float(noise.pop_mean[layer - 1, unit])
    for i, m in enumerate(noise.sizes):
        values = noise.mu[i, layer - 1, :, unit]
        jitter = np.exp(rng.uniform(-0.12, 0.12, len(values)))
        fig.add_trace(
            go.Scatter(
                x=common.rounded(m * jitter, 4),
                y=common.rounded(values, 5),
                mode="markers",
                marker={"color": style.BN, "size": 4, "opacity": 0.45},
                name="μ_B of one batch",
                legendgroup="mu",
                showlegend=i == 0,
                hovertemplate=f"m = {m}: %{{y:.3g}}<extra></extra>",
            ),
            row=1,
            col=1,
        )
    fig.add_trace(
        go.Scatter(
            x=[float(noise.sizes[0]) * 0.8, float(noise.sizes[-1]) * 1.25],
            y=[pop, pop],
            mode="lines",
            line={"color": style.MUTED, "dash": "dash", "width": 2},
            name="population mean (Algorithm 2)",
            hoverinfo="skip",
        ),
        row=1,
        col=1,
    )
    inv, exact = noise.law()
    m = noise.sizes
    fig.add_trace(
        go.Scatter(
            x=m,
            y=common.rounded(inv, 5),
            mode="lines",
            line={"color": style.MUTED, "width": 5},
            opacity=0.35,
            name="1/√m",
        ),
        row=1,
        col=2,
    )
    fig.add_trace(
        go.Scatter(
            x=m,
            y=common.rounded(exact, 5),
            mode="lines",
            line={"color": style.MUTED, "dash": "dot", "width": 1.5},
            name=f"√((N−m)/(m(N−1))), N = {noise.n_train:,}",
        ),
        row=1,
        col=2,
    )
    for of, symbol, name in (
        ("mu", "circle", "std of μ_B / σ"),
        ("sd", "diamond", "std of σ_B / σ"),
    ):
        fig.add_trace(
            go.Scatter(
                x=m,
                y=common.rounded(noise.spread(layer, of), 5),
                mode="lines+markers",
                line={"color": style.BN, "width": 2, "dash": "solid" if of == "mu" else "dash"},
                marker={"symbol": symbol, "size": 8},
                name=name,
                hovertemplate="m = %{x}: %{y:.3g}<extra>" + name + "</extra>",
            ),
            row=1,
            col=2,
        )
    ticks = [int(v) for v in m]
    fig.update_xaxes(type="log", tickvals=ticks, title_text="batch size m", row=1, col=1)
    fig.update_xaxes(type="log", tickvals=ticks, title_text="batch size m", row=1, col=2)
    fig.update_yaxes(title_text=f"μ_B, layer {layer}", row=1, col=1)
    spreads = np.concatenate([noise.spread(layer, "mu"), noise.spread(layer, "sd"), inv, exact])
    spreads = spreads[np.isfinite(spreads) & (spreads > 0)]
    lo, hi = (float(spreads.min()), float(spreads.max())) if spreads.size else (0.01, 1.0)
    fig.update_yaxes(
        type="log",
        title_text="spread / population std",
        tickvals=common.log_ticks(lo * 0.8, hi * 1.25),
        row=1,
        col=2,
    )
    return style.styled(fig, "Batch statistics are noisy, and the noise shrinks as 1/√m", wide=True)
