"""The pieces every page is laid out with: its lead, notices, formulas, charts, downloads.

Pages only lay out widgets, words and figures; what a piece looks like is decided here once.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import streamlit as st

from bnviz.app.controls import slug

_MARKDOWN = "\\`*_{}[]()#+-.!|<>~$&:"


def as_text(text: str) -> str:
    """Text (from a link, a value, an error) for a Markdown element, shown as written: every
    character Markdown, HTML or LaTeX would read is escaped, so a link such as
    ``?lr=[Log in](http://example.com)`` prints brackets, not a live link."""
    return "".join("\\" + ch if ch in _MARKDOWN else ch for ch in str(text))


def as_code(text: str) -> str:
    """Text as a Markdown code span: shown character for character, never a link, a heading
    or HTML (GFM turns a bare URL into a link even when escaped; inside a code span it
    cannot). The fence is longer than any run of backticks in the text."""
    text = str(text).replace("\n", " ")
    fence = "`" * (max((len(run) for run in re.findall("`+", text)), default=0) + 1)
    return f"{fence} {text} {fence}"


def cannot_run(err: Exception) -> None:
    """The message a page shows for settings that cannot run."""
    st.error(f"These settings cannot run: {as_text(err)}", icon=":material/error:")


def divergence_notes(runs: Iterable[Any]) -> None:
    """Say plainly which runs diverged and when: divergence is a result, not a crash."""
    for h in runs:
        if h.diverged_at is not None:
            st.warning(
                f"The {h.label} net **diverged at step {h.diverged_at:,}**: its loss became "
                "non-finite or grew a hundredfold, so training stopped there. Everything it "
                "recorded until then is shown.",
                icon=":material/trending_up:",
            )


def lead(text: str) -> None:
    """The paragraph under the lesson's title (``app.py`` draws the title itself)."""
    st.markdown(text)


def notice_box(title: str, body: str, expanded: bool = True) -> None:
    with st.expander(title, expanded=expanded):
        st.markdown(body)


def formulas(*latex: str) -> None:
    for expr in latex:
        st.latex(expr)


def chart(fig: Any, key: str | None = None) -> None:
    """A plotly figure with the modebar's PNG export named after the chart."""
    name = slug(fig.layout.title.text or key or "bnviz")
    st.plotly_chart(
        fig,
        key=key,
        theme=None,
        config={"displaylogo": False, "toImageButtonOptions": {"filename": name, "scale": 2}},
    )


def downloads(files: Mapping[str, tuple[Callable[[], bytes | str], str]], key: str) -> None:
    """Download buttons side by side: label -> (data maker, file name). A click does not
    rerun the page: a rerun drops the files other buttons registered, so a second download
    clicked within a moment of the first arrived as nothing."""
    cols = st.columns(len(files))
    for col, (label, (make, filename)) in zip(cols, files.items(), strict=True):
        mime = "text/csv" if filename.endswith(".csv") else "application/octet-stream"
        col.download_button(
            label,
            make,
            file_name=filename,
            mime=mime,
            key=f"{key}:{filename}",
            icon=":material/download:",
            on_click="ignore",
        )
