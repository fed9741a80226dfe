"""Await a blocking job from a task, on asyncio or trio.

The awaiting task submits a :class:`~._jobs.Job` to a pool and sleeps until the
worker calls the job's ``notify``. asyncio is woken with one
``call_soon_threadsafe`` (the cheapest wake-up there is), trio with
``TrioToken.run_sync_soon``.
"""

from __future__ import annotations

__all__ = ("run_in_pool",)

import asyncio
import functools
import threading
from typing import TYPE_CHECKING, Any, NamedTuple

import anyio
import anyio.lowlevel

from .._exceptions import SyncBridgeTimeout, callable_name, timeout_message
from ._context import copy_context_for_thread
from ._delegate import submit
from ._jobs import CancelReason, Ending, Job, JobState
from ._loops import loop_running_in_this_thread
from ._shield import wait_through_cancellation
from ._workers import WorkerPool

if TYPE_CHECKING:
    import contextvars
    from collections.abc import Awaitable, Callable
    from typing import TypeAlias

    from ._executor_pool import ExecutorPool

    Pool: TypeAlias = WorkerPool | ExecutorPool


async def run_in_pool(
    pool: Pool,
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    abandon_on_cancel: bool,
    timeout: float | None = None,  # noqa: ASYNC109 - counted here as a timeout
    *,
    terminate_on_cancel: bool = False,
) -> Any:
    """Run ``func(*args, **kwargs)`` in *pool* and await its outcome.

    Runs on:
        The calling task's event loop (asyncio or trio); *func* on a worker, in
        a copy of the caller's context.
    Cancellation:
        In a scope already cancelled, *func* never runs. A call still queued is
        withdrawn at once. A running call is flagged (see
        :func:`~._jobs.check_cancelled`), the async calls it is blocked on are
        cancelled, and it is then abandoned or waited for, as
        *abandon_on_cancel* says; either way its slot stays taken until it
        returns. After *timeout* seconds the same happens and
        :class:`~syncbridge.SyncBridgeTimeout` is raised.
        On a :class:`~syncbridge.ProcessExecutor` the timeout instead ends the
        process running the call (and so does a cancellation, with
        *terminate_on_cancel*): its slot is free at once.

    Each call is counted in *pool*'s stats once, by how it ended here.
    """
    native = loop_running_in_this_thread()
    if native is None:
        raise RuntimeError(
            "run_blocking() must be awaited in a task of a running asyncio or trio "
            "event loop; from synchronous code, call the function directly"
        )
    ctx = copy_context_for_thread()
    pool._count_call()  # pyright: ignore[reportPrivateUsage]
    ending = Ending.ERROR
    try:
        policy = _OnCancel(abandon_on_cancel, terminate_on_cancel, None)
        if timeout is None:
            result = await _run(native, pool, func, args, kwargs, ctx, policy)
            ending = Ending.COMPLETED
            return result
        with anyio.move_on_after(timeout) as scope:
            policy = _OnCancel(abandon_on_cancel, terminate_on_cancel, scope.deadline)
            result = await _run(native, pool, func, args, kwargs, ctx, policy)
            ending = Ending.COMPLETED
            return result
        # Only reached when the deadline cancelled the wait. Its own class, so
        # handlers can tell it from a TimeoutError the function raised.
        ending = Ending.TIMED_OUT
        message = timeout_message("to_async(timeout=...)", callable_name(func), timeout)
        raise SyncBridgeTimeout(message)
    except anyio.get_cancelled_exc_class():
        ending = Ending.CANCELLED
        raise
    finally:
        pool._count_outcome(ending)  # pyright: ignore[reportPrivateUsage]


class _OnCancel(NamedTuple):
    """What a cancelled await does to a call that is running."""

    abandon: bool
    """Re-raise at once (True) or wait for the call to return (False)."""
    terminate: bool
    """End the process running it, where the executor can (ProcessExecutor)."""
    deadline: float | None
    """The call's own timeout: once passed, the process is ended too."""

    def ends_process(self, now: float) -> bool:
        return self.terminate or (self.deadline is not None and now >= self.deadline)


async def _run(
    native: object,
    pool: Pool,
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    ctx: contextvars.Context,
    policy: _OnCancel,
) -> Any:
    if isinstance(native, asyncio.AbstractEventLoop):
        # anyio and trio check first: a call in a cancelled scope never starts.
        await _asyncio_checkpoint_if_cancelled()()
        return await _await_asyncio(native, pool, func, args, kwargs, ctx, policy)
    import trio

    await trio.lowlevel.checkpoint_if_cancelled()
    return await _await_trio(native, pool, func, args, kwargs, ctx, policy)


@functools.cache
def _asyncio_checkpoint_if_cancelled() -> Callable[[], Awaitable[None]]:
    # The public anyio.lowlevel.checkpoint_if_cancelled() first detects the
    # running library (about 3 µs, a tenth of a whole call); the asyncio
    # backend's own method skips that.
    try:
        from anyio._backends._asyncio import AsyncIOBackend
    except ImportError:  # pragma: no cover - anyio reorganised its internals
        return anyio.lowlevel.checkpoint_if_cancelled
    check: Callable[[], Awaitable[None]] = AsyncIOBackend.checkpoint_if_cancelled
    return check


def _set_result(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _asyncio_notifier(
    loop: asyncio.AbstractEventLoop, fut: asyncio.Future[None]
) -> Callable[[], None]:
    def notify() -> None:
        try:
            loop.call_soon_threadsafe(_set_result, fut)
        except RuntimeError:  # the loop closed after abandoning this call
            pass

    return notify


async def _await_asyncio(
    loop: asyncio.AbstractEventLoop,
    pool: Pool,
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    ctx: contextvars.Context,
    policy: _OnCancel,
) -> Any:
    fut: asyncio.Future[None] = loop.create_future()
    job = Job(func, args, kwargs, ctx, loop, pool)
    job.notify = _asyncio_notifier(loop, fut)
    submit(pool, job)
    try:
        await fut
    except asyncio.CancelledError:
        if _abandon_or_wait(pool, job, policy, loop.time()):
            raise
        deadline = _end_at_deadline(pool, job, policy, loop.time())

        def finished() -> asyncio.Future[None]:
            # A fresh future per wait: a cancelled one cannot be awaited again.
            fut = loop.create_future()
            job.notify = _asyncio_notifier(loop, fut)
            if job.state is JobState.FINISHED:
                fut.set_result(None)
            return fut

        try:
            await wait_through_cancellation(finished)
        finally:
            if deadline is not None:
                deadline.cancel()
        raise
    return job.result()


def _abandon_or_wait(pool: Pool, job: Job, policy: _OnCancel, now: float) -> bool:
    """Handle the cancellation of an await; True means re-raise at once."""
    job.request_cancel(CancelReason.AWAITER)
    if pool._withdraw(job):  # pyright: ignore[reportPrivateUsage]
        return True
    if job.state is JobState.FINISHED:
        return True
    if (
        not isinstance(pool, WorkerPool) and policy.ends_process(now) and pool._end(job)  # pyright: ignore[reportPrivateUsage]
    ):
        return True  # its slot is free: nothing is left to wait for
    job.abandoned = policy.abandon
    return policy.abandon


def _end_at_deadline(
    pool: Pool, job: Job, policy: _OnCancel, now: float
) -> threading.Timer | None:
    """While a cancelled await waits for its call, keep the call's own deadline.

    ``abandon_on_cancel=False`` waits for the call to return; on a
    ProcessExecutor its timeout still ends the process when it passes.
    """
    if (
        isinstance(pool, WorkerPool)
        or not pool.can_end_calls
        or policy.deadline is None
    ):
        return None
    timer = threading.Timer(
        max(0.0, policy.deadline - now),
        pool._end,  # pyright: ignore[reportPrivateUsage]
        (job,),
    )
    timer.name, timer.daemon = "syncbridge-deadline", True
    timer.start()
    return timer


async def _await_trio(
    token: Any,
    pool: Pool,
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    ctx: contextvars.Context,
    policy: _OnCancel,
) -> Any:
    import trio

    event = trio.Event()

    def notify() -> None:
        try:
            token.run_sync_soon(event.set)
        except trio.RunFinishedError:
            pass

    job = Job(func, args, kwargs, ctx, token, pool)
    job.notify = notify
    submit(pool, job)
    try:
        await event.wait()
    except trio.Cancelled:
        if _abandon_or_wait(pool, job, policy, trio.current_time()):
            raise
        deadline = _end_at_deadline(pool, job, policy, trio.current_time())
        try:
            await wait_through_cancellation(event.wait)
        finally:
            if deadline is not None:
                deadline.cancel()
        raise
    return job.result()
