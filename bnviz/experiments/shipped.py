"""Rebuild the results the lessons ship in ``assets/``: ``python -m bnviz.experiments.shipped``."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from bnviz import assets
from bnviz.experiments import (
    bn_steps,
    covariate_shift,
    debate,
    drift,
    inference,
    learning_rate,
    scale,
)

MANIFEST = "manifest.json"
EXPERIMENTS = (
    drift.EXPERIMENT,
    bn_steps.EXPERIMENT,
    covariate_shift.EXPERIMENT,
    inference.EXPERIMENT,
    learning_rate.EXPERIMENT,
    scale.EXPERIMENT,
    debate.EXPERIMENT,
)  # the lessons that ship runs


def shipped() -> dict:
    """Asset name -> (experiment, config) of every shipped run."""
    return {name: (e, cfg) for e in EXPERIMENTS for name, cfg in e.shipped.items()}


def build(name: str, folder: Path = assets.ASSET_DIR) -> Path:
    """Train the shipped config ``name`` and store its result, and the config it came from
    (in ``manifest.json``, so a test can tell a stale asset from a fresh one)."""
    experiment, cfg = shipped()[name]
    out = assets.save(name, experiment(cfg), folder, experiment.encode)
    manifest = folder / MANIFEST
    known = json.loads(manifest.read_text()) if manifest.exists() else {}
    known[name] = config_json(cfg)
    manifest.write_text(json.dumps(dict(sorted(known.items())), indent=1) + "\n")
    return out


def config_json(cfg) -> str:
    return json.dumps({"type": type(cfg).__name__, **cfg.as_dict()}, sort_keys=True)


def manifest(folder: Path = assets.ASSET_DIR) -> dict[str, str]:
    """Asset name -> the JSON of the config it was built from."""
    path = folder / MANIFEST
    return json.loads(path.read_text()) if path.exists() else {}


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
