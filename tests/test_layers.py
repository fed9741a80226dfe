"""Imports go one way: no cycle, and the core imports no module built on it.

Every import counts, ``TYPE_CHECKING`` and function-level ones too. The full
layer order is the contract in ``.importlinter`` (``lint-imports``); this
checks its two rules that matter most without that tool. And the core's unit
tests mirror it: one file in tests/core per module of ``syncbridge._core``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import syncbridge

PACKAGE = Path(syncbridge.__file__).resolve().parent
CORE_TESTS = Path(__file__).resolve().parent / "core"

LEAF_MODULES = frozenset(
    {
        "syncbridge._exceptions",
        "syncbridge._stats",
        "syncbridge._typing",
        "syncbridge._validate",
    }
)
"""What the core may import from outside ``syncbridge._core``."""


def _imports() -> dict[str, set[str]]:
    """Each module of the package: the modules of the package it imports."""
    files = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        files[".".join(parts)] = path
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        here = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = here.split(".")[: len(here.split(".")) - node.level + 1]
                    base = ".".join([*anchor, *([base] if base else [])])
                targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                continue
            found.update(t for t in targets if t in files and t != name)
        graph[name] = found
    return graph


def _a_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, as the modules along it, or None."""
    done: set[str] = set()
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        if module in path:
            return [*path[path.index(module) :], module]
        if module in done:
            return None
        path.append(module)
        for imported in sorted(graph[module]):
            cycle = visit(imported)
            if cycle is not None:
                return cycle
        path.pop()
        done.add(module)
        return None

    for module in sorted(graph):
        cycle = visit(module)
        if cycle is not None:
            return cycle
    return None


def test_no_module_imports_itself_through_others() -> None:
    cycle = _a_cycle(_imports())
    assert cycle is None, " -> ".join(cycle or ())


def test_the_core_imports_only_itself_and_the_leaf_modules() -> None:
    upward = sorted(
        f"{module} -> {imported}"
        for module, imports in _imports().items()
        if module.startswith("syncbridge._core")
        for imported in imports
        if not imported.startswith("syncbridge._core") and imported not in LEAF_MODULES
    )
    assert upward == []


def test_each_core_module_has_a_file_of_unit_tests_named_after_it() -> None:
    """``_core/_x.py`` is tested in ``tests/core/test_x.py``, and each file there
    names a core module.

    A new core module comes with its unit tests; a test of the package as a
    whole, or of its public API, lives outside tests/core.
    """
    modules = {
        path.stem.removeprefix("_")
        for path in (PACKAGE / "_core").glob("_*.py")
        if path.name != "__init__.py"
    }
    tested = {path.stem.removeprefix("test_") for path in CORE_TESTS.glob("test_*.py")}
    assert modules, "no core module found"
    untested = sorted(f"_core/_{name}.py" for name in modules - tested)
    assert not untested, f"core modules with no tests/core/test_<module>.py: {untested}"
    stray = sorted(f"tests/core/test_{name}.py" for name in tested - modules)
    assert not stray, f"tests/core files that name no core module: {stray}"
