"""The load test in small: concurrent sessions on the drift lesson, bounded in time, once with
websocket-protocol clients (the server alone) and once with real browsers.

Runs bench/load_test.py as a subprocess (its own server, its own asyncio Playwright), so the
script's command line is what is tested, and its event loop never meets pytest-playwright's.
The full-size run (20 sessions) is ``python bench/load_test.py``.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.e2e.servers import ARTIFACTS, REPO

pytestmark = pytest.mark.e2e

SESSIONS = 4


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("client", ["ws", "browser"])
def test_concurrent_sessions_are_all_served(client: str) -> None:
    out = ARTIFACTS / f"load-test-ci-{client}.json"
    out.unlink(missing_ok=True)
    cmd = [
        sys.executable, str(REPO / "bench" / "load_test.py"), "--client", client,
        "--sessions", str(SESSIONS), "--trainers", "2", "--timeout", "240",
        "--json", str(out),
    ]  # fmt: skip
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=840)
    assert out.exists(), f"no summary (exit {result.returncode}):\n{result.stderr[-3000:]}"
    summary = json.loads(out.read_text())
    print(json.dumps({k: v for k, v in summary.items() if k != "per_session"}, indent=2))
    assert summary["errors"] == [], summary["errors"]
    assert summary["rendered"] == summary["rerendered"] == SESSIONS
    assert summary["exceptions"] == 0
    assert summary["p95_first_chart_s"] < 120, "a chart took minutes with only 4 sessions"
    assert 0 < summary["peak_rss_mb"] < 2048
    assert summary["memory_samples"] > 10
    assert result.returncode == 0, result.stderr[-3000:]
