"""Worker capacity: bounded pools of threads that run blocking calls for event loops.

A :class:`WorkerPool` has a *capacity*: the number of calls that may run at once.
A slot is taken when a call starts and given back only when the function really
returns, even if the task that awaited it was cancelled long before (the thread
cannot be killed, so its slot cannot honestly be reused). Calls beyond capacity
wait in FIFO order; they are never refused.

Pools are thread-safe and not bound to any event loop: one pool serves every loop
of the process (the portal loop, an ASGI server's loop, ``anyio.run`` in tests).
This module is admission and thread lifecycle only; awaiting a job is
``_await_job``, lending a blocked worker's slot to nested work is ``_delegate``.
"""

from __future__ import annotations

__all__ = ("WorkerPool",)

import os
import threading
from collections import deque
from queue import Empty, SimpleQueue
from typing import Final

from .._exceptions import BridgeClosed, callable_name, closed_message
from .._stats import PoolStats
from .._validate import check_capacity, check_name, check_seconds
from ._jobs import CancelReason, Ending, Job

_STOP: Final = object()


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
        label: How error messages name :attr:`capacity`, the way users reach
            it (``"bridge.pool('db').capacity"``).
    """

    def __init__(
        self,
        name: str,
        capacity: int,
        idle_timeout: float | None = 10.0,
        *,
        label: str | None = None,
    ) -> None:
        self.label: str = (
            label if label is not None else f"WorkerPool({name!r}).capacity"
        )
        check_name(self.label, "WorkerPool(label=...)")
        capacity = check_capacity(capacity, self.label)
        self.name: str = check_name(name, "WorkerPool(name=...)")
        self.idle_timeout: float | None = check_seconds(
            idle_timeout, "WorkerPool(idle_timeout=...)", none="threads never idle out"
        )
        # Everything below is guarded by _lock.
        self._lock = threading.Lock()
        self._capacity = capacity
        self._busy = 0
        self._pending: deque[Job] = deque()
        self._idle: list[_Worker] = []
        self._threads: set[threading.Thread] = set()
        self._running: set[Job] = set()
        self._spawned = 0
        self._closed = False
        # Outcomes as the awaiters saw them (see PoolStats), also under _lock.
        self._calls = 0
        self._completed = 0
        self._errors = 0
        self._cancellations = 0
        self._timeouts = 0

    @property
    def capacity(self) -> int:
        """Maximum number of calls running at once; may be changed at any time.

        Lowering it never stops a running call: the pool admits no queued call
        until fewer than the new capacity run.
        """
        return self._capacity

    @capacity.setter
    def capacity(self, value: int) -> None:
        value = check_capacity(value, self.label)
        starts: list[tuple[Job, _Worker | None]] = []
        with self._lock:
            self._capacity = value
            while self._pending and self._busy < self._capacity:
                starts.append(self._admit(self._pending.popleft()))
        started = [self._hand_over(job, worker) for job, worker in starts]
        if not all(started):
            self._admit_next()

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
        if not self._hand_over(job, worker):
            self._admit_next()

    def _try_submit(self, job: Job) -> bool:
        """Start *job* if a slot is free right now; never queue it."""
        with self._lock:
            if self._closed or self._busy >= self._capacity:
                return False
            job, worker = self._admit(job)
        if not self._hand_over(job, worker):
            self._admit_next()
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

    def _hand_over(self, job: Job, worker: _Worker | None) -> bool:
        """Give *job* to *worker*, or to a new thread; False if none could start."""
        if worker is not None:
            worker.inbox.put(job)
            return True
        worker = _Worker()
        with self._lock:
            self._spawned += 1
            thread = threading.Thread(
                target=self._work,
                args=(worker, job),
                name=f"syncbridge-{self.name}-{self._spawned}",
                daemon=True,
            )
            self._threads.add(thread)
        try:
            thread.start()
            return True
        except BaseException as exc:
            # No thread, so no slot taken (#11): a leaked slot would make the
            # next call wait forever. The caller gets the error instead.
            with self._lock:
                self._threads.discard(thread)
                self._running.discard(job)
                self._busy -= 1
            job.fail(exc)
            return False

    def _admit_next(self) -> None:
        """Start queued jobs in the slots that failed starts gave back.

        A loop, not recursion, however long the queue: each failed start fails
        its own job, and the first start that succeeds ends it.
        """
        while True:
            with self._lock:
                if not self._pending or self._closed or self._busy >= self._capacity:
                    return
                job, worker = self._admit(self._pending.popleft())
            if self._hand_over(job, worker):
                return

    def _next(self, worker: _Worker, done: Job) -> Job | None:
        with self._lock:
            self._running.discard(done)
            # busy still counts *done*: keep the slot for a queued job only
            # while that stays within capacity (it may have been lowered).
            if self._pending and not self._closed and self._busy <= self._capacity:
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
                if job.pid != os.getpid():
                    # Forked during the job: this pool was reset in the child and
                    # never counted it. The thread leaves the pool (#11).
                    return
                job = self._next(worker, job)
        finally:
            with self._lock:
                self._threads.discard(me)

    def stats(self) -> PoolStats:
        """A snapshot of this pool: capacity, occupancy and outcome totals."""
        with self._lock:
            return PoolStats(
                capacity=self._capacity,
                busy=self._busy,
                waiting=len(self._pending),
                threads=len(self._threads),
                calls=self._calls,
                completed=self._completed,
                errors=self._errors,
                cancellations=self._cancellations,
                timeouts=self._timeouts,
                abandoned=self._abandoned_running() if self._running else 0,
            )

    def _abandoned_running(self) -> int:
        # Called with the lock held.
        return sum(1 for job in self._running if job.abandoned)

    def _count_call(self) -> None:
        with self._lock:
            self._calls += 1

    def _count_outcome(self, outcome: Ending) -> None:
        """Count how a call ended for its awaiter (after :meth:`_count_call`)."""
        with self._lock:
            if outcome is Ending.COMPLETED:
                self._completed += 1
            elif outcome is Ending.ERROR:
                self._errors += 1
            elif outcome is Ending.CANCELLED:
                self._cancellations += 1
            else:
                self._timeouts += 1

    def running_functions(self) -> list[str]:
        """Names of the functions running in this pool right now."""
        with self._lock:
            jobs = list(self._running)
        return [callable_name(j.func) for j in jobs]

    def close(self) -> list[threading.Thread]:
        """Refuse new jobs, fail queued ones, flag running ones as cancelled.

        Running jobs are flagged (:func:`check_cancelled` raises in them) and the
        async calls they are blocked on are cancelled. Returns the threads still
        alive, for the caller to join.
        """
        with self._lock:
            if self._closed:
                return list(self._threads)
            self._closed = True
            pending = list(self._pending)
            self._pending.clear()
            idle = list(self._idle)
            self._idle.clear()
            running = list(self._running)
            threads = list(self._threads)
        for job in running:
            job.request_cancel(CancelReason.CLOSED)
        for worker in idle:
            worker.inbox.put(_STOP)
        for job in pending:
            job.fail(BridgeClosed(closed_message("run_blocking()")))
        return threads

    def _reset_after_fork(self) -> None:
        """Forget the parent's threads, jobs and totals (the child counts anew)."""
        self._lock = threading.Lock()
        self._calls = self._completed = self._errors = 0
        self._cancellations = self._timeouts = 0
        self._busy = 0
        self._pending = deque()
        self._idle = []
        self._threads = set()
        self._running = set()
