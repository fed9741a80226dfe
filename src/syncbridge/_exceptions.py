"""Exceptions raised by syncbridge, each with a message that names the fix."""

from __future__ import annotations

__all__ = (
    "BridgeClosed",
    "DeadlockError",
    "SerializationError",
    "SyncBridgeError",
    "SyncBridgeTimeout",
    "WorkerCancelled",
    "WorkerProcessDied",
    "callable_name",
    "closed_message",
    "deadlock_message",
    "note_interpreter_exit",
    "timeout_message",
)

import functools


class SyncBridgeError(Exception):
    """Base class of every error syncbridge raises on its own account.

    Exceptions raised by *your* code pass through syncbridge unchanged (the same
    object); they are never wrapped in a :class:`SyncBridgeError`.
    """


class SyncBridgeTimeout(SyncBridgeError, TimeoutError):
    """A deadline syncbridge enforces passed: ``to_async(timeout=...)``, ``to_sync(timeout=...)``.

    A :class:`TimeoutError`, so ``except TimeoutError`` still catches it; catch (or
    register a web-framework handler for) this class to tell syncbridge's own
    deadlines apart from a :class:`TimeoutError` your code or a library raised
    (a socket or driver timeout), which syncbridge passes through unchanged.
    :class:`~syncbridge.GatherTimeout` is one.

    .. versionadded:: 0.1
    """


def timeout_message(what: str, func_name: str, timeout: float) -> str:
    """Build the message of the :class:`SyncBridgeTimeout` raised by *what*."""
    return f"{what}: {func_name}() did not finish within {timeout:g} s"


class BridgeClosed(SyncBridgeError, RuntimeError):
    """The bridge was closed: it runs no new calls.

    Raised by every call made on a :class:`~syncbridge.Bridge` after
    :meth:`~syncbridge.Bridge.close`, and by calls that were still waiting for a
    worker or running on the portal loop when it closed.
    """


class DeadlockError(SyncBridgeError, RuntimeError):
    """A blocking call was made from a thread whose event loop it would block forever.

    Raised at once by :func:`~syncbridge.sync_call_async` (and :func:`~syncbridge.to_sync`
    wrappers) when called from a thread that is running an event loop: waiting there
    would stop the very loop the call needs. ``await`` the coroutine function instead.
    """


class SerializationError(SyncBridgeError, TypeError):
    """Something cannot be sent to another process: it cannot be pickled.

    Raised at once by :meth:`ProcessExecutor.submit() <syncbridge.ProcessExecutor.submit>`
    (nothing is queued) when the function or an argument cannot be pickled, and
    set on the future when a result or an exception cannot be sent back. The
    message names the offending object. Pass a function defined at the top level
    of a module and arguments that are data (not open files, locks, sockets or
    clients: open those inside the function). A :class:`TypeError`, as
    :mod:`pickle` raises for most unpicklable objects.

    .. versionadded:: 0.1
    """


class WorkerProcessDied(SyncBridgeError):
    """The worker process running a job ended before the job finished.

    Set on the job's future when the process crashed or was killed
    (``os._exit()``, a segfault, the out-of-memory killer, a signal from
    outside) or was ended by
    :meth:`ProcessExecutor.terminate() <syncbridge.ProcessExecutor.terminate>`.
    The executor carries on: the next job runs in a fresh process.

    Attributes:
        exitcode: How the process ended: its exit code, ``-N`` if killed by
            signal N; ``None`` if it was ended by ``terminate()``.

    .. versionadded:: 0.1
    """

    def __init__(self, message: str, exitcode: int | None = None) -> None:
        super().__init__(message)
        self.exitcode: int | None = exitcode

    def __reduce__(self) -> tuple[type[WorkerProcessDied], tuple[str, int | None]]:
        return (type(self), (str(self), self.exitcode))


class WorkerCancelled(BaseException):
    """Raised inside a worker thread by :func:`~syncbridge.check_cancelled`.

    It means the task awaiting this call was cancelled (or timed out) or the bridge
    was closed, so nobody will use the result. Like :class:`asyncio.CancelledError` it
    derives from :class:`BaseException`, so ``except Exception`` does not swallow it;
    let it propagate, after your own cleanup.
    """


def callable_name(func: object) -> str:
    """Name *func* in a message: its qualified name, else its repr.

    A ``functools.partial`` is named after the function it wraps.
    """
    if isinstance(func, functools.partial):
        return f"functools.partial({callable_name(func.func)}, ...)"
    name = getattr(func, "__qualname__", None)
    if isinstance(name, str):
        return name
    name = getattr(type(func), "__qualname__", None)
    if callable(func) and isinstance(name, str):
        return f"{name} instance"
    return repr(func)


def deadlock_message(func_name: str) -> str:
    """Build the message of the :class:`DeadlockError` raised for *func_name*."""
    return (
        f"sync_call_async({func_name}) was called from a thread that is running an "
        "event loop; blocking here would stop that loop and never return. "
        f"Use `await {func_name}(...)` instead, or call it from a worker thread "
        "(e.g. a function run with syncbridge.run_blocking)."
    )


def closed_message(what: str, fix: str | None = None) -> str:
    """Build the message of the :class:`BridgeClosed` raised when calling *what*."""
    if _interpreter_exiting:
        return (
            f"{what} was called on a closed syncbridge.Bridge while the interpreter "
            "exits: the default bridge is closed before Python waits for the threads "
            "still running, so a call from one of them is refused. Make the call "
            "before the main thread returns, or wait for the thread making it "
            "(join it, or shut its executor down) before then."
        )
    if fix is None:
        fix = (
            "Create a new Bridge(), or use the default one (syncbridge.get_bridge()) "
            "and close only bridges you created yourself."
        )
    return f"{what} was called on a closed syncbridge.Bridge. {fix}"


_interpreter_exiting = False


def note_interpreter_exit() -> None:
    """From now on, :func:`closed_message` says the interpreter is exiting.

    Called once, by the exit hook that closes the default bridge (``_bridge``).
    """
    global _interpreter_exiting
    _interpreter_exiting = True
