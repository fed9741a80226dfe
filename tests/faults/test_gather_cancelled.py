"""Issue 11, point 3: a child's own CancelledError is its outcome (asyncio).

A child coroutine that raises :class:`asyncio.CancelledError` itself (gather did
not cancel it) is an outcome like any other: returned in its slot with
``return_exceptions=True``, raised as the same object otherwise, and never
mistaken for a deadline.
"""

from __future__ import annotations

import asyncio
import time

import pytest

import syncbridge

pytestmark = pytest.mark.faults


async def _one() -> int:
    return 1


def _gather(
    mine: asyncio.CancelledError, timeout: float | None, return_exceptions: bool
) -> list[object]:
    """Run the gather; what it raised is re-raised here, the same object.

    The exception is caught inside the task: on 3.10 a CancelledError crossing a
    task boundary (asyncio.run's main task, wait_for) is replaced by a new one.
    A hang is bounded by the per-test timeout (the watchdog dumps every stack).
    """
    raised: list[BaseException] = []

    async def child() -> int:
        raise mine

    async def main() -> list[object]:
        try:
            return list(
                await syncbridge.gather_with_timeout(
                    _one(),
                    child(),
                    timeout=timeout,
                    return_exceptions=return_exceptions,
                )
            )
        except BaseException as exc:
            raised.append(exc)
            return []

    result = asyncio.run(main())
    if raised:
        raise raised[0]
    return result


@pytest.mark.parametrize("timeout", [None, 5.0], ids=["no-timeout", "timeout=5"])
def test_gather_returns_a_childs_own_cancelled_error_in_its_slot(
    timeout: float | None,
) -> None:
    """return_exceptions=True puts the child's own CancelledError in its slot."""
    mine = asyncio.CancelledError("mine")
    start = time.monotonic()
    result = _gather(mine, timeout, return_exceptions=True)
    assert time.monotonic() - start < 1.0
    assert result == [1, mine]
    assert result[1] is mine


@pytest.mark.parametrize("timeout", [None, 5.0], ids=["no-timeout", "timeout=5"])
def test_gather_raises_a_childs_own_cancelled_error_unchanged(
    timeout: float | None,
) -> None:
    """return_exceptions=False raises the child's own CancelledError, same object."""
    mine = asyncio.CancelledError("mine")
    start = time.monotonic()
    got: BaseException | None = None
    try:
        _gather(mine, timeout, return_exceptions=False)
    except BaseException as exc:
        got = exc
    assert time.monotonic() - start < 1.0
    assert got is mine, f"got {got!r} instead of the child's own error"
