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
import sys
import threading
from collections import deque
from typing import TYPE_CHECKING, Any, Final, NamedTuple

import anyio
import anyio.lowlevel

from .._exceptions import SyncBridgeTimeout, callable_name, timeout_message
from .._validate import refuse_coroutine
from ._context import copy_context_for_thread
from ._counts import Ending
from ._delegate import delegates, submit
from ._jobs import CancelReason, Job, JobState
from ._loops import loop_running_in_this_thread
from ._process import ChildStep, on_fork_child
from ._shield import wait_through_cancellation
from ._workers import Saturated

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Container

    from ._pool import Pool


async def run_in_pool(
    pool: Pool[Job],
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    abandon_on_cancel: bool,
    timeout: float | None = None,  # noqa: ASYNC109 - counted here as a timeout
    *,
    terminate_on_cancel: bool = False,
    what: str | None = None,
    seen: Callable[[Job], object] | None = None,
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

    Each call is counted in *pool*'s stats once, by how it ended here. With
    *what* (the user's call, ``"run_blocking()"``), a result that is a
    coroutine is refused (:func:`~.._validate.refuse_coroutine`). *seen*,
    if given, is called with the call's job once it exists (an observer's).
    """
    loop = asyncio._get_running_loop()
    token = None
    if loop is None:
        token = loop_running_in_this_thread()
        if token is None:
            raise RuntimeError(
                "run_blocking() must be awaited in a task of a running asyncio or "
                "trio event loop; from synchronous code, call the function directly"
            )
    # The one place a call is counted, whatever the loop and the timeout.
    counts = pool.counts
    counts.call()
    try:
        if loop is None:
            result = await _run_on_trio(
                token, pool, func, args, kwargs, abandon_on_cancel, timeout,
                terminate_on_cancel, seen,
            )  # fmt: skip
        else:
            # asyncio, with or without a timeout, in this one frame: each extra
            # coroutine level costs about as much as the loop's own hand-off.
            if _may_be_cancelled(loop):
                # A call whose task is cancelled already never starts.
                await _asyncio_cancelled_yet(loop)
            fut: asyncio.Future[None] = loop.create_future()
            deadline: float | None = None
            timer: asyncio.TimerHandle | None = None
            asked = 0
            if timeout is not None:
                if timeout <= 0:
                    raise _Expired  # its deadline passed before it started
                deadline = loop.time() + timeout
                asked = _cancel_requests(loop)
            job = Job(func, args, kwargs, copy_context_for_thread(), loop, pool)
            if seen is not None:
                seen(job)
            wakeups = _wakeups(loop)
            job.notify = wakeups.notifier(fut)
            submit(pool, job)
            if deadline is not None:
                # The deadline cancels the await of fut, never the task (what
                # cancels the task meanwhile is a cancellation): no scope, which
                # would need this path again in a frame of its own.
                timer = loop.call_at(deadline, fut.cancel)
            refuser: asyncio.TimerHandle | None = None
            if pool._max_wait is not None:  # pyright: ignore[reportPrivateUsage]
                refuser = _refuse_later(loop, pool, job, fut, deadline)
            try:
                await fut
            except asyncio.CancelledError:
                expired = (
                    timer is not None
                    and fut.cancelled()
                    and _cancel_requests(loop) == asked
                )
                # A timer may run a clock tick early: expired is the deadline.
                ends = terminate_on_cancel or expired
                policy = _OnCancel(abandon_on_cancel, ends, deadline)
                await _asyncio_cancelled(loop, pool, job, policy, wakeups, fut)
                if not expired:
                    raise
                # A scope cancelled while the call was waited for (shielded)
                # wins over the timeout, as an anyio scope's would.
                await _asyncio_checkpoint_if_cancelled()()
                raise _Expired from None
            else:
                result = job.result()
            finally:
                if timer is not None:
                    timer.cancel()
                if refuser is not None:
                    refuser.cancel()
    except _Expired:
        counts.ended(Ending.TIMED_OUT)
        assert timeout is not None
        # Its own class, so handlers can tell it from a TimeoutError func raised.
        message = timeout_message("to_async(timeout=...)", callable_name(func), timeout)
        raise SyncBridgeTimeout(message) from None
    except _cancelled_classes:
        counts.ended(Ending.CANCELLED)
        raise
    except GeneratorExit:
        # Its task's coroutine was closed (an abandoned task, by the portal
        # at close, or by the garbage collector): nobody waits any more.
        counts.ended(Ending.CANCELLED)
        raise
    except Saturated as refusal:
        counts.ended(Ending.REJECTED)
        raise refusal.error(_named(what, func)) from None
    except BaseException:
        counts.ended(Ending.ERROR)
        raise
    counts.completed()
    return result if what is None else refuse_coroutine(result, func, what)


class _Expired(Exception):
    """The call's timeout ended its await (or passed before it started)."""


def _named(what: str | None, func: Callable[..., Any]) -> str:
    """The user's call in a PoolSaturated message: ``run_blocking(fetch)``."""
    entry = "iterate_in_thread" if what is None else what.removesuffix("()")
    return f"{entry}({callable_name(func)})"


def _borrows(pool: Pool[Job]) -> bool:
    """Whether the current call is nested in one holding a slot of *pool*.

    Such a call may run in its ancestor's slot (``_delegate``): the pool's
    bounds never refuse it.
    """
    return any(d.pool is pool for d in delegates.get())


def _max_wait_at(
    pool: Pool[Job], job: Job, now: float, deadline: float | None
) -> tuple[float, float] | None:
    """When *job*'s ``max_wait`` refuses it, and that bound; on the loop's clock.

    None if it does not apply: *job* started already, is nested
    (:func:`_borrows`), or has a timeout that comes first (and so wins).
    """
    # Read without the pool's lock: a call that sees the bound a moment before
    # it changes keeps the old one, as if it had been queued a moment earlier.
    max_wait = pool._max_wait  # pyright: ignore[reportPrivateUsage]
    if max_wait is None or job.state is not JobState.QUEUED or _borrows(pool):
        return None
    at = now + max_wait
    return None if deadline is not None and deadline <= at else (at, max_wait)


def _refuse_later(
    loop: asyncio.AbstractEventLoop,
    pool: Pool[Job],
    job: Job,
    fut: asyncio.Future[None],
    deadline: float | None,
) -> asyncio.TimerHandle | None:
    """Arm *job*'s ``max_wait``: then, if still queued, it is withdrawn and refused.

    The refusal is set on *fut*, which the awaiter's ``await`` raises.
    """
    bound = _max_wait_at(pool, job, loop.time(), deadline)
    if bound is None:
        return None
    return loop.call_at(bound[0], _refuse_if_queued, pool, job, fut, bound[1])


def _refuse_if_queued(
    pool: Pool[Job], job: Job, fut: asyncio.Future[None], max_wait: float
) -> None:
    # On the loop, as is every cancellation of fut: a fut done already was
    # cancelled (its awaiter withdraws the job itself) or has its outcome.
    if fut.done():
        return
    refusal = pool._expire(job, max_wait)  # pyright: ignore[reportPrivateUsage]
    if refusal is not None:
        fut.set_exception(refusal)


_ASYNCIO_CANCELLED: Final = (asyncio.CancelledError,)
_cancelled_classes: tuple[type[BaseException], ...] = _ASYNCIO_CANCELLED
"""The cancellations a call is counted cancelled by; trio's is added on first use.

Written (to the same value, whichever thread) before the first await on trio,
so a thread that can see ``trio.Cancelled`` raised here has written it itself.
"""


def _cancel_requests(loop: asyncio.AbstractEventLoop) -> int:
    """How many cancel requests the current task has pending (0 outside a task)."""
    task = asyncio.current_task(loop)
    return 0 if task is None else task.cancelling()


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


async def _run_on_trio(
    token: object,
    pool: Pool[Job],
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    abandon_on_cancel: bool,
    timeout: float | None,  # noqa: ASYNC109 - a cancel scope, as trio's users expect
    terminate_on_cancel: bool,
    seen: Callable[[Job], object] | None,
) -> Any:
    """:func:`run_in_pool`'s await on trio; raises :class:`_Expired` at *timeout*."""
    global _cancelled_classes
    if _cancelled_classes is _ASYNCIO_CANCELLED:
        import trio

        _cancelled_classes = (asyncio.CancelledError, trio.Cancelled)
    if timeout is None:
        policy = _OnCancel(abandon_on_cancel, terminate_on_cancel, None)
        return await _await_trio(token, pool, func, args, kwargs, policy, seen)
    with anyio.move_on_after(timeout) as scope:
        policy = _OnCancel(abandon_on_cancel, terminate_on_cancel, scope.deadline)
        return await _await_trio(token, pool, func, args, kwargs, policy, seen)
    raise _Expired


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


@functools.cache
def _anyio_task_states() -> Container[object] | None:
    """The asyncio tasks anyio manages (those that may be in its cancel scopes)."""
    try:
        from anyio._backends import _asyncio
    except ImportError:  # pragma: no cover - anyio reorganised its internals
        return None
    states: Container[object] | None = getattr(_asyncio, "_task_states", None)
    return states


def _may_be_cancelled(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether the current task may be cancelled already, before its call starts.

    True if it was asked to cancel (``task.cancel()``, a native timeout; seen
    on Python 3.11+) or may sit in an anyio cancel scope. Only tasks anyio
    knows have scopes; asking the backend about any other task costs a raised
    and caught KeyError, a tenth of a whole call.
    """
    task = asyncio.current_task(loop)
    if task is None:
        return False
    if task.cancelling():  # asked to (delivered or not), and not uncancelled
        return True
    if "anyio._backends._asyncio" not in sys.modules:
        return False  # no anyio task has run on asyncio in this process
    states = _anyio_task_states()
    return states is None or task in states


async def _asyncio_cancelled_yet(loop: asyncio.AbstractEventLoop) -> None:
    """Raise the cancellation the current task has waiting, if any.

    A ``task.cancel()`` is delivered at the task's next await, which would be
    the call's own, after the call was handed to a worker: one ``sleep(0)``
    delivers it first. (A task still handling a delivered cancel, in cleanup,
    counts as cancelling too: there the sleep just yields.)
    """
    task = asyncio.current_task(loop)
    if task is not None and task.cancelling():
        await asyncio.sleep(0)
    await _asyncio_checkpoint_if_cancelled()()


class _Wakeups:
    """Wake-ups of one asyncio loop's awaiting tasks, from worker threads.

    A worker that finishes a call adds its future here; only the first of a
    burst calls ``call_soon_threadsafe``, whose callback resolves them all. On
    asyncio every ``call_soon_threadsafe`` writes to the loop's self-pipe (a
    system call, with the GIL dropped and fought for again), so under load one
    per burst instead of one per call is most of a worker's cost.

    The futures waiting and the flag that a drain is on its way change together
    under :attr:`_lock`: a worker that finds the flag set must be sure that
    drain sees its future, which no lock-free order of two fields promises
    without the GIL.
    """

    __slots__ = ("_after", "_lock", "_ready", "_scheduled", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._lock = threading.Lock()
        self._ready: deque[asyncio.Future[None]] = deque()  # guarded by _lock
        self._scheduled = False  # a _drain is on its way (guarded by _lock)
        # On the loop thread only: what a future that was cancelled while its
        # call ran wakes instead, when the call's wake-up arrives (see forward).
        self._after: dict[asyncio.Future[None], Callable[[], object]] = {}

    def notifier(self, fut: asyncio.Future[None]) -> Callable[[], None]:
        """The ``Job.notify`` that resolves *fut* on the loop (callable once)."""
        return functools.partial(self.wake, fut)

    def wake(self, fut: asyncio.Future[None]) -> None:
        """Resolve *fut* on the loop soon; any thread."""
        lock = self._lock
        lock.acquire()  # not `with`: half the cost, on every call
        try:
            self._ready.append(fut)
            if self._scheduled:
                return  # the drain on its way takes it
            self._scheduled = True
        finally:
            lock.release()
        try:
            self.loop.call_soon_threadsafe(self._drain)
        except RuntimeError:  # the loop closed after abandoning the call
            pass
        except BaseException:  # a Ctrl-C in call_soon_threadsafe: undo the flag
            with lock:
                self._scheduled = False  # at worst, one drain too many later
            raise

    def forward(self, fut: asyncio.Future[None], wake: Callable[[], object]) -> None:
        """Call *wake* when *fut*'s wake-up arrives, *fut* being done already.

        On the loop thread. The call's wake-up still resolves *fut* (its
        ``notify`` never changes once its worker may read it); a task whose
        await of *fut* was cancelled waits on *wake* instead. Either that
        wake-up has been drained already (then the job's state, written
        before it, is seen as finished here), or it is drained later.
        """
        self._after[fut] = wake

    def forget(self, fut: asyncio.Future[None]) -> None:
        """Undo :meth:`forward` (on the loop thread)."""
        self._after.pop(fut, None)

    def _drain(self) -> None:
        with self._lock:
            self._scheduled = False
            batch, self._ready = self._ready, deque()
        try:
            while batch:
                fut = batch.popleft()
                if not fut.done():
                    fut.set_result(None)
                elif self._after:
                    wake = self._after.pop(fut, None)
                    if wake is not None:
                        wake()
        finally:
            if batch:  # interrupted: the rest later, first
                with self._lock:
                    batch.extend(self._ready)
                    self._ready = batch
                    if not self._scheduled:
                        self._scheduled = True
                        self.loop.call_soon(self._drain)


class _LoopWakeups(threading.local):
    current: _Wakeups | None = None
    """The wake-ups of the loop that last ran here (kept until the next one)."""


_here = _LoopWakeups()


def _forget_parent_wakeups() -> None:
    # A drain the parent had on its way never runs in the child.
    _here.current = None


on_fork_child(ChildStep.WAKEUPS, _forget_parent_wakeups)


def _wakeups(loop: asyncio.AbstractEventLoop) -> _Wakeups:
    """The wake-ups of *loop*, the loop running in this thread."""
    wakeups = _here.current
    if wakeups is None or wakeups.loop is not loop:
        wakeups = _here.current = _Wakeups(loop)
    return wakeups


async def _asyncio_cancelled(
    loop: asyncio.AbstractEventLoop,
    pool: Pool[Job],
    job: Job,
    policy: _OnCancel,
    wakeups: _Wakeups,
    fut: asyncio.Future[None],
) -> None:
    """The await of *job* (*fut*) was cancelled: withdraw it, abandon it or wait.

    The caller re-raises its cancellation when this returns.
    """
    if _abandon_or_wait(pool, job, policy, loop.time()):
        return
    deadline = _end_at_deadline(pool, job, policy, loop.time())
    finished = asyncio.Event()
    wakeups.forward(fut, finished.set)
    if job.state is JobState.FINISHED:  # its wake-up was drained already
        finished.set()
    try:
        await wait_through_cancellation(finished.wait)
    finally:
        wakeups.forget(fut)
        if deadline is not None:
            deadline.cancel()


def _abandon_or_wait(pool: Pool[Job], job: Job, policy: _OnCancel, now: float) -> bool:
    """Handle the cancellation of an await; True means re-raise at once."""
    job.request_cancel(CancelReason.AWAITER)
    if pool._withdraw(job):  # pyright: ignore[reportPrivateUsage]
        return True
    if job.state is JobState.FINISHED:
        return True
    if policy.ends_process(now) and pool._end(job):  # pyright: ignore[reportPrivateUsage]
        return True  # its slot is free: nothing is left to wait for
    job.abandoned = policy.abandon
    return policy.abandon


def _end_at_deadline(
    pool: Pool[Job], job: Job, policy: _OnCancel, now: float
) -> threading.Timer | None:
    """While a cancelled await waits for its call, keep the call's own deadline.

    ``abandon_on_cancel=False`` waits for the call to return; on a
    ProcessExecutor its timeout still ends the process when it passes.
    """
    if not pool._can_end_calls or policy.deadline is None:  # pyright: ignore[reportPrivateUsage]
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
    pool: Pool[Job],
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    policy: _OnCancel,
    seen: Callable[[Job], object] | None,
) -> Any:
    import trio

    # A call whose task is cancelled already (its deadline passed) never starts.
    await trio.lowlevel.checkpoint_if_cancelled()
    event = trio.Event()

    def notify() -> None:
        try:
            token.run_sync_soon(event.set)
        except trio.RunFinishedError:
            pass

    job = Job(func, args, kwargs, copy_context_for_thread(), token, pool)
    if seen is not None:
        seen(job)
    job.notify = notify
    submit(pool, job)
    try:
        bound = None
        if pool._max_wait is not None:  # pyright: ignore[reportPrivateUsage]
            bound = _max_wait_at(pool, job, trio.current_time(), policy.deadline)
        if bound is not None:
            # A scope of its own: a cancellation from outside (the timeout's
            # scope, the caller's) is not caught here, and wins.
            with trio.CancelScope(deadline=bound[0]) as scope:
                await event.wait()
            if scope.cancelled_caught:
                refusal = pool._expire(job, bound[1])  # pyright: ignore[reportPrivateUsage]
                if refusal is not None:
                    raise refusal
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
