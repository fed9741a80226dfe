"""Explanation: contextvars are copied into each call, in both directions."""

from __future__ import annotations

import asyncio
import contextvars

import syncbridge

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id")


def blocking_handler() -> str:
    seen = request_id.get()  # copied in from the awaiting task
    request_id.set("changed in the worker")  # stays in the worker's copy
    return seen


async def async_handler() -> str:
    return request_id.get()  # copied in from the calling thread


async def app() -> None:
    request_id.set("req-1")
    assert await syncbridge.run_blocking(blocking_handler) == "req-1"
    assert request_id.get() == "req-1"  # the change did not flow back
    print("async -> sync: the worker saw req-1; the caller's value is unchanged")


def main() -> None:
    asyncio.run(app())
    request_id.set("req-2")
    assert syncbridge.sync_call_async(async_handler) == "req-2"
    print("sync -> async: the coroutine saw req-2")


if __name__ == "__main__":
    main()
