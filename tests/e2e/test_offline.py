"""The app asks for nothing off the machine: every request and websocket the browser opens,
on every page, goes to the app's own server. And text from a link stays text."""

from __future__ import annotations

from urllib.parse import urlparse

import pytest

from bnviz.app.lessons import LESSONS
from tests.e2e.servers import assert_no_exception, wait_for_app
from tests.e2e.test_pages import open_lesson


@pytest.mark.parametrize("slug", [lesson.slug for lesson in LESSONS])
def test_every_request_goes_to_the_apps_own_server(page, app_url, slug):
    seen: list[str] = []
    page.on("request", lambda request: seen.append(request.url))
    page.on("websocket", lambda ws: seen.append(ws.url))
    open_lesson(page, app_url, slug)
    page.wait_for_timeout(1500)  # late requests: fonts, the favicon
    own = urlparse(app_url).netloc
    off = [
        u for u in seen if urlparse(u).scheme not in ("data", "blob") and urlparse(u).netloc != own
    ]
    assert seen and not off, f"requests off {own}: {off}"


def test_a_link_in_the_query_string_is_not_a_live_link(page, app_url):
    page.goto(f"{app_url}/drift?steps=200&lr=[Click here to log in](http://example.com)")
    wait_for_app(page)
    assert_no_exception(page)
    notice = page.locator('[data-testid="stAlert"]').first
    assert "[Click here to log in](http://example.com)" in notice.inner_text()
    assert notice.locator('a[href*="example.com"]').count() == 0


def test_two_downloads_clicked_at_once_both_arrive(page, app_url):
    """A second download clicked right after the first used to arrive as nothing (the rerun
    of the first click dropped the second's deferred file)."""
    open_lesson(page, app_url, "drift")
    buttons = page.locator('[data-testid="stDownloadButton"] button')
    assert buttons.count() >= 2
    downloads = []
    page.on("download", lambda d: downloads.append(d))
    buttons.nth(0).click()
    buttons.nth(1).click()
    for _ in range(100):
        if len(downloads) >= 2:
            break
        page.wait_for_timeout(200)
    assert len(downloads) == 2, [d.suggested_filename for d in downloads]
    for download in downloads:
        assert download.failure() is None
        assert download.path().stat().st_size > 100
    assert len({d.suggested_filename for d in downloads}) == 2
