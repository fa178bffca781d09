"""Fixtures for the container test: Debian's Chromium for pytest-playwright, and the stage's
timings and sizes printed at the end of the run (they are the numbers CI is watched for)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.container.podman import SUMMARY
from tests.e2e.servers import launch_args

CONTAINER_DIR = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if CONTAINER_DIR in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.container)


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    """pytest-playwright's launch options, pointed at /usr/bin/chromium."""
    return {**browser_type_launch_args, **launch_args()}


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if SUMMARY:
        terminalreporter.section("container stage")
        for line in SUMMARY:
            terminalreporter.write_line(line)
