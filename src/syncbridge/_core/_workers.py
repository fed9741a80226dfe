"""Worker capacity: bounded pools of threads that run blocking calls for event loops.

A :class:`WorkerPool` has a *capacity*: the number of calls that may run at once.
A slot is taken when a call starts and given back only when the function really
returns, even if the task that awaited it was cancelled long before (the thread
cannot be killed, so its slot cannot honestly be reused). Calls beyond capacity
wait in FIFO order; they are refused only by the pool's own bounds
(:attr:`WorkerPool.max_waiting` when queued, :attr:`WorkerPool.max_wait`,
which their awaiter enforces through ``_expire``). Every path takes a slot in
:meth:`WorkerPool._take_slot` and gives it back in :meth:`WorkerPool._give_slot`;
a worker whose call returns passes its slot to the oldest queued call instead.

Whether a call with a slot free starts at once or waits for a running worker,
and when the lookout thread wakes one for it, is the :class:`WakePolicy`'s to
say (``_wake_policy``); the pool consults it under its lock.

Pools are thread-safe and not bound to any event loop: one pool serves every loop
of the process (the portal loop, an ASGI server's loop, ``anyio.run`` in tests).
This module is admission and thread lifecycle only; awaiting a job is
``_await_job``, lending a blocked worker's slot to nested work is ``_delegate``.
"""

from __future__ import annotations

__all__ = ("Saturated", "WorkerPool")

import threading
from bisect import bisect_left
from collections import deque
from queue import Empty, SimpleQueue
from time import monotonic
from typing import Final

from .._exceptions import BridgeClosed, PoolSaturated, callable_name, closed_message
from .._stats import WAIT_BOUNDS, PoolStats, cumulative
from .._validate import (
    check_capacity,
    check_max_wait,
    check_max_waiting,
    check_name,
    check_seconds,
)
from ._context import new_thread
from ._counts import Counts
from ._handoff import CancelReason
from ._jobs import Job
from ._process import PROCESS
from ._wake_policy import Runner, WakePolicy

_STOP: Final = object()


class Saturated(Exception):
    """A pool refused a job (``max_waiting``/``max_wait``); it never ran.

    Internal: the pool's state when it refused, which the awaiter
    (``_await_job``) turns into the user's :class:`~syncbridge.PoolSaturated`,
    naming the user's call, which the pool does not know.
    """

    def __init__(
        self,
        pool: str,
        capacity: int,
        busy: int,
        waiting: int,
        option: str,
        limit: float,
    ) -> None:
        super().__init__(pool, option)
        self.fields = {
            "pool": pool,
            "capacity": capacity,
            "busy": busy,
            "waiting": waiting,
            "option": option,
            "limit": limit,
        }

    def error(self, what: str) -> PoolSaturated:
        """The user's error for their call *what* (``"run_blocking(fetch)"``)."""
        return PoolSaturated(what, **self.fields)  # type: ignore[arg-type]


class _Worker(Runner):
    __slots__ = ("inbox",)

    def __init__(self) -> None:
        self.inbox: SimpleQueue[object] = SimpleQueue()
        self.since = 0.0  # when it was handed its current call (under the pool lock)


class WorkerPool:
    """A bounded set of worker threads with FIFO admission.

    Args:
        name: Shown in thread names (``syncbridge-<name>-<n>``).
        capacity: Maximum number of calls running at once.
        idle_timeout: Seconds an idle thread waits for work before exiting;
            ``None`` keeps threads until :meth:`close` (the thread-sensitive lane).
        label: How error messages name :attr:`capacity`, the way users reach
            it (``"bridge.pool('db').capacity"``).
        max_waiting: Calls queued at most (see :attr:`max_waiting`).
        max_wait: Seconds a call may wait for a slot (see :attr:`max_wait`).
        title: The pool's name in :class:`~syncbridge.PoolSaturated` (the
            user's, ``"db"``); *name* by default.
    """

    def __init__(
        self,
        name: str,
        capacity: int,
        idle_timeout: float | None = 10.0,
        *,
        label: str | None = None,
        max_waiting: int | None = None,
        max_wait: float | None = None,
        title: str | None = None,
    ) -> None:
        self.label: str = (
            label if label is not None else f"WorkerPool({name!r}).capacity"
        )
        check_name(self.label, "WorkerPool(label=...)")
        capacity = check_capacity(capacity, self.label)
        self.name: str = check_name(name, "WorkerPool(name=...)")
        self.title: str = (
            name if title is None else check_name(title, "WorkerPool(title=...)")
        )
        self._max_waiting = check_max_waiting(
            max_waiting, self._bound_label("max_waiting")
        )
        self._max_wait = check_max_wait(max_wait, self._bound_label("max_wait"))
        self.idle_timeout: float | None = check_seconds(
            idle_timeout, "WorkerPool(idle_timeout=...)", none="threads never idle out"
        )
        # These and those of _fresh_state are guarded by _lock.
        self._capacity = capacity
        self._spawned = 0
        self._closed = False
        self._policy = WakePolicy()  # when a call waits for a running worker
        self._fresh_state()

    def _fresh_state(self) -> None:
        """The state of this process's calls: set here, and anew in a forked child."""
        self._lock = threading.Lock()
        self._busy = 0
        self._pending: deque[tuple[float, Job]] = deque()  # (when queued, job)
        self._idle: list[_Worker] = []
        self._threads: set[threading.Thread] = set()
        self._running: dict[Job, float] = {}  # each call with a slot: when it took it
        # Totals since the pool was made: seconds calls spent queued (counted
        # as each leaves the queue: it starts, or is withdrawn or refused), the
        # same per bucket of WAIT_BOUNDS (not cumulative), and slot-seconds of
        # the slots given back. Under _lock, like the queue and slots they
        # count: no lock of their own on this path, and no reliance on the GIL.
        self._wait_total = 0.0
        self._wait_counts = [0] * len(WAIT_BOUNDS)
        self._busy_total = 0.0
        self._busy_shown = 0.0  # the most stats() showed (see there)
        # The lookout thread: it wakes workers for queued calls, as the policy says.
        self._lookout: threading.Thread | None = None
        self._lookout_waiting = False  # in a wait that only a notify ends early
        self._wake = threading.Condition(self._lock)
        self.counts: Counts = Counts()
        """Calls and how they ended, as their awaiters saw it (see PoolStats)."""

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
        with self._lock:
            self._capacity = value
        self._admit_waiting()

    @property
    def max_waiting(self) -> int | None:
        """How many calls may queue; one more is refused with PoolSaturated at once.

        ``None`` (the default): no bound. ``0``: a call never queues; it is
        refused when no slot is free. Nested calls that borrow an ancestor's
        slot are never refused. May be changed at any time (lowering it
        refuses no call already queued).
        """
        return self._max_waiting

    @max_waiting.setter
    def max_waiting(self, value: int | None) -> None:
        value = check_max_waiting(value, self._bound_label("max_waiting"))
        with self._lock:
            self._max_waiting = value

    @property
    def max_wait(self) -> float | None:
        """Seconds a call may wait for a slot; then it is refused with PoolSaturated.

        ``None`` (the default): no bound. A call that started is no longer
        subject to it. May be changed at any time (calls queued already keep
        the bound they were queued with).
        """
        return self._max_wait

    @max_wait.setter
    def max_wait(self, value: float | None) -> None:
        value = check_max_wait(value, self._bound_label("max_wait"))
        with self._lock:
            self._max_wait = value

    def _bound_label(self, option: str) -> str:
        """How errors name *option*: next to :attr:`label`'s ``capacity``."""
        return f"{self.label.removesuffix('.capacity')}.{option}"

    def _configure(
        self, capacity: int, max_waiting: int | None, max_wait: float | None
    ) -> None:
        """Set the capacity and both bounds together (checked by the caller)."""
        with self._lock:
            self._capacity = capacity
            self._max_waiting = max_waiting
            self._max_wait = max_wait
        self._admit_waiting()

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

    def _submit(self, job: Job, bounded: bool = True) -> None:
        """Start *job* now if a slot is free, else queue it. Raises BridgeClosed.

        A call is also queued, with a slot free, for a worker about to return
        (see ``_wake_policy``); the lookout wakes another if it waits. A call
        that would queue behind :attr:`max_waiting` others raises
        :class:`Saturated` instead, unless not *bounded* (a nested call that
        its ancestor's slot may run, see ``_delegate``).
        """
        new, lookout = None, None
        # acquire()/release(), not `with`: half the cost, on every call.
        self._lock.acquire()
        try:
            if self._closed:  # close() ran since the facade's check: name the call
                raise BridgeClosed(closed_message(f"{callable_name(job.func)}()"))
            now = monotonic()
            # max_waiting is read and compared under the lock with the queue's
            # length: no two calls can both see room for one.
            if self._busy >= self._capacity:
                limit = self._max_waiting
                if limit is not None and bounded and len(self._pending) >= limit:
                    raise self._saturated("max_waiting", limit)
                self._pending.append((now, job))  # a worker that returns takes it
                return
            if not self._policy.defers(now, len(self._pending)) or (
                # A slot is free: a full queue takes it rather than refuse.
                (limit := self._max_waiting) is not None
                and bounded
                and len(self._pending) >= limit
            ):
                new = self._take_slot(job, now)
            else:
                self._pending.append((now, job))
                if self._lookout is not None and not self._lookout_waiting:
                    return  # it is looking: the call needs no notify
                lookout = self._watch(now)
                if lookout is None:
                    return
        finally:
            self._lock.release()
        if new is not None:
            self._start(job, new)
        if lookout is not None:
            self._start_lookout(lookout)

    def _watch(self, now: float) -> threading.Thread | None:
        """Have the lookout watch the queue; a new lookout to start, if none runs.

        Called with the lock held; the caller starts the thread after releasing it.
        """
        if self._lookout is not None:
            if self._lookout_waiting:
                # Once: until it runs, the calls after this one need no notify
                # (Condition.notify is Python code, costly on this path).
                self._lookout_waiting = False
                self._wake.notify()
            return None
        self._lookout = new_thread(
            target=self._look, name=f"syncbridge-{self.name}-lookout", daemon=True
        )
        self._policy.episode(now)
        return self._lookout

    def _try_submit(self, job: Job) -> bool:
        """Start *job* if a slot is free right now; never queue it."""
        with self._lock:
            if self._closed or self._busy >= self._capacity:
                return False
            new = self._take_slot(job, monotonic())
        if new is not None:
            self._start(job, new)
        return True

    def _withdraw(self, job: Job) -> bool:
        """Remove *job* from the queue if it has not started; True if removed."""
        with self._lock:
            return self._unqueue(job)

    def _unqueue(self, job: Job) -> bool:
        """Remove *job* from the queue if it is there, counting its wait. Lock held."""
        for i, (when, queued) in enumerate(self._pending):
            if queued is job:
                del self._pending[i]
                self._waited(monotonic() - when)
                return True
        return False

    def _expire(self, job: Job, max_wait: float) -> Saturated | None:
        """*job* waited *max_wait* s: withdraw it and return the refusal.

        None if it is no longer queued (it started: ``max_wait`` no longer
        applies). Called by its awaiter when the bound passes.

        A call may wait with a slot free, for a worker about to return (see
        ``_wake_policy``), whose lookout may be late on a loaded machine: the
        pool is not saturated then. The queued calls the free slots allow
        start first, oldest first; only a call still queued is refused.
        """
        self._admit_waiting()
        with self._lock:
            if not self._unqueue(job):
                return None
            return self._saturated("max_wait", max_wait)

    def _saturated(self, option: str, limit: float) -> Saturated:
        """The refusal by *option*, with the pool's state now. Lock held."""
        return Saturated(
            self.title, self._capacity, self._busy, len(self._pending), option, limit
        )

    def _waited(self, seconds: float) -> None:
        """Count a call that left the queue without a slot of ours. Lock held."""
        self._wait_total += seconds
        self._wait_counts[bisect_left(WAIT_BOUNDS, seconds)] += 1

    @property
    def _returns_withdrawn(self) -> bool:
        """True: :meth:`_withdraw` hands the job back unrun (see ``_pool.Pool``)."""
        return True

    @property
    def _sees_starts(self) -> bool:
        """True: its jobs run here, and record when they start."""
        return True

    @property
    def _can_end_calls(self) -> bool:
        """False: a running call runs to its end on its thread."""
        return False

    def _end(self, job: Job) -> bool:
        """A worker thread cannot be stopped: always False."""
        del job
        return False

    def _take_slot(self, job: Job, now: float, waited: float = 0.0) -> _Worker | None:
        """The one place a slot is taken: for *job*, at *now*. Lock held.

        *waited*: seconds *job* was queued (0.0: it never was). An idle worker
        is handed *job* at once; else a new worker is returned, whose thread
        the caller starts (:meth:`_start`) once the lock is released.
        """
        self._busy += 1
        self._running[job] = now
        if waited:
            self._wait_total += waited
            self._wait_counts[bisect_left(WAIT_BOUNDS, waited)] += 1
        else:  # most calls start at once: no search, no float to add
            self._wait_counts[0] += 1
        if self._idle:
            worker = self._idle.pop()
            worker.inbox.put(job)  # never blocks; the worker needs no lock to run it
            self._policy.handed(worker, now)
            return None
        new = _Worker()
        self._policy.handed(new, now)
        return new

    def _give_slot(self, job: Job, idle: _Worker | None, now: float) -> None:
        """The one place a slot is given back: *job* is done with it at *now*. Lock held.

        *idle*: the worker that ran *job*, idle now (None: *job* never ran, as
        its thread did not start, #11). A worker whose call returns while a
        job is queued passes the slot on instead (:meth:`_work`).
        """
        self._busy_total += now - self._running.pop(job)
        self._busy -= 1
        if idle is not None and not self._closed:
            self._idle.append(idle)

    def _start(self, job: Job, worker: _Worker) -> None:
        """Start *worker*'s thread for *job*; if it fails, admit the next queued one."""
        if not self._spawn(job, worker):
            self._admit_next()

    def _spawn(self, job: Job, worker: _Worker) -> bool:
        """Start a thread for *worker* to run *job*; False if it could not start."""
        with self._lock:
            self._spawned += 1
            thread = new_thread(
                target=self._work,
                # In a box the thread empties: Thread keeps its args until the
                # thread ends, and with them the job's context and function.
                args=(worker, [job]),
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
                self._policy.dropped(worker)
                self._give_slot(job, None, monotonic())
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
                queued, job = self._pending.popleft()
                now = monotonic()
                new = self._take_slot(job, now, now - queued)
            if new is None or self._spawn(job, new):
                return

    def _admit_waiting(self) -> None:
        """Start every queued job a free slot allows, at once."""
        starts: list[tuple[Job, _Worker]] = []
        with self._lock:
            now = monotonic()
            while self._pending and not self._closed and self._busy < self._capacity:
                queued, job = self._pending.popleft()
                new = self._take_slot(job, now, now - queued)
                if new is not None:
                    starts.append((job, new))
        started = [self._spawn(job, new) for job, new in starts]
        if not all(started):
            self._admit_next()

    # -- the lookout ---------------------------------------------------------

    def _start_lookout(self, thread: threading.Thread) -> None:
        try:
            thread.start()
        except BaseException as exc:
            # No lookout: nothing may wait for a running worker any more.
            with self._lock:
                if self._lookout is thread:
                    self._lookout = None
            self._admit_waiting()
            if not isinstance(exc, Exception):
                raise

    def _look(self) -> None:
        """The lookout's thread: wake workers for calls that waited too long."""
        while True:
            with self._lock:
                starts = self._due()
            if starts is None:
                return
            for job, new in starts:
                self._start(job, new)

    def _due(self) -> list[tuple[Job, _Worker]] | None:
        """Wait until queued calls are due a worker; admit them. None: stop.

        Called by the lookout with the lock held (each wait releases it). When
        it looks and how many it wakes are the policy's to say. Returns the new
        workers to start, with their jobs.
        """
        me = threading.current_thread()
        policy = self._policy
        while not self._closed and self._lookout is me:
            if not self._pending or self._busy >= self._capacity:
                # Nothing waits with a slot free.
                if policy.lingers(bool(self._pending)):
                    self._wake.wait(policy.handoff)
                else:
                    self._lookout_waiting = True
                    try:
                        woken = self._wake.wait(self.idle_timeout)
                    finally:
                        self._lookout_waiting = False
                    if not woken and not self._pending and self._lookout is me:
                        self._lookout = None  # idle for idle_timeout: exit
                policy.episode(monotonic())
                continue
            now = monotonic()
            due = policy.next_look(self._pending)
            if now < due:
                self._wake.wait(due - now)
                continue
            wanted = policy.look_at(now, self._pending)
            if wanted:
                starts: list[tuple[Job, _Worker]] = []
                while wanted and self._busy < self._capacity:
                    wanted -= 1
                    queued, job = self._pending.popleft()
                    new = self._take_slot(job, now, now - queued)
                    if new is not None:
                        starts.append((job, new))
                return starts
        return None

    def _work(self, worker: _Worker, first: list[Job]) -> None:
        me = threading.current_thread()
        job: Job | None = first.pop()
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
                    del item  # an idle worker keeps nothing of its last call
                # The function alone is timed (from job.started_at): waking the
                # awaiter may wait for the GIL, which says nothing about how
                # long calls take.
                job.call()
                end = monotonic()
                if job.pid != PROCESS.pid:
                    # Forked during the job: this pool was reset in the child and
                    # never counted it. The thread leaves the pool (#11).
                    job.hand_back()
                    return
                # The slot first, then the wake-up: an awaiter that has its
                # result must find the slot free (without the GIL it could
                # run, and read stats(), before this thread took the lock).
                done, took = job, end - (job.started_at or end)  # 0.0: skipped
                self._lock.acquire()  # not `with`: see submit
                try:
                    # busy still counts *done*: its slot passes to the oldest
                    # queued job, which this worker runs next, while that keeps
                    # within capacity (it may have been lowered).
                    if (
                        self._pending
                        and not self._closed
                        and self._busy <= self._capacity
                    ):
                        queued, job = self._pending.popleft()
                        # The slot passes on: given back and taken at *end*
                        # (_give_slot's and _take_slot's counting, inline). A
                        # job queued after *end* was read waited no time: a
                        # total must never go down.
                        waited = max(0.0, end - queued)
                        self._busy_total += end - self._running.pop(done)
                        self._running[job] = end
                        self._wait_total += waited
                        self._wait_counts[bisect_left(WAIT_BOUNDS, waited)] += 1
                        self._policy.returned(worker, took, end, True)
                    else:
                        job = None
                        self._policy.returned(worker, took, end, False)
                        self._give_slot(done, worker, end)
                finally:
                    self._lock.release()
                done.hand_back()
                del done  # an idle worker keeps nothing of its last call
        finally:
            with self._lock:
                self._threads.discard(me)

    def stats(self) -> PoolStats:
        """A snapshot of this pool: capacity, occupancy and outcome totals."""
        counts = self.counts.snapshot()
        with self._lock:
            now = monotonic()
            busy_seconds = self._busy_total
            for since in self._running.values():
                busy_seconds += now - since
            # A worker gives its slot back at a time read before it took the
            # lock: a snapshot in between counted the call a little longer.
            # Never show less than before, so that rate() never dips.
            busy_seconds = self._busy_shown = max(busy_seconds, self._busy_shown)
            return PoolStats(
                capacity=self._capacity,
                busy=self._busy,
                waiting=len(self._pending),
                threads=len(self._threads),
                calls=counts.calls,
                completed=counts.completed,
                errors=counts.errors,
                cancellations=counts.cancellations,
                timeouts=counts.timeouts,
                abandoned=self._abandoned_running() if self._running else 0,
                rejected=counts.rejected,
                wait_seconds=self._wait_total,
                busy_seconds=busy_seconds,
                wait_buckets=cumulative(self._wait_counts),
            )

    def _abandoned_running(self) -> int:
        # Called with the lock held.
        return sum(1 for job in self._running if job.abandoned)

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
            pending = [job for _, job in self._pending]
            now = monotonic()
            for when, _ in self._pending:
                self._waited(now - when)  # refused: they leave the queue now
            self._pending.clear()
            idle = list(self._idle)
            self._idle.clear()
            running = list(self._running)
            threads = list(self._threads)
            lookout, self._lookout = self._lookout, None
            if lookout is not None and lookout.ident is not None:
                threads.append(lookout)  # it exits at once, when notified
            self._wake.notify_all()
        for job in running:
            job.request_cancel(CancelReason.CLOSED)
        for worker in idle:
            worker.inbox.put(_STOP)
        for job in pending:
            job.fail(
                BridgeClosed(
                    f"the bridge was closed while {callable_name(job.func)}() was "
                    "still waiting for a worker; it never ran"
                )
            )
        return threads

    def _reset_after_fork(self) -> None:
        """Forget the parent's threads, jobs and totals (the child counts anew)."""
        self._policy._reset_after_fork()  # pyright: ignore[reportPrivateUsage]
        self._fresh_state()
