"""ExecutorPool: calls on an executor, withdrawn while queued, answered once each."""

from __future__ import annotations

import concurrent.futures
import contextvars
import threading
from typing import TYPE_CHECKING

import pytest

from syncbridge import BridgeClosed, ExecutorPool, WorkerCancelled
from syncbridge._core._handoff import FINISHED, CancelReason
from syncbridge._core._jobs import Job

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

WAIT = 10.0  # seconds; only reached when a test is failing


@pytest.fixture
def pool() -> Iterator[ExecutorPool]:
    """A pool on a one-thread executor: a second call queues there."""
    with concurrent.futures.ThreadPoolExecutor(1) as executor:
        yield ExecutorPool("on-executor", executor, label="test")


def _submitted(
    pool: ExecutorPool, func: Callable[[], object]
) -> tuple[Job, threading.Event]:
    """*func*'s job on *pool*, and the event its awaiter's wake-up sets."""
    job = Job(func, (), {}, contextvars.copy_context(), None, pool)
    told = threading.Event()
    job.notify = told.set
    pool._submit(job)
    return job, told


def _hold(pool: ExecutorPool) -> tuple[Job, threading.Event, threading.Event]:
    """A call that keeps the executor's one thread until the returned event."""
    release, started = threading.Event(), threading.Event()

    def hold() -> str:
        started.set()
        release.wait(WAIT)
        return "held"

    job, told = _submitted(pool, hold)
    assert started.wait(WAIT)
    return job, told, release


def test_withdraw_cancels_a_queued_call_and_its_awaiter_is_told(
    pool: ExecutorPool,
) -> None:
    running, running_told, release = _hold(pool)
    ran: list[str] = []
    try:
        queued, told = _submitted(pool, lambda: ran.append("ran"))
        assert (pool.busy, pool.waiting) == (1, 1)
        assert pool.running_functions() == ["_hold.<locals>.hold"]
        assert not pool._returns_withdrawn
        queued.request_cancel(CancelReason.AWAITER)  # as the awaiter does first
        assert pool._withdraw(queued)
        assert told.is_set(), "the awaiter of the withdrawn call was not woken"
        assert queued.state is FINISHED
        with pytest.raises(WorkerCancelled, match="before it started"):
            queued.result()
        assert not pool._withdraw(running), "a running call was withdrawn"
    finally:
        release.set()
    assert running_told.wait(WAIT)
    assert running.result() == "held"
    assert ran == [], "the withdrawn call ran"
    assert (pool.busy, pool.waiting) == (0, 0)


def test_close_fails_queued_calls_with_bridge_closed(pool: ExecutorPool) -> None:
    running, running_told, release = _hold(pool)
    try:
        queued, told = _submitted(pool, lambda: None)
        assert pool.close() == []  # the executor's threads are not ours
        assert told.wait(WAIT)
        with pytest.raises(BridgeClosed, match=r"still queued in .*; it never ran"):
            queued.result()
        assert running.cancel is CancelReason.CLOSED  # flagged, left running
        with pytest.raises(BridgeClosed, match="closed"):
            _submitted(pool, lambda: None)
    finally:
        release.set()
    assert running_told.wait(WAIT)
