"""The training-vs-inference page under Streamlit's AppTest: defaults, presets, the predict-first
reveal, bad links, sliders at both ends. Its numbers are the experiment's, recomputed here."""

from __future__ import annotations

import pytest

from bnviz.experiments import inference as inf
from tests.helpers import assert_clean, chart_title, charts, open_page

N_CHARTS = 6  # the bug's chart appears after the reveal
FAST = {"steps": "300"}
PRESETS = (
    "PyTorch defaults",
    "Keras's default (0.99)",
    "Keras 0.999, fast weights",
    "Last batch only",
    "Tiny batches (m = 4)",
    "The bug, revealed",
)


@pytest.fixture(scope="module")
def result():
    return inf.run(inf.Inference())  # what the page trains for its defaults


def metrics(at) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def test_defaults_show_the_runs_numbers(result):
    at = open_page("inference")
    assert_clean(at)
    assert not at.warning
    assert len(charts(at)) == N_CHARTS
    assert dict(at.query_params) == {}
    m = metrics(at)
    acc = inf.final_accuracy(result, inf.estimates(result, 0.1))
    assert m["test accuracy with this average"] == f"{acc.ema:.1%}"
    assert float(m["max |folded − eval mode|"]) < 1e-12
    assert m["PyTorch momentum"] == "0.1" and m["Keras / cs231n momentum"] == "0.9"
    text = " ".join(md.value for md in at.markdown)
    assert "Keras's 0.99 is PyTorch's 0.01" in text
    assert f"with Precise BN: {acc.precise:.1%}" in text
    assert "Class-sorted test batches of" not in text  # not revealed yet
    assert len(at.latex) >= 6
    assert len(at.get("download_button")) == 3


def test_the_reveal_shows_the_collapses_with_the_runs_numbers(result):
    at = open_page("inference", {"guess": "chance"})
    assert_clean(at)
    at.toggle(key="inference.reveal").set_value(True).run()
    assert_clean(at)
    figs = charts(at)
    assert len(figs) == N_CHARTS + 1
    (bars,) = [f for f in figs if chart_title(f).startswith("One trained net")]
    b = inf.bug(result, 60)
    assert bars["data"][0]["x"] == [round(b.acc[c], 4) for c in inf.CASES]
    text = " ".join(md.value for md in at.markdown)
    assert f"Class-sorted test batches of 60: {b.acc['class-sorted']:.1%}" in text
    assert f"Batches of one: {b.acc['single']:.1%}" in text
    assert f"every digit is called a {b.single_class}" in text
    assert "As you predicted." in text
    assert b.acc["class-sorted"] < 0.2 and b.acc["eval"] > 0.9
    assert len(at.get("download_button")) == 4


def test_a_keras_momentum_is_converted():
    at = open_page("inference", {"convention": "keras", "momentum": "0.99"})
    assert_clean(at)
    m = metrics(at)
    assert m["PyTorch momentum"] == "0.01"
    assert m["memory, about 1/momentum"] == "100 steps"
    assert any("momentum 0.01 (Keras 0.99)" in str(f["data"]) for f in charts(at))


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset(preset):
    at = open_page("inference")
    at.button(key=f"inference.preset:{preset}").click().run()
    assert_clean(at)
    revealed = preset == "The bug, revealed"
    assert len(charts(at)) == N_CHARTS + revealed
    if preset == "Keras 0.999, fast weights":
        assert metrics(at)["PyTorch momentum"] == "0.001"
        assert at.query_params["lr"] == "2"
    if preset == "Tiny batches (m = 4)":
        assert at.query_params["batch_size"] == "4"


def test_garbage_link_falls_back_with_a_notice():
    query = {
        "momentum": "lots",
        "convention": "caffe",
        "batch_size": "3",
        "unit": "-1",
        "test_batch": "1e9",
        "reveal": "perhaps",
        "guess": "<b>x</b>",
        "junk": "1",
    }
    at = open_page("inference", query)
    assert_clean(at)
    (warning,) = at.warning
    for key, raw in query.items():
        assert ("` junk ` is not a setting" if key == "junk" else f"{key}={raw}") in warning.value
    assert at.select_slider(key="inference.momentum").value == 0.1
    assert len(charts(at)) == N_CHARTS


def test_sliders_at_both_ends():
    low = {"lr": "0.01", "batch_size": "4", "seed": "0", "momentum": "0.001",
           "convention": "cs231n", "layer": "1", "unit": "0", "affine_layer": "1",
           "test_batch": "2", "reveal": "1", **FAST}  # fmt: skip
    high = {"lr": "10", "batch_size": "256", "seed": "99", "momentum": "0.999",
            "convention": "pytorch", "layer": "3", "unit": "99", "affine_layer": "3",
            "test_batch": "128", "reveal": "1", **FAST}  # fmt: skip
    for query in (low, high):
        at = open_page("inference", query)
        assert_clean(at)
        diverged = any("diverged" in w.value for w in at.warning)
        assert not at.warning or diverged
        assert len(charts(at)) == (0 if diverged else N_CHARTS + 1)
