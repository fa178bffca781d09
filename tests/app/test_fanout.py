"""``bnviz.fanout``: sweeps split into shares over the app's kept worker processes, and twins
trained in two workers, equal to the same runs trained in one process."""

from __future__ import annotations

import threading

import pytest

from bnviz import fanout
from bnviz.app import workers
from bnviz.sweep import compatible_groups
from bnviz.train import TrainConfig
from tests.core.test_sweep import BASE, assert_same, grid, trained


def test_nothing_to_sweep():
    assert fanout.sweep([]) == []


def test_groups_and_shares():
    plain, bn = grid("plain_sigmoid"), grid("bn_before_sigmoid")
    mixed = [c for pair in zip(plain, bn, strict=True) for c in pair]
    assert compatible_groups(mixed) == [list(range(0, 12, 2)), list(range(1, 12, 2))]
    shares = fanout.plan_shares(mixed, 2)
    assert [[idx for idx, _, _ in share] for share in shares] == [
        [[0, 4, 8], [1, 5, 9]],
        [[2, 6, 10], [3, 7, 11]],
    ]
    assert len(fanout.plan_shares(mixed[:1], 2)) == 1


# ----------------------------------------------------------------------------- parallel


@pytest.fixture
def processes(monkeypatch):
    """Worker processes even for the small jobs of these tests; stopped afterwards."""
    monkeypatch.setattr(fanout, "MIN_PARALLEL_MACS", 0.0)
    monkeypatch.setattr(fanout, "MIN_PARALLEL_MACS_WARM", 0.0)
    yield
    workers.shutdown()


def mixed_configs() -> list[TrainConfig]:
    plain, bn = grid("plain_sigmoid")[:4], grid("bn_after_relu")[2:]
    return [bn[0], *plain, *bn[1:]]


def assert_progress(calls: list[tuple[int, int]], total: int) -> None:
    assert calls[0] == (0, total) and calls[-1] == (total, total)
    assert all(t == total for _, t in calls)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


def test_parallel_sweep_in_processes(processes):
    """Plain and BN nets in one call (two groups, each split over two processes), results back
    in input order; the worker process is kept and reused by the next call."""
    mixed = mixed_configs()
    calls = []
    got = fanout.sweep(
        mixed, progress=lambda d, t: calls.append((d, t)), executor=workers, workers=2
    )
    for a, b in zip(got, trained(mixed), strict=True):
        assert_same(a, b)
    assert_progress(calls, 120 * len(mixed))
    kept = set(workers.snapshot()["workers"])
    again = fanout.sweep(mixed[:3], executor=workers, workers=2)
    assert set(workers.snapshot()["workers"]) == kept
    for a, b in zip(again, got[:3], strict=True):
        assert_same(a, b)


def test_small_jobs_stay_in_this_process(monkeypatch):
    monkeypatch.setattr(workers, "run_many", None)  # would fail if called
    mixed = mixed_configs()
    calls = []
    got = fanout.sweep(
        mixed, progress=lambda d, t: calls.append((d, t)), executor=workers, workers=2
    )
    for a, b in zip(got, trained(mixed), strict=True):
        assert_same(a, b)
    assert_progress(calls, 120 * len(mixed))


def test_concurrent_parallel_sweeps_keep_their_progress_apart(processes):
    """Two callers (two app sessions) share the kept worker; each sees only its own progress."""
    jobs = {
        "a": [TrainConfig(**BASE, lr=lr) for lr in (0.1, 0.2, 0.4)],
        "b": [TrainConfig(**{**BASE, "steps": 60}, lr=lr, batchnorm=False) for lr in (0.3, 3.0)],
    }
    calls = {key: [] for key in jobs}
    results = {}

    def run(key):
        results[key] = fanout.sweep(
            jobs[key], progress=lambda d, t: calls[key].append((d, t)), executor=workers
        )

    threads = [threading.Thread(target=run, args=(key,)) for key in jobs]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for key, configs in jobs.items():
        for a, b in zip(results[key], trained(configs), strict=True):
            assert_same(a, b)
        assert_progress(calls[key], sum(c.steps for c in configs))
