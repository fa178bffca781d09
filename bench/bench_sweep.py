"""Time a learning-rate sweep of the paper's net (digits, 64-100-100-100-10 sigmoid, batch 60,
float32): 16 runs = 8 rates (log grid 0.01..30) x plain/BN, 1,000 steps each, a record every
100 steps. (a) 16 sequential ``train`` runs, (b) ``sweep`` in one process (one stack of 8 per
group), (c) ``bnviz.fanout.sweep`` over 2 worker processes (the first call starts the fork
server and the worker, which later calls reuse). Then where two processes start to pay
(smaller jobs, worker up), and the cost of a stacked step per net-step as K grows against a
single net's step, in CPU seconds of this process (steadier than wall time on a shared machine).
Everything in one run, as ratios; rounds interleaved and the best kept.
Run: python bench/bench_sweep.py
"""

from __future__ import annotations

import os
import time
from dataclasses import replace

import numpy as np

from bnviz import fanout
from bnviz.app import workers as executor
from bnviz.blas import single_threaded_blas
from bnviz.engine import FastEngine
from bnviz.fanout import MIN_PARALLEL_MACS, MIN_PARALLEL_MACS_WARM, forward_macs
from bnviz.train import TrainConfig, load_data, new_runs, train


def sweep_parallel(configs: list[TrainConfig], workers: int) -> list:
    return fanout.sweep(configs, executor=executor, workers=workers)


RATES = np.geomspace(0.01, 30.0, 8)
BASE = TrainConfig(
    dataset="digits",
    hidden=(100, 100, 100),
    activation="sigmoid",
    batch_size=60,
    steps=1000,
    record_every=100,
    dtype="float32",
)
KS = (1, 2, 4, 8, 16, 32, 64)


def grid() -> list[TrainConfig]:
    return [replace(BASE, batchnorm=bn, lr=float(lr)) for bn in (False, True) for lr in RATES]


def timed(fn):
    """Wall seconds, CPU seconds of this process, and the result of fn()."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, out


def same(a, b) -> float:
    """Largest relative gap between the per-step losses of two lists of histories."""
    gaps = [
        np.max(np.abs(x.loss - y.loss) / np.abs(y.loss), initial=0.0) if len(x.loss) else 0.0
        for x, y in zip(a, b, strict=True)
    ]
    assert all(x.diverged_at == y.diverged_at for x, y in zip(a, b, strict=True))
    return float(max(gaps))


def whole_sweep(rounds: int = 3) -> None:
    configs = grid()
    load_data(configs[0])
    cold, _, first = timed(lambda: sweep_parallel(configs, workers=2))
    wall = {"a": np.inf, "b": np.inf, "c": np.inf}
    cpu = dict(wall)
    results = {}
    jobs = {
        "a": lambda: [train(cfg) for cfg in configs],
        "b": lambda: sweep_parallel(configs, workers=1),
        "c": lambda: sweep_parallel(configs, workers=2),
    }
    for _ in range(rounds):  # interleaved, so that other jobs on the machine hit all alike
        for key, job in jobs.items():
            w, c, results[key] = timed(job)
            wall[key], cpu[key] = min(wall[key], w), min(cpu[key], c)
    a, b, c = wall["a"], wall["b"], wall["c"]
    print(
        f"16 runs x 1,000 steps (8 rates x plain/BN), best of {rounds}, wall (CPU of this process):"
    )
    print(f"  (a) 16 sequential train runs      {a:5.2f} s ({cpu['a']:5.2f} s)")
    print(
        f"  (b) sweep, one process            {b:5.2f} s ({cpu['b']:5.2f} s)   a/b = {a / b:4.2f}x"
    )
    print(
        f"  (c) sweep_parallel, 2 processes   {c:5.2f} s ({cpu['c']:5.2f} s)   a/c = {a / c:4.2f}x,"
        f" b/c = {b / c:4.2f}x"
    )
    print(f"      first call of (c), which starts the worker process: {cold:.2f} s")
    print(f"  CPU ratio a/b = {cpu['a'] / cpu['b']:.2f}x (steadier than wall on a shared machine)")
    gaps = {k: same(results[k], results["a"]) for k in ("b", "c")}
    gaps["c first"] = same(first, results["a"])
    print(
        "  largest relative loss gap to (a): " + ", ".join(f"{k} {v:.1e}" for k, v in gaps.items())
    )
    diverged = [h.diverged_at for h in results["a"]]
    acc = [f"{h.test_acc[-1]:.2f}" for h in results["a"]]
    print(f"  diverged_at: {diverged}\n  final test accuracy: {acc}")


def crossover(rounds: int = 3) -> None:
    """16 runs of fewer steps: one process against two (forced, the worker already up)."""
    data = load_data(BASE)
    print(
        f"\nwhere 2 processes pay (MIN_PARALLEL_MACS = {MIN_PARALLEL_MACS:.0e} before the worker"
        f" is up, MIN_PARALLEL_MACS_WARM = {MIN_PARALLEL_MACS_WARM:.0e} after), best of {rounds}:"
    )
    for steps in (25, 50, 100, 200, 400):
        configs = [replace(cfg, steps=steps, record_every=steps // 10) for cfg in grid()]
        work = sum(forward_macs(cfg, data.n_features, data.n_classes) for cfg in configs)
        one = two = np.inf
        saved, fanout.MIN_PARALLEL_MACS_WARM = fanout.MIN_PARALLEL_MACS_WARM, 0.0
        try:
            for _ in range(rounds):
                one = min(one, timed(lambda c=configs: sweep_parallel(c, workers=1))[0])
                two = min(two, timed(lambda c=configs: sweep_parallel(c, workers=2))[0])
        finally:
            fanout.MIN_PARALLEL_MACS_WARM = saved
        print(
            f"  {steps:4d} steps ({work:.1e} MACs): 1 process {one:5.2f} s, "
            f"2 processes {two:5.2f} s, ratio {one / two:4.2f}x"
        )


def stacked(k: int, batchnorm: bool):
    """A fast engine with k nets of the sweep's group, ready to step."""
    cfg = replace(BASE, batchnorm=batchnorm, steps=100_000, record_every=100_000)
    configs = [replace(cfg, lr=float(RATES[i % 4]) / 10, seed=i % 2) for i in range(k)]
    engine = FastEngine(new_runs(configs))
    state = {"t": 0}

    def step():
        engine.steps(state["t"], 20)
        state["t"] += 20

    return step


def best_per_call(fn, calls: int, rounds: int = 3) -> float:
    """Best mean CPU seconds per call of this process over several rounds."""
    for _ in range(3):
        fn()
    best = np.inf
    for _ in range(rounds):
        t = time.process_time()
        for _ in range(calls):
            fn()
        best = min(best, (time.process_time() - t) / calls)
    return best


def scaling() -> None:
    print("\nCPU time per net-step of a stack of K (forward + backward + SGD), one process:")
    with single_threaded_blas():
        for bn in (False, True):
            single = stacked(1, bn)
            steps = {k: stacked(k, bn) for k in KS}
            best = {k: np.inf for k in KS}
            best_single = np.inf
            for _ in range(3):  # interleaved rounds
                best_single = min(best_single, best_per_call(single, 10) / 20)
                for k in KS:
                    best[k] = min(best[k], best_per_call(steps[k], max(2, 10 // k)) / (20 * k))
            row = " ".join(f"K={k}: {best[k] * 1e6:4.0f}" for k in KS)
            print(
                f"  {'BN' if bn else 'plain':5s} single net {best_single * 1e6:4.0f} us | {row} us"
            )
            ratio = " ".join(f"{best_single / best[k]:.2f}x" for k in KS)
            print(f"        speed-up over the single net: {ratio}")


if __name__ == "__main__":
    print("load average at start: {:.1f} {:.1f} {:.1f}".format(*os.getloadavg()))
    whole_sweep()
    crossover()
    scaling()
    print("load average at end: {:.1f} {:.1f} {:.1f}".format(*os.getloadavg()))
