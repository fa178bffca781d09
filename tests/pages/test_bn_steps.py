"""The BN-step-by-step page under Streamlit's AppTest: defaults, presets, bad links, extremes,
and the page's numbers against the core's (a run of the same config trained here).

The page must never end in an exception or an error: bad input becomes a notice and defaults.
"""

from __future__ import annotations

import re

import pytest

from bnviz.experiments import bn_steps as bs
from tests.helpers import assert_clean, chart_title, charts, open_page

FAST = {"steps": "200"}  # the shortest run the page offers; the defaults are checked once
N_CHARTS = 12  # five strip plots, sigmoid, two planes, cost, axes, conv maps, sigma + eps
IDENTITY = "max |y − x| with γ = √(σ_B² + ε), β = μ_B"


def metrics(at) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def group(at, name: str):
    """The segmented control of a view setting."""
    return next(b for b in at.get("button_group") if b.key == f"bn_steps.{name}")


def markdown(at) -> str:
    return "\n".join(m.value for m in at.markdown)


@pytest.fixture(scope="module")
def snap():
    return bs.run(bs.config(0.5, 200, 0))


def test_defaults_train_the_paper_net_and_show_every_line():
    at = open_page("bn-steps")
    assert_clean(at)
    assert not at.warning
    assert len(charts(at)) == N_CHARTS
    assert dict(at.query_params) == {}
    assert group(at, "at").value == "end"
    assert len(at.latex) >= 11  # the five lines, and the formulas
    assert len(at.get("download_button")) == 4
    assert float(metrics(at)[IDENTITY]) < 1e-12
    assert "after 1,000 training steps" in at.caption[0].value
    table = at.table[0].value  # the whitening cost, measured
    assert list(table["units D"]) == list(bs.COST_DIMS)


def test_the_pages_numbers_are_the_cores(snap):
    at = open_page("bn-steps", {**FAST, "m": "37", "gamma": "1.5", "beta": "-0.5", "eps": "1e-3"})
    assert_clean(at)
    lb = bs.layer_batch(snap, "end", 3, 37, 0)
    w = bs.walk(lb, -1, "manual", 1.5, -0.5, 1e-3)
    text = markdown(at)
    assert f"μ_B = **{w.mu:.6g}**" in text
    assert f"σ_B² = **{w.var:.6g}**" in text
    assert f"√(σ_B² + ε) = {w.std_eps:.6g}" in text
    m = metrics(at)
    assert m["γ, β in use"] == "1.5, -0.5"
    assert m["mean and std of y"] == f"{w.y.mean():.4g}, {w.y.std():.4g}"
    assert f"unit #{w.unit}: σ_B" in m
    sr = bs.sigmoid_regime(w, lb, 0.05)
    assert m["this unit: near-linear"] == f"{sr.linear_fraction:.1%}"
    strip_x = charts(at)[0]["data"][0]["x"]
    assert strip_x == pytest.approx(w.x.tolist(), rel=1e-7)
    assert chart_title(charts(at)[5]).startswith(f"Unit #{w.unit}:")


@pytest.mark.parametrize("preset", list(bs.PRESETS))
def test_every_preset(preset):
    at = open_page("bn-steps", FAST)
    at.button(key=f"bn_steps.preset:{preset}").click().run()
    assert_clean(at)
    assert len(charts(at)) == N_CHARTS
    m = metrics(at)
    assert float(m[IDENTITY]) < 1e-12
    p = bs.PRESETS[preset]
    assert at.slider(key="bn_steps.m").value == p["m"]
    assert group(at, "at").value == p["at"]
    if preset == "Recover the identity":
        assert group(at, "affine").value == "identity"
        assert float(m["max |y − x| now"]) < 1e-12
        assert at.slider(key="bn_steps.gamma").disabled
        assert any("identity, recovered" in s.value for s in at.success)
    elif preset == "Batch of two":
        reveal = next(e for e in at.expander if e.label == "Reveal")
        text = " ".join(md.value for md in reveal.markdown)
        assert "the closed form ±" in text
        assert float(re.search(r"difference ([0-9.e+-]+)\.", text).group(1)) < 1e-12
        assert len(charts(at)[3]["data"][0]["x"]) == 2  # the x_hat strip: two values
    elif preset == "Into saturation":
        assert at.slider(key="bn_steps.gamma").value == 4.0
        assert float(m["this unit: saturated"].rstrip("%")) > 10
    elif preset == "Untrained net (step 0)":
        assert "after 0 training steps" in at.caption[0].value
    elif preset == "Large eps: sigma + eps differs":
        assert at.select_slider(key="bn_steps.eps").value == 0.01
        differ = next(v for k, v in m.items() if k.endswith("differing > 1%"))
        assert float(differ.rstrip("%")) > 50


def test_garbage_link_falls_back_with_a_notice():
    query = {
        "lr": "fast",
        "at": "yesterday",
        "layer": "7",
        "unit": "-3",
        "m": "1",
        "gamma": "nan",
        "beta": "1e99",
        "eps": "-1",
        "affine": "sideways",
        "tolerance": "0.5",
        "rho": "2",
        "norm_view": "<script>",
        "preset": "no-such-preset",
        "junk": "1",
        **FAST,
    }
    at = open_page("bn-steps", query)
    assert_clean(at)
    (warning,) = at.warning
    for words in (
        "lr=fast",
        "at=yesterday",
        "layer=7",
        "unit=-3",
        "m=1",
        "gamma=nan",
        "beta=1e99",
        "eps=-1",
        "affine=sideways",
        "tolerance=0.5",
        "norm_view=<script>",
        "rho=2",
        "preset=no-such-preset",
        "` junk ` is not a setting",
    ):
        assert words in warning.value, words
    assert at.slider(key="bn_steps.m").value == 60
    assert group(at, "affine").value == "manual"
    assert len(charts(at)) == N_CHARTS


def test_link_reproduces_the_view():
    query = {
        "at": "mid",
        "layer": "1",
        "unit": "12",
        "m": "17",
        "affine": "learned",
        "eps": "0.001",
        "tolerance": "0.1",
        "rho": "-0.5",
        "norm_view": "group",
        "seed": "3",
        **FAST,
    }
    at = open_page("bn-steps", query)
    assert_clean(at)
    assert not at.warning
    assert at.selectbox(key="bn_steps.unit").value == 12
    assert group(at, "norm_view").value == "group"
    assert "Unit **#12** of hidden layer 1" in at.caption[0].value
    assert "after 100 training steps" in at.caption[0].value
    assert {k: at.query_params[k] for k in query} == query


def test_moving_the_view_controls():
    at = open_page("bn-steps", FAST)
    group(at, "affine").set_value("identity").run()
    assert_clean(at)
    assert float(metrics(at)["max |y − x| now"]) < 1e-12
    assert at.query_params["affine"] == "identity"
    at.slider(key="bn_steps.m").set_value(2).run()
    assert_clean(at)
    strip_xhat = charts(at)[3]["data"][0]["x"]
    assert len(strip_xhat) == 2 and strip_xhat[0] == -strip_xhat[1] and abs(strip_xhat[0]) < 1
    at.radio(key="bn_steps.predict-pair").set_value("−1 and +1, almost exactly").run()
    assert_clean(at)
    reveal = next(e for e in at.expander if e.label == "Reveal")
    assert reveal.markdown[0].value == "Right."


def test_presenter_mode_holds_the_answer_until_asked():
    at = open_page("bn-steps")
    at.session_state["present"] = True  # the sidebar toggle, switched on
    at.run()
    assert_clean(at)
    assert not [e for e in at.expander if e.label == "Reveal"]
    at.button(key="bn_steps.pair.reveal").click().run()
    assert_clean(at)
    reveal = next(e for e in at.expander if e.label == "Reveal")
    assert "x̂ = ±√(v/(v + ε))" in reveal.markdown[-1].value


def test_sliders_at_both_ends():
    low = {
        "lr": "0.01",
        "steps": "200",
        "seed": "0",
        "at": "start",
        "layer": "1",
        "unit": "0",
        "m": "2",
        "gamma": "0",
        "beta": "-5",
        "eps": "1e-08",
        "tolerance": "0.01",
        "rho": "-0.95",
        "norm_view": "batch",
    }
    high = {
        "lr": "5",
        "steps": "200",
        "seed": "99",
        "at": "end",
        "layer": "3",
        "unit": "99",
        "m": "256",
        "gamma": "5",
        "beta": "5",
        "eps": "1",
        "tolerance": "0.2",
        "rho": "0.95",
        "norm_view": "instance",
    }
    for query in (low, high):
        at = open_page("bn-steps", query)
        assert_clean(at)
        assert not at.warning
        assert len(charts(at)) == N_CHARTS
        assert float(metrics(at)[IDENTITY]) < 1e-12
