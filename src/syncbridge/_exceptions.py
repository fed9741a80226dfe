"""Exceptions raised by syncbridge, each with a message that names the fix."""

from __future__ import annotations

__all__ = (
    "BridgeClosed",
    "DeadlockError",
    "PoolSaturated",
    "SerializationError",
    "SyncBridgeError",
    "SyncBridgeTimeout",
    "WorkerCancelled",
    "WorkerProcessDied",
    "callable_name",
    "closed_message",
    "deadlock_message",
    "describe_call",
    "note_interpreter_exit",
    "retry_after",
    "timeout_message",
)

import functools
import math
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from collections.abc import Sequence


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

    A worker call's timeout (``to_async``/``run_blocking``) says whether the
    call was still queued for a slot or running, in its message and in the
    attributes below; they are ``None`` where that does not apply (the portal's
    ``to_sync(timeout=...)``, :class:`~syncbridge.GatherTimeout`) or is not
    seen (an executor that runs calls in other processes).

    .. versionadded:: 0.1
    """

    queued: bool | None = None
    """True: the call was still queued for a slot when its deadline passed, and
    never ran. False: it was running.

    .. versionadded:: 0.1
    """
    waited: float | None = None
    """Seconds the call waited for a slot (until the deadline, if it never got
    one).

    .. versionadded:: 0.1
    """
    ran: float | None = None
    """Seconds it had been running when the deadline passed; ``None`` if it
    never ran.

    .. versionadded:: 0.1
    """
    pool: str | None = None
    """The pool's name (``"default"`` for the default pool).

    .. versionadded:: 0.1
    """

    def __init__(
        self,
        message: str,
        *,
        queued: bool | None = None,
        waited: float | None = None,
        ran: float | None = None,
        pool: str | None = None,
    ) -> None:
        super().__init__(message)
        # Only those given: the class's None stands for the rest, and pickling
        # (args and __dict__) brings them back.
        if pool is not None:
            self.pool = pool
            self.queued = queued
            self.waited = waited
            self.ran = ran


def timeout_message(
    what: str,
    func_name: str,
    timeout: float,
    *,
    pool: str | None = None,
    queued: bool | None = None,
    waited: float | None = None,
    ran: float | None = None,
    occupancy: tuple[int, int, int] | None = None,
) -> str:
    """Build the message of the :class:`SyncBridgeTimeout` raised by *what*.

    With *pool*, the message says where the call was (the same arguments as
    the exception's attributes); *occupancy* is the pool's ``(capacity, busy,
    waiting)`` as the call timed out.
    """
    message = f"{what}: {func_name}() did not finish within {timeout:g} s"
    if pool is None or queued is None or waited is None:
        return message
    if queued:
        state = ""
        if occupancy is not None:
            capacity, busy, waiting = occupancy
            state = f" ({busy} of {capacity} slots busy, {waiting} other calls waiting)"
        return (
            f"{message}: it was still queued for a slot of pool {pool!r} after "
            f"{waited:.2f} s and never ran{state}. The pool is saturated, not "
            "the function slow: raise the pool's capacity, or bound its queue "
            "(max_waiting=, max_wait=) so that calls are refused at once"
        )
    return (
        f"{message}: it had been running for {ran or 0.0:.2f} s in pool {pool!r}, "
        f"after waiting {waited:.2f} s for a slot. The function is slow: raise "
        "the timeout, or make the function return sooner"
    )


class PoolSaturated(SyncBridgeError):
    """A pool refused a call at once: its queue was at its bound. The call never ran.

    Raised by a call to a pool given ``max_waiting`` (the call found that many
    calls already queued) or ``max_wait`` (the call waited that long without
    starting). Answer it fast (``syncbridge.fastapi.install()`` makes it a
    ``503``) instead of letting a backlog eat every caller's deadline.

    .. versionadded:: 0.1
    """

    pool: str
    """The pool's name (``"default"`` for the default pool)."""
    capacity: int
    """How many calls the pool runs at once."""
    busy: int
    """Slots taken when the call was refused."""
    waiting: int
    """Calls queued when the call was refused (not counting it)."""
    option: str
    """The bound that refused it: ``"max_waiting"`` or ``"max_wait"``."""
    limit: float
    """That bound's value."""

    def __init__(
        self,
        what: str,
        *,
        pool: str,
        capacity: int,
        busy: int,
        waiting: int,
        option: str,
        limit: float,
    ) -> None:
        self.pool = pool
        self.capacity = capacity
        self.busy = busy
        self.waiting = waiting
        self.option = option
        self.limit = limit
        if option == "max_waiting":
            why = f"{waiting} calls were already queued ({option}={limit:g})"
        else:
            why = f"it waited {limit:g} s without starting ({option}={limit:g})"
        super().__init__(
            f"{what}: pool {pool!r} is saturated, so the call was refused and never "
            f"ran: {why}; {busy} of {capacity} slots busy, {waiting} calls waiting. "
            f"Raise {option} or the pool's capacity where the pool is set up "
            "(Bridge.add_pool(), Bridge(pools=...), SYNCBRIDGE_POOLS, "
            "syncbridge.fastapi.install(pools=...)), or answer the error (a 503)"
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_saturated, (str(self), dict(self.__dict__)))


def _rebuild_saturated(message: str, fields: dict[str, object]) -> PoolSaturated:
    exc = PoolSaturated.__new__(PoolSaturated)
    Exception.__init__(exc, message)
    exc.__dict__.update(fields)
    return exc


def retry_after(exc: PoolSaturated) -> int:
    """Whole seconds a client refused with *exc* should wait: the ``Retry-After``.

    A ``max_wait`` refusal says how long a call may queue there: that, rounded
    up. A ``max_waiting`` one, a full queue, clears as fast as calls end: 1 s.
    """
    if exc.option == "max_wait" and math.isfinite(exc.limit):
        return max(1, math.ceil(exc.limit))
    return 1


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


_WRAPPED: dict[str, str] = {
    "to_async": "a to_async() function",
    "to_sync": "a to_sync() function",
    "flask": "an async view that syncbridge.flask runs",
}
"""How a call is named when the user calls the function a wrapper made."""


def describe_call(entry: str, subject: object) -> str:
    """Spell the user's call in a message: ``run_blocking(fetch)``, ``sync_iter(ticks())``.

    *entry* is the public name the user called (``"run_blocking"``,
    ``"Bridge.start_soon"``) and *subject* what they passed it: a function, a
    generator or coroutine object (``ticks()``), a context manager made by a
    function (``session()``), or a sequence of them. For a wrapper's function
    (*entry* ``"to_async"``, ``"to_sync"``, ``"flask"``) the user called
    *subject* itself: ``fetch(), a to_async() function,``. Built only on an
    error path.
    """
    kind = _WRAPPED.get(entry)
    if kind is not None:
        return f"{callable_name(subject)}(), {kind},"
    return f"{entry}({_spelled(subject)})"


def _spelled(subject: object) -> str:
    if isinstance(subject, str):
        return repr(subject)  # a name: Bridge.add_pool('db')
    if isinstance(subject, (tuple, list)):
        items = cast("Sequence[object]", subject)
        shown = [_spelled(item) for item in items[:2]]
        return ", ".join(shown + ["..."] * (len(items) > 2))
    made = getattr(subject, "func", None)
    if hasattr(subject, "gen") and callable(made):  # made by @contextmanager
        return f"{callable_name(made)}()"
    if callable(subject):
        return callable_name(subject)
    name = getattr(subject, "__qualname__", None)  # a generator or coroutine object
    if isinstance(name, str):
        return f"{name}()"
    return f"<{type(subject).__qualname__} object>"


_DEFAULT_CLOSED_FIX = (
    "The default bridge (syncbridge.get_bridge()) stays closed once closed: close "
    "it only after your last call (syncbridge closes it at interpreter exit on its "
    "own), or make these calls on a Bridge() you create and close yourself."
)
_CLOSED_FIX = (
    "Create a new Bridge(), or use the default one (syncbridge.get_bridge()) "
    "and close only bridges you created yourself."
)


def closed_message(
    call: str, *, default: bool = False, option: str | None = None
) -> str:
    """Build the message of the :class:`BridgeClosed` that refuses the user's *call*.

    Every refusal by a closed bridge is worded here. *call* is the user's call
    as :func:`describe_call` spells it. The fix depends on the bridge: the
    default one (*default*), or one passed with *option*
    (``"to_async(bridge=...)"``), or one the user called directly.
    """
    if _interpreter_exiting:
        return (
            f"{call} was called on a closed syncbridge.Bridge while the interpreter "
            "exits: the default bridge is closed before Python waits for the threads "
            "still running, so a call from one of them is refused. Make the call "
            "before the main thread returns, or wait for the thread making it "
            "(join it, or shut its executor down) before then."
        )
    if default:
        fix = _DEFAULT_CLOSED_FIX
    elif option is not None:
        fix = (
            f"Give {option} an open bridge (one that lives as long as the code "
            "that calls the function), or omit bridge= to use the default one."
        )
    else:
        fix = _CLOSED_FIX
    return f"{call} was called on a closed syncbridge.Bridge. {fix}"


_interpreter_exiting = False


def note_interpreter_exit() -> None:
    """From now on, :func:`closed_message` says the interpreter is exiting.

    Called once, by the exit hook that closes the default bridge (``_bridge``).
    """
    global _interpreter_exiting
    _interpreter_exiting = True
