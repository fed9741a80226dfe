"""LoopWatch: a heartbeat on the loop and a monitor thread, started and stopped.

A smoke test of the parts; stalls reported while they last are tested through
``watch_loop()`` and ``Bridge(blocking_threshold=...)`` in tests/test_watch.py.
"""

from __future__ import annotations

import contextvars
import sys
import threading

import anyio
import pytest

from syncbridge._core._calls import Call
from syncbridge._core._loop_watch import LoopWatch, describe_call

WAIT = 10.0  # seconds; only reached when a test is failing


# Read through a call: a checker would take the second read of a property to be
# the first one's value.
def _running(watch: LoopWatch) -> bool:
    return watch.running


def _monitors() -> list[str]:
    return [
        t.name
        for t in threading.enumerate()
        if t.name.startswith("syncbridge-watch-") and t.is_alive()
    ]


@pytest.mark.anyio
async def test_start_beats_on_the_loop_and_stop_ends_the_monitor(
    anyio_backend: str,
) -> None:
    watch = LoopWatch(1.0)
    assert not _running(watch)
    watch.start()
    try:
        assert _running(watch)
        assert watch.name == anyio_backend  # named after the loop it watches
        assert f"syncbridge-watch-{anyio_backend}" in _monitors()
        first = watch._stamp
        with anyio.fail_after(WAIT):  # a heartbeat each threshold / 10
            while watch._stamp == first:
                await anyio.sleep(0.01)
        with pytest.raises(RuntimeError, match="already started; make a new one"):
            watch.start()
    finally:
        monitor = watch.stop()
    assert monitor is not None
    await anyio.to_thread.run_sync(monitor.join, WAIT)
    assert not monitor.is_alive()
    assert not _running(watch)
    assert (watch.blocks, watch.reports) == (0, [])


def test_start_outside_a_running_loop_is_refused() -> None:
    with pytest.raises(RuntimeError, match="entered in a task of a running"):
        LoopWatch(1.0).start()


async def fetch_rows() -> str | None:
    return describe_call(sys._getframe())  # as the monitor sees it, stalled


@pytest.mark.anyio
async def test_a_stall_names_the_sync_callers_coroutine() -> None:
    """describe_call finds the Call a stalled frame runs for."""
    call = Call(fetch_rows, (), {}, contextvars.copy_context(), None)
    assert await call.invoke() == "while running fetch_rows() for a sync caller"
    assert await fetch_rows() is None, "a call of nobody's was named"
