"""The debate lesson's experiment and figures: the four arms, the cap on the landscape's step
sizes, the numbers the page states and the words it says about them (no Streamlit)."""

from __future__ import annotations

import io
import json
import math
from dataclasses import replace

import numpy as np
import pytest

from bnviz.experiments import debate
from bnviz.figures import debate as figs
from bnviz.measure.landscape import N_ETAS
from bnviz.train import TrainConfig, train, train_arms

SMALL = dict(debate.DEFAULTS, depth=2, width=32, steps=200, probe_every=50)


def run_values(values):
    cap = debate.EXPERIMENT(debate.cap_config(values))
    return cap, debate.EXPERIMENT(debate.configs(values, cap.landscape))


@pytest.fixture(scope="module")
def default():
    """The default preset ("Paper constants"), trained as the page trains it."""
    return run_values(debate.PRESETS["Paper constants"])


@pytest.fixture(scope="module")
def small():
    return run_values(SMALL)


@pytest.fixture(scope="module")
def diverging():
    """A deep linear net at rate 0.5: the plain arms blow up within a few steps."""
    values = dict(
        debate.DEFAULTS, activation="linear", depth=8, width=64, init="glorot", lr=0.5, steps=200
    )
    return run_values(values)


# --------------------------------------------------------------------------- configs


def test_the_default_is_four_arms_of_2000_steps_probed_every_50():
    cfg = debate.configs(debate.DEFAULTS)
    assert list(cfg.arms()) == list(debate.ARMS)
    assert cfg.base.steps == 2000 and cfg.base.record_every == 50
    assert cfg.base.probes == ("ics", "landscape") and cfg.base.landscape == (0.5, 4.0)
    assert cfg.arms()["noisy BN"] == {"norm": "batch", "bn_noise": 1.0}
    assert cfg.arms()["plain + noise"] == {"norm": "none", "bn_noise": 1.0}
    json.dumps(cfg.as_dict())  # the cache key
    assert debate.configs(dict(debate.DEFAULTS, noise=3.0)).as_dict() != cfg.as_dict()


def test_probe_points_are_capped():
    assert debate.record_every(2000, 50) == 50
    assert debate.record_every(5000, 10) == 25  # 200 probe points at most
    cfg = debate.configs(dict(debate.DEFAULTS, steps=5000, probe_every=10))
    assert cfg.base.steps // cfg.base.record_every == debate.MAX_PROBES


@pytest.mark.parametrize(
    "change, words",
    [
        (dict(steps=6000), "steps must be in"),
        (dict(noise=0.0), "noise must be"),
        (dict(noise=5.0), "noise must be"),
        (dict(lr=300.0), "exceeds 1000"),
    ],
)
def test_bad_settings_say_what_is_wrong(change, words):
    with pytest.raises(ValueError, match=words):
        values = dict(debate.DEFAULTS, **change)
        debate.cap_config(values)
        debate.configs(values)


class HereExecutor:
    """The executor protocol, run in this process: what the workers would return."""

    def __init__(self):
        self.sizes = []

    def run_many(self, calls, on_progress=None, size=None):
        self.sizes.append((len(calls), size))
        return [
            fn(*args, progress=lambda *v, i=i: on_progress and on_progress(i, v), **kw)
            for i, (fn, args, kw) in enumerate(calls)
        ]

    def is_running(self, size=1):
        return True


def test_two_workers_train_two_arms_each_and_return_what_one_process_would(small):
    _, here = small
    cap = debate.EXPERIMENT(debate.cap_config(SMALL))
    executor = HereExecutor()
    calls = []
    arms = debate.EXPERIMENT(
        debate.configs(SMALL, cap.landscape), lambda d, t: calls.append((d, t)), executor
    )
    assert (2, 2) in executor.sizes  # two calls, a pool of two
    assert arms.labels == list(debate.ARMS)
    for a, b in zip(arms, here, strict=True):
        assert a.label == b.label
        np.testing.assert_array_equal(a.loss, b.loss)
        np.testing.assert_array_equal(a.probes["ics"].grad_change, b.probes["ics"].grad_change)
        np.testing.assert_array_equal(a.probes["landscape"].loss, b.probes["landscape"].loss)
    assert calls[0] == (0, 200) and calls[-1] == (200, 200)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


# --------------------------------------------------------------------------- the cap


def cap_result(diverged):
    return debate.CapResult(
        lr=2.0, multiples=debate.eta_grid(0.5, 4.0), diverged_at=np.array(diverged), steps=300
    )


def test_the_cap_sits_just_below_the_first_diverging_step_size():
    none = cap_result([-1] * N_ETAS)
    assert none.first_diverging is None and none.landscape == (0.5, 4.0) and not none.capped
    assert "needs no cap" in none.describe()
    grid = debate.eta_grid(0.5, 4.0)
    late = cap_result([-1] * 5 + [40, 12, 3])
    assert late.first_diverging == pytest.approx(grid[5])
    lo, hi = late.landscape
    assert hi == pytest.approx(0.9 * grid[5], rel=1e-5) and lo == 0.5 and late.capped
    assert f"{grid[5] * 2.0:.3g}" in late.describe()
    early = cap_result([7] * N_ETAS)  # even half the rate diverges: the range slides down
    lo, hi = early.landscape
    assert hi == pytest.approx(0.45) and lo == pytest.approx(0.225)


def test_the_landscape_probe_visits_the_grid_the_cap_tried():
    np.testing.assert_allclose(
        debate.eta_grid(0.5, 4.0), debate.Cap(debate.configs(SMALL).base).multiples
    )
    h = train(replace(debate.configs(SMALL).base, steps=20, record_every=10, probes=("landscape",)))
    np.testing.assert_allclose(h.probes["landscape"].etas, debate.eta_grid(0.5, 4.0))


def test_the_cap_does_not_depend_on_the_noise_or_the_probes():
    """So moving the noise slider or the probe interval reuses the cached cap."""
    cap = debate.cap_config(debate.DEFAULTS).as_dict()
    for change in (dict(noise=3.0), dict(probe_every=100)):
        assert debate.cap_config(dict(debate.DEFAULTS, **change)).as_dict() == cap
    assert debate.cap_config(dict(debate.DEFAULTS, lr=2.0)).as_dict() != cap


def test_the_caps_plain_runs_start_where_the_plain_arm_starts(small):
    """Step 0's loss does not depend on the rate: every cap run's equals the plain arm's."""
    cap_cfg = debate.cap_config(SMALL)
    assert cap_cfg.base.norm == "none" and cap_cfg.base.bn_noise == 0 and cap_cfg.base.probes == ()
    assert cap_cfg.base.steps == 200  # min(steps, CAP_STEPS)
    first = [train(c).loss[0] for c in cap_cfg.configs()[:2]]
    _, arms = small
    assert first[0] == first[1] == pytest.approx(arms["plain"].loss[0], rel=1e-12)


def test_a_plain_net_that_diverges_caps_the_range(diverging):
    cap, arms = diverging
    assert cap.first_diverging == pytest.approx(0.5)  # diverges at every tried size
    assert cap.landscape == pytest.approx((0.225, 0.45))
    assert "first diverged at 0.25" in cap.describe()
    np.testing.assert_allclose(arms[0].probes["landscape"].etas, debate.eta_grid(*cap.landscape))


def test_the_default_needs_no_cap(default):
    cap, _ = default
    assert cap.first_diverging is None and cap.landscape == debate.ETA_RANGE


# --------------------------------------------------------------------------- the paper's result


def test_the_default_reproduces_the_direction_of_the_noisy_bn_result(default):
    """Santurkar et al.: noisy BN trains about as well as BN and far better than plain, while
    its distributions are less stable than even the plain net's. On the default preset the
    first half holds, and the second holds for single units (the paper's view) but not for
    the pooled whole-layer W1; the page says both, with the numbers."""
    _, arms = default
    board = {s.label: s for s in debate.scoreboard(arms)}
    plain, bn, noisy = board["plain"], board["BN"], board["noisy BN"]
    assert all(h.diverged_at is None for h in arms)
    assert abs(noisy.final_acc - bn.final_acc) <= debate.CLOSE_ACC
    assert noisy.final_acc > plain.final_acc + 0.1
    assert noisy.unit_drift > plain.unit_drift > bn.unit_drift
    assert noisy.layer_drift < plain.layer_drift
    found = debate.findings(arms)
    assert found.noisy_close_to_bn and found.noisy_above_plain
    assert found.noisy_unit_drift_above_plain and not found.noisy_layer_drift_above_plain
    acc, unit, pooled, _ = found.noisy_bn
    assert debate.pct(noisy.final_acc) in acc and "about as well as BN, and better" in acc
    assert debate.num(noisy.unit_drift) in unit and "more than even the plain net's" in unit
    assert debate.num(noisy.layer_drift) in pooled and "*less* than the plain net" in pooled


def test_on_the_default_bn_shows_more_gradient_change_than_plain(default):
    """Santurkar et al.'s Definition 2.1: BN nets show similar or larger 'ICS'. Here larger."""
    _, arms = default
    board = {s.label: s for s in debate.scoreboard(arms)}
    assert board["BN"].grad_rel > debate.SIMILAR * board["plain"].grad_rel
    found = debate.findings(arms)
    assert found.bn_ics == "larger"
    assert "**more internal covariate shift than** the plain net" in found.ics[1]


def test_the_landscape_words_follow_the_numbers(default):
    _, arms = default
    board = {s.label: s for s in debate.scoreboard(arms)}
    found = debate.findings(arms)
    for field, verdict in (
        ("loss_range", found.bn_loss_range),
        ("predictiveness", found.bn_predictiveness),
        ("beta", found.bn_beta),
    ):
        assert verdict == debate.compare(
            getattr(board["BN"], field), getattr(board["plain"], field)
        )
        assert debate.num(getattr(board["BN"], field)) in found.landscape[0]
    smaller = [
        v == "smaller" for v in (found.bn_loss_range, found.bn_predictiveness, found.bn_beta)
    ]
    if all(smaller):
        assert "All three are smaller" in found.landscape[1]
    elif any(smaller):
        assert "Only part of the picture" in found.landscape[1]
    else:
        assert "None of the three" in found.landscape[1]


# --------------------------------------------------------------------------- the numbers


def test_the_scoreboard_is_the_mean_of_the_records(small):
    _, arms = small
    for h, s in zip(arms, debate.scoreboard(arms), strict=True):
        ics, land = h.probes["ics"], h.probes["landscape"]
        assert s.grad_change == pytest.approx(np.nanmean(ics.grad_change[1:, 1:]))
        assert s.grad_cos == pytest.approx(np.nanmean(ics.grad_cos[1:, 1:]))
        rel = ics.grad_change[1:, 1:] / ics.grad_norm[1:, 1:]
        assert s.grad_rel == pytest.approx(np.nanmean(rel))
        assert s.beta == pytest.approx(np.nanmean(land.beta_smoothness[1:]))
        assert s.loss_range == pytest.approx(np.nanmean(land.loss_range[1:]))
        drift = np.concatenate([lay.sites["act_in"].drift_prev[1:] for lay in h.layers])
        assert s.layer_drift == pytest.approx(float(np.mean(drift.astype(np.float64))))
        assert s.final_acc == pytest.approx(float(h.test_acc[-1]))


def test_layer_one_has_no_gradient_change_by_definition(small):
    _, arms = small
    for h in arms:
        ics = h.probes["ics"]
        assert np.all(ics.grad_change[1:, 0] == 0) and np.allclose(ics.grad_cos[1:, 0], 1)
        assert np.all(ics.grad_change[1:, 1:] > 0)


def test_unit_drift_is_the_mean_move_of_the_unit_percentiles(small):
    _, arms = small
    h = arms["plain"]
    rec = h.layers[1].sites["act_in"]
    pct = rec.unit_pct.astype(np.float64)
    expected = np.abs(pct[2] - pct[1]).mean()
    assert debate.unit_drift(h, 2)[2] == pytest.approx(expected)
    assert np.isnan(debate.unit_drift(h, 2)[0])
    shifted = replace(rec, unit_pct=np.cumsum(np.full_like(rec.unit_pct, 0.5), axis=0))
    layers = [*h.layers]
    layers[1] = replace(h.layers[1], sites={**h.layers[1].sites, "act_in": shifted})
    moved = replace(h, layers=layers)
    np.testing.assert_allclose(debate.unit_drift(moved, 2)[1:], 0.5)


def test_the_landscape_starts_at_the_steps_own_loss():
    """The step-back view draws eta = 0 from the run's loss of that step: the probe's loss at
    a vanishing step size is that loss, for every arm (noise draws and batch statistics
    replayed)."""
    base = replace(debate.configs(SMALL).base, steps=60, record_every=20, landscape=(1e-6, 1e-5))
    arms = train_arms(base, debate.Debate(base, 1.0).arms())
    for h in arms:
        land = h.probes["landscape"]
        steps = h.record_steps[1:]
        np.testing.assert_allclose(land.loss[1:, 0], h.loss[steps - 1], rtol=1e-5)


def test_a_diverging_arm_is_reported_and_its_numbers_left_out(diverging):
    _, arms = diverging
    board = {s.label: s for s in debate.scoreboard(arms)}
    assert board["plain"].diverged_at is not None and not board["plain"].learned
    assert math.isnan(board["plain"].grad_change)
    found = debate.findings(arms)
    assert "diverged at step" in found.noisy_bn[0]
    assert "did not learn here" in found.noisy_bn[3]
    assert any("cannot be compared" in s for s in found.ics)
    assert "deep linear net" in found.ics[-1]


# --------------------------------------------------------------------------- words


def test_comparisons_and_ratios():
    assert debate.compare(2.0, 1.0) == "larger" and debate.compare(1.0, 2.0) == "smaller"
    assert debate.compare(1.1, 1.0) == "similar"
    assert debate.compare(math.nan, 1.0) == "not comparable"
    assert debate.ratio(2.0, 1.0) == "2x" and debate.ratio(3800.0, 1.0) == "3,800x"
    assert debate.ratio(1.0, 0.0) == "—"
    assert debate.pct(0.9721) == "97.2%" and debate.num(math.nan) == "—"


# --------------------------------------------------------------------------- downloads


def test_downloads_hold_every_curve(small):
    cap, arms = small
    records = debate.records_csv(arms).splitlines()
    assert len(records) == 1 + sum(len(h.record_steps) for h in arms)
    header = records[0].split(",")
    assert {"arm", "step", "layer2_grad_change", "beta_smoothness", "loss_at_eta7"} <= set(header)
    board = debate.scoreboard_csv(arms).splitlines()
    assert len(board) == 5 and board[1].startswith("plain,")
    loss = debate.loss_csv(arms).splitlines()
    assert (
        len(loss) == 1 + 200 and loss[0] == "step,plain_loss,bn_loss,noisy_bn_loss,plain_noise_loss"
    )
    with np.load(io.BytesIO(debate.arms_npz(arms, cap)), allow_pickle=False) as z:
        np.testing.assert_array_equal(z["noisy_bn/loss"], arms["noisy BN"].loss)
        np.testing.assert_array_equal(z["bn/ics/grad_cos"], arms["BN"].probes["ics"].grad_cos)
        assert tuple(z["cap/landscape"]) == cap.landscape


# --------------------------------------------------------------------------- figures


def test_the_figures_draw_every_arm(small):
    _, arms = small
    hist = figs.histograms(arms, 2)
    assert len(hist.frames) == len(arms[0].record_steps) and len(hist.data) == 3 * 4
    assert {hist.layout[f"xaxis{k}"].title.text for k in ("", 2, 3, 4)} == {"sigmoid input"}
    assert [t.name for t in hist.data[:4]] == list(debate.ARMS)
    unit = figs.unit_percentiles(arms, 2)
    assert len(unit.data) == 3 * 4
    drift = figs.drift_by_arm(arms, 2)
    assert [t.name for t in drift.data[:4]] == list(debate.ARMS)
    ics = figs.ics_over_training(arms)
    assert {t.name for t in ics.data} == set(figs.ICS_ARMS)
    assert len(ics.data) == 2 * 1 * 3  # two measures, one layer above the first, three arms
    land = figs.landscape_over_training(arms)
    assert {t.name for t in land.data if t.showlegend} == {"plain", "BN"}
    every = figs.landscape_over_training(arms, debate.ARMS)
    assert {t.name for t in every.data if t.showlegend} == set(debate.ARMS)
    back = figs.step_back(arms, 100)
    assert len(back.data) == 2 * 4 and len(back.data[0].x) == 1 + N_ETAS
    h = arms["BN"]
    assert back.data[2].y[0] == pytest.approx(h.loss[99], rel=1e-5)  # eta = 0: the step's loss
    r = int(np.flatnonzero(h.record_steps == 100)[0])
    np.testing.assert_allclose(back.data[2].y[1:], h.probes["landscape"].loss[r], rtol=1e-5)
    assert "Definition 2.1" in figs.ics_diagram(2).layout.title.text.replace("<br>", " ")


def test_figures_of_a_diverged_arm_and_of_one_layer(diverging):
    _, arms = diverging
    back = figs.step_back(arms, 50)
    assert any("no probe at step 50" in a.text for a in back.layout.annotations)
    figs.landscape_over_training(arms, debate.ARMS)
    figs.ics_over_training(arms)
    figs.drift_by_arm(arms, 8)
    one = TrainConfig(hidden=(16,), steps=20, record_every=10, probes=debate.PROBES)
    arm = train_arms(one, {"plain": {"norm": "none"}, "BN": {"norm": "batch"}})
    fig = figs.ics_over_training(arm)
    assert "G′ = G" in fig.layout.annotations[0].text


# --------------------------------------------------------------------------- the shipped run


def assert_same_arms(a, b):
    """Every array of every arm, exactly; the per-step loss, which only the loss chart and the
    "stalled" test read, is stored in float32."""
    assert a.labels == b.labels
    for ha, hb in zip(a, b, strict=True):
        assert ha.config == hb.config and ha.label == hb.label
        assert ha.diverged_at == hb.diverged_at
        np.testing.assert_array_equal(ha.loss.astype(np.float32), hb.loss)
        for name in ("record_steps", "test_loss", "test_acc", "eval_steps", "eval_acc"):
            np.testing.assert_array_equal(getattr(ha, name), getattr(hb, name))
        assert ha.probes.keys() == hb.probes.keys()
        for probe in ha.probes:
            for key, value in vars(ha.probes[probe]).items():
                np.testing.assert_array_equal(value, getattr(hb.probes[probe], key))
        for la, lb in zip(ha.layers, hb.layers, strict=True):
            assert la.sites.keys() == lb.sites.keys()
            for site in la.sites:
                for key, value in vars(la.sites[site]).items():
                    np.testing.assert_array_equal(value, getattr(lb.sites[site], key))
            for key in ("grad_norm", "update_ratio", "weight_norm"):
                np.testing.assert_array_equal(getattr(la, key), getattr(lb, key))


def test_a_run_and_its_cap_survive_their_npz(small, diverging):
    """The stored form gives back every number the page reads, exactly, with no pickle: the
    arms (a diverged one too) and the cap (one that caps and one that does not)."""
    for cap, arms in (small, diverging):
        raw = debate.result_to_npz(arms)
        with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
            assert all(npz[k].dtype != object for k in npz.files)
        back = debate.result_from_npz(raw)
        assert_same_arms(arms, back)
        assert debate.findings(back) == debate.findings(arms)
        cap_back = debate.result_from_npz(debate.result_to_npz(cap))
        assert isinstance(cap_back, debate.CapResult)
        assert (cap_back.lr, cap_back.steps) == (cap.lr, cap.steps)
        np.testing.assert_array_equal(cap_back.multiples, cap.multiples)
        np.testing.assert_array_equal(cap_back.diverged_at, cap.diverged_at)
        assert cap_back.landscape == cap.landscape and cap_back.describe() == cap.describe()
    assert diverging[0].capped and not small[0].capped


def test_the_default_view_ships_and_matches_a_fresh_run(default):
    """The page's default cap and arms are the shipped ones, and the assets hold what training
    them now gives: the same cap and, to float32 round-off, the same arms and the same words."""
    from bnviz import assets

    values = dict(debate.DEFAULTS)
    cap_cfg = debate.cap_config(values)
    assert debate.EXPERIMENT.shipped_name(cap_cfg) == "debate-default-cap"
    cap = assets.load("debate-default-cap", debate.EXPERIMENT.decode)
    cfg = debate.configs(values, cap.landscape)  # as the page builds it
    assert debate.EXPERIMENT.shipped_name(cfg) == "debate-default"
    assert debate.EXPERIMENT.shipped_name(debate.configs(dict(values, seed=1))) is None
    fresh_cap, fresh = default
    np.testing.assert_array_equal(cap.diverged_at, fresh_cap.diverged_at)
    assert cap.landscape == fresh_cap.landscape == debate.ETA_RANGE
    stored = assets.load("debate-default", debate.EXPERIMENT.decode)
    assert stored.labels == list(debate.ARMS)
    for a, b in zip(stored, fresh, strict=True):
        assert a.config == b.config and a.diverged_at == b.diverged_at
        np.testing.assert_allclose(a.loss, b.loss, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(a.test_acc, b.test_acc, atol=0.01)
        for name in ("grad_change", "grad_cos"):
            np.testing.assert_allclose(
                getattr(a.probes["ics"], name), getattr(b.probes["ics"], name), rtol=1e-3
            )
        np.testing.assert_allclose(
            a.probes["landscape"].loss, b.probes["landscape"].loss, rtol=1e-3, atol=1e-5
        )
    got, want = debate.findings(stored), debate.findings(fresh)
    for name in ("noisy_close_to_bn", "noisy_above_plain", "noisy_unit_drift_above_plain"):
        assert getattr(got, name) == getattr(want, name)
    assert (got.bn_ics, got.bn_beta, got.bn_loss_range) == (
        want.bn_ics,
        want.bn_beta,
        want.bn_loss_range,
    )
