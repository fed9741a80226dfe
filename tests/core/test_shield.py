"""wait_through_cancellation: the one primitive behind every "cleanup finishes" promise."""

from __future__ import annotations

import asyncio
import threading
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from syncbridge._core._shield import wait_through_cancellation

if TYPE_CHECKING:
    from collections.abc import Coroutine


def test_native_cancels_wait_for_the_end_and_the_first_one_is_reraised() -> None:
    """Two task.cancel() calls land mid-wait: the wait goes on, then cancel #1."""
    events: list[str] = []

    async def main() -> None:
        release = asyncio.Event()
        waits = 0

        def wait() -> Coroutine[Any, Any, object]:
            nonlocal waits
            waits += 1
            return release.wait()

        async def cleanup() -> None:
            try:
                await wait_through_cancellation(wait)
            except asyncio.CancelledError as exc:
                events.append(f"cancelled:{exc.args[0]}")
                raise
            events.append("returned")

        task = asyncio.ensure_future(cleanup())
        await asyncio.sleep(0)
        task.cancel("first")
        await asyncio.sleep(0)
        task.cancel("second")
        await asyncio.sleep(0)
        assert not task.done()
        events.append("released")
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert waits == 3

    asyncio.run(main())
    assert events == ["released", "cancelled:first"]


@pytest.mark.anyio
async def test_anyio_cancellation_is_held_until_the_wait_ends(
    anyio_backend: str,
) -> None:
    released = anyio.Event()
    order: list[str] = []

    async def release_later() -> None:
        await anyio.sleep(0.05)
        order.append("released")
        released.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(release_later)
        with anyio.CancelScope() as scope:
            scope.cancel()
            await wait_through_cancellation(released.wait)
            order.append("wait returned")
            await anyio.sleep(1)  # the deferred cancellation lands here
            order.append("not reached")
    assert scope.cancelled_caught
    assert order == ["released", "wait returned"]


def test_an_error_of_the_wait_propagates_unchanged() -> None:
    error = ValueError("boom")

    async def failing() -> None:
        raise error

    async def main() -> None:
        with pytest.raises(ValueError, match="boom") as info:
            await wait_through_cancellation(failing)
        assert info.value is error

    asyncio.run(main())


def test_a_wait_on_another_thread_survives_wait_for() -> None:
    """asyncio.wait_for's timeout (a native cancel) does not cut the wait short."""
    done = threading.Event()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        finished = asyncio.Event()

        def work() -> None:
            threading.Event().wait(0.3)
            done.set()
            loop.call_soon_threadsafe(finished.set)

        threading.Thread(target=work, daemon=True).start()
        with pytest.raises(asyncio.TimeoutError):  # not builtin TimeoutError on 3.10
            await asyncio.wait_for(wait_through_cancellation(finished.wait), 0.05)
        assert done.is_set()

    asyncio.run(main())
