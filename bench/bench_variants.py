"""Time the "Variants and pitfalls" batch-size grid: 4 normalizations x 6 batch sizes x 2 seeds
(48 nets, the default 12,800 examples each), as the page asks for it (one experiment per
normalization).

- in this process, no executor (one core);
- through the app's worker executor (``bnviz.app.workers``, 2 processes): first with the
  workers cold (the pool starts and loads the kernels), then warm on a new seed;
- on a real ``streamlit run`` server: the whole page with its defaults trained fresh (the grid,
  the dropout nets and every chart), and a cached rerun (target: 0.5 s).

The issue's target: the grid answers in under 10 s on 2 cores. Run: python bench/bench_variants.py
[--port 8951] [--no-server] [--settle 40]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bnviz.experiments import variants as vr  # noqa: E402
from bnviz.train import warm_up  # noqa: E402


def grid_seconds(seed: int, executor=None) -> tuple[float, list]:
    values = dict(vr.DEFAULTS, seed=seed)
    start = time.perf_counter()
    results = [vr.EXPERIMENT(vr.batch_grid(values, n), executor=executor) for n in vr.GRID_NORMS]
    return time.perf_counter() - start, results


async def page_runs(url: str) -> dict[str, float]:
    """Each fresh view in a session of its own: a page reads its link on its first run in a
    session only, later runs keep the session's values."""
    from tests.e2e.stclient import StreamlitSession

    out = {}
    async with StreamlitSession(url, "variants") as s:
        first = await s.run("seed=1")  # nobody ran it: trains; the workers may still be cold
        assert not first.exceptions, first.exceptions
        out["page, fresh (seed 1), first view of the server (s)"] = first.seconds
        out["  its first chart (s)"] = first.first_chart_s or float("nan")
        hits = [(await s.run("seed=1")).seconds for _ in range(5)]
        out["page, cached rerun, best of 5 (s)"] = min(hits)
        out["page, cached rerun, median of 5 (s)"] = sorted(hits)[2]
    for seed in (2, 3):
        async with StreamlitSession(url, "variants") as s:
            fresh = await s.run(f"seed={seed}")
            assert not fresh.exceptions, fresh.exceptions
            out[f"page, fresh (seed {seed}), a new session (s)"] = fresh.seconds
    async with StreamlitSession(url, "variants") as s:
        out["page, cached (seed 3), a new session (s)"] = (await s.run("seed=3")).seconds
    return out


async def _touch_home(url: str) -> None:
    """One view of the home page: what starts the server's trainer warm-up."""
    from tests.e2e.stclient import StreamlitSession

    async with StreamlitSession(url, "") as s:
        await s.run("")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8951)
    parser.add_argument("--no-server", action="store_true")
    parser.add_argument(
        "--settle",
        type=float,
        default=0.0,
        help="seconds to wait after the server answers before the first view (the trainers "
        "start 10 s after a first page view; a class server has been up for a while)",
    )
    args = parser.parse_args()
    print(f"cores: {os.cpu_count()}, load average: {os.getloadavg()[0]:.1f}")
    print(f"kernels loaded in {warm_up():.1f} s")
    seconds, results = grid_seconds(seed=10)
    print(f"grid, 48 nets, in this process: {seconds:.1f} s")
    from bnviz.app import workers

    try:
        seconds, _ = grid_seconds(seed=11, executor=workers)
        print(f"grid, 2 workers, cold (pool starts): {seconds:.1f} s")
        for seed in (12, 13):
            seconds, results = grid_seconds(seed=seed, executor=workers)
            print(f"grid, 2 workers, warm (seed {seed}): {seconds:.1f} s")
    finally:
        workers.shutdown()
    print(vr.compare_falls(results))
    if args.no_server:
        return
    from tests.e2e.servers import start_streamlit, stop_process

    server = start_streamlit(port=args.port, trainers=2)
    try:
        if args.settle:
            asyncio.run(_touch_home(server.url))
            time.sleep(args.settle)
        for name, value in asyncio.run(page_runs(server.url)).items():
            print(f"{name}: {value:.2f}")
    finally:
        stop_process(server.proc)


if __name__ == "__main__":
    main()
