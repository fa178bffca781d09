"""Figures for the debate lesson: noisy BN's distributions, ICS as gradient change, and the
loss landscape along the gradient, for arms trained side by side (``bnviz.experiments.debate``).

Every builder takes the arms (``Arms``, any sequence of Histories) and returns a ``go.Figure``;
each arm keeps its color and dash on every chart (plain orange dashed, BN blue solid, the noisy
arms dotted). A run that diverged is drawn up to its last record and marked.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from bnviz.experiments import debate
from bnviz.figures import animate, common, style
from bnviz.record import UNIT_LEVELS
from bnviz.train import History

Array = np.ndarray
Runs = Sequence[History]

ICS_ARMS = ("plain", "BN", "noisy BN")  # the arms the gradient-change chart compares
LANDSCAPE_VIEWS = {"pair": ("plain", "BN"), "all": debate.ARMS}


def pick(runs: Runs, labels: Sequence[str]) -> list[History]:
    """The runs with these labels, in the order given (labels a run lacks are skipped)."""
    by_label = {h.label: h for h in runs}
    return [by_label[k] for k in labels if k in by_label]


def _f64(a: Array) -> Array:
    return np.asarray(a, dtype=np.float64)


# --------------------------------------------------------------------------- noisy BN


def loss_curves(runs: Runs) -> go.Figure:
    return common.loss_curves(runs, title="Training loss, every arm")


def accuracy_curves(runs: Runs) -> go.Figure:
    return common.accuracy_curves(runs, title="Test accuracy, every arm")


def histograms(runs: Runs, layer: int) -> go.Figure:
    """The drift lesson's animated histograms of a layer's activation input, one panel per
    arm, with short axis titles (the layer is in the title) so four panels fit side by side."""
    fig = animate.histograms_over_training(runs, layer, "act_in")
    fig.update_xaxes(title_text=style.label("act_in", common.activation_of(runs)))
    return fig


def typical_unit(h: History, layer: int) -> int:
    """The unit whose median activation input moves the median amount over the run."""
    med = _f64(common.site_of(h, layer, "act_in").unit_pct[:, :, 1])
    moves = np.abs(med[-1] - med[0])
    order = np.argsort(np.where(np.isfinite(moves), moves, np.inf), kind="stable")
    return int(order[(len(order) - 1) // 2])


def unit_percentiles(runs: Runs, layer: int, unit: int | None = None) -> go.Figure:
    """One unit's 15th, 50th and 85th percentiles of its activation input over training (on
    the probe batch), a panel per arm on one y scale: the view of Ioffe & Szegedy's Figure
    1(b,c), in which Santurkar et al. showed noisy BN's distributions moving. ``unit`` None
    takes the first arm's typical unit, the same unit in every arm."""
    runs = list(runs)
    act = common.activation_of(runs)
    n_units = common.layer_of(runs[0], layer).units
    if unit is None or unit < 0:
        unit = typical_unit(runs[0], layer)
    if not 0 <= unit < n_units:
        raise ValueError(f"unit must be in 0..{n_units - 1}; got {unit!r}")
    lo, _, hi = (round(p * 100) for p in UNIT_LEVELS)
    n = len(runs)
    fig = make_subplots(
        rows=1,
        cols=n,
        shared_yaxes=True,
        horizontal_spacing=0.03,
        subplot_titles=[f"{h.label} net" for h in runs],
    )
    for k, h in enumerate(runs):
        p = _f64(common.site_of(h, layer, "act_in").unit_pct[:, unit, :])
        color = style.run_color(h.label)
        x = h.record_steps
        where = {"row": 1, "col": k + 1}
        fig.add_trace(
            go.Scatter(
                x=x, y=common.rounded(p[:, 2], 4), mode="lines",
                line={"color": color, "width": 0.8}, showlegend=False, legendgroup=h.label,
                hovertemplate=f"step %{{x}}<br>{hi}th %{{y:.3f}}<extra>{h.label}</extra>",
            ),
            **where,
        )  # fmt: skip
        fig.add_trace(
            go.Scatter(
                x=x, y=common.rounded(p[:, 0], 4), mode="lines", fill="tonexty",
                fillcolor=style.rgba(color, 0.25), line={"color": color, "width": 0.8},
                showlegend=False, legendgroup=h.label,
                hovertemplate=f"step %{{x}}<br>{lo}th %{{y:.3f}}<extra>{h.label}</extra>",
            ),
            **where,
        )  # fmt: skip
        fig.add_trace(
            go.Scatter(
                x=x, y=common.rounded(p[:, 1], 4), mode="lines", line=common.line(h.label),
                name=h.label, legendgroup=h.label,
                hovertemplate=f"step %{{x}}<br>median %{{y:.3f}}<extra>{h.label}</extra>",
            ),
            **where,
        )  # fmt: skip
        common.mark_divergence(fig, h, x, p[:, 1], annotate=False, **where)
        half = float(f"{max(1, int(x[-1])) / 2:.1g}")  # no tick at the end: it would run
        fig.update_xaxes(title_text="training step", tickvals=[0, half], **where)  # into the next
    fig.update_yaxes(title_text=f"unit {unit}'s {style.label('act_in', act)}", row=1, col=1)
    return style.styled(
        fig,
        f"One unit's {style.label('act_in', act)} (layer {layer}, unit {unit}) over training: "
        f"{lo}th, 50th and {hi}th percentiles",
        wide=True,
    )


def drift_by_arm(runs: Runs, layer: int) -> go.Figure:
    """Two drift numbers of a layer's activation input over training, every arm: per unit
    (the mean move of each unit's percentiles) and pooled (the drift lesson's W1 of the whole
    layer), both to the previous record."""
    runs = list(runs)
    act = common.activation_of(runs)
    every = runs[0].config.record_every
    fig = make_subplots(
        rows=1,
        cols=2,
        horizontal_spacing=0.1,
        subplot_titles=["per unit (its 15/50/85th percentiles)", "whole layer (W1)"],
    )
    for c, measure in enumerate((debate.unit_drift, debate.layer_drift), start=1):
        for h in runs:
            y = measure(h, layer)
            y = np.where(np.arange(len(y)) == 0, np.nan, y)  # nothing before the first record
            fig.add_trace(
                go.Scatter(
                    x=h.record_steps, y=common.rounded(y, 4), mode="lines",
                    line=common.line(h.label, 2), name=h.label, legendgroup=h.label,
                    showlegend=c == 1,
                    hovertemplate=f"step %{{x}}: %{{y:.3g}}<extra>{h.label}</extra>",
                ),
                row=1,
                col=c,
            )  # fmt: skip
            common.mark_divergence(fig, h, h.record_steps, y, row=1, col=c, annotate=False)
        fig.update_xaxes(title_text="training step", row=1, col=c)
        fig.update_yaxes(rangemode="tozero", row=1, col=c)
    fig.update_yaxes(title_text=f"move in {every} steps", row=1, col=1)
    return style.styled(
        fig, f"How far layer {layer}'s {style.label('act_in', act)} moves between records", wide=True
    )


# --------------------------------------------------------------------------- ICS


def ics_diagram(layer: int = 2) -> go.Figure:
    """Definition 2.1 drawn: G and G' are layer i's weight gradient on the same batch; G' after
    the layers below i have taken their step-t update."""
    i = max(2, int(layer))
    fig = go.Figure()
    boxes = [("layers 1 … i−1", 0.0), (f"layer i = {i}", 1.3), ("layers above i, loss", 2.6)]
    rows = [
        ("G", 1.0, ("θ<sub>t</sub>", "θ<sub>t</sub>", "θ<sub>t</sub>")),
        ("G′", 0.0, ("θ<sub>t+1</sub> (stepped)", "θ<sub>t</sub>", "θ<sub>t</sub>")),
    ]
    for name, y, states in rows:
        for (text, x), state in zip(boxes, states, strict=True):
            moved = "t+1" in state
            fig.add_shape(
                type="rect",
                x0=x,
                x1=x + 1.1,
                y0=y,
                y1=y + 0.7,
                line={"color": style.ACCENT if moved else style.MUTED, "width": 2},
                fillcolor=style.rgba(style.ACCENT if moved else style.BN, 0.10),
            )
            fig.add_annotation(
                x=x + 0.55, y=y + 0.35, text=f"{text}<br>{state}", showarrow=False,
                font={"size": style.FONT_SIZE - 1},
            )  # fmt: skip
        for x in (1.1, 2.4):
            fig.add_annotation(
                x=x + 0.2, y=y + 0.35, ax=x, ay=y + 0.35, xref="x", yref="y", axref="x",
                ayref="y", showarrow=True, arrowhead=2, arrowcolor=style.MUTED, text="",
            )  # fmt: skip
        fig.add_annotation(
            x=-0.15, y=y + 0.35, text=f"<b>{name}</b> = ∂L/∂W<sub>i</sub>", showarrow=False,
            xanchor="right", font={"size": style.FONT_SIZE + 1},
        )  # fmt: skip
    fig.add_annotation(
        x=1.85, y=-0.25, showarrow=False, font={"color": style.MUTED},
        text="same batch t, same noise draws; only the layers below i have moved",
    )  # fmt: skip
    fig.update_xaxes(visible=False, range=[-1.5, 3.8])
    fig.update_yaxes(visible=False, range=[-0.5, 1.8])
    fig = style.styled(fig, "G and G′ in Definition 2.1", 300)
    fig.update_layout(margin={"t": 50, "b": 10, "l": 10, "r": 10}, showlegend=False)
    return fig


def ics_over_training(runs: Runs, labels: Sequence[str] = ICS_ARMS) -> go.Figure:
    """||G - G'|| (log scale) and cos(G, G') per hidden layer over training (layers 2 and up:
    layer 1 has nothing below it)."""
    runs = pick(runs, labels) or list(runs)
    n = max(len(h.layers) for h in runs)
    every = runs[0].config.record_every
    title = f"Gradient change per layer, measured every {every} steps: {common.versus(runs)}"
    if n < 2:
        fig = go.Figure()
        fig.add_annotation(
            text="One hidden layer: nothing below it moves, so G′ = G.", showarrow=False,
            xref="paper", yref="paper", x=0.5, y=0.5, font={"size": style.FONT_SIZE + 2},
        )  # fmt: skip
        fig.update_xaxes(visible=False)
        fig.update_yaxes(visible=False)
        return style.styled(fig, title, 240, wide=True)
    cols = n - 1
    fig = make_subplots(
        rows=2,
        cols=cols,
        shared_xaxes="all",
        shared_yaxes="rows",
        horizontal_spacing=0.05 if cols > 1 else 0.1,
        vertical_spacing=0.12,
        subplot_titles=[f"hidden layer {i}" for i in range(2, n + 1)] + [""] * cols,
    )
    for r, (field, name) in enumerate((("grad_change", "||G − G′||"), ("grad_cos", "cos(G, G′)"))):
        for i in range(2, n + 1):
            where = {"row": r + 1, "col": i - 1}
            for h in runs:
                if i > len(h.layers):
                    continue
                y = _f64(getattr(h.probes["ics"], field)[:, i - 1])
                if field == "grad_change":
                    y = np.where(y > 0, y, np.nan)  # a log axis: no zeros
                fig.add_trace(
                    go.Scatter(
                        x=h.record_steps, y=common.rounded(y, 5), mode="lines",
                        line=common.line(h.label, 2), name=h.label, legendgroup=h.label,
                        showlegend=r == 0 and i == 2,
                        hovertemplate=f"layer {i}, step %{{x}}<br>{name} %{{y:.4g}}"
                        f"<extra>{h.label}</extra>",
                    ),
                    **where,
                )  # fmt: skip
                common.mark_divergence(fig, h, h.record_steps, y, annotate=False, **where)
            if r == 0:
                fig.update_yaxes(type="log", exponentformat="power", **where)
            else:
                fig.update_xaxes(title_text="training step", **where)
        fig.update_yaxes(title_text=name, row=r + 1, col=1)
    last = max(int(h.record_steps[-1]) for h in runs)
    fig.update_xaxes(tickvals=[0, float(f"{max(1, last) / 2:.1g}")])  # none at the end: it would
    return style.styled(fig, title, 620, wide=True)  # run into the next panel's 0


# --------------------------------------------------------------------------- landscape


def _band(
    fig: go.Figure, h: History, lo: Array, hi: Array, col: int, what: str, legend: bool
) -> None:
    """A run's min-to-max band over the probed step sizes, at every record."""
    color = style.run_color(h.label)
    x = h.record_steps
    keep = np.isfinite(lo) & np.isfinite(hi)
    x, lo, hi = x[keep], lo[keep], hi[keep]
    fig.add_trace(
        go.Scatter(
            x=x, y=common.rounded(hi, 5), mode="lines", line={"color": color, "width": 1},
            legendgroup=h.label, showlegend=False,
            hovertemplate=f"step %{{x}}<br>{what} max %{{y:.4g}}<extra>{h.label}</extra>",
        ),
        row=1,
        col=col,
    )  # fmt: skip
    fig.add_trace(
        go.Scatter(
            x=x, y=common.rounded(lo, 5), mode="lines", fill="tonexty",
            fillcolor=style.rgba(color, 0.3),
            line={"color": color, "width": 1, "dash": style.run_dash(h.label)},
            name=h.label, legendgroup=h.label, showlegend=legend,
            hovertemplate=f"step %{{x}}<br>{what} min %{{y:.4g}}<extra>{h.label}</extra>",
        ),
        row=1,
        col=col,
    )  # fmt: skip


def landscape_over_training(runs: Runs, labels: Sequence[str] = ("plain", "BN")) -> go.Figure:
    """Santurkar et al.'s Figure 4 on these arms: at every record step, (a) the range of the
    loss along theta - eta g over the probed step sizes (a band), (b) the range of the gradient
    change ||grad(theta - eta g) - g|| (a band), (c) the effective beta-smoothness."""
    runs = pick(runs, labels) or list(runs)
    land = runs[0].probes["landscape"]
    lr = runs[0].config.lr
    lo, hi = float(land.etas[0]), float(land.etas[-1])
    fig = make_subplots(
        rows=1,
        cols=3,
        horizontal_spacing=0.13,
        subplot_titles=[
            "(a) loss along the gradient",
            "(b) gradient change along it",
            "(c) effective β-smoothness",
        ],
    )
    for h in runs:
        rec = h.probes["landscape"]
        loss = _f64(rec.loss)
        change = _f64(rec.grad_change)
        top = np.fmax.reduce(loss, axis=1)  # NaN-skipping, quiet where a row is all NaN
        _band(fig, h, np.fmin.reduce(loss, axis=1), top, 1, "loss", True)
        _band(
            fig,
            h,
            np.fmin.reduce(change, axis=1),
            np.fmax.reduce(change, axis=1),
            2,
            "change",
            False,
        )
        beta = _f64(rec.beta_smoothness)
        fig.add_trace(
            go.Scatter(
                x=h.record_steps, y=common.rounded(beta, 5), mode="lines",
                line=common.line(h.label, 2), name=h.label, legendgroup=h.label,
                showlegend=False,
                hovertemplate=f"step %{{x}}<br>β %{{y:.4g}}<extra>{h.label}</extra>",
            ),
            row=1,
            col=3,
        )  # fmt: skip
        for c, y in ((1, top), (3, beta)):
            common.mark_divergence(fig, h, h.record_steps, y, row=1, col=c, annotate=False)
    titles = ("loss on the step's batch", "||∇L(θ − ηg) − g||", "max ||Δ∇L|| / ||ηg||")
    fields = ("loss", "grad_change", "beta_smoothness")
    for c, (title, field) in enumerate(zip(titles, fields, strict=True), start=1):
        fig.update_xaxes(title_text="training step", nticks=5, row=1, col=c)
        fig.update_yaxes(title_text=title, type="log", row=1, col=c)
        values = np.concatenate([_f64(getattr(h.probes["landscape"], field)).ravel() for h in runs])
        values = values[np.isfinite(values) & (values > 0)]
        if values.size:
            common.set_log_ticks(fig, float(values.min()), float(values.max()), row=1, col=c)
    return style.styled(
        fig,
        f"The landscape along the gradient, η from {lo:.3g} to {hi:.3g} x the rate "
        f"({lo * lr:.3g} to {hi * lr:.3g}): {common.versus(runs)}",
        470,
        wide=True,
    )


def step_back(runs: Runs, step: int) -> go.Figure:
    """At one record step: the loss along theta - eta g on that step's batch for every arm
    (eta = 0 is the step's own training loss), and how much the gradient there differs from
    g. ``step`` is the update whose gradient is probed (a record step, counting from 1)."""
    runs = list(runs)
    fig = make_subplots(
        rows=1,
        cols=2,
        horizontal_spacing=0.1,
        subplot_titles=["loss at θ − ηg", "||∇L(θ − ηg) − g||"],
    )
    lr = runs[0].config.lr
    etas = _f64(runs[0].probes["landscape"].etas)
    shown = []
    for h in runs:
        hits = np.flatnonzero(h.record_steps == step)
        if not len(hits) or hits[0] == 0:
            continue
        r = int(hits[0])
        rec = h.probes["landscape"]
        loss0 = float(h.loss[step - 1]) if step - 1 < len(h.loss) else np.nan
        x = np.concatenate([[0.0], etas])
        y = np.concatenate([[loss0], _f64(rec.loss[r])])
        g = np.concatenate([[0.0], _f64(rec.grad_change[r])])
        for c, values, what in ((1, y, "loss"), (2, g, "gradient change")):
            fig.add_trace(
                go.Scatter(
                    x=x, y=common.rounded(values, 6), mode="lines+markers",
                    line=common.line(h.label, 2), marker={"size": 6}, name=h.label,
                    legendgroup=h.label, showlegend=c == 1,
                    hovertemplate=f"η = %{{x:.3g}} x the rate<br>{what} %{{y:.5g}}"
                    f"<extra>{h.label}</extra>",
                ),
                row=1,
                col=c,
            )  # fmt: skip
        shown.append(h.label)
    for c in (1, 2):
        fig.add_vline(
            x=1.0, line={"color": style.MUTED, "dash": "dot", "width": 1.5}, row=1, col=c,
            annotation_text="the step taken (η = 1)", annotation_position="top right",
            annotation_font_color=style.MUTED,
        )  # fmt: skip
        fig.update_xaxes(title_text=f"η, in multiples of the rate ({lr:g})", row=1, col=c)
    fig.update_yaxes(title_text="training loss on the step's batch", row=1, col=1)
    fig.update_yaxes(title_text="gradient change", rangemode="tozero", row=1, col=2)
    missing = [h.label for h in runs if h.label not in shown]
    if missing:
        fig.add_annotation(
            text=f"no probe at step {step:,} for: {', '.join(missing)} (diverged before)",
            xref="paper", yref="paper", x=0.0, y=-0.28, showarrow=False,
            font={"color": style.ACCENT}, xanchor="left",
        )  # fmt: skip
    return style.styled(
        fig, f"A step back: the loss along the gradient of update {step:,}, every arm", 440, wide=True
    )
