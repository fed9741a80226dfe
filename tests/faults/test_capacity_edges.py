"""Issue 11, point 9: capacity and start-up edges.

Lowering a pool's capacity holds from then on; a failed thread start gives its
slot back; an await in an already-cancelled scope never runs the function; a
running call flagged by ``close()`` answers its (never cancelled) awaiter with
:class:`~syncbridge.BridgeClosed`; a portal that fails to start says so at once;
and a dropped ``sync_iter`` iterator never blocks the thread that drops it.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import queue
import threading
import time
from typing import TYPE_CHECKING, Literal

import anyio
import pytest

import syncbridge
from syncbridge import Bridge, BridgeClosed

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable
    from typing import Any

pytestmark = pytest.mark.faults

BOUND = 5.0


class _Outcome:
    """Runs *call* on a plain daemon thread and keeps what it returned or raised."""

    def __init__(self, call: Callable[[], object]) -> None:
        self.value: list[object] = []
        self.thread = threading.Thread(target=self._run, args=(call,), daemon=True)
        self.thread.start()

    def _run(self, call: Callable[[], object]) -> None:
        try:
            self.value.append(call())
        except BaseException as exc:
            self.value.append(exc)

    def get(self, timeout: float) -> object:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"the call did not return in {timeout} s"
        return self.value[0]


@pytest.mark.anyio
async def test_lowering_capacity_holds_for_calls_already_queued() -> None:
    """max_workers 4 -> 1 with 4 running and 4 queued: then one call at a time."""
    b = Bridge(max_workers=4, shutdown_grace=1.0)
    lock = threading.Lock()
    running = 0
    max_after_lowering = 0
    lowered = False
    releases = [threading.Event() for _ in range(8)]
    started: queue.SimpleQueue[int] = queue.SimpleQueue()

    def call(i: int) -> int:
        nonlocal running, max_after_lowering
        with lock:
            running += 1
            if lowered:
                max_after_lowering = max(max_after_lowering, running)
        started.put(i)
        releases[i].wait(BOUND)
        with lock:
            running -= 1
        return i

    def orchestrate() -> None:
        nonlocal lowered
        first = {started.get(timeout=BOUND) for _ in range(4)}
        # The other four tasks may not have submitted yet: polled, bounded (the
        # pool offers no event for "queued").
        deadline = time.monotonic() + BOUND
        while b.pool().waiting < 4 and time.monotonic() < deadline:
            time.sleep(0.005)
        assert b.pool().waiting == 4
        with lock:
            lowered = True
        b.max_workers = 1
        for i in first:
            releases[i].set()
        for _ in range(4):  # release the later calls one by one as each starts
            releases[started.get(timeout=BOUND)].set()

    try:
        with anyio.fail_after(3 * BOUND):
            async with anyio.create_task_group() as tg:
                for i in range(8):
                    tg.start_soon(b.run_blocking, call, i)
                await anyio.to_thread.run_sync(orchestrate)
        assert max_after_lowering == 1, (
            f"{max_after_lowering} calls ran at once after max_workers was set to 1"
        )
    finally:
        for ev in releases:
            ev.set()
        await anyio.to_thread.run_sync(b.close)


@pytest.mark.anyio
async def test_a_failed_thread_start_gives_its_slot_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A worker thread that cannot start fails its call; the next call still runs."""
    b = Bridge(max_workers=1, shutdown_grace=1.0)
    start = threading.Thread.start
    refused: list[str] = []

    def start_or_refuse(self: threading.Thread) -> None:
        if self.name.startswith("syncbridge-") and not refused:
            refused.append(self.name)
            raise RuntimeError("can't start new thread")
        start(self)

    monkeypatch.setattr(threading.Thread, "start", start_or_refuse)
    try:
        with anyio.fail_after(BOUND), pytest.raises(RuntimeError, match="can't start"):
            await b.run_blocking(int, "1")
        assert refused, "no syncbridge thread start was attempted"
        try:
            with anyio.fail_after(BOUND):
                assert await b.run_blocking(int, "2") == 2
        except TimeoutError:
            pytest.fail("the next call waits forever: the failed start leaked its slot")
        monkeypatch.undo()
        await anyio.to_thread.run_sync(b.close)
    finally:
        monkeypatch.undo()
        with contextlib.suppress(Exception):  # already failed: report that instead
            await anyio.to_thread.run_sync(b.close)


@pytest.mark.anyio
async def test_an_already_cancelled_scope_never_runs_the_function(
    bridge: Bridge,
) -> None:
    """run_blocking awaited in a cancelled scope raises without running func."""
    ran = threading.Event()
    with anyio.CancelScope() as scope:
        scope.cancel()
        await bridge.run_blocking(ran.set)
    assert scope.cancelled_caught
    deadline = time.monotonic() + BOUND
    while bridge.pool().busy and time.monotonic() < deadline:
        await anyio.sleep(0.01)  # polling a counter: the pool has no idle event
    assert bridge.pool().busy == 0
    assert not ran.is_set(), "the function ran although the scope was cancelled"


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_close_answers_a_never_cancelled_awaiter_with_bridge_closed(
    backend: Literal["asyncio", "trio"],
) -> None:
    """A call stopped by close() via check_cancelled() raises BridgeClosed."""
    b = Bridge(max_workers=2, shutdown_grace=2.0)
    running = threading.Event()

    def cooperative() -> str:
        running.set()
        deadline = time.monotonic() + BOUND
        while time.monotonic() < deadline:
            syncbridge.check_cancelled()
            time.sleep(0.01)  # the blocking work being stopped
        return "close() never stopped this call"

    awaiter = _Outcome(lambda: anyio.run(b.run_blocking, cooperative, backend=backend))
    try:
        assert running.wait(BOUND)
        b.close()
        outcome = awaiter.get(BOUND)
        assert isinstance(outcome, BridgeClosed), (
            f"the awaiting task (never cancelled) got {outcome!r}"
        )
    finally:
        b.close()


def test_a_portal_that_fails_to_start_raises_its_error_promptly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Bridge(backend='trio') whose trio.run fails: calls raise, none hangs."""
    trio = pytest.importorskip("trio")
    boom = RuntimeError("boom")

    def failing_run(*args: Any, **kwargs: Any) -> None:
        raise boom

    monkeypatch.setattr(trio, "run", failing_run)
    b = Bridge(backend="trio", shutdown_grace=0.5)

    async def answer() -> int:
        return 42

    try:
        first = _Outcome(lambda: b.sync_call_async(answer))
        assert first.get(BOUND) is boom
        second = _Outcome(lambda: b.sync_call_async(answer))
        assert isinstance(second.get(BOUND), BaseException)
    finally:
        monkeypatch.undo()
        closing = _Outcome(b.close)  # bounded: a hung start may hold the portal
        closing.thread.join(BOUND)


def test_the_garbage_collector_never_blocks_on_a_sync_iter_iterator() -> None:
    """gc.collect() of an advanced sync_iter iterator returns while its finally waits.

    (Dropping the last reference in a plain thread, as a ``break`` does, closes
    it at once and waits, like a generator: tests/test_iterators.py.)
    """
    may_finish = threading.Event()
    in_finally = threading.Event()
    finished = threading.Event()

    async def agen() -> AsyncIterator[int]:
        try:
            yield 1
            yield 2
        finally:
            in_finally.set()
            await anyio.to_thread.run_sync(may_finish.wait, 2 * BOUND)
            finished.set()

    def advance_then_drop() -> float:
        it = syncbridge.sync_iter(agen())
        assert next(it) == 1
        cycle: list[object] = [it]
        cycle.append(cycle)  # only the cyclic garbage collector can free it now
        del it, cycle
        start = time.monotonic()
        gc.collect()
        return time.monotonic() - start

    dropper = _Outcome(advance_then_drop)
    try:
        dropper.thread.join(1.0)
        assert not dropper.thread.is_alive(), (
            "collecting the iterator blocks until its async generator's finally ends"
        )
        took = dropper.value[0]
        assert isinstance(took, float), took
        assert took < 1.0
        assert in_finally.wait(BOUND), "dropping the iterator never closed it"
        assert not finished.is_set()
    finally:
        may_finish.set()
    assert finished.wait(BOUND), "the finally did not complete after it could"
    dropper.thread.join(BOUND)


def test_a_sync_iter_iterator_the_collector_frees_is_closed_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Its async generator, freed in the same collection, is closed by one closer.

    The generator's own finalizer hands it to its loop's ``aclose()``: a second
    close from the iterator raced it ("already running" on the loop, or, with
    no GIL, "already executing" out of ``gc.collect()``).
    """
    may_finish = threading.Event()
    closes: list[str] = []

    async def agen() -> AsyncIterator[int]:
        try:
            yield 1
            yield 2
        finally:
            closes.append("finally")
            await anyio.to_thread.run_sync(may_finish.wait, BOUND)
            closes.append("finished")

    def advance_then_drop() -> None:
        it = syncbridge.sync_iter(agen())
        assert next(it) == 1
        cycle: list[object] = [it]
        cycle.append(cycle)  # only the cyclic garbage collector can free it now
        del it, cycle
        gc.collect()

    caplog.set_level(logging.WARNING)
    dropper = _Outcome(advance_then_drop)
    try:
        assert dropper.get(BOUND) is None  # gc.collect() raised nothing
    finally:
        may_finish.set()
    deadline = time.monotonic() + BOUND
    while "finished" not in closes and time.monotonic() < deadline:
        time.sleep(0.01)
    assert closes == ["finally", "finished"]

    async def settle() -> None:  # a round trip: the portal ran what was posted
        await anyio.sleep(0)

    syncbridge.sync_call_async(settle)
    gc.collect()  # asyncio logs a failed task when it is collected
    failures = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert failures == []
