"""The "Variants and pitfalls" page under Streamlit's AppTest: defaults, every preset, bad
links, sliders at both ends, and words that say what the run shows.

Runs are cached for the whole test process, so the default grid trains once; the other tests
mostly use the shortest budget (3,200 examples a net).
"""

from __future__ import annotations

import re

import pytest

from bnviz.experiments import variants as vr
from tests.helpers import assert_clean, chart_title, charts, open_page

KEY = "variants"
FAST = {"examples": "3200"}
N_CHARTS = 10


def metrics(at) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def text(at) -> str:
    return "\n".join(m.value for m in at.markdown)


def falls(at) -> dict[str, tuple[float, float]]:
    """The page's own list: name -> (accuracy at batch 32, at batch 2), in percent."""
    out = {}
    for name, a32, a2 in re.findall(
        r"\*\*([^*]+)\*\*: ([\d.]+)% at batch 32, ([\d.]+)% at batch 2", text(at)
    ):
        out[name] = (float(a32), float(a2))
    return out


def test_defaults_train_every_grid_and_say_what_the_run_shows():
    at = open_page("variants")
    assert_clean(at)
    assert not at.warning
    figs = charts(at)
    assert len(figs) == N_CHARTS
    titles = [chart_title(f) for f in figs]
    assert titles[:4] == [
        "Which values share one mean: BN, LN, IN and GN",
        "Outlined: values that share one mean (8 digits, layer 1)",
        "Our nets: test error vs batch size",
        "Wu & He 2018: ResNet-50, ImageNet",
    ]
    shown = falls(at)
    assert list(shown) == ["plain", "BN", "LN", "GN (8 groups)"]
    drop = {name: a32 - a2 for name, (a32, a2) in shown.items()}
    # the run: BN falls at batch 2 more than LN and GN do, and the page says exactly that
    assert drop["BN"] > drop["LN"] and drop["BN"] > drop["GN (8 groups)"]
    assert drop["BN"] > 20 and abs(drop["LN"]) < 3 and abs(drop["GN (8 groups)"]) < 3
    words = text(at)
    said = re.search(
        r"\*\*In this run BN loses more accuracy from batch 32 to 2 than LN and GN \(8 groups\) "
        r"do: ([-\d.]+) points against ([-\d.]+) and ([-\d.]+)\.\*\*",
        words,
    )
    assert said, words
    # the sentence's numbers are the list's, to the rounding of its percentages
    for value, name in zip(said.groups(), ("BN", "LN", "GN (8 groups)"), strict=True):
        assert abs(float(value) - drop[name]) < 0.15
    assert "For plain, LN, GN (8 groups) it is exactly 0 at every batch size." in words
    m = metrics(at)
    assert m["BN output − β, max"] == "0"
    assert m["dL/dz through BN, max"] == "0"
    assert float(m["BN net, digits alone"].rstrip("%")) < 20
    assert float(m["LN net, any batch"].rstrip("%")) > 90
    measured, err = (float(v) for v in m["measured at p = 0.5"].split(" ± "))
    assert abs(measured - 0.5) < 4 * err and m["Li et al.'s formula"] == "0.5000"
    assert "every one of the 360 test digits gets the same answer" in words
    assert dict(at.query_params) == {}
    assert len(at.latex) >= 6
    assert len(at.get("download_button")) == 4
    assert len(at.table) == 1  # the Group Norm paper's Table 2
    notice = next(e for e in at.expander if e.label == "What to notice")
    assert "**Small batches hurt BN most.**" in "\n".join(m.value for m in notice.markdown)
    links = [p.label for p in at.get("page_link")]
    assert "Training vs inference: the running statistics BN tests with" in links


def test_presenter_mode_holds_each_answer_until_asked():
    at = open_page("variants", FAST)
    at.toggle(key="present").set_value(True).run()
    assert_clean(at)
    assert at.query_params["present"] == "1"
    assert not at.warning
    hidden = [chart_title(f) for f in charts(at)]
    assert "Our nets: test error vs batch size" not in hidden
    assert "Wu & He 2018: ResNet-50, ImageNet" not in hidden
    assert not at.metric or "BN net, digits alone" not in metrics(at)
    for key in ("batch", "dropout", "one"):
        at.button(key=f"{KEY}.{key}.reveal").click().run()
    assert_clean(at)
    shown = [chart_title(f) for f in charts(at)]
    assert len(shown) == N_CHARTS
    assert "Our nets: test error vs batch size" in shown
    assert "BN net, digits alone" in metrics(at)


@pytest.mark.parametrize("preset", list(vr.PRESETS))
def test_every_preset(preset):
    at = open_page("variants", FAST)
    at.button(key=f"{KEY}.preset:{preset}").click().run()
    assert_clean(at)
    assert len(charts(at)) == N_CHARTS
    values = vr.PRESETS[preset]
    assert at.select_slider(key=f"{KEY}.groups").value == values["groups"]
    assert at.select_slider(key=f"{KEY}.keep").value == values["keep"]
    assert at.select_slider(key=f"{KEY}.examples").value == values["examples"]
    names = list(falls(at))
    assert names[-1] == f"GN ({values['groups']} groups)"
    if values["groups"] == 64:
        assert any("every normalized value is 0" in i.value for i in at.info)
        assert "GN (64 groups)" in text(at)
    if preset.startswith("Heavy dropout"):
        assert at.query_params["keep"] == "0.3"
        assert "keep p = 0.3" in " ".join(chart_title(f) for f in charts(at))


def test_garbage_link_falls_back_with_a_notice():
    query = {
        "examples": "lots",
        "lr": "1e9",
        "groups": "1000",
        "depth": "0",
        "activation": "softmax",
        "keep": "2",
        "mean": "nan",
        "digit": "-4",
        "seed": "x",
        "junk": "1",
        "preset": "nope",
    }
    at = open_page("variants", query)
    assert_clean(at)
    (warning,) = at.warning
    for words in (
        "examples=lots",
        "lr=1e9",
        "groups=1000",
        "depth=0",
        "activation=softmax",
        "keep=2",
        "mean=nan",
        "digit=-4",
        "seed=x",
        "` junk ` is not a setting",
        "preset=nope",
    ):
        assert words in warning.value
    assert at.select_slider(key=f"{KEY}.groups").value == vr.DEFAULTS["groups"]
    assert at.select_slider(key=f"{KEY}.keep").value == vr.DEFAULTS["keep"]
    assert len(charts(at)) == N_CHARTS


@pytest.mark.parametrize(
    "query",
    [
        {"lr": "0.01", "groups": "2", "depth": "1", "seed": "99", "keep": "0.1", "mean": "2",
         "digit": "359", "activation": "tanh"},
        {"lr": "1", "groups": "64", "depth": "4", "keep": "0.9", "activation": "sigmoid"},
    ],
)  # fmt: skip
def test_sliders_at_the_ends_give_results_not_crashes(query):
    at = open_page("variants", {**query, **FAST})
    assert_clean(at)
    assert len(charts(at)) == N_CHARTS
    assert not any("could not be used" in w.value for w in at.warning)
    for w in at.warning:
        assert "diverged" in w.value
    assert {k: at.query_params[k] for k in query} == query
    if query["depth"] == "1":  # one hidden layer: no BN sits after a dropout
        assert "BN layer 1 (no dropout before it)" in text(at)
        assert "from the formula" not in text(at)


def test_a_view_slider_moves_only_its_own_part():
    at = open_page("variants", FAST)
    before = charts(at)
    at.select_slider(key=f"{KEY}.mean").set_value(1.0).run()
    assert_clean(at)
    assert at.query_params["mean"] == "1"
    after = charts(at)
    assert after[5] != before[5]  # the formula chart
    assert after[2] == before[2]  # the batch-size chart is the same run
    assert "mean 1, variance 1" in " ".join(t["name"] for t in after[5]["data"] if "name" in t)
    at.slider(key=f"{KEY}.digit").set_value(7).run()
    assert_clean(at)
    assert "Test digit #7" in chart_title(charts(at)[8])
