from __future__ import annotations

import contextvars
import threading
from contextlib import (
    AbstractAsyncContextManager,
    AbstractContextManager,
    asynccontextmanager,
    contextmanager,
)
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

import anyio
import pytest

from syncbridge import DeadlockError, get_bridge, run_blocking
from syncbridge._contextmanagers import to_async_cm, to_sync_cm
from syncbridge._core._loops import loop_running_in_this_thread

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

WAIT = 10.0  # seconds; only reached when a test is failing

var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")


@dataclass
class Record:
    enter_thread: threading.Thread | None = None
    exit_thread: threading.Thread | None = None
    seen: list[BaseException | None] = field(default_factory=list)
    enter_task: int | None = None
    exit_task: int | None = None
    loop: object | None = None


def sync_cm(record: Record, suppress: bool = False) -> Iterator[int]:
    record.enter_thread = threading.current_thread()
    token = var.set("inside")
    try:
        yield 42
    except BaseException as exc:
        record.seen.append(exc)
        if not suppress:
            raise
    else:
        record.seen.append(None)
    finally:
        var.reset(token)  # fails unless exit runs in the context enter used
        record.exit_thread = threading.current_thread()


async def async_cm(record: Record, suppress: bool = False) -> AsyncIterator[int]:
    record.enter_task = anyio.get_current_task().id
    record.loop = loop_running_in_this_thread()
    # A cancel scope across the block: legal only if __aexit__ runs in this task.
    with anyio.CancelScope():
        try:
            yield 7
        except BaseException as exc:
            record.seen.append(exc)
            if not suppress:
                raise
        else:
            record.seen.append(None)
    record.exit_task = anyio.get_current_task().id


sync_cm_factory = contextmanager(sync_cm)
async_cm_factory = asynccontextmanager(async_cm)


# Typed as able to suppress (contextlib types their exits `bool | None`, "never
# swallows", so a checker would call the code after a `raise` in the block dead).
def suppressing_sync_cm(record: Record) -> AbstractContextManager[int, bool]:
    return cast("AbstractContextManager[int, bool]", sync_cm_factory(record, True))


def suppressing_async_cm(record: Record) -> AbstractAsyncContextManager[int, bool]:
    cm = async_cm_factory(record, True)
    return cast("AbstractAsyncContextManager[int, bool]", cm)


@pytest.fixture
def one_worker() -> Iterator[None]:
    """Shrink the default bridge's pool to one slot for the test."""
    bridge = get_bridge()
    old = bridge.max_workers
    bridge.max_workers = 1
    try:
        yield
    finally:
        bridge.max_workers = old


# -- to_async_cm ------------------------------------------------------------------


@pytest.mark.anyio
async def test_to_async_cm_enters_and_exits_on_one_thread_off_the_loop() -> None:
    record = Record()
    async with to_async_cm(sync_cm_factory(record)) as value:
        assert value == 42
    assert record.enter_thread is record.exit_thread
    assert record.enter_thread is not threading.current_thread()
    assert record.seen == [None]


@pytest.mark.anyio
async def test_to_async_cm_passes_the_exception_through_unchanged() -> None:
    record = Record()
    error = ValueError("boom")
    with pytest.raises(ValueError, match="boom") as info:
        async with to_async_cm(sync_cm_factory(record)):
            raise error
    assert info.value is error
    assert record.seen == [error]


@pytest.mark.anyio
async def test_to_async_cm_honours_suppression() -> None:
    record = Record()
    async with to_async_cm(suppressing_sync_cm(record)):
        raise ValueError("swallowed")
    assert isinstance(record.seen[0], ValueError)


@pytest.mark.anyio
async def test_to_async_cm_enter_exception_propagates_unchanged() -> None:
    error = KeyError("enter")

    @contextmanager
    def broken(fail: bool = True) -> Iterator[int]:
        if fail:
            raise error
        yield 0

    with pytest.raises(KeyError) as info:
        async with to_async_cm(broken()):
            pass
    assert info.value is error


@pytest.mark.anyio
@pytest.mark.usefixtures("one_worker")
async def test_to_async_cm_exit_never_waits_for_worker_capacity() -> None:
    """The pool's only slot is held until the cm has exited: exit must not need it."""
    record = Record()
    hold, holding = threading.Event(), threading.Event()

    def occupy() -> None:
        holding.set()
        hold.wait(WAIT)

    async with anyio.create_task_group() as tg:
        tg.start_soon(run_blocking, occupy)
        assert await anyio.to_thread.run_sync(holding.wait, WAIT)
        with anyio.fail_after(WAIT / 2):
            async with to_async_cm(sync_cm_factory(record)):
                pass
        assert record.seen == [None]
        hold.set()


@pytest.mark.anyio
async def test_to_async_cm_cancelled_block_reaches_exit() -> None:
    record = Record()
    with anyio.CancelScope() as scope:
        async with to_async_cm(sync_cm_factory(record)):
            scope.cancel()
            await anyio.sleep(0)
    assert scope.cancelled_caught
    assert isinstance(record.seen[0], anyio.get_cancelled_exc_class())
    assert record.enter_thread is record.exit_thread


@pytest.mark.anyio
async def test_to_async_cm_cancelled_enter_waits_for_enter_then_exits() -> None:
    record = Record()
    entering, release = threading.Event(), threading.Event()

    @contextmanager
    def slow_enter() -> Iterator[int]:
        entering.set()
        release.wait(WAIT)
        with contextmanager(sync_cm)(record) as value:
            yield value

    async with anyio.create_task_group() as tg:

        async def use() -> None:
            async with to_async_cm(slow_enter()):
                raise AssertionError("the block must not run")

        tg.start_soon(use)
        assert await anyio.to_thread.run_sync(entering.wait, WAIT)
        tg.cancel_scope.cancel()
        release.set()
    assert len(record.seen) == 1  # entered, then exited with the cancellation
    assert isinstance(record.seen[0], anyio.get_cancelled_exc_class())


@pytest.mark.anyio
async def test_to_async_cm_is_single_use() -> None:
    cm = to_async_cm(sync_cm_factory(Record()))
    async with cm:
        pass
    with pytest.raises(RuntimeError, match="call to_async_cm"):
        async with cm:
            pass


# -- to_sync_cm -------------------------------------------------------------------


def test_to_sync_cm_enters_and_exits_in_one_task() -> None:
    record = Record()
    with to_sync_cm(async_cm_factory(record)) as value:
        assert value == 7
    assert record.enter_task is not None
    assert record.enter_task == record.exit_task
    assert record.seen == [None]


def test_to_sync_cm_keeps_a_task_group_open_across_the_block() -> None:
    started = threading.Event()

    @asynccontextmanager
    async def with_background_task() -> AsyncIterator[None]:
        async with anyio.create_task_group() as tg:

            async def background() -> None:
                started.set()
                await anyio.sleep_forever()

            tg.start_soon(background)
            yield
            tg.cancel_scope.cancel()

    with to_sync_cm(with_background_task()):
        assert started.wait(WAIT)


def test_to_sync_cm_passes_the_exception_through_unchanged() -> None:
    record = Record()
    error = ValueError("boom")
    with (
        pytest.raises(ValueError, match="boom") as info,
        to_sync_cm(async_cm_factory(record)),
    ):
        raise error
    assert info.value is error
    assert record.seen == [error]


def test_to_sync_cm_honours_suppression() -> None:
    record = Record()
    with to_sync_cm(suppressing_async_cm(record)):
        raise ValueError("swallowed")
    assert isinstance(record.seen[0], ValueError)


def test_to_sync_cm_enter_exception_propagates_unchanged() -> None:
    error = KeyError("enter")

    @asynccontextmanager
    async def broken(fail: bool = True) -> AsyncIterator[int]:
        if fail:
            raise error
        yield 0

    with pytest.raises(KeyError) as info, to_sync_cm(broken()):
        pass
    assert info.value is error


@pytest.mark.anyio
@pytest.mark.usefixtures("one_worker")
async def test_to_sync_cm_from_a_worker_runs_on_its_loop_without_more_slots() -> None:
    """From the pool's only worker: enter and exit need no slot; they use its loop."""
    record = Record()
    here = loop_running_in_this_thread()

    def in_worker() -> int:
        with to_sync_cm(async_cm_factory(record)) as value:
            pass
        return value

    with anyio.fail_after(WAIT):
        assert await run_blocking(in_worker) == 7
    assert record.loop is here
    assert record.enter_task == record.exit_task


@pytest.mark.anyio
async def test_to_sync_cm_in_a_loop_thread_raises_deadlock_error() -> None:
    with (
        pytest.raises(DeadlockError, match="async with"),
        to_sync_cm(async_cm_factory(Record())),
    ):
        pass


def test_to_sync_cm_is_single_use() -> None:
    cm = to_sync_cm(async_cm_factory(Record()))
    with cm:
        pass
    with pytest.raises(RuntimeError, match="call to_sync_cm"), cm:
        pass


@pytest.mark.anyio
async def test_to_async_cm_enter_and_exit_call_async_code_on_the_callers_loop() -> None:
    seen: list[object] = []

    async def current_loop() -> object:
        return loop_running_in_this_thread()

    @contextmanager
    def resource() -> Iterator[None]:
        seen.append(get_bridge().sync_call_async(current_loop))
        try:
            yield
        finally:
            seen.append(get_bridge().sync_call_async(current_loop))

    mine = loop_running_in_this_thread()
    async with to_async_cm(resource()):
        pass
    assert seen == [mine, mine]
