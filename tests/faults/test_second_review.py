"""Paths an adversarial review of the new core broke (#11), each now a spec.

Every test here failed on the first rewrite of the core (27b6755) and passes now.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import textwrap
import threading
import time
import warnings
from typing import TYPE_CHECKING

import anyio
import pytest

import syncbridge
from _scripts import run_script
from syncbridge import Bridge, BridgeClosed

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable
    from typing import Any

pytestmark = pytest.mark.faults

BOUND = 10.0


@pytest.mark.anyio
@pytest.mark.parametrize("lane", [True, False], ids=["lane", "one-slot-pool"])
async def test_to_sync_cm_exit_nested_through_the_lane_never_deadlocks(
    anyio_backend: str, lane: bool
) -> None:
    """__aexit__ needing the slot its own blocked caller holds gets it lent."""
    b = Bridge(max_workers=1, shutdown_grace=0.5)
    log: list[str] = []

    def wrap(fn: Callable[..., object]) -> Callable[..., object]:
        return syncbridge.to_async(fn, thread_sensitive=lane, bridge=b)

    inner = wrap(log.append)

    @contextlib.asynccontextmanager
    async def acm() -> AsyncIterator[None]:
        await inner("enter")  # type: ignore[misc]
        try:
            yield
        finally:
            await inner("exit")  # type: ignore[misc]

    def outer() -> None:
        with syncbridge.to_sync_cm(acm()):
            log.append("body")

    try:
        with anyio.fail_after(BOUND):
            await wrap(outer)()  # type: ignore[misc]
        assert log == ["enter", "body", "exit"]
    finally:
        await anyio.to_thread.run_sync(b.close)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_child_forked_in_a_nested_call_uses_no_parent_thread() -> None:
    """The child's full pool queues its job instead of offering it to a parent thread.

    The forking thread's context carries its parent's chain of blocked callers;
    none of them exists in the child.
    """
    script = textwrap.dedent(
        """
        import asyncio, os, threading, time
        from syncbridge import Bridge
        b = Bridge(max_workers=1, shutdown_grace=0.5)
        inside = peak = 0
        lock = threading.Lock()

        def probe():
            global inside, peak
            with lock:
                inside += 1
                peak = max(peak, inside)
            time.sleep(0.05)
            with lock:
                inside -= 1

        def in_child():
            async def main():
                await asyncio.wait_for(
                    asyncio.gather(*(b.run_blocking(probe) for _ in range(3))), 5
                )
            try:
                asyncio.run(main())
            except BaseException as exc:
                print("child failed:", repr(exc), flush=True)
                os._exit(3)
            # A worker gives its slot back just after waking its awaiter.
            deadline = time.monotonic() + 5
            while b.pool().busy and time.monotonic() < deadline:
                time.sleep(0.001)
            os._exit(0 if peak == 1 and b.pool().busy == 0 else 4)

        def forks():
            pid = os.fork()
            if pid == 0:
                in_child()  # in the forking thread: its context is inherited
            return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])

        async def g():
            return await b.run_blocking(forks)

        def blocked():  # a worker blocked in sync_call_async: a delegate
            return b.sync_call_async(g)

        async def main():
            return await b.run_blocking(blocked)

        print("rc", b.sync_call_async(main), flush=True)
        b.close()
        """
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        done = run_script(
            script, timeout=60, flags=["-W", "ignore::DeprecationWarning"]
        )
    assert "rc 0" in done.stdout, (done.stdout, done.stderr[-2000:])


@pytest.mark.anyio
async def test_persistent_thread_start_failures_fail_each_call_without_recursion(
    anyio_backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """2,000 queued calls, and no thread can start: every caller gets an answer."""
    b = Bridge(max_workers=1, shutdown_grace=0.5)
    start = threading.Thread.start
    release = threading.Event()
    started = threading.Event()

    def hold() -> None:
        started.set()
        release.wait(BOUND)

    outcomes: list[str] = []

    async def one() -> None:
        try:
            await b.run_blocking(int)
            outcomes.append("ok")
        except RuntimeError:
            outcomes.append("refused")

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(b.run_blocking, hold)
            await anyio.to_thread.run_sync(started.wait, BOUND)
            for _ in range(2000):
                tg.start_soon(one)
            with anyio.fail_after(BOUND):
                while b.pool().waiting < 2000:
                    await anyio.sleep(0.01)

            def refuse(self: threading.Thread) -> None:
                if self.name.startswith("syncbridge-"):
                    raise RuntimeError("can't start new thread")
                start(self)

            monkeypatch.setattr(threading.Thread, "start", refuse)
            b.max_workers = 2  # one more slot: its start fails, and so on
            monkeypatch.undo()
            release.set()
        assert len(outcomes) == 2000
        assert b.pool().busy == 0
        assert b.pool().waiting == 0
    finally:
        release.set()
        await anyio.to_thread.run_sync(b.close)


def test_a_second_close_waits_until_every_caller_has_an_answer() -> None:
    b = Bridge(shutdown_grace=0.3)
    answered = threading.Event()
    stop = threading.Event()

    async def stubborn() -> None:
        while not stop.is_set():
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                pass

    def caller() -> None:
        try:
            b.sync_call_async(stubborn)
        except BridgeClosed:
            answered.set()

    threading.Thread(target=caller, daemon=True).start()
    deadline = time.monotonic() + BOUND
    while b._portal.pending_calls == 0 and time.monotonic() < deadline:
        time.sleep(0.001)
    calls = list(b._portal._calls)
    assert len(calls) == 1
    first = threading.Thread(target=b.close)
    first.start()
    try:
        while not b.closed and time.monotonic() < deadline:
            time.sleep(0.001)
        b.close()  # the second one, while the first is still closing
        # "Answered" is the call's outcome being set; the caller's thread then
        # wakes on its own schedule, so its event is only awaited afterwards.
        assert calls[0].done, "the second close() returned before the caller had"
        assert answered.wait(BOUND)
    finally:
        stop.set()
        first.join(BOUND)


@pytest.mark.anyio
async def test_a_cancelled_worker_still_runs_its_cleanup_through_the_bridge(
    anyio_backend: str,
) -> None:
    """to_sync_cm's exit and sync_iter's close run after the awaiter is cancelled."""
    log: list[str] = []

    @contextlib.asynccontextmanager
    async def transaction() -> AsyncIterator[None]:
        try:
            yield
        finally:
            log.append("aexit ran")

    async def rows() -> AsyncIterator[int]:
        try:
            for i in range(10):
                yield i
        finally:
            log.append("agen finally ran")

    def work() -> None:
        it = syncbridge.sync_iter(rows())
        try:
            with syncbridge.to_sync_cm(transaction()):
                next(it)
                while True:
                    time.sleep(0.02)  # blocking work, stopped by check_cancelled
                    syncbridge.check_cancelled()
        finally:
            it.close()

    with anyio.move_on_after(0.2):
        await syncbridge.to_async(work, abandon_on_cancel=False)()
    assert log == ["aexit ran", "agen finally ran"]


def test_an_executor_thread_blocked_in_a_call_never_holds_up_exit() -> None:
    """Whatever the import order: concurrent.futures' exit hook runs after ours."""
    script = textwrap.dedent(
        """
        import asyncio
        import syncbridge
        from concurrent.futures import ThreadPoolExecutor
        ex = ThreadPoolExecutor(1)
        started = __import__("threading").Event()
        def blocked():
            started.set()
            try:
                syncbridge.sync_call_async(asyncio.sleep, 3600)
            except syncbridge.BridgeClosed:
                print("answered", flush=True)
        ex.submit(blocked)
        started.wait(5)
        """
    )
    start = time.monotonic()
    done = run_script(script)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "answered" in done.stdout
    assert time.monotonic() - start < 15


def test_gather_child_task_cancelled_by_someone_else_is_its_outcome() -> None:
    """As asyncio.gather: [CancelledError(), 2], the others not cancelled."""

    async def main() -> None:
        async def slow() -> int:
            await asyncio.sleep(0.2)
            return 2

        loop = asyncio.get_running_loop()

        async def child() -> None:
            task = asyncio.current_task()
            assert task is not None
            loop.call_later(0.05, task.cancel)  # another component cancels it
            await asyncio.sleep(10)

        results = await syncbridge.gather_with_timeout(
            child(), slow(), timeout=5.0, return_exceptions=True
        )
        assert isinstance(results[0], asyncio.CancelledError)
        assert results[1] == 2

    asyncio.run(main())


@pytest.mark.skipif(
    sys.version_info < (3, 11), reason="3.10 cannot tell a cancel from a raise"
)
def test_a_coroutines_own_cancelled_error_reaches_the_caller_unchanged() -> None:
    error = asyncio.CancelledError("the upstream request was cancelled")

    async def raises() -> None:
        raise error

    with Bridge() as b, pytest.raises(asyncio.CancelledError) as info:
        b.sync_call_async(raises)
    assert info.value is error


@pytest.mark.anyio
async def test_async_with_on_the_bridges_own_portal_loop_is_refused(
    anyio_backend: str,
) -> None:
    b = Bridge(shutdown_grace=0.3)

    async def exit_here() -> str:
        try:
            async with b:
                pass
        except syncbridge.DeadlockError:
            return "refused"
        return "closed"

    try:
        future = b.start_soon(exit_here)  # always on the portal loop
        outcome = await anyio.to_thread.run_sync(future.result, BOUND)
        assert outcome == "refused"
        assert not b.closed
    finally:
        await anyio.to_thread.run_sync(b.close)


@pytest.mark.anyio
async def test_a_cm_background_task_reaches_the_lane_its_blocked_caller_holds(
    anyio_backend: str,
) -> None:
    """A task started in __aenter__ outlives that call; the lane is still lent to it."""
    b = Bridge(shutdown_grace=0.3)
    lookup = syncbridge.to_async(lambda x: x * 2, thread_sensitive=True, bridge=b)

    @contextlib.asynccontextmanager
    async def session() -> AsyncIterator[anyio.abc.ObjectReceiveStream[int]]:
        send, receive = anyio.create_memory_object_stream[int](1)

        async def reader() -> None:
            await send.send(await lookup(21))

        async with send, receive, anyio.create_task_group() as tg:
            tg.start_soon(reader)
            yield receive
            tg.cancel_scope.cancel()

    def view() -> int:
        got: list[int] = []
        with syncbridge.to_sync_cm(session()) as receive:

            async def get() -> int:
                with anyio.fail_after(BOUND):
                    return await receive.receive()

            got.append(b.sync_call_async(get))
        return got[0]

    try:
        with anyio.fail_after(BOUND):
            assert (
                await syncbridge.to_async(view, thread_sensitive=True, bridge=b)() == 42
            )
    finally:
        await anyio.to_thread.run_sync(b.close)


@pytest.mark.anyio
async def test_a_cm_background_task_reaches_the_lane_between_its_callers_calls(
    anyio_backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The task's lane call comes while its blocked caller runs sync code between
    two bridge calls (no call of its to lend the lane to): the caller's next
    call, which waits for that task, still runs it on the lane's thread."""
    b = Bridge(shutdown_grace=0.3)
    lookup = syncbridge.to_async(lambda x: x * 2, thread_sensitive=True, bridge=b)
    entered = threading.Event()
    queued = threading.Event()
    lane = b.thread_sensitive_pool
    submit = lane._submit

    def submit_and_tell(job: Any, bounded: bool = True) -> None:
        submit(job, bounded)
        if lane.waiting:  # behind the slot the blocked caller holds
            queued.set()

    monkeypatch.setattr(lane, "_submit", submit_and_tell)

    @contextlib.asynccontextmanager
    async def session() -> AsyncIterator[anyio.abc.ObjectReceiveStream[int]]:
        send, receive = anyio.create_memory_object_stream[int](1)

        async def reader() -> None:
            await anyio.to_thread.run_sync(entered.wait, BOUND)
            await send.send(await lookup(21))

        async with send, receive, anyio.create_task_group() as tg:
            tg.start_soon(reader)
            yield receive
            tg.cancel_scope.cancel()

    def view() -> int:
        got: list[int] = []
        with syncbridge.to_sync_cm(session()) as receive:
            entered.set()
            assert queued.wait(BOUND), "the task's lane call was not queued"

            async def get() -> int:
                with anyio.fail_after(BOUND):
                    return await receive.receive()

            got.append(b.sync_call_async(get))
        return got[0]

    try:
        with anyio.fail_after(2 * BOUND):
            assert (
                await syncbridge.to_async(view, thread_sensitive=True, bridge=b)() == 42
            )
    finally:
        await anyio.to_thread.run_sync(b.close)


def test_a_slot_a_failed_start_gives_back_admits_the_next_queued_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With a worker still busy, the queued call runs in the freed slot."""
    b = Bridge(max_workers=2, shutdown_grace=0.3)
    pool = b.pool()
    queued_ran = threading.Event()
    fail_next = threading.Event()
    starting = threading.Event()
    start = threading.Thread.start

    def start_or_fail_once(self: threading.Thread) -> None:
        if self.name.startswith("syncbridge-") and fail_next.is_set():
            fail_next.clear()
            starting.set()
            deadline = time.monotonic() + BOUND
            while pool.waiting < 1 and time.monotonic() < deadline:
                time.sleep(0.001)  # polled: fail once the other call has queued
            raise RuntimeError("can't start new thread")
        start(self)

    monkeypatch.setattr(threading.Thread, "start", start_or_fail_once)

    async def main() -> None:
        holder = asyncio.ensure_future(b.run_blocking(queued_ran.wait, BOUND))
        while pool.busy < 1:
            await asyncio.sleep(0.005)
        fail_next.set()
        loop = asyncio.get_running_loop()
        failing = loop.run_in_executor(None, asyncio.run, b.run_blocking(int))
        assert await asyncio.to_thread(starting.wait, BOUND)  # its slot is taken
        queued = asyncio.ensure_future(b.run_blocking(queued_ran.set))
        with pytest.raises(RuntimeError, match="can't start"):
            await failing
        assert await asyncio.wait_for(holder, BOUND) is True
        await asyncio.wait_for(queued, BOUND)

    try:
        asyncio.run(main())
    finally:
        queued_ran.set()
        monkeypatch.undo()
        b.close()
