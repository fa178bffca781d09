"""The layering the design promises, read from the source's imports (lazy ones included).

Data flows one way: pages -> app -> experiments -> engine -> functional, and pages -> figures.
Only the app layer (``bnviz/app``, ``app.py``, ``app_pages/``) imports Streamlit; nothing in the
core imports a higher layer; processes are started above the engine, never inside it; a
lesson's figures use the shared pieces, never another lesson's figures; no lesson code is
loaded by name. And no ``pages/`` folder beside ``app.py``: while one exists, Streamlit routes a
fresh server's deep links straight to its files, around ``app.py``'s navigation (DESIGN.md).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from bnviz.app.lessons import LESSONS, SECTIONS

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "bnviz"
SHARED_FIGURES = {"common", "animate", "style"}
PROCESS_MODULES = {"multiprocessing", "concurrent", "subprocess"}


def module_name(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def sources() -> dict[str, Path]:
    files = [*PACKAGE.rglob("*.py"), REPO / "app.py", *(REPO / "app_pages").glob("*.py")]
    return {module_name(p): p for p in files}


def imports(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside functions, as absolute names."""
    tree = ast.parse(path.read_text(), filename=str(path))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out |= {f"{node.module}.{alias.name}" for alias in node.names}
    return out


def calls_import_module(path: Path) -> bool:
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
            if name in ("import_module", "__import__"):
                return True
    return False


def layer(module: str) -> str:
    if module == "app" or module.startswith(("app_pages", "bnviz.app")):
        return "app"
    if module.startswith("bnviz.experiments"):
        return "experiments"
    if module.startswith("bnviz.figures"):
        return "figures"
    return "core"


SOURCES = sources()


def offenders(rule) -> list[str]:
    return sorted(
        f"{name} imports {imp}"
        for name, path in SOURCES.items()
        for imp in imports(path)
        if rule(name, imp)
    )


def is_under(imp: str, package: str) -> bool:
    return imp == package or imp.startswith(package + ".")


def test_only_the_app_layer_imports_streamlit():
    assert not offenders(lambda m, imp: is_under(imp, "streamlit") and layer(m) != "app")


def test_the_core_imports_no_higher_layer():
    higher = ("bnviz.experiments", "bnviz.figures", "bnviz.app")
    assert not offenders(
        lambda m, imp: layer(m) == "core" and any(is_under(imp, h) for h in higher)
    )


def test_experiments_import_neither_figures_nor_the_app():
    assert not offenders(
        lambda m, imp: (
            layer(m) == "experiments"
            and (is_under(imp, "bnviz.figures") or is_under(imp, "bnviz.app"))
        )
    )


def test_figures_never_train_nor_touch_the_app():
    """Figures are pure functions of data: no app, no fan-out, no engine entry points."""
    banned = ("bnviz.app", "bnviz.fanout", "bnviz.sweep", "bnviz.workers")
    assert not offenders(
        lambda m, imp: layer(m) == "figures" and any(is_under(imp, b) for b in banned)
    )


def test_no_process_code_below_the_app_layer():
    """The engine and everything it builds on train in the calling process; only the app
    layer starts processes (``bnviz.fanout`` takes an executor from it)."""
    assert not offenders(lambda m, imp: layer(m) != "app" and imp.split(".")[0] in PROCESS_MODULES)


def test_a_lessons_figures_use_only_shared_pieces_and_their_own_lesson():
    def rule(m: str, imp: str) -> bool:
        if layer(m) != "figures" or m.rsplit(".", 1)[-1] in SHARED_FIGURES | {"figures"}:
            return False
        own = m.rsplit(".", 1)[-1]
        if is_under(imp, "bnviz.figures"):
            name = imp.split(".")[2] if imp.count(".") >= 2 else ""
            return name not in SHARED_FIGURES | {own, ""}
        if is_under(imp, "bnviz.experiments"):
            name = imp.split(".")[2] if imp.count(".") >= 2 else ""
            return name not in (own, "")
        return False

    assert not offenders(rule)


def test_no_lesson_code_is_loaded_by_name():
    assert not [name for name, path in SOURCES.items() if calls_import_module(path)]


def test_no_pages_folder_beside_app_py():
    assert not (REPO / "pages").exists()


def test_every_lesson_is_one_page_one_experiment_one_figures_module_and_its_tests():
    for lesson in LESSONS:
        assert (REPO / lesson.path).exists(), lesson.path
        if lesson.is_home:
            assert (REPO / "tests" / "pages" / "test_home.py").exists()
            continue
        experiment = PACKAGE / "experiments" / f"{lesson.stem}.py"
        tree = ast.parse(experiment.read_text())
        exported = [
            node.value
            for node in tree.body
            if isinstance(node, ast.Assign)
            and any(getattr(t, "id", "") == "EXPERIMENT" for t in node.targets)
        ]
        assert len(exported) == 1, f"{experiment} must export one EXPERIMENT"
        first = exported[0].args[0] if exported[0].args else None
        assert isinstance(first, ast.Constant) and first.value == lesson.stem
        assert (PACKAGE / "figures" / f"{lesson.stem}.py").exists()
        assert (REPO / "tests" / "lessons" / f"test_{lesson.stem}.py").exists()
        assert (REPO / "tests" / "pages" / f"test_{lesson.stem}.py").exists()


def test_lessons_run_in_section_order():
    order = [SECTIONS.index(lesson.section) for lesson in LESSONS]
    assert order == sorted(order)
    assert len({lesson.stem for lesson in LESSONS}) == len(LESSONS)


@pytest.mark.parametrize(
    "source, expected",
    [
        ("import streamlit as st", {"streamlit"}),
        ("def f():\n    from bnviz.app import workers", {"bnviz.app", "bnviz.app.workers"}),
    ],
)
def test_the_import_reader_sees_lazy_imports(tmp_path, source, expected):
    path = tmp_path / "m.py"
    path.write_text(source)
    assert imports(path) == expected
