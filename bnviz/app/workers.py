"""Kept worker processes for training and figures: started, scheduled, paused, cancelled and
ended by the server.

Why processes: a Streamlit server runs every session's script in a thread of one process, and
training (numba kernels) and building plotly figures both hold the GIL. In worker processes
they run in parallel, one per core, and the server's threads stay free to serve pages.

How: the workers are forks of a zygote (``bnviz.app.zygote``), a fresh interpreter that has
loaded the engine once, so a new worker is ready in milliseconds and never sees the app script.
One dispatcher thread here owns them all: it sends each task to an idle worker over the
worker's own socket, reads its progress and result, and applies the scheduling policy of
``bnviz.app.guard`` (figures first, shortest job next, long tasks paused with SIGSTOP while
shorter ones run in a spare process). Waiters (the sessions' threads) only submit jobs and wait
on them; nothing they do holds a lock while a process starts.

Cancellation: a waiter that leaves cancels its job. A running task is asked to stop at its next
progress report and killed if it has not within ``CANCEL_GRACE`` (a 500-step chunk of the
largest run is ~20 s of compiled code that cannot be interrupted); a paused one is killed at
once. Killed workers are replaced from the zygote.

Ending: the workers end with the server. On exit (a signal, the main thread ending) every
worker is killed and the zygote's control socket closed; if the server is killed outright,
the zygote sees the socket close and kills its workers, and the kernel kills the workers
of a zygote that dies.
"""

from __future__ import annotations

import atexit
import logging
import os
import pickle
import queue
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection, wait
from typing import Any

from bnviz.app import guard, zygote
from bnviz.app.guard import FIGURE, TRAIN, Job, Task
from bnviz.app.zygote import Cancelled
from bnviz.experiment import Call

LOG = logging.getLogger("bnviz")

POLL = 0.1  # seconds between a waiter's looks at its job
TICK = 0.1  # seconds between the dispatcher's scheduling decisions when nothing happens
DESCRIBE_EVERY = 0.25  # seconds between updates of the waiting jobs' places and estimates
CANCEL_GRACE = 0.3  # seconds a cancelled running task has to stop before its worker is killed
IDLE_RETIRE = 60.0  # spare workers idle this long are ended
BOOT_TIMEOUT = 300.0  # the zygote's first start on a machine compiles the kernels (~60 s here)
BOOT_ATTEMPTS = 3  # zygote starts that may fail in a row before waiting jobs are failed
SEC_PER_MAC = 2.5e-10  # a first guess at training speed (forward multiply-adds), refined
FIGURE_COST = 0.1  # seconds, a first guess for a figure

__all__ = ["Cancelled", "WorkerDied", "run_many", "is_running", "shutdown", "Client"]


class WorkerDied(RuntimeError):
    """A worker process ended while it ran a task (killed, or out of memory)."""


class _Worker:
    """One worker process: its socket, read and written by threads of its own, so that the
    dispatcher never waits on a socket (a worker paused or killed halfway through a message
    would hold it, and every other worker with it)."""

    def __init__(self, sock: socket.socket, pid: int, inbox: Callable[[tuple], None]) -> None:
        self.conn = Connection(sock.detach())
        self.pid = pid
        try:  # a handle on this very process, even if its pid is reused later
            self.pidfd: int | None = os.pidfd_open(pid)
        except (AttributeError, OSError):
            self.pidfd = None
        self.ready = False
        self.gone = False
        self.task: Task | None = None
        self.idle_since = time.monotonic()
        self.cancel_at: float | None = None
        self.outbox: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        name = f"bnviz-worker-{pid}"
        threading.Thread(target=self._read, args=(inbox,), name=name, daemon=True).start()
        threading.Thread(target=self._write, name=name, daemon=True).start()

    def _read(self, inbox: Callable[[tuple], None]) -> None:
        while True:
            try:
                data = self.conn.recv_bytes()
            except (EOFError, OSError):
                inbox(("gone", self, None))  # the process ended: its socket closed
                return
            try:
                kind, tid, body = pickle.loads(data)
            except pickle.UnpicklingError:
                continue
            t = self.task
            if kind == "progress":  # news for the waiter only: the dispatcher need not wake
                if t is not None and t.id == tid:
                    t.values = body
                    if len(body) >= 2:
                        t.progress = body
                continue
            inbox(("message", self, (kind, tid, body)))

    def _write(self) -> None:
        while (data := self.outbox.get()) is not None:
            try:
                self.conn.send_bytes(data)
            except OSError:
                return  # its death is noticed by the reader

    def signal(self, sig: int) -> None:
        try:
            if self.pidfd is not None:
                signal.pidfd_send_signal(self.pidfd, sig)
            else:
                os.kill(self.pid, sig)
        except OSError:
            pass

    def send(self, message: tuple) -> None:
        self.outbox.put(zygote.dumps(message))

    def close(self) -> None:
        """After its reader saw the socket close: release the socket and the process handle."""
        self.outbox.put(None)
        self.conn.close()
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None


class _Speed:
    """Seconds per forward multiply-add of training, and per figure, learnt from finished
    tasks (their estimates tell waiters when they start and end)."""

    def __init__(self) -> None:
        self.sec_per_mac = SEC_PER_MAC
        self.figure = FIGURE_COST

    def learn(self, task: Task, seconds: float) -> None:
        units = task.units
        if task.kind == FIGURE:
            self.figure = 0.8 * self.figure + 0.2 * min(max(seconds, 0.01), 10.0)
        elif units > 0 and seconds > 0.05:
            rate = min(max(seconds / units, SEC_PER_MAC / 8), SEC_PER_MAC * 8)
            self.sec_per_mac = 0.8 * self.sec_per_mac + 0.2 * rate


SPEED = _Speed()


def _configs(obj: Any, depth: int = 0):
    """Training configs (with their data's shape when it travels along) inside call args."""
    if depth > 4:
        return
    if all(hasattr(obj, a) for a in ("hidden", "batch_size", "steps")):
        yield obj, None
    elif isinstance(obj, (list, tuple)):
        dims = next(((o.n_features, o.n_classes) for o in obj if hasattr(o, "n_classes")), None)
        for item in obj:
            for cfg, d in _configs(item, depth + 1):
                yield cfg, d or dims
    elif isinstance(obj, dict):
        for item in obj.values():
            yield from _configs(item, depth + 1)


def work_units(call: Call) -> float:
    """Forward multiply-adds of the nets a call trains (0 when it trains none we can see)."""
    from bnviz.fanout import forward_macs

    fn, args, kwargs = call
    total = 0.0
    for cfg, dims in _configs((*args, *kwargs.values())):
        try:
            total += forward_macs(cfg, *(dims or (64, 10)))
        except (TypeError, ValueError):
            continue
    return total


class _Pool:
    """The worker processes and the dispatcher thread that owns them."""

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self.max_processes = 2 * slots  # a spare for every trainer, for preempting
        self.lock = threading.Lock()
        self.inbox: deque[tuple] = deque()
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_w, False)
        self.workers: list[_Worker] = []
        self.pending: deque[socket.socket] = deque()  # forks asked of the zygote
        self.tasks: list[Task] = []
        self.payloads: dict[int, bytes] = {}
        self.zygote: subprocess.Popen | None = None
        self.ctl: socket.socket | None = None
        self.zygote_ready = False
        self.zygote_started = 0.0
        self.boot_failures = 0
        self.boot_error = ""
        self.closed = False
        self.described = 0.0
        self.thread = threading.Thread(target=self._loop, name="bnviz-dispatcher", daemon=True)
        self.thread.start()

    # ------------------------------------------------------------- any thread

    def submit(self, job: Job, payloads: Sequence[bytes]) -> None:
        with self.lock:
            if self.closed:
                raise RuntimeError("the server is stopping")
            self.inbox.append(("submit", job, list(payloads)))
        self._wake()

    def cancel(self, job: Job) -> None:
        with self.lock:
            self.inbox.append(("cancel", job, None))
        self._wake()

    def ready(self) -> bool:
        return self.zygote_ready and not self.closed

    def snapshot(self) -> dict:
        """Counts for tests and the load bench: processes by state."""
        with self.lock:
            return {
                "workers": [w.pid for w in self.workers],
                "busy": sum(w.task is not None for w in self.workers),
                "busy_pids": [w.pid for w in self.workers if w.task is not None],
                "started_pids": [w.pid for w in self.workers if w.task and w.task.started],
                "running": sum(t.state == "running" for t in self.tasks),
                "stopped": sum(t.state == "stopped" for t in self.tasks),
                "queued": sum(t.state == "queued" for t in self.tasks),
                "zygote": self.zygote.pid if self.zygote else None,
                "ready": self.zygote_ready,
            }

    def close(self) -> None:
        """End every process now (from any thread, also while the dispatcher is busy)."""
        with self.lock:
            self.closed = True
            workers = list(self.workers)
        for w in workers:
            w.signal(signal.SIGKILL)
        if self.ctl is not None:
            try:
                self.ctl.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self.zygote is not None and self.zygote.poll() is None:
            self.zygote.kill()
            try:
                self.zygote.wait(2)
            except subprocess.TimeoutExpired:
                pass
        self._wake()
        if threading.current_thread() is not self.thread:
            self.thread.join(2)
        for job in {t.job for t in self.tasks}:
            job.event.set()

    def _wake(self) -> None:
        try:
            os.write(self.wake_w, b"x")
        except OSError:
            pass

    # ------------------------------------------------------------- the dispatcher

    def _loop(self) -> None:
        while not self.closed:
            watch: list[Any] = [self.wake_r]
            if self.ctl is not None:
                watch.append(self.ctl)
            try:
                ready = wait(watch, timeout=TICK)
            except (OSError, ValueError):
                ready = []
            now = time.monotonic()
            try:
                with self.lock:
                    if self.closed:
                        break
                    if self.wake_r in ready:
                        try:
                            os.read(self.wake_r, 65536)
                        except OSError:
                            pass
                    if self.ctl is not None and self.ctl in ready:
                        self._from_zygote(now)
                    self._apply_inbox(now)
                    self._housekeeping(now)
                    self._schedule(now)
            except Exception:  # noqa: BLE001 - the dispatcher must outlive any one mistake
                LOG.exception("bnviz: trainer dispatcher error")
        self._end_processes()

    def _from_reader(self, item: tuple) -> None:
        """A worker's reader thread hands over a message (or the news that it is gone)."""
        with self.lock:
            self.inbox.append(item)
        self._wake()

    def _from_worker(self, w: _Worker, message: tuple, now: float) -> None:
        if w.gone:
            return
        kind, tid, body = message
        t = w.task
        if kind == "hello":
            w.ready, w.idle_since = True, now
            return
        if t is None or t.id != tid:
            return  # a message of a task that was already settled
        if kind == "started":
            t.started = True
            self.payloads.pop(t.id, None)
            return
        self._settle(t, kind, body, now)
        w.task, w.idle_since, w.cancel_at = None, now, None

    def _worker_gone(self, w: _Worker, now: float) -> None:
        if w.gone:
            return
        w.gone = True
        if w in self.workers:
            self.workers.remove(w)
        w.close()
        t = w.task
        if t is not None and t.state != "done":
            if not t.started and not t.job.cancelled and t.id in self.payloads:
                t.state, t.since, t.worker = "queued", None, None  # it never had it: again
            elif t.job.cancelled:
                self._settle(t, "cancelled", None, now)
            else:
                self._settle(t, "died", None, now)

    def _settle(self, t: Task, kind: str, body: Any, now: float) -> None:
        if t.state == "running" and t.since is not None:
            t.ran += now - t.since
        t.state, t.since, t.outcome = "done", None, (kind, body)
        self.payloads.pop(t.id, None)
        if kind == "done":
            SPEED.learn(t, t.ran)
        job = t.job
        if kind in ("error", "died") and not job.cancelled:
            job.cancelled = True  # the other tasks of a failed job are of no use
            self._cancel_tasks(job, now)
        if all(x.state == "done" for x in job.tasks):
            job.phase = "done"
            job.event.set()

    def _apply_inbox(self, now: float) -> None:
        while self.inbox:
            what, job, payloads = self.inbox.popleft()
            if what == "message":
                self._from_worker(job, payloads, now)
            elif what == "gone":
                self._worker_gone(job, now)
            elif what == "submit":
                for t, p in zip(job.tasks, payloads, strict=True):
                    self.payloads[t.id] = p
                    self.tasks.append(t)
                if self.zygote is None:
                    self._start_zygote(now)
            elif what == "cancel" and not job.cancelled:
                job.cancelled = True
                self._cancel_tasks(job, now)

    def _cancel_tasks(self, job: Job, now: float) -> None:
        for t in job.tasks:
            if t.state == "queued":
                self._settle(t, "cancelled", None, now)
            elif t.state in ("running", "stopped"):
                w = t.worker
                if t.state == "stopped":
                    w.signal(signal.SIGKILL)  # paused: it cannot stop itself
                else:
                    w.send(("cancel", t.id, None))
                    w.cancel_at = now + CANCEL_GRACE

    def _housekeeping(self, now: float) -> None:
        for w in list(self.workers):
            if w.cancel_at is not None and now >= w.cancel_at and w.task is not None:
                w.signal(signal.SIGKILL)
                w.cancel_at = None
        idle = [w for w in self.workers if w.ready and w.task is None]
        extra = len(self.workers) - self.slots
        for w in sorted(idle, key=lambda w: w.idle_since):
            if extra <= 0:
                break
            if now - w.idle_since > IDLE_RETIRE:
                self.workers.remove(w)
                w.signal(signal.SIGKILL)  # its reader sees the socket close and cleans up
                w.task = None
                extra -= 1
        if (
            self.zygote is not None
            and not self.zygote_ready
            and now - self.zygote_started > BOOT_TIMEOUT
        ):
            self.boot_error = f"the trainers did not start within {BOOT_TIMEOUT:.0f} s"
            self._zygote_gone(now)

    def _schedule(self, now: float) -> None:
        live = [t for t in self.tasks if t.state != "done"]
        self.tasks = live
        if not live:
            return
        if self.zygote is None and any(t.state == "queued" for t in live):
            self._start_zygote(now)
        idle = [w for w in self.workers if w.ready and w.task is None and w.cancel_at is None]
        room = max(0, self.max_processes - len(self.workers) - len(self.pending))
        coming = len(self.pending) + sum(not w.ready for w in self.workers)
        free = len(idle) + coming + (room if self.zygote_ready else 0)
        step = guard.plan(live, self.slots, free, now)
        for t in step.stop:
            t.worker.signal(signal.SIGSTOP)
            t.ran += now - (t.since or now)
            t.state, t.since = "stopped", None
        for t in step.resume:
            t.worker.signal(signal.SIGCONT)
            t.state, t.since = "running", now
        for t in step.start:
            if idle:
                w = idle.pop()
                w.task, t.worker = t, w
                w.send(("run", t.id, self.payloads[t.id]))
                t.state, t.since = "running", now
            elif coming > 0:
                coming -= 1  # a process on its way takes it
            elif self.zygote_ready and room > 0:
                self._fork()
                room -= 1
        if now - self.described >= DESCRIBE_EVERY or any(
            t.job.phase == "queued" and t.state == "running" for t in live
        ):
            guard.describe(live, self.slots, now)
            self.described = now
        if not self.zygote_ready:
            for t in live:
                if t.state == "queued":
                    t.job.phase = "starting"

    # ------------------------------------------------------------- the zygote

    def _start_zygote(self, now: float) -> None:
        if self.boot_failures >= BOOT_ATTEMPTS:
            return
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        here = [os.getcwd() if p == "" else p for p in sys.path]
        prefixes = {sys.prefix, sys.base_prefix, sys.exec_prefix}
        project = [p for p in here if not any(p.startswith(x) for x in prefixes)]
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(dict.fromkeys(project)),
            # one thread each: the trainers are the parallelism (and forks of a threaded
            # BLAS are best avoided)
            "OPENBLAS_NUM_THREADS": "1",
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
        }
        cmd = [sys.executable, "-m", "bnviz.app.zygote", str(theirs.fileno()), str(os.getpid())]
        try:
            self.zygote = subprocess.Popen(
                cmd, pass_fds=[theirs.fileno()], env=env, stdin=subprocess.DEVNULL
            )
        except OSError as err:
            ours.close()
            self.boot_failures += 1
            self.boot_error = f"could not start the trainers: {err}"
            self._fail_waiting(now)
            return
        finally:
            theirs.close()
        self.ctl, self.zygote_ready, self.zygote_started = ours, False, now

    def _fork(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            socket.send_fds(self.ctl, [b"F"], [theirs.fileno()])
            self.pending.append(ours)
        except OSError:
            ours.close()
        finally:
            theirs.close()

    def _from_zygote(self, now: float) -> None:
        try:
            data = self.ctl.recv(65536)
        except OSError:
            data = b""
        if not data:
            self._zygote_gone(now)
        elif data == b"R":
            self.zygote_ready, self.boot_failures, self.boot_error = True, 0, ""
        elif data[:1] == b"E":
            self.boot_error = data[1:].decode(errors="replace").strip().splitlines()[-1]
            LOG.error("bnviz: the trainers could not start:\n%s", data[1:].decode())
        elif len(data) == 8 and self.pending:
            (pid,) = struct.unpack("!q", data)
            self.workers.append(_Worker(self.pending.popleft(), pid, self._from_reader))

    def _zygote_gone(self, now: float) -> None:
        if not self.zygote_ready:
            self.boot_failures += 1
        if self.ctl is not None:
            self.ctl.close()
        if self.zygote is not None:
            if self.zygote.poll() is None:
                self.zygote.kill()
            try:
                self.zygote.wait(1)
            except subprocess.TimeoutExpired:
                pass
        while self.pending:
            self.pending.popleft().close()
        self.zygote, self.ctl, self.zygote_ready = None, None, False
        if self.boot_failures >= BOOT_ATTEMPTS:
            self._fail_waiting(now)

    def _fail_waiting(self, now: float) -> None:
        """No trainers can start: fail the jobs that wait for one, with the reason."""
        reason = self.boot_error or "the training processes could not start"
        for t in [t for t in self.tasks if t.state == "queued"]:
            self._settle(t, "error", (zygote.dumps(RuntimeError(reason)), reason), now)
        self.boot_failures = BOOT_ATTEMPTS - 1  # the next job tries once more

    def _end_processes(self) -> None:
        for w in self.workers:
            w.signal(signal.SIGKILL)  # their readers see the sockets close
        if self.ctl is not None:
            self.ctl.close()
        if self.zygote is not None and self.zygote.poll() is None:
            self.zygote.kill()
        for t in self.tasks:
            t.job.event.set()


# --------------------------------------------------------------------------- the one pool

_pool: _Pool | None = None
_pool_lock = threading.Lock()
_closing = threading.Event()


def _get() -> _Pool:
    global _pool
    with _pool_lock:
        if _closing.is_set():
            raise RuntimeError("the server is stopping")
        if _pool is None:
            _pool = _Pool(guard.default_slots())
            _watch_exit()
        return _pool


def start() -> None:
    """Start the dispatcher and the zygote now (they otherwise start with the first job)."""
    pool = _get()
    with pool.lock:
        if pool.zygote is None:
            pool._start_zygote(time.monotonic())
    pool._wake()


def ready() -> bool:
    """Whether workers can be had at once (the zygote has loaded the engine)."""
    return _pool is not None and _pool.ready()


def is_running(size: int = 1) -> bool:
    """Whether the worker processes are up (``bnviz.fanout`` then sends smaller work to them)."""
    return ready()


def snapshot() -> dict:
    """Processes and tasks by state, for tests and the load bench."""
    pool = _pool
    if pool is None:
        return dict(
            workers=[], busy=0, busy_pids=[], started_pids=[], running=0, stopped=0, queued=0,
            zygote=None, ready=False,
        )  # fmt: skip
    return pool.snapshot()


def shutdown() -> None:
    """End every worker and the zygote; a later job starts them again."""
    global _pool
    with _pool_lock:
        pool, _pool = _pool, None
    if pool is not None:
        pool.close()


def _on_exit() -> None:
    _closing.set()
    shutdown()


def _watch_exit() -> None:
    """End the workers as soon as the main thread ends (Streamlit returns from its main after
    SIGTERM or SIGINT), before the interpreter waits for other threads, and again at exit."""
    atexit.register(_on_exit)
    main = threading.main_thread()
    if threading.current_thread() is main:
        return

    def watch() -> None:
        main.join()
        _on_exit()

    threading.Thread(target=watch, name="bnviz-exit-watch", daemon=True).start()


def run_many(
    calls: Sequence[Call],
    on_progress: Callable[[int, tuple], None] | None = None,
    size: int | None = None,
    *,
    kind: int = TRAIN,
    costs: Sequence[float] | None = None,
    cancel: threading.Event | None = None,
    on_job: Callable[[Job], None] | None = None,
) -> list[Any]:
    """Run each call ``fn(*args, progress=..., **kwargs)`` in a worker process, side by side as
    the trainers allow; return their results in order. ``on_progress(i, values)`` relays call
    i's progress reports. Leaving (an exception in on_progress, ``cancel`` set) cancels the
    calls. A worker that dies fails its call with ``WorkerDied``.

    ``costs`` are the calls' estimated seconds, if known better than from the nets they train
    (``work_units``); they order the line and make its time estimates."""
    if not calls:
        return []
    pool = _get()
    job = Job(parallel=size)
    payloads = [zygote.dumps(tuple(call)) for call in calls]  # unpicklable calls fail here
    for i, call in enumerate(calls):
        units = work_units(call) if kind == TRAIN else 0.0
        cost = SPEED.figure if kind == FIGURE else (units * SPEED.sec_per_mac if units else 1.0)
        job.tasks.append(Task(job, kind, costs[i] if costs else cost, units=units))
    if on_job:
        on_job(job)
    pool.submit(job, payloads)
    seen: list[Any] = [None] * len(calls)
    try:
        while True:
            finished = job.event.wait(POLL)
            if on_progress:
                for i, t in enumerate(job.tasks):
                    if t.values is not None and t.values != seen[i]:
                        seen[i] = t.values
                        on_progress(i, t.values)
            if finished:
                break
            if cancel is not None and cancel.is_set():
                raise Cancelled("the run was cancelled")
            if _closing.is_set() or pool.closed:
                raise RuntimeError("the server is stopping")
    except BaseException:
        pool.cancel(job)
        raise
    return outcomes(job)


def outcomes(job: Job) -> list[Any]:
    """A finished job's results in order, or its first failure raised."""
    kinds = [(t.outcome or ("died", None))[0] for t in job.tasks]
    for t, kind in zip(job.tasks, kinds, strict=True):
        if kind == "error":
            payload, text = t.outcome[1]
            LOG.warning("bnviz: a task failed in its worker:\n%s", text)
            raise pickle.loads(payload)
        if kind == "died":
            raise WorkerDied(
                "a training process stopped unexpectedly (it may have run out of memory)"
            )
    if "cancelled" in kinds:
        raise Cancelled("the run was cancelled")
    return [pickle.loads(t.outcome[1]) for t in job.tasks]


class Client:
    """An executor (``bnviz.experiment.Executor``) for one caller: its jobs end when
    ``cancel`` is set, and ``job`` is its latest one (its place in line, its estimates)."""

    def __init__(
        self, cancel: threading.Event | None = None, waiters: Callable[[], int] | None = None
    ) -> None:
        self.cancel = cancel
        self.waiters = waiters
        self.job: Job | None = None

    def _on_job(self, job: Job) -> None:
        if self.waiters is not None:
            job.waiters = max(1, self.waiters())
        self.job = job

    def run_many(
        self,
        calls: Sequence[Call],
        on_progress: Callable[[int, tuple], None] | None = None,
        size: int | None = None,
    ) -> list[Any]:
        return run_many(calls, on_progress, size, cancel=self.cancel, on_job=self._on_job)

    def is_running(self, size: int = 1) -> bool:
        return is_running(size)

    def abort(self) -> None:
        """Cancel the latest job now (its waiter notices ``cancel`` a moment later)."""
        if self.cancel is not None:
            self.cancel.set()
        if self.job is not None and _pool is not None:
            _pool.cancel(self.job)


def build_figure(
    build: Callable[..., Any],
    result: Any,
    args: tuple,
    cancel: threading.Event | None = None,
    kwargs: dict | None = None,
) -> dict:
    """``build(result, *args, **kwargs).to_dict()`` in a worker, ahead of any training."""
    task = (zygote.build_figure, (build, result, tuple(args)), {"kwargs": dict(kwargs or {})})
    (spec,) = run_many([task], kind=FIGURE, cancel=cancel)
    return spec
