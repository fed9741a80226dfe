"""Nested calls never wait for a slot their own chain holds.

A worker thread blocked in ``sync_call_async`` holds a slot of its pool while it
waits. If the coroutine it waits for (or a task that coroutine starts, or a call
nested deeper still) needs that same pool while the pool is full, waiting would
deadlock: the slot it waits for is held by its own ancestor. So each blocked
worker offers itself as a :class:`Delegate`, and the chain of delegates travels
down the nested calls in a context variable: a job for a full pool goes to the
innermost ancestor blocked on that pool, which runs it on its own thread. The
thread-sensitive lane is a pool of one, so its jobs run on its one thread, as
they must. Capacity stays honest: no more threads run a pool's functions than
it has slots (#11).

This module owns that state: each thread's list of its delegates, the chain
(:data:`delegates`), and their reset in a forked child. A worker calls
:func:`lend` as it blocks and :func:`retire` once its call is done; a task that
outlives the call it was started in carries a chain with :func:`current_chain`
and :func:`adopt_chain`; :func:`submit` places a job.
"""

from __future__ import annotations

__all__ = (
    "Delegate",
    "adopt_chain",
    "current_chain",
    "delegates",
    "lend",
    "retire",
    "submit",
)

import contextvars
import threading
from queue import Empty, SimpleQueue
from typing import TYPE_CHECKING, Final, final

from ._jobs import Job, JobState
from ._process import PROCESS, ChildStep, on_fork_child

if TYPE_CHECKING:
    from ._pool import Pool


class _ThreadDelegates(threading.local):
    """The delegates of the current thread; written by that thread only."""

    siblings: list[Delegate] | None = None
    """Its delegates still waiting, innermost last: the ``siblings`` of each."""


_thread: Final = _ThreadDelegates()

_new: Final = object.__new__  # Delegate.lend builds one in a single Python call

delegates: contextvars.ContextVar[tuple[Delegate, ...]] = contextvars.ContextVar(
    "syncbridge_delegates", default=()
)
"""The blocked ancestors of the current call, outermost first."""


_missed: dict[int, tuple[list[Delegate], Job]] = {}
"""Jobs of a worker pool offered to a thread between two of its blocked calls.

By ``id()`` of the job: the thread's sibling list and the job, queued in its
pool. Only documented-atomic dict operations: a thread that blocks again
appends its new delegate and then reads this; :func:`submit` writes it and then
looks for that delegate (one of the two sees the other).
"""


def _forget_parent_delegates() -> None:
    # The forking thread's delegates are the parent's: its blocked calls, and
    # their mailboxes, are not in this process; nor are the jobs offered to them.
    _thread.siblings = None
    _missed.clear()


on_fork_child(ChildStep.DELEGATES, _forget_parent_delegates)


@final
class Delegate:
    """A worker thread blocked in ``sync_call_async``, offering to run nested jobs.

    Jobs arrive on the blocked thread's mailbox (the replies queue of the call it
    waits for), which it serves until its call is done. *siblings* is the list
    of that thread's delegates still waiting, innermost last (written by that
    thread only): a task that outlives the call it was started in (a task group
    in a ``to_sync_cm`` block) still holds this retired delegate, and its offer
    goes to the thread's current one, which holds the same slot.
    """

    __slots__ = ("_active", "_lock", "mailbox", "pid", "pool", "siblings")

    pool: Pool[Job]
    mailbox: SimpleQueue[object]
    siblings: list[Delegate]
    pid: int
    _lock: threading.Lock
    _active: bool  # guarded by _lock

    @staticmethod
    def lend(
        pool: Pool[Job],
        mailbox: SimpleQueue[object],
        ctx: contextvars.Context | None,
        siblings: list[Delegate] | None = None,
    ) -> Delegate:
        """This worker thread blocks on a call: lend its slot of *pool* until retired.

        Jobs for *pool* that find it full arrive on *mailbox* (the replies queue
        of the call it waits for), which the thread serves until its call is
        done; then it calls :func:`retire`. The delegate joins the chain of
        the current call in *ctx*, the context the awaited call runs in.
        *siblings* is the list of the thread the delegate stands for; by
        default, this thread's own (tests pass their own, with no *ctx*).
        """
        if siblings is None:
            siblings = _thread.siblings
            if siblings is None:
                siblings = _thread.siblings = []
        # Inlined construction (no __init__): this runs on every nested call.
        delegate: Delegate = _new(Delegate)
        delegate.pool = pool
        delegate.mailbox = mailbox
        delegate.siblings = siblings
        delegate.pid = PROCESS.pid
        delegate._lock = threading.Lock()
        delegate._active = True  # guarded by _lock
        siblings.append(delegate)
        if _missed:  # len() of a dict is atomic: read after the append
            delegate._take_missed()
        if ctx is not None:
            ctx.run(delegates.set, (*delegates.get(), delegate))
        return delegate

    def _take_missed(self) -> None:
        """Serve the jobs offered to this thread while it was not blocked.

        A task that outlives the call it was started in may offer a job while
        the thread that holds the slot runs sync code between two calls: the
        job then waits in the pool behind that very slot. Once the thread
        blocks again on the pool, it takes such jobs back here (see
        :func:`submit`, which looks again for this delegate).
        """
        for key, (siblings, job) in _missed.copy().items():
            if (
                siblings is self.siblings
                and job.pool is self.pool
                and _missed.pop(key, None) is not None
                and self.pool._withdraw(job)  # pyright: ignore[reportPrivateUsage]
            ):
                self.mailbox.put(job)

    def offer(self, job: Job) -> bool:
        """Queue *job* for the blocked thread; False if it is not blocked any more.

        Always False in a forked child: the blocked thread is the parent's.
        """
        if self.pid != PROCESS.pid:
            return False
        if self._offer_here(job):
            return True
        # A snapshot (list.copy() is atomic): its owner thread edits the list.
        for other in reversed(self.siblings.copy()):
            if other is not self and other.pool is self.pool and other._offer_here(job):
                return True
        return False

    def _offer_here(self, job: Job) -> bool:
        with self._lock:
            if not self._active:
                return False
            self.mailbox.put(job)
            return True

    def retire(self) -> None:
        """Stop taking jobs; run any that came in as the call finished.

        Called by the blocked thread itself once its call is done: it still
        holds the slot, so jobs offered to it before it stopped taking them run
        here, not behind that slot in the pool's queue.
        """
        with self._lock:
            self._active = False
        try:
            self.siblings.remove(self)
        except ValueError:
            pass
        while True:
            try:
                item = self.mailbox.get_nowait()
            except Empty:
                return
            if isinstance(item, Job):
                item.run()


lend: Final = Delegate.lend
"""``lend(pool, mailbox, ctx)``: see :meth:`Delegate.lend`."""

retire: Final = Delegate.retire
"""``retire(delegate)``: its thread's call is done (see :meth:`Delegate.retire`)."""


def current_chain() -> tuple[Delegate, ...]:
    """The blocked ancestors of the current call, outermost first."""
    return delegates.get()


def adopt_chain(chain: tuple[Delegate, ...]) -> None:
    """Lend the slots of *chain* (a :func:`current_chain`) to what this task runs next.

    For a task that outlives the call it was started in (a ``to_sync_cm``
    block's task, #11): the blocked callers that may lend their slots to its
    later work are those of the call it now works for, not of the first.
    """
    delegates.set(chain)


def submit(pool: Pool[Job], job: Job) -> None:
    """Start or queue *job* in *pool*, lending it an ancestor's slot if full."""
    chain = delegates.get()
    if chain:
        for delegate in reversed(chain):
            if delegate.pool is pool and (pool._try_submit(job) or delegate.offer(job)):  # pyright: ignore[reportPrivateUsage]
                return
        lender = next((d for d in reversed(chain) if d.pool is pool), None)
        if (
            lender is not None
            and pool._returns_withdrawn  # pyright: ignore[reportPrivateUsage] - the lender's thread may take it back
            and lender.pid == PROCESS.pid  # not a forked child's inherited chain
        ):
            _queue_for(lender, pool, job)
            return
    pool._submit(job)  # pyright: ignore[reportPrivateUsage]


def _queue_for(lender: Delegate, pool: Pool[Job], job: Job) -> None:
    """Queue *job*, which *lender*'s thread may hold the slot for, in *pool*.

    That thread is not blocked right now. If it blocks on *pool* again before
    the job starts, it takes the job back from the queue and runs it (the job
    may be what it waits for); if it returns first, its slot runs the job.
    """
    for key, (_, queued) in _missed.copy().items():  # forget what started
        if queued.state is not JobState.QUEUED:
            _missed.pop(key, None)
    # Never refused by the pool's bounds: the lender's slot may be what runs it.
    pool._submit(job, bounded=False)  # pyright: ignore[reportPrivateUsage]
    key = id(job)
    _missed[key] = (lender.siblings, job)
    # Blocked again meanwhile (before it could see the job): offer it there.
    for other in reversed(lender.siblings.copy()):
        if other.pool is pool and _missed.pop(key, None) is not None:
            if pool._withdraw(job) and not other.offer(job):  # pyright: ignore[reportPrivateUsage]
                pool._submit(job, bounded=False)  # pyright: ignore[reportPrivateUsage] - and stopped again
            return
