"""to_async and to_sync: bare and called forms, signatures, methods, options."""

from __future__ import annotations

import asyncio
import inspect
import sqlite3
import threading

import anyio
import pytest

import syncbridge
from syncbridge import Bridge

pytestmark = pytest.mark.anyio


@syncbridge.to_async
def add(a: int, b: int = 1) -> int:
    """Add two numbers."""
    return a + b


@syncbridge.to_sync
async def mul(a: int, b: int) -> int:
    """Multiply two numbers."""
    await anyio.sleep(0)
    return a * b


class Repo:
    def __init__(self) -> None:
        self.factor = 3

    @syncbridge.to_async
    def scaled(self, x: int) -> int:
        return self.factor * x

    @syncbridge.to_sync(timeout=5)
    async def ascaled(self, x: int) -> int:
        return self.factor * x


async def test_to_async_bare_runs_in_worker_thread() -> None:
    main = threading.get_ident()

    @syncbridge.to_async
    def where() -> int:
        return threading.get_ident()

    assert await where() != main
    assert await add(2) == 3


def test_to_async_keeps_metadata_and_passes_iscoroutinefunction() -> None:
    assert inspect.iscoroutinefunction(add)
    assert add.__name__ == "add"
    assert add.__doc__ == "Add two numbers."
    assert str(inspect.signature(add)) == "(a: 'int', b: 'int' = 1) -> 'int'"


def test_to_sync_keeps_metadata_and_is_plain() -> None:
    assert not inspect.iscoroutinefunction(mul)
    assert mul.__name__ == "mul"
    assert mul.__doc__ == "Multiply two numbers."
    assert mul(6, 7) == 42


async def test_to_async_on_methods() -> None:
    assert await Repo().scaled(2) == 6


def test_to_sync_on_methods() -> None:
    assert Repo().ascaled(2) == 6


async def test_to_async_with_options_and_bridge(bridge: Bridge) -> None:
    @syncbridge.to_async(bridge=bridge, abandon_on_cancel=True)
    def ident() -> int:
        return threading.get_ident()

    assert isinstance(await ident(), int)


async def test_to_async_timeout_raises_timeout_error(bridge: Bridge) -> None:
    release = threading.Event()

    @syncbridge.to_async(timeout=0.05, bridge=bridge)
    def stuck() -> bool:
        return release.wait(10)

    with pytest.raises(TimeoutError):
        await stuck()
    release.set()


async def test_to_async_timeout_wait_mode_waits_for_thread(bridge: Bridge) -> None:
    finished = threading.Event()

    @syncbridge.to_async(timeout=0.02, abandon_on_cancel=False, bridge=bridge)
    def slowish() -> None:
        threading.Event().wait(0.1)
        finished.set()

    with pytest.raises(TimeoutError):
        await slowish()
    assert finished.is_set()


async def test_to_async_named_pool_is_a_bulkhead() -> None:
    release = threading.Event()
    with Bridge(max_workers=2, pools={"slow": 1}) as b:

        @syncbridge.to_async(pool="slow", bridge=b)
        def slow_call() -> bool:
            return release.wait(10)

        @syncbridge.to_async(bridge=b)
        def fast_call() -> str:
            return "fast"

        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(slow_call)
            while b.pool("slow").waiting < 2:
                await anyio.sleep(0.001)
            with anyio.fail_after(2):
                assert await fast_call() == "fast"
            assert b.pool("slow").busy == 1
            release.set()


async def test_to_async_unknown_pool_names_the_fix(bridge: Bridge) -> None:
    @syncbridge.to_async(pool="nope", bridge=bridge)
    def f() -> None:
        pass

    with pytest.raises(KeyError, match=r"add_pool\('nope'"):
        await f()


async def test_to_async_thread_sensitive_runs_on_one_thread_in_order(
    bridge: Bridge,
) -> None:
    conn: list[sqlite3.Connection] = []
    order: list[int] = []

    @syncbridge.to_async(thread_sensitive=True, bridge=bridge)
    def db(i: int) -> int:
        if not conn:
            conn.append(sqlite3.connect(":memory:"))
        # sqlite3 refuses a connection used from another thread
        conn[0].execute("select 1").fetchone()
        order.append(i)
        return threading.get_ident()

    idents = set()
    for i in range(5):
        idents.add(await db(i))
    async with anyio.create_task_group() as tg:
        for i in range(5, 10):
            tg.start_soon(db, i)
            await anyio.sleep(0)

    @syncbridge.to_async(thread_sensitive=True, bridge=bridge)
    def close() -> int:
        conn[0].close()
        return threading.get_ident()

    idents.add(await close())
    assert len(idents) == 1
    assert order[:5] == [0, 1, 2, 3, 4]
    assert sorted(order) == list(range(10))


def test_to_async_rejects_coroutine_functions() -> None:
    async def already() -> None:
        pass

    with pytest.raises(
        TypeError, match=r"already is async: `await already\(\.\.\.\)` directly"
    ):
        syncbridge.to_async(already)


@pytest.mark.parametrize("bad", [-1.0, float("nan")])
def test_decorators_reject_bad_timeouts(bad: float) -> None:
    with pytest.raises(ValueError, match="timeout"):
        syncbridge.to_async(timeout=bad)
    with pytest.raises(ValueError, match="timeout"):
        syncbridge.to_sync(timeout=bad)


def test_to_async_rejects_pool_with_thread_sensitive() -> None:
    with pytest.raises(ValueError, match=r"takes one of pool=\.\.\., thread_sensitive"):
        syncbridge.to_async(pool="x", thread_sensitive=True)


def test_to_sync_runs_on_portal_loop(bridge: Bridge) -> None:
    @syncbridge.to_sync(bridge=bridge)
    async def loop_id() -> int:
        return id(asyncio.get_running_loop())

    assert loop_id() == loop_id()
