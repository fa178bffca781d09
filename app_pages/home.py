"""Home: a precomputed twin run animated at once, three sentences of context, the lessons."""

import streamlit as st

from bnviz.app import pieces, wording
from bnviz.app.lessons import by_section

RUN = "paper-figure-1"
LAYER = 3


@st.cache_resource(show_spinner=False)
def home_figure():
    """Built once per server from the shipped run: the first paint must not wait on training.
    Imported here, after the text is on screen: plotly and the run take about a second to
    load on a fresh server. Returns the figure and how far each net's inputs moved."""
    from bnviz import assets
    from bnviz.experiments import drift
    from bnviz.figures import animate

    twins = assets.load(RUN)
    fig = animate.histograms_over_training(twins, LAYER, "act_in")
    return fig, [drift.movement(h, LAYER) for h in twins]


pieces.lead(
    "Below, two real networks learn to read handwritten digits, trained side by side from the "
    "same initial weights on the same batches: one plain, one with **Batch Normalization**. "
    "Press play to watch what the last hidden layer's sigmoid units receive as input over "
    "50,000 training steps. Ioffe and Szegedy (2015) blamed the drift of such inputs, which "
    "they named *internal covariate shift*, for slow training; the lessons let you train the "
    "nets yourself and test the idea.",
)
fig, (plain, bn) = home_figure()
pieces.chart(fig, key="home-hist")
st.markdown(
    f"In this run the plain net's inputs drift and spread: their standard deviation grows "
    f"from {plain.std_start:.2f} to {plain.std_end:.2f} and they end {plain.moved:.2f} away "
    f"from where they started. With BN they move **{wording.compare(bn.moved, plain.moved)}**: "
    f"standard deviation {bn.std_start:.2f} → {bn.std_end:.2f}, {bn.moved:.2f} away. "
    "(Distances are W1, the average distance each value would travel, in the input's units.)"
)

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
