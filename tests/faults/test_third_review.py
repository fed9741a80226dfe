"""An outside review of the one await path, the close and the process hooks (#23).

Each test cancels, closes, exits or forks the way users do, at the awaits of a
timed call, and checks the exception, the call's count and its slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from typing import TYPE_CHECKING, Any

import anyio
import pytest

import syncbridge
from _scripts import run_script
from syncbridge import Bridge, BridgeClosed, SyncBridgeTimeout

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Iterator

pytestmark = pytest.mark.faults

BOUND = 20.0


# -- helpers ----------------------------------------------------------------


def _settled(b: Bridge, pool: str = "default") -> syncbridge.PoolStats:
    """The pool's stats once every call has its outcome and its slot back."""
    end = time.monotonic() + BOUND
    while True:
        s = b.stats().pools[pool]
        ended = s.completed + s.errors + s.cancellations + s.timeouts
        if s.busy == 0 and s.waiting == 0 and ended == s.calls:
            return s
        if time.monotonic() > end:
            pytest.fail(f"calls not settled within {BOUND} s: {s}")
        time.sleep(0.005)  # a final state polled for, with a generous bound


class _Blocker:
    """A blocking function: ``entered`` once running, returns at ``release``."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self) -> str:
        self.entered.set()
        assert self.release.wait(BOUND)
        return "done"


async def _wait_thread_event(event: threading.Event) -> None:
    """Await a threading.Event without blocking the loop (polled each tick)."""
    end = time.monotonic() + BOUND
    while not event.is_set():
        assert time.monotonic() < end, "event never set"
        await asyncio.sleep(0.001)


def _is_deadline(callback: Callable[..., object]) -> bool:
    owner = getattr(callback, "__self__", None)
    return isinstance(owner, asyncio.Future) and callback.__name__ == "cancel"


class _HeldTimer:
    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


def _loop_classes() -> list[Any]:
    classes: list[Any] = [pytest.param(asyncio.SelectorEventLoop, id="asyncio")]
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a test dependency
        pass
    else:
        classes.append(pytest.param(uvloop.Loop, id="uvloop"))
    return classes


LOOPS = _loop_classes()


def _run_with_fake_deadline(
    loop_class: type[asyncio.AbstractEventLoop],
    main: Callable[[list[Callable[[], object]]], Coroutine[Any, Any, None]],
) -> None:
    """Run *main* on a loop whose call deadlines (a ``fut.cancel`` timer) are held.

    *main* gets the list the held deadlines go to, and fires them itself.
    """
    held: list[Callable[[], object]] = []

    class HoldingLoop(loop_class):  # type: ignore[valid-type,misc]
        def call_at(self, when: float, callback: Any, *args: Any, **kw: Any) -> Any:
            if _is_deadline(callback) and not args:
                held.append(callback)
                return _HeldTimer()
            return super().call_at(when, callback, *args, **kw)

    with asyncio.Runner(loop_factory=HoldingLoop) as runner:
        runner.run(main(held))


# -- task.cancel() lined up with the deadline ---------------------------------

ORDERS = [
    "cancel-before-deadline",
    "cancel-then-deadline-same-tick",
    "deadline-then-cancel-same-tick",
    "cancel-after-deadline",
]


@pytest.mark.parametrize("abandon", [True, False], ids=["abandon", "wait"])
@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("loop_class", LOOPS)
def test_task_cancel_at_each_side_of_the_deadline(
    loop_class: type[asyncio.AbstractEventLoop], order: str, abandon: bool
) -> None:
    """A task.cancel() is a cancellation (one request), a lone deadline a timeout.

    A cancel requested before the task saw its deadline wins, whatever order
    the two came in within a tick; a cancel after the timeout was raised is
    the task's own business. Either way the call is counted once, its slot
    comes back, and the task's cancel requests are exactly the ones made.
    """
    b = Bridge(max_workers=2, shutdown_grace=1.0)
    blocker = _Blocker()
    outcome: dict[str, object] = {}

    async def main(held: list[Callable[[], object]]) -> None:
        timed = syncbridge.to_async(
            blocker, timeout=30, abandon_on_cancel=abandon, bridge=b
        )
        caller_done = asyncio.Event()

        async def caller() -> None:
            task = asyncio.current_task()
            assert task is not None
            try:
                await timed()
            except BaseException as exc:
                outcome["exc"] = exc
                outcome["cancelling"] = task.cancelling()
                if isinstance(exc, asyncio.CancelledError):
                    task.uncancel()
            else:
                outcome["exc"] = None
            finally:
                caller_done.set()
            # A stray cancel request left on the task shows up here.
            try:
                await asyncio.sleep(0)
                await asyncio.sleep(0)
            except asyncio.CancelledError:
                outcome["stray"] = True

        task = asyncio.create_task(caller())
        await _wait_thread_event(blocker.entered)
        assert len(held) == 1
        (deadline,) = held
        if order == "cancel-before-deadline":
            task.cancel()
            for _ in range(5):
                await asyncio.sleep(0)
            deadline()  # too late: the await was cancelled already
        elif order == "cancel-then-deadline-same-tick":
            task.cancel()
            deadline()
        elif order == "deadline-then-cancel-same-tick":
            deadline()
            task.cancel()
        else:
            deadline()
            for _ in range(5):
                await asyncio.sleep(0)
            if abandon:
                assert task.done() or caller_done.is_set()
            else:
                assert not caller_done.is_set(), "did not wait for the call"
            task.cancel()
        if not abandon:
            for _ in range(5):
                await asyncio.sleep(0)
            assert not caller_done.is_set(), "did not wait for the call"
        blocker.release.set()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    try:
        _run_with_fake_deadline(loop_class, main)
        s = _settled(b)
    finally:
        blocker.release.set()
        b.close()
    exc = outcome["exc"]
    assert not outcome.get("stray"), "a cancel request was left on the task"
    if order == "cancel-after-deadline" and abandon:
        assert isinstance(exc, SyncBridgeTimeout), repr(exc)
        assert outcome["cancelling"] == 0
        assert (s.timeouts, s.cancellations) == (1, 0)
    else:
        assert isinstance(exc, asyncio.CancelledError), repr(exc)
        assert outcome["cancelling"] == 1
        assert (s.timeouts, s.cancellations) == (0, 1)
    assert s.calls == 1


# -- asyncio.timeout / wait_for with the same or a near deadline --------------


@pytest.mark.parametrize("abandon", [True, False], ids=["abandon", "wait"])
@pytest.mark.parametrize("outer", ["asyncio.timeout", "wait_for"])
@pytest.mark.parametrize(
    "skew", [-0.002, 0.0, 0.002], ids=["outer-first", "equal", "inner-first"]
)
@pytest.mark.parametrize("loop_class", LOOPS)
def test_native_timeout_around_a_timed_call(
    loop_class: type[asyncio.AbstractEventLoop], skew: float, outer: str, abandon: bool
) -> None:
    """Both deadlines, equal or near: a TimeoutError, no cancel request left over.

    The outer timeout, if it fired first, raises the builtin TimeoutError (its
    cancel converted), else the call's SyncBridgeTimeout passes through it.
    Either way the task is not cancelled afterwards and the call is counted once.
    """
    t = 0.05
    b = Bridge(max_workers=2, shutdown_grace=1.0)
    blocker = _Blocker()
    seen: list[tuple[BaseException, int, bool]] = []

    async def main() -> None:
        task = asyncio.current_task()
        assert task is not None
        timed = syncbridge.to_async(
            blocker, timeout=t, abandon_on_cancel=abandon, bridge=b
        )
        releaser = asyncio.get_running_loop().call_later(4 * t, blocker.release.set)
        try:
            if outer == "asyncio.timeout":
                async with asyncio.timeout(t + skew):
                    await timed()
            else:
                await asyncio.wait_for(timed(), t + skew)
        except BaseException as exc:
            stray = False
            try:
                await asyncio.sleep(0)
                await asyncio.sleep(0)
            except asyncio.CancelledError:
                stray = True
            seen.append((exc, task.cancelling(), stray))
        finally:
            releaser.cancel()
            blocker.release.set()

    try:
        with asyncio.Runner(loop_factory=loop_class) as runner:
            for _ in range(5):
                blocker.release.clear()
                runner.run(main())
        s = _settled(b)
    finally:
        blocker.release.set()
        b.close()
    assert len(seen) == 5
    for exc, cancelling, stray in seen:
        assert isinstance(exc, TimeoutError), repr(exc)
        assert not isinstance(exc, asyncio.CancelledError)
        assert cancelling == 0
        assert not stray
    assert s.calls == 5
    assert s.timeouts + s.cancellations == 5


# -- a TaskGroup sibling fails ------------------------------------------------


@pytest.mark.parametrize("abandon", [True, False], ids=["abandon", "wait"])
@pytest.mark.parametrize("when", ["before-deadline", "deadline-in-same-tick"])
@pytest.mark.parametrize("loop_class", LOOPS)
def test_taskgroup_sibling_fails_around_a_timed_call(
    loop_class: type[asyncio.AbstractEventLoop], when: str, abandon: bool
) -> None:
    """The group raises the sibling's error; the call counts as cancelled.

    A deadline that fires in the tick the group cancels the call (just after)
    changes nothing.
    """
    b = Bridge(max_workers=2, shutdown_grace=1.0)
    blocker = _Blocker()
    raised: list[BaseException] = []
    left: list[int] = []

    async def main(held: list[Callable[[], object]]) -> None:
        timed = syncbridge.to_async(
            blocker, timeout=30, abandon_on_cancel=abandon, bridge=b
        )
        task = asyncio.current_task()
        assert task is not None

        async def sibling() -> None:
            await _wait_thread_event(blocker.entered)
            if not abandon:
                asyncio.get_running_loop().call_later(0.05, blocker.release.set)
            raise ValueError("sibling")

        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(timed())
                failing = tg.create_task(sibling())
                if when == "deadline-in-same-tick":
                    # Runs just after the group's own done-callback cancels the call.
                    failing.add_done_callback(lambda _: held[0]())
        except BaseException as exc:
            raised.append(exc)
        left.append(task.cancelling())
        blocker.release.set()

    try:
        _run_with_fake_deadline(loop_class, main)
        s = _settled(b)
    finally:
        blocker.release.set()
        b.close()
    (exc,) = raised
    assert isinstance(exc, ExceptionGroup), repr(exc)
    assert left == [_taskgroup_leaves_cancelling()]
    assert [type(e) for e in exc.exceptions] == [ValueError], exc.exceptions
    assert (s.calls, s.cancellations, s.timeouts) == (1, 1, 0)


def _taskgroup_leaves_cancelling() -> int:
    """What a failed TaskGroup leaves in ``cancelling()`` of its task, on this Python.

    CPython 3.11 leaves its own cancel request (gh-116720); later ones do not.
    """

    async def main() -> int:
        async def sibling() -> None:
            await asyncio.sleep(0)
            raise ValueError

        with contextlib.suppress(ExceptionGroup):
            async with asyncio.TaskGroup() as tg:
                tg.create_task(asyncio.sleep(BOUND))
                tg.create_task(sibling())
        task = asyncio.current_task()
        assert task is not None
        return task.cancelling()

    return asyncio.run(main())


# -- an anyio scope cancelled while a timed-out call is waited for ------------


@pytest.mark.anyio
async def test_scope_cancelled_while_timed_out_call_is_waited_for(
    anyio_backend: str,
) -> None:
    """The scope's cancellation wins over the timeout, on both backends.

    The call timed out; with abandon_on_cancel=False its await waits for the
    function. The scope around it is cancelled meanwhile: the scope swallows
    its cancellation, no SyncBridgeTimeout escapes it.
    """
    b = Bridge(max_workers=2, shutdown_grace=1.0)
    flagged = threading.Event()
    release = threading.Event()

    def f() -> None:
        while True:
            try:
                syncbridge.check_cancelled()
            except BaseException:
                flagged.set()
                break
            if release.wait(0.002):
                return
        assert release.wait(BOUND)

    timed = syncbridge.to_async(f, timeout=0.05, abandon_on_cancel=False, bridge=b)
    escaped: list[BaseException] = []
    try:
        with anyio.fail_after(BOUND):
            async with anyio.create_task_group() as tg:
                scope = anyio.CancelScope()

                async def caller() -> None:
                    try:
                        with scope:
                            await timed()
                    except BaseException as exc:
                        escaped.append(exc)
                        raise

                tg.start_soon(caller)
                await anyio.to_thread.run_sync(flagged.wait, BOUND)
                scope.cancel()
                await anyio.sleep(0.01)
                release.set()
        assert scope.cancelled_caught
        assert escaped == []
        s = await anyio.to_thread.run_sync(_settled, b)
        assert s.calls == 1
        assert s.timeouts + s.cancellations == 1
    finally:
        release.set()
        await anyio.to_thread.run_sync(b.close)


# -- SyncBridgeTimeout raised by the user's function --------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("timeout", [None, 30.0], ids=["untimed", "timed"])
async def test_users_own_syncbridgetimeout_passes_unchanged(
    anyio_backend: str, timeout: float | None
) -> None:
    """The function's SyncBridgeTimeout is its error: same object, counted an error."""
    b = Bridge(max_workers=2, shutdown_grace=1.0)
    mine = SyncBridgeTimeout("the function's own")

    def f() -> None:
        raise mine

    try:
        with pytest.raises(SyncBridgeTimeout) as info:
            await syncbridge.to_async(f, timeout=timeout, bridge=b)()
        assert info.value is mine
        s = await anyio.to_thread.run_sync(_settled, b)
        assert (s.calls, s.errors, s.timeouts) == (1, 1, 0)
    finally:
        await anyio.to_thread.run_sync(b.close)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_users_own_syncbridgetimeout_through_the_portal(backend: str) -> None:
    """A coroutine's SyncBridgeTimeout reaches the sync caller as itself."""
    b = Bridge(max_workers=2, shutdown_grace=1.0, backend=backend)  # type: ignore[arg-type]
    mine = SyncBridgeTimeout("the coroutine's own")

    async def coro() -> None:
        raise mine

    try:
        with pytest.raises(SyncBridgeTimeout) as info:
            b.sync_call_async(coro)
        assert info.value is mine
        with pytest.raises(SyncBridgeTimeout) as info:
            syncbridge.to_sync(coro, timeout=30, bridge=b)()
        assert info.value is mine
        portal = b.stats().portal
        assert (portal.errors, portal.timeouts) == (2, 0), portal
    finally:
        b.close()


@pytest.mark.anyio
@pytest.mark.parametrize(
    "skew", [-0.002, 0.0, 0.002], ids=["outer-first", "equal", "inner-first"]
)
@pytest.mark.parametrize("abandon", [True, False], ids=["abandon", "wait"])
async def test_anyio_fail_after_around_a_timed_call(
    anyio_backend: str, abandon: bool, skew: float
) -> None:
    """anyio.fail_after and the call's timeout, equal or near: a TimeoutError.

    Whichever wins, the task is left uncancelled (its next checkpoint passes)
    and the call is counted once.
    """
    t = 0.05
    b = Bridge(max_workers=2, shutdown_grace=1.0)
    release = threading.Event()

    def f() -> None:
        assert release.wait(BOUND)

    timed = syncbridge.to_async(f, timeout=t, abandon_on_cancel=abandon, bridge=b)
    try:
        for _ in range(3):
            release.clear()
            with anyio.fail_after(BOUND):
                async with anyio.create_task_group() as tg:

                    async def releaser() -> None:
                        await anyio.sleep(4 * t)
                        release.set()

                    tg.start_soon(releaser)
                    with pytest.raises(TimeoutError):
                        with anyio.fail_after(t + skew):
                            await timed()
                    await anyio.lowlevel.checkpoint()  # no cancellation left over
        s = await anyio.to_thread.run_sync(_settled, b)
        assert s.calls == 3
        assert s.timeouts + s.cancellations == 3
    finally:
        release.set()
        await anyio.to_thread.run_sync(b.close)


# -- close() mid-call -----------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    "heeds", [True, False], ids=["heeds-check_cancelled", "ignores-it"]
)
async def test_close_from_a_thread_while_timed_calls_are_in_flight(
    anyio_backend: str, heeds: bool
) -> None:
    """Every timed call in flight gets an outcome; none is lost or counted twice."""
    b = Bridge(max_workers=3, shutdown_grace=0.3)
    running = threading.Semaphore(0)
    release = threading.Event()

    def f() -> str:
        running.release()
        while not release.wait(0.002):
            if heeds:
                syncbridge.check_cancelled()
        return "done"

    timed = syncbridge.to_async(f, timeout=0.5, bridge=b)
    outcomes: list[object] = []

    async def call() -> None:
        try:
            outcomes.append(await timed())
        except (BridgeClosed, SyncBridgeTimeout, syncbridge.WorkerCancelled) as exc:
            outcomes.append(type(exc))

    try:
        with anyio.fail_after(BOUND):
            async with anyio.create_task_group() as tg:
                for _ in range(5):  # 3 run, 2 wait for a slot
                    tg.start_soon(call)
                for _ in range(3):
                    await anyio.to_thread.run_sync(running.acquire)
                await anyio.to_thread.run_sync(b.close)
        assert len(outcomes) == 5, outcomes
        s = b.stats().pools["default"]
        assert s.calls == 5
        assert s.completed + s.errors + s.cancellations + s.timeouts == 5, s
        assert s.busy == (0 if heeds else 3) - s.completed, s
    finally:
        release.set()
        await anyio.to_thread.run_sync(b.close)


@pytest.mark.anyio
async def test_close_from_the_bridges_own_worker(anyio_backend: str) -> None:
    """close() run by one of the bridge's workers returns; its own call completes."""
    b = Bridge(max_workers=2, shutdown_grace=0.3)
    with anyio.fail_after(BOUND):
        await syncbridge.to_async(b.close, timeout=BOUND, bridge=b)()
    assert b.closed
    s = await anyio.to_thread.run_sync(_settled, b)
    assert (s.calls, s.completed) == (1, 1)
    with pytest.raises(BridgeClosed):
        await syncbridge.to_async(time.sleep, bridge=b)(0)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_two_closers_both_return_after_the_portal_call_finished(backend: str) -> None:
    """A call finishing in the grace has its answer before either closer returns."""
    b = Bridge(max_workers=2, shutdown_grace=1.0, backend=backend)  # type: ignore[arg-type]
    started = threading.Event()

    async def finishing() -> str:
        started.set()
        await anyio.sleep(0.3)  # the work: it ends inside the grace
        return "ok"

    fut = b.start_soon(finishing)
    assert started.wait(BOUND)
    barrier = threading.Barrier(2)
    seen: list[tuple[bool, float]] = []
    lock = threading.Lock()

    def closer() -> None:
        barrier.wait(BOUND)
        b.close()
        with lock:
            seen.append((fut.done(), time.monotonic()))

    threads = [threading.Thread(target=closer) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(BOUND)
    assert len(seen) == 2
    assert all(done for done, _ in seen), "a closer returned before the call's answer"
    assert fut.result(0) == "ok"
    assert b.stats().portal.completed == 1


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_close_while_portal_calls_finish_in_the_grace(backend: str) -> None:
    """Sync callers blocked in portal calls all get an answer; the ledger adds up."""
    b = Bridge(max_workers=2, shutdown_grace=0.5, backend=backend)  # type: ignore[arg-type]
    n = 6
    started = threading.Semaphore(0)
    answers: list[object] = []
    lock = threading.Lock()

    async def work(i: int) -> int:
        started.release()
        if i % 2:
            await anyio.sleep(0.1 * i / n)  # finishes in the grace
        else:
            await anyio.sleep(3600)  # cancelled at the end of the grace
        return i

    def caller(i: int) -> None:
        try:
            result: object = b.sync_call_async(work, i)
        except BaseException as exc:
            result = type(exc)
        with lock:
            answers.append(result)

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for _ in range(n):
        assert started.acquire(timeout=BOUND)
    b.close()
    for t in threads:
        t.join(BOUND)
    assert sorted(a for a in answers if isinstance(a, int)) == [1, 3, 5]
    assert [a for a in answers if not isinstance(a, int)] == [BridgeClosed] * 3
    p = b.stats().portal
    assert p.calls == n, p
    assert p.completed + p.errors + p.cancellations + p.timeouts == n, p


def test_close_racing_add_pool() -> None:
    """A pool added while close() runs is closed, or refused: none is left open."""
    for _ in range(20):
        _race_close_and_add_pool()


def _race_close_and_add_pool() -> None:
    b = Bridge(max_workers=1, shutdown_grace=0.1)
    go = threading.Barrier(2)
    added: list[str] = []
    refused: list[str] = []

    def adder() -> None:
        go.wait(BOUND)
        for i in range(200):
            name = f"p{i}"
            try:
                b.add_pool(name, 1)
            except BridgeClosed:
                refused.append(name)
                return
            added.append(name)

    t = threading.Thread(target=adder)
    t.start()
    go.wait(BOUND)
    b.close()
    t.join(BOUND)

    async def use_all() -> None:
        for name in added:
            with pytest.raises(BridgeClosed):
                await syncbridge.to_async(time.sleep, pool=name, bridge=b)(0)

    asyncio.run(use_all())
    assert refused or len(added) == 200
    with pytest.raises(BridgeClosed):
        b.add_pool("after", 1)


# -- interpreter exit, fork, a loop ending under a call -------------------------


def _quiet(stderr: str) -> None:
    for noise in ("Traceback", "Task was destroyed", "never retrieved", "Fatal"):
        assert noise not in stderr, stderr


def test_exit_with_a_blocked_portal_caller_and_a_timed_call_in_flight() -> None:
    """Exit: quick, code 0, quiet; the blocked sync caller is answered."""
    script = """
        import asyncio, threading, time, sys
        import syncbridge

        portal_started = threading.Event()
        worker_started = threading.Event()

        async def forever():
            portal_started.set()
            await asyncio.sleep(3600)

        def blocked_caller():
            try:
                syncbridge.sync_call_async(forever)
            except syncbridge.BridgeClosed:
                print("caller: BridgeClosed", flush=True)

        def blocking():
            worker_started.set()
            time.sleep(3600)

        async def timed_in_flight():
            await syncbridge.to_async(blocking, timeout=600)()

        threading.Thread(target=blocked_caller, daemon=True).start()
        threading.Thread(
            target=asyncio.run, args=(timed_in_flight(),), daemon=True
        ).start()
        assert portal_started.wait(10) and worker_started.wait(10)
        print("main: exiting", flush=True)
    """
    start = time.monotonic()
    proc = run_script(script, timeout=30)
    took = time.monotonic() - start
    assert proc.returncode == 0, proc.stderr
    assert "main: exiting" in proc.stdout
    _quiet(proc.stderr)
    assert took < 15, took


def test_exit_from_a_loop_with_a_timed_call_in_flight() -> None:
    """SystemExit in asyncio.run while a timed call runs: the call is cancelled, quiet."""
    script = """
        import asyncio, threading, time, sys
        import syncbridge

        started = threading.Event()

        def blocking():
            started.set()
            time.sleep(3600)

        async def main():
            task = asyncio.create_task(syncbridge.to_async(blocking, timeout=600)())
            while not started.is_set():
                await asyncio.sleep(0.001)
            sys.exit(3)

        asyncio.run(main())
    """
    proc = run_script(script, timeout=30)
    assert proc.returncode == 3, proc.stderr
    _quiet(proc.stderr)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.parametrize("during", ["call-in-flight", "close-under-way"])
def test_fork_child_uses_the_default_bridge(during: str) -> None:
    """A child forked mid-call or mid-close gets a working default bridge."""
    script = """
        import asyncio, os, sys, threading, time, warnings
        import anyio
        import syncbridge

        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads
        DURING = "@DURING@"
        portal_started = threading.Event()
        worker_started = threading.Event()
        release = threading.Event()

        async def stubborn():
            portal_started.set()
            with anyio.CancelScope(shield=True):
                await anyio.sleep(1.0)  # outlives part of the close's grace
            return "late"

        def blocking():
            worker_started.set()
            release.wait(30)
            return "released"

        async def timed():
            return await syncbridge.to_async(blocking, timeout=30)()

        async def add(a, b):
            await anyio.sleep(0)
            return a + b

        # Warm up: a fork in the middle of an import (here anyio's backend, on
        # the portal thread) leaves the child that module's lock held forever.
        assert syncbridge.sync_call_async(add, 1, 1) == 2
        bridge = syncbridge.get_bridge()
        caller = threading.Thread(
            target=lambda: print("parent caller:", repr(bridge.start_soon(stubborn).result(30))),
        )
        caller.start()
        worker = threading.Thread(target=lambda: print("parent worker:", asyncio.run(timed())))
        worker.start()
        assert portal_started.wait(10) and worker_started.wait(10)
        closer = None
        if DURING == "close-under-way":
            closer = threading.Thread(target=bridge.close)
            closer.start()
            while not bridge.closed:
                time.sleep(0.001)

        pid = os.fork()
        if pid == 0:
            try:
                got = syncbridge.sync_call_async(add, 1, 2)
                got2 = asyncio.run(syncbridge.to_async(lambda: 4, timeout=10)())
                print("child:", got, got2, syncbridge.get_bridge().closed, flush=True)
                os._exit(0)
            except BaseException as exc:
                print("child failed:", repr(exc), flush=True)
                os._exit(1)
        _, status = os.waitpid(pid, 0)
        print("child status:", os.waitstatus_to_exitcode(status), flush=True)
        release.set()
        caller.join(30)
        worker.join(30)
        if closer is not None:
            closer.join(30)
    """.replace("@DURING@", during)
    proc = run_script(script, timeout=45)
    assert "child: 3 4 False" in proc.stdout, (proc.stdout, proc.stderr)
    assert "child status: 0" in proc.stdout, proc.stdout
    assert proc.returncode == 0, proc.stderr
    assert "parent worker: released" in proc.stdout, proc.stdout


def test_loop_ends_under_a_timed_call_in_an_unawaited_task() -> None:
    """asyncio.run ends while a task's timed run_blocking is pending: no lost call.

    The task is cancelled by asyncio.run's shutdown; the call is counted
    cancelled, its slot comes back when the function returns, and nothing is
    logged as never retrieved.
    """
    b = Bridge(max_workers=1, shutdown_grace=1.0)
    blocker = _Blocker()

    async def main() -> None:
        asyncio.get_running_loop().create_task(
            syncbridge.to_async(blocker, timeout=30, bridge=b)()
        )
        await _wait_thread_event(blocker.entered)

    errors: list[dict[str, Any]] = []

    def handler(loop: asyncio.AbstractEventLoop, ctx: dict[str, Any]) -> None:
        errors.append(ctx)

    s = None
    try:
        for factory in [asyncio.SelectorEventLoop, *_uvloop_factory()]:
            blocker.entered.clear()
            blocker.release.clear()
            with asyncio.Runner(loop_factory=factory) as runner:
                runner.get_loop().set_exception_handler(handler)
                runner.run(main())
            blocker.release.set()
            s = _settled(b)
            assert s.busy == 0
        assert errors == []
        assert s is not None
        assert s.calls == s.cancellations
        # The pool still works: the slot came back.
        assert (
            asyncio.run(syncbridge.to_async(lambda: 5, timeout=BOUND, bridge=b)()) == 5
        )
    finally:
        blocker.release.set()
        b.close()


def _uvloop_factory() -> list[Any]:
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return []
    return [uvloop.new_event_loop]


@contextlib.contextmanager
def _unused() -> Iterator[None]:  # pragma: no cover - keeps imports honest
    yield


# -- more edges of the one await path -------------------------------------------


@pytest.mark.parametrize("loop_class", LOOPS)
@pytest.mark.parametrize("timeout", [float("inf"), 1e300, 1e12])
def test_a_huge_timeout_never_fires_early(
    loop_class: type[asyncio.AbstractEventLoop], timeout: float
) -> None:
    """A deadline far away (even infinite) is a deadline that never passes."""
    b = Bridge(max_workers=1, shutdown_grace=1.0)
    blocker = _Blocker()

    async def main() -> str:
        loop = asyncio.get_running_loop()
        loop.call_soon(lambda: loop.run_in_executor(None, _release_later, blocker))
        return await syncbridge.to_async(blocker, timeout=timeout, bridge=b)()

    try:
        with asyncio.Runner(loop_factory=loop_class) as runner:
            assert runner.run(main()) == "done"
        s = _settled(b)
        assert (s.calls, s.completed) == (1, 1)
    finally:
        blocker.release.set()
        b.close()


def _release_later(blocker: _Blocker) -> None:
    """Release *blocker* a little after it entered: the call really waits."""
    assert blocker.entered.wait(BOUND)
    time.sleep(0.05)  # the call runs for a while: long past a timer fired "early"
    blocker.release.set()


@pytest.mark.parametrize("abandon", [True, False], ids=["abandon", "wait"])
@pytest.mark.parametrize("loop_class", LOOPS)
def test_timed_call_in_cancellation_cleanup(
    loop_class: type[asyncio.AbstractEventLoop], abandon: bool
) -> None:
    """A timed call made while handling a cancel times out as a timeout.

    The task's own cancel request (not uncancelled) is not mistaken for a new
    one, and it is still there afterwards: one request, neither swallowed nor
    doubled.
    """
    b = Bridge(max_workers=2, shutdown_grace=1.0)
    blocker = _Blocker()
    seen: list[object] = []

    async def main() -> None:
        async def victim() -> None:
            try:
                await asyncio.sleep(BOUND)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                assert task is not None
                try:
                    await syncbridge.to_async(
                        blocker, timeout=0.05, abandon_on_cancel=abandon, bridge=b
                    )()
                except SyncBridgeTimeout:
                    seen.append(("timeout", task.cancelling()))
                raise

        task = asyncio.create_task(victim())
        await asyncio.sleep(0)
        task.cancel()
        if not abandon:
            asyncio.get_running_loop().call_later(0.2, blocker.release.set)
        with contextlib.suppress(asyncio.CancelledError):
            await task
        seen.append(task.cancelled())
        blocker.release.set()

    try:
        with asyncio.Runner(loop_factory=loop_class) as runner:
            runner.run(main())
        s = _settled(b)
    finally:
        blocker.release.set()
        b.close()
    assert seen == [("timeout", 1), True]
    assert (s.calls, s.timeouts) == (1, 1)


@pytest.mark.anyio
async def test_calls_that_must_meet_after_a_burst_of_short_calls(
    anyio_backend: str,
) -> None:
    """Two calls that wait for each other both run, even right after short calls.

    On a free-threaded build short calls queue for a worker per core but one;
    a call that blocks must not keep a queued one from a thread for long.
    """
    b = Bridge(max_workers=4, shutdown_grace=1.0)
    short = syncbridge.to_async(lambda: None, bridge=b)
    meet = threading.Barrier(2)
    both = syncbridge.to_async(meet.wait, bridge=b)
    try:
        with anyio.fail_after(BOUND):
            for _ in range(3):
                async with anyio.create_task_group() as tg:
                    for _ in range(200):
                        tg.start_soon(short)
                async with anyio.create_task_group() as tg:
                    tg.start_soon(both, BOUND)
                    tg.start_soon(both, BOUND)
                meet.reset()
        s = await anyio.to_thread.run_sync(_settled, b)
        assert s.errors == 0
    finally:
        await anyio.to_thread.run_sync(b.close)


@pytest.mark.parametrize(
    "loop_factory", [asyncio.SelectorEventLoop, *_uvloop_factory()]
)
def test_loop_ends_under_a_nested_call_of_a_timed_call(loop_factory: Any) -> None:
    """The loop a worker's sync_call_async runs on ends: the worker is answered.

    A task not awaited runs a timed call whose function calls back into that
    loop; asyncio.run ends (cancelling both): the function's call raises at
    once instead of waiting out the timeout, and the slot comes back.
    """
    b = Bridge(max_workers=1, shutdown_grace=1.0)
    inside = threading.Event()
    answer: list[object] = []

    async def forever() -> None:
        inside.set()
        await asyncio.sleep(3600)

    def f() -> None:
        try:
            syncbridge.sync_call_async(forever)
        except BaseException as exc:
            answer.append(type(exc))
            raise

    async def main() -> None:
        asyncio.get_running_loop().create_task(
            syncbridge.to_async(f, timeout=BOUND * 10, bridge=b)()
        )
        await _wait_thread_event(inside)

    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            runner.run(main())
        s = _settled(b)
        assert len(answer) == 1
        assert answer == [syncbridge.WorkerCancelled]  # its awaiter was cancelled
        assert (s.calls, s.cancellations) == (1, 1)
    finally:
        b.close()


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_close_with_no_grace_answers_every_portal_caller(backend: str) -> None:
    """shutdown_grace=0: every blocked sync caller gets an answer, counted once."""
    b = Bridge(max_workers=2, shutdown_grace=0, backend=backend)  # type: ignore[arg-type]
    n = 4
    started = threading.Semaphore(0)
    answers: list[object] = []
    lock = threading.Lock()

    async def work() -> None:
        started.release()
        await anyio.sleep(3600)

    def caller() -> None:
        try:
            result: object = b.sync_call_async(work)
        except BaseException as exc:
            result = type(exc)
        with lock:
            answers.append(result)

    threads = [threading.Thread(target=caller) for _ in range(n)]
    for t in threads:
        t.start()
    for _ in range(n):
        assert started.acquire(timeout=BOUND)
    b.close()
    for t in threads:
        t.join(BOUND)
    assert answers == [BridgeClosed] * n
    p = b.stats().portal
    assert p.calls == n, p
    assert p.completed + p.errors + p.cancellations + p.timeouts == n, p


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_exit_with_a_user_bridge_caller_blocked(backend: str) -> None:
    """Exit with a thread blocked on a user bridge's portal: quick, code 0, quiet."""
    script = """
        import threading, time
        import anyio
        from syncbridge import Bridge, BridgeClosed

        b = Bridge(backend="@BACKEND@", shutdown_grace=0.2)
        started = threading.Event()

        async def forever():
            started.set()
            await anyio.sleep(3600)

        def blocked():
            try:
                b.sync_call_async(forever)
            except BridgeClosed:
                print("caller: BridgeClosed", flush=True)

        threading.Thread(target=blocked, daemon=True).start()
        assert started.wait(10)
        print("main: exiting", flush=True)
    """.replace("@BACKEND@", backend)
    start = time.monotonic()
    proc = run_script(script, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert "main: exiting" in proc.stdout
    _quiet(proc.stderr)
    assert time.monotonic() - start < 15


@pytest.mark.parametrize("abandon", [True, False], ids=["abandon", "wait"])
@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_close_run_by_a_worker_a_portal_call_awaits(
    backend: str, abandon: bool
) -> None:
    """A portal call awaits a worker that closes the bridge: all ends, in bound.

    The close waits for the portal call, which waits for the close: the grace
    breaks the cycle. The sync caller is answered, every thread ends.
    """
    grace = 0.3
    b = Bridge(max_workers=2, shutdown_grace=grace, backend=backend)  # type: ignore[arg-type]
    closer = syncbridge.to_async(b.close, abandon_on_cancel=abandon, bridge=b)

    async def coro() -> str:
        await closer()
        return "closed"

    start = time.monotonic()
    try:
        got: object = b.sync_call_async(coro)
    except BaseException as exc:
        got = type(exc)
    took = time.monotonic() - start
    assert got in ("closed", BridgeClosed), got
    assert took < 2 * grace + 0.5 + 5.0, took  # close()'s own bound, and a margin
    assert b.closed
    # Counted either way, even when the close abandons the awaiting task
    # (test_a_waited_for_call_whose_awaiter_close_abandons_is_counted).
    assert _settled(b).calls == 1
    p = b.stats().portal
    assert p.calls == 1
    assert p.completed + p.errors + p.cancellations + p.timeouts == 1, p
    end = time.monotonic() + BOUND
    while any(
        t.name.startswith(f"syncbridge-portal-{b.name}") for t in threading.enumerate()
    ):
        assert time.monotonic() < end, "the portal thread never ended"
        time.sleep(0.01)


def _closing_bridge(backend: str) -> Bridge:
    """A bridge with a short grace on *backend*: asyncio, uvloop or trio."""
    if backend == "uvloop":
        pytest.importorskip("uvloop")
        return Bridge(max_workers=2, shutdown_grace=0.1, use_uvloop=True)
    return Bridge(max_workers=2, shutdown_grace=0.1, backend=backend)  # type: ignore[arg-type]


@pytest.mark.parametrize("backend", ["asyncio", "uvloop", "trio"])
def test_a_waited_for_call_whose_awaiter_close_abandons_is_counted(
    backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A portal task waiting (abandon_on_cancel=False) for a slow call is abandoned
    by close(): the call still ends in the totals, once, cancelled; its slot
    comes back when its function returns; nothing is logged as an error.

    On asyncio the task was left suspended on the stopped portal loop, so the
    pool showed calls=1 with no outcome and nothing running, for good.
    """
    b = _closing_bridge(backend)
    blocker = _Blocker()

    async def coro() -> str:
        return await syncbridge.to_async(blocker, abandon_on_cancel=False, bridge=b)()

    fut = b.start_soon(coro)
    assert blocker.entered.wait(BOUND)
    with caplog.at_level(logging.DEBUG, logger="syncbridge"):
        b.close()  # cancels coro after the grace; it waits for blocker; abandoned
    assert fut.cancelled()
    assert b.stats().pools["default"].busy == 1  # blocker still runs
    blocker.release.set()
    s = _settled(b)
    assert (s.calls, s.cancellations, s.errors) == (1, 1, 0), s
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    if backend != "trio":
        events = [getattr(r, "syncbridge_event", None) for r in caplog.records]
        assert "task-abandoned-at-close" in events, events
        assert "task-close-failed" not in events, events


@pytest.mark.parametrize("backend", ["asyncio", "uvloop", "trio"])
def test_a_task_awaiting_in_finally_when_close_abandons_it_is_logged(
    backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    """An abandoned portal task that awaits in a ``finally`` as close() ends it:
    close() returns, the portal thread ends, the call is counted once, and
    (asyncio) its refusal to close is logged, not raised.
    """
    b = _closing_bridge(backend)
    blocker = _Blocker()
    cleaned = threading.Event()

    async def coro() -> str:
        try:
            return await syncbridge.to_async(
                blocker, abandon_on_cancel=False, bridge=b
            )()
        finally:
            cleaned.set()
            await anyio.sleep(0)  # awaits during close: an asyncio close refuses

    fut = b.start_soon(coro)
    assert blocker.entered.wait(BOUND)
    with caplog.at_level(logging.DEBUG, logger="syncbridge"):
        b.close()
    assert fut.cancelled()
    blocker.release.set()
    s = _settled(b)
    assert (s.calls, s.cancellations, s.errors) == (1, 1, 0), s
    end = time.monotonic() + BOUND
    while any(
        t.name.startswith(f"syncbridge-portal-{b.name}") for t in threading.enumerate()
    ):
        assert time.monotonic() < end, "the portal thread never ended"
        time.sleep(0.01)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    if backend != "trio":  # trio waits for it, and its finally runs in full
        assert cleaned.is_set()
        failed = [
            r
            for r in caplog.records
            if getattr(r, "syncbridge_event", None) == "task-close-failed"
        ]
        assert len(failed) == 1, caplog.records
        assert failed[0].levelno == logging.WARNING


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_child_forked_mid_close_does_not_wait_for_the_parents_close(
    backend: str,
) -> None:
    """In a child forked while a bridge closes, close() returns at once.

    The parent's close runs on in the parent only: the child has none of its
    threads and nothing to wait for. (Its close() waited out the parent's whole
    deadline, ``2 * grace + 0.75`` s, and so did the child's interpreter exit.)
    """
    script = """
        import os, sys, threading, time, warnings
        import anyio
        from syncbridge import Bridge, BridgeClosed

        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads
        b = Bridge(shutdown_grace=3.0, backend="@BACKEND@")
        started = threading.Event()

        async def stubborn():
            started.set()
            with anyio.CancelScope(shield=True):
                await anyio.sleep(2.0)  # keeps the parent's close under way

        b.start_soon(stubborn)
        assert started.wait(10)
        closer = threading.Thread(target=b.close)
        closer.start()
        while not b.closed:
            time.sleep(0.001)
        pid = os.fork()
        if pid == 0:
            start = time.monotonic()
            b.close()
            print("child close: %.2f s" % (time.monotonic() - start), flush=True)
            try:
                b.start_soon(stubborn)
            except BridgeClosed:
                print("child: refused", flush=True)
            sys.exit(0)  # the exit hook closes b again
        start = time.monotonic()
        _, status = os.waitpid(pid, 0)
        print("child took: %.2f s" % (time.monotonic() - start), flush=True)
        print("child status:", os.waitstatus_to_exitcode(status), flush=True)
        closer.join(30)
    """.replace("@BACKEND@", backend)
    proc = run_script(script, timeout=45)
    assert "child status: 0" in proc.stdout, (proc.stdout, proc.stderr)
    assert "child: refused" in proc.stdout, proc.stdout
    lines = dict(line.split(": ", 1) for line in proc.stdout.splitlines())
    assert float(lines["child close"].split()[0]) < 3.0, proc.stdout  # was 6.75
    assert float(lines["child took"].split()[0]) < 5.0, proc.stdout


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_close_while_timed_portal_calls_time_out_in_the_grace(backend: str) -> None:
    """to_sync(timeout=) calls whose deadline passes during close(): one answer each.

    Those whose deadline comes first time out, the others get BridgeClosed;
    the portal's ledger counts each once.
    """
    b = Bridge(max_workers=2, shutdown_grace=0.5, backend=backend)  # type: ignore[arg-type]
    started = threading.Semaphore(0)
    answers: list[object] = []
    lock = threading.Lock()

    async def forever() -> None:
        started.release()
        await anyio.sleep(3600)

    def caller(timeout: float) -> None:
        try:
            result: object = syncbridge.to_sync(forever, timeout=timeout, bridge=b)()
        except BaseException as exc:
            result = type(exc)
        with lock:
            answers.append(result)

    timeouts = [0.1, 0.2, 60.0, 60.0]
    threads = [threading.Thread(target=caller, args=(t,)) for t in timeouts]
    for t in threads:
        t.start()
    for _ in timeouts:
        assert started.acquire(timeout=BOUND)
    b.close()
    for t in threads:
        t.join(BOUND)
    assert sorted(map(str, answers)) == sorted(
        map(str, [SyncBridgeTimeout, SyncBridgeTimeout, BridgeClosed, BridgeClosed])
    ), answers
    p = b.stats().portal
    assert p.calls == 4, p
    assert p.completed + p.errors + p.cancellations + p.timeouts == 4, p
    assert p.timeouts == 2, p


def test_close_racing_calls_on_a_new_executor() -> None:
    """Calls on an executor the bridge has no pool for yet, racing close(): each
    is answered (run, or refused with BridgeClosed), none is left waiting."""
    for _ in range(10):
        _race_close_and_executor_calls()


def _race_close_and_executor_calls() -> None:
    import concurrent.futures

    b = Bridge(max_workers=1, shutdown_grace=0.2)
    go = threading.Barrier(3)
    answers: list[object] = []
    lock = threading.Lock()
    executors = [concurrent.futures.ThreadPoolExecutor(1) for _ in range(20)]

    def caller(mine: list[concurrent.futures.Executor]) -> None:
        async def main() -> None:
            for ex in mine:
                try:
                    got: object = await syncbridge.to_async(
                        lambda: 1, executor=ex, bridge=b
                    )()
                except BridgeClosed:
                    got = BridgeClosed
                with lock:
                    answers.append(got)

        go.wait(BOUND)
        asyncio.run(main())

    threads = [
        threading.Thread(target=caller, args=(executors[i::2],)) for i in range(2)
    ]
    for t in threads:
        t.start()
    go.wait(BOUND)
    b.close()
    for t in threads:
        t.join(BOUND)
        assert not t.is_alive()
    for ex in executors:
        ex.shutdown(wait=True)
    assert len(answers) == 20
    assert set(answers) <= {1, BridgeClosed}
    stats = b.stats()
    assert stats.calls == stats.completed + stats.errors, stats


@pytest.mark.anyio
async def test_a_zero_timeout_never_runs_the_function(anyio_backend: str) -> None:
    """timeout=0: SyncBridgeTimeout, counted a timeout, the function never called;
    in a scope cancelled already, the cancellation wins and nothing runs either."""
    b = Bridge(max_workers=1, shutdown_grace=1.0)
    ran: list[int] = []
    zero = syncbridge.to_async(lambda: ran.append(1), timeout=0, bridge=b)
    try:
        with pytest.raises(SyncBridgeTimeout):
            await zero()
        with anyio.CancelScope() as scope:
            scope.cancel()
            await zero()
        assert scope.cancelled_caught
        s = await anyio.to_thread.run_sync(_settled, b)
        assert ran == []
        assert (s.calls, s.timeouts, s.cancellations) == (2, 1, 1), s
    finally:
        await anyio.to_thread.run_sync(b.close)
