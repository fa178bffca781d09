"""Training runs: config validation, twins, divergence, records and their cost in memory."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy.stats import wasserstein_distance

from bnviz import functional as F
from bnviz.optim import learning_rate
from bnviz.record import LEVELS, UNIT_LEVELS, sorted_quantiles, wasserstein1_sorted
from bnviz.train import Run, TrainConfig, build_model, load_data, train, train_twins

SMALL = dict(
    hidden=(16, 16), steps=120, record_every=20, probe_size=64, dtype="float64", init_std=0.1
)


@pytest.fixture(scope="module")
def twins():
    return train_twins(TrainConfig(**SMALL, lr=2.0))


# ----------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    "field, value",
    [
        ("lr", -1.0),
        ("lr", 0.0),
        ("lr", float("nan")),
        ("lr", 1e9),
        ("lr", "fast"),
        ("batch_size", 1),
        ("batch_size", 60.5),
        ("steps", 0),
        ("seed", -3),
        ("momentum", 1.0),
        ("init_scale", 0.0),
        ("dataset", "imagenet"),
        ("activation", "softplus"),
        ("placement", "middle"),
        ("batch_order", "random"),
        ("dtype", "float16"),
        ("hidden", ()),
        ("hidden", (100, 0)),
        ("hidden", (10,) * 9),
        ("hidden", "100"),
        ("batchnorm", "yes"),
        ("bn_momentum", 0.0),
    ],
)
def test_config_rejects_bad_values_naming_the_field(field, value):
    with pytest.raises(ValueError) as err:
        TrainConfig(**{field: value})
    assert field in str(err.value)
    assert "got" in str(err.value)


def test_config_normalizes_equivalent_values():
    cfg = TrainConfig(batch_size=60.0, hidden=[50, 50], lr=1, batchnorm=np.bool_(True))
    assert cfg.batch_size == 60 and isinstance(cfg.batch_size, int)
    assert cfg.hidden == (50, 50)
    assert cfg.lr == 1.0 and isinstance(cfg.lr, float)
    assert cfg.batchnorm is True
    assert TrainConfig(bn_momentum=None).bn_momentum is None


def test_config_error_gives_the_allowed_range():
    with pytest.raises(ValueError, match=r"lr must be a number in \[1e-06, 1000\]; got -1"):
        TrainConfig(lr=-1)


def test_mnist_needs_a_folder():
    with pytest.raises(ValueError, match="data_dir"):
        TrainConfig(dataset="mnist")


def test_batch_larger_than_training_set_is_a_clear_error():
    with pytest.raises(ValueError, match="batch_size must be at most the training set size"):
        train(TrainConfig(dataset="moons", n_samples=40, batch_size=100, steps=5))


# ----------------------------------------------------------------------------- runs


def test_train_is_deterministic():
    a = train(TrainConfig(**SMALL))
    b = train(TrainConfig(**SMALL))
    np.testing.assert_array_equal(a.loss, b.loss)
    np.testing.assert_array_equal(
        a.layers[1].sites["act_in"].quantiles, b.layers[1].sites["act_in"].quantiles
    )
    c = train(TrainConfig(**{**SMALL, "seed": 1}))
    assert not np.array_equal(a.loss, c.loss)


def test_history_shapes(twins):
    for h in twins:
        assert h.loss.shape == (120,)
        np.testing.assert_array_equal(h.record_steps, np.arange(0, 121, 20))
        assert h.test_acc.shape == h.test_loss.shape == (7,)
        assert len(h.layers) == 2
        site = h.layers[0].sites["act_in"]
        assert site.quantiles.shape == (7, len(LEVELS))
        assert site.unit_pct.shape == (7, 16, 3)
        assert h.diverged_at is None
    assert set(twins.plain.layers[0].sites) == {"act_in"}
    assert set(twins.bn.layers[0].sites) == {"act_in", "bn_in"}


def test_twins_start_from_the_same_weights(twins):
    """At step 0 the BN net's BN input (Linear output) is the plain net's sigmoid input:
    same first weight matrix, plain bias zero, same probe batch."""
    plain0 = twins.plain.layers[0].sites["act_in"].quantiles[0]
    bn0 = twins.bn.layers[0].sites["bn_in"].quantiles[0]
    np.testing.assert_array_equal(plain0, bn0)
    assert twins.plain.config.seed == twins.bn.config.seed
    assert not twins.plain.config.batchnorm and twins.bn.config.batchnorm


def test_twins_learn_and_bn_normalizes(twins):
    for h in twins:
        assert h.loss[-20:].mean() < 0.6 * h.loss[:20].mean()
        assert h.test_acc[-1] > 0.5
    # on the probe batch (normalized with its own statistics) BN's output has, per unit,
    # mean beta and standard deviation |gamma| (up to eps), whatever the weights did
    bn_site = twins.bn.layers[1].sites["act_in"]
    state = twins.bn.final_state
    np.testing.assert_allclose(bn_site.unit_mean[-1], state["bn2.beta"], atol=1e-5)
    np.testing.assert_allclose(bn_site.unit_std[-1], np.abs(state["bn2.gamma"]), rtol=1e-3)


def test_recording_does_not_change_training():
    """The probe forward uses batch statistics but must leave running statistics alone."""
    often = train(TrainConfig(**{**SMALL, "record_every": 1}))
    rarely = train(TrainConfig(**{**SMALL, "record_every": 120}))
    np.testing.assert_array_equal(often.loss, rarely.loss)
    for key, value in often.final_state.items():
        np.testing.assert_array_equal(value, rarely.final_state[key], err_msg=key)


def test_records_match_direct_measurement():
    """Record 0 equals percentiles, moments and saturation computed by hand on the probe."""
    cfg = TrainConfig(**SMALL, batchnorm=False)
    hist = train(cfg)
    data = load_data(cfg)
    model = build_model(cfg, data.n_features, data.n_classes)
    probe, _ = data.probe(cfg.probe_size, seed=0)
    _, trace = model.forward_trace(probe)
    z = trace["fc2"]
    site = hist.layers[1].sites["act_in"]
    np.testing.assert_allclose(
        site.unit_pct[0], np.percentile(z, UNIT_LEVELS * 100, axis=0).T, rtol=1e-6, atol=1e-7
    )
    np.testing.assert_allclose(site.quantiles[0], np.quantile(z, LEVELS), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(site.unit_mean[0], z.mean(0), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(site.std[0], z.std(), rtol=1e-6)
    t = F.ACTIVATIONS["sigmoid"].saturation_threshold
    assert site.saturation[0] == pytest.approx(np.mean(np.abs(z) > t))
    assert site.drift_prev[0] == 0 and site.drift_init[0] == 0
    test_acc = np.mean(model.forward(data.x_test).argmax(1) == data.y_test)
    assert hist.test_acc[0] == pytest.approx(test_acc)


def test_weight_records(twins):
    layer = twins.bn.layers[0]
    assert np.isnan(layer.grad_norm[0]) and np.isnan(layer.update_ratio[0])
    assert np.all(layer.grad_norm[1:] > 0) and np.all(layer.update_ratio[1:] > 0)
    w = twins.bn.final_state["fc1.weight"]
    assert layer.weight_norm[-1] == pytest.approx(np.linalg.norm(w), rel=1e-6)


def test_relu_saturation_counts_dead_units():
    hist = train(TrainConfig(**{**SMALL, "steps": 20}, activation="relu", batchnorm=False))
    sat = hist.layers[0].sites["act_in"].saturation
    assert np.all((sat >= 0) & (sat <= 1))


def test_quantile_and_wasserstein_helpers():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=500), rng.normal(1.0, 2.0, size=500)
    sa, sb = np.sort(a), np.sort(b)
    np.testing.assert_allclose(sorted_quantiles(sa, LEVELS), np.quantile(a, LEVELS), rtol=1e-12)
    assert wasserstein1_sorted(sa, sb) == pytest.approx(wasserstein_distance(a, b), rel=1e-12)


# ----------------------------------------------------------------------------- divergence


def test_divergence_stops_the_run_and_keeps_what_was_recorded():
    cfg = TrainConfig(**{**SMALL, "steps": 300}, batchnorm=False, lr=200.0, init_scale=5.0)
    h = train(cfg)
    assert h.diverged_at is not None and 0 < h.diverged_at < 300
    assert len(h.loss) == h.diverged_at
    assert np.all(np.isfinite(h.loss))
    assert h.record_steps[-1] <= h.diverged_at
    assert "diverged at step" in h.summary()


def test_twins_continue_when_one_diverges():
    tw = train_twins(TrainConfig(**{**SMALL, "steps": 200}, lr=200.0, init_scale=5.0))
    assert tw.plain.diverged_at is not None
    assert tw.bn.diverged_at is None and len(tw.bn.loss) == 200


def test_progress_reports_until_done():
    calls = []
    train(TrainConfig(**SMALL), progress=lambda done, total: calls.append((done, total)))
    assert calls[0] == (0, 120) and calls[-1] == (120, 120)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


# ----------------------------------------------------------------------------- schedule


def test_exponential_schedule():
    assert learning_rate(0, 1.0, "exp", 0.1, 100) == 1.0
    assert learning_rate(100, 1.0, "exp", 0.1, 100) == pytest.approx(0.1)
    assert learning_rate(50, 2.0, "exp", 0.01, 100) == pytest.approx(0.2)
    assert learning_rate(7, 0.3) == 0.3
    with pytest.raises(ValueError, match="schedule"):
        learning_rate(0, 1.0, "cosine")


# ----------------------------------------------------------------------------- memory


def test_full_paper_run_history_stays_under_100_mb():
    """A 50,000-step paper-net run recorded every 100 steps: fill all 501 records of a real
    Recorder and a 50,000-entry loss array, then count every byte the History holds."""
    cfg = TrainConfig(steps=50_000, record_every=100)
    run = Run(cfg, load_data(cfg))
    for step in range(100, 50_001, 100):
        run.recorder.record(step, [1.0] * 3, [0.01] * 3)
    run.t = cfg.steps
    run.loss[:] = 0.5
    hist = run.history()
    assert len(hist.record_steps) == 501
    assert hist.nbytes() < 100e6
    assert hist.nbytes() > 1e6  # it really holds the records
    assert dataclasses.is_dataclass(hist)
