"""Worker capacity: bounded pools of threads that run blocking calls for event loops.

A :class:`WorkerPool` has a *capacity*: the number of calls that may run at once.
A slot is taken when a call starts and given back only when the function really
returns, even if the task that awaited it was cancelled long before (the thread
cannot be killed, so its slot cannot honestly be reused). Calls beyond capacity
wait in FIFO order; they are never refused.

Workers are woken by need: see ``_wake_policy``.

Pools are thread-safe and not bound to any event loop: one pool serves every loop
of the process (the portal loop, an ASGI server's loop, ``anyio.run`` in tests).
This module is admission and thread lifecycle only; awaiting a job is
``_await_job``, lending a blocked worker's slot to nested work is ``_delegate``.
"""

from __future__ import annotations

__all__ = ("WorkerPool",)

import threading
from collections import deque
from itertools import islice
from queue import Empty, SimpleQueue
from time import monotonic
from typing import Final

from .._exceptions import BridgeClosed, callable_name, closed_message
from .._stats import PoolStats
from .._validate import check_capacity, check_name, check_seconds
from ._context import new_thread
from ._counts import Counts
from ._jobs import CancelReason, Job
from ._process import PROCESS
from ._wake_policy import (
    _FREE_THREADED,
    _LINGER,
    _LONG_SHARE,
    _LONG_WEIGHT,
    _PACE_CAP,
    _SCAN,
    _WORKER_CORES,
    HANDOFF,
)

_STOP: Final = object()


class _Worker:
    __slots__ = ("inbox", "since")

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
        # These and those of _fresh_state are guarded by _lock.
        self._capacity = capacity
        self._spawned = 0
        self._closed = False
        self._handoff = HANDOFF  # tests stretch it to see one step at a time
        self._fresh_state()

    def _fresh_state(self) -> None:
        """The state of this process's calls: set here, and anew in a forked child."""
        self._lock = threading.Lock()
        self._busy = 0
        self._pending: deque[tuple[float, Job]] = deque()  # (when queued, job)
        self._idle: list[_Worker] = []
        self._active: set[_Worker] = set()  # workers running a call of this pool
        self._last_handed: _Worker | None = None  # the worker handed a call last
        self._threads: set[threading.Thread] = set()
        self._running: set[Job] = set()
        # Waking by need (see the module docstring).
        self._long = 1.0  # moving share of calls that took HANDOFF or longer
        self._pace = HANDOFF  # moving mean of how long calls take (capped)
        self._returned = 0.0  # when a call last returned
        self._finished = 0  # calls that returned: the lookout's sign of progress
        self._lookout: threading.Thread | None = None
        self._lookout_waiting = False  # in a wait that only a notify ends early
        self._wake = threading.Condition(self._lock)
        self._looked = 0.0  # when the lookout last woke a worker
        self._seen = 0  # _finished as the lookout last saw it
        self._ramp = 1  # workers to wake at the next look that finds no progress
        self._lingered = 0  # looks in a row that found nothing queued
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
        """Start *job* now if a slot is free, else queue it. Raises BridgeClosed.

        A call is also queued, with a slot free, for a worker about to return
        (see the module docstring); the lookout wakes another if it waits.
        """
        start, lookout = None, None
        # acquire()/release(), not `with`: half the cost, on every call.
        self._lock.acquire()
        try:
            if self._closed:  # close() ran since the facade's check: name the call
                raise BridgeClosed(closed_message(f"{callable_name(job.func)}()"))
            now = monotonic()
            if self._busy >= self._capacity:
                self._pending.append((now, job))  # a worker that returns takes it
                return
            if not self._defers(now):
                start = self._admit(job, now)
            else:
                self._pending.append((now, job))
                lookout = self._watch()
                if lookout is None:
                    return
        finally:
            self._lock.release()
        if start is not None:
            self._start(start)
        if lookout is not None:
            self._start_lookout(lookout)

    def _watch(self) -> threading.Thread | None:
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
        # Its first look measures the rate calls return from now on.
        self._seen, self._looked = self._finished, monotonic()
        return self._lookout

    def _defers(self, now: float) -> bool:
        """Whether a call may wait for a running worker (called with the lock held)."""
        if self._long >= _LONG_SHARE:
            return False
        if (
            _FREE_THREADED
            and len(self._active) >= _WORKER_CORES
            and now - self._returned < _PACE_CAP * self._handoff
            and self._cores_busy(now)
        ):
            # Without a GIL, a worker per core (but the loop's) runs short
            # calls as fast as they come; one more only contends for the cores. Calls returned
            # lately (a loaded machine may pause the workers for a few
            # HANDOFFs); if they stop, the lookout wakes another (_look_at).
            return True
        # The worker handed a call last, not a scan of every busy worker: with
        # thousands blocked, a scan under the lock would cost every call.
        last = self._last_handed
        if last is None or last not in self._active:
            return False
        if now - last.since < self._handoff:
            return True
        # Handed its call a while ago. In a burst (calls queued already) while
        # calls keep returning, that is mostly a worker waiting for the GIL,
        # which a new thread would wait for too: queue this call as well while
        # one worker, at the recent pace, empties the queue within HANDOFF (the
        # lookout wakes another if it waits longer). Blocked workers return
        # nothing, so they never count; a lone call may be behind one: start it.
        return (
            bool(self._pending)
            and now - self._returned < self._handoff
            and (len(self._pending) + 1) * self._pace < self._handoff
        )

    def _try_submit(self, job: Job) -> bool:
        """Start *job* if a slot is free right now; never queue it."""
        with self._lock:
            if self._closed or self._busy >= self._capacity:
                return False
            start = self._admit(job, monotonic())
        self._start(start)
        return True

    def _withdraw(self, job: Job) -> bool:
        """Remove *job* from the queue if it has not started; True if removed."""
        with self._lock:
            for i, (_, queued) in enumerate(self._pending):
                if queued is job:
                    del self._pending[i]
                    return True
            return False

    @property
    def _returns_withdrawn(self) -> bool:
        """True: :meth:`_withdraw` hands the job back unrun (see ``_pool.Pool``)."""
        return True

    @property
    def _can_end_calls(self) -> bool:
        """False: a running call runs to its end on its thread."""
        return False

    def _end(self, job: Job) -> bool:
        """A worker thread cannot be stopped: always False."""
        del job
        return False

    def _admit(self, job: Job, now: float) -> tuple[Job, _Worker, bool]:
        """Take a slot for *job*: an idle worker, or a new one (True: start its thread).

        Called with the lock held.
        """
        self._busy += 1
        self._running.add(job)
        new = not self._idle
        worker = _Worker() if new else self._idle.pop()
        worker.since = now
        self._last_handed = worker
        self._active.add(worker)
        return job, worker, new

    def _start(self, start: tuple[Job, _Worker, bool]) -> None:
        """Hand an admitted job over; on a failed start, admit the next queued one."""
        if not self._hand_over(*start):
            self._admit_next()

    def _hand_over(self, job: Job, worker: _Worker, new: bool) -> bool:
        """Give *job* to *worker*, or to a new thread; False if none could start."""
        if not new:
            worker.inbox.put(job)
            return True
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
                self._running.discard(job)
                self._active.discard(worker)
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
                start = self._admit(self._pending.popleft()[1], monotonic())
            if self._hand_over(*start):
                return

    def _admit_waiting(self) -> None:
        """Start every queued job a free slot allows, at once."""
        starts: list[tuple[Job, _Worker, bool]] = []
        with self._lock:
            now = monotonic()
            while self._pending and not self._closed and self._busy < self._capacity:
                starts.append(self._admit(self._pending.popleft()[1], now))
        started = [self._hand_over(*start) for start in starts]
        if not all(started):
            self._admit_next()

    def _next(self, worker: _Worker, done: Job, took: float, now: float) -> Job | None:
        """*done* returned after *took* seconds: give *worker* the next queued job."""
        self._lock.acquire()  # not `with`: see submit
        try:
            self._running.discard(done)
            self._finished += 1
            self._returned = now
            self._long += ((took >= self._handoff) - self._long) * _LONG_WEIGHT
            # A long call counts as a few HANDOFFs: enough to never look short.
            took = min(took, _PACE_CAP * self._handoff)
            self._pace += (took - self._pace) * _LONG_WEIGHT
            # busy still counts *done*: keep the slot for a queued job only
            # while that stays within capacity (it may have been lowered).
            if self._pending and not self._closed and self._busy <= self._capacity:
                job = self._pending.popleft()[1]
                self._running.add(job)
                worker.since = now
                self._last_handed = worker
                return job
            self._busy -= 1
            self._active.discard(worker)
            if not self._closed:
                self._idle.append(worker)
            return None
        finally:
            self._lock.release()

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
            for start in starts:
                self._start(start)

    def _due(self) -> list[tuple[Job, _Worker, bool]] | None:
        """Wait until queued calls are due a worker; admit them. None: stop.

        Called by the lookout with the lock held (each wait releases it).
        """
        me = threading.current_thread()
        while not self._closed and self._lookout is me:
            if not self._pending or self._busy >= self._capacity:
                # Nothing waits with a slot free. While workers run, look again
                # each HANDOFF for a while: a call queued meanwhile needs no
                # notify (a wake-up per call would cost more than the call).
                if self._pending or not self._active or self._lingered >= _LINGER:
                    self._lookout_waiting = True
                    try:
                        woken = self._wake.wait(self.idle_timeout)
                    finally:
                        self._lookout_waiting = False
                    if not woken and not self._pending and self._lookout is me:
                        self._lookout = None  # idle for idle_timeout: exit
                    self._lingered = 0
                else:
                    self._lingered += 1
                    self._wake.wait(self._handoff)
                # A new episode: no worker woken for a whole HANDOFF from now.
                self._seen, self._looked, self._ramp = self._finished, monotonic(), 1
                continue
            self._lingered = 0
            now = monotonic()
            due = self._next_look()
            if now < due:
                self._wake.wait(due - now)
                continue
            starts = self._look_at(now)
            if starts is not None:
                return starts
        return None

    def _next_look(self) -> float:
        """When the lookout looks next at the queued calls (lock held, a call queued).

        A HANDOFF after the oldest call was queued or after the last look,
        whichever is later.
        """
        return max(self._pending[0][0], self._looked) + self._handoff

    def _look_at(self, now: float) -> list[tuple[Job, _Worker, bool]] | None:
        """The lookout's look at *now* (lock held, a call queued, a slot free).

        Returns the workers to start (admitted already), or None while the
        running workers, at the rate they returned calls since the last look,
        empty the queue soon. Pure policy on the pool's state and *now*, so a
        test can drive it with a clock of its own (the lookout passes the real
        one, at :meth:`_next_look`).
        """
        returned = self._finished - self._seen
        if returned:  # workers still return
            if len(self._pending) * (now - self._looked) < returned * self._handoff:
                # At the rate they returned since the last look, they empty
                # the queue within HANDOFF: another thread would only fight
                # them for the GIL. Look again in a HANDOFF.
                self._seen, self._looked, self._ramp = self._finished, now, 1
                return None
            if _FREE_THREADED and self._cores_busy(now):
                # A worker per core (but the loop's) still runs short calls:
                # on a free-threaded build another thread only contends with
                # them for the cores.
                self._seen, self._looked, self._ramp = self._finished, now, 1
                return None
            wanted, self._ramp = 1, 1  # one more
        else:  # none returned for HANDOFF: they may all be blocked
            wanted, self._ramp = self._ramp, self._ramp * 2
        self._seen, self._looked = self._finished, now
        starts: list[tuple[Job, _Worker, bool]] = []
        while (
            len(starts) < wanted
            and self._pending
            and self._pending[0][0] <= now - self._handoff
            and self._busy < self._capacity
        ):
            starts.append(self._admit(self._pending.popleft()[1], now))
        return starts

    def _cores_busy(self, now: float) -> bool:
        """Whether a worker per core (but one) was handed its call lately (lock held).

        Workers handed theirs longer ago may be blocked in it: they leave
        their core free. It runs on every call, so it looks at a few workers
        only: if those are blocked, the answer is no, and workers are woken
        as on a GIL build.
        """
        recent, running = now - _PACE_CAP * self._handoff, 0
        for worker in islice(self._active, _SCAN):
            if worker.since > recent:
                running += 1
                if running >= _WORKER_CORES:
                    return True
        return False

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
                # The function alone is timed: waking the awaiter may wait for
                # the GIL, which says nothing about how long calls take.
                start = monotonic()
                job.call()
                end = monotonic()
                if job.pid != PROCESS.pid:
                    # Forked during the job: this pool was reset in the child and
                    # never counted it. The thread leaves the pool (#11).
                    job.finish()
                    return
                # The slot first, then the wake-up: an awaiter that has its
                # result must find the slot free (without the GIL it could
                # run, and read stats(), before this thread took the lock).
                done, job = job, self._next(worker, job, end - start, end)
                done.finish()
                del done  # an idle worker keeps nothing of its last call
        finally:
            with self._lock:
                self._threads.discard(me)

    def stats(self) -> PoolStats:
        """A snapshot of this pool: capacity, occupancy and outcome totals."""
        counts = self.counts.snapshot()
        with self._lock:
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
        self._fresh_state()
