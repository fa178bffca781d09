"""Figures for the lesson "Backprop through BN", drawn from ``bnviz.experiments.backprop``.

Pure functions of a ``Check``: the computation graph with the checked unit's numbers on it,
the finite-difference error over h, and the unit's gradient computed every way.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from bnviz.experiments.backprop import Check, TorchCheck
from bnviz.figures import common, style

Array = np.ndarray
BACK = style.ACCENT  # the backward pass
FORWARD = "#333333"

# node: (x, y, label) on a 0..10 x 0..4 canvas
NODES = {
    "x": (0.7, 2.0),
    "mu": (2.5, 3.45),
    "xc": (4.1, 2.0),
    "var": (5.6, 3.45),
    "x_hat": (7.0, 2.0),
    "y": (8.6, 2.0),
    "gb": (8.6, 3.6),
    "L": (10.3, 2.0),
}
EDGES = (  # forward edges; the backward pass runs each the other way
    ("x", "mu"),
    ("x", "xc"),
    ("mu", "xc"),
    ("xc", "var"),
    ("xc", "x_hat"),
    ("var", "x_hat"),
    ("x_hat", "y"),
    ("gb", "y"),
    ("y", "L"),
)
BOX = (0.68, 0.36)  # half width and half height of a node
BIG = (0.95, 0.55)  # the nodes that also print their gradient
BOXES = {"mu": BIG, "var": BIG, "gb": BIG}
LABEL_AT = {  # where the gradients of the horizontal backward arrows are written
    ("y", "L"): (9.45, 1.5),
    ("x_hat", "y"): (7.8, 1.5),
    ("x", "xc"): (2.4, 1.5),
}
UPSTREAM_NAMES = {"loss": "the real loss", "random": "random", "constant": "the same everywhere"}


def _clip(box: tuple[float, float], ux: float, uy: float) -> float:
    """How far from a box's centre a ray in direction (ux, uy) leaves the box."""
    return min(box[0] / abs(ux) if ux else np.inf, box[1] / abs(uy) if uy else np.inf)


def _edge_points(a: str, b: str, shift: float) -> tuple[float, float, float, float]:
    """Start and end of an arrow from node a to node b, clipped to the boxes and moved
    ``shift`` perpendicular to the edge (forward above, backward below)."""
    (x0, y0), (x1, y1) = NODES[a], NODES[b]
    dx, dy = x1 - x0, y1 - y0
    length = float(np.hypot(dx, dy))
    ux, uy = dx / length, dy / length
    ta, tb = _clip(BOXES.get(a, BOX), ux, uy), _clip(BOXES.get(b, BOX), ux, uy)
    px, py = -uy * shift, ux * shift
    return x0 + ux * ta + px, y0 + uy * ta + py, x1 - ux * tb + px, y1 - uy * tb + py


def graph(c: Check) -> go.Figure:
    """BN's computation graph for one unit: forward arrows in black, the backward pass in
    vermillion, each node and gradient with this batch's number."""
    j = c.unit
    s = c.steps

    def back(text: str) -> str:
        return f'<span style="color:{BACK}">{text}</span>'

    labels = {
        "x": f"<b>x</b><br>{c.m} inputs",
        "mu": f"<b>μ_B</b> = {c.cache.mu[j]:.4g}<br>{back(f'∂L/∂μ = {s.dmu[j]:.3g}')}",
        "xc": "<b>x − μ_B</b>",
        "var": f"<b>σ_B²</b> = {c.cache.var[j]:.4g}<br>{back(f'∂L/∂σ² = {s.dvar[j]:.3g}')}",
        "x_hat": "<b>x̂</b>",
        "y": "<b>y = γx̂ + β</b>",
        "gb": f"<b>γ, β</b> = {c.batch.gamma[j]:.3g}, {c.batch.beta[j]:.3g}<br>"
        + back(f"∂L/∂γ = {c.dgamma[j]:.3g}<br>∂L/∂β = {c.dbeta[j]:.3g}"),
        "L": "<b>L</b>",
    }
    grads = {  # the gradient each horizontal backward arrow carries
        ("y", "L"): "∂L/∂y",
        ("x_hat", "y"): "∂L/∂x̂ = γ ∂L/∂y",
        ("x", "xc"): "∂L/∂x",
    }
    fig = go.Figure()
    shapes = []
    for name, (x, y) in NODES.items():
        fill = style.rgba(style.BN, 0.12) if name != "L" else style.rgba(BACK, 0.12)
        w, h = BOXES.get(name, BOX)
        shapes.append(
            {"type": "rect", "x0": x - w, "x1": x + w, "y0": y - h, "y1": y + h,
             "line": {"color": "#555555", "width": 1.5}, "fillcolor": fill, "layer": "below"}
        )  # fmt: skip
        fig.add_annotation(x=x, y=y, text=labels[name], showarrow=False, font={"size": 14})
    for a, b in EDGES:
        x0, y0, x1, y1 = _edge_points(a, b, 0.08)
        fig.add_annotation(
            x=x1, y=y1, ax=x0, ay=y0, xref="x", yref="y", axref="x", ayref="y", text="",
            showarrow=True, arrowhead=2, arrowsize=1.2, arrowwidth=2, arrowcolor=FORWARD,
        )  # fmt: skip
        x0, y0, x1, y1 = _edge_points(a, b, -0.1)
        fig.add_annotation(
            x=x0, y=y0, ax=x1, ay=y1, xref="x", yref="y", axref="x", ayref="y", text="",
            showarrow=True, arrowhead=2, arrowsize=1.2, arrowwidth=2, arrowcolor=BACK,
        )  # fmt: skip
        if (a, b) in grads:
            x, y = LABEL_AT[(a, b)]
            fig.add_annotation(
                x=x, y=y, text=grads[(a, b)], showarrow=False, font={"color": BACK, "size": 14}
            )
    fig.add_annotation(
        x=NODES["L"][0], y=NODES["L"][1] - 0.8,
        text=f"upstream ∂L/∂y:<br>{UPSTREAM_NAMES[c.upstream]}",
        showarrow=False, font={"color": BACK, "size": 13},
    )  # fmt: skip
    fig.update_layout(shapes=shapes)
    fig.update_xaxes(visible=False, range=[-0.1, 11.1])
    fig.update_yaxes(visible=False, range=[0.6, 4.25])
    fig.update_layout(margin={"t": 60, "b": 10, "l": 10, "r": 10})
    return style.styled(
        fig,
        f"Unit #{j}: forward pass in black, backward in vermillion",
        400,
        wide=True,
    )


def h_sweep(c: Check) -> go.Figure:
    """The finite-difference error against h on log-log axes, with the h^2 and 1/h guides."""
    sw = c.sweep
    fig = go.Figure()
    for guide, name, dash in (
        (sw.trunc_guide, "∝ h² (truncation)", "dash"),
        (sw.round_guide, "∝ 1/h (rounding)", "dot"),
    ):
        fig.add_trace(
            go.Scatter(
                x=sw.h.tolist(), y=common.rounded(guide, 4), mode="lines", name=name,
                line={"color": style.MUTED, "dash": dash, "width": 2}, hoverinfo="skip",
            )
        )  # fmt: skip
    fig.add_trace(
        go.Scatter(
            x=sw.h.tolist(), y=common.rounded(sw.error, 4), mode="lines+markers",
            name="measured relative error", line={"color": style.BN, "width": 2.5},
            marker={"size": 8}, hovertemplate="h = %{x:.0e}: %{y:.2e}<extra></extra>",
        )
    )  # fmt: skip
    fig.add_vline(x=c.h, line={"color": BACK, "width": 2})
    fig.add_annotation(
        x=float(np.log10(c.h)), y=1.0, yref="paper", text=f"your h = {c.h:g}",
        showarrow=False, xanchor="left", yanchor="bottom", xshift=4, font={"color": BACK},
    )  # fmt: skip
    ok = sw.error[np.isfinite(sw.error) & (sw.error > 0)]
    lo = float(ok.min()) if ok.size else 1e-16
    hi = float(ok.max()) if ok.size else 1.0
    fig.update_xaxes(type="log", title_text="finite-difference step h", exponentformat="power")
    fig.update_yaxes(
        type="log", title_text="relative error vs the compact form", exponentformat="power",
        range=[np.log10(lo) - 0.5, np.log10(hi) + 0.5],
    )  # fmt: skip
    fig.update_layout(margin={"t": 125})
    return style.styled(fig, f"Finite differences, unit #{c.unit}", 440)


def per_example(c: Check, torch_check: TorchCheck | None = None) -> go.Figure:
    """The unit's dL/dx_i against x_hat_i, by every method, and what it would be if mu_B and
    sigma_B^2 were constants (the naive g / sqrt(var + eps))."""
    j = c.unit
    xh = c.cache.x_hat[:, j]
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=common.rounded(xh), y=common.rounded(c.naive, 8), mode="markers",
            marker={"color": style.MUTED, "size": 9, "symbol": "diamond-open",
                    "line": {"width": 1.5, "color": style.MUTED}},
            name="if μ_B, σ_B² were constants: γ ∂L/∂y / √(σ²+ε)",
            hovertemplate="x̂ = %{x:.3f}: %{y:.4g}<extra></extra>",
        )
    )  # fmt: skip
    series = [
        ("compact form", c.dx[:, j], {"size": 11, "color": style.BN}, "circle"),
        ("paper's chain rule", c.steps.dx[:, j], {"size": 6, "color": "#222222"}, "circle"),
        (f"finite differences, h = {c.h:g}", c.fd, {"size": 10, "color": BACK}, "x-thin-open"),
    ]
    if torch_check is not None:
        series.append(
            ("PyTorch autograd", torch_check.dx[:, j], {"size": 12, "color": style.LN},
             "cross-thin-open")
        )  # fmt: skip
    for name, values, marker, symbol in series:
        fig.add_trace(
            go.Scatter(
                x=common.rounded(xh), y=common.rounded(values, 10), mode="markers",
                marker={**marker, "symbol": symbol, "line": {"width": 2, "color": marker["color"]}},
                name=name, hovertemplate="x̂ = %{x:.3f}: %{y:.6g}<extra></extra>",
            )
        )  # fmt: skip
    fig.update_xaxes(title_text=f"x̂ of unit #{j}")
    fig.update_yaxes(title_text="∂L/∂x", exponentformat="e")
    fig.update_layout(margin={"t": 150})
    return style.styled(fig, f"∂L/∂x of unit #{j}, per example", 470)
