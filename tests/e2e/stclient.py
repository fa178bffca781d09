"""A minimal Streamlit client speaking the app's own websocket protocol, for load tests.

A browser spends most of its CPU parsing plotly.js and drawing charts; thirty of them on the
server's own two cores would measure the browsers, not the server. This client opens a session
the way the browser does (``/_stcore/stream``, protobuf BackMsg/ForwardMsg), asks for a page
with a query string, waits for the script to finish, notes when the first chart arrived, and
can move a widget by sending its new value, as the browser does after a keyboard move.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import websockets
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg


@dataclass
class RunResult:
    """What one script run sent back."""

    seconds: float
    first_chart_s: float | None
    charts: int
    exceptions: list[str]
    widgets: dict[str, Any] = field(default_factory=dict)  # label -> element proto
    query_string: str | None = None


class StreamlitSession:
    """One browser-like session on a Streamlit server (async; one per simulated student)."""

    def __init__(self, base_url: str, page: str) -> None:
        self.ws_url = base_url.replace("http://", "ws://").rstrip("/") + "/_stcore/stream"
        self.origin = base_url.rstrip("/")
        self.page = page
        self.query = ""
        self._ws: Any = None
        self._widgets: dict[str, Any] = {}

    async def __aenter__(self) -> StreamlitSession:
        self._ws = await websockets.connect(
            self.ws_url,
            subprotocols=["streamlit"],
            origin=self.origin,
            max_size=None,
            open_timeout=120,
            ping_interval=None,
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._ws.close()

    async def run(
        self, query: str = "", widget_states: list | None = None, timeout: float = 600
    ) -> RunResult:
        """Ask for a rerun of the page (with a query string and widget states) and read the
        messages until the script has finished."""
        self.query = query or self.query
        msg = BackMsg()
        state = msg.rerun_script
        state.query_string = self.query
        state.page_name = self.page
        for ws in widget_states or []:
            state.widget_states.widgets.append(ws)
        start = time.perf_counter()
        await self._ws.send(msg.SerializeToString())
        first_chart = None
        charts = 0
        exceptions: list[str] = []
        query_string = None
        async with asyncio.timeout(timeout):
            while True:
                fwd = ForwardMsg()
                fwd.ParseFromString(await self._ws.recv())
                kind = fwd.WhichOneof("type")
                if kind == "delta" and fwd.delta.WhichOneof("type") == "new_element":
                    element = fwd.delta.new_element
                    which = element.WhichOneof("type")
                    if which == "plotly_chart":
                        charts += 1
                        if first_chart is None:
                            first_chart = time.perf_counter() - start
                    elif which == "exception":
                        exceptions.append(element.exception.message)
                    elif which == "slider":
                        self._widgets[element.slider.label] = element.slider
                elif kind == "page_info_changed":
                    query_string = fwd.page_info_changed.query_string
                elif kind == "script_finished":
                    break
        if query_string is not None:
            self.query = query_string
        return RunResult(
            seconds=time.perf_counter() - start,
            first_chart_s=first_chart,
            charts=charts,
            exceptions=exceptions,
            widgets=dict(self._widgets),
            query_string=query_string,
        )

    def select_slider_state(self, label: str, step: int = 1) -> tuple[Any, str]:
        """The widget state moving a select slider ``step`` options from where it is (what the
        browser sends after an arrow key), and the new option's text."""
        from streamlit.proto.WidgetStates_pb2 import WidgetState

        slider = self._widgets[label]
        options = list(slider.options)
        # the widget's current value is sent as its option text (raw_value) when the page set it
        current = options.index(slider.raw_value[0]) if slider.raw_value else int(slider.default[0])
        target = options[max(0, min(len(options) - 1, current + step))]
        state = WidgetState(id=slider.id)
        state.string_array_value.data.append(target)
        return state, target
