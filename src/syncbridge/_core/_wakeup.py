"""Wait in a task for a thread that is not a pool worker.

Cleanup (closing an iterator, exiting a context manager) must never wait for
worker capacity: a saturated pool would delay it, and a cancelled task with it.
It runs on a thread of its own instead, and the task waits on a :class:`Wakeup`.
"""

from __future__ import annotations

__all__ = ("Wakeup", "run_on_own_thread", "serve_loop")

import asyncio
from typing import TYPE_CHECKING, Any

import anyio

from ._context import copy_context_for_thread, new_thread, role
from ._loops import loop_running_in_this_thread
from ._outcome import Error, Value
from ._process import PROCESS
from ._shield import wait_through_cancellation

if TYPE_CHECKING:
    from collections.abc import Callable


class Wakeup:
    """A one-shot event awaited on the current loop and set from any thread.

    Args:
        what: The helper being used, named in the error outside a loop.

    Raises:
        RuntimeError: If no asyncio or trio loop runs in this thread.
    """

    __slots__ = ("_event", "_post", "native")

    def __init__(self, what: str) -> None:
        native = loop_running_in_this_thread()
        self.native = native
        """The loop of the waiting task (an asyncio loop or a trio token)."""
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


def serve_loop(native: object, func: Callable[..., Any], *args: Any) -> Any:
    """Run ``func(*args)`` in this thread on behalf of the loop *native*.

    For the duration, ``sync_call_async`` in this thread runs on that loop, as
    it does in a pool worker (loop-choice rule 1): closing an iterator or
    exiting a context manager must see the loop that its task runs on.
    """
    previous = role.served_loop, role.served_pid
    role.served_loop, role.served_pid = native, PROCESS.pid
    try:
        return func(*args)
    finally:
        role.served_loop, role.served_pid = previous


async def run_on_own_thread(what: str, func: Callable[..., Any], *args: Any) -> Any:
    """Run ``func(*args)`` on a new daemon thread; wait for it, whatever cancels.

    Runs in a copy of the caller's context, serving the caller's loop (see
    :func:`serve_loop`); returns or raises what *func* does. The wait goes on
    through every cancellation, anyio's and asyncio's own, which is then
    re-raised: cleanup runs to its end before this returns.
    """
    wakeup = Wakeup(what)
    outcome: list[Value[Any] | Error] = []

    def run() -> None:
        try:
            outcome.append(Value(func(*args)))
        except BaseException as exc:
            outcome.append(Error(exc))
        finally:
            wakeup.set()

    ctx = copy_context_for_thread()
    new_thread(
        target=ctx.run,
        args=(serve_loop, wakeup.native, run),
        name=f"syncbridge-{what}",
        daemon=True,
    ).start()
    await wait_through_cancellation(wakeup.wait)
    return outcome.pop().unwrap()
