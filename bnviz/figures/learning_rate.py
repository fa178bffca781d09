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


def _rated(fig: go.Figure, twins: Twins, title: str) -> go.Figure:
    """Name each run's trace after its own learning rate."""
    rates = {h.label: common.fmt_value(h.config.lr) for h in twins}
    for trace in fig.data:
        if trace.name in rates and trace.showlegend is not False:
            trace.name = f"{trace.name}, rate {rates[trace.name]}"
    fig.update_layout(title_text=title)
    return fig


def _ended(o: Outcomes, i: int) -> str:
    if o.diverged[i]:
        return f"diverged at step {int(o.diverged_at[i]):,}"
    return "stalled" if o.stalled[i] else "learned"


def loss_curves(twins: Twins, smooth: int = 20) -> go.Figure:
    """Training loss of the two-rate runs (log y); a diverged run's curve stops where it did."""
    fig = common.loss_curves(twins, smooth=smooth)
    rates = " vs ".join(f"{h.label} at {common.fmt_value(h.config.lr)}" for h in twins)
    ys = np.concatenate([np.asarray(t.y, dtype=np.float64) for t in fig.data if t.y is not None])
    ys = ys[np.isfinite(ys) & (ys > 0)]
    if ys.size:
        common.set_log_ticks(fig, float(ys.min()), float(ys.max()))
    return _rated(fig, twins, f"Training loss: {rates}")


def accuracy_curves(twins: Twins) -> go.Figure:
    """Test accuracy of the two-rate runs over training."""
    fig = common.accuracy_curves(twins)
    rates = " vs ".join(f"{h.label} at {common.fmt_value(h.config.lr)}" for h in twins)
    return _rated(fig, twins, f"Test accuracy: {rates}")


def sweep_chart(
    result: SweepResult, lr_plain: float | None = None, lr_bn: float | None = None
) -> go.Figure:
    """Final training loss (log y) and final test accuracy vs learning rate (log x), plain vs
    BN. Diverged runs are x marks on the top edge of the loss panel and the bottom edge of the
    accuracy panel (their nets hold non-finite or exploded weights) and break the line;
    stalled runs are open circles. Dotted lines mark the rates the two sliders have chosen."""
    window = max(1, round(result.plain.steps * 0.1))
    fig = make_subplots(
        rows=1,
        cols=2,
        horizontal_spacing=0.09,
        subplot_titles=[
            f"final training loss (mean of the last {window:,} steps)",
            "final test accuracy",
        ],
    )
    finite = np.concatenate([o.final_loss[np.isfinite(o.final_loss)] for _, o in result])
    finite = np.append(finite, result.plain.chance_loss)
    top, bottom = float(finite.max()) * 3.0, float(finite.min()) / 2.0
    top_mark = top / 1.5  # where diverged runs sit in the loss panel, inside the axis
    marks = []  # (legend name, trace kwargs per panel)
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
            marker = {
                "symbol": "x",
                "size": 13,
                "color": color,
                "line": {"width": 1, "color": "white"},
            }
            at = (np.full(len(o.lr), top_mark), np.zeros(len(o.lr)))
            marks.append((f"{name} diverged", diverged, marker, at, ends))
    for label, idx, marker, ys, ends in marks:
        lrs = result.lrs
        for col in (1, 2):
            fig.add_trace(
                go.Scatter(
                    x=lrs[idx].tolist(),
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
    chance = result.plain.chance_loss
    fig.add_trace(  # a trace, not a labelled line: its label goes to the legend, off the data
        go.Scatter(
            x=[float(result.lrs[0]), float(result.lrs[-1])],
            y=[chance, chance],
            mode="lines",
            line={"color": style.MUTED, "dash": "dash", "width": 1},
            name="chance level (a uniform guess)",
            hovertemplate=f"chance level: loss {chance:.3g}<extra></extra>",
        ),
        row=1,
        col=1,
    )
    fig.update_xaxes(type="log", title_text="learning rate (log scale)", dtick=1)
    fig.update_yaxes(
        type="log",
        range=[math.log10(bottom), math.log10(top)],
        row=1,
        col=1,
        title_text="loss (log scale)",
    )
    common.set_log_ticks(fig, bottom, top, row=1, col=1)
    fig.update_yaxes(
        range=[-0.04, 1.04], tickformat=".0%", row=1, col=2, title_text="test accuracy"
    )
    return style.styled(
        fig,
        f"Learning-rate sweep: {len(result.lrs)} rates x plain/BN, "
        f"{result.plain.steps:,} steps each",
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
        text = np.where(ends == "stalled", np.char.add(pct, "<br>stalled"), pct)
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
                    "title": {"text": "test<br>accuracy"},
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
                    text=np.where(ends == "diverged", "diverged", "").tolist(),
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
        f"Stability map: test accuracy after {result.plain.steps:,} steps, "
        "learning rate x initial weight scale",
        max(style.HEIGHT, 170 + 64 * len(result.scales)),
    )
    fig.update_layout(margin={"t": 75})  # no legend under the title: the colorbar says it
    return fig
