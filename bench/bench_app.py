"""The app's speed as a user feels it, on a real ``streamlit run`` server.

- every page, each on a fresh server: seconds from the server answering its health check to
  the page's first chart drawn in headless Chromium (target: 3 s) and to the whole default
  view drawn (target: 5 s), then a cached rerun of it (target: 0.5 s);
- cache hit: a rerun of the drift page whose run is cached (target: 0.5 s), measured from the
  request to the script's end over Streamlit's websocket protocol;
- fresh twin run: the drift page with a config nobody has run (default size, 2,000 steps of the
  paper net; target: 2 s), first with the worker processes cold, then warm;
- the paper preset trained from scratch (50,000 steps, both nets; target 30 s, or served from
  assets/, which it is): only with --full.

    python bench/bench_app.py [--full] [--only SLUG ...]
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

FIRST_CHART_JS = """() => {
  const svg = document.querySelector('[data-testid="stPlotlyChart"] .main-svg');
  return !!svg && svg.getBoundingClientRect().width > 0;
}"""


def page_paint(url: str, slug: str) -> tuple[float, float]:
    """Health check answered -> the page's first chart drawn, and -> the page done, in a fresh
    browser."""
    with sync_playwright() as p:
        browser = p.chromium.launch(**launch_args())
        page = browser.new_page(viewport={"width": 1920, "height": 1080})
        urllib.request.urlopen(f"{url}/_stcore/health", timeout=30).read()
        start = time.perf_counter()
        page.goto(f"{url}/{'' if slug == 'home' else slug}")
        page.wait_for_function(FIRST_CHART_JS, polling=50, timeout=300_000)
        first = time.perf_counter() - start
        page.wait_for_function(APP_READY_JS, polling=50, timeout=300_000)
        done = time.perf_counter() - start
        browser.close()
    return first, done


async def cached_rerun(url: str, slug: str) -> float:
    """A rerun of the page's default view once it has run: the best of three."""
    async with StreamlitSession(url, slug) as s:
        await s.run("")
        return min([(await s.run("")).seconds for _ in range(3)])


def pages(slugs: list[str]) -> list[tuple[str, float, float, float]]:
    """Per page, on a fresh server: first chart, default view complete, cached rerun."""
    rows = []
    for slug in slugs:
        server = start_streamlit(trainers=2)
        try:
            first, done = page_paint(server.url, slug)
            rows.append((slug, first, done, asyncio.run(cached_rerun(server.url, slug))))
        finally:
            stop_process(server.proc)
        print(f"{slug}: first chart {first:.2f} s, complete {done:.2f} s, cached "
              f"{rows[-1][3]:.2f} s", flush=True)  # fmt: skip
    return rows


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
    parser.add_argument("--only", nargs="*", help="page slugs (default: every lesson)")
    args = parser.parse_args()
    from bnviz.app.lessons import LESSONS

    rows = pages(args.only or [lesson.slug for lesson in LESSONS])
    print("\n| page | first chart (s) | default view complete (s) | cached rerun (s) |")
    print("|---|---|---|---|")
    for slug, first, done, cached in rows:
        print(f"| {slug} | {first:.1f} | {done:.1f} | {cached:.2f} |")
    server = start_streamlit(trainers=2)
    try:
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
