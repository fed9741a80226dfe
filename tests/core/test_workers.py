"""WorkerPool: capacity, FIFO admission, withdrawal, and the idle/close lifecycle."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import threading
import weakref
from typing import TYPE_CHECKING

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syncbridge import Bridge, WorkerPool

if TYPE_CHECKING:
    from collections.abc import Callable


class Gauge:
    """Counts calls running at once and remembers the peak."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = 0
        self.peak = 0

    def __enter__(self) -> None:
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)

    def __exit__(self, *exc: object) -> None:
        with self.lock:
            self.now -= 1


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    capacity=st.integers(1, 4),
    plan=st.lists(
        st.tuples(st.sampled_from(["finish", "cancel", "fail"]), st.integers(0, 3)),
        min_size=1,
        max_size=30,
    ),
    backend=st.sampled_from(["asyncio", "trio"]),
)
def test_pool_capacity_holds_under_random_cancellation(
    capacity: int, plan: list[tuple[str, int]], backend: str
) -> None:
    """Whatever mix of finishing, failing and cancelled calls: never over capacity,
    every awaited call gets its own outcome, and every slot comes back."""
    gauge = Gauge()

    def work(i: int, action: str, spins: int) -> int:
        with gauge:
            for _ in range(spins):
                threading.Event().wait(0.0005)
            if action == "fail":
                raise ValueError(i)
            return i

    outcomes: dict[int, object] = {}

    async def main(b: Bridge) -> None:
        async def one(i: int, action: str, spins: int) -> None:
            if action == "cancel":
                with anyio.move_on_after(0):
                    await b.run_blocking(work, i, action, spins)
                return
            try:
                outcomes[i] = await b.run_blocking(work, i, action, spins)
            except ValueError as exc:
                outcomes[i] = exc

        async with anyio.create_task_group() as tg:
            for i, (action, spins) in enumerate(plan):
                tg.start_soon(one, i, action, spins)

    with Bridge(max_workers=capacity) as b:
        anyio.run(main, b, backend=backend)
        pool = b.pool()
        for _ in range(2000):  # abandoned threads finish on their own
            if pool.busy == 0:
                break
            threading.Event().wait(0.001)
        assert pool.busy == 0
        assert pool.waiting == 0
        assert pool.threads <= capacity
    assert gauge.peak <= capacity
    for i, (action, _) in enumerate(plan):
        if action == "finish":
            assert outcomes[i] == i
        elif action == "fail":
            assert isinstance(outcomes[i], ValueError)
            assert outcomes[i].args == (i,)  # type: ignore[attr-defined]


def test_pool_rejects_zero_capacity() -> None:
    with pytest.raises(
        ValueError, match=r"WorkerPool\('x'\).capacity must be an int >= 1"
    ):
        WorkerPool("x", 0)


def test_idle_threads_exit_after_idle_timeout() -> None:
    pool = WorkerPool("idle-test", 2, idle_timeout=0.05)
    with Bridge() as b:
        b._registry.default = pool  # a pool with a short idle timeout

        async def main() -> None:
            await b.run_blocking(int)

        anyio.run(main)
        assert pool.threads == 1
        for _ in range(500):
            if pool.threads == 0:
                break
            threading.Event().wait(0.01)
        assert pool.threads == 0


def test_raising_capacity_admits_waiting_calls() -> None:
    release = threading.Event()
    started = threading.Semaphore(0)

    def work() -> None:
        started.release()
        release.wait(10)

    with Bridge(max_workers=1) as b:

        async def main() -> None:
            async with anyio.create_task_group() as tg:
                for _ in range(3):
                    tg.start_soon(b.run_blocking, work)
                while b.pool().waiting < 2:
                    await anyio.sleep(0.001)
                b.max_workers = 3
                for _ in range(3):
                    assert await anyio.to_thread.run_sync(started.acquire, True, 5)
                release.set()

        anyio.run(main)


@pytest.mark.stress
def test_many_threads_calling_sync_call_async_with_nested_run_blocking() -> None:
    """64 threads x 20 round trips sync -> async -> sync on a 4-worker bridge."""
    gauge = Gauge()

    def leaf(x: int) -> int:
        with gauge:
            return x + 1

    with Bridge(max_workers=4) as b:

        async def middle(x: int) -> int:
            return await b.run_blocking(leaf, x)

        errors: list[BaseException] = []

        def caller() -> None:
            try:
                for i in range(20):
                    assert b.sync_call_async(middle, i) == i + 1
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=caller) for _ in range(64)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert not errors
        assert not any(t.is_alive() for t in threads)
    assert gauge.peak <= 4


class _Payload:
    """Something a call holds: in its context, its function, its result."""


_held: contextvars.ContextVar[_Payload] = contextvars.ContextVar("held")


def test_an_idle_worker_keeps_nothing_of_the_calls_it_ran_alive() -> None:
    """A worker thread lives on after its calls (10 s idle, or for ever in the
    thread-sensitive lane): it must not keep their context, function or result."""
    bridge = Bridge(max_workers=1)  # one thread: its first call, then the inbox
    refs: list[weakref.ref[_Payload]] = []

    def make_call() -> Callable[[], _Payload]:
        captured = _Payload()
        refs.append(weakref.ref(captured))

        def call() -> _Payload:
            assert captured is not None
            result = _Payload()
            refs.append(weakref.ref(result))
            return result

        return call

    async def main() -> None:
        for _ in range(2):  # a new thread's first call, then a call handed to it
            payload = _Payload()
            refs.append(weakref.ref(payload))
            token = _held.set(payload)
            del payload
            try:
                await bridge.run_blocking(make_call())
            finally:
                _held.reset(token)

    try:
        asyncio.run(main())
        assert bridge.stats().pools["default"].threads == 1  # alive, idle
        gc.collect()
        alive = [ref() for ref in refs if ref() is not None]
        assert alive == [], f"{len(alive)} of {len(refs)} payloads still referenced"
    finally:
        bridge.close()


def _noop() -> None:
    pass


@pytest.mark.anyio
async def test_a_calls_slot_is_free_once_its_awaiter_has_the_result(
    bridge: Bridge,
) -> None:
    """Thousands of short calls from one caller: after each await the pool counts
    no slot taken. (A worker that woke its awaiter before giving the slot back
    showed busy=1 here on a free-threaded build, #22.)"""
    for i in range(3000):
        await bridge.run_blocking(_noop)
        busy = bridge.stats().pools["default"].busy
        assert busy == 0, f"call {i}: busy={busy} once its awaiter had the result"


class _HeldUpLock:
    """A pool's lock that a worker takes only after *before()*, when it gives its
    slot back (the one place a worker calls ``acquire()``)."""

    def __init__(self, lock: threading.Lock, before: Callable[[], object]) -> None:
        self._lock, self._before = lock, before

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        if threading.current_thread().name.startswith("syncbridge-"):
            self._before()
        return self._lock.acquire(blocking, timeout)

    def release(self) -> None:
        self._lock.release()

    def __enter__(self) -> bool:
        return self._lock.__enter__()

    def __exit__(self, *exc: object) -> None:
        self._lock.release()


@pytest.mark.anyio
async def test_a_worker_gives_its_slot_back_before_it_wakes_the_awaiter(
    bridge: Bridge, monkeypatch: pytest.MonkeyPatch
) -> None:
    """However the threads are scheduled: a worker held up as it gives its slot
    back still has given it back when its awaiter resumes."""
    resumed = threading.Event()
    pool = bridge._registry.worker_threads
    # Held until the awaiter has looked, if it can run first (the bug); else
    # (the awaiter waits for this) for a moment only.
    monkeypatch.setattr(
        pool, "_lock", _HeldUpLock(pool._lock, lambda: resumed.wait(0.2))
    )
    for _ in range(3):
        resumed.clear()
        await bridge.run_blocking(_noop)
        busy = bridge.stats().pools["default"].busy
        resumed.set()
        assert busy == 0


# -- the slot sites: one place takes a slot, one gives it back -----------------------


@pytest.mark.anyio
async def test_a_failed_thread_start_gives_its_slot_back_exactly_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Given back once: not kept (the next calls would wait) and not twice
    (three calls would then run at once on two slots)."""
    b = Bridge(max_workers=2, shutdown_grace=1.0)
    pool = b.pool()
    start = threading.Thread.start
    refused: list[str] = []

    def start_or_refuse(self: threading.Thread) -> None:
        if self.name.startswith(f"syncbridge-{b.name}-") and not refused:
            refused.append(self.name)
            raise RuntimeError("can't start new thread")
        start(self)

    monkeypatch.setattr(threading.Thread, "start", start_or_refuse)
    release = threading.Event()
    gauge = Gauge()

    def hold() -> None:
        with gauge:
            release.wait(10)

    try:
        with pytest.raises(RuntimeError, match="can't start"):
            await b.run_blocking(int, "1")
        assert refused
        assert (pool.busy, pool.waiting, pool.running_functions()) == (0, 0, [])
        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(b.run_blocking, hold)
            with anyio.fail_after(10):
                while (gauge.now, pool.waiting) != (2, 1):
                    await anyio.sleep(0.002)
            assert (pool.busy, gauge.peak) == (2, 2)
            release.set()
        assert (pool.busy, gauge.peak) == (0, 2)
    finally:
        release.set()
        await anyio.to_thread.run_sync(b.close)


@pytest.mark.anyio
async def test_a_returning_worker_passes_its_slot_to_the_oldest_queued_call() -> None:
    """At capacity, a call that returns hands its slot to the call queued first,
    on the same thread: the slot is never free in between, so a call made
    meanwhile cannot take it."""
    b = Bridge(max_workers=1, shutdown_grace=1.0)
    pool = b.pool()
    release = threading.Event()
    ran: list[tuple[str, int]] = []

    def first() -> None:
        ran.append(("first", threading.get_ident()))
        release.wait(10)

    def queued(name: str) -> None:
        ran.append((name, threading.get_ident()))

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(b.run_blocking, first)
            with anyio.fail_after(10):
                while not ran:
                    await anyio.sleep(0.002)
            for name in ("second", "third"):
                tg.start_soon(b.run_blocking, queued, name)
                with anyio.fail_after(10):
                    while pool.waiting < ("second", "third").index(name) + 1:
                        await anyio.sleep(0.002)
            release.set()
        assert [name for name, _ in ran] == ["first", "second", "third"]
        assert len({ident for _, ident in ran}) == 1, "the slot went to another thread"
        assert (pool.busy, pool.threads) == (0, 1)
    finally:
        release.set()
        await anyio.to_thread.run_sync(b.close)
