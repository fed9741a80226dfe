"""Issue 11, point 4: cancellation reaches the coroutines a worker started.

Cancelling the task that awaits a worker cancels the coroutine that worker is
waiting for through ``sync_call_async`` (whatever ``abandon_on_cancel`` says, on
both backends): the worker's call raises :class:`~syncbridge.WorkerCancelled`
and the coroutine's ``finally`` runs promptly.
"""

from __future__ import annotations

import threading
import time

import anyio
import pytest

import syncbridge
from syncbridge import Bridge, WorkerCancelled

pytestmark = pytest.mark.faults


@pytest.mark.anyio
@pytest.mark.parametrize("abandon", [False, True], ids=["wait", "abandon"])
async def test_cancelling_the_outer_task_cancels_the_workers_nested_coroutine(
    bridge: Bridge, abandon: bool
) -> None:
    """move_on_after(0.2) around a worker blocked in sync_call_async ends fast."""
    inner_finally = threading.Event()
    worker_done = threading.Event()
    seen: list[BaseException] = []

    async def inner() -> None:
        try:
            await anyio.sleep(3)
        finally:
            inner_finally.set()

    def calls_back() -> None:
        try:
            bridge.sync_call_async(inner)
        except BaseException as exc:
            seen.append(exc)
            raise
        finally:
            worker_done.set()

    wrapped = syncbridge.to_async(abandon_on_cancel=abandon, bridge=bridge)(calls_back)
    start = time.monotonic()
    with anyio.move_on_after(0.2) as scope:
        await wrapped()
    took = time.monotonic() - start
    try:
        assert scope.cancelled_caught
        assert took < 1.5, f"the cancelled await took {took:.2f} s"
        assert await anyio.to_thread.run_sync(inner_finally.wait, 1.0), (
            "the nested coroutine was not cancelled (its finally did not run in 1 s)"
        )
        assert await anyio.to_thread.run_sync(worker_done.wait, 1.0)
        assert len(seen) == 1, "the worker's sync_call_async() returned normally"
        assert isinstance(seen[0], WorkerCancelled), seen
    finally:
        # Let a stuck chain end before the bridge fixture checks for leaks.
        await anyio.to_thread.run_sync(worker_done.wait, 5.0)
