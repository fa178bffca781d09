"""Home: a precomputed twin run animated at once, three sentences of context, the lessons."""

import streamlit as st

from bnviz import ui
from bnviz.lessons import LESSONS

RUN = "paper-figure-1"
LAYER = 3


@st.cache_resource(show_spinner=False)
def home_figure():
    """Built once per server from the shipped run: the first paint must not wait on training.
    Imported here, after the text is on screen: plotly and the run take about a second to
    load on a fresh server."""
    from bnviz import assets
    from bnviz.figures import drift as figs

    return figs.twin_histograms(assets.load(RUN), LAYER, "act_in")


ui.header(
    "Internal covariate shift, visualized",
    "Below, two real networks learn to read handwritten digits, trained side by side from the "
    "same initial weights on the same batches: one plain, one with **Batch Normalization**. "
    "Press play to watch what the last hidden layer's sigmoid units receive as input over "
    "50,000 training steps: in the plain net it drifts and spreads; with BN it holds still. "
    "Ioffe and Szegedy (2015) blamed that drift, which they named *internal covariate shift*, "
    "for slow training; the lessons let you train the nets yourself and test the idea.",
)
ui.chart(home_figure(), key="home-hist")

st.subheader("Lessons")
for lesson in LESSONS:
    if lesson.slug == "home":
        continue
    with st.container(border=True):
        st.page_link(lesson.path, label=lesson.title, icon=lesson.icon)
        st.caption(lesson.summary)
