"""The worker processes: parallel twins equal lockstep twins; progress, results and errors
cross the process boundary; no worker ever runs the main script; cancelled and abandoned work
frees its trainer within a second; killed workers (and a killed zygote) are replaced; long
work yields to short; the trainers' number is honoured; the workers end with their server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import types
from pathlib import Path

import numpy as np
import pytest

from bnviz import fanout
from bnviz.app import guard, workers
from bnviz.train import TrainConfig, train_twins

REPO = Path(__file__).resolve().parents[2]
SMALL = dict(hidden=(16, 16), steps=150, record_every=30, probe_size=32, init_std=0.1)


def slow_count(n: int, progress=None, pause: float = 0.02) -> int:
    """A job for the pool: reports n times, a little apart."""
    for i in range(n):
        time.sleep(pause)
        progress(i + 1, n)
    return n


def silent(seconds: float, progress=None) -> str:
    """A job that never reports (as a long chunk of compiled code): only a kill stops it."""
    time.sleep(seconds)
    return "finished"


def failing(progress=None) -> None:
    raise ValueError("bad settings")


def main_module(progress=None) -> dict:
    """What a worker's interpreter holds as its main script."""
    main = sys.modules["__main__"]
    return {
        "main": getattr(main, "__file__", None),
        # multiprocessing names the main module __mp_main__ too, on import
        "mp_main": getattr(sys.modules.get("__mp_main__", main), "__file__", None),
        "streamlit": "streamlit" in sys.modules,
        "pid": os.getpid(),
    }


def wait_until(condition, timeout: float = 10.0, step: float = 0.01) -> float:
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise TimeoutError("condition not met")
        time.sleep(step)
    return time.monotonic() - start


@pytest.fixture
def trainers(monkeypatch):
    """A fresh pool with the given number of trainers, ended afterwards."""

    def make(n: int) -> None:
        workers.shutdown()
        monkeypatch.setattr(guard, "TRAINERS", n)
        workers.start()
        wait_until(workers.ready, timeout=300)

    yield make
    workers.shutdown()


def in_background(fn, *args, **kwargs):
    box: dict = {}

    def go():
        try:
            box["result"] = fn(*args, **kwargs)
        except BaseException as err:  # noqa: BLE001 - the test looks at it
            box["error"] = err

    thread = threading.Thread(target=go, daemon=True)
    thread.start()
    return thread, box


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
    with pytest.raises(Exception, match="pickle|lambda|local"):
        workers.run_many([(lambda progress=None: 1, (), {})])  # refused here, not in a worker


def test_no_worker_runs_the_main_script(tmp_path):
    """The issue's reproduction: while one thread sets ``sys.modules["__main__"]`` to an app
    script, as Streamlit does at the start of every session's run, workers are started (the
    pool from scratch, and replacements for killed workers). None runs the script: their main
    module is the zygote, and the marker the script would write never appears."""
    marker = tmp_path / "ran"
    script = tmp_path / "fake_app.py"
    script.write_text(f"open({str(marker)!r}, 'a').write('ran')\n")
    fake = types.ModuleType("__main__")
    fake.__file__ = str(script)
    stop = threading.Event()
    saved = sys.modules["__main__"]

    def streamlit_like() -> None:
        while not stop.is_set():
            sys.modules["__main__"] = fake
            time.sleep(0.001)
            sys.modules["__main__"] = saved

    other = threading.Thread(target=streamlit_like, daemon=True)
    other.start()
    try:
        workers.shutdown()
        for _ in range(3):
            infos = workers.run_many([(main_module, (), {}), (main_module, (), {})])
            pids = {i["pid"] for i in infos}
            for pid in pids:
                os.kill(pid, signal.SIGKILL)
            wait_until(lambda p=pids: not set(workers.snapshot()["workers"]) & p)
    finally:
        stop.set()
        other.join()
        sys.modules["__main__"] = saved
    for info in infos:
        assert info["main"].endswith(os.path.join("bnviz", "app", "zygote.py")), info
        assert info["mp_main"] == info["main"] and not info["streamlit"], info
    assert not marker.exists()


def test_a_waiter_that_leaves_frees_its_trainer_within_a_second():
    """The waiting thread is interrupted (as Streamlit stops a script when a student leaves):
    the job stops at its next progress report, and the trainer is free again at once."""

    def on_progress(i, values):
        if values[0] >= 3:
            raise KeyboardInterrupt  # stands in for Streamlit's StopException

    with pytest.raises(KeyboardInterrupt):
        workers.run_many([(slow_count, (500,), {})], on_progress)
    freed = wait_until(lambda: workers.snapshot()["busy"] == 0, timeout=5)
    assert freed < 1.0
    assert workers.run_many([(slow_count, (2,), {})]) == [2]


def test_a_task_deaf_to_cancellation_is_killed_within_a_second():
    """A task inside one long compiled call reports nothing: cancelling it kills its worker
    after ``CANCEL_GRACE``, and a new worker takes the next job."""
    cancel = threading.Event()
    thread, box = in_background(workers.run_many, [(silent, (60,), {})], cancel=cancel)
    wait_until(lambda: workers.snapshot()["busy"] == 1, timeout=30)
    (pid,) = [p for p in workers.snapshot()["workers"]]
    start = time.monotonic()
    cancel.set()
    thread.join(5)
    assert isinstance(box.get("error"), workers.Cancelled)
    wait_until(lambda: pid not in workers.snapshot()["workers"], timeout=5)
    assert time.monotonic() - start < 1.0
    assert workers.run_many([(slow_count, (2,), {})]) == [2]


def test_a_worker_killed_mid_run_fails_that_run_only():
    thread, box = in_background(workers.run_many, [(slow_count, (300,), {})])
    wait_until(lambda: workers.snapshot()["started_pids"], timeout=30)
    (pid,) = workers.snapshot()["started_pids"]
    os.kill(pid, signal.SIGKILL)
    thread.join(10)
    assert isinstance(box.get("error"), workers.WorkerDied)
    assert "stopped unexpectedly" in str(box["error"])
    assert workers.run_many([(slow_count, (3,), {})]) == [3]


def test_idle_workers_or_the_zygote_killed_do_not_fail_the_next_run():
    workers.run_many([(slow_count, (1,), {}), (slow_count, (1,), {})])
    for pid in workers.snapshot()["workers"]:
        os.kill(pid, signal.SIGKILL)
    assert workers.run_many([(slow_count, (2,), {})]) == [2]
    os.kill(workers.snapshot()["zygote"], signal.SIGKILL)
    wait_until(lambda: workers.snapshot()["workers"] == [], timeout=10)  # they die with it
    assert workers.run_many([(slow_count, (2,), {}), (slow_count, (2,), {})]) == [2, 2]


def test_one_trainer_means_one_process_at_a_time(trainers):
    """BNVIZ_TRAINERS=1: a twin run's two nets train one after the other in one process."""
    trainers(1)
    cfg = TrainConfig(**SMALL, lr=1.0)
    most = []
    thread, box = in_background(fanout.twins, cfg, executor=workers)
    while thread.is_alive():
        snap = workers.snapshot()
        most.append(snap["running"])
        time.sleep(0.005)
    assert "error" not in box, box
    assert max(most) == 1
    assert len(workers.snapshot()["workers"]) == 1
    np.testing.assert_array_equal(box["result"].bn.loss, train_twins(cfg).bn.loss)


def test_many_trainers_start_on_demand_without_blocking(trainers):
    """BNVIZ_TRAINERS=16 on a small machine: a run does not wait for sixteen processes."""
    trainers(16)
    start = time.monotonic()
    assert workers.run_many([(slow_count, (1,), {})]) == [1]
    assert time.monotonic() - start < 5
    assert len(workers.snapshot()["workers"]) <= 2


def test_long_work_yields_to_short_work(trainers):
    """One trainer, busy with a long job: a short job that arrives is served at once (the long
    one is paused in its process, SIGSTOP) and the long one then finishes, intact."""
    trainers(1)
    long_thread, long_box = in_background(
        workers.run_many, [(slow_count, (150,), {"pause": 0.04})], costs=[6.0]
    )
    wait_until(lambda: workers.snapshot()["running"] == 1, timeout=30)
    time.sleep(guard.PREEMPT_AFTER + 0.3)
    start = time.monotonic()
    assert workers.run_many([(slow_count, (5,), {})], costs=[0.1]) == [5]
    short = time.monotonic() - start
    long_thread.join(30)
    assert long_box.get("result") == [150], long_box
    assert short < 3.0, f"the short job waited {short:.1f} s behind the long one"


def test_figures_go_ahead_of_training(trainers):
    trainers(1)
    thread, box = in_background(
        workers.run_many, [(slow_count, (100,), {"pause": 0.04})], costs=[4.0]
    )
    wait_until(lambda: workers.snapshot()["running"] == 1, timeout=30)
    time.sleep(guard.PREEMPT_AFTER + 0.3)
    start = time.monotonic()
    assert workers.run_many([(slow_count, (2,), {})], kind=guard.FIGURE) == [2]
    assert time.monotonic() - start < 3.0
    thread.join(30)
    assert box.get("result") == [100]


ORPHAN_SCRIPT = """
import sys, time
sys.path.insert(0, {repo!r})
from bnviz.app import workers
from tests.app.test_workers import slow_count
print(workers.run_many([(slow_count, (1,), {{}}), (slow_count, (1,), {{}})]), flush=True)
print(workers.snapshot()["zygote"], *workers.snapshot()["workers"], flush=True)
time.sleep(600)
"""


def descendants_alive(pids: list[int]) -> list[int]:
    alive = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rpartition(")")[2].split()[0] != "Z":
                    alive.append(pid)
        except OSError:
            continue
    return alive


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM])
def test_workers_end_with_their_server(how):
    """The server killed outright (or stopped by a signal it does not handle): the zygote and
    every worker are gone within seconds, no orphans left."""
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(ORPHAN_SCRIPT.format(repo=str(REPO)))],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stdout.readline().strip() == "[1, 1]"
        pids = [int(p) for p in proc.stdout.readline().split()]
        assert len(pids) >= 2
        os.kill(proc.pid, how)
        proc.wait(10)
        wait_until(lambda: not descendants_alive(pids), timeout=5)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
