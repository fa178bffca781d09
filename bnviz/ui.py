"""The one bnviz module that touches Streamlit for what pages share.

Every page declares its controls once, as a table of ``Control`` rows (name, kind, range,
default, label). That one table drives the widgets, the parsing and validation of the URL query
string, the link written back to the URL (so a link reproduces the view), and the presets.
Training goes through ``run_experiment``: cached by the full config, bounded, with a progress
bar, behind a process-wide limit on concurrent trainers, and never showing a traceback.
"""

from __future__ import annotations

import json
import math
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import streamlit as st

from bnviz.guard import TRAINERS

TRUE_WORDS = {"1", "true", "yes", "on"}
WARM_UP_DELAY = 10.0  # seconds after the first page view before the trainers start
FALSE_WORDS = {"0", "false", "no", "off"}


def log_grid(lo: float, hi: float, mantissas: Sequence[float] = (1, 1.5, 2, 3, 5, 7)) -> tuple:
    """Round numbers spaced evenly on a log scale (1, 1.5, 2, 3, 5, 7, 10, ...) in [lo, hi]."""
    out = []
    e = math.floor(math.log10(lo))
    while 10**e <= hi * 10:
        for m in mantissas:
            v = float(f"{m * 10**e:.6g}")
            if lo * (1 - 1e-9) <= v <= hi * (1 + 1e-9):
                out.append(v)
        e += 1
    return tuple(sorted(set(out)))


def _grid_distance(option: float, number: float) -> float:
    """Distance on a log scale where both are positive (how grids are spaced), else plain; a
    positive number is always nearer to a positive option than to zero or a negative one."""
    if option > 0 and number > 0:
        return abs(math.log(option / number))
    return abs(option - number) + (1e9 if number > 0 else 0.0)


def fmt_number(v: Any) -> str:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return str(v)
    if isinstance(v, int) or float(v).is_integer() and abs(v) >= 1:
        return f"{int(v):,}"
    return f"{v:g}"


@dataclass(frozen=True)
class Control:
    """One control of a page: its widget, its URL parameter and its validation.

    kinds: "grid" (a slider over ``options``, numbers, e.g. a log grid of learning rates),
    "int" and "float" (a slider over [lo, hi] in ``step``s), "choice" (one of ``options``),
    "bool" (a toggle). ``where="view"`` marks a control the page draws itself next to its
    figures (with ``key_of``); it is still read from and written to the URL here.
    """

    name: str
    label: str
    kind: str
    default: Any
    options: tuple = ()
    lo: float | None = None
    hi: float | None = None
    step: float | None = None
    help: str | None = None
    labels: Mapping[Any, str] = field(default_factory=dict)
    where: str = "sidebar"

    def __post_init__(self) -> None:
        if self.kind not in ("grid", "int", "float", "choice", "bool"):
            raise ValueError(f"unknown control kind {self.kind!r}")
        self.check(self.default)

    def check(self, value: Any) -> Any:
        """The value if allowed, else ValueError saying what is allowed."""
        if self.kind in ("grid", "choice"):
            if value not in self.options:
                raise ValueError(f"{self.name} must be one of {self.describe_options()}")
            return value
        if self.kind == "bool":
            if not isinstance(value, bool):
                raise ValueError(f"{self.name} must be true or false")
            return value
        if not self.lo <= value <= self.hi:
            raise ValueError(
                f"{self.name} must be between {fmt_number(self.lo)} and {fmt_number(self.hi)}"
            )
        return value

    def describe_options(self) -> str:
        if self.kind == "grid":
            return f"{fmt_number(self.options[0])} to {fmt_number(self.options[-1])}"
        return ", ".join(str(o) for o in self.options)

    def parse(self, raw: str) -> tuple[Any, str | None]:
        """Value from a URL string, and a note when it had to be rounded to the slider.
        Raises ValueError with a message a student can read."""
        text = raw.strip()
        if self.kind == "choice":
            for option in self.options:
                if str(option).lower() == text.lower():
                    return option, None
            return self.check(text), None
        if self.kind == "bool":
            if text.lower() in TRUE_WORDS:
                return True, None
            if text.lower() in FALSE_WORDS:
                return False, None
            raise ValueError(f"{self.name} must be true or false")
        try:
            number = float(text)
        except ValueError:
            raise ValueError(f"{self.name} must be a number") from None
        if not math.isfinite(number):
            raise ValueError(f"{self.name} must be a finite number")
        if self.kind == "grid":
            lo, hi = self.options[0], self.options[-1]
            if not lo * (1 - 1e-9) <= number <= hi * (1 + 1e-9):
                raise ValueError(
                    f"{self.name} must be between {fmt_number(lo)} and {fmt_number(hi)}"
                )
            value = min(self.options, key=lambda o: _grid_distance(o, number))
        else:
            self.check(number)
            value = self.lo + round((number - self.lo) / self.step) * self.step
            value = int(round(value)) if self.kind == "int" else float(f"{value:.10g}")
        note = None
        if not math.isclose(value, number, rel_tol=1e-9):
            note = f"{self.name}={text} was rounded to the slider value {fmt_number(value)}"
        return value, note

    def encode(self, value: Any) -> str:
        if self.kind == "bool":
            return "1" if value else "0"
        return f"{value:g}" if isinstance(value, float) else str(value)

    def widget(self, key: str, container: Any, disabled: bool = False) -> Any:
        label = self.label
        fmt = lambda v: self.labels.get(v, fmt_number(v))  # noqa: E731
        common = dict(key=key, help=self.help, disabled=disabled)
        if self.kind == "grid":
            return container.select_slider(label, self.options, format_func=fmt, **common)
        if self.kind == "choice":
            return container.selectbox(label, self.options, format_func=fmt, **common)
        if self.kind == "bool":
            return container.toggle(label, **common)
        cast = int if self.kind == "int" else float
        return container.slider(label, cast(self.lo), cast(self.hi), step=cast(self.step), **common)


ACTIVATION_LABELS = {"sigmoid": "sigmoid", "tanh": "tanh", "relu": "ReLU"}
SEED_HELP = "Initial weights and batch order; the same seed gives the same pictures."


def activation_control(default: str = "sigmoid") -> Control:
    """The nonlinearity picker every training page shares."""
    return Control(
        "activation", "Activation", "choice", default,
        options=tuple(ACTIVATION_LABELS), labels=ACTIVATION_LABELS,
    )  # fmt: skip


def seed_control(default: int = 0, help: str = SEED_HELP) -> Control:
    """The seed every training page shares: same seed, same pictures, for the whole class."""
    return Control("seed", "Seed", "int", default, lo=0, hi=99, step=1, help=help)


def read_query(
    controls: Sequence[Control],
    query: Mapping[str, str],
    presets: Mapping[str, Mapping[str, Any]] | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """Control values from a query string: defaults, then ``preset=``, then each parameter.
    A bad value falls back and adds a notice; unknown parameters are ignored with a notice."""
    values = {c.name: c.default for c in controls}
    notices: list[str] = []
    by_name = {c.name: c for c in controls}
    preset = query.get("preset")
    if preset is not None:
        match = next((p for p in presets or {} if slug(p) == slug(preset)), None)
        if match is None:
            notices.append(f"preset={preset} is not a preset of this page")
        else:
            values.update({k: v for k, v in presets[match].items() if k in by_name})
    for key, raw in query.items():
        if key == "preset":
            continue
        control = by_name.get(key)
        if control is None:
            notices.append(f"{key} is not a setting of this page")
            continue
        try:
            values[key], note = control.parse(raw)
        except ValueError as err:
            notices.append(f"{key}={raw} ignored: {err}; using {fmt_number(values[key])}")
        else:
            if note:
                notices.append(note)
    return values, notices


def slug(name: str) -> str:
    return "-".join("".join(ch if ch.isalnum() else " " for ch in name.lower()).split())


def encode_query(controls: Sequence[Control], values: Mapping[str, Any]) -> dict[str, str]:
    """The query string of a view: only what differs from the defaults, so links stay short."""
    return {c.name: c.encode(values[c.name]) for c in controls if values[c.name] != c.default}


# ----------------------------------------------------------------------------- page state


def key_of(page: str, name: str) -> str:
    """The session-state key of a control's widget."""
    return f"{page}.{name}"


def page_controls(
    page: str,
    controls: Sequence[Control],
    presets: Mapping[str, Mapping[str, Any]] | None = None,
    preset_help: Mapping[str, str] | None = None,
    container: Any = None,
    title: str = "Settings",
) -> dict[str, Any]:
    """Draw a page's presets and controls (in the sidebar by default) and return the values.

    On the first run of the page in a session the values come from the URL (bad values fall
    back to defaults with a notice on the page); on every run the URL is rewritten from the
    values, so the address bar always holds a link to exactly this view. Values of "view"
    controls are returned as they stand; the page draws their widgets with ``key_of``.
    """
    box = container if container is not None else st.sidebar
    presets = presets or {}
    loaded = f"{page}.__loaded"
    if not st.session_state.get(loaded):
        values, notices = read_query(controls, st.query_params.to_dict(), presets)
        for c in controls:
            st.session_state[key_of(page, c.name)] = values[c.name]
        st.session_state[loaded] = True
        if notices:
            st.warning(
                "Some settings in this link could not be used, so defaults stand in:\n\n"
                + "\n".join(f"- {n}" for n in notices),
                icon=":material/link_off:",
            )
    if presets:
        box.markdown("**Presets**")
        for name, preset in presets.items():
            box.button(
                name,
                key=key_of(page, f"preset:{name}"),
                on_click=_apply_preset,
                args=(page, controls, preset),
                help=(preset_help or {}).get(name),
                width="stretch",
            )
    box.markdown(f"**{title}**")
    values = {}
    for c in controls:
        key = key_of(page, c.name)
        if key not in st.session_state:
            st.session_state[key] = c.default
        values[c.name] = c.widget(key, box) if c.where == "sidebar" else st.session_state[key]
    st.query_params.from_dict(encode_query(controls, values))
    return values


def _apply_preset(page: str, controls: Sequence[Control], preset: Mapping[str, Any]) -> None:
    for c in controls:
        st.session_state[key_of(page, c.name)] = preset.get(c.name, c.default)


# ----------------------------------------------------------------------------- running


@st.cache_resource(show_spinner=False)
def warm_up_trainers() -> None:
    """Start the training worker processes in the background, once per server, so that the
    first student to train does not wait for them (about 2 s on a small machine)."""
    import threading
    import time

    from bnviz import workers
    from bnviz.guard import default_slots

    def start() -> None:
        time.sleep(WARM_UP_DELAY)  # let the first page draw before the workers take the CPU
        workers.pool(default_slots())

    threading.Thread(target=start, daemon=True).start()


@st.cache_data(max_entries=24, ttl=3 * 3600, show_spinner=False)
def _cached_run(module: str, cfg_json: str) -> Any:
    """Run ``bnviz.experiments.<module>.run`` for a config given as JSON (the cache key).

    The progress bar and the waiting notice are created in here: Streamlit replays elements
    made inside a cached function, and both end empty, so a cache hit shows nothing at all.
    """
    import importlib

    experiment = importlib.import_module(f"bnviz.experiments.{module}")
    cfg = experiment.config_from_json(cfg_json)
    box = st.empty()

    def waiting(ahead: int) -> None:
        box.info(f"Waiting for a free trainer ({ahead} ahead of you)…", icon=":material/hourglass:")

    with TRAINERS.slot(waiting, need=getattr(experiment, "PROCESSES", 1)):
        bar = box.progress(0.0, text="Training…")

        def progress(done: int, total: int) -> None:
            bar.progress(done / total, text=f"Training… step {done:,} of {total:,}")

        result = experiment.run(cfg, progress)
    box.empty()
    return result


def run_experiment(module: str, cfg: Any) -> Any | None:
    """Run (or fetch from the cache) an experiment; on failure show a message, return None."""
    try:
        return _cached_run(module, json.dumps(cfg.as_dict(), sort_keys=True))
    except ValueError as err:
        st.error(f"These settings cannot run: {err}", icon=":material/error:")
    except Exception as err:  # noqa: BLE001 - the page must never show a traceback
        traceback.print_exc()
        st.error(
            f"Training failed unexpectedly ({type(err).__name__}: {err}). "
            "Try other settings, or reload the page.",
            icon=":material/error:",
        )
    return None


@st.cache_resource(max_entries=256, ttl=3 * 3600, show_spinner=False)
def _cached_figure(cfg_json: str, builder: str, args_json: str, _result: Any) -> Any:
    import importlib

    mod, name = builder.split(":")
    return getattr(importlib.import_module(mod), name)(_result, *json.loads(args_json))


def figure(cfg: Any, result: Any, builder: Callable[..., Any], *args: Any) -> Any:
    """``builder(result, *args)``, built once per server for a (config, view) and shared.

    Figures are pure functions of a run (itself a function of its config) and the view
    arguments. Building the animated ones takes longer than a rerun may, so they are kept,
    unpickled (cache_resource), keyed by the config rather than by the run's bulky arrays.
    """
    key = f"{type(cfg).__name__}:{json.dumps(cfg.as_dict(), sort_keys=True)}"
    path = f"{builder.__module__}:{builder.__name__}"
    return _cached_figure(key, path, json.dumps(args), result)


def divergence_notes(runs: Mapping[str, Any]) -> None:
    """Say plainly which runs diverged and when: divergence is a result, not a crash."""
    for name, h in runs.items():
        if h.diverged_at is not None:
            st.warning(
                f"The {name} net **diverged at step {h.diverged_at:,}**: its loss became "
                "non-finite or grew a hundredfold, so training stopped there. Everything it "
                "recorded until then is shown.",
                icon=":material/trending_up:",
            )


# ----------------------------------------------------------------------------- page pieces


def header(title: str, lead: str) -> None:
    st.title(title)
    st.markdown(lead)


def notice_box(title: str, body: str, expanded: bool = True) -> None:
    with st.expander(title, expanded=expanded):
        st.markdown(body)


def formulas(*latex: str) -> None:
    for expr in latex:
        st.latex(expr)


def chart(fig: Any, key: str | None = None) -> None:
    """A plotly figure with the modebar's PNG export named after the chart."""
    name = slug(fig.layout.title.text or key or "bnviz")
    st.plotly_chart(
        fig,
        key=key,
        theme=None,
        config={"displaylogo": False, "toImageButtonOptions": {"filename": name, "scale": 2}},
    )


def downloads(files: Mapping[str, tuple[Callable[[], bytes | str], str]], key: str) -> None:
    """Download buttons side by side: label -> (data maker, file name)."""
    cols = st.columns(len(files))
    for col, (label, (make, filename)) in zip(cols, files.items(), strict=True):
        mime = "text/csv" if filename.endswith(".csv") else "application/octet-stream"
        col.download_button(
            label,
            make,
            file_name=filename,
            mime=mime,
            key=f"{key}:{filename}",
            icon=":material/download:",
        )
