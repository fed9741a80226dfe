"""Worker capacity: bounded pools of threads that run blocking calls for event loops.

A :class:`WorkerPool` has a *capacity*: the number of calls that may run at once.
A slot is taken when a call starts and given back only when the function really
returns, even if the task that awaited it was cancelled long before (the thread
cannot be killed, so its slot cannot honestly be reused). Calls beyond capacity
wait in FIFO order; they are never refused.

Pools are thread-safe and not bound to any event loop: one pool serves every loop
of the process (the portal loop, an ASGI server's loop, ``anyio.run`` in tests).
"""

from __future__ import annotations

__all__ = (
    "Delegate",
    "Job",
    "WorkerPool",
    "check_cancelled",
    "current_delegate",
    "current_job",
    "run_in_pool",
)

import asyncio
import contextvars
import os
import threading
from collections import deque
from queue import Empty, SimpleQueue
from typing import TYPE_CHECKING, Any, Final

import anyio

from .._exceptions import BridgeClosed, WorkerCancelled, closed_message
from ._loops import loop_running_in_this_thread
from ._outcome import unwrap

if TYPE_CHECKING:
    from collections.abc import Callable

_PENDING: Final = 0
_RUNNING: Final = 1
_FINISHED: Final = 2
_STOP: Final = object()


class Job:
    """One blocking call: the function, its arguments, context and outcome."""

    __slots__ = (
        "args",
        "cancel_requested",
        "ctx",
        "func",
        "kwargs",
        "notify",
        "ok",
        "origin",
        "pid",
        "pool",
        "state",
        "value",
    )

    def __init__(
        self,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        ctx: contextvars.Context,
        origin: object,
        pool: WorkerPool,
    ) -> None:
        self.func = func
        self.args = args
        self.kwargs = kwargs
        self.ctx = ctx
        self.origin = origin  # the asyncio loop or trio token that awaits this job
        self.pool = pool
        self.pid = os.getpid()
        self.state = _PENDING
        self.cancel_requested = False
        self.ok = False
        self.value: Any = None
        self.notify: Callable[[], None] = _noop

    def run(self) -> None:
        """Run the call on this thread, record its outcome, wake the awaiting task."""
        if self.cancel_requested:  # abandoned before it started: skip it
            self.value = WorkerCancelled("cancelled before it started")
        else:
            self.state = _RUNNING
            previous = getattr(_local, "job", None)
            _local.job = self
            try:
                self.value = self.ctx.run(self.func, *self.args, **self.kwargs)
                self.ok = True
            except BaseException as exc:
                self.value = exc
            finally:
                _local.job = previous
        self.args = ()
        self.kwargs = {}
        # state before notify: the awaiting side reads state after swapping notify
        # (see _wait_until_finished), so one of the two always sees the other.
        self.state = _FINISHED
        self.notify()

    def fail(self, exc: BaseException) -> None:
        """Finish a job that never ran, with *exc* as its outcome."""
        self.value = exc
        self.state = _FINISHED
        self.notify()

    def outcome(self) -> Any:
        """Return the result, or raise the exception, of a finished job."""
        try:
            return unwrap((self.ok, self.value))
        finally:
            self.value = None


def _noop() -> None:
    pass


_local = threading.local()


def current_job() -> Job | None:
    """The job this thread is running for an event loop, if any."""
    job: Job | None = getattr(_local, "job", None)
    return job


def check_cancelled() -> None:
    """Raise :class:`WorkerCancelled` if nobody awaits this worker call any more."""
    job: Job | None = getattr(_local, "job", None)
    if job is not None and job.cancel_requested:
        raise WorkerCancelled(
            f"the task awaiting {getattr(job.func, '__qualname__', 'this call')}() "
            "was cancelled or timed out, or its bridge was closed; stop the work "
            "and let this exception propagate"
        )


class _Worker:
    __slots__ = ("inbox",)

    def __init__(self) -> None:
        self.inbox: SimpleQueue[object] = SimpleQueue()


class WorkerPool:
    """A bounded set of worker threads with FIFO admission.

    Args:
        name: Shown in thread names (``syncbridge-<name>-<n>``).
        capacity: Maximum number of calls running at once.
        idle_timeout: Seconds an idle thread waits for work before exiting;
            ``None`` keeps threads until :meth:`close` (the thread-sensitive lane).
    """

    def __init__(
        self, name: str, capacity: int, idle_timeout: float | None = 10.0
    ) -> None:
        if capacity < 1:
            raise ValueError(f"a pool needs a capacity of at least 1, got {capacity}")
        self.name = name
        self.idle_timeout = idle_timeout
        self._capacity = capacity
        self._lock = threading.Lock()
        self._busy = 0
        self._pending: deque[Job] = deque()
        self._idle: list[_Worker] = []
        self._threads: set[threading.Thread] = set()
        self._running: set[Job] = set()
        self._spawned = 0
        self._closed = False

    @property
    def capacity(self) -> int:
        """Maximum number of calls running at once; may be changed at any time."""
        return self._capacity

    @capacity.setter
    def capacity(self, value: int) -> None:
        if value < 1:
            raise ValueError(f"a pool needs a capacity of at least 1, got {value}")
        starts: list[tuple[Job, _Worker | None]] = []
        with self._lock:
            self._capacity = value
            while self._pending and self._busy < self._capacity:
                starts.append(self._admit(self._pending.popleft()))
        for job, worker in starts:
            self._hand_over(job, worker)

    @property
    def busy(self) -> int:
        """How many slots are taken (calls running, awaited or not any more)."""
        return self._busy

    @property
    def waiting(self) -> int:
        """Calls waiting for a slot."""
        return len(self._pending)

    @property
    def threads(self) -> int:
        """Worker threads alive (busy or idle)."""
        return len(self._threads)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def _submit(self, job: Job) -> None:
        """Start *job* now if a slot is free, else queue it. Raises BridgeClosed."""
        with self._lock:
            if self._closed:
                raise BridgeClosed(closed_message("run_blocking()"))
            if self._busy >= self._capacity:
                self._pending.append(job)
                return
            job, worker = self._admit(job)
        self._hand_over(job, worker)

    def _try_submit(self, job: Job) -> bool:
        """Start *job* if a slot is free right now; never queue it."""
        with self._lock:
            if self._closed or self._busy >= self._capacity:
                return False
            job, worker = self._admit(job)
        self._hand_over(job, worker)
        return True

    def _withdraw(self, job: Job) -> bool:
        """Remove *job* from the queue if it has not started; True if removed."""
        with self._lock:
            try:
                self._pending.remove(job)
            except ValueError:
                return False
            return True

    def _admit(self, job: Job) -> tuple[Job, _Worker | None]:
        # Called with the lock held.
        self._busy += 1
        self._running.add(job)
        return job, (self._idle.pop() if self._idle else None)

    def _hand_over(self, job: Job, worker: _Worker | None) -> None:
        if worker is not None:
            worker.inbox.put(job)
            return
        self._spawned += 1
        worker = _Worker()
        thread = threading.Thread(
            target=self._work,
            args=(worker, job),
            name=f"syncbridge-{self.name}-{self._spawned}",
            daemon=True,
        )
        with self._lock:
            self._threads.add(thread)
        thread.start()

    def _next(self, worker: _Worker, done: Job) -> Job | None:
        with self._lock:
            self._running.discard(done)
            if self._pending and not self._closed:
                job = self._pending.popleft()
                self._running.add(job)
                return job
            self._busy -= 1
            if not self._closed:
                self._idle.append(worker)
            return None

    def _work(self, worker: _Worker, job: Job | None) -> None:
        me = threading.current_thread()
        try:
            while True:
                if job is None:
                    if self._closed:
                        return
                    try:
                        item = worker.inbox.get(timeout=self.idle_timeout)
                    except Empty:
                        with self._lock:
                            if worker in self._idle:
                                self._idle.remove(worker)
                                return
                        item = worker.inbox.get()  # handed a job as we timed out
                    if not isinstance(item, Job):  # _STOP
                        return
                    job = item
                job.run()
                job = self._next(worker, job)
        finally:
            with self._lock:
                self._threads.discard(me)

    def close(self) -> list[threading.Thread]:
        """Refuse new jobs, fail queued ones, flag running ones as cancelled.

        Returns the threads still alive, for the caller to join.
        """
        with self._lock:
            if self._closed:
                return list(self._threads)
            self._closed = True
            pending = list(self._pending)
            self._pending.clear()
            idle = list(self._idle)
            self._idle.clear()
            for job in self._running:
                job.cancel_requested = True
            threads = list(self._threads)
        for worker in idle:
            worker.inbox.put(_STOP)
        for job in pending:
            job.fail(BridgeClosed(closed_message("run_blocking()")))
        return threads

    def _reset_after_fork(self) -> None:
        """Forget the parent's threads and jobs (they do not exist in this child)."""
        self._lock = threading.Lock()
        self._busy = 0
        self._pending = deque()
        self._idle = []
        self._threads = set()
        self._running = set()


class Delegate:
    """A worker thread blocked in ``sync_call_async``, offering to run nested jobs.

    While a worker thread waits for the coroutine it called, the coroutine (and
    tasks it starts) may need blocking work from the same pool. The waiting thread
    already holds a slot of that pool, so it runs that work itself when the pool
    is full: nesting can never need more slots than it holds (rule 1 of the
    threading model). Jobs arrive on the waiting thread's mailbox.
    """

    __slots__ = ("_active", "_lock", "mailbox", "pool")

    def __init__(self, pool: WorkerPool, mailbox: SimpleQueue[object]) -> None:
        self.pool = pool
        self.mailbox = mailbox
        self._lock = threading.Lock()
        self._active = True

    def offer(self, job: Job) -> bool:
        """Queue *job* for the waiting thread; False once it has stopped waiting."""
        with self._lock:
            if not self._active:
                return False
            self.mailbox.put(job)
            return True

    def retire(self) -> None:
        """Stop taking jobs; hand any that came too late back to the pool."""
        with self._lock:
            self._active = False
        while True:
            try:
                item = self.mailbox.get_nowait()
            except Empty:
                return
            if isinstance(item, Job):
                try:
                    self.pool._submit(item)
                except BridgeClosed as exc:
                    item.fail(exc)


current_delegate: contextvars.ContextVar[Delegate | None] = contextvars.ContextVar(
    "syncbridge_delegate", default=None
)


def _submit(pool: WorkerPool, job: Job) -> None:
    delegate = current_delegate.get()
    if (
        delegate is not None
        and delegate.pool is pool
        and (pool._try_submit(job) or delegate.offer(job))
    ):
        return
    pool._submit(job)


async def run_in_pool(
    pool: WorkerPool,
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    abandon_on_cancel: bool,
) -> Any:
    """Run ``func(*args, **kwargs)`` in *pool* and await its outcome.

    Runs on:
        The calling task's event loop (asyncio or trio); *func* on a worker.
    Cancellation:
        A call still queued is withdrawn at once. A running call is
        flagged (see :func:`check_cancelled`) and then abandoned or waited for, as
        *abandon_on_cancel* says; either way its slot stays taken until it returns.
    """
    ctx = contextvars.copy_context()
    native = loop_running_in_this_thread()
    if isinstance(native, asyncio.AbstractEventLoop):
        return await _await_asyncio(
            native, pool, func, args, kwargs, ctx, abandon_on_cancel
        )
    if native is None:
        raise RuntimeError(
            "run_blocking() must be awaited in a task of a running asyncio or trio "
            "event loop; from synchronous code, call the function directly"
        )
    return await _await_trio(native, pool, func, args, kwargs, ctx, abandon_on_cancel)


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
    pool: WorkerPool,
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    ctx: contextvars.Context,
    abandon_on_cancel: bool,
) -> Any:
    fut: asyncio.Future[None] = loop.create_future()
    job = Job(func, args, kwargs, ctx, loop, pool)
    job.notify = _asyncio_notifier(loop, fut)
    _submit(pool, job)
    try:
        await fut
    except asyncio.CancelledError:
        if _abandon_or_wait(pool, job, abandon_on_cancel):
            raise
        with anyio.CancelScope(shield=True):
            while job.state != _FINISHED:
                fut = loop.create_future()
                job.notify = _asyncio_notifier(loop, fut)
                if job.state == _FINISHED:
                    break
                try:
                    await fut
                except asyncio.CancelledError:
                    continue
        raise
    return job.outcome()


def _abandon_or_wait(pool: WorkerPool, job: Job, abandon_on_cancel: bool) -> bool:
    """Handle the cancellation of an await; True means re-raise at once."""
    job.cancel_requested = True
    if pool._withdraw(job):
        return True
    return abandon_on_cancel or job.state == _FINISHED


async def _await_trio(
    token: Any,
    pool: WorkerPool,
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    ctx: contextvars.Context,
    abandon_on_cancel: bool,
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
    _submit(pool, job)
    try:
        await event.wait()
    except trio.Cancelled:
        if _abandon_or_wait(pool, job, abandon_on_cancel):
            raise
        with trio.CancelScope(shield=True):
            await event.wait()
        raise
    return job.outcome()
