"""One blocking call for an event loop: its state, its outcome, its cancellation.

A :class:`Job` is created by the awaiting task, run by one worker thread and
read back by the awaiting task. Its life, outcome and first cancel reason are
a :class:`~._handoff.Handoff`'s, with the single-owner discipline described
there: each field has one writer, said beside it. The worker hands the outcome
back through :attr:`Job.notify`, set before the job is submitted and never
changed after: the wake-up it sends (a locked hand-over to the awaiting loop)
carries the outcome and state written before it. The cancel request and the
async call the worker waits on meet under one lock.
"""

from __future__ import annotations

__all__ = (
    "Job",
    "check_cancelled",
    "current_job",
)

import logging
import threading
from typing import TYPE_CHECKING, Any, Final

from .._exceptions import BridgeClosed, WorkerCancelled, callable_name
from ._context import role
from ._handoff import FINISHED, NO_KWARGS, QUEUED, RUNNING, CancelReason, Handoff
from ._outcome import Error, Value
from ._process import PROCESS

if TYPE_CHECKING:
    import contextvars
    from collections.abc import Callable

    from ._calls import Call
    from ._outcome import Cancelled
    from ._pool import Pool

logger = logging.getLogger("syncbridge")

_cancel_lock: Final = threading.Lock()
"""Guards :attr:`Job.cancel` and :attr:`Job.inner` together, for every job.

Taken only to cancel a job, when a worker starts an async call, and to answer
a job that did not run here (:meth:`~._handoff.Handoff.finish`): never on the
path of a call that runs, that nobody cancels and that makes none.
"""


class Job(Handoff["Call[Any]"]):
    """One blocking call: the function, its arguments, context and outcome.

    Its :attr:`inner` is the async call its worker is blocked on right now
    (through ``sync_call_async``; never a cleanup call, which runs to its end).
    """

    __slots__ = (
        "abandoned",
        "args",
        "ctx",
        "func",
        "kwargs",
        "notify",
        "origin",
        "pid",
        "pool",
    )

    _lock = _cancel_lock

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
        # The Handoff's, set here (a super().__init__() is a call more per
        # job). state and outcome: written by the thread that runs (or
        # refuses) the job, before notify. cancel and inner: under
        # _cancel_lock; cancel is written by the awaiting task's loop, or by
        # close(), and inner by the worker (see wait_on).
        self.state = QUEUED
        self.outcome: Value[Any] | Error | Cancelled | None = None
        self.cancel: CancelReason | None = None
        self.inner: Call[Any] | None = None
        # Set by the awaiting task before it submits the job, then only read.
        self.notify: Callable[[], None] = _noop

    def run(self) -> None:
        """Run the call on this thread, record its outcome, wake the awaiting task."""
        self.call()
        self.state = FINISHED  # as hand_back() does, without a call more
        self._settled(False)

    def call(self) -> None:
        """Run the call on this thread and record its outcome; :meth:`hand_back` next.

        Apart, so a worker can time the function alone (see ``_workers``).
        """
        # Handoff.begin() without its lock: this thread owns the job (see
        # _handoff); a reason set after this look is seen by check_cancelled().
        if self.cancel is not None:  # given up before it started: skip it
            self.outcome = Error(WorkerCancelled("cancelled before it started"))
        else:
            self.state = RUNNING
            previous, role.job = role.job, self
            try:
                self.outcome = Value(self.ctx.run(self.func, *self.args, **self.kwargs))
            except BaseException as exc:
                self.outcome = Error(exc)
            finally:
                role.job = previous

    def hand_back(self) -> None:
        """Finish a job :meth:`call` ran: its worker's lock-free :meth:`finish`.

        Only the thread that ran it may (see ``_handoff``): nothing else
        answers a job once its worker began it.
        """
        self.state = FINISHED  # before notify, whose hand-over publishes it
        self._settled(False)

    def fail(self, exc: BaseException) -> bool:
        """Finish a job that never ran, with *exc* as its outcome (see :meth:`finish`)."""
        return self.finish(Error(exc))

    def _settled(self, timed_out: bool) -> None:
        # Its awaiter counts a job's timeout: timed_out is never set here.
        self.args = ()
        self.kwargs = NO_KWARGS  # not a new dict, freed by the awaiter's thread
        if self.pid == PROCESS.pid:  # in a forked child, the awaiter is the parent's
            self.notify()

    def _interrupt(self, inner: Call[Any]) -> None:
        # The job is flagged (see check_cancelled); the coroutine its worker
        # is blocked on through sync_call_async is cancelled on its loop, so
        # cancellation reaches nested calls whatever the abandon option (#11).
        self.cancel_waited_on(inner)

    def cancel_waited_on(self, call: Call[Any]) -> None:
        """Cancel *call*, the one this job's worker is blocked on (its cancel is set).

        A bridge's close that cancels it names it in the log, as the portal
        names the tasks it cancels: whichever of close() and the worker (see
        ``_loop_choice``) gets to cancel it first, it is named once.
        """
        reason = self.cancel or CancelReason.AWAITER
        if call.request_cancel(reason) and reason is CancelReason.CLOSED:
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
        with _cancel_lock:  # with request_cancel: one of the two sees the other
            self.inner = call
            return self.cancel is not None

    def result(self) -> Any:
        """Return the result, or raise the exception, of a finished job.

        A :class:`WorkerCancelled` that a job raised because its bridge closed
        reaches an awaiter that was never cancelled as :class:`BridgeClosed`.
        """
        outcome, self.outcome = self.outcome, None
        if isinstance(outcome, Value):
            return outcome.value
        assert isinstance(outcome, Error)  # finished, and a job is never Cancelled
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
