"""Running a lesson's experiment for a page: shipped runs first, then the runs this server has
finished, then an identical run already in flight (joined, not repeated), else a new run in
the worker processes; meanwhile the student sees their place in line, a time estimate and a
progress bar, and on failure a message, never a traceback. A run's figures are built in the
workers too, and kept.

The caches are this process's own (``SharedResults``), bounded by entries and age, not
``st.cache_data``: any client may send Streamlit's ``clear_cache``, which would wipe those for
every student at once.

Experiments and figure builders come in as objects (``bnviz.experiment.Experiment``, plain
functions); the caches key them by name and by the config's JSON.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

# Imported whole before any session builds a figure: plotly only looks these modules up in
# sys.modules, so one thread's half-finished first import of pandas (sklearn imports it when
# digits load) made another session's figure fail with "partially initialized module".
import pandas  # noqa: F401
import PIL.Image  # noqa: F401
import streamlit as st

from bnviz.app import guard, pieces, workers
from bnviz.experiment import Experiment

LOG = logging.getLogger("bnviz")

POLL = 0.1  # seconds between a waiting page's looks at its run
HEARTBEAT = 0.2  # an unchanged status is redrawn this often: each draw lets Streamlit stop a
# script whose student moved on (a rerun, a closed tab), so an abandoned run is noticed fast
LINGER = 0.25  # seconds a run nobody waits for any more keeps going (a rerun may rejoin it)
RUN_ENTRIES, FIGURE_ENTRIES = 48, 256
MAX_AGE = 3 * 3600.0


def _warm_up_delay() -> float:
    try:
        return max(0.0, float(os.environ.get("BNVIZ_WARM_UP_DELAY", "10")))
    except ValueError:
        return 10.0


WARM_UP_DELAY = _warm_up_delay()  # seconds after the first page view before trainers start


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


# --------------------------------------------------------------------------- shared results


class Flight:
    """A computation in progress, shared by everyone who asked for the same key."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.done = threading.Event()
        self.cancel = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None
        self.waiters = 0
        self.progress: tuple[int, int] | None = None
        self.client: workers.Client | None = None
        self.note: str | None = None


class SharedResults:
    """Finished results by key, bounded by entries (least recently used go first) and age,
    and the computations in flight: a request for a key in flight waits for that one."""

    def __init__(self, max_entries: int, max_age: float, linger: float = LINGER) -> None:
        self.max_entries, self.max_age, self.linger = max_entries, max_age, linger
        self._done: OrderedDict[str, tuple[float, Any]] = OrderedDict()
        self._flights: dict[str, Flight] = {}
        self._lock = threading.Lock()
        self.computed = 0  # computations started (a test counts them)

    def __len__(self) -> int:
        return len(self._done)

    def in_flight(self) -> int:
        return len(self._flights)

    def clear(self) -> None:
        with self._lock:
            self._done.clear()

    def _hit(self, key: str) -> tuple[bool, Any]:
        entry = self._done.get(key)
        if entry is None:
            return False, None
        if time.monotonic() - entry[0] > self.max_age:
            del self._done[key]
            return False, None
        self._done.move_to_end(key)
        return True, entry[1]

    def get(self, key: str) -> tuple[bool, Any]:
        with self._lock:
            return self._hit(key)

    def join(self, key: str, work: Callable[[Flight], Any]) -> tuple[bool, Any, Flight | None]:
        """(True, result, None) if finished; else (False, None, flight): the flight computing
        it, joined (and started if there was none). Call ``leave(flight)`` when done waiting."""
        with self._lock:
            hit, value = self._hit(key)
            if hit:
                return True, value, None
            flight = self._flights.get(key)
            if flight is None or flight.cancel.is_set():
                flight = self._flights[key] = Flight(key)
                self.computed += 1
                threading.Thread(
                    target=self._fly, args=(flight, work), name="bnviz-run", daemon=True
                ).start()
            flight.waiters += 1
            job = flight.client.job if flight.client is not None else None
            if job is not None:
                job.waiters = flight.waiters
            return False, None, flight

    def leave(self, flight: Flight) -> None:
        with self._lock:
            flight.waiters -= 1
            if flight.waiters > 0 or flight.done.is_set():
                return
        timer = threading.Timer(self.linger, self._abandon, args=(flight,))
        timer.daemon = True
        timer.start()

    def _abandon(self, flight: Flight) -> None:
        with self._lock:
            if flight.waiters or flight.done.is_set():
                return
            flight.cancel.set()
            if self._flights.get(flight.key) is flight:
                del self._flights[flight.key]
        if flight.client is not None:
            flight.client.abort()

    def _fly(self, flight: Flight, work: Callable[[Flight], Any]) -> None:
        try:
            flight.result = work(flight)
            with self._lock:
                self._done[flight.key] = (time.monotonic(), flight.result)
                self._done.move_to_end(flight.key)
                while len(self._done) > self.max_entries:
                    self._done.popitem(last=False)
        except BaseException as err:  # noqa: BLE001 - handed to every waiter
            flight.error = err
        finally:
            with self._lock:
                if self._flights.get(flight.key) is flight:
                    del self._flights[flight.key]
            flight.done.set()


RUNS = SharedResults(RUN_ENTRIES, MAX_AGE)
FIGURES = SharedResults(FIGURE_ENTRIES, MAX_AGE)


# --------------------------------------------------------------------------- warm-up

_warm_lock = threading.Lock()
_warm_started = False


def warm_up_trainers() -> None:
    """Once per server, in the background: start the worker processes a little after the first
    page view (the zygote loads the engine and its kernels; compiling them, the first time on a
    machine, takes about a minute), so the first student to train waits for neither."""
    global _warm_started
    with _warm_lock:
        if _warm_started:
            return
        _warm_started = True

    def start() -> None:
        time.sleep(WARM_UP_DELAY)  # let the first page draw before the zygote takes the CPU
        try:
            workers.start()
        except RuntimeError:
            pass  # the server is stopping

    threading.Thread(target=start, name="bnviz-warm-up", daemon=True).start()


# --------------------------------------------------------------------------- waiting


def _session_gone() -> bool:
    """Whether this script's browser tab has gone (Streamlit keeps running the script of a
    disconnected session, in case it reconnects)."""
    from streamlit.runtime import Runtime
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    if ctx is None or not Runtime.exists():
        return False
    return not Runtime.instance().is_active_session(ctx.session_id)


def _status(flight: Flight) -> tuple[str, float | None]:
    """What the page says about a run in flight: text, and the progress bar's fraction."""
    p = flight.progress
    frac = min(1.0, p[0] / p[1]) if p and p[1] else None
    job = flight.client.job if flight.client is not None else None
    note = f"{flight.note} " if flight.note else ""
    if job is None or job.phase == "done":
        if p:
            return f"{note}Training… step {p[0]:,} of {p[1]:,}", frac
        return f"{note}Preparing the run…", None
    if job.phase in ("starting", "queued"):
        return note + guard.summary(job), None
    if job.phase == "paused":
        return note + guard.summary(job), frac or 0.0
    steps = f" step {p[0]:,} of {p[1]:,}," if p else ""
    return f"{note}Training…{steps} {guard.in_words(job.eta_done)} left", frac or 0.0


def _wait(shared: SharedResults, flight: Flight, box: Any | None) -> Any:
    """Wait for a flight, showing its status in ``box``; leaving (Streamlit stops the script,
    the tab closed) lets the flight go on for others, or end if nobody else waits."""
    last, drawn = None, 0.0
    try:
        while not flight.done.wait(POLL):
            if _session_gone():
                st.stop()
            if box is None:
                continue
            now = time.monotonic()
            status = _status(flight)
            if status != last or now - drawn > HEARTBEAT:
                text, frac = status
                if frac is None:
                    box.info(text, icon=":material/hourglass:")
                else:
                    box.progress(frac, text=text)
                last, drawn = status, now
    finally:
        shared.leave(flight)
    if flight.error is not None:
        raise flight.error
    return flight.result


# --------------------------------------------------------------------------- runs


def _shipped(name: str, decode: Callable[[bytes], Any] | None) -> Any | None:
    """A shipped run, or None when its file is missing or cannot be read (then it trains)."""
    from bnviz import assets  # loads the engine's modules: not before a page needs them

    try:
        if assets.exists(name):
            return assets.load(name, decode)
        LOG.warning("bnviz: the shipped run %r is missing; training it instead", name)
    except Exception as err:  # noqa: BLE001 - a damaged file of any kind
        LOG.warning("bnviz: the shipped run %r cannot be read (%s); training it instead", name, err)
    return None


def _train(experiment: Experiment, cfg: Any, note: str | None) -> Any:
    key = f"{experiment.name}|{config_key(cfg)}"

    def work(flight: Flight) -> Any:
        flight.note = note
        flight.client = workers.Client(flight.cancel, lambda: flight.waiters)

        def progress(done: int, total: int) -> None:
            flight.progress = (int(done), int(total))

        return experiment(cfg, progress, flight.client)

    hit, value, flight = RUNS.join(key, work)
    if hit:
        return value
    box = st.empty()
    result = _wait(RUNS, flight, box)
    box.empty()
    return result


def run_experiment(experiment: Experiment, cfg: Any) -> Any | None:
    """The experiment's result for cfg: shipped, cached, joined or trained now. On failure the
    page shows a message and gets None."""
    try:
        shipped = experiment.shipped_name(cfg)
        note = None
        if shipped is not None:
            result = _shipped(shipped, experiment.decode)
            if result is not None:
                return result
            note = "The precomputed run of these settings is missing or damaged: training it now."
        return _train(experiment, cfg, note)
    except ValueError as err:
        pieces.cannot_run(err)
    except workers.WorkerDied as err:
        st.error(
            f"Training stopped: {pieces.as_text(err)}. Nothing is lost but this run: press **R** "
            "or change a setting to train it again.",
            icon=":material/error:",
        )
    except workers.Cancelled:
        st.warning("This run was stopped. Press **R** to run it again.", icon=":material/stop:")
    except Exception as err:  # noqa: BLE001 - the page must never show a traceback
        traceback.print_exc()
        st.error(
            f"Training failed unexpectedly ({type(err).__name__}: {pieces.as_text(err)}). "
            "Try other settings, or reload the page.",
            icon=":material/error:",
        )
    return None


# --------------------------------------------------------------------------- figures

_figure_class: Any = None


def shared_figure(spec: dict) -> Any:
    """A plotly Figure from the dict a worker built (``Figure.to_dict()``), made without
    validating it again, whose ``to_dict`` returns that dict: ``st.plotly_chart`` calls it on
    every rerun, and for a figure kept for all sessions a fresh deep copy each time is waste.
    Such figures are shared: nobody may change them."""
    global _figure_class
    if _figure_class is None:
        import plotly.graph_objects as go

        class SharedFigure(go.Figure):
            def __init__(self, spec: dict) -> None:
                super().__init__(spec, skip_invalid=True, _validate=False)
                self._bnviz_spec = spec

            def to_dict(self) -> dict:
                return self._bnviz_spec

        _figure_class = SharedFigure
    return _figure_class(spec)


def _build(
    build: Callable[..., Any], result: Any, args: tuple, kwargs: dict, flight: Flight
) -> Any:
    """Build in a worker when the workers are up and the builder can be named there (a
    function of the bnviz package); else, or if that fails, here."""
    if workers.ready() and getattr(build, "__module__", "").startswith("bnviz."):
        try:
            spec = workers.build_figure(build, result, args, flight.cancel, kwargs)
            return shared_figure(spec)
        except (workers.WorkerDied, RuntimeError) as err:
            LOG.warning("bnviz: a figure could not be built in a worker (%s); building here", err)
    return shared_figure(build(result, *args, **kwargs).to_dict())


def figure(cfg: Any, result: Any, build: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``build(result, *args, **kwargs)``, built once per server for a (config, view), shared.

    Figures are pure functions of a run (itself a function of its config) and the view
    arguments; building the animated ones takes longer than a rerun may, so they are built in
    a worker process (figures go ahead of training there) and kept, keyed by the config rather
    than by the run's bulky arrays. Identical requests in flight share one build.
    """
    name = f"{build.__module__}.{build.__qualname__}"
    view = json.dumps([args, kwargs], sort_keys=True)
    key = f"{config_key(cfg)}|{name}|{view}"
    hit, value, flight = FIGURES.join(key, lambda f: _build(build, result, args, kwargs, f))
    if hit:
        return value
    return _wait(FIGURES, flight, None)
