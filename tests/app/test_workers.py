"""Worker processes and the trainer guard: parallel twins equal lockstep twins, progress and
cancellation cross the process boundary, and jobs wait their turn in order."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from bnviz import fanout
from bnviz.app import workers
from bnviz.app.guard import TrainerPool
from bnviz.train import TrainConfig, train_twins

SMALL = dict(hidden=(16, 16), steps=150, record_every=30, probe_size=32, init_std=0.1)


def slow_count(n: int, progress=None) -> int:
    """A job for the pool: reports n times, a little apart."""
    for i in range(n):
        time.sleep(0.02)
        progress(i + 1, n)
    return n


def failing(progress=None) -> None:
    raise ValueError("bad settings")


def test_parallel_twins_equal_lockstep_twins():
    cfg = TrainConfig(**SMALL, lr=1.0)
    calls = []
    par = fanout.twins(cfg, progress=lambda d, t: calls.append((d, t)), executor=workers)
    seq = train_twins(cfg)
    for a, b in zip(par, seq, strict=True):
        assert a.config == b.config
        np.testing.assert_array_equal(a.loss, b.loss)
        np.testing.assert_array_equal(a.test_acc, b.test_acc)
        for la, lb in zip(a.layers, b.layers, strict=True):
            for site in la.sites:
                np.testing.assert_array_equal(la.sites[site].quantiles, lb.sites[site].quantiles)
        for key in a.final_state:
            np.testing.assert_array_equal(a.final_state[key], b.final_state[key])
    assert calls[0] == (0, 150) and calls[-1] == (150, 150)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


def test_progress_results_and_errors_cross_the_process_boundary():
    seen = []
    out = workers.run_many(
        [(slow_count, (5,), {}), (slow_count, (8,), {})], lambda i, v: seen.append((i, v))
    )
    assert out == [5, 8]
    assert (1, (8, 8)) in seen or (1, (7, 8)) in seen
    assert all(v[1] in (5, 8) for _, v in seen)
    with pytest.raises(ValueError, match="bad settings"):
        workers.run_many([(failing, (), {})])


def test_a_waiter_that_leaves_cancels_its_job():
    """The waiting thread is interrupted (as Streamlit stops a script when a student leaves):
    the job's flag is raised and the job stops at its next progress report."""
    stop = {"after": 3}

    def on_progress(i, values):
        if values[0] >= stop["after"]:
            raise KeyboardInterrupt  # stands in for Streamlit's StopException

    t0 = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        workers.run_many([(slow_count, (500,), {})], on_progress)
    assert time.perf_counter() - t0 < 5  # did not wait for the 10 s job
    assert workers.run_many([(slow_count, (2,), {})]) == [2]  # the pool is still usable


def test_guard_serves_in_arrival_order_and_counts_trainers():
    pool = TrainerPool(2)
    order, ahead_seen = [], {}
    hold = threading.Event()

    def job(name: str, need: int) -> None:
        def waiting(ahead: int) -> None:
            ahead_seen.setdefault(name, []).append(ahead)

        with pool.slot(waiting, poll=0.01, need=need):
            order.append(name)
            hold.wait(5)

    first = threading.Thread(target=job, args=("first", 2))
    first.start()
    while pool.active < 2:
        time.sleep(0.005)
    others = [threading.Thread(target=job, args=(n, 1)) for n in ("second", "third")]
    for t in others:
        t.start()
        while pool.waiting < others.index(t) + 1:
            time.sleep(0.005)
    assert pool.waiting == 2 and order == ["first"]
    assert ahead_seen["second"][0] == 0 and ahead_seen["third"][0] == 1
    hold.set()
    for t in [first, *others]:
        t.join(5)
    assert order == ["first", "second", "third"]
    assert pool.active == 0 and pool.waiting == 0


def test_guard_forgets_a_waiter_that_gives_up():
    pool = TrainerPool(1)
    with pool.slot():
        with pytest.raises(RuntimeError):

            def impatient(ahead: int) -> None:
                raise RuntimeError("left the page")

            with pool.slot(impatient, poll=0.01):
                pass
        assert pool.waiting == 0
    assert pool.active == 0
    with pytest.raises(ValueError):
        TrainerPool(0)
