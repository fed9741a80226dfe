"""The portal's asyncio loop, on a selector whose timed waits end on time (#15).

``epoll_wait`` counts in whole milliseconds, so :class:`selectors.EpollSelector`
rounds every positive timeout up (to 2 ms late for some timeouts, see below): a
timer on an asyncio loop fires late, and on a loop shared by many threads'
requests (Flask's 10 ms views) that adds up. :class:`PreciseEpollSelector` waits
the last part in ``select.select()``, which takes microseconds. Elsewhere the
default loop is kept: kqueue (macOS) takes its timeout in nanoseconds already,
and Windows runs the proactor.
"""

from __future__ import annotations

__all__ = ("new_event_loop",)

import asyncio
import select
import selectors
import sys
import time
from typing import Final

_FD_SETSIZE: Final = 1024
"""The fds ``select.select()`` takes are below this (glibc's ``FD_SETSIZE``)."""


if sys.platform == "linux":

    class PreciseEpollSelector(selectors.EpollSelector):
        """An :class:`~selectors.EpollSelector` that waits to the microsecond.

        A positive, finite timeout is waited for in epoll for the whole
        milliseconds that cannot pass the deadline, then in ``select.select()``
        on the epoll fd (readable when events are ready) for the rest, and the
        events are collected with a non-blocking poll. An event that comes in
        the epoll part costs one call, as before. Timeouts ``0`` and ``None``, and
        an epoll fd too high for ``select.select()``, are plain epoll.
        """

        def __init__(self) -> None:
            super().__init__()
            self._epoll_fd = self.fileno()

        def select(
            self, timeout: float | None = None
        ) -> list[tuple[selectors.SelectorKey, int]]:
            """Like :meth:`selectors.EpollSelector.select`, not rounded to ms."""
            if timeout is None or timeout <= 0 or self._epoll_fd >= _FD_SETSIZE:
                return super().select(timeout)
            # EpollSelector rounds up twice (its ceil, then poll's conversion of
            # a float like 9 * 1e-3 = 0.009000000000000001 to 10 ms): ask for
            # half a millisecond less than one under the deadline, to be safe.
            whole_ms = int(timeout * 1e3) - 1
            if whole_ms > 0:
                deadline = time.monotonic() + timeout
                ready = super().select((whole_ms - 0.5) * 1e-3)
                if ready:
                    return ready
                timeout = deadline - time.monotonic()
                if timeout <= 0:
                    return []
            if not select.select([self._epoll_fd], [], [], timeout)[0]:
                return []
            return super().select(0)


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A new loop, as :func:`asyncio.new_event_loop` makes it, with timely timers.

    On Linux the loop runs on a :class:`PreciseEpollSelector`; elsewhere it is
    the platform's default loop. Before Python 3.14 an event loop policy the
    application set (``uvloop.install()``, say) makes the loop instead. From
    3.14 policies are deprecated (3.16 removes them; ``asyncio.run(loop_factory=...)``
    replaces them) and none is consulted: ``Bridge(use_uvloop=True)`` picks uvloop.
    """
    if sys.version_info >= (3, 14):
        if sys.platform == "linux":
            return asyncio.SelectorEventLoop(PreciseEpollSelector())
        return asyncio.EventLoop()
    policy = asyncio.get_event_loop_policy()  # pyright: ignore[reportDeprecated] - < 3.14
    if sys.platform == "linux" and type(policy) is asyncio.DefaultEventLoopPolicy:
        return asyncio.SelectorEventLoop(PreciseEpollSelector())
    return asyncio.new_event_loop()
