"""Figures for the distribution-drift lesson, drawn from twin runs (``bnviz.train.Twins``).

Every builder takes the recorded runs and returns a ``go.Figure``; plain is orange and dashed
where lines are drawn, BN blue and solid. A run that diverged is drawn up to its last record and
marked "diverged at step k", since divergence is a result to show, not an error.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from bnviz import functional as F
from bnviz.figures import style
from bnviz.histograms import (
    density_from_quantiles,
    even_indices,
    outside_fraction,
    robust_ymax,
    shared_edges,
)
from bnviz.record import LEVELS, UNIT_LEVELS, LayerRecord, SiteRecord
from bnviz.train import History, Twins

Array = np.ndarray

METRICS = {
    "drift_prev": "W1 distance to the previous record",
    "drift_init": "W1 distance to step 0",
}
MAX_FRAMES = 120  # animation frames kept; more make the page heavy without showing more
MAX_CURVES = 30  # ridge curves; more overlap into a blur
MAX_POINTS = 2000  # points per loss curve; a screen cannot show more


# --------------------------------------------------------------------------- helpers


def _layer(h: History, layer: int) -> LayerRecord:
    n = len(h.layers)
    if not isinstance(layer, int | np.integer) or not 1 <= layer <= n:
        raise ValueError(f"layer must be a hidden layer number in 1..{n}; got {layer!r}")
    return h.layers[int(layer) - 1]


def _site(h: History, layer: int, site: str) -> SiteRecord | None:
    """The run's record of ``site`` in ``layer``, or None where the run has no such site."""
    return _layer(h, layer).sites.get(site)


def _sites_of(twins: Twins, layer: int, site: str) -> list[SiteRecord | None]:
    style.label(site)  # validates the name
    recs = [_site(h, layer, site) for h in twins]
    if all(r is None for r in recs):
        raise ValueError(f"neither run recorded {site!r} in layer {layer}")
    return recs


def _activation(twins: Twins) -> str:
    return twins.plain.config.activation


def _diverged(h: History) -> str | None:
    return None if h.diverged_at is None else f"{h.label} diverged at step {h.diverged_at}"


def _compact(a: Array, digits: int = 4, scale: float | None = None) -> list:
    """Numbers rounded to ``digits`` significant digits of ``scale`` (default: the largest
    value), as a list: figures go to the browser as JSON, and full float64 triples their size.
    Coordinates pass their bin width as the scale, so rounding never moves a bar visibly."""
    a = np.asarray(a, dtype=np.float64)
    finite = np.abs(a[np.isfinite(a)])
    top = float(finite.max()) if finite.size else 0.0
    top = top if scale is None else abs(float(scale))
    decimals = digits - 1 - (math.floor(math.log10(top)) if top > 0 else 0)
    out = np.round(a, max(decimals, 0)) if decimals <= 15 else a  # past 15, float64 is the limit
    return [None if not math.isfinite(v) else v for v in out.tolist()]


def _fmt(v: float) -> str:
    """A statistic for a caption: 3 decimals (so a BN mean of 3e-9 reads 0.000), or 4
    significant digits once it is large."""
    v = float(v)
    if not math.isfinite(v):
        return str(v)
    text = f"{v:.3f}" if abs(v) < 100 else f"{v:.4g}"
    return "0.000" if text == "-0.000" else text


def _mark_divergence(
    fig: go.Figure,
    h: History,
    x: Array,
    y: Array,
    row: int | None = None,
    col: int | None = None,
    annotate: bool = True,
) -> None:
    """An x at the end of a diverged run's curve and a dotted line at the step it diverged."""
    if h.diverged_at is None:
        return
    color = style.run_color(h.label)
    where = {} if row is None else {"row": row, "col": col}
    finite = np.flatnonzero(np.isfinite(np.asarray(y, dtype=np.float64)))
    if finite.size:
        i = finite[-1]
        fig.add_trace(
            go.Scatter(
                x=[float(x[i])],
                y=[float(y[i])],
                mode="markers",
                marker={"symbol": "x", "size": 12, "color": color, "line": {"width": 1}},
                name=_diverged(h),
                legendgroup=h.label,
                showlegend=False,
                hovertemplate=f"{_diverged(h)}<extra></extra>",
            ),
            **where,
        )
    line = {"color": color, "dash": "dot", "width": 1.5}
    if annotate:
        fig.add_vline(
            x=h.diverged_at,
            line=line,
            annotation_text=_diverged(h),
            annotation_position="top left",
            annotation_font_color=style.ACCENT,
            **where,
        )
    else:
        fig.add_vline(x=h.diverged_at, line=line, **where)


def _layer_grid(n: int, max_cols: int = 4) -> tuple[int, int]:
    cols = min(n, max_cols)
    return math.ceil(n / cols), cols


# --------------------------------------------------------------------------- histograms


def twin_histograms(
    twins: Twins,
    layer: int,
    site: str = "act_in",
    *,
    n_bins: int = 60,
    max_frames: int = MAX_FRAMES,
    shared_x: bool | None = None,
) -> go.Figure:
    """One hidden layer's distribution over training, plain and BN side by side, animated with
    one step slider and a play button.

    The axes are fixed over all frames (computed from every record of the runs), so what moves
    on screen is the distribution. With ``shared_x`` both panels share the x axis, the honest
    comparison of location and spread; without it each panel fits its own run. The default
    (None) shares unless a run diverged, whose blown-up values would squash the other panel into
    one bar. Each panel has its own y axis (a narrow distribution's tall peak would flatten a
    wide one). A faint outline of the step-0 histogram stays in every frame; a diverged run's
    panel goes empty after its last record and says so.
    """
    act = _activation(twins)
    runs = list(twins)
    recs = _sites_of(twins, layer, site)
    present = [(h, r) for h, r in zip(runs, recs, strict=True) if r is not None]
    all_steps = np.unique(np.concatenate([h.record_steps for h, _ in present]))
    steps = all_steps[even_indices(len(all_steps), max_frames)]
    if shared_x is None:
        shared_x = all(h.diverged_at is None for h in runs)

    if shared_x:
        e = shared_edges([r.quantiles for _, r in present], n_bins=n_bins)
        edges = [e, e]
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
            return np.zeros(n_bins_k), _diverged(h)
        j = int(np.searchsorted(h.record_steps, step, side="right")) - 1
        notes = [f"mean {_fmt(r.mean[j])}, std {_fmt(r.std[j])}"]
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
    fig = make_subplots(rows=1, cols=2, subplot_titles=titles, horizontal_spacing=0.08)

    first = [panel(k, int(steps[0])) for k in range(2)]
    for k, h in enumerate(runs):
        e = edges[k]
        centers, widths = (e[:-1] + e[1:]) / 2, np.diff(e)
        fig.add_trace(
            go.Bar(
                x=_compact(centers, scale=widths[0]),
                y=_compact(first[k][0]),
                width=_compact(widths, scale=widths[0]),
                customdata=np.stack(
                    [_compact(e[:-1], scale=widths[0]), _compact(e[1:], scale=widths[0])], axis=1
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
    for k in range(2):
        e = edges[k]
        d0 = dens[k][0] if dens[k] is not None else np.zeros(len(e) - 1)
        fig.add_trace(
            go.Scatter(
                x=_compact(np.concatenate([[e[0]], e]), scale=e[1] - e[0]),
                y=_compact(np.concatenate([[0.0], d0, [0.0]])),
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
    for k in range(2):
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

    animated = [0, 1, 4, 5]  # the two bar traces and the two note traces
    frames = []
    for step in steps:
        (d_plain, n_plain), (d_bn, n_bn) = (panel(k, int(step)) for k in range(2))
        frames.append(
            go.Frame(
                name=str(int(step)),
                traces=animated,
                data=[
                    go.Bar(y=_compact(d_plain)),
                    go.Bar(y=_compact(d_bn)),
                    go.Scatter(text=[n_plain]),
                    go.Scatter(text=[n_bn]),
                ],
            )
        )
    fig.frames = frames

    jump = {
        "mode": "immediate",
        "frame": {"duration": 0, "redraw": True},
        "transition": {"duration": 0},
    }
    play = {
        "frame": {"duration": 200, "redraw": True},
        "transition": {"duration": 120, "easing": "linear"},
        "fromcurrent": True,
        "mode": "immediate",
    }
    fig.update_layout(
        sliders=[
            {
                "active": 0,
                "currentvalue": {"prefix": "step ", "font": {"size": style.FONT_SIZE}},
                "pad": {"t": 55, "b": 0},
                "x": 0.1,
                "len": 0.9,
                "y": 0,
                "yanchor": "top",
                "steps": [
                    {"label": f.name, "method": "animate", "args": [[f.name], jump]} for f in frames
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
                    {"label": "▶ Play", "method": "animate", "args": [None, play]},
                    {"label": "❚❚ Pause", "method": "animate", "args": [[None], jump]},
                ],
            }
        ],
        bargap=0,
        margin={"b": 150},
    )
    where = label_where(site, act, layer)
    for k in range(2):
        e = edges[k]
        fig.update_xaxes(
            title_text=where, range=[float(e[0]), float(e[-1])], autorange=False, row=1, col=k + 1
        )
        fig.update_yaxes(range=[0.0, ymax[k]], autorange=False, row=1, col=k + 1)
    fig.update_yaxes(title_text="density", row=1, col=1)
    return style.styled(
        fig,
        f"Layer {layer} {style.label(site, act)} over training: plain vs BN "
        "(same start, same batches)",
        style.HEIGHT_ANIMATED,
    )


def label_where(site: str, activation: str, layer: int) -> str:
    """An axis title naming the site and the layer, e.g. "sigmoid input, hidden layer 2"."""
    return f"{style.label(site, activation)}, hidden layer {layer}"


def ridge(
    twins: Twins,
    layer: int,
    site: str = "act_in",
    *,
    max_curves: int = MAX_CURVES,
    n_bins: int = 80,
    overlap: float = 1.4,
    normalize: bool = True,
) -> go.Figure:
    """Every recorded step at once: each record's histogram a filled curve lifted to its step on
    the y axis (TensorBoard's "offset" view), both runs overlaid in their colors, on one x axis.

    With ``normalize`` every curve is ``overlap`` record gaps tall at its own peak, so the shape
    and spread of a wide distribution read as well as those of a narrow one (whose density
    peak is far higher); the animated histograms show true heights. Without it all curves share
    one height scale. Curves are trimmed to where they have mass, to keep the stack readable.
    """
    act = _activation(twins)
    recs = _sites_of(twins, layer, site)
    present = [(h, r) for h, r in zip(twins, recs, strict=True) if r is not None]
    all_steps = np.unique(np.concatenate([h.record_steps for h, _ in present]))
    steps = all_steps[even_indices(len(all_steps), max_curves)]
    edges = shared_edges([r.quantiles for _, r in present], n_bins=n_bins)
    centers = (edges[:-1] + edges[1:]) / 2
    gap = float(np.diff(steps).mean()) if len(steps) > 1 else 1.0

    chosen = []
    for h, r in present:
        rows = np.flatnonzero(np.isin(h.record_steps, steps))
        chosen.append(
            (h, h.record_steps[rows], density_from_quantiles(r.quantiles[rows], LEVELS, edges))
        )
    shared_top = robust_ymax(np.concatenate([d for _, _, d in chosen]), headroom=1.0)

    fig = go.Figure()
    for h, rsteps, d in chosen:
        xs, ys, at = [], [], []
        for s, row in zip(rsteps[::-1], d[::-1], strict=True):  # latest first, drawn behind
            top = robust_ymax(row[None, :], headroom=1.0) if normalize else shared_top
            mass = np.flatnonzero(row > 0.01 * top)
            if mass.size == 0:
                continue  # nothing on this axis to draw (all of it outside, or not finite)
            lo, hi = max(mass[0] - 1, 0), min(mass[-1] + 1, len(row) - 1)
            heights = np.minimum(row[lo : hi + 1], top) * (overlap * gap / top)
            xs += [edges[lo], *centers[lo : hi + 1], edges[hi + 1], None]
            ys += [float(s), *(float(s) + heights), float(s), None]
            at += [int(s)] * (hi - lo + 3) + [None]
        color = style.run_color(h.label)
        fig.add_trace(
            go.Scatter(
                x=_compact(np.array(xs, dtype=np.float64), scale=edges[1] - edges[0]),
                y=_compact(np.array(ys, dtype=np.float64), scale=gap),
                customdata=at,
                mode="lines",
                fill="toself",
                fillcolor=style.rgba(color, 0.15),
                line={"color": color, "width": 1.2},
                name=h.label,
                legendgroup=h.label,
                hovertemplate=f"{h.label}, step %{{customdata}}<br>value %{{x:.3g}}<extra></extra>",
                hoveron="points",
            )
        )
    notes = [n for n in (_diverged(h) for h in twins) if n]
    if notes:
        fig.add_annotation(
            text="; ".join(notes) + " (its curves stop there)",
            xref="paper",
            yref="paper",
            x=1.0,
            y=1.0,
            xanchor="right",
            yanchor="bottom",
            showarrow=False,
            font={"color": style.ACCENT},
        )
    fig.update_xaxes(
        title_text=label_where(site, act, layer),
        range=[float(edges[0]), float(edges[-1])],
        autorange=False,
    )
    fig.update_yaxes(
        title_text="training step",
        range=[float(steps[0]) - 0.3 * gap, float(steps[-1]) + 1.05 * overlap * gap],
        autorange=False,
    )
    return style.styled(
        fig,
        f"Layer {layer} {style.label(site, act)}, every recorded step at once "
        "(each curve a histogram, lifted to its step)",
        560,
    )


# --------------------------------------------------------------------------- lines over time


def typical_unit(h: History, layer: int) -> int:
    """The unit whose median activation input (``act_in``) moves the median amount over the run:
    a "typical" unit for the paper's Figure 1(b,c), neither the calmest nor the wildest."""
    pct = _site(h, layer, "act_in").unit_pct
    median = pct[:, :, 1].astype(np.float64)
    moves = np.abs(median[-1] - median[0])
    moves = np.where(np.isfinite(moves), moves, np.inf)
    order = np.argsort(moves, kind="stable")
    return int(order[(len(order) - 1) // 2])


def percentile_bands(twins: Twins, layer: int, unit: int | None = None) -> go.Figure:
    """The paper's Figure 1(b,c): the 15th, 50th and 85th percentiles of one unit's activation
    input over training (on the probe batch), plain and BN side by side on one y scale.

    ``unit`` None picks the plain run's ``typical_unit``, the same unit in both nets.
    """
    act = _activation(twins)
    runs = list(twins)
    n_units = _layer(twins.plain, layer).units
    if unit is None:
        unit = typical_unit(twins.plain, layer)
    if not isinstance(unit, int | np.integer) or not 0 <= unit < n_units:
        raise ValueError(f"unit must be in 0..{n_units - 1}; got {unit!r}")
    lo, _, hi = (round(p * 100) for p in UNIT_LEVELS)
    lo_name, hi_name = f"{lo}th percentile", f"{hi}th percentile"
    band_name = f"{lo}th–{hi}th percentile"
    fig = make_subplots(
        rows=1,
        cols=2,
        shared_yaxes=True,
        horizontal_spacing=0.05,
        subplot_titles=[f"{h.label} net" for h in runs],
    )
    for k, h in enumerate(runs):
        rec = _site(h, layer, "act_in")
        pct = rec.unit_pct[:, unit, :].astype(np.float64)
        x = h.record_steps
        color = style.run_color(h.label)
        common = {"x": x, "legendgroup": h.label, "mode": "lines"}
        fig.add_trace(
            go.Scatter(
                y=pct[:, 2],
                line={"color": color, "width": 0.8},
                name=f"{h.label} {hi_name}",
                showlegend=False,
                hovertemplate=f"step %{{x}}<br>{hi_name} %{{y:.3f}}<extra>{h.label}</extra>",
                **common,
            ),
            row=1,
            col=k + 1,
        )
        fig.add_trace(
            go.Scatter(
                y=pct[:, 0],
                line={"color": color, "width": 0.8},
                fill="tonexty",
                fillcolor=style.rgba(color, 0.25),
                name=f"{h.label} {band_name}",
                hovertemplate=f"step %{{x}}<br>{lo_name} %{{y:.3f}}<extra>{h.label}</extra>",
                **common,
            ),
            row=1,
            col=k + 1,
        )
        fig.add_trace(
            go.Scatter(
                y=pct[:, 1],
                line={"color": color, "width": 2.5},
                name=f"{h.label} median",
                hovertemplate=f"step %{{x}}<br>median %{{y:.3f}}<extra>{h.label}</extra>",
                **common,
            ),
            row=1,
            col=k + 1,
        )
        _mark_divergence(fig, h, x, pct[:, 1], row=1, col=k + 1)
        fig.update_xaxes(title_text="training step", row=1, col=k + 1)
    fig.update_yaxes(title_text=f"{style.label('act_in', act)} of unit {unit}", row=1, col=1)
    return style.styled(
        fig,
        f"One unit's {style.label('act_in', act)} (layer {layer}, unit {unit}): "
        f"{lo}th, 50th and {hi}th percentiles over training",
    )


def accuracy_curves(twins: Twins) -> go.Figure:
    """The paper's Figure 1(a): test accuracy over training, plain vs BN."""
    fig = go.Figure()
    for h in twins:
        color = style.run_color(h.label)
        fig.add_trace(
            go.Scatter(
                x=h.record_steps,
                y=h.test_acc.astype(np.float64),
                mode="lines",
                line={"color": color, "width": 2.5, "dash": style.RUN_DASH[h.label]},
                name=h.label,
                legendgroup=h.label,
                hovertemplate="step %{x}: %{y:.1%}<extra>" + h.label + "</extra>",
            )
        )
        _mark_divergence(fig, h, h.record_steps, h.test_acc)
    fig.update_xaxes(title_text="training step")
    fig.update_yaxes(title_text="test accuracy", range=[0.0, 1.02], tickformat=".0%")
    return style.styled(fig, "Test accuracy over training: plain vs BN")


def smooth_loss(loss: Array, window: int) -> Array:
    """Trailing mean over the last ``window`` steps (fewer at the start), as TensorBoard-style
    smoothing that never looks ahead."""
    loss = np.asarray(loss, dtype=np.float64)
    if window <= 1 or loss.size == 0:
        return loss.copy()
    c = np.concatenate([[0.0], np.cumsum(loss)])
    i = np.arange(1, loss.size + 1)
    start = np.maximum(i - window, 0)
    return (c[i] - c[start]) / (i - start)


def loss_curves(twins: Twins, smooth: int = 50, *, max_points: int = MAX_POINTS) -> go.Figure:
    """Per-step training loss (smoothed over ``smooth`` steps, log y), plain vs BN.

    Long runs are thinned to ``max_points`` evenly spaced points after smoothing.
    """
    if smooth < 1:
        raise ValueError(f"smooth must be a window of at least 1 step; got {smooth}")
    fig = go.Figure()
    for h in twins:
        sm = smooth_loss(h.loss, smooth)
        keep = even_indices(sm.size, max_points)
        x = keep
        y = np.array([float(f"{v:.5g}") for v in sm[keep]])  # 5 digits each, for a log axis
        color = style.run_color(h.label)
        fig.add_trace(
            go.Scatter(
                x=x,
                y=y,
                mode="lines",
                line={"color": color, "width": 2, "dash": style.RUN_DASH[h.label]},
                name=h.label,
                legendgroup=h.label,
                hovertemplate="step %{x}: %{y:.4g}<extra>" + h.label + "</extra>",
            )
        )
        _mark_divergence(fig, h, x, y)
    what = "training loss" if smooth == 1 else f"training loss (mean of last {smooth} steps)"
    fig.update_xaxes(title_text="training step")
    fig.update_yaxes(title_text=what, type="log")
    return style.styled(fig, "Training loss: plain vs BN")


def _per_layer(
    twins: Twins,
    get: Callable[[History, int], Array | None],
    y_title: str,
    title: str,
    hover: str,
) -> go.Figure:
    """Small multiples, one panel per hidden layer, plain and BN in each, one shared y axis."""
    n = max(len(h.layers) for h in twins)
    rows, cols = _layer_grid(n)
    fig = make_subplots(
        rows=rows,
        cols=cols,
        shared_yaxes="all",
        shared_xaxes="all",
        subplot_titles=[f"hidden layer {i}" for i in range(1, n + 1)],
        horizontal_spacing=0.04,
        vertical_spacing=0.16 if rows > 1 else 0.1,
    )
    shown: set[str] = set()
    for i in range(1, n + 1):
        r, c = (i - 1) // cols + 1, (i - 1) % cols + 1
        for h in twins:
            y = get(h, i)
            if y is None:
                continue
            y = np.asarray(y, dtype=np.float64)
            fig.add_trace(
                go.Scatter(
                    x=h.record_steps,
                    y=y,
                    mode="lines",
                    line={
                        "color": style.run_color(h.label),
                        "width": 2,
                        "dash": style.RUN_DASH[h.label],
                    },
                    name=h.label,
                    legendgroup=h.label,
                    showlegend=h.label not in shown,
                    hovertemplate=f"layer {i}, step %{{x}}<br>{hover} %{{y:.4g}}"
                    f"<extra>{h.label}</extra>",
                ),
                row=r,
                col=c,
            )
            shown.add(h.label)
            _mark_divergence(fig, h, h.record_steps, y, row=r, col=c, annotate=i == 1)
        if r == rows:
            fig.update_xaxes(title_text="training step", row=r, col=c)
        if c == 1:
            fig.update_yaxes(title_text=y_title, row=r, col=c)
    fig.update_yaxes(rangemode="tozero")
    fig.update_xaxes(nticks=4)  # narrow panels: a few steps apart, not a crowd of labels
    return style.styled(fig, title, max(style.HEIGHT, 120 + 300 * rows))


def drift_over_time(twins: Twins, metric: str = "drift_prev", site: str = "act_in") -> go.Figure:
    """How far each layer's distribution moves, per layer over time: the 1-Wasserstein distance
    on the probe batch to the previous record ("drift_prev") or to step 0 ("drift_init")."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {', '.join(METRICS)}; got {metric!r}")
    act = _activation(twins)
    style.label(site)
    every = twins.plain.config.record_every
    what = {
        "drift_prev": f"to the record {every} steps earlier",
        "drift_init": "to its step-0 distribution",
    }[metric]

    def get(h: History, i: int) -> Array | None:
        rec = h.layers[i - 1].sites.get(site) if i <= len(h.layers) else None
        return None if rec is None else getattr(rec, metric)

    return _per_layer(
        twins,
        get,
        METRICS[metric],
        f"Drift of each layer's {style.label(site, act)}: 1-Wasserstein distance {what}",
        "W1",
    )


def saturation_over_time(twins: Twins) -> go.Figure:
    """Fraction of saturated units per layer over time (sigmoid/tanh: |z| past the point where
    the gradient is under 10% of its peak; ReLU: units off for the whole probe batch)."""
    act = _activation(twins)
    threshold = F.ACTIVATIONS[act].saturation_threshold
    if threshold is not None:
        y_title = "fraction saturated"
        title = (
            f"Saturation: fraction of {style.label('act_in', act)} values with |z| > "
            f"{threshold:.2f} (gradient under 10% of its peak)"
        )
    elif act == "relu":
        y_title = "fraction of dead units"
        title = "Dead ReLU units: fraction of units off for every probe example"
    else:
        y_title = "fraction saturated"
        title = f"Saturation does not apply to {act} units"

    def get(h: History, i: int) -> Array | None:
        rec = h.layers[i - 1].sites.get("act_in") if i <= len(h.layers) else None
        return None if rec is None else rec.saturation

    fig = _per_layer(twins, get, y_title, title, y_title)
    fig.update_yaxes(tickformat=".0%")
    if threshold is None and act != "relu":
        fig.add_annotation(
            text=f"{act} units never saturate: nothing to show",
            xref="paper",
            yref="paper",
            x=0.5,
            y=0.5,
            showarrow=False,
            font={"color": style.MUTED, "size": style.FONT_SIZE + 2},
        )
    return fig


def mean_std_over_time(twins: Twins, layer: int, site: str = "act_in") -> go.Figure:
    """The layer's pooled mean and standard deviation over training, plain vs BN: the paper's
    claim that without BN the distribution moves in mean and variance."""
    act = _activation(twins)
    recs = _sites_of(twins, layer, site)
    fig = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=["mean", "standard deviation"],
        horizontal_spacing=0.08,
    )
    for h, rec in zip(twins, recs, strict=True):
        if rec is None:
            continue
        color = style.run_color(h.label)
        for c, (what, y) in enumerate((("mean", rec.mean), ("std", rec.std)), start=1):
            y = np.asarray(y, dtype=np.float64)
            fig.add_trace(
                go.Scatter(
                    x=h.record_steps,
                    y=y,
                    mode="lines",
                    line={"color": color, "width": 2.5, "dash": style.RUN_DASH[h.label]},
                    name=h.label,
                    legendgroup=h.label,
                    showlegend=c == 1,
                    hovertemplate=f"step %{{x}}<br>{what} %{{y:.4g}}<extra>{h.label}</extra>",
                ),
                row=1,
                col=c,
            )
            _mark_divergence(fig, h, h.record_steps, y, row=1, col=c, annotate=c == 1)
        fig.update_xaxes(title_text="training step")
    fig.update_yaxes(title_text=label_where(site, act, layer), row=1, col=1)
    fig.update_yaxes(rangemode="tozero", row=1, col=2)
    return style.styled(
        fig, f"Layer {layer} {style.label(site, act)}: mean and spread over training"
    )
