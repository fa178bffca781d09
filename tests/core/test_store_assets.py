"""NPZ/CSV round trips and the shipped precomputed runs."""

from __future__ import annotations

import io
import zipfile
from dataclasses import replace

import numpy as np
import pytest

from bnviz import assets
from bnviz.experiments import drift, shipped
from bnviz.store import loss_csv, records_csv, twins_from_npz, twins_to_npz
from bnviz.train import TrainConfig, train_twins


@pytest.fixture(scope="module")
def twins():
    cfg = TrainConfig(
        hidden=(16, 16),
        steps=60,
        record_every=20,
        probe_size=32,
        lr=200.0,
        init_scale=5.0,
        init_std=0.1,
        dtype="float64",
    )
    return train_twins(cfg)  # the plain net diverges: None and ints must survive the trip


def test_npz_round_trip_is_exact(twins):
    back = twins_from_npz(twins_to_npz(twins))
    for a, b in zip(twins, back, strict=True):
        assert a.config == b.config
        assert a.diverged_at == b.diverged_at
        np.testing.assert_array_equal(a.loss.astype(np.float32), b.loss)
        np.testing.assert_array_equal(a.record_steps, b.record_steps)
        np.testing.assert_array_equal(a.test_acc, b.test_acc)
        assert a.final_state.keys() == b.final_state.keys()
        for la, lb in zip(a.layers, b.layers, strict=True):
            assert la.sites.keys() == lb.sites.keys()
            for site in la.sites:
                for name, value in vars(la.sites[site]).items():
                    np.testing.assert_array_equal(value, getattr(lb.sites[site], name))
            np.testing.assert_array_equal(la.weight_norm, lb.weight_norm)
    assert twins.plain.diverged_at is not None and back.bn.diverged_at is None


def test_npz_holds_no_pickled_objects(twins):
    data = twins_to_npz(twins)
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        assert all(npz[k].dtype != object for k in npz.files)
    assert zipfile.is_zipfile(io.BytesIO(data))


def test_foreign_files_are_refused():
    buf = io.BytesIO()
    np.savez(buf, something=np.arange(3))
    with pytest.raises(ValueError, match="not a bnviz"):
        twins_from_npz(buf.getvalue())
    buf = io.BytesIO()
    np.save(buf, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError):
        twins_from_npz(buf.getvalue())


def test_csv_tables(twins):
    records = records_csv(twins).splitlines()
    header = records[0].split(",")
    assert header[:6] == ["run", "step", "test_loss", "test_acc", "layer", "site"]
    n_rows = sum(len(h.record_steps) * sum(len(layer.sites) for layer in h.layers) for h in twins)
    assert len(records) == 1 + n_rows
    first = dict(zip(header, records[1].split(","), strict=True))
    assert first["run"] == "plain" and first["step"] == "0" and first["grad_norm"] == ""
    losses = loss_csv(twins).splitlines()
    assert losses[0] == "step,plain_loss,bn_loss"
    assert len(losses) == 1 + len(twins.bn.loss)
    assert float(losses[1].split(",")[2]) == pytest.approx(twins.bn.loss[0], rel=1e-5)
    assert losses[-1].split(",")[1] == ""  # the plain net stopped: no value after divergence


def test_every_precomputed_result_is_shipped_fresh_and_found():
    """Each shipped config has its asset, built from that very config (a config changed in the
    code without a rebuild fails here), and it loads."""
    built = shipped.manifest()
    for name, (experiment, cfg) in shipped.shipped().items():
        rebuild = f"run `python -m bnviz.experiments.shipped --only {name}`"
        assert assets.exists(name), rebuild
        assert built.get(name) == shipped.config_json(cfg), rebuild
        assert experiment.shipped_name(cfg) == name
        assert assets.load(name, experiment.decode) is not None
    stored = assets.load("drift-default")
    assert stored.plain.config == replace(drift.EXPERIMENT.shipped["drift-default"], norm="none")
    assert drift.EXPERIMENT.shipped_name(TrainConfig(seed=12)) is None


def test_regenerated_asset_matches_the_shipped_one(tmp_path):
    """The build is deterministic: rebuilding the small shipped run reproduces it."""
    out = shipped.build("drift-default", tmp_path)
    fresh, stored = twins_from_npz(out), assets.load("drift-default")
    for a, b in zip(fresh, stored, strict=True):
        assert a.config == b.config
        np.testing.assert_allclose(a.loss, b.loss, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(a.test_acc, b.test_acc, atol=0.01)
        qa = a.layers[-1].sites["act_in"].quantiles
        qb = b.layers[-1].sites["act_in"].quantiles
        np.testing.assert_allclose(qa, qb, rtol=1e-3, atol=1e-4)
