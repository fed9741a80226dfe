"""An outside review of the one await path, the close and the process hooks (#23).

Each test cancels, closes, exits or forks the way users do, at the awaits of a
timed call, and checks the exception, the call's count and its slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
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
@pytest.mark.parametrize("skew", [-0.002, 0.0, 0.002], ids=["outer-first", "equal", "inner-first"])
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
        timed = syncbridge.to_async(blocker, timeout=t, abandon_on_cancel=abandon, bridge=b)
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
        assert portal.timeouts == 0, portal
    finally:
        b.close()
