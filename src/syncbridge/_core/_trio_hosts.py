"""Host tasks: the trio system tasks that run calls sent from other threads.

A new system task per call costs trio a spawn, a cancel scope entered and left,
and a task's end: more than the rest of the round trip. A host task instead runs
calls one after another and parks between them; starting a call on a parked
host costs one reschedule. Each host enters one cancel scope for its whole life
and cancels the call it runs with it; a host whose scope was cancelled ends
(the scope is spent), and the next call starts a new host.

Everything here runs on the trio run's own thread; the idle hosts of a run are
kept in a ``RunVar``, so no state outlives the run or crosses to another one.
"""

from __future__ import annotations

__all__ = ("start_call",)

import contextvars
import functools
from typing import TYPE_CHECKING, Any, Final, cast

import outcome
import trio

from .._exceptions import SyncBridgeError
from ._handoff import FINISHED
from ._outcome import Cancelled, Error, Value

if TYPE_CHECKING:
    from ._calls import Call

_MAX_IDLE: Final = 64
"""Parked hosts a run keeps; a host that finds this many idle ends instead."""

_IDLE: trio.lowlevel.RunVar[list[_Host]] = trio.lowlevel.RunVar("syncbridge_hosts")

_BLANK: Final = contextvars.Context()
"""What a parked host's next step would run in: nothing of its last caller's."""


def start_call(call: Call[Any]) -> None:
    """Start *call* on a parked host of the current run, or on a new one.

    On the run's thread (a ``run_sync_soon`` callback, posted by
    ``TrioLoop.submit``). A call cancelled (or answered by a closing bridge)
    before it could start never starts. A run that is ending refuses new tasks:
    *call* then gets an error saying its loop stopped.
    """
    if call.cancel is not None or call.state is FINISHED:
        call.finish(Cancelled())
        return
    idle: list[_Host]
    try:
        idle = _IDLE.get()
    except LookupError:
        idle = []
        _IDLE.set(idle)
    if idle:
        idle.pop().resume(call)
        return
    try:
        trio.lowlevel.spawn_system_task(
            _host, call, idle, name=call.name, context=call.ctx
        )
    except BaseException as exc:
        # The run is ending ("Nursery is closed to new arrivals"): an
        # exception escaping here would crash the user's trio.run (#11).
        call.finish(Error(SyncBridgeError(_gone_message(call))))
        del exc


class _Host:
    """One host task: the call it runs now, and the scope that cancels it."""

    __slots__ = ("_abort_parked", "call", "cancelled", "idle", "scope", "task")

    def __init__(self, idle: list[_Host], scope: trio.CancelScope) -> None:
        self.task = trio.lowlevel.current_task()
        self.idle = idle
        self.scope = scope
        self.call: Call[Any] | None = None
        # Whether this host cancelled its scope: ``scope.cancel_called`` asks
        # the clock too (for a deadline, which this scope never has), per call.
        self.cancelled = False
        self._abort_parked = self._abort  # bound once, not once per call

    def cancel(self, call: Call[Any]) -> None:
        """Cancel *call* if this host still runs it (a cancel may arrive late)."""
        if self.call is call:
            self.cancelled = True
            self.scope.cancel()

    def resume(self, call: Call[Any]) -> None:
        """Wake this parked host to run *call*, in the caller's context."""
        task = self.task
        task.context = call.ctx  # the context of the host's next step
        task.name = call.name
        trio.lowlevel.reschedule(task, outcome.Value(call))

    async def park(self) -> Call[Any]:
        """Wait for the next call; raises ``trio.Cancelled`` if the run ends."""
        self.task.context = _BLANK
        self.idle.append(self)
        call: Call[Any] = await trio.lowlevel.wait_task_rescheduled(self._abort_parked)
        return call

    def _abort(self, _raise_cancel: object) -> trio.lowlevel.Abort:
        # Only the run ending cancels a parked host: its scope cancels calls only.
        self.idle.remove(self)
        return trio.lowlevel.Abort.SUCCEEDED


async def _host(call: Call[Any] | None, idle: list[_Host]) -> None:
    try:
        with trio.CancelScope() as scope:
            host = _Host(idle, scope)
            while call is not None:
                host.call = call
                if not call.begin(functools.partial(host.cancel, call)):
                    call.finish(Cancelled())  # cancelled before it could start
                else:
                    try:
                        value = await call.invoke()
                    except trio.Cancelled as exc:  # by our scope, or the run ending
                        call.finish(Cancelled(exc))
                        raise
                    except BaseException as exc:
                        if host.cancelled and _only_cancelled(exc):
                            # A nursery in the call gathered our cancellation
                            # into a group: it is still a cancellation, and
                            # trio's Cancelled must not leave this thread.
                            call.finish(Cancelled())
                            return
                        call.finish(Error(exc))
                    else:
                        call.finish(Value(value))
                        value = None  # a parked host keeps nothing of its call
                host.call = call = None
                if host.cancelled or len(idle) >= _MAX_IDLE:
                    return
                call = await host.park()
    except trio.Cancelled:  # the run is ending; every call here has its outcome
        return


def _only_cancelled(exc: BaseException) -> bool:
    """Whether *exc* is trio's Cancelled, or a group of nothing else."""
    if isinstance(exc, trio.Cancelled):
        return True
    inner: object = getattr(exc, "exceptions", None)
    if not isinstance(inner, tuple) or not inner:
        return False
    members = cast("tuple[object, ...]", inner)
    return all(isinstance(e, BaseException) and _only_cancelled(e) for e in members)


def _gone_message(call: Call[Any]) -> str:
    return (
        f"{call.name}() could not start: the event loop it was sent to had "
        "stopped (its trio.run or asyncio.run was ending)"
    )
