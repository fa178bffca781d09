"""BN step by step and Backprop through BN in Chromium: every preset, the sliders at both
ends and a garbage link, each opened by its URL as a student would, with no exception box."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest

from bnviz.app.controls import slug
from bnviz.experiments import backprop, bn_steps
from tests.e2e.servers import assert_no_exception, screenshot, wait_for_app

ENDS = {
    "bn-steps": (
        {"lr": "0.01", "steps": "200", "at": "start", "layer": "1", "unit": "0", "m": "2",
         "gamma": "0", "beta": "-5", "eps": "1e-08", "tolerance": "0.01", "rho": "-0.95"},
        {"lr": "5", "steps": "200", "seed": "99", "layer": "3", "unit": "99", "m": "256",
         "gamma": "5", "beta": "5", "eps": "1", "rho": "0.95"},
    ),
    "backprop": (
        {"m": "2", "eps": "0", "layer": "1", "steps": "0", "h": "1e-12", "unit": "0"},
        {"m": "256", "seed": "99", "eps": "1", "upstream": "random", "layer": "3",
         "steps": "500", "h": "0.1", "unit": "99", "torch": "1"},
    ),
}  # fmt: skip
PRESETS = {"bn-steps": bn_steps.PRESETS, "backprop": backprop.PRESETS}
GARBAGE = {"m": "1", "eps": "tiny", "layer": "0", "unit": "<b>x</b>", "junk": "1"}


def open_url(page, app_url: str, page_slug: str, query: dict[str, str]) -> None:
    page.goto(f"{app_url}/{page_slug}?{urlencode(query)}")
    wait_for_app(page)
    assert_no_exception(page)
    assert page.locator('[data-testid="stPlotlyChart"]').count() >= 1


@pytest.mark.parametrize("page_slug", list(PRESETS))
def test_every_preset_by_its_link(page, app_url, page_slug):
    for name in PRESETS[page_slug]:
        open_url(page, app_url, page_slug, {"preset": slug(name)})
        assert (
            not page.locator('[data-testid="stAlert"]').filter(has_text="could not be used").count()
        )


@pytest.mark.parametrize("page_slug", list(ENDS))
def test_sliders_at_both_ends(page, app_url, page_slug):
    for end, query in zip(("low", "high"), ENDS[page_slug], strict=True):
        open_url(page, app_url, page_slug, query)
        screenshot(page, f"{page_slug}-{end}-ends")


@pytest.mark.parametrize("page_slug", list(ENDS))
def test_garbage_link_shows_a_notice_as_text(page, app_url, page_slug):
    open_url(page, app_url, page_slug, GARBAGE)
    notice = page.locator('[data-testid="stAlert"]').filter(has_text="could not be used").first
    text = notice.inner_text()
    assert "m=1" in text and "eps=tiny" in text and "junk" in text
    assert "<b>x</b>" in text  # shown as typed, never rendered as markup
    assert not page.locator('[data-testid="stMain"] b', has_text="x").count()
