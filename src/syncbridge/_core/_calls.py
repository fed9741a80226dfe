"""One async call made from a blocked thread, and the loop handle it is sent to.

A :class:`Call` carries a coroutine function from a sync caller to an event
loop (see ``_loops`` for the handles, ``_trio_hosts`` for trio's host tasks)
and its outcome back, through :attr:`Call.replies`.
"""

from __future__ import annotations

__all__ = (
    "CALL_DONE",
    "DONE",
    "Call",
    "CallState",
    "LoopHandle",
    "TimedCall",
    "Tracker",
)

import contextvars
import enum
import functools
import threading
import time
from collections.abc import Awaitable, Callable
from queue import SimpleQueue
from types import CoroutineType
from typing import TYPE_CHECKING, Any, Final, Generic, Protocol

from .._exceptions import SyncBridgeTimeout, callable_name, timeout_message
from .._typing import T
from ._deadline import Deadline

if TYPE_CHECKING:
    from ._outcome import Cancelled, Error, Value


class Tracker(Protocol):
    """Told once when a call it tracks has its outcome (the portal)."""

    def finished(self, call: Call[Any]) -> None:
        """Forget *call* and count its outcome; from any thread; never raises."""
        ...


DONE: Final = object()
"""Put on :attr:`Call.replies` once the call has an outcome."""


class CallState(enum.Enum):
    """Where a call is in its life."""

    SUBMITTED = "submitted"
    RUNNING = "running"
    DONE = "done"


# The states, looked up once: ``CallState.DONE`` goes through the enum's
# class lookup (0.1 µs on Python 3.11), and a call reads its state six times.
_SUBMITTED: Final = CallState.SUBMITTED
_RUNNING: Final = CallState.RUNNING
CALL_DONE: Final = CallState.DONE


class Call(Generic[T]):
    """One async call made from a blocked thread: its inputs, outcome and mailbox.

    The blocked thread waits on :attr:`replies`, which receives :data:`DONE` once the
    outcome is set, and, while it waits, worker jobs it is asked to run on its own
    thread (see ``_delegate``). A call nobody waits for (``start_soon``) is told
    through :attr:`on_done` instead.

    The outcome is written once, by whichever finishes the call first: the loop
    thread, or a closing bridge answering a call its loop can no longer finish.
    """

    __slots__ = (
        "_cancel_on_loop",
        "_lock",
        "args",
        "cancel_requested",
        "ctx",
        "func",
        "kwargs",
        "loop",
        "name",
        "on_done",
        "outcome",
        "replies",
        "state",
        "timed_out",
        "timeout",
        "tracker",
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
        # callable_name() inlined for the common case (a function or method).
        name = getattr(func, "__qualname__", None)
        if not isinstance(name, str) or isinstance(func, functools.partial):
            name = callable_name(func)  # pyright: ignore[reportUnknownArgumentType]
        self.name: str = name
        self.args = args
        self.kwargs = kwargs
        self.ctx = ctx
        self.timeout = timeout
        self.replies: SimpleQueue[object] = SimpleQueue()
        self._lock = threading.Lock()
        # Guarded by _lock: the outcome, the cancel request and the loop's way
        # of cancelling the running task, so each happens exactly once.
        self.state = _SUBMITTED
        self.outcome: Value[T] | Error | Cancelled | None = None
        self.cancel_requested = False
        self._cancel_on_loop: Callable[[], object] | None = None
        self.loop: LoopHandle | None = None  # set once it is handed to a loop
        self.on_done: Callable[[Call[T]], object] | None = None
        self.tracker: Tracker | None = None
        self.timed_out = False  # its own deadline passed (counted as a timeout)

    @property
    def done(self) -> bool:
        """Whether the call has its outcome."""
        return self.state is CALL_DONE

    @property
    def running(self) -> bool:
        """Whether a task on its loop runs the call (begun, no outcome yet)."""
        return self.state is _RUNNING

    async def invoke(self) -> T:
        awaitable: object = self.func(*self.args, **self.kwargs)
        if awaitable.__class__ is not CoroutineType and not isinstance(
            awaitable, Awaitable
        ):  # pyright: ignore[reportUnnecessaryIsInstance] - func is typed, not checked
            raise TypeError(
                f"{self.name}() is not async: it already ran, on the event loop "
                f"thread {threading.current_thread().name!r} (blocking every other "
                f"task there until it returned), and returned "
                f"{type(awaitable).__name__!r}, which cannot be awaited. "
                "sync_call_async(), to_sync() and Bridge.start_soon() run async "
                "functions: call a plain function directly in sync code, or with "
                "`await syncbridge.run_blocking(func, ...)` in async code."
            )
        result: T
        if self.timeout is None:
            result = await awaitable
            return result
        assert isinstance(self, TimedCall)
        return await _by_deadline(self, awaitable)

    def begin(self, cancel_on_loop: Callable[[], object]) -> bool:
        """Register how to cancel the task now running the call (loop thread).

        Returns False if a cancel was requested first: the caller must then
        cancel the task itself (a cancel request finds nothing to cancel yet).
        """
        with self._lock:
            if self.state is CALL_DONE:
                return False
            self.state = _RUNNING
            self._cancel_on_loop = cancel_on_loop
            return not self.cancel_requested

    def request_cancel(self) -> bool:
        """Cancel the call on its loop, once; from any thread; never raises.

        A call not started yet never starts. True if this request cancels it
        (not done, nor asked before).
        """
        with self._lock:
            if self.cancel_requested or self.state is CALL_DONE:
                return False
            self.cancel_requested = True
            cancel = self._cancel_on_loop
        if cancel is not None and self.loop is not None:
            self.loop.post(cancel)
        return True

    def finish(
        self, outcome: Value[T] | Error | Cancelled, *, timed_out: bool = False
    ) -> bool:
        """Record the outcome and wake the blocked thread; False if already done.

        *timed_out*: the outcome is the call's own timeout (counted so), set
        only if this outcome wins.
        """
        with self._lock:
            if self.state is CALL_DONE:
                return False
            self.outcome = outcome
            self.state = CALL_DONE
            if timed_out:
                self.timed_out = True
        # The loop thread's frames hold this Call until the coroutine returns,
        # which may be after the caller resumed: drop the callable and context
        # now so their last reference is never released on the loop thread.
        self.func = _spent
        self.ctx = _SPENT_CONTEXT
        self.args = ()
        self.kwargs = _NO_KWARGS
        self._cancel_on_loop = None
        tracker = self.tracker
        if tracker is not None:
            tracker.finished(self)
        self.replies.put(DONE)
        if self.on_done is not None:
            self.on_done(self)
        return True


class TimedCall(Call[T]):
    """A call with a deadline (its *timeout*), from ``to_sync(timeout=...)`` and kin.

    The loop cancels it once at the deadline (see :class:`~._deadline.Deadline`)
    and its outcome is then :meth:`timeout_error`. The blocked caller reads
    :attr:`started` to bound its wait (see ``_loop_choice``).
    """

    __slots__ = ("make_error", "started")

    def __init__(
        self,
        func: Callable[..., Awaitable[T]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        ctx: contextvars.Context,
        timeout: float,
        make_error: Callable[[], BaseException] | None = None,
    ) -> None:
        super().__init__(func, args, kwargs, ctx, timeout)
        self.make_error = make_error
        # time.monotonic() when the loop started it; written once by the loop
        # thread and read by the caller's: a single reference store and load,
        # atomic without the GIL too (a free-threaded build locks the object).
        self.started: float | None = None

    def timeout_error(self) -> BaseException:
        """The exception its caller gets once the deadline has ended it."""
        if self.make_error is not None:
            return self.make_error()
        assert self.timeout is not None
        # Its own class, so handlers can tell it from the function's own (#16).
        what = "to_sync(timeout=...)"
        return SyncBridgeTimeout(timeout_message(what, self.name, self.timeout))


async def _by_deadline(call: TimedCall[T], awaitable: Awaitable[T]) -> T:
    call.started = time.monotonic()
    assert call.timeout is not None
    # Cancelled once, as the loop's users expect: cleanup that awaits ends.
    with Deadline(call.timeout):
        result = await awaitable
        return result
    call.timed_out = True
    raise call.timeout_error()


async def _spent(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("this call has already finished")


_SPENT_CONTEXT: Final = contextvars.Context()
_NO_KWARGS: Final[dict[str, Any]] = {}  # a finished call's; never changed


class LoopHandle(Protocol):
    """What the bridge needs from a running event loop."""

    @property
    def native(self) -> object:
        """The asyncio loop or trio token behind this handle."""
        ...

    def is_alive(self) -> bool:
        """Whether the loop may still run calls in this process; cheap, optimistic."""
        ...

    def still_running(self) -> bool:
        """Whether the loop is still running: a real check, for a waiting caller."""
        ...

    def submit(self, call: Call[Any]) -> None:
        """Start *call* on the loop; thread-safe. Raises :class:`LoopGone`."""
        ...

    def post(self, callback: Callable[[], object]) -> None:
        """Run *callback* on the loop soon; thread-safe; a no-op once it is gone."""
        ...
