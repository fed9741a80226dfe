"""This process: its id, and the one fork hook and one exit hook of syncbridge.

Two guarantees about the process as a whole are kept here, and only here (no
other module of ``_core`` registers a process hook):

*A forked child uses nothing of the parent's.* One ``os.register_at_fork``
hook runs the registered :class:`ChildStep` resets in the child, in this order:

1. ``PID``: :data:`PROCESS` learns the child's id. First, because every later
   step, and any job one of them makes, compares ids with it.
2. ``THREAD_ROLES``, ``DELEGATES``, then ``WAKEUPS`` (independent of each
   other): the state of the forking thread, the child's only one: the job and
   loop it worked for, the slots it lent while blocked, and the asyncio
   wake-ups it last sent. Before the objects, whose resets run on that thread.
3. ``PROCESS_EXECUTORS``: each :class:`ProcessExecutor` forgets the parent's
   processes. Before the bridges, so a bridge's pool that sends calls to one
   finds it reset (the order import order gave them before this module).
4. ``BRIDGES``: each bridge resets its pools and portal (which may start a
   watch again), and the default bridge is dropped. Last: it may use all of
   the above. An integration's own hook (``syncbridge.flask``) is registered
   after this module's, so it runs after all of these.

*Interpreter exit never hangs.* One ``threading._register_atexit`` hook runs
before Python joins non-daemon threads (a user's thread blocked on a bridge
would keep it from exiting), and before concurrent.futures' own hook, which
joins executor threads: those hooks run last registered first, and
``concurrent.futures.thread`` is imported here before ours is registered. It
runs the :class:`ExitStep` steps in this order:

1. ``BRIDGES``: the default bridge closes, within its bound: it answers every
   caller blocked on it and cancels the calls its pools queued on executors.
2. ``PROCESS_EXECUTORS``: executors still open shut down, waiting for their
   jobs, as the standard library does. After the bridges: otherwise they would
   first wait for every call a bridge had queued on them, unbounded.

Each step is registered by the module that owns its state, with the step's
name: the order is the enums', never the order in which modules are imported.
A step that raises is logged, and the steps after it still run.
"""

from __future__ import annotations

__all__ = (
    "PROCESS",
    "ChildStep",
    "ExitStep",
    "child_steps",
    "exit_steps",
    "on_exit",
    "on_fork_child",
)

import atexit
import concurrent.futures.thread  # noqa: F401  # pyright: ignore[reportUnusedImport] - its exit hook before ours, see above
import enum
import logging
import os
import threading
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from collections.abc import Callable

logger = logging.getLogger("syncbridge")


class _Process:
    """This process's id, kept current in forked children.

    ``os.getpid()`` is a system call; a job reads its process twice per call.
    """

    __slots__ = ("pid",)

    def __init__(self) -> None:
        self.pid: int = os.getpid()

    def forked(self) -> None:
        self.pid = os.getpid()


PROCESS: Final = _Process()
"""Read ``PROCESS.pid`` on a hot path: an attribute read, not a system call."""


class ChildStep(enum.IntEnum):
    """The resets a forked child runs, in this order (see the module docstring)."""

    PID = 0
    THREAD_ROLES = 1
    DELEGATES = 2
    WAKEUPS = 3
    PROCESS_EXECUTORS = 4
    BRIDGES = 5


class ExitStep(enum.IntEnum):
    """The steps run at interpreter exit, in this order (see the module docstring)."""

    BRIDGES = 0
    PROCESS_EXECUTORS = 1


# Replaced whole, under _registry_lock, never changed in place: a child forked
# while a module registers reads one tuple or the other, never a torn one, and
# never waits for a lock the parent's other thread held.
_registry_lock = threading.Lock()
_child: tuple[tuple[ChildStep, Callable[[], object]], ...] = ()
_exit: tuple[tuple[ExitStep, Callable[[], object]], ...] = ()


def on_fork_child(step: ChildStep, reset: Callable[[], object]) -> None:
    """Run *reset* in each forked child, as *step*; replaces that step's reset."""
    global _child
    with _registry_lock:
        steps = dict(_child)
        steps[step] = reset
        _child = tuple(sorted(steps.items()))


def on_exit(step: ExitStep, hook: Callable[[], object]) -> None:
    """Run *hook* at interpreter exit, as *step*; replaces that step's hook."""
    global _exit
    with _registry_lock:
        steps = dict(_exit)
        steps[step] = hook
        _exit = tuple(sorted(steps.items()))


def child_steps() -> tuple[tuple[ChildStep, Callable[[], object]], ...]:
    """The registered child resets, in the order a forked child runs them."""
    return _child


def exit_steps() -> tuple[tuple[ExitStep, Callable[[], object]], ...]:
    """The registered exit steps, in the order they run."""
    return _exit


def _run(
    kind: str, steps: tuple[tuple[enum.IntEnum, Callable[[], object]], ...]
) -> None:
    for step, func in steps:
        try:
            func()
        except Exception:
            logger.exception(
                "syncbridge's %s step %s failed; the steps after it still run",
                kind,
                step.name,
                extra={
                    "syncbridge_event": "process-hook-failed",
                    "syncbridge_step": step.name,
                },
            )


def _after_fork_in_child() -> None:
    _run("fork", _child)


def _at_exit() -> None:
    _run("exit", _exit)


on_fork_child(ChildStep.PID, PROCESS.forked)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
getattr(threading, "_register_atexit", atexit.register)(_at_exit)
