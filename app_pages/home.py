"""Home: a precomputed twin run animated at once, three sentences of context, the lessons."""

import streamlit as st

from bnviz.app import pieces
from bnviz.app.lessons import by_section

RUN = "paper-figure-1"
LAYER = 3


@st.cache_resource(show_spinner=False)
def home_figure():
    """Built once per server from the shipped run: the first paint must not wait on training.
    Imported here, after the text is on screen: plotly and the run take about a second to
    load on a fresh server."""
    from bnviz import assets
    from bnviz.figures import animate

    return animate.histograms_over_training(assets.load(RUN), LAYER, "act_in")


pieces.lead(
    "Below, two real networks learn to read handwritten digits, trained side by side from the "
    "same initial weights on the same batches: one plain, one with **Batch Normalization**. "
    "Press play to watch what the last hidden layer's sigmoid units receive as input over "
    "50,000 training steps: in the plain net it drifts and spreads; with BN it holds still. "
    "Ioffe and Szegedy (2015) blamed that drift, which they named *internal covariate shift*, "
    "for slow training; the lessons let you train the nets yourself and test the idea.",
)
pieces.chart(home_figure(), key="home-hist")

st.subheader("Lessons")
for section, lessons in by_section().items():
    lessons = [lesson for lesson in lessons if not lesson.is_home]
    if not lessons:
        continue
    st.markdown(f"**{section}**")
    for lesson in lessons:
        with st.container(border=True):
            st.page_link(lesson.path, label=lesson.title, icon=lesson.icon)
            st.caption(lesson.summary)
