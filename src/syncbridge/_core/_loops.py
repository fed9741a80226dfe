"""Handles on running event loops: run a coroutine there from another thread.

A *loop handle* wraps an asyncio event loop or a trio run (its ``TrioToken``) and
knows how to start a :class:`Call` on it from any thread, cancel it, and tell whether
the loop can still run anything. asyncio gets a direct path built on
``call_soon_threadsafe`` (the cheapest wake-up there is); trio goes through
``TrioToken.run_sync_soon`` and a system task.
"""

from __future__ import annotations

__all__ = (
    "DONE",
    "AsyncioLoop",
    "Call",
    "LoopGone",
    "LoopHandle",
    "TrioLoop",
    "handle_for",
    "loop_running_in_this_thread",
)

import asyncio
import contextvars
import os
import sys
from collections.abc import Awaitable, Callable
from queue import SimpleQueue
from typing import TYPE_CHECKING, Any, Final, Generic, Protocol

import anyio

from .._typing import T

if TYPE_CHECKING:
    import trio


class LoopGone(Exception):
    """The loop behind a handle has stopped; nothing can be scheduled on it."""


DONE: Final = object()
"""Put on :attr:`Call.replies` once the call has an outcome."""


class Call(Generic[T]):
    """One async call made from a blocked thread: its inputs, outcome and mailbox.

    The blocked thread waits on :attr:`replies`, which receives :data:`DONE` once the
    outcome is set, and, while it waits, worker jobs it is asked to run on its own
    thread (see ``_workers.Delegate``). A call nobody waits for (``start_soon``)
    is told through :attr:`on_done` instead, on the loop thread.
    """

    __slots__ = (
        "args",
        "cancel_on_loop",
        "cancelled",
        "ctx",
        "done",
        "func",
        "kwargs",
        "ok",
        "on_done",
        "replies",
        "started",
        "timeout",
        "value",
    )

    def __init__(
        self,
        func: Callable[..., Awaitable[T]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        ctx: contextvars.Context,
        timeout: float | None,
    ) -> None:
        self.func = func
        self.args = args
        self.kwargs = kwargs
        self.ctx = ctx
        self.timeout = timeout
        self.replies: SimpleQueue[object] = SimpleQueue()
        self.ok = False
        self.cancelled = False
        self.done = False
        self.started = False
        self.value: Any = None
        self.cancel_on_loop: Callable[[], object] | None = None
        self.on_done: Callable[[Call[T]], object] | None = None

    async def _invoke(self) -> T:
        awaitable: object = self.func(*self.args, **self.kwargs)
        if not isinstance(awaitable, Awaitable):
            name = getattr(self.func, "__qualname__", repr(self.func))
            raise TypeError(
                f"{name}() returned {type(awaitable).__name__!r}, which cannot be "
                "awaited: sync_call_async(), to_sync() and Bridge.start_soon() run "
                "async functions; call a plain function directly instead."
            )
        result: T
        if self.timeout is None:
            result = await awaitable
        else:
            with anyio.fail_after(self.timeout):
                result = await awaitable
        return result

    def cancel_requested(self) -> bool:
        """Read :attr:`cancelled` afresh: another thread may have just set it."""
        return self.cancelled

    def finish(self, ok: bool, value: object, cancelled: bool = False) -> None:
        """Record the outcome (on the loop thread) and wake the blocked thread."""
        self.ok = ok
        self.value = value
        self.cancelled = cancelled
        self.done = True
        # The loop thread's frames hold this Call until the coroutine returns,
        # which may be after the caller resumed: drop the callable and context
        # now so their last reference is never released on the loop thread.
        self.func = _spent
        self.ctx = _SPENT_CONTEXT
        self.args = ()
        self.kwargs = {}
        self.replies.put(DONE)
        if self.on_done is not None:
            self.on_done(self)


async def _spent(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("this call has already finished")


_SPENT_CONTEXT: Final = contextvars.Context()


class LoopHandle(Protocol):
    """What the bridge needs from a running event loop."""

    @property
    def native(self) -> object:
        """The asyncio loop or trio token behind this handle."""
        ...

    def is_alive(self) -> bool:
        """Whether the loop is (as far as can be told) still running in this process."""
        ...

    def submit(self, call: Call[Any]) -> None:
        """Start *call* on the loop; thread-safe. Raises :class:`LoopGone`."""
        ...

    def cancel(self, call: Call[Any]) -> None:
        """Cancel *call* if it is still running; thread-safe, never raises."""
        ...


class AsyncioLoop:
    """A handle on an asyncio (or uvloop) event loop."""

    __slots__ = ("_pid", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop, pid: int | None = None) -> None:
        self.loop = loop
        self._pid = os.getpid() if pid is None else pid

    @property
    def native(self) -> object:
        return self.loop

    def is_alive(self) -> bool:
        return (
            self._pid == os.getpid()
            and self.loop.is_running()
            and not self.loop.is_closed()
        )

    def submit(self, call: Call[Any]) -> None:
        try:
            self.loop.call_soon_threadsafe(self._start, call)
        except RuntimeError:  # the loop is closed
            raise LoopGone from None

    def cancel(self, call: Call[Any]) -> None:
        cancel = call.cancel_on_loop
        if cancel is not None:
            try:
                self.loop.call_soon_threadsafe(cancel)
            except RuntimeError:
                pass

    def _start(self, call: Call[Any]) -> None:
        if call.cancelled:  # cancelled before it could start
            call.finish(False, None, cancelled=True)
            return
        # Running create_task inside call.ctx gives the task a copy of the caller's
        # context on every Python version (3.10 has no ``context=`` argument).
        task = call.ctx.run(
            self.loop.create_task, _run_asyncio(call), name=_call_name(call)
        )
        call.cancel_on_loop = task.cancel
        # A cancel() from another thread in between saw no cancel_on_loop yet:
        # both sides write first and read second, so one of them sees the other.
        if call.cancel_requested():
            task.cancel()
            # A task cancelled before its first step never enters _run_asyncio,
            # so nothing there would record the outcome: do it here. (An eager
            # task factory may already have run that first step.)
            if not call.started:
                call.finish(False, None, cancelled=True)


async def _run_asyncio(call: Call[Any]) -> None:
    call.started = True
    try:
        value = await call._invoke()
    except asyncio.CancelledError as exc:
        call.finish(False, exc, cancelled=True)
    except BaseException as exc:
        # Caught whole: the outcome belongs to the blocked caller, and a
        # KeyboardInterrupt re-raised here would stop the loop itself.
        call.finish(False, exc)
    else:
        call.finish(True, value)


class TrioLoop:
    """A handle on a trio run, through its ``TrioToken``."""

    __slots__ = ("_pid", "on_start", "token")

    def __init__(
        self,
        token: trio.lowlevel.TrioToken,
        on_start: Callable[[Call[Any]], None] | None = None,
    ) -> None:
        self.token = token
        self._pid = os.getpid()
        self.on_start = on_start

    @property
    def native(self) -> object:
        return self.token

    def is_alive(self) -> bool:
        return self._pid == os.getpid()

    def submit(self, call: Call[Any]) -> None:
        import trio

        try:
            self.token.run_sync_soon(self._start, call)
        except trio.RunFinishedError:
            raise LoopGone from None

    def cancel(self, call: Call[Any]) -> None:
        import trio

        cancel = call.cancel_on_loop
        if cancel is not None:
            try:
                self.token.run_sync_soon(cancel)
            except trio.RunFinishedError:
                pass

    def _start(self, call: Call[Any]) -> None:
        import trio

        if call.cancelled:
            call.finish(False, None, cancelled=True)
            return
        scope = trio.CancelScope()
        call.cancel_on_loop = scope.cancel
        if call.cancel_requested():  # cancelled meanwhile: see AsyncioLoop._start
            call.finish(False, None, cancelled=True)
            return
        if self.on_start is not None:
            self.on_start(call)
        trio.lowlevel.spawn_system_task(
            _run_trio, call, scope, name=_call_name(call), context=call.ctx
        )


async def _run_trio(call: Call[Any], scope: trio.CancelScope) -> None:
    import trio

    try:
        with scope:
            value = await call._invoke()
            call.finish(True, value)
            return
    except trio.Cancelled as exc:  # the run itself is ending
        call.finish(False, exc, cancelled=True)
        return
    except BaseException as exc:
        call.finish(False, exc)
        return
    # Only reached when our own scope absorbed a cancellation.
    call.finish(False, None, cancelled=True)


def _call_name(call: Call[Any]) -> str:
    return f"syncbridge: {getattr(call.func, '__qualname__', repr(call.func))}"


def handle_for(native: object) -> LoopHandle:
    """Wrap an asyncio loop or a trio token in a :class:`LoopHandle`."""
    if isinstance(native, asyncio.AbstractEventLoop):
        return AsyncioLoop(native)
    return TrioLoop(native)  # type: ignore[arg-type]


def loop_running_in_this_thread() -> object | None:
    """Return the asyncio loop or trio token running in this thread, if any."""
    loop = asyncio._get_running_loop()
    if loop is not None:
        return loop
    if "trio" in sys.modules:
        import trio

        try:
            return trio.lowlevel.current_trio_token()
        except RuntimeError:
            return None
    return None
