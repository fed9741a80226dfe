"""What a thread is doing for an event loop, and the context a new thread starts in.

A thread's role is one typed thread-local (:data:`role`): the blocking job it runs
for a loop, or the loop it serves while it closes an iterator or runs a context
manager. Every role records the process it was taken in, and a forked child
forgets the roles its only thread inherited: nothing from the parent process is
ever used in the child (#11). Every thread syncbridge starts is made by
:func:`new_thread`, in an empty context of its own.
"""

from __future__ import annotations

__all__ = (
    "ThreadRole",
    "anyio_worker_loop",
    "copy_context_for_thread",
    "new_thread",
    "role",
)

import contextvars
import sys
import threading
from typing import TYPE_CHECKING, Any

from ._process import PROCESS, ChildStep, on_fork_child

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable


class ThreadRole(threading.local):
    """The role of the current thread; each field is written by that thread only.

    :attr:`job` holds an object of a module above this one (``_jobs``), which
    this kernel module does not import: its readers give it its type
    (``job: Job | None = role.job``).
    """

    job: Any = None
    """The blocking ``Job`` this thread is running for an event loop, or None."""

    served_loop: object | None = None
    """The asyncio loop or trio token this thread works for (see ``serve_loop``)."""

    served_pid: int = 0
    """The process in which :attr:`served_loop` was set."""

    stale_anyio_token: object | None = None
    """anyio's worker token as this thread had it when the process forked."""

    def loop_served(self) -> object | None:
        """The loop this thread serves in *this* process, if any."""
        if self.served_loop is not None and self.served_pid == PROCESS.pid:
            return self.served_loop
        return None


role = ThreadRole()


def _anyio_threadlocals() -> object | None:
    try:
        from anyio._core._eventloop import threadlocals
    except ImportError:  # pragma: no cover - anyio reorganised its internals
        return None
    return threadlocals


_threadlocals = _anyio_threadlocals()  # looked up once: read on every call


def _anyio_token() -> object | None:
    # This thread's own dict of the thread-local: a getattr() that misses
    # raises and catches an AttributeError, half a microsecond per call.
    local: object = _threadlocals
    try:
        return local.__dict__.get("current_token")
    except AttributeError:  # pragma: no cover - not a threading.local any more
        return getattr(local, "current_token", None)


def anyio_worker_loop() -> object | None:
    """The loop an ``anyio.to_thread`` (or Starlette) worker thread works for.

    anyio keeps it in a private thread-local; ``from_thread.run()`` without a
    token reads the same attribute. Reading it directly avoids a round trip to
    that loop, which would hang on a loop that stopped without closing
    (test_rule_1_an_anyio_worker_calls_back_into_its_loop in
    tests/core/test_loop_choice.py covers the reading; no test stops a loop
    without closing it). A token the thread carried
    over a fork belongs to the parent's loop and is ignored.
    """
    try:  # _anyio_token(), inlined: this runs on every sync_call_async
        token = _threadlocals.__dict__.get("current_token")
    except AttributeError:  # pragma: no cover - not a threading.local any more
        token = _anyio_token()
    if token is None or token is role.stale_anyio_token:
        return None
    return getattr(token, "native_token", None)


def _forget_parent_roles() -> None:
    role.job = None
    role.served_loop = None
    role.stale_anyio_token = _anyio_token()


on_fork_child(ChildStep.THREAD_ROLES, _forget_parent_roles)


def copy_context_for_thread() -> contextvars.Context:
    """Copy the caller's context for a call that runs on another thread.

    The copy carries every variable except sniffio's current async library:
    a worker thread runs no event loop, so it starts with none set, as anyio's
    and trio's worker threads do (#11: a worker under trio that runs
    ``asyncio.run()`` of anyio code must see asyncio there).
    """
    ctx = contextvars.copy_context()
    sniffio = sys.modules.get("sniffio")
    if sniffio is not None:
        cvar = sniffio.current_async_library_cvar
        if ctx.get(cvar) is not None:
            ctx.run(cvar.set, None)
    return ctx


def new_thread(
    *,
    target: Callable[..., object],
    name: str,
    daemon: bool,
    args: Iterable[Any] = (),
) -> threading.Thread:
    """A thread, not started yet, that begins in an empty :mod:`contextvars` context.

    Every thread syncbridge starts is made here. Since Python 3.14 a new thread
    may inherit the context of the code that starts it
    (``sys.flags.thread_inherit_context``, on by default on free-threaded
    builds): a pooled thread would then carry the values of whichever caller
    happened to start it into every later call it serves, and keep them alive.
    Earlier versions always start a thread in an empty context.
    """
    if sys.version_info >= (3, 14):
        return threading.Thread(
            target=target,
            name=name,
            args=args,
            daemon=daemon,
            context=contextvars.Context(),
        )
    return threading.Thread(target=target, name=name, args=args, daemon=daemon)
