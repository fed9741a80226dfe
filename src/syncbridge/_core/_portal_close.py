"""Closing the portal by its deadline.

Every call sent to the portal is in its :class:`~._calls.CallLedger` until it
has an outcome, so closing can answer each one, even a call whose coroutine
ignores cancellation (#11); the ledger wakes a closing portal's drain when its
last call leaves (no polling). :func:`close_loop` closes by a deadline: the drain gives calls their
grace, cancels what still runs, gives that its cleanup time, answers what is
left, and stops the loop; the closing thread waits for the loop thread, by the
deadline, and answers what is left then.
"""

from __future__ import annotations

__all__ = (
    "close_loop",
    "log_abandoned",
    "log_cancelled",
    "log_close_failed",
    "stop_bound",
)

import abc
import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any, Final

from ._handoff import CancelReason
from ._loops import AsyncioLoop

if TYPE_CHECKING:
    import threading
    from collections.abc import Callable

    from ._calls import CallLedger, LoopHandle

logger = logging.getLogger("syncbridge")

MIN_CLEANUP: Final = 0.1
"""Seconds cancelled tasks get to finish their cleanup, at the least."""
STOP_MARGIN: Final = 0.25
"""Seconds for the loop to stop and its thread to end once tasks are done."""


def stop_bound(grace: float) -> float:
    """How long :meth:`Portal.close` may take with *grace*: the real bound."""
    return grace + max(grace, MIN_CLEANUP) + STOP_MARGIN


def _answer_leftovers(calls: CallLedger, log: bool) -> None:
    """Finish every call of *calls* without an outcome, so its caller wakes up."""
    for name in calls.answer_leftovers():
        if log:
            log_abandoned(name)


def close_loop(
    calls: CallLedger,
    handle: LoopHandle | None,
    threads: tuple[threading.Thread, ...],
    grace: float,
    deadline: float,
    stop_trio: Callable[[], object] | None = None,
) -> None:
    """Close the portal's loop behind *handle* by *deadline*, answering every call.

    *threads*: the loop's thread first, if it runs (*handle*), then those of
    loops that stopped on their own and still end. *grace*, the drain and
    *stop_trio* (which ends the trio loop) are as :meth:`Portal.close` says.
    """
    bound = max(0.0, deadline - time.monotonic())
    if handle is not None:
        cleanup = max(grace, MIN_CLEANUP)
        # The drain's phases end before the deadline, so the loop can stop by it.
        grace = min(grace, max(0.0, bound - cleanup - STOP_MARGIN))
        if isinstance(handle, AsyncioLoop):
            loop = handle.loop
            drain: _Drain = _AsyncioDrain(calls, grace, cleanup, loop.stop)
            handle.post(lambda: loop.create_task(drain.run()))
        else:
            assert stop_trio is not None
            drain = _TrioDrain(calls, grace, cleanup, stop_trio)
            handle.post(drain.start)
    # A loop that stopped on its own cleans up for a bounded time (see
    # Portal._end_stopped): waited for within the same bound, then whatever
    # it left is answered, like the calls of the current loop.
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    for thread in threads:
        if thread.is_alive():
            log_left_running(thread, bound)
    _answer_leftovers(calls, log=True)


class _Drain(abc.ABC):
    """Closing on the loop: one design for both backends.

    Calls get *grace* seconds to finish; what still runs is cancelled (each
    logged) and gets *cleanup* seconds more; what is left then is answered,
    and the loop stops. Each wait ends when the ledger's last call leaves
    (it wakes the drain: no polling) or at its time.
    """

    def __init__(
        self,
        calls: CallLedger,
        grace: float,
        cleanup: float,
        stop: Callable[[], object],
    ) -> None:
        self.calls = calls
        self.grace = grace
        self.cleanup = cleanup
        self.stop = stop

    async def run(self) -> None:
        await self.settle(self.grace)
        self.cancel_the_rest()
        await self.settle(self.cleanup)
        self.answer_the_rest()
        self.stop()

    @abc.abstractmethod
    async def settle(self, seconds: float) -> None:
        """Wait until no call is left, or for *seconds*."""

    def cancel_the_rest(self) -> None:
        for call in self.calls:
            log_cancelled(call.name)
            call.request_cancel(CancelReason.CLOSED)

    def answer_the_rest(self) -> None:
        _answer_leftovers(self.calls, log=True)


class _TrioDrain(_Drain):
    """The drain on trio, where a call's tasks end with it (its nursery)."""

    def start(self) -> None:
        import trio

        trio.lowlevel.spawn_system_task(self.run, name="syncbridge portal drain")

    async def settle(self, seconds: float) -> None:
        import trio

        emptied = trio.Event()
        token = trio.lowlevel.current_trio_token()

        def wake() -> None:
            try:
                token.run_sync_soon(emptied.set)
            except trio.RunFinishedError:  # nothing left to wake
                pass

        with trio.move_on_after(seconds):
            if not self.calls.wake_when_empty(wake):
                await emptied.wait()
        self.calls.wake_when_empty(None)


class _AsyncioDrain(_Drain):
    """The drain on asyncio, whose tasks may outlive their calls.

    A call may start tasks: they are waited for, cancelled and logged too.
    """

    async def settle(self, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        emptied = asyncio.Event()

        def wake() -> None:
            try:
                loop.call_soon_threadsafe(emptied.set)
            except RuntimeError:  # the loop is closed: nothing left to wake
                pass

        me = asyncio.current_task()
        deadline = loop.time() + seconds
        try:
            async with asyncio.timeout_at(deadline):
                if not self.calls.wake_when_empty(wake):
                    await emptied.wait()
                # Re-listed: tasks started meanwhile count too.
                while tasks := _others(me):
                    await asyncio.wait(tasks)
        except TimeoutError:
            pass
        finally:
            self.calls.wake_when_empty(None)

    def cancel_the_rest(self) -> None:
        for task in _others(asyncio.current_task()):
            log_cancelled(task.get_name())
            task.cancel()

    def answer_the_rest(self) -> None:
        for task in _others(asyncio.current_task()):
            log_abandoned(task.get_name())
            # Named in our log line: asyncio's "Task was destroyed but it is
            # pending!" when the closed loop drops it would only repeat it.
            task._log_destroy_pending = False  # type: ignore[attr-defined]
        # Stubborn tasks were logged by name just now; calls that never
        # became a task need no line, only their answer.
        _answer_leftovers(self.calls, log=False)


def _others(me: asyncio.Task[Any] | None) -> set[asyncio.Task[Any]]:
    return {t for t in asyncio.all_tasks() if t is not me}


def log_left_running(thread: threading.Thread, bound: float) -> None:
    logger.warning(
        "syncbridge portal thread %r did not stop within %.2f s (a coroutine on "
        "it ignores cancellation or blocks the loop); it is left behind as a "
        "daemon thread",
        thread.name,
        bound,
        extra={
            "syncbridge_event": "portal-left-running",
            "syncbridge_thread": thread.name,
        },
    )


def log_cancelled(name: str) -> None:
    logger.warning(
        "cancelled task %r: it was still running on the portal loop when its "
        "bridge closed",
        name,
        extra={"syncbridge_event": "task-cancelled-at-close", "syncbridge_task": name},
    )


def log_abandoned(name: str) -> None:
    logger.warning(
        "abandoned task %r: it did not finish after being cancelled when its "
        "bridge closed; its caller got BridgeClosed",
        name,
        extra={"syncbridge_event": "task-abandoned-at-close", "syncbridge_task": name},
    )


def log_close_failed(name: str, exc: Exception) -> None:
    logger.warning(
        "abandoned task %r raised when its coroutine was closed after its bridge "
        "closed (it must not await in a finally once cancelled); its cleanup was "
        "cut short",
        name,
        exc_info=exc,
        extra={"syncbridge_event": "task-close-failed", "syncbridge_task": name},
    )
