"""watch_loop() and Bridge(blocking_threshold=): stalls reported while they last."""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

import anyio
import pytest

from syncbridge import BlockReport, Bridge, LoopWatch, watch_loop

if TYPE_CHECKING:
    from types import FrameType

    from conftest import StallLog

WAIT = 10.0  # seconds; only reached when a test is failing


# Read through a call: a checker would take the second read of a property to be
# the first one's value.
def is_running(watch: LoopWatch) -> bool:
    return watch.running


def watch_of(bridge: Bridge) -> LoopWatch | None:
    return bridge.portal_watch


def stall_until_reported(handler: StallLog) -> bool:
    """Block this thread's loop until the watch reports it: proof it was live."""
    return handler.seen.wait(WAIT)


@pytest.mark.anyio
async def test_a_blocked_loop_is_reported_while_it_is_still_blocked(
    reported: StallLog, anyio_backend: str
) -> None:
    async with watch_loop(0.05) as watch:
        assert isinstance(watch, LoopWatch)
        # The loop stays blocked until the warning arrives: a report after the
        # stall ended would never come, and this would time out.
        assert stall_until_reported(reported)
    assert watch.blocks == 1
    (report,) = watch.reports
    assert isinstance(report, BlockReport)
    assert report.blocked > report.threshold == 0.05
    assert "stall_until_reported" in report.stack
    assert report.loop == anyio_backend
    (record,) = reported.records
    message = record.getMessage()
    assert "stall_until_reported" in message
    assert "syncbridge.run_blocking" in message
    assert record.syncbridge_loop == anyio_backend  # type: ignore[attr-defined]
    assert record.syncbridge_blocked >= 0.05  # type: ignore[attr-defined]


@pytest.mark.anyio
async def test_a_loop_that_keeps_running_is_not_reported(reported: StallLog) -> None:
    async with watch_loop(0.05) as watch:
        for _ in range(20):
            await anyio.sleep(0.01)  # 0.2 s of a loop that is never stuck
    assert watch.blocks == 0
    assert reported.records == []


@pytest.mark.anyio
async def test_each_stall_is_reported_once(reported: StallLog) -> None:
    async with watch_loop(0.05) as watch:
        for _ in range(2):
            reported.seen.clear()
            assert stall_until_reported(reported)
            time.sleep(0.1)  # the same stall goes on: no second report for it
            await anyio.sleep(0.02)  # the loop runs again: the stall is over
    assert watch.blocks == 2


@pytest.mark.anyio
async def test_describe_names_what_was_running(reported: StallLog) -> None:
    def describe(frame: FrameType) -> str | None:
        while frame.f_back is not None and frame.f_code.co_name != "handler_42":
            frame = frame.f_back
        return "GET /report" if frame.f_code.co_name == "handler_42" else None

    async def handler_42() -> None:
        stall_until_reported(reported)

    async with watch_loop(0.05, describe=describe) as watch:
        await handler_42()
    assert watch.reports[0].where == "GET /report"
    assert "GET /report" in reported.records[0].getMessage()


@pytest.mark.anyio
async def test_leaving_the_block_stops_and_joins_the_monitor() -> None:
    before = set(threading.enumerate())
    async with watch_loop(0.05) as watch:
        (monitor,) = set(threading.enumerate()) - before
        assert monitor.name.startswith("syncbridge-watch-")
        assert watch.running
    assert not is_running(watch)
    assert not monitor.is_alive()


@pytest.mark.anyio
async def test_leaving_the_block_never_blocks_the_loop() -> None:
    """A report stuck in a slow log handler must not stall the loop at exit."""
    in_handler = threading.Event()
    release = threading.Event()

    class Slow(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            in_handler.set()
            release.wait(WAIT)

    slow = Slow()
    logger = logging.getLogger("syncbridge")
    logger.addHandler(slow)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await anyio.sleep(0.005)
            ticks += 1

    try:
        async with anyio.create_task_group() as tg:
            async with watch_loop(0.05):
                in_handler.wait(WAIT)  # block until the report is being logged
            # The monitor is stuck in the handler; the exit joins it off the
            # loop, so the loop runs meanwhile.
            tg.start_soon(ticker)
            with anyio.fail_after(WAIT):
                while ticks < 5:
                    await anyio.sleep(0.005)
            tg.cancel_scope.cancel()
    finally:
        release.set()
        logger.removeHandler(slow)


@pytest.mark.anyio
async def test_a_watch_cannot_be_entered_twice() -> None:
    cm = watch_loop(0.1)
    async with cm:
        with pytest.raises(RuntimeError, match="already started"):
            await cm.__aenter__()


def test_watch_loop_outside_a_loop_is_refused() -> None:
    async def enter() -> None:
        async with watch_loop(0.1):
            pass

    coro = enter()
    with pytest.raises(RuntimeError, match="running asyncio or trio event loop"):
        coro.send(None)
    coro.close()


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_bridge_watches_its_portal_loop(reported: StallLog, backend: str) -> None:
    async def blocks_the_portal() -> None:
        stall_until_reported(reported)

    with Bridge(backend=backend, blocking_threshold=0.05, name="watched") as b:  # type: ignore[arg-type]
        b.sync_call_async(blocks_the_portal)
        watch = b.portal_watch
        assert watch is not None
        assert watch.threshold == 0.05
    (report,) = watch.reports
    assert report.loop == "portal watched"
    assert report.where == (
        "while running test_a_bridge_watches_its_portal_loop.<locals>"
        ".blocks_the_portal() for a sync caller"
    )
    assert not [
        t for t in threading.enumerate() if t.name == "syncbridge-watch-portal watched"
    ]


def test_watch_portal_switches_on_and_off_while_running(reported: StallLog) -> None:
    async def stall() -> None:
        stall_until_reported(reported)

    async def short_stall() -> None:
        time.sleep(0.15)

    with Bridge() as b:
        b.sync_call_async(anyio.sleep, 0)  # the portal runs, unwatched
        assert watch_of(b) is None
        b.watch_portal(0.05, describe=lambda frame: "the describer")
        b.sync_call_async(stall)
        watch = b.portal_watch
        assert watch is not None
        assert watch.reports[0].where == "the describer"
        b.watch_portal(None)
        assert b.portal_watch is None
        b.sync_call_async(short_stall)  # not watched any more
        assert watch.blocks == 1


def test_a_bridge_is_not_watched_unless_asked() -> None:
    with Bridge() as b:
        assert b.portal_watch is None
        assert b.stats().portal.blocks == 0


def test_the_portal_stall_count_never_goes_down(reported: StallLog) -> None:
    async def stall() -> None:
        stall_until_reported(reported)

    with Bridge(blocking_threshold=0.05) as b:
        b.sync_call_async(stall)
        assert b.stats().portal.blocks == 1
        b.watch_portal(0.1)  # a new watch: the count carries over
        b.watch_portal(None)
        assert b.stats().portal.blocks == 1
