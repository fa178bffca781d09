"""The covariate-shift page under Streamlit's AppTest: defaults, presets, the reveal, bad links,
sliders at both ends. The numbers it shows are the experiment's, recomputed here."""

from __future__ import annotations

import pytest

from bnviz.experiments import covariate_shift as cs
from tests.helpers import assert_clean, chart_title, charts, open_page

N_CHARTS = 7  # part 3's four charts appear after the reveal
N_REVEALED = 11
FAST = {"steps": "300"}


def metrics(at) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def pct(v: float) -> str:
    return f"{v:.0%}" if abs(v - round(v, 2)) < 5e-4 or v in (0.0, 1.0) else f"{v:.1%}"


def test_defaults_show_the_runs_numbers_and_a_clean_link():
    at = open_page("covariate-shift")
    assert_clean(at)
    assert not at.warning
    assert len(charts(at)) == N_CHARTS
    assert dict(at.query_params) == {}
    m = metrics(at)
    view = cs.shifted(cs.run(cs.Shift()), 1.0, 0.0, 1.0, 1)
    assert m["plain: test accuracy"] == pct(view.acc["plain"][1])
    assert m["BN with the batch's own statistics: test accuracy"] == pct(view.acc[cs.MODES[2]][1])
    pair = cs.two_batches(cs.run(cs.Batches()), "0", "7", 1)
    a, b = pair.acc[cs.MODES[2]]
    assert m["BN, batch statistics: accuracy on A / B"] == f"{pct(a)} / {pct(b)}"
    assert a < 0.3 and b < 0.3
    assert len(at.latex) >= 5
    assert len(at.get("download_button")) == 6
    assert not any("answer in this run" in md.value for md in at.markdown)  # not yet revealed


def test_the_reveal_states_the_verdict_from_the_run():
    at = open_page("covariate-shift", {"guess": "worse"})
    assert_clean(at)
    at.toggle(key="covariate_shift.reveal").set_value(True).run()
    assert_clean(at)
    assert len(charts(at)) == N_REVEALED
    text = " ".join(md.value for md in at.markdown)
    result = cs.run(cs.Batches())
    late = {h.label: cs.late_accuracy(h) for h in result.arms}
    assert late["BN class-sorted"] < late["plain class-sorted"] - 0.02
    assert "the BN net does worse than the plain" in text
    assert "You predicted it." in text
    assert "shuffle training examples more thoroughly" in text and "1%" in text
    m = metrics(at)
    assert m["BN class-sorted"] == pct(late["BN class-sorted"])
    assert at.query_params["reveal"] == "1"
    titles = [chart_title(f) for f in charts(at)]
    assert any(t.startswith("BN's batch statistics, layer 1, unit 0") for t in titles)


PRESETS = (
    "All 0s vs all 7s",
    "Bright vs faint digits",
    "Shuffled vs one class",
    "Rotated spirals",
    "Small class-sorted batches",
    "tanh net, He init",
)


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset(preset):
    at = open_page("covariate-shift", FAST)
    at.button(key=f"covariate_shift.preset:{preset}").click().run()
    assert_clean(at)
    revealed = preset in ("Small class-sorted batches", "tanh net, He init")
    assert len(charts(at)) == (N_REVEALED if revealed else N_CHARTS)
    if preset == "Rotated spirals":
        assert at.selectbox(key="covariate_shift.dataset").value == "spirals"
        assert at.slider(key="covariate_shift.angle").value == 60.0
    if preset == "Bright vs faint digits":
        assert at.selectbox(key="covariate_shift.batch_a").value == "bright"
    if preset == "Small class-sorted batches":
        assert at.query_params["batch_size"] == "16"


def test_garbage_link_falls_back_with_a_notice():
    query = {
        "dx": "far",
        "angle": "nan",
        "scale": "7",
        "dataset": "imagenet",
        "batch_a": "cats",
        "reveal": "maybe",
        "stat_unit": "500",
        "preset": "nope",
        "junk": "1",
    }
    at = open_page("covariate-shift", query)
    assert_clean(at)
    (warning,) = at.warning
    for key in query:
        words = "` junk ` is not a setting" if key == "junk" else f"{key}={query[key]}"
        assert words in warning.value
    assert at.slider(key="covariate_shift.dx").value == 1.0
    assert at.selectbox(key="covariate_shift.batch_a").value == "0"
    assert len(charts(at)) == N_CHARTS


def test_markdown_from_the_link_is_shown_as_text():
    at = open_page("covariate-shift", {"batch_b": "**bold**"})
    assert_clean(at)
    assert "batch_b=**bold**" in at.warning[0].value  # in a bulleted notice, not rendered


def test_sliders_at_both_ends():
    low = {"lr": "0.01", "batch_size": "8", "init": "gaussian", "dx": "-3", "angle": "-180",
           "scale": "0.25", "shift_layer": "1", "pair_layer": "1", "window": "40",
           "reveal": "1", "stat_unit": "0", "noise_unit": "0", **FAST}  # fmt: skip
    high = {"lr": "10", "batch_size": "128", "activation": "relu", "seed": "99", "dx": "3",
            "angle": "180", "scale": "4", "shift_layer": "3", "pair_layer": "3",
            "stat_layer": "3", "stat_unit": "99", "noise_layer": "3", "noise_unit": "99",
            "window": "400", "reveal": "1", "dataset": "blobs", **FAST}  # fmt: skip
    for query in (low, high):
        at = open_page("covariate-shift", query)
        assert_clean(at)
        assert not at.warning or all("diverged" in w.value for w in at.warning)
        assert len(charts(at)) == N_REVEALED


def test_moving_a_view_control_keeps_the_runs_and_updates_the_link():
    at = open_page("covariate-shift")
    at.slider(key="covariate_shift.angle").set_value(90.0).run()
    assert_clean(at)
    assert at.query_params["angle"] == "90"
    view = cs.shifted(cs.run(cs.Shift()), 1.0, 90.0, 1.0, 1)
    assert metrics(at)["plain: test accuracy"] == pct(view.acc["plain"][1])


def test_presenter_mode_holds_part_1s_answer_until_asked():
    at = open_page("covariate-shift")
    at.session_state["present"] = True  # the sidebar toggle, switched on
    at.run()
    assert_clean(at)
    titles = [chart_title(c) for c in charts(at)]
    assert not any("decision regions" in t for t in titles)
    assert "plain: test accuracy" not in metrics(at)
    at.button(key="covariate_shift.shift.reveal").click().run()
    assert_clean(at)
    assert len(charts(at)) == N_CHARTS
    assert "plain: test accuracy" in metrics(at)
