"""The portal loop: one persistent event loop on a background thread.

Sync code that has no loop of its own runs its coroutines here, so successive
calls share one loop (and the clients, pools and locks bound to it). The thread
starts on first use and stops in :meth:`Portal.close`; a loop that code on it
stops is replaced by a new one at the next call (see :meth:`Portal._detach`).
Every call sent to the portal is tracked until it has an outcome (its
:class:`~._calls.CallLedger`), so that closing can answer each one, even a call
whose coroutine ignores cancellation (#11): see ``_portal_close``.
"""

from __future__ import annotations

__all__ = ("Portal", "stop_bound")

import asyncio
import inspect
import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Final, Literal

from .._exceptions import (
    BridgeClosed,
    DeadlockError,
    SyncBridgeError,
    closed_message,
    describe_call,
)
from .._stats import PortalStats
from ._calls import CallLedger
from ._context import new_thread
from ._counts import Ending
from ._loop_watch import LoopWatch
from ._loops import LoopGone, PortalAsyncioLoop, TrioLoop
from ._outcome import Cancelled, Value
from ._portal_close import close_loop, log_close_failed, stop_bound
from ._selector import new_event_loop

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Sequence
    from types import FrameType

    from ._calls import Call, LoopHandle

logger = logging.getLogger("syncbridge")

Backend = Literal["asyncio", "trio"]

_STOPPED_CLEANUP: Final = 1.0
"""Seconds the tasks of a loop stopped by code on it get to end, once cancelled."""
_RESUBMITS: Final = 3
"""Loops a call is sent to, when each stops before it takes the call."""
_DETACH_WAIT: Final = 1.0
"""Seconds a call waits for the portal thread to let go of a stopped loop."""


# Read once: ``Ending.COMPLETED`` is a class lookup through the enum's metaclass.
_COMPLETED: Final = Ending.COMPLETED
_ERROR: Final = Ending.ERROR
_CANCELLED: Final = Ending.CANCELLED
_TIMED_OUT: Final = Ending.TIMED_OUT

_PROBE_EVERY: Final = 0.01
"""Seconds between two lag probes, however often stats() is called."""


class Portal:
    """A lazily started event loop thread (asyncio, uvloop or trio).

    Args:
        name: Used for the thread name (``syncbridge-portal-<name>``).
        backend: ``"asyncio"`` or ``"trio"``.
        use_uvloop: Run asyncio on uvloop when it is installed.
    """

    def __init__(self, name: str, backend: Backend, use_uvloop: bool) -> None:
        if backend not in ("asyncio", "trio"):
            raise ValueError(f"backend must be 'asyncio' or 'trio', got {backend!r}")
        self.name = name
        self.backend: Backend = backend
        self.use_uvloop = use_uvloop
        self._closed = False  # guarded by _lock
        self._watch: LoopWatch | None = None  # guarded by _lock
        self._fresh_state()

    def _fresh_state(self) -> None:
        """The state of this process's loop: set here, and anew in a forked child."""
        # Guarded by _lock: starting, closing, and adding to _calls.
        self._lock = threading.Lock()
        self._handle: LoopHandle | None = None
        self._thread: threading.Thread | None = None
        self._ending: list[threading.Thread] = []  # of loops that stopped on their own
        # The calls without an outcome yet, and the totals (see PortalStats).
        self._calls = CallLedger()
        # The lag probe: when the one in flight was posted, and the last measured.
        self._probe_posted: float | None = None
        self._probe_ran_at = 0.0
        self._lag = 0.0
        self._retired_blocks = 0  # stalls reported by watches since replaced
        self._trio_stop: Any = None
        self._startup_error: BaseException | None = None

    @property
    def running(self) -> bool:
        """Whether the loop thread has been started and not yet stopped."""
        return self._handle is not None and not self._closed

    @property
    def thread(self) -> threading.Thread | None:
        """The loop thread, once started."""
        return self._thread

    @property
    def pending_calls(self) -> int:
        """Calls sent to the portal that have no outcome yet."""
        return len(self._calls)

    def handle(
        self, entry: str = "sync_call_async", subject: object = None
    ) -> LoopHandle:
        """Return the running loop, starting its thread on first use.

        Once closed, raises :class:`BridgeClosed` naming the user's call
        ``entry(subject)`` (see :func:`describe_call`).
        """
        handle = self._handle
        if handle is not None and not self._closed:
            return handle
        with self._lock:
            if self._closed:
                raise BridgeClosed(closed_message(describe_call(entry, subject)))
            if self._handle is None:
                self._start()
            assert self._handle is not None
            return self._handle

    def submit(
        self, call: Call[Any], entry: str = "sync_call_async", subject: object = None
    ) -> LoopHandle:
        """Start *call* on the portal loop, tracked until it has an outcome.

        Raises:
            BridgeClosed: If the portal is closed (or closing), naming the
                user's call ``entry(subject)`` (*subject* defaults to the
                call's function): a call that raced the bridge's close().
            SyncBridgeError: If loops keep stopping under the call (code on
                them stops them), so none took it.
        """
        call.tracker = self
        for _ in range(_RESUBMITS):
            handle = self._handle
            if handle is None:
                handle = self.handle(entry, call.func if subject is None else subject)
            with self._lock:
                if self._closed:
                    raise self._refusal(call, entry, subject)
                # Added before close() can list the calls, submitted after: a
                # call the loop never starts is still answered by close() (#11).
                self._calls.add(call)
            try:
                handle.submit(call)
            except LoopGone:
                # The loop stopped on its own (see _detach) before it took the
                # call: the next loop takes it, once the old one let go.
                self._calls.forget(call)
                if self._closed:
                    raise self._refusal(call, entry, subject) from None
                self._wait_detached(handle)
                continue
            except BaseException:
                if call.loop is None:  # it never reached the loop (a Ctrl-C)
                    self._calls.forget(call)
                raise
            return handle
        raise SyncBridgeError(
            f"{call.name}() was not started: the bridge's portal loop stopped "
            f"{_RESUBMITS} times in a row as it was sent (code on the loop stops it). "
            "Do not stop a loop you did not start."
        )

    @staticmethod
    def _refusal(call: Call[Any], entry: str, subject: object) -> BridgeClosed:
        named = describe_call(entry, call.func if subject is None else subject)
        return BridgeClosed(closed_message(named))

    def _wait_detached(self, handle: LoopHandle) -> None:
        """Wait (briefly) until the portal has let go of *handle*, which is gone."""
        thread = self._thread
        if (
            self._handle is handle
            and thread is not None
            and thread is not threading.current_thread()
        ):
            thread.join(_DETACH_WAIT)

    def finished(self, call: Call[Any]) -> None:
        """Forget *call*, which has its outcome, and count how it ended.

        The one place a portal call is counted (it has its outcome once).
        """
        outcome = call.outcome
        if isinstance(outcome, Value):
            ending = _COMPLETED
        elif isinstance(outcome, Cancelled):
            ending = _ERROR if self._caller_gets_an_error(call) else _CANCELLED
        elif call.timed_out:  # its own to_sync(timeout=...), not one inside it
            ending = _TIMED_OUT
        else:
            ending = _ERROR
        self._calls.ended(call, ending)

    def _caller_gets_an_error(self, call: Call[Any]) -> bool:
        """Whether the caller of cancelled *call* gets :class:`SyncBridgeError`.

        As ``_loop_choice`` decides: a blocked caller whose call was cancelled
        neither by its own request (Ctrl-C, its worker's cancellation) nor by a
        closing bridge (:class:`BridgeClosed`) had it ended under it, by the
        loop stopping on its own (see :meth:`_detach`). A ``start_soon`` future
        (``on_done``) then ends cancelled: a cancellation.
        """
        if call.on_done is not None or call.cancel is not None:
            return False
        with self._lock:
            return not self._closed

    def stats(self) -> PortalStats:
        """A snapshot of the portal; posts the next lag probe if the loop runs."""
        handle = self._handle
        running = handle is not None and not self._closed
        now = time.monotonic()
        posted = self._probe_posted
        if posted is not None:
            lag = now - posted  # the probe still waits: the lag is at least this
        else:
            lag = self._lag
            # At most one probe per _PROBE_EVERY: each wakes the loop thread.
            if running and now - self._probe_ran_at >= _PROBE_EVERY:
                assert handle is not None
                self._probe_posted = now
                try:
                    handle.post(self._probe_ran)
                except Exception:  # the loop is stopping: no probe, no lag
                    self._probe_posted = None
        counts = self._calls.snapshot()
        watch = self._watch
        return PortalStats(
            running=running,
            tasks=len(self._calls),
            blocks=self._retired_blocks + (watch.blocks if watch is not None else 0),
            lag=lag if running else 0.0,
            calls=counts.calls,
            completed=counts.completed,
            errors=counts.errors,
            cancellations=counts.cancellations,
            timeouts=counts.timeouts,
        )

    @property
    def loop_watch(self) -> LoopWatch | None:
        """The watch on this loop, if one is switched on."""
        return self._watch

    def watch(
        self,
        threshold: float | None,
        describe: Sequence[Callable[[FrameType], str | None]] = (),
    ) -> None:
        """Watch this loop for blocks longer than *threshold* s; ``None`` stops it.

        Takes effect at once if the loop runs, else when it starts.
        """
        new = None
        if threshold is not None:
            new = LoopWatch(threshold, name=f"portal {self.name}", describe=describe)
        with self._lock:
            old, self._watch = self._watch, new
            if old is not None:
                self._retired_blocks += old.blocks
            handle = self._handle if not self._closed else None
        if handle is None:
            if old is not None:
                old.stop_from_outside()
            return
        try:
            if old is not None:
                handle.post(old.stop)
            if new is not None:
                handle.post(new.start)
        except LoopGone:
            pass

    def _start_watch(self) -> None:
        # On the loop thread, as it starts.
        watch = self._watch
        if watch is not None and not watch.running:
            watch.start()

    def _stop_watch(self, deadline: float) -> None:
        # After the loop thread ended (or was given up on); within close()'s bound.
        watch = self._watch
        if watch is not None:
            monitor = watch.stop_from_outside()
            if monitor is not None:
                monitor.join(max(0.0, deadline - time.monotonic()))

    def _probe_ran(self) -> None:
        posted = self._probe_posted
        if posted is not None:
            self._probe_ran_at = now = time.monotonic()
            self._lag = now - posted
            self._probe_posted = None

    def _start(self) -> None:
        ready = threading.Event()
        target = self._run_trio if self.backend == "trio" else self._run_asyncio
        thread = new_thread(
            target=self._run,
            args=(target, ready),
            name=f"syncbridge-portal-{self.name}",
            daemon=True,
        )
        # Set first: a Ctrl-C in the wait below must not leave a running loop
        # with no thread on record (close() and _detach go by it).
        self._thread = thread
        thread.start()
        ready.wait()
        if self._handle is None:
            self._thread = None
            thread.join()
            error, self._startup_error = self._startup_error, None
            raise error or RuntimeError("the syncbridge portal loop failed to start")

    def _run(
        self, target: Callable[[threading.Event], None], ready: threading.Event
    ) -> None:
        try:
            target(ready)
        except BaseException as exc:
            if not ready.is_set():  # failed before the loop ran: tell _start
                self._startup_error = exc
            elif not isinstance(exc, (SystemExit, KeyboardInterrupt)):
                # (Those two come from user code on the loop: logged as a stop.)
                logger.exception(
                    "the syncbridge portal loop %r crashed",
                    self.name,
                    extra={
                        "syncbridge_event": "portal-crashed",
                        "syncbridge_portal": self.name,
                    },
                )
        finally:
            ready.set()  # never leave _start waiting, whatever happened

    def _detach(self, handle: LoopHandle) -> bool:
        """The loop behind *handle* stopped: unless close() stops it, let go of it.

        On the portal thread, as soon as its loop stops. From then on new calls
        start a new loop: one coroutine that stops the loop must not leave the
        bridge (the default one, say) refusing every later call. True if it
        let go (the loop stopped on its own).
        """
        with self._lock:
            if self._closed or self._handle is not handle:
                return False  # close() ends it and answers its calls
            # Still the loop's thread while it ends: close() waits for it.
            self._ending = [t for t in self._ending if t.is_alive()]
            if self._thread is not None:
                self._ending.append(self._thread)
            self._handle = self._thread = None
            self._probe_posted = None  # one posted to this loop never runs
            watch = self._watch
        if watch is not None:  # a watch starts once: the next loop gets a new one
            self.watch(watch.threshold, watch.describers)
        return True

    def _answer_stopped(self, handle: LoopHandle, how: str) -> None:
        """Answer the calls still running on the stopped loop; log the stop."""
        # Only calls that began there: one still being submitted to it gets
        # LoopGone and goes to the next loop (see submit).
        ended = [c for c in self._calls if c.loop is handle and c.running]
        logger.warning(
            "the syncbridge portal loop %r stopped while its bridge was open (%s); "
            "%d call(s) on it were cancelled, and the next call starts a new loop",
            self.name,
            how,
            len(ended),
            extra={
                "syncbridge_event": "portal-stopped",
                "syncbridge_portal": self.name,
            },
        )
        for call in ended:
            call.finish(Cancelled())

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def _new_asyncio_loop(self) -> asyncio.AbstractEventLoop:
        if self.use_uvloop:
            try:
                import uvloop
            except ImportError:
                logger.info(
                    "uvloop is not installed; the portal runs on asyncio",
                    extra={
                        "syncbridge_event": "uvloop-missing",
                        "syncbridge_portal": self.name,
                    },
                )
            else:
                loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
                return loop
        return new_event_loop()

    def _run_asyncio(self, ready: threading.Event) -> None:
        loop = self._new_asyncio_loop()
        asyncio.set_event_loop(loop)
        handle = PortalAsyncioLoop(loop)

        def started() -> None:
            self._handle = handle
            ready.set()
            self._start_watch()

        loop.call_soon(started)
        how = "a coroutine or callback on it called loop.stop()"
        try:
            try:
                loop.run_forever()
            except (SystemExit, KeyboardInterrupt) as exc:
                how = f"{type(exc).__name__} escaped a callback on it"
                raise
            except BaseException:
                how = "it crashed"
                raise
            finally:
                if self._detach(handle):
                    self._end_stopped(loop, handle, how)
            loop.run_until_complete(loop.shutdown_asyncgens())
            try:
                loop.run_until_complete(loop.shutdown_default_executor())
            except RuntimeError:
                # At interpreter exit Python 3.12 refuses the thread this starts
                # to join the executor; close() below shuts it down unjoined.
                pass
        finally:
            asyncio.set_event_loop(None)
            _close_tasks(loop)
            loop.close()
            handle.close_intake()

    def _end_stopped(
        self, loop: asyncio.AbstractEventLoop, handle: PortalAsyncioLoop, how: str
    ) -> None:
        """End a loop that stopped on its own, as ``asyncio.run()`` ends its loop.

        Calls it never started are answered; its tasks are cancelled and get
        :data:`_STOPPED_CLEANUP` seconds to finish (their callers are answered
        as they do); what is still running then is answered and dropped.
        """
        handle.close_intake()  # answered; later calls are refused: to the next loop
        tasks = asyncio.all_tasks(loop)
        for task in tasks:
            task.cancel()
        if tasks:
            try:
                loop.run_until_complete(asyncio.wait(tasks, timeout=_STOPPED_CLEANUP))
            except BaseException:  # it stopped again: no more cleanup
                pass
        self._answer_stopped(handle, how)  # its tasks are closed at teardown

    def _run_trio(self, ready: threading.Event) -> None:
        try:
            import trio
        except ImportError:
            raise ImportError(
                "Bridge(backend='trio') needs trio: pip install 'syncbridge[trio]'"
            ) from None
        how = "its trio.run() ended"
        try:
            trio.run(self._trio_main, ready)
        except BaseException as exc:
            how = f"{type(exc).__name__} ended its trio.run()"
            raise
        finally:
            handle = self._handle
            if handle is not None and self._detach(handle):
                self._answer_stopped(handle, how)

    async def _trio_main(self, ready: threading.Event) -> None:
        import trio

        self._trio_stop = trio.Event()
        self._handle = TrioLoop(trio.lowlevel.current_trio_token())
        ready.set()
        self._start_watch()
        await self._trio_stop.wait()

    def close(self, grace: float, deadline: float | None = None) -> None:
        """Stop the loop, answering every call; returns by *deadline*.

        *deadline* is a :func:`time.monotonic` time, by default
        :func:`stop_bound` from now; a bridge passes the one deadline of its
        own close. Calls get *grace* seconds to finish (less if the deadline
        leaves less); what still runs is then cancelled (each logged) and gets
        ``max(grace, 0.1)`` seconds more; the loop then stops. A call still without an outcome (its coroutine ignores
        cancellation, or the loop is blocked) is answered with a cancellation
        here, its caller raises :class:`BridgeClosed`, and it is logged.

        Raises:
            DeadlockError: If called on the portal loop's own thread; nothing is
                closed then.
        """
        self.refuse_own_thread()
        with self._lock:
            if self._closed:
                return
            self._closed = True
            handle, thread = self._handle, self._thread
            ending = [t for t in self._ending if t.is_alive()]
        if deadline is None:
            deadline = time.monotonic() + stop_bound(grace)
        if handle is None or thread is None:
            if ending:  # only loops that stopped on their own, still ending
                close_loop(self._calls, None, tuple(ending), grace, deadline)
            return
        close_loop(
            self._calls, handle, (thread, *ending), grace, deadline, self._stop_trio
        )
        self._stop_watch(deadline)

    def _stop_trio(self) -> None:
        # On the trio loop, by its drain: _trio_main returns, and the run ends.
        stop: Any = self._trio_stop
        stop.set()

    def refuse_own_thread(self) -> None:
        """Raise :class:`DeadlockError` on the portal loop's own thread."""
        me = threading.current_thread()
        if self._thread is me or me in self._ending:
            raise DeadlockError(
                "Bridge.close() was called from a coroutine running on the "
                "bridge's own portal loop, which would have to wait for itself "
                "to stop; nothing was closed. Close the bridge from another "
                "thread (the one that created it, say)."
            )

    def _reset_after_fork(self) -> None:
        """Forget the parent's loop thread, which does not exist in this child."""
        self._fresh_state()
        watch, self._watch = self._watch, None
        if watch is not None:  # its monitor thread is the parent's: start anew
            self.watch(watch.threshold, watch.describers)


def _close_tasks(loop: asyncio.AbstractEventLoop) -> None:
    """Close the coroutines of the tasks a stopped loop still has, before it closes.

    Their calls were answered and the tasks logged (abandoned at close, or in
    ``Portal._answer_stopped``). Closed here, as the garbage collector would
    close them some time later, their ``finally`` blocks and context managers
    run now, on the loop's thread, with the task current (anyio's cancel
    scopes check it): so a call they wait for is counted, as cancelled. No
    "Task was destroyed but it is pending!": that would only repeat the log.
    """
    tasks = asyncio.all_tasks(loop)
    if not tasks:
        return
    asyncio.events._set_running_loop(loop)
    try:
        for task in tasks:
            task._log_destroy_pending = False  # type: ignore[attr-defined]
            coro = task.get_coro()
            if not inspect.iscoroutine(coro):
                continue
            asyncio.tasks._enter_task(loop, task)
            try:
                _close_coroutine(coro, task.get_name())
            finally:
                asyncio.tasks._leave_task(loop, task)
    finally:
        asyncio.events._set_running_loop(None)


def _close_coroutine(coro: Coroutine[Any, Any, Any], name: str) -> None:
    """Close *coro*; what it raises instead (it awaited, or failed) is logged."""
    try:
        coro.close()
    except Exception as exc:  # user code: logged, never raised
        log_close_failed(name, exc)
