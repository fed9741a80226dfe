"""Delegation: a full pool lends the slot its own blocked ancestor holds."""

from __future__ import annotations

import contextvars
import os
import threading
from queue import SimpleQueue

import pytest

from _scripts import run_script
from syncbridge import WorkerPool
from syncbridge._core._delegate import (
    Delegate,
    current_chain,
    delegates,
    lend,
    retire,
    submit,
)
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
    chain = (lend(lane, outer_mail, None, []), lend(other, inner_mail, None, []))
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
    delegate = lend(pool, mail, None, [])
    delegate.retire()
    job = _job(pool)
    try:
        contextvars.copy_context().run(_submit_with, (delegate,), pool, job)
        assert mail.empty()
        assert pool.waiting == 1
    finally:
        release.set()
        pool.close()


def test_a_job_queued_for_its_ancestors_slot_is_never_refused_by_max_waiting() -> None:
    """The ancestor's slot may be what runs it (#25): refusing it is spurious."""
    pool = WorkerPool("bounded", 1, max_waiting=0)
    _, release = _hold(pool)
    delegate = lend(pool, SimpleQueue(), None, [])
    delegate.retire()
    job = _job(pool)
    try:
        contextvars.copy_context().run(_submit_with, (delegate,), pool, job)
        assert pool.waiting == 1
    finally:
        release.set()
        pool.close()


def test_jobs_offered_as_the_call_ends_run_on_the_retiring_thread() -> None:
    """Not behind the slot that thread holds: that would be a deadlock (#11)."""
    pool = WorkerPool("late", 1)
    mail: SimpleQueue[object] = SimpleQueue()
    delegate = lend(pool, mail, None, [])
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
    old = lend(pool, old_mail, None, siblings)
    old.retire()
    lend(pool, new_mail, None, siblings)  # the same thread, blocked again
    job = _job(pool)
    try:
        contextvars.copy_context().run(_submit_with, (old,), pool, job)
        assert new_mail.get_nowait() is job
        assert pool.waiting == 0
    finally:
        release.set()
        pool.close()


def test_lend_joins_the_calls_chain_and_offers_the_slot_until_retire() -> None:
    pool = WorkerPool("lend", 1)
    mail: SimpleQueue[object] = SimpleQueue()
    ctx = contextvars.copy_context()  # the context the awaited call runs in
    delegate = lend(pool, mail, ctx)
    try:
        assert ctx.run(current_chain) == (delegate,)
        assert current_chain() == ()  # the blocked caller's own is unchanged
        job = _job(pool)
        assert delegate.offer(job)
        assert mail.get_nowait() is job
    finally:
        retire(delegate)
    try:
        assert not delegate.offer(_job(pool))
        assert mail.empty()
    finally:
        pool.close()


def test_a_thread_that_lends_again_serves_its_retired_delegates_offers() -> None:
    """Its delegates share one list, kept across its calls, and not another thread's."""
    pool = WorkerPool("again", 1)
    _, release = _hold(pool)
    first_mail: SimpleQueue[object] = SimpleQueue()
    again_mail: SimpleQueue[object] = SimpleQueue()
    other_mail: SimpleQueue[object] = SimpleQueue()
    lent, done = threading.Event(), threading.Event()

    def other_thread_blocks() -> None:
        delegate = lend(pool, other_mail, contextvars.copy_context())
        lent.set()
        done.wait(10)
        retire(delegate)

    other = threading.Thread(target=other_thread_blocks)
    other.start()
    first = lend(pool, first_mail, contextvars.copy_context())
    retire(first)
    job = _job(pool)
    try:
        assert lent.wait(5)
        assert not first.offer(job)  # the other thread's slot is not this one's
        again = lend(pool, again_mail, contextvars.copy_context())
        try:
            assert first.offer(job)
            assert again_mail.get_nowait() is job
            assert other_mail.empty()
        finally:
            retire(again)
    finally:
        done.set()
        other.join(5)
        release.set()
        pool.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork()")
def test_a_forked_child_starts_with_no_delegates() -> None:
    """The parent's blocked calls are not the child's: nothing is offered to them."""
    result = run_script(
        """
        import contextvars, os
        from queue import SimpleQueue
        from syncbridge import WorkerPool
        from syncbridge._core._delegate import lend, retire
        from syncbridge._core._jobs import Job

        from syncbridge._core import _delegate

        pool = WorkerPool("fork", 1)  # no thread started: a clean fork
        parent = lend(pool, SimpleQueue(), contextvars.copy_context())
        # A job offered to the parent's blocked workers while they were between
        # two calls: the child has neither.
        _delegate._missed[-1] = (parent.siblings, None)
        pid = os.fork()
        if pid == 0:
            mine = lend(pool, SimpleQueue(), contextvars.copy_context())
            retire(mine)
            job = Job(lambda: None, (), {}, contextvars.copy_context(), None, pool)
            print(len(mine.siblings), mine.offer(job), len(_delegate._missed), flush=True)
            os._exit(0)
        assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
        _delegate._missed.clear()
        retire(parent)
        pool.close()
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["0", "False", "0"]
