"""Real servers and browser helpers for the end-to-end tests and the load test.

No pytest in here, so ``bench/load_test.py`` can import it too. Servers are started as
subprocesses in their own process group (``streamlit run``, nginx), so that stopping one also
stops anything it spawned, and a test that fails never leaves a server behind.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
SCREENSHOTS = ARTIFACTS / "screenshots"

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# Streamlit sets data-test-script-state on stApp ("running", "notRunning", ...) from the first
# message on; the status widget only shows after 500 ms of running, too late to rely on alone.
# "Ready" = connected, not running, nothing stale (greyed out from the previous run), and at
# least one plotly chart drawn (its SVG exists and has a size). An exception box also ends the
# wait, so a broken page fails at once instead of at the timeout.
APP_READY_JS = """() => {
  if (document.querySelector('[data-testid="stException"]')) return true;
  const app = document.querySelector('[data-testid="stApp"]');
  if (!app) return false;
  if (app.getAttribute('data-test-connection-state') !== 'CONNECTED') return false;
  if (app.getAttribute('data-test-script-state') !== 'notRunning') return false;
  if (document.querySelector('[data-testid="stStatusWidget"]')) return false;
  if (document.querySelector('[data-stale="true"]')) return false;
  const svg = document.querySelector('[data-testid="stPlotlyChart"] .main-svg');
  if (!svg) return false;
  const box = svg.getBoundingClientRect();
  return box.width > 0 && box.height > 0;
}"""


def launch_args() -> dict[str, Any]:
    """Playwright launch options for Debian's Chromium (Playwright cannot download its own)."""
    return {"executable_path": CHROMIUM, "args": list(CHROMIUM_ARGS), "headless": True}


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def streamlit_command() -> list[str]:
    """The project's venv streamlit, else the one next to this Python."""
    for candidate in (
        REPO / ".venv" / "bin" / "streamlit",
        Path(sys.executable).parent / "streamlit",
    ):
        if candidate.exists():
            return [str(candidate)]
    return [sys.executable, "-m", "streamlit"]


def stop_process(proc: subprocess.Popen, timeout: float = 15.0) -> None:
    """SIGTERM the process group, then SIGKILL if it does not exit in time."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def log_tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


def wait_http(url: str, expect: str, timeout: float, proc: subprocess.Popen, log: Path) -> None:
    """Poll ``url`` until its body is ``expect``; fail early, with the log, if proc exits."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log_tail(log)}")
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                if resp.read().decode().strip() == expect:
                    return
        except OSError as err:
            last_error = err
        time.sleep(0.25)
    raise TimeoutError(f"{url} not ready after {timeout:.0f} s ({last_error}):\n{log_tail(log)}")


@dataclass
class Server:
    """A running server: its base URL (no trailing slash), process and log file."""

    url: str
    proc: subprocess.Popen
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid


def start_streamlit(
    port: int | None = None,
    trainers: int | None = None,
    env: Mapping[str, str] | None = None,
    log_dir: Path | None = None,
    timeout: float = 180.0,
) -> Server:
    """``streamlit run app.py`` on 127.0.0.1, headless, returned once /_stcore/health is ok."""
    port = port or free_port()
    log_dir = Path(log_dir or tempfile.mkdtemp(prefix="bnviz-e2e-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"streamlit-{port}.log"
    child_env = {**os.environ, **(env or {})}
    child_env["STREAMLIT_BROWSER_GATHER_USAGE_STATS"] = "false"
    if trainers is not None:
        child_env["BNVIZ_TRAINERS"] = str(trainers)
    cmd = [
        *streamlit_command(), "run", "app.py",
        "--server.address", "127.0.0.1",
        "--server.port", str(port),
        "--server.headless", "true",
    ]  # fmt: skip
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd, cwd=REPO, env=child_env, stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/_stcore/health", "ok", timeout, proc, log)
    except BaseException:
        stop_process(proc)
        raise
    return Server(url, proc, log)


@contextmanager
def streamlit_server(**kwargs: Any) -> Iterator[Server]:
    """``start_streamlit`` as a context manager that always stops the server."""
    server = start_streamlit(**kwargs)
    try:
        yield server
    finally:
        stop_process(server.proc)


def nginx_binary() -> str | None:
    return shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )


def screenshot(page: Any, name: str) -> Path:
    """Save a full-page screenshot under test-artifacts/screenshots/ and return its path."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{re.sub(r'[^A-Za-z0-9_.-]+', '-', name)}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def wait_for_app(page: Any, timeout: float = 120.0) -> None:
    """Wait until Streamlit finished running the page and a plotly chart is drawn; fail at
    once, with its text, if the page shows an exception instead."""
    page.wait_for_function(APP_READY_JS, timeout=timeout * 1000, polling=200)
    assert_no_exception(page)


def exception_texts(page: Any) -> list[str]:
    return page.locator('[data-testid="stException"]').all_inner_texts()


def assert_no_exception(page: Any) -> None:
    """Fail with the traceback text if Streamlit shows an exception box."""
    texts = exception_texts(page)
    assert not texts, "Streamlit showed an exception:\n" + "\n---\n".join(texts)


NGINX_CONF = REPO / "deploy" / "nginx.conf"
TEMP_PATHS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


def render_nginx_conf(shipped: str, upstreams: list[str], port: int, prefix: Path) -> str:
    """deploy/nginx.conf made runnable here by an unprivileged-path, foreground nginx.

    Only what differs between Docker and this machine changes: the upstream ``server`` lines
    (one per local backend, same parameters, less compose's DNS ``resolve``), the listen
    address, and the pid, temp and user settings nginx needs under a private prefix. The maps,
    hash key, headers and timeouts are the shipped ones, verbatim.
    """
    block = re.search(r"upstream\s+bnviz\s*\{.*?\n\s*\}", shipped, re.S)
    if block is None:
        raise ValueError("deploy/nginx.conf has no `upstream bnviz { ... }` block")
    servers = re.findall(r"^(\s*)server\s+\S+([^;]*);", block.group(0), re.M)
    if len(servers) != 1:
        raise ValueError(f"expected one templated server line in upstream bnviz: {servers}")
    indent, params = servers[0]
    params = " ".join(p for p in params.split() if p != "resolve")
    lines = "\n".join(f"{indent}server {addr} {params};" for addr in upstreams)
    upstream = re.sub(r"^\s*server\s+\S+[^;]*;", lambda _: lines, block.group(0), flags=re.M)
    conf = shipped.replace(block.group(0), upstream)
    conf, listens = re.subn(r"^(\s*)listen\s+[^;]+;", rf"\g<1>listen 127.0.0.1:{port};", conf,
                            flags=re.M)  # fmt: skip
    if listens != 1:
        raise ValueError(f"expected one listen directive, found {listens}")
    conf = re.sub(r"^\s*(pid|user)\s+[^;]+;\n", "", conf, flags=re.M)
    temp = "".join(f"    {name}_temp_path {prefix / name};\n" for name in TEMP_PATHS)
    conf = re.sub(r"^http\s*\{\n", lambda m: m.group(0) + temp, conf, count=1, flags=re.M)
    return f"user root;\npid {prefix / 'nginx.pid'};\n{conf}"


def start_nginx(conf_text: str, prefix: Path, port: int, timeout: float = 30.0) -> Server:
    """Debian's nginx in the foreground on ``conf_text``; its stdout (the access log, which
    the shipped config sends to /dev/stdout) goes to ``prefix/access.log``."""
    binary = nginx_binary()
    if binary is None:
        raise FileNotFoundError("nginx is not installed")
    prefix.mkdir(parents=True, exist_ok=True)
    for name in TEMP_PATHS:
        (prefix / name).mkdir(exist_ok=True)
    conf = prefix / "nginx.conf"
    conf.write_text(conf_text)
    base = [binary, "-p", str(prefix), "-e", str(prefix / "error.log"), "-c", str(conf)]
    check = subprocess.run([*base, "-t"], capture_output=True, text=True, timeout=30)
    if check.returncode != 0:
        raise RuntimeError(f"nginx -t failed:\n{check.stderr}\n{conf_text}")
    log = prefix / "access.log"
    with open(log, "ab") as out, open(prefix / "stderr.log", "ab") as err:
        proc = subprocess.Popen(
            [*base, "-g", "daemon off;"], stdout=out, stderr=err, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
    server = Server(f"http://127.0.0.1:{port}", proc, log)
    try:
        wait_http(f"{server.url}/nginx-health", "ok", timeout, proc, prefix / "stderr.log")
    except BaseException:
        stop_process(proc)
        raise
    return server
