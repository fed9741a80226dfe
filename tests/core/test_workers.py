"""WorkerPool: capacity, FIFO admission, withdrawal, the idle/close lifecycle.

And workers woken by need: a short call queued for a worker about to return, and
the lookout thread that wakes one, as the pool's WakePolicy decides (#15).
"""

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

from syncbridge import Bridge, WorkerPool, to_async
from syncbridge._core import _wake_policy
from syncbridge._core._jobs import Job
from syncbridge._core._workers import Saturated

if TYPE_CHECKING:
    from collections.abc import Callable

    from syncbridge._core._wake_policy import WakePolicy


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


# -- woken by need: short calls queue for a worker about to return (#15) -------------
#
# The decisions are WakePolicy's (test_wake_policy.py, on a clock of the test's own);
# these check that a real pool acts on them. They stretch ``HANDOFF`` for the pools
# they make, so each step can be observed without racing the clock. None asserts a
# duration.

WAIT = 10.0  # seconds; only reached when a test is failing


async def wait_until(check: Callable[[], bool]) -> None:
    with anyio.fail_after(WAIT):
        while not check():
            await anyio.sleep(0.002)


def pool_of(b: Bridge) -> WorkerPool:
    """The bridge's default pool: a WorkerPool (no executor was given)."""
    pool = b.pool()
    assert isinstance(pool, WorkerPool)
    return pool


def policy_of(pool: WorkerPool) -> WakePolicy:
    return pool._policy  # pyright: ignore[reportPrivateUsage]


async def learn_short_calls(b: Bridge, pool: WorkerPool) -> None:
    """Make *pool* see short calls, so it queues calls for running workers."""
    for _ in range(30):
        await b.run_blocking(int)
    assert policy_of(pool).long < 0.5, "the pool did not learn that its calls are short"


def lookouts(pool: WorkerPool) -> list[threading.Thread]:
    return [
        t
        for t in threading.enumerate()
        if t.name == f"syncbridge-{pool.name}-lookout" and t.is_alive()
    ]


@pytest.fixture
def stretch(monkeypatch: pytest.MonkeyPatch) -> Callable[[float], None]:
    """Stretch HANDOFF to *seconds* for the pools the test makes from then on."""

    def to(seconds: float) -> None:
        monkeypatch.setattr(_wake_policy, "HANDOFF", seconds)

    return to


def a_bridge(max_workers: int = 4) -> Bridge:
    return Bridge(max_workers=max_workers, shutdown_grace=2.0)


@pytest.mark.anyio
async def test_a_short_call_queues_for_the_worker_about_to_return(
    stretch: Callable[[float], None],
) -> None:
    """While a worker runs a call handed to it just now, the next one waits for it."""
    stretch(60.0)  # "just now" lasts a minute: no race with the lookout
    async with a_bridge() as bridge:
        await _queues_for_the_worker_about_to_return(bridge, pool_of(bridge))


async def _queues_for_the_worker_about_to_return(
    bridge: Bridge, pool: WorkerPool
) -> None:
    # Calls made one at a time never wait: nothing runs when each is made.
    await learn_short_calls(bridge, pool)
    release = threading.Event()
    ran_on: list[int] = []

    def first() -> None:
        ran_on.append(threading.get_ident())
        release.wait(WAIT)

    def second() -> None:
        ran_on.append(threading.get_ident())

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(bridge.run_blocking, first)
            await wait_until(lambda: len(ran_on) == 1)
            threads = pool.threads
            tg.start_soon(bridge.run_blocking, second)
            await wait_until(lambda: pool.stats().calls == 32)
            stats = pool.stats()
            assert (stats.busy, stats.waiting, stats.threads) == (1, 1, threads)
            release.set()
    finally:
        release.set()
    assert ran_on[0] == ran_on[1], "the queued call did not go to the returning worker"
    assert pool.threads == threads


@pytest.mark.anyio
async def test_a_call_queued_behind_a_blocked_worker_still_starts(
    stretch: Callable[[float], None],
) -> None:
    """The lookout wakes a worker for a queued call; the first one never returns."""
    stretch(1.0)  # long enough to see the call queued first
    async with a_bridge() as bridge:
        await _queued_behind_a_blocked_worker(bridge, pool_of(bridge))


async def _queued_behind_a_blocked_worker(bridge: Bridge, pool: WorkerPool) -> None:
    await learn_short_calls(bridge, pool)
    release = threading.Event()
    started = threading.Event()

    def blocked() -> None:
        started.set()
        release.wait(WAIT)

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(bridge.run_blocking, blocked)
            await anyio.to_thread.run_sync(started.wait, WAIT)
            # Learning may have left an idle thread or two (a worker wakes its
            # awaiter before it is idle again, so the next call may start another).
            threads = pool.threads
            done = anyio.Event()

            async def short() -> None:
                await bridge.run_blocking(int)
                done.set()

            tg.start_soon(short)
            await wait_until(lambda: pool.stats().calls == 32)
            assert pool.waiting == 1, "the call did not queue for the running worker"
            with anyio.fail_after(WAIT):
                await done.wait()
            assert not release.is_set()
            # A worker gives its slot back just after waking its awaiter; the
            # blocked call still holds its own.
            await wait_until(lambda: pool.busy == 1)
            assert pool.threads <= threads + 1  # at most the one the lookout woke
            release.set()
    finally:
        release.set()


@pytest.mark.anyio
async def test_all_of_capacity_runs_at_once_after_short_calls() -> None:
    """40 calls that each wait until all 40 run: every slot is still used."""
    async with Bridge() as b:
        pool = pool_of(b)
        assert pool.capacity == 40
        await learn_short_calls(b, pool)
        barrier = threading.Barrier(40)

        def meet() -> int:
            return barrier.wait(WAIT)

        with anyio.fail_after(WAIT):
            async with anyio.create_task_group() as tg:
                for _ in range(40):
                    tg.start_soon(b.run_blocking, meet)
        assert not barrier.broken
        assert pool.threads == 40


@pytest.mark.anyio
async def test_every_queued_call_starts_when_each_running_one_blocks(
    stretch: Callable[[float], None],
) -> None:
    """No call returns, so the lookout wakes ever more workers until all run."""
    stretch(0.02)  # a few rounds of the lookout, each observable
    async with a_bridge(8) as bridge:
        await learn_short_calls(bridge, pool_of(bridge))
        barrier = threading.Barrier(8)
        with anyio.fail_after(WAIT):
            async with anyio.create_task_group() as tg:
                for _ in range(8):
                    tg.start_soon(bridge.run_blocking, barrier.wait, WAIT)
        assert not barrier.broken


@pytest.mark.anyio
async def test_nesting_deeper_than_capacity_after_short_calls() -> None:
    """sync -> async -> sync ten levels deep on two slots, the pool in short mode."""
    async with Bridge(max_workers=2) as b:
        await learn_short_calls(b, pool_of(b))

        async def descend(depth: int) -> int:
            if depth == 0:
                return 0
            return await b.run_blocking(climb, depth)

        def climb(depth: int) -> int:
            return 1 + b.sync_call_async(descend, depth - 1)

        with anyio.fail_after(WAIT):
            results = []
            async with anyio.create_task_group() as tg:
                for _ in range(4):

                    async def one() -> None:
                        results.append(await descend(10))

                    tg.start_soon(one)
        assert results == [10] * 4


@pytest.mark.anyio
async def test_long_calls_start_at_once(stretch: Callable[[float], None]) -> None:
    """A pool whose calls block starts each new one on a thread of its own."""
    stretch(60.0)  # a queued call would wait a minute for the lookout
    async with Bridge(max_workers=4) as b:
        pool = pool_of(b)
        release = threading.Event()
        started = threading.Semaphore(0)

        def block() -> None:
            started.release()
            release.wait(WAIT)

        # A new pool has seen no short call: all four start at once.
        async with anyio.create_task_group() as tg:
            for _ in range(4):
                tg.start_soon(b.run_blocking, block)
            for _ in range(4):
                assert await anyio.to_thread.run_sync(started.acquire, True, WAIT)
            release.set()
        assert pool.threads == 4


def _queue_a_short_call_behind_a_blocked_one(b: Bridge, pool: WorkerPool) -> None:
    """Teach *pool* short calls, then queue one behind a blocked call: a lookout starts."""

    async def main() -> None:
        await learn_short_calls(b, pool)
        release = threading.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(b.run_blocking, release.wait, WAIT)
            await wait_until(lambda: pool.busy == 1)
            tg.start_soon(b.run_blocking, int)  # queued: starts the lookout
            await wait_until(lambda: pool.waiting == 1)
            release.set()
        assert pool.waiting == 0

    anyio.run(main)


def test_the_lookout_exits_on_close_and_when_idle(
    stretch: Callable[[float], None],
) -> None:
    """The lookout is started on the first queued short call and never leaks."""
    stretch(1.0)
    pool = WorkerPool("lookout-test", 4, idle_timeout=0.05)
    with Bridge() as b:
        b._registry.default = pool
        _queue_a_short_call_behind_a_blocked_one(b, pool)
        assert len(lookouts(pool)) == 1
        # It ends the wait it began for the queued call (one handoff), then
        # waits idle_timeout for another.
        for _ in range(500):
            if not lookouts(pool):
                break
            threading.Event().wait(0.01)
        assert not lookouts(pool), "the idle lookout did not exit"


def test_close_stops_a_waiting_lookout(stretch: Callable[[float], None]) -> None:
    stretch(60.0)
    pool = WorkerPool("lookout-close", 4)
    with Bridge() as b:
        b._registry.default = pool
        _queue_a_short_call_behind_a_blocked_one(b, pool)
        assert len(lookouts(pool)) == 1
    assert not lookouts(pool), "close() left the lookout running"


@pytest.mark.anyio
async def test_a_lookout_that_cannot_start_lets_the_call_start_at_once(
    stretch: Callable[[float], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a lookout nothing may wait for a running worker: it starts now."""
    stretch(60.0)
    async with a_bridge() as bridge:
        await _a_lookout_that_cannot_start(bridge, pool_of(bridge), monkeypatch)


async def _a_lookout_that_cannot_start(
    bridge: Bridge, pool: WorkerPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    start = threading.Thread.start
    refused: list[str] = []

    def refuse_lookout(self: threading.Thread) -> None:
        if self.name.endswith("-lookout"):
            refused.append(self.name)
            raise RuntimeError("can't start new thread")
        start(self)

    monkeypatch.setattr(threading.Thread, "start", refuse_lookout)
    await learn_short_calls(bridge, pool)
    release = threading.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(bridge.run_blocking, release.wait, WAIT)
        await wait_until(lambda: pool.busy == 1)
        with anyio.fail_after(WAIT):
            assert await bridge.run_blocking(int, "7") == 7  # would wait a minute
            assert await bridge.run_blocking(int, "8") == 8
        release.set()
    assert refused, "no lookout was needed"
    assert not lookouts(pool)


# -- bounded queues (#25): max_waiting refuses at once, never past the bound ---------


def _job(pool: WorkerPool, func: Callable[[], object]) -> Job:
    return Job(func, (), {}, contextvars.copy_context(), None, pool)


@settings(max_examples=25, deadline=None)
@given(max_waiting=st.integers(0, 4), callers=st.integers(1, 12))
def test_max_waiting_holds_when_many_threads_submit_at_once(
    max_waiting: int, callers: int
) -> None:
    """Callers released together at a full pool: exactly max_waiting queue, the
    rest are refused before queuing (the bound is read under the pool's lock)."""
    pool = WorkerPool("bounded", 1, max_waiting=max_waiting)
    release = threading.Event()
    started = threading.Event()

    def blocked() -> None:
        started.set()
        release.wait(WAIT)

    gate = threading.Barrier(callers)
    refused: list[Saturated] = []
    queued: list[Job] = []
    lock = threading.Lock()

    def caller() -> None:
        job = _job(pool, int)
        gate.wait(WAIT)
        try:
            pool._submit(job)  # pyright: ignore[reportPrivateUsage]
        except Saturated as exc:
            with lock:
                refused.append(exc)
        else:
            with lock:
                queued.append(job)

    try:
        pool._submit(_job(pool, blocked))  # pyright: ignore[reportPrivateUsage]
        assert started.wait(WAIT)
        threads = [threading.Thread(target=caller) for _ in range(callers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(WAIT)
        expected_queued = min(callers, max_waiting)
        assert (len(queued), len(refused)) == (
            expected_queued,
            callers - expected_queued,
        )
        assert pool.waiting == expected_queued
        for exc in refused:
            error = exc.error("run_blocking(int)")
            assert (error.pool, error.option, error.limit) == (
                "bounded",
                "max_waiting",
                max_waiting,
            )
            assert (error.capacity, error.busy, error.waiting) == (1, 1, max_waiting)
    finally:
        release.set()
        pool.close()


@pytest.mark.anyio
async def test_a_full_queue_takes_a_free_slot_rather_than_refuse(
    stretch: Callable[[float], None],
) -> None:
    """max_waiting=0 refuses only when no slot is free: a call the pool would queue
    for a worker about to return (a slot free) starts at once instead."""
    stretch(60.0)  # "about to return" lasts a minute: the call would wait that long
    async with a_bridge() as bridge:
        pool = pool_of(bridge)
        await learn_short_calls(bridge, pool)
        pool.max_waiting = 0
        release = threading.Event()
        ran_on: list[int] = []

        def first() -> None:
            ran_on.append(threading.get_ident())
            release.wait(WAIT)

        def second() -> None:
            ran_on.append(threading.get_ident())

        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(bridge.run_blocking, first)
                await wait_until(lambda: len(ran_on) == 1)
                await bridge.run_blocking(second)  # neither queued nor refused
                assert not release.is_set()
                release.set()
        finally:
            release.set()
        assert ran_on[0] != ran_on[1]
        assert pool.stats().rejected == 0


@pytest.mark.anyio
async def test_nested_calls_borrowing_their_ancestors_slot_are_never_refused() -> None:
    """capacity 1, max_waiting=0, a short max_wait: the worker function calls async
    code that calls back into the same pool, twice deep. It completes."""
    async with Bridge(
        pools={"db": {"capacity": 1, "max_waiting": 0, "max_wait": 0.01}},
        shutdown_grace=2.0,
    ) as b:

        def leaf(x: int) -> int:
            return x + 1

        async def middle(x: int) -> int:
            results: list[int] = []

            async def one(i: int) -> None:
                results.append(await to_async(leaf, pool="db", bridge=b)(x + i))

            # Three at once: one runs on the blocked ancestor's thread, the
            # others queue in the pool for it (the ancestor's slot runs them).
            async with anyio.create_task_group() as tg:
                for i in range(3):
                    tg.start_soon(one, i)
            return max(results)

        def outer(x: int) -> int:
            inner = b.sync_call_async(middle, x)
            return b.sync_call_async(middle, inner)

        with anyio.fail_after(WAIT):
            assert await to_async(outer, pool="db", bridge=b)(1) == 7
        stats = b.stats().pools["db"]
        assert (stats.calls, stats.completed, stats.rejected) == (7, 7, 0)
