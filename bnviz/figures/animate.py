"""Animated figures: frames over training steps with one step slider and a play button, and
the animated histograms of a hidden layer that the home page and the drift lesson show.

Plotly animates by swapping the data of chosen traces frame by frame; the axes stay fixed over
all frames, so what moves on screen is the distribution, not the axis.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from bnviz.figures import common, style
from bnviz.histograms import (
    density_from_quantiles,
    even_indices,
    outside_fraction,
    robust_ymax,
    shared_edges,
)
from bnviz.record import LEVELS
from bnviz.train import History

Array = np.ndarray
MAX_FRAMES = 120  # animation frames kept; more make the page heavy without showing more

JUMP = {
    "mode": "immediate",
    "frame": {"duration": 0, "redraw": True},
    "transition": {"duration": 0},
}
PLAY = {
    "frame": {"duration": 200, "redraw": True},
    "transition": {"duration": 120, "easing": "linear"},
    "fromcurrent": True,
    "mode": "immediate",
}


def add_player(fig: go.Figure, names: Sequence[str], prefix: str = "step ") -> None:
    """A slider over the frames ``names`` (labelled with them) and Play/Pause buttons, under
    the panels."""
    fig.update_layout(
        sliders=[
            {
                "active": 0,
                "currentvalue": {"prefix": prefix, "font": {"size": style.FONT_SIZE}},
                "pad": {"t": 55, "b": 0},
                "x": 0.1,
                "len": 0.9,
                "y": 0,
                "yanchor": "top",
                "steps": [
                    {"label": name, "method": "animate", "args": [[name], JUMP]} for name in names
                ],
            }
        ],
        updatemenus=[
            {
                "type": "buttons",
                "direction": "left",
                "showactive": False,
                "x": 0.1,
                "xanchor": "right",
                "y": 0,
                "yanchor": "top",
                "pad": {"t": 70, "r": 10},
                "buttons": [
                    {"label": "▶ Play", "method": "animate", "args": [None, PLAY]},
                    {"label": "❚❚ Pause", "method": "animate", "args": [[None], JUMP]},
                ],
            }
        ],
    )


def histograms_over_training(
    runs: Sequence[History],
    layer: int,
    site: str = "act_in",
    *,
    n_bins: int = 60,
    max_frames: int = MAX_FRAMES,
    shared_x: bool | None = None,
) -> go.Figure:
    """One hidden layer's distribution over training, the runs side by side (plain and BN, or
    any arms), animated with one step slider and a play button.

    The axes are fixed over all frames (computed from every record of the runs), so what moves
    on screen is the distribution. With ``shared_x`` all panels share the x axis, the honest
    comparison of location and spread; without it each panel fits its own run. The default
    (None) shares unless a run diverged, whose blown-up values would squash the other panel into
    one bar. Each panel has its own y axis (a narrow distribution's tall peak would flatten a
    wide one). A faint outline of the step-0 histogram stays in every frame; a diverged run's
    panel goes empty after its last record and says so.
    """
    runs = list(runs)
    act = common.activation_of(runs)
    recs = common.sites_of(runs, layer, site)
    present = [(h, r) for h, r in zip(runs, recs, strict=True) if r is not None]
    all_steps = np.unique(np.concatenate([h.record_steps for h, _ in present]))
    steps = all_steps[even_indices(len(all_steps), max_frames)]
    if shared_x is None:
        shared_x = all(h.diverged_at is None for h in runs)

    if shared_x:
        e = shared_edges([r.quantiles for _, r in present], n_bins=n_bins)
        edges = [e] * len(runs)
    else:
        edges = [
            shared_edges([r.quantiles], n_bins=n_bins) if r is not None else None for r in recs
        ]
        edges = [e if e is not None else next(x for x in edges if x is not None) for e in edges]
    dens = [
        density_from_quantiles(r.quantiles, LEVELS, e) if r is not None else None
        for r, e in zip(recs, edges, strict=True)
    ]
    outside = [
        outside_fraction(r.quantiles, LEVELS, e) if r is not None else None
        for r, e in zip(recs, edges, strict=True)
    ]
    ymax = [robust_ymax(d) if d is not None else 1.0 for d in dens]

    def panel(k: int, step: int) -> tuple[Array, str]:
        """Run k's density at a frame's step and the note printed in its panel."""
        h, r, n_bins_k = runs[k], recs[k], len(edges[k]) - 1
        if r is None:
            return np.zeros(n_bins_k), f"no {style.label(site, act)} in the {h.label} net"
        if h.diverged_at is not None and step > h.record_steps[-1]:
            return np.zeros(n_bins_k), common.diverged_note(h)
        j = int(np.searchsorted(h.record_steps, step, side="right")) - 1
        notes = [f"mean {common.fmt_stat(r.mean[j])}, std {common.fmt_stat(r.std[j])}"]
        out = float(outside[k][j].sum())
        if out >= 0.01:  # the axis leaves up to 0.5% a side out by design; say so past that
            notes.append(f"{out:.1%} outside the axis")
        if not np.all(np.isfinite(r.quantiles[j])):
            notes.append("some values are not finite")
        return dens[k][j], "<br>".join(notes)

    titles = []
    for h, r in zip(runs, recs, strict=True):
        t = f"{h.label} net"
        if h.diverged_at is not None:
            t += f" (diverged at step {h.diverged_at})"
        elif r is None:
            t += " (not recorded)"
        titles.append(t)
    n = len(runs)
    fig = make_subplots(rows=1, cols=n, subplot_titles=titles, horizontal_spacing=0.16 / n)

    first = [panel(k, int(steps[0])) for k in range(n)]
    for k, h in enumerate(runs):
        e = edges[k]
        centers, widths = (e[:-1] + e[1:]) / 2, np.diff(e)
        fig.add_trace(
            go.Bar(
                x=common.compact(centers, scale=widths[0]),
                y=common.compact(first[k][0]),
                width=common.compact(widths, scale=widths[0]),
                customdata=np.stack(
                    [
                        common.compact(e[:-1], scale=widths[0]),
                        common.compact(e[1:], scale=widths[0]),
                    ],
                    axis=1,
                ),
                marker={"color": style.run_color(h.label), "line": {"width": 0}},
                opacity=0.8,
                name=h.label,
                legendgroup=h.label,
                hovertemplate=(
                    f"{h.label}: values in [%{{customdata[0]:.4g}}, %{{customdata[1]:.4g}})"
                    "<br>density %{y:.3g}<extra></extra>"
                ),
            ),
            row=1,
            col=k + 1,
        )
    for k in range(n):
        e = edges[k]
        d0 = dens[k][0] if dens[k] is not None else np.zeros(len(e) - 1)
        fig.add_trace(
            go.Scatter(
                x=common.compact(np.concatenate([[e[0]], e]), scale=e[1] - e[0]),
                y=common.compact(np.concatenate([[0.0], d0, [0.0]])),
                mode="lines",
                line={"shape": "hv", "color": style.MUTED, "width": 1.2, "dash": "dot"},
                name="step 0",
                legendgroup="step 0",
                showlegend=k == 0,
                hoverinfo="skip",
            ),
            row=1,
            col=k + 1,
        )
    for k in range(n):
        fig.add_trace(
            go.Scatter(
                x=[float(edges[k][-1])],
                y=[ymax[k]],
                mode="text",
                text=[first[k][1]],
                textposition="bottom left",
                textfont={"color": style.MUTED, "size": style.FONT_SIZE - 1},
                showlegend=False,
                hoverinfo="skip",
            ),
            row=1,
            col=k + 1,
        )

    animated = [*range(n), *range(2 * n, 3 * n)]  # the bar traces and the note traces
    frames = []
    for step in steps:
        panels = [panel(k, int(step)) for k in range(n)]
        frames.append(
            go.Frame(
                name=str(int(step)),
                traces=animated,
                data=[go.Bar(y=common.compact(d)) for d, _ in panels]
                + [go.Scatter(text=[note]) for _, note in panels],
            )
        )
    fig.frames = frames
    add_player(fig, [f.name for f in frames])
    fig.update_layout(
        bargap=0,
        margin={"b": 150},
    )
    where = common.where_label(site, act, layer)
    for k in range(n):
        e = edges[k]
        fig.update_xaxes(
            title_text=where, range=[float(e[0]), float(e[-1])], autorange=False, row=1, col=k + 1
        )
        fig.update_yaxes(range=[0.0, ymax[k]], autorange=False, row=1, col=k + 1)
    fig.update_yaxes(title_text="density", row=1, col=1)
    return style.styled(
        fig,
        f"Layer {layer} {style.label(site, act)} over training: {common.versus(runs)} "
        "(same start, same batches)",
        style.HEIGHT_ANIMATED,
    )
