"""Context-manager bridges: to_async_cm (sync cm, async code) and to_sync_cm."""

from __future__ import annotations

__all__ = ("to_async_cm", "to_sync_cm")

import asyncio
import contextvars
import itertools
import threading
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import anyio

from ._core._bridge import call_for_cleanup, call_with_timeout, get_bridge
from ._core._context import copy_context_for_thread, new_thread
from ._core._delegate import adopt_chain, current_chain
from ._core._loops import loop_running_in_this_thread
from ._core._outcome import Error, Value
from ._core._shield import wait_through_cancellation
from ._core._wakeup import Wakeup, serve_loop
from ._exceptions import DeadlockError, SyncBridgeError
from ._typing import T, X
from ._validate import check_context_manager

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

    from ._core._delegate import Delegate

_ExcInfo = tuple[type[BaseException] | None, BaseException | None, TracebackType | None]
_thread_ids = itertools.count(1)
_R = TypeVar("_R")


def _single_use(name: str) -> RuntimeError:
    return RuntimeError(
        f"this {name}() object was already entered; it wraps one context manager "
        f"for one block: call {name}(...) again for another block"
    )


class _AsyncFromSync(AbstractAsyncContextManager[T, X]):
    """The object :func:`to_async_cm` returns."""

    def __init__(self, cm: AbstractContextManager[T, X]) -> None:
        self._cm = cm
        self._thread: threading.Thread | None = None
        self._go_exit = threading.Event()
        self._exit_info: _ExcInfo = (None, None, None)
        self._exit_wakeup: Wakeup | None = None
        self._entered = False
        self._outcome: Value[Any] | Error | None = None

    async def __aenter__(self) -> T:
        if self._thread is not None:
            raise _single_use("to_async_cm")
        wakeup = Wakeup("to_async_cm()")
        ctx = copy_context_for_thread()
        self._thread = new_thread(
            target=ctx.run,
            args=(serve_loop, wakeup.native, self._lifetime, wakeup),
            name=f"syncbridge-to_async_cm-{next(_thread_ids)}",
            daemon=True,
        )
        self._thread.start()
        try:
            await wakeup.wait()
        except BaseException as exc:
            # Never leave the cm entered behind a cancelled `async with`: wait
            # for __enter__ to return, exit with the cancellation, re-raise.
            try:
                await wait_through_cancellation(wakeup.wait)
            finally:  # a second cancel, re-raised above, must not skip the exit
                if self._entered:
                    await self._exit((type(exc), exc, exc.__traceback__))
            raise
        entered: T = self._take_outcome().unwrap()
        return entered

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> X:
        if not self._entered:
            raise RuntimeError("to_async_cm(): __aexit__() called before __aenter__()")
        suppress: X = (await self._exit((exc_type, exc, tb))).unwrap()
        return suppress

    def _take_outcome(self) -> Value[Any] | Error:
        outcome, self._outcome = self._outcome, None
        assert outcome is not None
        return outcome

    async def _exit(self, info: _ExcInfo) -> Value[Any] | Error:
        """Run ``__exit__`` with *info*; wait for its outcome, whatever cancels us."""
        self._exit_wakeup = wakeup = Wakeup("to_async_cm()")
        self._exit_info = info
        self._go_exit.set()
        try:
            await wait_through_cancellation(wakeup.wait)
        finally:
            self._entered = False
        return self._take_outcome()

    def _lifetime(self, wakeup: Wakeup) -> None:
        try:
            value = self._cm.__enter__()
        except BaseException as exc:
            self._outcome = Error(exc)
            wakeup.set()
            return
        self._outcome = Value(value)
        self._entered = True
        wakeup.set()
        # The thread, not a pool slot, is held until the block ends: __exit__
        # can never wait for worker capacity (the FastAPI sync-dependency
        # deadlock), and a body that needs workers cannot be starved by it.
        self._go_exit.wait()
        exit_wakeup = self._exit_wakeup
        assert exit_wakeup is not None
        info, self._exit_info = self._exit_info, (None, None, None)
        try:
            self._outcome = Value(self._cm.__exit__(*info))
        except BaseException as exc:
            self._outcome = Error(exc)
        finally:
            del info
        exit_wakeup.set()


def to_async_cm(
    cm: AbstractContextManager[T, X], /
) -> AbstractAsyncContextManager[T, X]:
    """Use a blocking context manager with ``async with``.

    For a lock, a file or a DB transaction that blocks on enter or exit::

        async with to_async_cm(pool.connection()) as conn:
            ...

    Runs on:
        ``__enter__`` and ``__exit__`` run on the same thread, a dedicated thread
        started for this block (in a copy of the caller's :mod:`contextvars`
        context, shared by enter and exit), so the loop is never blocked; the
        block's body runs in the caller's task as usual. That thread is not a
        worker of any pool: it takes no pool slot, so neither enter nor exit ever
        waits for worker capacity, and a saturated pool cannot deadlock the
        cleanup. The price is one OS thread per open block.

    Cancellation:
        An exception in the block, a cancellation included, reaches ``__exit__``
        as usual, and passes through unchanged unless ``__exit__`` suppresses
        it. A thread cannot be interrupted: a cancelled ``__aenter__`` waits for
        ``__enter__`` to return, then exits the context manager with the
        cancellation and re-raises it. ``__aexit__`` is shielded: it always waits
        for ``__exit__`` to return. There is no timeout option.

    Args:
        cm: The context manager; the returned object wraps it for one block.

    Returns:
        An async context manager that yields what ``cm.__enter__()`` returned.

    Raises:
        TypeError: If *cm* is not a context manager (checked here); the message
            says when it is an async one (use ``async with`` directly).
        RuntimeError: On entering it twice, or outside an asyncio or trio loop.

    .. versionadded:: 0.1
    """
    check_context_manager(cm, "to_async_cm()", is_async=False)
    return _AsyncFromSync(cm)


class _SyncFromAsync(AbstractContextManager[T, X], Generic[T, X]):
    """The object :func:`to_sync_cm` returns."""

    def __init__(self, acm: AbstractAsyncContextManager[T, X]) -> None:
        self._acm = acm
        self._loop: object | None = None
        self._started = False
        self._task: asyncio.Task[None] | None = None
        self._scope: anyio.CancelScope | None = None
        self._entered: anyio.Event | None = None
        self._go_exit: anyio.Event | None = None
        self._finished: anyio.Event | None = None
        self._exit_info: _ExcInfo = (None, None, None)
        self._exit_chain: tuple[Delegate, ...] = ()
        self._outcome: Value[Any] | Error | None = None

    def __enter__(self) -> T:
        if self._started:
            raise _single_use("to_sync_cm")
        self._started = True
        return self._call(self._start)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> X:
        if self._go_exit is None:
            raise RuntimeError("to_sync_cm(): __exit__() called before __enter__()")
        return self._call(self._finish, (exc_type, exc, tb), cleanup=True)

    def _call(
        self,
        func: Callable[..., Coroutine[Any, Any, _R]],
        *args: Any,
        cleanup: bool = False,
    ) -> _R:
        bridge = get_bridge()
        try:
            if cleanup:  # the exit runs even in a worker whose awaiter is gone
                return call_for_cleanup(
                    bridge, func, *args, entry="to_sync_cm", subject=self._acm
                )
            return call_with_timeout(
                bridge, None, func, args, {}, entry="to_sync_cm", subject=self._acm
            )
        except DeadlockError:
            raise DeadlockError(
                "to_sync_cm() was used in a thread that is running an event loop; "
                "blocking here would stop that loop forever. Use `async with` on "
                "the async context manager instead."
            ) from None

    async def _start(self) -> T:
        self._loop = loop_running_in_this_thread()
        self._entered = anyio.Event()
        self._go_exit = anyio.Event()
        self._finished = anyio.Event()
        self._scope = anyio.CancelScope()
        self._spawn()
        try:
            await self._entered.wait()
        except BaseException as exc:
            self._exit_info = (type(exc), exc, exc.__traceback__)
            self._go_exit.set()
            if not self._entered.is_set():
                self._scope.cancel()
            await wait_through_cancellation(self._finished.wait)
            raise
        entered: T = self._take_outcome().unwrap()
        return entered

    def _take_outcome(self) -> Value[Any] | Error:
        outcome, self._outcome = self._outcome, None
        assert outcome is not None
        return outcome

    def _spawn(self) -> None:
        # __aenter__ and __aexit__ must run in one task (anyio cancel scopes and
        # task groups in the cm require it), and that task must outlive this
        # sync_call_async() call: a task of its own, detached on this loop.
        native = self._loop
        ctx = contextvars.copy_context()  # same loop: sniffio's variable stays right
        if isinstance(native, asyncio.AbstractEventLoop):
            self._task = ctx.run(native.create_task, self._lifetime())
        else:
            import trio

            trio.lowlevel.spawn_system_task(self._lifetime, context=ctx)

    async def _lifetime(self) -> None:
        assert self._entered is not None
        assert self._go_exit is not None
        assert self._finished is not None
        assert self._scope is not None
        try:
            # One scope around the cm's whole life (a scope around __aenter__
            # alone would close under the cm's own open scopes); it is cancelled
            # only to abort an __aenter__ whose caller went away.
            with self._scope:
                try:
                    value = await self._acm.__aenter__()
                except BaseException as exc:
                    self._outcome = Error(exc)
                    return
                self._outcome = Value(value)
                self._entered.set()
                loop_gone = False
                if not self._go_exit.is_set():
                    try:
                        await self._go_exit.wait()
                    except BaseException as exc:  # the loop is shutting down
                        loop_gone = True
                        self._exit_info = (type(exc), exc, exc.__traceback__)
                info, self._exit_info = self._exit_info, (None, None, None)
                # This task outlives the call that entered the cm: the blocked
                # callers that may lend their slots are the exit call's (#11).
                adopt_chain(self._exit_chain)
                try:
                    self._outcome = Value(await self._acm.__aexit__(*info))
                except BaseException as exc:
                    self._outcome = Error(exc)
                    loop_gone = loop_gone or isinstance(
                        exc, anyio.get_cancelled_exc_class()
                    )
                finally:
                    del info
                if loop_gone:
                    self._outcome = Error(_gone())
        finally:
            self._entered.set()
            self._finished.set()

    async def _finish(self, info: _ExcInfo) -> X:
        assert self._go_exit is not None
        assert self._finished is not None
        if self._finished.is_set():  # already exited: its loop shut down under it
            self._task = None
            suppress: X = self._take_outcome().unwrap()
            return suppress
        if loop_running_in_this_thread() is not self._loop:
            raise RuntimeError(
                "to_sync_cm(): the block was exited on a different event loop than "
                "it was entered on (exited from another thread?); exit it in the "
                "thread that entered it"
            )
        self._exit_info = info
        self._exit_chain = current_chain()
        self._go_exit.set()
        await wait_through_cancellation(self._finished.wait)
        self._task = None
        suppressed: X = self._take_outcome().unwrap()
        return suppressed


def _gone() -> SyncBridgeError:
    return SyncBridgeError(
        "to_sync_cm(): the async context manager's __aexit__() was cancelled on its "
        "event loop (the loop or its bridge is shutting down)"
    )


def to_sync_cm(
    acm: AbstractAsyncContextManager[T, X], /
) -> AbstractContextManager[T, X]:
    """Use an async context manager with a plain ``with`` in sync code.

    For an async client session or lock, from a Flask view or a script::

        with to_sync_cm(client.stream("GET", url)) as response:
            ...

    Runs on:
        The calling thread blocks on enter and on exit; the block's body runs in
        the calling thread. ``__aenter__`` and ``__aexit__`` run in one task (so
        the cm may hold cancel scopes or task groups across the block), on the
        loop :func:`~syncbridge.sync_call_async` chooses for the default bridge
        (the same three rules), in a copy of the caller's :mod:`contextvars`
        context. Enter and exit must happen in the same thread. No worker slot
        is held while the block runs, so cleanup never waits for worker
        capacity.

    Cancellation:
        The block's exception reaches ``__aexit__`` and passes through unchanged
        unless it is suppressed. Exiting is shielded from cancellation on the
        loop: ``__exit__`` returns only once ``__aexit__`` has finished. A
        ``KeyboardInterrupt`` while ``__aenter__`` runs cancels it on its loop.
        If the loop shuts down (its bridge closes) while the block runs,
        ``__aexit__`` runs then with the cancellation, and the later
        ``__exit__`` raises :class:`~syncbridge.SyncBridgeError` or
        :class:`~syncbridge.BridgeClosed`. There is no timeout option.

    Args:
        acm: The async context manager; the returned object wraps it for one
            block.

    Returns:
        A context manager that yields what ``acm.__aenter__()`` returned.

    Raises:
        TypeError: If *acm* is not an async context manager (checked here); a
            coroutine passed by mistake is closed first.
        DeadlockError: When entered in a thread running an event loop.
        RuntimeError: On entering it twice.

    .. versionadded:: 0.1
    """
    check_context_manager(acm, "to_sync_cm()", is_async=True)
    return _SyncFromAsync(acm)
