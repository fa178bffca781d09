"""Figures for the distribution-drift lesson, drawn from runs trained side by side (twins).

Every builder takes the recorded runs and returns a ``go.Figure``; plain is orange and dashed
where lines are drawn, BN blue and solid. A run that diverged is drawn up to its last record and
marked "diverged at step k", since divergence is a result to show, not an error. The animated
histograms, accuracy and loss curves are shared pieces (``animate``, ``common``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from bnviz import functional as F
from bnviz.figures import common, style
from bnviz.figures.animate import comparable_spreads
from bnviz.histograms import density_from_quantiles, even_indices, robust_ymax, shared_edges
from bnviz.record import LEVELS, UNIT_LEVELS
from bnviz.train import History

Array = np.ndarray
Runs = Sequence[History]

METRICS = {
    "drift_prev": "W1 distance to the previous record",
    "drift_init": "W1 distance to step 0",
}
MAX_CURVES = 30  # ridge curves; more overlap into a blur


def ridge(
    runs: Runs,
    layer: int,
    site: str = "act_in",
    *,
    max_curves: int = MAX_CURVES,
    n_bins: int = 80,
    overlap: float = 1.4,
    normalize: bool = True,
    shared_x: bool | None = None,
) -> go.Figure:
    """Every recorded step at once: each record's histogram a filled curve lifted to its step on
    the y axis (TensorBoard's "offset" view), a panel per run side by side (overlaid, one
    net's ridges hid the other's), on one x axis where their spreads are comparable.

    With ``normalize`` every curve is ``overlap`` record gaps tall at its own peak, so the shape
    and spread of a wide distribution read as well as those of a narrow one (whose density
    peak is far higher); the animated histograms show true heights. Without it all curves share
    one height scale. Curves are trimmed to where they have mass, to keep the stack readable.
    """
    runs = list(runs)
    act = common.activation_of(runs)
    recs, stand_in = common.view_sites(runs, layer, site)
    present = [(h, r) for h, r in zip(runs, recs, strict=True) if r is not None]
    all_steps = np.unique(np.concatenate([h.record_steps for h, _ in present]))
    steps = all_steps[even_indices(len(all_steps), max_curves)]
    shared = comparable_spreads([r.quantiles for _, r in present]) if shared_x is None else shared_x
    gap = float(np.diff(steps).mean()) if len(steps) > 1 else 1.0
    titles = []
    for h, r, note in zip(runs, recs, stand_in, strict=True):
        t = f"{h.label} net" + (f": {note}" if note else "")
        if r is None:
            t += " (not recorded)"
        elif h.diverged_at is not None:
            t += f" (diverged at step {h.diverged_at}: its curves stop there)"
        titles.append(t + ("" if shared or len(present) < 2 else " (own x axis)"))
    n = len(runs)
    fig = make_subplots(
        rows=1, cols=n, shared_yaxes=True, horizontal_spacing=0.12 / n, subplot_titles=titles
    )
    all_edges = shared_edges([r.quantiles for _, r in present], n_bins=n_bins) if shared else None
    panels = {}  # column -> (edges, record rows, densities)
    for k, r in enumerate(recs, start=1):
        if r is not None:
            h = runs[k - 1]
            edges = all_edges if shared else shared_edges([r.quantiles], n_bins=n_bins)
            rows = np.flatnonzero(np.isin(h.record_steps, steps))
            panels[k] = (edges, rows, density_from_quantiles(r.quantiles[rows], LEVELS, edges))
    shared_top = robust_ymax(np.concatenate([d for _, _, d in panels.values()]), headroom=1.0)
    for k, (edges, rows, d) in panels.items():
        h = runs[k - 1]
        centers = (edges[:-1] + edges[1:]) / 2
        xs, ys, at = [], [], []
        for s, row in zip(h.record_steps[rows][::-1], d[::-1], strict=True):  # latest behind
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
                x=common.compact(np.array(xs, dtype=np.float64), scale=edges[1] - edges[0]),
                y=common.compact(np.array(ys, dtype=np.float64), scale=gap),
                customdata=at,
                mode="lines",
                fill="toself",
                fillcolor=style.rgba(color, 0.2),
                line={"color": color, "width": 1.2},
                name=h.label,
                legendgroup=h.label,
                hovertemplate=f"{h.label}, step %{{customdata}}<br>value %{{x:.3g}}<extra></extra>",
                hoveron="points",
            ),
            row=1,
            col=k,
        )
        fig.update_xaxes(
            title_text=common.where_label(site, act, layer),
            range=[float(edges[0]), float(edges[-1])],
            autorange=False,
            row=1,
            col=k,
        )
    fig.update_yaxes(
        range=[float(steps[0]) - 0.3 * gap, float(steps[-1]) + 1.05 * overlap * gap],
        autorange=False,
    )
    fig.update_yaxes(title_text="training step", row=1, col=1)
    return style.styled(
        fig,
        f"Layer {layer} {style.label(site, act)}, every recorded step at once",
        560,
        wide=True,
    )


# --------------------------------------------------------------------------- one unit


def typical_unit(h: History, layer: int) -> int:
    """The unit whose median activation input (``act_in``) moves the median amount over the run:
    a "typical" unit for the paper's Figure 1(b,c), neither the calmest nor the wildest."""
    pct = common.site_of(h, layer, "act_in").unit_pct
    median = pct[:, :, 1].astype(np.float64)
    moves = np.abs(median[-1] - median[0])
    moves = np.where(np.isfinite(moves), moves, np.inf)
    order = np.argsort(moves, kind="stable")
    return int(order[(len(order) - 1) // 2])


def percentile_bands(runs: Runs, layer: int, unit: int | None = None) -> go.Figure:
    """The paper's Figure 1(b,c): the 15th, 50th and 85th percentiles of one unit's activation
    input over training (on the probe batch), the runs side by side on one y scale.

    ``unit`` None picks the first (plain) run's ``typical_unit``, the same unit in every net.
    """
    runs = list(runs)
    act = common.activation_of(runs)
    n_units = common.layer_of(runs[0], layer).units
    if unit is None:
        unit = typical_unit(runs[0], layer)
    if not isinstance(unit, int | np.integer) or not 0 <= unit < n_units:
        raise ValueError(f"unit must be in 0..{n_units - 1}; got {unit!r}")
    lo, _, hi = (round(p * 100) for p in UNIT_LEVELS)
    lo_name, hi_name = f"{lo}th percentile", f"{hi}th percentile"
    band_name = f"{lo}th–{hi}th"
    fig = make_subplots(
        rows=1,
        cols=len(runs),
        shared_yaxes=True,
        horizontal_spacing=0.1 / len(runs),
        subplot_titles=[f"{h.label} net" for h in runs],
    )
    for k, h in enumerate(runs):
        rec = common.site_of(h, layer, "act_in")
        pct = rec.unit_pct[:, unit, :].astype(np.float64)
        x = h.record_steps
        color = style.run_color(h.label)
        shared = {"x": x, "legendgroup": h.label, "mode": "lines"}
        fig.add_trace(
            go.Scatter(
                y=pct[:, 2],
                line={"color": color, "width": 0.8},
                name=f"{h.label} {hi_name}",
                showlegend=False,
                hovertemplate=f"step %{{x}}<br>{hi_name} %{{y:.3f}}<extra>{h.label}</extra>",
                **shared,
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
                name=f"{h.label}: {band_name}",
                hovertemplate=f"step %{{x}}<br>{lo_name} %{{y:.3f}}<extra>{h.label}</extra>",
                **shared,
            ),
            row=1,
            col=k + 1,
        )
        fig.add_trace(
            go.Scatter(
                y=pct[:, 1],
                line={"color": color, "width": 2.5},
                name=f"{h.label}: median",
                hovertemplate=f"step %{{x}}<br>median %{{y:.3f}}<extra>{h.label}</extra>",
                **shared,
            ),
            row=1,
            col=k + 1,
        )
        common.mark_divergence(fig, h, x, pct[:, 1], row=1, col=k + 1)
        common.step_axis(fig, runs, row=1, col=k + 1)
    fig.update_yaxes(title_text=f"{style.label('act_in', act)} of unit {unit}", row=1, col=1)
    return style.styled(
        fig,
        f"Layer {layer}, unit {unit}: {lo}th, 50th and {hi}th percentiles",
    )


def drift_over_time(runs: Runs, metric: str = "drift_prev", site: str = "act_in") -> go.Figure:
    """How far each layer's distribution moves, per layer over time: the 1-Wasserstein distance
    on the probe batch to the previous record ("drift_prev") or to step 0 ("drift_init")."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {', '.join(METRICS)}; got {metric!r}")
    act = common.activation_of(runs)
    style.label(site)
    every = runs[0].config.record_every
    what = {
        "drift_prev": f"to the record {every} steps earlier",
        "drift_init": "to its step-0 distribution",
    }[metric]
    return common.per_layer(
        runs,
        [common.Row(METRICS[metric], lambda h: _site_series(h, site, metric), hover="W1")],
        f"Drift of each layer's {style.label(site, act)}: W1 {what}",
        shared_y=False,  # one axis let a first-record spike flatten the other layers to 0
        max_cols=3,
    )


def _site_series(h: History, site: str, name: str) -> list[Array | None]:
    """A recorded series of one site in every hidden layer (None where the layer lacks it)."""
    return [
        None if layer.sites.get(site) is None else getattr(layer.sites[site], name)
        for layer in h.layers
    ]


def saturation_over_time(runs: Runs) -> go.Figure:
    """Fraction of saturated units per layer over time (sigmoid/tanh: |z| past the point where
    the gradient is under 10% of its peak; ReLU: units off for the whole probe batch)."""
    act = common.activation_of(runs)
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

    row = common.Row(y_title, lambda h: _site_series(h, "act_in", "saturation"), percent=True)
    fig = common.per_layer(runs, [row], title, max_cols=3)
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


def mean_std_over_time(runs: Runs, layer: int, site: str = "act_in") -> go.Figure:
    """The layer's pooled mean and standard deviation over training, plain vs BN: the paper's
    claim that without BN the distribution moves in mean and variance."""
    act = common.activation_of(runs)
    recs, _ = common.view_sites(runs, layer, site)
    fig = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=["mean", "standard deviation"],
        horizontal_spacing=0.08,
    )
    for h, rec in zip(runs, recs, strict=True):
        if rec is None:
            continue
        for c, (what, y) in enumerate((("mean", rec.mean), ("std", rec.std)), start=1):
            y = np.asarray(y, dtype=np.float64)
            fig.add_trace(
                go.Scatter(
                    x=h.record_steps,
                    y=y,
                    mode="lines",
                    line=common.line(h.label),
                    name=h.label,
                    legendgroup=h.label,
                    showlegend=c == 1,
                    hovertemplate=f"step %{{x}}<br>{what} %{{y:.4g}}<extra>{h.label}</extra>",
                ),
                row=1,
                col=c,
            )
            common.mark_divergence(fig, h, h.record_steps, y, row=1, col=c, annotate=c == 1)
    common.step_axis(fig, runs)
    fig.update_yaxes(title_text=common.where_label(site, act, layer), row=1, col=1)
    fig.update_yaxes(rangemode="tozero", row=1, col=2)
    return style.styled(fig, f"Layer {layer} {style.label(site, act)}: mean and spread")
