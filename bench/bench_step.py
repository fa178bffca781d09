"""Time training steps of the paper's net (digits, 64-100-100-100-10 sigmoid, batch 60,
float32), all in one process, as ratios:

- bnviz's whole training loop (``bnviz.engine.drive`` of the fast engine, recording every 50
  steps, as ``train`` runs it), plain and BN;
- an equivalent PyTorch eager CPU loop (zero_grad, forward, cross-entropy, backward, SGD);
- the step's matrix products alone from Python (the floor a numpy engine cannot go below);
- noisy BN, LayerNorm and GroupNorm steps against the BN step;
- what recording every 50 steps adds, against the same loop recording only at the end.

Rounds are interleaved and the best kept (the machine is shared). Run: python bench/bench_step.py
"""

from __future__ import annotations

import time

import numpy as np
from threadpoolctl import threadpool_limits

from bnviz.data import BatchSampler, load_dataset
from bnviz.engine import FastEngine, drive
from bnviz.nn import MLP
from bnviz.train import TrainConfig, new_runs

SIZES = (64, 100, 100, 100, 10)
BATCH, LR, DTYPE = 60, 0.5, np.float32
STEPS = 2000


def batches(n: int = 256):
    ds = load_dataset("digits", seed=0)
    idx = BatchSampler(ds.y_train, BATCH, "shuffled", seed=0).take(n)
    x = np.ascontiguousarray(ds.x_train, dtype=DTYPE)
    return [(x[i], ds.y_train[i]) for i in idx]


def engine_loop(record_every: int = 50, **kw):
    """Seconds per step of the fast engine's whole loop, records included."""

    def run() -> float:
        cfg = TrainConfig(steps=STEPS, record_every=record_every, dtype="float32", **kw)
        (r,) = new_runs([cfg])
        start = time.perf_counter()
        drive(FastEngine([r]))
        return (time.perf_counter() - start) / STEPS

    return run


def matmul_floor(batchnorm: bool, data):
    """The step's matrix products alone, on the same shapes."""
    model = MLP(SIZES, "sigmoid", batchnorm, seed=0, dtype=DTYPE)
    ws = [model.params[f"fc{i}.weight"] for i in range(1, len(SIZES))]
    gws = [np.empty_like(w) for w in ws]

    def run() -> float:
        start = time.perf_counter()
        for j in range(STEPS // 4):
            x, _ = data[j % len(data)]
            hs = [x]
            for w in ws:
                hs.append(hs[-1] @ w.T)
            d = hs[-1]
            for i in range(len(ws) - 1, -1, -1):
                np.matmul(d.T, hs[i], out=gws[i])
                if i:
                    d = d @ ws[i]
        return (time.perf_counter() - start) / (STEPS // 4)

    return run


def torch_loop(batchnorm: bool, data):
    import torch

    from bnviz.reference.torch import to_torch

    model = to_torch(MLP(SIZES, "sigmoid", batchnorm, seed=0, dtype=DTYPE))
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    tdata = [(torch.from_numpy(x), torch.from_numpy(y)) for x, y in data]
    loss_fn = torch.nn.CrossEntropyLoss()

    def run() -> float:
        start = time.perf_counter()
        for j in range(STEPS // 4):
            x, y = tdata[j % len(tdata)]
            opt.zero_grad(set_to_none=True)
            loss_fn(model(x), y).backward()
            opt.step()
        return (time.perf_counter() - start) / (STEPS // 4)

    return run


def best(fns: dict, rounds: int) -> dict[str, float]:
    times = {k: float("inf") for k in fns}
    for _ in range(rounds):  # interleaved, so drift on a shared machine hits all alike
        for k, fn in fns.items():
            times[k] = min(times[k], fn())
    return times


def main() -> None:
    import torch

    data = batches()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        engine_loop(norm="batch")()  # compiles (or loads) the kernels before timing
        for norm, tag in (("none", "plain"), ("batch", "BN")):
            bn = norm == "batch"
            t = best(
                {
                    "bnviz": engine_loop(norm=norm),
                    "torch": torch_loop(bn, data),
                    "floor": matmul_floor(bn, data),
                    "no records": engine_loop(STEPS, norm=norm),
                },
                5,
            )
            print(
                f"{tag:5s} step: bnviz {t['bnviz'] * 1e6:6.1f} us | torch eager "
                f"{t['torch'] * 1e6:6.1f} us | matmul floor {t['floor'] * 1e6:6.1f} us | "
                f"torch/bnviz {t['torch'] / t['bnviz']:.2f}x | bnviz/floor "
                f"{t['bnviz'] / t['floor']:.2f}x | recording every 50 steps adds "
                f"{(t['bnviz'] / t['no records'] - 1) * 100:.1f}%"
            )
        kinds = {
            "BN": dict(norm="batch"),
            "noisy BN": dict(norm="batch", bn_noise=1.0),
            "LN": dict(norm="layer"),
            "GN": dict(norm="group", groups=4),
        }
        t = best({k: engine_loop(**v) for k, v in kinds.items()}, 5)
        print(
            "against the BN step: "
            + ", ".join(f"{k} {t[k] / t['BN']:.2f}x ({t[k] * 1e6:.0f} us)" for k in kinds)
        )


if __name__ == "__main__":
    main()
