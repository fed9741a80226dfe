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

import contextvars
import os
from queue import Empty
from typing import TYPE_CHECKING, Any, Final

from .._exceptions import (
    BridgeClosed,
    DeadlockError,
    SyncBridgeError,
    closed_message,
    deadlock_message,
)
from ._loops import (
    DONE,
    Call,
    LoopGone,
    LoopHandle,
    handle_for,
    loop_running_in_this_thread,
)
from ._outcome import unwrap
from ._wakeup import loop_served_by_this_thread
from ._workers import Delegate, Job, current_delegate, current_job

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from ._portal import Portal

_POLL_SECONDS: Final = 1.0
"""How often a blocked caller checks that a non-portal loop is still alive."""


def _anyio_worker_loop() -> object | None:
    # anyio keeps the loop a worker thread belongs to in a private thread-local;
    # from_thread.run() without a token reads the same attribute. Reading it
    # directly avoids a round trip to that loop (which would hang on a loop that
    # stopped without closing). tests/core/test_loop_choice.py pins this down.
    try:
        from anyio._core._eventloop import threadlocals
    except ImportError:  # pragma: no cover - anyio reorganised its internals
        return None
    token = getattr(threadlocals, "current_token", None)
    return getattr(token, "native_token", None)


def _choose(portal: Portal, name: str) -> tuple[LoopHandle, Job | None, bool]:
    """Apply the loop-choice rules: (loop handle, worker job or None, is portal)."""
    if loop_running_in_this_thread() is not None:
        raise DeadlockError(deadlock_message(name))
    job = current_job()
    if job is not None and job.pid == os.getpid():
        handle = handle_for(job.origin)
        if handle.is_alive():
            return handle, job, False
    for native in (loop_served_by_this_thread(), _anyio_worker_loop()):
        if native is not None:
            handle = handle_for(native)
            if handle.is_alive():
                return handle, None, False
    return portal.handle(), None, True


def call_async_from_thread(
    portal: Portal,
    func: Callable[..., Awaitable[Any]],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    timeout: float | None,
    cancel_grace: float,
) -> Any:
    """Run ``await func(*args, **kwargs)`` on the chosen loop; block until done.

    Runs on:
        The calling thread blocks; the coroutine runs on the loop chosen by
        the rules above, in a copy of the caller's context.
    Cancellation:
        A ``KeyboardInterrupt`` (or any exception raised in the waiting
        thread) cancels the coroutine, waits up to *cancel_grace* seconds for it to
        finish, and propagates. *timeout* cancels the coroutine on its loop and raises
        :class:`TimeoutError` here.
    """
    name = getattr(func, "__qualname__", None) or repr(func)
    handle, job, is_portal = _choose(portal, name)
    ctx = contextvars.copy_context()
    call = Call(func, args, kwargs, ctx, timeout)
    delegate = None
    if job is not None:
        delegate = Delegate(job.pool, call.replies)
        ctx.run(current_delegate.set, delegate)
    try:
        handle.submit(call)
    except LoopGone:
        if is_portal:
            raise BridgeClosed(closed_message("sync_call_async()")) from None
        handle, is_portal = portal.handle(), True
        handle.submit(call)
    try:
        _wait(call, handle, is_portal, cancel_grace)
    finally:
        if delegate is not None:
            delegate.retire()
    if call.cancelled:
        call.value = None
        if is_portal and not portal.running:
            raise BridgeClosed(
                f"the bridge was closed while {name}() was running on its portal "
                "loop, so the call was cancelled"
            ) from None
        raise SyncBridgeError(
            f"{name}() was cancelled on its event loop (the loop is shutting down?)"
        ) from None
    try:
        return unwrap((call.ok, call.value))
    finally:
        call.value = None


def _wait(call: Call[Any], handle: LoopHandle, is_portal: bool, grace: float) -> None:
    timeout = None if is_portal else _POLL_SECONDS
    try:
        while not _serve(call, timeout):
            if not handle.is_alive():
                raise SyncBridgeError(
                    "the event loop running this call stopped before the call finished"
                )
    except BaseException:
        call.cancelled = True  # if it has not started yet, it never will
        handle.cancel(call)
        _serve(call, grace)
        raise


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
