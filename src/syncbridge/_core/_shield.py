"""Wait for cleanup to finish whatever cancels the waiting task.

anyio's ``CancelScope(shield=True)`` stops anyio's cancellation (and so trio's),
but not asyncio's own: ``task.cancel()``, ``asyncio.timeout``, ``wait_for``, a
TaskGroup or a server dropping a request still throw ``CancelledError`` into a
shielded await. :func:`wait_through_cancellation` is the one helper every
"cleanup finishes before this returns" promise uses (#11).
"""

from __future__ import annotations

__all__ = ("wait_through_cancellation",)

import asyncio
from typing import TYPE_CHECKING

import anyio

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable


async def wait_through_cancellation(wait: Callable[[], Awaitable[object]]) -> None:
    """Await ``wait()`` until it returns, through any cancellation; then re-raise it.

    Runs on:
        The calling task (asyncio or trio).
    Cancellation:
        Shielded from anyio and trio cancellation. A native asyncio cancellation
        is caught, ``wait()`` is awaited again (it must return a fresh awaitable
        each time, such as ``event.wait``), and the first ``CancelledError`` is
        re-raised once it returns. An anyio cancellation takes effect at the
        caller's next checkpoint, as with any shield.
    """
    cancelled: asyncio.CancelledError | None = None
    with anyio.CancelScope(shield=True):
        while True:
            try:
                await wait()
            except asyncio.CancelledError as exc:
                if cancelled is None:
                    cancelled = exc
                continue
            break
    if cancelled is not None:
        try:
            raise cancelled
        finally:
            del cancelled
