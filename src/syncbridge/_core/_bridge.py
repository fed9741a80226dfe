"""The Bridge: worker pools plus a portal loop, and the process-wide default bridge.

Also the package-internal functions through which the package's own modules
reach a bridge's engine (``run_in``, ``call_with_timeout``...).
"""

# The functions below Bridge are its own code, taking the bridge as an
# argument so that Bridge shows no private API: they read its fields.
# pyright: reportPrivateUsage=false

from __future__ import annotations

__all__ = (
    "Bridge",
    "CallObserver",
    "call_for_cleanup",
    "call_with_timeout",
    "check_reported_bridges",
    "executor_pool",
    "get_bridge",
    "name_pool_setting",
    "observe_calls",
    "run_blocking_call",
    "run_in",
    "start_soon_call",
    "worker_threads",
)

import concurrent.futures
import functools
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol, cast

from .._exceptions import (
    BridgeClosed,
    closed_message,
    describe_call,
    note_interpreter_exit,
)
from .._stats import DEFAULT_POOL
from .._validate import (
    PoolBounds,
    PoolConfig,
    SupportsGetExecutor,
    as_executor,
    check_async_callable,
    check_blocking_callable,
    check_bool,
    check_capacity,
    check_choice,
    check_name,
    check_pools,
    check_seconds,
    explain_option,
)
from ._await_job import run_in_pool
from ._calls import Call
from ._close import ANSWER_MARGIN, close_bridge
from ._context import copy_context_for_thread
from ._loop_choice import call_async_from_thread
from ._outcome import Cancelled, Error, Value
from ._portal import Portal, stop_bound
from ._process import ChildStep, ExitStep, on_exit, on_fork_child
from ._registry import PoolRegistry
from ._wakeup import run_on_own_thread

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Coroutine, Mapping
    from types import FrameType, TracebackType
    from typing import Self

    from .._stats import BridgeStats
    from .._typing import P, T
    from ._executor_pool import ExecutorPool
    from ._jobs import Job
    from ._loop_watch import LoopWatch
    from ._workers import WorkerPool


DEFAULT_MAX_WORKERS: Final = 40
"""Sized for blocking I/O, like anyio's default thread limiter (not for CPU work)."""

_bridges: weakref.WeakSet[Bridge] = weakref.WeakSet()


class CallObserver(Protocol):
    """What watches each bridged call of an instrumented bridge (its spans).

    ``syncbridge.opentelemetry`` implements it; the core imports nothing of it.
    Each method makes the call itself (``start``) and must return or raise
    what the call does. Whatever the observer makes current in the caller's
    :mod:`contextvars` context while ``start`` runs is in the copy the call
    runs in: the worker's function and the coroutine see it.
    """

    def thread_call(
        self,
        entry: str,
        pool: str,
        func: Callable[..., Any] | None,
        start: Callable[[Callable[[Job], object]], Coroutine[Any, Any, Any]],
    ) -> Coroutine[Any, Any, Any]:
        """The coroutine that awaits ``start(seen)``, a blocking call in *pool*.

        *entry* is the user's call (``"to_async"``); *func* the user's function,
        ``None`` for a helper's own step (an iterator's next item). *pool* is
        the pool's name in :meth:`Bridge.stats`.

        ``start`` calls ``seen(job)`` with the call's job as soon as it exists.
        """
        ...

    def portal_call(
        self, entry: str, func: Callable[..., Any] | None, start: Callable[[], Any]
    ) -> Any:
        """Return ``start()``: a coroutine run on a loop for this thread.

        *entry* and *func* are as :meth:`thread_call` takes them.
        """
        ...


_counter = 0
_counter_lock = threading.Lock()


class Bridge:
    """The one core: bounded worker pools and a persistent portal event loop.

    A bridge runs blocking functions for async code in its worker pools
    (:meth:`run_blocking`), and coroutine functions for sync code on the right
    event loop (:meth:`sync_call_async`), starting its portal loop thread on first
    need. Use the process-wide one from :func:`get_bridge`, or make an isolated one
    and close it (``with Bridge() as bridge: ...``, or ``async with``).

    Args:
        max_workers: Capacity of the default pool: how many blocking calls may run
            at once (an ``int`` >= 1; default 40). Calls beyond it wait their
            turn; they are never refused.
        backend: Event loop of the portal thread, ``"asyncio"`` or ``"trio"``.
        use_uvloop: Run the asyncio portal loop on uvloop, if it is installed
            (``True`` or ``False``).
        abandon_on_cancel: What cancelling an awaiting task does to a running
            blocking call: ``True`` ends the await at once and leaves the thread to
            finish on its own; ``False`` waits for the thread before the
            cancellation propagates. Either way the slot stays taken until the
            function returns.
        pools: Named pools to create, as ``{name: capacity}`` (bulkheads): names
            are non-empty ``str``, capacities ``int`` >= 1, or an executor in
            place of a capacity (``{"cpu": syncbridge.ProcessExecutor(4)}``):
            the pool's calls then run there. A :class:`~syncbridge.PoolConfig`
            mapping also bounds the pool's queue, ``{"db": {"capacity": 10,
            "max_waiting": 32, "max_wait": 0.5}}`` (see :meth:`add_pool`).
        executor: Run :meth:`run_blocking` and ``to_async`` calls without a
            pool on this :class:`concurrent.futures.Executor` instead of the
            worker threads (a :class:`~syncbridge.ProcessExecutor` for CPU-bound
            work, a dask executor...). It stays yours: the bridge never shuts it
            down. The worker threads still serve the iterator and
            context-manager bridges (``"threads"`` in :meth:`stats`).
        shutdown_grace: Seconds :meth:`close` lets portal tasks and busy workers
            finish before cancelling or leaving them (a finite number >= 0;
            one past what a thread can wait, such as ``5e9``, means as long
            as the platform allows); also how long past a
            ``to_sync(timeout=...)`` deadline the caller waits for the
            cancelled coroutine's cleanup before it is answered.
        name: Shown in thread names (a non-empty ``str``).
        blocking_threshold: Watch the portal loop: each time a coroutine on it
            blocks it for longer than this many seconds, log a warning with the
            blocking stack (see :func:`~syncbridge.watch_loop`). ``None`` (the
            default) watches nothing; :meth:`watch_portal` switches it later.

    Every option is checked here, not at the first call. Booleans are not
    capacities (``True`` is refused), nor are floats (``2.5``, ``inf``, NaN) or
    strings (``"4"`` from an environment variable: convert it with ``int()``).

    Raises:
        TypeError: If an option has the wrong type; the message names it.
        ValueError: If a capacity is below 1, the backend is unknown or the
            grace period is negative, infinite or NaN.

    .. versionadded:: 0.1
    """

    def __init__(
        self,
        *,
        max_workers: int = DEFAULT_MAX_WORKERS,
        backend: Literal["asyncio", "trio"] = "asyncio",
        use_uvloop: bool = False,
        abandon_on_cancel: bool = True,
        pools: Mapping[
            str, int | PoolConfig | concurrent.futures.Executor | SupportsGetExecutor
        ]
        | None = None,
        shutdown_grace: float = 2.0,
        name: str | None = None,
        blocking_threshold: float | None = None,
        executor: concurrent.futures.Executor | SupportsGetExecutor | None = None,
    ) -> None:
        global _counter
        check_capacity(max_workers, "Bridge(max_workers=...)")
        backend = check_choice(backend, ("asyncio", "trio"), "Bridge(backend=...)")
        check_bool(use_uvloop, "Bridge(use_uvloop=...)")
        check_bool(abandon_on_cancel, "Bridge(abandon_on_cancel=...)")
        shutdown_grace = check_seconds(
            shutdown_grace, "Bridge(shutdown_grace=...)", zero=True
        )
        blocking_threshold = check_seconds(
            blocking_threshold, "Bridge(blocking_threshold=...)", none="no watch"
        )
        named_pools = check_pools(pools, "Bridge(pools=...)", executors=True)
        if executor is not None:
            executor = as_executor(executor, "Bridge(executor=...)")
        if name is None:
            with _counter_lock:  # unique thread names for bridges made concurrently
                _counter += 1
                name = str(_counter)
        check_name(name, "Bridge(name=...)")
        self._name = name
        self._abandon_on_cancel = abandon_on_cancel
        self._shutdown_grace = shutdown_grace
        self._portal = Portal(name, backend, use_uvloop)
        # Read without a lock on every call (one reference, read whole, even
        # without the GIL): a call that races observe_calls() is observed by
        # the old observer or the new one, and either is right.
        self._observer: CallObserver | None = None
        self._registry = PoolRegistry(
            name,
            max_workers,
            executor if isinstance(executor, concurrent.futures.Executor) else None,
        )
        self._fresh_state()
        self._closed = False
        self._closed_event = threading.Event()
        # Set under _lock by the first close(): when close() must have returned.
        self._close_deadline = 0.0
        for pool_name, setting in named_pools.items():
            if isinstance(setting, PoolBounds):
                self.add_pool(pool_name, setting.capacity, **setting.bounds())
            else:
                self.add_pool(pool_name, executor=setting)
        if blocking_threshold is not None:
            self._portal.watch(blocking_threshold)
        _bridges.add(self)

    def _fresh_state(self) -> None:
        """The bridge's own state in this process: set anew in a forked child."""
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return (
            f"<syncbridge.Bridge {self.name!r} {state} max_workers={self.max_workers} "
            f"backend={self.backend!r}>"
        )

    # -- configuration ------------------------------------------------------

    @property
    def name(self) -> str:
        """The bridge's name, shown in its thread names; read-only.

        Threads are named ``syncbridge-<name>-<n>`` and ``syncbridge-portal-<name>``.
        """
        return self._name

    @property
    def abandon_on_cancel(self) -> bool:
        """The default for calls on this bridge, ``True`` or ``False``; settable.

        ``to_async(abandon_on_cancel=...)`` overrides it per function.
        """
        return self._abandon_on_cancel

    @abandon_on_cancel.setter
    def abandon_on_cancel(self, value: bool) -> None:
        self._abandon_on_cancel = check_bool(value, "bridge.abandon_on_cancel")

    @property
    def shutdown_grace(self) -> float:
        """Seconds :meth:`close` lets calls and portal tasks finish; settable.

        A finite number >= 0.
        """
        return self._shutdown_grace

    @shutdown_grace.setter
    def shutdown_grace(self, value: float) -> None:
        self._shutdown_grace = check_seconds(value, "bridge.shutdown_grace", zero=True)

    @property
    def max_workers(self) -> int:
        """Capacity of the worker threads; may be raised or lowered at any time.

        The default pool's, unless ``Bridge(executor=...)`` gave it an executor.
        """
        return self._registry.worker_threads.capacity

    @max_workers.setter
    def max_workers(self, value: int) -> None:
        self._registry.worker_threads.capacity = (
            value  # checked there, named bridge.max_workers
        )

    @property
    def backend(self) -> Literal["asyncio", "trio"]:
        """The portal loop's backend, ``"asyncio"`` or ``"trio"``."""
        return self._portal.backend

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has been called."""
        return self._closed

    def add_pool(
        self,
        name: str,
        capacity: int | None = None,
        *,
        executor: concurrent.futures.Executor | SupportsGetExecutor | None = None,
        max_waiting: int | None = None,
        max_wait: float | None = None,
    ) -> None:
        """Create a named pool with its own *capacity* (a bulkhead), or *executor*.

        Calls routed to it (``to_async(pool=name)``) wait only for each other: a
        saturated named pool never delays the default pool, and the reverse.
        Given an *executor* instead of a capacity, the pool's calls run there
        (see ``Bridge(executor=...)``).

        By default a call waits for a slot as long as it takes. Two bounds make
        a saturated pool fail fast with :class:`~syncbridge.PoolSaturated` (the
        call never ran) instead of letting a backlog eat every caller's
        deadline:

        - *max_waiting*: a call that finds this many calls already queued is
          refused at once (``0``: never queue, refuse when no slot is free);
        - *max_wait*: a call that waited this many seconds without starting is
          withdrawn and refused then (a call that started runs to its end; a
          ``to_async(timeout=...)`` that comes first wins, as a timeout).

        A nested call that borrows the slot of the call it runs in (a worker
        function calling async code that calls back into this pool) is never
        refused. A pool on an executor takes no bounds: the executor queues.

        Raises:
            TypeError: If *name* is not a str, *capacity* not an int,
                *executor* not a :class:`concurrent.futures.Executor`, or a
                bound of the wrong type (a bool, a str).
            ValueError: If a pool of that name exists, *capacity* is below 1,
                not exactly one of *capacity* and *executor* is given, a
                bound is negative, NaN or infinite (``max_wait`` must be > 0),
                or a bound is given with *executor*.
        """
        if executor is None:
            self._registry.put(
                "Bridge.add_pool", name, capacity,  # type: ignore[arg-type]  # None is refused there
                resize=False, refuse=self._closed_error,
                max_waiting=max_waiting, max_wait=max_wait,
            )  # fmt: skip
            return
        if capacity is not None:
            raise ValueError(
                f"Bridge.add_pool({name!r}) takes a capacity or an executor, not "
                "both: an executor sizes itself"
            )
        executor = as_executor(executor, f"Bridge.add_pool({name!r}, executor=...)")
        self._registry.put(
            "Bridge.add_pool", name, executor, resize=False, refuse=self._closed_error,
            max_waiting=max_waiting, max_wait=max_wait,
        )  # fmt: skip

    def set_pool(
        self,
        name: str,
        capacity: int,
        *,
        max_waiting: int | None = None,
        max_wait: float | None = None,
    ) -> None:
        """Create the named pool with *capacity*, or resize it if it exists.

        What an integration's configuration does (``SYNCBRIDGE_POOLS``,
        ``syncbridge.fastapi.install(pools=...)``): apply the same setting
        again, from any number of apps, without racing to create it. The
        bounds *max_waiting* and *max_wait* (see :meth:`add_pool`) are applied
        with the capacity: ``None`` leaves the pool unbounded.

        Raises:
            TypeError: If *name* is not a str, *capacity* not an int, or a
                bound of the wrong type.
            ValueError: If *capacity* is below 1, *name* is a built-in pool's,
                a bound is out of range, or bounds are given for a pool that
                runs on an executor.

        .. versionadded:: 0.1
        """
        self._registry.put(
            "Bridge.set_pool", name, capacity, resize=True, refuse=self._closed_error,
            max_waiting=max_waiting, max_wait=max_wait,
        )  # fmt: skip

    def pool(self, name: str | None = None) -> WorkerPool | ExecutorPool:
        """Return the named pool, or the default pool when *name* is ``None``.

        Raises:
            KeyError: If there is no pool of that name; the message lists them.
        """
        if name is None:
            return self._registry.default
        return self._registry.lookup(name, self)

    # -- what it is doing ----------------------------------------------------

    def stats(self) -> BridgeStats:
        """A snapshot of every pool and the portal loop, with totals since creation.

        Runs on:
            Any thread, the portal's own included; it never blocks (about 10 µs
            with a few pools: each pool's lock, and the bridge's, is taken
            once). It posts the probe that measures the portal loop's lag (at
            most one per 10 ms), read by a later call.

        Returns:
            An immutable :class:`~syncbridge.BridgeStats`; its ``pools`` maps
            ``"default"``, ``"thread_sensitive"``, each named pool and the
            executor of each ``to_async(executor=...)`` still alive (as
            ``"ThreadPoolExecutor-1"``...) to a :class:`~syncbridge.PoolStats`.
            The totals include the calls of executors gone since.

        .. versionadded:: 0.1
        """
        return self._registry.stats(self._portal.stats())

    def watch_portal(
        self,
        threshold: float | None,
        *,
        describe: Callable[[FrameType], str | None] | None = None,
    ) -> None:
        """Watch the portal loop for blocks longer than *threshold* s, or stop.

        As ``Bridge(blocking_threshold=...)``, at any time: it takes effect at
        once if the portal runs, else when it starts. ``None`` stops watching.
        *describe* is as in :func:`~syncbridge.watch_loop` (the Flask
        integration names the view with it).

        Raises:
            TypeError, ValueError: If *threshold* is not ``None`` or a finite
                number > 0.

        .. versionadded:: 0.1
        """
        threshold = check_seconds(
            threshold, "Bridge.watch_portal(threshold=...)", none="stop"
        )
        if describe is not None and not callable(describe):
            raise TypeError(
                f"Bridge.watch_portal(describe=...) must be callable, got {describe!r}"
            )
        self._portal.watch(threshold, () if describe is None else (describe,))

    @property
    def portal_watch(self) -> LoopWatch | None:
        """The portal loop's :class:`~syncbridge.LoopWatch`, if one is on."""
        return self._portal.loop_watch

    @property
    def thread_sensitive_pool(self) -> WorkerPool:
        """The one-thread lane that runs thread-sensitive calls in order."""
        return self._registry.thread_sensitive

    # -- the two directions -------------------------------------------------

    async def run_blocking(
        self, func: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run ``func(*args, **kwargs)`` in a worker thread of the default pool.

        Runs on:
            A worker thread of this bridge's default pool; the awaiting task's
            loop (asyncio or trio) is never blocked.

        Cancellation:
            As :attr:`abandon_on_cancel` says; the slot stays taken until the
            function returns. There is no timeout: wrap the await in
            ``anyio.fail_after()``, or use ``to_async(timeout=..., bridge=...)``.

        See :func:`syncbridge.run_blocking`, which calls this on the default bridge.
        """
        try:
            result: T = await run_blocking_call(self, func, args, kwargs)
        except TypeError as exc:
            better = explain_option(
                func, args, kwargs, "Bridge.run_blocking()", "to_async",
                extra="bridge=bridge",
            )  # fmt: skip
            if better is not None:
                raise better from exc
            raise
        return result

    def _closed_error(self, entry: str, subject: object) -> BridgeClosed:
        """The refusal of the user's call ``entry(subject)`` by this closed bridge.

        *entry* and *subject* are as :func:`describe_call` takes them. The one
        place the facade words a refusal; built only when refusing.
        """
        option = f"{entry}(bridge=...)" if entry in ("to_async", "to_sync") else None
        return BridgeClosed(
            closed_message(
                describe_call(entry, subject), default=self is _default, option=option
            )
        )

    def sync_call_async(
        self,
        func: Callable[P, Awaitable[T]],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """Call the async function ``func(*args, **kwargs)`` and wait for its result.

        Runs on:
            The calling thread blocks; the coroutine runs on the loop chosen by
            the three rules of :func:`syncbridge.sync_call_async`, this bridge's
            portal loop in a plain thread.

        Cancellation:
            ``KeyboardInterrupt`` in the waiting thread cancels the coroutine. No
            timeout: use ``to_sync(timeout=..., bridge=...)`` for a deadline.

        See :func:`syncbridge.sync_call_async`, which calls this on the default
        bridge.
        """
        # call_with_timeout(self, None, ...) inlined: this runs on every call.
        if self._closed:
            raise self._closed_error("sync_call_async", func)
        check_async_callable(func, "sync_call_async()")
        try:
            observer = self._observer  # read once: another thread may reset it
            if observer is not None:
                observed: T = observer.portal_call(
                    "sync_call_async", func,
                    functools.partial(
                        call_async_from_thread, self._portal, func, args, kwargs,
                        None, self._shutdown_grace,
                    ),
                )  # fmt: skip
                return observed
            result: T = call_async_from_thread(
                self._portal, func, args, kwargs, None, self._shutdown_grace
            )
        except TypeError as exc:  # only a failing call pays for the try
            better = explain_option(func, args, kwargs, "sync_call_async()", "to_sync")
            if better is not None:
                raise better from exc
            raise
        return result

    def start_soon(
        self,
        func: Callable[P, Awaitable[T]],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> concurrent.futures.Future[T]:
        """Start ``func(*args, **kwargs)`` on the portal loop and return at once.

        Fire-and-forget work for sync code: the returned future gets the outcome.
        Nothing logs an exception nobody asks the future for, so check it or add a
        done callback.

        Runs on:
            The bridge's portal loop, always (whichever thread calls), in a copy
            of the caller's :mod:`contextvars` context. Safe to call from any
            thread, the portal loop's own included.

        Cancellation:
            ``future.cancel()`` cancels the coroutine on the loop. When the
            bridge closes, work still running after the grace period is cancelled
            (and logged), and its future ends cancelled.

        Returns:
            A :class:`concurrent.futures.Future` for the coroutine's result; done
            callbacks run on the portal loop thread.

        Raises:
            BridgeClosed: If the bridge is closed.

        .. versionadded:: 0.1
        """
        return start_soon_call(self, func, args, kwargs)

    # -- lifetime -----------------------------------------------------------

    def close(self) -> None:
        """Shut the bridge down; idempotent.

        New calls raise :class:`BridgeClosed` at once. Calls still waiting for a
        worker fail with :class:`BridgeClosed`. Running workers are flagged (so
        :func:`check_cancelled` raises in them, and the async calls they are
        blocked on are cancelled) and get twice :attr:`shutdown_grace` seconds
        to return. Portal tasks get :attr:`shutdown_grace` seconds, then are
        cancelled (each logged on the ``syncbridge`` logger) and get
        ``max(shutdown_grace, 0.1)`` seconds more. When it returns, every caller
        has its answer: its result, or :class:`BridgeClosed` for a call its
        coroutine or loop could not finish in time (also logged). Worker
        threads still running a function are daemons left to finish it; each
        is named in a log line.

        Runs on:
            The calling thread, which it blocks for at most
            ``2 * shutdown_grace + 0.5`` seconds.

        Raises:
            DeadlockError: If called from a coroutine on the bridge's own portal
                loop, which cannot wait for itself to stop. Nothing is closed
                then: the bridge keeps working.
        """
        self._portal.refuse_own_thread()
        pools: list[WorkerPool | ExecutorPool] = []
        with self._lock:
            closing = self._closed
            self._closed = True
            if not closing:
                # The one bound of this close, computed once: every part (the
                # portal, the worker threads, the executors) waits within it.
                self._close_deadline = time.monotonic() + stop_bound(
                    self.shutdown_grace
                )
                pools = self._registry.close()  # as the bridge: no new pool
            deadline = self._close_deadline
        if closing:  # closed or closing in another thread: wait for that close
            left = deadline - time.monotonic() + ANSWER_MARGIN
            self._closed_event.wait(max(0.0, left))
            return
        try:
            close_bridge(pools, self._portal, self.shutdown_grace, deadline)
        finally:
            self._closed_event.set()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._portal.refuse_own_thread()
        # close() joins threads: run it off the loop, and finish it even if the
        # task is being cancelled (natively too), so nothing is left running.
        await run_on_own_thread("close", self.close)

    def _reset_after_fork(self) -> None:
        """Forget the parent's calls; the portal and the pools forget theirs."""
        self._fresh_state()
        if self._closed:
            # A close under way in the parent goes on there only: the child has
            # none of its threads, so a close() here has nothing to wait for.
            self._closed_event.set()
        self._portal._reset_after_fork()
        self._registry._reset_after_fork()


# -- for the package's own modules ------------------------------------------------
#
# The helper modules and the integrations reach a bridge's engine through these
# functions, not through private methods of Bridge (whose every public member is
# public API). Their untyped argument tuples are for the package's typed
# wrappers (to_async, to_sync...), which check the arguments against *func*.


def run_blocking_call(
    bridge: Bridge,
    func: Callable[..., T],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Coroutine[Any, Any, T]:
    """Check a ``run_blocking()`` call on *bridge* and return the coroutine that makes it.

    Not a coroutine itself, so both ``run_blocking`` functions await the
    call's one coroutine directly (a level fewer on the hottest path).
    """
    if bridge._closed:
        raise bridge._closed_error("run_blocking", func)
    check_blocking_callable(func, "run_blocking()")
    observer = bridge._observer  # read once: another thread may reset it
    if observer is not None:
        return observer.thread_call(
            "run_blocking", DEFAULT_POOL, func,
            functools.partial(
                _run_seen, bridge._registry.default, func, args, kwargs,
                bridge._abandon_on_cancel, None, False, "run_blocking()",
            ),
        )  # fmt: skip
    return run_in_pool(
        bridge._registry.default, func, args, kwargs, bridge._abandon_on_cancel,
        what="run_blocking()",
    )  # fmt: skip


def run_in(
    bridge: Bridge,
    pool: WorkerPool | ExecutorPool,
    abandon_on_cancel: bool | None,
    func: Callable[..., T],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    timeout: float | None = None,
    what: str | None = "to_async()",
    terminate_on_cancel: bool = False,
    subject: object = None,
) -> Coroutine[Any, Any, T]:
    """The coroutine that runs a blocking call in *pool*: ``to_async``'s engine.

    *what* names the caller in the error if *func* returns a coroutine;
    ``None`` returns whatever it returns (an iterator's items). After
    *timeout* seconds the await raises :class:`~syncbridge.SyncBridgeTimeout`.
    Raises :class:`BridgeClosed` at once if *bridge* is closed, naming the
    user's call: the ``to_async()`` function, or (*what* ``None``) the
    ``iterate_in_thread()`` of *subject*.
    """
    if bridge._closed:
        if what is None:
            raise bridge._closed_error("iterate_in_thread", subject)
        raise bridge._closed_error("to_async", func)
    abandon = (
        bridge._abandon_on_cancel if abandon_on_cancel is None else abandon_on_cancel
    )
    observer = bridge._observer  # read once: another thread may reset it
    if observer is not None:
        return observer.thread_call(
            "to_async" if what is not None else "iterate_in_thread",
            bridge._registry.stats_name(pool), func if what is not None else None,
            functools.partial(
                _run_seen, pool, func, args, kwargs, abandon, timeout,
                terminate_on_cancel, what,
            ),
        )  # fmt: skip
    return run_in_pool(
        pool, func, args, kwargs, abandon, timeout,
        terminate_on_cancel=terminate_on_cancel, what=what,
    )  # fmt: skip


def _run_seen(
    pool: WorkerPool | ExecutorPool,
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    abandon: bool,
    timeout: float | None,
    terminate_on_cancel: bool,
    what: str | None,
    seen: Callable[[Job], object],
) -> Coroutine[Any, Any, Any]:
    """:func:`run_in_pool` for an observer, which *seen* tells of the job."""
    return run_in_pool(
        pool, func, args, kwargs, abandon, timeout,
        terminate_on_cancel=terminate_on_cancel, what=what, seen=seen,
    )  # fmt: skip


def check_reported_bridges(
    bridges: tuple[object, ...], what: str, label: str, instead: str
) -> None:
    """Refuse what an exporter cannot report: a non-Bridge, or two bridges of one name.

    *what* names the call (``"syncbridge.prometheus.register(*bridges)"``),
    *label* what carries a bridge's name in its output, and *instead* what the
    call does with no bridge.
    """
    for bridge in bridges:
        if not isinstance(bridge, Bridge):
            raise TypeError(
                f"{what} must be a syncbridge.Bridge each, got {bridge!r}; call "
                f"{instead}"
            )
    names = [cast("Bridge", bridge).name for bridge in bridges]
    if len(set(names)) != len(names):
        raise ValueError(
            f"{what}: the {label} is the bridge's name, and these repeat one: "
            f"{names}; name them apart with Bridge(name=...)"
        )


def observe_calls(bridge: Bridge | None, observer: CallObserver | None) -> None:
    """Have *observer* watch each call of *bridge* (``None``: stop watching).

    *bridge* ``None`` is the default bridge: the current one, and each made
    after it (in a forked child).
    """
    global _default_observer
    if bridge is None:
        with _default_lock:
            _default_observer = observer
            bridge = _default
    if bridge is not None:
        bridge._observer = observer


def executor_pool(
    bridge: Bridge, executor: concurrent.futures.Executor, func: object = None
) -> ExecutorPool:
    """*bridge*'s pool for ``to_async(executor=...)`` calls of *func* to *executor*.

    See :meth:`PoolRegistry.for_executor`.
    """
    return bridge._registry.for_executor(executor, func, bridge._closed_error)


def worker_threads(bridge: Bridge) -> WorkerPool:
    """*bridge*'s worker threads, even if an executor replaced its default pool."""
    return bridge._registry.worker_threads


def name_pool_setting(bridge: Bridge, fix: str) -> None:
    """Make an unknown pool's error on *bridge* say *fix* to create it.

    *fix* is a :meth:`str.format` template of ``name``: how the app's
    integration creates named pools.
    """
    bridge._registry.configured_by = fix


def call_with_timeout(
    bridge: Bridge,
    timeout: float | None,
    func: Callable[..., Awaitable[T]],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    timeout_error: Callable[[], BaseException] | None = None,
    *,
    entry: str = "to_sync",
    subject: object = None,
) -> T:
    """Like :meth:`Bridge.sync_call_async`, cancelling the call after *timeout* s.

    The coroutine is cancelled once; its caller gets
    :class:`~syncbridge.SyncBridgeTimeout` (or what *timeout_error* returns)
    once it has ended, or :attr:`~Bridge.shutdown_grace` seconds after the
    deadline. A closed bridge's refusal names the user's call
    ``entry(subject)`` (*subject* defaults to *func*; see
    :func:`describe_call`).
    """
    if subject is None:
        subject = func
    if bridge._closed:
        raise bridge._closed_error(entry, subject)
    check_async_callable(func, "sync_call_async()")
    observer = bridge._observer  # read once: another thread may reset it
    if observer is not None:
        observed: T = observer.portal_call(
            entry, func if subject is func else None,
            functools.partial(
                call_async_from_thread, bridge._portal, func, args, kwargs, timeout,
                bridge._shutdown_grace, timeout_error=timeout_error, entry=entry,
                subject=subject,
            ),
        )  # fmt: skip
        return observed
    result: T = call_async_from_thread(
        bridge._portal,
        func,
        args,
        kwargs,
        timeout,
        bridge._shutdown_grace,
        timeout_error=timeout_error,
        entry=entry,
        subject=subject,
    )
    return result


def call_for_cleanup(
    bridge: Bridge,
    func: Callable[..., Awaitable[T]],
    *args: Any,
    entry: str = "sync_call_async",
    subject: object = None,
) -> T:
    """Like :meth:`Bridge.sync_call_async`, for cleanup: it runs in a cancelled worker too.

    Not refused on a closed bridge: the call may go to the worker's own loop.
    The closed portal's refusal names ``entry(subject)``, as
    :func:`call_with_timeout`'s does.
    """
    result: T = call_async_from_thread(
        bridge._portal, func, args, {}, None, bridge._shutdown_grace, cleanup=True,
        entry=entry, subject=func if subject is None else subject,
    )  # fmt: skip
    return result


def start_soon_call(
    bridge: Bridge,
    func: Callable[..., Awaitable[T]],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    entry: str = "Bridge.start_soon",
    subject: object = None,
) -> concurrent.futures.Future[T]:
    """:meth:`Bridge.start_soon`; a closed bridge's refusal names ``entry(subject)``.

    For the Flask integration's ``background()`` too.
    """
    if subject is None:
        subject = func
    if bridge._closed:
        raise bridge._closed_error(entry, subject)
    check_async_callable(func, "Bridge.start_soon()")
    future: concurrent.futures.Future[T] = concurrent.futures.Future()
    call: Call[T] = Call(func, args, kwargs, copy_context_for_thread(), None)
    call.on_done = _settle(future)

    def cancel_call(f: concurrent.futures.Future[T]) -> None:
        if f.cancelled() and not call.done:
            call.request_cancel()  # if it has not started yet, it never will

    future.add_done_callback(cancel_call)
    bridge._portal.submit(call, entry, subject)
    return future


def _settle(future: concurrent.futures.Future[T]) -> Callable[[Call[T]], None]:
    """Return the ``on_done`` hook that copies a call's outcome into *future*."""

    def settle(call: Call[T]) -> None:
        outcome, call.outcome = call.outcome, None
        if isinstance(outcome, Cancelled) or outcome is None:
            future.cancel()
        # After cancel() too: it moves the future on to "cancelled and notified",
        # which is what concurrent.futures.wait() and as_completed() wait for.
        if not future.set_running_or_notify_cancel():  # cancelled
            return
        if isinstance(outcome, Value):
            future.set_result(outcome.value)
        elif isinstance(outcome, Error):
            future.set_exception(outcome.error)

    return settle


_default: Bridge | None = None
_default_lock = threading.Lock()
_default_observer: CallObserver | None = None
"""What watches the default bridge's calls, made anew in a forked child too
(see :func:`observe_calls`); guarded by ``_default_lock``."""


def get_bridge() -> Bridge:
    """Return the process-wide default bridge, creating it on first use.

    The default bridge is closed at interpreter exit (portal tasks still running
    are cancelled after a short grace period, and logged), and replaced in a
    forked child process, so it never hangs exit and survives ``gunicorn
    --preload``.

    .. versionadded:: 0.1
    """
    bridge = _default
    if bridge is not None:
        return bridge
    return _create_default()


def _create_default() -> Bridge:
    global _default
    with _default_lock:
        if _default is None:
            bridge = Bridge(name="default", shutdown_grace=1.0)
            bridge._observer = _default_observer
            if _exited:
                # Made by a thread Python is about to wait for: closed, as the
                # exit hook closes it, so it starts nothing that would hold up
                # that wait (a call blocked on it could be answered by no one).
                bridge.close()  # at once: nothing of it has started
            _default = bridge
        return _default


_exited = False
"""Whether the exit hook has run; guarded by ``_default_lock``."""


def _close_default_at_exit() -> None:
    global _exited
    note_interpreter_exit()  # BridgeClosed says why from now on
    with _default_lock:
        _exited = True  # a default bridge made from now on is made closed
        bridge = _default
    if bridge is not None:
        bridge.close()


def _after_fork_in_child() -> None:
    global _default, _default_lock, _counter_lock
    _default_lock = threading.Lock()
    _counter_lock = threading.Lock()
    _default = None  # the child gets a fresh default bridge on first use
    for bridge in list(_bridges):
        bridge._reset_after_fork()


# Before Python joins non-daemon threads, and before concurrent.futures joins
# its executors' threads: one of them blocked in sync_call_async is answered
# (see _process for why and the order).
on_exit(ExitStep.BRIDGES, _close_default_at_exit)
on_fork_child(ChildStep.BRIDGES, _after_fork_in_child)
