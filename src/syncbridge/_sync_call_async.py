"""Sync code calling async code: sync_call_async, to_sync."""

from __future__ import annotations

__all__ = ("sync_call_async", "to_sync")

import functools
from typing import TYPE_CHECKING, overload

from ._core._bridge import Bridge, call_with_timeout, get_bridge
from ._core._loops import loop_running_in_this_thread
from ._exceptions import DeadlockError, callable_name
from ._validate import check_async_callable, check_instance, check_timeout

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from ._typing import P, T


def sync_call_async(
    func: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs
) -> T:
    """Call the async function ``func(*args, **kwargs)``; block until it finishes.

    Runs on:
        The calling thread blocks (it never runs a loop of its own). The
        coroutine runs, in a copy of the caller's :mod:`contextvars` context, on:

        1. the loop L that a worker thread is serving, when called from such a thread
           (a :func:`run_blocking` worker, ``anyio.to_thread``, Starlette's
           threadpool), while L runs — so objects bound to L keep working. Nesting
           sync → async → sync to any depth never needs more worker slots than the
           outer calls already hold, so it never deadlocks;
        2. nowhere, in a thread that is running an event loop: that would block the
           loop forever, so :class:`DeadlockError` is raised at once;
        3. otherwise, the default bridge's persistent portal loop, shared by every
           such call (a lock or client created in one call works in the next).

    Cancellation:
        A ``KeyboardInterrupt`` in the waiting thread cancels the
        coroutine, waits briefly for it to finish, and propagates. Use
        ``to_sync(timeout=...)`` for a deadline.

    Args:
        func: The coroutine function. It takes no options of its own, so keyword
            arguments always reach *func*; set options with :func:`to_sync`.
        *args: Positional arguments for *func*.
        **kwargs: Keyword arguments for *func*.

    Returns:
        What the coroutine returned.

    Raises:
        DeadlockError: If called from a thread running an event loop.
        BridgeClosed: If the default bridge is closed, or closes during the call.
        TypeError: If *func* is not callable (a coroutine object passed instead of
            the function is closed first), a generator function, or a plain
            function whose return annotation says it returns what cannot be
            awaited (``-> None``, ``-> int``), checked before anything runs; or
            if what *func* returned cannot be awaited (a plain function without
            such an annotation may return an awaitable, so it is run, on the
            loop's thread, and the message says so). A keyword meant as an
            option (``timeout=``) that *func* refuses is named with the
            ``to_sync(...)`` form that sets it.

    Whatever the coroutine raises propagates unchanged (the same object).

    .. versionadded:: 0.1
    """
    return get_bridge().sync_call_async(func, *args, **kwargs)


@overload
def to_sync(
    func: Callable[P, Awaitable[T]],
    /,
    *,
    timeout: float | None = None,
    bridge: Bridge | None = None,
) -> Callable[P, T]: ...


@overload
def to_sync(
    *, timeout: float | None = None, bridge: Bridge | None = None
) -> Callable[[Callable[P, Awaitable[T]]], Callable[P, T]]: ...


def to_sync(
    func: Callable[P, Awaitable[T]] | None = None,
    /,
    *,
    timeout: float | None = None,
    bridge: Bridge | None = None,
) -> Callable[P, T] | Callable[[Callable[P, Awaitable[T]]], Callable[P, T]]:
    """Turn a coroutine function into a plain function that runs it on the right loop.

    Use it bare (``@to_sync``) or with options (``@to_sync(timeout=5.0)``), on
    functions and methods; the wrapper keeps the name, docstring and typed
    signature.

    Runs on:
        As :func:`sync_call_async` (the same three loop-choice rules).

    Cancellation:
        With *timeout*, the coroutine is cancelled on its loop after that
        many seconds (on asyncio once, like :func:`asyncio.timeout`, so its
        cleanup may await; on trio by a cancel scope, trio's own rules) and
        :class:`~syncbridge.SyncBridgeTimeout` is raised in the caller once it
        has stopped, or, if it is still running the bridge's ``shutdown_grace``
        seconds after the deadline, then, with a warning logged.
        ``KeyboardInterrupt`` behaves as in :func:`sync_call_async`.

    Args:
        func: The coroutine function (omit it to get a decorator).
        timeout: Seconds before the call is cancelled with :class:`TimeoutError`
            (``None``, or a number >= 0).
        bridge: Use this bridge instead of the default one.

    Returns:
        Given *func*, a plain function with *func*'s parameters that blocks
        until the coroutine has finished on its loop and returns its result;
        without *func*, a decorator that makes one.

    Raises:
        TypeError: If *func* is not callable, a generator function, or a
            plain function declared to return what cannot be awaited
            (``-> int``); or an option has the wrong type. Checked at
            decoration.
        ValueError: If *timeout* is negative or NaN.

    .. versionadded:: 0.1
    """
    timeout = check_timeout(timeout, "to_sync(timeout=...)")
    check_instance(bridge, Bridge, "to_sync(bridge=...)")

    def decorate(fn: Callable[P, Awaitable[T]]) -> Callable[P, T]:
        check_async_callable(fn, "to_sync()")

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            b = bridge if bridge is not None else get_bridge()
            try:
                return call_with_timeout(b, timeout, fn, args, kwargs)
            except DeadlockError:
                if loop_running_in_this_thread() is None:
                    raise  # the coroutine's own: this thread runs no loop
                raise DeadlockError(_deadlock_message(fn)) from None

        return wrapper

    if func is None:
        return decorate
    return decorate(func)


def _deadlock_message(func: object) -> str:
    name = callable_name(func)
    return (
        f"{name}() is a to_sync() function, called from a thread that is running "
        "an event loop: blocking here would stop that loop and never return. In "
        f"async code, await the coroutine function it wraps: `await "
        f"{name}.__wrapped__(...)` (or keep the async function undecorated and "
        "await it), or call it from a worker thread (a function run with "
        "syncbridge.run_blocking)."
    )
