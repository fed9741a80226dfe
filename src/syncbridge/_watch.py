"""Loop-block detection: watch_loop(), and the watcher behind Bridge(blocking_threshold=).

One async task that blocks its event loop (a ``time.sleep``, a sync driver call, a
CPU-bound loop) stalls every other task on it. A :class:`LoopWatch` notices while
it happens: the watched loop stamps a heartbeat every ``threshold / 10`` seconds,
and a monitor thread that sees no stamp for longer than *threshold* logs the
loop thread's stack at once — the code that blocks it, caught in the act.
"""

from __future__ import annotations

__all__ = ("BlockReport", "LoopWatch", "watch_loop")

import asyncio
import contextvars
import logging
import sys
import threading
import time
import traceback
from collections import deque
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, final

import anyio

from ._core._context import new_thread
from ._core._loops import Call, loop_running_in_this_thread
from ._validate import check_seconds

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from types import FrameType, TracebackType

logger = logging.getLogger("syncbridge")

_KEEP: Final = 100  # reports kept per watch; the log has them all
_INVOKE_CODE: Final = Call[object].invoke.__code__


@final
@dataclass(frozen=True)
class BlockReport:
    """One stall of a watched event loop, as seen while it lasted.

    .. versionadded:: 0.1
    """

    loop: str
    """Which loop: ``"asyncio"``, ``"trio"``, or ``"portal <bridge name>"``."""
    blocked: float
    """Seconds the loop had been blocked when the stall was reported (at least
    the threshold; the stall may have lasted longer)."""
    threshold: float
    """The watch's threshold, in seconds."""
    where: str | None
    """What was running, as the integration describes it (``"GET /report"``, a
    view, a coroutine function), or ``None``."""
    stack: str
    """The loop thread's stack when the stall was reported, innermost call last."""


def describe_call(frame: FrameType) -> str | None:
    """Name the ``sync_call_async`` coroutine running in *frame*'s stack, if any."""
    f: FrameType | None = frame
    while f is not None:
        if f.f_code is _INVOKE_CODE:
            call = f.f_locals.get("self")
            if isinstance(call, Call):
                return f"while running {call.name}() for a sync caller"
        f = f.f_back
    return None


class LoopWatch:
    """Watches one event loop and reports each time it is blocked too long.

    Made by :func:`watch_loop` (for the loop it is entered on) and by
    ``Bridge(blocking_threshold=...)`` (for the bridge's portal loop).

    Runs on:
        A heartbeat on the watched loop (a timer callback on asyncio, a system
        task on trio: no task of yours is added) and one monitor thread,
        ``syncbridge-watch-<loop>``, started on entry and joined on exit.

    Each stall is reported once, while it lasts, at most ``1.2 * threshold``
    after it began: one warning on the ``syncbridge`` logger with the stack of
    the loop thread, and one :class:`BlockReport` in :attr:`reports`.

    Attributes:
        threshold: Seconds the loop may be blocked before a stall is reported.
        name: Which loop: ``"asyncio"``, ``"uvloop"``, ``"trio"`` or
            ``"portal <bridge name>"``.

    .. versionadded:: 0.1
    """

    def __init__(
        self,
        threshold: float,
        *,
        name: str | None = None,
        describe: Sequence[Callable[[FrameType], str | None]] = (),
    ) -> None:
        self.threshold: float = threshold
        self.name: str = name or "event"
        self._named = name is not None
        self.interval: float = threshold / 10
        self._describe = (*describe, describe_call)
        self._reports: deque[BlockReport] = deque(maxlen=_KEEP)
        self._blocks = 0
        self._stamp = time.monotonic()
        self._loop_thread = 0
        self._stop = threading.Event()
        self._monitor: threading.Thread | None = None
        self._stop_beat: Callable[[], None] | None = None

    def __repr__(self) -> str:
        return (
            f"<syncbridge.LoopWatch {self.name} threshold={self.threshold:g}s "
            f"blocks={self._blocks}>"
        )

    @property
    def blocks(self) -> int:
        """How many stalls were reported so far."""
        return self._blocks

    @property
    def reports(self) -> list[BlockReport]:
        """The reported stalls, oldest first (the last 100)."""
        return list(self._reports)

    @property
    def running(self) -> bool:
        """Whether the watch is started and not stopped."""
        return self._monitor is not None and not self._stop.is_set()

    # -- on the watched loop ----------------------------------------------------

    def start(self) -> None:
        """Start watching the loop running in this thread (call it on that loop)."""
        native = loop_running_in_this_thread()
        if native is None:
            raise RuntimeError(
                "syncbridge.watch_loop() must be entered in a task of a running "
                "asyncio or trio event loop"
            )
        if self._monitor is not None:
            raise RuntimeError("this LoopWatch was already started; make a new one")
        if not self._named:
            self.name = _loop_name(native)
        self._loop_thread = threading.get_ident()
        self._stamp = time.monotonic()
        if isinstance(native, asyncio.AbstractEventLoop):
            self._stop_beat = self._beat_asyncio(native)
        else:
            self._stop_beat = self._beat_trio()
        self._monitor = new_thread(
            target=self._watch, name=f"syncbridge-watch-{self.name}", daemon=True
        )
        self._monitor.start()

    def _beat_asyncio(self, loop: asyncio.AbstractEventLoop) -> Callable[[], None]:
        handle: asyncio.TimerHandle | None = None
        # Not the context of the code that starts the watch (the caller of
        # Bridge.watch_portal(), say): a heartbeat lasting the loop's life
        # would keep that caller's values alive. Trio's system task has its own.
        context = contextvars.Context()

        def tick() -> None:
            nonlocal handle
            self._stamp = time.monotonic()
            handle = loop.call_later(self.interval, tick, context=context)

        handle = loop.call_later(self.interval, tick, context=context)

        def stop() -> None:
            if handle is not None:
                handle.cancel()

        return stop

    def _beat_trio(self) -> Callable[[], None]:
        import trio

        scope = trio.CancelScope()

        async def beat() -> None:
            with scope:
                while True:
                    await trio.sleep(self.interval)
                    self._stamp = time.monotonic()

        trio.lowlevel.spawn_system_task(beat, name=f"syncbridge-watch-{self.name}")
        return scope.cancel

    @property
    def describers(self) -> tuple[Callable[[FrameType], str | None], ...]:
        """The describers given at creation (the built-in one excluded)."""
        return self._describe[:-1]

    def stop_from_outside(self) -> threading.Thread | None:
        """Stop the monitor from any thread; the heartbeat ends with its loop."""
        self._stop.set()
        return self._monitor

    def stop(self) -> threading.Thread | None:
        """Stop the heartbeat (on the loop) and the monitor; returns it to join.

        Never blocks: join the returned thread off the loop (it ends at once,
        unless a log handler is still busy with a report).
        """
        self._stop.set()
        stop_beat, self._stop_beat = self._stop_beat, None
        if stop_beat is not None:
            stop_beat()
        return self._monitor

    # -- on the monitor thread ---------------------------------------------------

    def _watch(self) -> None:
        reported = None
        while not self._stop.wait(self.interval):
            stamp = self._stamp
            # No stamp since `stamp`: the loop has been stuck for about that long
            # (at most one interval less, the time it idled before the stall).
            blocked = time.monotonic() - stamp
            if blocked <= self.threshold or stamp == reported:
                continue
            frame = sys._current_frames().get(self._loop_thread)  # pyright: ignore[reportPrivateUsage]
            if frame is None:
                continue
            reported = stamp
            try:
                self._report(frame, blocked)
            finally:
                del frame

    def _report(self, frame: FrameType, blocked: float) -> None:
        where = None
        for describe in self._describe:
            try:
                where = describe(frame)
            except Exception:  # a describer must never stop the watch
                logger.exception(
                    "a syncbridge loop-watch describer failed",
                    extra={
                        "syncbridge_event": "describer-failed",
                        "syncbridge_loop": self.name,
                    },
                )
            if where:
                break
        report = BlockReport(
            loop=self.name,
            blocked=blocked,
            threshold=self.threshold,
            where=where,
            stack="".join(traceback.format_stack(frame)).rstrip("\n"),
        )
        self._reports.append(report)
        self._blocks += 1
        logger.warning(
            "The %s event loop has been blocked for %.2f s (threshold %g s) %s. "
            "Every other task on it waits meanwhile: run blocking calls in a worker "
            "thread (await syncbridge.run_blocking(func, ...) or a "
            "@syncbridge.to_async function). Stack of the loop thread, innermost "
            "call last:\n%s",
            report.loop,
            report.blocked,
            report.threshold,
            report.where or "outside any known call",
            report.stack,
            extra={
                "syncbridge_event": "loop-blocked",
                "syncbridge_loop": report.loop,
                "syncbridge_blocked": report.blocked,
                "syncbridge_threshold": report.threshold,
                "syncbridge_where": report.where,
            },
        )


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


def _loop_name(native: object) -> str:
    if not isinstance(native, asyncio.AbstractEventLoop):
        return "trio"
    return "uvloop" if type(native).__module__.startswith("uvloop") else "asyncio"
