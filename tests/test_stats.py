"""Bridge.stats(): exact under a controlled load, immutable, both directions."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import gc
import json
import os
import threading
import time
import warnings
from typing import Any

import anyio
import pytest

from syncbridge import Bridge, BridgeClosed, BridgeStats, PoolStats, to_async

WAIT = 10.0  # seconds; only reached when a test is failing


async def wait_until(check: Any) -> None:
    with anyio.fail_after(WAIT):
        while not check():
            await anyio.sleep(0.005)


@pytest.mark.anyio
@pytest.mark.parametrize("n", [1, 3, 4, 9])
async def test_busy_and_waiting_are_exact_under_blocked_calls(n: int) -> None:
    capacity = 4
    release = threading.Event()
    async with Bridge(max_workers=capacity) as b:
        async with anyio.create_task_group() as tg:
            for _ in range(n):
                tg.start_soon(b.run_blocking, release.wait, WAIT)
            await wait_until(lambda: b.stats().pools["default"].calls == n)
            await wait_until(lambda: b.stats().pools["default"].busy == min(n, 4))
            pool = b.stats().pools["default"]
            assert pool.capacity == capacity
            assert pool.busy == min(n, capacity)
            assert pool.waiting == max(0, n - capacity)
            assert pool.threads == min(n, capacity)
            assert pool.completed == 0
            release.set()
        # A worker gives its slot back just after waking its awaiter.
        await wait_until(lambda: b.stats().pools["default"].busy == 0)
        done = b.stats()
        assert done.pools["default"].completed == n
        assert done.pools["default"].waiting == 0
        assert done.calls == done.completed == n


@pytest.mark.anyio
async def test_outcomes_are_counted_once_each() -> None:
    release = threading.Event()

    def fail() -> None:
        raise ValueError("boom")

    async with Bridge(max_workers=2, pools={"db": 1}) as b:
        assert await b.run_blocking(lambda: 1) == 1
        with pytest.raises(ValueError, match="boom"):
            await b.run_blocking(fail)
        # A call cancelled while running is abandoned: it still holds its slot.
        with anyio.move_on_after(0.05):
            await b.run_blocking(release.wait, WAIT)
        stats = b.stats()
        default = stats.pools["default"]
        assert (default.calls, default.completed, default.errors) == (3, 1, 1)
        assert default.cancellations == 1
        assert default.abandoned == stats.abandoned == 1
        assert default.busy == 1
        release.set()
        await wait_until(lambda: b.stats().pools["default"].busy == 0)
        assert b.stats().abandoned == 0
        # Named pools and the thread-sensitive lane are counted on their own.
        await to_async(lambda: 2, pool="db", bridge=b)()
        await to_async(lambda: 3, thread_sensitive=True, bridge=b)()
        stats = b.stats()
        assert stats.pools["db"].completed == 1
        assert stats.pools["thread_sensitive"].completed == 1
        assert stats.calls == 5
        assert stats.completed == 3


@pytest.mark.anyio
async def test_a_call_queued_then_cancelled_counts_as_a_cancellation() -> None:
    release = threading.Event()
    async with Bridge(max_workers=1) as b, anyio.create_task_group() as tg:
        tg.start_soon(b.run_blocking, release.wait, WAIT)
        await wait_until(lambda: b.stats().pools["default"].busy == 1)
        with anyio.move_on_after(0.05):
            await b.run_blocking(lambda: None)  # queued behind the first
        pool = b.stats().pools["default"]
        assert (pool.cancellations, pool.waiting, pool.abandoned) == (1, 0, 0)
        release.set()


def test_portal_calls_and_their_outcomes() -> None:
    async def ok() -> int:
        return 1

    async def fail() -> None:
        raise KeyError("k")

    hold = threading.Event()

    async def blocked() -> None:
        await anyio.to_thread.run_sync(hold.wait, WAIT)

    with Bridge() as b:
        before = b.stats()
        assert before.portal.running is False
        assert before.portal_lag == 0.0
        assert b.sync_call_async(ok) == 1
        with pytest.raises(KeyError):
            b.sync_call_async(fail)
        futures = [b.start_soon(blocked) for _ in range(3)]
        deadline = time.monotonic() + WAIT
        while b.stats().portal_tasks != 3 and time.monotonic() < deadline:
            time.sleep(0.005)
        assert b.stats().portal.tasks == 3
        futures[0].cancel()
        hold.set()
        for f in futures[1:]:
            f.result(WAIT)
        while b.stats().portal_tasks and time.monotonic() < deadline:
            time.sleep(0.005)
        portal = b.stats().portal
        assert portal.running is True
        assert (portal.calls, portal.completed, portal.errors) == (5, 3, 1)
        assert portal.cancellations == 1
        assert b.stats().calls == 5


def test_portal_lag_grows_while_the_loop_is_blocked() -> None:
    entered = threading.Event()
    release = threading.Event()

    async def block_the_loop() -> None:
        entered.set()
        release.wait(WAIT)  # blocks the portal loop on purpose

    with Bridge() as b:
        b.sync_call_async(anyio.sleep, 0)  # start the portal
        b.stats()
        deadline = time.monotonic() + WAIT
        while b.stats().portal_lag == 0.0 and time.monotonic() < deadline:
            time.sleep(0.001)  # let the first probe run: a lag was measured
        future = b.start_soon(block_the_loop)
        assert entered.wait(WAIT)
        # stats() posts a probe (at most one per 10 ms) that the blocked loop
        # cannot run: the lag it reports grows with the time the probe waits.
        while b.stats().portal_lag < 0.05 and time.monotonic() < deadline:
            time.sleep(0.005)
        assert b.stats().portal_lag >= 0.05
        assert not future.done()  # the loop was still blocked all along
        release.set()
        future.result(WAIT)


def test_stats_are_immutable() -> None:
    with Bridge(pools={"db": 2}) as b:
        stats = b.stats()
        assert isinstance(stats, BridgeStats)
        assert isinstance(stats.pools["db"], PoolStats)
        with pytest.raises(dataclasses.FrozenInstanceError):
            stats.calls = 3  # type: ignore[misc]
        with pytest.raises(dataclasses.FrozenInstanceError):
            stats.pools["db"].busy = 3  # type: ignore[misc]
        with pytest.raises(TypeError):
            stats.pools["db"] = stats.pools["default"]  # type: ignore[index]
        assert set(stats.pools) == {"default", "thread_sensitive", "db"}


@pytest.mark.parametrize("name", ["default", "thread_sensitive"])
def test_a_named_pool_cannot_take_a_built_in_name(name: str) -> None:
    with pytest.raises(ValueError, match="names a built-in pool"):
        Bridge(pools={name: 2})


@pytest.mark.anyio
async def test_totals_stay_exact_under_many_threads_and_tasks() -> None:
    """Counters are bumped from many loops and threads at once: none is lost."""
    threads, per_thread, tasks = 8, 50, 200
    async with Bridge(max_workers=4) as b:

        def from_a_thread() -> None:
            async def one() -> int:
                return await b.run_blocking(lambda: 1)

            for _ in range(per_thread):
                anyio.run(one)

        workers = [threading.Thread(target=from_a_thread) for _ in range(threads)]
        for t in workers:
            t.start()
        async with anyio.create_task_group() as tg:
            for _ in range(tasks):
                tg.start_soon(b.run_blocking, lambda: 1)
        for t in workers:
            await anyio.to_thread.run_sync(t.join, WAIT)
        await wait_until(lambda: b.stats().pools["default"].busy == 0)
        pool = b.stats().pools["default"]
        assert pool.calls == pool.completed == threads * per_thread + tasks
        assert pool.waiting == 0


def test_a_timeout_inside_a_portal_call_is_counted_once() -> None:
    """The worker call's deadline is the pool's timeout; the portal call just failed."""
    import syncbridge

    async def calls_a_slow_worker(b: Bridge) -> None:
        await to_async(threading.Event().wait, timeout=0.01, bridge=b)(0.5)

    with Bridge() as b:
        with pytest.raises(syncbridge.SyncBridgeTimeout):
            b.sync_call_async(calls_a_slow_worker, b)
        stats = b.stats()
        assert stats.pools["default"].timeouts == 1
        assert (stats.portal.timeouts, stats.portal.errors) == (0, 1)
        assert stats.timeouts == 1
        with pytest.raises(syncbridge.SyncBridgeTimeout):
            syncbridge.to_sync(timeout=0.01, bridge=b)(anyio.sleep)(1)
        assert b.stats().portal.timeouts == 1


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_counts_afresh() -> None:
    with Bridge() as b:
        b.sync_call_async(anyio.sleep, 0)
        assert b.stats().calls == 1
        with warnings.catch_warnings():
            # 3.12+ may warn "This process ... is multi-threaded, use of fork()
            # may lead to deadlocks in the child" (3.15 does here): forking
            # while the bridge's threads run is what this test exercises.
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # the child: report through the exit status
            try:
                ok = b.stats().calls == 0 and b.sync_call_async(anyio.sleep, 0) is None
                ok = ok and b.stats().calls == b.stats().completed == 1
                os._exit(0 if ok else 1)
            finally:
                os._exit(2)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0


HOLD = 0.2  # seconds a phase lasts: measured, and only ever a lower bound


@pytest.mark.anyio
async def test_wait_and_busy_are_told_apart() -> None:
    """Pool of 1: a call holds the slot through two phases; another queues in the second.

    wait_seconds is the queued call's time in the queue (>= phase two);
    busy_seconds is slot time (>= both phases, the holder's). Swapped, or
    mixed, they would break ``busy - wait >= phase one``.
    """
    started, release = threading.Event(), threading.Event()

    def hold() -> None:
        started.set()
        release.wait(WAIT)

    async with Bridge(pools={"one": 1}) as b, anyio.create_task_group() as tg:
        one = to_async(hold, pool="one", bridge=b)
        tg.start_soon(one)
        await anyio.to_thread.run_sync(started.wait, WAIT)
        t0 = time.monotonic()  # the holder runs since before t0
        await anyio.sleep(HOLD)
        t1 = time.monotonic()
        tg.start_soon(to_async(lambda: None, pool="one", bridge=b))
        await wait_until(lambda: b.stats().pools["one"].waiting == 1)
        t2 = time.monotonic()  # queued since before t2
        await anyio.sleep(HOLD)
        t3 = time.monotonic()
        release.set()
    pool = b.stats().pools["one"]
    assert pool.completed == 2
    assert pool.wait_seconds >= t3 - t2
    assert pool.busy_seconds >= t3 - t0
    assert pool.busy_seconds - pool.wait_seconds >= t1 - t0
    # The holder started at once, the other waited at least HOLD.
    buckets = dict(pool.wait_buckets)
    assert buckets[0.001] == buckets[0.1] == 1
    assert buckets[float("inf")] == 2
    assert b.stats().wait_seconds == pool.wait_seconds
    assert b.stats().busy_seconds >= pool.busy_seconds


@pytest.mark.anyio
async def test_busy_seconds_counts_a_running_call_as_it_runs() -> None:
    """A long call shows in busy_seconds while it runs, and the total never dips."""
    started, release = threading.Event(), threading.Event()

    def hold() -> None:
        started.set()
        release.wait(WAIT)

    async with Bridge(max_workers=1) as b, anyio.create_task_group() as tg:
        tg.start_soon(b.run_blocking, hold)
        await anyio.to_thread.run_sync(started.wait, WAIT)
        t0 = time.monotonic()
        await anyio.sleep(HOLD)
        t1 = time.monotonic()
        running = b.stats().pools["default"].busy_seconds
        assert running >= t1 - t0
        release.set()
    done = b.stats().pools["default"].busy_seconds
    assert done >= running
    seen = [b.stats().pools["default"].busy_seconds for _ in range(3)]
    assert seen == sorted(seen)
    assert seen[0] >= done


@pytest.mark.anyio
async def test_a_withdrawn_call_counts_its_wait() -> None:
    release = threading.Event()
    async with Bridge(max_workers=1) as b, anyio.create_task_group() as tg:
        tg.start_soon(b.run_blocking, release.wait, WAIT)
        await wait_until(lambda: b.stats().pools["default"].busy == 1)
        start = time.monotonic()
        scope = anyio.CancelScope()
        tg.start_soon(_run_in, scope, b)
        await wait_until(lambda: b.stats().pools["default"].waiting == 1)
        t0 = time.monotonic()  # queued since before t0
        await anyio.sleep(HOLD)
        t1 = time.monotonic()
        scope.cancel()
        await wait_until(lambda: b.stats().pools["default"].cancellations == 1)
        pool = b.stats().pools["default"]
        assert pool.waiting == 0
        assert time.monotonic() - start >= pool.wait_seconds >= t1 - t0
        assert dict(pool.wait_buckets)[float("inf")] == 2
        release.set()


async def _run_in(scope: anyio.CancelScope, b: Bridge) -> None:
    with scope:
        await b.run_blocking(lambda: None)


@pytest.mark.anyio
async def test_calls_refused_at_close_count_their_wait() -> None:
    started, release = threading.Event(), threading.Event()

    def hold() -> None:
        started.set()
        release.wait(WAIT)

    b = Bridge(max_workers=1)
    refused = anyio.Event()

    async def expect_closed() -> None:
        with pytest.raises(BridgeClosed, match="still waiting for a worker"):
            await b.run_blocking(lambda: None)
        refused.set()

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(b.run_blocking, hold)
            await anyio.to_thread.run_sync(started.wait, WAIT)
            tg.start_soon(expect_closed)
            await wait_until(lambda: b.stats().pools["default"].waiting == 1)
            t0 = time.monotonic()
            await anyio.sleep(HOLD)
            t1 = time.monotonic()
            tg.start_soon(anyio.to_thread.run_sync, b.close)
            with anyio.fail_after(WAIT):
                await refused.wait()
            release.set()
    finally:
        release.set()
        b.close()
    pool = b.stats().pools["default"]
    assert pool.wait_seconds >= t1 - t0
    assert dict(pool.wait_buckets)[float("inf")] == 2


def test_as_dict_is_json_ready() -> None:
    async def ok() -> int:
        return 1

    with Bridge(pools={"db": 2}) as b:
        assert b.sync_call_async(ok) == 1
        b.sync_call_async(b.run_blocking, lambda: 1)
        stats = b.stats()
    plain = stats.as_dict()
    assert json.loads(json.dumps(plain, allow_nan=False)) == plain
    assert set(plain) == {f.name for f in dataclasses.fields(BridgeStats)}
    assert set(plain["pools"]) == set(stats.pools)
    default = plain["pools"]["default"]
    assert set(default) == {f.name for f in dataclasses.fields(PoolStats)}
    assert (default["calls"], default["completed"]) == (1, 1)
    assert default["wait_buckets"]["+Inf"] == 1
    assert list(default["wait_buckets"])[:2] == ["0.001", "0.005"]
    assert plain["portal"]["calls"] == 2
    assert plain["portal"]["busy_seconds"] == stats.portal.busy_seconds > 0
    assert plain["busy_seconds"] == stats.busy_seconds


def test_portal_busy_seconds_counts_task_seconds() -> None:
    async def take(seconds: float) -> float:
        start = time.monotonic()
        await anyio.sleep(seconds)
        return time.monotonic() - start

    with Bridge() as b:
        took = b.sync_call_async(take, HOLD)
        portal = b.stats().portal
        assert portal.busy_seconds >= took >= HOLD
        assert b.stats().busy_seconds >= portal.busy_seconds


@pytest.mark.anyio
async def test_an_executor_pool_times_its_calls() -> None:
    started, release = threading.Event(), threading.Event()

    def hold() -> None:
        started.set()
        release.wait(WAIT)

    with concurrent.futures.ThreadPoolExecutor(1) as executor:
        async with Bridge(executor=executor) as b, anyio.create_task_group() as tg:
            tg.start_soon(b.run_blocking, hold)
            await anyio.to_thread.run_sync(started.wait, WAIT)
            tg.start_soon(b.run_blocking, lambda: None)
            await wait_until(lambda: b.stats().pools["default"].waiting == 1)
            t0 = time.monotonic()
            await anyio.sleep(HOLD)
            t1 = time.monotonic()
            release.set()
        pool = b.stats().pools["default"]
        assert pool.completed == 2
        assert pool.wait_seconds >= t1 - t0
        assert pool.busy_seconds >= t1 - t0
        assert dict(pool.wait_buckets)[float("inf")] == 2


@pytest.mark.anyio
async def test_a_gone_executors_seconds_stay_in_the_bridges_totals() -> None:
    def take() -> float:
        start = time.monotonic()
        threading.Event().wait(HOLD)  # the measured work itself, not a sync
        return time.monotonic() - start

    async with Bridge() as b:
        with concurrent.futures.ThreadPoolExecutor(1) as ex:
            took = await to_async(take, executor=ex, bridge=b)()
            assert b.stats().busy_seconds >= took
        del ex
        gc.collect()
        stats = b.stats()
        assert set(stats.pools) == {"default", "thread_sensitive"}
        assert stats.busy_seconds >= took >= HOLD
