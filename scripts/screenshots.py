"""Screenshots of every lesson, screen by screen, at projector and desktop sizes.

    .venv/bin/python scripts/screenshots.py [--out DIR] [--size 1920x1080 --size 1280x720]
        [--only SLUG ...] [--url http://127.0.0.1:8501]

Starts ``streamlit run app.py`` (unless --url names a running server), opens each lesson in
headless Chromium, waits until it has drawn, and saves one PNG per screen of the main
container (Streamlit scrolls inside it, so a full-page shot shows only the first screen).
"""

from __future__ import annotations

import argparse
import sys
import time
from contextlib import nullcontext
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bnviz.app.lessons import LESSONS  # noqa: E402
from tests.e2e.servers import launch_args, streamlit_server, wait_for_app  # noqa: E402

SCROLL_JS = """(y) => {
  const main = document.querySelector('[data-testid="stMain"]');
  main.scrollTo(0, y);
  return [main.scrollTop, main.scrollHeight, main.clientHeight];
}"""


def capture(page, url: str, name: str, out: Path, max_screens: int) -> list[Path]:
    page.goto(url)
    wait_for_app(page, timeout=240)
    time.sleep(1.0)  # let plotly finish its transitions
    paths = []
    y = 0
    for i in range(max_screens):
        top, height, client = page.evaluate(SCROLL_JS, y)
        time.sleep(0.4)
        path = out / f"{name}-{i:02d}.png"
        page.screenshot(path=str(path))
        paths.append(path)
        if top + client >= height - 2:
            break
        y = top + int(client * 0.9)
    return paths


def main(argv: list[str] | None = None) -> None:
    from playwright.sync_api import sync_playwright

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "test-artifacts" / "screens")
    parser.add_argument("--size", action="append", default=None)
    parser.add_argument("--only", action="append", default=None)
    parser.add_argument("--url", default=None)
    parser.add_argument("--query", default="", help="appended to every lesson's URL")
    parser.add_argument("--max-screens", type=int, default=12)
    args = parser.parse_args(argv)
    sizes = args.size or ["1920x1080", "1280x720"]
    args.out.mkdir(parents=True, exist_ok=True)
    lessons = [lesson for lesson in LESSONS if not args.only or lesson.slug in args.only]
    server_cm = nullcontext() if args.url else streamlit_server(env={"BNVIZ_TRAINERS": "2"})
    with server_cm as server, sync_playwright() as p:
        base = args.url or server.url
        browser = p.chromium.launch(**launch_args())
        for size in sizes:
            w, h = (int(v) for v in size.split("x"))
            page = browser.new_page(viewport={"width": w, "height": h})
            page.set_default_timeout(240_000)
            for lesson in lessons:
                path = "" if lesson.slug == "home" else lesson.slug
                t = time.perf_counter()
                shots = capture(
                    page,
                    f"{base}/{path}{args.query}",
                    f"{lesson.slug}-{size}",
                    args.out,
                    args.max_screens,
                )
                seconds = time.perf_counter() - t
                print(f"{lesson.slug} {size}: {len(shots)} screens, {seconds:.1f} s")
            page.close()
        browser.close()


if __name__ == "__main__":
    main()
