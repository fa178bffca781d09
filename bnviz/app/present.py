"""Presenter mode: a page as a class sees it on a projector.

A toggle in the sidebar, kept in the URL (``?present=1``), so a teacher can open a prepared
link straight into it. It enlarges the text and the charts' type, starts with the sidebar
collapsed, shows each "predict first" prompt large with the answer behind a button, and puts
"what to notice" beside the figure it is about.
"""

from __future__ import annotations

import streamlit as st

from bnviz.app.controls import TRUE_WORDS

KEY = "present"
LABEL = "Presenter mode"
CHART_SCALE = 1.45  # chart type on a projector, relative to the desk view

BASE_CSS = """
<style>
[class*="st-key-bnviz-predict"] { background: #EEF5FB; border-color: #0072B2 !important; }
</style>
"""
CSS = """
<style>
[data-testid="stMain"] [data-testid="stMarkdownContainer"] p,
[data-testid="stMain"] [data-testid="stMarkdownContainer"] li {
  font-size: 1.45rem; line-height: 1.45;
}
[data-testid="stMain"] h1 { font-size: 3.2rem; }
[data-testid="stMain"] h2, [data-testid="stMain"] h3 { font-size: 2.2rem; }
[data-testid="stMetricValue"] * { font-size: 2.6rem !important; }
[data-testid="stMetricLabel"] p { font-size: 1.25rem !important; }
[data-testid="stCaptionContainer"] p { font-size: 1.2rem; }
[class*="st-key-bnviz-predict"] p { font-size: 2.1rem !important; line-height: 1.35; }
</style>
"""


def on() -> bool:
    """Whether this session presents (read from the URL on its first run)."""
    if KEY not in st.session_state:
        st.session_state[KEY] = st.query_params.get(KEY, "").lower() in TRUE_WORDS
    return bool(st.session_state[KEY])


def query() -> dict[str, str]:
    """The URL parameter that keeps the mode in a link."""
    return {KEY: "1"} if on() else {}


def sidebar_state() -> str:
    """How the sidebar starts: collapsed on a projector, Streamlit's choice otherwise."""
    return "collapsed" if on() else "auto"


def frame() -> None:
    """The toggle (in the sidebar) and, when on, the larger type; keeps the URL in step."""
    on()
    st.sidebar.toggle(
        LABEL,
        key=KEY,
        help="Larger type for a projector, the sidebar folded away, predictions before the "
        "answers. Kept in the link.",
    )
    st.markdown(BASE_CSS + (CSS if on() else ""), unsafe_allow_html=True)
    if on():
        st.query_params[KEY] = "1"
    elif KEY in st.query_params:
        del st.query_params[KEY]
