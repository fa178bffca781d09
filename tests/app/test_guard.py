"""The trainers' number (BNVIZ_TRAINERS, CPU affinity, cgroup quotas) and the scheduling
policy: figures first, shortest job next, long tasks paused for short ones, never a task near
its end; every waiting job told its place and a time estimate."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bnviz.app import guard
from bnviz.app.guard import FIGURE, TRAIN, Job, Task

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("raw", "cpus", "count", "says"),
    [
        (None, 2, 2, None),
        ("", 4, 4, None),
        ("1", 2, 1, None),
        ("2", 2, 2, None),
        (" 3 ", 4, 3, None),
        ("16", 2, 16, "more than the 2 usable CPU"),
        ("0", 2, 2, "asks for no trainers"),
        ("-1", 2, 2, "not a whole number"),
        ("abc", 2, 2, "not a whole number"),
        ("²", 2, 2, "not a whole number"),  # "²".isdigit() is True, int("²") fails
        ("2.5", 3, 3, "not a whole number"),
        ("1000", 2, guard.MAX_TRAINERS, "more than 64"),
    ],
)
def test_trainer_count(raw, cpus, count, says):
    got, message = guard.trainer_count(raw, cpus)
    assert got == count
    if says is None:
        assert message is None
    else:
        assert says in message and repr(raw) in message or str(count) in message


@pytest.mark.parametrize(
    ("raw", "expect"), [("0", 1), ("-1", 1), ("abc", 1), ("²", 1), ("1", 1), ("16", 16)]
)
def test_bad_values_give_a_clear_startup_message_and_a_sane_default(raw, expect):
    """The server's log says what was wrong and what is used instead; nothing breaks."""
    code = "from bnviz.app import guard; print('trainers', guard.default_slots())"
    env = {**os.environ, "BNVIZ_TRAINERS": raw}
    out = subprocess.run(
        ["taskset", "-c", "0", sys.executable, "-c", code],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert f"trainers {expect}" in out.stdout
    if raw in ("0", "-1", "abc", "²"):
        assert f"BNVIZ_TRAINERS={raw!r}" in out.stdout + out.stderr
        assert "using 1 (one per usable CPU)" in out.stdout


def test_usable_cpus_honours_the_affinity_mask():
    out = subprocess.run(
        ["taskset", "-c", "0", sys.executable, "-c",
         "from bnviz.app import guard; print(guard.usable_cpus())"],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.stdout.strip() == "1"


def cgroup(tmp_path: Path, files: dict[str, str], proc: str) -> tuple[Path, Path]:
    for rel, text in files.items():
        path = tmp_path / "fs" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (tmp_path / "self").write_text(proc)
    return tmp_path / "fs", tmp_path / "self"


def test_cgroup_quotas_v2_and_v1(tmp_path):
    root, proc = cgroup(tmp_path / "a", {"cpu.max": "200000 100000\n"}, "0::/\n")
    assert guard.cgroup_cpus(root, proc) == 2.0
    root, proc = cgroup(tmp_path / "b", {"cpu.max": "max 100000\n"}, "0::/\n")
    assert guard.cgroup_cpus(root, proc) == math.inf
    nested = {"cpu.max": "max 100000\n", "kube/pod/cpu.max": "150000 100000\n"}
    root, proc = cgroup(tmp_path / "c", nested, "0::/kube/pod\n")
    assert guard.cgroup_cpus(root, proc) == 1.5
    v1 = {"cpu,cpuacct/cpu.cfs_quota_us": "300000\n", "cpu,cpuacct/cpu.cfs_period_us": "100000\n"}
    root, proc = cgroup(tmp_path / "d", v1, "2:cpu,cpuacct:/\n")
    assert guard.cgroup_cpus(root, proc) == 3.0
    unlimited = {"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}
    root, proc = cgroup(tmp_path / "e", unlimited, "1:cpu:/\n")
    assert guard.cgroup_cpus(root, proc) == math.inf
    assert guard.cgroup_cpus(tmp_path / "none", tmp_path / "missing") == math.inf


def test_usable_cpus_takes_the_cgroup_quota(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    monkeypatch.setattr(guard, "cgroup_cpus", lambda: 2.0)
    assert guard.usable_cpus() == 2
    monkeypatch.setattr(guard, "cgroup_cpus", lambda: 0.5)
    assert guard.usable_cpus() == 1
    monkeypatch.setattr(guard, "cgroup_cpus", lambda: 2.5)
    assert guard.usable_cpus() == 3
    monkeypatch.setattr(guard, "cgroup_cpus", lambda: math.inf)
    assert guard.usable_cpus() == 4


# ----------------------------------------------------------------------------- the policy


def job(*costs: float, kind: int = TRAIN) -> Job:
    j = Job()
    j.tasks = [Task(j, kind, c) for c in costs]
    return j


def tasks(*jobs: Job) -> list[Task]:
    return [t for j in jobs for t in j.tasks]


def run(t: Task, since: float, ran: float = 0.0) -> None:
    t.state, t.since, t.ran, t.started = "running", since, ran, True


def test_shortest_job_next_and_arrival_order_among_equals():
    a, b, c, d = job(30.0), job(1.0), job(1.2), job(0.2, kind=FIGURE)
    ranked = guard.order(tasks(a, b, c, d), slots=2, now=0.0)
    assert [t.job for t in ranked] == [d, b, c, a]


def test_a_long_task_is_paused_for_short_work():
    long, short = job(600.0), job(1.0, 1.0)
    run(long.tasks[0], since=0.0)
    step = guard.plan(tasks(long, short), slots=1, processes_free=2, now=5.0)
    assert step.stop == long.tasks and step.start == [short.tasks[0]]
    # once the short job is done, the long one resumes
    long.tasks[0].state, long.tasks[0].since = "stopped", None
    for t in short.tasks:
        t.state = "done"
    step = guard.plan(tasks(long, short), slots=1, processes_free=1, now=9.0)
    assert step.resume == long.tasks and not step.start and not step.stop


def test_no_pausing_near_the_end_just_after_the_start_or_without_a_spare_process():
    long, short = job(600.0), job(1.0)
    t = long.tasks[0]
    t.progress = (998, 1000)
    run(t, since=0.0)
    assert guard.plan(tasks(long, short), 1, 2, now=600.0).stop == []  # 1.2 s left
    t.progress = None
    run(t, since=10.0)
    assert guard.plan(tasks(long, short), 1, 2, now=10.1).stop == []  # just started
    assert guard.plan(tasks(long, short), 1, 0, now=20.0).stop == []  # nowhere to run it
    assert guard.plan(tasks(long, short), 1, 1, now=20.0).stop == [t]


def test_a_job_with_a_parallel_limit_runs_that_many_at_once():
    j = job(1.0, 1.0, 1.0)
    j.parallel = 1
    step = guard.plan(tasks(j), slots=4, processes_free=4, now=0.0)
    assert step.start == j.tasks[:1]


def test_place_in_line_and_time_estimates():
    """Two trainers, one busy on a 10 s job (4 s done), then a job of two 8 s tasks, then a
    30 s job: each is told how many jobs are ahead and when it starts and ends."""
    a, b, c = job(10.0), job(8.0, 8.0), job(30.0)
    run(a.tasks[0], since=0.0)
    guard.describe(tasks(a, b, c), slots=2, now=4.0)
    assert a.phase == "running" and a.eta_done == pytest.approx(6.0)
    assert b.phase == "queued" and b.ahead == 1
    assert b.eta_start == pytest.approx(6.0 / 2) and b.eta_done == pytest.approx(3.0 + 8.0)
    assert c.ahead == 2 and c.eta_start == pytest.approx((6.0 + 16.0) / 2)
    assert c.eta_done == pytest.approx(11.0 + 30.0)
    assert "2 runs ahead of you" in guard.summary(c)
    assert "starts in a few seconds" in guard.summary(b)
    assert "done in about 40 s" in guard.summary(c)


def test_progress_refines_the_estimate():
    t = job(100.0).tasks[0]
    run(t, since=0.0)
    t.progress = (500, 1000)
    assert t.remaining(now=10.0) == pytest.approx(10.0)  # half done in 10 s: 10 s left
    t.progress = (10, 1000)  # too little progress to extrapolate from
    assert t.remaining(now=10.0) == pytest.approx(90.0)


@pytest.mark.parametrize(
    ("seconds", "words"),
    [(2, "a few seconds"), (12, "about 10 s"), (64, "about 65 s"), (200, "about 3 min"),
     (7200, "about 2.0 h"), (math.inf, "a while")],
)  # fmt: skip
def test_estimates_in_words(seconds, words):
    assert guard.in_words(seconds) == words


def test_a_job_two_students_wait_for_goes_ahead_of_its_size():
    alone, shared = job(1.0), job(1.5)
    shared.waiters = 2
    assert [t.job for t in guard.order(tasks(alone, shared), 2, 0.0)] == [shared, alone]
