"""Figures for the training-vs-inference lesson, drawn from ``bnviz.experiments.inference``.

Pure functions of the data: nothing here trains. BN is blue; the running average (EMA) at the
chosen momentum is blue, the cumulative average vermillion and dashed, the statistics of the
current weights (what the averages estimate) black, single batches grey.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from bnviz.experiments.inference import (
    CASES,
    Bug,
    Correction,
    Estimates,
    Folded,
    InferenceResult,
)
from bnviz.figures import common, style

Array = np.ndarray
EMA = style.BN
CUMULATIVE = style.ACCENT
TRUE = "#111111"
BATCH = "#AAAAAA"
MAX_POINTS = 1500
CASE_NAMES = {
    "eval": "eval mode: running statistics",
    "recalibrated": "eval mode: recalibrated (Algorithm 2)",
    "shuffled": "batch statistics: shuffled test batches of {m}",
    "class-sorted": "batch statistics: class-sorted test batches of {m}",
    "pairs": "batch statistics: test batches of 2",
    "single": "batch statistics: test batches of 1",
}


def _momentum_name(f: float) -> str:
    return f"running average, momentum {f:g} (Keras {1 - f:.6g})"


def _span(*arrays: Array, pad: float = 0.15) -> tuple[float, float]:
    """A y range holding the batch values and the true statistics (0.5% to 99.5%), so that the
    averages' first steps from their initial 0 and 1 run off the chart rather than flatten it."""
    v = np.concatenate([np.asarray(a, dtype=np.float64).ravel() for a in arrays])
    v = v[np.isfinite(v)]
    if v.size == 0:
        return -1.0, 1.0
    lo, hi = (float(q) for q in np.quantile(v, [0.005, 0.995]))
    span = max(hi - lo, 1e-6 * max(1.0, abs(hi)))
    return lo - pad * span, hi + pad * span


def _log_axis(fig: go.Figure, values, row: int, col: int) -> None:
    """A log y axis with 1-2-5 labels covering ``values``."""
    v = np.concatenate([np.asarray(a, dtype=np.float64).ravel() for a in values])
    v = v[np.isfinite(v) & (v > 0)]
    lo, hi = (float(v.min()), float(v.max())) if v.size else (0.01, 1.0)
    fig.update_yaxes(type="log", tickvals=common.log_ticks(lo / 1.3, hi * 1.3), row=row, col=col)


def running_stats(result: InferenceResult, est: Estimates, layer: int, unit: int) -> go.Figure:
    """One unit over training: each step's batch mean and variance, the running average at the
    chosen momentum, the cumulative average, and the statistics of the current weights."""
    tr = result.trace
    li = layer - 1
    steps = np.arange(1, tr.steps + 1)
    keep = np.unique(np.linspace(0, tr.steps - 1, min(tr.steps, MAX_POINTS)).astype(int))
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.09)
    m = tr.batch_size
    rows = (
        (1, tr.mean[:, li, unit], est.ema_mean[:, li, unit], est.cum_mean[:, li, unit],
         result.pop_mean[:, li, unit], "μ_B of the step's batch"),
        (2, tr.var[:, li, unit] * m / (m - 1), est.ema_var[:, li, unit], est.cum_var[:, li, unit],
         result.pop_var[:, li, unit], "σ_B² · m/(m−1) of the step's batch"),
    )  # fmt: skip
    for row, batch, ema, cum, true, batch_name in rows:
        show = row == 1
        fig.add_trace(
            go.Scattergl(
                x=steps[keep],
                y=common.rounded(batch[keep], 4),
                mode="markers",
                marker={"color": BATCH, "size": 3},
                name="one batch (what each step sees)",
                legendgroup="batch",
                showlegend=show,
                hovertemplate="step %{x}: %{y:.4g}<extra>" + batch_name + "</extra>",
            ),
            row=row,
            col=1,
        )
        fig.add_trace(
            go.Scatter(
                x=steps[keep],
                y=common.rounded(cum[keep], 5),
                mode="lines",
                line={"color": CUMULATIVE, "dash": "dash", "width": 2},
                name="cumulative average (momentum None)",
                legendgroup="cum",
                showlegend=show,
                hovertemplate="step %{x}: %{y:.4g}<extra>cumulative</extra>",
            ),
            row=row,
            col=1,
        )
        fig.add_trace(
            go.Scatter(
                x=steps[keep],
                y=common.rounded(ema[keep], 5),
                mode="lines",
                line={"color": EMA, "width": 2.5},
                name=_momentum_name(est.momentum),
                legendgroup="ema",
                showlegend=show,
                hovertemplate="step %{x}: %{y:.4g}<extra>running average</extra>",
            ),
            row=row,
            col=1,
        )
        fig.add_trace(
            go.Scatter(
                x=result.pop_steps,
                y=common.rounded(true, 5),
                mode="lines+markers",
                line={"color": TRUE, "width": 1.5},
                marker={"size": 4},
                name="the current weights' statistics (Algorithm 2 at that step)",
                legendgroup="true",
                showlegend=show,
                hovertemplate="step %{x}: %{y:.4g}<extra>current weights</extra>",
            ),
            row=row,
            col=1,
        )
    for row, batch, _, _, true, _ in rows:
        lo, hi = _span(batch, true)
        fig.update_yaxes(range=[lo, hi], row=row, col=1)
    fig.update_yaxes(title_text=f"mean, unit {unit}", row=1, col=1)
    fig.update_yaxes(title_text=f"variance, unit {unit}", row=2, col=1)
    fig.update_xaxes(title_text="training step", row=2, col=1)
    return style.styled(
        fig,
        f"BN layer {layer}, unit {unit}: what the running averages estimate, and how they lag",
        height=620,
        wide=True,
    )


def lag_over_training(est: Estimates, layer: int) -> go.Figure:
    """The estimates' error against the current weights' statistics over training, as a mean
    over the layer's units: the mean in units of the std, the variance as a ratio."""
    fig = make_subplots(
        rows=1,
        cols=2,
        horizontal_spacing=0.1,
        subplot_titles=["|estimated mean − E[x]| / √Var[x]", "|estimated variance / Var[x] − 1|"],
    )
    steps = est.steps
    for col in (1, 2):
        _log_axis(fig, [est.ema_err[col - 1][1:, layer - 1], est.cum_err[col - 1][1:, layer - 1]],
                  1, col)  # fmt: skip
        for name, err, line in (
            (_momentum_name(est.momentum), est.ema_err, {"color": EMA, "width": 2.5}),
            ("cumulative average", est.cum_err, {"color": CUMULATIVE, "dash": "dash", "width": 2}),
        ):
            y = err[col - 1][:, layer - 1]
            fig.add_trace(
                go.Scatter(
                    x=steps[1:],
                    y=common.rounded(y[1:], 4),
                    mode="lines",
                    line=line,
                    name=name,
                    legendgroup=name,
                    showlegend=col == 1,
                    hovertemplate="step %{x}: %{y:.3g}<extra></extra>",
                ),
                row=1,
                col=col,
            )
        fig.update_xaxes(title_text="training step", row=1, col=col)
    fig.update_yaxes(title_text=f"error, layer {layer} (mean over units)", row=1, col=1)
    return style.styled(fig, f"How far the running statistics are from the truth, layer {layer}", wide=True)


def momentum_sweep(result: InferenceResult, momentum: float, layer: int) -> go.Figure:
    """The error of the running average against the current weights' statistics, as a function
    of the momentum: over the second half of training (lag and noise) and at its end."""
    sw = result.sweep
    li = layer - 1
    fig = make_subplots(
        rows=1,
        cols=2,
        horizontal_spacing=0.1,
        subplot_titles=["error of the mean", "error of the variance"],
    )
    cum = sw.cumulative
    for col, (late, final, c_late, c_final) in enumerate(
        (
            (sw.mean_late, sw.mean_final, cum[2], cum[0]),
            (sw.var_late, sw.var_final, cum[3], cum[1]),
        ),
        1,
    ):
        for y, name, dash in (
            (late, "second half of training", "solid"),
            (final, "at the end", "dot"),
        ):
            fig.add_trace(
                go.Scatter(
                    x=sw.momenta,
                    y=common.rounded(y[:, li], 4),
                    mode="lines+markers",
                    line={"color": EMA, "dash": dash, "width": 2},
                    marker={"size": 6},
                    name=f"running average, {name}",
                    legendgroup=name,
                    showlegend=col == 1,
                    hovertemplate="momentum %{x:g}: %{y:.3g}<extra>" + name + "</extra>",
                ),
                row=1,
                col=col,
            )
        for value, name, dash in (
            (c_late[li], "second half", "dash"),
            (c_final[li], "end", "dot"),
        ):
            fig.add_trace(
                go.Scatter(
                    x=[float(sw.momenta[0]), float(sw.momenta[-1])],
                    y=[float(value), float(value)],
                    mode="lines",
                    line={"color": CUMULATIVE, "dash": dash, "width": 1.5},
                    name=f"cumulative, {name}",
                    legendgroup=f"cum {name}",
                    showlegend=col == 1,
                    hovertemplate=f"cumulative average, {name}: %{{y:.3g}}<extra></extra>",
                ),
                row=1,
                col=col,
            )
        _log_axis(fig, [late[:, li], final[:, li], [c_late[li], c_final[li]]], 1, col)
        fig.add_vline(
            x=momentum, line={"color": style.MUTED, "dash": "dot", "width": 1.5}, row=1, col=col
        )
        fig.update_xaxes(
            type="log",
            title_text="momentum (PyTorch's convention)",
            tickvals=[0.001, 0.01, 0.1, 1],
            ticktext=["0.001", "0.01", "0.1", "1"],
            row=1,
            col=col,
        )
    fig.update_yaxes(title_text=f"error, layer {layer} (mean over units)", row=1, col=1)
    fig.update_layout(margin={"t": 125})  # room for a legend of two rows on a small screen
    return style.styled(
        fig,
        f"The running average's error against its momentum, layer {layer} (second half: mean "
        "over its records; end: the last step)",
        wide=True,
    )


def correction_figure(corr: Correction) -> go.Figure:
    """E_B[sigma_B^2] / Var over the whole set, biased and with m/(m-1), against the batch size."""
    fig = go.Figure()
    m = corr.sizes
    fig.add_hline(y=1.0, line={"color": style.MUTED, "dash": "dot", "width": 1.5})
    fig.add_trace(
        go.Scatter(
            x=m,
            y=common.rounded(corr.expected(), 5),
            mode="lines",
            line={"color": style.MUTED, "width": 6},
            opacity=0.35,
            name=f"(m−1)/m · N/(N−1), N = {corr.n_train:,}",
        )
    )
    for y, name, color, symbol in (
        (corr.biased, "mean of σ_B² (biased, 1/m)", style.ACCENT, "circle"),
        (corr.corrected, "m/(m−1) · mean of σ_B² (Algorithm 2)", style.BN, "diamond"),
    ):
        fig.add_trace(
            go.Scatter(
                x=m,
                y=common.rounded(y, 5),
                mode="lines+markers",
                line={"color": color, "width": 2},
                marker={"symbol": symbol, "size": 9},
                name=name,
                hovertemplate="m = %{x}: %{y:.4f}<extra></extra>",
            )
        )
    ticks = [int(v) for v in m if v & (v - 1) == 0]  # powers of two: the run's m may sit between
    fig.update_xaxes(type="log", tickvals=ticks, title_text="batch size m")
    fig.update_yaxes(title_text="ratio to the variance of all digits", range=[0.4, 1.1])
    return style.styled(fig, "The m/(m−1) correction, hidden layer 1")


def affine_figure(fo: Folded, layer: int) -> go.Figure:
    """Per unit of one BN layer, the inference map's scale and shift."""
    li = layer - 1
    units = np.arange(fo.scale.shape[1])
    fig = make_subplots(
        rows=1,
        cols=2,
        horizontal_spacing=0.08,
        subplot_titles=["scale  γ / √(Var[x] + ε)", "shift  β − γ E[x] / √(Var[x] + ε)"],
    )
    for col, values in ((1, fo.scale[li]), (2, fo.shift[li])):
        fig.add_trace(
            go.Bar(
                x=units,
                y=common.rounded(values, 5),
                marker={"color": style.BN, "line": {"width": 0}},
                name="one unit",
                showlegend=False,
                hovertemplate="unit %{x}: %{y:.4g}<extra></extra>",
            ),
            row=1,
            col=col,
        )
        fig.update_xaxes(title_text=f"unit of BN layer {layer}", row=1, col=col)
    return style.styled(fig, f"BN layer {layer} at inference: y = scale · x + shift, per unit", wide=True)


def bug_figure(b: Bug, chance: float) -> go.Figure:
    """Test accuracy for each way of running BN at test time, eval mode first."""
    names = [CASE_NAMES[c].format(m=b.size) for c in CASES]
    values = [b.acc[c] for c in CASES]
    colors = [style.BN if c in ("eval", "recalibrated") else style.ACCENT for c in CASES]
    fig = go.Figure(
        go.Bar(
            x=common.rounded(values, 4),
            y=names,
            orientation="h",
            marker={"color": colors},
            text=[f"{v:.1%}" for v in values],
            textposition="outside",
            hovertemplate="%{y}: %{x:.1%}<extra></extra>",
            showlegend=False,
        )
    )
    fig.add_vline(
        x=chance,
        line={"color": style.MUTED, "dash": "dot"},
        annotation_text=f"chance {chance:.0%}",
        annotation_position="top",
    )
    fig.update_xaxes(title_text="test accuracy", range=[0, 1.12], tickformat=".0%")
    fig.update_yaxes(autorange="reversed")
    fig = style.styled(fig, "One trained net, six ways to run BN on the test set", wide=True)
    fig.update_layout(title={"xref": "container", "x": 0.01})  # the labels push the plot right
    return fig


def eval_gap_figure(result: InferenceResult) -> go.Figure:
    """Accuracy on the training split over training, with batch statistics (train mode) and
    with running statistics (eval mode), and their difference."""
    h = result.history
    gap = h.probes["eval_gap"]
    keep = h.record_steps > 0  # a log step axis: the first records matter most here
    steps = h.record_steps[keep]
    fig = make_subplots(
        rows=1,
        cols=2,
        horizontal_spacing=0.1,
        subplot_titles=["accuracy on the training split", "eval mode − train mode"],
    )
    for y, name, line in (
        (gap.acc_batch, "train mode: each batch's statistics", {"color": style.BN, "dash": "dot"}),
        (gap.acc_running, "eval mode: running statistics", {"color": style.BN, "width": 2.5}),
    ):
        fig.add_trace(
            go.Scatter(
                x=steps,
                y=common.rounded(np.asarray(y)[keep], 4),
                mode="lines+markers",
                marker={"size": 4},
                line=line,
                name=name,
                hovertemplate="step %{x}: %{y:.1%}<extra>" + name + "</extra>",
            ),
            row=1,
            col=1,
        )
    diff = np.asarray(gap.acc_running, dtype=np.float64) - np.asarray(gap.acc_batch, np.float64)
    diff = diff[keep]
    fig.add_trace(
        go.Scatter(
            x=steps,
            y=common.rounded(diff, 4),
            mode="lines",
            line={"color": style.MUTED, "width": 2},
            name="difference",
            showlegend=False,
            hovertemplate="step %{x}: %{y:+.1%}<extra></extra>",
        ),
        row=1,
        col=2,
    )
    fig.add_hline(y=0, line={"color": style.MUTED, "dash": "dot", "width": 1}, row=1, col=2)
    fig.update_yaxes(title_text="accuracy", tickformat=".0%", range=[0, 1.02], row=1, col=1)
    lim = max(0.02, float(np.nanmax(np.abs(diff))) * 1.1) if diff.size else 0.02
    fig.update_yaxes(tickformat="+.0%", range=[-lim, lim], row=1, col=2)
    if steps.size:
        ticks = common.log_ticks(float(steps.min()), float(steps.max()))
        fig.update_xaxes(type="log", tickvals=ticks, title_text="training step (log scale)")
    return style.styled(fig, "Train mode and eval mode on the same training digits", wide=True)
