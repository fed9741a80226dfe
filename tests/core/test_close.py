"""close_bridge: pools, then the portal, then the executors' calls, by one deadline."""

from __future__ import annotations

import concurrent.futures
import contextvars
import logging
import threading
import time
from typing import TYPE_CHECKING, Any, cast

import pytest

from syncbridge import ExecutorPool, WorkerPool
from syncbridge._core._close import close_bridge
from syncbridge._core._jobs import Job

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from syncbridge._core._portal import Portal

WAIT = 10.0  # seconds; only reached when a test is failing


class _Events:
    """What close_bridge did, in order, across the pools and the portal."""

    def __init__(self) -> None:
        self.seen: list[tuple[object, ...]] = []

    def portal(self) -> Portal:
        events = self

        class FakePortal:
            def close(self, grace: float, deadline: float) -> None:
                events.seen.append(("portal closed", grace, deadline))

        return cast("Portal", FakePortal())


def _threads(events: _Events) -> WorkerPool:
    class Threads(WorkerPool):
        def close(self) -> list[threading.Thread]:
            events.seen.append(("pool closed", self.name))
            return super().close()

    return Threads("close-threads", 2)


def _on_executor(
    events: _Events, executor: concurrent.futures.Executor
) -> ExecutorPool:
    class OnExecutor(ExecutorPool):
        def close(self) -> list[threading.Thread]:
            events.seen.append(("pool closed", self.name))
            return super().close()

        def in_flight(self) -> list[concurrent.futures.Future[Any]]:
            events.seen.append(("executor calls waited for", self.name))
            return super().in_flight()

    return OnExecutor("close-executor", executor, label="test")


@pytest.fixture
def executor() -> Iterator[concurrent.futures.ThreadPoolExecutor]:
    with concurrent.futures.ThreadPoolExecutor(1) as made:
        yield made


def _run(pool: WorkerPool | ExecutorPool, func: Callable[[], object]) -> Job:
    job = Job(func, (), {}, contextvars.copy_context(), None, pool)
    pool._submit(job)
    return job


def test_the_pools_close_first_then_the_portal_then_executor_calls_end(
    executor: concurrent.futures.ThreadPoolExecutor,
) -> None:
    events = _Events()
    threads, on_executor = _threads(events), _on_executor(events, executor)
    deadline = time.monotonic() + WAIT
    close_bridge([threads, on_executor], events.portal(), 0.5, deadline)
    assert events.seen == [
        ("pool closed", "close-threads"),
        ("pool closed", "close-executor"),
        ("portal closed", 0.5, deadline),
        ("executor calls waited for", "close-executor"),
    ]


def test_calls_still_running_at_the_deadline_are_left_and_logged(
    executor: concurrent.futures.ThreadPoolExecutor, caplog: pytest.LogCaptureFixture
) -> None:
    """One deadline for all: close returns by it, whatever still runs."""
    events = _Events()
    threads, on_executor = _threads(events), _on_executor(events, executor)
    release = threading.Event()
    started = threading.Semaphore(0)

    def stuck_in_a_thread() -> None:
        started.release()
        release.wait(WAIT)

    def stuck_on_the_executor() -> None:
        started.release()
        release.wait(WAIT)

    try:
        _run(threads, stuck_in_a_thread)
        _run(on_executor, stuck_on_the_executor)
        for _ in range(2):
            assert started.acquire(timeout=WAIT)
        begun = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="syncbridge"):
            close_bridge([threads, on_executor], events.portal(), 0.0, begun + 0.1)
        assert time.monotonic() - begun < WAIT / 2, "close waited for the calls"
        assert not release.is_set()
    finally:
        release.set()
    left = {
        getattr(r, "syncbridge_event", None): r.getMessage() for r in caplog.records
    }
    assert (
        "stuck_in_a_thread() running in worker thread of pool 'close-threads'"
        in (left["worker-left-running"])
    )
    assert (
        "only a syncbridge.ProcessExecutor can end a running call"
        in (left["executor-call-left-running"])
    )
    assert "stuck_on_the_executor()" in left["executor-call-left-running"]
