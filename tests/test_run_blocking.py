from __future__ import annotations

import asyncio
import contextvars
import pickle
import sys
import threading
import traceback

import anyio
import pytest

import syncbridge
from _spies import record_submits
from syncbridge import Bridge, WorkerCancelled

pytestmark = pytest.mark.anyio

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id")


class Boom(Exception):
    pass


def _raise_boom(exc: Boom) -> None:
    raise exc


def _set_then_wait(started: threading.Event, release: threading.Event) -> bool:
    started.set()
    return release.wait(10)


async def test_run_blocking_returns_result_from_worker_thread(bridge: Bridge) -> None:
    main = threading.get_ident()
    ident = await bridge.run_blocking(threading.get_ident)
    assert ident != main
    assert await bridge.run_blocking(sum, [1, 2, 3]) == 6


async def test_run_blocking_forwards_args_and_kwargs(bridge: Bridge) -> None:
    def f(a: int, /, b: int, *, timeout: int, pool: str) -> tuple[int, int, int, str]:
        return a, b, timeout, pool

    # keyword names that are options elsewhere reach func untouched
    assert await bridge.run_blocking(f, 1, 2, timeout=3, pool="x") == (1, 2, 3, "x")


async def test_run_blocking_module_helper_uses_default_bridge() -> None:
    assert await syncbridge.run_blocking(pow, 2, 10) == 1024


async def test_run_blocking_reraises_same_exception_with_traceback(
    bridge: Bridge,
) -> None:
    original = Boom("from the worker")
    with pytest.raises(Boom) as info:
        await bridge.run_blocking(_raise_boom, original)
    assert info.value is original
    frames = [f.name for f in traceback.extract_tb(info.value.__traceback__)]
    assert "_raise_boom" in frames


async def test_run_blocking_copies_contextvars(bridge: Bridge) -> None:
    request_id.set("r-1")

    def read_and_change() -> str:
        seen = request_id.get()
        request_id.set("changed in thread")
        return seen

    assert await bridge.run_blocking(read_and_change) == "r-1"
    assert request_id.get() == "r-1"  # the change did not flow back


async def test_run_blocking_never_blocks_the_loop(bridge: Bridge) -> None:
    release = threading.Event()
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while not release.is_set():
            ticks += 1
            await anyio.sleep(0.001)

    async def watcher() -> None:
        while ticks < 5:
            await anyio.sleep(0.001)
        release.set()  # only reachable if the loop kept running meanwhile

    async with anyio.create_task_group() as tg:
        tg.start_soon(ticker)
        tg.start_soon(watcher)
        assert await bridge.run_blocking(release.wait, 10) is True
    assert ticks >= 5


async def test_run_blocking_outside_event_loop_task_is_clear_error() -> None:
    def sync_caller() -> None:
        coro = syncbridge.run_blocking(int)
        with pytest.raises(RuntimeError, match="running asyncio or trio event loop"):
            coro.send(None)

    await anyio.to_thread.run_sync(sync_caller)


async def test_run_blocking_cancel_is_prompt_and_slot_stays_taken() -> None:
    started = threading.Event()
    release = threading.Event()
    with Bridge(max_workers=1) as b:
        with anyio.move_on_after(0.05) as scope:
            await b.run_blocking(_set_then_wait, started, release)
        assert scope.cancelled_caught
        assert started.is_set()
        pool = b.pool()
        assert pool.busy == 1, "the abandoned thread must keep its slot"

        second_started = threading.Event()
        with anyio.move_on_after(0.1):
            await b.run_blocking(second_started.set)
        assert not second_started.is_set(), "capacity 1 was exceeded"
        release.set()
        assert await b.run_blocking(lambda: 7) == 7


async def test_run_blocking_queued_call_cancelled_never_starts() -> None:
    release = threading.Event()
    ran = threading.Event()
    with Bridge(max_workers=1) as b:
        async with anyio.create_task_group() as tg:
            tg.start_soon(b.run_blocking, release.wait, 10)
            while b.pool().busy < 1:
                await anyio.sleep(0.001)
            with anyio.move_on_after(0.02):
                await b.run_blocking(ran.set)
            assert b.pool().waiting == 0
            release.set()
        await b.run_blocking(int)  # the queue has moved on past the withdrawn call
        assert not ran.is_set()


async def test_check_cancelled_raises_after_awaiting_task_cancelled(
    bridge: Bridge,
) -> None:
    started = threading.Event()
    outcome: list[BaseException | None] = []
    finished = threading.Event()

    def long_work() -> None:
        started.set()
        try:
            for _ in range(1000):
                syncbridge.check_cancelled()
                release.wait(0.01)
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)
            raise
        finally:
            finished.set()

    release = threading.Event()
    with anyio.move_on_after(5) as scope:
        async with anyio.create_task_group() as tg:
            tg.start_soon(bridge.run_blocking, long_work)
            await anyio.to_thread.run_sync(started.wait)
            tg.cancel_scope.cancel()
    assert not scope.cancelled_caught
    assert await anyio.to_thread.run_sync(finished.wait, 5)
    assert isinstance(outcome[0], WorkerCancelled)


def test_check_cancelled_is_a_no_op_outside_worker_threads() -> None:
    syncbridge.check_cancelled()


async def test_run_blocking_timeout_with_fail_after(bridge: Bridge) -> None:
    release = threading.Event()
    with pytest.raises(TimeoutError):
        with anyio.fail_after(0.05):
            await bridge.run_blocking(release.wait, 10)
    release.set()


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_run_blocking_asyncio_timeout_and_task_cancel(bridge: Bridge) -> None:
    release = threading.Event()
    if hasattr(asyncio, "timeout"):
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.05):
                await bridge.run_blocking(release.wait, 10)
    task = asyncio.ensure_future(bridge.run_blocking(release.wait, 10))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    release.set()


async def test_wait_mode_waits_for_thread_before_cancellation_propagates() -> None:
    started = threading.Event()
    finished = threading.Event()
    release = threading.Event()

    def work() -> None:
        started.set()
        release.wait(10)
        finished.set()

    with Bridge(abandon_on_cancel=False) as b:
        scope = anyio.CancelScope()
        call_ended = anyio.Event()

        async def call() -> None:
            with scope:
                await b.run_blocking(work)
            call_ended.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(call)
            await anyio.to_thread.run_sync(started.wait)
            scope.cancel()
            with anyio.move_on_after(0.05):
                await call_ended.wait()
            assert not call_ended.is_set(), "cancellation did not wait for the thread"
            release.set()
            await call_ended.wait()
        assert finished.is_set()


@pytest.mark.stress
async def test_run_blocking_concurrency_never_exceeds_capacity() -> None:
    lock = threading.Lock()
    running = 0
    peak = 0

    def work() -> None:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        threading.Event().wait(0.001)
        with lock:
            running -= 1

    with Bridge(max_workers=3) as b:
        async with anyio.create_task_group() as tg:
            for i in range(200):
                if i % 7 == 0:
                    # some callers give up early: their threads keep their slots
                    async def impatient() -> None:
                        with anyio.move_on_after(0):
                            await b.run_blocking(work)

                    tg.start_soon(impatient)
                else:
                    tg.start_soon(b.run_blocking, work)
        assert b.pool().threads <= 3
    assert 1 <= peak <= 3


@pytest.mark.skipif(
    sys.version_info < (3, 11), reason="Task.cancelling() is new in Python 3.11"
)
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize("timeout", [None, 60.0], ids=["no-timeout", "timeout"])
async def test_a_task_cancelled_before_its_call_never_hands_it_to_a_worker(
    timeout: float | None,
) -> None:
    """``task.cancel()`` not yet delivered: the call is cancelled, never run."""
    ran: list[str] = []
    with Bridge() as b:
        pool = b._registry.worker_threads
        submitted = record_submits(pool)
        call = syncbridge.to_async(ran.append, bridge=b, timeout=timeout)
        task = asyncio.current_task()
        assert task is not None
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call("ran")
        task.uncancel()  # type: ignore[attr-defined,unused-ignore]  # 3.11+
        assert submitted == [], "a cancelled task handed its call to a worker"
        assert ran == []
        stats = pool.stats()
        assert (stats.calls, stats.cancellations) == (1, 1)


TIMEOUT = 0.2  # a call's deadline; measured times are asserted from below only
TICK = 0.05  # a timer may run this early (a coarse clock, trio's own clock)


async def test_a_timeout_while_queued_says_so_with_the_pools_state() -> None:
    started, release = threading.Event(), threading.Event()

    def hold() -> None:
        started.set()
        release.wait(10)

    async with Bridge(pools={"one": 1}) as b, anyio.create_task_group() as tg:
        tg.start_soon(syncbridge.to_async(hold, pool="one", bridge=b))
        await anyio.to_thread.run_sync(started.wait, 10)
        queued = syncbridge.to_async(
            lambda: None, pool="one", timeout=TIMEOUT, bridge=b
        )
        with pytest.raises(syncbridge.SyncBridgeTimeout) as caught:
            await queued()
        release.set()
    error = caught.value
    assert (error.queued, error.ran) == (True, None)
    assert error.pool is not None
    assert error.pool == "one"  # the user's name for it
    assert error.waited is not None
    assert error.waited >= TIMEOUT - TICK
    message = str(error)
    assert "<lambda>() did not finish within 0.2 s" in message
    assert f"still queued for a slot of pool {error.pool!r}" in message
    assert "never ran (1 of 1 slots busy, 0 other calls waiting)" in message
    assert "raise the pool's capacity" in message
    assert "max_waiting=" in message


async def test_a_timeout_while_running_says_for_how_long() -> None:
    release = threading.Event()
    async with Bridge(pools={"one": 1}) as b:
        call = syncbridge.to_async(release.wait, pool="one", timeout=TIMEOUT, bridge=b)
        with pytest.raises(syncbridge.SyncBridgeTimeout) as caught:
            await call(10)
        release.set()
    error = caught.value
    assert error.queued is False
    assert error.pool is not None
    assert error.pool == "one"
    assert error.ran is not None
    assert error.waited is not None
    assert error.ran >= TIMEOUT - TICK - error.waited
    assert "wait() did not finish within 0.2 s: it had been running for" in str(error)
    assert f"in pool {error.pool!r}, after waiting" in str(error)


def test_a_portal_timeout_has_no_pool_state() -> None:
    async def hang() -> None:
        await anyio.sleep(10)

    with Bridge() as b, pytest.raises(syncbridge.SyncBridgeTimeout) as caught:
        syncbridge.to_sync(hang, timeout=0.05, bridge=b)()
    error = caught.value
    assert (error.queued, error.waited, error.ran, error.pool) == (None,) * 4
    assert str(error).endswith("hang() did not finish within 0.05 s")
    assert pickle.loads(pickle.dumps(error)).pool is None


async def test_a_timeout_error_pickles_with_its_attributes() -> None:
    release = threading.Event()
    async with Bridge() as b:
        call = syncbridge.to_async(release.wait, timeout=0.05, bridge=b)
        with pytest.raises(syncbridge.SyncBridgeTimeout) as caught:
            await call(10)
        release.set()
    copy = pickle.loads(pickle.dumps(caught.value))
    assert (copy.queued, copy.ran) == (False, caught.value.ran)
    assert copy.pool == caught.value.pool is not None
    assert str(copy) == str(caught.value)
