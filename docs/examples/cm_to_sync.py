"""How-to: use an async context manager (a client session) with a plain `with`."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import TYPE_CHECKING

import anyio

import syncbridge

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

seen: dict[str, str] = {}
heartbeats = 0
three_sent = threading.Event()


def where() -> str:
    task = asyncio.current_task()
    assert task is not None
    return f"{threading.current_thread().name}, {task.get_name()}"


@contextlib.asynccontextmanager
async def session(name: str) -> AsyncIterator[str]:
    """An async session that keeps a background keep-alive task during the block."""
    seen["enter"] = where()

    async def keep_alive() -> None:
        global heartbeats
        while True:
            await anyio.sleep(0.01)
            heartbeats += 1
            if heartbeats == 3:
                three_sent.set()

    async with anyio.create_task_group() as tg:  # held open across the `with` block
        tg.start_soon(keep_alive)
        try:
            yield name
        finally:
            tg.cancel_scope.cancel()
            seen["exit"] = where()


def main() -> None:
    """Plain sync code, like a script or a Flask view."""
    with syncbridge.to_sync_cm(session("reports")) as name:
        # The body runs in this thread, and the loop keeps going meanwhile.
        assert three_sent.wait(timeout=10)
        assert name == "reports"
    print(f"__aenter__ ran on {seen['enter']}")
    print(f"__aexit__  ran on {seen['exit']}")
    print("3 keep-alives were sent while this thread was in the block")
    assert seen["enter"] == seen["exit"]  # one task, so the task group was legal
    assert seen["enter"].startswith("syncbridge-portal-")
    assert heartbeats >= 3


if __name__ == "__main__":
    main()
