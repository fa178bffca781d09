"""Figures for the learning-rate lesson: two-rate curves, the rate sweep, the stability map.

Plain is orange and dashed, BN blue and solid, as everywhere. How a run ended is drawn, never
hidden: a diverged run is an x (and its curve stops at the step it diverged), a stalled run an
open circle, and the words come from ``bnviz.experiments.learning_rate`` so the page agrees.
"""

from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from bnviz.experiments.learning_rate import GridResult, Outcomes, SweepResult
from bnviz.figures import common, style
from bnviz.train import Twins

Array = np.ndarray
ACC_SCALE = "Viridis"  # sequential and readable in grayscale; not the runs' own colors
DIVERGED_FILL = style.rgba(style.ACCENT, 0.85)
STALLED_MARK, DIVERGED_MARK = "○", "✕"
GRID_LINE = "#BBBBBB"  # the edge between an axis and its "diverged" band


def _rated(fig: go.Figure, twins: Twins) -> go.Figure:
    """Name each run's trace after its own learning rate."""
    rates = {h.label: common.fmt_value(h.config.lr) for h in twins}
    for trace in fig.data:
        if trace.name in rates and trace.showlegend is not False:
            trace.name = f"{trace.name}, rate {rates[trace.name]}"
    return fig


def _ended(o: Outcomes, i: int) -> str:
    if o.diverged[i]:
        return f"diverged at step {int(o.diverged_at[i]):,}"
    return "stalled" if o.stalled[i] else "learned"


def loss_curves(twins: Twins, smooth: int = 20) -> go.Figure:
    """Training loss of the two-rate runs (log y); a diverged run's curve stops where it did."""
    rates = " vs ".join(f"{h.label} at {common.fmt_value(h.config.lr)}" for h in twins)
    return _rated(common.loss_curves(twins, smooth=smooth, title=f"Training loss: {rates}"), twins)


def accuracy_curves(twins: Twins) -> go.Figure:
    """Test accuracy of the two-rate runs over training."""
    rates = " vs ".join(f"{h.label} at {common.fmt_value(h.config.lr)}" for h in twins)
    return _rated(common.accuracy_curves(twins, title=f"Test accuracy: {rates}"), twins)


DIVERGED_ROW = {"plain": 0, "BN": 1}  # diverged marks: one row per net, so neither hides


def sweep_chart(
    result: SweepResult, lr_plain: float | None = None, lr_bn: float | None = None
) -> go.Figure:
    """Final training loss (log y) and final test accuracy vs learning rate (log x), plain vs
    BN. A diverged run has neither (its net holds non-finite or exploded weights): it is an x
    in a "diverged" band past the end of each panel's axis, a row per net so one net's marks
    never hide the other's, and it breaks the line. Stalled runs are open circles; a dashed
    line marks the accuracy a run needs to count as learned. Dotted lines mark the rates the
    two sliders have chosen."""
    window = max(1, round(result.plain.steps * 0.1))
    fig = make_subplots(
        rows=1,
        cols=2,
        horizontal_spacing=0.1,
        subplot_titles=[f"final training loss (last {window:,} steps)", "final test accuracy"],
    )
    finite = np.concatenate([o.final_loss[np.isfinite(o.final_loss)] for _, o in result])
    finite = np.append(finite, result.plain.chance_loss)
    top, bottom = float(finite.max()) * 3.0, float(finite.min()) / 2.0
    loss_band = [top * 2.0, top * 3.6]  # the rows of diverged marks above the loss axis
    acc_band = [-0.09, -0.17]  # ... and below the accuracy axis
    any_diverged = any(o.diverged.any() for _, o in result)
    marks = []  # (legend name, runs, marker, y per panel, words)
    for name, o in result:
        color = style.run_color(name)
        ends = [_ended(o, i) for i in range(len(o.lr))]
        for col, y, fmt in ((1, o.final_loss, ".4g"), (2, o.final_acc, ".1%")):
            fig.add_trace(
                go.Scatter(
                    x=o.lr.tolist(),
                    y=[None if not math.isfinite(v) else float(v) for v in y],
                    customdata=ends,
                    mode="lines+markers",
                    line=common.line(name),
                    marker={"size": 9, "color": color},
                    name=name,
                    showlegend=col == 1,
                    hovertemplate=f"{name}, rate %{{x:g}}<br>%{{y:{fmt}}} (%{{customdata}})"
                    "<extra></extra>",
                ),
                row=1,
                col=col,
            )
        stalled, diverged = np.flatnonzero(o.stalled), np.flatnonzero(o.diverged)
        if stalled.size:
            marker = {
                "symbol": "circle",
                "size": 10,
                "color": "white",
                "line": {"width": 2.5, "color": color},
            }
            marks.append((f"{name} stalled", stalled, marker, (o.final_loss, o.final_acc), ends))
        if diverged.size:
            marker = {"symbol": "x", "size": 13, "color": color, "line": {"width": 1}}
            row = DIVERGED_ROW.get(name, 0)
            at = (np.full(len(o.lr), loss_band[row]), np.full(len(o.lr), acc_band[row]))
            marks.append((f"{name} diverged", diverged, marker, at, ends))
    for label, idx, marker, ys, ends in marks:
        for col in (1, 2):
            fig.add_trace(
                go.Scatter(
                    x=result.lrs[idx].tolist(),
                    y=[float(v) for v in ys[col - 1][idx]],
                    customdata=[ends[i] for i in idx],
                    mode="markers",
                    marker=marker,
                    name=label,
                    showlegend=col == 1,
                    hovertemplate=label.split()[0] + ", rate %{x:g}: %{customdata}<extra></extra>",
                ),
                row=1,
                col=col,
            )
    for name, lr in (("plain", lr_plain), ("BN", lr_bn)):
        if lr is None:
            continue
        for col in (1, 2):
            fig.add_vline(
                x=lr,
                line={"color": style.run_color(name), "dash": "dot", "width": 1.5},
                row=1,
                col=col,
            )
    chance, bar = result.plain.chance_loss, result.plain.learned_bar
    ends_x = [float(result.lrs[0]), float(result.lrs[-1])]
    for col, y, words in (
        (1, chance, f"chance level: loss {chance:.3g} (a uniform guess)"),
        (2, bar, f"learned: test accuracy {bar:.0%} or more"),
    ):
        fig.add_trace(  # traces, not labelled lines: their labels go to the legend
            go.Scatter(
                x=ends_x,
                y=[y, y],
                mode="lines",
                line={"color": style.MUTED, "dash": "dash", "width": 1},
                name=words,
                hovertemplate=f"{words}<extra></extra>",
            ),
            row=1,
            col=col,
        )
    fig.update_xaxes(type="log", title_text="learning rate (log scale)")
    common.set_log_ticks(fig, float(result.lrs[0]), float(result.lrs[-1]), "x")
    ticks = common.log_ticks(bottom, top)
    fig.update_yaxes(
        type="log",
        range=[math.log10(bottom), math.log10(loss_band[1] * 1.6 if any_diverged else top)],
        tickvals=ticks + ([math.sqrt(loss_band[0] * loss_band[1])] if any_diverged else []),
        ticktext=[f"{t:g}" for t in ticks] + (["diverged"] if any_diverged else []),
        title_text="loss (log scale)",
        row=1,
        col=1,
    )
    quarters = [0.0, 0.25, 0.5, 0.75, 1.0]
    fig.update_yaxes(
        range=[acc_band[1] - 0.06 if any_diverged else -0.04, 1.04],
        tickvals=quarters + ([sum(acc_band) / 2] if any_diverged else []),
        ticktext=[f"{q:.0%}" for q in quarters] + (["diverged"] if any_diverged else []),
        title_text="test accuracy",
        row=1,
        col=2,
    )
    if any_diverged:
        for col, y in ((1, top * 1.35), (2, -0.045)):
            fig.add_hline(y=y, line={"color": GRID_LINE, "width": 1}, row=1, col=col)
    return style.styled(
        fig,
        f"Learning-rate sweep: {result.plain.steps:,} steps per net",
        wide=True,
    )


def stability_map(result: GridResult) -> go.Figure:
    """Final test accuracy over learning rate x initial weight scale, plain and BN side by
    side. Each cell is one run and prints its accuracy; diverged cells are filled vermillion
    and say so (they have no accuracy), stalled cells add the word "stalled"."""
    fig = make_subplots(
        rows=1,
        cols=2,
        shared_yaxes=True,
        horizontal_spacing=0.04,
        subplot_titles=[f"{name} net" for name, _ in result],
    )
    x = [common.fmt_value(v) for v in result.lrs]
    y = [common.fmt_value(v) for v in result.scales]
    for k, (name, o) in enumerate(result, start=1):
        acc = result.cell(o, "final_acc")
        ends = result.cell(o, "outcome")
        div_at = result.cell(o, "diverged_at")
        loss = result.cell(o, "final_loss")
        pct = np.char.mod("%.0f%%", np.nan_to_num(acc) * 100)
        # the sweep's marks, as words do not fit a cell on a projector: ○ stalled, ✕ diverged
        text = np.where(ends == "stalled", np.char.add(pct, f"<br>{STALLED_MARK}"), pct)
        text = np.where(ends == "diverged", "", text)
        hover = [
            [
                f"{name}, rate {x[c]}, init scale {y[r]}<br>"
                + (
                    f"diverged at step {int(div_at[r, c]):,}"
                    if ends[r, c] == "diverged"
                    else f"test accuracy {acc[r, c]:.1%}, final loss {loss[r, c]:.3g}"
                    + (" (stalled)" if ends[r, c] == "stalled" else "")
                )
                for c in range(len(x))
            ]
            for r in range(len(y))
        ]
        fig.add_trace(
            go.Heatmap(
                x=x,
                y=y,
                z=[[None if not math.isfinite(v) else float(v) for v in row] for row in acc],
                zmin=0.0,
                zmax=1.0,
                colorscale=ACC_SCALE,
                showscale=k == 1,
                colorbar={
                    "title": {"text": "test accuracy", "side": "right"},
                    "tickformat": ".0%",
                    "len": 0.8,
                    "y": 0.4,
                },
                text=text.tolist(),
                texttemplate="%{text}",
                textfont={"size": style.FONT_SIZE - 2},
                customdata=hover,
                hovertemplate="%{customdata}<extra></extra>",
                xgap=2,
                ygap=2,
                name=f"{name} test accuracy",
            ),
            row=1,
            col=k,
        )
        if (ends == "diverged").any():
            fig.add_trace(
                go.Heatmap(
                    x=x,
                    y=y,
                    z=np.where(ends == "diverged", 1.0, np.nan).tolist(),
                    colorscale=[[0, DIVERGED_FILL], [1, DIVERGED_FILL]],
                    showscale=False,
                    text=np.where(ends == "diverged", DIVERGED_MARK, "").tolist(),
                    texttemplate="%{text}",
                    textfont={"color": "white", "size": style.FONT_SIZE - 2},
                    customdata=hover,
                    hovertemplate="%{customdata}<extra></extra>",
                    xgap=2,
                    ygap=2,
                    name=f"{name} diverged",
                ),
                row=1,
                col=k,
            )
        fig.update_xaxes(title_text="learning rate", type="category", row=1, col=k)
    fig.update_yaxes(title_text="initial weight scale (x std 0.01)", type="category", row=1, col=1)
    style.styled(
        fig,
        f"Stability map: test accuracy after {result.plain.steps:,} steps",
        max(style.HEIGHT, 170 + 64 * len(result.scales)),
        wide=True,
    )
    fig.update_layout(margin={"t": 75})  # no legend under the title: the colorbar says it
    return fig
