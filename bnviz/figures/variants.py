"""Figures for "Variants and pitfalls": which values each normalizer averages over, accuracy as
the batch shrinks (ours and the Group Norm paper's), the train-vs-eval gap, dropout's variance
shift, BN at batch size 1, and the per-time-step statistics of a batch of sequences.

Colors as everywhere: plain orange, BN blue, LN green, GN purple; InstanceNorm, which no net
here trains, takes the accent color.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from bnviz.experiments.variants import (
    EVERY,
    GN_PAPER_BATCH,
    GN_PAPER_ERROR,
    LAST,
    RECALIBRATED,
    Axes,
    BatchOne,
    DropoutResult,
    FormulaCheck,
    KindResult,
    Sequences,
)
from bnviz.figures import common, style

Array = np.ndarray
SHORT = {EVERY: "every block", RECALIBRATED: "every block, recalibrated", LAST: "last BN only"}
CELL = "#D9D9D9"  # a value outside the highlighted set
CELL_TOP = "#EDEDED"
CELL_SIDE = "#C4C4C4"
DEPTH = (0.45, 0.32)  # the oblique projection of one step along N
NORMALIZERS = {  # name, color and which (n, c) pairs share the mean of (n = 0, c = c0)
    "Batch Norm": style.BN,
    "Layer Norm": style.LN,
    "Instance Norm": style.ACCENT,
    "Group Norm": style.GN,
}


# --------------------------------------------------------------------------- which axes


def _members(name: str, n: int, c: int, group: int) -> set[tuple[int, int]]:
    """(example, channel) pairs whose values (over all of H, W) share one mean and variance."""
    if name == "Batch Norm":
        return {(i, 1) for i in range(n)}
    if name == "Layer Norm":
        return {(0, j) for j in range(c)}
    if name == "Instance Norm":
        return {(0, 0)}
    return {(0, j) for j in range(group)}


def _poly(corners: list[tuple[float, float]]) -> tuple[list, list]:
    xs = [p[0] for p in corners] + [corners[0][0], None]
    ys = [p[1] for p in corners] + [corners[0][1], None]
    return xs, ys


def _at(c: float, h: float, n: float) -> tuple[float, float]:
    return c + DEPTH[0] * n, h + DEPTH[1] * n


def nchw_blocks(n: int = 4, c: int = 6, hw: int = 4, groups: int = 3) -> go.Figure:
    """The Group Norm paper's picture (its Figure 2), drawn here: a block of activations with N
    (examples) going back, C (channels) across and H, W (the pixels, one axis) up. The colored
    cells share one mean and variance under each normalizer."""
    if c % groups:
        raise ValueError(f"groups must divide the {c} channels; got {groups}")
    names = list(NORMALIZERS)
    fig = make_subplots(rows=1, cols=4, subplot_titles=names, horizontal_spacing=0.03)
    labels: list[dict] = []
    axes: dict[str, dict] = {}
    for k, name in enumerate(names, start=1):
        on = _members(name, n, c, c // groups)
        color = NORMALIZERS[name]
        faces = {True: ([], []), False: ([], [])}
        shades = []  # (xs, ys, fill) of the cells not in the set, per face
        for face, cells, corners, plain in (
            (
                "front",
                [(j, h) for j in range(c) for h in range(hw)],
                lambda j, h: [
                    _at(j, h, 0), _at(j + 1, h, 0), _at(j + 1, h + 1, 0), _at(j, h + 1, 0)
                ],
                CELL,
            ),
            (
                "top",
                [(j, i) for j in range(c) for i in range(n)],
                lambda j, i: [
                    _at(j, hw, i), _at(j + 1, hw, i), _at(j + 1, hw, i + 1), _at(j, hw, i + 1)
                ],
                CELL_TOP,
            ),
            (
                "side",
                [(i, h) for i in range(n) for h in range(hw)],
                lambda i, h: [
                    _at(c, h, i), _at(c, h, i + 1), _at(c, h + 1, i + 1), _at(c, h + 1, i)
                ],
                CELL_SIDE,
            ),
        ):  # fmt: skip
            rest: tuple[list, list] = ([], [])
            for a, b in cells:
                pair = {"front": (0, a), "top": (b, a), "side": (a, c - 1)}[face]
                xs, ys = _poly(corners(a, b))
                target = faces[True] if pair in on else rest
                target[0].extend(xs)
                target[1].extend(ys)
            shades.append((rest, plain))
        for (xs, ys), fill in shades:
            fig.add_trace(
                go.Scatter(
                    x=xs, y=ys, fill="toself", fillcolor=fill, mode="lines",
                    line={"color": "white", "width": 1.5}, hoverinfo="skip", showlegend=False,
                ),
                row=1, col=k,
            )  # fmt: skip
        xs, ys = faces[True]
        fig.add_trace(
            go.Scatter(
                x=xs, y=ys, fill="toself", fillcolor=color, mode="lines",
                line={"color": "white", "width": 1.5}, name=name, showlegend=False,
                hoverinfo="skip",
            ),
            row=1, col=k,
        )  # fmt: skip
        axis = "" if k == 1 else str(k)
        labels += [
            dict(
                x=x, y=y, text=f"<b>{text}</b>", showarrow=False, textangle=angle,
                xref=f"x{axis}", yref=f"y{axis}", font={"size": 14, "color": style.MUTED},
            )
            for text, (x, y), angle in (
                ("C", _at(c / 2, -0.55, 0), 0),
                ("H, W", _at(-0.55, hw / 2, 0), -90),
                ("N", _at(c + 0.35, -0.25, n / 2), 0),
            )
        ]  # fmt: skip
        axes[f"xaxis{axis}"] = dict(
            visible=False, range=[-1.2, c + DEPTH[0] * n + 1.0], scaleanchor=f"y{axis}",
            scaleratio=1,
        )  # fmt: skip
        axes[f"yaxis{axis}"] = dict(visible=False, range=[-1.1, hw + DEPTH[1] * n + 0.4])
    fig.update_layout(
        annotations=[*fig.layout.annotations, *labels],
        margin={"t": 80, "b": 10, "l": 10, "r": 10},
        **axes,
    )
    return style.styled(
        fig, "Which values share one mean: BN, LN, IN and GN", height=330, wide=True
    )


def mlp_axes(axes: Axes) -> go.Figure:
    """A real batch of the lesson's first layer (top row: the Linear output z) and what each
    normalizer makes of it (bottom row); outlined are the values that share the mean of the
    first digit's highlighted unit (``axes.unit``)."""
    n, d = axes.z.shape
    size = d // axes.groups
    u = axes.unit
    g0 = u // size * size
    gn = f"GN: digit #1, units {g0 + 1}-{g0 + size}" if size > 1 else f"GN: unit {u + 1} alone"
    titles = [f"BN: unit {u + 1} over the batch", "LN: digit #1 over its units", gn]
    titles += [f"after {kind} (γ = 1, β = 0)" for kind in ("BN", "LN", "GN")]
    fig = make_subplots(
        rows=2, cols=3, subplot_titles=titles, horizontal_spacing=0.05, vertical_spacing=0.2,
        shared_yaxes=True,
    )  # fmt: skip
    top = float(np.max(np.abs(axes.z)))
    rows = [f"#{i + 1} ({int(y)})" for i, y in enumerate(axes.digits)]
    units = list(range(1, d + 1))
    shapes: list[dict] = []
    for k, kind in enumerate(("BN", "LN", "GN"), start=1):
        for r, (values, zmax, bar_title) in enumerate(
            ((axes.z, top, "z"), (axes.out[kind], 3.0, "normalized")), start=1
        ):
            fig.add_trace(
                go.Heatmap(
                    z=np.round(values, 3).tolist(), x=units, y=rows, zmin=-zmax, zmax=zmax,
                    colorscale="RdBu", reversescale=True, showscale=k == 3,
                    colorbar={
                        "title": {"text": bar_title, "side": "right"}, "len": 0.4,
                        "y": 0.8 if r == 1 else 0.2, "thickness": 12,
                    },
                    hovertemplate="example %{y}, unit %{x}: %{z:.3f}<extra></extra>",
                ),
                row=r, col=k,
            )  # fmt: skip
            # shapes in one list, with their axes named: add_shape per subplot is slow
            idx = (r - 1) * 3 + k
            xref, yref = ("x", "y") if idx == 1 else (f"x{idx}", f"y{idx}")
            rr, cc = np.nonzero(axes.members(kind))
            shapes.append(
                dict(
                    type="rect", xref=xref, yref=yref, x0=cc.min() + 0.5, x1=cc.max() + 1.5,
                    y0=rr.min() - 0.5, y1=rr.max() + 0.5, line={"color": "black", "width": 3},
                )
            )  # fmt: skip
            if kind == "GN":
                shapes += [
                    dict(
                        type="line", xref=xref, yref=f"{yref} domain", x0=g * size + 0.5,
                        x1=g * size + 0.5, y0=0, y1=1,
                        line={"color": style.MUTED, "width": 1, "dash": "dot"},
                    )
                    for g in range(1, axes.groups)
                ]  # fmt: skip
    fig.update_layout(shapes=shapes)
    fig.update_yaxes(autorange="reversed", title_text="digit (label)", col=1)
    fig.update_xaxes(title_text="unit", row=2)
    fig.update_layout(margin={"t": 110})
    return style.styled(
        fig,
        f"Outlined: values that share one mean ({n} digits, layer 1)",
        height=600,
        wide=True,
    )


# --------------------------------------------------------------------------- the batch grid


def _bs_axis(fig: go.Figure, sizes: Sequence[int], **where) -> None:
    fig.update_xaxes(
        type="log", tickvals=list(sizes), ticktext=[str(int(m)) for m in sizes],
        title_text="batch size (log scale)", **where,
    )  # fmt: skip


def batch_size_chart(results: Sequence[KindResult]) -> go.Figure:
    """Final test error (log scale, as the Group Norm paper plots error) against batch size per
    normalization: the mean over seeds (line) and each net (small dots); a net that diverged is
    an x on the top edge."""
    fig = go.Figure()
    sizes = results[0].batch_sizes
    errors = [1.0 - r.final_acc for r in results]
    finite = np.concatenate([e[np.isfinite(e)] for e in errors] + [np.array([0.01, 0.1])])
    lo = max(1e-3, float(finite[finite > 0].min()) / 1.5) if (finite > 0).any() else 1e-3
    hi = min(1.0, float(finite.max()) * 1.5)
    for r, err in zip(results, errors, strict=True):
        name = r.name
        color = style.run_color(name)
        mean = 1.0 - r.mean_acc
        fig.add_trace(
            go.Scatter(
                x=sizes.tolist(), y=common.rounded(np.maximum(mean, lo), 4),
                mode="lines+markers", name=name, line=common.line(name),
                marker={"size": 9, "color": color}, legendgroup=name,
                customdata=[common.fmt_value(v) for v in r.lr],
                hovertemplate=f"{name}, batch %{{x}} (rate %{{customdata}}): "
                "%{y:.1%} error<extra></extra>",
            )
        )  # fmt: skip
        k = err.shape[1]
        xs = np.repeat(sizes, k) * np.tile(np.linspace(0.95, 1.05, k), len(sizes))
        fig.add_trace(
            go.Scatter(
                x=common.rounded(xs, 4), y=common.rounded(np.maximum(err.ravel(), lo), 4),
                mode="markers", marker={"size": 5, "color": style.rgba(color, 0.55)},
                name=f"{name}, each net", legendgroup=name, showlegend=False,
                hovertemplate=f"{name}, one net: %{{y:.1%}} error<extra></extra>",
            )
        )  # fmt: skip
        diverged = np.flatnonzero((r.diverged_at >= 0).any(axis=1))
        if diverged.size:
            fig.add_trace(
                go.Scatter(
                    x=sizes[diverged].tolist(), y=[hi / 1.2] * diverged.size, mode="markers",
                    marker={"symbol": "x", "size": 12, "color": color},
                    name=f"{name} diverged", legendgroup=name,
                    hovertemplate=f"{name}, batch %{{x}}: a net diverged<extra></extra>",
                )
            )  # fmt: skip
    _bs_axis(fig, sizes)
    ticks = [t for t in (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0) if lo <= t <= hi]
    fig.update_yaxes(
        type="log", range=[math.log10(lo), math.log10(hi)], tickvals=ticks,
        ticktext=[f"{100 * t:g}%" for t in ticks], title_text="test error = 1 − accuracy (log)",
    )  # fmt: skip
    return style.styled(
        fig,
        "Our nets: test error vs batch size",
    )


def paper_chart() -> go.Figure:
    """Wu & He (2018), Table 2: ResNet-50 ImageNet validation error by images per GPU."""
    fig = go.Figure()
    bn, gn = (np.array(GN_PAPER_ERROR[k]) for k in ("BN", "GN"))
    for name, errors in GN_PAPER_ERROR.items():
        above = (np.array(errors) >= np.maximum(bn, gn)).tolist()  # the upper label goes up
        fig.add_trace(
            go.Scatter(
                x=list(GN_PAPER_BATCH), y=list(errors), mode="lines+markers+text", name=name,
                text=[f"{e:.1f}" for e in errors],
                textposition=["top center" if a else "bottom center" for a in above],
                line=common.line(name), marker={"size": 9, "color": style.run_color(name)},
                hovertemplate=f"{name}, %{{x}} images per GPU: %{{y:.1f}}% error"
                "<extra></extra>",
            )
        )  # fmt: skip
    _bs_axis(fig, sorted(GN_PAPER_BATCH))
    fig.update_xaxes(title_text="images per GPU (log scale)")
    fig.update_yaxes(range=[22, 37], title_text="validation error (%)")
    return style.styled(fig, "Wu & He 2018: ResNet-50, ImageNet")


def gap_chart(results: Sequence[KindResult]) -> go.Figure:
    """Accuracy on the training split with batch statistics minus with running statistics
    (eval mode), per normalization, mean over seeds: 0 means train and test behave alike."""
    fig = go.Figure()
    sizes = results[0].batch_sizes
    for r in results:
        name = r.name
        gap = np.nanmean(r.gap, axis=1) if np.isfinite(r.gap).any() else r.gap[:, 0]
        fig.add_trace(
            go.Scatter(
                x=sizes.tolist(), y=common.rounded(100 * gap, 4), mode="lines+markers",
                name=name, line=common.line(name),
                marker={"size": 9, "color": style.run_color(name)},
                hovertemplate=f"{name}, batch %{{x}}: %{{y:+.2f}} points<extra></extra>",
            )
        )  # fmt: skip
    fig.add_hline(y=0, line={"color": style.MUTED, "width": 1})
    _bs_axis(fig, sizes)
    fig.update_yaxes(title_text="accuracy difference (points)")
    return style.styled(
        fig, "Train mode minus eval mode: accuracy on the training split", wide=True
    )


# --------------------------------------------------------------------------- dropout


def formula_chart(check: FormulaCheck, keep: float) -> go.Figure:
    """Li et al.'s ratio Var_test / Var_train against the keep probability: the formula for the
    input's mean (line), the zero-mean case (the diagonal, = p), and the measured ratio."""
    fig = go.Figure()
    p = check.keeps
    fig.add_trace(
        go.Scatter(
            x=[0, 1], y=[0, 1], mode="lines", name="mean 0: ratio = p",
            line={"color": style.MUTED, "dash": "dot", "width": 1.5},
            hovertemplate="mean 0: ratio = p<extra></extra>",
        )
    )  # fmt: skip
    grid = np.linspace(0.05, 1.0, 96)
    c = check.mean
    fig.add_trace(
        go.Scatter(
            x=common.rounded(grid, 4), y=common.rounded(grid if c == 0 else _li(grid, c), 5),
            mode="lines", name=f"formula, mean {c:g}, variance 1",
            line={"color": style.BN, "width": 2.5},
            hovertemplate="p %{x:.2f}: formula %{y:.4f}<extra></extra>",
        )
    )  # fmt: skip
    fig.add_trace(
        go.Scatter(
            x=p.tolist(), y=common.rounded(check.measured, 5), mode="markers",
            name=f"measured ({check.samples:,} values)",
            marker={"size": 10, "color": style.ACCENT, "symbol": "diamond"},
            error_y={"type": "data", "array": common.rounded(2 * check.stderr, 3),
                     "color": style.ACCENT},
            customdata=common.rounded(check.formula, 5),
            hovertemplate="p %{x:.1f}: measured %{y:.4f}, formula %{customdata:.4f}"
            "<extra></extra>",
        )
    )  # fmt: skip
    fig.add_vline(x=keep, line={"color": style.MUTED, "dash": "dash", "width": 1})
    fig.update_xaxes(range=[0, 1.02], title_text="keep probability p")
    fig.update_yaxes(range=[0, 1.02], title_text="Var_eval / Var_train")
    return style.styled(fig, "Li et al.'s formula vs measured")


def _li(p: Array, c: float) -> Array:
    return 1.0 / ((c * c + 1.0) / p - c * c)


def shift_chart(result: DropoutResult) -> go.Figure:
    """Per BN layer: Var_eval / Var_train of its input, measured in both nets, and the formula's
    value for the net with dropout in every block (the dropout right before the layer only)."""
    every, last = result.shifts[EVERY], result.shifts[LAST]
    layers = [f"BN layer {i}" for i in range(1, len(every.var_eval) + 1)]
    fig = go.Figure()
    for name, values, color, pattern in (
        ("every block, measured", every.layer_ratio, style.BN, ""),
        ("every block, formula", every.layer_predicted, style.rgba(style.BN, 0.35), "/"),
        ("last BN only, measured", last.layer_ratio, style.MUTED, ""),
    ):
        fig.add_trace(
            go.Bar(
                x=layers, y=common.rounded(values, 4), name=name,
                marker={"color": color, "pattern": {"shape": pattern}},
                hovertemplate=f"{name}<br>%{{x}}: %{{y:.3f}}<extra></extra>",
            )
        )  # fmt: skip
    fig.add_hline(y=1, line={"color": style.MUTED, "width": 1})
    fig.add_trace(  # a trace, so its label sits in the legend, off the bars
        go.Scatter(
            x=layers, y=[result.keep] * len(layers), mode="lines",
            line={"color": style.ACCENT, "dash": "dash", "width": 1.5},
            name=f"p = {result.keep:g}",
            hovertemplate=f"p = {result.keep:g}<extra></extra>",
        )
    )  # fmt: skip
    fig.update_layout(barmode="group", bargap=0.25)
    fig.update_yaxes(range=[0, 1.2], title_text="Var_eval / Var_train")
    return style.styled(fig, f"Variance shift, keep p = {result.keep:g}")


def dropout_accuracy(result: DropoutResult, no_dropout: float | None = None) -> go.Figure:
    """Test accuracy of the dropout nets (and of the BN net without dropout, if given), as dots
    on one axis (bars from 0 would hide differences of a point or two)."""
    rows = [
        (SHORT[EVERY], result.test_acc[EVERY], style.BN, "circle"),
        (SHORT[RECALIBRATED], result.test_acc[RECALIBRATED], style.BN, "diamond"),
        (SHORT[LAST], result.test_acc[LAST], style.LN, "square"),
    ]
    if no_dropout is not None:
        rows.insert(0, ("no dropout", no_dropout, style.MUTED, "star"))
    fig = go.Figure()
    names = [name.replace(", recalibrated", ",<br>recalibrated") for name, *_ in rows]
    values = [v for _, v, *_ in rows]
    fig.add_trace(
        go.Scatter(
            x=common.rounded(values, 4), y=names, mode="markers+text",
            marker={"size": 16, "color": [c for *_, c, _ in rows],
                    "symbol": [s for *_, s in rows]},
            text=["—" if not math.isfinite(v) else f"{v:.1%}" for v in values],
            textposition="middle right", showlegend=False,
            hovertemplate="%{y}: %{x:.1%}<extra></extra>",
        )
    )  # fmt: skip
    finite = [v for v in values if math.isfinite(v)] or [0.9]
    lo = max(0.0, math.floor(min(finite) * 20) / 20 - 0.05)
    ticks = [t / 100 for t in range(int(round(lo * 100)), 101, 5)]
    fig.update_xaxes(range=[lo, 1.06], tickformat=".0%", title_text="test accuracy", tickvals=ticks)
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(margin={"t": 70, "l": 20})
    return style.styled(fig, f"Test accuracy, keep p = {result.keep:g}")


# --------------------------------------------------------------------------- pitfalls


def batch_one_chart(one: BatchOne) -> go.Figure:
    """One digit alone through the first hidden layer: BN's input and output (= beta) in the BN
    net, LN's input and output in the LN net."""
    units = list(range(1, len(one.z_bn) + 1))
    fig = make_subplots(
        rows=1, cols=2, shared_yaxes=False, horizontal_spacing=0.08,
        subplot_titles=[
            "BN net: every unit outputs β",
            "LN net: normalized over its units",
        ],
    )  # fmt: skip
    for col, z, y, color, out_name in (
        (1, one.z_bn, one.y_bn, style.BN, "BN output at batch 1"),
        (2, one.z_ln, one.y_ln, style.LN, "LN output"),
    ):
        fig.add_trace(
            go.Bar(
                x=units, y=common.rounded(z, 4), name="input z (the Linear output)",
                marker={"color": CELL_SIDE}, showlegend=col == 1, legendgroup="z",
                hovertemplate="unit %{x}: z = %{y:.3f}<extra></extra>",
            ),
            row=1, col=col,
        )  # fmt: skip
        fig.add_trace(
            go.Scatter(
                x=units, y=common.rounded(y, 4), mode="markers", name=out_name,
                marker={"size": 7, "color": color},
                hovertemplate=f"unit %{{x}}: {out_name} %{{y:.3f}}<extra></extra>",
            ),
            row=1, col=col,
        )  # fmt: skip
    fig.add_trace(
        go.Scatter(
            x=units, y=common.rounded(one.beta, 4), mode="lines", name="learned β",
            line={"color": "black", "width": 1, "dash": "dot"},
            hovertemplate="unit %{x}: β = %{y:.3f}<extra></extra>",
        ),
        row=1, col=1,
    )  # fmt: skip
    fig.update_xaxes(title_text="unit of hidden layer 1")
    fig.update_yaxes(title_text="value", col=1)
    return style.styled(
        fig, f"Test digit #{one.digit} (a {one.label}) as a batch of one", height=460, wide=True
    )


def sequences_chart(seqs: Sequences) -> go.Figure:
    """Top: a batch of sequences, one bar per sequence over its time steps, and a longer test
    sequence. Bottom: how many values one normalization statistic averages over at step t: BN
    per time step (the sequences still running), LayerNorm (the units of one example)."""
    fig = make_subplots(
        rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.14, row_heights=[0.55, 0.45],
        subplot_titles=[
            f"{len(seqs.lengths)} training sequences and a longer test one",
            "values one mean is taken over, at time step t",
        ],
    )  # fmt: skip
    names = [f"sequence {i + 1}" for i in range(len(seqs.lengths))] + ["test sequence"]
    lengths = [*seqs.lengths.tolist(), seqs.test_length]
    colors = [CELL_SIDE] * len(seqs.lengths) + [style.ACCENT]
    fig.add_trace(
        go.Bar(
            x=lengths, y=names, base=0.5, orientation="h", marker={"color": colors},
            showlegend=False, hovertemplate="%{y}: %{x} steps<extra></extra>",
        ),
        row=1, col=1,
    )  # fmt: skip
    fig.add_trace(
        go.Scatter(
            x=seqs.steps.tolist(), y=[int(v) if v > 0 else None for v in seqs.bn_count],
            mode="lines", name="BN per time step",
            line={"color": style.BN, "width": 2.5, "shape": "hv"},
            hovertemplate="step %{x}: BN averages over %{y} examples<extra></extra>",
        ),
        row=2, col=1,
    )  # fmt: skip
    fig.add_trace(
        go.Scatter(
            x=seqs.steps.tolist(), y=[seqs.ln_count] * len(seqs.steps), mode="lines",
            name=f"LayerNorm ({seqs.ln_count} units of one example)",
            line={"color": style.LN, "width": 2.5},
            hovertemplate=f"step %{{x}}: LN averages over {seqs.ln_count} units<extra></extra>",
        ),
        row=2, col=1,
    )  # fmt: skip
    fig.add_vrect(
        x0=seqs.last_shared + 0.5, x1=seqs.test_length + 0.5, fillcolor=style.ACCENT,
        opacity=0.1, line_width=0, row=2, col=1,
    )  # fmt: skip
    fig.add_hline(y=1, line={"color": style.ACCENT, "dash": "dot", "width": 1}, row=2, col=1)
    fig.add_annotation(
        x=(seqs.last_shared + seqs.test_length) / 2 + 0.5, y=math.log10(8), row=2, col=1,
        text="one example per step,<br>then none: no statistics", showarrow=False,
        font={"color": style.ACCENT, "size": 13},
    )  # fmt: skip
    fig.update_yaxes(showticklabels=False, row=1, col=1, autorange="reversed")
    ticks = [1, 2, 4, 8, 16, 32, 64]
    fig.update_yaxes(
        type="log", title_text="values (log)", tickvals=ticks, ticktext=[str(t) for t in ticks],
        range=[-0.1, 2.0], row=2, col=1,
    )  # fmt: skip
    fig.update_xaxes(title_text="time step t", row=2, col=1)
    return style.styled(
        fig, "BN in a recurrent net: statistics per time step", height=560, wide=True
    )
