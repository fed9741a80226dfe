"""Explanation: the three loop-choice rules of sync_call_async, observed."""

from __future__ import annotations

import asyncio
import threading

import syncbridge


async def where() -> str:
    """Name the thread whose event loop runs this coroutine."""
    await asyncio.sleep(0)
    return threading.current_thread().name


def from_worker() -> str:
    # Rule 1: in a worker thread serving a loop, the coroutine runs on that loop.
    return syncbridge.sync_call_async(where)


async def app() -> None:
    app_thread = threading.current_thread().name
    assert await syncbridge.run_blocking(from_worker) == app_thread
    print(f"rule 1: from a worker of the app's loop -> ran on {app_thread}")

    # Rule 2: in a thread running a loop, blocking would freeze it: refused at once.
    try:
        syncbridge.sync_call_async(where)
    except syncbridge.DeadlockError:
        print("rule 2: from the loop's own thread -> DeadlockError (use await)")


def main() -> None:
    asyncio.run(app())
    # Rule 3: anywhere else, the bridge's persistent portal loop runs it.
    first = syncbridge.sync_call_async(where)
    second = syncbridge.sync_call_async(where)
    assert first == second
    assert first.startswith("syncbridge-portal-")
    print(f"rule 3: from a plain thread -> ran on {first}, every time")


if __name__ == "__main__":
    main()
