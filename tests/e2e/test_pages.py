"""Every lesson in a real headless Chromium against ``streamlit run``: it renders its charts,
shows no exception box, and (where it has one) answers a keyboard move of its learning-rate
slider with new charts. Screenshots land in test-artifacts/screenshots/."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlparse

import pytest

from bnviz.app.lessons import LESSONS
from tests.e2e.servers import assert_no_exception, screenshot, wait_for_app

QUICK = {
    "drift": "?steps=200",
    "learning-rate": "",
    "scale": "",
    "debate": "?steps=500",
    "variants": "?examples=3200",
}

CHART_DATA_JS = """() => Array.from(document.querySelectorAll('.js-plotly-plot'))
    .map(gd => JSON.stringify((gd.data || []).map(t => [t.x, t.y, t.z])))"""


def open_lesson(page, app_url: str, slug: str) -> float:
    """Open a lesson and wait until it has run and drawn; returns the seconds it took."""
    start = time.perf_counter()
    path = "" if slug == "home" else slug
    page.goto(f"{app_url}/{path}{QUICK.get(slug, '')}")
    wait_for_app(page)
    return time.perf_counter() - start


def learning_rate_slider(page):
    """The thumb of the first slider labelled like a learning rate, or None."""
    for slider in page.locator('[data-testid="stSlider"]').all():
        if "learning rate" in slider.inner_text().lower():
            return slider.locator('input[type="range"]').first
    return None


@pytest.mark.parametrize("slug", [lesson.slug for lesson in LESSONS])
def test_lesson_renders_and_answers_its_controls(page, app_url, slug):
    seconds = open_lesson(page, app_url, slug)
    assert_no_exception(page)
    assert page.locator('[data-testid="stPlotlyChart"]').count() >= 1
    screenshot(page, f"{slug}-loaded")
    print(f"{slug}: drawn in {seconds:.1f} s")

    thumb = learning_rate_slider(page)
    if thumb is None:
        return
    before_url = page.url
    before = page.evaluate(CHART_DATA_JS)
    thumb.focus()
    page.keyboard.press("ArrowLeft")
    page.wait_for_function("url => window.location.href !== url", arg=before_url)
    wait_for_app(page)
    assert_no_exception(page)
    query = parse_qs(urlparse(page.url).query)
    assert any(key.startswith("lr") for key in query), query  # the new rate is in the link
    after = page.evaluate(CHART_DATA_JS)
    assert after != before, "the charts did not change after the learning rate moved"
    screenshot(page, f"{slug}-after-slider")


def test_home_animation_plays(page, app_url):
    open_lesson(page, app_url, "home")
    chart = page.locator(".js-plotly-plot").first
    start = chart.evaluate("gd => gd.layout.sliders[0].active || 0")
    page.locator(".updatemenu-button").first.click()  # plotly's Play, drawn in SVG
    page.wait_for_function(
        "() => (document.querySelector('.js-plotly-plot').layout.sliders[0].active || 0) > 3",
        timeout=30_000,
    )
    assert chart.evaluate("gd => gd.layout.sliders[0].active") > start
    screenshot(page, "home-playing")


def test_bad_link_shows_a_notice_not_a_traceback(page, app_url):
    page.goto(f"{app_url}/drift?lr=banana&depth=99&steps=200")
    wait_for_app(page)
    assert_no_exception(page)
    notice = page.locator('[data-testid="stAlert"]').first.inner_text()
    assert "lr=banana" in notice and "depth=99" in notice
    screenshot(page, "drift-bad-link")
