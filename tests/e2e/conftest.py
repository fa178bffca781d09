"""Fixtures for the browser tests: a real ``streamlit run`` server and Debian's Chromium.

Tests use pytest-playwright's ``page`` fixture (launched through ``browser_type_launch_args``
below) and the helpers in ``tests.e2e.servers``: ``wait_for_app``, ``assert_no_exception``,
``screenshot``. Every test collected under tests/e2e is marked ``e2e``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.servers import SCREENSHOTS, Server, launch_args, screenshot, streamlit_server

E2E_DIR = Path(__file__).resolve().parent
PAGE_TIMEOUT_MS = 90_000  # two slow shared cores: a first paint can take tens of seconds


def pytest_configure(config: pytest.Config) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if E2E_DIR in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.e2e)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Any:
    """Keep each phase's report on the item, so ``page`` can screenshot failures."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    """pytest-playwright's launch options, pointed at /usr/bin/chromium."""
    return {**browser_type_launch_args, **launch_args()}


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args: dict[str, Any]) -> dict[str, Any]:
    """A desktop-sized window, so Streamlit keeps the sidebar open."""
    return {**browser_context_args, "viewport": {"width": 1400, "height": 900}}


@pytest.fixture
def page(page: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """pytest-playwright's page with generous timeouts; screenshot saved if the test fails."""
    page.set_default_timeout(PAGE_TIMEOUT_MS)
    page.set_default_navigation_timeout(PAGE_TIMEOUT_MS)
    yield page
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        try:
            screenshot(page, f"FAILED-{request.node.name}")
        except Exception as err:  # noqa: BLE001 - a failed screenshot must not hide the failure
            print(f"could not save a screenshot: {err}")


@pytest.fixture(scope="session")
def app_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One ``streamlit run app.py`` for the whole session; BNVIZ_TRAINERS from the environment,
    else 2 (one per core here)."""
    trainers = os.environ.get("BNVIZ_TRAINERS", "2")
    log_dir = tmp_path_factory.mktemp("streamlit")
    with streamlit_server(env={"BNVIZ_TRAINERS": trainers}, log_dir=log_dir) as server:
        yield server


@pytest.fixture(scope="session")
def app_url(app_server: Server) -> str:
    """The base URL of ``app_server``, e.g. http://127.0.0.1:43011 (no trailing slash)."""
    return app_server.url
