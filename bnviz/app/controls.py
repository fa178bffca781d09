"""The controls of every page as data: one table of ``Control`` rows per page.

A row declares a setting once (name, kind, range, default, label) and drives everything about
it: the widget, the parsing and validation of the URL query string (a bad value falls back to
the default with a notice a student can read), the link written back to the address bar, and
the presets. Plain Python, no Streamlit: ``bnviz.app.widgets`` draws the rows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bnviz import functional as F
from bnviz.app.safe_text import as_code

TRUE_WORDS = {"1", "true", "yes", "on"}
APP_PARAMETERS = {"present"}  # the app's own link parameters, on every page (not a page's)
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


WIDGETS = ("slider", "toggle", "select", "segmented", "radio")


@dataclass(frozen=True)
class Control:
    """One control of a page: its widget, its URL parameter and its validation.

    kinds: "grid" (a slider over ``options``, numbers, e.g. a log grid of learning rates),
    "int" and "float" (a slider over [lo, hi] in ``step``s), "choice" (one of ``options``),
    "bool" (a toggle). ``where="view"`` marks a control the page draws itself next to its
    figures (``bnviz.app.widgets.view``); it is still read from and written to the URL here.
    ``widget`` picks another look for a choice or an int: "select" (a drop-down), "segmented"
    (buttons in a row) or "radio"; by default the kind decides (sliders, a drop-down, a toggle).
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
    widget: str = ""

    def __post_init__(self) -> None:
        if self.kind not in ("grid", "int", "float", "choice", "bool"):
            raise ValueError(f"unknown control kind {self.kind!r}")
        if not self.widget:
            default = {"choice": "select", "bool": "toggle"}.get(self.kind, "slider")
            object.__setattr__(self, "widget", default)
        if self.widget not in WIDGETS:
            raise ValueError(f"unknown widget {self.widget!r}")
        if self.widget in ("select", "segmented", "radio") and self.kind not in ("choice", "int"):
            raise ValueError(f"a {self.kind} control cannot be drawn as {self.widget}")
        self.check(self.default)

    def check(self, value: Any) -> Any:
        """The value if allowed, else ValueError saying what is allowed."""
        if self.kind in ("grid", "choice"):
            if value not in self.options:
                raise ValueError(f"the value must be one of {self.describe_options()}")
            return value
        if self.kind == "bool":
            if not isinstance(value, bool):
                raise ValueError("the value must be true or false")
            return value
        if not self.lo <= value <= self.hi:
            raise ValueError(
                f"the value must be between {fmt_number(self.lo)} and {fmt_number(self.hi)}"
            )
        return value

    def choices(self) -> tuple:
        """Every value the control can take, for a drop-down or buttons (an int: lo..hi)."""
        if self.kind == "int":
            return tuple(range(int(self.lo), int(self.hi) + 1, int(self.step)))
        return self.options

    def nearest(self, value: Any, options: Sequence[Any]) -> Any:
        """The option closest to value (a number), else the default if offered, else the first."""
        if isinstance(value, int | float) and not isinstance(value, bool):
            numbers = [o for o in options if isinstance(o, int | float)]
            if numbers:
                return min(numbers, key=lambda o: abs(o - value))
        return self.default if self.default in options else options[0]

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
            raise ValueError("the value must be true or false")
        try:
            number = float(text)
        except ValueError:
            raise ValueError("the value must be a number") from None
        if not math.isfinite(number):
            raise ValueError("the value must be a finite number")
        if self.kind == "grid":
            lo, hi = self.options[0], self.options[-1]
            if not lo * (1 - 1e-9) <= number <= hi * (1 + 1e-9):
                raise ValueError(f"the value must be between {fmt_number(lo)} and {fmt_number(hi)}")
            value = min(self.options, key=lambda o: _grid_distance(o, number))
        else:
            self.check(number)
            value = self.lo + round((number - self.lo) / self.step) * self.step
            value = int(round(value)) if self.kind == "int" else float(f"{value:.10g}")
        note = None
        if not math.isclose(value, number, rel_tol=1e-9):
            note = (
                f"{self.label} ({as_code(f'{self.name}={text}')}) was rounded to the slider "
                f"value {fmt_number(value)}"
            )
        return value, note

    def encode(self, value: Any) -> str:
        if self.kind == "bool":
            return "1" if value else "0"
        return f"{value:g}" if isinstance(value, float) else str(value)


SEED_HELP = "Initial weights and batch order; the same seed gives the same pictures."


def activation_control(default: str = "sigmoid") -> Control:
    """The nonlinearity picker every training page shares (the engine's nonlinearities)."""
    return Control(
        "activation", "Activation", "choice", default,
        options=F.NONLINEARITIES, labels={n: F.ACTIVATIONS[n].title for n in F.NONLINEARITIES},
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
            notices.append(f"{as_code(f'preset={preset}')} is not a preset of this page")
        else:
            values.update({k: v for k, v in presets[match].items() if k in by_name})
    for key, raw in query.items():
        if key == "preset" or key in APP_PARAMETERS:
            continue
        control = by_name.get(key)
        if control is None:
            notices.append(f"{as_code(key)} is not a setting of this page")
            continue
        try:
            values[key], note = control.parse(raw)
        except ValueError as err:
            notices.append(
                f"{control.label} ({as_code(f'{key}={raw}')}): {err}, so it is "
                f"{control.labels.get(values[key], fmt_number(values[key]))}"
            )
        else:
            if note:
                notices.append(note)
    return values, notices


def slug(name: str) -> str:
    return "-".join("".join(ch if ch.isalnum() else " " for ch in name.lower()).split())


def encode_query(controls: Sequence[Control], values: Mapping[str, Any]) -> dict[str, str]:
    """The query string of a view: only what differs from the defaults, so links stay short."""
    return {c.name: c.encode(values[c.name]) for c in controls if values[c.name] != c.default}
