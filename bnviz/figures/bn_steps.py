"""Figures for the lesson "BN step by step (Algorithm 1)", from ``bnviz.experiments.bn_steps``.

Pure functions of the data: nothing here trains or normalizes. In the strip plots every example
keeps its height and its color (its rank in x) from one line of Algorithm 1 to the next, so a
student can follow one digit through mu_B, sigma_B^2, x_hat and y.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from bnviz.experiments.bn_steps import (
    ConvBatch,
    SigmaEps,
    SigmoidRegime,
    Walk,
    Whitening,
    WhiteningCost,
)
from bnviz.figures import common, style

Array = np.ndarray
GOLDEN = 0.6180339887498949  # spreads the examples' heights evenly, the same on every line
STRIP_HEIGHT = 175
LINES = ("x", "xc", "sq", "x_hat", "y")
LINE_TITLES = {
    "x": "x: the unit's input",
    "xc": "x − μ_B: centred",
    "sq": "(x − μ_B)²: their mean is σ_B²",
    "x_hat": "x̂ = (x − μ_B) / √(σ_B² + ε)",
    "y": "y = γ x̂ + β",
}
NORM_KINDS = ("batch", "layer", "group", "instance")
NORM_TITLES = {
    "batch": "BatchNorm",
    "layer": "LayerNorm",
    "group": "GroupNorm",
    "instance": "InstanceNorm",
}
NORM_COLORS = {"batch": style.BN, "layer": style.LN, "group": style.GN, "instance": style.ACCENT}


def _heights(m: int) -> Array:
    return (np.arange(m) * GOLDEN) % 1.0 * 2.0 - 1.0


def _mark(fig: go.Figure, x: float, text: str, dash: str = "solid", color: str = style.ACCENT):
    fig.add_vline(x=x, line={"color": color, "dash": dash, "width": 2})
    if text:
        fig.add_annotation(
            x=x, y=1.0, yref="paper", text=text, showarrow=False, xanchor="left",
            yanchor="bottom", font={"color": color, "size": 14}, xshift=3,
        )  # fmt: skip


def strip(w: Walk, line: str) -> go.Figure:
    """One line of Algorithm 1 as a strip plot of the batch's m values, its statistic marked."""
    if line not in LINES:
        raise ValueError(f"line must be one of {', '.join(LINES)}; got {line!r}")
    values = {"x": w.x, "xc": w.xc, "sq": w.sq, "x_hat": w.x_hat, "y": w.y}[line]
    rank = np.empty(w.m)
    rank[np.argsort(w.x, kind="stable")] = np.arange(w.m)
    fig = go.Figure(
        go.Scatter(
            x=common.rounded(values, 8),
            y=common.rounded(_heights(w.m), 3),
            mode="markers",
            marker={
                "size": 9 if w.m <= 64 else 6,
                "color": rank.tolist(),
                "colorscale": "Viridis",
                "cmin": 0,
                "cmax": max(1, w.m - 1),
                "line": {"width": 0.5, "color": "#333333"},
            },
            customdata=np.arange(w.m).tolist(),
            hovertemplate="example %{customdata}: %{x:.6g}<extra></extra>",
            showlegend=False,
        )
    )
    if line == "x":
        _mark(fig, w.mu, f"μ_B = {w.mu:.4g}")
    elif line == "xc":
        _mark(fig, 0.0, "0")
    elif line == "sq":
        _mark(fig, w.var, f"σ_B² = {w.var:.4g}")
    elif line == "x_hat":
        _mark(fig, 0.0, "0")
        for v in (-1.0, 1.0):
            _mark(fig, v, f"{v:+g}", dash="dot", color=style.MUTED)
    else:
        _mark(fig, w.beta, f"β = {w.beta:.3g}")
        for v in (w.beta - w.gamma, w.beta + w.gamma):
            _mark(fig, v, "", dash="dot", color=style.MUTED)
    fig.update_yaxes(visible=False, range=[-1.4, 1.4])
    fig.update_xaxes(zeroline=False)
    fig.update_layout(margin={"t": 58, "b": 40, "l": 20, "r": 20})
    return style.styled(fig, LINE_TITLES[line], STRIP_HEIGHT)


# --------------------------------------------------------------------------- the sigmoid


def sigmoid_regime(sr: SigmoidRegime, unit: int) -> go.Figure:
    """The unit's y (bars) on the sigmoid, its tangent 1/2 + y/4 and the near-linear band;
    the N(0, 1) density for comparison (what gamma = 1, beta = 0 give a Gaussian input)."""
    reach = float(sr.grid[-1])
    edges = np.linspace(-reach, reach, 81)
    width = float(edges[1] - edges[0])
    counts, _ = np.histogram(np.clip(sr.y, -reach, reach), bins=edges)
    centres = (edges[:-1] + edges[1:]) / 2
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_trace(
        go.Bar(
            x=common.rounded(centres),
            y=common.rounded(counts / len(sr.y)),
            width=width,
            marker={"color": style.rgba(style.BN, 0.75), "line": {"width": 0}},
            name=f"y of unit #{unit}",
            hovertemplate="y ≈ %{x:.3g}: %{y:.1%} of the batch<extra></extra>",
        ),
        secondary_y=False,
    )
    fig.add_trace(
        go.Scatter(
            x=common.rounded(sr.grid),
            y=common.rounded(sr.normal_pdf * width),
            mode="lines",
            line={"color": style.MUTED, "width": 2, "dash": "dot"},
            name="N(0, 1), same bins",
            hoverinfo="skip",
        ),
        secondary_y=False,
    )
    fig.add_trace(
        go.Scatter(
            x=common.rounded(sr.grid),
            y=common.rounded(sr.sigmoid),
            mode="lines",
            line={"color": "#222222", "width": 2.5},
            name="sigmoid(y)",
            hoverinfo="skip",
        ),
        secondary_y=True,
    )
    near = np.abs(sr.grid) <= 2.2
    fig.add_trace(
        go.Scatter(
            x=common.rounded(sr.grid[near]),
            y=common.rounded(sr.tangent[near]),
            mode="lines",
            line={"color": style.ACCENT, "width": 2, "dash": "dash"},
            name="tangent ½ + y/4",
            hoverinfo="skip",
        ),
        secondary_y=True,
    )
    # shapes only after the traces: plotly leaves subplots without traces out of add_vrect
    fig.add_vrect(
        x0=-sr.edge, x1=sr.edge, fillcolor=style.rgba(style.LN, 0.18), line_width=0,
        layer="below",
    )  # fmt: skip
    for lo, hi in ((-reach, -sr.saturation), (sr.saturation, reach)):
        fig.add_vrect(
            x0=lo, x1=hi, fillcolor=style.rgba(style.MUTED, 0.14), line_width=0, layer="below"
        )
    fig.add_annotation(
        x=0, y=1.0, yref="paper", yanchor="bottom", showarrow=False,
        text=f"near-linear |y| < {sr.edge:.2f}", font={"color": "#00734F"},
    )  # fmt: skip
    fig.add_annotation(
        x=(sr.saturation + reach) / 2, y=1.0, yref="paper", yanchor="bottom", showarrow=False,
        text=f"saturated |y| > {sr.saturation:.2f}", font={"color": style.MUTED},
    )  # fmt: skip
    fig.update_xaxes(title_text="y, what the sigmoid receives", range=[-reach, reach])
    fig.update_yaxes(title_text="fraction of the batch", tickformat=".0%", secondary_y=False)
    fig.update_yaxes(
        title_text="sigmoid(y)", range=[-0.02, 1.02], tickvals=[0, 0.25, 0.5, 0.75, 1],
        showgrid=False, secondary_y=True,
    )  # fmt: skip
    fig.update_layout(barmode="overlay", bargap=0, margin={"t": 125})
    return style.styled(
        fig,
        f"Unit #{unit}: {sr.linear_fraction:.0%} near-linear, {sr.saturated_fraction:.0%} "
        "saturated",
        470,
        wide=True,
    )


# --------------------------------------------------------------------------- whitening


def planes(wh: Whitening) -> go.Figure:
    """The same points as they are, standardized per feature and whitened, each panel with
    its 2-sigma covariance ellipse and correlation."""
    fig = make_subplots(
        rows=1,
        cols=3,
        horizontal_spacing=0.08,
        subplot_titles=[
            f"{p.name}<br>r = {p.corr:.3f}; variances {p.cov[0, 0]:.2g}, {p.cov[1, 1]:.2g}"
            for p in wh.planes
        ],
    )
    color = style.BN if wh.source == "real" else style.MUTED
    for col, p in enumerate(wh.planes, start=1):
        fig.add_trace(
            go.Scatter(
                x=common.rounded(p.points[:, 0], 5),
                y=common.rounded(p.points[:, 1], 5),
                mode="markers",
                marker={"size": 6, "color": style.rgba(color, 0.55)},
                name="examples",
                showlegend=col == 1,
                legendgroup="pts",
                hovertemplate="(%{x:.4g}, %{y:.4g})<extra></extra>",
            ),
            row=1,
            col=col,
        )
        fig.add_trace(
            go.Scatter(
                x=common.rounded(p.ellipse[:, 0], 5),
                y=common.rounded(p.ellipse[:, 1], 5),
                mode="lines",
                line={"color": style.ACCENT, "width": 2.5},
                name="2σ ellipse of the covariance",
                showlegend=col == 1,
                legendgroup="ell",
                hoverinfo="skip",
            ),
            row=1,
            col=col,
        )
        axis = "x" if col == 1 else f"x{col}"
        fig.update_yaxes(scaleanchor=axis, scaleratio=1, row=1, col=col)
        fig.update_xaxes(title_text=wh.labels[0], row=1, col=col)
    fig.update_yaxes(title_text=wh.labels[1], row=1, col=1)
    fig.update_layout(margin={"t": 150})
    what = "two real units of the layer" if wh.source == "real" else "generated points"
    return style.styled(fig, f"Standardize vs whiten: {what}", 480, wide=True)


def cost_chart(cost: WhiteningCost) -> go.Figure:
    """Milliseconds per mini-batch against the layer width D, on log-log axes."""
    fig = go.Figure()
    series = (
        ("BN: mean and variance per unit", cost.bn, style.BN, "solid"),
        ("whitening in all", cost.whiten, style.ACCENT, "solid"),
        ("covariance only", cost.covariance, style.MUTED, "dot"),
        ("eigendecomposition only", cost.eigen, style.MUTED, "dash"),
    )
    for name, secs, color, dash in series:
        fig.add_trace(
            go.Scatter(
                x=cost.dims.tolist(),
                y=common.rounded(1e3 * secs, 4),
                mode="lines+markers",
                line={"color": color, "dash": dash, "width": 2.5},
                marker={"size": 8},
                name=name,
                hovertemplate="D = %{x}: %{y:.3g} ms<extra></extra>",
            )
        )
    fig.update_xaxes(type="log", title_text="units D", tickvals=cost.dims.tolist())
    lo = float(1e3 * min(cost.bn.min(), cost.covariance.min()))
    hi = float(1e3 * cost.whiten.max())
    fig.update_yaxes(type="log", title_text="ms per batch")
    common.set_log_ticks(fig, lo, hi)
    fig.update_layout(margin={"t": 130})
    return style.styled(fig, f"Measured, m = {cost.m}", 430)


# --------------------------------------------------------------------------- the axes


def _cell(x0: float, y0: float, dx: float, dy: float, ex: float, ey: float) -> str:
    """The SVG path of a parallelogram with corner (x0, y0) and sides (dx, dy), (ex, ey)."""
    pts = [(x0, y0), (x0 + dx, y0 + dy), (x0 + dx + ex, y0 + dy + ey), (x0 + ex, y0 + ey)]
    return "M " + " L ".join(f"{x:.3f},{y:.3f}" for x, y in pts) + " Z"


def _shared(kind: str, n: int, c: int, groups: int, channels: int) -> bool:
    """Whether cell (example n, channel or unit c) shares the statistics of the highlighted
    set: example 1 (LN, GN, IN) and channel 2 (BN, IN), group 1 (GN)."""
    n0, c0, size = 1, 2, channels // groups
    return {
        "batch": c == c0,
        "layer": n == n0,
        "group": n == n0 and c // size == c0 // size,
        "instance": n == n0 and c == c0,
    }[kind]


def axes_picture(kind: str, n: int = 5, d: int = 6, hw: int = 4, groups: int = 3) -> go.Figure:
    """An (N, D) block of an MLP and an (N, C, H, W) block of a conv net, with the cells that
    share one mean and one variance under ``kind`` (batch, layer, group, instance) filled."""
    if kind not in NORM_KINDS:
        raise ValueError(f"kind must be one of {', '.join(NORM_KINDS)}; got {kind!r}")
    color = NORM_COLORS[kind]
    fill, empty, edge = style.rgba(color, 0.85), "#FFFFFF", "#777777"
    shapes = []

    def add(path: str, on: bool) -> None:
        shapes.append(
            {"type": "path", "path": path, "fillcolor": fill if on else empty,
             "line": {"color": edge, "width": 1}, "layer": "above"}
        )  # fmt: skip

    for row in range(n):  # the MLP: rows are examples, columns units
        for col in range(d):
            add(_cell(col, n - row - 1, 1, 0, 0, 1), _shared(kind, row, col, groups, d))
    ox, ex, ey = d + 3.5, 0.45, 0.35  # the conv block: offset, and one step into H x W
    for row in range(n):  # front face: depth 0
        for col in range(d):
            add(_cell(ox + col, n - row - 1, 1, 0, 0, 1), _shared(kind, row, col, groups, d))
    for col in range(d):  # top face: example 0
        for k in range(hw):
            on = _shared(kind, 0, col, groups, d)
            add(_cell(ox + col + k * ex, n + k * ey, 1, 0, ex, ey), on)
    for row in range(n):  # right face: the last channel
        for k in range(hw):
            add(
                _cell(ox + d + k * ex, n - row - 1 + k * ey, ex, ey, 0, 1),
                _shared(kind, row, d - 1, groups, d),
            )
    fig = go.Figure()
    fig.update_layout(shapes=shapes)
    notes = [
        (d / 2, -0.8, "D units", 0),
        (-0.6, n / 2, "N examples", -90),
        (ox + d / 2, -0.8, "C channels", 0),
        (ox - 0.6, n / 2, "N examples", -90),
        (ox + d + hw * ex + 0.3, n / 2 + hw * ey, "H × W<br>positions", 0),
        (d / 2, n + 2.2, "<b>MLP</b>: (N, D)", 0),
        (ox + d / 2 + 0.8, n + 2.2, "<b>conv net</b>: (N, C, H, W)", 0),
    ]
    for x, y, text, angle in notes:
        left = text.startswith("H ×")
        fig.add_annotation(
            x=x, y=y, text=text, showarrow=False, textangle=angle,
            xanchor="left" if left else "center",
        )  # fmt: skip
    stats = {
        "batch": ("one per unit: 1 × D, over N", "one per channel: 1 × C × 1 × 1, over N, H, W"),
        "layer": ("one per example: N × 1, over D", "one per example: N × 1 × 1 × 1, over C, H, W"),
        "group": (
            f"one per example and group: N × G, G = {groups}",
            f"one per example and group: N × G × 1 × 1, over C/G, H, W (G = {groups})",
        ),
        "instance": (
            "one per example and unit: a single value, x̂ = 0",
            "one per example and channel: N × C × 1 × 1, over H, W",
        ),
    }[kind]
    fig.add_annotation(x=d / 2, y=-1.8, text=stats[0], showarrow=False, font={"color": color})
    fig.add_annotation(
        x=ox + d / 2 + 1, y=-1.8, text=stats[1], showarrow=False, font={"color": color}
    )
    fig.update_xaxes(visible=False, range=[-1.5, ox + d + hw * ex + 3.2], constrain="domain")
    fig.update_yaxes(  # square cells, the drawing right under the title at any width
        visible=False, range=[-2.4, n + hw * ey + 2.7], scaleanchor="x", constrain="domain",
        constraintoward="top",
    )  # fmt: skip
    fig.update_layout(margin={"t": 50, "b": 0, "l": 0, "r": 0})
    title = f"{NORM_TITLES[kind]}: filled cells share one mean and variance"
    return style.styled(fig, title, 520, wide=True)


def conv_maps(cb: ConvBatch, example: int = 0) -> go.Figure:
    """One digit, its conv channels, and the same channels after BatchNorm2d (each channel
    shifted and scaled by its own batch statistics, the same at every position)."""
    channels = cb.z.shape[1]
    titles = [f"the digit (a {cb.labels[example]})"] + [f"channel {c}" for c in range(channels)]
    titles += [""] + ["after BN2d"] * channels
    fig = make_subplots(
        rows=2, cols=channels + 1, subplot_titles=titles, horizontal_spacing=0.02,
        vertical_spacing=0.1,
    )  # fmt: skip
    lim_z = float(np.max(np.abs(cb.z[example]))) or 1.0
    lim_h = float(np.max(np.abs(cb.x_hat[example]))) or 1.0

    def rows(image: Array) -> list:
        return [common.rounded(r, 4) for r in image[::-1]]  # row 0 at the top

    fig.add_trace(
        go.Heatmap(
            z=rows(cb.images[example, 0]), colorscale="Greys", showscale=False,
            hovertemplate="pixel %{z:.3f}<extra></extra>",
        ),
        row=1, col=1,
    )  # fmt: skip
    for c in range(channels):
        for row, data, lim in ((1, cb.z, lim_z), (2, cb.x_hat, lim_h)):
            fig.add_trace(
                go.Heatmap(
                    z=rows(data[example, c]), colorscale="RdBu", zmid=0, zmin=-lim, zmax=lim,
                    showscale=False, hovertemplate="%{z:.3f}<extra></extra>",
                ),
                row=row, col=c + 2,
            )  # fmt: skip
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    for k in range(1, 2 * (channels + 1) + 1):  # square pixels: each y axis follows its x
        suffix = "" if k == 1 else str(k)
        fig.layout[f"yaxis{suffix}"].update(scaleanchor=f"x{suffix}", constrain="domain")
        fig.layout[f"xaxis{suffix}"].update(constrain="domain")
    fig.update_layout(margin={"t": 80, "b": 10})
    return style.styled(
        fig, f"Example {example} of the batch: random 3×3 conv, then BatchNorm2d", 470, wide=True
    )


# --------------------------------------------------------------------------- sigma + eps


def sigma_eps(se: SigmaEps) -> go.Figure:
    """Left: the factor each normalization divides by, against the unit's sigma, with the
    layer's units marked. Right: the unit's x_hat both ways."""
    fig = make_subplots(
        rows=1, cols=2, column_widths=[0.58, 0.42], horizontal_spacing=0.1,
        subplot_titles=[
            f"scale factor against σ (ε = {se.eps:g})",
            f"this unit (σ = {se.unit_sigma:.3g}): x̂ both ways",
        ],
    )  # fmt: skip
    for name, ys, color, dash in (
        ("1 / √(σ² + ε)  (Algorithm 1)", se.scale_sqrt, style.BN, "solid"),
        ("1 / (σ + ε)  (seed 004)", se.scale_plus, style.ACCENT, "dash"),
        ("1 / σ", 1.0 / se.sigma, style.MUTED, "dot"),
    ):
        fig.add_trace(
            go.Scatter(
                x=common.rounded(se.sigma, 4), y=common.rounded(ys, 5), mode="lines",
                line={"color": color, "dash": dash, "width": 2.5}, name=name,
                hovertemplate="σ = %{x:.3g}: %{y:.4g}<extra></extra>",
            ),
            row=1, col=1,
        )  # fmt: skip
    fig.add_trace(
        go.Scatter(
            x=common.rounded(se.layer_sigma, 4), y=common.rounded(se.layer_scale_sqrt, 5),
            mode="markers", marker={"color": style.BN, "size": 7, "symbol": "circle-open"},
            name="the layer's units", hovertemplate="σ = %{x:.3g}<extra></extra>",
        ),
        row=1, col=1,
    )  # fmt: skip
    fig.add_vrect(
        x0=float(se.sigma[0]), x1=se.differ_below, fillcolor=style.rgba(style.ACCENT, 0.12),
        line_width=0, layer="below", row=1, col=1,
    )  # fmt: skip
    fig.add_vline(
        x=se.unit_sigma, line={"color": "#222222", "width": 1.5, "dash": "dot"}, row=1, col=1
    )
    fig.update_xaxes(type="log", title_text="σ_B of a unit", row=1, col=1)
    fig.update_yaxes(type="log", title_text="factor on x − μ_B", row=1, col=1)
    common.set_log_ticks(fig, float(se.sigma[0]), float(se.sigma[-1]), axis="x", row=1, col=1)
    reach = float(max(np.max(np.abs(se.x_hat_plus)), np.max(np.abs(se.x_hat_sqrt)), 1.0)) * 1.1
    fig.add_trace(
        go.Scatter(
            x=[-reach, reach], y=[-reach, reach], mode="lines",
            line={"color": style.MUTED, "width": 1, "dash": "dot"}, name="equal",
            showlegend=False, hoverinfo="skip",
        ),
        row=1, col=2,
    )  # fmt: skip
    fig.add_trace(
        go.Scatter(
            x=common.rounded(se.x_hat_sqrt, 6), y=common.rounded(se.x_hat_plus, 6),
            mode="markers", marker={"color": style.ACCENT, "size": 7}, name="one example",
            showlegend=False,
            hovertemplate="√ form %{x:.4g}, σ + ε form %{y:.4g}<extra></extra>",
        ),
        row=1, col=2,
    )  # fmt: skip
    fig.update_xaxes(title_text="(x − μ) / √(σ² + ε)", range=[-reach, reach], row=1, col=2)
    fig.update_yaxes(title_text="(x − μ) / (σ + ε)", range=[-reach, reach], row=1, col=2)
    fig.update_layout(margin={"t": 150})
    return style.styled(
        fig,
        f"√(σ² + ε) vs σ + ε: within 1% only above σ = {se.differ_below:.3g}",
        480,
        wide=True,
    )
