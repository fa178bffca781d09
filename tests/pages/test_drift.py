"""Every page under Streamlit's AppTest: defaults, presets, bad links, extreme settings.

A page must never end in an exception: bad input becomes a message and sane defaults.
"""

from __future__ import annotations

import pytest

from tests.helpers import assert_clean, chart_title, charts, open_page

FAST = {"steps": "200"}  # short runs keep the suite quick; the defaults are checked once


def test_drift_defaults_train_twins_and_draw_every_figure():
    at = open_page("drift")
    assert_clean(at)
    assert not at.warning
    figs = charts(at)
    assert len(figs) == 7
    hist = figs[0]
    assert len(hist["frames"]) == 101  # 2,000 steps recorded every 20
    titles = [chart_title(f) for f in figs]
    assert any("accuracy" in t.lower() for t in titles)
    assert any("15th, 50th and 85th" in t for t in titles)
    metrics = {m.label: m.value for m in at.metric}
    assert set(metrics) >= {"plain net: test accuracy", "BN net: test accuracy"}
    assert float(metrics["BN net: test accuracy"].rstrip("%")) > 90
    assert dict(at.query_params) == {}  # defaults make a clean link


def test_drift_paper_preset_is_served_from_assets():
    at = open_page("drift", FAST)
    at.button(key="drift.preset:Paper Figure 1").click().run()
    assert_clean(at)
    assert at.query_params["steps"] == "50000"
    hist = charts(at)[0]
    assert hist["frames"][-1]["name"] == "50000"


def test_drift_preset_by_name_in_the_link():
    at = open_page("drift", {"preset": "paper-figure-1"})
    assert_clean(at)
    assert not at.warning
    assert at.select_slider(key="drift.steps").value == 50000
    assert charts(at)[0]["frames"][-1]["name"] == "50000"


def test_drift_deep_preset():
    at = open_page("drift", FAST)
    at.button(key="drift.preset:Deep sigmoid, high learning rate").click().run()
    assert_clean(at)
    assert at.select_slider(key="drift.lr").value == 5.0
    assert at.slider(key="drift.depth").value == 6
    hist = charts(at)[0]
    assert chart_title(hist).startswith("Layer 6 ")


def test_drift_garbage_link_falls_back_with_a_notice():
    at = open_page(
        "drift", {"lr": "fast", "depth": "-2", "dataset": "imagenet", "junk": "1", **FAST}
    )
    assert_clean(at)
    (warning,) = at.warning
    for words in ("lr=fast", "depth=-2", "dataset=imagenet", "` junk ` is not a setting"):
        assert words in warning.value
    assert at.select_slider(key="drift.lr").value == 0.5
    assert at.slider(key="drift.depth").value == 3
    assert len(charts(at)) == 7


def test_drift_link_reproduces_the_view():
    query = {
        "lr": "0.05",
        "activation": "tanh",
        "depth": "2",
        "width": "32",
        "seed": "7",
        "dataset": "moons",
        "placement": "after",
        **FAST,
    }
    at = open_page("drift", query)
    assert_clean(at)
    assert not at.warning
    assert at.select_slider(key="drift.lr").value == 0.05
    assert at.selectbox(key="drift.activation").value == "tanh"
    assert at.selectbox(key="drift.placement").value == "after"
    assert {k: at.query_params[k] for k in query} == query  # written back, so the link works


@pytest.mark.parametrize("activation", ["sigmoid", "relu"])
def test_drift_extreme_learning_rate_is_a_result_not_a_crash(activation):
    at = open_page(
        "drift", {"lr": "30", "init_scale": "30", "activation": activation, "steps": "500"}
    )
    assert_clean(at)
    assert any("diverged at step" in w.value for w in at.warning)
    assert len(charts(at)) == 7


def test_drift_sliders_at_both_ends():
    low = {
        "lr": "0.001",
        "depth": "1",
        "width": "8",
        "init_scale": "0.1",
        "batch_size": "4",
        "steps": "200",
        "seed": "0",
    }
    high = {"depth": "6", "width": "256", "batch_size": "512", "steps": "200", "seed": "99"}
    for query in (low, high):
        at = open_page("drift", query)
        assert_clean(at)
        assert len(charts(at)) == 7


def test_text_from_a_link_is_shown_as_text_not_markdown():
    at = open_page(
        "drift",
        {"lr": "[Click here to log in](http://example.com)", "#evil": "x", "steps": "200"},
    )
    assert_clean(at)
    notice = at.warning[0].value
    lines = notice.splitlines()[2:]
    assert lines == [
        "- Learning rate (` lr=[Click here to log in](http://example.com) `): the value must be "
        "a number, so it is 0.5",
        "- ` #evil ` is not a setting of this page",
    ]  # the link's text in code spans: no link, no heading, whatever it says


def test_the_chosen_view_and_axes_are_in_the_link():
    """A reopened link shows the same chart: the view (animated or all steps at once), the
    histograms' axes and what drift is measured against all live in the URL."""
    at = open_page("drift", {**FAST, "view": "ridge", "metric": "drift_init"})
    assert_clean(at)
    assert not at.warning
    titles = [chart_title(f) for f in charts(at)]
    assert "every recorded step at once" in titles[0]
    assert "step-0" in titles[3]
    at = open_page("drift", {**FAST, "axes": "each step"})
    assert_clean(at)
    assert not at.warning
    assert at.query_params["axes"] == "each step"
    hist = charts(at)[0]
    ranges = {tuple(f["layout"]["xaxis"]["range"]) for f in hist["frames"]}
    assert len(ranges) > 1  # each frame fits its own axes


def test_a_diverged_net_shows_diverged_not_its_last_accuracy():
    at = open_page("drift", {"dataset": "moons", "lr": "30", "steps": "200"})
    assert_clean(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["BN net: test accuracy"] == "diverged"
    lead = next(m.value for m in at.markdown if m.value.startswith("Two networks"))
    assert "test points" in lead  # not "test images" for points in the plane
    assert "reproduced" not in " ".join(h.value for h in at.subheader)
