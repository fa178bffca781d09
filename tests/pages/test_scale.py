"""The scale-invariance page under Streamlit's AppTest: defaults, presets, bad links, extremes.

The page must never end in an exception or an error: bad input becomes a notice and defaults.
"""

from __future__ import annotations

import pytest

from bnviz.experiments import scale
from tests.helpers import assert_clean, chart_title, charts, open_page

FAST = {"steps": "500"}  # the shortest run the page offers; the defaults are checked once
N_CHARTS = 6


def metrics(at) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def test_defaults_show_the_exact_identities_and_a_clean_link():
    at = open_page("scale")
    assert_clean(at)
    assert not at.warning
    figs = charts(at)
    assert len(figs) == N_CHARTS
    titles = [chart_title(f) for f in figs]
    assert any("fitted slope -1.000" in t for t in titles)
    m = metrics(at)
    assert m["fitted slope, log-log"] == "-1.000"
    assert m["a · ‖∂L/∂(aW)‖ / ‖∂L/∂W‖ with BN"] == "1.000000"
    assert float(m["max |BN((aW)u) − BN(Wu)|"]) < 1e-12
    assert float(m["dL/du with BN: max change"]) < 1e-12
    assert float(m["BN net: test accuracy"].rstrip("%")) > 90
    assert dict(at.query_params) == {}
    assert len(at.latex) >= 6
    assert len(at.get("download_button")) == 6


@pytest.mark.parametrize("preset", list(scale.PRESETS))
def test_every_preset(preset):
    at = open_page("scale", FAST)
    at.button(key=f"scale.preset:{preset}").click().run()
    assert_clean(at)
    assert len(charts(at)) == N_CHARTS
    m = metrics(at)
    if preset == "Identity recovered":
        assert at.toggle(key="scale.identity").value is True
        assert float(m["max |y − x| (0 at the identity)"]) < 1e-12
    elif preset == "Saturating sigmoid":
        assert at.slider(key="scale.gamma").value == 5.0
        assert float(m["saturated: |y| > 3.64"].rstrip("%")) > 30
    elif preset == "Weights scaled x100":
        assert at.select_slider(key="scale.a").value == 100.0
        assert float(m["max |BN((aW)u) − BN(Wu)|"]) < 1e-12
    elif preset == "Tiny weights: eps breaks the identity":
        assert at.selectbox(key="scale.eps").value == "1e-5"
        assert float(m["max |BN((aW)u) − BN(Wu)|"]) > 0.1
        assert any("only approximate" in i.value for i in at.info)
    else:
        assert at.query_params["weight_decay"] == "1e-3"


def test_garbage_link_falls_back_with_a_notice():
    query = {
        "a": "huge",
        "eps": "banana",
        "layer": "9",
        "gamma": "nan",
        "beta": "-1e99",
        "identity": "maybe",
        "unit": "-5",
        "preset": "no-such-preset",
        "junk": "1",
        **FAST,
    }
    at = open_page("scale", query)
    assert_clean(at)
    (warning,) = at.warning
    for words in (
        "a=huge",
        "eps=banana",
        "layer=9",
        "gamma=nan",
        "identity=maybe",
        "unit=-5",
        "preset=no-such-preset",
        "` junk ` is not a setting",
    ):
        assert words in warning.value
    assert at.select_slider(key="scale.a").value == 10.0
    assert at.selectbox(key="scale.eps").value == "0"
    assert at.slider(key="scale.layer").value == 1
    assert at.slider(key="scale.gamma").value == 1.0
    assert len(charts(at)) == N_CHARTS


def test_link_reproduces_the_view():
    query = {
        "a": "0.3",
        "eps": "1e-8",
        "layer": "2",
        "batch_size": "16",
        "seed": "7",
        "lr": "1",
        "gamma": "2.5",
        "beta": "-1",
        "unit": "17",
        "bn_layer": "3",
        **FAST,
    }
    at = open_page("scale", query)
    assert_clean(at)
    assert not at.warning
    assert at.select_slider(key="scale.a").value == 0.3
    assert at.slider(key="scale.gamma").value == 2.5
    assert at.slider(key="scale.beta").value == -1.0
    assert at.selectbox(key="scale.unit").value == 17
    gb = charts(at)[-1]
    assert "BN layer 3" in chart_title(gb)
    assert "γ = 2.500, β = -1.000" in chart_title(gb)
    assert {k: at.query_params[k] for k in query} == query


def test_moving_the_view_controls():
    at = open_page("scale", FAST)
    at.select_slider(key="scale.a").set_value(0.05).run()
    assert_clean(at)
    assert at.query_params["a"] == "0.05"
    assert metrics(at)["fitted slope, log-log"] == "-1.000"
    at.toggle(key="scale.identity").set_value(True).run()
    assert_clean(at)
    assert float(metrics(at)["max |y − x| (0 at the identity)"]) < 1e-12
    assert at.slider(key="scale.gamma").disabled


def test_sliders_at_both_ends():
    low = {
        "a": "0.01",
        "eps": "0",
        "layer": "1",
        "batch_size": "2",
        "seed": "0",
        "lr": "0.01",
        "steps": "500",
        "gamma": "0",
        "beta": "-5",
        "bn_layer": "1",
        "unit": "0",
    }
    high = {
        "a": "100",
        "eps": "0.1",
        "layer": "3",
        "batch_size": "256",
        "seed": "99",
        "lr": "10",
        "steps": "500",
        "weight_decay": "1e-2",
        "gamma": "5",
        "beta": "5",
        "bn_layer": "3",
        "unit": "99",
    }
    for query in (low, high):
        at = open_page("scale", query)
        assert_clean(at)
        assert len(charts(at)) == N_CHARTS
    low_at = open_page("scale", low)
    assert metrics(low_at)["fitted slope, log-log"] == "no gradient"
    assert metrics(low_at)["dL/du with BN: max change"] == "no gradient"
    assert any("batch of 2" in i.value for i in low_at.info)


def test_the_orthogonality_note_matches_the_eps_in_use():
    """It said "exactly 0 only when eps = 0" while eps was 0."""
    at = open_page("scale")
    text = " ".join(m.value for m in at.markdown)
    assert "zero up to float64 rounding, since eps = 0 here" in text
    assert "only at eps = 0" not in text
    at = open_page("scale", {"eps": "1e-5"})
    text = " ".join(m.value for m in at.markdown)
    assert "exactly zero only at eps = 0, and here eps = 1e-05" in text


def test_links_to_other_lessons_only_where_they_exist():
    from bnviz.app.lessons import BY_STEM

    at = open_page("scale")
    text = " ".join(m.value for m in at.markdown)
    assert "see the lesson" not in text
    links = {el.proto.page for el in at.get("page_link")}
    for stem in ("inference", "bn_steps"):
        assert (stem.replace("_", "-") in links) == (stem in BY_STEM)
