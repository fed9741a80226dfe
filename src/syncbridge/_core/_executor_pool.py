"""Calls run by a ``concurrent.futures.Executor``: your threads, processes, a cluster.

An :class:`ExecutorPool` stands where a :class:`~._workers.WorkerPool` stands (a
bridge's default, a named pool, ``to_async(executor=...)``), but admits nothing
itself: the executor queues and runs the calls. The awaiting side is the worker
pools' own (``_await_job``): a :class:`~._jobs.Job` whose outcome arrives through
``job.notify``, so counting, timeouts and cancellation are the same code.

Two kinds of executor:

* in-process (a ``ThreadPoolExecutor``): the executor runs the job itself, in a
  copy of the caller's context, so :func:`~syncbridge.check_cancelled` and
  nested ``sync_call_async`` calls work as in a worker thread;
* out-of-process (process pools, loky, dask, anything else): the function and
  its arguments are sent as they are; the outcome comes back through the
  future.

A call still queued in the executor is cancelled through its future (it never
runs). A running one cannot be stopped by a future, except on a
:class:`~syncbridge.ProcessExecutor`, which can end the process running it.

The pool a bridge makes for ``to_async(executor=...)`` holds its executor only
while calls of ours are in it (:meth:`ExecutorPool._for_calls`): an executor
its user dropped is not kept alive by the bridge, which then forgets the pool.
"""

from __future__ import annotations

__all__ = ("ExecutorPool",)

import concurrent.futures
import functools
import importlib
import sys
import threading
import weakref
from bisect import bisect_left
from time import monotonic
from typing import TYPE_CHECKING, Any, cast

from .._exceptions import (
    BridgeClosed,
    SerializationError,
    SyncBridgeError,
    WorkerCancelled,
    WorkerProcessDied,
    callable_name,
    closed_message,
)
from .._stats import WAIT_BOUNDS, PoolStats, cumulative
from .._validate import EXECUTOR_KIND, check_instance, check_name
from ._counts import Counts
from ._handoff import CancelReason
from ._outcome import Value
from ._pickling import check_picklable
from ._process_executor import ProcessExecutor

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._jobs import Job


class ExecutorPool:
    """A pool whose calls run on a :class:`concurrent.futures.Executor`.

    syncbridge never shuts the executor down: it is yours (use it in a ``with``
    block, or call its ``shutdown()``). Closing the bridge cancels the calls it
    queued there and stops waiting for the ones running. A default or named
    pool holds its executor for the bridge's life; the pool a bridge makes for
    ``to_async(executor=...)`` holds it only while the bridge's calls are in
    it, and leaves :meth:`Bridge.stats() <syncbridge.Bridge.stats>` once the
    executor is gone.

    Args:
        name: The pool's name in :meth:`Bridge.stats() <syncbridge.Bridge.stats>`.
        executor: Where the calls run.
        label: How error messages name the pool, the way users reach it.

    .. versionadded:: 0.1
    """

    def __init__(
        self, name: str, executor: concurrent.futures.Executor, *, label: str
    ) -> None:
        check_instance(executor, concurrent.futures.Executor, label, EXECUTOR_KIND)
        self.name: str = check_name(name, "ExecutorPool(name=...)")
        self.label: str = label
        # Every Executor takes weak references (the base class has no
        # __slots__). _held is the strong one: for good, or, in a pool made by
        # _for_calls, while _futures is not empty (under _lock).
        self._ref = weakref.ref(executor)
        self._held: concurrent.futures.Executor | None = executor
        self._weak = False
        # An InterpreterPoolExecutor (3.14+) is a ThreadPoolExecutor whose
        # threads run each call in an interpreter of their own: out of process,
        # as far as the call goes (it is pickled there and back).
        interpreters = _interpreter_pool_type()
        self.in_process: bool = isinstance(
            executor, concurrent.futures.ThreadPoolExecutor
        ) and not (interpreters is not None and isinstance(executor, interpreters))
        """Whether the executor runs calls in this interpreter's threads."""
        # These take (fn, /, *args, **kwargs): nothing of the call's is theirs.
        self._positional_only = isinstance(
            executor,
            (
                ProcessExecutor,
                concurrent.futures.ProcessPoolExecutor,
                concurrent.futures.ThreadPoolExecutor,
            ),
        )
        self._closed = False
        self._fresh_state()

    def _fresh_state(self) -> None:
        """The state of this process's calls: set here, and anew in a forked child."""
        self._lock = threading.Lock()
        self._futures: dict[Job, concurrent.futures.Future[Any]] = {}  # under _lock
        # As WorkerPool's, under _lock; only for calls run in this process,
        # timed by their job (out of process, the start is not seen).
        self._wait_total = 0.0
        self._wait_counts = [0] * len(WAIT_BOUNDS)
        self._busy_total = 0.0
        self._busy_shown = 0.0  # the most stats() showed (as WorkerPool's)
        self.counts: Counts = Counts()
        """Calls and how they ended, as their awaiters saw it (see PoolStats)."""

    @classmethod
    def _for_calls(
        cls, name: str, executor: concurrent.futures.Executor, *, label: str
    ) -> ExecutorPool:
        """A pool that keeps *executor* alive only while calls of ours are in it.

        What a bridge makes for ``to_async(executor=...)``: an executor made
        per request and dropped by its user is not kept alive by the bridge.
        The caller holds *executor* from finding the pool to submitting to it;
        then the pool holds it until the executor completes the call's future.
        """
        pool = cls(name, executor, label=label)
        pool._weak = True
        pool._held = None
        return pool

    def __repr__(self) -> str:
        return f"<syncbridge.ExecutorPool {self.name!r} on {self._ref()!r}>"

    @property
    def executor(self) -> concurrent.futures.Executor:
        """Where the calls run.

        Raises:
            ReferenceError: If the executor is gone: only in the pool of a
                ``to_async(executor=...)`` call, which the bridge holds while
                calls of its own are in the executor, and forgets once its
                user dropped it.
        """
        executor = self._ref()
        if executor is None:
            raise ReferenceError(
                f"{self.label}: the executor of pool {self.name!r} is gone (its "
                "user dropped it while no call of the bridge's was in it)"
            )
        return executor

    def _gone(self) -> bool:
        """Whether the executor is gone (see :attr:`executor`)."""
        return self._ref() is None

    def _holds(self, executor: concurrent.futures.Executor) -> bool:
        """Whether this pool's calls run on *executor* (that very object)."""
        return self._ref() is executor

    # -- what WorkerPool offers too ------------------------------------------

    @property
    def capacity(self) -> int:
        """How many calls the executor runs at once; 0 if it does not say (dask).

        Read-only: size the executor itself. Setting it raises :class:`TypeError`.
        """
        ex = self._ref()
        if isinstance(ex, ProcessExecutor):
            return ex.max_workers
        size = getattr(ex, "_max_workers", None)  # stdlib and loky executors
        return size if isinstance(size, int) else 0

    @capacity.setter
    def capacity(self, value: int) -> None:
        raise TypeError(
            f"{self.label} runs on {self._ref()!r}, which sizes itself: create "
            f"the executor with the capacity you want (max_workers={value!r}) and "
            "give the bridge that one"
        )

    @property
    def busy(self) -> int:
        """Calls of ours the executor is running (or abandoned while running)."""
        with self._lock:
            return sum(1 for f in self._futures.values() if f.running())

    @property
    def waiting(self) -> int:
        """Calls of ours still queued in the executor."""
        with self._lock:
            return sum(1 for f in self._futures.values() if not f.running())

    @property
    def threads(self) -> int:
        """The executor's worker threads or processes alive, where it says."""
        ex = self._ref()
        if isinstance(ex, ProcessExecutor):
            return ex.processes
        workers = getattr(ex, "_threads", None) or getattr(ex, "_processes", None)
        try:
            return len(workers) if workers is not None else 0
        except TypeError:
            return 0

    @property
    def can_end_calls(self) -> bool:
        """Whether a running call can be stopped (a ProcessExecutor ends its process)."""
        return isinstance(self._ref(), ProcessExecutor)

    # The Pool protocol's name for it (underscored: see ``_pool``).
    _can_end_calls = can_end_calls

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def stats(self) -> PoolStats:
        """A snapshot of this pool (see :class:`~syncbridge.PoolStats`).

        ``busy`` and ``waiting`` count this bridge's calls only, as the futures
        say: a ``ProcessPoolExecutor`` marks a few queued calls running early,
        and a dask future is never marked running.
        """
        with self._lock:
            items = list(self._futures.items())
        running = sum(1 for _, f in items if f.running())
        counts = self.counts.snapshot()
        with self._lock:
            now = monotonic()
            wait_seconds, busy_seconds = self._wait_total, self._busy_total
            buckets = cumulative(self._wait_counts)
            for job in self._futures:
                if job.started_at:  # read a moment late at worst: counted next time
                    busy_seconds += now - job.started_at
            busy_seconds = self._busy_shown = max(busy_seconds, self._busy_shown)
        return PoolStats(
            capacity=self.capacity,
            busy=running,
            waiting=len(items) - running,
            threads=self.threads,
            calls=counts.calls,
            completed=counts.completed,
            errors=counts.errors,
            cancellations=counts.cancellations,
            timeouts=counts.timeouts,
            abandoned=sum(1 for job, _ in items if job.abandoned),
            wait_seconds=wait_seconds,
            busy_seconds=busy_seconds,
            wait_buckets=buckets,
        )

    def _seconds(self) -> tuple[float, float]:
        """The wait and busy seconds of the calls that ended (see :meth:`stats`).

        Busy: never less than :meth:`stats` showed (a snapshot read between a
        call's end and its count saw it a little longer), so that a retired
        pool's total (the registry's) never dips below what was shown.
        """
        with self._lock:
            return self._wait_total, max(self._busy_total, self._busy_shown)

    def running_functions(self) -> list[str]:
        """Names of this bridge's functions the executor runs right now."""
        with self._lock:
            items = list(self._futures.items())
        return [callable_name(job.func) for job, f in items if f.running()]

    def close(self) -> list[threading.Thread]:
        """Refuse new calls, cancel queued ones, flag running ones as cancelled.

        Returns no threads: the executor's are not ours to join.
        """
        with self._lock:
            self._closed = True
            items = list(self._futures.items())
        for job, future in items:
            job.request_cancel(CancelReason.CLOSED)
            future.cancel()  # queued: it never runs; its awaiter gets BridgeClosed
        return []

    def in_flight(self) -> list[concurrent.futures.Future[Any]]:
        """The futures of this bridge's calls not finished yet."""
        with self._lock:
            return list(self._futures.values())

    def end_running(self) -> list[str]:
        """End the processes still running this pool's calls (ProcessExecutor).

        What :meth:`Bridge.close <syncbridge.Bridge.close>` does once its grace
        period is over; their awaiters get :class:`~syncbridge.BridgeClosed`.
        Returns the functions' names; nothing is ended on other executors.
        """
        ex = self._ref()
        if not isinstance(ex, ProcessExecutor):
            return []
        with self._lock:
            items = list(self._futures.items())
        return [callable_name(job.func) for job, f in items if ex.terminate(f)]

    # -- the Pool protocol (_pool) ---------------------------------------------

    _max_wait: float | None = None
    """No bound: the executor queues the calls, where none of ours reaches."""

    def _submit(self, job: Job, bounded: bool = True) -> None:
        """Hand *job* to the executor. Raises BridgeClosed, SerializationError.

        *bounded* does not apply: the executor takes every call.
        """
        del bounded
        if self._closed:  # close() ran since the facade's check: name the call
            raise BridgeClosed(closed_message(f"{callable_name(job.func)}()"))
        executor = self.executor  # the caller holds it: never gone here
        try:
            if self.in_process:
                # call(), not run(): the awaiter is woken by _done, once the
                # executor's future is no longer running (its slot is free).
                future = executor.submit(job.call)
            elif self._positional_only:
                future = executor.submit(_sendable(job.func), *job.args, **job.kwargs)
            else:
                # loky's and dask's submit() take options of their own (fn=,
                # key=, pure=, retries=...): the call travels as one object, so
                # the function's keyword arguments cannot be taken for them.
                future = executor.submit(
                    functools.partial(job.func, *job.args, **job.kwargs)
                )
        except (SerializationError, BridgeClosed):
            raise
        except Exception as exc:
            if self.in_process or not _looks_like_pickling(exc):
                if isinstance(exc, RuntimeError):  # shut down, or broken
                    raise self._refused(job, exc, executor) from exc
                raise
            # dask serializes in submit(): name the piece that cannot be sent.
            named = self._explain(job, exc, executor)
            if named is exc:
                raise
            raise named from exc
        with self._lock:
            self._futures[job] = future
            self._held = executor  # until its future is done (see _done)
        # Registered first: the callback (maybe run at once) removes it again.
        future.add_done_callback(functools.partial(self._done, job))

    def _refused(
        self, job: Job, exc: RuntimeError, executor: concurrent.futures.Executor
    ) -> SyncBridgeError:
        return SyncBridgeError(
            f"{self.label} could not take {callable_name(job.func)}(): "
            f"{executor!r} refused it ({exc}). The executor was shut down "
            "or is broken: give the bridge a working one"
        )

    def _try_submit(self, job: Job) -> bool:
        """Always False: the executor's free slots are not known here."""
        # Nested calls from a blocked executor thread run on that thread
        # (_delegate): the executor's free slots are not known here.
        del job
        return False

    @property
    def _returns_withdrawn(self) -> bool:
        """False: :meth:`_withdraw` cancels the job; its awaiter is told (``_done``)."""
        return False

    @property
    def _sees_starts(self) -> bool:
        """Whether its jobs run in this process, and record when they start."""
        return self.in_process

    def _expire(self, job: Job, max_wait: float) -> Exception | None:
        """Never called: :attr:`_max_wait` is None."""
        del job, max_wait
        return None

    def _withdraw(self, job: Job) -> bool:
        """Cancel *job* if the executor has not started it; True if cancelled."""
        with self._lock:
            future = self._futures.get(job)
        return future is not None and future.cancel()

    def _end(self, job: Job) -> bool:
        """End the process running *job*, if the executor can; True if ended."""
        ex = self._ref()
        if not isinstance(ex, ProcessExecutor):
            return False
        with self._lock:
            future = self._futures.get(job)
        return future is not None and ex.terminate(future)

    def _done(self, job: Job, future: concurrent.futures.Future[Any]) -> None:
        # Runs where the executor completes futures: one of its threads, dask's
        # event loop, or the thread that cancelled the future.
        now = monotonic()
        with self._lock:
            self._futures.pop(job, None)
            if self.in_process:
                # Its worker wrote started_at before the future was done.
                started = job.started_at
                waited = (started or now) - job.queued_at
                self._wait_total += waited
                self._wait_counts[bisect_left(WAIT_BOUNDS, waited)] += 1
                if started:
                    self._busy_total += now - started
            executor = self._held  # this frame holds it: the messages name it
            if self._weak and not self._futures:
                self._held = None
        if self.in_process and not future.cancelled() and future.exception() is None:
            job.hand_back()  # job.call() ran, and recorded the outcome
            return
        if future.cancelled():
            job.fail(self._cancelled_error(job, executor))
            return
        error = future.exception()
        if error is None:
            job.finish(Value(future.result()))
        else:
            job.fail(self._explain(job, error, executor))

    def _cancelled_error(
        self, job: Job, executor: concurrent.futures.Executor | None
    ) -> BaseException:
        """What the awaiter of a call whose future was cancelled gets."""
        name = callable_name(job.func)
        if job.cancel is CancelReason.CLOSED:
            return BridgeClosed(
                f"the bridge was closed while {name}() was still queued in "
                f"{executor!r}; it never ran"
            )
        if job.cancel is CancelReason.AWAITER:
            return WorkerCancelled("cancelled before it started")
        return SyncBridgeError(
            f"{self.label}: {executor!r} cancelled {name}() itself (it was "
            "shut down with cancel_futures=True, or its cluster client closed); "
            "keep the executor open while calls are awaited on it"
        )

    def _explain(
        self,
        job: Job,
        error: BaseException,
        executor: concurrent.futures.Executor | None,
    ) -> BaseException:
        """The exception the awaiter gets for *error*, raised out of process."""
        if isinstance(error, WorkerProcessDied) and job.cancel is CancelReason.CLOSED:
            closed = BridgeClosed(
                f"the bridge was closed while {callable_name(job.func)}() was "
                "running in a worker process, and the process was ended"
            )
            closed.__cause__ = error
            return closed
        if isinstance(error, SerializationError) or not _looks_like_pickling(error):
            return error
        # The executor could not send the call (stdlib and loky pickle in a
        # feeder thread): name the piece that cannot be pickled, if it is one.
        try:
            check_picklable(
                job.func, job.args, job.kwargs, dumps=_dumps_for(executor),
                what=self.label,
            )  # fmt: skip
        except SerializationError as named:
            named.__cause__ = error
            return named
        if _not_shareable(error):
            # It pickles here, yet could not be rebuilt in the interpreter (or
            # the result could not come back): say what crosses and how.
            sent = SerializationError(
                f"{self.label}: {callable_name(job.func)}() could not cross into "
                f"or out of an interpreter of {self.executor!r} ({error}; see the "
                "cause). A call crosses pickled, unless it is plain data: its "
                "function, arguments and result must be picklable, and the "
                "modules they come from importable in a new interpreter (from "
                "sys.path as Python starts: not __main__, nor a path added at run "
                "time)."
            )
            sent.__cause__ = error
            return sent
        return error

    def _reset_after_fork(self) -> None:
        """Forget the parent's calls and totals (the child counts anew)."""
        self._fresh_state()
        if self._weak:
            self._held = None  # no call of the child's is in it


def _interpreter_pool_type() -> type[concurrent.futures.Executor] | None:
    """``concurrent.futures.InterpreterPoolExecutor``, where there is one (3.14+)."""
    found: type[concurrent.futures.Executor] | None = getattr(
        concurrent.futures, "InterpreterPoolExecutor", None
    )
    return found


def _sendable(func: Callable[..., Any]) -> Callable[..., Any]:
    """*func*, or a reference by name when a decorator took its module-level name.

    ``@to_async(executor=...)`` on a module-level function leaves the module's
    name bound to the wrapper, and pickle sends functions by name: it would
    refuse the original ("not the same object"). The reference makes the other
    process import the module and unwrap as many ``__wrapped__`` layers as lie
    between that name and *func* here, so decorators below syncbridge's still run.
    """
    module = sys.modules.get(getattr(func, "__module__", None) or "")
    qualname = getattr(func, "__qualname__", "")
    if module is None or not qualname or "<locals>" in qualname:
        return func
    found: object = module
    for part in qualname.split("."):
        found = getattr(found, part, None)
    if found is func or found is None:
        return func
    depth = 0
    while found is not func and hasattr(found, "__wrapped__"):
        found = cast("object", getattr(found, "__wrapped__"))  # noqa: B009
        depth += 1
    if found is not func:
        return func
    return ByName(module.__name__, qualname, depth)


class ByName:
    """A function sent by name: ``module.qualname``, unwrapped *depth* times.

    Named like the function itself, so messages about the call name it.
    """

    def __init__(self, module: str, qualname: str, depth: int) -> None:
        self.module = module
        self.__qualname__ = qualname
        self.depth = depth

    def __repr__(self) -> str:
        return f"<function {self.module}.{self.__qualname__}>"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        found: Any = importlib.import_module(self.module)
        for part in self.__qualname__.split("."):
            found = getattr(found, part)
        for _ in range(self.depth):
            found = found.__wrapped__
        return found(*args, **kwargs)


def _not_shareable(error: BaseException) -> bool:
    """Whether *error* is an interpreter's refusal of an object (3.14+)."""
    interpreters = sys.modules.get("concurrent.interpreters")
    refused = getattr(interpreters, "NotShareableError", None)
    return isinstance(refused, type) and isinstance(error, refused)


def _looks_like_pickling(error: BaseException) -> bool:
    import pickle  # not at import time: `import syncbridge` loads no pickle

    if isinstance(error, pickle.PicklingError) or _not_shareable(error):
        return True
    text = str(error).lower()
    # "cannot pickle '_thread.lock' object", "Can't pickle local object ..."
    # (3.12), "Can't get local object ..." (3.13), dask's "Could not serialize".
    return isinstance(error, (TypeError, AttributeError)) and any(
        word in text for word in ("pickle", "serializ", "local object")
    )


def _dumps_for(
    executor: concurrent.futures.Executor | None,
) -> Callable[[object], bytes]:
    """How *executor* serializes a call: loky and dask use cloudpickle."""
    import pickle

    if type(executor).__module__.startswith(("loky", "distributed", "joblib")):
        try:  # a dependency of both; not of syncbridge
            cloudpickle = importlib.import_module("cloudpickle")
        except ImportError:  # pragma: no cover
            return pickle.dumps
        dumps: Callable[[object], bytes] = cloudpickle.dumps
        return dumps
    return pickle.dumps
