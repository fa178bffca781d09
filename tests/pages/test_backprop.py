"""The backprop page under Streamlit's AppTest: defaults, presets, bad links, extremes, the
PyTorch check, and the page's numbers against the core's.

The page must never end in an exception or an error: bad input becomes a notice and defaults.
"""

from __future__ import annotations

import pytest

from bnviz.experiments import backprop as bp
from tests.helpers import assert_clean, charts, open_page

N_CHARTS = 3  # the graph, the error over h, the gradient per example
SUM = "Σᵢ ∂L/∂xᵢ, relative"
SUM_XHAT = "Σᵢ ∂L/∂xᵢ x̂ᵢ at ε → 0, relative"
SCALE = "∂L/∂u, a = 0.01 … 100, ε → 0: max change"


def metrics(at) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def error_rows(at) -> list[dict]:
    table = at.table[0].value
    return table.to_dict("records")


def markdown(at) -> str:
    return "\n".join(m.value for m in at.markdown)


def test_defaults_check_the_gradient_every_way():
    at = open_page("backprop")
    assert_clean(at)
    assert not at.warning
    assert len(charts(at)) == N_CHARTS
    assert dict(at.query_params) == {}
    rows = error_rows(at)
    assert len(rows) == 3  # chain rule, finite differences, the real loss; no torch yet
    assert all(r["< 1e-7"] == "yes" for r in rows)
    m = metrics(at)
    assert float(m[SUM]) < 1e-12 and float(m[SUM_XHAT]) < 1e-12 and float(m[SCALE]) < 1e-12
    assert len(at.latex) >= 11
    assert len(at.get("download_button")) == 2
    assert not at.toggle(key="backprop.torch").value


def test_the_pages_numbers_are_the_cores():
    at = open_page("backprop", {"m": "40", "seed": "5", "layer": "3", "upstream": "random"})
    assert_clean(at)
    c = bp.check(*bp.untrained(5), 3, 40, 5, 1e-5, "random", 1e-5)
    text = markdown(at)
    assert f"unit #{c.unit}: **{c.steps.dvar[c.unit]:.6g}**" in text
    assert f"unit #{c.unit}: **{c.steps.dgamma[c.unit]:.6g}**" in text
    rows = error_rows(at)
    assert rows[0]["relative error"] == f"{c.steps_error:.1e}"
    assert rows[1]["relative error"] == f"{c.fd_error:.1e}"
    assert float(rows[1]["relative error"]) < 1e-7
    m = metrics(at)
    assert m[SUM] == f"{c.facts.sum_dx_rel:.2g}"
    fig = charts(at)[2]
    compact = next(t for t in fig["data"] if t["name"] == "compact form")
    assert compact["y"] == pytest.approx(c.dx[:, c.unit].tolist(), rel=1e-9)


def test_the_pytorch_check_runs_when_asked_and_agrees():
    at = open_page("backprop")
    at.toggle(key="backprop.torch").set_value(True).run()
    assert_clean(at)
    rows = error_rows(at)
    torch_rows = [r for r in rows if r["computed by"].startswith("PyTorch")]
    assert len(torch_rows) == 4
    for r in torch_rows:
        assert float(r["relative error"]) < 1e-10
        assert r["< 1e-7"] == "yes"
    assert at.query_params["torch"] == "1"
    fig = charts(at)[2]
    assert any(t["name"] == "PyTorch autograd" for t in fig["data"])


@pytest.mark.parametrize("preset", list(bp.PRESETS))
def test_every_preset(preset):
    at = open_page("backprop")
    at.button(key=f"backprop.preset:{preset}").click().run()
    assert_clean(at)
    assert len(charts(at)) == N_CHARTS
    m = metrics(at)
    assert float(m[SUM]) < 1e-12
    rows = error_rows(at)
    if preset == "Same upstream gradient everywhere":
        assert any("rounding noise" in i.value for i in at.info)
        reveal = next(e for e in at.expander if e.label == "Reveal")
        assert "**Zero.**" in reveal.markdown[-1].value
    else:
        assert rows[0]["< 1e-7"] == "yes"  # the chain rule and the compact form, always
        assert float(m[SUM_XHAT]) < 1e-12
    if preset in ("Real loss, untrained net", "Random upstream gradient", "Large eps"):
        assert all(r["< 1e-7"] == "yes" for r in rows)
    if preset == "Rounding takes over (h = 1e-10)":
        assert float(rows[1]["relative error"]) > 1e-9  # ~1e-11 at the best h
        assert rows[2]["< 1e-7"] == "no"  # the real loss, |L| ~ 2.3: rounding 2e-6 / |dL/dx|
    if preset == "Batch of two":  # sigma_B of the unit is ~ 3e-3: h = 1e-5 is not small
        assert any("not small" in i.value for i in at.info)
    if preset == "Trained net, with PyTorch":
        assert sum(r["computed by"].startswith("PyTorch") for r in rows) == 4
        assert "after 2,000 training steps" in at.caption[0].value


def test_garbage_link_falls_back_with_a_notice():
    query = {
        "m": "1",
        "seed": "-4",
        "eps": "tiny",
        "upstream": "sideways",
        "layer": "0",
        "steps": "7",
        "h": "0",
        "unit": "500",
        "torch": "perhaps",
        "preset": "no-such-preset",
        "junk": "1",
    }
    at = open_page("backprop", query)
    assert_clean(at)
    (warning,) = at.warning
    for key in query:
        if key != "junk":
            assert f"{key}={query[key]}" in warning.value, key
    assert "` junk ` is not a setting" in warning.value
    assert at.slider(key="backprop.m").value == 60
    assert len(charts(at)) == N_CHARTS


def test_link_reproduces_the_view():
    query = {"m": "23", "eps": "0.1", "upstream": "random", "layer": "1", "h": "3e-06"}
    at = open_page("backprop", query)
    assert_clean(at)
    assert not at.warning
    assert at.select_slider(key="backprop.h").value == 3e-06
    assert "23 training digits" in at.caption[0].value
    assert {k: at.query_params[k] for k in query} == query


def test_predict_then_reveal():
    at = open_page("backprop")
    reveal = next(e for e in at.expander if e.label == "Reveal")
    assert "**Zero.**" in reveal.markdown[-1].value
    at.radio(key="backprop.predict-constant").set_value("zero").run()
    assert_clean(at)
    reveal = next(e for e in at.expander if e.label == "Reveal")
    assert reveal.markdown[0].value == "Right."


def test_presenter_mode_holds_the_answer_until_asked():
    at = open_page("backprop")
    at.session_state["present"] = True  # the sidebar toggle, switched on
    at.run()
    assert_clean(at)
    assert not [e for e in at.expander if e.label == "Reveal"]
    at.button(key="backprop.constant.reveal").click().run()
    assert_clean(at)
    reveal = next(e for e in at.expander if e.label == "Reveal")
    assert "**Zero.**" in reveal.markdown[-1].value


def test_sliders_at_both_ends():
    low = {
        "m": "2",
        "seed": "0",
        "eps": "0",
        "upstream": "loss",
        "layer": "1",
        "steps": "0",
        "h": "1e-12",
        "unit": "0",
    }
    high = {
        "m": "256",
        "seed": "99",
        "eps": "1",
        "upstream": "random",
        "layer": "3",
        "steps": "500",
        "h": "0.1",
        "unit": "99",
        "torch": "1",
    }
    for query in (low, high):
        at = open_page("backprop", query)
        assert_clean(at)
        assert not at.warning
        assert len(charts(at)) == N_CHARTS
        assert float(metrics(at)[SUM]) < 1e-12


def test_torch_is_imported_only_when_the_check_runs():
    """The default view never imports torch (seconds on a small machine): a fresh process
    opens the page, then switches the PyTorch check on."""
    import subprocess
    import sys
    from pathlib import Path

    script = (
        "import sys\n"
        "from tests.helpers import open_page\n"
        "at = open_page('backprop')\n"
        "before = 'torch' in sys.modules\n"
        "at.toggle(key='backprop.torch').set_value(True).run()\n"
        "print(before, 'torch' in sys.modules, len(at.exception))\n"
    )
    repo = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=repo, capture_output=True, text=True, timeout=300
    )
    assert out.stdout.split()[-3:] == ["False", "True", "0"], out.stderr[-2000:]
