"""Closing the portal by its deadline, and the ledger of calls that makes it possible.

Every call sent to the portal is in its :class:`CallLedger` until it has an
outcome, so closing can answer each one, even a call whose coroutine ignores
cancellation (#11). The ledger counts each call once, when it leaves, by how it
ended.
"""

from __future__ import annotations

__all__ = (
    "MIN_CLEANUP",
    "STOP_MARGIN",
    "CallLedger",
    "log_abandoned",
    "log_cancelled",
    "log_left_running",
    "others",
    "stop_bound",
)

import asyncio
import logging
import threading
from typing import TYPE_CHECKING, Any, Final

from ._counts import CountsSnapshot, Ending
from ._outcome import Cancelled

if TYPE_CHECKING:
    from collections.abc import Iterator

    from ._calls import Call

logger = logging.getLogger("syncbridge")

MIN_CLEANUP: Final = 0.1
"""Seconds cancelled tasks get to finish their cleanup, at the least."""
STOP_MARGIN: Final = 0.25
"""Seconds for the loop to stop and its thread to end once tasks are done."""

# Read once: ``Ending.COMPLETED`` is a class lookup through the enum's
# metaclass, and the ledger tells the endings apart by identity (hashing a
# member would cost a Python call).
_COMPLETED: Final = Ending.COMPLETED
_ERROR: Final = Ending.ERROR
_CANCELLED: Final = Ending.CANCELLED


def stop_bound(grace: float) -> float:
    """How long :meth:`Portal.close` may take with *grace*: the real bound."""
    return grace + max(grace, MIN_CLEANUP) + STOP_MARGIN


class CallLedger:
    """The portal's calls without an outcome yet, and how the others ended.

    A call is added as it is sent, and leaves once: by :meth:`ended`, counted
    by how it ended, or by :meth:`forget` if no loop took it (no call at all).
    So the calls made are those ended plus those still here. Iterating gives
    a copy of the calls still here.
    """

    __slots__ = (
        "_calls",
        "_cancelled",
        "_completed",
        "_errors",
        "_lock",
        "_timed_out",
    )

    def __init__(self) -> None:
        # Guards leaving and the totals together: a snapshot reads calls and
        # totals as one. Adding needs no lock of ours: the portal adds under
        # its own lock, and never once it is closed.
        self._lock = threading.Lock()
        self._calls: set[Call[Any]] = set()
        self._completed = self._errors = self._cancelled = self._timed_out = 0

    def __len__(self) -> int:
        return len(self._calls)

    def __iter__(self) -> Iterator[Call[Any]]:
        return iter(list(self._calls))

    def add(self, call: Call[Any]) -> None:
        """Track *call*, which is being sent to a loop."""
        self._calls.add(call)

    def ended(self, call: Call[Any], how: Ending) -> None:
        """*call* has its outcome: forget it, and count it by *how* it ended."""
        lock = self._lock
        lock.acquire()  # (try/finally costs half of a `with` block)
        try:
            self._calls.discard(call)
            if how is _COMPLETED:
                self._completed += 1
            elif how is _ERROR:
                self._errors += 1
            elif how is _CANCELLED:
                self._cancelled += 1
            else:
                self._timed_out += 1
        finally:
            lock.release()

    def forget(self, call: Call[Any]) -> None:
        """Un-track *call*, which no loop took: counted as no call at all."""
        with self._lock:
            self._calls.discard(call)

    def snapshot(self) -> CountsSnapshot:
        """The totals now, read together: calls made, and how they ended."""
        with self._lock:
            ended = self._completed + self._errors + self._cancelled + self._timed_out
            return CountsSnapshot(
                ended + len(self._calls),
                self._completed,
                self._errors,
                self._cancelled,
                self._timed_out,
            )

    def answer_leftovers(self, log: bool) -> None:
        """Finish every call without an outcome, so its caller wakes up."""
        for call in self:
            if call.finish(Cancelled()) and log:
                log_abandoned(call.name)


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


def others(me: asyncio.Task[Any] | None) -> set[asyncio.Task[Any]]:
    return {t for t in asyncio.all_tasks() if t is not me}
