from __future__ import annotations
import __future__

import subprocess
import sys
import types

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
        if isinstance(obj, types.ModuleType) and not name.startswith("_")
    }
    assert modules <= {"flask", "fastapi"}


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
