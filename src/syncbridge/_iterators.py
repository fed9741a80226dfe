"""Iterator bridges: iterate_in_thread (sync source, async loop), sync_iter (the reverse)."""

from __future__ import annotations

__all__ = ("SyncIterator", "ThreadIterator", "iterate_in_thread", "sync_iter")

import contextvars
import enum
import gc
import inspect
import logging
import threading
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Iterable,
    Iterator,
)
from types import AsyncGeneratorType
from typing import TYPE_CHECKING, Any, Final, Generic

from ._core._bridge import (
    call_for_cleanup,
    call_with_timeout,
    get_bridge,
    run_in,
    worker_threads,
)
from ._core._calls import Call
from ._core._context import new_thread
from ._core._loops import LoopGone, handle_for, loop_running_in_this_thread
from ._core._outcome import Error
from ._core._wakeup import run_on_own_thread
from ._exceptions import BridgeClosed, DeadlockError
from ._typing import T
from ._validate import check_iterable

if TYPE_CHECKING:
    from types import TracebackType
    from typing import Self


logger = logging.getLogger("syncbridge")


class _End(enum.Enum):
    END = "END"


_END: Final = _End.END
_READY: Final = 0
_RUNNING: Final = 1
_FINISHED: Final = 2


def _close_source(iterator: Iterator[Any]) -> None:
    close = getattr(iterator, "close", None)
    if close is not None:
        close()


def _close_quietly_later(iterator: Iterator[Any]) -> None:
    # Called from __del__, which cannot await: close on a short-lived thread of
    # its own, so garbage collection never waits for worker capacity.
    new_thread(
        target=_close_source,
        args=(iterator,),
        name="syncbridge-iterate_in_thread-close",
        daemon=True,
    ).start()


class ThreadIterator(AsyncIterator[T]):
    """An async iterator over a blocking iterator; made by :func:`iterate_in_thread`.

    An :class:`~collections.abc.AsyncIterator` of the source's items. Close it
    with :meth:`aclose` or an ``async with`` block to close the source at a known
    point; dropping it unfinished closes the source too, later, on a thread of its
    own. Iterate it from one task at a time.
    """

    def __init__(self, iterator: Iterator[T]) -> None:
        self._state = _READY
        self._started = False
        self._closed = False
        self._iterator = iterator

    def __aiter__(self) -> Self:
        return self

    def _next_or_end(self) -> T | _End:
        # StopIteration cannot cross a coroutine boundary (it becomes RuntimeError).
        return next(self._iterator, _END)

    async def __anext__(self) -> T:
        if self._closed or self._state == _FINISHED:
            raise StopAsyncIteration
        if self._state == _RUNNING:
            raise RuntimeError(
                "iterate_in_thread(): __anext__() called while another task is "
                "awaiting the previous step; iterate it from one task"
            )
        self._state = _RUNNING
        self._started = True
        bridge = get_bridge()
        try:
            item = await run_in(
                bridge,
                worker_threads(bridge),
                False,
                self._next_or_end,
                (),
                {},
                what=None,
                subject=self._iterator,
            )
        except BaseException:
            self._state = _FINISHED
            await self.aclose()
            raise
        if isinstance(item, _End):
            self._state = _FINISHED
            await self.aclose()
            raise StopAsyncIteration
        self._state = _READY
        return item

    async def aclose(self) -> None:
        """Close the source iterator, if it has ``close()`` and is still open.

        Idempotent. A generator's ``finally`` blocks run, a file is closed.

        Runs on:
            A thread of its own (not a pool worker, so it never waits for
            worker capacity); nothing at all when there is nothing to close (an
            exhausted generator, a list iterator).

        Cancellation:
            Shielded: when it returns, the source's ``finally`` blocks have run,
            even if the awaiting task was cancelled meanwhile.
        """
        if self._closed:
            return
        self._closed = True
        if getattr(self._iterator, "close", None) is None or (
            inspect.isgenerator(self._iterator)
            and inspect.getgeneratorstate(self._iterator) == inspect.GEN_CLOSED
        ):
            return
        await run_on_own_thread(
            "iterate_in_thread-close", _close_source, self._iterator
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __del__(self) -> None:
        if self._started and not self._closed and self._state != _RUNNING:
            self._closed = True
            _close_quietly_later(self._iterator)


def iterate_in_thread(iterable: Iterable[T], /) -> ThreadIterator[T]:
    """Iterate a blocking iterable from async code, each step in a worker thread.

    For a blocking generator, a DB cursor or a file::

        async for row in iterate_in_thread(cursor):
            ...

    ``iter(iterable)`` is called at once (so a non-iterable fails here). When the
    iteration ends (exhausted, failed, cancelled, or closed with ``aclose()`` or
    an ``async with`` block) the source iterator's ``close()`` is called, if it
    has one, on a short-lived thread of its own (never waiting for worker
    capacity), and awaited: a generator's ``finally`` blocks run, a file is
    closed. Breaking out of ``async for`` and dropping the
    iterator closes the source too, on a short-lived thread of its own, without
    waiting. Whatever ``next()`` raises propagates unchanged (the same object),
    after the source was closed.

    Runs on:
        The caller's event loop, which is never blocked; each ``next()`` runs
        in a worker thread of the default bridge's default pool
        (:func:`~syncbridge.get_bridge`), one slot per step, one step at a
        time, and the final ``close()`` on a thread of its own. Successive
        steps may run on different threads, so a source bound to one thread (a
        :mod:`sqlite3` cursor) does not fit. In all of them,
        :func:`~syncbridge.sync_call_async` runs on the caller's loop, except
        when a dropped iterator is closed later: then it runs on the portal.

    Cancellation:
        A generator cannot be closed while it runs, so a cancelled step waits
        for its ``next()`` call to return (:func:`~syncbridge.check_cancelled`
        raises inside it, so a cooperative source can stop early); then the
        source is closed, shielded from the cancellation, and the cancellation
        propagates. A timeout around the loop therefore takes effect only once
        the running ``next()`` returns.

    Args:
        iterable: The blocking iterable.

    Returns:
        An async iterator of the same items, usable with ``async with``.

    Raises:
        TypeError: If *iterable* is not iterable; the message says when it is an
            async iterable (use ``async for`` directly).

    .. versionadded:: 0.1
    """
    check_iterable(iterable, "iterate_in_thread()", is_async=False)
    return ThreadIterator(iter(iterable))


class _Driver(Generic[T]):
    """The loop side of a :class:`SyncIterator`: the async iterator and its loop.

    Loop calls reference this object, never the :class:`SyncIterator`: a call
    finishing on the loop thread must not drop the last reference to the
    iterator there, where its ``__del__`` could not block to close it.
    """

    __slots__ = ("aiterator", "loop", "started")

    def __init__(self, aiterator: AsyncIterator[T]) -> None:
        self.aiterator = aiterator
        self.loop: object | None = None
        self.started = False

    async def step(self) -> T | _End:
        self._check_loop()
        self.started = True
        try:
            return await self.aiterator.__anext__()
        except StopAsyncIteration:
            return _END

    async def aclose(self) -> None:
        self._check_loop()
        aclose = getattr(self.aiterator, "aclose", None)
        if aclose is not None:
            await aclose()

    def _check_loop(self) -> None:
        here = loop_running_in_this_thread()
        if self.loop is None:
            self.loop = here
        elif here is not self.loop:
            raise RuntimeError(
                "sync_iter(): this step would run on a different event loop than the "
                "first one (the iterator moved to another thread?), and an async "
                "generator is bound to its loop; iterate it from one thread"
            )


class SyncIterator(Iterator[T]):
    """A plain iterator over an async iterable; made by :func:`sync_iter`.

    An :class:`~collections.abc.Iterator` of the source's items. Close it with
    :meth:`close` or a ``with`` block to run the async generator's cleanup at a
    known point; dropping it closes it too. Iterate it from one thread.
    """

    def __init__(self, aiterable: AsyncIterable[T]) -> None:
        self._lock = threading.Lock()
        self._state = _READY
        self._closed = False
        self._driver: _Driver[T] | None = None
        self._driver = _Driver(aiter(aiterable))

    def __iter__(self) -> Self:
        return self

    def __next__(self) -> T:
        with self._lock:
            if self._closed or self._state == _FINISHED:
                raise StopIteration
            if self._state == _RUNNING:
                raise ValueError(
                    "sync_iter(): this iterator is already being advanced in another "
                    "thread; iterate it from one thread at a time"
                )
            self._state = _RUNNING
        assert self._driver is not None
        state = _READY
        try:
            driver = self._driver
            item = call_with_timeout(
                get_bridge(),
                None,
                driver.step,
                (),
                {},
                entry="sync_iter",
                subject=driver.aiterator,
            )
            if item is _END:
                state = _FINISHED
                raise StopIteration
            return item
        except DeadlockError:
            raise _deadlock("iterated") from None
        finally:
            self._state = state

    def close(self) -> None:
        """Close the async iterator on its loop (its ``aclose()``); idempotent.

        Runs on:
            The calling thread blocks while ``aclose()`` runs on the loop that
            ran the steps; a never-started or exhausted iterator needs no loop.

        Raises:
            DeadlockError: If called from a thread running an event loop.
            ValueError: If another thread is advancing the iterator right now.
        """
        with self._lock:
            if self._closed:
                return
            if self._state == _RUNNING:
                raise ValueError(
                    "sync_iter(): cannot close this iterator while another thread "
                    "is advancing it"
                )
            self._closed = True
            driver = self._driver
            if driver is None or not driver.started or self._state == _FINISHED:
                return
        try:
            # Cleanup: it runs even in a worker whose awaiter is gone.
            call_for_cleanup(
                get_bridge(), driver.aclose, entry="sync_iter", subject=driver.aiterator
            )
        except DeadlockError:
            raise _deadlock("closed") from None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        driver = self._driver
        if self._closed or driver is None or not driver.started:
            return
        if self._state != _READY:
            return
        if loop_running_in_this_thread() is None and not _collecting.active:
            # The last reference dropped in a plain thread (a `break` out of
            # the for loop): close now, as a generator would be.
            try:
                self.close()
            except (BridgeClosed, DeadlockError):  # the bridge is shutting down
                pass
            return
        # Never block the cyclic garbage collector, which runs finalizers in
        # whatever thread it happens to be in, nor a loop's own thread (#11).
        self._closed = True
        if _collecting.active:
            _collecting.dropped.append(driver)  # closed once the collection ends
        else:
            _close_later(driver)


class _Collecting(threading.local):
    """The collection this thread is running, if any (gc runs it all in one thread)."""

    active: bool = False
    dropped: list[_Driver[Any]]
    """Drivers of iterators it freed, to close when it ends."""

    def __init__(self) -> None:
        self.dropped = []


_collecting = _Collecting()


def _track_collection(phase: str, info: dict[str, int]) -> None:
    if phase == "start":
        _collecting.active = True
        return
    _collecting.active = False
    dropped = _collecting.dropped
    while dropped:
        _close_collected(dropped.pop())


gc.callbacks.append(_track_collection)


def _close_collected(driver: _Driver[Any]) -> None:
    """Close the source of an iterator the cyclic collector freed, unless it did.

    An async generator freed in the same collection was finalized by it: its
    loop's hook (asyncio's, trio's) started its ``aclose()`` already, and a
    second one, racing it, would fail or (without the GIL) throw into it
    while it runs on its loop.
    """
    aiterator = driver.aiterator
    if isinstance(aiterator, AsyncGeneratorType) and gc.is_finalized(aiterator):
        return
    _close_later(driver)


def _close_later(driver: _Driver[Any]) -> None:
    """Start the driver's ``aclose()`` on its loop and return at once."""
    if driver.loop is None:
        return
    handle = handle_for(driver.loop)
    if not handle.is_alive():
        return  # that loop's async-generator hooks finalize it instead
    call: Call[None] = Call(driver.aclose, (), {}, contextvars.Context(), None)
    call.on_done = _log_failed_close
    try:
        handle.submit(call)
    except LoopGone:
        pass


def _log_failed_close(call: Call[None]) -> None:
    outcome, call.outcome = call.outcome, None
    if isinstance(outcome, Error):
        logger.warning(
            "closing a dropped sync_iter() iterator failed",
            exc_info=outcome.error,
            extra={"syncbridge_event": "iterator-close-failed"},
        )


def _deadlock(what: str) -> DeadlockError:
    return DeadlockError(
        f"a sync_iter() iterator was {what} in a thread that is running an event "
        "loop; blocking here would stop that loop forever. Use `async for` over "
        "the async iterable instead."
    )


def sync_iter(aiterable: AsyncIterable[T], /) -> SyncIterator[T]:
    """Iterate an async iterable from sync code, each step on the right event loop.

    For example, to stream an async generator from a sync view::

        for chunk in sync_iter(render_chunks()):
            yield chunk

    Whatever ``__anext__()`` raises propagates unchanged (the same object).
    Advancing or closing it in a thread running an event loop raises
    :class:`~syncbridge.DeadlockError`: use ``async for`` there.

    Runs on:
        The calling thread blocks for each step; ``__anext__()`` runs on the
        loop :func:`~syncbridge.sync_call_async` chooses for the default bridge
        (the same three rules), in a copy of the caller's :mod:`contextvars`
        context. Every step and the closing run on that first loop: iterate from
        one thread.

    Cancellation:
        ``close()``, leaving a ``with`` block, or breaking out of the ``for``
        loop (when that drops the last reference) calls the async generator's
        ``aclose()`` on its loop and waits for it, so its ``finally`` blocks
        have run. An iterator freed by the cyclic garbage collector, or dropped
        in a thread that runs an event loop, starts that ``aclose()`` without
        waiting for it (a finalizer must never block the thread it happens to
        run in); a failure there is logged on the ``syncbridge`` logger. (An
        async generator the collector frees with the iterator is closed by its
        loop, as any async generator it frees: asyncio or trio reports a
        failure there.) A
        ``KeyboardInterrupt`` during a step cancels the step on its loop. There
        is no timeout option: put one inside the async generator.

    Args:
        aiterable: The async iterable (an async generator, say).

    Returns:
        A plain iterator of the same items, usable as a context manager.

    Raises:
        TypeError: If *aiterable* is not async-iterable (checked here, before
            the first step); the message says when it is a plain iterable.

    .. versionadded:: 0.1
    """
    check_iterable(aiterable, "sync_iter()", is_async=True)
    return SyncIterator(aiterable)
