"""Handles on running event loops: run a coroutine there from another thread.

A *loop handle* wraps an asyncio event loop or a trio run (its ``TrioToken``) and
knows how to start a :class:`Call` on it from any thread, cancel it, and tell whether
the loop can still run anything. asyncio gets a direct path built on
``call_soon_threadsafe`` (the cheapest wake-up there is); trio goes through
``TrioToken.run_sync_soon`` and a host task (see ``_trio_hosts``).
"""

from __future__ import annotations

__all__ = (
    "AsyncioLoop",
    "LoopGone",
    "PortalAsyncioLoop",
    "TrioLoop",
    "handle_for",
    "loop_running_in_this_thread",
)

import asyncio
import sys
import threading
from collections import deque
from typing import TYPE_CHECKING, Any, Final

from ._handoff import FINISHED
from ._outcome import Cancelled, Error, Value
from ._process import PROCESS

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    import trio

    from ._calls import Call, LoopHandle

_get_running_loop: Final = asyncio._get_running_loop


class LoopGone(Exception):
    """The loop behind a handle has stopped; nothing can be scheduled on it."""


class AsyncioLoop:
    """A handle on an asyncio (or uvloop) event loop."""

    __slots__ = ("_pid", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop, pid: int | None = None) -> None:
        self.loop = loop
        self._pid = PROCESS.pid if pid is None else pid

    @property
    def native(self) -> object:
        return self.loop

    def is_alive(self) -> bool:
        return (
            self._pid == PROCESS.pid
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
        if call.cancel is not None or call.state is FINISHED:  # before it could start
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
        if call.cancel is not None or _cancelled_by_someone():
            call.finish(Cancelled(exc))
        else:  # the coroutine's own CancelledError: its outcome, unchanged (#11)
            call.finish(Error(exc))
    except GeneratorExit:
        # Its coroutine is being closed: an abandoned task, at the portal's
        # teardown (its call was answered then), or by the garbage collector.
        call.finish(Cancelled())
        raise
    except BaseException as exc:
        # Caught whole: the outcome belongs to the blocked caller, and a
        # KeyboardInterrupt re-raised here would stop the loop itself.
        if not call.finish(Error(exc)) and isinstance(exc, Exception) and _closing():
            # It raised as its coroutine was closed ("ignored GeneratorExit":
            # it awaited in a finally); nobody waits for it: the closer logs it.
            raise
    else:
        call.finish(Value(value))


def _closing() -> bool:
    """Whether this task's coroutine runs with its loop stopped: it is being closed."""
    loop = asyncio._get_running_loop()
    return loop is None or not loop.is_running()


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
        self._pid = PROCESS.pid

    @property
    def native(self) -> object:
        return self.token

    def is_alive(self) -> bool:
        return self._pid == PROCESS.pid

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
