"""podman as the container test drives it, with the flags that work on these machines.

The image itself is built by ``scripts/container.sh`` (a person runs the same script by hand);
this module starts containers from it, always removes them, and keeps the stage's timings and
sizes for the summary that ``conftest.py`` prints at the end of the run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "container.sh"
BASE = "python:3.11.14-slim-bookworm"
IMAGE = os.environ.get("BNVIZ_TEST_IMAGE", "localhost/bnviz:test")
# Same as scripts/container.sh: podman's default limits for root exceed these machines' hard
# limits, and a container would not start.
PODMAN = ["podman", "--runtime", "runc"]
LIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096"]
PORTS = range(8700, 8800)  # the ports this machine lets tests serve on
CONNTRACK = Path("/proc/net/nf_conntrack")

SUMMARY: list[str] = []


def note(line: str) -> None:
    """Print now (seen with -s) and keep for the end-of-run summary."""
    print(line)
    SUMMARY.append(line)


def podman(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [*PODMAN, *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args)} failed ({result.returncode}):\n"
                           f"{result.stdout[-3000:]}{result.stderr[-3000:]}")  # fmt: skip
    return result


def unusable_reason() -> str | None:
    """Why the container test cannot run here, or None if podman can build and run images."""
    if shutil.which("podman") is None:
        return "podman is not installed (scripts/test.sh installs it with apt, as root)"
    if shutil.which("runc") is None:
        return "runc is not installed (apt-get install runc)"
    try:
        info = podman("info", "--format", "json", timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"podman does not run here: {err}"
    if info.returncode != 0:
        return f"podman does not run here: {info.stderr.strip()[-500:]}"
    if podman("image", "exists", BASE, check=False).returncode != 0:
        if os.geteuid() != 0:
            return f"{BASE} is absent and making it needs root (debootstrap)"
        if shutil.which("debootstrap") is None and not Path("/usr/sbin/debootstrap").exists():
            return f"{BASE} is absent and debootstrap is not installed"
    return None


def build_image(timeout: float = 1800) -> str:
    """``scripts/container.sh build`` into IMAGE; its step timings go to the summary."""
    start = time.monotonic()
    result = subprocess.run(
        [str(SCRIPT), "build"], cwd=REPO, env={**os.environ, "BNVIZ_IMAGE": IMAGE},
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("[container]")]
    if result.returncode != 0:
        raise RuntimeError(f"scripts/container.sh build failed ({result.returncode}):\n"
                           f"{result.stdout[-6000:]}\n{result.stderr[-4000:]}")  # fmt: skip
    for line in lines:
        if re.search(r" took \d+ s$", line):
            note(line.removeprefix("[container] "))
    note(f"scripts/container.sh build, all told: {time.monotonic() - start:.0f} s")
    return IMAGE


def free_port() -> int:
    """A port in 8700-8799 that is free on 127.0.0.1 right now."""
    for port in PORTS:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 8700-8799")


@dataclass
class Container:
    """A running container of IMAGE, its port published on 127.0.0.1."""

    name: str
    url: str

    @property
    def address(self) -> str:
        """Its address on podman's network."""
        return podman(
            "inspect", "--format", "{{.NetworkSettings.IPAddress}}", self.name
        ).stdout.strip()

    def state(self) -> dict:
        return json.loads(podman("inspect", "--format", "{{json .State}}", self.name).stdout)

    def logs(self) -> str:
        result = podman("logs", self.name, check=False)
        return (result.stdout + result.stderr)[-4000:]

    def exec(self, *argv: str, timeout: float = 60) -> str:
        return podman("exec", self.name, *argv, timeout=timeout).stdout

    def remove(self) -> None:
        podman("rm", "--force", "--time", "0", self.name, check=False)


def start(image: str, port: int, *extra: str) -> Container:
    """``podman run -d -p 127.0.0.1:<port>:8501 <image>`` with no ``--init``: the image's own
    PID 1 must handle signals. The health check runs on demand (no systemd for its timer)."""
    name = f"bnviz-test-{os.getpid()}-{port}"
    podman("rm", "--force", "--time", "0", name, check=False)
    podman(
        "run", "--detach", "--name", name, *LIMITS, "--health-interval", "disable",
        "--publish", f"127.0.0.1:{port}:8501", *extra, image,
    )  # fmt: skip
    return Container(name, f"http://127.0.0.1:{port}")


def wait_healthy(container: Container, timeout: float = 240) -> float:
    """Poll /_stcore/health through the published port; seconds until it answered ok."""
    start = time.monotonic()
    last: Exception | None = None
    while time.monotonic() - start < timeout:
        if container.state().get("Status") != "running":
            raise RuntimeError(f"the container exited:\n{container.logs()}")
        try:
            with urllib.request.urlopen(f"{container.url}/_stcore/health", timeout=5) as resp:
                if resp.read() == b"ok":
                    return time.monotonic() - start
        except OSError as err:
            last = err
        time.sleep(0.5)
    raise TimeoutError(f"not healthy after {timeout:.0f} s ({last}):\n{container.logs()}")


class ConntrackWatch:
    """Every connection the container opens, as the host's connection tracking sees it.

    The container sits behind podman's NAT, so a flow it starts (a DNS query included) is one
    whose original source is the container's address; replies to the published port are not.
    Polled twice a second: UDP entries live 30 s and unanswered TCP ones 2 min, so none slips.
    """

    def __init__(self, address: str) -> None:
        self.source = f"src={address}"
        self.flows: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    @staticmethod
    def unavailable_reason() -> str | None:
        try:
            CONNTRACK.read_text()
        except OSError as err:
            return f"cannot read the host's connection tracking ({err})"
        return None

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(0.5)

    def sample(self) -> None:
        for line in CONNTRACK.read_text().splitlines():
            # The original direction's addresses and ports: one entry per flow, whatever its
            # countdown and state.
            original = [f for f in line.split() if "=" in f][:4]
            if original and original[0] == self.source:
                self.flows.add(" ".join(original))

    def start(self) -> ConntrackWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
