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


SPREAD_RATIO = 20.0  # spreads further apart than this get their own x axes
AXES = ("fixed", "each step")  # the animated histograms' x axes: over all steps, or per step


def comparable_spreads(sketches: Sequence[Array]) -> bool:
    """Whether runs' values spread over ranges alike enough for one x axis: on one axis a
    run 20 times wider squashes the other into a bar or two (e.g. a plain sigmoid net at a
    high rate, whose inputs blow up without diverging). Compares each run's widest 1-99%
    range over its records."""
    widths = []
    for q in sketches:
        lo, hi = q[:, 2].astype(np.float64), q[:, -3].astype(np.float64)
        finite = np.isfinite(lo) & np.isfinite(hi)
        widths.append(float(np.max(hi[finite] - lo[finite], initial=0.0)))
    widths = [w for w in widths if w > 0]
    return not widths or max(widths) <= SPREAD_RATIO * min(widths)


def histograms_over_training(
    runs: Sequence[History],
    layer: int,
    site: str = "act_in",
    *,
    n_bins: int = 60,
    max_frames: int = MAX_FRAMES,
    shared_x: bool | None = None,
    axes: str = "fixed",
) -> go.Figure:
    """One hidden layer's distribution over training, the runs side by side (plain and BN, or
    any arms), animated with one step slider and a play button.

    ``axes="fixed"``: the axes are fixed over all frames (computed from every record of the
    runs), so what moves on screen is the distribution; a faint outline of the step-0
    histogram stays in every frame. ``axes="each step"``: each frame fits its axes to that
    step, so a distribution that grew forty-fold stays readable at step 0 (the range printed
    in the panel says how it grew). With ``shared_x`` all panels share the x axis, the honest
    comparison of location and spread; without it each panel fits its own run. The default
    (None) shares unless a run diverged or the runs' spreads differ twentyfold
    (``comparable_spreads``). Each panel has its own y axis (a narrow distribution's tall
    peak would flatten a wide one). A diverged run's panel goes empty after its last record
    and says so.
    """
    if axes not in AXES:
        raise ValueError(f"axes must be one of {', '.join(AXES)}; got {axes!r}")
    runs = list(runs)
    act = common.activation_of(runs)
    recs, stand_in = common.view_sites(runs, layer, site)
    present = [(h, r) for h, r in zip(runs, recs, strict=True) if r is not None]
    all_steps = np.unique(np.concatenate([h.record_steps for h, _ in present]))
    steps = all_steps[even_indices(len(all_steps), max_frames)]
    if shared_x is None:
        shared_x = all(h.diverged_at is None for h in runs) and comparable_spreads(
            [r.quantiles for _, r in present]
        )
    n = len(runs)
    follow = axes == "each step"

    def record_at(k: int, step: int) -> int | None:
        """Run k's record shown at a frame's step (None past a divergence or with no site)."""
        h, r = runs[k], recs[k]
        if r is None or (h.diverged_at is not None and step > h.record_steps[-1]):
            return None
        return int(np.searchsorted(h.record_steps, step, side="right")) - 1

    def edges_for(k: int, rows: Sequence[int | None] | None) -> Array:
        """Bin edges of panel k: over every record (fixed), or over the frame's records."""

        def sketch(j: int, r) -> Array:
            return r.quantiles if rows is None else r.quantiles[[rows[j]]]

        pool = [
            sketch(j, r)
            for j, (_, r) in enumerate(zip(runs, recs, strict=True))
            if r is not None and (rows is None or rows[j] is not None) and (shared_x or j == k)
        ]
        if not pool:  # nothing to show in this panel: borrow any recorded range
            pool = [r.quantiles for _, r in present]
        return shared_edges(pool, n_bins=n_bins)

    fixed_edges = [edges_for(k, None) for k in range(n)]
    frames_data = []  # per frame: per panel (edges, density, note)
    for step in steps:
        rows = [record_at(k, int(step)) for k in range(n)]
        panels = []
        for k in range(n):
            e = edges_for(k, rows) if follow else fixed_edges[k]
            h, r, j = runs[k], recs[k], rows[k]
            if r is None:
                panels.append((e, np.zeros(n_bins), f"no {style.label(site, act)} in the "
                               f"{h.label} net"))  # fmt: skip
                continue
            if j is None:
                panels.append((e, np.zeros(n_bins), common.diverged_note(h)))
                continue
            q = r.quantiles[[j]]
            d = density_from_quantiles(q, LEVELS, e)[0]
            notes = [f"mean {common.fmt_stat(r.mean[j])}, std {common.fmt_stat(r.std[j])}"]
            out = float(outside_fraction(q, LEVELS, e)[0].sum())
            if out >= 0.01:  # the axis leaves up to 0.5% a side out by design; say so past that
                notes.append(f"{out:.1%} outside the axis")
            if not np.all(np.isfinite(q)):
                notes.append("some values are not finite")
            panels.append((e, d, "<br>".join(notes)))
        frames_data.append(panels)
    if follow:
        ymax = [[robust_ymax(p[1][None, :]) for p in panels] for panels in frames_data]
    else:
        tops = [robust_ymax(np.stack([f[k][1] for f in frames_data])) for k in range(n)]
        ymax = [tops for _ in frames_data]

    titles = []
    for h, r, note in zip(runs, recs, stand_in, strict=True):
        t = f"{h.label} net"
        if h.diverged_at is not None:
            t += f" (diverged at step {h.diverged_at})"
        elif r is None:
            t += " (not recorded)"
        elif note:
            t += f": {note}"
        titles.append(t)
    if not shared_x and len(present) > 1:
        titles = [f"{t} (own x axis)" for t in titles]
    fig = make_subplots(rows=1, cols=n, subplot_titles=titles, horizontal_spacing=0.16 / n)

    def bar(k: int, e: Array, d: Array, h: History | None = None) -> go.Bar:
        centers, widths = (e[:-1] + e[1:]) / 2, np.diff(e)
        style_kw = {}
        if h is not None:
            style_kw = dict(
                marker={"color": style.run_color(h.label), "line": {"width": 0}},
                opacity=0.8,
                name=h.label,
                legendgroup=h.label,
                hovertemplate=(
                    f"{h.label}: values in [%{{customdata[0]:.4g}}, %{{customdata[1]:.4g}})"
                    "<br>density %{y:.3g}<extra></extra>"
                ),
            )
        return go.Bar(
            x=common.compact(centers, scale=widths[0]),
            y=common.compact(d),
            width=common.compact(widths, scale=widths[0]),
            customdata=np.stack(
                [common.compact(e[:-1], scale=widths[0]), common.compact(e[1:], scale=widths[0])],
                axis=1,
            ),
            **style_kw,
        )

    first = frames_data[0]
    for k, h in enumerate(runs):
        fig.add_trace(bar(k, first[k][0], first[k][1], h), row=1, col=k + 1)
    for k in range(n):  # the step-0 outline (fixed axes only: it marks where things began)
        e, d0 = first[k][0], first[k][1]
        fig.add_trace(
            go.Scatter(
                x=common.compact(np.concatenate([[e[0]], e]), scale=e[1] - e[0]),
                y=common.compact(np.concatenate([[0.0], d0, [0.0]])),
                mode="lines",
                line={"shape": "hv", "color": style.MUTED, "width": 1.2, "dash": "dot"},
                name="step 0",
                legendgroup="step 0",
                showlegend=k == 0 and not follow,
                visible=not follow,
                hoverinfo="skip",
            ),
            row=1,
            col=k + 1,
        )
    for k in range(n):
        fig.add_trace(
            go.Scatter(
                x=[float(first[k][0][-1])],
                y=[ymax[0][k]],
                mode="text",
                text=[first[k][2]],
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
    for f, (step, panels) in enumerate(zip(steps, frames_data, strict=True)):
        data = [
            bar(k, e, d) if follow else go.Bar(y=common.compact(d))
            for k, (e, d, _) in enumerate(panels)
        ]
        data += [
            go.Scatter(x=[float(e[-1])], y=[ymax[f][k]], text=[note]) if follow
            else go.Scatter(text=[note])
            for k, (e, _, note) in enumerate(panels)
        ]  # fmt: skip
        layout = {}
        if follow:
            for k, (e, _, _) in enumerate(panels):
                suffix = "" if k == 0 else str(k + 1)
                layout[f"xaxis{suffix}"] = {"range": [float(e[0]), float(e[-1])]}
                layout[f"yaxis{suffix}"] = {"range": [0.0, ymax[f][k]]}
        frames.append(
            go.Frame(name=str(int(step)), traces=animated, data=data, layout=layout or None)
        )
    fig.frames = frames
    add_player(fig, [f.name for f in frames])
    fig.update_layout(bargap=0, margin={"b": 150})
    where = common.where_label(site, act, layer)
    for k in range(n):
        e = first[k][0]
        fig.update_xaxes(
            title_text=where, range=[float(e[0]), float(e[-1])], autorange=False, row=1, col=k + 1
        )
        fig.update_yaxes(range=[0.0, ymax[0][k]], autorange=False, row=1, col=k + 1)
    fig.update_yaxes(title_text="density", row=1, col=1)
    return style.styled(
        fig,
        f"Layer {layer} {style.label(site, act)} over training: {common.versus(runs)}",
        style.HEIGHT_ANIMATED,
        wide=True,
    )
