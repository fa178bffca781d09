"""Time one training step of the paper's net (digits, 64-100-100-100-10 sigmoid, batch 60,
float32): bnviz (plain and BN) against an equivalent PyTorch eager CPU loop and against the
step's matrix products alone, all in one process, as ratios. Also the cost of recording every
50 steps: one record's time over fifty steps' time. Run: python bench/bench_step.py
"""

from __future__ import annotations

import time

import numpy as np
from threadpoolctl import threadpool_limits

from bnviz.data import BatchSampler, load_dataset
from bnviz.nn import MLP
from bnviz.optim import SGD

SIZES = (64, 100, 100, 100, 10)
BATCH, LR, DTYPE = 60, 0.5, np.float32


def batches(n: int = 256):
    ds = load_dataset("digits", seed=0)
    idx = BatchSampler(ds.y_train, BATCH, "shuffled", seed=0).take(n)
    x = np.ascontiguousarray(ds.x_train, dtype=DTYPE)
    return [(x[i], ds.y_train[i]) for i in idx]


def numpy_step(batchnorm: bool, data):
    model = MLP(SIZES, "sigmoid", batchnorm, seed=0, dtype=DTYPE)
    opt = SGD([model.flat_params], [model.flat_grads], lr=LR)
    it = iter(range(1 << 62))

    def step():
        x, y = data[next(it) % len(data)]
        model.loss(x, y)
        model.backward()
        opt.step()

    return step


def matmul_floor(batchnorm: bool, data):
    """The step's matrix products alone, on the same shapes, outputs preallocated."""
    model = MLP(SIZES, "sigmoid", batchnorm, seed=0, dtype=DTYPE)
    ws = [model.params[f"fc{i}.weight"] for i in range(1, len(SIZES))]
    gws = [np.empty_like(w) for w in ws]
    it = iter(range(1 << 62))

    def step():
        x, _ = data[next(it) % len(data)]
        hs = [x]
        for w in ws:
            hs.append(hs[-1] @ w.T)
        d = hs[-1]
        for i in range(len(ws) - 1, -1, -1):
            np.matmul(d.T, hs[i], out=gws[i])
            if i:
                d = d @ ws[i]

    return step


def torch_step(batchnorm: bool, data):
    import torch

    from bnviz.torch_ref import to_torch

    model = to_torch(MLP(SIZES, "sigmoid", batchnorm, seed=0, dtype=DTYPE))
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    tdata = [(torch.from_numpy(x), torch.from_numpy(y)) for x, y in data]
    loss_fn = torch.nn.CrossEntropyLoss()
    it = iter(range(1 << 62))

    def step():
        x, y = tdata[next(it) % len(tdata)]
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        opt.step()

    return step


def train_loop(batchnorm: bool):
    """The real training loop (``Run.run``) one step at a time, and one record of that net as
    the loop takes it: a record's cost over 50 steps' cost is what recording every 50 steps
    adds."""
    from bnviz.record import Recorder
    from bnviz.train import Run, TrainConfig, load_data

    cfg = TrainConfig(batchnorm=batchnorm, steps=100_000, record_every=100_000)
    data = load_data(cfg)
    run = Run(cfg, data)
    recorder = Recorder(
        run.model, np.asarray(data.x_test, dtype=DTYPE), data.y_test,
        data.probe_indices(cfg.probe_size, seed=0), max_records=10_000,
    )  # fmt: skip
    norms, ratios = [1.0] * 3, [0.01] * 3
    return (lambda: run.run(1)), (lambda: recorder.record(1, norms, ratios))


def best_time(fn, n: int, rounds: int) -> float:
    """Best mean seconds per call over several rounds (the least disturbed one)."""
    for _ in range(min(n, 100)):
        fn()
    best = float("inf")
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t) / n)
    return best


def main() -> None:
    import torch

    data = batches()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        rows = {}
        for bn in (False, True):
            tag = "BN" if bn else "plain"
            fns = {
                "bnviz": numpy_step(bn, data),
                "torch eager": torch_step(bn, data),
                "matmul floor": matmul_floor(bn, data),
            }
            times = {k: float("inf") for k in fns}
            for _ in range(5):  # interleave, so drift on a shared machine hits all alike
                for k, fn in fns.items():
                    times[k] = min(times[k], best_time(fn, 300, 3))
            step, record = train_loop(bn)
            loops = {"loop": step, "record": record}
            for k in loops:
                times[k] = float("inf")
            for _ in range(3):
                for k, fn in loops.items():
                    times[k] = min(times[k], best_time(fn, 200 if k == "record" else 1000, 3))
            rows[tag] = times
    for tag, t in rows.items():
        print(
            f"{tag:5s} step: bnviz {t['bnviz'] * 1e6:7.1f} us | torch eager "
            f"{t['torch eager'] * 1e6:7.1f} us | matmul floor {t['matmul floor'] * 1e6:7.1f} us"
            f" | torch/bnviz {t['torch eager'] / t['bnviz']:.2f}x"
            f" | bnviz/floor {t['bnviz'] / t['matmul floor']:.2f}x"
        )
        print(
            f"{tag:5s} training loop {t['loop'] * 1e6:7.1f} us/step | one record "
            f"{t['record'] * 1e6:7.1f} us | recording every 50 steps adds "
            f"{t['record'] / (50 * t['loop']) * 100:.1f}%"
        )


if __name__ == "__main__":
    main()
