"""How-to: test code that uses syncbridge, with the anyio plugin or pytest-asyncio.

Run it like any test file (``pytest testing_with_pytest.py``); running it as a
script calls pytest on itself.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from typing import TYPE_CHECKING

import pytest

import syncbridge

if TYPE_CHECKING:
    from collections.abc import Iterator


def blocking_double(n: int) -> int:
    time.sleep(0.01)
    return n * 2


@pytest.fixture
def bridge() -> Iterator[syncbridge.Bridge]:
    """An isolated bridge per test, closed afterwards with its threads."""
    with syncbridge.Bridge(max_workers=4, shutdown_grace=2.0) as b:
        yield b
    leftover = [
        t for t in threading.enumerate() if t.name.startswith(f"syncbridge-{b.name}-")
    ]
    assert not leftover, f"threads left running: {leftover}"


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """The anyio plugin runs each ``@pytest.mark.anyio`` test on both backends."""
    backend: str = request.param
    return backend


@pytest.mark.anyio
async def test_run_blocking_on_both_backends(bridge: syncbridge.Bridge) -> None:
    assert await bridge.run_blocking(blocking_double, 21) == 42


@pytest.mark.asyncio
async def test_with_pytest_asyncio(bridge: syncbridge.Bridge) -> None:
    results = await asyncio.gather(
        *(bridge.run_blocking(blocking_double, i) for i in range(8))
    )
    assert results == [i * 2 for i in range(8)]


def test_sync_code_calling_async(bridge: syncbridge.Bridge) -> None:
    async def answer() -> int:
        await asyncio.sleep(0)
        return 42

    assert bridge.sync_call_async(answer) == 42


@pytest.mark.anyio
async def test_calling_sync_wrapper_on_the_loop_is_an_error() -> None:
    @syncbridge.to_sync
    async def fetch() -> int:
        return 1

    with pytest.raises(syncbridge.DeadlockError, match="await"):
        fetch()


if __name__ == "__main__":
    # In a fresh interpreter, so pytest loads its plugins before anyio is imported.
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__]
    raise SystemExit(subprocess.call(command))
