"""Workers woken by need: short calls queue for a worker about to return (#15).

A pool that has seen short calls queues a new call for a worker that was handed
its call less than ``HANDOFF`` ago instead of waking another thread; the
lookout wakes one for a queued call that waited ``HANDOFF`` with a slot free.
Some tests stretch the pool's ``_handoff`` so each step can be observed without
racing the clock; none asserts a duration.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections import deque
from typing import TYPE_CHECKING

import anyio
import pytest

from syncbridge import Bridge, WorkerPool
from syncbridge._core import _wake_policy, _workers
from syncbridge._core._jobs import Job

if TYPE_CHECKING:
    from collections.abc import Callable

WAIT = 10.0  # seconds; only reached when a test is failing


async def wait_until(check: Callable[[], bool]) -> None:
    with anyio.fail_after(WAIT):
        while not check():
            await anyio.sleep(0.002)


async def learn_short_calls(b: Bridge, pool: WorkerPool) -> None:
    """Make *pool* see short calls, so it queues calls for running workers."""
    for _ in range(30):
        await b.run_blocking(int)
    assert pool._long < 0.5, "the pool did not learn that its calls are short"


def lookouts(pool: WorkerPool) -> list[threading.Thread]:
    return [
        t
        for t in threading.enumerate()
        if t.name == f"syncbridge-{pool.name}-lookout" and t.is_alive()
    ]


@pytest.mark.anyio
async def test_a_short_call_queues_for_the_worker_about_to_return(
    bridge: Bridge,
) -> None:
    """While a worker runs a call handed to it just now, the next one waits for it."""
    pool = bridge._worker_pool
    pool._handoff = 60.0  # "just now" lasts a minute: no race with the lookout
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
    bridge: Bridge,
) -> None:
    """The lookout wakes a worker for a queued call; the first one never returns."""
    pool = bridge._worker_pool
    pool._handoff = 1.0  # long enough to see the call queued first
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
        pool = b._worker_pool
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
    bridge: Bridge,
) -> None:
    """No call returns, so the lookout wakes ever more workers until all run."""
    pool = bridge._worker_pool
    pool.capacity = 8
    pool._handoff = 0.02  # a few rounds of the lookout, each observable
    await learn_short_calls(bridge, pool)
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
        await learn_short_calls(b, b._worker_pool)

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
async def test_long_calls_start_at_once() -> None:
    """A pool whose calls block starts each new one on a thread of its own."""
    async with Bridge(max_workers=4) as b:
        pool = b._worker_pool
        pool._handoff = 60.0  # a queued call would wait a minute for the lookout
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


def test_the_lookout_exits_on_close_and_when_idle() -> None:
    """The lookout is started on the first queued short call and never leaks."""
    pool = WorkerPool("lookout-test", 4, idle_timeout=0.05)
    with Bridge() as b:
        b._default_pool = pool

        async def main() -> None:
            await learn_short_calls(b, pool)
            pool._handoff = 1.0
            release = threading.Event()
            async with anyio.create_task_group() as tg:
                tg.start_soon(b.run_blocking, release.wait, WAIT)
                await wait_until(lambda: pool.busy == 1)
                tg.start_soon(b.run_blocking, int)  # queued: starts the lookout
                await wait_until(lambda: pool.waiting == 1)
                release.set()
            assert pool.waiting == 0

        anyio.run(main)
        assert pool._lookout is not None
        assert len(lookouts(pool)) == 1
        # It ends the wait it began for the queued call (one handoff), then
        # waits idle_timeout for another.
        for _ in range(500):
            if not lookouts(pool):
                break
            threading.Event().wait(0.01)
        assert not lookouts(pool), "the idle lookout did not exit"
        assert pool._lookout is None


def test_close_stops_a_waiting_lookout() -> None:
    pool = WorkerPool("lookout-close", 4)
    with Bridge() as b:
        b._default_pool = pool

        async def main() -> None:
            await learn_short_calls(b, pool)
            pool._handoff = 60.0
            release = threading.Event()
            async with anyio.create_task_group() as tg:
                tg.start_soon(b.run_blocking, release.wait, WAIT)
                await wait_until(lambda: pool.busy == 1)
                tg.start_soon(b.run_blocking, int)
                await wait_until(lambda: pool.waiting == 1)
                release.set()

        anyio.run(main)
        assert len(lookouts(pool)) == 1
    assert not lookouts(pool), "close() left the lookout running"


@pytest.mark.anyio
async def test_a_lookout_that_cannot_start_lets_the_call_start_at_once(
    bridge: Bridge, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a lookout nothing may wait for a running worker: it starts now."""
    pool = bridge._worker_pool
    pool._handoff = 60.0
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
    assert pool._lookout is None


def _arranged_pool(
    pace: float, blocked: int = 0, now: float | None = None
) -> tuple[WorkerPool, list[Job]]:
    """A pool in short mode whose one cycling worker was handed its call long ago.

    White-box: the state a pool reaches when the loop thread holds the GIL for
    longer than HANDOFF, so a worker cycling through short calls looks stuck;
    *blocked* more workers are in calls that never return. Returns the pool and
    jobs to queue in it. *now* is the time of the arrangement (default: real).
    """
    pool = WorkerPool("pace", 200)
    pool._handoff = 0.05
    if now is None:
        now = time.monotonic()
    with pool._lock:
        pool._long = 0.0
        pool._pace = pace
        for _ in range(blocked):
            stuck = _workers._Worker()
            stuck.since = now - 1000 * pool._handoff
            pool._active.add(stuck)
        worker = _workers._Worker()
        worker.since = now - 100 * pool._handoff
        pool._active.add(worker)
        pool._last_handed = worker
        pool._busy = blocked + 1
        pool._returned = now  # calls keep returning
        pool._seen, pool._looked = pool._finished, now  # the lookout's last look
    jobs = [Job(int, (), {}, contextvars.copy_context(), None, pool) for _ in range(50)]
    return pool, jobs


@pytest.fixture
def gil_build_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    """The wake-up policy of a GIL build, whatever this build is.

    The white-box tests below drive that policy; a free-threaded build adds a
    rule of its own (a worker per core but the loop's), tested on its own below.
    """
    monkeypatch.setattr(_workers, "_FREE_THREADED", False)


@pytest.mark.usefixtures("gil_build_policy")
def test_in_a_burst_a_call_queues_while_a_worker_empties_the_queue_soon() -> None:
    pool, [job, *_] = _arranged_pool(pace=0.05 / 100)  # a hundredth of HANDOFF
    try:
        with pool._lock:
            now = time.monotonic()
            assert not pool._defers(now), (
                "a lone call waited for a worker handed long ago"
            )
            pool._pending.append((now, job))  # a burst: calls queued already
            assert pool._defers(now), "a call in a burst woke another thread"
            pool._pace = pool._handoff  # the queue would not empty within HANDOFF
            assert not pool._defers(now)
            pool._pending.clear()
    finally:
        pool.close()


@pytest.mark.usefixtures("gil_build_policy")
def test_blocked_workers_are_not_counted_as_emptying_the_queue() -> None:
    """100 workers blocked, no call returned lately: a burst starts new threads."""
    pool, jobs = _arranged_pool(pace=0.05 / 20, blocked=100)  # 20 per HANDOFF
    try:
        with pool._lock:
            now = time.monotonic()
            pool._pending.extend((now, job) for job in jobs[:4])
            assert pool._defers(now)  # calls still return: a few may queue
            pool._returned = now - 10 * pool._handoff  # none has for a while
            assert not pool._defers(now), "calls queued behind blocked workers"
            pool._returned = now
            pool._pending.extend((now, job) for job in jobs[4:])  # 50 queued
            # One worker needs 2.5 HANDOFFs for them; 101 "running" would not.
            assert not pool._defers(now), "blocked workers counted as emptying it"
            pool._pending.clear()
    finally:
        pool.close()


def _look_while_calls_return(
    pool: WorkerPool, now: float, returns_per_handoff: int, handoffs: int
) -> list[tuple[float, list[Job] | None]]:
    """Drive the lookout's policy on a clock of our own, never real time.

    From *now*, a call returns every ``1 / returns_per_handoff`` HANDOFF for
    *handoffs* HANDOFFs, then none does. The lookout looks when it would (at
    ``_next_look()``), seeing the calls returned by then, until it wakes a
    worker while none returns any more. Returns each look: when, and the jobs
    it started (None: it waited for the running workers). Stops early if every
    queued call started.
    """
    handoff = pool._handoff
    returns = deque(
        now + (k + 1) * handoff / returns_per_handoff
        for k in range(handoffs * returns_per_handoff)
    )
    last_return = returns[-1]
    looks: list[tuple[float, list[Job] | None]] = []
    with pool._lock:
        pool._lookout = threading.current_thread()  # as on the lookout thread
        while len(looks) < 1000:
            if not pool._pending:  # every call started: no look due
                return looks
            at = pool._next_look()
            while returns and returns[0] <= at:
                pool._finished += 1
                pool._returned = returns.popleft()
            starts = pool._look_at(at)
            looks.append((at, None if starts is None else [s[0] for s in starts]))
            if starts is not None and at > last_return:
                return looks
    raise AssertionError("the lookout never woke a worker once calls stopped")


@pytest.mark.usefixtures("gil_build_policy")
@pytest.mark.parametrize(
    ("queued", "returns_per_handoff", "wakes_while_returning"),
    [(1, 5, False), (50, 1, True)],
    ids=["queue-emptied-soon", "queue-too-long-for-the-rate"],
)
def test_the_lookout_wakes_a_worker_only_if_the_queue_is_not_emptied_soon(
    queued: int, returns_per_handoff: int, wakes_while_returning: bool
) -> None:
    """Calls keep returning: a worker is woken only if, at that rate, the queue
    would not empty within HANDOFF; once none returns, one is woken anyway.

    The policy is driven on a clock of the test's own: a loaded machine that
    delays a thread cannot pass for "no call returned" (it once did, #24).
    """
    now = 1000.0
    pool, jobs = _arranged_pool(pace=0.05 / 100, blocked=100, now=now)
    try:
        with pool._lock:
            waited = now - 1.0  # long enough to be due a worker
            pool._pending.extend((waited, job) for job in jobs[:queued])
        looks = _look_while_calls_return(pool, now, returns_per_handoff, 20)
        last_return = now + 20 * pool._handoff
        while_returning = [(at, s) for at, s in looks if at <= last_return]
        woken = [s for _, s in while_returning if s is not None]
        if wakes_while_returning:
            # The first look wakes one worker for the oldest call, no more.
            assert while_returning[0] == (now + pool._handoff, [jobs[0]])
        else:
            assert len(while_returning) >= 20, "the lookout did not look each HANDOFF"
            assert woken == [], "a worker was woken while the queue emptied soon"
        # None returns any more: the workers may all be blocked; one is woken,
        # by the second look after the last return at most.
        at, started = looks[-1]
        assert at <= last_return + 2 * pool._handoff
        assert started == [jobs[len(woken)]]
    finally:
        with pool._lock:
            pool._lookout = None
            pool._pending.clear()
        pool.close()


@pytest.mark.usefixtures("gil_build_policy")
def test_while_none_returns_the_lookout_wakes_twice_as_many_each_look() -> None:
    """No call returns: the workers may all be blocked; 1, 2, 4, 8 are woken."""
    now = 1000.0
    pool, jobs = _arranged_pool(pace=0.05 / 100, blocked=100, now=now)
    try:
        with pool._lock:
            pool._lookout = threading.current_thread()
            pool._pending.extend((now - 1.0, job) for job in jobs)
            woken = []
            for _ in range(4):
                at = pool._next_look()
                starts = pool._look_at(at)
                assert starts is not None
                woken.append(len(starts))
            assert woken == [1, 2, 4, 8]
            # A call returned: the next look wakes one, and the ramp starts anew.
            pool._finished += 1
            assert len(pool._look_at(pool._next_look()) or ()) == 1
            assert len(pool._look_at(pool._next_look()) or ()) == 1
            assert len(pool._look_at(pool._next_look()) or ()) == 2
    finally:
        with pool._lock:
            pool._lookout = None
            pool._pending.clear()
        pool.close()


def test_free_threaded_short_calls_queue_for_a_worker_per_core(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No GIL: with a worker per core (but the loop's) running short calls, a
    call queues for them and the lookout wakes no other while calls return
    (#22); a GIL build would wake one. Workers handed their call long ago
    (blocked) never count."""
    monkeypatch.setattr(_workers, "_WORKER_CORES", 2)
    now = 1000.0
    pool, jobs = _arranged_pool(pace=0.05, blocked=0, now=now)
    try:
        with pool._lock:
            second = _workers._Worker()
            pool._active.add(second)
            pool._busy += 1
            for worker in pool._active:  # handed theirs 2 HANDOFFs ago
                worker.since = now - 2 * pool._handoff
            pool._last_handed = second
            for free_threaded, defers in ((False, False), (True, True)):
                monkeypatch.setattr(_workers, "_FREE_THREADED", free_threaded)
                assert pool._defers(now) is defers
            # The lookout, a queue too long for the rate calls return at.
            pool._pending.extend((now - 1.0, job) for job in jobs)
            pool._finished += 1
            at = now + pool._handoff
            assert pool._look_at(at) is None, "a thread beyond the cores was woken"
            monkeypatch.setattr(_workers, "_FREE_THREADED", False)
            pool._finished += 1
            assert len(pool._look_at(at + pool._handoff) or ()) == 1
            # Free-threaded, but the workers are blocked: the lookout wakes one.
            monkeypatch.setattr(_workers, "_FREE_THREADED", True)
            for worker in pool._active:
                worker.since = now - 1000 * pool._handoff
            pool._finished += 1
            assert not pool._defers(at + 2 * pool._handoff)
            assert len(pool._look_at(at + 2 * pool._handoff) or ()) == 1
    finally:
        with pool._lock:
            pool._pending.clear()
        pool.close()


def test_free_threaded_short_calls_leave_a_core_to_the_awaiting_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No GIL, two cores: one worker running short calls is enough; a call
    queues for it instead of waking a second worker, which would fight the
    awaiting loop's thread for the cores (#22). One core: still one worker."""
    assert max(1, _wake_policy._CORES - 1) == _wake_policy._WORKER_CORES
    now = 1000.0
    pool, _ = _arranged_pool(pace=0.05, now=now)
    try:
        with pool._lock:
            # Handed its call 2 HANDOFFs ago: the GIL build's rule wakes another.
            [worker] = pool._active
            worker.since = now - 2 * pool._handoff
            monkeypatch.setattr(_workers, "_FREE_THREADED", False)
            assert not pool._defers(now)
            monkeypatch.setattr(_workers, "_FREE_THREADED", True)
            for cores, defers in ((2, True), (1, True), (3, False)):
                monkeypatch.setattr(_workers, "_WORKER_CORES", max(1, cores - 1))
                assert pool._defers(now) is defers, cores
    finally:
        pool.close()
