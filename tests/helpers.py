"""Shared helpers for the AppTest suites of the pages."""

from __future__ import annotations

import json
from pathlib import Path

from streamlit.testing.v1 import AppTest

from bnviz.app.lessons import LESSONS

APP = str(Path(__file__).resolve().parents[1] / "app.py")
TIMEOUT = 300  # training on 2 shared cores; far above what a page needs


def open_page(slug: str, query: dict[str, str] | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    lesson = next(lesson for lesson in LESSONS if lesson.slug == slug)
    if slug != "home":
        # pages registered by st.navigation with their own url_path are only known after a
        # first run (AppTest.switch_page's documentation)
        at.run()
        at.switch_page(lesson.path)
    for key, value in (query or {}).items():
        at.query_params[key] = value
    return at.run()


def charts(at: AppTest) -> list[dict]:
    return [json.loads(el.proto.spec) for el in at.get("plotly_chart")]


def chart_title(fig: dict) -> str:
    """A chart's title as one line (long titles are broken with <br> to fit their column)."""
    return fig["layout"]["title"]["text"].replace("<br>", " ")


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
