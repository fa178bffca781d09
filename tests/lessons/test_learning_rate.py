"""The learning-rate lesson's experiment and figures, on real (short) runs.

The sweeps are checked against single ``train`` runs of the same configs, the outcome words
against the engine's divergence flag and the loss, and every figure against the numbers it was
built from: a chart that says "diverged" must be drawing a run the engine stopped.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from bnviz import outcome
from bnviz.data import BatchSampler
from bnviz.experiments import learning_rate as lr
from bnviz.figures import common, style
from bnviz.figures import learning_rate as figs
from bnviz.train import TrainConfig, Twins, build_model, load_data, train

VALUES = dict(lr.DEFAULTS, steps=200, sweep_steps=100, grid_steps=60)


@pytest.fixture(scope="module")
def twins() -> Twins:
    return lr.run(lr.curves(dict(VALUES, lr_plain=0.3, lr_bn=3.0)))


@pytest.fixture(scope="module")
def diverging_twins() -> Twins:
    """The "Large init" preset, shortened: the plain net's loss explodes at step 16."""
    return lr.run(lr.curves(dict(VALUES, lr_plain=30.0, lr_bn=30.0, init_scale=30.0)))


@pytest.fixture(scope="module")
def sweep_cfg() -> lr.Sweep:
    """From a 30x init the plain net stalls at rate 0.01, learns at 3 and diverges at 30."""
    base = lr.lr_sweep(dict(VALUES, init_scale=30.0)).base
    return lr.Sweep(base, (0.01, 3.0, 30.0))


@pytest.fixture(scope="module")
def sweep_result(sweep_cfg) -> lr.SweepResult:
    return lr.run(sweep_cfg)


@pytest.fixture(scope="module")
def grid_result() -> lr.GridResult:
    base = lr.grid(VALUES).base
    return lr.run(lr.Grid(base, (0.3, 30.0), (1.0, 30.0)))


# --------------------------------------------------------------------------- configs


def test_the_two_nets_share_initial_weights_and_batches():
    plain, bn = lr.curves(dict(VALUES, lr_plain=0.1, lr_bn=10.0)).configs()
    assert (plain.batchnorm, bn.batchnorm) == (False, True)
    assert (plain.lr, bn.lr) == (0.1, 10.0)
    assert plain.seed == bn.seed
    data = load_data(plain)
    a = build_model(plain, data.n_features, data.n_classes)
    b = build_model(bn, data.n_features, data.n_classes)
    for i in range(1, len(plain.hidden) + 2):
        np.testing.assert_array_equal(a.params[f"fc{i}.weight"], b.params[f"fc{i}.weight"])
    sa = BatchSampler(data.y_train, plain.batch_size, plain.batch_order, seed=plain.seed)
    sb = BatchSampler(data.y_train, bn.batch_size, bn.batch_order, seed=bn.seed)
    np.testing.assert_array_equal(sa.take(50), sb.take(50))


def test_the_page_net_is_the_papers_in_float32():
    cfg = lr.curves(lr.DEFAULTS).base
    assert cfg.dataset == "digits" and cfg.hidden == (100, 100, 100)
    assert cfg.activation == "sigmoid" and cfg.batch_size == 60
    assert cfg.init == "gaussian" and cfg.init_std == 0.01
    assert cfg.dtype == "float32" and cfg.momentum == 0.0


def test_sweep_and_grid_configs_cover_the_grid():
    s = lr.lr_sweep(lr.DEFAULTS)
    assert s.lrs[0] == 0.001 and s.lrs[-1] == 30.0
    assert [c.lr for c in s.configs(True)] == list(s.lrs)
    assert all(c.batchnorm for c in s.configs(True))
    g = lr.grid(lr.DEFAULTS)
    cfgs = g.configs(False)
    assert len(cfgs) == len(g.lrs) * len(g.scales)
    assert (cfgs[1].init_scale, cfgs[1].lr) == (g.scales[0], g.lrs[1])  # row-major
    assert (cfgs[len(g.lrs)].init_scale, cfgs[len(g.lrs)].lr) == (g.scales[1], g.lrs[0])


@pytest.mark.parametrize("make", [lr.curves, lr.lr_sweep, lr.grid])
def test_config_json_holds_the_whole_config(make):
    """The runner's cache key is the config's JSON: it must tell any two configs apart."""
    cfg = make(VALUES)
    key = json.dumps(cfg.as_dict(), sort_keys=True)
    assert TrainConfig.from_dict(json.loads(key)["base"]) == cfg.base
    for change in ({"seed": 1}, {"depth": 2}, {"lr_bn": 3.0}, {"steps": 2000}):
        other = make(dict(VALUES, **change))
        if other != cfg:
            assert json.dumps(other.as_dict(), sort_keys=True) != key


def test_bad_configs_are_refused_with_a_message():
    with pytest.raises(ValueError, match="steps"):
        lr.curves(dict(VALUES, steps=lr.MAX_STEPS + 1))
    with pytest.raises(ValueError, match="sweep steps"):
        lr.lr_sweep(dict(VALUES, sweep_steps=lr.MAX_SWEEP_STEPS + 1))
    with pytest.raises(ValueError, match="increasing"):
        lr.Sweep(lr.lr_sweep(VALUES).base, (1.0, 0.1))
    with pytest.raises(ValueError, match="positive"):
        lr.Sweep(lr.lr_sweep(VALUES).base, (0.0, 1.0))


# --------------------------------------------------------------------------- runs


def test_curves_equal_two_single_runs(twins):
    plain_cfg, bn_cfg = lr.curves(dict(VALUES, lr_plain=0.3, lr_bn=3.0)).configs()
    for h, cfg in zip(twins, (plain_cfg, bn_cfg), strict=True):
        ref = train(cfg)
        assert h.config == cfg
        np.testing.assert_array_equal(h.loss, ref.loss)
        np.testing.assert_array_equal(h.test_acc, ref.test_acc)
        assert h.final_state == {} and h.layers == []  # shown nowhere: keep the cache small
    assert len(twins.plain.record_steps) == lr.RECORDS + 1  # step 0, then every 4 steps


def test_divergence_is_a_result(diverging_twins):
    plain, bn = diverging_twins
    assert plain.diverged_at == 16
    assert len(plain.loss) == 16
    assert bn.diverged_at is None and len(bn.loss) == 200
    assert outcome.outcome(plain, 0.1) == "diverged"


def test_sweep_outcomes_match_the_runs(sweep_cfg, sweep_result):
    chance = outcome.chance_accuracy(sweep_cfg.base)
    for name, o in sweep_result:
        np.testing.assert_array_equal(o.lr, sweep_cfg.lrs)
        assert o.steps == 100 and o.chance_loss == pytest.approx(math.log(10))
        assert o.chance_acc == chance
        cfgs = sweep_cfg.configs(name == "BN")
        for i, cfg in enumerate(cfgs):
            ref = train(cfg)
            assert o.outcome[i] == outcome.outcome(ref, chance)
            if ref.diverged_at is None:
                assert o.diverged_at[i] == -1
                assert o.final_acc[i] == pytest.approx(ref.test_acc[-1])
                assert o.final_loss[i] == pytest.approx(np.mean(ref.loss[-10:]))
            else:
                assert o.diverged_at[i] == ref.diverged_at
                assert math.isnan(o.final_acc[i]) and math.isnan(o.final_loss[i])
    assert list(sweep_result.plain.outcome) == ["stalled", "learned", "diverged"]
    assert sweep_result.plain.diverged_at[2] == 16
    assert not sweep_result.bn.diverged.any()


def test_stalled_means_not_halfway_from_chance_to_perfect():
    """Judged by what a student reads, the test accuracy: with chance at 10% a run learned
    from 55% up. A 38% net stalled even though its loss (1.6) was far below chance level
    (2.30), and a 22% net stalled although its loss was under 90% of chance."""
    o = lr.Outcomes(
        lr=np.array([0.1, 1.0, 3.0, 10.0, 30.0]),
        init_scale=np.ones(5),
        final_loss=np.array([2.30, 0.5, 1.6, 1.9, math.nan]),
        final_acc=np.array([0.1, 0.9, 0.38, 0.22, math.nan]),
        diverged_at=np.array([-1, -1, -1, -1, 7]),
        first_loss=np.full(5, 2.3),
        steps=100,
        chance_loss=math.log(10),
        chance_acc=0.1,
    )
    assert o.learned_bar == pytest.approx(0.55)
    assert list(o.outcome) == ["stalled", "learned", "stalled", "stalled", "diverged"]
    assert lr.describe(o) == "learned at 1; stalled at 0.1 and 3 to 10; diverged at 30"
    assert lr.counts(o) == {"learned": 1, "stalled": 3, "diverged": 1}
    assert (
        outcome.judge(False, 0.55, 0.1) == "learned"
        and outcome.judge(False, 0.54, 0.1) == "stalled"
    )


def test_shipped_results_round_trip(sweep_result, grid_result, twins):
    for result in (sweep_result, grid_result):
        back = lr.result_from_npz(lr.result_to_npz(result))
        assert type(back) is type(result)
        for (_, a), (_, b) in zip(result, back, strict=True):
            assert list(a.outcome) == list(b.outcome) and a.chance_acc == b.chance_acc
            np.testing.assert_array_equal(a.final_acc, b.final_acc)
    back = lr.result_from_npz(lr.result_to_npz(twins))
    np.testing.assert_allclose(back.bn.loss, twins.bn.loss, rtol=1e-6)  # stored as float32


def test_describe_joins_neighbouring_rates():
    o = lr.Outcomes(
        lr=np.array([0.001, 0.01, 0.1, 1.0, 10.0]),
        init_scale=np.ones(5),
        final_loss=np.array([2.3, 2.3, 0.1, 0.1, 0.1]),
        final_acc=np.array([0.1, 0.1, 0.9, 0.9, 0.9]),
        diverged_at=np.full(5, -1),
        first_loss=np.full(5, 2.3),
        steps=100,
        chance_loss=math.log(10),
        chance_acc=0.1,
    )
    assert lr.describe(o) == "learned at 0.1 to 10; stalled at 0.001 to 0.01"


def test_grid_cells_are_the_runs(grid_result):
    g = grid_result
    assert g.plain.final_acc.shape == (4,)
    ends = g.cell(g.plain, "outcome")
    assert ends.shape == (2, 2)
    assert ends[1, 1] == "diverged"  # init scale 30, rate 30
    assert g.cell(g.plain, "init_scale")[1, 0] == 30.0 and g.cell(g.plain, "lr")[0, 1] == 30.0


def test_csv_tables(twins, sweep_result, grid_result):
    rows = lr.sweep_csv(sweep_result).strip().splitlines()
    assert rows[0].startswith("net,learning_rate,init_scale,steps,outcome,diverged_at")
    assert len(rows) == 1 + 2 * 3
    diverged = [r for r in rows if ",diverged," in r]
    assert diverged == [f"plain,30,30,100,diverged,16,{sweep_result.plain.first_loss[2]:.6g},,"]
    assert len(lr.sweep_csv(grid_result).strip().splitlines()) == 1 + 2 * 4
    curves = lr.curves_csv(twins).strip().splitlines()
    assert curves[0] == "step,plain_loss,bn_loss,plain_test_acc,bn_test_acc"
    assert len(curves) == 1 + 201
    assert curves[-1].startswith("200,,,")  # no loss after the last step; accuracies only


def test_paper_numbers():
    table = {row[0]: row for row in lr.IMAGENET}
    assert table["Inception"][1:3] == ("31.0M", "72.2%")
    assert table["BN-Baseline"][1] == "13.3M"
    assert table["BN-x5"][1] == "2.1M"
    assert table["BN-x30"][1:3] == ("2.7M", "74.8%")
    assert table["BN-x5-Sigmoid"][2] == "69.8%"
    assert len(lr.ACCELERATIONS) == 7


def test_presets_are_valid_settings():
    for name, preset in lr.PRESETS.items():
        assert set(preset) == set(lr.DEFAULTS), name
        lr.curves(preset), lr.lr_sweep(preset), lr.grid(preset)
        assert name in lr.PRESET_HELP


# --------------------------------------------------------------------------- figures


def test_curve_figures_name_each_rate(twins):
    loss = figs.loss_curves(twins)
    names = [t.name for t in loss.data]
    assert names == ["plain, rate 0.3", "BN, rate 3"]
    assert loss.layout.yaxis.type == "log"
    assert loss.layout.title.text == "Training loss: plain at 0.3 vs BN at 3"
    assert loss.data[0].line.color == style.PLAIN and loss.data[0].line.dash == "dash"
    assert loss.data[1].line.color == style.BN and loss.data[1].line.dash == "solid"
    ticks = list(loss.layout.yaxis.tickvals)
    assert list(loss.layout.yaxis.ticktext) == [f"{t:g}" for t in ticks]
    acc = figs.accuracy_curves(twins)
    np.testing.assert_allclose(acc.data[1].y, twins.bn.test_acc)
    np.testing.assert_array_equal(acc.data[1].x, twins.bn.record_steps)


def test_curve_figures_cut_a_diverged_run(diverging_twins):
    loss = figs.loss_curves(diverging_twins, smooth=1)
    plain = loss.data[0]
    assert len(plain.x) == 16 and plain.x[-1] == 15
    marks = [t for t in loss.data if t.marker.symbol == "x"]
    assert len(marks) == 1 and "plain diverged at step 16" in marks[0].name
    assert any("diverged at step 16" in (a.text or "") for a in loss.layout.annotations)


def test_sweep_chart(sweep_result):
    fig = figs.sweep_chart(sweep_result, lr_plain=3.0, lr_bn=30.0)
    assert fig.layout.xaxis.type == "log" and fig.layout.xaxis2.type == "log"
    assert fig.layout.yaxis.type == "log"
    lines = {(t.name, t.yaxis): t for t in fig.data if t.mode == "lines+markers"}
    plain_loss, plain_acc = lines[("plain", "y")], lines[("plain", "y2")]
    np.testing.assert_array_equal(plain_loss.x, sweep_result.lrs)
    assert plain_loss.y[2] is None and plain_acc.y[2] is None  # the diverged run breaks the line
    assert plain_acc.y[0] == pytest.approx(sweep_result.plain.final_acc[0])
    bn_acc = lines[("BN", "y2")]
    np.testing.assert_allclose(np.array(bn_acc.y, dtype=float), sweep_result.bn.final_acc)
    diverged = [t for t in fig.data if t.name == "plain diverged"]
    assert len(diverged) == 2  # one mark in each panel
    assert all(list(t.x) == [30.0] for t in diverged)
    assert diverged[0].customdata[0] == "diverged at step 16"
    assert not [t for t in fig.data if t.name == "BN diverged"]
    vlines = [s for s in fig.layout.shapes if s.x0 == s.x1]
    assert sorted(s.x0 for s in vlines) == [3.0, 3.0, 30.0, 30.0]
    (chance,) = [t for t in fig.data if t.name.startswith("chance level")]
    assert list(chance.y) == [pytest.approx(math.log(10))] * 2
    (bar,) = [t for t in fig.data if t.name.startswith("learned:")]
    assert list(bar.y) == [pytest.approx(sweep_result.plain.learned_bar)] * 2


def test_diverged_marks_sit_in_their_own_band_one_row_per_net():
    """A diverged run has no accuracy: it was drawn at 0%, and BN's x marks hid the plain
    net's at the same rate. Now each net has its own row in a band past the axis."""

    def ended(diverged_at):
        return lr.Outcomes(
            lr=np.array([1.0, 30.0]),
            init_scale=np.ones(2),
            final_loss=np.array([0.2, math.nan]),
            final_acc=np.array([0.9, math.nan]),
            diverged_at=np.array(diverged_at),
            first_loss=np.full(2, 2.3),
            steps=100,
            chance_loss=math.log(10),
            chance_acc=0.1,
        )

    o = ended([-1, 5])
    fig = figs.sweep_chart(lr.SweepResult(o.lr, o, ended([-1, 9])))
    plain = [t for t in fig.data if t.name == "plain diverged"]
    bn = [t for t in fig.data if t.name == "BN diverged"]
    for p, b in zip(plain, bn, strict=True):
        assert p.y[0] != b.y[0]  # never on top of each other
    acc_axis = fig.layout.yaxis2
    assert plain[1].y[0] < 0 and bn[1].y[0] < 0 and acc_axis.range[0] < bn[1].y[0]
    assert "diverged" in acc_axis.ticktext and "0%" in acc_axis.ticktext
    assert fig.layout.yaxis.range[1] > np.log10(bn[0].y[0])  # the loss band is on the axis too


def test_sweep_chart_marks_stalled_runs():
    o = lr.Outcomes(
        lr=np.array([0.1, 10.0]),
        init_scale=np.ones(2),
        final_loss=np.array([0.2, 2.4]),
        final_acc=np.array([0.9, 0.1]),
        diverged_at=np.full(2, -1),
        first_loss=np.full(2, 2.3),
        steps=100,
        chance_loss=math.log(10),
        chance_acc=0.1,
    )
    fig = figs.sweep_chart(lr.SweepResult(o.lr, o, o))
    stalled = [t for t in fig.data if t.name == "plain stalled"]
    assert len(stalled) == 2 and list(stalled[1].x) == [10.0] and list(stalled[1].y) == [0.1]
    assert stalled[0].marker.color == "white"


def test_stability_map_cells_equal_the_runs(grid_result):
    fig = figs.stability_map(grid_result)
    g = grid_result
    maps = [t for t in fig.data if t.type == "heatmap" and t.name.endswith("test accuracy")]
    assert [t.name for t in maps] == ["plain test accuracy", "BN test accuracy"]
    for trace, (_, o) in zip(maps, g, strict=True):
        assert list(trace.x) == ["0.3", "30"] and list(trace.y) == ["1", "30"]
        acc = g.cell(o, "final_acc")
        z = np.array([[math.nan if v is None else v for v in row] for row in trace.z])
        np.testing.assert_array_equal(np.isnan(z), g.cell(o, "diverged"))
        np.testing.assert_allclose(z[~np.isnan(z)], acc[~np.isnan(acc)])
    (overlay,) = [t for t in fig.data if t.name == "plain diverged"]
    assert overlay.text[1][1] == figs.DIVERGED_MARK and overlay.text[0][0] == ""
    cells = maps[0].text
    for r, row in enumerate(g.cell(g.plain, "outcome")):
        for c, ended in enumerate(row):  # every stalled cell is marked, no learned one is
            assert (figs.STALLED_MARK in cells[r][c]) == (ended == "stalled")
    assert "diverged at step 16" in overlay.customdata[1][1]
    assert fig.layout.xaxis.type == "category" and fig.layout.yaxis.type == "category"


def test_log_ticks_read_as_numbers():
    assert common.log_ticks(0.015, 3.0) == [0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0]
    assert common.log_ticks(1e-4, 1e3) == [0.0001, 0.001, 0.01, 0.1, 1.0, 10.0, 100.0, 1000.0]
    assert common.log_ticks(2.1, 2.2) == [2.0]


def test_progress_counts_steps_per_run():
    seen = []
    base = lr.lr_sweep(dict(VALUES, sweep_steps=40)).base
    lr.run(lr.Sweep(base, (0.1, 1.0)), lambda done, total: seen.append((done, total)))
    assert seen and all(total == 40 for _, total in seen)
    assert seen[-1] == (40, 40)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
