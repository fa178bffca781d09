"""The debate page under AppTest: defaults, presets, view controls, bad links, extremes and a
diverging arm. The page must never end in an exception, and it says what its run shows."""

from __future__ import annotations

import pytest

from bnviz.app import run
from bnviz.experiments import debate
from tests.helpers import assert_clean, chart_title, charts, open_page

FAST = {"steps": "200"}
N_CHARTS = 9  # loss, accuracy, histograms, unit, drift, diagram, ICS, landscape, step back


def expander_text(at, label: str) -> list[str]:
    return [md.value for e in at.expander if e.label == label for md in e.markdown]


def test_debate_defaults_train_four_arms_and_say_what_the_run_shows():
    at = open_page("debate")
    assert_clean(at)
    assert not at.warning and not at.info
    figs = charts(at)
    assert len(figs) == N_CHARTS
    titles = [chart_title(f) for f in figs]
    assert titles[2].startswith("Layer 3 sigmoid input over training: plain vs BN vs noisy BN")
    assert len(figs[2]["frames"]) == 41  # 2,000 steps probed every 50, and step 0
    assert "measured every 50 steps" in titles[6]
    assert "η from 0.5 to 4 x the rate" in titles[7]
    metrics = {m.label: m.value for m in at.metric}
    assert set(metrics) == {f"{arm}: test accuracy" for arm in debate.ARMS}
    assert any("measured every 50 steps" in c.value for c in at.caption)
    assert any("shipped with the app" in c.value for c in at.caption)  # not trained just now
    # the page's words are the experiment's findings on this very run (from the page's cache)
    values = dict(debate.DEFAULTS)
    cap = run.run_experiment(debate.EXPERIMENT, debate.cap_config(values))
    arms = run.run_experiment(debate.EXPERIMENT, debate.configs(values, cap.landscape))
    found = debate.findings(arms)
    shown = expander_text(at, "What this run shows")
    assert shown[0] == "\n".join(f"- {s}" for s in found.noisy_bn)
    assert shown[1] == "\n".join(f"- {s}" for s in found.ics)
    assert shown[2] == "\n".join(f"- {s}" for s in found.landscape)
    board = {s.label: s for s in debate.scoreboard(arms)}
    assert metrics["noisy BN: test accuracy"] == debate.pct(board["noisy BN"].final_acc)
    assert any(cap.describe() in md.value for md in at.markdown)
    (table,) = at.dataframe
    assert list(table.value["arm"]) == list(debate.ARMS)
    assert dict(at.query_params) == {}


@pytest.mark.parametrize(
    "preset, check",
    [
        ("paper-constants", {"noise": 1.0, "lr": 1.0}),
        ("strong-noise", {"noise": 3.0}),
        ("high-learning-rate", {"lr": 10.0}),
        ("deep-linear-net", {"activation": "linear", "depth": 8}),
    ],
)
def test_debate_presets_in_the_link(preset, check):
    at = open_page("debate", {"preset": preset, **FAST})
    assert_clean(at)
    assert not at.warning
    for name, value in check.items():
        widget = {"noise": at.slider, "depth": at.slider, "lr": at.select_slider}.get(
            name, at.selectbox
        )
        assert widget(key=f"debate.{name}").value == value
    assert len(charts(at)) == N_CHARTS
    assert not any("shipped with the app" in c.value for c in at.caption)  # trained for the link
    if preset == "strong-noise":
        assert "μ_t ~ U(−1.5, 1.5)" in " ".join(md.value for md in at.markdown)
        assert at.query_params["noise"] == "3"


def test_debate_view_controls_from_the_link():
    at = open_page("debate", {"layer": "2", "compare": "all", "at": "150", **FAST})
    assert_clean(at)
    titles = [chart_title(f) for f in charts(at)]
    assert titles[2].startswith("Layer 2 ")
    assert "plain vs BN vs noisy BN vs plain + noise" in titles[7]
    assert "update 150" in titles[8]
    at.selectbox(key="debate.at").select(100).run()
    assert "update 100" in chart_title(charts(at)[8])


def test_debate_garbage_link_falls_back_with_a_notice():
    query = {"lr": "fast", "noise": "99", "activation": "softmax", "at": "x", "junk": "1", **FAST}
    at = open_page("debate", query)
    assert_clean(at)
    (warning,) = at.warning
    for words in ("lr=fast", "noise=99", "activation=softmax", "at=x", "` junk ` is not a setting"):
        assert words in warning.value
    assert at.select_slider(key="debate.lr").value == 1.0
    assert at.slider(key="debate.noise").value == 1.0
    assert len(charts(at)) == N_CHARTS


def test_debate_a_step_off_the_probes_moves_to_the_nearest():
    at = open_page("debate", {"at": "130", **FAST})
    assert_clean(at)
    assert at.selectbox(key="debate.at").value in (100, 150)


def test_debate_diverging_arms_are_a_result_not_a_crash():
    query = {"activation": "linear", "depth": "8", "init": "glorot", "lr": "0.5", **FAST}
    at = open_page("debate", query)
    assert_clean(at)
    diverged = [w.value for w in at.warning if "diverged at step" in w.value]
    assert len(diverged) == 2  # plain and plain + noise
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["plain: test accuracy"] == "diverged"
    assert any("first diverged at 0.25" in md.value for md in at.markdown)
    assert len(charts(at)) == N_CHARTS


def test_debate_sliders_at_both_ends():
    low = {
        "lr": "0.001",
        "noise": "0.25",
        "depth": "1",
        "width": "16",
        "steps": "200",
        "probe_every": "10",
        "seed": "0",
    }
    high = {
        "lr": "30",
        "noise": "4",
        "depth": "8",
        "width": "200",
        "steps": "200",
        "probe_every": "500",
        "seed": "99",
    }
    for query in (low, high):
        at = open_page("debate", query)
        assert_clean(at)
        assert len(charts(at)) == N_CHARTS


def test_debate_many_probe_points_are_thinned_with_a_notice():
    at = open_page("debate", {"steps": "3000", "probe_every": "10", "depth": "1", "width": "16"})
    assert_clean(at)
    (info,) = at.info
    assert "more than 200 probe points; this run probes every 15 steps" in info.value
    assert len(charts(at)[2]["frames"]) == 120  # 201 records, thinned to the animation's cap
