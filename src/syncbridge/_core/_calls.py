"""One async call made from a blocked thread, and the loop handle it is sent to.

A :class:`Call` carries a coroutine function from a sync caller to an event
loop (see ``_loops`` for the handles, ``_trio_hosts`` for trio's host tasks)
and its outcome back, through :attr:`Call.replies`. Its life, outcome and
first cancel reason are a :class:`~._handoff.Handoff`'s, under the call's own
lock (see there). The portal keeps the calls it was sent in a
:class:`CallLedger` until each has its outcome.
"""

from __future__ import annotations

__all__ = (
    "DONE",
    "Call",
    "CallLedger",
    "LoopHandle",
    "TimedCall",
    "Tracker",
)

import contextvars
import functools
import threading
import time
from collections.abc import Awaitable, Callable
from queue import SimpleQueue
from types import CoroutineType
from typing import TYPE_CHECKING, Any, Final, Generic, Protocol

from .._exceptions import SyncBridgeTimeout, callable_name, timeout_message
from .._typing import T
from ._counts import CountsSnapshot, Ending
from ._deadline import Deadline
from ._handoff import NO_KWARGS, QUEUED, RUNNING, CancelReason, Handoff
from ._outcome import Cancelled

if TYPE_CHECKING:
    from collections.abc import Iterator

    from ._outcome import Error, Value


class Tracker(Protocol):
    """Told once when a call it tracks has its outcome (the portal)."""

    def finished(self, call: Call[Any]) -> None:
        """Forget *call* and count its outcome; from any thread; never raises."""
        ...


DONE: Final = object()
"""Put on :attr:`Call.replies` once the call has an outcome."""


class Call(Handoff[Callable[[], object]], Generic[T]):
    """One async call made from a blocked thread: its inputs, outcome and mailbox.

    The blocked thread waits on :attr:`replies`, which receives :data:`DONE` once the
    outcome is set, and, while it waits, worker jobs it is asked to run on its own
    thread (see ``_delegate``). A call nobody waits for (``start_soon``) is told
    through :attr:`on_done` instead.

    The outcome is written once, by whichever finishes the call first: the loop
    thread, or a closing bridge answering a call its loop can no longer finish.
    Its :attr:`inner` is how to cancel the task running it (see :meth:`begin`).
    """

    __slots__ = (
        "_lock",
        "args",
        "ctx",
        "func",
        "kwargs",
        "loop",
        "name",
        "on_done",
        "replies",
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
        # The Handoff's, set here (a super().__init__() is a call more per
        # call), guarded by _lock: the outcome, the cancel reason and the
        # loop's way of cancelling the running task, so each happens once.
        self.state = QUEUED
        self.outcome: Value[T] | Error | Cancelled | None = None
        self.cancel: CancelReason | None = None
        self.inner: Callable[[], object] | None = None
        self.loop: LoopHandle | None = None  # set once it is handed to a loop
        self.on_done: Callable[[Call[T]], object] | None = None
        self.tracker: Tracker | None = None
        self.timed_out = False  # its own deadline passed (counted as a timeout)

    @property
    def running(self) -> bool:
        """Whether a task on its loop runs the call (begun, no outcome yet)."""
        return self.state is RUNNING

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

    def _interrupt(self, inner: Callable[[], object]) -> None:
        # inner is the running task's cancel (begin()), run on its loop.
        if self.loop is not None:
            self.loop.post(inner)

    def _settled(self, timed_out: bool) -> None:
        if timed_out:  # before the tracker counts it
            self.timed_out = True
        # The loop thread's frames hold this Call until the coroutine returns,
        # which may be after the caller resumed: drop the callable and context
        # now so their last reference is never released on the loop thread.
        self.func = _spent
        self.ctx = _SPENT_CONTEXT
        self.args = ()
        self.kwargs = NO_KWARGS
        self.inner = None
        tracker = self.tracker
        if tracker is not None:
            tracker.finished(self)
        self.replies.put(DONE)
        if self.on_done is not None:
            self.on_done(self)


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


# Read once: ``Ending.COMPLETED`` is a class lookup through the enum's
# metaclass, and the ledger tells the endings apart by identity (hashing a
# member would cost a Python call).
_COMPLETED: Final = Ending.COMPLETED
_ERROR: Final = Ending.ERROR
_CANCELLED: Final = Ending.CANCELLED


class CallLedger:
    """The portal's calls without an outcome yet, and how the others ended.

    A call is added as it is sent, and leaves once: by :meth:`ended`, counted
    by how it ended, or by :meth:`forget` if no loop took it (no call at all).
    So the calls made are those ended plus those still here. Iterating gives
    a copy of the calls still here.
    """

    __slots__ = (
        "_calls",
        "_cancelled",
        "_completed",
        "_emptied",
        "_errors",
        "_lock",
        "_timed_out",
    )

    def __init__(self) -> None:
        # Guards leaving, the totals and _emptied together: a snapshot reads
        # calls and totals as one, and a drain cannot miss the last call
        # leaving. Adding needs no lock of ours: the portal adds under its
        # own lock, and never once it is closed (and a drain waits).
        self._lock = threading.Lock()
        self._calls: set[Call[Any]] = set()
        self._completed = self._errors = self._cancelled = self._timed_out = 0
        self._emptied: Callable[[], object] | None = None

    def __len__(self) -> int:
        return len(self._calls)

    def __iter__(self) -> Iterator[Call[Any]]:
        return iter(list(self._calls))

    def add(self, call: Call[Any]) -> None:
        """Track *call*, which is being sent to a loop."""
        self._calls.add(call)

    def ended(self, call: Call[Any], how: Ending) -> None:
        """*call* has its outcome: forget it, and count it by *how* it ended."""
        lock = self._lock
        lock.acquire()  # (try/finally costs half of a `with` block)
        try:
            self._calls.discard(call)
            if how is _COMPLETED:
                self._completed += 1
            elif how is _ERROR:
                self._errors += 1
            elif how is _CANCELLED:
                self._cancelled += 1
            else:
                self._timed_out += 1
            wake = None
            if self._emptied is not None and not self._calls:
                wake, self._emptied = self._emptied, None
        finally:
            lock.release()
        if wake is not None:
            wake()

    def forget(self, call: Call[Any]) -> None:
        """Un-track *call*, which no loop took: counted as no call at all."""
        with self._lock:
            self._calls.discard(call)
            wake = None
            if self._emptied is not None and not self._calls:
                wake, self._emptied = self._emptied, None
        if wake is not None:
            wake()

    def wake_when_empty(self, wake: Callable[[], object] | None) -> bool:
        """Call *wake* (from any thread) once no call is left; ``None`` stops that.

        True if none is left already; then *wake* is not kept.
        """
        with self._lock:
            if wake is not None and not self._calls:
                return True
            self._emptied = wake
            return False

    def snapshot(self) -> CountsSnapshot:
        """The totals now, read together: calls made, and how they ended."""
        with self._lock:
            ended = self._completed + self._errors + self._cancelled + self._timed_out
            return CountsSnapshot(
                ended + len(self._calls),
                self._completed,
                self._errors,
                self._cancelled,
                self._timed_out,
            )

    def answer_leftovers(self) -> list[str]:
        """Finish every call without an outcome, so its caller wakes up.

        Returns the names of the calls this answered (for the log).
        """
        return [call.name for call in self if call.finish(Cancelled())]


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
