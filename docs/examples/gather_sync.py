"""How-to: gather_with_timeout from synchronous code (a script, a Flask view)."""

from __future__ import annotations

import asyncio
import inspect
import threading
from typing import TYPE_CHECKING

import syncbridge
from syncbridge import PENDING, GatherTimeout

if TYPE_CHECKING:
    from collections.abc import Sequence


async def fetch(page: str, delay: float) -> str:
    await asyncio.sleep(delay)
    return f"{page} (served on {threading.current_thread().name})"


def report() -> list[str]:
    """Plain sync code: no event loop in this thread."""
    results: Sequence[object]
    try:
        results = syncbridge.sync_gather_with_timeout(
            fetch("home", 0.01), fetch("blog", 0.02), fetch("slow", 5.0), timeout=0.2
        )
    except GatherTimeout as exc:
        results = exc.results  # "slow" was cancelled on the loop before this line
    return [str(slot) for slot in results if slot is not PENDING]


async def async_handler() -> None:
    coro = fetch("home", 0.01)
    try:
        # In a thread running a loop, blocking would freeze that loop: refused.
        syncbridge.sync_gather_with_timeout(coro, timeout=1.0)
    except syncbridge.DeadlockError:
        print("from async code: DeadlockError, use `await gather_with_timeout(...)`")
    # The refused coroutine was closed, so no "never awaited" warning.
    assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED


def main() -> None:
    lines = report()
    print("\n".join(lines))
    assert len(lines) == 2
    # From a plain thread, the bridge's portal loop ran the coroutines.
    assert all("syncbridge-portal-" in line for line in lines)
    asyncio.run(async_handler())


if __name__ == "__main__":
    main()
