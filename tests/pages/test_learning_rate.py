"""The learning-rate page under Streamlit's AppTest: defaults, presets, bad links, extremes.

Divergence and stalling are results the page states in words; neither may end in an exception.
"""

from __future__ import annotations

import pytest

from bnviz.experiments import learning_rate as lr
from tests.helpers import assert_clean, chart_title, charts, open_page

KEY = "learning_rate"
FAST = {"steps": "200", "sweep_steps": "200", "grid_steps": "100"}


def titles(at) -> list[str]:
    return [chart_title(f) for f in charts(at)]


def test_defaults_draw_every_chart():
    at = open_page("learning-rate")
    assert_clean(at)
    assert not at.warning
    figs = charts(at)
    assert len(figs) == 4
    loss, acc, sweep, grid = figs
    assert loss["layout"]["yaxis"]["type"] == "log"
    assert sweep["layout"]["xaxis"]["type"] == "log"
    assert chart_title(sweep) == "Learning-rate sweep: 1,000 steps per net"
    assert len([t for t in grid["data"] if t["type"] == "heatmap"]) >= 2
    metrics = {m.label: m.value for m in at.metric}
    assert set(metrics) == {"plain net at rate 1: test accuracy", "BN net at rate 1: test accuracy"}
    assert float(metrics["BN net at rate 1: test accuracy"].rstrip("%")) > 90
    assert at.select_slider(key=f"{KEY}.lr_plain").value == 1.0
    assert at.select_slider(key=f"{KEY}.lr_bn").value == 1.0
    assert dict(at.query_params) == {}
    text = " ".join(m.value for m in at.markdown)
    assert "**BN** learned at 0.001 to 30." in text
    # the plain net ends at 38%: less than halfway from chance to 100%, so it stalled
    assert metrics["plain net at rate 1: test accuracy"] == "38.3%"
    (info,) = at.info
    assert "plain net **stalled**" in info.value and "56% this page counts as learned" in info.value
    assert "**plain** learned at 3; stalled at 0.001 to 1 and 10 to 30." in text
    assert "hypothesis" in text and "Bjorck" in text
    assert len(at.table) == 1 and len(at.get("download_button")) == 3


def test_too_high_rate_preset_plain_stalls_and_bn_learns():
    at = open_page("learning-rate", FAST)
    at.button(key=f"{KEY}.preset:Too-high learning rate").click().run()
    assert_clean(at)
    assert at.query_params["lr_plain"] == "10" and at.query_params["lr_bn"] == "10"
    assert at.select_slider(key=f"{KEY}.lr_plain").value == 10.0
    (info,) = at.info
    assert "plain net **stalled**" in info.value
    assert not any("diverged" in w.value for w in at.warning)
    metrics = {m.label: m.value for m in at.metric}
    assert float(metrics["BN net at rate 10: test accuracy"].rstrip("%")) > 90
    assert float(metrics["plain net at rate 10: test accuracy"].rstrip("%")) < 20


def test_large_init_preset_plain_diverges():
    at = open_page("learning-rate", FAST)
    at.button(key=f"{KEY}.preset:Large init: plain diverges").click().run()
    assert_clean(at)
    (warning,) = at.warning
    assert "plain net **diverged at step 16**" in warning.value
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["plain net at rate 30: test accuracy"] == "diverged"
    assert float(metrics["BN net at rate 30: test accuracy"].rstrip("%")) > 85
    loss = charts(at)[0]
    assert any("diverged at step 16" in a.get("text", "") for a in loss["layout"]["annotations"])


@pytest.mark.parametrize("name", ["Paper-like: same rate for both", "BN at 30x"])
def test_other_presets(name):
    at = open_page("learning-rate", FAST)
    at.button(key=f"{KEY}.preset:{name}").click().run()
    assert_clean(at)
    preset = lr.PRESETS[name]
    assert at.select_slider(key=f"{KEY}.lr_plain").value == preset["lr_plain"]
    assert at.select_slider(key=f"{KEY}.lr_bn").value == preset["lr_bn"]
    assert at.select_slider(key=f"{KEY}.steps").value == preset["steps"]
    assert len(charts(at)) == 4


def test_garbage_link_falls_back_with_a_notice():
    query = {
        "lr_plain": "fast",
        "lr_bn": "1e6",
        "depth": "-2",
        "activation": "softmax",
        "seed": "abc",
        "junk": "1",
        "preset": "nope",
        **FAST,
    }
    at = open_page("learning-rate", query)
    assert_clean(at)
    (warning,) = at.warning
    for words in (
        "lr_plain=fast",
        "lr_bn=1e6",
        "depth=-2",
        "activation=softmax",
        "seed=abc",
        "` junk ` is not a setting",
        "preset=nope",
    ):
        assert words in warning.value
    assert at.select_slider(key=f"{KEY}.lr_plain").value == 1.0
    assert at.select_slider(key=f"{KEY}.lr_bn").value == 1.0
    assert at.slider(key=f"{KEY}.depth").value == 3
    assert len(charts(at)) == 4


def test_link_reproduces_the_view():
    query = {
        "lr_plain": "0.3",
        "lr_bn": "20",
        "activation": "tanh",
        "depth": "2",
        "seed": "7",
        "init_scale": "3",
        **FAST,
    }
    at = open_page("learning-rate", query)
    assert_clean(at)
    assert not any("could not be used" in w.value for w in at.warning)
    assert at.select_slider(key=f"{KEY}.lr_bn").value == 20.0
    assert at.selectbox(key=f"{KEY}.activation").value == "tanh"
    assert {k: at.query_params[k] for k in query} == query
    assert titles(at)[0] == "Training loss: plain at 0.3 vs BN at 20"


@pytest.mark.parametrize(
    "query",
    [
        {"lr_plain": "30", "lr_bn": "30", "activation": "relu", "init_scale": "100", "depth": "6"},
        {"lr_plain": "0.001", "lr_bn": "0.001", "init_scale": "0.1", "depth": "1", "seed": "99"},
        {"lr_plain": "30", "lr_bn": "30", "activation": "tanh"},
    ],
)
def test_sliders_at_the_ends_give_results_not_crashes(query):
    at = open_page("learning-rate", {**query, **FAST})
    assert_clean(at)
    assert len(charts(at)) == 4
    for w in at.warning:
        assert "diverged at step" in w.value


def test_moving_a_rate_slider_retrains_that_run():
    at = open_page("learning-rate", FAST)
    at.select_slider(key=f"{KEY}.lr_bn").set_value(20.0).run()
    assert_clean(at)
    assert at.query_params["lr_bn"] == "20"
    assert titles(at)[1] == "Test accuracy: plain at 1 vs BN at 20"
