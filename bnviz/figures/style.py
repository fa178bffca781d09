"""One look for every figure: run colors, fonts, margins, and names students can read.

A color per normalization (Okabe-Ito colors, safe for the common kinds of color blindness),
the same on every page, so a student never has to reread a legend: plain orange, BN blue,
LayerNorm green, GroupNorm purple. The dash is the second cue (for print and grayscale): plain
dashed, normalized nets solid, noise dotted, dropout dash-dotted.
"""

from __future__ import annotations

import plotly.graph_objects as go
import plotly.io as pio

PLAIN = "#E69F00"  # Okabe-Ito orange
BN = "#0072B2"  # Okabe-Ito blue
LN = "#009E73"  # Okabe-Ito bluish green
GN = "#CC79A7"  # Okabe-Ito reddish purple
ACCENT = "#D55E00"  # Okabe-Ito vermillion: divergence marks and warnings
MUTED = "#555555"  # reference outlines (e.g. the step-0 histogram) and notes
GRID = "#E5E5E5"

RUN_COLORS = {"plain": PLAIN, "BN": BN, "LN": LN, "GN": GN}
RUN_DASH = {"plain": "dash", "BN": "solid", "LN": "solid", "GN": "solid"}

FONT_FAMILY = "Inter, 'Segoe UI', 'Helvetica Neue', Arial, sans-serif"
FONT_SIZE = 14
MARGIN = {"l": 72, "r": 20, "t": 105, "b": 55}  # top: title, legend under it, panel titles
HEIGHT = 440  # one row of panels on a wide page
HEIGHT_ANIMATED = 520  # room for the slider and the play button under the panels

_ACTIVATION_NAMES = {"sigmoid": "sigmoid", "tanh": "tanh", "relu": "ReLU", "linear": "linear"}


def _kind(run: str) -> str:
    """The normalization a run's label names: "noisy BN" is BN, "plain + noise" plain."""
    for kind in ("BN", "LN", "GN", "plain"):
        if kind in run.replace("+", " ").split():
            return kind
    raise ValueError(f"run must name one of {', '.join(RUN_COLORS)}; got {run!r}")


def run_color(run: str) -> str:
    """The color of a run by its label ("plain", "BN", "noisy BN", "LN + dropout", ...)."""
    return RUN_COLORS[_kind(run)]


def run_dash(run: str) -> str:
    """The dash of a run by its label: its kind's, dotted with noise, dash-dot with dropout."""
    if "noise" in run or "noisy" in run:
        return "dot"
    if "dropout" in run:
        return "dashdot"
    return RUN_DASH[_kind(run)]


def rgba(hex_color: str, alpha: float) -> str:
    """A '#RRGGBB' color at opacity alpha, for fills that must not hide what is under them."""
    h = hex_color.lstrip("#")
    r, g, b = (int(h[i : i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha:g})"


def label(site: str, activation: str = "sigmoid") -> str:
    """A recording site as students say it: "act_in" -> "sigmoid input", "bn_in" -> "BN input"."""
    act = _ACTIVATION_NAMES.get(activation, activation)
    names = {"act_in": f"{act} input", "bn_in": "BN input", "bn_out": "BN output"}
    try:
        return names[site]
    except KeyError:
        raise ValueError(f"site must be one of {', '.join(names)}; got {site!r}") from None


def _template() -> go.layout.Template:
    t = go.layout.Template(pio.templates["plotly_white"])
    t.layout.update(
        font={"family": FONT_FAMILY, "size": FONT_SIZE, "color": "#222222"},
        # from the chart's left edge, not the plot's: there a title has the chart's whole
        # width (from the plot's edge a narrow chart cut it: "Test accuracy over trainin")
        title={"font": {"size": FONT_SIZE + 4}, "x": 0.01, "xanchor": "left", "xref": "container"},
        colorway=[PLAIN, BN, ACCENT, MUTED],
        margin=MARGIN,
        hoverlabel={"font": {"family": FONT_FAMILY, "size": FONT_SIZE - 1}},
        legend={
            "orientation": "h",
            "traceorder": "normal",  # grouped legends break a row at every group
            "xanchor": "left",
            "x": 0.0,
            "yanchor": "top",
            "yref": "container",
        },
    )
    # automargin: long axis titles and tick labels push the margin out instead of being cut
    axis = dict(gridcolor=GRID, zeroline=False, showline=True, linecolor="#999999", automargin=True)
    t.layout.xaxis.update(axis)
    t.layout.yaxis.update(axis)
    return t


TEMPLATE = _template()


# characters on one title line: a chart in half the page holds about 44 on a 1280-pixel
# projector with the sidebar open; one across the page about twice that
TITLE_WIDTH = 44
TITLE_WIDTH_WIDE = 88
TITLE_LINE = 22  # pixels a second title line takes


def wrap_title(title: str, width: int = TITLE_WIDTH) -> tuple[str, int]:
    """The title broken into lines of at most ``width`` characters at spaces, and the count of
    lines (plotly does not wrap titles: a long one runs off a half-width chart)."""
    lines: list[str] = []
    for word in title.split(" "):
        if lines and len(lines[-1]) + 1 + len(word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return "<br>".join(lines), len(lines)


LEGEND_ROW = 24  # pixels a legend row takes
LEGEND_WIDTH = 300  # pixels a legend row has on a half-width chart on a projector


def legend_rows(fig: go.Figure, wide: bool = False) -> int:
    """About how many rows the horizontal legend takes on the narrowest screen it is shown on
    (a 1280-pixel projector), from its entries' lengths: the room kept for it above the
    panels, so a second row does not run into the panel titles."""
    names = []
    for t in fig.data:
        if t.showlegend is not False and t.name and (t.showlegend or t.name not in names):
            names.append(t.name)
    width = LEGEND_WIDTH * (2 if wide else 1)
    rows, used = 1, 0.0
    for name in names:
        item = 45 + 7.5 * len(name)  # symbol and gap, then text at the house font size
        if used and used + item > width:
            rows, used = rows + 1, 0.0
        used += item
    return rows


def styled(fig: go.Figure, title: str, height: int = HEIGHT, wide: bool = False) -> go.Figure:
    """Apply the house template, a title and a height; returns the same figure. ``wide``: the
    chart spans the page (its title may run twice as long before it wraps).

    The title and the legend stack in the top margin at fixed pixel offsets (legends in the
    plot area would cover data, and above the panels they would collide with panel titles);
    a title that needs a second line pushes the legend and the panels down by one line, and a
    legend that needs a second row pushes the panels down by one row.
    """
    text, lines = wrap_title(title, TITLE_WIDTH_WIDE if wide else TITLE_WIDTH)
    title_extra = TITLE_LINE * (lines - 1)
    extra = title_extra + LEGEND_ROW * (legend_rows(fig, wide) - 1)
    top = fig.layout.margin.t if fig.layout.margin.t is not None else MARGIN["t"]
    fig.update_layout(
        template=TEMPLATE,
        height=height + extra,
        margin={"t": top + extra},
        title={
            "text": text,
            "y": 1.0 - 12.0 / (height + extra),
            "yanchor": "top",
            "yref": "container",
        },
        legend={"y": 1.0 - (44.0 + title_extra) / (height + extra)},
    )
    return fig


def projected(fig: go.Figure, scale: float) -> go.Figure:
    """A copy of a styled figure with its type ``scale`` times larger, for a projector: fonts,
    the top and bottom margins, and the title's and the legend's pixel offsets grow; the plot
    area keeps its height. The figure itself is left alone (figures are cached and shared)."""
    out = go.Figure(fig)
    if (out.layout.meta or {}).get("projected"):
        return out
    layout = out.layout
    height = layout.height or HEIGHT
    top = layout.margin.t if layout.margin.t is not None else MARGIN["t"]
    bottom = layout.margin.b if layout.margin.b is not None else MARGIN["b"]
    new_height = height + (scale - 1) * (top + bottom)

    def from_top(y: float | None, default: float) -> float:
        """A container y (fraction from the bottom) at ``scale`` times its distance from the top."""
        y = default if y is None else y
        return 1.0 - (1.0 - y) * height * scale / new_height

    base = layout.font.size or FONT_SIZE
    out.update_layout(
        font={"size": round(base * scale)},
        height=round(new_height),
        margin={"t": round(top * scale), "b": round(bottom * scale)},
        title={"font": {"size": round((layout.title.font.size or base + 4) * scale)}},
        meta={"projected": True},
    )
    if layout.title.yref == "container":
        out.update_layout(title={"y": from_top(layout.title.y, 1.0)})
    if layout.legend.yref == "container":
        out.update_layout(legend={"y": from_top(layout.legend.y, 1.0)})
    for a in out.layout.annotations:
        if a.font.size:
            a.font.size = round(a.font.size * scale)
    for trace in out.data:
        font = getattr(trace, "textfont", None)
        if font is not None and font.size:
            trace.textfont.size = round(font.size * scale)
    return out
