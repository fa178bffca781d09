"""The app's speed as a user feels it, on a real ``streamlit run`` server.

- home: seconds from the server answering its health check to the home page's chart drawn in
  headless Chromium (target: 3 s);
- cache hit: a rerun of the drift page whose run is cached (target: 0.5 s), measured from the
  request to the script's end over Streamlit's websocket protocol;
- fresh twin run: the drift page with a config nobody has run (default size, 2,000 steps of the
  paper net; target: 2 s), first with the worker processes cold, then warm;
- the paper preset trained from scratch (50,000 steps, both nets; target 30 s, or served from
  assets/, which it is): only with --full.

    python bench/bench_app.py [--full]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from playwright.sync_api import sync_playwright  # noqa: E402

from tests.e2e.servers import APP_READY_JS, launch_args, start_streamlit, stop_process  # noqa: E402
from tests.e2e.stclient import StreamlitSession  # noqa: E402


def home_paint(url: str) -> float:
    """Health check answered -> home chart drawn in a fresh browser."""
    with sync_playwright() as p:
        browser = p.chromium.launch(**launch_args())
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        urllib.request.urlopen(f"{url}/_stcore/health", timeout=30).read()
        start = time.perf_counter()
        page.goto(url)
        page.wait_for_function(APP_READY_JS, polling=50, timeout=120_000)
        seconds = time.perf_counter() - start
        browser.close()
    return seconds


async def page_runs(url: str) -> dict[str, float]:
    out = {}
    async with StreamlitSession(url, "drift") as s:
        first = await s.run("seed=1")  # a config nobody ran: trains, workers cold
        out["fresh twin run, workers cold (s)"] = first.seconds
        again = await s.run("seed=1")
        out["cache hit rerun (s)"] = again.seconds
        warm = await s.run("seed=2")
        out["fresh twin run, workers warm (s)"] = warm.seconds
        out["first chart of that run (s)"] = warm.first_chart_s
        hits = [(await s.run("seed=2")).seconds for _ in range(5)]
        out["cache hit rerun, best of 5 (s)"] = min(hits)
    return out


def paper_preset_from_scratch() -> float:
    from bnviz.app import workers
    from bnviz.experiments import drift

    cfg = drift.config(**drift.PRESETS["Paper Figure 1"])
    start = time.perf_counter()
    drift.EXPERIMENT(cfg, executor=workers)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="also train the 50,000-step preset")
    args = parser.parse_args()
    server = start_streamlit(trainers=2)
    try:
        print(f"home painted after the health check: {home_paint(server.url):.2f} s")
        for name, seconds in asyncio.run(page_runs(server.url)).items():
            print(f"{name}: {seconds:.2f}")
    finally:
        stop_process(server.proc)
    if args.full:
        print(
            f"paper preset (50,000 steps, both nets) from scratch: "
            f"{paper_preset_from_scratch():.1f} s"
        )


if __name__ == "__main__":
    main()
