"""Handles on running event loops: run a coroutine there from another thread.

A *loop handle* wraps an asyncio event loop or a trio run (its ``TrioToken``) and
knows how to start a :class:`Call` on it from any thread, cancel it, and tell whether
the loop can still run anything. asyncio gets a direct path built on
``call_soon_threadsafe`` (the cheapest wake-up there is); trio goes through
``TrioToken.run_sync_soon`` and a host task (see ``_trio_hosts``).
"""

from __future__ import annotations

__all__ = (
    "CALL_DONE",
    "DONE",
    "AsyncioLoop",
    "Call",
    "CallState",
    "LoopGone",
    "LoopHandle",
    "PortalAsyncioLoop",
    "TimedCall",
    "TrioLoop",
    "handle_for",
    "loop_running_in_this_thread",
)

import asyncio
import contextvars
import enum
import functools
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from queue import SimpleQueue
from types import CoroutineType
from typing import TYPE_CHECKING, Any, Final, Generic, Protocol

from .._exceptions import (
    SyncBridgeTimeout,
    callable_name,
    timeout_message,
)
from .._typing import T
from ._deadline import Deadline
from ._outcome import Cancelled, Error, Value

if TYPE_CHECKING:
    from collections.abc import Iterable

    import trio

_get_running_loop: Final = asyncio._get_running_loop


class Tracker(Protocol):
    """Told once when a call it tracks has its outcome (the portal)."""

    def finished(self, call: Call[Any]) -> None:
        """Forget *call* and count its outcome; from any thread; never raises."""
        ...


class LoopGone(Exception):
    """The loop behind a handle has stopped; nothing can be scheduled on it."""


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

    def still_running(self) -> bool:
        return self.is_alive()

    def submit(self, call: Call[Any]) -> None:
        call.loop = self
        try:
            self.loop.call_soon_threadsafe(self._start, call)
        except RuntimeError:  # the loop is closed
            call.loop = None
            raise LoopGone from None

    def post(self, callback: Callable[[], object]) -> None:
        try:
            self.loop.call_soon_threadsafe(callback)
        except RuntimeError:
            pass

    def _start(self, call: Call[Any]) -> None:
        if call.cancel_requested or call.done:  # cancelled before it could start
            call.finish(Cancelled())
            return
        # Running create_task inside call.ctx gives the task a copy of the caller's
        # context, also from a task factory that takes no ``context=`` argument.
        task = call.ctx.run(self.loop.create_task, _run_asyncio(call), name=call.name)
        if not call.begin(task.cancel):
            # Cancelled (or answered by a closing bridge) meanwhile: the cancel
            # request found no task to cancel yet, so cancel it here.
            task.cancel()
            # A task cancelled before its first step never enters _run_asyncio,
            # so nothing there would record the outcome. (An eager task factory
            # may already have run that first step; finish() is once only.)
            call.finish(Cancelled())


_INTAKE_SHORT: Final = 64
"""Calls queued for the portal loop that share one wake-up; past it, each posts."""


class PortalAsyncioLoop(AsyncioLoop):
    """The portal's own asyncio loop: calls sent at once share one wake-up.

    ``call_soon_threadsafe`` writes to the loop's self-pipe on every call, so
    many threads calling at once each pay a system call (and the loop a
    callback) for a loop that is already awake. Here a call joins an intake
    and only a call that finds no wake-up pending wakes the loop. Only the
    portal uses it: a call that its loop never starts (the loop ended with
    calls in the intake) is still answered, by :meth:`close_intake`.

    The intake, the pending flag and the ended flag change together under
    :attr:`_lock`: a call that finds a wake-up pending must be sure that
    wake-up sees it, which no lock-free order of two fields promises without
    the GIL.
    """

    __slots__ = ("_gone", "_intake", "_lock", "_start_intake_cb", "_wake_pending")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self._lock = threading.Lock()
        self._intake: deque[Call[Any]] = deque()  # guarded by _lock
        self._wake_pending = False  # guarded by _lock
        self._gone = False  # the loop has ended: see close_intake (guarded by _lock)
        self._start_intake_cb = self._start_intake  # bound once

    def submit(self, call: Call[Any]) -> None:
        call.loop = self
        lock = self._lock
        lock.acquire()  # not `with`: half the cost, on every call
        try:
            if self._gone:
                call.loop = None  # it reached no loop
                raise LoopGone
            intake = self._intake
            intake.append(call)
            if self._wake_pending and len(intake) <= _INTAKE_SHORT:
                return  # the loop will start it with the calls before it
            # A long intake means callers outrun the loop (start_soon() in a
            # loop never blocks): each then posts its own wake-up, whose system
            # call lets the loop thread run, as every call did before intakes.
            self._wake_pending = True
        finally:
            lock.release()
        try:
            self.loop.call_soon_threadsafe(self._start_intake_cb)
        except BaseException as exc:
            # Whatever stopped the wake-up being posted (a closed loop, a
            # Ctrl-C in call_soon_threadsafe) must clear the flag, or no later
            # call would wake the loop.
            with lock:
                self._wake_pending = False  # at worst, one wake-up too many later
            if not self._withdraw(call) or not isinstance(exc, RuntimeError):
                raise  # a call the loop took already is cancelled by its caller
            raise LoopGone from None  # RuntimeError: the loop is closed

    def _withdraw(self, call: Call[Any]) -> bool:
        """Take back *call* if the loop has not taken it; True if it was."""
        with self._lock:
            try:
                self._intake.remove(call)
            except ValueError:
                return False
        call.loop = None  # it reached no loop
        return True

    def _start_intake(self) -> None:
        # A batch, not all: the loop runs its timers and I/O between batches,
        # however fast calls arrive.
        lock = self._lock
        lock.acquire()  # not `with`: see submit
        try:
            intake = self._intake
            more = len(intake) > _INTAKE_SHORT
            if more:
                batch: Iterable[Call[Any]] = [
                    intake.popleft() for _ in range(_INTAKE_SHORT)
                ]
            else:
                # All of it, the common case (often one call): the intake
                # itself, not a copy made by a comprehension.
                batch, self._intake = intake, deque()
            self._wake_pending = more
        finally:
            lock.release()
        for call in batch:
            try:
                self._start(call)
            except Exception as exc:  # never leave the calls after it waiting
                call.finish(Error(exc))
        if more:
            self.loop.call_soon(self._start_intake_cb)

    def close_intake(self) -> None:
        """Answer the calls the ended loop never started; refuse new ones.

        Called by the portal thread once its loop has ended, however it
        ended (``close()``, a ``loop.stop()`` in user code, a crash).
        """
        with self._lock:
            self._gone = True
            left = list(self._intake)
            self._intake.clear()
        for call in left:
            call.finish(Cancelled())


async def _run_asyncio(call: Call[Any]) -> None:
    try:
        value = await call.invoke()
    except asyncio.CancelledError as exc:
        if call.cancel_requested or _cancelled_by_someone():
            call.finish(Cancelled(exc))
        else:  # the coroutine's own CancelledError: its outcome, unchanged (#11)
            call.finish(Error(exc))
    except BaseException as exc:
        # Caught whole: the outcome belongs to the blocked caller, and a
        # KeyboardInterrupt re-raised here would stop the loop itself.
        call.finish(Error(exc))
    else:
        call.finish(Value(value))


def _cancelled_by_someone() -> bool:
    """Whether this task was cancelled (its loop shutting down, say).

    A task that cannot tell a cancel from a coroutine's own ``CancelledError``
    (one of a task factory's without ``cancelling()``) counts every one as a cancel.
    """
    cancelling = getattr(asyncio.current_task(), "cancelling", None)
    return cancelling is None or cancelling() > 0


class TrioLoop:
    """A handle on a trio run, through its ``TrioToken``."""

    __slots__ = ("_pid", "token")

    def __init__(self, token: trio.lowlevel.TrioToken) -> None:
        self.token = token
        self._pid = os.getpid()

    @property
    def native(self) -> object:
        return self.token

    def is_alive(self) -> bool:
        return self._pid == os.getpid()

    def still_running(self) -> bool:
        # A token gives no other sign of a finished run than refusing work.
        if not self.is_alive():
            return False
        import trio

        try:
            self.token.run_sync_soon(_noop)
        except trio.RunFinishedError:
            return False
        return True

    def submit(self, call: Call[Any]) -> None:
        start = _start_on_host
        if start is None:
            start = _load_trio_hosts()
        call.loop = self
        try:
            self.token.run_sync_soon(start, call)
        except _RunFinished:
            call.loop = None
            raise LoopGone from None

    def _start(self, call: Call[Any]) -> None:
        """Start *call* on a host task of this run; on the run's own thread.

        What :meth:`submit` posts (it posts the hosts' ``start_call`` itself,
        one frame less per call).
        """
        start = _start_on_host
        if start is None:
            start = _load_trio_hosts()
        start(call)

    def post(self, callback: Callable[[], object]) -> None:
        import trio

        try:
            self.token.run_sync_soon(callback)
        except trio.RunFinishedError:
            pass


# Looked up once, on the first call sent to a trio run: importing them imports
# trio, and a submit runs per call.
_start_on_host: Callable[[Call[Any]], None] | None = None
_RunFinished: type[BaseException] = LoopGone  # trio.RunFinishedError once loaded


def _load_trio_hosts() -> Callable[[Call[Any]], None]:
    global _start_on_host, _RunFinished
    import trio

    from ._trio_hosts import start_call

    _RunFinished = trio.RunFinishedError
    _start_on_host = start_call
    return start_call


def _noop() -> None:
    pass


def handle_for(native: object) -> LoopHandle:
    """Wrap an asyncio loop or a trio token in a :class:`LoopHandle`."""
    if isinstance(native, asyncio.AbstractEventLoop):
        return AsyncioLoop(native)
    return TrioLoop(native)  # type: ignore[arg-type]


def loop_running_in_this_thread() -> object | None:
    """Return the asyncio loop or trio token running in this thread, if any."""
    loop = _get_running_loop()
    if loop is not None:
        return loop
    in_run = _trio_run_here
    if in_run is None:
        if "trio" not in sys.modules:
            return None
        in_run = _load_trio_check()
    if not in_run():
        return None
    return _trio_token_here()


_trio_run_here: Callable[[], bool] | None = None
"""Whether a trio run is active in this thread; set once trio is imported.

Asked on every ``sync_call_async`` from a plain thread, so it must be cheap.
"""


def _load_trio_check() -> Callable[[], bool]:
    global _trio_run_here
    import trio

    # trio.lowlevel.in_trio_run() (trio 0.27+) is ``hasattr(GLOBAL_RUN_CONTEXT,
    # "runner")`` on trio's thread-local: in a plain thread that raises and
    # catches an AttributeError, half a microsecond. Reading the thread's own
    # dict of that thread-local answers the same without raising; anything
    # else than the layout checked here falls back to trio's own function.
    check: Callable[[], bool] = getattr(trio.lowlevel, "in_trio_run", _in_trio_run)
    run_context: object = getattr(
        getattr(getattr(trio, "_core", None), "_run", None), "GLOBAL_RUN_CONTEXT", None
    )
    if isinstance(run_context, threading.local) and not hasattr(
        type(run_context), "runner"
    ):
        local: Any = run_context

        def check() -> bool:
            return "runner" in local.__dict__  # this thread's own dict

    _trio_run_here = check
    return check


def _in_trio_run() -> bool:
    # trio 0.26, which has no in_trio_run(): asking for the token raises outside.
    return _trio_token_here() is not None


def _trio_token_here() -> object | None:
    import trio

    try:
        return trio.lowlevel.current_trio_token()
    except RuntimeError:
        return None
