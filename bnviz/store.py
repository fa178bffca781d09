"""Runs (any number of arms) to and from NPZ files and CSV tables, without pickle.

An NPZ holds only numeric arrays and JSON strings (each run's config, the arms' labels), so
loading a file never executes code (``allow_pickle=False``). Used for the precomputed runs in
``assets/`` and for the downloads offered on every page.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from bnviz.export import columns_of, csv_table, npz_bytes, padded
from bnviz.measure import PROBE_RECORDS
from bnviz.record import LayerRecord, SiteRecord
from bnviz.train import Arms, History, TrainConfig, Twins

Array = np.ndarray
FORMAT_VERSION = 3
_SITE_FIELDS = tuple(SiteRecord.__dataclass_fields__)
_LAYER_ARRAYS = ("grad_norm", "update_ratio", "weight_norm")
_SITE_COLUMNS = ("mean", "std", "drift_prev", "drift_init", "saturation")  # in the CSV


def history_arrays(h: History, prefix: str = "") -> dict[str, Array]:
    """Flatten a History into named arrays (the NPZ layout)."""
    cfg = h.config.as_dict()
    out = {
        f"{prefix}config": np.array(json.dumps(cfg, sort_keys=True)),
        f"{prefix}loss": h.loss.astype(np.float32),
        f"{prefix}record_steps": h.record_steps,
        f"{prefix}test_loss": h.test_loss,
        f"{prefix}test_acc": h.test_acc,
        f"{prefix}diverged_at": np.array(-1 if h.diverged_at is None else h.diverged_at),
        f"{prefix}seconds": np.array(h.seconds),
        f"{prefix}label": np.array(h.label),
        f"{prefix}eval_steps": h.eval_steps,
        f"{prefix}eval_acc": h.eval_acc,
    }
    for name, record in h.probes.items():
        for key, value in vars(record).items():
            out[f"{prefix}probes/{name}/{key}"] = np.asarray(value)
    for key, value in h.final_state.items():
        out[f"{prefix}state/{key}"] = value
    for layer in h.layers:
        lp = f"{prefix}layers/{layer.index}/"
        out[f"{lp}units"] = np.array(layer.units)
        for name in _LAYER_ARRAYS:
            out[f"{lp}{name}"] = getattr(layer, name)
        for site, rec in layer.sites.items():
            for name in _SITE_FIELDS:
                out[f"{lp}sites/{site}/{name}"] = getattr(rec, name)
    return out


def history_from_arrays(arrays: Mapping[str, Array], prefix: str = "") -> History:
    cfg = TrainConfig.from_dict(json.loads(str(arrays[f"{prefix}config"])))
    layers: dict[int, dict] = {}
    state: dict[str, Array] = {}
    probes: dict[str, dict[str, Array]] = {}
    for key in arrays:
        if not key.startswith(prefix):
            continue
        rest = key[len(prefix) :]
        if rest.startswith("probes/"):
            _, name, field = rest.split("/")
            probes.setdefault(name, {})[field] = np.asarray(arrays[key])
        elif rest.startswith("state/"):
            state[rest[len("state/") :]] = np.asarray(arrays[key])
        elif rest.startswith("layers/"):
            parts = rest.split("/")
            layer = layers.setdefault(int(parts[1]), {"sites": {}})
            if parts[2] == "sites":
                layer["sites"].setdefault(parts[3], {})[parts[4]] = np.asarray(arrays[key])
            else:
                layer[parts[2]] = np.asarray(arrays[key])
    diverged = int(arrays[f"{prefix}diverged_at"])
    return History(
        config=cfg,
        loss=np.asarray(arrays[f"{prefix}loss"], dtype=np.float64),
        record_steps=np.asarray(arrays[f"{prefix}record_steps"]),
        test_loss=np.asarray(arrays[f"{prefix}test_loss"]),
        test_acc=np.asarray(arrays[f"{prefix}test_acc"]),
        layers=[
            LayerRecord(
                index=i,
                units=int(d["units"]),
                sites={s: SiteRecord(**fields) for s, fields in d["sites"].items()},
                **{name: d[name] for name in _LAYER_ARRAYS},
            )
            for i, d in sorted(layers.items())
        ],
        diverged_at=None if diverged < 0 else diverged,
        seconds=float(arrays[f"{prefix}seconds"]),
        final_state=state,
        label=str(arrays[f"{prefix}label"]),
        eval_steps=np.asarray(arrays[f"{prefix}eval_steps"]),
        eval_acc=np.asarray(arrays[f"{prefix}eval_acc"]),
        probes={name: PROBE_RECORDS[name](**fields) for name, fields in probes.items()},
    )


def arms_to_npz(arms: Arms) -> bytes:
    arrays = {"format_version": np.array(FORMAT_VERSION), "arms": np.array(json.dumps(arms.labels))}
    for i, h in enumerate(arms):
        arrays.update(history_arrays(h, f"arm{i}/"))
    return npz_bytes(arrays)


def arms_from_npz(source: bytes | str | Path) -> Arms:
    """Load arms saved by ``arms_to_npz``; never unpickles (a bad file raises ValueError)."""
    data = io.BytesIO(source) if isinstance(source, bytes) else source
    with np.load(data, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    if int(arrays.get("format_version", -1)) != FORMAT_VERSION or "arms" not in arrays:
        raise ValueError("not a bnviz runs file of this version")
    labels = json.loads(str(arrays["arms"]))
    runs = {label: history_from_arrays(arrays, f"arm{i}/") for i, label in enumerate(labels)}
    return Twins(runs["plain"], runs["BN"]) if labels == ["plain", "BN"] else Arms(runs)


twins_to_npz, twins_from_npz = arms_to_npz, arms_from_npz


def records_csv(twins: Arms) -> str:
    """One row per (run, record, hidden layer, site): the numbers behind every chart."""
    rows = [
        {
            "run": h.label,
            "step": step,
            "test_loss": h.test_loss[r],
            "test_acc": h.test_acc[r],
            "layer": layer.index,
            "site": site,
            **{name: getattr(rec, name)[r] for name in _SITE_COLUMNS},
            **{name: getattr(layer, name)[r] for name in _LAYER_ARRAYS},
        }
        for h in twins
        for r, step in enumerate(h.record_steps)
        for layer in h.layers
        for site, rec in layer.sites.items()
    ]
    return csv_table(columns_of(rows))


def loss_csv(twins: Arms) -> str:
    """Per-step training loss of every run (empty where a run diverged and stopped)."""
    n = max(len(h.loss) for h in twins)
    return csv_table({"step": range(n), **{f"{_key(h)}_loss": padded(h.loss, n) for h in twins}})


def _key(h: History) -> str:
    """A run's label as a column-name prefix: "plain", "bn"."""
    return h.label.lower().replace(" ", "_")
