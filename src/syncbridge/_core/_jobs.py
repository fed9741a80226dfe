"""One blocking call for an event loop: its state, its outcome, its cancellation.

A :class:`Job` is created by the awaiting task, run by one worker thread and
read back by the awaiting task. Each field has one writer, said beside it. The
worker hands the outcome back through :attr:`Job.notify`, set before the job
is submitted and never changed after: the wake-up it sends (a locked hand-over
to the awaiting loop) carries the outcome and state written before it. The
cancel request and the async call the worker waits on meet under one lock.
"""

from __future__ import annotations

__all__ = (
    "CancelReason",
    "Job",
    "JobState",
    "check_cancelled",
    "current_job",
)

import enum
import logging
import threading
from time import monotonic
from typing import TYPE_CHECKING, Any, Final

from .._exceptions import BridgeClosed, WorkerCancelled, callable_name
from ._context import role
from ._outcome import Error, Value
from ._process import PROCESS

if TYPE_CHECKING:
    import contextvars
    from collections.abc import Callable

    from ._calls import Call
    from ._outcome import Outcome
    from ._pool import Pool

logger = logging.getLogger("syncbridge")

_cancel_lock: Final = threading.Lock()
"""Guards :attr:`Job.cancel` and :attr:`Job.waiting_on` together, for every job.

Taken only to cancel a job and when a worker starts an async call: never on
the path of a call that nobody cancels and that makes none.
"""


class JobState(enum.Enum):
    """Where a job is in its life."""

    QUEUED = "queued"
    """Created, waiting for a worker (or handed to one that has not begun it)."""
    RUNNING = "running"
    FINISHED = "finished"
    """It has an outcome (it ran, or it was refused before running)."""


# Read on every call. A member is a slower lookup than a global on Python 3.11
# (about 90 ns against 10), and a job reads three.
_QUEUED: Final = JobState.QUEUED
_RUNNING: Final = JobState.RUNNING
_FINISHED: Final = JobState.FINISHED


class CancelReason(enum.Enum):
    """Why nobody wants a job's result any more."""

    AWAITER = "the task awaiting it was cancelled or timed out"
    CLOSED = "its bridge was closed"


class Job:
    """One blocking call: the function, its arguments, context and outcome."""

    __slots__ = (
        "abandoned",
        "args",
        "cancel",
        "ctx",
        "func",
        "kwargs",
        "notify",
        "origin",
        "outcome",
        "pid",
        "pool",
        "queued_at",
        "started_at",
        "state",
        "waiting_on",
    )

    def __init__(
        self,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        ctx: contextvars.Context,
        origin: object,
        pool: Pool[Job],
    ) -> None:
        # Written by the awaiting task as it leaves a running call; read by
        # stats(), which may count it a moment late.
        self.abandoned = False
        self.func = func
        self.args = args
        self.kwargs = kwargs
        self.ctx = ctx
        self.origin = origin  # the asyncio loop or trio token that awaits this job
        self.pool = pool
        self.pid = PROCESS.pid
        # Written by the thread that runs (or refuses) the job, before notify.
        self.state = _QUEUED
        self.outcome: Outcome | None = None
        # Under _cancel_lock. Written by the awaiting task's loop, or by
        # close(): first reason wins. Read without it by the worker, which
        # may see it a moment late (as if it had looked a moment earlier).
        self.cancel: CancelReason | None = None
        # Under _cancel_lock (see wait_on): the async call the worker is
        # blocked on right now (never a cleanup call, which runs to its end).
        self.waiting_on: Call[Any] | None = None
        # Set by the awaiting task before it submits the job, then only read.
        self.notify: Callable[[], None] = _noop
        # time.monotonic() when submitted (written here, just before it is)
        # and when a worker began it (written by that worker before notify;
        # 0.0 if it never began). Others may read started_at a moment late.
        self.queued_at = monotonic()
        self.started_at = 0.0

    def run(self) -> None:
        """Run the call on this thread, record its outcome, wake the awaiting task."""
        self.call()
        self._finished()

    def call(self) -> None:
        """Run the call on this thread and record its outcome; :meth:`finish` next.

        Apart, so a worker can time the function alone (see ``_workers``).
        """
        if self.cancel is not None:  # given up before it started: skip it
            self.outcome = Error(WorkerCancelled("cancelled before it started"))
        else:
            self.state = _RUNNING
            self.started_at = monotonic()
            previous, role.job = role.job, self
            try:
                self.outcome = Value(self.ctx.run(self.func, *self.args, **self.kwargs))
            except BaseException as exc:
                self.outcome = Error(exc)
            finally:
                role.job = previous

    def finish(self) -> None:
        """Wake the awaiting task of a job :meth:`call` ran."""
        self._finished()

    def fail(self, exc: BaseException) -> None:
        """Finish a job that never ran, with *exc* as its outcome."""
        self.settle(Error(exc))

    def settle(self, outcome: Outcome) -> None:
        """Finish a job that ran elsewhere (another process), with its *outcome*."""
        self.outcome = outcome
        self._finished()

    def _finished(self) -> None:
        self.args = ()
        self.kwargs = _NO_KWARGS  # not a new dict, freed by the awaiter's thread
        self.state = _FINISHED  # before notify, whose hand-over publishes it
        if self.pid == PROCESS.pid:  # in a forked child, the awaiter is the parent's
            self.notify()

    def request_cancel(self, reason: CancelReason) -> None:
        """Flag the job (see :func:`check_cancelled`) and cancel its async call.

        Thread-safe. The coroutine the worker is blocked on through
        ``sync_call_async`` is cancelled on its loop, so cancellation reaches
        nested calls whatever the abandon option (#11).
        """
        with _cancel_lock:  # with wait_on: one of the two sees the other
            if self.cancel is None:
                self.cancel = reason
            call = self.waiting_on
        if call is not None:
            self.cancel_waited_on(call)

    def cancel_waited_on(self, call: Call[Any]) -> None:
        """Cancel *call*, the one this job's worker is blocked on (its cancel is set).

        A bridge's close that cancels it names it in the log, as the portal
        names the tasks it cancels: whichever of close() and the worker (see
        ``_loop_choice``) gets to cancel it first, it is named once.
        """
        if call.request_cancel() and self.cancel is CancelReason.CLOSED:
            logger.warning(
                "cancelled task %r: a worker thread of pool %r was blocked on it "
                "when its bridge closed",
                call.name,
                self.pool.name,
                extra={
                    "syncbridge_event": "task-cancelled-at-close",
                    "syncbridge_task": call.name,
                    "syncbridge_pool": self.pool.name,
                },
            )

    def wait_on(self, call: Call[Any] | None) -> bool:
        """Record the async call the worker now waits on (None: no more).

        Returns whether the job was cancelled: *call* must then be cancelled
        by the caller, as :meth:`request_cancel` may have missed it.
        """
        with _cancel_lock:
            self.waiting_on = call
            return self.cancel is not None

    def result(self) -> Any:
        """Return the result, or raise the exception, of a finished job.

        A :class:`WorkerCancelled` that a job raised because its bridge closed
        reaches an awaiter that was never cancelled as :class:`BridgeClosed`.
        """
        outcome, self.outcome = self.outcome, None
        assert outcome is not None
        if isinstance(outcome, Value):
            return outcome.value
        error = outcome.error
        try:
            if (
                isinstance(error, WorkerCancelled)
                and self.cancel is CancelReason.CLOSED
            ):
                raise BridgeClosed(
                    f"the bridge was closed while {callable_name(self.func)}() was running "
                    "in a worker thread, and it stopped (check_cancelled())"
                ) from error
            if isinstance(error, StopIteration):
                raise RuntimeError(  # noqa: TRY004 - what a coroutine would raise
                    f"{callable_name(self.func)}() raised StopIteration, which cannot "
                    "propagate out of a coroutine (PEP 479); it is this error's "
                    "__cause__. Use next(iterator, default) to detect the end."
                ) from error
            raise error
        finally:
            del error, outcome


_NO_KWARGS: Final[dict[str, Any]] = {}  # a finished job's; never changed


def _noop() -> None:
    pass


def current_job() -> Job | None:
    """The job this thread is running for an event loop, if any."""
    job: Job | None = role.job
    return job


def check_cancelled() -> None:
    """Raise :class:`WorkerCancelled` if nobody awaits this worker call any more."""
    job: Job | None = role.job
    if job is not None and job.cancel is not None:
        raise WorkerCancelled(
            f"{callable_name(job.func)}() is not awaited any more ({job.cancel.value}); "
            "stop the work and let this exception propagate"
        )
