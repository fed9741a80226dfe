"""ProcessExecutor: a process pool in which one job's process can be ended alone.

Each slot is one parent-side thread owning one worker process and a duplex pipe
to it. The thread takes the next job from the shared FIFO queue, sends the
pickled call, and waits for the reply, the process's death or a wake-up from
:meth:`ProcessExecutor.terminate`. Ending a process therefore touches one slot
only: its thread settles that one job and starts a fresh process for the next.

:mod:`multiprocessing` and :mod:`pickle` are imported when an executor is
created, not by ``import syncbridge``.
"""

from __future__ import annotations

__all__ = ("ProcessExecutor",)

import concurrent.futures
import os
import select
import signal
import threading
import weakref
from collections import deque
from typing import TYPE_CHECKING, Any, TypeVar

from typing_extensions import ParamSpec

from .._exceptions import SerializationError, WorkerProcessDied, callable_name
from .._validate import check_capacity, is_async_callable
from ._context import new_thread
from ._pickling import (
    check_picklable,
    default_dumps,
    exception_message,
    result_message,
)
from ._process import ChildStep, ExitStep, on_exit, on_fork_child

if TYPE_CHECKING:
    from collections.abc import Callable
    from multiprocessing.connection import Connection
    from multiprocessing.context import BaseContext
    from multiprocessing.process import BaseProcess

P = ParamSpec("P")
T = TypeVar("T")

# How long a process ended by terminate() has to exit on SIGTERM before SIGKILL.
_KILL_GRACE = 1.0
# How long an idle process has to exit when asked to at shutdown.
_STOP_GRACE = 5.0

# Replies from a worker process: (_OK, value), (_RAISED, pickled exc, traceback,
# type name, text) or (_UNSENDABLE, message, traceback or None).
_OK, _RAISED, _UNSENDABLE = 0, 1, 2
_STOP = b""  # asks an idle worker process to exit


class _RemoteTraceback(Exception):
    """The traceback of an exception raised in a worker process, as its ``__cause__``."""

    def __init__(self, tb: str) -> None:
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return f'\n"""\n{self.tb}"""'


class _Job:
    __slots__ = ("func", "future", "payload", "slot")

    def __init__(
        self, future: concurrent.futures.Future[Any], payload: bytes, func: object
    ) -> None:
        self.future = future
        self.payload = payload
        self.func = func
        self.slot: _Slot | None = None  # set when a slot takes the job


class _Slot:
    """One worker process, the pipe to it, and the thread that runs its jobs."""

    __slots__ = ("conn", "ending", "job", "process", "thread", "wake_r", "wake_w")

    def __init__(self, wake_r: Connection, wake_w: Connection) -> None:
        self.thread: threading.Thread | None = None
        self.process: BaseProcess | None = None
        self.conn: Connection | None = None
        self.job: _Job | None = None
        self.ending = False  # terminate() sent SIGTERM; the thread finishes the kill
        self.wake_r = wake_r
        self.wake_w = wake_w


class ProcessExecutor(concurrent.futures.Executor):
    """A process pool whose jobs can be ended one by one: :meth:`terminate`.

    Each job runs in a known worker process, one per slot (*max_workers*,
    default :func:`os.cpu_count`). Processes start when jobs need them, stay for
    the next jobs, and are replaced when they die or are ended, so the other
    jobs never notice: unlike :class:`~concurrent.futures.ProcessPoolExecutor`,
    a crash or a kill does not break the pool.

    Processes are started with *mp_context* (default: ``"forkserver"`` where
    available, else ``"spawn"``; never ``"fork"``, unsafe in a process with
    threads); in a child forked from this process (``gunicorn --preload``) the
    executor starts afresh, with ``"spawn"`` in place of ``"forkserver"``, and
    never touches the parent's processes. *initializer(*initargs)* runs first
    in each new process; if it raises, every job sent there fails with its
    exception. Functions, arguments, results and exceptions travel pickled:
    what cannot be raises :exc:`~syncbridge.SerializationError`.

    At interpreter exit, executors not shut down are shut down, waiting for
    their jobs, as the standard library does.

    .. versionadded:: 0.1
    """

    def __init__(
        self,
        max_workers: int | None = None,
        *,
        mp_context: BaseContext | None = None,
        initializer: Callable[..., object] | None = None,
        initargs: tuple[Any, ...] = (),
    ) -> None:
        import multiprocessing  # `import syncbridge` does without it
        from multiprocessing.context import BaseContext

        if max_workers is None:
            max_workers = os.cpu_count() or 1
        self._max_workers = check_capacity(
            max_workers,
            "ProcessExecutor(max_workers=...)",
            unit="processes",
            none="one per CPU",
        )
        if mp_context is None:
            method = (
                "forkserver"
                if "forkserver" in multiprocessing.get_all_start_methods()
                else "spawn"
            )
            mp_context = multiprocessing.get_context(method)
        elif not isinstance(mp_context, BaseContext):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise TypeError(
                "ProcessExecutor(mp_context=...) must be a multiprocessing context, "
                "such as multiprocessing.get_context('spawn'), or None (forkserver "
                f"where available, else spawn); got {mp_context!r}"
            )
        self._ctx: BaseContext = mp_context
        self._init_payload: bytes | None = None
        given: object = initargs  # typed as a tuple, but not checked by callers
        if isinstance(given, (str, bytes)) or not hasattr(type(given), "__iter__"):
            raise TypeError(
                "ProcessExecutor(initargs=...) must be a tuple of the initializer's "
                f"arguments, such as (path,) for one; got {initargs!r}"
            )
        if initializer is not None:
            if not callable(initializer):
                raise TypeError(
                    "ProcessExecutor(initializer=...) must be a function or None, "
                    f"got {initializer!r}"
                )
            self._init_payload = check_picklable(
                initializer,
                tuple(initargs),
                {},
                what="ProcessExecutor(initializer=...)",
            )
        import pickle
        from multiprocessing.connection import wait

        self._dumps = default_dumps
        self._loads = pickle.loads
        self._wait = wait
        self._shutdown = False
        self._fresh_state()
        _executors.add(self)

    def _fresh_state(self) -> None:
        """The state of this process's jobs: set here, and anew in a forked child."""
        self._lock = threading.Lock()
        self._wakeup = threading.Condition(self._lock)
        self._queue: deque[_Job] = deque()
        # Jobs whose outcome is still to be set: removing one claims the right to.
        self._jobs: dict[concurrent.futures.Future[Any], _Job] = {}
        self._slots: list[_Slot] = []
        self._idle = 0  # slot threads waiting for a job
        self._spawned = 0

    # -- introspection -----------------------------------------------------------

    @property
    def max_workers(self) -> int:
        """How many slots there are, so at most how many worker processes at once."""
        return self._max_workers

    @property
    def running(self) -> int:
        """Jobs in worker processes now (a terminated one until its process is gone)."""
        with self._lock:
            return sum(1 for slot in self._slots if slot.job is not None)

    @property
    def waiting(self) -> int:
        """Jobs queued for a free slot (cancelled ones not counted)."""
        with self._lock:
            return sum(1 for job in self._queue if not job.future.cancelled())

    @property
    def processes(self) -> int:
        """Worker processes started and not yet ended."""
        with self._lock:
            return sum(1 for slot in self._slots if slot.process is not None)

    # -- the Executor API --------------------------------------------------------

    def submit(
        self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs
    ) -> concurrent.futures.Future[T]:
        """Queue ``fn(*args, **kwargs)`` to run in a worker process; return its future.

        The call is pickled here, in the calling thread: if that fails,
        :exc:`~syncbridge.SerializationError` is raised at once, naming the
        offending object, and nothing is queued. Jobs start in submission
        order; ``future.cancel()`` succeeds while the job is queued (it then
        never runs). The future gets the result, or the exception raised in
        the process (same type and message, its traceback as ``__cause__``),
        or :exc:`~syncbridge.WorkerProcessDied` if the process died.
        """
        if not callable(fn):
            raise TypeError(f"ProcessExecutor.submit() takes a function, got {fn!r}")
        if is_async_callable(fn):
            raise TypeError(
                "ProcessExecutor.submit() runs blocking functions in a worker "
                f"process, but {callable_name(fn)} is async: await it in async code "
                "instead, or pass a blocking function"
            )
        payload = check_picklable(
            fn, args, kwargs, dumps=self._dumps, what="ProcessExecutor.submit()"
        )
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        job = _Job(future, payload, fn)
        with self._lock:
            if self._shutdown or _exiting:
                raise RuntimeError(
                    "ProcessExecutor.submit() was called after the executor was "
                    + ("shut down at interpreter exit" if _exiting else "shut down")
                    + ": it runs no new jobs. Submit before shutdown() (inside its "
                    "`with` block), or create a new ProcessExecutor"
                )
            self._queue.append(job)
            self._jobs[future] = job
            if len(self._queue) > self._idle and len(self._slots) < self._max_workers:
                self._start_slot()
            self._wakeup.notify()
        return future

    def terminate(self, future: concurrent.futures.Future[Any]) -> bool:
        """Stop the job of *future* at once, wherever it is; thread-safe, never blocks.

        A queued job is cancelled: it never runs. A running job's process is
        sent SIGTERM (SIGKILL follows a second later if it is still alive) and the future gets :exc:`~syncbridge.WorkerProcessDied`
        now; the slot then takes the next job in a fresh process, started by
        the slot's thread, not here. Returns False, doing nothing, if *future*
        is done or not this executor's.
        """
        with self._lock:
            job = self._jobs.get(future)
            if job is None or future.done():
                return False
            del self._jobs[future]
            slot = job.slot
            if slot is None:
                self._queue.remove(job)
            elif slot.process is not None:
                # (Without a process yet, the slot's thread sees the job is
                # no longer its own once the process started, and keeps it.)
                slot.ending = True
                _send_sigterm(slot.process)
                slot.wake_w.send_bytes(b"")
        if slot is None:
            future.cancel()
            future.set_running_or_notify_cancel()  # what wait()/as_completed() see
        else:
            future.set_exception(
                WorkerProcessDied(
                    f"ProcessExecutor.terminate() ended the worker process running "
                    f"{callable_name(job.func)}() (on a timeout, or a cancellation); "
                    "the job did not finish. The executor carries on: its next job "
                    "runs in a fresh process."
                )
            )
        return True

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop taking jobs; with *wait*, return once every process and thread is gone.

        Queued jobs still run unless *cancel_futures* (then they are cancelled
        and never run); running jobs finish. Idle processes are asked to exit
        (and killed if they do not within a few seconds). Calling it again is
        harmless. :meth:`submit` raises :exc:`RuntimeError` afterwards.
        """
        with self._lock:
            self._shutdown = True
            cancelled = self._drain_queue() if cancel_futures else []
            threads = [s.thread for s in self._slots if s.thread is not None]
            self._wakeup.notify_all()
        _cancel(cancelled)
        if wait:
            current = threading.current_thread()
            for thread in threads:
                if thread is not current:  # shutdown() from a done-callback
                    thread.join()

    def terminate_workers(self) -> None:
        """End every worker process now and shut down, without waiting.

        Running jobs get :exc:`~syncbridge.WorkerProcessDied`, queued ones are
        cancelled; processes get SIGTERM, then SIGKILL a second later if
        they are still alive. Call :meth:`shutdown` afterwards to wait until everything is
        gone. (Python 3.14's ``ProcessPoolExecutor.terminate_workers()``.)
        """
        with self._lock:
            self._shutdown = True
            cancelled = self._drain_queue()
            ended: list[_Job] = []
            for slot in self._slots:
                job = slot.job
                if job is not None and self._jobs.pop(job.future, None) is not None:
                    ended.append(job)
                if slot.process is not None:
                    slot.ending = True
                    _send_sigterm(slot.process)
                    slot.wake_w.send_bytes(b"")
            self._wakeup.notify_all()
        _cancel(cancelled)
        for job in ended:
            job.future.set_exception(
                WorkerProcessDied(
                    "ProcessExecutor.terminate_workers() ended the worker process "
                    f"running {callable_name(job.func)}(); the job did not finish."
                )
            )

    # -- the slot threads --------------------------------------------------------

    def _drain_queue(self) -> list[_Job]:
        jobs = list(self._queue)
        self._queue.clear()
        for job in jobs:
            self._jobs.pop(job.future, None)
        return jobs

    def _start_slot(self) -> None:
        """Start one more slot thread (lock held); its process starts with its first job."""
        from multiprocessing.connection import Pipe

        wake_r, wake_w = Pipe(duplex=False)
        slot = _Slot(wake_r, wake_w)
        self._spawned += 1
        slot.thread = new_thread(
            target=self._serve,
            args=(slot,),
            name=f"syncbridge-process-slot-{self._spawned}",
            daemon=True,  # the exit hook shuts executors down first, in order
        )
        self._slots.append(slot)
        slot.thread.start()

    def _serve(self, slot: _Slot) -> None:
        """The slot thread: run jobs until shutdown, then stop the process."""
        try:
            while (job := self._take(slot)) is not None:
                try:
                    self._run(slot, job)
                except BaseException as exc:  # a failure here must not lose the job
                    self._settle(job, exc)
                    self._end_process(slot, kill=True)
                    if not isinstance(exc, Exception):
                        raise
                with self._lock:
                    ending, slot.ending = slot.ending, False
                    respawn = not self._shutdown
                if ending:
                    self._end_process(slot, kill=True)
                if slot.process is None and respawn:
                    # Ended or died: start its successor now, so the next job
                    # (a scheduled run after a stuck one) finds it ready.
                    self._start_process(slot, None)
        finally:
            self._retire(slot)

    def _take(self, slot: _Slot) -> _Job | None:
        """The next job for *slot*, marked running; None once shut down and drained."""
        with self._lock:
            slot.job = None
            while True:
                while self._queue:
                    job = self._queue.popleft()
                    if job.future.set_running_or_notify_cancel():
                        job.slot = slot
                        slot.job = job
                        return job
                    self._jobs.pop(job.future, None)  # cancelled while queued
                if self._shutdown:
                    return None
                self._idle += 1
                self._wakeup.wait()
                self._idle -= 1

    def _run(self, slot: _Slot, job: _Job) -> None:
        """Send *job* to the slot's process and settle it from the reply or a death."""
        for attempt in range(2):
            if slot.process is not None and self._is_gone(slot.process):
                self._end_process(slot, kill=True)  # died while idle: replace it
            if slot.process is None and not self._start_process(slot, job):
                return  # terminate() took the job while the process started
            assert slot.conn is not None
            try:
                slot.conn.send_bytes(job.payload)
                break
            except OSError:
                # Dead before it got the job (which so never started): once more,
                # in a fresh process; a second failure is the wait's to report.
                if not attempt:
                    self._end_process(slot, kill=True)
        process, conn = slot.process, slot.conn
        assert process is not None
        assert conn is not None
        while True:
            ready = self._wait([conn, process.sentinel, slot.wake_r])
            if slot.wake_r in ready:
                while slot.wake_r.poll():
                    slot.wake_r.recv_bytes()
                if slot.ending:
                    return  # the job was claimed; _serve ends the process
            if conn in ready:
                try:
                    reply = conn.recv_bytes()
                except (EOFError, OSError):
                    break  # the process died while answering
                self._settle_reply(job, reply)
                return
            if process.sentinel in ready:
                break
        exitcode = self._end_process(slot, kill=True)
        self._settle(
            job, WorkerProcessDied(_died_message(job.func, exitcode), exitcode)
        )

    def _is_gone(self, process: BaseProcess) -> bool:
        """Whether *process* has exited, without blocking (one cheap poll)."""
        if os.name == "posix":
            return bool(select.select([process.sentinel], [], [], 0)[0])
        return bool(self._wait([process.sentinel], 0))

    def _start_process(self, slot: _Slot, job: _Job | None) -> bool:
        """Start the slot's process; whether *job* (if any) is still this slot's to run."""
        parent_conn, child_conn = self._ctx.Pipe()
        # Every concrete context has a Process class; BaseContext's stub does not.
        process_class: type[BaseProcess] = getattr(self._ctx, "Process")  # noqa: B009
        process = process_class(
            target=_worker_main,
            args=(child_conn, self._init_payload),
            name="syncbridge-process-worker",
        )
        try:
            process.start()
        except BaseException:
            parent_conn.close()
            raise
        finally:
            child_conn.close()
        with self._lock:
            slot.process, slot.conn = process, parent_conn
            return job is None or self._jobs.get(job.future) is job

    def _end_process(self, slot: _Slot, *, kill: bool) -> int | None:
        """Make sure the slot's process is gone (SIGKILL after the grace); its exit code."""
        process, conn = slot.process, slot.conn
        if process is None:
            return None
        process.join(_KILL_GRACE if kill else _STOP_GRACE)
        if process.exitcode is None and not kill:
            process.terminate()
            process.join(_KILL_GRACE)
        if process.exitcode is None:
            process.kill()
            process.join(
                _STOP_GRACE
            )  # SIGKILL cannot be ignored; only the kernel is slow
        exitcode = process.exitcode
        with self._lock:
            slot.process = slot.conn = None
        if conn is not None:
            conn.close()
        if exitcode is not None:
            process.close()
        return exitcode

    def _retire(self, slot: _Slot) -> None:
        """At shutdown: ask the slot's process to exit, and forget the slot."""
        if slot.conn is not None:
            try:
                slot.conn.send_bytes(_STOP)
            except OSError:
                pass  # already gone
        self._end_process(slot, kill=False)
        with self._lock:
            if slot in self._slots:  # not after a fork: the child forgot it
                self._slots.remove(slot)
            slot.wake_r.close()
            slot.wake_w.close()
            if self._queue and not self._shutdown:  # the thread failed: replace it
                self._start_slot()

    def _settle(self, job: _Job, error: BaseException) -> None:
        """Set *error* on the job's future, unless terminate() already settled it."""
        with self._lock:
            mine = self._jobs.pop(job.future, None) is not None
        if mine:
            job.future.set_exception(error)

    def _settle_reply(self, job: _Job, reply: bytes) -> None:
        loads = self._loads
        with self._lock:
            mine = self._jobs.pop(job.future, None) is not None
        if not mine:
            return  # terminate() answered it already
        name = callable_name(job.func)
        try:
            message = loads(reply)  # our own worker's reply
        except Exception as error:
            job.future.set_exception(
                SerializationError(
                    f"the result of {name}() cannot be unpickled here: "
                    f"{type(error).__name__}: {error}. Return data (str, bytes, "
                    "numbers, lists and dicts of them, objects of classes defined in "
                    "a module both processes import)."
                )
            )
            return
        if message[0] == _OK:
            job.future.set_result(message[1])
            return
        if message[0] == _RAISED:
            _, data, tb, kind_name, text = message
            try:
                exc = loads(data)
            except Exception as error:
                exc = SerializationError(
                    f"{name}() raised {kind_name}: {text}; it cannot be unpickled here "
                    f"({type(error).__name__}: {error}). Define the exception class in "
                    "a module both processes import."
                )
        else:
            _, text, tb = message
            exc = SerializationError(text)
        if tb is not None:
            exc.__cause__ = _RemoteTraceback(tb)
        job.future.set_exception(exc)

    def _reset_after_fork(self) -> None:
        """In a forked child: forget the parent's processes, threads and jobs."""
        import multiprocessing
        import multiprocessing.process

        children = getattr(multiprocessing.process, "_children", None)
        for slot in self._slots:
            if isinstance(children, set) and slot.process is not None:
                children.discard(slot.process)  # not ours to join at exit
        if self._ctx.get_start_method() == "forkserver":
            # The fork server belongs to the parent: the child cannot use it.
            self._ctx = multiprocessing.get_context("spawn")
        self._fresh_state()


def _send_sigterm(process: BaseProcess) -> None:
    try:
        process.terminate()
    except (OSError, ValueError):
        pass  # already gone (or closed)


def _cancel(jobs: list[_Job]) -> None:
    for job in jobs:
        job.future.cancel()
        job.future.set_running_or_notify_cancel()  # what wait()/as_completed() see


def _died_message(func: object, exitcode: int | None) -> str:
    if exitcode is None:
        how = "could not be ended"
    elif exitcode < 0:
        try:
            how = f"was killed by signal {signal.Signals(-exitcode).name}"
        except ValueError:
            how = f"was killed by signal {-exitcode}"
    else:
        how = f"exited with code {exitcode}"
    return (
        f"ProcessExecutor: the worker process running {callable_name(func)}() {how} "
        "before the job "
        "finished (a crash in native code, os._exit(), the out-of-memory killer or "
        "a signal from outside). The executor carries on: its next job runs in a "
        "fresh process."
    )


# -- in the worker process -------------------------------------------------------


def _worker_main(conn: Connection, init_payload: bytes | None) -> None:
    """A worker process: run the initializer, then each call received, until told to stop."""
    import pickle

    init_error: BaseException | None = None
    init_tb: str | None = None
    initializer: Any = None
    if init_payload is not None:
        try:
            initializer, initargs, _ = pickle.loads(init_payload)
            initializer(*initargs)
        except BaseException as exc:
            init_error = exc
            init_tb = (
                f"raised by ProcessExecutor(initializer={callable_name(initializer)}) "
                "in the worker process, before any job:\n" + _format(exc)
            )
    while True:
        try:
            data = conn.recv_bytes()
        except (EOFError, OSError, KeyboardInterrupt):
            return  # the parent is gone (or Ctrl-C while idle)
        if data == _STOP:
            return
        if init_error is not None:
            reply = _exception_reply(initializer, init_error, init_tb)
        else:
            reply = _run_call(data)
        conn.send_bytes(reply)


def _run_call(data: bytes) -> bytes:
    import pickle

    try:
        func, args, kwargs = pickle.loads(data)
    except BaseException as exc:
        message = (
            "the call cannot be unpickled in the worker process: "
            f"{type(exc).__name__}: {exc}. The function and the classes of its "
            "arguments must be importable there: define them in a module, not in an "
            "interactive session or a notebook cell."
        )
        return default_dumps((_UNSENDABLE, message, _format(exc)))
    try:
        value = func(*args, **kwargs)
    except BaseException as exc:
        return _exception_reply(func, exc, None)
    try:
        return default_dumps((_OK, value))
    except Exception as error:
        message = result_message(func, value, error, default_dumps)
        return default_dumps((_UNSENDABLE, message, None))


def _exception_reply(func: object, exc: BaseException, tb: str | None) -> bytes:
    import pickle

    tb = tb if tb is not None else _format(exc)
    try:
        data = default_dumps(exc)
        pickle.loads(data)  # some pickle but cannot be rebuilt
    except Exception as error:
        return default_dumps((_UNSENDABLE, exception_message(func, exc, error), tb))
    return default_dumps((_RAISED, data, tb, type(exc).__qualname__, str(exc)))


def _format(exc: BaseException) -> str:
    import traceback

    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


# -- process-wide hooks -----------------------------------------------------------

_executors: weakref.WeakSet[ProcessExecutor] = weakref.WeakSet()
_exiting = False


def _shutdown_all_at_exit() -> None:
    global _exiting
    _exiting = True
    for executor in list(_executors):
        executor.shutdown(wait=True)


def _reset_all_after_fork() -> None:
    for executor in list(_executors):
        executor._reset_after_fork()  # pyright: ignore[reportPrivateUsage]


on_exit(ExitStep.PROCESS_EXECUTORS, _shutdown_all_at_exit)
on_fork_child(ChildStep.PROCESS_EXECUTORS, _reset_all_after_fork)
