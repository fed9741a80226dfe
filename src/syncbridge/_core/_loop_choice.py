"""Sync code calling async code: which loop runs the coroutine, and the wait for it.

The three loop-choice rules (see docs/explanation/threading-model.md):

1. In a worker thread running on behalf of loop L (a syncbridge worker, a
   thread syncbridge starts to close an iterator or run a context manager, or
   an ``anyio.to_thread`` / Starlette threadpool worker), for the duration of
   that call and while L is still running in this process: run on L. A syncbridge
   worker also offers itself to run nested blocking work of its own pool.
2. In a thread that is running an event loop: raise :class:`DeadlockError`.
3. Anywhere else: run on the bridge's portal loop.
"""

from __future__ import annotations

__all__ = ("call_async_from_thread",)

import logging
import time
from queue import Empty
from typing import TYPE_CHECKING, Any, Final

from .._exceptions import (
    BridgeClosed,
    DeadlockError,
    SyncBridgeError,
    callable_name,
    deadlock_message,
)
from ._calls import DONE, Call, LoopHandle, TimedCall
from ._context import anyio_worker_loop, copy_context_for_thread, role
from ._delegate import lend, retire
from ._jobs import check_cancelled
from ._loops import LoopGone, handle_for, loop_running_in_this_thread
from ._outcome import Cancelled, Error, Value
from ._process import PROCESS

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from ._jobs import Job
    from ._portal import Portal

logger: Final = logging.getLogger("syncbridge")

_POLL_SECONDS: Final = 1.0
"""How often a blocked caller checks that the loop running its call still runs."""


def _choose(func: object) -> tuple[LoopHandle | None, Job | None]:
    """Apply the loop-choice rules: (a worker's loop or None for the portal, job)."""
    if loop_running_in_this_thread() is not None:
        raise DeadlockError(deadlock_message(callable_name(func)))
    job: Job | None = role.job
    if job is not None and job.pid == PROCESS.pid:
        handle = handle_for(job.origin)
        if handle.is_alive():
            return handle, job
    # Each looked up only when the one before gave nothing: this runs per call.
    native = role.loop_served() if role.served_loop is not None else None
    if native is not None:
        handle = handle_for(native)
        if handle.is_alive():
            return handle, None
    native = anyio_worker_loop()
    if native is not None:
        handle = handle_for(native)
        if handle.is_alive():
            return handle, None
    return None, job


def call_async_from_thread(
    portal: Portal,
    func: Callable[..., Awaitable[Any]],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    timeout: float | None,
    cancel_grace: float,
    cleanup: bool = False,
    timeout_error: Callable[[], BaseException] | None = None,
    entry: str = "sync_call_async",
    subject: object = None,
) -> Any:
    """Run ``await func(*args, **kwargs)`` on the chosen loop; block until done.

    Runs on:
        The calling thread blocks; the coroutine runs on the loop chosen by
        the rules above, in a copy of the caller's context.
    Cancellation:
        A ``KeyboardInterrupt`` (or any exception raised in the waiting
        thread) cancels the coroutine, waits up to *cancel_grace* seconds for it to
        finish, and propagates. *timeout* cancels the coroutine once on its loop
        (see :class:`~._deadline.Deadline`) and, once it has ended, raises
        :class:`~syncbridge.SyncBridgeTimeout` here (or what *timeout_error*
        returns); a coroutine still running *cancel_grace* seconds after its
        deadline is logged and left running, and the caller gets that error at
        once. In a worker whose job is cancelled (its
        awaiter was cancelled, or its bridge closed) the coroutine is cancelled
        too, and :class:`WorkerCancelled` is raised here — unless *cleanup*
        is set (closing a context manager or an iterator): cleanup runs to its
        end even in a cancelled worker, as if shielded: a closing bridge
        leaves such a worker running (and names it), like any worker that
        does not return in time.
    A closed portal refuses the call naming the user's call ``entry(subject)``.
    """
    handle, job = _choose(func)
    if job is not None and not cleanup:
        check_cancelled()  # a cancelled worker starts no new async call
    ctx = copy_context_for_thread()
    call: Call[Any]
    timed: TimedCall[Any] | None = None
    if timeout is None:
        call = Call(func, args, kwargs, ctx, None)
    else:
        call = timed = TimedCall(func, args, kwargs, ctx, timeout, timeout_error)
    delegate = None
    is_portal = False
    try:
        if job is not None:
            # The slot this worker holds is lent to nested work of its pool.
            delegate = lend(job.pool, call.replies, ctx)
        try:
            if handle is not None:
                try:
                    handle.submit(call)
                except LoopGone:
                    handle = None
            is_portal = handle is None
            if handle is None:
                handle = portal.submit(call, entry, subject)
            if job is not None and not cleanup and job.wait_on(call):
                job.cancel_waited_on(call)  # cancelled before it could see the call
            if timed is None:
                _wait(call, handle)
            else:
                _wait_timed(timed, handle, cancel_grace)
        except BaseException:
            # From the moment the call reached a loop, which may be running it
            # already: a KeyboardInterrupt landing even before the wait began
            # cancels it, and waits for that.
            if call.loop is not None:
                call.request_cancel()  # if it has not started yet, it never will
                _serve(call, cancel_grace)
            raise
    finally:
        if job is not None and not cleanup:
            # No lock: a cancel that still finds this call finds it done,
            # and cancelling a done call does nothing.
            job.inner = None
        if delegate is not None:
            retire(delegate)
    outcome, call.outcome = call.outcome, None
    if isinstance(outcome, Value):
        return outcome.value
    if isinstance(outcome, Cancelled):
        del outcome
        if job is not None and job.cancel is not None and not cleanup:
            check_cancelled()
        if is_portal and portal.closed:
            raise BridgeClosed(
                f"the bridge was closed while {call.name}() was running on its portal "
                "loop, so the call was cancelled"
            ) from None
        if is_portal:
            raise SyncBridgeError(
                f"the bridge's portal loop stopped before {call.name}() finished on "
                "it (a coroutine or callback stopped the loop, or SystemExit or "
                "KeyboardInterrupt escaped one), so the call was cancelled; the next "
                "call starts a new portal loop. Do not stop a loop you did not start."
            ) from None
        raise SyncBridgeError(
            f"{call.name}() was cancelled by the event loop running it, which is "
            "shutting down (its asyncio.run() or trio.run() ended)"
        ) from None
    assert outcome is not None
    outcome.unwrap()


def _wait(call: Call[Any], handle: LoopHandle) -> None:
    """Serve delegated jobs until *call* is done; raise if its loop stops first."""
    replies = call.replies
    while True:  # _serve(call, _POLL_SECONDS), inlined: it runs per call
        try:
            item = replies.get(timeout=_POLL_SECONDS)
        except Empty:
            _raise_if_stopped(call, handle)
            continue
        if item is DONE:
            return
        item.run()  # type: ignore[attr-defined]


def _raise_if_stopped(call: Call[Any], handle: LoopHandle) -> None:
    """Raise if *call*'s loop stopped before answering it (a wait gave up)."""
    # The outcome is read after the loop: a loop that answers its calls before
    # it stops (a closing portal does) may have done both since the wait gave
    # up, and its answer is the caller's, not this. Call.finish() sets state
    # (under the call's lock) before DONE is put, so a done call's DONE is at
    # most a moment away.
    if not handle.still_running() and not call.done:
        raise SyncBridgeError(
            f"the event loop running {call.name}() stopped before the call finished"
        ) from None  # not from the queue's Empty it was called under


def _wait_timed(call: TimedCall[Any], handle: LoopHandle, grace: float) -> None:
    """:func:`_wait`, answering *call* itself *grace* s after its deadline passed."""
    replies = call.replies
    assert call.timeout is not None
    overdue = call.timeout + grace
    # It cannot start before now, so its bound is no sooner than this.
    bound = time.monotonic() + overdue
    while True:
        started = call.started  # set once by the loop thread, see TimedCall
        if started is not None:
            bound = started + overdue
        now = time.monotonic()
        if started is not None and now >= bound:
            _give_up(call, grace)
            return
        wait = min(_POLL_SECONDS, bound - now) if now < bound else _POLL_SECONDS
        try:
            item = replies.get(timeout=wait)
        except Empty:
            _raise_if_stopped(call, handle)
            continue
        if item is DONE:
            return
        item.run()  # type: ignore[attr-defined]


def _give_up(call: TimedCall[Any], grace: float) -> None:
    """Answer *call*, still running *grace* s after its deadline, with its timeout."""
    if not call.finish(Error(call.timeout_error()), timed_out=True):
        # Its loop finished it first, and is still recording that: the outcome
        # is the caller's once DONE comes, a moment away (as in _wait).
        _serve(call, None)
        return
    logger.warning(
        "%s() was still running %g s past its %g s deadline, which cancelled "
        "it (its cleanup awaits that long, or it ignores cancellation, or its "
        "loop is blocked); its caller got the timeout, and the coroutine is "
        "left running on its loop",
        call.name,
        grace,
        call.timeout,
        extra={
            "syncbridge_event": "timeout-cleanup-overran",
            "syncbridge_function": call.name,
        },
    )


def _serve(call: Call[Any], timeout: float | None) -> bool:
    """Run jobs delegated to this thread until *call* is done (True) or *timeout*."""
    while True:
        try:
            item = call.replies.get(timeout=timeout)
        except Empty:
            return False
        if item is DONE:
            return True
        item.run()  # type: ignore[attr-defined]
