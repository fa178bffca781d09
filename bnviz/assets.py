"""Precomputed results shipped in ``assets/`` so a first paint does not wait for training.

Each lesson's experiment declares the configs it ships (``Experiment.shipped``) and how its
results are stored (``Experiment.encode``/``decode``; by default runs side by side, as
``bnviz.store`` writes them); this module only stores and finds them. Rebuild them
(deterministic for a given seed) with:

    python -m bnviz.experiments.shipped            # all
    python -m bnviz.experiments.shipped --only paper-figure-1 --out /tmp/assets
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

from bnviz.store import arms_from_npz, arms_to_npz

ASSET_DIR = Path(__file__).resolve().parent.parent / "assets"
Decode = Callable[[bytes], Any]
Encode = Callable[[Any], bytes]


def path_for(name: str, folder: Path = ASSET_DIR) -> Path:
    return folder / f"{name}.npz"


def exists(name: str, folder: Path = ASSET_DIR) -> bool:
    return path_for(name, folder).exists()


@lru_cache(maxsize=16)
def load(name: str, decode: Decode | None = None) -> Any:
    return (decode or arms_from_npz)(path_for(name).read_bytes())


def save(name: str, result: Any, folder: Path = ASSET_DIR, encode: Encode | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    out = path_for(name, folder)
    out.write_bytes((encode or arms_to_npz)(result))
    return out
