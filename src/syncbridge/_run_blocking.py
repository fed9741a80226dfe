"""Async code calling sync code: run_blocking, to_async, check_cancelled."""

from __future__ import annotations

__all__ = ("check_cancelled", "run_blocking", "to_async")

import concurrent.futures
import functools
from typing import TYPE_CHECKING, Any, overload

from ._core._bridge import (
    Bridge,
    executor_pool,
    get_bridge,
    run_blocking_call,
    run_in,
)
from ._core._jobs import check_cancelled as _check_cancelled
from ._validate import (
    SupportsGetExecutor,
    as_executor,
    check_blocking_callable,
    check_bool,
    check_instance,
    check_name,
    check_timeout,
    explain_option,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

    from ._core._executor_pool import ExecutorPool
    from ._core._workers import WorkerPool
    from ._typing import P, T


async def run_blocking(func: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """Run ``func(*args, **kwargs)`` in a worker thread and await its result.

    Runs on:
        *func* runs in a worker thread of the default bridge's default pool
        (:func:`get_bridge`), in a copy of the caller's :mod:`contextvars` context
        (changes it makes do not flow back). The awaiting task's loop (asyncio or trio)
        is never blocked. When the pool is at capacity the call waits its turn.

    Cancellation:
        Cancelling the awaiting task (a timeout, ``task.cancel()``, an
        anyio cancel scope) ends the await at once and re-raises the cancellation. A
        call that had not started yet never starts. A running thread cannot be killed:
        it runs on, its result is discarded, its slot stays taken until *func*
        returns, and :func:`check_cancelled` raises inside it. To wait for the thread
        instead, use ``to_async(abandon_on_cancel=False)`` or
        ``Bridge(abandon_on_cancel=False)``.

    Args:
        func: The blocking callable. Options (pool, timeout, ...) are not keyword
            arguments here, so they never clash with *func*'s own: set them with
            :func:`to_async` or :class:`Bridge`.
        *args: Positional arguments for *func*.
        **kwargs: Keyword arguments for *func*.

    Returns:
        What *func* returned.

    Raises:
        BridgeClosed: If the default bridge was closed.
        RuntimeError: If not awaited in a running asyncio or trio event loop.
        TypeError: If *func* is async or not callable (checked before anything
            runs), or it returned a coroutine (closed; it never ran): await
            async functions directly.

    Whatever *func* raises propagates unchanged: the same exception object, with
    its traceback through *func*.

    .. versionadded:: 0.1
    """
    try:
        result: T = await run_blocking_call(get_bridge(), func, args, kwargs)
    except TypeError as exc:  # only this path pays: a try costs nothing until raised
        better = explain_option(func, args, kwargs, "run_blocking()", "to_async")
        if better is not None:
            raise better from exc
        raise
    return result


def check_cancelled() -> None:
    """Raise if the task awaiting this worker call is gone; else do nothing.

    Call it now and then in long blocking work run by :func:`run_blocking` or a
    :func:`to_async` function, to stop early once nobody waits for the result.

    Runs on:
        Any thread. Outside a syncbridge worker call it does nothing, so a
        function that calls it still works when called directly.

    Raises:
        WorkerCancelled: If the awaiting task was cancelled or timed out, or the
            bridge was closed. It derives from :class:`BaseException`; let it
            propagate after your cleanup.

    .. versionadded:: 0.1
    """
    _check_cancelled()


@overload
def to_async(
    func: Callable[P, T],
    /,
    *,
    pool: str | None = None,
    thread_sensitive: bool = False,
    timeout: float | None = None,
    abandon_on_cancel: bool | None = None,
    bridge: Bridge | None = None,
    executor: concurrent.futures.Executor | SupportsGetExecutor | None = None,
    terminate_on_cancel: bool = False,
) -> Callable[P, Coroutine[Any, Any, T]]: ...


@overload
def to_async(
    *,
    pool: str | None = None,
    thread_sensitive: bool = False,
    timeout: float | None = None,
    abandon_on_cancel: bool | None = None,
    bridge: Bridge | None = None,
    executor: concurrent.futures.Executor | SupportsGetExecutor | None = None,
    terminate_on_cancel: bool = False,
) -> Callable[[Callable[P, T]], Callable[P, Coroutine[Any, Any, T]]]: ...


def to_async(
    func: Callable[P, T] | None = None,
    /,
    *,
    pool: str | None = None,
    thread_sensitive: bool = False,
    timeout: float | None = None,
    abandon_on_cancel: bool | None = None,
    bridge: Bridge | None = None,
    executor: concurrent.futures.Executor | SupportsGetExecutor | None = None,
    terminate_on_cancel: bool = False,
) -> (
    Callable[P, Coroutine[Any, Any, T]]
    | Callable[[Callable[P, T]], Callable[P, Coroutine[Any, Any, T]]]
):
    """Turn a blocking function into an ``async def`` that runs it in a worker thread.

    Use it bare (``@to_async``) or with options (``@to_async(timeout=3.0)``), on
    functions and methods. The wrapper keeps the name, docstring and exact typed
    signature, and passes :func:`inspect.iscoroutinefunction`, so FastAPI and
    Starlette await it on the loop instead of sending it to their threadpool.

    Runs on:
        Like :func:`run_blocking`; the bridge and pool are looked up at each
        call, so a module-level decorator works with bridges created later.

    Cancellation:
        As in :func:`run_blocking`. With *timeout*, the await raises
        :class:`~syncbridge.SyncBridgeTimeout` after that many seconds and the
        thread is treated like a cancelled one (abandoned, or waited for with
        ``abandon_on_cancel=False``). On an executor, a call still queued there
        is cancelled (it never runs); on a :class:`~syncbridge.ProcessExecutor`
        a running one is stopped by ending its worker process.

    Args:
        func: The blocking function (omit it to get a decorator).
        pool: Run in this named pool of the bridge instead of the default pool.
        thread_sensitive: Run every call on the bridge's one dedicated thread, in
            order, for objects that must stay on one thread (a sqlite3 connection).
        timeout: Seconds before the await gives up with :class:`TimeoutError`
            (``None``, or a number >= 0).
        abandon_on_cancel: Override the bridge's setting: ``False`` waits for the
            thread to return before a cancellation or timeout propagates.
        bridge: Use this bridge instead of the default one.
        executor: Run the calls on this :class:`concurrent.futures.Executor`
            (a :class:`~syncbridge.ProcessExecutor`, a ``ProcessPoolExecutor``,
            loky...) instead of a pool; a ``distributed.Client`` stands for
            ``client.get_executor(pure=False)``.
            Out of process, the function and its arguments must pickle, and
            context variables do not travel. Make it once and reuse it: its
            capacity and its stats are per executor. The bridge holds it only
            while calls are in it.
        terminate_on_cancel: On a :class:`~syncbridge.ProcessExecutor`, end the
            worker process when the awaiting task is cancelled, as *timeout*
            always does (the slot is free at once). Ignored elsewhere.

    Returns:
        Given *func*, a coroutine function with *func*'s signature whose calls
        run *func* in a worker thread; without *func*, a decorator that makes
        one.

    Raises:
        TypeError: If *func* is async (a coroutine function, a
            ``functools.partial`` of one, an object with an ``async def
            __call__``) or not callable, or an option has the wrong type.
        ValueError: If *timeout* is negative or NaN, or more than one of
            *pool*, *thread_sensitive* and *executor* is given.

    Options are checked when ``to_async`` is called, *func* when it is
    decorated: a mistake fails at import time, not at the first call. *timeout*
    is ``None`` or a number of seconds >= 0 (``math.inf`` means none).

    .. versionadded:: 0.1
    """
    timeout = check_timeout(timeout, "to_async(timeout=...)")
    if pool is not None:
        check_name(pool, "to_async(pool=...)")
    check_bool(thread_sensitive, "to_async(thread_sensitive=...)")
    if abandon_on_cancel is not None:
        check_bool(abandon_on_cancel, "to_async(abandon_on_cancel=...)")
    check_instance(bridge, Bridge, "to_async(bridge=...)")
    if executor is not None:
        executor = as_executor(executor, "to_async(executor=...)")
    check_bool(terminate_on_cancel, "to_async(terminate_on_cancel=...)")
    if (pool is not None) + thread_sensitive + (executor is not None) > 1:
        raise ValueError(
            "to_async() takes one of pool=..., thread_sensitive=True and "
            "executor=...: each names where the calls run"
        )

    def decorate(fn: Callable[P, T]) -> Callable[P, Coroutine[Any, Any, T]]:
        check_blocking_callable(fn, "to_async()")

        @functools.wraps(fn)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            b = bridge if bridge is not None else get_bridge()
            target: WorkerPool | ExecutorPool
            if isinstance(executor, concurrent.futures.Executor):
                target = executor_pool(b, executor, fn)
            elif thread_sensitive:
                target = b.thread_sensitive_pool
            else:
                target = b.pool(pool)
            return await run_in(
                b, target, abandon_on_cancel, fn, args, kwargs,
                timeout=timeout, terminate_on_cancel=terminate_on_cancel,
            )  # fmt: skip

        return wrapper

    if func is None:
        return decorate
    return decorate(func)
