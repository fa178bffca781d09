"""Precomputed runs shipped in ``assets/`` so the first paint is instant.

Build them (deterministic for a given seed) with:

    python -m bnviz.assets            # all
    python -m bnviz.assets --only paper-figure-1 --out /tmp/assets
"""

from __future__ import annotations

import argparse
import time
from functools import lru_cache
from pathlib import Path

from bnviz.store import twins_from_npz, twins_to_npz
from bnviz.train import TrainConfig, Twins, train_twins

ASSET_DIR = Path(__file__).resolve().parent.parent / "assets"


def precomputed() -> dict[str, TrainConfig]:
    """Name -> config of every shipped run (built from the lessons' own presets)."""
    from bnviz.experiments import drift

    return {
        "paper-figure-1": drift.config(**drift.PRESETS["Paper Figure 1"]),
        "drift-default": drift.config(**drift.DEFAULTS),
    }


def path_for(name: str, folder: Path = ASSET_DIR) -> Path:
    return folder / f"{name}.npz"


@lru_cache(maxsize=8)
def load(name: str) -> Twins:
    return twins_from_npz(path_for(name))


def find(cfg: TrainConfig) -> Twins | None:
    """The shipped run with exactly this config, if there is one."""
    for name, stored_cfg in precomputed().items():
        if stored_cfg == cfg and path_for(name).exists():
            return load(name)
    return None


def build(name: str, folder: Path = ASSET_DIR) -> Path:
    twins = train_twins(precomputed()[name])
    folder.mkdir(parents=True, exist_ok=True)
    out = path_for(name, folder)
    out.write_bytes(twins_to_npz(twins))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Build bnviz's precomputed runs.")
    parser.add_argument("--only", action="append", choices=sorted(precomputed()))
    parser.add_argument("--out", type=Path, default=ASSET_DIR)
    args = parser.parse_args(argv)
    for name in args.only or sorted(precomputed()):
        t = time.perf_counter()
        out = build(name, args.out)
        print(f"{out}: {out.stat().st_size / 1e6:.1f} MB in {time.perf_counter() - t:.0f} s")


if __name__ == "__main__":
    main()
