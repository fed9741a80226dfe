"""How-to: own a bridge and close it: with, async with, close() and atexit."""

from __future__ import annotations

import asyncio
import atexit
import time

import syncbridge


async def double(n: int) -> int:
    await asyncio.sleep(0.01)
    return n * 2


def slow_sum(numbers: list[int]) -> int:
    time.sleep(0.01)
    return sum(numbers)


def sync_side() -> None:
    # A sync context manager: close() runs on exit, even on an exception.
    with syncbridge.Bridge(max_workers=4, name="cli") as bridge:
        print(bridge.sync_call_async(double, 21))
    try:
        bridge.sync_call_async(double, 1)
    except syncbridge.BridgeClosed as exc:
        print(f"after close: {type(exc).__name__}")


async def async_side() -> None:
    # `async with` closes the bridge off the event loop, shielded from cancellation.
    async with syncbridge.Bridge(max_workers=4, name="app") as bridge:
        print(await bridge.run_blocking(slow_sum, [1, 2, 3]))


def long_lived() -> syncbridge.Bridge:
    # A bridge that lives as long as the process: close it at exit, like the
    # default bridge (syncbridge.get_bridge()) is closed for you.
    bridge = syncbridge.Bridge(max_workers=8, name="jobs", shutdown_grace=1.0)
    atexit.register(bridge.close)
    return bridge


if __name__ == "__main__":
    sync_side()
    asyncio.run(async_side())
    jobs = long_lived()
    print(jobs.sync_call_async(double, 4))
