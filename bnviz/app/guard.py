"""How many trainers this server has, and who trains next: the scheduling policy of the worker
processes (``bnviz.app.workers`` runs it), as pure functions of the jobs in hand.

A classroom server gets thirty "train" clicks at once. Each click is a job of one or more
tasks (a twin run is two: one net per process); at most ``slots`` tasks run at once, one per
core. Which ones:

- **Figures first.** A figure task draws a run that is already trained for a student who is
  looking at the page; it takes a fraction of a second.
- **Shortest job next**, by its estimated remaining work (``cost``) per student waiting for
  it (identical requests share one job), jobs within a factor of two in arrival order. A
  student's 30-minute run does not hold the trainers while thirty others' few-second runs
  wait: it yields to them.
- **Preemption.** A running task that has a long way to go is paused (SIGSTOP, in the kept
  process, losing nothing) when shorter work is waiting, and resumed when it is next in line;
  the shorter work runs in a spare process. Tasks close to their end are left to finish.

Every waiting job gets its place in the line and a time estimate from the same numbers.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import re
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LOG = logging.getLogger("bnviz")

MAX_TRAINERS = 64  # more would only add processes that share the same cores
PREEMPT_AFTER = 0.5  # seconds a task runs before it may be paused (no pausing a task at once)
PREEMPT_LEFT = 2.0  # a task with less than this left (estimated seconds) runs to its end
FIGURE, TRAIN = 0, 1  # task kinds, in the order they are served


# --------------------------------------------------------------------------- how many trainers


def cgroup_cpus(root: Path = Path("/sys/fs/cgroup"), proc_cgroup: Path | None = None) -> float:
    """The CPU quota of this process's cgroup in CPUs (``docker run --cpus 2`` gives 2.0), or
    ``inf`` when there is none. Reads cgroup v2 ``cpu.max`` and v1 ``cpu.cfs_quota_us`` /
    ``cpu.cfs_period_us``, from this process's own cgroup up to the root (the tightest wins)."""
    proc_cgroup = proc_cgroup or Path("/proc/self/cgroup")
    paths: dict[str, str] = {}
    try:
        for line in proc_cgroup.read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            for name in controllers.split(",") if controllers else [""]:
                paths[name] = path
    except (OSError, ValueError):
        pass
    best = math.inf

    def ancestors(base: Path, rel: str) -> Iterable[Path]:
        parts = [p for p in rel.strip("/").split("/") if p]
        for n in range(len(parts), -1, -1):
            yield base.joinpath(*parts[:n])

    for folder in ancestors(root, paths.get("", "/")):  # v2 (unified)
        try:
            quota, period = (folder / "cpu.max").read_text().split()[:2]
            if quota != "max":
                best = min(best, int(quota) / int(period))
        except (OSError, ValueError):
            continue
    for v1 in ("cpu", "cpu,cpuacct", "cpuacct,cpu"):
        for folder in ancestors(root / v1, paths.get("cpu", "/")):
            try:
                quota = int((folder / "cpu.cfs_quota_us").read_text())
                period = int((folder / "cpu.cfs_period_us").read_text())
                if quota > 0 and period > 0:
                    best = min(best, quota / period)
            except (OSError, ValueError):
                continue
    return best


def usable_cpus() -> int:
    """CPUs this process may use: its affinity mask (``taskset``, ``docker --cpuset-cpus``)
    and its cgroup's quota (``docker --cpus``), not the machine's count."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    quota = cgroup_cpus()
    if quota < cpus:
        cpus = max(1, math.ceil(quota - 0.01))  # 1.5 CPUs: two trainers sharing them
    return max(1, cpus)


def trainer_count(raw: str | None, cpus: int) -> tuple[int, str | None]:
    """``BNVIZ_TRAINERS`` read: (the number of trainers, a message for the log or None).

    Unset or empty: one trainer per usable CPU. A whole number from 1 to MAX_TRAINERS is used
    as given (a message when it exceeds the CPUs); anything else (0, -1, "abc", "²", "2.5")
    falls back to one per CPU, and says so.
    """
    default = max(1, min(cpus, MAX_TRAINERS))
    if raw is None or raw.strip() == "":
        return default, None
    text = raw.strip()
    if not re.fullmatch(r"[0-9]+", text):  # ASCII digits only: "²".isdigit() is True
        return default, (
            f"BNVIZ_TRAINERS={raw!r} is not a whole number of trainers; using {default} "
            f"(one per usable CPU)."
        )
    n = int(text)
    if n < 1:
        return default, (
            f"BNVIZ_TRAINERS={raw!r} asks for no trainers; using {default} (one per usable CPU)."
        )
    if n > MAX_TRAINERS:
        return MAX_TRAINERS, (
            f"BNVIZ_TRAINERS={raw!r} is more than {MAX_TRAINERS}; using {MAX_TRAINERS}."
        )
    if n > cpus:
        return n, (
            f"BNVIZ_TRAINERS={n} is more than the {cpus} usable CPU(s): runs will share them "
            f"and each will be slower."
        )
    return n, None


def default_slots() -> int:
    """The server's number of trainers (``BNVIZ_TRAINERS``, else one per usable CPU)."""
    return TRAINERS


def _read_trainers() -> int:
    count, message = trainer_count(os.environ.get("BNVIZ_TRAINERS"), usable_cpus())
    if message:
        LOG.warning(message)
        print(f"bnviz: {message}", flush=True)  # the server's log, whatever logging is set to
    return count


TRAINERS = _read_trainers()


# --------------------------------------------------------------------------- jobs and tasks

_seq = itertools.count(1)


@dataclass(eq=False)
class Job:
    """One request for work: its tasks, and what its waiter is told."""

    tasks: list[Task] = field(default_factory=list)
    seq: int = field(default_factory=lambda: next(_seq))
    submitted: float = field(default_factory=time.monotonic)
    parallel: int | None = None  # at most this many of its tasks at once (None: any)
    waiters: int = 1  # students waiting for it: a job two wait for goes ahead of its size
    # what the policy last said about it (read by the waiter's thread)
    phase: str = "queued"  # starting | queued | running | paused | done
    ahead: int = 0  # jobs before it in line
    eta_start: float = 0.0  # seconds until it starts (0 once running)
    eta_done: float = 0.0  # seconds until it is done
    cancelled: bool = False
    event: threading.Event = field(default_factory=threading.Event)  # set when it is over

    def live(self) -> list[Task]:
        return [t for t in self.tasks if t.state in ("queued", "running", "stopped")]


@dataclass(eq=False)
class Task:
    """One call in one process; ``cost`` is its estimated seconds on one core."""

    job: Job
    kind: int
    cost: float
    id: int = field(default_factory=lambda: next(_seq))
    state: str = "queued"  # queued | running | stopped | done
    ran: float = 0.0  # seconds run before the current stretch
    since: float | None = None  # start of the current stretch of running
    progress: tuple | None = None  # (done, total) when the task reports both
    values: tuple | None = None  # its latest progress report, as sent
    units: float = 0.0  # forward multiply-adds it trains (0 for a figure)
    worker: Any = None  # the process it runs in
    started: bool = False  # its process has received it (until then a dead one gives it back)
    outcome: tuple | None = None  # (done | error | cancelled | died, payload)

    def run_time(self, now: float) -> float:
        running = self.state == "running" and self.since is not None
        return self.ran + (now - self.since if running else 0.0)

    def remaining(self, now: float) -> float:
        """Estimated seconds left: from the task's own progress once it has made some, else
        from its cost."""
        ran = self.run_time(now)
        p = self.progress
        if p and len(p) >= 2 and p[1] and p[0] >= 0.05 * p[1] and ran > 0.2:
            return ran * (p[1] - p[0]) / p[0]
        return max(self.cost - ran, 0.05 * self.cost)


def job_left(job: Job, slots: int, now: float) -> float:
    """A job's estimated wall seconds left when it has the trainers it can use."""
    live = job.live()
    if not live:
        return 0.0
    width = max(1, min(len(live), slots, job.parallel or len(live)))
    return sum(t.remaining(now) for t in live) / width


def _bucket(seconds: float) -> int:
    """Jobs within a factor of two of each other share a bucket (and keep arrival order)."""
    return max(0, int(math.log2(max(seconds, 0.5) / 0.5)))


def order(tasks: Sequence[Task], slots: int, now: float) -> list[Task]:
    """Live tasks in the order they should run: figures, then jobs by remaining work per
    student waiting for them (shortest first; within a factor of two, first come)."""
    left = {}
    for t in tasks:
        if t.job not in left:
            left[t.job] = job_left(t.job, slots, now) / max(1, t.job.waiters)
    return sorted(
        (t for t in tasks if t.state in ("queued", "running", "stopped")),
        key=lambda t: (t.kind, _bucket(left[t.job]), t.job.seq, t.id),
    )


@dataclass
class Plan:
    stop: list[Task]  # pause these (SIGSTOP)
    resume: list[Task]  # continue these (SIGCONT)
    start: list[Task]  # give these to an idle process (one is started when none is idle)


def plan(tasks: Sequence[Task], slots: int, processes_free: int, now: float) -> Plan:
    """Which tasks should run now, given ``slots`` trainers and ``processes_free`` processes
    that could take a queued task (idle ones plus those that may still be started).

    A queued task runs only if a process can take it; a running task is paused only for one
    that runs instead, and never when it is short of its end or has just started.
    """
    ranked = order(tasks, slots, now)
    chosen: list[Task] = []
    free = processes_free
    width: dict[Job, int] = {}
    for t in ranked:
        if len(chosen) == slots:
            break
        if t.job.parallel and width.get(t.job, 0) >= t.job.parallel:
            continue
        if t.state == "queued":
            if free == 0:
                continue
            free -= 1
        chosen.append(t)
        width[t.job] = width.get(t.job, 0) + 1
    for t in ranked:  # running tasks that must not be paused displace the last newcomers
        if t.state != "running" or t in chosen or preemptible(t, now):
            continue
        newcomers = [c for c in chosen if c.state != "running"]
        if newcomers:
            chosen.remove(newcomers[-1])
        chosen.append(t)
    running = [t for t in ranked if t.state == "running"]
    stop = [t for t in running if t not in chosen]
    return Plan(
        stop=stop,
        resume=[t for t in chosen if t.state == "stopped"],
        start=[t for t in chosen if t.state == "queued"],
    )


def preemptible(t: Task, now: float) -> bool:
    return (
        t.kind == TRAIN
        and t.started  # its process has the whole task (no pausing it halfway through that)
        and t.run_time(now) - t.ran >= PREEMPT_AFTER
        and t.remaining(now) >= PREEMPT_LEFT
    )


def describe(tasks: Sequence[Task], slots: int, now: float) -> None:
    """Set every live job's phase, place in line and time estimates (assuming no new work
    arrives): a job starts when the work ranked before it has drained through the trainers."""
    ranked = order(tasks, slots, now)
    jobs: list[Job] = []
    for t in ranked:
        if t.job not in jobs:
            jobs.append(t.job)
    before = 0.0  # core-seconds of work ranked before this job
    for i, job in enumerate(jobs):
        live = job.live()
        states = {t.state for t in live}
        left = job_left(job, slots, now)
        if "running" in states:
            job.phase, job.eta_start = "running", 0.0
        elif "stopped" in states:
            job.phase, job.eta_start = "paused", before / slots
        else:
            job.phase, job.eta_start = "queued", before / slots
        job.ahead = i
        job.eta_done = job.eta_start + left
        before += sum(t.remaining(now) for t in live)


def count_jobs(tasks: Iterable[Task]) -> int:
    return len({t.job for t in tasks if t.state in ("queued", "running", "stopped")})


def in_words(seconds: float) -> str:
    """A time estimate as a student reads it: "a few seconds", "about 40 s", "about 3 min"."""
    if not math.isfinite(seconds):
        return "a while"
    if seconds < 5:
        return "a few seconds"
    if seconds < 90:
        return f"about {int(round(seconds / 5.0) * 5)} s"
    if seconds < 3600:
        return f"about {round(seconds / 60):.0f} min"
    return f"about {seconds / 3600:.1f} h"


def summary(job: Any) -> str:
    """What a waiting student reads about their job."""
    if job.phase == "starting":
        return "Starting the trainers (a few seconds, once per server)…"
    if job.phase == "queued":
        runs = "run" if job.ahead == 1 else "runs"
        return (
            f"Waiting for a trainer: {job.ahead} {runs} ahead of you, starts in "
            f"{in_words(job.eta_start)}, done in {in_words(job.eta_done)}."
        )
    if job.phase == "paused":
        return (
            f"Paused while shorter runs go first ({job.ahead} ahead); continues in "
            f"{in_words(job.eta_start)}."
        )
    return f"Training… {in_words(job.eta_done)} left."
