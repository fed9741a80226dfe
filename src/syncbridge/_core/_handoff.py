"""One call handed from a waiting thread to a running one: its life, outcome and cancel.

A :class:`Handoff` is queued, then running, then finished (:class:`State`). It
gets one outcome and its waiter is woken once (:meth:`Handoff.finish`); the
first :class:`CancelReason` asked for wins (:meth:`Handoff.request_cancel`);
once it has a reason it never begins (:meth:`Handoff.begin`). These are
written here once, under the subclass's :attr:`~Handoff._lock`; a subclass
says only how its waiter is woken (:meth:`~Handoff._settled`) and how a
running call is interrupted (:meth:`~Handoff._interrupt`).

:class:`~._jobs.Job` (a blocking call a worker thread runs for a loop) and
:class:`~._calls.Call` (an async call a loop runs for a blocked thread)
subclass it rather than hold one: a held part would be a second object, and a
Python call more, for every bridged call, and its fields one reference away on
the paths that read them. Their locks differ, chosen by who may race:

- A **Call** is raced for: the loop thread finishes it, a closing portal or
  the caller's own deadline may answer it first, and a cancel may come from
  any thread. Each call has its own lock, held for a few attribute writes.
- A **Job** has one owner at a time: the pool hands it to one worker under the
  pool's lock, and a job withdrawn, refused or failed is answered by whoever
  took it out. One lock serves all jobs; it is taken to cancel a job, when its
  worker starts an async call (``Job.wait_on``), and by :meth:`Handoff.finish`
  for a job that did not run here (refused, failed, run in another process),
  never on the path of a job that runs. That path is lock-free, and needs no
  GIL, because the worker owns the job: it begins it by reading ``cancel``
  (``Job.call``; a reason set just after is seen by ``check_cancelled`` and
  ``Job.wait_on``, as if it had come a moment later), and ends it with
  ``Job.hand_back``, which writes ``outcome`` and ``state`` before the wake-up
  whose hand-over (a lock on the awaiting loop) publishes them. Nothing else
  answers a job its worker began, so :meth:`Handoff.finish` never races it.
"""

from __future__ import annotations

__all__ = (
    "FINISHED",
    "NO_KWARGS",
    "QUEUED",
    "RUNNING",
    "CancelReason",
    "Handoff",
    "State",
)

import enum
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar

if TYPE_CHECKING:
    import threading

    from ._outcome import Cancelled, Error, Value

InnerT = TypeVar("InnerT")


class State(enum.Enum):
    """Where a call is in its life."""

    QUEUED = "queued"
    """Created, waiting for a thread or a loop to begin it."""
    RUNNING = "running"
    FINISHED = "finished"
    """It has its outcome (it ran, or it was answered without running)."""


# Read on every call: a member is a class lookup through the enum's metaclass
# (about 90 ns on Python 3.11, against 10 for a global).
QUEUED: Final = State.QUEUED
RUNNING: Final = State.RUNNING
FINISHED: Final = State.FINISHED


class CancelReason(enum.Enum):
    """Why nobody wants a call's result any more."""

    AWAITER = "the task awaiting it was cancelled or timed out"
    CLOSED = "its bridge was closed"


NO_KWARGS: Final[dict[str, Any]] = {}
"""A finished call's keyword arguments (not a new dict); never changed."""


class Handoff(Generic[InnerT]):
    """The state, outcome and first cancel reason of one call (see the module).

    *InnerT* is what a cancel must reach while the call runs (:attr:`inner`).
    A subclass gives :attr:`_lock`, :meth:`_settled` and :meth:`_interrupt`.
    """

    __slots__ = ("cancel", "inner", "outcome", "state")

    _lock: threading.Lock
    """Guards ``cancel`` and ``inner`` (a Call's: its state and outcome too)."""

    def __init__(self) -> None:
        # Job and Call set these four in their own __init__ instead: calling
        # this would cost a Python call more per bridged call.
        self.state = QUEUED
        self.outcome: Value[Any] | Error | Cancelled | None = None
        # Under _lock; first reason wins. Read without it by the owner, which
        # may see it a moment late (as if it had looked a moment earlier).
        self.cancel: CancelReason | None = None
        # Under _lock: what a cancel must reach while the call runs.
        self.inner: InnerT | None = None

    @property
    def done(self) -> bool:
        """Whether the call has its outcome."""
        return self.state is FINISHED

    def begin(self, inner: InnerT | None = None) -> bool:
        """Mark the call running, with *inner* for a cancel to reach; False if refused.

        Refused if it has its outcome or a cancel reason: the caller then
        must not run it (and must stop *inner* itself: no cancel will).
        """
        with self._lock:
            if self.state is FINISHED:
                return False
            self.state = RUNNING
            self.inner = inner
            return self.cancel is None

    def finish(
        self, outcome: Value[Any] | Error | Cancelled, *, timed_out: bool = False
    ) -> bool:
        """Settle the call with *outcome* and wake its waiter, once; thread-safe.

        False, with nothing done, if it had its outcome already. *timed_out*:
        the outcome is its caller's own deadline (counted so), kept only if
        this outcome wins.
        """
        with self._lock:
            if self.state is FINISHED:
                return False
            self.outcome = outcome
            self.state = FINISHED
        self._settled(timed_out)
        return True

    def _settled(self, timed_out: bool) -> None:
        """Drop the call's inputs and wake its waiter (once: it just finished)."""
        raise NotImplementedError

    def request_cancel(self, reason: CancelReason = CancelReason.AWAITER) -> bool:
        """Give the call its cancel *reason*, once; from any thread; never raises.

        The first reason wins (by default: its waiter gave up); none is
        taken once the call has its outcome.
        A call not begun yet never begins; a running one has its
        :attr:`inner` interrupted. True if this request set the reason.
        """
        with self._lock:  # with begin (and Job.wait_on): one sees the other
            if self.cancel is not None or self.state is FINISHED:
                return False
            self.cancel = reason
            inner = self.inner
        if inner is not None:
            self._interrupt(inner)
        return True

    def _interrupt(self, inner: InnerT) -> None:
        """Stop *inner*, which runs this call, after a first cancel request."""
        raise NotImplementedError
