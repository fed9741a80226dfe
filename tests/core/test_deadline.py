"""Deadline: cancels its block once on asyncio (cleanup may await), by a scope on trio.

No test waits for a deadline that should not fire: a deadline that fires ends a
block that would otherwise wait a minute.
"""

from __future__ import annotations

import asyncio

import pytest
import trio

from syncbridge._core._deadline import Deadline

FOREVER = 60.0  # seconds; a block that waits this long was not cancelled


def test_asyncio_cancels_the_block_once_so_its_cleanup_may_await() -> None:
    cleaned: list[str] = []

    async def main() -> Deadline:
        with Deadline(0.01) as deadline:
            try:
                await asyncio.sleep(FOREVER)
            finally:
                await asyncio.sleep(0)  # an anyio scope would cancel these
                await asyncio.sleep(0.001)
                cleaned.append("done")
        task = asyncio.current_task()
        assert task is not None
        assert task.cancelling() == 0, "the deadline's cancel request was left"
        await asyncio.sleep(0)  # not cancelled again after the block
        return deadline

    deadline = asyncio.run(main())
    assert deadline.expired
    assert cleaned == ["done"]


def test_asyncio_a_block_that_catches_the_cancellation_keeps_its_value() -> None:
    async def main() -> tuple[str, Deadline]:
        value = "not set"
        with Deadline(0.01) as deadline:
            try:
                await asyncio.sleep(FOREVER)
            except asyncio.CancelledError:
                value = "caught"
        return value, deadline

    value, deadline = asyncio.run(main())
    assert value == "caught"
    assert not deadline.expired, "a block that ended normally was said to expire"


def test_asyncio_another_cancel_propagates() -> None:
    """The task cancelled by someone else: that cancellation is not swallowed."""
    deadlines: list[Deadline] = []

    async def block() -> None:
        with Deadline(FOREVER) as deadline:
            deadlines.append(deadline)
            await asyncio.sleep(FOREVER)

    async def main() -> None:
        task = asyncio.create_task(block())
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert not deadlines[0].expired


def test_asyncio_a_cancel_on_top_of_the_deadlines_propagates() -> None:
    """The deadline fired, and the block was cancelled again meanwhile: the
    second cancellation is someone else's, and propagates."""
    deadlines: list[Deadline] = []

    async def block() -> None:
        task = asyncio.current_task()
        assert task is not None
        with Deadline(0.01) as deadline:
            deadlines.append(deadline)
            try:
                await asyncio.sleep(FOREVER)
            finally:
                task.cancel()  # someone else's, while the deadline's is pending

    async def main() -> None:
        task = asyncio.create_task(block())
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert not deadlines[0].expired


def test_asyncio_a_deadline_left_in_time_never_fires() -> None:
    async def main() -> Deadline:
        with Deadline(0.01) as deadline:
            await asyncio.sleep(0)
        # Past the deadline: a timer left behind would cancel this sleep.
        await asyncio.sleep(0.05)
        return deadline

    assert not asyncio.run(main()).expired


def test_trio_cancels_by_a_scope_every_await_of_the_block() -> None:
    after: list[str] = []

    async def main() -> Deadline:
        with Deadline(0.01) as deadline:
            try:
                await trio.sleep(FOREVER)
            finally:
                try:
                    await trio.sleep(0)
                except trio.Cancelled:
                    after.append("cancelled again")
                    raise
        await trio.sleep(0)  # the scope is left: not cancelled here
        return deadline

    deadline = trio.run(main)
    assert deadline.expired
    assert after == ["cancelled again"], "trio's deadline is level-triggered"
