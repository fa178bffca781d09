"""A real ``streamlit run`` server stops on SIGTERM and on SIGINT within 10 s, with every
process it started (the zygote, the workers), in every state: no page yet, a page open,
training the largest run, a sweep in flight, the trainers starting under a burst of page
loads, a worker just killed. Killed outright (SIGKILL), it leaves no process behind either.

The signal goes to the server's pid alone, as tini in the container passes it on (a terminal's
Ctrl-C would reach the whole process group). "Stopped" means the server has exited and no
process of its session (it runs in a session of its own) is left: no orphans. Each stop's time
is printed and collected in test-artifacts/shutdown-timings.json.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

from tests.e2e.servers import ARTIFACTS, Server, start_streamlit, stop_process
from tests.e2e.stclient import StreamlitSession

LIMIT = 10.0  # Docker's grace period before it kills a container
PORTS = iter(range(9040, 9099))
LARGEST = "steps=50000&width=256&depth=6&batch_size=512&seed=11"
TIMINGS = ARTIFACTS / "shutdown-timings.json"


def play(scene: Callable[[], Any]) -> None:
    """Run an async scene to its end in a thread of its own: pytest-playwright keeps an event
    loop running in the main thread once a browser test has run, and asyncio.run refuses to
    start inside it."""
    failure: list[BaseException] = []

    def target() -> None:
        try:
            asyncio.run(scene())
        except BaseException as err:  # handed to the test's thread
            failure.append(err)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]


def stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None


def session_members(sid: int) -> list[int]:
    """Live (not zombie) processes of session ``sid``."""
    out = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            fields = stat(int(entry.name))
            if fields and int(fields[3]) == sid and fields[0] != "Z":
                out.append(int(entry.name))
    return out


def zygote_of(server: Server) -> int | None:
    for pid in session_members(server.pid):
        try:
            if b"bnviz.app.zygote" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return pid
        except OSError:
            continue
    return None


def workers_of(server: Server) -> list[int]:
    zygote = zygote_of(server)
    return [p for p in session_members(server.pid) if (stat(p) or [0, 0])[1] == str(zygote)]


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.05)


def stop(server: Server, sig: int, state: str) -> float:
    """Send ``sig`` to the server and time until it and all its processes are gone."""
    members = session_members(server.pid)
    start = time.monotonic()
    os.kill(server.pid, sig)
    deadline = start + 30
    while time.monotonic() < deadline:
        if server.proc.poll() is not None and not session_members(server.pid):
            break
        time.sleep(0.02)
    seconds = time.monotonic() - start
    left = session_members(server.pid)
    record(state, signal.Signals(sig).name, seconds, len(members), left)
    assert not left, f"{state}: processes left after {seconds:.1f} s: {left}"
    assert seconds < LIMIT, f"{state}: {signal.Signals(sig).name} took {seconds:.1f} s"
    return seconds


def record(state: str, sig: str, seconds: float, processes: int, left: list[int]) -> None:
    print(f"{state}: {sig} -> stopped in {seconds:.2f} s ({processes} processes)")
    TIMINGS.parent.mkdir(parents=True, exist_ok=True)
    rows = json.loads(TIMINGS.read_text()) if TIMINGS.exists() else {}
    rows[f"{state} / {sig}"] = {
        "seconds": round(seconds, 2), "processes": processes, "left": left,
    }  # fmt: skip
    TIMINGS.write_text(json.dumps(rows, indent=2) + "\n")


class Tab:
    """A browser tab speaking Streamlit's websocket protocol: open a page, read what comes."""

    def __init__(self, server: Server, page: str) -> None:
        self.session = StreamlitSession(server.url, page)
        self.page = page

    async def open(self, query: str = "") -> Tab:
        await self.session.__aenter__()
        msg = BackMsg()
        msg.rerun_script.query_string = query
        msg.rerun_script.page_name = self.page
        await self.session._ws.send(msg.SerializeToString())
        return self

    async def until(self, wanted: Callable[[str, str], bool], timeout: float = 120) -> None:
        """Read messages until ``wanted(kind, text)`` holds for a new element."""
        async with asyncio.timeout(timeout):
            while True:
                fwd = ForwardMsg()
                fwd.ParseFromString(await self.session._ws.recv())
                if fwd.WhichOneof("type") != "delta":
                    continue
                if fwd.delta.WhichOneof("type") != "new_element":
                    continue
                element = fwd.delta.new_element
                kind = element.WhichOneof("type")
                text = {"progress": element.progress.text, "alert": element.alert.body}.get(
                    kind, ""
                )
                assert kind != "exception", element.exception.message
                if wanted(kind, text):
                    return


def training(kind: str, text: str) -> bool:
    return kind == "progress" and "Training" in text


def chart(kind: str, text: str) -> bool:
    return kind == "plotly_chart"


@pytest.fixture
def server(tmp_path):
    servers: list[Server] = []

    def make(**env: str) -> Server:
        srv = start_streamlit(
            port=next(PORTS), trainers=2, env={"BNVIZ_WARM_UP_DELAY": "0", **env},
            log_dir=tmp_path,
        )  # fmt: skip
        servers.append(srv)
        return srv

    yield make
    for srv in servers:
        stop_process(srv.proc)


pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]


def test_no_page_yet_sigterm(server):
    stop(server(), signal.SIGTERM, "no page")


def test_a_page_open_sigint(server):
    srv = server()

    async def scene():
        tab = await Tab(srv, "drift").open()
        await tab.until(chart)
        stop(srv, signal.SIGINT, "page open")

    play(scene)


def test_training_the_largest_run_sigterm(server):
    srv = server()

    async def scene():
        tab = await Tab(srv, "drift").open(LARGEST)
        await tab.until(training)
        wait_for(lambda: len(workers_of(srv)) >= 2, 30, "two workers")
        stop(srv, signal.SIGTERM, "training the largest run")

    play(scene)


def test_a_sweep_in_flight_sigint(server):
    srv = server()

    async def scene():
        tab = await Tab(srv, "learning-rate").open("steps=200&sweep_steps=3000")
        await tab.until(chart)  # the twin curves are drawn, the sweep starts
        await tab.until(training)
        stop(srv, signal.SIGINT, "sweep in flight")

    play(scene)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_trainers_starting_under_a_burst_of_page_loads(server, sig):
    """Twelve tabs open the drift lesson at once, each with its own rate, while the zygote is
    still loading the engine: the moment the issue's servers could not stop."""
    srv = server()

    async def scene():
        tabs = [Tab(srv, "drift") for _ in range(12)]
        await asyncio.gather(*(t.open(f"lr={0.05 * (i + 1):g}") for i, t in enumerate(tabs)))
        wait_for(lambda: zygote_of(srv) is not None, 30, "the zygote")
        booting = "booting" if not workers_of(srv) else "up"
        stop(srv, sig, f"trainers starting under a burst (zygote {booting})")

    play(scene)


def test_a_worker_just_killed_sigint(server):
    srv = server()

    async def scene():
        tab = await Tab(srv, "drift").open(LARGEST)
        await tab.until(training)
        wait_for(lambda: len(workers_of(srv)) >= 2, 30, "two workers")
        os.kill(workers_of(srv)[0], signal.SIGKILL)
        stop(srv, signal.SIGINT, "a worker just killed")

    play(scene)


def test_killed_outright_leaves_no_process(server):
    srv = server()

    async def scene():
        tab = await Tab(srv, "drift").open(LARGEST)
        await tab.until(training)
        wait_for(lambda: len(workers_of(srv)) >= 2, 30, "two workers")
        stop(srv, signal.SIGKILL, "training the largest run, server killed")

    play(scene)
