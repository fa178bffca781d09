"""Kept worker processes for training, with progress reports and cancellation.

Why processes: a Streamlit server runs every session's script in a thread of one process, and
training these small nets is mostly short numpy calls that hold the GIL: two twin runs in two
threads took 2.1 s where one after the other took 1.3 s (measured here). In worker processes
they run in parallel, one per core, and the server's own threads stay free to draw figures.

Workers fork from a fork server that has imported bnviz once (about 0.5 s, paid on the first
job) and are kept. A job posts its progress on one shared queue, tagged with its id; whoever
waits for the job reads its own messages. When the waiter gives up (the student left the
page), it raises the job's cancel flag and the job stops at its next progress report.
"""

from __future__ import annotations

import itertools
import multiprocessing
import queue
import sys
import threading
import types
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from typing import Any

from bnviz.app.guard import default_slots
from bnviz.experiment import Call

N_FLAGS = 4096  # cancel flags, indexed by job id modulo this (far more than jobs in flight)
POLL = 0.1  # seconds between looks at the progress queue


_lock = threading.Lock()
_pool: ProcessPoolExecutor | None = None
_size = 0
_queue: Any = None
_flags: Any = None
_ids = itertools.count(1)
_mailbox: dict[int, tuple] = {}  # job id -> latest progress values, for jobs being waited on

_worker_queue: Any = None  # in a worker: where progress goes
_worker_flags: Any = None  # in a worker: the cancel flags


class Cancelled(Exception):
    """Raised inside a job whose waiter has gone."""


def _init_worker(q: Any, flags: Any) -> None:
    """A new worker: where its progress goes, and the training kernels loaded before its
    first job (from numba's cache; a second to spare a student's first run)."""
    global _worker_queue, _worker_flags
    _worker_queue, _worker_flags = q, flags
    from bnviz.train import warm_up

    warm_up()


def _run_job(job: int, fn: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
    def progress(*values: Any) -> None:
        if _worker_flags[job % N_FLAGS]:
            raise Cancelled(f"job {job} was cancelled")
        _worker_queue.put((job, values))

    return fn(*args, progress=progress, **kwargs)


@contextmanager
def _bare_main() -> Iterator[None]:
    """Start processes as if the parent had no main script. A new worker re-imports the
    parent's ``__main__``, and under ``streamlit run`` that is the app script being run: it
    would draw the app in a process with no browser session."""
    saved = sys.modules.get("__main__")
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        sys.modules["__main__"] = saved


def _context() -> Any:
    """forkserver where it exists (nothing is forked from a threaded server), else spawn."""
    try:
        ctx = multiprocessing.get_context("forkserver")
    except ValueError:
        return multiprocessing.get_context("spawn")
    ctx.set_forkserver_preload(["bnviz.train", "bnviz.sweep", "bnviz.fanout"])
    return ctx


def pool(size: int) -> ProcessPoolExecutor:
    """The kept pool, with at least ``size`` processes (started, or restarted larger)."""
    global _pool, _size, _queue, _flags
    with _lock:
        if _pool is None or _size < size:
            if _pool is not None:
                _pool.shutdown(wait=False, cancel_futures=True)
            ctx = _context()
            _queue = ctx.Queue()
            _flags = ctx.RawArray("b", N_FLAGS)
            _pool = ProcessPoolExecutor(
                size, mp_context=ctx, initializer=_init_worker, initargs=(_queue, _flags)
            )
            _size = size
            with _bare_main():  # processes start on these first submits
                for f in [_pool.submit(int) for _ in range(size)]:
                    f.result()
        return _pool


def shutdown() -> None:
    """End the kept processes (they also end with this process)."""
    global _pool, _size, _queue, _flags
    with _lock:
        if _pool is not None:
            _pool.shutdown(wait=True, cancel_futures=True)
            _queue.close()
        _pool, _size, _queue, _flags = None, 0, None, None


def is_running(size: int = 1) -> bool:
    with _lock:
        return _pool is not None and _size >= size


def _collect(jobs: Sequence[int]) -> dict[int, tuple]:
    """Latest progress of these jobs; messages for other waiters are kept in their boxes."""
    with _lock:
        while _queue is not None:
            try:
                job, values = _queue.get_nowait()
            except queue.Empty:
                break
            if job in _mailbox:  # a job nobody waits for any more: drop its messages
                _mailbox[job] = values
        return {j: _mailbox[j] for j in jobs if _mailbox.get(j) is not None}


def run_many(
    calls: Sequence[Call],
    on_progress: Callable[[int, tuple], None] | None = None,
    size: int | None = None,
) -> list[Any]:
    """Run each call ``fn(*args, progress=..., **kwargs)`` in a worker process, in parallel;
    return their results in order. ``on_progress(i, values)`` relays call i's progress
    reports. A worker that dies takes the pool with it: the pool is replaced and the error
    raised as RuntimeError."""
    executor = pool(max(size or len(calls), default_slots()))
    jobs = [next(_ids) for _ in calls]
    with _lock:
        for job in jobs:
            _mailbox[job] = None
            _flags[job % N_FLAGS] = 0
    futures: list[Future] = []
    try:
        futures = [
            executor.submit(_run_job, job, fn, args, kw)
            for job, (fn, args, kw) in zip(jobs, calls, strict=True)
        ]
        pending = set(futures)
        seen: dict[int, tuple] = {}
        while pending:
            _, pending = wait(pending, timeout=POLL, return_when=FIRST_COMPLETED)
            if on_progress:
                for job, values in _collect(jobs).items():
                    if seen.get(job) != values:
                        seen[job] = values
                        on_progress(jobs.index(job), values)
        return [f.result() for f in futures]
    except BrokenProcessPool as err:
        shutdown()
        raise RuntimeError("a training process stopped unexpectedly; please try again") from err
    except BaseException:
        with _lock:
            if _flags is not None:
                for job in jobs:
                    _flags[job % N_FLAGS] = 1
        for f in futures:
            f.cancel()
        raise
    finally:
        with _lock:
            for job in jobs:
                _mailbox.pop(job, None)
