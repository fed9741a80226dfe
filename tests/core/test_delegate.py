"""Delegation: a full pool lends the slot its own blocked ancestor holds."""

from __future__ import annotations

import contextvars
import threading
from queue import SimpleQueue

from syncbridge import WorkerPool
from syncbridge._core._delegate import Delegate, delegates, submit
from syncbridge._core._jobs import Job


def _job(pool: WorkerPool, func: object = lambda: None) -> Job:
    return Job(func, (), {}, contextvars.copy_context(), None, pool)  # type: ignore[arg-type]


def _hold(pool: WorkerPool) -> tuple[threading.Event, threading.Event]:
    """Take the pool's only slot with a job that waits to be released."""
    started, release = threading.Event(), threading.Event()

    def hold() -> None:
        started.set()
        release.wait(10)

    pool._submit(_job(pool, hold))
    assert started.wait(5)
    return started, release


def _submit_with(chain: tuple[Delegate, ...], pool: WorkerPool, job: Job) -> None:
    delegates.set(chain)
    submit(pool, job)


def test_a_full_pool_hands_the_job_to_the_innermost_ancestor_of_that_pool() -> None:
    lane, other = WorkerPool("lane", 1), WorkerPool("other", 1)
    _, release = _hold(lane)
    outer_mail: SimpleQueue[object] = SimpleQueue()
    inner_mail: SimpleQueue[object] = SimpleQueue()
    chain = (Delegate(lane, outer_mail), Delegate(other, inner_mail))
    job = _job(lane)
    try:
        contextvars.copy_context().run(_submit_with, chain, lane, job)
        assert outer_mail.get_nowait() is job  # lent the lane's slot, not queued
        assert inner_mail.empty()
        assert lane.waiting == 0
    finally:
        release.set()
        lane.close()
        other.close()


def test_a_retired_ancestor_falls_back_to_the_queue() -> None:
    pool = WorkerPool("retired", 1)
    _, release = _hold(pool)
    mail: SimpleQueue[object] = SimpleQueue()
    delegate = Delegate(pool, mail)
    delegate.retire()
    job = _job(pool)
    try:
        contextvars.copy_context().run(_submit_with, (delegate,), pool, job)
        assert mail.empty()
        assert pool.waiting == 1
    finally:
        release.set()
        pool.close()


def test_jobs_offered_too_late_go_back_to_the_pool() -> None:
    pool = WorkerPool("late", 2)
    mail: SimpleQueue[object] = SimpleQueue()
    delegate = Delegate(pool, mail)
    done = threading.Event()
    job = _job(pool, done.set)
    assert delegate.offer(job)
    delegate.retire()  # never served: the job is resubmitted, and runs
    try:
        assert done.wait(5)
    finally:
        pool.close()
