"""The home page under AppTest: the shipped animation and the map of lessons."""

from __future__ import annotations

from bnviz.app.lessons import LESSONS
from tests.helpers import assert_clean, chart_title, charts, open_page


def test_home_shows_the_precomputed_animation_and_the_lesson_map():
    at = open_page("home")
    assert_clean(at)
    (fig,) = charts(at)
    assert len(fig["frames"]) == 101  # every record of the shipped 50,000-step run
    assert fig["frames"][-1]["name"] == "50000"
    assert "sigmoid input" in chart_title(fig)
    links = [el.proto.page for el in at.get("page_link")]
    assert links == [lesson.slug for lesson in LESSONS if lesson.slug != "home"]
