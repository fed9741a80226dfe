"""Wakeup and run_on_own_thread: cleanup on a thread of its own, waited for."""

from __future__ import annotations

import asyncio
import threading

import pytest

from syncbridge._core._context import role
from syncbridge._core._wakeup import Wakeup, run_on_own_thread


def test_wakeup_outside_a_loop_names_the_helper() -> None:
    with pytest.raises(RuntimeError, match="to_async_cm"):
        Wakeup("to_async_cm()")


@pytest.mark.anyio
async def test_run_on_own_thread_returns_and_raises_what_func_does(
    anyio_backend: str,
) -> None:
    error = KeyError("k")

    def fails() -> None:
        raise error

    assert await run_on_own_thread("t", lambda: threading.current_thread().name) == (
        "syncbridge-t"
    )
    with pytest.raises(KeyError) as info:
        await run_on_own_thread("t", fails)
    assert info.value is error


@pytest.mark.anyio
async def test_the_thread_serves_the_callers_loop(anyio_backend: str) -> None:
    here = asyncio.get_running_loop() if anyio_backend == "asyncio" else None

    def served() -> object:
        return role.loop_served()

    seen = await run_on_own_thread("serve", served)
    if here is not None:
        assert seen is here
    else:
        import trio

        assert seen is trio.lowlevel.current_trio_token()


def test_a_native_cancel_waits_for_the_thread() -> None:
    finished = threading.Event()

    def slow() -> None:
        threading.Event().wait(0.3)
        finished.set()

    async def main() -> None:
        task = asyncio.ensure_future(run_on_own_thread("slow", slow))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert finished.is_set()

    asyncio.run(main())
