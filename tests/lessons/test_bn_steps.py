"""The lesson "BN step by step (Algorithm 1)", checked as numbers in float64.

Algorithm 1 on real BN inputs of the paper's net equals the core's batchnorm_forward and
PyTorch's batch_norm; gamma = sqrt(var + eps), beta = mu recovers the input to 1e-12; m = 2 gives
x_hat = +-sqrt(v / (v + eps)); standardizing keeps the correlation and whitening removes it;
BatchNorm2d's per-channel statistics equal torch.nn.BatchNorm2d's.
"""

from __future__ import annotations

import io
import math
from dataclasses import replace

import numpy as np
import pytest

from bnviz import functional as F
from bnviz.experiments import bn_steps as bs
from bnviz.figures import bn_steps as figs
from bnviz.train import build_model, load_data, train

TOL = 1e-12
STEPS = 200


@pytest.fixture(scope="module")
def snap():
    return bs.run(bs.config(lr=0.5, steps=STEPS, seed=0))


@pytest.fixture(scope="module")
def batch(snap):
    return bs.layer_batch(snap, "end", layer=2, m=60, seed=0)


def torch_bn(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float) -> np.ndarray:
    import torch

    out = torch.nn.functional.batch_norm(
        torch.tensor(x), None, None, torch.tensor(gamma), torch.tensor(beta), training=True,
        eps=eps,
    )  # fmt: skip
    return out.numpy()


# --------------------------------------------------------------------------- the run


def test_the_run_keeps_the_net_at_three_steps(snap):
    assert snap.steps == {"start": 0, "mid": STEPS // 2, "end": STEPS}
    assert snap.diverged_at is None
    assert snap.config.dtype == "float64" and snap.config.batch_size == 60
    assert snap.config.hidden == (100, 100, 100) and snap.config.norm == "batch"
    start, mid, end = (snap.states[k]["fc1.weight"] for k in bs.AT)
    assert not np.array_equal(start, mid) and not np.array_equal(mid, end)
    assert snap.test_acc["end"] > 0.8 > snap.test_acc["start"]


def test_the_start_state_is_where_training_started(snap):
    """The kept step-0 net is the run's own start: its eval-mode test accuracy is the one the
    run recorded at step 0."""
    model = bs.net_at(snap, "start").eval()
    data = load_data(snap.config)
    acc = np.mean(np.argmax(model.forward(np.asarray(data.x_test)), axis=1) == data.y_test)
    assert math.isclose(acc, snap.test_acc["start"], abs_tol=1e-6)


def test_the_mid_state_is_the_run_at_that_step(snap):
    """A fresh run to the mid step ends where the kept mid-run weights are."""
    mid = STEPS // 2
    h = train(replace(snap.config, steps=mid, record_every=mid))
    for key, value in h.final_state.items():
        np.testing.assert_array_equal(value, snap.states["mid"][key])


def test_the_batch_is_the_layers_real_input(snap, batch):
    assert batch.x.shape == (60, 100) and batch.dy.shape == (60, 100)
    np.testing.assert_allclose(batch.x, batch.u @ batch.weight.T, rtol=0, atol=1e-13)
    bigger = bs.layer_batch(snap, "end", 2, 100, 0)
    np.testing.assert_array_equal(bigger.rows[:60], batch.rows)  # a larger m adds digits
    y, _ = F.batchnorm_forward(batch.x, batch.gamma, batch.beta, bs.NET_EPS)
    np.testing.assert_allclose(batch.bn_out, y, rtol=0, atol=TOL)
    model = bs.net_at(snap, "end")
    np.testing.assert_array_equal(batch.gamma, model.params["bn2.gamma"])


def test_the_upstream_gradient_is_the_real_losss(snap, batch):
    """dL/dy at BN's output, against central differences of the loss through the rest of
    the net on a few entries."""
    from bnviz.gradcheck import numerical_gradient, rel_error

    model = bs.net_at(snap, "end")
    names = [n for n, _ in model.named_layers]
    rest = model.named_layers[names.index("bn2") + 1 :]
    y = batch.bn_out.copy()

    def loss() -> float:
        z = y
        for _, module in rest:
            z = module.forward(z)
        return F.cross_entropy(z, batch.labels)

    with model.frozen_stats():
        picked = y[:4, 7].copy()

        def f() -> float:
            y[:4, 7] = picked
            return loss()

        fd = numerical_gradient(f, picked, 1e-6)
    assert rel_error(fd, batch.dy[:4, 7]) < 1e-7


# --------------------------------------------------------------------------- Algorithm 1


@pytest.mark.parametrize("at", bs.AT)
@pytest.mark.parametrize("layer", (1, 3))
def test_the_walk_is_algorithm_1_as_the_core_and_torch_compute_it(snap, at, layer):
    lb = bs.layer_batch(snap, at, layer, 60, 3)
    w = bs.walk(lb, -1, "manual", 1.7, -0.4, 1e-3)
    assert np.isclose(w.mu, lb.x[:, w.unit].mean(), rtol=0, atol=TOL)
    assert np.isclose(w.var, lb.x[:, w.unit].var(), rtol=1e-12)  # biased, 1/m
    assert np.isclose(w.sq.mean(), w.var, rtol=1e-12)
    gamma, beta = np.full(100, 1.7), np.full(100, -0.4)
    y, cache = F.batchnorm_forward(lb.x, gamma, beta, 1e-3)
    np.testing.assert_allclose(w.x_hat, cache.x_hat[:, w.unit], rtol=0, atol=TOL)
    np.testing.assert_allclose(w.y, y[:, w.unit], rtol=0, atol=TOL)
    np.testing.assert_allclose(y, torch_bn(lb.x, gamma, beta, 1e-3), rtol=0, atol=1e-10)
    assert np.isclose(w.x_hat_var, w.var / (w.var + 1e-3), rtol=1e-10)


def test_the_off_centre_unit_is_the_one_furthest_from_zero(batch):
    j = bs.pick_unit(batch.x, -1)
    off = np.abs(batch.x.mean(axis=0)) / batch.x.std(axis=0)
    assert off[j] == off.max()
    assert bs.pick_unit(batch.x, 17) == 17
    with pytest.raises(ValueError, match="unit"):
        bs.pick_unit(batch.x, 100)


@pytest.mark.parametrize("m", (2, 3, 60, 256))
@pytest.mark.parametrize("eps", (1e-8, 1e-5, 1.0))
def test_gamma_sqrt_var_eps_and_beta_mu_recover_the_identity(snap, m, eps):
    for at in bs.AT:
        lb = bs.layer_batch(snap, at, 3, m, 0)
        for unit in (-1, 0, 50):
            w = bs.walk(lb, unit, "identity", 0.0, 0.0, eps)
            assert w.gamma == math.sqrt(w.var + eps) and w.beta == w.mu
            assert w.identity_error < TOL
            np.testing.assert_allclose(w.y, w.x, rtol=0, atol=TOL)


def test_learned_gamma_beta_are_the_nets(batch):
    w = bs.walk(batch, 5, "learned", 9.0, 9.0, bs.NET_EPS)
    assert (w.gamma, w.beta) == (batch.gamma[5], batch.beta[5])
    np.testing.assert_allclose(w.y, batch.bn_out[:, 5], rtol=0, atol=TOL)


@pytest.mark.parametrize("eps", (1e-8, 1e-5, 1e-2, 1.0))
def test_m_2_gives_plus_minus_sqrt_v_over_v_plus_eps(snap, eps):
    lb = bs.layer_batch(snap, "mid", 2, 2, 4)
    for unit in (0, 1, 42):
        pair = bs.pair_check(lb.x[:, unit], eps)
        assert pair.error < TOL
        v = ((pair.x[0] - pair.x[1]) / 2) ** 2
        assert np.isclose(pair.var, v, rtol=1e-14)
        assert np.allclose(np.abs(pair.x_hat), math.sqrt(v / (v + eps)), rtol=0, atol=TOL)
        assert pair.x_hat[0] == -pair.x_hat[1]
        w = bs.walk(lb, unit, "manual", 1.0, 0.0, eps)  # the walk at m = 2 shows the same
        np.testing.assert_allclose(w.x_hat, pair.x_hat, rtol=0, atol=TOL)


def test_m_1_outputs_beta_passes_no_gradient_and_training_refuses_it():
    import torch

    s = bs.single_check(0.37, 2.0, -0.25, 1e-5)
    assert (s.x_hat, s.y, s.dx) == (0.0, -0.25, 0.0)
    assert "at least 2 examples" in s.refusal
    bn = torch.nn.BatchNorm1d(1).double().train()
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        bn(torch.tensor([[0.37]], dtype=torch.float64))


def test_bad_settings_raise_value_errors(snap, batch):
    with pytest.raises(ValueError, match="batch size"):
        bs.layer_batch(snap, "end", 1, 1, 0)
    with pytest.raises(ValueError, match="hidden layer"):
        bs.layer_batch(snap, "end", 4, 60, 0)
    with pytest.raises(ValueError, match="at must be"):
        bs.layer_batch(snap, "later", 1, 60, 0)
    with pytest.raises(ValueError, match="eps"):
        bs.walk(batch, 0, "manual", 1.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="affine"):
        bs.walk(batch, 0, "magic", 1.0, 0.0, 1e-5)
    with pytest.raises(ValueError, match="steps"):
        bs.config(0.5, 1, 0)


# --------------------------------------------------------------------------- the sigmoid


@pytest.mark.parametrize("tol", bs.TOLERANCES)
def test_the_near_linear_edge_is_where_sigmoid_falls_tol_below_its_tangent(tol):
    c = bs.linear_edge(tol)
    rise = F.sigmoid(np.array([c]))[0] - 0.5
    assert math.isclose(rise / (c / 4), 1 - tol, rel_tol=0, abs_tol=1e-12)
    from scipy.stats import norm

    assert math.isclose(bs.normal_within(c), norm.cdf(c) - norm.cdf(-c), abs_tol=1e-14)


def test_the_sigmoid_regime_counts_the_batch(batch):
    w = bs.walk(batch, -1, "manual", 4.0, 2.0, 1e-5)
    sr = bs.sigmoid_regime(w, batch, 0.05)
    assert math.isclose(sr.linear_fraction, np.mean(np.abs(w.y) < sr.edge))
    assert math.isclose(sr.saturated_fraction, np.mean(np.abs(w.y) > 3.6369), abs_tol=1e-12)
    assert math.isclose(sr.normal_saturated, 2 * (1 - 0.5 * (1 + math.erf(3.6369 / 2**0.5))),
                        rel_tol=1e-3)  # fmt: skip
    assert sr.layer_y.size == batch.bn_out.size
    near = bs.sigmoid_regime(bs.walk(batch, -1, "manual", 1.0, 0.0, 1e-5), batch, 0.05)
    assert near.saturated_fraction <= sr.saturated_fraction
    np.testing.assert_allclose(sr.tangent, 0.5 + sr.grid / 4)


# --------------------------------------------------------------------------- whitening


def test_standardizing_keeps_the_correlation_and_whitening_removes_it(batch):
    for wh in (bs.real_slice(batch, 1e-12), bs.generated(0.8, 1e-12, 0)):
        raw, std, white = wh.planes
        assert math.isclose(std.corr, raw.corr, rel_tol=0, abs_tol=1e-9)
        np.testing.assert_allclose(np.diag(std.cov), 1.0, rtol=0, atol=1e-8)
        np.testing.assert_allclose(white.cov, np.eye(2), rtol=0, atol=1e-8)
        assert abs(raw.corr) > 0.5
    gen = bs.generated(-0.6, 1e-5, 1)
    assert abs(gen.raw.corr + 0.6) < 0.1  # 400 samples


def test_the_real_slice_is_the_most_correlated_pair(batch):
    i, j = bs.most_correlated_pair(batch.x)
    r = np.abs(np.corrcoef(batch.x, rowvar=False))
    np.fill_diagonal(r, 0)
    assert math.isclose(r[i, j], np.nanmax(r), rel_tol=1e-12)


def test_the_ellipse_is_the_covariance_contour():
    cov = np.array([[4.0, 1.2], [1.2, 1.0]])
    pts = bs.ellipse(np.zeros(2), cov, k=2.0)
    mahalanobis = np.einsum("ni,ij,nj->n", pts, np.linalg.inv(cov), pts)
    np.testing.assert_allclose(mahalanobis, 4.0, rtol=1e-12)


def test_whitening_cost_is_measured_and_grows_faster_than_bn(snap):
    cost = snap.cost
    assert cost.m == 60 and cost.dims.tolist() == list(bs.COST_DIMS)
    for arr in (cost.bn, cost.covariance, cost.eigen, cost.apply):
        assert np.all(arr > 0) and np.all(np.isfinite(arr))
    assert cost.whiten[-1] > 10 * cost.bn[-1]
    assert cost.whiten[-1] > cost.whiten[0]
    assert cost.slope(cost.eigen) > cost.slope(cost.bn)
    rows = cost.rows()
    assert [r["units D"] for r in rows] == list(bs.COST_DIMS)
    assert rows[-1]["work m·D vs m·D² + D³"] == "60,000 vs 1,060,000,000"


# --------------------------------------------------------------------------- conv axes


def test_batchnorm2d_matches_torch_on_digits_through_a_conv(batch):
    import torch

    cb = bs.conv_batch(batch, seed=0, eps=1e-5)
    n = batch.m
    assert cb.z.shape == (n, bs.CONV_CHANNELS, 8, 8) and cb.per_statistic == n * 64
    conv = torch.nn.functional.conv2d(
        torch.tensor(cb.images), torch.tensor(cb.kernels), padding=1
    ).numpy()
    np.testing.assert_allclose(cb.z, conv, rtol=0, atol=1e-12)
    tbn = torch.nn.BatchNorm2d(bs.CONV_CHANNELS, eps=1e-5, momentum=1.0, affine=False).double()
    out = tbn.train()(torch.tensor(cb.z)).detach().numpy()
    np.testing.assert_allclose(cb.x_hat, out, rtol=0, atol=1e-12)
    np.testing.assert_allclose(cb.mean, tbn.running_mean.numpy(), rtol=0, atol=1e-13)
    unbiased = cb.var * cb.per_statistic / (cb.per_statistic - 1)
    np.testing.assert_allclose(unbiased, tbn.running_var.numpy(), rtol=1e-12)
    np.testing.assert_allclose(cb.mean, cb.z.mean(axis=(0, 2, 3)), rtol=0, atol=1e-13)
    np.testing.assert_allclose(cb.out_mean, 0.0, atol=1e-12)
    np.testing.assert_allclose(cb.out_var, cb.var / (cb.var + 1e-5), rtol=1e-12)
    np.testing.assert_array_equal(cb.images.reshape(n, 64), batch.digits)


# --------------------------------------------------------------------------- sigma + eps


@pytest.mark.parametrize("eps", (1e-8, 1e-5, 1e-2, 1.0))
def test_sigma_plus_eps_and_the_sqrt_form_part_below_differ_below(batch, eps):
    s = bs.differ_below(eps)
    assert math.isclose(abs(math.sqrt(s * s + eps) / (s + eps) - 1), 0.01, rel_tol=1e-6)
    above = s * np.logspace(1e-6, 6, 500)
    assert np.all(np.abs(np.sqrt(above**2 + eps) / (above + eps) - 1) <= 0.01 + 1e-12)
    w = bs.walk(batch, 3, "manual", 1.0, 0.0, eps)
    se = bs.sigma_eps(w, batch)
    np.testing.assert_allclose(se.x_hat_plus, w.xc / (math.sqrt(w.var) + eps), rtol=1e-13)
    np.testing.assert_allclose(se.x_hat_sqrt, w.x_hat)
    assert math.isclose(se.unit_ratio, np.max(np.abs(se.x_hat_plus)) /
                        np.max(np.abs(se.x_hat_sqrt)), rel_tol=1e-12)  # fmt: skip


# --------------------------------------------------------------------------- downloads


def test_downloads_hold_the_batch_and_its_gradients(snap, batch):
    w = bs.walk(batch, -1, "manual", 1.0, 0.0, 1e-5)
    csv = bs.walk_csv(w, batch)
    lines = csv.strip().split("\n")
    assert lines[0].startswith("example,train_row,label,x,x_minus_mu")
    assert len(lines) == 61
    values = np.loadtxt(io.StringIO(csv), delimiter=",", skiprows=1)
    np.testing.assert_allclose(values[:, 3], w.x, rtol=1e-11)
    npz = np.load(io.BytesIO(bs.batch_npz(w, batch, snap)), allow_pickle=False)
    np.testing.assert_array_equal(npz["x"], batch.x)
    np.testing.assert_array_equal(npz["dL_dy"], batch.dy)
    _, cache = F.batchnorm_forward(batch.x, batch.gamma, batch.beta, bs.NET_EPS)
    np.testing.assert_allclose(npz["dL_dx"], F.batchnorm_backward(batch.dy, cache)[0])
    assert "net/fc1.weight" in npz.files
    assert bs.cost_csv(snap.cost).startswith("units_D,batch_m,bn_seconds")
    conv = np.load(io.BytesIO(bs.conv_npz(bs.conv_batch(batch, 0, 1e-5))), allow_pickle=False)
    assert conv["bn2d_out"].shape == (60, bs.CONV_CHANNELS, 8, 8)


# --------------------------------------------------------------------------- figures


def test_the_strip_plots_mark_each_lines_statistic(batch):
    w = bs.walk(batch, -1, "manual", 2.0, 0.5, 1e-5)
    for line in figs.LINES:
        fig = figs.strip(w, line)
        (trace,) = fig.data
        assert len(trace.x) == w.m
    x_fig = figs.strip(w, "x")
    assert any(f"μ_B = {w.mu:.4g}" in a.text for a in x_fig.layout.annotations)
    assert any(f"σ_B² = {w.var:.4g}" in a.text for a in figs.strip(w, "sq").layout.annotations)
    np.testing.assert_allclose(figs.strip(w, "y").data[0].x, w.y, rtol=1e-7)
    with pytest.raises(ValueError):
        figs.strip(w, "z")


def test_the_other_figures_build_from_the_data(snap, batch):
    w = bs.walk(batch, -1, "manual", 1.0, 0.0, 1e-5)
    sr = figs.sigmoid_regime(bs.sigmoid_regime(w, batch, 0.05), w.unit)
    assert len(sr.layout.shapes) == 3  # the near-linear band and the two saturated tails
    assert "near-linear" in sr.layout.title.text
    real = figs.planes(bs.real_slice(batch, 1e-5))
    assert len(real.data) == 6
    assert len(figs.cost_chart(snap.cost).data) == 4
    for kind in figs.NORM_KINDS:
        fig = figs.axes_picture(kind)
        filled = [s for s in fig.layout.shapes if s.fillcolor != "#FFFFFF"]
        assert filled, kind
    batch_cells = [s for s in figs.axes_picture("batch").layout.shapes if s.fillcolor != "#FFFFFF"]
    assert len(batch_cells) == 5 + 5 + 4  # a column of the MLP, of the front face, of the top
    conv = figs.conv_maps(bs.conv_batch(batch, 0, 1e-5))
    assert len(conv.data) == 1 + 2 * bs.CONV_CHANNELS
    assert np.asarray(conv.data[0].z).shape == (8, 8)
    se = figs.sigma_eps(bs.sigma_eps(w, batch))
    assert len(se.data) == 6 and len(se.layout.shapes) == 2


def test_every_preset_is_a_valid_view():
    for name, preset in bs.PRESETS.items():
        assert set(preset) == set(bs.DEFAULTS), name
        assert preset["at"] in bs.AT and preset["affine"] in bs.AFFINES
        assert bs.M_RANGE[0] <= preset["m"] <= bs.M_RANGE[1]
        bs.config(preset["lr"], preset["steps"], preset["seed"])


def test_the_net_is_the_papers(snap):
    data = load_data(snap.config)
    model = build_model(snap.config, data.n_features, data.n_classes)
    assert model.sizes == (64, 100, 100, 100, 10)
    assert model.activation == "sigmoid" and model.batchnorm


def test_a_run_survives_its_npz_and_the_default_ships(snap):
    """The stored form gives back every number the page reads, exactly; the page's default
    config is the shipped one, and its asset loads to the same net as a fresh run's start."""
    back = bs.snapshots_from_npz(bs.snapshots_to_npz(snap))
    assert back.config == snap.config
    assert back.steps == snap.steps and back.test_acc == snap.test_acc
    assert back.diverged_at == snap.diverged_at
    for at in bs.AT:
        assert back.states[at].keys() == snap.states[at].keys()
        for k, v in snap.states[at].items():
            np.testing.assert_array_equal(back.states[at][k], v)
    for k in bs.COST_FIELDS:
        np.testing.assert_array_equal(getattr(back.cost, k), getattr(snap.cost, k))
    assert back.cost.m == snap.cost.m
    lb, lb_back = (bs.layer_batch(s, "end", 3, 60, 0) for s in (snap, back))
    np.testing.assert_array_equal(lb.x, lb_back.x)

    from bnviz import assets

    d = bs.DEFAULTS
    cfg = bs.config(d["lr"], d["steps"], d["seed"])
    name = bs.EXPERIMENT.shipped_name(cfg)
    assert name == "bn-steps-default"
    stored = assets.load(name, bs.EXPERIMENT.decode)
    assert stored.config == cfg and stored.steps == {"start": 0, "mid": 500, "end": 1000}
    fresh_start = bs.layer_batch(bs.run(bs.config(d["lr"], 2, d["seed"])), "start", 3, 60, 0)
    np.testing.assert_allclose(bs.layer_batch(stored, "start", 3, 60, 0).x, fresh_start.x, 1e-12)
