"""Every page in Chromium as a class uses it: move a training setting and back, then touch
every view control (buttons, radio choices, drop-downs, sliders, toggles) in the page. No
exception box may appear, ever: a widget whose options or labels depend on the run must keep a
valid value through reruns."""

from __future__ import annotations

import pytest

from bnviz.app.lessons import LESSONS
from tests.e2e.servers import assert_no_exception, screenshot, wait_for_app
from tests.e2e.test_pages import open_lesson

MAIN = '[data-testid="stMain"]'
RUNNING_JS = """() => {
  const app = document.querySelector('[data-testid="stApp"]');
  return app && app.getAttribute('data-test-script-state') === 'running';
}"""


def settle(page) -> None:
    """Wait for the rerun a widget started (if it starts), then for the page to be drawn."""
    try:
        page.wait_for_function(RUNNING_JS, timeout=3000, polling=50)
    except Exception:  # noqa: BLE001 - a widget may change nothing that needs a rerun
        pass
    wait_for_app(page)
    assert_no_exception(page)


def press(page, slider, key: str) -> None:
    slider.focus()
    page.keyboard.press(key)
    settle(page)


def training_slider(page):
    slider = page.locator(
        '[data-testid="stSidebar"] [data-testid="stSlider"] input[type="range"]'
    ).first
    try:
        slider.wait_for(state="visible", timeout=15_000)
    except Exception:  # noqa: BLE001 - reported by the caller's assertion
        return None
    return slider


def touch_view_controls(page) -> int:
    """Click, choose or move every control in the main area once; returns how many."""
    touched = 0
    groups = page.locator(f'{MAIN} [data-testid="stButtonGroup"]')
    for i in range(groups.count()):
        buttons = groups.nth(i).locator("button")
        for j in range(buttons.count() - 1, -1, -1):
            buttons.nth(j).click()
            settle(page)
            touched += 1
    radios = page.locator(f'{MAIN} [data-testid="stRadio"]')
    for i in range(radios.count()):
        options = radios.nth(i).locator("label")
        for j in range(options.count() - 1, -1, -1):
            options.nth(j).click()
            settle(page)
            touched += 1
    boxes = page.locator(f'{MAIN} [data-testid="stSelectbox"]')
    for i in range(boxes.count()):
        boxes.nth(i).locator("input").click()  # a combo box: the keyboard picks
        for key in ("ArrowDown", "ArrowDown", "Enter"):
            page.keyboard.press(key)
        settle(page)
        touched += 1
    sliders = page.locator(f'{MAIN} [data-testid="stSlider"] input[type="range"]')
    for i in range(sliders.count()):
        press(page, sliders.nth(i), "ArrowRight")
        press(page, sliders.nth(i), "ArrowLeft")
        touched += 1
    toggles = page.locator(f'{MAIN} [data-testid="stCheckbox"] label')
    for i in range(toggles.count()):
        toggles.nth(i).click()
        settle(page)
        toggles.nth(i).click()
        settle(page)
        touched += 1
    tabs = page.locator(f'{MAIN} [data-baseweb="tab"]')
    for i in range(tabs.count() - 1, -1, -1):
        tabs.nth(i).click()
        settle(page)
        touched += 1
    return touched


@pytest.mark.parametrize("slug", [lesson.slug for lesson in LESSONS if not lesson.is_home])
def test_a_setting_moved_and_back_then_every_view_control(page, app_url, slug):
    open_lesson(page, app_url, slug)
    slider = training_slider(page)
    assert slider is not None, "every lesson has a training setting in the sidebar"
    press(page, slider, "ArrowRight")
    press(page, slider, "ArrowLeft")
    touched = touch_view_controls(page)
    screenshot(page, f"{slug}-controls-touched")
    assert touched >= 1
    assert_no_exception(page)
    # then a drop-down setting changed and left changed (the activation, say): a view control
    # whose labels follow it must still hand back a valid value
    choice = page.locator('[data-testid="stSidebar"] [data-testid="stSelectbox"] input').first
    if choice.count():
        choice.click()
        for key in ("ArrowDown", "Enter"):
            page.keyboard.press(key)
        settle(page)
        touch_view_controls(page)
        assert_no_exception(page)
