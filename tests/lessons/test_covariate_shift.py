"""The covariate-shift lesson's numbers, checked against direct computations with the core:
BN with a batch's own statistics undoing a translation exactly, one-digit batches collapsing
to beta, the class-sorted collapse of the BN net, and the 1/sqrt(m) law of batch means."""

from __future__ import annotations

import io

import numpy as np
import pytest

from bnviz.data import BatchSampler
from bnviz.experiments import covariate_shift as cs
from bnviz.figures import covariate_shift as figs
from bnviz.inference import batch_stats_forward, population_stats
from bnviz.train import TrainConfig, Twins, load_data

TOL = 1e-12


@pytest.fixture(scope="module")
def twins():
    return cs.run(cs.Shift("moons", 0))


@pytest.fixture(scope="module")
def result():
    return cs.run(cs.Batches())  # the page's defaults


@pytest.fixture(scope="module")
def digits():
    return load_data(TrainConfig())


# --------------------------------------------------------------------------- part 1


def test_the_shift_view_scores_what_the_core_computes(twins):
    view = cs.shifted(twins, 1.0, 30.0, 1.4, layer=2)
    data = load_data(twins.plain.config)
    x, y = np.asarray(data.x_test, dtype=np.float64), data.y_test
    xs = cs.transform(x, 1.0, 30.0, 1.4)
    plain, bn = cs.trained_model(twins.plain), cs.trained_model(twins.bn)
    assert view.acc["plain"] == (
        float(np.mean(plain.forward(x).argmax(1) == y)),
        float(np.mean(plain.forward(xs).argmax(1) == y)),
    )
    assert view.acc[cs.MODES[1]][1] == float(np.mean(bn.forward(xs).argmax(1) == y))
    assert view.acc[cs.MODES[2]][1] == float(np.mean(batch_stats_forward(bn, xs)[0].argmax(1) == y))
    np.testing.assert_array_equal(view.predicted["plain"], plain.forward(xs).argmax(1))
    assert view.hidden["plain"][0].shape == (len(y), 32)


def test_the_transform_is_a_rotation_a_scale_then_a_shift():
    x = np.array([[1.0, 0.0], [0.0, 2.0]])
    np.testing.assert_allclose(cs.transform(x, 0.5, 90.0, 2.0), [[0.5, 2.0], [-3.5, 0.0]], atol=TOL)
    with pytest.raises(ValueError):
        cs.transform(x, scale=0.0)


def test_bn_with_the_batchs_statistics_undoes_translation_and_rescaling_exactly(twins):
    """BN(W(x + d)) = BN(Wx) (the BN net's first Linear has no bias) and BN(sWx) = BN(Wx) up
    to eps: its accuracy curves are flat, and layer 1's output does not move."""
    view = cs.shifted(twins, 2.5, 0.0, 1.0, layer=1)
    before, after = view.hidden[cs.MODES[2]]
    np.testing.assert_allclose(after, before, rtol=0, atol=1e-12)
    assert view.moved(cs.MODES[2]) < 1e-12
    assert view.moved("plain") > 0.5
    accs = view.curves
    for name in ("translate", "rescale"):
        batch = accs[name][1][cs.MODES[2]]
        assert batch.max() - batch.min() == 0, name
    assert np.ptp(accs["rotate"][1][cs.MODES[2]]) > 0.3  # a rotation it cannot undo
    assert accs["translate"][1]["plain"].min() < 0.8  # the others fall


# --------------------------------------------------------------------------- part 2


@pytest.mark.parametrize("a, b", [("0", "7"), ("bright", "faint"), ("shuffled", "3")])
def test_two_batches_match_the_core_and_train_mode_bn_centres_each_on_beta(result, digits, a, b):
    pair = cs.two_batches(result, a, b, layer=1)
    bn = cs.trained_model(result.arms["BN shuffled"])
    beta = bn.layers["bn1"].beta
    x = np.asarray(digits.x_train, dtype=np.float64)
    for kind, hidden, acc in zip(
        (a, b), pair.hidden[cs.MODES[2]], pair.acc[cs.MODES[2]], strict=True
    ):
        rows = cs.batch_rows(kind, result.config.batch_size, result.config.seed)
        logits, trace = batch_stats_forward(bn, x[rows])
        np.testing.assert_array_equal(hidden, trace["bn1"])
        np.testing.assert_allclose(hidden.mean(axis=0), beta, rtol=0, atol=TOL)
        assert acc == float(np.mean(logits.argmax(1) == digits.y_train[rows]))
    assert pair.mean_gap(cs.MODES[2]) < TOL
    assert pair.mean_gap("plain") > 0.1 and pair.mean_gap(cs.MODES[1]) > 0.1


def test_one_digit_batches_collapse_in_train_mode_only(result):
    pair = cs.two_batches(result, "0", "7", layer=2)
    assert min(pair.acc[cs.MODES[1]]) >= 0.95  # eval mode: the same net reads them
    assert max(pair.acc[cs.MODES[2]]) <= 0.3  # its own statistics: it cannot
    mixed = cs.two_batches(result, "shuffled", "bright", layer=2)
    assert mixed.acc[cs.MODES[2]][0] >= 0.9  # a shuffled batch is a fair sample


def test_batch_rows_pick_what_they_say(digits):
    y = digits.y_train
    assert set(y[cs.batch_rows("7", 60, 0)]) == {7}
    ink = np.asarray(digits.x_train).mean(axis=1)
    bright, faint = cs.batch_rows("bright", 60, 0), cs.batch_rows("faint", 60, 0)
    assert ink[bright].min() >= np.sort(ink)[-60]
    assert ink[faint].max() <= np.sort(ink)[59]
    assert len(set(cs.batch_rows("shuffled", 60, 0))) == 60
    with pytest.raises(ValueError, match="batch must be"):
        cs.batch_rows("cats", 60, 0)


# --------------------------------------------------------------------------- part 3


def test_class_sorted_batches_collapse_the_bn_net(result):
    """The numbers the page's verdict is computed from, for its default run."""
    late = {h.label: cs.late_accuracy(h) for h in result.arms}
    assert late["plain shuffled"] > 0.9 and late["BN shuffled"] > 0.9
    assert late["plain class-sorted"] > 0.85
    assert late["BN class-sorted"] < 0.2
    bounce = cs.bounce(result.arms["plain class-sorted"], result.batch_class)
    assert bounce.after_switch > 2 * bounce.otherwise
    diag = result.diagnosis["BN class-sorted"]
    assert diag.eval_running < 0.2 and diag.eval_recalibrated < 0.2
    assert cs.jumpiness(result, "BN class-sorted", 1) > 2 * cs.jumpiness(result, "BN shuffled", 1)


def test_the_diagnosis_is_what_the_core_computes(result, digits):
    h = result.arms["BN class-sorted"]
    model = cs.trained_model(h)
    x, y = np.asarray(digits.x_test, dtype=np.float64), digits.y_test
    diag = result.diagnosis[h.label]
    assert diag.eval_running == float(np.mean(model.forward(x).argmax(1) == y))
    assert abs(diag.eval_running - h.test_acc[-1]) <= 1 / len(y)  # the float32 engine's own
    hits = sum(
        int(np.sum(batch_stats_forward(model, x[r])[0].argmax(1) == y[r]))
        for r in cs.class_sorted_batches(y, h.config.batch_size)
    )
    assert diag.class_sorted_batches == hits / len(y)
    stats = population_stats(model, np.asarray(digits.x_train, float), h.config.batch_size, 0)
    np.testing.assert_allclose(diag.pop_mean[0], stats["bn1"][0], rtol=0, atol=TOL)


def test_the_class_sorted_order_is_the_samplers(result, digits):
    cfg = result.config
    rows = BatchSampler(digits.y_train, cfg.batch_size, "class_sorted", cfg.seed).take(cfg.steps)
    labels = digits.y_train[rows]
    assert (labels == labels[:, :1]).all()  # every batch one digit
    np.testing.assert_array_equal(result.batch_class, labels[:, 0])
    assert result.epoch == cs.epoch_length(cfg.batch_size) == 20
    steps = result.arms["plain class-sorted"].record_steps
    assert len({int(s) % result.epoch for s in steps}) > 10  # records fall all over the epoch


def test_class_sorted_test_batches_are_one_class_each():
    y = np.array([0] * 5 + [1] * 7 + [2] * 1 + [3] * 4)
    batches = cs.class_sorted_batches(y, 3)
    assert all(len(set(y[b])) == 1 for b in batches)
    assert sorted(np.concatenate(batches)) == list(range(len(y)))
    assert [len(b) for b in batches if y[b[0]] == 1] == [3, 4]  # a lone last row joins


def test_record_steps_are_coprime_with_the_epoch():
    for steps in (300, 2000, 10_000):
        for bs in cs.BATCH_SIZES:
            e = cs.epoch_length(bs)
            assert np.gcd(cs.record_every(steps, e), e) == 1


# --------------------------------------------------------------------------- part 4


def test_batch_means_scatter_as_the_without_replacement_law(result):
    noise = result.noise
    inv, exact = noise.law()
    np.testing.assert_allclose(noise.spread(1, "mu"), exact, rtol=0.1)
    assert np.all(np.diff(noise.spread(1, "mu")) < 0)  # shrinking as m grows
    assert noise.spread(2, "mu")[0] < 0.5 * noise.spread(1, "mu")[0]  # the BN below centres it
    np.testing.assert_allclose(inv[0], 0.5)


# --------------------------------------------------------------------------- configs


def test_bad_configs_say_what_is_allowed():
    with pytest.raises(ValueError, match="batch_size must be one of"):
        cs.Batches(batch_size=7)
    with pytest.raises(ValueError, match="steps"):
        cs.Batches(steps=0)
    with pytest.raises(ValueError, match="activation"):
        cs.Batches(activation="softplus")
    with pytest.raises(ValueError, match="dataset"):
        cs.Shift("digits")
    with pytest.raises(TypeError):
        cs.run(object())


# --------------------------------------------------------------------------- figures, downloads


def test_figures_draw_every_part(twins, result):
    view = cs.shifted(twins, -3.0, 180.0, 0.25, layer=3)
    fig = figs.decision_regions(view)
    assert fig.data[0].type == "heatmap" and len(fig.data) >= 4
    assert len(figs.accuracy_vs_shift(view).data) == 3 * len(cs.MODES)
    assert "moved" in figs.hidden_shift(view).layout.annotations[0].text
    pair = cs.two_batches(result, "bright", "faint", 3)
    assert len(figs.batch_images(pair).data) == 16
    assert len(figs.pair_histograms(pair).data) == 6
    assert len(figs.unit_means(pair).data) == 6
    assert len(figs.loss_by_order(result).data) == 4
    assert len(figs.bounce_zoom(result, 40).data) == 2
    assert len(figs.bounce_zoom(result, 400).layout.shapes) > 10
    assert len(figs.accuracy_by_order(result).data) == 4
    assert len(figs.batch_means(result, 3, 99, 200).data) == 4
    assert len(figs.noise_figure(result.noise, 2, 5).data) == len(cs.NOISE_SIZES) + 5


def test_downloads(twins, result):
    view = cs.shifted(twins, 1.0, 0.0, 1.0)
    rows = cs.shift_csv(view).strip().split("\n")
    assert rows[0] == "transform,amount," + ",".join(cs.MODES)
    assert len(rows) == 1 + sum(len(a) for a in cs.TRANSFORMS.values())
    loss = cs.loss_csv(result).strip().split("\n")
    assert len(loss) == 1 + result.config.steps and loss[0].startswith("step,class_sorted_digit")
    assert cs.accuracy_csv(result).startswith("run,step,test_acc,test_loss")
    assert len(cs.noise_csv(result.noise).strip().split("\n")) == 1 + 3 * len(cs.NOISE_SIZES)
    for blob in (cs.shift_npz(view), cs.batches_npz(result)):
        with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
            assert len(npz.files) > 5


# --------------------------------------------------------------------------- the shipped runs


def _same_history(a, b):
    assert a.config == b.config and a.label == b.label and a.diverged_at == b.diverged_at
    np.testing.assert_array_equal(a.loss.astype(np.float32), b.loss)
    np.testing.assert_array_equal(a.record_steps, b.record_steps)
    np.testing.assert_array_equal(a.test_acc, b.test_acc)
    assert a.final_state.keys() == b.final_state.keys()
    for k, v in a.final_state.items():
        np.testing.assert_array_equal(b.final_state[k], v)


def test_a_batches_result_survives_its_npz(result):
    """Every number the page reads comes back exactly, but the BN batch traces, which come back
    within float16's rounding and give the same step-to-step movement to three figures."""
    raw = cs.result_to_npz(result)
    with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
        assert all(npz[k].dtype != object for k in npz.files)
    back = cs.result_from_npz(raw)
    assert back.config == result.config and back.epoch == result.epoch
    np.testing.assert_array_equal(back.batch_class, result.batch_class)
    assert back.arms.labels == result.arms.labels
    for a, b in zip(result.arms, back.arms, strict=True):
        _same_history(a, b)
    assert back.traces.keys() == result.traces.keys()
    for label, tr in result.traces.items():
        got = back.traces[label]
        assert got.mean.dtype == tr.mean.dtype and got.batch_size == tr.batch_size
        np.testing.assert_allclose(got.mean, tr.mean, rtol=5e-4, atol=1e-7)
        np.testing.assert_allclose(got.var, tr.var, rtol=5e-4, atol=1e-7)
        for layer in (1, 2, 3):
            j, j_back = cs.jumpiness(result, label, layer), cs.jumpiness(back, label, layer)
            assert f"{j_back:.3g}" == f"{j:.3g}" and j_back == pytest.approx(j, rel=1e-3)
    for label, d in result.diagnosis.items():
        got = back.diagnosis[label]
        assert got.eval_running == d.eval_running and got.eval_recalibrated == d.eval_recalibrated
        assert got.class_sorted_batches == d.class_sorted_batches
        np.testing.assert_array_equal(got.pop_mean, d.pop_mean)
        np.testing.assert_array_equal(got.pop_var, d.pop_var)
    for name in ("sizes", "mu", "sd", "pop_mean", "pop_var"):
        np.testing.assert_array_equal(getattr(back.noise, name), getattr(result.noise, name))
    assert back.noise.n_train == result.noise.n_train
    pair, pair_back = (cs.two_batches(r, "0", "7", 1) for r in (result, back))
    assert pair_back.acc == pair.acc
    np.testing.assert_array_equal(pair_back.hidden["plain"][0], pair.hidden["plain"][0])


def test_the_default_runs_ship_and_are_the_fresh_ones(twins, result):
    """The page's two default configs are shipped, and their assets hold the same nets as a
    fresh run of those configs (and twins come back as twins)."""
    from bnviz import assets

    e = cs.EXPERIMENT
    assert e.shipped_name(cs.Shift()) == "covariate-shift-default-shift"
    assert e.shipped_name(cs.Batches()) == "covariate-shift-default-batches"
    assert e.shipped_name(cs.Batches(seed=1)) is None
    stored = assets.load("covariate-shift-default-shift", e.decode)
    assert isinstance(stored, Twins) and stored.bn.config == cs.Shift().train_config()
    for a, b in zip(twins, stored, strict=True):
        assert a.config == b.config and a.diverged_at == b.diverged_at
        for k, v in a.final_state.items():
            np.testing.assert_allclose(b.final_state[k], v, rtol=1e-5, atol=1e-6)
    assert cs.shifted(stored, 1.0, 0.0, 1.0).acc == cs.shifted(twins, 1.0, 0.0, 1.0).acc
    stored = assets.load("covariate-shift-default-batches", e.decode)
    assert stored.config == cs.Batches() == result.config
    for a, b in zip(result.arms, stored.arms, strict=True):
        assert a.config == b.config
        np.testing.assert_allclose(b.test_acc, a.test_acc, atol=0.01)
        for k, v in a.final_state.items():
            np.testing.assert_allclose(b.final_state[k], v, rtol=1e-4, atol=1e-5)
