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
    chain = (Delegate(lane, outer_mail, []), Delegate(other, inner_mail, []))
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
    delegate = Delegate(pool, mail, [])
    delegate.retire()
    job = _job(pool)
    try:
        contextvars.copy_context().run(_submit_with, (delegate,), pool, job)
        assert mail.empty()
        assert pool.waiting == 1
    finally:
        release.set()
        pool.close()


def test_jobs_offered_as_the_call_ends_run_on_the_retiring_thread() -> None:
    """Not behind the slot that thread holds: that would be a deadlock (#11)."""
    pool = WorkerPool("late", 1)
    mail: SimpleQueue[object] = SimpleQueue()
    delegate = Delegate(pool, mail, [])
    ran_on: list[int] = []
    job = _job(pool, lambda: ran_on.append(threading.get_ident()))
    assert delegate.offer(job)
    delegate.retire()
    try:
        assert ran_on == [threading.get_ident()]
        assert not delegate.offer(_job(pool))  # retired: takes no more
    finally:
        pool.close()


def test_a_retired_delegate_forwards_to_its_threads_current_one() -> None:
    """A task that outlived the call it started in still reaches the slot's holder."""
    pool = WorkerPool("forward", 1)
    _, release = _hold(pool)
    siblings: list[Delegate] = []
    old_mail: SimpleQueue[object] = SimpleQueue()
    new_mail: SimpleQueue[object] = SimpleQueue()
    old = Delegate(pool, old_mail, siblings)
    old.retire()
    Delegate(pool, new_mail, siblings)  # the same thread, blocked again
    job = _job(pool)
    try:
        contextvars.copy_context().run(_submit_with, (old,), pool, job)
        assert new_mail.get_nowait() is job
        assert pool.waiting == 0
    finally:
        release.set()
        pool.close()
