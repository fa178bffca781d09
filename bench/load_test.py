"""Load test: N students open the drift lesson at once, each with a learning rate of their own.

Each session opens ``/drift?lr=<its own>&steps=<S>``, waits for the trained run's charts, then
moves the learning-rate slider one notch (a new training run) and waits for the charts again.
Two kinds of client:

- ``--client ws`` (default): each session speaks Streamlit's own websocket protocol
  (``tests/e2e/stclient.py``), as the browser's JavaScript does; students' browsers run on
  their own machines, so this measures the server alone.
- ``--client browser``: each session is a real browser (one headless Chromium, one context per
  session, driven concurrently with Playwright's async API) moving the slider with the
  keyboard. On one small machine the browsers then compete with the server for its cores.

Phases: the server starts and a first visitor opens the home page (the trainers start a little
later); after ``--warm`` seconds the server's memory is the *baseline*; then the class; then,
the class gone, memory ``--settle`` seconds later (Streamlit keeps a closed tab's session two
minutes, in case it reconnects). ``--hog`` adds one more student who asks for the largest run
of the drift page (50,000 steps of 6 x 256, batch 512: about half an hour of training) just
before the class arrives and keeps the tab open: the others' times should barely move.

Memory of the server and its descendants is sampled every 100 ms, as the sum of their RSS and,
every 0.5 s, of their PSS. The workers are forks of one zygote and share most of their pages
with it: RSS counts those once per process, PSS divides them among the processes sharing them,
so the PSS sum is the memory the server really holds.

Prints a JSON summary: sessions rendered, exception boxes seen, p50/p95 seconds to a rendered
chart (first load, and after the slider move), peak and settled memory, CPU seconds used by
the server and by everything this script started, the load average (other work on the machine
slows every number here), and whether the targets were met. Exit status 1 if a session failed.

    python bench/load_test.py --sessions 30               # starts its own server
    python bench/load_test.py --sessions 30 --hog
    python bench/load_test.py --url http://host:8501 --server-pid 1234
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from playwright.async_api import async_playwright  # noqa: E402

from tests.e2e.servers import (  # noqa: E402
    APP_READY_JS,
    SCREENSHOTS,
    launch_args,
    start_streamlit,
    stop_process,
)
from tests.e2e.stclient import StreamlitSession  # noqa: E402

# The drift page's learning-rate grid (1, 1.5, 2, 3, 5, 7 per decade, 0.001 to 30); the last
# value is left out so that every session can move its slider one notch to the right.
LR_GRID = sorted({round(m * 10.0**e, 6) for e in range(-3, 2) for m in (1, 1.5, 2, 3, 5, 7)})
LR_GRID = [lr for lr in LR_GRID if lr <= 20]
SLIDER = '[data-testid="stSidebar"] input[type="range"][aria-label="Learning rate"]'
# Before the slider move: remember the URL's lr and the first chart's data. "Rendered again"
# means the server rewrote the link (a new run started), that chart got new data (the new run's
# figure arrived) and the page is ready. React may batch the short "running" state away on a
# loaded machine, so the script state alone cannot tell that a run happened.
MARK_JS = """() => {
  window.__bnvizLr = new URLSearchParams(location.search).get('lr');
  window.__bnvizData = document.querySelector('.js-plotly-plot').data;
}"""
RAN_AGAIN_JS = f"""() => {{
  if (new URLSearchParams(location.search).get('lr') === window.__bnvizLr) return false;
  const chart = document.querySelector('.js-plotly-plot');
  if (!chart || chart.data === window.__bnvizData) return false;
  return ({APP_READY_JS})();
}}"""
# What a failed session's page looked like, for the report.
STATE_JS = """() => {
  const app = document.querySelector('[data-testid="stApp"]');
  const chart = document.querySelector('.js-plotly-plot');
  const slider = document.querySelector('input[type="range"][aria-label="Learning rate"]');
  return {
    url: location.pathname + location.search, lr_marked: window.__bnvizLr,
    script: app && app.getAttribute('data-test-script-state'),
    connection: app && app.getAttribute('data-test-connection-state'),
    slider: slider && slider.getAttribute('aria-valuetext'),
    chart_data_changed: chart ? chart.data !== window.__bnvizData : null,
    stale: document.querySelectorAll('[data-stale="true"]').length,
    status_widget: !!document.querySelector('[data-testid="stStatusWidget"]'),
  };
}"""
# The frontend has booted and opened its websocket: what comes after is the server's run.
CONNECTED_JS = """() => document.querySelector(
  '[data-testid="stApp"][data-test-connection-state="CONNECTED"]') !== null"""
EXCEPTIONS = '[data-testid="stException"]'
TARGETS = {"p95_first_chart_s": 20.0, "p95_rerender_s": 10.0, "peak_mb": 1536.0}
# The drift page's largest settings, all reachable from its sliders.
LARGEST = "steps=50000&width=256&depth=6&batch_size=512"


@dataclass
class Session:
    index: int
    lr: float
    connected_s: float | None = None
    first_chart_s: float | None = None
    rerender_s: float | None = None
    lr_after: str | None = None
    exceptions: int = 0
    error: str | None = None


TICKS = os.sysconf("SC_CLK_TCK")


def descendants(root: int) -> list[int]:
    """``root`` and every process below it, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def tree_usage(root: int) -> tuple[int, float]:
    """(RSS bytes, CPU seconds used so far) of ``root`` and all its descendants, from /proc."""
    total, seconds = 0, 0.0
    for pid in descendants(root):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
            # utime, stime, and those of children that exited (so the sum never drops)
            seconds += sum(int(x) for x in fields[11:15]) / TICKS
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
                        break
        except OSError:
            continue
    return total, seconds


def tree_pss(root: int) -> int:
    """PSS bytes of ``root`` and its descendants: shared pages counted once in all."""
    total = 0
    for pid in descendants(root):
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1]) * 1024
                        break
        except OSError:
            continue
    return total


class MemorySampler(threading.Thread):
    """Peak tree RSS and PSS (and CPU time used) of a process, sampled every ``interval``
    seconds (PSS, dearer to read, every fifth sample)."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.peak = self.peak_pss = self.samples = 0
        self.cpu_start = self.cpu_end = self.own_start = self.own_end = 0.0
        self.all_cpu_start = self.all_cpu_end = 0.0
        self._halt = threading.Event()

    def own_cpu(self) -> float:
        """CPU seconds of the server process alone (its workers excluded)."""
        try:
            with open(f"/proc/{self.pid}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
            return (int(fields[11]) + int(fields[12])) / TICKS
        except OSError:
            return self.own_end

    def run(self) -> None:
        self.own_start = self.own_end = self.own_cpu()
        self.cpu_start = tree_usage(self.pid)[1]
        self.all_cpu_start = tree_usage(os.getpid())[1]
        while not self._halt.is_set():
            rss, self.cpu_end = tree_usage(self.pid)
            self.own_end = self.own_cpu()
            self.all_cpu_end = tree_usage(os.getpid())[1]
            self.peak = max(self.peak, rss)
            if self.samples % 5 == 0:
                self.peak_pss = max(self.peak_pss, tree_pss(self.pid))
            self.samples += 1
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join()


def memory_now(pid: int | None) -> dict:
    if not pid:
        return {}
    rss, _ = tree_usage(pid)
    return {
        "rss_mb": round(rss / 2**20, 1),
        "pss_mb": round(tree_pss(pid) / 2**20, 1),
        "processes": len(descendants(pid)),
    }


def learning_rates(n: int) -> list[float]:
    """n learning rates from the page's grid, spread over it, distinct while n allows."""
    if n == 1:
        return [LR_GRID[len(LR_GRID) // 2]]
    last = len(LR_GRID) - 1
    return [LR_GRID[round(i * last / (n - 1)) % len(LR_GRID)] for i in range(n)]


async def run_session(browser, url: str, s: Session, steps: int, timeout: float) -> Session:
    context = await browser.new_context(viewport={"width": 1400, "height": 900})
    context.set_default_timeout(timeout * 1000)
    page = None
    try:
        page = await context.new_page()
        start = time.monotonic()
        await page.goto(f"{url}/drift?lr={s.lr:g}&steps={steps}", wait_until="commit")
        await page.wait_for_function(CONNECTED_JS, polling=200)
        s.connected_s = time.monotonic() - start
        await page.wait_for_function(APP_READY_JS, polling=200)
        s.first_chart_s = time.monotonic() - start
        s.exceptions = await page.locator(EXCEPTIONS).count()
        if s.exceptions:
            raise RuntimeError("exception box after the first load")

        slider = page.locator(SLIDER)
        before = await slider.get_attribute("aria-valuetext")
        await page.evaluate(MARK_JS)
        await slider.focus()
        start = time.monotonic()
        await slider.press("ArrowRight")
        await page.wait_for_function(RAN_AGAIN_JS, polling=200)
        s.rerender_s = time.monotonic() - start
        s.lr_after = await slider.get_attribute("aria-valuetext")
        s.exceptions = await page.locator(EXCEPTIONS).count()
        if s.exceptions:
            raise RuntimeError("exception box after the slider move")
        if s.lr_after == before:
            raise RuntimeError(f"the slider did not move from {before}")
    except Exception as err:  # noqa: BLE001 - one failed session is a result, not a crash
        s.error = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        try:
            assert page is not None, "no page"
            s.error += f"; page state: {await page.evaluate(STATE_JS)}"
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            await page.screenshot(path=str(SCREENSHOTS / f"load-failed-{s.index}.png"))
        except Exception as more:  # noqa: BLE001 - the first error is the one to report
            s.error += f"; no page state ({type(more).__name__})"
    finally:
        await context.close()
    return s


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-q * len(ordered) // 100))
    return round(ordered[int(rank) - 1], 2)


async def run_ws_session(url: str, s: Session, steps: int, timeout: float) -> Session:
    """One student over the websocket protocol: the page with its own rate, then the slider
    moved one notch to the right, as the browser sends it."""
    try:
        start = time.monotonic()
        async with StreamlitSession(url, "drift") as session:
            s.connected_s = time.monotonic() - start
            first = await session.run(f"lr={s.lr:g}&steps={steps}", timeout=timeout)
            s.first_chart_s = time.monotonic() - start
            s.exceptions = len(first.exceptions)
            if s.exceptions or not first.charts:
                raise RuntimeError(f"first load: {first.charts} charts, {first.exceptions}")
            state, s.lr_after = session.select_slider_state("Learning rate", +1)
            # the link keeps only what differs from the defaults: lr 0.5 leaves no lr= in it
            start = time.monotonic()
            again = await session.run(widget_states=[state], timeout=timeout)
            s.rerender_s = time.monotonic() - start
            s.exceptions = len(again.exceptions)
            if s.exceptions or not again.charts:
                raise RuntimeError(f"slider move: {again.charts} charts, {again.exceptions}")
            if f"lr={s.lr_after}" not in (again.query_string or "") and s.lr_after != "0.5":
                raise RuntimeError(f"the link did not follow the slider: {again.query_string}")
    except Exception as err:  # noqa: BLE001 - one failed session is a result, not a crash
        s.error = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
    return s


async def drive_ws(url: str, n: int, steps: int, timeout: float, ramp: float) -> list[Session]:
    sessions = [Session(i, lr) for i, lr in enumerate(learning_rates(n))]

    async def one(s: Session) -> Session:
        await asyncio.sleep(ramp * s.index / max(1, n))
        return await run_ws_session(url, s, steps, timeout)

    return list(await asyncio.gather(*(one(s) for s in sessions)))


async def drive(url: str, n: int, steps: int, timeout: float, ramp: float) -> list[Session]:
    sessions = [Session(i, lr) for i, lr in enumerate(learning_rates(n))]
    async with async_playwright() as p:
        browser = await p.chromium.launch(**launch_args())
        try:

            async def one(s: Session) -> Session:
                await asyncio.sleep(ramp * s.index / max(1, n))
                try:
                    return await asyncio.wait_for(
                        run_session(browser, url, s, steps, timeout), 3 * timeout
                    )
                except TimeoutError:
                    s.error = s.error or f"session took over {3 * timeout:.0f} s"
                    return s

            return list(await asyncio.gather(*(one(s) for s in sessions)))
        finally:
            await browser.close()


async def hog(url: str, ready: asyncio.Event, leave: asyncio.Event, seen: list[str]) -> None:
    """One student asks for the largest run and keeps the tab open until ``leave``; ``seen``
    collects what the page told them (place in line, estimates, progress)."""
    from streamlit.proto.BackMsg_pb2 import BackMsg
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    async with StreamlitSession(url, "drift") as session:
        msg = BackMsg()
        msg.rerun_script.query_string = LARGEST
        msg.rerun_script.page_name = "drift"
        await session._ws.send(msg.SerializeToString())

        async def read() -> None:
            while True:
                fwd = ForwardMsg()
                fwd.ParseFromString(await session._ws.recv())
                if fwd.WhichOneof("type") != "delta":
                    continue
                element = fwd.delta.new_element
                text = {"progress": element.progress.text, "alert": element.alert.body}.get(
                    element.WhichOneof("type") or "", ""
                )
                if text and (not seen or seen[-1] != text):
                    seen.append(text)
                if "Training" in text:
                    ready.set()

        reader = asyncio.ensure_future(read())
        await leave.wait()
        reader.cancel()


async def with_hog(driver, url: str, *args) -> tuple[list[Session], list[str]]:
    ready, leave, seen = asyncio.Event(), asyncio.Event(), []
    task = asyncio.ensure_future(hog(url, ready, leave, seen))
    try:
        await asyncio.wait_for(ready.wait(), 300)  # it holds the trainers before the class comes
        sessions = await driver(url, *args)
    finally:
        leave.set()
        await asyncio.gather(task, return_exceptions=True)
    return sessions, seen


def summarize(sessions: list[Session], sampler: MemorySampler | None, wall: float) -> dict:
    first = [s.first_chart_s for s in sessions if s.first_chart_s is not None]
    again = [s.rerender_s for s in sessions if s.rerender_s is not None]
    connected = [s.connected_s for s in sessions if s.connected_s is not None]
    both = first + again
    summary = {
        "sessions": len(sessions),
        "rendered": len(first),
        "rerendered": len(again),
        "p50_connected_s": percentile(connected, 50),
        "p95_connected_s": percentile(connected, 95),
        "failed": sum(s.error is not None for s in sessions),
        "exceptions": sum(s.exceptions for s in sessions),
        "p50_first_chart_s": percentile(first, 50),
        "p95_first_chart_s": percentile(first, 95),
        "max_first_chart_s": percentile(first, 100),
        "p50_rerender_s": percentile(again, 50),
        "p95_rerender_s": percentile(again, 95),
        "p50_chart_s": percentile(both, 50),
        "p95_chart_s": percentile(both, 95),
        "peak_rss_mb": round(sampler.peak / 2**20, 1) if sampler else None,
        "peak_pss_mb": round(sampler.peak_pss / 2**20, 1) if sampler else None,
        "memory_samples": sampler.samples if sampler else 0,
        "server_cpu_s": round(sampler.cpu_end - sampler.cpu_start, 1) if sampler else None,
        # of which the server process itself (the rest: its workers)
        "server_process_cpu_s": round(sampler.own_end - sampler.own_start, 1) if sampler else None,
        # This script, its browser and (when it started it) the server, all together.
        "total_cpu_s": round(sampler.all_cpu_end - sampler.all_cpu_start, 1) if sampler else None,
        "wall_s": round(wall, 1),
    }
    summary["targets_met"] = {
        "all_served": summary["rendered"] == summary["rerendered"] == len(sessions)
        and summary["exceptions"] == 0,
        "p95_first_chart_under_20s": first != []
        and summary["p95_first_chart_s"] < TARGETS["p95_first_chart_s"],
        "p95_rerender_under_10s": again != []
        and summary["p95_rerender_s"] < TARGETS["p95_rerender_s"],
        "peak_pss_under_1.5gb": sampler is not None and summary["peak_pss_mb"] < TARGETS["peak_mb"],
        "peak_rss_under_1.5gb": sampler is not None and summary["peak_rss_mb"] < TARGETS["peak_mb"],
    }
    summary["errors"] = [f"#{s.index} lr={s.lr:g}: {s.error}" for s in sessions if s.error]
    summary["per_session"] = [asdict(s) for s in sessions]
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=30, help="concurrent sessions")
    parser.add_argument(
        "--client",
        choices=("ws", "browser"),
        default="ws",
        help="websocket protocol clients (the server alone) or real browsers",
    )
    parser.add_argument("--url", help="a running server (default: start streamlit run app.py)")
    parser.add_argument("--server-pid", type=int, help="with --url: the pid to sample memory of")
    parser.add_argument("--port", type=int, help="port for the server we start (default: any)")
    parser.add_argument("--trainers", type=int, help="BNVIZ_TRAINERS for the server we start")
    parser.add_argument("--steps", type=int, default=500, help="training steps per run")
    parser.add_argument("--timeout", type=float, default=300, help="seconds per wait")
    parser.add_argument("--ramp", type=float, default=0, help="spread the starts over seconds")
    parser.add_argument("--warm", type=float, default=20, help="seconds before the class comes")
    parser.add_argument("--settle", type=float, default=0, help="seconds after it leaves")
    parser.add_argument("--hog", action="store_true", help="one student asks for the largest run")
    parser.add_argument("--json", type=Path, help="also write the summary here")
    args = parser.parse_args(argv)
    if args.sessions < 1:
        parser.error("--sessions must be at least 1")

    server = None
    if args.url is None:
        server = start_streamlit(port=args.port, trainers=args.trainers, timeout=args.timeout)
        url, pid = server.url, server.pid
    else:
        url, pid = args.url.rstrip("/"), args.server_pid
    sampler = MemorySampler(pid) if pid else None
    memory: dict = {}
    seen: list[str] = []
    try:

        async def first_visitor() -> None:
            async with StreamlitSession(url, "home") as session:
                await session.run(timeout=args.timeout)

        asyncio.run(first_visitor())  # the home page; the trainers start a little later
        time.sleep(args.warm)
        memory["baseline"] = memory_now(pid)
        if sampler:
            sampler.start()
        load_before = os.getloadavg()[0]
        start = time.monotonic()
        driver = drive_ws if args.client == "ws" else drive
        drive_args = (args.sessions, args.steps, args.timeout, args.ramp)
        if args.hog:
            sessions, seen = asyncio.run(with_hog(driver, url, *drive_args))
        else:
            sessions = asyncio.run(driver(url, *drive_args))
        wall = time.monotonic() - start
        if sampler:
            sampler.stop()
        memory["class_left"] = memory_now(pid)
        if args.settle:
            time.sleep(args.settle)
            memory[f"after_{args.settle:.0f}s"] = memory_now(pid)
    finally:
        if sampler and sampler.is_alive():
            sampler.stop()
        if server is not None:
            stop_process(server.proc)
    summary = summarize(sessions, sampler, wall)
    # Other work on the machine slows everything down: the load average says how much.
    summary.update(
        memory=memory,
        hog=args.hog,
        hog_saw=seen[:12],
        url=url,
        client=args.client,
        steps=args.steps,
        trainers=args.trainers,
        cpus=os.cpu_count(),
        loadavg_before=round(load_before, 1),
        loadavg_after=round(os.getloadavg()[0], 1),
    )
    if server is not None:
        summary["server_log"] = str(server.log)
    text = json.dumps(summary, indent=2)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    return 0 if summary["failed"] == 0 and summary["exceptions"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
