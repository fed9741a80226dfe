"""_process: the one fork hook and the one exit hook, their order, and each fork reset.

A forked child uses nothing of the parent's only if every class's fork reset
sets each field that ``__init__`` sets, except those it keeps on purpose: each
reset is checked here against a fresh instance, field by field. The steps run
in the order ``_process`` states, whatever order their modules were imported in.
"""

from __future__ import annotations

import collections
import concurrent.futures
import importlib
import inspect
import json
import os
import pkgutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

import syncbridge._core
from _scripts import run_script
from syncbridge import Bridge, ProcessExecutor, WorkerPool
from syncbridge._core._counts import CountsSnapshot
from syncbridge._core._executor_pool import ExecutorPool
from syncbridge._core._portal import Portal
from syncbridge._core._process import ChildStep, ExitStep, child_steps, exit_steps
from syncbridge._core._registry import PoolRegistry
from syncbridge._core._wake_policy import Runner, WakePolicy

if TYPE_CHECKING:
    from collections.abc import Callable

CORE = Path(syncbridge._core.__file__).parent

# -- each fork reset against its class's fields ------------------------------------


class _Stale:
    """Put in every field before a reset: one still there was not reset."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<the parent's {self.name}>"


# Compared by value with a fresh instance's; any other field by its type (a new
# lock, a new Counts).
_PLAIN = (
    type(None),
    bool,
    int,
    float,
    str,
    tuple,
    list,
    dict,
    set,
    frozenset,
    collections.deque,
    CountsSnapshot,
)


@dataclass
class Case:
    make: Callable[[], Any]
    """A new instance; made twice, one to reset and one to compare with."""
    kept: dict[str, str]
    """Fields the reset keeps as they are, on purpose: field -> why."""
    read: dict[str, str] = field(default_factory=dict)
    """Fields the reset reads before it replaces them (so not marked stale)."""
    close: Callable[[Any], object] = lambda _: None


def _worker_pool() -> WorkerPool:
    pool = WorkerPool("fork-reset", 3)
    pool.capacity = 5  # a kept field that differs from a fresh one's below
    return pool


def _executor() -> concurrent.futures.ThreadPoolExecutor:
    return _THREADS


_THREADS = concurrent.futures.ThreadPoolExecutor(1)

_EXECUTOR_POOL_KEPT = {
    "name": "settings",
    "label": "settings",
    "in_process": "what the executor is",
    "_positional_only": "what the executor is",
    "_ref": "the executor is the same object in the child",
    "_weak": "how the pool holds its executor",
    "_closed": "a closed pool stays closed in the child",
}

CASES: dict[str, Case] = {
    "WorkerPool": Case(
        make=_worker_pool,
        kept={
            "label": "settings",
            "name": "settings",
            "idle_timeout": "settings",
            "_capacity": "settings (may have been changed since)",
            "title": "settings",
            "_max_waiting": "settings (may have been changed since)",
            "_max_wait": "settings (may have been changed since)",
            "_policy": "reset in place by its own reset (the WakePolicy case)",
            "_closed": "a closed pool stays closed in the child",
            "_spawned": "numbers the thread names: the child's go on from it",
        },
    ),
    "WakePolicy": Case(
        make=lambda: WakePolicy(0.25),
        kept={"handoff": "a setting (tests stretch it)"},
    ),
    "ExecutorPool": Case(
        make=lambda: ExecutorPool("fork-reset", _executor(), label="test"),
        kept={
            **_EXECUTOR_POOL_KEPT,
            "_held": "the executor is the pool's for as long as the pool lives",
        },
    ),
    "ExecutorPool for calls": Case(
        # _held is a call's while it runs: the parent's call is not the child's.
        make=lambda: ExecutorPool._for_calls("fork-reset", _executor(), label="test"),
        kept=_EXECUTOR_POOL_KEPT,
    ),
    "Portal": Case(
        make=lambda: Portal("fork-reset", "asyncio", False),
        kept={
            "name": "settings",
            "backend": "settings",
            "use_uvloop": "settings",
            "_closed": "a closed portal stays closed in the child",
            "_watch": "started anew with the same settings (see the test below)",
        },
    ),
    "ProcessExecutor": Case(
        make=lambda: ProcessExecutor(2, mp_context=_spawn()),
        kept={
            "_max_workers": "settings",
            "_init_payload": "settings",
            "_dumps": "settings",
            "_loads": "settings",
            "_wait": "settings",
            "_ctx": "settings (a forkserver context becomes spawn: see its docstring)",
            "_shutdown": "a shut-down executor stays shut down in the child",
        },
        read={"_slots": "to take the parent's processes out of multiprocessing's"},
        close=lambda executor: executor.shutdown(),
    ),
    "PoolRegistry": Case(
        make=lambda: PoolRegistry("fork-reset", 2, None),
        kept={
            "bridge_name": "settings",
            "configured_by": "settings",
            "worker_threads": "reset in place by its own reset (the WorkerPool case)",
            "thread_sensitive": "reset in place by its own reset",
            "default": "reset in place by its own reset",
            "named": "the named pools, each reset in place",
            "_adhoc": "the executors' pools, each reset in place",
            "_gone": "pools still to be counted, each reset in place (counts 0)",
            "_adhoc_made": "numbers the ad hoc pools: the child's go on from it",
            "_closed": "a closed registry stays closed in the child",
        },
        close=lambda registry: [pool.close() for pool in registry.close()],
    ),
    "Bridge": Case(
        make=lambda: Bridge(name="fork-reset", pools={"db": 2}),
        kept={
            "_name": "settings",
            "_abandon_on_cancel": "settings",
            "_shutdown_grace": "settings",
            "_portal": "reset in place by its own reset (the Portal case)",
            "_registry": "reset in place by its own reset (the PoolRegistry case)",
            "_closed": "a closed bridge stays closed in the child",
            "_closed_event": "set with _closed (in a child forked mid-close, by the reset)",
            "_close_deadline": "set with _closed: a second close waits for it",
        },
        close=lambda bridge: bridge.close(),
    ),
}


def _spawn() -> Any:
    import multiprocessing

    return multiprocessing.get_context("spawn")


def test_every_class_with_a_fork_reset_is_checked() -> None:
    found = set()
    for module in pkgutil.iter_modules([str(CORE)]):
        loaded = importlib.import_module(f"syncbridge._core.{module.name}")
        found |= {
            cls.__name__
            for cls in vars(loaded).values()
            if inspect.isclass(cls) and "_reset_after_fork" in vars(cls)
        }
    assert found == {case.split()[0] for case in CASES}


@pytest.mark.parametrize("name", list(CASES))
def test_a_fork_reset_sets_every_field_but_those_kept_on_purpose(name: str) -> None:
    case = CASES[name]
    fresh, obj = case.make(), case.make()
    try:
        before = dict(vars(obj))
        assert set(before) == set(vars(fresh))
        assert set(case.kept) <= set(before), "a kept field is gone: update the test"
        for attr in set(before) - set(case.kept) - set(case.read):
            setattr(obj, attr, _Stale(attr))

        obj._reset_after_fork()

        after = vars(obj)
        assert set(after) == set(before), "the reset adds or drops a field"
        missed = {
            attr: value
            for attr, value in after.items()
            if attr not in case.kept and not _like(value, vars(fresh)[attr])
        }
        assert not missed, (
            f"{name}'s fork reset leaves these fields as the parent had them: "
            f"{missed}; set them in its _fresh_state() (or, if the child must "
            "keep one, add it to this test's kept fields with the reason)"
        )
        for attr in case.read:
            assert after[attr] is not before[attr], f"{attr} is the parent's"
        for attr in case.kept:
            assert after[attr] is before[attr], f"{attr} was kept, not replaced"
    finally:
        case.close(fresh)
        case.close(obj)


def _like(value: object, fresh: object) -> bool:
    if isinstance(value, _Stale) or type(value) is not type(fresh):
        return False
    return not isinstance(fresh, _PLAIN) or value == fresh


def test_a_portal_watch_is_started_anew_with_its_settings() -> None:
    portal = Portal("fork-reset", "asyncio", False)
    portal.watch(0.25)
    watch = portal._watch
    assert watch is not None

    portal._reset_after_fork()

    assert portal._watch is not None
    assert portal._watch is not watch  # its monitor thread was the parent's
    assert portal._watch.threshold == 0.25


def test_a_worker_pool_condition_waits_on_the_new_lock() -> None:
    pool = WorkerPool("fork-reset", 1)
    pool._reset_after_fork()
    # A Condition built on the parent's lock would wake no one in the child.
    assert pool._wake._lock is pool._lock  # type: ignore[attr-defined]


def test_a_worker_pool_resets_its_wake_policy() -> None:
    """The parent's workers and pace are not the child's (the policy is kept,
    with its settings, and reset in place)."""
    pool = WorkerPool("fork-reset", 1)
    policy = pool._policy
    policy.handed(Runner(), 1.0)
    policy.long = 0.0

    pool._reset_after_fork()

    assert pool._policy is policy
    assert (policy.running, policy.last_handed, policy.long) == (set(), None, 1.0)


# -- the hooks and their order -----------------------------------------------------

_OWNERS = {
    "PID": "syncbridge._core._process:_Process.forked",
    "THREAD_ROLES": "syncbridge._core._context:_forget_parent_roles",
    "DELEGATES": "syncbridge._core._delegate:_forget_parent_delegates",
    "WAKEUPS": "syncbridge._core._await_job:_forget_parent_wakeups",
    "PROCESS_EXECUTORS": "syncbridge._core._process_executor:_reset_all_after_fork",
    "BRIDGES": "syncbridge._core._bridge:_after_fork_in_child",
}
_EXIT_OWNERS = {
    "BRIDGES": "syncbridge._core._bridge:_close_default_at_exit",
    "PROCESS_EXECUTORS": "syncbridge._core._process_executor:_shutdown_all_at_exit",
}

_REGISTRY = """
    import importlib.util, json, sys

    # The package without its __init__, which imports every module in its order.
    spec = importlib.util.find_spec("syncbridge")
    package = sys.modules["syncbridge"] = importlib.util.module_from_spec(spec)
    from syncbridge._core import _process

    registered = []

    def recording(kind, register):
        def record(step, func):
            registered.append(f"{{kind}} {{step.name}}")
            register(step, func)
        return record

    # Each module binds these names as it is imported, after this.
    _process.on_fork_child = recording("fork", _process.on_fork_child)
    _process.on_exit = recording("exit", _process.on_exit)
    for module in {modules!r}:
        __import__(module)
    spec.loader.exec_module(package)  # the rest, in __init__'s order
    import syncbridge.flask

    def owner(func):
        return f"{{func.__module__}}:{{func.__qualname__}}"

    print(json.dumps({{
        "registered": registered,
        "child": [[s.name, owner(f)] for s, f in _process.child_steps()],
        "exit": [[s.name, owner(f)] for s, f in _process.exit_steps()],
    }}))
"""


def _registry(modules: list[str]) -> dict[str, Any]:
    result = run_script(_REGISTRY.format(modules=modules))
    assert result.returncode == 0, result.stderr
    found: dict[str, Any] = json.loads(result.stdout)
    return found


def test_steps_are_in_the_stated_order_whatever_the_import_order() -> None:
    usual = _registry([])
    other = _registry(
        [
            "syncbridge._core._process_executor",
            "syncbridge._core._bridge",
            "syncbridge._core._context",
        ]
    )
    # The modules registered their steps in another order ...
    assert usual["registered"] != other["registered"]
    # ... and the hooks run them in the stated one all the same.
    for found in usual, other:
        assert found["child"] == [[s.name, _OWNERS[s.name]] for s in ChildStep]
        assert found["exit"] == [[s.name, _EXIT_OWNERS[s.name]] for s in ExitStep]


def test_the_registry_in_this_process_is_in_the_stated_order() -> None:
    assert [step for step, _ in child_steps()] == sorted(ChildStep)
    assert [step for step, _ in exit_steps()] == sorted(ExitStep)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork()")
def test_a_forked_child_runs_its_steps_in_order() -> None:
    result = run_script(
        """
        import os
        from syncbridge._core import _process

        ran = []
        # Registered last step first: the order is the steps', not this one's.
        for step in reversed(_process.ChildStep):
            _process.on_fork_child(step, lambda step=step: ran.append(step.name))
        pid = os.fork()
        if pid == 0:
            print(" ".join(ran), flush=True)
            os._exit(0)
        os.waitpid(pid, 0)
        """,
        flags=["-W", "ignore::DeprecationWarning"],
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [step.name for step in ChildStep]


def test_exit_steps_run_in_order_and_each_runs_when_one_before_raises() -> None:
    result = run_script(
        """
        from syncbridge._core import _process

        def fails():
            print("BRIDGES", flush=True)
            raise RuntimeError("boom")

        # Registered last step first: the order is the steps', not this one's.
        _process.on_exit(
            _process.ExitStep.PROCESS_EXECUTORS,
            lambda: print("PROCESS_EXECUTORS", flush=True),
        )
        _process.on_exit(_process.ExitStep.BRIDGES, fails)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["BRIDGES", "PROCESS_EXECUTORS"]
    assert "exit step BRIDGES failed" in result.stderr
    assert "RuntimeError: boom" in result.stderr


def test_the_core_registers_one_fork_hook_and_one_exit_hook_after_concurrent_futures() -> (
    None
):
    result = run_script(
        """
        import atexit, os, threading

        hooks = []
        def record(kind, register):
            def registering(*args, **kwargs):
                func = kwargs.get("after_in_child") or args[0]
                hooks.append(f"{kind} {getattr(func, '__module__', None)}")
                return register(*args, **kwargs)
            return registering

        if hasattr(os, "register_at_fork"):
            os.register_at_fork = record("fork", os.register_at_fork)
        threading._register_atexit = record("exit", threading._register_atexit)
        atexit.register = record("exit", atexit.register)
        import syncbridge
        print("\\n".join(hooks))
        """
    )
    assert result.returncode == 0, result.stderr
    hooks = result.stdout.splitlines()
    expected = ["exit syncbridge._core._process"]
    if hasattr(os, "register_at_fork"):
        expected.insert(0, "fork syncbridge._core._process")
    assert [hook for hook in hooks if "syncbridge" in hook] == expected
    # Exit hooks run last registered first: ours runs before concurrent.futures
    # joins its executors' threads, one of which may be blocked on a bridge
    # (test_an_executor_thread_blocked_in_a_call_never_holds_up_exit).
    assert hooks.index("exit concurrent.futures.thread") < hooks.index(
        "exit syncbridge._core._process"
    )


def test_no_other_core_module_registers_a_process_hook() -> None:
    registrars = ("register_at_fork", "_register_atexit", "atexit")
    found = {
        path.name
        for path in CORE.glob("*.py")
        if any(name in path.read_text() for name in registrars)
    }
    assert found == {"_process.py"}


def test_the_pid_a_hot_path_reads_is_this_process_s() -> None:
    from syncbridge._core._process import PROCESS

    assert PROCESS.pid == os.getpid()
