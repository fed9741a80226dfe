from __future__ import annotations
import __future__

import ast
import importlib
import pkgutil
import subprocess
import sys
import types

import pytest

import syncbridge

CORE_NAMES = {
    "Bridge",
    "BridgeClosed",
    "DeadlockError",
    "SyncBridgeError",
    "check_cancelled",
    "get_bridge",
    "run_blocking",
    "sync_call_async",
    "to_async",
    "to_sync",
}


def test_all_contains_the_contracted_names() -> None:
    assert set(syncbridge.__all__) >= CORE_NAMES


def test_all_is_sorted_tuple_and_complete() -> None:
    assert isinstance(syncbridge.__all__, tuple)

    # ruff's RUF022 order: CONSTANTS, then Classes, then functions
    def key(name: str) -> tuple[bool, bool, str]:
        return (not name.isupper(), not name[0].isupper(), name)

    assert list(syncbridge.__all__) == sorted(syncbridge.__all__, key=key)
    public = {
        name
        for name, obj in vars(syncbridge).items()
        if not name.startswith("_")
        and not isinstance(obj, (__future__._Feature, types.ModuleType))
    }
    assert public == set(syncbridge.__all__)
    # Submodules show up as attributes once imported; only the integrations are public.
    modules = {
        name
        for name, obj in vars(syncbridge).items()
        if isinstance(obj, types.ModuleType)
        and name.isidentifier()
        and not name.startswith("_")
    }
    assert modules <= {"flask", "fastapi", "opentelemetry", "prometheus", "testing"}


def test_exports_report_the_public_module() -> None:
    for name in syncbridge.__all__:
        obj = getattr(syncbridge, name)
        if name == "PENDING":
            obj = type(obj)
        assert obj.__module__ == "syncbridge", name


def test_exception_hierarchy() -> None:
    assert issubclass(syncbridge.BridgeClosed, syncbridge.SyncBridgeError)
    assert issubclass(syncbridge.DeadlockError, syncbridge.SyncBridgeError)
    assert issubclass(syncbridge.DeadlockError, RuntimeError)
    assert issubclass(syncbridge.WorkerCancelled, BaseException)
    assert not issubclass(syncbridge.WorkerCancelled, Exception)


def test_import_is_light_and_starts_nothing() -> None:
    code = (
        "import sys, threading; import syncbridge; "
        "heavy = {'flask', 'fastapi', 'starlette', 'trio', 'uvloop'} & set(sys.modules); "
        "assert not heavy, heavy; "
        "assert threading.active_count() == 1, threading.enumerate()"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30)


def _public_modules() -> list[str]:
    found = pkgutil.iter_modules(syncbridge.__path__)
    return [
        "syncbridge",
        *sorted(f"syncbridge.{m.name}" for m in found if not m.name.startswith("_")),
    ]


def _defined_public_names(module: types.ModuleType) -> set[str]:
    """Public names a module defines or re-exports (``import x as x``) at top level."""
    assert module.__file__ is not None
    with open(module.__file__, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {t.id for t in targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.ImportFrom) and node.module != "__future__":
            names |= {a.asname for a in node.names if a.asname == a.name}
    return {n for n in names if not n.startswith("_")}


@pytest.mark.parametrize("name", _public_modules())
def test_every_public_module_declares_exactly_its_public_names(name: str) -> None:
    """Nothing public by accident: a public-looking name is in ``__all__``, or private."""
    module = importlib.import_module(name)
    declared = module.__all__
    assert isinstance(declared, tuple)
    assert len(set(declared)) == len(declared)
    assert all(hasattr(module, n) for n in declared)
    assert _defined_public_names(module) == set(declared)


def test_the_public_modules_are_the_core_and_the_integrations() -> None:
    assert _public_modules() == [
        "syncbridge",
        "syncbridge.fastapi",
        "syncbridge.flask",
        "syncbridge.opentelemetry",
        "syncbridge.prometheus",
        "syncbridge.testing",
    ]
