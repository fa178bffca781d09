"""Streamlit widgets drawn from ``Control`` rows, their session state and the URL they write.

A page's controls live in ``st.session_state`` under ``key_of(page, name)``. On the first run
of a page in a session they are read from the URL; on every run the URL is rewritten from
them, so the address bar always holds a link to exactly this view. Sidebar controls are drawn
by ``page_controls``; view controls (next to their figures) by ``view``, the one way to draw
them, which also keeps a value valid when the options depend on the run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import streamlit as st

from bnviz.app import present
from bnviz.app.controls import Control, encode_query, fmt_number, read_query

CHOICE_LOOKS = {"select": "selectbox", "segmented": "segmented_control", "radio": "radio"}


def key_of(page: str, name: str) -> str:
    """The session-state key of a control's widget."""
    return f"{page}.{name}"


def draw(
    c: Control,
    key: str,
    container: Any,
    *,
    options: Sequence[Any] | None = None,
    format: Callable[[Any], str] | None = None,
    disabled: bool = False,
    help: str | None = None,
    label: str | None = None,
) -> Any:
    """The widget of a control row, bound to ``key``; ``options`` narrows a choice for this run,
    ``format``, ``help`` and ``label`` replace the row's words where they depend on the run."""
    label = label or c.label
    fmt = format or (lambda v: c.labels.get(v, fmt_number(v)))
    common = dict(key=key, help=help or c.help, disabled=disabled)
    if c.widget in CHOICE_LOOKS:
        opts = list(options if options is not None else c.choices())
        make = getattr(container, CHOICE_LOOKS[c.widget])
        extra = {"segmented": {"required": True}, "radio": {"horizontal": True}}.get(c.widget, {})
        return make(label, opts, format_func=fmt, **extra, **common)
    if c.widget == "toggle":
        return container.toggle(label, **common)
    if c.kind == "grid":
        return container.select_slider(label, c.options, format_func=fmt, **common)
    cast = int if c.kind == "int" else float
    return container.slider(label, cast(c.lo), cast(c.hi), step=cast(c.step), **common)


def view(
    page: str,
    c: Control,
    container: Any = None,
    *,
    options: Sequence[Any] | None = None,
    format: Callable[[Any], str] | None = None,
    disabled: bool = False,
    help: str | None = None,
    label: str | None = None,
) -> Any:
    """Draw a view control next to its figure and return its value. Where ``options`` (a
    subset of the row's, e.g. the layers this run has) no longer holds the stored value, the
    value moves to the nearest option first, so the widget never hands back a stale one."""
    key = key_of(page, c.name)
    if options is not None:
        opts = list(options)
        if st.session_state.get(key) not in opts:
            st.session_state[key] = c.nearest(st.session_state.get(key, c.default), opts)
    return draw(
        c, key, container if container is not None else st, options=options,
        format=format, disabled=disabled, help=help, label=label,
    )  # fmt: skip


def page_controls(
    page: str,
    controls: Sequence[Control],
    presets: Mapping[str, Mapping[str, Any]] | None = None,
    preset_help: Mapping[str, str] | None = None,
    container: Any = None,
    title: str = "Settings",
) -> dict[str, Any]:
    """Draw a page's presets and sidebar controls and return every control's value.

    On the first run of the page in a session the values come from the URL (bad values fall
    back to defaults with a notice on the page); on every run the URL is rewritten from the
    values. Values of view controls are returned as they stand; the page draws their widgets
    with ``view``.
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
        values[c.name] = draw(c, key, box) if c.where == "sidebar" else st.session_state[key]
    st.query_params.from_dict({**encode_query(controls, values), **present.query()})
    return values


def _apply_preset(page: str, controls: Sequence[Control], preset: Mapping[str, Any]) -> None:
    for c in controls:
        st.session_state[key_of(page, c.name)] = preset.get(c.name, c.default)
