"""The debate lesson's default view, timed: the cap's plain runs and the four probed arms,
through the app's worker processes (``bnviz.app.workers``), then the figures the page builds.

    python bench/bench_debate.py [--repeat 3] [--server PORT]

The target (issue 12): the default view (4 arms, 2,000 steps, probes every 50 steps) answers
in under 5 s on 2 cores; a cached rerun under 0.5 s. ``--server PORT`` also times the page on a
real ``streamlit run`` server on that port: a fresh run and cached reruns, as a browser asks.
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


def cpu_seconds() -> None:
    """What the default view costs in CPU time (process time, so other load on the machine
    does not count): each worker's share trained here in turn. On two idle cores the wall time
    is about the larger share plus half the cap."""
    from bnviz.experiments import debate

    values = dict(debate.DEFAULTS, seed=50)
    t = time.process_time()
    cap = debate.EXPERIMENT(debate.cap_config(values))
    cap_s = time.process_time() - t
    cfg = debate.configs(values, cap.landscape)
    shares = []
    for group in debate.GROUPS:
        t = time.process_time()
        debate.train_group(cfg.base, cfg.arms(), group)
        shares.append(time.process_time() - t)
    words = ", ".join(
        f"{' + '.join(g)} {s:.2f} s" for g, s in zip(debate.GROUPS, shares, strict=True)
    )
    print(
        f"CPU: cap {cap_s:.2f} s; worker shares {words}; on two idle cores about "
        f"{max(shares) + cap_s / 2:.2f} s to the result"
    )


def experiment_times(repeat: int) -> None:
    from bnviz.app import workers
    from bnviz.experiments import debate
    from bnviz.figures import debate as figs

    workers.pool(workers.default_slots())  # the server starts them after its first view
    print(
        f"cores: {os.cpu_count()}, trainers: {workers.default_slots()}, "
        f"load average: {os.getloadavg()[0]:.1f}"
    )
    for i in range(repeat):
        values = dict(debate.DEFAULTS, seed=10 + i)  # a config no cache holds
        t0 = time.perf_counter()
        cap = debate.EXPERIMENT(debate.cap_config(values), executor=workers)
        t1 = time.perf_counter()
        arms = debate.EXPERIMENT(debate.configs(values, cap.landscape), executor=workers)
        t2 = time.perf_counter()
        step = debate.steps_of(arms)[len(debate.steps_of(arms)) // 2]
        figures = [
            figs.loss_curves(arms),
            figs.accuracy_curves(arms),
            figs.histograms(arms, 3),
            figs.unit_percentiles(arms, 3),
            figs.drift_by_arm(arms, 3),
            figs.ics_over_training(arms),
            figs.landscape_over_training(arms),
            figs.step_back(arms, step),
        ]
        debate.findings(arms)
        t3 = time.perf_counter()
        print(
            f"run {i + 1}: cap {t1 - t0:.2f} s + arms {t2 - t1:.2f} s = {t2 - t0:.2f} s to the "
            f"result; {len(figures)} figures and the findings {t3 - t2:.2f} s; "
            f"arm seconds {', '.join(f'{h.label} {h.seconds:.2f}' for h in arms)}"
        )
    workers.shutdown()


async def page_times(url: str) -> None:
    """A first visit of the default view (the server's trainers start 10 s after it), then,
    once they are up, a config nobody has run in a new session, and reruns of the default in
    a third (served from the cache). The minimal client sends no widget states, so each
    session stays on the view its link names only for its first reruns: the reruns ask for
    the default view, which is what they fall back to."""
    from tests.e2e.stclient import StreamlitSession

    async with StreamlitSession(url, "debate") as s:
        first = await s.run("")
        print(f"page, first visit of the server (default view): {first.seconds:.2f} s")
    await asyncio.sleep(15)
    async with StreamlitSession(url, "debate") as s:  # a new session reads its link
        fresh = await s.run("seed=21")
        print(
            f"page, fresh run: {fresh.seconds:.2f} s ({fresh.charts} charts, first chart after "
            f"{fresh.first_chart_s:.2f} s, exceptions {fresh.exceptions})"
        )
    async with StreamlitSession(url, "debate") as s:
        hits = [(await s.run("")).seconds for _ in range(8)]
        print(f"page, cached reruns of the default: {', '.join(f'{h:.2f}' for h in hits)} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--server", type=int, default=None, help="also time a server here")
    args = parser.parse_args()
    cpu_seconds()
    experiment_times(args.repeat)
    if args.server:
        from tests.e2e.servers import start_streamlit, stop_process

        server = start_streamlit(port=args.server, trainers=2)
        try:
            asyncio.run(page_times(server.url))
        finally:
            stop_process(server.proc)


if __name__ == "__main__":
    main()
