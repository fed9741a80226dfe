"""A deadline that cancels the current task the way its event loop's users expect.

On asyncio (and uvloop) the task is cancelled **once**, like :func:`asyncio.timeout`
or ``task.cancel()``: one :class:`asyncio.CancelledError` is delivered, and the
coroutine's ``finally`` blocks and ``async with`` exits may await (close a
connection, flush) to their end. An anyio cancel scope would instead cancel every
await until the scope is left, so such cleanup would stop at its first await.

On trio a deadline is a cancel scope, trio's own (level-triggered) semantics:
every await in the cancelled code raises ``Cancelled`` unless it sits in a
shielded scope (``with trio.CancelScope(shield=True):``), as trio users expect.
"""

from __future__ import annotations

__all__ = ("Deadline",)

import asyncio
from typing import TYPE_CHECKING, Final

import anyio

if TYPE_CHECKING:
    from types import TracebackType
    from typing import Self

_get_running_loop: Final = asyncio._get_running_loop


class Deadline:
    """``with Deadline(seconds) as d:`` cancels the block after *seconds*, on its loop.

    Enter and leave it in one task of a running loop. When the deadline's own
    cancellation ends the block, it is swallowed and :attr:`expired` is true;
    any other cancellation (the task cancelled by someone else meanwhile)
    propagates. A block that catches the cancellation and ends normally ends
    normally (its value stands), as with :func:`asyncio.timeout`.
    """

    __slots__ = (
        "_cancelling",
        "_fired",
        "_handle",
        "_scope",
        "_task",
        "expired",
        "seconds",
    )

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expired = False
        """Whether the deadline's cancellation ended the block."""
        self._fired = False
        self._task: asyncio.Task[object] | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._scope: anyio.CancelScope | None = None
        self._cancelling = 0

    def __enter__(self) -> Self:
        loop = _get_running_loop()
        task = None if loop is None else asyncio.current_task(loop)
        if loop is None or task is None:  # trio (or no asyncio task): a scope
            self._scope = anyio.move_on_after(self.seconds).__enter__()
            return self
        self._task = task
        self._cancelling = task.cancelling()
        self._handle = loop.call_later(self.seconds, self._fire)
        return self

    def _fire(self) -> None:
        assert self._task is not None
        self._fired = True
        self._task.cancel()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        scope = self._scope
        if scope is not None:
            swallowed = bool(scope.__exit__(exc_type, exc, tb))
            self.expired = scope.cancelled_caught
            return swallowed
        assert self._handle is not None
        assert self._task is not None
        self._handle.cancel()
        if not self._fired:
            return False
        # Undo our cancel request; a count left above the one at entry means
        # someone else cancelled the task too: theirs propagates.
        ours = self._task.uncancel() <= self._cancelling
        if (
            ours
            and exc_type is not None
            and issubclass(exc_type, asyncio.CancelledError)
        ):
            self.expired = True
            return True
        return False
