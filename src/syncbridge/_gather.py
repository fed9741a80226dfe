"""Await many awaitables under one deadline: gather_with_timeout and its sync twin."""

from __future__ import annotations

__all__ = (
    "PENDING",
    "GatherTimeout",
    "PendingType",
    "gather_with_timeout",
    "sync_gather_with_timeout",
)

import asyncio
import enum
import inspect
import logging
import traceback
from typing import TYPE_CHECKING, Any, Final, Literal, TypeVar, overload

import anyio
import anyio.abc

from ._core._bridge import call_with_timeout, get_bridge
from ._core._loops import loop_running_in_this_thread
from ._core._shield import wait_through_cancellation
from ._exceptions import DeadlockError, SyncBridgeTimeout, callable_name
from ._validate import check_bool, check_capacity, check_timeout, is_async_callable

if TYPE_CHECKING:
    from collections.abc import Awaitable, Sequence

    from ._typing import T

T1 = TypeVar("T1")
T2 = TypeVar("T2")
T3 = TypeVar("T3")
T4 = TypeVar("T4")
T5 = TypeVar("T5")
T6 = TypeVar("T6")

logger = logging.getLogger("syncbridge")


class PendingType(enum.Enum):
    """The type of :data:`PENDING` (an enum, so ``x is PENDING`` narrows types)."""

    PENDING = "PENDING"

    def __repr__(self) -> str:
        return "syncbridge.PENDING"


PENDING: Final = PendingType.PENDING
"""Fills the slots of :attr:`GatherTimeout.results` whose awaitable did not finish."""

_NO_VALUE: Final = object()
"""A child's result before it has one."""


class GatherTimeout(SyncBridgeTimeout):
    """:func:`gather_with_timeout` reached its deadline before every awaitable finished.

    By the time it is raised, every unfinished awaitable has been cancelled and has
    really finished. Catch it to use the partial results.

    Attributes:
        results: One slot per awaitable, in input order: what it returned (or, with
            ``return_exceptions=True``, raised), or :data:`PENDING` if it did not
            finish.
        done: Input indices of the awaitables that finished, ascending.
        pending: Input indices of the awaitables that were cancelled, ascending.
    """

    def __init__(
        self,
        message: str,
        results: list[object],
        done: Sequence[int],
        pending: Sequence[int],
    ) -> None:
        super().__init__(message)
        self.results: list[object] = results
        self.done: list[int] = list(done)
        self.pending: list[int] = list(pending)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.results, self.done, self.pending))


def gather_timeout_message(timeout: float, done: int, total: int) -> str:
    """Build the message of the :class:`GatherTimeout` raised after *timeout* s."""
    left = total - done
    cancelled = "the other one was" if left == 1 else f"the other {left} were"
    return (
        f"gather_with_timeout() reached its {timeout:g} s timeout with {done} of "
        f"{total} awaitables finished; {cancelled} cancelled. Catch "
        "GatherTimeout and read exc.results (unfinished slots hold syncbridge.PENDING)"
        " to use the partial results, or pass a larger timeout=."
    )


def _close_unstarted(aws: Sequence[object]) -> None:
    for aw in aws:
        if (
            inspect.iscoroutine(aw)
            and inspect.getcoroutinestate(aw) == inspect.CORO_CREATED
        ):
            aw.close()


def _check_options(
    where: str,
    aws: Sequence[object],
    timeout: float | None,
    limit: int | None,
    return_exceptions: bool,
) -> tuple[float | None, int | None]:
    """Check the options and the awaitables; on a refusal, close the coroutines."""
    try:
        timeout = check_timeout(timeout, f"{where}(timeout=...)")
        if limit is not None:
            limit = check_capacity(
                limit, f"{where}(limit=...)", unit="awaitables at once", none="no limit"
            )
        check_bool(return_exceptions, f"{where}(return_exceptions=...)")
        for i, aw in enumerate(aws):
            if not inspect.isawaitable(aw):
                raise TypeError(_not_awaitable(where, i, aw))
    except BaseException:
        _close_unstarted(aws)
        for aw in aws:
            if isinstance(aw, (list, tuple, set)):
                _close_unstarted(list(aw))  # pyright: ignore[reportUnknownArgumentType]
        raise
    return timeout, limit


def _not_awaitable(where: str, i: int, aw: object) -> str:
    kind = type(aw).__name__
    if isinstance(aw, (list, tuple, set)):
        return (
            f"{where}() takes the awaitables as separate arguments, got a "
            f"{kind} as argument #{i}: unpack it, "
            f"{where}(*aws, timeout=...)"
        )
    if is_async_callable(aw):
        name = callable_name(aw)
        return (
            f"{where}() takes awaitables, got the coroutine function {name} as "
            f"argument #{i}: call it, {where}({name}(...), timeout=...)"
        )
    return f"{where}() takes awaitables, got {aw!r} as argument #{i}, which cannot be awaited"


class _Failed:
    """An input future that was cancelled by someone else: an outcome, not our cancel."""

    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


async def _await_future(fut: asyncio.Future[Any]) -> Any:
    # asyncio.wait() (not `await fut`) so that anyio's repeated cancellation
    # delivery cancels our wait only; the input task is cancelled exactly once
    # and then waited for, so its own cleanup is not interrupted.
    try:
        await asyncio.wait((fut,))
    except BaseException:
        fut.cancel()
        await wait_through_cancellation(lambda: asyncio.wait((fut,)))
        raise
    if fut.cancelled():
        return _Failed(asyncio.CancelledError(f"the input {fut!r} was cancelled"))
    return fut.result()


def _raised_by_the_child(exc: BaseException) -> bool:
    """Whether a caught cancellation is the child's own outcome, not our cancel.

    trio's ``Cancelled`` only ever comes from a cancel scope. On asyncio, ours
    (the deadline, a first failure, the caller's cancellation) always goes
    through a cancelled anyio scope around the child; a ``CancelledError`` with
    none in effect was raised by the child, or by someone who cancelled its
    task directly, and is its outcome, as in ``asyncio.gather`` (#11).
    """
    if not isinstance(exc, asyncio.CancelledError):
        return False
    return anyio.current_effective_deadline() > anyio.current_time()


class _Gather:
    """The shared state of one gather_with_timeout() call."""

    def __init__(self, aws: Sequence[Awaitable[Any]], return_exceptions: bool) -> None:
        self.aws = aws
        self.return_exceptions = return_exceptions
        self.results: list[object] = [PENDING] * len(aws)
        self.done = [False] * len(aws)
        self.started = [False] * len(aws)
        self.first: BaseException | None = None
        self.first_index = -1
        self.others: list[tuple[int, BaseException]] = []
        self.scope = anyio.CancelScope()
        self.cancelled_exc = anyio.get_cancelled_exc_class()
        # asyncio only: the tasks running children now, each cancelled once (by
        # cancel_children) instead of at every await by the anyio scope, so a
        # child's cleanup may await (#24). trio code expects trio's own rules.
        self.once: dict[int, asyncio.Task[Any]] | None = (
            {} if asyncio._get_running_loop() is not None else None
        )
        self.cancelling = False  # cancel_children ran: start no more children
        self.running = 0  # children started and not yet ended
        self.all_started = False
        self.idle = anyio.Event()  # set once all started and none running

    def start(
        self, tg: anyio.abc.TaskGroup, i: int, limiter: anyio.Semaphore | None
    ) -> None:
        """Start awaitable *i* in *tg*; counted as running from now."""
        self.running += 1
        tg.start_soon(self.run, i, limiter)

    async def run(self, i: int, limiter: anyio.Semaphore | None) -> None:
        aw = self.aws[i]
        once = self.once
        try:
            if self.cancelling:
                return  # never started: close_unstarted() closes it
            self.started[i] = True
            if asyncio.isfuture(aw):
                value = await _await_future(aw)
            elif once is None:
                value = await aw
            else:
                value = _NO_VALUE
                with anyio.CancelScope(shield=True):  # cancel_children's to cancel
                    once[i] = asyncio.current_task()  # type: ignore[assignment]
                    try:
                        value = await aw
                    finally:
                        del once[i]
                # Nothing cancels this scope itself, so it never swallows an error.
                assert value is not _NO_VALUE
        except self.cancelled_exc as exc:
            if self.cancelling or not _raised_by_the_child(exc):
                raise
            # The child's own CancelledError is its outcome, like any other (#11).
            self._failed(i, exc, outcome=True)
        except BaseException as exc:
            self._failed(i, exc)
        else:
            if isinstance(value, _Failed):
                self._failed(i, value.exc, outcome=True)
            else:
                self.results[i] = value
                self.done[i] = True
        finally:
            if limiter is not None:
                limiter.release()
            self.running -= 1
            if self.all_started and not self.running:
                self.idle.set()

    async def wait_children(self) -> None:
        """Wait until every child started has ended (all are started by now)."""
        self.all_started = True
        if self.running:
            await self.idle.wait()

    def cancel_children(self) -> None:
        """Cancel each running child once (asyncio); start no new one."""
        self.cancelling = True
        if self.once is not None:
            for task in self.once.values():
                task.cancel()

    def _failed(self, i: int, exc: BaseException, outcome: bool = False) -> None:
        # A child never raises into the task group: the user's exception object
        # must propagate itself, not wrapped in an ExceptionGroup.
        if self.return_exceptions and (outcome or isinstance(exc, Exception)):
            self.results[i] = exc
            self.done[i] = True
        elif self.first is None and (
            not self.scope.cancel_called or not isinstance(exc, Exception)
        ):
            self.first = exc
            self.first_index = i
            self.scope.cancel()
        else:
            self.others.append((i, exc))

    async def close_unstarted(self) -> None:
        """Close coroutines never started; cancel and await futures never awaited."""
        futures: list[asyncio.Future[Any]] = []
        for i, aw in enumerate(self.aws):
            if self.started[i]:
                continue
            if asyncio.isfuture(aw):
                if not aw.done():
                    aw.cancel()
                futures.append(aw)
            elif inspect.iscoroutine(aw):
                aw.close()
        if futures:
            await wait_through_cancellation(lambda: asyncio.wait(futures))

    def take_urgent(self) -> BaseException | None:
        """Remove and return the first non-:class:`Exception` failure, if any.

        A ``KeyboardInterrupt`` or ``SystemExit`` from a child must stop the
        program even while the gather is being cancelled from outside.
        """
        for i, exc in self._failures():
            if not isinstance(exc, Exception):
                if exc is self.first:
                    self.first = None
                else:
                    self.others.remove((i, exc))
                return exc
        return None

    def _failures(self) -> list[tuple[int, BaseException]]:
        """Every recorded failure as (index, exception), the first one first."""
        failures = list(self.others)
        if self.first is not None:
            failures.insert(0, (self.first_index, self.first))
        return failures

    def log_failures(self) -> None:
        """Log every recorded failure (on the ``syncbridge`` logger) and forget it."""
        failures = self._failures()
        self.first = None
        self.others.clear()
        for i, exc in failures:
            logger.error(
                "gather_with_timeout(): awaitable #%d failed while the gather was "
                "being cancelled from outside; the cancellation propagates instead",
                i,
                exc_info=exc,
                extra={
                    "syncbridge_event": "gather-failure-lost",
                    "syncbridge_awaitable": i,
                },
            )

    def note_others(self, exc: BaseException, why: str) -> None:
        for i, other in self.others:
            if other is not exc:
                text = "".join(traceback.format_exception(other)).rstrip()
                exc.add_note(f"awaitable #{i} also failed, {why}:\n{text}")
        self.others.clear()


@overload
async def gather_with_timeout(
    aw1: Awaitable[T1],
    /,
    *,
    timeout: float | None,  # noqa: ASYNC109
    limit: int | None = None,
    return_exceptions: Literal[False] = False,
) -> tuple[T1,]: ...


@overload
async def gather_with_timeout(
    aw1: Awaitable[T1],
    /,
    *,
    timeout: float | None,  # noqa: ASYNC109
    limit: int | None = None,
    return_exceptions: bool,
) -> tuple[T1 | BaseException,]: ...


@overload
async def gather_with_timeout(
    aw1: Awaitable[T1],
    aw2: Awaitable[T2],
    /,
    *,
    timeout: float | None,  # noqa: ASYNC109
    limit: int | None = None,
    return_exceptions: Literal[False] = False,
) -> tuple[T1, T2]: ...


@overload
async def gather_with_timeout(
    aw1: Awaitable[T1],
    aw2: Awaitable[T2],
    /,
    *,
    timeout: float | None,  # noqa: ASYNC109
    limit: int | None = None,
    return_exceptions: bool,
) -> tuple[T1 | BaseException, T2 | BaseException]: ...


@overload
async def gather_with_timeout(
    aw1: Awaitable[T1],
    aw2: Awaitable[T2],
    aw3: Awaitable[T3],
    /,
    *,
    timeout: float | None,  # noqa: ASYNC109
    limit: int | None = None,
    return_exceptions: Literal[False] = False,
) -> tuple[T1, T2, T3]: ...


@overload
async def gather_with_timeout(
    aw1: Awaitable[T1],
    aw2: Awaitable[T2],
    aw3: Awaitable[T3],
    /,
    *,
    timeout: float | None,  # noqa: ASYNC109
    limit: int | None = None,
    return_exceptions: bool,
) -> tuple[T1 | BaseException, T2 | BaseException, T3 | BaseException]: ...


@overload
async def gather_with_timeout(
    aw1: Awaitable[T1],
    aw2: Awaitable[T2],
    aw3: Awaitable[T3],
    aw4: Awaitable[T4],
    /,
    *,
    timeout: float | None,  # noqa: ASYNC109
    limit: int | None = None,
    return_exceptions: Literal[False] = False,
) -> tuple[T1, T2, T3, T4]: ...


@overload
async def gather_with_timeout(
    aw1: Awaitable[T1],
    aw2: Awaitable[T2],
    aw3: Awaitable[T3],
    aw4: Awaitable[T4],
    /,
    *,
    timeout: float | None,  # noqa: ASYNC109
    limit: int | None = None,
    return_exceptions: bool,
) -> tuple[
    T1 | BaseException, T2 | BaseException, T3 | BaseException, T4 | BaseException
]: ...


@overload
async def gather_with_timeout(
    aw1: Awaitable[T1],
    aw2: Awaitable[T2],
    aw3: Awaitable[T3],
    aw4: Awaitable[T4],
    aw5: Awaitable[T5],
    /,
    *,
    timeout: float | None,  # noqa: ASYNC109
    limit: int | None = None,
    return_exceptions: Literal[False] = False,
) -> tuple[T1, T2, T3, T4, T5]: ...


@overload
async def gather_with_timeout(
    aw1: Awaitable[T1],
    aw2: Awaitable[T2],
    aw3: Awaitable[T3],
    aw4: Awaitable[T4],
    aw5: Awaitable[T5],
    /,
    *,
    timeout: float | None,  # noqa: ASYNC109
    limit: int | None = None,
    return_exceptions: bool,
) -> tuple[
    T1 | BaseException,
    T2 | BaseException,
    T3 | BaseException,
    T4 | BaseException,
    T5 | BaseException,
]: ...


@overload
async def gather_with_timeout(
    aw1: Awaitable[T1],
    aw2: Awaitable[T2],
    aw3: Awaitable[T3],
    aw4: Awaitable[T4],
    aw5: Awaitable[T5],
    aw6: Awaitable[T6],
    /,
    *,
    timeout: float | None,  # noqa: ASYNC109
    limit: int | None = None,
    return_exceptions: Literal[False] = False,
) -> tuple[T1, T2, T3, T4, T5, T6]: ...


@overload
async def gather_with_timeout(
    aw1: Awaitable[T1],
    aw2: Awaitable[T2],
    aw3: Awaitable[T3],
    aw4: Awaitable[T4],
    aw5: Awaitable[T5],
    aw6: Awaitable[T6],
    /,
    *,
    timeout: float | None,  # noqa: ASYNC109
    limit: int | None = None,
    return_exceptions: bool,
) -> tuple[
    T1 | BaseException,
    T2 | BaseException,
    T3 | BaseException,
    T4 | BaseException,
    T5 | BaseException,
    T6 | BaseException,
]: ...


@overload
async def gather_with_timeout(
    *aws: Awaitable[T],
    timeout: float | None,  # noqa: ASYNC109
    limit: int | None = None,
    return_exceptions: Literal[False] = False,
) -> tuple[T, ...]: ...


@overload
async def gather_with_timeout(
    *aws: Awaitable[T],
    timeout: float | None,  # noqa: ASYNC109
    limit: int | None = None,
    return_exceptions: bool,
) -> tuple[T | BaseException, ...]: ...


async def gather_with_timeout(
    *aws: Awaitable[Any],
    timeout: float | None,  # noqa: ASYNC109 - one deadline over many awaits
    limit: int | None = None,
    return_exceptions: bool = False,
) -> tuple[Any, ...]:
    """Await *aws* concurrently under one deadline; return their results in order.

    Each awaitable may be a coroutine or, under asyncio, a task or future. With
    no awaitables it returns ``()`` at once.

    If an awaitable raises and *return_exceptions* is false, the others are
    cancelled and awaited, and that first exception propagates: the same object.
    Exceptions other awaitables raise meanwhile (say, while being cancelled) are
    not lost: each is attached to the propagating exception as a note (one entry
    of its ``__notes__`` holding that exception's formatted traceback), so they
    print with its traceback. Exceptions raised by awaitables being cancelled
    after the deadline are attached to the :class:`GatherTimeout` the same way;
    when the caller is cancelled, they are logged on the ``syncbridge`` logger,
    except a ``KeyboardInterrupt`` or ``SystemExit``, which propagates instead of
    the cancellation.

    Runs on:
        The caller's event loop (asyncio or trio), each coroutine in a task of
        its own; nothing runs in a worker thread unless an awaitable does so
        itself. With *limit*, at most *limit* coroutines run at once: the others
        are started in input order as slots free, and ones never started are
        closed (no "never awaited" warning). Tasks and futures are already
        running when passed in, so they take no slot.

    Cancellation:
        When the deadline passes, every unfinished awaitable is cancelled and
        awaited until it has really finished, then :class:`GatherTimeout` is
        raised; no task outlives the call. The deadline also covers the time a
        coroutine waits for a *limit* slot. Cancelling the caller does the same,
        then re-raises the cancellation. On asyncio each coroutine and input
        task is cancelled once (its cleanup may await) and then waited for; on
        trio the coroutines are in a cancel scope (cleanup that awaits is
        shielded, as trio code expects). A thread cannot be stopped: an awaitable waiting on
        :func:`~syncbridge.run_blocking` stops waiting when cancelled, while its
        thread runs on.

    Args:
        *aws: The awaitables.
        timeout: One overall deadline in seconds (a number >= 0; ``math.inf``
            or ``None`` waits forever).
        limit: How many coroutines may run at once (an ``int`` >= 1); ``None``
            for no limit.
        return_exceptions: Put exceptions (:class:`Exception` subclasses, and the
            :class:`asyncio.CancelledError` of an input task cancelled by someone
            else) in their slots of the result list instead of raising, and
            cancel nothing. Other :class:`BaseException` s always propagate.

    Returns:
        A tuple of one result per awaitable, in input order. Type checkers see
        each position's own type for up to six awaitables (``a, b = await
        gather_with_timeout(fetch_user(), fetch_orders(), timeout=2)``), and
        ``tuple[T, ...]`` for more, or for ``*aws`` of one type.

    Raises:
        GatherTimeout: If the deadline passed first; it holds the partial results.
        TypeError: If *timeout* or *limit* has the wrong type (``"1"``,
            ``1.5``), or a task or future is passed outside asyncio; the
            coroutines passed are closed first.
        ValueError: If *timeout* is negative or NaN, or *limit* is below 1.

    .. versionadded:: 0.1
    """
    timeout, limit = _check_options(
        "gather_with_timeout", aws, timeout, limit, return_exceptions
    )
    if not aws:
        return ()
    on_asyncio = isinstance(loop_running_in_this_thread(), asyncio.AbstractEventLoop)
    if not on_asyncio and any(asyncio.isfuture(aw) for aw in aws):
        _close_unstarted(aws)
        raise TypeError(
            "gather_with_timeout() got an asyncio task or future outside asyncio; "
            "pass coroutines (await-able on any backend) instead"
        )
    state = _Gather(aws, return_exceptions)
    limiter = anyio.Semaphore(limit) if limit is not None else None
    if timeout is not None:
        state.scope.deadline = anyio.current_time() + timeout
    try:
        with state.scope:
            async with anyio.create_task_group() as tg:
                try:
                    for i, aw in enumerate(aws):
                        if asyncio.isfuture(aw):
                            state.start(tg, i, None)
                    for i, aw in enumerate(aws):
                        if not asyncio.isfuture(aw):
                            if limiter is not None:
                                await limiter.acquire()
                            state.start(tg, i, limiter)
                    # Waited for here, not in the group's exit, so that the
                    # deadline, a first failure or the caller's cancellation
                    # reaches this handler.
                    await state.wait_children()
                except BaseException:
                    state.cancel_children()
                    raise
    except BaseException:
        # The caller is being cancelled (or interrupted): its exception wins
        # over the children's errors, which would vanish with it, so log them;
        # but a child's KeyboardInterrupt or SystemExit wins over it.
        urgent = state.take_urgent()
        state.log_failures()
        if urgent is not None:
            raise urgent  # noqa: B904 - chained to the cancellation it replaces
        raise
    finally:
        await state.close_unstarted()
    first = state.first
    if first is not None:
        state.note_others(first, "while the others were being cancelled")
        try:
            raise first
        finally:
            del first, state
    if all(state.done):
        return tuple(state.results)
    assert timeout is not None
    done = [i for i, d in enumerate(state.done) if d]
    pending = [i for i, d in enumerate(state.done) if not d]
    exc = GatherTimeout(
        gather_timeout_message(timeout, len(done), len(aws)),
        state.results,
        done,
        pending,
    )
    state.note_others(exc, "while being cancelled at the deadline")
    raise exc


@overload
def sync_gather_with_timeout(
    aw1: Awaitable[T1],
    /,
    *,
    timeout: float | None,
    limit: int | None = None,
    return_exceptions: Literal[False] = False,
) -> tuple[T1,]: ...


@overload
def sync_gather_with_timeout(
    aw1: Awaitable[T1],
    /,
    *,
    timeout: float | None,
    limit: int | None = None,
    return_exceptions: bool,
) -> tuple[T1 | BaseException,]: ...


@overload
def sync_gather_with_timeout(
    aw1: Awaitable[T1],
    aw2: Awaitable[T2],
    /,
    *,
    timeout: float | None,
    limit: int | None = None,
    return_exceptions: Literal[False] = False,
) -> tuple[T1, T2]: ...


@overload
def sync_gather_with_timeout(
    aw1: Awaitable[T1],
    aw2: Awaitable[T2],
    /,
    *,
    timeout: float | None,
    limit: int | None = None,
    return_exceptions: bool,
) -> tuple[T1 | BaseException, T2 | BaseException]: ...


@overload
def sync_gather_with_timeout(
    aw1: Awaitable[T1],
    aw2: Awaitable[T2],
    aw3: Awaitable[T3],
    /,
    *,
    timeout: float | None,
    limit: int | None = None,
    return_exceptions: Literal[False] = False,
) -> tuple[T1, T2, T3]: ...


@overload
def sync_gather_with_timeout(
    aw1: Awaitable[T1],
    aw2: Awaitable[T2],
    aw3: Awaitable[T3],
    /,
    *,
    timeout: float | None,
    limit: int | None = None,
    return_exceptions: bool,
) -> tuple[T1 | BaseException, T2 | BaseException, T3 | BaseException]: ...


@overload
def sync_gather_with_timeout(
    aw1: Awaitable[T1],
    aw2: Awaitable[T2],
    aw3: Awaitable[T3],
    aw4: Awaitable[T4],
    /,
    *,
    timeout: float | None,
    limit: int | None = None,
    return_exceptions: Literal[False] = False,
) -> tuple[T1, T2, T3, T4]: ...


@overload
def sync_gather_with_timeout(
    aw1: Awaitable[T1],
    aw2: Awaitable[T2],
    aw3: Awaitable[T3],
    aw4: Awaitable[T4],
    /,
    *,
    timeout: float | None,
    limit: int | None = None,
    return_exceptions: bool,
) -> tuple[
    T1 | BaseException, T2 | BaseException, T3 | BaseException, T4 | BaseException
]: ...


@overload
def sync_gather_with_timeout(
    aw1: Awaitable[T1],
    aw2: Awaitable[T2],
    aw3: Awaitable[T3],
    aw4: Awaitable[T4],
    aw5: Awaitable[T5],
    /,
    *,
    timeout: float | None,
    limit: int | None = None,
    return_exceptions: Literal[False] = False,
) -> tuple[T1, T2, T3, T4, T5]: ...


@overload
def sync_gather_with_timeout(
    aw1: Awaitable[T1],
    aw2: Awaitable[T2],
    aw3: Awaitable[T3],
    aw4: Awaitable[T4],
    aw5: Awaitable[T5],
    /,
    *,
    timeout: float | None,
    limit: int | None = None,
    return_exceptions: bool,
) -> tuple[
    T1 | BaseException,
    T2 | BaseException,
    T3 | BaseException,
    T4 | BaseException,
    T5 | BaseException,
]: ...


@overload
def sync_gather_with_timeout(
    aw1: Awaitable[T1],
    aw2: Awaitable[T2],
    aw3: Awaitable[T3],
    aw4: Awaitable[T4],
    aw5: Awaitable[T5],
    aw6: Awaitable[T6],
    /,
    *,
    timeout: float | None,
    limit: int | None = None,
    return_exceptions: Literal[False] = False,
) -> tuple[T1, T2, T3, T4, T5, T6]: ...


@overload
def sync_gather_with_timeout(
    aw1: Awaitable[T1],
    aw2: Awaitable[T2],
    aw3: Awaitable[T3],
    aw4: Awaitable[T4],
    aw5: Awaitable[T5],
    aw6: Awaitable[T6],
    /,
    *,
    timeout: float | None,
    limit: int | None = None,
    return_exceptions: bool,
) -> tuple[
    T1 | BaseException,
    T2 | BaseException,
    T3 | BaseException,
    T4 | BaseException,
    T5 | BaseException,
    T6 | BaseException,
]: ...


@overload
def sync_gather_with_timeout(
    *aws: Awaitable[T],
    timeout: float | None,
    limit: int | None = None,
    return_exceptions: Literal[False] = False,
) -> tuple[T, ...]: ...


@overload
def sync_gather_with_timeout(
    *aws: Awaitable[T],
    timeout: float | None,
    limit: int | None = None,
    return_exceptions: bool,
) -> tuple[T | BaseException, ...]: ...


def sync_gather_with_timeout(
    *aws: Awaitable[Any],
    timeout: float | None,
    limit: int | None = None,
    return_exceptions: bool = False,
) -> tuple[Any, ...]:
    """Run :func:`gather_with_timeout` from sync code; block until it finishes.

    The sync twin, named like :func:`~syncbridge.sync_call_async` (``sync_`` =
    called from sync code), for a Flask view or a script::

        pages = sync_gather_with_timeout(*(fetch(u) for u in urls), timeout=5.0)

    Coroutine objects made in this thread are awaited on the chosen loop; tasks and
    futures must belong to that loop.

    Runs on:
        The calling thread blocks; the gather runs on the loop that
        :func:`~syncbridge.sync_call_async` would choose for the default bridge
        (the same three rules): the loop a worker thread serves, else the
        portal loop.

    Cancellation:
        As in :func:`gather_with_timeout`: at the deadline every unfinished
        awaitable is cancelled and awaited on its loop before
        :class:`GatherTimeout` is raised in the calling thread. A
        ``KeyboardInterrupt`` in the waiting thread cancels the gather (and so
        every awaitable) on its loop.

    Args:
        *aws: The awaitables.
        timeout: One overall deadline in seconds (a number >= 0; ``math.inf``
            or ``None`` waits forever).
        limit: How many coroutines may run at once (an ``int`` >= 1); ``None``
            for no limit.
        return_exceptions: As in :func:`gather_with_timeout`.

    Returns:
        A tuple of one result per awaitable, in input order. Type checkers see
        each position's own type for up to six awaitables (``a, b = await
        gather_with_timeout(fetch_user(), fetch_orders(), timeout=2)``), and
        ``tuple[T, ...]`` for more, or for ``*aws`` of one type.

    Raises:
        GatherTimeout: If the deadline passed first; it holds the partial results.
        DeadlockError: If called from a thread running an event loop (the
            coroutines are closed first); ``await gather_with_timeout(...)``
            there instead.
        TypeError: If *timeout* or *limit* has the wrong type (``"1"``,
            ``1.5``); the awaitables passed are closed first.
        ValueError: If *timeout* is negative or NaN, or *limit* is below 1.

    .. versionadded:: 0.1
    """
    timeout, limit = _check_options(
        "sync_gather_with_timeout", aws, timeout, limit, return_exceptions
    )

    async def gather() -> tuple[Any, ...]:
        return await gather_with_timeout(
            *aws, timeout=timeout, limit=limit, return_exceptions=return_exceptions
        )

    try:
        return call_with_timeout(
            get_bridge(),
            None,
            gather,
            (),
            {},
            entry="sync_gather_with_timeout",
            subject=aws,
        )
    except DeadlockError:
        _close_unstarted(aws)
        raise DeadlockError(
            "sync_gather_with_timeout() was called from a thread that is running an "
            "event loop; blocking here would stop that loop forever. Use "
            "`await gather_with_timeout(...)` instead."
        ) from None
    except BaseException:
        # Whatever stopped it (a closed bridge, Ctrl-C before the gather
        # started on its loop): no coroutine is left "never awaited".
        _close_unstarted(aws)
        raise
