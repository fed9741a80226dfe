"""Awaiting a worker call from asyncio: wake-ups batched per loop (#15).

A worker that finishes a call resolves its awaiter's future through the loop's
:class:`~syncbridge._core._await_job._Wakeups`: the first of a burst calls
``call_soon_threadsafe`` and one callback resolves them all.
"""

from __future__ import annotations

import asyncio
import os
import textwrap
import threading
import time
from typing import Any

import anyio
import anyio.to_thread
import pytest

import syncbridge
from _scripts import run_script
from syncbridge import Bridge, SyncBridgeTimeout
from syncbridge._core import _await_job

WAIT = 10.0  # seconds; only reached when a test is failing


def _count_threadsafe_calls(loop: asyncio.AbstractEventLoop) -> list[object]:
    """Record every ``call_soon_threadsafe`` made to *loop* (a Python loop)."""
    calls: list[object] = []
    original = loop.call_soon_threadsafe

    def counting(callback: Any, *args: Any, **kwargs: Any) -> asyncio.Handle:
        calls.append(callback)
        return original(callback, *args, **kwargs)

    setattr(loop, "call_soon_threadsafe", counting)  # noqa: B010 - patch one loop
    return calls


def test_calls_finishing_together_wake_the_loop_once() -> None:
    """Ten calls that finish while the loop is busy cost one loop wake-up."""
    n = 10

    async def main() -> None:
        loop = asyncio.get_running_loop()
        with Bridge(max_workers=n) as b:
            release = threading.Event()
            started = threading.Semaphore(0)

            def work(i: int) -> int:
                started.release()
                release.wait(WAIT)
                return i

            tasks = [asyncio.ensure_future(b.run_blocking(work, i)) for i in range(n)]
            for _ in range(n):
                assert await asyncio.to_thread(started.acquire, True, WAIT)
            wakeups = _count_threadsafe_calls(loop)
            release.set()
            # Hold the loop (on purpose) until every call has finished, so all
            # of them finish while no drain can run.
            deadline = time.monotonic() + WAIT
            while b.pool().busy and time.monotonic() < deadline:
                time.sleep(0.001)
            assert b.pool().busy == 0
            assert await asyncio.gather(*tasks) == list(range(n))
            assert len(wakeups) == 1, f"{len(wakeups)} wake-ups for {n} calls"

    asyncio.run(main())


def test_a_wake_up_after_its_loop_closed_is_dropped() -> None:
    """A worker finishing a call abandoned by a closed loop raises nothing."""
    loop = asyncio.new_event_loop()
    fut = loop.create_future()
    wakeups = _await_job._Wakeups(loop)
    loop.close()
    wakeups.notifier(fut)()  # what the worker calls
    assert not fut.done()


def test_each_loop_of_a_thread_gets_its_own_wake_ups() -> None:
    """A new loop in the same thread is not woken through the last one's."""
    seen: list[object] = []

    async def call() -> int:
        seen.append(_await_job._wakeups(asyncio.get_running_loop()))
        with Bridge(max_workers=1) as b:
            return await b.run_blocking(int, "7")

    assert asyncio.run(call()) == 7
    assert asyncio.run(call()) == 7
    first, second = seen
    assert first is not second


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_starts_with_no_wake_ups_of_the_parent() -> None:
    script = textwrap.dedent(
        """
        import asyncio, os, sys, warnings
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads
        import syncbridge
        from syncbridge._core import _await_job

        async def main():
            return await syncbridge.run_blocking(int, "3")

        assert asyncio.run(main()) == 3
        assert _await_job._here.current is not None
        pid = os.fork()
        if pid == 0:
            ok = _await_job._here.current is None and asyncio.run(main()) == 3
            os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
        sys.exit(os.waitstatus_to_exitcode(status))
        """
    )
    result = run_script(script, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


# -- one count and one pre-start check per call, with or without a timeout ----


@pytest.mark.anyio
async def test_a_zero_timeout_never_hands_the_call_to_a_worker(
    anyio_backend: str,
) -> None:
    ran: list[str] = []
    with Bridge() as b:
        pool = b._registry.worker_threads
        submitted: list[object] = []
        real_submit = pool._submit

        def counting_submit(job: Any, bounded: bool = True) -> None:
            submitted.append(job)
            real_submit(job, bounded)

        pool._submit = counting_submit  # type: ignore[method-assign]
        call = syncbridge.to_async(ran.append, bridge=b, timeout=0)
        with pytest.raises(SyncBridgeTimeout):
            await call("ran")
        assert (submitted, ran) == ([], [])
        stats = pool.stats()
        assert (stats.calls, stats.timeouts, stats.cancellations) == (1, 1, 0)


@pytest.mark.anyio
async def test_a_scope_cancelled_while_a_timed_out_call_is_waited_for_wins(
    anyio_backend: str,
) -> None:
    """The deadline passes, then, while the call is waited for, its scope is cancelled.

    The awaiter gets the cancellation, not the timeout, and the call is
    counted cancelled: a cancellation is never turned into an exception the
    caller might catch and carry on from.
    """
    flagged, release = threading.Event(), threading.Event()
    with Bridge() as b:

        @syncbridge.to_async(timeout=0.01, abandon_on_cancel=False, bridge=b)
        def slow() -> None:
            deadline = time.monotonic() + WAIT
            while time.monotonic() < deadline:  # until the deadline flags it
                try:
                    syncbridge.check_cancelled()
                except syncbridge.WorkerCancelled:
                    flagged.set()
                    release.wait(WAIT)
                    return
                time.sleep(0.001)

        ended: list[type[BaseException]] = []

        async def awaiter() -> None:
            try:
                await slow()
            except BaseException as exc:
                ended.append(type(exc))
                raise

        async with anyio.create_task_group() as tg:
            tg.start_soon(awaiter)
            assert await anyio.to_thread.run_sync(flagged.wait, WAIT)
            tg.cancel_scope.cancel()
            release.set()
        assert ended == [anyio.get_cancelled_exc_class()]
        stats = b.pool().stats()
        assert (stats.calls, stats.cancellations, stats.timeouts) == (1, 1, 0)


def test_max_wait_spares_a_call_nested_in_one_holding_a_slot_of_its_pool() -> None:
    """Such a call may run in its ancestor's slot: max_wait never refuses it (#25).

    It applies otherwise, unless the call started or its timeout comes first.
    """
    import contextvars
    from queue import SimpleQueue

    from syncbridge import WorkerPool
    from syncbridge._core._delegate import delegates, lend
    from syncbridge._core._jobs import Job, JobState

    pool, other = WorkerPool("db", 1, max_wait=0.5), WorkerPool("other", 1)
    job = Job(int, (), {}, contextvars.copy_context(), None, pool)
    at = _await_job._max_wait_at  # pyright: ignore[reportPrivateUsage]
    try:
        assert at(pool, job, 100.0, None) == (100.5, 0.5)
        assert at(pool, job, 100.0, 100.5) is None  # the timeout comes first: it wins
        assert at(pool, job, 100.0, 101.0) == (100.5, 0.5)

        def nested(lender: WorkerPool) -> object:
            delegates.set((lend(lender, SimpleQueue(), None, []),))
            return at(pool, job, 100.0, None)

        assert contextvars.copy_context().run(nested, pool) is None
        assert contextvars.copy_context().run(nested, other) == (100.5, 0.5)
        job.state = JobState.RUNNING
        assert at(pool, job, 100.0, None) is None
    finally:
        pool.close()
        other.close()
