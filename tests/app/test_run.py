"""The runner: identical requests share one training (also while it trains), results outlive a
client's ``clear_cache``, caches are bounded by entries and age, an abandoned run stops and
frees its trainer within a second, and the page copes with faults: a worker killed mid-run, a
missing or damaged shipped run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import streamlit as st

from bnviz import assets
from bnviz.app import run, workers
from tests.app.test_workers import in_background, slow_count, wait_until
from tests.helpers import assert_clean, charts, open_page

REPO = Path(__file__).resolve().parents[2]
QUICK = {"steps": "200", "width": "16", "depth": "2"}


def test_identical_requests_share_one_computation():
    shared = run.SharedResults(max_entries=4, max_age=60)
    started = threading.Event()
    release = threading.Event()

    def work(flight):
        started.set()
        release.wait(5)
        return "result"

    flights = []
    for _ in range(5):
        hit, _, flight = shared.join("k", work)
        assert not hit
        flights.append(flight)
    started.wait(5)
    assert len({id(f) for f in flights}) == 1 and shared.computed == 1
    release.set()
    flights[0].done.wait(5)
    for f in flights:
        shared.leave(f)
    assert shared.join("k", work)[:2] == (True, "result")
    assert shared.computed == 1


def test_results_survive_a_clients_clear_cache():
    """Streamlit's ``clear_cache`` message clears st.cache_data and st.cache_resource for
    everyone; the runner's results are its own."""
    shared = run.SharedResults(max_entries=4, max_age=60)
    _, _, flight = shared.join("k", lambda f: 42)
    flight.done.wait(5)
    shared.leave(flight)
    st.cache_data.clear()
    st.cache_resource.clear()
    assert shared.get("k") == (True, 42)


def test_bounded_by_entries_and_age(monkeypatch):
    shared = run.SharedResults(max_entries=2, max_age=100)
    clock = [1000.0]
    monkeypatch.setattr(run.time, "monotonic", lambda: clock[0])
    for key in "abc":
        _, _, f = shared.join(key, lambda f, key=key: key.upper())
        f.done.wait(5)
        shared.leave(f)
    assert len(shared) == 2 and shared.get("a") == (False, None)
    assert shared.get("c") == (True, "C")
    clock[0] += 101
    assert shared.get("c") == (False, None)


def test_an_abandoned_run_is_cancelled_unless_someone_rejoins():
    shared = run.SharedResults(max_entries=4, max_age=60, linger=0.2)
    seen = []

    def work(flight):
        while not flight.cancel.wait(0.01):
            pass
        seen.append("cancelled")
        raise workers.Cancelled("gone")

    _, _, first = shared.join("k", work)
    shared.leave(first)
    time.sleep(0.05)
    _, _, again = shared.join("k", work)  # a rerun of the same settings, within the linger
    assert again is first
    time.sleep(0.3)
    assert not first.cancel.is_set()
    shared.leave(again)
    first.done.wait(2)
    assert seen == ["cancelled"]
    _, _, fresh = shared.join("k", lambda f: "new")  # a later request starts afresh
    assert fresh is not first
    fresh.done.wait(5)
    shared.leave(fresh)


def test_an_abandoned_training_frees_its_trainer_within_a_second():
    shared = run.SharedResults(max_entries=4, max_age=60)

    def work(flight):
        flight.client = workers.Client(flight.cancel)
        return flight.client.run_many([(slow_count, (400,), {}), (slow_count, (400,), {})])

    _, _, flight = shared.join("train", work)
    wait_until(lambda: workers.snapshot()["busy"] == 2, timeout=60)
    start = time.monotonic()
    shared.leave(flight)
    wait_until(lambda: workers.snapshot()["busy"] == 0, timeout=5)
    assert time.monotonic() - start < 1.0
    flight.done.wait(5)
    assert isinstance(flight.error, workers.Cancelled)


def titled(result, title, *, height=300):
    """A figure builder with a keyword view argument (as the drift page's ``axes=``)."""
    import plotly.graph_objects as go

    return go.Figure(go.Scatter(y=list(result)), layout={"title": title, "height": height})


@dataclass(frozen=True)
class Settings:
    n: int

    def as_dict(self) -> dict:
        return {"n": self.n}


def test_keyword_view_arguments_reach_the_builder_in_a_worker_and_key_the_figure():
    spec = workers.build_figure(titled, [1, 2], ("t",), kwargs={"height": 420})
    assert spec["layout"]["height"] == 420 and spec["layout"]["title"]["text"] == "t"
    cfg = Settings(3)
    low = run.figure(cfg, [1, 2], titled, "t", height=200)
    high = run.figure(cfg, [1, 2], titled, "t", height=500)
    assert (low.layout.height, high.layout.height) == (200, 500)
    assert run.figure(cfg, [1, 2], titled, "t", height=500) is high


def test_pandas_is_whole_before_any_figure_is_built():
    """plotly looks pandas up in sys.modules: a half-imported one (another thread loading the
    digits) broke figures; the runner imports it first."""
    code = "import bnviz.app.run, sys; print(sys.modules['pandas'].Series.__name__)"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert out.stdout.strip() == "Series", out.stderr


# ----------------------------------------------------------------------------- pages


def test_a_worker_killed_mid_run_is_reported_and_the_next_run_works():
    thread, box = in_background(open_page, "drift", {"steps": "20000", "seed": "7"})
    wait_until(lambda: workers.snapshot()["started_pids"], timeout=120)
    os.kill(workers.snapshot()["started_pids"][0], signal.SIGKILL)
    thread.join(120)
    at = box["result"]
    assert not at.exception
    assert any("Training stopped" in e.value for e in at.error), [e.value for e in at.error]
    again = open_page("drift", {**QUICK, "seed": "7"})
    assert_clean(again)
    assert charts(again)


@pytest.mark.parametrize("damage", ["missing", "corrupt"])
def test_a_missing_or_damaged_shipped_run_is_trained_instead(damage, tmp_path, monkeypatch):
    folder = tmp_path / "assets"
    folder.mkdir()
    if damage == "corrupt":
        (folder / "drift-default.npz").write_bytes(b"PK\x03\x04 not really a zip file")
    monkeypatch.setattr(assets, "path_for", lambda name, folder_=None: folder / f"{name}.npz")
    assets.load.cache_clear()
    run.RUNS.clear()
    before = run.RUNS.computed
    try:
        at = open_page("drift")
    finally:
        assets.load.cache_clear()
    assert_clean(at)
    assert len(charts(at)) >= 6
    assert run.RUNS.computed == before + 1  # it trained


def test_a_rerun_after_clear_cache_does_not_train_again():
    at = open_page("drift", {**QUICK, "seed": "3"})
    assert_clean(at)
    computed = run.RUNS.computed
    st.cache_data.clear()
    st.cache_resource.clear()
    again = open_page("drift", {**QUICK, "seed": "3"})
    assert_clean(again)
    assert run.RUNS.computed == computed
    assert charts(again) == charts(at)


@pytest.fixture(scope="module", autouse=True)
def _end_workers():
    yield
    workers.shutdown()
