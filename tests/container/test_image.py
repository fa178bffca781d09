"""The image for real: built with podman, served through its published port, used in Chromium.

What the README's ``docker build`` / ``docker run`` lines promise a class: the app answers
its health check, draws the home page and a training page without an exception box, reaches
nothing off the machine (neither the browser nor the server), runs as uid 10001 under an init
with no error details shown and XSRF protection on, holds the CPU-only torch, and stops in
seconds on SIGTERM or SIGINT. Skips where podman cannot run; ``scripts/test.sh`` installs it
(and debootstrap, for the base) where it can.
"""

from __future__ import annotations

import json
import re
import time
import tomllib
import urllib.request
from collections.abc import Iterator
from urllib.parse import urlparse

import pytest

from tests.container import podman as pm
from tests.e2e.servers import assert_no_exception, screenshot, wait_for_app

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]

PAGES = {"home": "/", "drift": "/drift?steps=200"}
STOP_LIMIT_S = 10.0
MAX_IMAGE_BYTES = 3e9  # the CPU-only image is ~1.8 GB; with PyPI's CUDA torch it is ~5.9 GB
BROWSER_REQUESTS: list[str] = []  # every URL the browser asked for, kept for the next test

# Run inside the container: every process as (pid, ppid, uid, state, command line).
PROCESSES_PY = """
import json, os
out = []
for pid in filter(str.isdigit, os.listdir("/proc")):
    if int(pid) == os.getpid():
        continue
    try:
        status = dict(line.split(":", 1) for line in open(f"/proc/{pid}/status"))
        argv = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\\0")
    except OSError:
        continue
    out.append([int(pid), int(status["PPid"]), int(status["Uid"].split()[0]),
                status["State"].split()[0], " ".join(a.decode() for a in argv if a)])
print(json.dumps(sorted(out)))
"""

SETTINGS = (
    "client.showErrorDetails",
    "client.toolbarMode",
    "server.enableXsrfProtection",
    "browser.gatherUsageStats",
    "browser.serverAddress",
    "theme.primaryColor",
)


def streamlit_settings(box: pm.Container, names: tuple[str, ...]) -> dict[str, object]:
    """What ``streamlit config show`` resolves in the container's folder and environment: the
    config files, then STREAMLIT_* variables (read as flags, as ``streamlit run`` does)."""
    wanted = {tuple(name.rsplit(".", 1)) for name in names}
    out: dict[str, object] = {}
    section = ""
    for line in box.exec("streamlit", "config", "show").splitlines():
        if re.fullmatch(r"\[[\w.]+\]", line):
            section = line[1:-1]
        elif (match := re.fullmatch(r"(\w+) = (.+)", line)) and (section, match[1]) in wanted:
            out[f"{section}.{match[1]}"] = tomllib.loads(f"v = {match[2]}")["v"]
    return out


@pytest.fixture(scope="session")
def image() -> str:
    reason = pm.unusable_reason()
    if reason:
        pytest.skip(reason)
    name = pm.build_image()
    size = int(pm.podman("image", "inspect", "--format", "{{.Size}}", name).stdout)
    pm.note(f"image {name}: {size / 1e9:.2f} GB")
    return name


@pytest.fixture(scope="module")
def container(image: str, browser) -> Iterator[pm.Container]:
    """One container for the tests below, in file order. It asks for pytest-playwright's
    ``browser`` (parametrized by browser name) so that every test using it shares that
    parameter, and pytest does not move the browser test away from the others, among the e2e
    tests: the stop test must find the container the pages trained in."""
    box = pm.start(image, pm.free_port())
    try:
        if pm.ConntrackWatch.unavailable_reason() is None:
            box.watch = pm.ConntrackWatch(box.address).start()
        pm.note(f"container healthy after {pm.wait_healthy(box):.1f} s")
        yield box
    finally:
        if box.watch:
            box.watch.stop()
        box.remove()


def off_machine(urls: list[str], own: str) -> list[str]:
    """The URLs (data: and blob: aside) whose host:port is not the app's own."""
    parsed = {url: urlparse(url) for url in urls}
    local = ("data", "blob")
    return sorted(u for u, p in parsed.items() if p.scheme not in local and p.netloc != own)


def processes(box: pm.Container) -> list[list]:
    return json.loads(box.exec("python", "-c", PROCESSES_PY))


def test_image_keeps_its_health_check_and_serves_as_uid_10001(image, container) -> None:
    inspect = json.loads(pm.podman("image", "inspect", image).stdout)[0]
    check = inspect.get("Healthcheck") or {}  # kept only in the docker format (--format docker)
    assert "/_stcore/health" in " ".join(check.get("Test", [])), check
    config = inspect["Config"]
    assert config["User"] == "10001:10001"
    assert "8501/tcp" in config["ExposedPorts"]
    assert pm.podman("healthcheck", "run", container.name, check=False).returncode == 0, (
        container.logs()
    )
    procs = processes(container)
    assert procs[0][0] == 1 and "tini" in procs[0][4], f"PID 1 is not tini: {procs}"
    streamlit = [p for p in procs[1:] if "streamlit run app.py" in p[4]]
    assert len(streamlit) == 1 and streamlit[0][1] == 1, procs
    assert {p[2] for p in procs} == {10001}, f"not every process runs as uid 10001: {procs}"
    owners = "stat -c '%u %n' /app /app/.streamlit /app/* /app/bnviz/*"
    app_files = container.exec("sh", "-c", owners)
    assert all(line.startswith("0 ") for line in app_files.splitlines()), app_files


def test_settings_hide_error_details_and_keep_xsrf(container) -> None:
    settings = streamlit_settings(container, SETTINGS)
    assert settings["client.toolbarMode"] == "minimal", f"config.toml was not read: {settings}"
    assert settings["theme.primaryColor"] == "#0072B2", f"config.toml was not read: {settings}"
    assert settings["client.showErrorDetails"] == "none", settings
    assert settings["server.enableXsrfProtection"] is True, settings
    assert settings["browser.gatherUsageStats"] is False, settings
    assert settings["browser.serverAddress"] == "localhost", settings
    with urllib.request.urlopen(f"{container.url}/_stcore/health", timeout=10) as resp:
        cookies = resp.headers.get_all("Set-Cookie") or []
    assert any(c.startswith("_streamlit_xsrf=") for c in cookies), (
        f"the server set no XSRF cookie, so XSRF protection is off: {cookies}"
    )


def test_pages_draw_in_chromium_through_the_published_port(container, browser) -> None:
    """Every request the browser makes (websockets too) is recorded for the next test."""
    own = urlparse(container.url).netloc
    seen = BROWSER_REQUESTS
    seen.clear()
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.on("request", lambda request: seen.append(request.url))
    page = context.new_page()
    page.on("websocket", lambda ws: seen.append(ws.url))
    page.set_default_timeout(120_000)
    page.set_default_navigation_timeout(120_000)
    try:
        for name, path in PAGES.items():
            start = time.monotonic()
            page.goto(container.url + path)
            try:
                wait_for_app(page, timeout=240)
            finally:
                screenshot(page, f"container-{name}")
            assert_no_exception(page)
            assert page.locator('[data-testid="stPlotlyChart"]').count() >= 1
            pm.note(f"{path}: first chart drawn in {time.monotonic() - start:.1f} s")
    finally:
        context.close()
    off = off_machine(seen, own)
    assert seen, "the browser made no request at all"
    pm.note(f"browser requests: {len(seen)}; off {own}: {off or 'none'}")


def test_browser_asks_nothing_off_the_machine(container) -> None:
    if not BROWSER_REQUESTS:
        pytest.skip("the browser test did not run")
    own = urlparse(container.url).netloc
    off = off_machine(BROWSER_REQUESTS, own)
    assert not off, f"requests off {own}: {off}"


def test_image_holds_only_the_cpu_torch(image, container) -> None:
    report = json.loads(container.exec("python", "-c", (
        "import json, importlib.metadata as m, torch;"
        "names = sorted(d.metadata['Name'] for d in m.distributions());"
        "print(json.dumps([torch.__version__, torch.cuda.is_available(), names]))"
    ), timeout=120))  # fmt: skip
    version, cuda, names = report
    assert version.endswith("+cpu") and not cuda, report[:2]
    gpu = [n for n in names if n.lower().startswith(("nvidia", "triton", "cuda"))]
    assert not gpu, f"CUDA packages in the image: {gpu}"
    listing = container.exec("ls", "/usr/local/lib/python3.11/site-packages")
    assert "nvidia" not in listing.lower()
    size = int(pm.podman("image", "inspect", "--format", "{{.Size}}", image).stdout)
    assert size < MAX_IMAGE_BYTES, f"{size / 1e9:.2f} GB: is PyPI's CUDA torch in there?"


def test_server_asks_nothing_off_the_machine(container) -> None:
    """The server's side: no connection out of the container since it started (the pages
    above trained and drew meanwhile), as the host's connection tracking saw it."""
    reason = pm.ConntrackWatch.unavailable_reason()
    if reason or container.watch is None:
        pytest.skip(reason or "no connection tracking")
    container.watch.sample()
    assert not container.watch.flows, f"the container connected out: {container.watch.flows}"
    pm.note(f"connections out of the container: none (watched from {container.address})")


def test_stop_is_quick_and_clean(container) -> None:
    """Last: ``podman stop`` sends SIGTERM to PID 1 (tini), which must pass it on and wait
    for Streamlit and its training workers; podman kills after 10 s, and that shows as 137."""
    before = processes(container)
    assert not [p for p in before if p[3] == "Z"], f"unreaped zombies: {before}"
    kinds = [" ".join(p[4].split()[:3])[:60] for p in before]
    pm.note(f"processes before stop: {len(before)}: {'; '.join(kinds)}")
    assert len(before) > 2, f"no training workers to stop: did the pages run in here? {before}"
    start = time.monotonic()
    pm.podman("stop", "--time", str(int(STOP_LIMIT_S)), container.name, timeout=60)
    seconds = time.monotonic() - start
    state = container.state()
    pm.note(f"podman stop: {seconds:.1f} s, exit code {state['ExitCode']}")
    assert seconds < STOP_LIMIT_S, f"stop took {seconds:.1f} s:\n{container.logs()}"
    assert state["ExitCode"] not in (137, -1), f"killed, not stopped: {state}"
    assert state["ExitCode"] == 0, f"exit code {state['ExitCode']}:\n{container.logs()}"


def test_sigint_stops_it_too(image) -> None:
    """Ctrl-C on ``docker run -it`` sends SIGINT; tini passes that on as well."""
    box = pm.start(image, pm.free_port())
    try:
        pm.wait_healthy(box)
        start = time.monotonic()
        pm.podman("kill", "--signal", "INT", box.name)
        code = pm.podman("wait", box.name, timeout=STOP_LIMIT_S + 20).stdout.strip()
        seconds = time.monotonic() - start
        pm.note(f"SIGINT: exited in {seconds:.1f} s, exit code {code}")
        assert seconds < STOP_LIMIT_S and code == "0", f"{seconds:.1f} s, {code}:\n{box.logs()}"
    finally:
        box.remove()
