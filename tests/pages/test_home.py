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


def test_home_says_what_its_own_run_shows():
    """The words under the animation are the shipped run's numbers: BN's inputs do move (std
    0.99 to 1.78), far less than the plain net's, so "holds still" would be false."""
    from bnviz import assets
    from bnviz.experiments import drift

    at = open_page("home")
    text = " ".join(m.value for m in at.markdown)
    assert "holds still" not in text
    plain, bn = (drift.movement(h, 3) for h in assets.load("paper-figure-1"))
    assert bn.std_end > 1.5 * bn.std_start and bn.moved < plain.moved / 3
    assert f"{bn.std_start:.2f} → {bn.std_end:.2f}, {bn.moved:.2f} away" in text
    assert f"from {plain.std_start:.2f} to {plain.std_end:.2f}" in text
    assert "move **far less**" in text
