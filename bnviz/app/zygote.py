"""The worker side of the training processes: a zygote that forks workers, and the loop each
worker runs. The server's side is ``bnviz.app.workers``.

The server starts this module as a fresh interpreter (``python -m bnviz.app.zygote``). It
loads the engine, its compiled kernels, the digits data and plotly once, then forks a worker
whenever the server asks, handing it one end of a socket pair. A worker is a copy of this
process: its ``__main__`` is this module, never the app script, whatever the server's
``__main__`` is in any thread at any moment (Streamlit sets it to the script being run, in
every session's thread), so no worker can run the app, nor start processes of its own.

Lifetimes: the zygote ends when the server's end of its control socket closes (the server
exited, however it exited), killing every worker it forked; each worker is also killed by the
kernel when the zygote dies (``PR_SET_PDEATHSIG``). Neither reacts to SIGINT: a terminal's
Ctrl-C reaches the whole process group, and the server decides when its workers end.

Messages are pickled tuples between these processes only (never read from a file).
"""

from __future__ import annotations

import ctypes
import os
import pickle
import select
import signal
import socket
import struct
import sys
import time
import traceback
from multiprocessing.connection import Connection
from typing import Any

PR_SET_PDEATHSIG = 1
PROGRESS_EVERY = 0.1  # seconds between a task's progress reports to the server


class Cancelled(Exception):
    """Raised inside a task whose waiter has gone (at the task's next progress report)."""


def dumps(obj: Any) -> bytes:
    return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)


def die_with_parent(parent: int) -> None:
    """Ask the kernel to kill this process when its parent dies; exit now if it already has."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:
        os._exit(1)


def preload() -> None:
    """What every worker needs, loaded once here and shared by the forks (copy on write)."""
    import bnviz.fanout  # noqa: F401
    import bnviz.sweep  # noqa: F401
    from bnviz.train import warm_up

    warm_up()  # the kernels, from numba's cache (compiled there the first time), and digits
    import plotly.graph_objects as go

    go.Figure(go.Scatter(x=[0, 1], y=[0, 1])).to_dict()  # plotly's validators, built once


def serve(conn: Connection) -> None:
    """A worker's loop: run each task it is sent, with progress and cancellation, until the
    server closes its end."""
    conn.send_bytes(dumps(("hello", 0, os.getpid())))
    while True:
        try:
            kind, task, body = pickle.loads(conn.recv_bytes())
        except (EOFError, OSError):
            return
        if kind != "run":
            continue  # a cancel for a task that already ended
        conn.send_bytes(dumps(("started", task, None)))
        conn.send_bytes(dumps(run_task(conn, task, body)))


def run_task(conn: Connection, task: int, body: bytes) -> tuple:
    last = [0.0]

    def progress(*values: Any) -> None:
        """Called by the engine between chunks of steps: stop if cancelled, and report (at most
        every PROGRESS_EVERY seconds; a short run's hundred chunks need not all be told)."""
        while conn.poll():
            kind, which, _ = pickle.loads(conn.recv_bytes())
            if kind == "cancel" and which == task:
                raise Cancelled(f"task {task} was cancelled")
        now = time.monotonic()
        if now - last[0] >= PROGRESS_EVERY or (len(values) >= 2 and values[0] >= values[1]):
            last[0] = now
            conn.send_bytes(dumps(("progress", task, values)))

    try:
        fn, args, kwargs = pickle.loads(body)
        result = fn(*args, progress=progress, **kwargs)
        return ("done", task, dumps(result))
    except Cancelled:
        return ("cancelled", task, None)
    except BaseException as err:  # noqa: BLE001 - every failure goes back to the waiter
        text = traceback.format_exc()
        try:
            payload = dumps(err)
            pickle.loads(payload)
        except Exception:  # noqa: BLE001 - an exception that does not survive pickling
            payload = dumps(RuntimeError(f"{type(err).__name__}: {err}"))
        return ("error", task, (payload, text))


def build_figure(
    build: Any, result: Any, args: tuple, progress: Any = None, kwargs: dict | None = None
) -> dict:
    """A figure task: ``build(result, *args, **kwargs)`` as the dict ``st.plotly_chart`` sends."""
    return build(result, *args, **(kwargs or {})).to_dict()


def reap(children: set[int]) -> None:
    while children:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            children.clear()
            return
        if pid == 0:
            return
        children.discard(pid)


def main(argv: list[str]) -> None:
    """The zygote: ``python -m bnviz.app.zygote <control socket fd> <server pid>``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    ctl = socket.socket(fileno=int(argv[1]))
    die_with_parent(int(argv[2]))
    try:
        preload()
    except BaseException:  # noqa: BLE001 - the server reports it
        ctl.sendall(b"E" + traceback.format_exc().encode()[-4000:])
        raise
    me = os.getpid()
    ctl.sendall(b"R")
    children: set[int] = set()
    try:
        while True:
            ready, _, _ = select.select([ctl], [], [], 1.0)
            reap(children)
            if not ready:
                continue
            msg, fds, _, _ = socket.recv_fds(ctl, 16, 1)
            if not msg:
                break  # the server is gone
            if not fds:
                continue
            pid = os.fork()
            if pid == 0:
                code = 0
                try:
                    ctl.close()
                    die_with_parent(me)
                    serve(Connection(fds[0]))
                except BaseException:  # noqa: BLE001
                    traceback.print_exc()
                    code = 1
                finally:
                    os._exit(code)
            os.close(fds[0])
            children.add(pid)
            ctl.sendall(struct.pack("!q", pid))
    except OSError:
        pass
    finally:
        for pid in children:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        reap(children)


if __name__ == "__main__":
    main(sys.argv)
