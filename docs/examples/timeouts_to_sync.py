"""How-to: a deadline on async work called from synchronous code."""

from __future__ import annotations

import asyncio

import syncbridge

steps: list[str] = []


async def close_connection() -> None:
    await asyncio.sleep(0.01)  # cleanup that awaits: say goodbye to a server
    steps.append("connection closed")


@syncbridge.to_sync(timeout=0.1)
async def slow_query() -> str:
    try:
        await asyncio.sleep(5)
        return "rows"
    except asyncio.CancelledError:
        steps.append("cancelled once")
        raise
    finally:
        await close_connection()  # not cancelled again: it runs to its end


def main() -> None:
    try:
        slow_query()
    except TimeoutError:
        print("timed out after 0.1 s")
    # TimeoutError is raised once the coroutine has really stopped.
    assert steps == ["cancelled once", "connection closed"], steps
    print("the coroutine was cancelled once and its cleanup ran to its end")


if __name__ == "__main__":
    main()
