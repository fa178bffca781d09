"""The control table: URL parsing, validation, rounding, encoding and presets (no Streamlit run)."""

from __future__ import annotations

import pytest

from bnviz.app.controls import Control, encode_query, fmt_number, log_grid, read_query, slug

LR = Control("lr", "Learning rate", "grid", 0.5, options=log_grid(1e-3, 30))
DEPTH = Control("depth", "Hidden layers", "int", 3, lo=1, hi=6, step=1)
ACT = Control("activation", "Activation", "choice", "sigmoid", options=("sigmoid", "relu"))
BN = Control("bn", "BN", "bool", True)
GAMMA = Control("gamma", "gamma", "float", 1.0, lo=0.0, hi=3.0, step=0.05)
CONTROLS = [LR, DEPTH, ACT, BN, GAMMA]
PRESETS = {"Too-high learning rate": {"lr": 30.0, "depth": 5}}


def test_log_grid_is_round_and_log_spaced():
    grid = log_grid(1e-3, 30)
    assert grid[0] == 0.001 and grid[-1] == 30.0
    assert grid[:6] == (0.001, 0.0015, 0.002, 0.003, 0.005, 0.007)
    assert 0.5 in grid and 1.0 in grid and 20.0 in grid
    assert list(grid) == sorted(grid)


def test_defaults_when_query_is_empty():
    values, notices = read_query(CONTROLS, {})
    assert values == {"lr": 0.5, "depth": 3, "activation": "sigmoid", "bn": True, "gamma": 1.0}
    assert notices == []


def test_valid_values_are_read():
    q = {"lr": "0.02", "depth": "5", "activation": "ReLU", "bn": "off", "gamma": "0.25"}
    values, notices = read_query(CONTROLS, q)
    assert values == {"lr": 0.02, "depth": 5, "activation": "relu", "bn": False, "gamma": 0.25}
    assert notices == []


@pytest.mark.parametrize(
    "key, raw, expected_default, words",
    [
        ("lr", "abc", 0.5, "must be a number"),
        ("lr", "1e9", 0.5, "between 0.001 and 30"),
        ("lr", "-1", 0.5, "between"),
        ("lr", "nan", 0.5, "finite"),
        ("depth", "0", 3, "between 1 and 6"),
        ("depth", "many", 3, "number"),
        ("activation", "softplus", "sigmoid", "one of sigmoid, relu"),
        ("bn", "maybe", True, "true or false"),
        ("gamma", "4", 1.0, "between 0 and 3"),
    ],
)
def test_bad_values_fall_back_with_a_notice(key, raw, expected_default, words):
    values, notices = read_query(CONTROLS, {key: raw})
    assert values[key] == expected_default
    assert len(notices) == 1
    assert f"` {key}={raw} `" in notices[0] and words in notices[0]
    label = {c.name: c.label for c in CONTROLS}[key]
    assert notices[0].startswith(f"{label} (")  # the name a student sees, not the URL's


def test_notices_show_what_the_link_said_as_code_never_as_markdown():
    _, notices = read_query(CONTROLS, {"lr": "[Log in](http://example.com)", "# head": "1"})
    assert notices[0].startswith("Learning rate (` lr=[Log in](http://example.com) `)")
    assert notices[1] == "` # head ` is not a setting of this page"


def test_values_between_slider_stops_are_rounded_with_a_note():
    values, notices = read_query(CONTROLS, {"lr": "0.37", "gamma": "0.33", "depth": "2.4"})
    assert values["lr"] == 0.3  # nearest on a log scale among 0.3 and 0.5
    assert values["gamma"] == 0.35
    assert values["depth"] == 2
    assert len(notices) == 3 and all("rounded" in n for n in notices)


def test_the_apps_own_parameters_are_not_a_pages_settings():
    values, notices = read_query(CONTROLS, {"present": "1"})
    assert notices == [] and values["lr"] == 0.5


def test_unknown_parameters_are_reported():
    values, notices = read_query(CONTROLS, {"foo": "1"})
    assert values["lr"] == 0.5
    assert notices == ["` foo ` is not a setting of this page"]


def test_presets_from_the_url_then_explicit_values_win():
    values, notices = read_query(CONTROLS, {"preset": "too-high-learning-rate"}, PRESETS)
    assert values["lr"] == 30.0 and values["depth"] == 5 and notices == []
    values, _ = read_query(CONTROLS, {"preset": "too-high-learning-rate", "depth": "2"}, PRESETS)
    assert values["depth"] == 2 and values["lr"] == 30.0
    values, notices = read_query(CONTROLS, {"preset": "nope"}, PRESETS)
    assert values["lr"] == 0.5 and "not a preset" in notices[0]


def test_encoding_keeps_only_non_defaults_and_round_trips():
    values = {"lr": 0.02, "depth": 3, "activation": "relu", "bn": False, "gamma": 1.0}
    query = encode_query(CONTROLS, values)
    assert query == {"lr": "0.02", "activation": "relu", "bn": "0"}
    back, notices = read_query(CONTROLS, query)
    assert back == values and notices == []


def test_bad_control_definitions_are_refused():
    with pytest.raises(ValueError):
        Control("x", "x", "grid", 7.0, options=(1.0, 2.0))
    with pytest.raises(ValueError):
        Control("x", "x", "slider", 1)


def test_small_helpers():
    assert slug("Paper Figure 1") == "paper-figure-1"
    assert fmt_number(50000) == "50,000" and fmt_number(0.005) == "0.005"
    assert fmt_number(2.0) == "2" and fmt_number("relu") == "relu"


def test_a_grid_may_hold_zero():
    decay = Control("wd", "Weight decay", "grid", 0.0, options=(0.0, 1e-4, 1e-3, 1e-2))
    assert decay.parse("0")[0] == 0.0
    assert decay.parse("0.001")[0] == 1e-3
    value, note = decay.parse("0.0004")
    assert value == 1e-3 or value == 1e-4
    assert note is not None
