"""The "Variants and pitfalls" lesson as numbers: the batch-size grid's configs and its result
on the default preset (BN falls at batch 2, LN and GN do not; their train-vs-eval gap is 0),
Li et al.'s variance ratio against measured variances, the variance shift in trained nets,
BN at batch size 1, the normalizers' sets on a real batch, the sequence picture, the words
the page prints, the downloads, the figures, and parity with PyTorch for this lesson's arms
(ReLU, He init, 64-unit layers, LN, GN with 8 and 32 groups, batch 2, dropout before BN).
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import replace

import numpy as np
import pytest

from bnviz import fanout
from bnviz import functional as F
from bnviz.experiments import variants as vr
from bnviz.figures import variants as figs
from bnviz.inference import recalibrate
from bnviz.nn import MLP
from bnviz.train import TrainConfig, build_model, load_data

DEFAULT = dict(vr.DEFAULTS)


@pytest.fixture(scope="module")
def grid() -> list[vr.KindResult]:
    """The default preset's grid, every normalization (48 nets, trained here)."""
    return [vr.run(vr.batch_grid(DEFAULT, norm)) for norm in vr.GRID_NORMS]


@pytest.fixture(scope="module")
def dropout() -> vr.DropoutResult:
    return vr.run(vr.dropout_arms(DEFAULT))


# --------------------------------------------------------------------------- configs


def test_the_grid_sees_the_same_examples_at_a_rate_scaled_with_the_batch():
    g = vr.batch_grid(DEFAULT, "group")
    configs = g.configs()
    assert len(configs) == len(vr.BATCH_SIZES) * vr.SEEDS
    for cfg in configs:
        assert cfg.steps * cfg.batch_size == DEFAULT["examples"]
        assert cfg.lr == pytest.approx(DEFAULT["lr"] * cfg.batch_size / 32, rel=1e-12)
        assert cfg.record_every == cfg.steps
        assert cfg.norm == "group" and cfg.groups == DEFAULT["groups"]
        assert cfg.init == "he" and cfg.activation == "relu" and cfg.hidden == (64, 64, 64)
        assert cfg.probes == ()  # scored once at the end (train_vs_eval), not at every record
    assert [c.seed for c in configs[:2]] == [0, 1]
    assert [c.batch_size for c in configs[::2]] == list(vr.BATCH_SIZES)
    assert json.loads(json.dumps(g.as_dict()))["norm"] == "group"
    # the other normalizations keep the base's groups: GN's slider does not change their key
    assert vr.batch_grid(DEFAULT, "batch") == vr.batch_grid({**DEFAULT, "groups": 32}, "batch")
    assert vr.batch_grid(DEFAULT, "batch").config(2, 0).groups == TrainConfig().groups


@pytest.mark.parametrize(
    "change, words",
    [
        ({"examples": 100}, "multiple of 64"),
        ({"lr": 0.0}, "lr must be"),
        ({"groups": 3}, "groups must be"),
    ],
)
def test_bad_grid_settings_say_what_is_allowed(change, words):
    with pytest.raises(ValueError, match=words):
        vr.batch_grid({**DEFAULT, **change}, "group")


def test_dropout_arms_are_two_bn_nets_with_the_drop_probability_one_minus_keep():
    cfg = vr.dropout_arms({**DEFAULT, "keep": 0.3})
    assert cfg.base.norm == "batch" and cfg.base.batch_size == 32
    arms = cfg.arms()
    assert arms[vr.EVERY] == {"dropout": 0.7, "dropout_where": "every"}
    assert arms[vr.LAST] == {"dropout": 0.7, "dropout_where": "last"}
    with pytest.raises(ValueError, match="keep must be one of"):
        vr.dropout_arms({**DEFAULT, "keep": 0.55})


# --------------------------------------------------------------------------- the grid


def test_on_the_default_preset_bn_falls_at_batch_2_more_than_ln_and_gn(grid):
    by = {r.norm: r for r in grid}
    bn, ln, gn = by["batch"], by["layer"], by["group"]
    assert bn.fall(2) > ln.fall(2) and bn.fall(2) > gn.fall(2)
    assert bn.fall(2) > 0.2  # seen: 0.543 (98.1% at batch 32, 43.8% at batch 2)
    assert abs(ln.fall(2)) < 0.03 and abs(gn.fall(2)) < 0.03
    assert bn.acc_at(32) > 0.95 and ln.acc_at(2) > 0.9 and gn.acc_at(2) > 0.9
    text = vr.compare_falls(grid)
    assert text.startswith("In this run BN loses more accuracy from batch 32 to 2 than LN and")
    assert f": {100 * bn.fall(2):.1f} points against {100 * ln.fall(2):.1f} and" in text
    for r in grid:
        assert (r.diverged_at < 0).all()
        assert r.final_acc.shape == (len(vr.BATCH_SIZES), vr.SEEDS)
        np.testing.assert_array_equal(r.steps * r.batch_sizes, DEFAULT["examples"])


def test_the_train_vs_eval_gap_is_zero_without_bn_and_largest_for_bn_at_small_batches(grid):
    for r in grid:
        if r.norm == "batch":
            gap = np.abs(vr._nanmean(r.gap))
            assert gap[0] > 0.05 and gap[0] > gap[-1]
        else:  # no running statistics: both scores are the same computation
            np.testing.assert_array_equal(r.acc_batch, r.acc_running)
    words = vr.describe_gap(grid)
    assert words.startswith("BN's two scores differ most at batch 2")
    assert "For plain, LN, GN (8 groups) it is exactly 0 at every batch size." in words


def test_the_grid_keeps_the_batch_32_nets_for_part_4(grid):
    bn = grid[1]
    assert bn.reference_config.batch_size == 32 and bn.reference_config.seed == 0
    assert "bn1.beta" in bn.reference and "ln1.gamma" in grid[2].reference
    assert vr.no_dropout_twin(bn) == bn.final_acc[4, 0]


# --------------------------------------------------------------------------- Li et al.


def test_the_dropout_variance_ratio_matches_the_formula_within_sampling_error():
    """Zero mean: Var_eval / Var_train = p. The standard error from the blocks agrees with the
    delta method's sqrt(3 p (1 - p) / n) for a normal input (seen: within 30%)."""
    check = vr.formula_check(0.0)
    n = check.samples
    z = (check.measured - check.keeps) / check.stderr
    assert np.all(np.abs(z) < 4), z.round(2)
    analytic = np.sqrt(3 * check.keeps * (1 - check.keeps) / n)
    assert np.all(np.abs(check.stderr / analytic - 1) < 0.6)
    np.testing.assert_allclose(check.formula, check.keeps, atol=1e-2)  # the sample's own c, v
    assert np.all(check.stderr < 0.005)


@pytest.mark.parametrize("mean", [0.5, 1.0, 2.0])
def test_with_a_mean_the_ratio_falls_below_p_as_the_formula_says(mean):
    check = vr.formula_check(mean)
    z = (check.measured - check.formula) / check.stderr
    assert np.all(np.abs(z) < 4), z.round(2)
    assert np.all(check.formula < check.keeps)
    c, v = mean, 1.0
    np.testing.assert_allclose(
        vr.li_ratio(check.keeps, c, v), v / ((c * c + v) / check.keeps - c * c), rtol=1e-15
    )


def test_the_linear_version_of_the_formula_is_exact_when_the_dropout_input_is_the_same():
    """With BN layer 1's running statistics set to the full-batch ones and the whole split as
    one batch, the dropout's input is the same in both modes; the measured ratio of BN layer 2
    then matches Var_eval / (Var_eval + (1/p - 1) sum W^2 E[a^2]) up to the masks' sampling."""
    data = load_data(TrainConfig())
    x = np.asarray(data.x_train, dtype=np.float64)
    model = MLP((64, 64, 64, 10), "relu", norm="batch", dropout=0.5, init="he", seed=3)
    z1 = model.layers["fc1"].forward(x)
    bn1 = model.layers["bn1"]
    bn1.running_mean[...] = z1.mean(axis=0)
    bn1.running_var[...] = z1.var(axis=0)
    shift = vr.variance_shift(model, x, batch_size=len(x), reps=40)
    np.testing.assert_allclose(shift.input_ratio[1], 1.0, atol=1e-9)
    measured, predicted = shift.layer_ratio[1], shift.layer_predicted[1]
    assert abs(measured - predicted) < 0.01, (measured, predicted)
    assert abs(shift.layer_ratio[0] - 1.0) < 1e-9  # nothing drops before BN layer 1
    assert math.isnan(shift.layer_predicted[0])


def test_in_trained_nets_dropout_shifts_the_variance_only_where_it_feeds_a_bn(dropout):
    every, last = dropout.shifts[vr.EVERY], dropout.shifts[vr.LAST]
    assert abs(every.layer_ratio[0] - 1) < 0.05  # no dropout before BN layer 1
    assert np.all(every.layer_ratio[1:] < 0.8)  # seen: 0.58, 0.46 at keep 0.5
    assert np.all(np.abs(last.layer_ratio - 1) < 0.15)  # seen: 1.00, 0.96, 0.94
    assert np.all(np.isnan(last.layer_predicted))
    assert abs(every.layer_predicted[1] - every.layer_ratio[1]) < 0.1  # seen: 0.601 vs 0.578
    acc = dropout.test_acc
    assert set(acc) == {vr.EVERY, vr.RECALIBRATED, vr.LAST}
    assert all(0.5 < v <= 1 for v in acc.values())
    assert acc[vr.LAST] > acc[vr.EVERY]  # seen: 97.8% vs 92.5%
    lines = vr.describe_shift(dropout)
    assert lines[0] == f"BN layer 1 (no dropout before it): {every.layer_ratio[0]:.3f} measured"
    assert vr.describe_dropout(dropout).startswith(f"Dropout in every block: {acc[vr.EVERY]:.1%}")
    assert "BN layer 2" in vr.describe_shift_gap(dropout)


def test_the_dropout_nets_are_arms_from_one_start(dropout):
    """Trained as a sweep, the two nets are exactly ``train_arms``' arms (same Linear weights at
    the start, same batches)."""
    cfg = vr.dropout_arms(DEFAULT)
    arms = fanout.arms(cfg.base, cfg.arms())
    swept = fanout.sweep(cfg.configs())
    for label, h in zip(cfg.arms(), swept, strict=True):
        np.testing.assert_array_equal(h.loss, arms[label].loss)
        np.testing.assert_array_equal(
            h.final_state["fc2.weight"], arms[label].final_state["fc2.weight"]
        )
        assert h.test_acc[-1] == dropout.test_acc[label]


def test_recalibration_sets_bn_to_the_statistics_of_the_net_without_dropout(dropout):
    """What the recalibrated net divides by is what its BN layers then see in eval mode."""
    cfg = vr.dropout_arms(DEFAULT)
    (every, _) = fanout.sweep(cfg.configs())
    model = vr.model_of(every)
    x = np.asarray(load_data(cfg.base).x_train, dtype=model.dtype)
    fixed = recalibrate(model.clone(), x, 32)
    shift = vr.variance_shift(fixed, x, 32, reps=1)
    ratio = shift.var_eval / shift.running_var
    assert np.nanmax(np.abs(np.nanmean(ratio, axis=1) - 1)) < 0.05
    assert vr.accuracy_on_test(fixed, cfg.base) == pytest.approx(
        dropout.test_acc[vr.RECALIBRATED], abs=1e-12
    )


# --------------------------------------------------------------------------- pitfalls


def test_bn_at_batch_size_one_outputs_beta_and_passes_no_gradient(grid):
    one = vr.batch_one(grid[1], grid[2], digit=5)
    np.testing.assert_array_equal(one.y_bn, one.beta)
    assert one.max_from_beta == 0.0
    np.testing.assert_array_equal(one.dz, 0.0)
    assert len(one.classes_predicted) == 1  # every digit alone gets the same answer
    y_test = load_data(TrainConfig()).y_test
    assert one.acc_one == pytest.approx(np.mean(y_test == one.classes_predicted[0]))
    assert one.acc_eval > 0.9 and one.acc_ln > 0.9
    ln = F.layernorm_forward(one.z_ln[None], np.ones(64), np.zeros(64))[0][0]
    assert np.std(ln) == pytest.approx(np.sqrt(np.var(one.z_ln) / (np.var(one.z_ln) + 1e-5)))
    with pytest.raises(ValueError, match="digit must be"):
        vr.batch_one(grid[1], grid[2], digit=10_000)


def test_each_normalizer_standardizes_its_own_set_of_values():
    axes = vr.mlp_axes(8)
    z = axes.z
    n, d = z.shape
    np.testing.assert_allclose(axes.out["BN"].mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(axes.out["LN"].mean(axis=1), 0, atol=1e-12)
    gn = axes.out["GN"].reshape(n, 8, d // 8)
    np.testing.assert_allclose(gn.mean(axis=2), 0, atol=1e-12)
    var = z[:, axes.unit].var()
    np.testing.assert_allclose(axes.out["BN"][:, axes.unit].std(), np.sqrt(var / (var + 1e-5)))
    for kind, size in (("BN", n), ("LN", d), ("GN", d // 8)):
        count, mean, std = axes.shared(kind)
        assert count == size == axes.members(kind).sum()
        values = z[axes.members(kind)]
        assert mean == pytest.approx(values.mean()) and std == pytest.approx(values.std())
    assert list(axes.digits) == list(range(8))
    alone = vr.mlp_axes(64)
    np.testing.assert_array_equal(alone.out["GN"], 0.0)  # one unit a group: every value is 0


def test_the_sequence_picture_counts_the_sequences_still_running():
    seqs = vr.sequences(seed=3)
    for t, count in zip(seqs.steps, seqs.bn_count, strict=True):
        assert count == np.sum(seqs.lengths >= t)
    assert seqs.bn_count[0] == len(seqs.lengths)
    assert seqs.test_length > seqs.lengths.max()
    assert seqs.bn_count[seqs.last_shared - 1] >= 2 > seqs.bn_count[seqs.last_shared]
    assert seqs.ln_count == 64
    assert list(seqs.lengths) == sorted(seqs.lengths, reverse=True)


# --------------------------------------------------------------------------- words


def _kind(norm: str, acc32: float, acc2: float) -> vr.KindResult:
    acc = np.full((6, 2), acc32)
    acc[0] = acc2
    zeros = np.zeros((6, 2))
    return vr.KindResult(
        norm=norm, groups=8, batch_sizes=np.array(vr.BATCH_SIZES), seeds=np.arange(2),
        lr=np.ones(6), steps=np.ones(6), examples=6400, final_acc=acc, acc_batch=zeros,
        acc_running=zeros, final_loss=zeros, diverged_at=np.full((6, 2), -1),
        seconds=zeros,
    )  # fmt: skip


@pytest.mark.parametrize(
    "bn2, ln2, gn2, start",
    [
        (0.5, 0.9, 0.9, "In this run BN loses more accuracy from batch 32 to 2 than LN and "
         "GN (8 groups) do: 40.0 points against 0.0 and 0.0."),
        (0.9, 0.8, 0.8, "In this run BN does not lose more accuracy"),
        (0.8, 0.85, 0.7, "In this run BN loses more accuracy from batch 32 to 2 than LN but not "
         "more than GN (8 groups): 10.0 points against 5.0 and 20.0."),
        (0.8, 0.7, 0.85, "In this run BN loses more accuracy from batch 32 to 2 than GN "
         "(8 groups) but not more than LN: 10.0 points against 5.0 and 20.0."),
        (math.nan, 0.9, 0.9, "Some nets diverged"),
    ],
)  # fmt: skip
def test_the_comparison_says_what_the_numbers_show(bn2, ln2, gn2, start):
    results = [_kind("batch", 0.9, bn2), _kind("layer", 0.9, ln2), _kind("group", 0.9, gn2)]
    assert vr.compare_falls(results).startswith(start)


@pytest.mark.parametrize(
    "bn2, ln2, gn2, most",
    [(0.5, 0.9, 0.9, True), (0.9, 0.8, 0.8, False), (0.8, 0.85, 0.7, False),
     (0.8, 0.7, 0.85, False), (math.nan, 0.9, 0.9, False)],
)  # fmt: skip
def test_bn_falls_most_only_when_it_loses_more_than_ln_and_gn(bn2, ln2, gn2, most):
    results = [_kind("batch", 0.9, bn2), _kind("layer", 0.9, ln2), _kind("group", 0.9, gn2)]
    assert vr.bn_falls_most(results) is most
    assert vr.bn_falls_most(results[:2]) is False


def test_the_falls_read_as_signed_points():
    lines = vr.describe_falls([_kind("layer", 0.9, 0.9), _kind("batch", 0.9, 0.5)])
    assert lines == [
        "**LN**: 90.0% at batch 32, 90.0% at batch 2 (±0.0 points)",
        "**BN**: 90.0% at batch 32, 50.0% at batch 2 (-40.0 points)",
    ]


# --------------------------------------------------------------------------- downloads


def test_the_downloads_hold_every_net_and_every_layer(grid, dropout):
    lines = vr.grid_csv(grid).splitlines()
    assert len(lines) == 1 + len(vr.GRID_NORMS) * len(vr.BATCH_SIZES) * vr.SEEDS
    assert lines[0].startswith("norm,groups,batch_size,learning_rate,steps,examples_seen,seed")
    assert lines[1].startswith("plain,,2,0.00625,6400,12800,0,")
    shift = vr.dropout_csv(dropout).splitlines()
    assert len(shift) == 1 + 2 * 3
    check = vr.formula_check(0.0)
    arrays = np.load(io.BytesIO(vr.dropout_npz(dropout, check)), allow_pickle=False)
    assert arrays["every/var_train"].shape == (3, 64)
    np.testing.assert_array_equal(arrays["formula_check/measured"], check.measured)
    one = vr.batch_one(grid[1], grid[2], 0)
    pit = np.load(
        io.BytesIO(vr.pitfalls_npz(one, vr.sequences(), vr.mlp_axes(8))), allow_pickle=False
    )
    np.testing.assert_array_equal(pit["batch_one/y_bn"], one.beta)
    assert pit["axes/z"].shape == (8, 64)


# --------------------------------------------------------------------------- figures


def _cells(trace) -> int:
    """Polygons in a fill-toself trace: one None after each."""
    return sum(1 for v in trace.x if v is None)


def test_the_block_picture_colors_each_normalizers_set():
    fig = figs.nchw_blocks(n=4, c=6, hw=4, groups=3)
    highlighted = [t for t in fig.data if t.name in figs.NORMALIZERS]
    assert [t.name for t in highlighted] == list(figs.NORMALIZERS)
    # front face (C x HW at n = 0), top face (C x N), side face (N x HW at the last channel)
    assert [_cells(t) for t in highlighted] == [4 + 4, 24 + 6 + 4, 4 + 1, 8 + 2]
    titles = [a.text for a in fig.layout.annotations][:4]
    assert titles == list(figs.NORMALIZERS)


def test_the_charts_draw_every_run_and_the_papers_numbers(grid, dropout):
    fig = figs.batch_size_chart(grid)
    names = [t.name for t in fig.data if t.showlegend is not False]
    assert names == ["plain", "BN", "LN", "GN (8 groups)"]
    bn = next(t for t in fig.data if t.name == "BN")
    np.testing.assert_allclose(bn.y, 1 - grid[1].mean_acc, rtol=1e-3)
    assert fig.layout.yaxis.type == "log" and list(fig.layout.xaxis.tickvals) == [
        2,
        4,
        8,
        16,
        32,
        64,
    ]
    paper = figs.paper_chart()
    assert [list(t.y) for t in paper.data] == [list(vr.GN_PAPER_ERROR["BN"]),
                                               list(vr.GN_PAPER_ERROR["GN"])]  # fmt: skip
    gap = figs.gap_chart(grid)
    assert len(gap.data) == 4 and all(v == 0 for v in gap.data[2].y)
    shift = figs.shift_chart(dropout)
    assert [t.name for t in shift.data][:3] == [
        "every block, measured", "every block, formula", "last BN only, measured"
    ]  # fmt: skip
    acc = figs.dropout_accuracy(dropout, 0.98)
    assert list(acc.data[0].y)[0] == "no dropout" and len(acc.data[0].x) == 4
    check = vr.formula_check(1.0)
    formula = figs.formula_chart(check, 0.5)
    assert list(formula.data[2].y) == pytest.approx(list(check.measured), rel=1e-4)
    one = figs.batch_one_chart(vr.batch_one(grid[1], grid[2], 0))
    assert len(one.data) == 5
    seq = figs.sequences_chart(vr.sequences())
    assert seq.layout.yaxis2.type == "log"
    axes = figs.mlp_axes(vr.mlp_axes(8))
    assert len([t for t in axes.data if t.type == "heatmap"]) == 6
    assert len(axes.layout.shapes) >= 6  # an outline per panel, group boundaries in GN's
    for f in (fig, paper, gap, shift, acc, formula, one, seq, axes):
        assert f.layout.title.text


# --------------------------------------------------------------------------- parity with torch

PARITY = {  # case: (changes, steps compared)
    "ln_batch_2": (dict(norm="layer", batch_size=2, lr=0.1 * 2 / 32), 120),
    "gn_8_groups_batch_4": (dict(norm="group", groups=8, batch_size=4, lr=0.1 * 4 / 32), 120),
    # two units a group: where the two are nearly equal, x_hat = (x - mu) / sqrt(var + eps)
    # moves ~1/(2 sqrt(eps)) = 158 times as fast as they do, and rounding differences between
    # the engines (1e-16) grew ~30x a step here from step 4 on: compare the first steps
    "gn_32_groups_batch_8": (dict(norm="group", groups=32, batch_size=8, lr=0.1 * 8 / 32), 4),
    "bn_dropout_every": (dict(norm="batch", batch_size=32, dropout=0.5), 120),
    "bn_dropout_last": (dict(norm="batch", batch_size=32, dropout=0.5, dropout_where="last"), 120),
}


@pytest.mark.parametrize("case", list(PARITY))
def test_this_lessons_arms_match_torch(case):
    """The fast engine and PyTorch train this lesson's configs (float64) to the same losses,
    weights, statistics, test accuracy and train-vs-eval scores."""
    from bnviz.torch_ref import train_torch
    from bnviz.train import train

    changes, steps = PARITY[case]
    base = replace(
        vr.base_config("relu", 2, seed=1),
        dtype="float64", steps=steps, record_every=max(1, steps // 3), probes=("eval_gap",),
    )  # fmt: skip
    cfg = replace(base, **changes)
    a, b = train(cfg), train_torch(cfg)
    assert a.diverged_at is None and b.diverged_at is None
    assert len(a.loss) == len(b.loss) == steps
    assert np.max(np.abs(a.loss - b.loss) / np.abs(b.loss)) < 1e-9
    np.testing.assert_array_equal(a.test_acc, b.test_acc)
    for key in a.final_state:
        x, y = np.asarray(a.final_state[key], float), np.asarray(b.final_state[key], float)
        scale = max(np.max(np.abs(y)), 1e-300)
        assert np.max(np.abs(x - y)) / scale < 1e-9, key
    gap_a, gap_b = a.probes["eval_gap"], b.probes["eval_gap"]
    np.testing.assert_array_equal(gap_a.acc_batch, gap_b.acc_batch)
    np.testing.assert_array_equal(gap_a.acc_running, gap_b.acc_running)


@pytest.mark.parametrize("case", list(PARITY))
def test_one_step_of_this_lessons_nets_matches_torch(case):
    """Loss and every gradient of one training step on real digits, against torch.nn: 1e-10."""
    import torch

    from bnviz.reference.torch import param_name, to_torch

    changes, _ = PARITY[case]
    cfg = replace(vr.base_config("relu", 3, seed=2), dtype="float64", **changes)
    data = load_data(cfg)
    model = build_model(cfg, data.n_features, data.n_classes)
    rows = np.arange(cfg.batch_size)
    x, y = np.asarray(data.x_train[rows], np.float64), data.y_train[rows]
    tmodel = to_torch(model)
    loss = model.loss(x, y)
    model.backward()
    tloss = torch.nn.functional.cross_entropy(tmodel(torch.tensor(x)), torch.tensor(y))
    tloss.backward()
    assert abs(loss - tloss.item()) <= 1e-10 * abs(loss)
    grads = dict(tmodel.named_parameters())
    for key, g in model.grads.items():
        tg = grads[param_name(key)].grad.numpy()
        assert np.max(np.abs(g - tg)) <= 1e-10 * max(np.max(np.abs(tg)), 1e-300), key


@pytest.mark.parametrize("norm, m", [("batch", 2), ("batch", 16), ("group", 4), ("none", 8)])
def test_the_one_pass_scores_are_the_eval_gap_probes(norm, m):
    """train_vs_eval scores the final net exactly as the engine's eval_gap probe does."""
    from bnviz.train import train

    cfg = replace(
        vr.base_config("relu", 2, seed=3), norm=norm, batch_size=m, steps=60, record_every=60,
        dtype="float64", probes=("eval_gap",),
    )  # fmt: skip
    h = train(cfg)
    probe = h.probes["eval_gap"]
    ours = vr.train_vs_eval(vr.model_of(h), cfg)
    assert ours == (probe.acc_batch[-1], probe.acc_running[-1])
    if norm != "batch":
        assert ours[0] == ours[1]
