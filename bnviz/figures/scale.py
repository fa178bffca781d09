"""Figures for the scale-invariance lesson, drawn from ``bnviz.experiments.scale`` results.

Pure functions of the data: nothing here trains. Plain is orange and dashed, BN blue and solid,
as on every page; a reference (the unscaled weights, y = x, the slope -1 line) is grey.
"""

from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from bnviz.experiments.scale import (
    LINEAR_Y,
    SATURATION_Y,
    GammaBeta,
    Identity,
    TrainedScaling,
    effective_lr,
    weight_norms,
)
from bnviz.figures import common, style
from bnviz.histograms import even_indices
from bnviz.train import History, Twins

Array = np.ndarray
MAX_POINTS = 3000  # scatter points per panel; more only slow the browser
SMOOTH = 5  # records averaged in the measured relative step
NETS = (("plain", "plain"), ("BN", "bn"))  # run label, attribute of ``Identity``


def _change(rel: float) -> str:
    """How much a gradient moved (relative to its largest entry): "unchanged" at rounding."""
    return "unchanged" if rel < 1e-9 else f"max change {rel:.2g}"


def _mark_x(
    fig: go.Figure,
    x: float,
    text: str,
    dash: str = "dot",
    row: int | None = None,
    col: int | None = None,
) -> None:
    """A vertical line at x on a log x axis, labelled at the top. Shapes take x in data units
    but annotations take log10(x) on a log axis, so the label is placed on its own."""
    where = {} if row is None else {"row": row, "col": col}
    fig.add_vline(x=x, line={"color": style.MUTED, "dash": dash, "width": 1.5}, **where)
    fig.add_annotation(
        x=math.log10(x),
        y=1.0,
        yref="y domain",
        text=text,
        showarrow=False,
        xanchor="left",
        yanchor="bottom",
        font={"color": style.MUTED},
        **where,
    )


# --------------------------------------------------------------------------- one layer


def outputs_overlay(ident: Identity, unit: int = 0) -> go.Figure:
    """One unit over the batch: the Linear output W u and (aW) u (left), and what BN makes of
    them (right), examples sorted by W u. Left they differ by the factor a; right they overlay."""
    one, scaled = ident.bn
    n_units = one.z.shape[1]
    if not 0 <= unit < n_units:
        raise ValueError(f"unit must be in 0..{n_units - 1}; got {unit}")
    a, layer = common.fmt_value(ident.a), ident.layer
    order = np.argsort(one.z[:, unit], kind="stable")
    rank = np.arange(1, len(order) + 1)
    fig = make_subplots(
        rows=1,
        cols=2,
        horizontal_spacing=0.09,
        subplot_titles=[
            f"Linear output: W u and ({a}W) u",
            f"BN output: BN(W u) and BN(({a}W) u), eps = {ident.eps:g}",
        ],
    )
    ref = {"color": style.MUTED, "width": 7}
    fig.add_trace(
        go.Scatter(
            x=rank,
            y=common.rounded(one.z[order, unit]),
            mode="lines",
            line=ref,
            opacity=0.45,
            name="with W (a = 1)",
            legendgroup="ref",
            hovertemplate="W u = %{y:.4g}<extra></extra>",
        ),
        row=1,
        col=1,
    )
    fig.add_trace(
        go.Scatter(
            x=rank,
            y=common.rounded(scaled.z[order, unit]),
            mode="lines",
            line=common.line("plain"),
            name=f"({a}W) u: what the next layer gets without BN",
            hovertemplate=f"({a}W) u = %{{y:.4g}}<extra></extra>",
        ),
        row=1,
        col=1,
    )
    fig.add_trace(
        go.Scatter(
            x=rank,
            y=common.rounded(one.out[order, unit]),
            mode="lines",
            line=ref,
            opacity=0.45,
            name="with W (a = 1)",
            legendgroup="ref",
            showlegend=False,
            hovertemplate="BN(W u) = %{y:.6g}<extra></extra>",
        ),
        row=1,
        col=2,
    )
    fig.add_trace(
        go.Scatter(
            x=rank,
            y=common.rounded(scaled.out[order, unit]),
            mode="lines+markers",
            line={"color": style.BN, "width": 2},
            marker={"size": 5},
            name=f"BN(({a}W) u): what it gets with BN",
            hovertemplate=f"BN(({a}W) u) = %{{y:.6g}}<extra></extra>",
        ),
        row=1,
        col=2,
    )
    fig.update_xaxes(title_text=f"example in the batch, sorted by W u (of {len(rank)})")
    fig.update_yaxes(title_text=f"unit {unit}, layer {layer}", row=1, col=1)
    return style.styled(
        fig,
        f"Scaling the weights by a = {a}: layer {layer}, unit {unit}, on one real batch",
        wide=True,
    )


def input_gradients(ident: Identity) -> go.Figure:
    """dL/du at the layer's input with W (x) and with aW (y), every entry of the batch, plain
    and BN side by side: with BN the points sit on y = x."""
    a = common.fmt_value(ident.a)
    fig = make_subplots(
        rows=1,
        cols=2,
        horizontal_spacing=0.1,
        subplot_titles=[
            f"{name}: zero (batch of 2)"
            if net == "bn" and ident.bn_grad_vanishes
            else f"{name}: {_change(ident.du_change(net))}"
            for name, net in NETS
        ],
    )
    for col, (run, net) in enumerate(NETS, 1):
        one, scaled = getattr(ident, net)
        x, y = one.du.ravel(), scaled.du.ravel()
        keep = even_indices(x.size, MAX_POINTS)
        lo = float(min(np.min(x), np.min(y)))
        hi = float(max(np.max(x), np.max(y)))
        fig.add_trace(
            go.Scatter(
                x=[lo, hi],
                y=[lo, hi],
                mode="lines",
                line={"color": style.MUTED, "width": 1.5, "dash": "dot"},
                name="y = x (unchanged)",
                legendgroup="ref",
                showlegend=col == 1,
                hoverinfo="skip",
            ),
            row=1,
            col=col,
        )
        fig.add_trace(
            go.Scatter(
                x=common.rounded(x[keep], 5),
                y=common.rounded(y[keep], 5),
                mode="markers",
                marker={"color": style.run_color(run), "size": 4, "opacity": 0.6},
                name=run,
                hovertemplate="with W %{x:.3g}<br>with aW %{y:.3g}<extra>" + run + "</extra>",
            ),
            row=1,
            col=col,
        )
        fig.update_xaxes(title_text="dL/du with W", row=1, col=col)
    fig.update_yaxes(title_text=f"dL/du with {a}W", row=1, col=1)
    fig.update_xaxes(exponentformat="power", showexponent="all")
    fig.update_yaxes(exponentformat="power", showexponent="all")
    return style.styled(fig, f"Gradient at the layer's input, ∂L/∂u: W vs {a}W", wide=True)


def gradient_law(ident: Identity) -> go.Figure:
    """||dL/d(aW)|| against a on log-log axes: with BN a straight line of slope -1 (exactly,
    when eps = 0); the plain net's for comparison."""
    fig = go.Figure()
    a = ident.grid
    fig.add_trace(
        go.Scatter(
            x=a,
            y=common.rounded(ident.grad_norm_plain),
            mode="lines",
            line=common.line("plain"),
            name="plain",
            hovertemplate="a = %{x:.3g}<br>‖∂L/∂(aW)‖ = %{y:.4g}<extra>plain</extra>",
        )
    )
    if ident.bn_grad_vanishes:
        title = "Weight gradient vs a: with BN it is 0 (batch of 2, eps = 0)"
        fig.add_annotation(
            text="BN's gradient is zero at every a: with 2 examples BN outputs -1 and +1",
            xref="paper",
            yref="paper",
            x=0.5,
            y=0.5,
            showarrow=False,
            font={"color": style.ACCENT},
        )
    else:
        k = int(np.argmin(np.abs(np.log(a))))
        ref = ident.grad_norm_bn[k] * a[k] / a
        fig.add_trace(
            go.Scatter(
                x=a,
                y=common.rounded(ref),
                mode="lines",
                line={"color": style.MUTED, "width": 6},
                opacity=0.35,
                name="slope −1 (‖∂L/∂W‖ / a)",
                hoverinfo="skip",
            )
        )
        fig.add_trace(
            go.Scatter(
                x=a,
                y=common.rounded(ident.grad_norm_bn),
                mode="lines+markers",
                line=common.line("BN"),
                marker={"size": 6},
                name=f"BN (fitted slope {ident.slope_bn:.3f})",
                hovertemplate="a = %{x:.3g}<br>‖∂L/∂(aW)‖ = %{y:.4g}<extra>BN</extra>",
            )
        )
        title = f"Weight gradient vs a (log-log): fitted slope {ident.slope_bn:.3f} with BN"
    _mark_x(fig, ident.a, f"a = {common.fmt_value(ident.a)}")
    fig.update_xaxes(title_text="scale a of the weights")
    common.log_axis(fig, [a], "x")
    fig.update_yaxes(title_text=f"‖∂L/∂(aW)‖, layer {ident.layer}")
    common.log_axis(fig, [t.y for t in fig.data if t.y is not None])
    return style.styled(fig, title)


# --------------------------------------------------------------------------- over training


def _update_ratio(h: History) -> list[Array]:
    """The recorded ||W_after - W_before|| / ||W_before|| of each layer, as a trailing geometric
    mean over ``SMOOTH`` records: each record is one mini-batch's step, and single steps are
    too noisy to read a trend from. NaN before the first update."""
    out = []
    for layer in h.layers:
        r = np.asarray(layer.update_ratio, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            logs = np.log(np.where(r > 0, r, np.nan))
        sm = np.full_like(logs, np.nan)
        for i in range(logs.size):
            window = logs[max(0, i - SMOOTH + 1) : i + 1]
            window = window[np.isfinite(window)]
            if window.size:
                sm[i] = np.exp(window.mean())
        out.append(sm)
    return out


def norms_over_training(twins: Twins) -> go.Figure:
    """Per hidden layer: ||W_l||, lr/||W_l||^2 and the measured relative step ||ΔW||/||W||."""
    lr = twins.plain.config.lr
    return common.per_layer(
        twins,
        [
            common.Row("‖W‖", weight_norms, digits=5),
            common.Row("lr / ‖W‖²", effective_lr, log_y=True, digits=5),
            common.Row("measured ‖ΔW‖ / ‖W‖", _update_ratio, log_y=True, digits=5),
        ],
        f"Over training (lr = {lr:g}): ‖W‖, lr/‖W‖² and the measured step ‖ΔW‖/‖W‖",
        shared_y=False,
        nticks=None,
    )


def trained_scaling(ts: TrainedScaling, a: float | None = None) -> go.Figure:
    """Loss and accuracy of the trained nets with one layer's weights scaled by a (log x)."""
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.09)
    for col, data, fmt in ((1, ts.loss, ".4g"), (2, ts.acc, ".1%")):
        for run in ("plain", "BN"):
            fig.add_trace(
                go.Scatter(
                    x=ts.grid,
                    y=common.rounded(data[run]),
                    mode="lines+markers",
                    line=common.line(run),
                    marker={"size": 5},
                    name=run,
                    legendgroup=run,
                    showlegend=col == 1,
                    hovertemplate=f"a = %{{x:.3g}}<br>%{{y:{fmt}}}<extra>{run}</extra>",
                ),
                row=1,
                col=col,
            )
        _mark_x(fig, 1.0, "trained W", dash="solid", row=1, col=col)
        if a is not None and a != 1:
            _mark_x(fig, a, f"a = {common.fmt_value(a)}", row=1, col=col)
        fig.update_xaxes(title_text=f"scale a of W{ts.layer}", col=col)
        common.log_axis(fig, [ts.grid], "x", row=1, col=col)
    fig.update_yaxes(title_text="test loss", rangemode="tozero", row=1, col=1)
    fig.update_yaxes(title_text="test accuracy", range=[0, 1.02], tickformat=".0%", row=1, col=2)
    return style.styled(
        fig,
        f"The trained nets, layer {ts.layer}'s weights scaled by a "
        f"({ts.n_examples} test digits as one batch)",
        wide=True,
    )


# --------------------------------------------------------------------------- gamma and beta


def _hist(values: Array, edges: Array) -> Array:
    """Fraction of values in each bin; values outside the edges (or not finite, after a
    diverged run) are not counted."""
    counts, _ = np.histogram(values[np.isfinite(values)], bins=edges)
    return counts / max(len(values), 1)


def _reach(values: Array) -> float:
    """The largest finite |value| (0 when there is none)."""
    finite = np.abs(values[np.isfinite(values)])
    return float(finite.max()) if finite.size else 0.0


def _edges(values: Array, n_bins: int, pad: float = 0.05) -> Array:
    values = values[np.isfinite(values)]
    if values.size == 0:
        return np.linspace(-1.0, 1.0, n_bins + 1)
    lo, hi = float(np.min(values)), float(np.max(values))
    span = hi - lo
    if span <= 1e-12 * max(1.0, abs(lo)):
        span = max(1.0, abs(lo)) * 0.1
        lo, hi = lo - span / 2, hi + span / 2
    return np.linspace(lo - pad * span, hi + pad * span, n_bins + 1)


def gamma_beta(gb: GammaBeta, n_bins: int = 40) -> go.Figure:
    """The unit's BN input x, its output y = gamma x_hat + beta drawn over the sigmoid and its
    tangent 0.5 + y/4 (the near-linear band |y| < 1 shaded), and sigmoid(y)."""
    sig = style.BN
    fig = make_subplots(
        rows=1,
        cols=3,
        horizontal_spacing=0.08,
        column_widths=[0.28, 0.44, 0.28],
        specs=[[{}, {"secondary_y": True}, {}]],
        subplot_titles=[
            # two short lines each: one line of each ran into its neighbours at 1280 pixels
            f"BN input x<br>mean {gb.mean:.3f}, std {math.sqrt(gb.var):.3f}",
            f"y = {gb.gamma:.3f} x̂ + {gb.beta:.3f}<br>{gb.linear_fraction:.0%} in |y| < "
            f"{LINEAR_Y:g}",
            f"sigmoid(y)<br>{gb.saturated_fraction:.0%} saturated (|y| > {SATURATION_Y:.2f})",
        ],
    )
    fig.update_layout(margin={"t": style.MARGIN["t"] + style.TITLE_LINE})
    ex = _edges(gb.x, n_bins)
    cx = (ex[:-1] + ex[1:]) / 2
    fig.add_trace(
        go.Bar(
            x=common.rounded(cx),
            y=common.rounded(_hist(gb.x, ex)),
            width=float(ex[1] - ex[0]),
            marker={"color": style.MUTED, "line": {"width": 0}},
            opacity=0.6,
            name="BN input x",
            hovertemplate="x ≈ %{x:.3g}: %{y:.1%}<extra></extra>",
        ),
        row=1,
        col=1,
    )
    reach = max(6.0, _reach(gb.y) * 1.05, _reach(gb.x) * 1.05)
    ey = np.linspace(-reach, reach, 2 * n_bins + 1)
    cy = (ey[:-1] + ey[1:]) / 2
    fig.add_trace(
        go.Scatter(
            x=[-LINEAR_Y, -LINEAR_Y, LINEAR_Y, LINEAR_Y],
            y=[0, 1, 1, 0],
            mode="lines",
            fill="toself",
            fillcolor=style.rgba("#009E73", 0.15),
            line={"width": 0},
            name=f"near-linear band |y| < {LINEAR_Y:g}",
            hoverinfo="skip",
        ),
        row=1,
        col=2,
        secondary_y=True,
    )
    fig.add_trace(
        go.Bar(
            x=common.rounded(cy),
            y=common.rounded(_hist(gb.y, ey)),
            width=float(ey[1] - ey[0]),
            marker={"color": style.rgba(sig, 0.7), "line": {"width": 0}},
            name="y = γ x̂ + β",
            hovertemplate="y ≈ %{x:.3g}: %{y:.1%}<extra></extra>",
        ),
        row=1,
        col=2,
    )
    if gb.identity:  # y == x: the input's outline lands exactly on the output's bars
        fig.add_trace(
            go.Scatter(
                x=common.rounded(cy),
                y=common.rounded(_hist(gb.x, ey)),
                mode="lines",
                line={"color": "#222222", "width": 1.5, "shape": "hvh"},
                name="x, on the same axis",
                hovertemplate="x ≈ %{x:.3g}: %{y:.1%}<extra></extra>",
            ),
            row=1,
            col=2,
        )
    grid = np.linspace(-reach, reach, 241)
    fig.add_trace(
        go.Scatter(
            x=common.rounded(grid),
            y=common.rounded(0.5 + 0.5 * np.tanh(grid / 2)),
            mode="lines",
            line={"color": "#222222", "width": 2},
            name="sigmoid(y)",
            hoverinfo="skip",
        ),
        row=1,
        col=2,
        secondary_y=True,
    )
    t = np.linspace(-2.0, 2.0, 2)
    fig.add_trace(
        go.Scatter(
            x=t,
            y=0.5 + t / 4,
            mode="lines",
            line={"color": style.ACCENT, "width": 2, "dash": "dash"},
            name="tangent 0.5 + y/4",
            hoverinfo="skip",
        ),
        row=1,
        col=2,
        secondary_y=True,
    )
    es = np.linspace(0.0, 1.0, n_bins + 1)
    fig.add_trace(
        go.Bar(
            x=common.rounded((es[:-1] + es[1:]) / 2),
            y=common.rounded(_hist(gb.s, es)),
            width=float(es[1] - es[0]),
            marker={"color": sig, "line": {"width": 0}},
            name="sigmoid(y)",
            showlegend=False,
            hovertemplate="sigmoid(y) ≈ %{x:.3f}: %{y:.1%}<extra></extra>",
        ),
        row=1,
        col=3,
    )
    fig.update_xaxes(title_text=f"x (layer {gb.layer}, unit {gb.unit})", row=1, col=1)
    fig.update_xaxes(title_text="y", range=[-reach, reach], row=1, col=2)
    fig.update_xaxes(title_text="sigmoid(y)", range=[0, 1], row=1, col=3)
    fig.update_yaxes(title_text="fraction of the batch", tickformat=".0%", row=1, col=1)
    fig.update_yaxes(tickformat=".0%", row=1, col=2, secondary_y=False)
    fig.update_yaxes(tickformat=".0%", row=1, col=3)
    fig.update_yaxes(
        range=[-0.02, 1.02],
        tickvals=[0, 0.5, 1],
        showgrid=False,
        row=1,
        col=2,
        secondary_y=True,
    )
    fig.update_layout(barmode="overlay", bargap=0)
    return style.styled(
        fig,
        f"One unit of BN layer {gb.layer} on {len(gb.x)} test digits: "
        f"γ = {gb.gamma:.3f}, β = {gb.beta:.3f}",
        460,
        wide=True,
    )
