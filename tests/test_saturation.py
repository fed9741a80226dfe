"""Bounded queues that fail fast (#25): max_waiting and max_wait on a named pool.

A saturated pool refuses a call with PoolSaturated at once (it never ran),
instead of letting a backlog eat every caller's deadline. Each test runs on
asyncio and on trio. The only durations asserted are generous upper bounds
(a loaded 2-core machine): a refused caller is answered long before the
to_async(timeout=...) it also has.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

import anyio
import pytest

from syncbridge import (
    Bridge,
    PoolConfig,
    PoolSaturated,
    PoolStats,
    SyncBridgeTimeout,
    to_async,
)

if TYPE_CHECKING:
    from collections.abc import Callable

pytestmark = pytest.mark.anyio

WAIT = 10.0  # seconds; only reached when a test is failing
SLACK = 2.0  # how late past max_wait a refusal may come, on a loaded machine


def bounded(capacity: int, **bounds: float) -> Bridge:
    config: PoolConfig = {"capacity": capacity}
    config.update(bounds)  # type: ignore[typeddict-item]
    return Bridge(pools={"db": config}, shutdown_grace=2.0)


async def wait_until(check: Callable[[], bool]) -> None:
    with anyio.fail_after(WAIT):
        while not check():
            await anyio.sleep(0.002)


def ended(stats: PoolStats) -> int:
    return (
        stats.completed
        + stats.errors
        + stats.cancellations
        + stats.timeouts
        + stats.rejected
    )


class Blocker:
    """A blocking function that holds its slot until released; counts its starts."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.started = 0

    def __call__(self, x: int = 0) -> int:
        with self.lock:
            self.started += 1
        self.release.wait(WAIT)
        return x


async def test_a_call_finding_max_waiting_queued_is_refused_at_once() -> None:
    blocker = Blocker()
    async with bounded(1, max_waiting=2) as b:
        call = to_async(blocker, pool="db", bridge=b, timeout=30)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(call, 0)
                await wait_until(lambda: blocker.started == 1)
                tg.start_soon(call, 1)
                tg.start_soon(call, 2)
                await wait_until(lambda: b.pool("db").waiting == 2)
                with anyio.fail_after(WAIT), pytest.raises(PoolSaturated) as info:
                    await call(3)  # answered while the others still wait
                assert b.pool("db").waiting == 2
                blocker.release.set()
        finally:
            blocker.release.set()
    error = info.value
    assert (error.pool, error.option, error.limit) == ("db", "max_waiting", 2)
    assert (error.capacity, error.busy, error.waiting) == (1, 1, 2)
    message = str(error)
    assert message.startswith("to_async(Blocker instance): pool 'db' is saturated")
    assert "never ran" in message
    assert "Raise max_waiting or the pool's capacity" in message
    assert blocker.started == 3  # the refused one never ran
    stats = b.stats()
    pool = stats.pools["db"]
    assert (pool.calls, pool.completed, pool.rejected, pool.errors) == (4, 3, 1, 0)
    assert stats.rejected == 1


async def test_max_waiting_zero_never_queues() -> None:
    blocker = Blocker()
    async with bounded(2, max_waiting=0) as b:
        call = to_async(blocker, pool="db", bridge=b)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(call, 0)
                tg.start_soon(call, 1)  # a slot is free for each: both run
                await wait_until(lambda: blocker.started == 2)
                with pytest.raises(PoolSaturated, match=r"max_waiting=0"):
                    await call(2)
                blocker.release.set()
        finally:
            blocker.release.set()
    assert (b.stats().pools["db"].completed, b.stats().pools["db"].rejected) == (2, 1)


async def test_a_call_queued_max_wait_is_refused_then_not_at_its_timeout() -> None:
    """It wakes at max_wait, not at its to_async(timeout=...); a call that started
    before max_wait passed is no longer subject to it and returns."""
    blocker = Blocker()
    async with bounded(1, max_wait=0.2) as b:
        call = to_async(blocker, pool="db", bridge=b, timeout=30)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(call, 0)
                await wait_until(lambda: blocker.started == 1)
                begun = time.monotonic()
                with anyio.fail_after(WAIT), pytest.raises(PoolSaturated) as info:
                    await call(1)
                took = time.monotonic() - begun
                assert b.pool("db").waiting == 0  # withdrawn from the queue
                # The running call held its slot well past max_wait: it goes on.
                blocker.release.set()
        finally:
            blocker.release.set()
    assert took < 0.2 + SLACK
    assert (info.value.option, info.value.limit, info.value.waiting) == (
        "max_wait",
        0.2,
        0,
    )
    assert "it waited 0.2 s without starting (max_wait=0.2)" in str(info.value)
    assert blocker.started == 1
    pool = b.stats().pools["db"]
    assert (pool.calls, pool.completed, pool.rejected, pool.timeouts) == (2, 1, 1, 0)


async def test_a_timeout_before_max_wait_wins_as_a_timeout() -> None:
    blocker = Blocker()
    async with bounded(1, max_wait=30) as b:
        call = to_async(blocker, pool="db", bridge=b)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(call, 0)
                await wait_until(lambda: blocker.started == 1)
                with anyio.fail_after(WAIT), pytest.raises(SyncBridgeTimeout):
                    await to_async(blocker, pool="db", bridge=b, timeout=0.1)(1)
                blocker.release.set()
        finally:
            blocker.release.set()
    pool = b.stats().pools["db"]
    assert (pool.timeouts, pool.rejected, pool.completed) == (1, 0, 1)


async def test_a_cancelled_queued_call_is_a_cancellation_not_a_refusal() -> None:
    blocker = Blocker()
    async with bounded(1, max_wait=0.3) as b:
        call = to_async(blocker, pool="db", bridge=b)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(call, 0)
                await wait_until(lambda: blocker.started == 1)
                with anyio.move_on_after(0.05):
                    await call(1)
                assert b.pool("db").waiting == 0
                blocker.release.set()
        finally:
            blocker.release.set()
    pool = b.stats().pools["db"]
    assert (pool.cancellations, pool.rejected, pool.completed) == (1, 0, 1)
    assert blocker.started == 1


async def test_outage_a_hanging_pool_answers_every_caller_within_max_wait() -> None:
    """The issue's scenario: 10 slots, max_wait=0.5, the function hangs (a stopped
    database) while 32 callers arrive. The 22 that cannot start are each refused
    within max_wait plus a small bound, not at their 30 s timeout."""
    blocker = Blocker()
    refused: list[float] = []
    returned: list[int] = []
    async with bounded(10, max_wait=0.5) as b:
        call = to_async(blocker, pool="db", bridge=b, timeout=30)

        async def caller(i: int) -> None:
            begun = time.monotonic()
            try:
                returned.append(await call(i))
            except PoolSaturated:
                refused.append(time.monotonic() - begun)

        try:
            with anyio.fail_after(WAIT):
                async with anyio.create_task_group() as tg:
                    for i in range(32):
                        tg.start_soon(caller, i)
                    await wait_until(lambda: len(refused) == 22)
                    assert blocker.started == 10
                    blocker.release.set()
        finally:
            blocker.release.set()
    assert max(refused) < 0.5 + SLACK
    assert len(returned) == 10
    pool = b.stats().pools["db"]
    assert (pool.calls, pool.completed, pool.rejected) == (32, 10, 22)
    assert ended(pool) == pool.calls


async def test_outage_a_failing_pool_gives_every_caller_the_functions_error() -> None:
    """A database that refuses connections at once: each caller gets that error,
    not a timeout nor a refusal."""

    def connect(i: int) -> int:
        raise ConnectionRefusedError(f"db down ({i})")

    errors: list[BaseException] = []
    async with bounded(10, max_wait=0.5) as b:
        call = to_async(connect, pool="db", bridge=b, timeout=30)

        async def caller(i: int) -> None:
            try:
                await call(i)
            except Exception as exc:
                errors.append(exc)

        with anyio.fail_after(WAIT):
            async with anyio.create_task_group() as tg:
                for i in range(32):
                    tg.start_soon(caller, i)
    assert len(errors) == 32
    assert all(isinstance(exc, ConnectionRefusedError) for exc in errors), errors
    pool = b.stats().pools["db"]
    assert (pool.calls, pool.errors, pool.rejected, pool.timeouts) == (32, 32, 0, 0)


async def test_set_pool_bounds_an_existing_pool_and_lifts_the_bound_again() -> None:
    blocker = Blocker()
    async with Bridge(pools={"db": 1}, shutdown_grace=2.0) as b:
        call = to_async(blocker, pool="db", bridge=b)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(call, 0)
                await wait_until(lambda: blocker.started == 1)
                b.set_pool("db", 1, max_waiting=0)
                with pytest.raises(PoolSaturated):
                    await call(1)
                b.set_pool("db", 1)  # unbounded again: the call queues
                tg.start_soon(call, 2)
                await wait_until(lambda: b.pool("db").waiting == 1)
                blocker.release.set()
        finally:
            blocker.release.set()
    pool = b.stats().pools["db"]
    assert (pool.completed, pool.rejected) == (2, 1)
