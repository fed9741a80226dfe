"""What the rest of the core may use of a pool: the :class:`Pool` protocol.

:class:`~._workers.WorkerPool` and :class:`~._executor_pool.ExecutorPool`
implement it; a job (``_jobs``), a delegate (``_delegate``) and the awaiting
task (``_await_job``) see a pool through it only. Generic in the job it takes,
so this module, in the kernel, imports nothing above it.

Its members that take a job are underscored: ``WorkerPool`` and
``ExecutorPool`` are public classes, and a job is not part of their public API
(``pyright --verifytypes`` holds it to that). The core's callers therefore
mark each use with a ``reportPrivateUsage`` ignore; giving the public classes
a face apart from the object the core drives is what would remove those.
"""

from __future__ import annotations

__all__ = ("Pool",)

from typing import TYPE_CHECKING, Protocol, TypeVar

if TYPE_CHECKING:
    import threading

    from .._stats import PoolStats
    from ._counts import Counts

JobT_contra = TypeVar("JobT_contra", contravariant=True)


class Pool(Protocol[JobT_contra]):
    """Where blocking jobs run: a bounded set of threads, or an executor."""

    @property
    def name(self) -> str:
        """The pool's name in stats, thread names and log records."""
        ...

    @property
    def counts(self) -> Counts:
        """Calls and how they ended, counted by their awaiters."""
        ...

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        ...

    @property
    def _can_end_calls(self) -> bool:
        """Whether :meth:`_end` can stop a running call (a ProcessExecutor's)."""
        ...

    @property
    def _returns_withdrawn(self) -> bool:
        """Whether :meth:`_withdraw` hands a queued job back unrun.

        Then the caller may run it elsewhere (a blocked ancestor's thread, see
        ``_delegate``). Otherwise withdrawing cancels it, and its awaiter is told.
        """
        ...

    @property
    def _max_wait(self) -> float | None:
        """Seconds a job may stay queued before its awaiter has it refused.

        The awaiter arms the bound (``_await_job``) and calls ``_expire``;
        ``None``: no bound (always, for an executor's pool).
        """
        ...

    def _submit(self, job: JobT_contra, bounded: bool = True) -> None:
        """Start *job* or queue it. Raises BridgeClosed once closed.

        A pool with ``max_waiting`` raises ``Saturated`` (``_workers``) for a
        job that would exceed it, unless not *bounded*: a nested job that an
        ancestor's slot may run is never refused.
        """
        ...

    def _try_submit(self, job: JobT_contra) -> bool:
        """Start *job* if a slot is free right now; never queue it."""
        ...

    def _withdraw(self, job: JobT_contra) -> bool:
        """Take *job* back if it has not started; True if it will not run here."""
        ...

    def _expire(self, job: JobT_contra, max_wait: float) -> Exception | None:
        """Withdraw *job*, queued :attr:`_max_wait` s: the refusal to raise.

        ``None`` if it started meanwhile (the bound no longer applies).
        """
        ...

    def _end(self, job: JobT_contra) -> bool:
        """Stop *job* while it runs, if :attr:`_can_end_calls`; True if stopped."""
        ...

    def stats(self) -> PoolStats:
        """A snapshot of the pool."""
        ...

    def running_functions(self) -> list[str]:
        """Names of the functions running in this pool right now."""
        ...

    def close(self) -> list[threading.Thread]:
        """Refuse new jobs and cancel the rest; the threads left to join."""
        ...
