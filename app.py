"""bnviz: watch internal covariate shift and Batch Normalization in networks that really train.

Run with: streamlit run app.py

The frame of every page: page config, navigation grouped by section, the lesson's title; then
the lesson's own script in ``app_pages/`` (not ``pages/``: while a ``pages/`` folder sits next
to the main script, Streamlit routes a fresh server's deep links straight to its files, around
this navigation).
"""

from pathlib import Path

import streamlit as st

from bnviz.app import present, run
from bnviz.app.lessons import by_section

st.set_page_config(
    page_title="bnviz: Batch Normalization, visualized",
    # an image this server serves: a Material-symbol icon would make browsers fetch it off
    # the machine, from Google's font host
    page_icon=str(Path(__file__).parent / "assets" / "icon.png"),
    layout="wide",
    initial_sidebar_state=present.sidebar_state(),
    menu_items={
        "About": "bnviz trains real networks, with and without Batch Normalization, "
        "side by side, and shows what happens inside them."
    },
)
lessons = {}
sections = {}
for section, members in by_section().items():
    sections[section] = []
    for lesson in members:
        page = st.Page(
            lesson.path,
            title=lesson.nav_title,
            icon=lesson.icon,
            url_path=lesson.slug,
            default=lesson.is_home,
        )
        lessons[id(page)] = lesson
        sections[section].append(page)
run.warm_up_trainers()
run.plotting_stack()
page = st.navigation(sections)
present.frame()
st.title(lessons[id(page)].title)
page.run()
