"""Wait in a task for a thread that is not a pool worker.

Cleanup (closing an iterator, exiting a context manager) must never wait for
worker capacity: a saturated pool would delay it, and a cancelled task with it.
It runs on a thread of its own instead, and the task waits on a :class:`Wakeup`.
"""

from __future__ import annotations

__all__ = ("Wakeup", "run_on_own_thread")

import asyncio
import contextvars
import threading
from typing import TYPE_CHECKING, Any

import anyio

from ._loops import loop_running_in_this_thread
from ._outcome import unwrap

if TYPE_CHECKING:
    from collections.abc import Callable


class Wakeup:
    """A one-shot event awaited on the current loop and set from any thread.

    Args:
        what: The helper being used, named in the error outside a loop.

    Raises:
        RuntimeError: If no asyncio or trio loop runs in this thread.
    """

    __slots__ = ("_event", "_post")

    def __init__(self, what: str) -> None:
        native = loop_running_in_this_thread()
        if isinstance(native, asyncio.AbstractEventLoop):
            self._post: Callable[[Callable[[], object]], object] = (
                native.call_soon_threadsafe
            )
        elif native is not None:
            self._post = native.run_sync_soon  # type: ignore[attr-defined]
        else:
            raise RuntimeError(
                f"{what} must be used in a task of a running asyncio or trio event loop"
            )
        self._event = anyio.Event()

    def set(self) -> None:
        """Wake the waiting task; from any thread; a no-op if its loop is gone."""
        try:
            self._post(self._event.set)
        except RuntimeError:  # the loop is gone (trio.RunFinishedError included)
            pass

    async def wait(self) -> None:
        """Wait until :meth:`set` is called."""
        await self._event.wait()


async def run_on_own_thread(what: str, func: Callable[..., Any], *args: Any) -> Any:
    """Run ``func(*args)`` on a new daemon thread; wait for it, shielded.

    Runs in a copy of the caller's context; returns or raises what *func* does.
    The wait is shielded from cancellation: cleanup runs to its end.
    """
    wakeup = Wakeup(what)
    outcome: list[tuple[bool, Any]] = []

    def run() -> None:
        try:
            outcome.append((True, func(*args)))
        except BaseException as exc:
            outcome.append((False, exc))
        finally:
            wakeup.set()

    ctx = contextvars.copy_context()
    threading.Thread(
        target=ctx.run, args=(run,), name=f"syncbridge-{what}", daemon=True
    ).start()
    with anyio.CancelScope(shield=True):
        await wakeup.wait()
    return unwrap(outcome.pop())
