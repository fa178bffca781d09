"""Running a lesson's experiment for a page: shipped runs first, then the cache, then the queue
for a trainer, a progress bar while it trains, and a message (never a traceback) if it fails.

Experiments and figure builders come in as objects (``bnviz.experiment.Experiment``, plain
functions); the caches key them by name and by the config's JSON, and leave the objects
themselves out of the key (Streamlit skips ``_``-prefixed arguments when hashing).
"""

from __future__ import annotations

import json
import threading
import traceback
from collections.abc import Callable
from typing import Any

import streamlit as st

from bnviz.app import pieces, workers
from bnviz.app.guard import TRAINERS, default_slots
from bnviz.experiment import Experiment

WARM_UP_DELAY = 10.0  # seconds after the first page view before the trainers start


_IMPORTS = threading.Lock()


def plotting_stack() -> None:
    """Import plotly and pandas once, one thread at a time. Two script threads importing them
    at once (two first visits, or a rerun overlapping the run it replaces) can trip Python's
    import deadlock avoidance, which hands one of them a half-initialized pandas ("partially
    initialized module 'pandas' has no attribute 'Series'") that then breaks every chart."""
    with _IMPORTS:
        import pandas  # noqa: F401
        import plotly.graph_objects  # noqa: F401
        import plotly.subplots  # noqa: F401


def config_key(cfg: Any) -> str:
    """A config as the cache knows it: its type and its fields as sorted JSON."""
    return f"{type(cfg).__name__}:{json.dumps(cfg.as_dict(), sort_keys=True)}"


@st.cache_resource(show_spinner=False)
def warm_up_trainers() -> None:
    """In the background, once per server: load (or compile, the first time on a machine) the
    training kernels, then start the worker processes, so that the first student to train
    waits for neither (about 1 s and 2 s on a small machine; compiling takes ~30 s)."""
    import time

    from bnviz.train import warm_up

    def start() -> None:
        time.sleep(WARM_UP_DELAY)  # let the first page draw before the workers take the CPU
        warm_up()  # here first: the workers then find the kernels in the cache
        workers.pool(default_slots())

    threading.Thread(target=start, daemon=True).start()


@st.cache_data(max_entries=24, ttl=3 * 3600, show_spinner=False)
def _cached_run(name: str, key: str, _experiment: Experiment, _cfg: Any) -> Any:
    """Run the experiment ``name`` on the config whose JSON is ``key``.

    The progress bar and the waiting notice are created in here: Streamlit replays elements
    made inside a cached function, and both end empty, so a cache hit shows nothing at all.
    """
    box = st.empty()

    def waiting(ahead: int) -> None:
        box.info(f"Waiting for a free trainer ({ahead} ahead of you)…", icon=":material/hourglass:")

    with TRAINERS.slot(waiting, need=_experiment.processes):
        bar = box.progress(0.0, text="Training…")

        def progress(done: int, total: int) -> None:
            bar.progress(done / total, text=f"Training… step {done:,} of {total:,}")

        result = _experiment(_cfg, progress, workers)
    box.empty()
    return result


def run_experiment(experiment: Experiment, cfg: Any) -> Any | None:
    """The experiment's result for cfg: shipped, cached or trained now. On failure the page
    shows a message and gets None."""
    from bnviz import assets  # loads the engine's modules: not before a page needs them

    try:
        shipped = experiment.shipped_name(cfg)
        if shipped is not None and assets.exists(shipped):
            return assets.load(shipped, experiment.decode)
        return _cached_run(experiment.name, config_key(cfg), experiment, cfg)
    except ValueError as err:
        pieces.cannot_run(err)
    except Exception as err:  # noqa: BLE001 - the page must never show a traceback
        traceback.print_exc()
        st.error(
            f"Training failed unexpectedly ({type(err).__name__}: {pieces.as_text(err)}). "
            "Try other settings, or reload the page.",
            icon=":material/error:",
        )
    return None


@st.cache_resource(max_entries=256, ttl=3 * 3600, show_spinner=False)
def _cached_figure(
    key: str, builder: str, args_json: str, _build: Callable[..., Any], _result: Any
) -> Any:
    args, kwargs = json.loads(args_json)
    return _build(_result, *args, **kwargs)


def figure(cfg: Any, result: Any, build: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``build(result, *args, **kwargs)``, built once per server for a (config, view), shared.

    Figures are pure functions of a run (itself a function of its config) and the view
    arguments. Building the animated ones takes longer than a rerun may, so they are kept,
    unpickled (cache_resource), keyed by the config rather than by the run's bulky arrays.
    """
    name = f"{build.__module__}.{build.__qualname__}"
    view = json.dumps([args, kwargs], sort_keys=True)
    return _cached_figure(config_key(cfg), name, view, build, result)
