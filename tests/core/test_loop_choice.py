"""Loop choice: the three rules, and roles that never outlive their process."""

from __future__ import annotations

import asyncio
import threading

import anyio
import anyio.to_thread
import pytest

from syncbridge import Bridge, DeadlockError, WorkerCancelled
from syncbridge._core._context import anyio_worker_loop, role
from syncbridge._core._wakeup import serve_loop


async def _running_loop() -> object:
    return asyncio.get_running_loop()


def test_rule_2_a_thread_running_a_loop_is_refused(bridge: Bridge) -> None:
    async def main() -> None:
        with pytest.raises(DeadlockError, match="await"):
            bridge.sync_call_async(_running_loop)

    asyncio.run(main())


@pytest.mark.anyio
async def test_rule_1_an_anyio_worker_calls_back_into_its_loop(
    anyio_backend: str, bridge: Bridge
) -> None:
    """anyio's private worker token is read directly (pinned here)."""
    here = anyio.lowlevel.current_token()

    def in_worker() -> bool:
        async def token() -> object:
            return anyio.lowlevel.current_token()

        return bridge.sync_call_async(token) == here

    assert await anyio.to_thread.run_sync(in_worker)


@pytest.mark.anyio
async def test_a_worker_token_carried_over_a_fork_is_ignored(
    anyio_backend: str,
) -> None:
    """The fork hook marks the inherited token stale; nothing else may use it."""

    def in_worker() -> tuple[bool, bool]:
        before = anyio_worker_loop() is not None
        role.stale_anyio_token = _current_anyio_token()
        try:
            return before, anyio_worker_loop() is None
        finally:
            role.stale_anyio_token = None

    assert await anyio.to_thread.run_sync(in_worker) == (True, True)


def _current_anyio_token() -> object:
    from anyio._core._eventloop import threadlocals

    return threadlocals.current_token


def test_a_served_loop_from_another_process_is_ignored() -> None:
    loop = asyncio.new_event_loop()
    try:
        seen: list[object | None] = []

        def look() -> None:
            seen.append(role.loop_served())
            role.served_pid = -1  # as in a forked child: another process's role
            seen.append(role.loop_served())

        serve_loop(loop, look)
        assert seen == [loop, None]
        assert role.served_loop is None
    finally:
        loop.close()


@pytest.mark.anyio
async def test_a_cancelled_worker_starts_no_async_call(
    anyio_backend: str, bridge: Bridge
) -> None:
    started = threading.Event()
    release = threading.Event()
    outcome: list[BaseException] = []
    ran: list[bool] = []

    async def never() -> None:
        ran.append(True)

    def worker() -> None:
        started.set()
        release.wait(10)
        try:
            bridge.sync_call_async(never)
        except BaseException as exc:
            outcome.append(exc)

    with anyio.move_on_after(0.05):
        await bridge.run_blocking(worker)
    assert started.is_set()
    release.set()
    with anyio.fail_after(5):
        while bridge.pool().busy:
            await anyio.sleep(0.01)
    assert ran == []
    assert len(outcome) == 1
    assert isinstance(outcome[0], WorkerCancelled)
