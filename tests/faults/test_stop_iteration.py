"""Issue 11, point 10: a StopIteration raised by the function is explained.

StopIteration cannot cross a coroutine boundary, so ``run_blocking`` raises a
RuntimeError caused by the very StopIteration the function raised, whose message
names it and suggests ``next(iterator, default)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import pytest

if TYPE_CHECKING:
    from syncbridge import Bridge

pytestmark = pytest.mark.faults


def _check(exc: RuntimeError) -> None:
    message = str(exc)
    assert "StopIteration" in message, message
    hint = f"the message does not suggest next(iterator, default): {message!r}"
    assert "next(" in message, hint
    assert "default" in message, hint


@pytest.mark.anyio
async def test_run_blocking_next_of_an_empty_iterator_explains_stop_iteration(
    bridge: Bridge,
) -> None:
    """await run_blocking(next, iter([])) raises RuntimeError from StopIteration."""
    with anyio.fail_after(10), pytest.raises(RuntimeError) as info:
        await bridge.run_blocking(next, iter([]))
    assert isinstance(info.value.__cause__, StopIteration)
    _check(info.value)


@pytest.mark.anyio
async def test_run_blocking_stop_iteration_is_the_cause_same_object(
    bridge: Bridge,
) -> None:
    """The RuntimeError's __cause__ is the StopIteration object the function raised."""
    raised = StopIteration("from the function")

    def raises_stop_iteration() -> None:
        raise raised

    with anyio.fail_after(10), pytest.raises(RuntimeError) as info:
        await bridge.run_blocking(raises_stop_iteration)
    assert info.value.__cause__ is raised
    _check(info.value)
