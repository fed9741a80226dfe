from __future__ import annotations

import gc
import threading
from typing import TYPE_CHECKING

import anyio
import pytest

from syncbridge import (
    DeadlockError,
    WorkerCancelled,
    check_cancelled,
    get_bridge,
    run_blocking,
)
from syncbridge._core._loops import loop_running_in_this_thread
from syncbridge._iterators import iterate_in_thread, sync_iter

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

WAIT = 10.0  # seconds; only reached when a test is failing


class Source:
    """A blocking generator that records where and whether it ran and closed."""

    def __init__(self, n: int = 3) -> None:
        self.n = n
        self.threads: list[threading.Thread] = []
        self.closed = threading.Event()
        self.close_thread: threading.Thread | None = None

    def __iter__(self) -> Iterator[int]:
        try:
            for i in range(self.n):
                self.threads.append(threading.current_thread())
                yield i
        finally:
            self.close_thread = threading.current_thread()
            self.closed.set()


# -- iterate_in_thread ------------------------------------------------------------


@pytest.mark.anyio
async def test_iterate_in_thread_yields_items_off_the_loop_thread() -> None:
    source = Source()
    items = [item async for item in iterate_in_thread(iter(source))]
    assert items == [0, 1, 2]
    me = threading.current_thread()
    assert source.threads
    assert all(t is not me for t in source.threads)


@pytest.mark.anyio
async def test_iterate_in_thread_aclose_runs_the_source_finally() -> None:
    source = Source()
    it = iterate_in_thread(iter(source))
    assert await it.__anext__() == 0
    await it.aclose()
    assert source.closed.is_set()
    assert source.close_thread is not threading.current_thread()  # a worker


@pytest.mark.anyio
async def test_iterate_in_thread_async_with_block_closes_the_source() -> None:
    source = Source()
    async with iterate_in_thread(iter(source)) as it:
        async for item in it:
            assert item == 0
            break
    assert source.closed.is_set()


@pytest.mark.anyio
async def test_iterate_in_thread_break_and_drop_closes_the_source() -> None:
    source = Source()
    gen = iter(source)  # held here, so only the dropped ThreadIterator can close it
    async for item in iterate_in_thread(gen):
        assert item == 0
        break
    gc.collect()  # the iterator is garbage now (refcounting already dropped it)
    assert await run_blocking(source.closed.wait, WAIT)
    del gen


@pytest.mark.anyio
async def test_iterate_in_thread_propagates_the_source_exception_unchanged() -> None:
    error = ValueError("boom")

    def failing() -> Iterator[int]:
        yield 1
        raise error

    with pytest.raises(ValueError, match="boom") as info:
        async for _ in iterate_in_thread(failing()):
            pass
    assert info.value is error


@pytest.mark.anyio
async def test_iterate_in_thread_cancelled_step_waits_then_closes_the_source() -> None:
    """A generator can't be closed while it runs: cancel waits for next(), then closes."""
    entered = threading.Event()
    saw_cancel = threading.Event()
    source_closed = threading.Event()

    def slow() -> Iterator[int]:
        try:
            yield 0
            entered.set()
            for _ in range(int(WAIT * 1000)):
                try:
                    check_cancelled()
                except WorkerCancelled:
                    saw_cancel.set()
                    raise
                threading.Event().wait(0.001)
            yield 1
        finally:
            source_closed.set()

    async def consume() -> None:
        async for _ in iterate_in_thread(slow()):
            pass

    async with anyio.create_task_group() as tg:
        tg.start_soon(consume)
        assert await anyio.to_thread.run_sync(entered.wait, WAIT)
        tg.cancel_scope.cancel()
    assert saw_cancel.is_set()
    assert source_closed.is_set()  # closed before the cancellation propagated


def test_iterate_in_thread_rejects_a_non_iterable_at_once() -> None:
    with pytest.raises(TypeError):
        iterate_in_thread(42)  # type: ignore[arg-type]


# -- sync_iter --------------------------------------------------------------------


class AsyncSource:
    """An async generator that records the loop it ran on and whether it closed."""

    def __init__(self, n: int = 3) -> None:
        self.n = n
        self.loops: list[object] = []
        self.closed = threading.Event()
        self.close_loop: object | None = None

    async def __call__(self) -> AsyncIterator[int]:
        try:
            for i in range(self.n):
                self.loops.append(loop_running_in_this_thread())
                await anyio.sleep(0)
                yield i
        finally:
            self.close_loop = loop_running_in_this_thread()
            self.closed.set()


def test_sync_iter_yields_the_items_from_sync_code() -> None:
    source = AsyncSource()
    assert list(sync_iter(source())) == [0, 1, 2]
    assert source.closed.is_set()
    assert len(set(map(id, source.loops))) == 1  # every step on one loop


def test_sync_iter_break_closes_the_async_generator_on_its_loop() -> None:
    source = AsyncSource()
    for item in sync_iter(source()):
        assert item == 0
        break
    assert source.closed.is_set()  # at once, not at some later garbage collection
    assert source.close_loop is source.loops[0]


def test_sync_iter_close_and_with_block_run_aclose() -> None:
    first, second = AsyncSource(), AsyncSource()
    it = sync_iter(first())
    assert next(it) == 0
    it.close()
    assert first.closed.is_set()
    assert list(it) == []  # closed: exhausted for good
    with sync_iter(second()) as it2:
        assert next(it2) == 0
    assert second.closed.is_set()


def test_sync_iter_propagates_the_exception_unchanged() -> None:
    error = ValueError("boom")

    async def failing() -> AsyncIterator[int]:
        yield 1
        raise error

    with pytest.raises(ValueError, match="boom") as info:
        list(sync_iter(failing()))
    assert info.value is error


@pytest.mark.anyio
async def test_sync_iter_from_a_worker_runs_on_the_workers_loop() -> None:
    source = AsyncSource()
    here = loop_running_in_this_thread()

    def in_worker() -> list[int]:
        for item in sync_iter(source()):
            if item == 1:
                break
        return [0, 1]

    assert await run_blocking(in_worker) == [0, 1]
    assert source.loops == [here, here]
    assert source.closed.is_set()
    assert source.close_loop is here


@pytest.mark.anyio
async def test_sync_iter_in_a_loop_thread_raises_deadlock_error() -> None:
    source = AsyncSource()
    it = sync_iter(source())
    with pytest.raises(DeadlockError, match="async for"):
        next(it)


def test_sync_iter_rejects_a_non_async_iterable_at_once() -> None:
    with pytest.raises(TypeError):
        sync_iter([1, 2])  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_aclose_never_waits_for_worker_capacity(anyio_backend: str) -> None:
    """With every worker busy, closing the source still runs (on its own thread)."""
    bridge = get_bridge()
    capacity = bridge.max_workers
    closed = threading.Event()
    release = threading.Event()
    busy = threading.Event()

    def numbers() -> Iterator[int]:
        try:
            yield from range(10)
        finally:
            closed.set()

    def hold_the_only_slot() -> None:
        busy.set()
        release.wait(10)

    bridge.max_workers = 1
    try:
        async with anyio.create_task_group() as tg:
            it = iterate_in_thread(numbers())
            assert await it.__anext__() == 0
            tg.start_soon(run_blocking, hold_the_only_slot)
            await anyio.to_thread.run_sync(busy.wait)
            tg.start_soon(it.aclose)
            # The only worker is still busy: the close must not wait for it.
            closed_meanwhile = await anyio.to_thread.run_sync(closed.wait, 5)
            release.set()
        assert closed_meanwhile, "aclose() waited for a worker slot"
    finally:
        release.set()
        bridge.max_workers = capacity


@pytest.mark.anyio
async def test_iterate_in_thread_close_calls_async_code_on_the_callers_loop() -> None:
    """The source's finally block, run on a closing thread, keeps rule 1."""
    seen: list[object] = []

    async def current_loop() -> object:
        return loop_running_in_this_thread()

    def source() -> Iterator[int]:
        try:
            seen.append(get_bridge().sync_call_async(current_loop))
            yield 1
            yield 2
        finally:
            seen.append(get_bridge().sync_call_async(current_loop))

    mine = loop_running_in_this_thread()
    async with iterate_in_thread(source()) as items:
        async for _ in items:
            break
    assert seen == [mine, mine]
