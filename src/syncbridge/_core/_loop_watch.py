"""The loop-block monitor: a heartbeat on the watched loop, a thread that checks it.

One async task that blocks its event loop (a ``time.sleep``, a sync driver call, a
CPU-bound loop) stalls every other task on it. A :class:`LoopWatch` notices while
it happens: the watched loop stamps a heartbeat every ``threshold / 10`` seconds,
and a monitor thread that sees no stamp for longer than *threshold* logs the
loop thread's stack at once — the code that blocks it, caught in the act.
``syncbridge.watch_loop()`` (in ``_watch``) and the portal's
``Bridge(blocking_threshold=...)`` both start one.
"""

from __future__ import annotations

__all__ = ("BlockReport", "LoopWatch", "describe_call")

import asyncio
import contextvars
import logging
import sys
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, final

from ._calls import Call
from ._context import new_thread
from ._loops import loop_running_in_this_thread

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from types import FrameType


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


def _loop_name(native: object) -> str:
    if not isinstance(native, asyncio.AbstractEventLoop):
        return "trio"
    return "uvloop" if type(native).__module__.startswith("uvloop") else "asyncio"
