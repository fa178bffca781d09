"""bnviz: watch internal covariate shift and Batch Normalization in networks that really train.

Run with: streamlit run app.py
"""

import streamlit as st

from bnviz import ui
from bnviz.lessons import LESSONS

st.set_page_config(
    page_title="bnviz: Batch Normalization, visualized",
    page_icon=":material/stacked_line_chart:",
    layout="wide",
    menu_items={
        "About": "bnviz trains real networks, with and without Batch Normalization, "
        "side by side, and shows what happens inside them."
    },
)
pages = [
    st.Page(
        lesson.path,
        title=lesson.nav_title,
        icon=lesson.icon,
        url_path=lesson.slug,
        default=lesson.slug == "home",
    )
    for lesson in LESSONS
]
ui.warm_up_trainers()
st.navigation(pages).run()
