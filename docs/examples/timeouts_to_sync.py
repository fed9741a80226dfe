"""How-to: a deadline on async work called from synchronous code."""

from __future__ import annotations

import asyncio

import syncbridge

cleaned_up = False


@syncbridge.to_sync(timeout=0.1)
async def slow_query() -> str:
    global cleaned_up
    try:
        await asyncio.sleep(5)
        return "rows"
    finally:
        cleaned_up = True  # runs on the loop when the timeout cancels the task


def main() -> None:
    try:
        slow_query()
    except TimeoutError:
        print("timed out after 0.1 s")
    # TimeoutError is raised once the coroutine has really stopped.
    assert cleaned_up
    print("the coroutine was cancelled and cleaned up")


if __name__ == "__main__":
    main()
