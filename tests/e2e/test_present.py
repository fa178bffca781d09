"""Presenter mode in Chromium at a projector's 1280x720: a link opens it with the sidebar folded
away and larger type, the prediction stands alone until the answer is asked for, what to notice
sits beside the figure, and the mode stays in the link."""

from __future__ import annotations

from tests.e2e.servers import assert_no_exception, screenshot, wait_for_app

MAIN = '[data-testid="stMain"]'
PREDICT = '[class*="st-key-bnviz-predict"]'


def font_px(page, selector: str) -> float:
    return page.locator(selector).first.evaluate("e => parseFloat(getComputedStyle(e).fontSize)")


def charts_drawn(page, n: int, timeout_ms: float = 60_000) -> None:
    """Wait until the page shows n charts: Plotly draws them after the script run ends."""
    page.wait_for_function(
        f"document.querySelectorAll('[data-testid=\"stPlotlyChart\"]').length == {n}",
        timeout=timeout_ms,
    )


def settled_chart_count(page, quiet_ms: int = 3000, timeout_ms: int = 60_000) -> int:
    """The number of charts once it has not changed for quiet_ms."""
    count, since, waited = -1, 0, 0
    while since < quiet_ms and waited < timeout_ms:
        now = page.locator('[data-testid="stPlotlyChart"]').count()
        since = since + 250 if now == count else 0
        count = now
        page.wait_for_timeout(250)
        waited += 250
    return count


def test_presenter_mode_from_a_link(page, app_url):
    page.set_viewport_size({"width": 1280, "height": 720})
    page.goto(f"{app_url}/drift?steps=200")
    wait_for_app(page)
    desk_text = font_px(page, f"{MAIN} [data-testid='stMarkdownContainer'] p")
    desk_charts = settled_chart_count(page)

    page.goto(f"{app_url}/drift?steps=200&present=1")
    wait_for_app(page)
    assert_no_exception(page)
    sidebar = page.locator('[data-testid="stSidebar"]')
    assert sidebar.get_attribute("data-collapsed") == "true"
    assert not page.locator('[data-testid="stAlert"]', has_text="not a setting").count()
    assert font_px(page, f"{MAIN} [data-testid='stMarkdownContainer'] p") > 1.3 * desk_text
    prompt = page.locator(PREDICT).first
    assert "Predict first" in prompt.inner_text()
    assert font_px(page, f"{PREDICT} p") > 1.8 * desk_text
    # the answer waits: the histograms are not drawn until the button is pressed
    assert settled_chart_count(page) == desk_charts - 1
    screenshot(page, "present-before-reveal")
    prompt.get_by_role("button", name="Show the answer").click()
    wait_for_app(page)
    assert_no_exception(page)
    charts_drawn(page, desk_charts)
    title = page.locator(".gtitle").first
    assert float(title.evaluate("e => parseFloat(e.style.fontSize)")) >= 25  # 18 px on a desk
    notes = page.locator(f"{MAIN} [data-testid='stColumn']", has_text="What to notice")
    assert notes.count() >= 1  # beside the figure, not in a box at the end
    screenshot(page, "present-revealed")
    assert "present=1" in page.url
    page.locator(f"{MAIN} [data-testid='stButtonGroup']").first.locator("button").first.click()
    wait_for_app(page)
    assert "present=1" in page.url  # a view control rewrites the link and keeps the mode
