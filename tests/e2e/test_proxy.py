"""deploy/nginx.conf, for real: two ``streamlit run`` backends behind Debian's nginx.

The config under test is the shipped one with only the upstream addresses, the listen port
and nginx's own file paths rewritten (``servers.render_nginx_conf``). Its access log names the
backend (``upstream=``) and the stickiness key (``route=``) of every request; a websocket's
line is written when it closes, so the checks read the log after closing the browser.
"""

from __future__ import annotations

import re
import time
import urllib.request
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.servers import (
    NGINX_CONF,
    REPO,
    Server,
    assert_no_exception,
    free_port,
    nginx_binary,
    render_nginx_conf,
    screenshot,
    start_nginx,
    start_streamlit,
    stop_process,
    wait_for_app,
)

pytestmark = pytest.mark.e2e

COOKIE = "bnviz_route"
LOG_LINE = re.compile(
    r'"(?P<method>\S+) (?P<path>\S+) [^"]*" (?P<status>\d{3}) \d+ '
    r"upstream=(?P<upstream>.*?) route=(?P<route>\S+) rt="
)
TIMEOUT_MS = 120_000


@dataclass
class Proxy:
    url: str
    backends: list[str]
    log: Path

    def entries(self) -> list[dict[str, str]]:
        text = self.log.read_text(errors="replace")
        return [m.groupdict() for m in LOG_LINE.finditer(text)]

    def routes(self) -> dict[str, set[str]]:
        """route -> the backends its requests went to."""
        out: dict[str, set[str]] = defaultdict(set)
        for e in self.entries():
            out[e["route"]].add(e["upstream"])
        return out

    def wait_for_websocket_lines(self, route: str, count: int, timeout: float = 30.0) -> list:
        """The route's closed-websocket (101) log lines, once there are ``count`` of them."""
        deadline = time.monotonic() + timeout
        while True:
            lines = [
                e
                for e in self.entries()
                if e["route"] == route and e["status"] == "101" and e["path"] == "/_stcore/stream"
            ]
            if len(lines) >= count or time.monotonic() > deadline:
                return lines
            time.sleep(0.25)


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    """Two Streamlit backends and nginx on free ports; every process stopped at the end."""
    if nginx_binary() is None:
        pytest.skip("nginx is not installed (apt-get install nginx)")
    tmp = tmp_path_factory.mktemp("proxy")
    started: list[Server] = []
    try:
        for _ in range(2):
            started.append(start_streamlit(trainers=1, log_dir=tmp))
        backends = [s.url.removeprefix("http://") for s in started]
        port = free_port()
        prefix = tmp / "nginx"
        conf = render_nginx_conf(NGINX_CONF.read_text(), backends, port, prefix)
        nginx = start_nginx(conf, prefix, port)
        started.append(nginx)
        yield Proxy(nginx.url, backends, nginx.log)
    finally:
        for server in reversed(started):
            stop_process(server.proc)


def fetch(url: str, cookie: str | None = None) -> tuple[str, str | None]:
    """GET url as a fresh client (optionally with a route cookie): (body, the route cookie
    nginx set, if any)."""
    request = urllib.request.Request(url)
    if cookie is not None:
        request.add_header("Cookie", f"{COOKIE}={cookie}")
    with urllib.request.urlopen(request, timeout=30) as resp:
        routes = [c for c in resp.headers.get_all("Set-Cookie") or [] if c.startswith(COOKIE)]
        return resp.read().decode(), routes[0] if routes else None


def new_context(browser: Any, proxy: Proxy, route: str | None = None) -> Any:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    if route is not None:
        context.add_cookies([{"name": COOKIE, "value": route, "url": proxy.url}])
    return context


def render_home(context: Any, proxy: Proxy, shot: str) -> None:
    page = context.new_page()
    page.goto(proxy.url + "/")
    try:
        wait_for_app(page)
        assert_no_exception(page)
    finally:
        screenshot(page, shot)


def test_browser_session_renders_and_sticks_to_one_backend(browser: Any, proxy: Proxy) -> None:
    """Websocket upgrade works (the chart is drawn over it), the cookie is set on first
    contact, and every request of this browser, both websockets included, hit one backend."""
    context = new_context(browser, proxy)
    try:
        render_home(context, proxy, "proxy-home")
        cookies = {c["name"]: c for c in context.cookies(proxy.url)}
        assert COOKIE in cookies, f"nginx set no {COOKIE} cookie: {list(cookies)}"
        assert cookies[COOKIE]["httpOnly"]
        route = cookies[COOKIE]["value"]
        page = context.pages[0]
        page.reload()
        wait_for_app(page)
        assert_no_exception(page)
    finally:
        context.close()

    sockets = proxy.wait_for_websocket_lines(route, 2)
    assert len(sockets) == 2, f"expected 2 websocket sessions for route {route}: {sockets}"
    mine = [e for e in proxy.entries() if e["route"] == route]
    upstreams = {e["upstream"] for e in mine}
    assert len(upstreams) == 1 and upstreams <= set(proxy.backends), upstreams
    assert any(e["path"] == "/" and e["status"] == "200" for e in mine), "first page load"
    assert len(mine) >= 5, mine


def test_new_clients_spread_over_both_backends(browser: Any, proxy: Proxy) -> None:
    """Fresh clients get fresh routes that land on both backends; a route is stable for plain
    requests and for a real browser session started with it."""
    issued = []
    for _ in range(40):
        body, set_cookie = fetch(proxy.url + "/_stcore/health")
        assert body.strip() == "ok"
        match = re.match(rf"{COOKIE}=([0-9a-f]+);", set_cookie or "")
        assert match, f"no route cookie for a new client: {set_cookie!r}"
        issued.append(match.group(1))
    assert len(set(issued)) == len(issued), "routes must be unique per new client"

    for route in issued:
        body, set_cookie = fetch(proxy.url + "/_stcore/health", cookie=route)
        assert body.strip() == "ok" and set_cookie is None, "known clients get no new cookie"
    routes = proxy.routes()
    for route in issued:
        assert len(routes[route]) == 1, f"route {route} went to {routes[route]}"
    by_backend = {next(iter(routes[r])): r for r in issued}
    assert set(by_backend) == set(proxy.backends), f"only {set(by_backend)} used of 40 clients"

    for backend, route in sorted(by_backend.items()):
        context = new_context(browser, proxy, route)
        try:
            render_home(context, proxy, f"proxy-backend-{backend.rsplit(':', 1)[1]}")
        finally:
            context.close()
        sockets = proxy.wait_for_websocket_lines(route, 1)
        assert [e["upstream"] for e in sockets] == [backend], sockets


def test_compose_serves_this_config() -> None:
    """docker-compose.yml mounts this very file, publishes its listen port and waits for
    healthy replicas."""
    compose = (REPO / "deploy" / "docker-compose.yml").read_text()
    conf = NGINX_CONF.read_text()
    assert "./nginx.conf:/etc/nginx/nginx.conf:ro" in compose
    port = re.search(r"^\s*listen\s+(\d+);", conf, re.M).group(1)
    assert f'"{port}:{port}"' in compose
    assert re.search(r"replicas:\s*[2-9]", compose)
    assert "condition: service_healthy" in compose
    upstream = re.search(r"upstream bnviz \{.*?\}", conf, re.S).group(0)
    assert "hash $bnviz_route consistent;" in upstream
    assert re.search(r"server app:8501\b", upstream), "upstream must name the compose service"
