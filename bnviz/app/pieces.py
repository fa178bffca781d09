"""The pieces every page is laid out with: its lead, notices, formulas, charts, downloads.

Pages only lay out widgets, words and figures; what a piece looks like is decided here once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import streamlit as st

from bnviz.app.controls import slug


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
    """Download buttons side by side: label -> (data maker, file name)."""
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
        )
