"""Precomputed runs shipped in ``assets/`` so a first paint does not wait for training.

Each lesson's experiment declares the configs it ships (``Experiment.shipped``); this module
only stores and finds them. Rebuild them (deterministic for a given seed) with:

    python -m bnviz.experiments.shipped            # all
    python -m bnviz.experiments.shipped --only paper-figure-1 --out /tmp/assets
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from bnviz.store import twins_from_npz, twins_to_npz
from bnviz.train import Twins

ASSET_DIR = Path(__file__).resolve().parent.parent / "assets"


def path_for(name: str, folder: Path = ASSET_DIR) -> Path:
    return folder / f"{name}.npz"


def exists(name: str, folder: Path = ASSET_DIR) -> bool:
    return path_for(name, folder).exists()


@lru_cache(maxsize=8)
def load(name: str) -> Twins:
    return twins_from_npz(path_for(name))


def save(name: str, twins: Twins, folder: Path = ASSET_DIR) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    out = path_for(name, folder)
    out.write_bytes(twins_to_npz(twins))
    return out
