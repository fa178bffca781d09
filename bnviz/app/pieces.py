"""The pieces every page is laid out with: its lead, notices, formulas, charts, downloads.

Pages only lay out widgets, words and figures; what a piece looks like is decided here once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import streamlit as st

from bnviz.app import present
from bnviz.app.controls import slug
from bnviz.app.safe_text import as_text


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


class Notes:
    """A page's "what to notice": beside the figure it is about in presenter mode
    (``with notes.beside():`` around the figure), in a box further down otherwise
    (``notes.box()``, which presenter mode skips once they are shown beside)."""

    def __init__(self, title: str, body: str) -> None:
        self.title, self.body, self.shown = title, body, False

    @contextmanager
    def beside(self) -> Iterator[None]:
        if not present.on():
            yield
            return
        main, side = st.columns([3, 2], gap="large")
        with side:
            st.markdown(f"**{self.title}**")
            st.markdown(self.body)
        self.shown = True
        with main:
            yield

    def box(self) -> None:
        if not self.shown:
            notice_box(self.title, self.body)


def lesson_link(stem: str, label: str) -> bool:
    """A link to another lesson, drawn only where that lesson exists (no dead references);
    returns whether it was drawn."""
    from bnviz.app.lessons import BY_STEM

    lesson = BY_STEM.get(stem)
    if lesson is None:
        return False
    st.page_link(lesson.path, label=label, icon=lesson.icon)
    return True


def predict(key: str, question: str, gate: bool = True) -> bool:
    """A "predict first" prompt before a result; returns whether the result is shown now. In
    presenter mode the prompt is large and (with ``gate``) the result waits for a button, so
    the class commits to a guess before it sees the answer. ``gate=False``: the page reveals
    the answer itself (a "what this run shows" box, a guess to submit)."""
    box = st.container(border=True, key=f"bnviz-predict-{slug(key)}")
    box.markdown(f":material/psychology_alt: **Predict first.** {question}")
    if not present.on() or not gate:
        return True
    revealed = f"{key}.revealed"
    if st.session_state.get(revealed):
        return True
    box.button(
        "Show the answer",
        key=f"{key}.reveal",
        type="primary",
        icon=":material/visibility:",
        on_click=st.session_state.__setitem__,
        args=(revealed, True),
    )
    return False


def predict_choice(
    key: str, question: str, options: list[str], answer: str, expanded: bool = False
) -> Any | None:
    """A "predict first" prompt with a multiple-choice guess (radio ``<page>.predict-<name>``
    for ``key`` ``<page>.<name>``): returns the "Reveal" expander, which already says "Right."
    to a right guess, once the answer may be shown, else None. The caller writes the answer
    into it."""
    shown = predict(key, question)
    page, _, name = key.rpartition(".")
    guess = st.radio("Your guess", options, index=None, key=f"{page}.predict-{name}")
    if not shown:
        return None
    reveal = st.expander("Reveal", expanded=expanded)
    if guess == answer:
        reveal.markdown("Right.")
    return reveal


def formulas(*latex: str) -> None:
    for expr in latex:
        st.latex(expr)


def chart(fig: Any, key: str | None = None) -> None:
    """A plotly figure with the modebar's PNG export named after the chart (its type enlarged
    in presenter mode)."""
    if present.on():
        from bnviz.figures.style import projected

        fig = projected(fig, present.CHART_SCALE)
    name = slug((fig.layout.title.text or key or "bnviz").replace("<br>", " "))
    st.plotly_chart(
        fig,
        key=key,
        theme=None,
        config={"displaylogo": False, "toImageButtonOptions": {"filename": name, "scale": 2}},
    )


DOWNLOADS_PER_ROW = 3


def downloads(files: Mapping[str, tuple[Callable[[], bytes | str], str]], key: str) -> None:
    """Download buttons side by side: label -> (data maker, file name). A click does not
    rerun the page: a rerun drops the files other buttons registered, so a second download
    clicked within a moment of the first arrived as nothing. Three to a row, so a label
    reads whole at 1280 px."""
    per_row = min(len(files), DOWNLOADS_PER_ROW)
    cols = [c for _ in range(0, len(files), per_row) for c in st.columns(per_row)]
    for col, (label, (make, filename)) in zip(cols, files.items(), strict=False):
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
