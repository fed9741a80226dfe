"""Issue 11, point 5: nesting through bounded lanes never deadlocks.

A call whose chain already holds a lane's or pool's only slot (an ancestor
blocked in ``sync_call_async``) is served on that ancestor's thread instead of
waiting for the slot it holds, and capacity stays honest: at most one function
of a one-slot pool is ever executing code.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import anyio
import pytest

import syncbridge
from syncbridge import Bridge

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine
    from typing import Any

pytestmark = pytest.mark.faults


class Tracker:
    """Counts functions of the bounded pool that are executing code right now."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.active = 0
        self.max_active = 0
        self.outer_ident: int | None = None
        self.inner_ident: int | None = None

    def enter(self) -> None:
        with self.lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)

    def leave(self) -> None:
        with self.lock:
            self.active -= 1


def _chain(
    b: Bridge,
    bounded: Callable[[Callable[[], str]], Callable[[], Coroutine[Any, Any, str]]],
    t: Tracker,
) -> Callable[[], Coroutine[Any, Any, str]]:
    """bounded fn -> async -> run_blocking (default pool) -> async -> bounded fn."""

    def innermost() -> str:
        t.enter()
        try:
            t.inner_ident = threading.get_ident()
            return "innermost"
        finally:
            t.leave()

    async def async_two() -> str:
        return await bounded(innermost)()

    def middle() -> str:
        return b.sync_call_async(async_two)

    async def async_one() -> str:
        return await b.run_blocking(middle)

    def outer() -> str:
        t.enter()
        t.outer_ident = threading.get_ident()
        t.leave()  # blocked below: waiting, not executing
        result = b.sync_call_async(async_one)
        t.enter()
        t.leave()
        return result

    return bounded(outer)


async def _run_chain(
    b: Bridge,
    bounded: Callable[[Callable[[], str]], Callable[[], Coroutine[Any, Any, str]]],
) -> Tracker:
    t = Tracker()
    try:
        with anyio.fail_after(5):
            assert await _chain(b, bounded, t)() == "innermost"
    except TimeoutError:
        pytest.fail(
            "the nested chain deadlocked: its innermost call waits for the slot "
            "its own ancestor holds"
        )
    return t


@pytest.mark.anyio
async def test_nesting_through_the_thread_sensitive_lane_does_not_deadlock() -> None:
    """thread-sensitive -> async -> run_blocking -> async -> thread-sensitive ends."""
    b = Bridge(max_workers=4, shutdown_grace=1.0)
    try:
        t = await _run_chain(
            b, lambda fn: syncbridge.to_async(thread_sensitive=True, bridge=b)(fn)
        )
        assert t.inner_ident == t.outer_ident, (
            "the inner thread-sensitive call ran on another thread than the outer one"
        )
    finally:
        await anyio.to_thread.run_sync(b.close)


@pytest.mark.anyio
async def test_nesting_through_a_one_slot_pool_does_not_deadlock() -> None:
    """pool(1) -> async -> run_blocking -> async -> pool(1) ends, one at a time."""
    b = Bridge(max_workers=4, shutdown_grace=1.0, pools={"one": 1})
    try:
        t = await _run_chain(
            b, lambda fn: syncbridge.to_async(pool="one", bridge=b)(fn)
        )
        assert t.inner_ident == t.outer_ident, (
            "the inner pool call ran on another thread than the outer one"
        )
        assert t.max_active == 1, f"{t.max_active} functions of pool 'one' ran at once"
    finally:
        await anyio.to_thread.run_sync(b.close)
