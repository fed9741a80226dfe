"""Bridge.start_soon: fire-and-forget coroutines on the portal loop."""

from __future__ import annotations

import concurrent.futures
import contextvars
import logging
import threading
from typing import TYPE_CHECKING, Literal

import anyio
import pytest

from syncbridge import Bridge, BridgeClosed

if TYPE_CHECKING:
    from collections.abc import Iterator

Backend = Literal["asyncio", "trio"]
BACKENDS = [pytest.param("asyncio", id="asyncio"), pytest.param("trio", id="trio")]
request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id")


@pytest.fixture(params=BACKENDS)
def portal_bridge(request: pytest.FixtureRequest) -> Iterator[Bridge]:
    backend: Backend = request.param
    with Bridge(backend=backend, shutdown_grace=0.5) as b:
        yield b


def test_returns_before_the_coroutine_runs_and_the_future_gets_the_result(
    portal_bridge: Bridge,
) -> None:
    gate = threading.Event()

    async def wait_for_gate(x: int) -> tuple[int, str]:
        await anyio.to_thread.run_sync(gate.wait)
        return x * 2, threading.current_thread().name

    future = portal_bridge.start_soon(wait_for_gate, 21)
    assert not future.done()  # start_soon did not wait for it
    gate.set()
    value, thread = future.result(timeout=10)
    assert value == 42
    assert thread.startswith("syncbridge-portal-")


def test_exception_reaches_the_future_unchanged(portal_bridge: Bridge) -> None:
    error = ValueError("boom")

    async def fail() -> None:
        raise error

    assert portal_bridge.start_soon(fail).exception(timeout=10) is error


def test_carries_a_copy_of_the_callers_context(portal_bridge: Bridge) -> None:
    async def read() -> str:
        return request_id.get()

    token = request_id.set("r-1")
    try:
        future = portal_bridge.start_soon(read)
    finally:
        request_id.reset(token)
    assert future.result(timeout=10) == "r-1"


def test_future_cancel_cancels_the_coroutine_on_the_loop(portal_bridge: Bridge) -> None:
    started = threading.Event()
    cleaned_up = threading.Event()

    async def forever() -> None:
        started.set()
        try:
            await anyio.sleep_forever()
        finally:
            cleaned_up.set()

    future = portal_bridge.start_soon(forever)
    assert started.wait(10)
    assert future.cancel()
    assert cleaned_up.wait(10)
    assert future.cancelled()


def test_close_cancels_and_logs_pending_work(
    portal_bridge: Bridge, caplog: pytest.LogCaptureFixture
) -> None:
    started = threading.Event()

    async def stuck() -> None:
        started.set()
        await anyio.sleep_forever()

    future = portal_bridge.start_soon(stuck)
    assert started.wait(10)
    with caplog.at_level(logging.WARNING, logger="syncbridge"):
        portal_bridge.close()
    assert future.cancelled()
    assert any("stuck" in r.getMessage() for r in caplog.records)


def test_may_be_called_from_the_portal_loop_itself(portal_bridge: Bridge) -> None:
    async def inner() -> str:
        return "inner"

    async def outer() -> str:
        nested = portal_bridge.start_soon(inner)
        # Awaiting a concurrent future on its own loop: wait without blocking it.
        while not nested.done():
            await anyio.sleep(0.001)
        return nested.result()

    assert portal_bridge.start_soon(outer).result(timeout=10) == "inner"


def test_many_threads_start_many_coroutines(portal_bridge: Bridge) -> None:
    async def double(x: int) -> int:
        await anyio.sleep(0)
        return 2 * x

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        futures = list(
            pool.map(lambda i: portal_bridge.start_soon(double, i), range(500))
        )
    assert [f.result(timeout=30) for f in futures] == [2 * i for i in range(500)]


def test_closed_bridge_raises_bridge_closed() -> None:
    b = Bridge()
    b.close()

    async def nothing() -> None:
        return None

    with pytest.raises(BridgeClosed, match=r"Bridge\.start_soon\(\S*nothing\)"):
        b.start_soon(nothing)


def test_cancelled_futures_are_seen_by_wait_and_as_completed(
    portal_bridge: Bridge,
) -> None:
    started = threading.Event()

    async def forever() -> None:
        started.set()
        await anyio.sleep_forever()

    by_user = portal_bridge.start_soon(forever)
    assert started.wait(10)
    assert by_user.cancel()
    started.clear()
    by_close = portal_bridge.start_soon(forever)
    assert started.wait(10)
    portal_bridge.close()
    done, not_done = concurrent.futures.wait([by_user, by_close], timeout=10)
    assert done == {by_user, by_close}
    assert not not_done
    assert list(concurrent.futures.as_completed([by_user, by_close], timeout=10))
