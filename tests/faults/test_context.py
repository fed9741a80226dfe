"""Issue 11, point 8: worker threads start with no async library set.

The context copied into a worker must not carry sniffio's current-library
variable: in a worker, ``sniffio.current_async_library()`` finds no library
(as in anyio's and trio's own threads), so a worker can run ``asyncio.run()`` of
anyio code even when the awaiting task runs on trio.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import anyio
import pytest
import sniffio

import syncbridge
from syncbridge import Bridge

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine
    from typing import Any

pytestmark = pytest.mark.faults


def _library_in_this_thread() -> str | None:
    try:
        return sniffio.current_async_library()
    except sniffio.AsyncLibraryNotFoundError:
        return None


def _runners(
    b: Bridge,
) -> dict[str, Callable[[Callable[[], str | None]], Coroutine[Any, Any, str | None]]]:
    return {
        "run_blocking": lambda fn: syncbridge.run_blocking(fn),
        "Bridge.run_blocking": lambda fn: b.run_blocking(fn),
        "to_async": lambda fn: syncbridge.to_async(bridge=b)(fn)(),
        "to_async-thread_sensitive": lambda fn: syncbridge.to_async(
            thread_sensitive=True, bridge=b
        )(fn)(),
    }


@pytest.mark.anyio
@pytest.mark.parametrize(
    "how",
    ["run_blocking", "Bridge.run_blocking", "to_async", "to_async-thread_sensitive"],
)
async def test_worker_threads_have_no_current_async_library(
    bridge: Bridge, how: str
) -> None:
    """sniffio.current_async_library() raises AsyncLibraryNotFoundError in a worker."""
    with anyio.fail_after(10):
        seen = await _runners(bridge)[how](_library_in_this_thread)
    assert seen is None, f"a worker thread believes it runs in {seen!r}"


async def _anyio_code() -> str:
    await anyio.sleep(0)
    return "anyio code ran under asyncio.run()"


def _asyncio_run_of_anyio_code() -> str:
    return asyncio.run(_anyio_code())


@pytest.mark.anyio
async def test_a_worker_can_asyncio_run_anyio_code(bridge: Bridge) -> None:
    """A worker of a trio (or asyncio) task can asyncio.run() anyio code."""
    with anyio.fail_after(10):
        result = await bridge.run_blocking(_asyncio_run_of_anyio_code)
    assert result == "anyio code ran under asyncio.run()"
