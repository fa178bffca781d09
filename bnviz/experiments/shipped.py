"""Rebuild the runs the lessons ship in ``assets/``: ``python -m bnviz.experiments.shipped``."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from bnviz import assets
from bnviz.experiments import drift

EXPERIMENTS = (drift.EXPERIMENT,)  # the lessons that ship runs


def shipped() -> dict:
    """Asset name -> (experiment, config) of every shipped run."""
    return {name: (e, cfg) for e in EXPERIMENTS for name, cfg in e.shipped.items()}


def build(name: str, folder: Path = assets.ASSET_DIR) -> Path:
    experiment, cfg = shipped()[name]
    return assets.save(name, experiment(cfg), folder)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Build bnviz's precomputed runs.")
    parser.add_argument("--only", action="append", choices=sorted(shipped()))
    parser.add_argument("--out", type=Path, default=assets.ASSET_DIR)
    args = parser.parse_args(argv)
    for name in args.only or sorted(shipped()):
        t = time.perf_counter()
        out = build(name, args.out)
        print(f"{out}: {out.stat().st_size / 1e6:.1f} MB in {time.perf_counter() - t:.0f} s")


if __name__ == "__main__":
    main()
