"""Loop-block detection: watch_loop(), the public way to start a LoopWatch.

The watch itself (:class:`LoopWatch`, :class:`BlockReport`, its monitor thread)
lives in ``_core._loop_watch``, where the portal's
``Bridge(blocking_threshold=...)`` starts one too; both are exported from here.
"""

from __future__ import annotations

__all__ = ("BlockReport", "LoopWatch", "watch_loop")

from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING

import anyio

from ._core._loop_watch import BlockReport, LoopWatch
from ._validate import check_seconds

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import FrameType, TracebackType


class _Watching(AbstractAsyncContextManager["LoopWatch", None]):
    """The async context manager :func:`watch_loop` returns."""

    def __init__(self, watch: LoopWatch) -> None:
        self._watch = watch

    async def __aenter__(self) -> LoopWatch:
        self._watch.start()
        return self._watch

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        monitor = self._watch.stop()
        if monitor is not None:
            # Joined in a worker thread, never on the loop; bounded, since a
            # report may be stuck in a slow log handler.
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(
                    monitor.join,
                    2.0,
                    abandon_on_cancel=True,
                    limiter=anyio.CapacityLimiter(1),  # never wait for the app's
                )

    def __repr__(self) -> str:
        return f"<watch_loop {self._watch!r}>"


def watch_loop(
    threshold: float,
    *,
    describe: Callable[[FrameType], str | None] | None = None,
) -> AbstractAsyncContextManager[LoopWatch, None]:
    """Watch the running event loop; log each time it is blocked for too long.

    Around an app's main, or a test::

        async with syncbridge.watch_loop(0.1) as watch:
            await serve()
        print(watch.blocks, "stalls")

    Each time the loop is blocked longer than *threshold* seconds, one warning
    is logged on the ``syncbridge`` logger while it is still blocked, with the
    stack of the code that blocks it, and a :class:`BlockReport` is added to the
    watch's ``reports``. Works on asyncio, uvloop and trio. To watch a bridge's
    portal loop instead, pass ``Bridge(blocking_threshold=...)``.

    Runs on:
        Entered in a task of the loop to watch. A timer callback (asyncio) or a
        system task (trio) stamps a heartbeat on the loop; a monitor thread
        checks it. Leaving the block stops both without blocking the loop.

    Cancellation:
        Leaving the block, cancelled or not, stops the watch; the monitor
        thread is joined (shielded) in a worker thread.

    Args:
        threshold: Seconds the loop may be blocked before a warning (a finite
            number > 0).
        describe: Given the blocked loop thread's innermost frame, return what
            was running (a request, say) for the warning, or ``None``.

    Returns:
        An async context manager that yields the :class:`LoopWatch`.

    Raises:
        TypeError, ValueError: If *threshold* is not a finite number > 0 (at
            the call).
        RuntimeError: If entered outside a running asyncio or trio loop.

    .. versionadded:: 0.1
    """
    threshold = check_seconds(threshold, "watch_loop(threshold=...)")
    if describe is not None and not callable(describe):
        raise TypeError(f"watch_loop(describe=...) must be callable, got {describe!r}")
    describers = () if describe is None else (describe,)
    return _Watching(LoopWatch(threshold, describe=describers))
