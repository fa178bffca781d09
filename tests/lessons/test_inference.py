"""The training-vs-inference lesson's numbers, against direct computations with the core: the
folded net equal to the eval-mode net to 1e-12 in float64, every accuracy of the bug table,
the class-sorted and batch-of-one collapses, running averages replayed from the trace equal
to the engine's, Algorithm 2's m/(m-1), and the eval-gap probe."""

from __future__ import annotations

import io

import numpy as np
import pytest

from bnviz import batch_trace
from bnviz.experiments import inference as inf
from bnviz.figures import inference as figs
from bnviz.inference import (
    batch_stats_forward,
    bn_affine,
    fold_batchnorm,
    population_stats,
    recalibrate,
)
from bnviz.measure.eval_gap import score
from bnviz.train import load_data

TOL = 1e-12


@pytest.fixture(scope="module")
def result():
    return inf.run(inf.Inference())  # the page's defaults


@pytest.fixture(scope="module")
def data(result):
    return load_data(result.history.config)


def direct_accuracy(model, x, y) -> float:
    return float(np.mean(model.eval().forward(x).argmax(1) == y))


# --------------------------------------------------------------------------- one affine map


def test_the_folded_net_is_the_eval_mode_net_to_1e12(result, data):
    model = inf.trained_model(result.history)
    assert model.dtype == np.float64
    x = np.asarray(data.x_test, dtype=np.float64)
    folded = fold_batchnorm(model)
    assert not folded.norm_layers
    diff = np.max(np.abs(folded.forward(x) - model.eval().forward(x)))
    assert diff < TOL
    fo = inf.folded(result, repeats=2)
    assert fo.max_diff == diff
    assert fo.seconds_eval > 0 and fo.seconds_folded > 0 and fo.n_timed == len(data.y_train)
    for li, (_, bn) in enumerate(model.norm_layers):
        s = bn.gamma / np.sqrt(bn.running_var + bn.eps)
        np.testing.assert_allclose(fo.scale[li], s, rtol=TOL)
        np.testing.assert_allclose(fo.shift[li], bn.beta - s * bn.running_mean, atol=TOL)
        np.testing.assert_array_equal(fo.scale[li], bn_affine(bn)[0])
    np.testing.assert_allclose(fo.weight_after, fo.scale[0][:, None] * fo.weight_before, rtol=TOL)


# --------------------------------------------------------------------------- the classic bug


@pytest.mark.parametrize("size", [60, 8])
def test_every_bug_accuracy_is_a_direct_computation(result, data, size):
    b = inf.bug(result, size)
    model = inf.trained_model(result.history)
    x, y = np.asarray(data.x_test, dtype=np.float64), data.y_test
    n = len(y)

    def batched(batches):
        pred = np.empty(n, dtype=int)
        for rows in batches:
            pred[rows] = batch_stats_forward(model, x[rows])[0].argmax(1)
        return float(np.mean(pred == y))

    assert b.acc["eval"] == direct_accuracy(model, x, y)
    assert b.acc["single"] == batched([[i] for i in range(n)])
    order = np.random.default_rng([result.config.seed, 21]).permutation(n)
    assert b.acc["shuffled"] == batched(inf.shuffled_batches(n, size, result.config.seed))
    assert sorted(np.concatenate(inf.shuffled_batches(n, size, 0))) == list(range(n))
    assert b.acc["pairs"] == batched([order[i : i + 2] for i in range(0, n, 2)])
    by_class = [
        rows[i : i + size]
        for c in range(10)
        for rows in [np.flatnonzero(y == c)]
        for i in range(0, len(rows), size)
    ]
    if all(len(rows) > 1 for rows in by_class):
        assert b.acc["class-sorted"] == batched(by_class)
    recalibrate(model, np.asarray(data.x_train, dtype=np.float64), result.config.batch_size)
    assert b.acc["recalibrated"] == direct_accuracy(model, x, y)


def test_class_sorted_and_single_example_test_batches_collapse(result, data):
    """The page's default reveal, with its numbers: eval mode ~96%, class-sorted batches of 60
    ~12%, batches of one ~11% (every digit called one class: that class's share)."""
    b = inf.bug(result, 60)
    y = data.y_test
    assert b.acc["eval"] > 0.93 and b.acc["recalibrated"] > 0.93
    assert b.acc["shuffled"] > b.acc["eval"] - 0.03
    assert b.acc["class-sorted"] < 0.2
    assert b.acc["single"] < 0.2
    assert 0.3 < b.acc["pairs"] < 0.8
    assert 0 <= b.single_class < 10
    assert b.single_beta_gap == 0.0  # every BN unit outputs beta, exactly
    assert b.acc["single"] == b.single_share == float(np.mean(y == b.single_class))
    with pytest.raises(ValueError):
        inf.bug(result, 7)


# --------------------------------------------------------------------------- running statistics


def test_replayed_running_averages_are_the_engines(result):
    est = inf.estimates(result, inf.TRAIN_MOMENTUM)
    state = result.history.final_state
    for li in range(3):
        np.testing.assert_allclose(
            est.ema_mean[-1, li], state[f"bn{li + 1}.running_mean"], rtol=1e-4, atol=1e-6
        )
        np.testing.assert_allclose(
            est.ema_var[-1, li], state[f"bn{li + 1}.running_var"], rtol=1e-4, atol=1e-7
        )
    acc = inf.final_accuracy(result, est)
    assert acc.ema == acc.engine
    n_test = len(result.history.test_acc) and 360
    assert abs(acc.engine - result.history.test_acc[-1]) <= 1 / n_test


def test_the_truth_at_the_last_record_is_algorithm_2_on_the_final_weights(result, data):
    model = inf.trained_model(result.history)
    stats = population_stats(model, np.asarray(data.x_train, np.float64), 60, seed=0)
    assert result.pop_steps[-1] == result.config.steps
    for li in range(3):
        mean, var = stats[f"bn{li + 1}"]
        np.testing.assert_allclose(result.pop_mean[-1, li], mean, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(result.pop_var[-1, li], var, rtol=1e-4)
    acc = inf.final_accuracy(result, inf.estimates(result, 0.1))
    assert abs(acc.precise - acc.engine) < 0.02


def test_a_small_momentum_lags_and_the_cumulative_average_lags_most(result):
    sw = result.sweep
    assert sw.momenta.tolist() == list(inf.MOMENTA)
    slow = list(inf.MOMENTA).index(0.001)
    default = list(inf.MOMENTA).index(0.1)
    for li in (1, 2):  # behind BN layers whose input keeps moving, a long memory lags
        assert sw.mean_late[slow, li] > 3 * sw.mean_late[default, li]
        assert sw.cumulative[2][li] > 3 * sw.mean_late[default, li]  # the cumulative one most
    # layer 1's input (W1 x) hardly moves late in training: there only the noise counts
    assert sw.mean_late[-1, 0] > 3 * sw.mean_late[slow, 0]
    est = inf.estimates(result, 0.001)
    assert est.ema_err[1][1, 2] > est.ema_err[1][-1, 2]  # the lag shrinks as training settles
    # the sweep's numbers are the estimates' own
    np.testing.assert_allclose(sw.mean_final[slow], est.ema_err[0][-1], rtol=1e-12)


def test_momentum_conventions_convert():
    assert inf.pytorch_momentum(0.1, "pytorch") == 0.1
    assert inf.pytorch_momentum(0.99, "keras") == pytest.approx(0.01, abs=1e-15)
    assert inf.pytorch_momentum(0.9, "cs231n") == pytest.approx(0.1, abs=1e-15)
    assert all(round(1 - v, 6) in inf.MOMENTA for v in inf.MOMENTA)
    with pytest.raises(ValueError, match="convention"):
        inf.pytorch_momentum(0.1, "caffe")


def test_the_m_over_m_minus_1_correction(result):
    corr = result.correction
    assert result.config.batch_size in corr.sizes
    np.testing.assert_allclose(corr.corrected, corr.biased * corr.sizes / (corr.sizes - 1))
    np.testing.assert_allclose(corr.biased, corr.expected(), rtol=0.02)
    np.testing.assert_allclose(corr.corrected, 1.0, atol=0.02)
    assert corr.biased[0] < 0.55  # batches of 2: half the variance


def test_running_average_of_a_constant_stream():
    mu = np.full((50, 1, 2), 3.0)
    var = np.full((50, 1, 2), 2.0)
    mean, v = batch_trace.running_average(mu, var, 4, 0.1)
    np.testing.assert_allclose(mean[-1], 3.0 * (1 - 0.9**50))
    np.testing.assert_allclose(v[-1], 0.9**50 + (1 - 0.9**50) * 2.0 * 4 / 3)
    mean, _ = batch_trace.running_average(mu, var, 4, None)
    np.testing.assert_allclose(mean, 3.0)


# --------------------------------------------------------------------------- train vs eval mode


def test_the_eval_gap_probe_is_what_score_computes(result, data):
    gap = result.history.probes["eval_gap"]
    cfg = result.history.config
    order = np.random.default_rng([cfg.seed, 4]).permutation(len(data.y_train))
    order = order[: len(order) // cfg.batch_size * cfg.batch_size]
    x = np.asarray(data.x_train, dtype=np.float64)[order]
    y = data.y_train[order]
    model = inf.trained_model(result.history)
    acc_running, _ = score(model, x, y, None)
    acc_batch, _ = score(model, x, y, cfg.batch_size)
    assert abs(acc_running - gap.acc_running[-1]) <= 2 / len(y)  # float64 against float32
    assert abs(acc_batch - gap.acc_batch[-1]) <= 2 / len(y)
    # early, the running averages trail: eval mode lags train mode
    assert gap.acc_running[1] < gap.acc_batch[1] - 0.1


# --------------------------------------------------------------------------- figures, downloads


def test_figures(result):
    for layer, unit in ((1, 0), (3, 99)):
        est = inf.estimates(result, 0.999)
        assert len(figs.running_stats(result, est, layer, unit).data) == 8
        assert len(figs.lag_over_training(est, layer).data) == 4
        assert len(figs.momentum_sweep(result, 0.999, layer).data) == 8
    assert len(figs.correction_figure(result.correction).data) == 3
    fo = inf.folded(result, repeats=1)
    assert len(figs.affine_figure(fo, 2).data) == 2
    b = inf.bug(result, 2)
    fig = figs.bug_figure(b, 0.1)
    assert list(fig.data[0].y) == [figs.CASE_NAMES[c].format(m=2) for c in inf.CASES]
    assert len(figs.eval_gap_figure(result).data) == 3


def test_downloads(result):
    est = inf.estimates(result, 0.1)
    rows = inf.unit_csv(result, est, 2, 5).strip().split("\n")
    assert len(rows) == 1 + result.config.steps
    assert rows[0].startswith("step,mu_B,sigma2_B,ema_mean_0.1")
    assert len(inf.eval_gap_csv(result).strip().split("\n")) == 1 + len(result.history.record_steps)
    assert len(inf.bug_csv(inf.bug(result, 60)).strip().split("\n")) == 1 + len(inf.CASES)
    with np.load(io.BytesIO(inf.result_npz(result)), allow_pickle=False) as npz:
        assert npz["trace/mu_B"].shape == (result.config.steps, 3, 100)


def test_bad_configs():
    with pytest.raises(ValueError, match="batch_size"):
        inf.Inference(batch_size=3)
    with pytest.raises(ValueError, match="steps"):
        inf.Inference(steps=10**6)
    with pytest.raises(ValueError, match="lr"):
        inf.Inference(lr=-1.0)
    with pytest.raises(TypeError):
        inf.run(object())


def test_a_result_survives_its_npz_and_the_default_ships(result):
    """The stored form gives back every number the page reads (the loss to float32, the rest
    exactly); the page's default config is the shipped one, and its asset is this run."""
    back = inf.result_from_npz(inf.result_to_npz(result))
    assert back.config == result.config
    h, hb = result.history, back.history
    assert hb.config == h.config and hb.diverged_at == h.diverged_at and hb.layers == []
    np.testing.assert_allclose(hb.loss, h.loss, rtol=1e-6)
    np.testing.assert_array_equal(hb.record_steps, h.record_steps)
    np.testing.assert_array_equal(hb.test_acc, h.test_acc)
    for k, v in vars(h.probes["eval_gap"]).items():
        np.testing.assert_array_equal(getattr(hb.probes["eval_gap"], k), v)
    assert hb.final_state.keys() == h.final_state.keys()
    for k, v in h.final_state.items():
        np.testing.assert_array_equal(hb.final_state[k], v)
    assert back.trace.batch_size == result.trace.batch_size
    np.testing.assert_array_equal(back.trace.mean, result.trace.mean)
    np.testing.assert_array_equal(back.trace.var, result.trace.var)
    assert back.trace.mean.dtype == np.float32
    for name in ("pop_steps", "pop_mean", "pop_var"):
        np.testing.assert_array_equal(getattr(back, name), getattr(result, name))
    for k in inf.SWEEP_FIELDS:
        np.testing.assert_array_equal(getattr(back.sweep, k), getattr(result.sweep, k))
    for a, b in zip(back.sweep.cumulative, result.sweep.cumulative, strict=True):
        np.testing.assert_array_equal(a, b)
    for k in inf.CORRECTION_FIELDS:
        np.testing.assert_array_equal(getattr(back.correction, k), getattr(result.correction, k))
    assert back.correction.n_train == result.correction.n_train
    est, est_back = inf.estimates(result, 0.01), inf.estimates(back, 0.01)
    np.testing.assert_array_equal(est_back.ema_mean, est.ema_mean)
    assert inf.final_accuracy(back, est_back) == inf.final_accuracy(result, est)

    from bnviz import assets

    name = inf.EXPERIMENT.shipped_name(inf.Inference())
    assert name == "inference-default"
    assert inf.EXPERIMENT.shipped_name(inf.Inference(seed=1)) is None
    stored = assets.load(name, inf.EXPERIMENT.decode)
    assert stored.config == result.config and stored.trace.mean.shape == (2000, 3, 100)
    np.testing.assert_allclose(stored.trace.mean, result.trace.mean, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(stored.pop_var, result.pop_var, rtol=1e-4)
    est_stored = inf.estimates(stored, 0.1)
    assert inf.final_accuracy(stored, est_stored) == inf.final_accuracy(
        result, inf.estimates(result, 0.1)
    )
