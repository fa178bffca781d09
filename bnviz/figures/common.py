"""Figure pieces every lesson shares: runs drawn over training steps, per-layer small
multiples, divergence marks, and the formatting of the numbers that go to the browser.

A *run* here is a ``bnviz.train.History``; a figure takes any sequence of them (twins, arms)
and draws each in its own color and dash (``bnviz.figures.style``). A run that diverged is
drawn up to its last record and marked "diverged at step k": divergence is a result to show,
not an error.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from bnviz.figures import style
from bnviz.histograms import even_indices
from bnviz.record import LayerRecord, SiteRecord
from bnviz.train import History

Array = np.ndarray
MAX_POINTS = 2000  # points per loss curve; a screen cannot show more


# --------------------------------------------------------------------------- numbers


def compact(a: Array, digits: int = 4, scale: float | None = None) -> list:
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


def rounded(a: Array, digits: int = 6) -> list:
    """Each finite value to ``digits`` significant digits of its own, NaN/inf as gaps (null)."""
    out = []
    for v in np.asarray(a, dtype=np.float64).ravel().tolist():
        out.append(float(f"{v:.{digits}g}") if math.isfinite(v) else None)
    return out


def fmt_stat(v: float) -> str:
    """A statistic for a caption: 3 decimals (so a BN mean of 3e-9 reads 0.000), or 4
    significant digits once it is large."""
    v = float(v)
    if not math.isfinite(v):
        return str(v)
    text = f"{v:.3f}" if abs(v) < 100 else f"{v:.4g}"
    return "0.000" if text == "-0.000" else text


def fmt_value(v: float) -> str:
    """A setting as students read it: 0.001, 0.3, 3, 30."""
    return f"{float(v):g}"


def log_ticks(lo: float, hi: float) -> list[float]:
    """1-2-5 tick values covering [lo, hi], for a log axis whose every label reads as a full
    number (plotly's own minor labels print a bare "2" or "5", which students misread)."""
    if not (lo > 0 and hi >= lo and math.isfinite(hi)):
        return [0.1, 1.0, 10.0]
    ticks = []
    for e in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1):
        ticks += [float(f"{m * 10.0**e:.6g}") for m in (1, 2, 5)]
    inside = [t for t in ticks if lo <= t <= hi]
    if len(inside) > 8:  # many decades: label the decades only
        inside = [t for t in inside if f"{t:g}".lstrip("0.").startswith("1")]
    return inside or [min(ticks, key=lambda t: abs(math.log10(t / lo)))]


def set_log_ticks(fig: go.Figure, lo: float, hi: float, axis: str = "y", **where) -> None:
    """Label a log axis with ``log_ticks``."""
    ticks = log_ticks(lo, hi)
    update = fig.update_yaxes if axis == "y" else fig.update_xaxes
    update(tickvals=ticks, ticktext=[f"{t:g}" for t in ticks], **where)


def log_axis(fig: go.Figure, values: Iterable[Array], axis: str = "y", **where) -> None:
    """A log axis labelled with ``log_ticks`` over the finite positive values it shows."""
    v = np.concatenate([np.asarray(a, dtype=np.float64).ravel() for a in values] or [[]])
    v = v[np.isfinite(v) & (v > 0)]
    update = fig.update_yaxes if axis == "y" else fig.update_xaxes
    update(type="log", **where)
    if v.size:
        set_log_ticks(fig, float(v.min()), float(v.max()), axis, **where)


# --------------------------------------------------------------------------- records


def layer_of(h: History, layer: int) -> LayerRecord:
    n = len(h.layers)
    if not isinstance(layer, int | np.integer) or not 1 <= layer <= n:
        raise ValueError(f"layer must be a hidden layer number in 1..{n}; got {layer!r}")
    return h.layers[int(layer) - 1]


def site_of(h: History, layer: int, site: str) -> SiteRecord | None:
    """The run's record of ``site`` in ``layer``, or None where the run has no such site."""
    return layer_of(h, layer).sites.get(site)


def sites_of(runs: Sequence[History], layer: int, site: str) -> list[SiteRecord | None]:
    style.label(site)  # validates the name
    recs = [site_of(h, layer, site) for h in runs]
    if all(r is None for r in recs):
        which = "neither run" if len(recs) == 2 else "no run"
        raise ValueError(f"{which} recorded {site!r} in layer {layer}")
    return recs


def view_sites(
    runs: Sequence[History], layer: int, site: str
) -> tuple[list[SiteRecord | None], list[str]]:
    """What each run shows for ``site``, and a note where it stands in: a net without a norm
    has no BN input, so there it shows its Linear output (its act_in, the same numbers a BN
    net's BN receives when BN sits before the nonlinearity)."""
    recs = sites_of(runs, layer, site)
    notes = [""] * len(runs)
    for k, h in enumerate(runs):
        if recs[k] is None and site == "bn_in" and h.kind == "none":
            recs[k], notes[k] = site_of(h, layer, "act_in"), "its Linear output, no BN"
    return recs, notes


def activation_of(runs: Sequence[History]) -> str:
    return runs[0].config.activation


def where_label(site: str, activation: str, layer: int) -> str:
    """An axis title naming the site and the layer, e.g. "sigmoid input, hidden layer 2"."""
    return f"{style.label(site, activation)}, hidden layer {layer}"


# --------------------------------------------------------------------------- runs


def line(label: str, width: float = 2.5) -> dict:
    """A run's line: its color and its dash (the second cue, for print and grayscale)."""
    return {"color": style.run_color(label), "width": width, "dash": style.run_dash(label)}


def diverged_note(h: History) -> str | None:
    return None if h.diverged_at is None else f"{h.label} diverged at step {h.diverged_at}"


def mark_divergence(
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
                name=diverged_note(h),
                legendgroup=h.label,
                showlegend=False,
                hovertemplate=f"{diverged_note(h)}<extra></extra>",
            ),
            **where,
        )
    dotted = {"color": color, "dash": "dot", "width": 1.5}
    if annotate:
        # the note reads toward the middle: plotly widens the axis to fit an annotation, so
        # one left of an early divergence pushed the axis to negative steps
        early = h.diverged_at < 0.5 * h.config.steps
        fig.add_vline(
            x=h.diverged_at,
            line=dotted,
            annotation_text=diverged_note(h),
            annotation_position="top right" if early else "top left",
            annotation_font_color=style.ACCENT,
            **where,
        )
    else:
        fig.add_vline(x=h.diverged_at, line=dotted, **where)


def step_axis(fig: go.Figure, runs: Iterable[History], title: bool = True, **where) -> None:
    """An x axis of training steps: from 0 to the longest run's last step, never wider (a
    note or a marker must not stretch it to negative steps), with short tick labels (2k, 10k)
    that do not run into each other on a narrow panel."""
    end = max(h.config.steps for h in runs)
    if title:
        fig.update_xaxes(title_text="training step", **where)
    # autorange clipped to the run, not a fixed range: plotly.js sends matched y axes astray
    # (to [0, 4]) when a matched x axis has one
    fig.update_xaxes(
        tickformat="~s", autorangeoptions={"minallowed": 0, "maxallowed": end}, **where
    )


def versus(runs: Iterable[History]) -> str:
    """ "plain vs BN", from the runs' labels."""
    return " vs ".join(h.label for h in runs)


def accuracy_curves(runs: Sequence[History], title: str | None = None) -> go.Figure:
    """The paper's Figure 1(a): test accuracy over training, one line per run."""
    fig = go.Figure()
    for h in runs:
        steps, acc = h.accuracy_track()  # the records, and the evaluations between them
        fig.add_trace(
            go.Scatter(
                x=steps,
                y=acc,
                mode="lines",
                line=line(h.label),
                name=h.label,
                legendgroup=h.label,
                hovertemplate="step %{x}: %{y:.1%}<extra>" + h.label + "</extra>",
            )
        )
        mark_divergence(fig, h, steps, acc)
    step_axis(fig, runs)
    fig.update_yaxes(title_text="test accuracy", range=[0.0, 1.02], tickformat=".0%")
    return style.styled(fig, title or f"Test accuracy: {versus(runs)}")


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


def loss_curves(
    runs: Sequence[History],
    smooth: int = 50,
    *,
    max_points: int = MAX_POINTS,
    title: str | None = None,
) -> go.Figure:
    """Per-step training loss (smoothed over ``smooth`` steps, log y), one line per run.

    Long runs are thinned to ``max_points`` evenly spaced points after smoothing.
    """
    if smooth < 1:
        raise ValueError(f"smooth must be a window of at least 1 step; got {smooth}")
    fig = go.Figure()
    for h in runs:
        sm = smooth_loss(h.loss, smooth)
        keep = even_indices(sm.size, max_points)
        x = keep
        y = np.array([float(f"{v:.5g}") for v in sm[keep]])  # 5 digits each, for a log axis
        fig.add_trace(
            go.Scatter(
                x=x,
                y=y,
                mode="lines",
                line=line(h.label, 2),
                name=h.label,
                legendgroup=h.label,
                hovertemplate="step %{x}: %{y:.4g}<extra>" + h.label + "</extra>",
            )
        )
        mark_divergence(fig, h, x, y)
    what = "training loss" if smooth == 1 else f"training loss (mean of last {smooth} steps)"
    step_axis(fig, runs)
    fig.update_yaxes(title_text=what)
    log_axis(fig, [t.y for t in fig.data if t.y is not None])
    return style.styled(fig, title or f"Training loss: {versus(runs)}")


# --------------------------------------------------------------------------- small multiples


@dataclass(frozen=True)
class Row:
    """One row of per-layer panels: ``get(run)`` gives one array per hidden layer (None where
    the run does not have it), over the run's record steps."""

    y_title: str
    get: Callable[[History], Sequence[Array | None]]
    log_y: bool = False
    hover: str = ""
    percent: bool = False
    digits: int | None = None  # significant digits sent to the browser (None: all)


def axes_of(fig: go.Figure, row: int, col: int) -> tuple[str, str]:
    """The trace axis names ("x3", "y3") of a subplot."""
    ref = fig.get_subplot(row, col)
    return ref.xaxis.plotly_name.replace("axis", ""), ref.yaxis.plotly_name.replace("axis", "")


def layer_grid(n: int, max_cols: int = 4) -> tuple[int, int]:
    cols = min(n, max_cols)
    return math.ceil(n / cols), cols


def per_layer(
    runs: Sequence[History],
    rows: Sequence[Row],
    title: str,
    *,
    max_cols: int = 4,
    shared_y: bool = True,
    nticks: int | None = 4,
) -> go.Figure:
    """Small multiples: a panel per hidden layer and row, every run in each panel. With one row
    the layers wrap into a grid of at most ``max_cols`` columns; with several, each row is a
    metric and each column a layer. ``shared_y``: one y axis for all panels of a metric;
    ``nticks``: about that many step labels under narrow panels."""
    n = max(len(h.layers) for h in runs)
    if len(rows) == 1:
        grid_rows, cols = layer_grid(n, max_cols)
    else:
        grid_rows, cols = len(rows), n
    place = {}  # (metric row, layer) -> (subplot row, col)
    for r in range(len(rows)):
        for i in range(1, n + 1):
            place[r, i] = (
                ((i - 1) // cols + 1, (i - 1) % cols + 1) if len(rows) == 1 else (r + 1, i)
            )
    titles = [f"hidden layer {i}" for i in range(1, n + 1)]
    if len(rows) > 1:
        titles += [""] * n * (len(rows) - 1)
    fig = make_subplots(
        rows=grid_rows,
        cols=cols,
        shared_yaxes=("rows" if len(rows) > 1 else "all") if shared_y else False,
        shared_xaxes="all",
        subplot_titles=titles,
        # panels with their own y axes need room for their tick labels
        horizontal_spacing=(0.04 if shared_y else 0.07) if len(rows) == 1 else 0.06,
        vertical_spacing=(0.16 if grid_rows > 1 else 0.1) if len(rows) == 1 else 0.09,
    )
    shown: set[str] = set()
    for r, row in enumerate(rows):
        hover = row.hover or row.y_title
        series = [(h, list(row.get(h))) for h in runs]
        for i in range(1, n + 1):
            for h, per_layer_y in series:
                y = per_layer_y[i - 1] if i <= len(per_layer_y) else None
                if y is None:
                    continue
                y = np.asarray(y, dtype=np.float64)
                pr, pc = place[r, i]
                fig.add_trace(
                    go.Scatter(
                        x=h.record_steps,
                        y=y if row.digits is None else rounded(y, row.digits),
                        mode="lines",
                        line=line(h.label, 2),
                        name=h.label,
                        legendgroup=h.label,
                        showlegend=h.label not in shown,
                        hovertemplate=f"layer {i}, step %{{x}}<br>{hover} %{{y:.4g}}"
                        f"<extra>{h.label}</extra>",
                    ),
                    row=pr,
                    col=pc,
                )
                shown.add(h.label)
                first = r == 0 and i == 1
                mark_divergence(fig, h, h.record_steps, y, row=pr, col=pc, annotate=first)
        for i in range(1, n + 1):
            pr, pc = place[r, i]
            if pc == 1:
                fig.update_yaxes(title_text=row.y_title, row=pr, col=pc)
            where = {"row": pr, "col": pc}
            step_axis(fig, runs, title=pr == grid_rows, **where)
            if row.log_y:
                panel = [t.y for t in fig.data if (t.xaxis, t.yaxis) == axes_of(fig, pr, pc)]
                log_axis(fig, [y for y in panel if y is not None], **where)
            else:
                fig.update_yaxes(rangemode="tozero", **where)
            if row.percent:
                fig.update_yaxes(tickformat=".0%", **where)
    if nticks:
        fig.update_xaxes(nticks=nticks)
    height = max(style.HEIGHT, 120 + 300 * grid_rows) if len(rows) == 1 else 150 + 280 * grid_rows
    return style.styled(fig, title, height, wide=True)
