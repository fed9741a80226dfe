"""Loop handles: starting a call on a loop, and a cancel that lands mid-start."""

from __future__ import annotations

import asyncio
import contextvars
import sys
import threading
from typing import Any

import pytest
import trio
import trio.testing

from syncbridge._core._calls import Call
from syncbridge._core._loops import (
    AsyncioLoop,
    LoopGone,
    PortalAsyncioLoop,
    TrioLoop,
    loop_running_in_this_thread,
)
from syncbridge._core._outcome import Cancelled, Error, Value


def _call(body: Any, finished: threading.Event) -> Call[None]:
    call: Call[None] = Call(body, (), {}, contextvars.copy_context(), None)
    call.on_done = lambda _call: finished.set()
    return call


def test_asyncio_cancel_between_task_creation_and_registration_still_finishes() -> None:
    """The task is cancelled before its first step, yet the call gets an outcome.

    A cancel() from another thread between create_task and the registration of
    ``cancel_on_loop`` is simulated by setting the flag inside create_task: the
    cancel itself finds nothing to cancel yet, so ``_start`` must notice it.
    """
    entered = threading.Event()
    finished = threading.Event()

    async def body() -> None:
        entered.set()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        handle = AsyncioLoop(loop)
        call = _call(body, finished)
        create_task = loop.create_task

        def create_then_cancel(coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
            task = create_task(coro, **kwargs)
            call.request_cancel()  # no task to cancel yet: only the flag is set
            return task

        loop.create_task = create_then_cancel  # type: ignore[method-assign]
        try:
            handle._start(call)
        finally:
            del loop.create_task
        for _ in range(5):
            await asyncio.sleep(0)
        assert call.done
        assert isinstance(call.outcome, Cancelled)

    asyncio.run(main())
    assert finished.is_set()
    assert not entered.is_set()


@pytest.mark.parametrize("host", ["new", "parked"])
def test_trio_cancel_between_start_and_the_hosts_first_step_skips_the_body(
    host: str,
) -> None:
    """A cancel that lands after ``_start`` handed the call to a host task.

    The host has not run yet, so there is no scope to cancel: the request only
    sets the flag, and the host must notice it and never start the body. With
    ``host="parked"`` an earlier call left a parked host, which is reused.
    """
    entered = threading.Event()
    finished = threading.Event()

    async def body() -> None:
        entered.set()
        await trio.sleep(0)

    async def main() -> None:
        handle = TrioLoop(trio.lowlevel.current_trio_token())
        if host == "parked":
            earlier_done = threading.Event()
            earlier = _call(trio.lowlevel.checkpoint, earlier_done)
            handle._start(earlier)
            await trio.testing.wait_all_tasks_blocked()
            assert earlier_done.is_set()
            assert isinstance(earlier.outcome, Value)
        call = _call(body, finished)
        handle._start(call)
        call.request_cancel()  # from "another thread": no scope is registered yet
        await trio.testing.wait_all_tasks_blocked()
        assert call.done
        assert isinstance(call.outcome, Cancelled)

    trio.run(main)
    assert finished.is_set()
    assert not entered.is_set()


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_call_cancelled_before_it_is_started_never_runs(backend: str) -> None:
    entered = threading.Event()
    finished = threading.Event()

    async def body() -> None:
        entered.set()

    call = _call(body, finished)
    call.request_cancel()

    if backend == "asyncio":

        async def run_asyncio() -> None:
            AsyncioLoop(asyncio.get_running_loop())._start(call)

        asyncio.run(run_asyncio())
    else:

        async def run_trio() -> None:
            TrioLoop(trio.lowlevel.current_trio_token())._start(call)

        trio.run(run_trio)
    assert finished.is_set()
    assert isinstance(call.outcome, Cancelled)
    assert not entered.is_set()


@pytest.mark.skipif(sys.version_info < (3, 12), reason="eager tasks are new in 3.12")
def test_asyncio_cancel_during_an_eager_first_step_finishes_the_call_once() -> None:
    """With an eager task factory the body starts inside create_task itself."""
    outcomes: list[bool] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.set_task_factory(asyncio.eager_task_factory)  # type: ignore[attr-defined,unused-ignore]
        handle = AsyncioLoop(loop)

        async def body() -> None:
            call.request_cancel()  # another thread's cancel, mid first step
            await asyncio.sleep(0)

        call: Call[None] = Call(body, (), {}, contextvars.copy_context(), None)
        call.on_done = lambda done: outcomes.append(isinstance(done.outcome, Cancelled))
        handle._start(call)
        for _ in range(5):
            await asyncio.sleep(0)

    asyncio.run(main())
    assert outcomes == [True]


def test_the_trio_run_check_answers_per_thread() -> None:
    """The cheap check (trio's thread-local, read without raising) is per thread.

    In the run's thread it finds the token; in that run's worker thread, and in
    a plain thread while the run goes on elsewhere, nothing; after the run,
    nothing. It answers as trio's own ``in_trio_run`` does, where trio has one.
    """
    from syncbridge._core import _loops

    seen: dict[str, object] = {}

    def elsewhere() -> None:
        seen["plain thread"] = loop_running_in_this_thread()
        seen["plain thread, trio says"] = _in_trio_run_says()

    async def main() -> None:
        seen["run"] = loop_running_in_this_thread()
        seen["token"] = trio.lowlevel.current_trio_token()
        seen["run, trio says"] = _in_trio_run_says()
        seen["worker"] = await trio.to_thread.run_sync(loop_running_in_this_thread)
        thread = threading.Thread(target=elsewhere)
        thread.start()
        await trio.to_thread.run_sync(thread.join)

    seen["before"] = loop_running_in_this_thread()
    trio.run(main)
    seen["after"] = loop_running_in_this_thread()
    assert seen["run"] is seen["token"]
    assert seen["worker"] is None
    assert seen["plain thread"] is None
    assert seen["before"] is None
    assert seen["after"] is None
    assert seen["run, trio says"] in (True, None)
    assert seen["plain thread, trio says"] in (False, None)
    assert _loops._trio_run_here is not None  # loaded once trio was imported


def _in_trio_run_says() -> bool | None:
    in_trio_run = getattr(trio.lowlevel, "in_trio_run", None)
    return None if in_trio_run is None else bool(in_trio_run())


def test_the_trio_run_check_falls_back_when_trio_changes_its_layout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A trio whose run context is not where it was uses trio's own check."""
    from syncbridge._core import _loops

    monkeypatch.setattr(trio._core._run, "GLOBAL_RUN_CONTEXT", object())
    monkeypatch.setattr(_loops, "_trio_run_here", None)
    check = _loops._load_trio_check()
    assert check is getattr(trio.lowlevel, "in_trio_run", _loops._in_trio_run)
    monkeypatch.undo()
    answers: list[object] = []

    async def main() -> None:
        answers.append(check())

    trio.run(main)
    assert answers == [True]
    assert not check()


def test_a_calls_name_is_its_qualified_name_and_a_partial_names_its_function() -> None:
    import functools

    async def body(x: int = 0) -> None:
        pass

    ctx = contextvars.copy_context()
    assert Call(body, (), {}, ctx, None).name == body.__qualname__
    partial = functools.partial(body, 1)
    partial.__qualname__ = "ignored"  # type: ignore[attr-defined]
    assert Call(partial, (), {}, ctx, None).name == (
        f"functools.partial({body.__qualname__}, ...)"
    )


def _counting(loop: asyncio.AbstractEventLoop) -> list[object]:
    """Record every call_soon_threadsafe on *loop* (an instance attribute)."""
    posted: list[object] = []
    original = loop.call_soon_threadsafe

    def call_soon_threadsafe(callback: Any, *args: Any, **kwargs: Any) -> Any:
        posted.append(callback)
        return original(callback, *args, **kwargs)

    loop.call_soon_threadsafe = call_soon_threadsafe  # type: ignore[method-assign,assignment]
    return posted


def test_the_portal_loop_starts_calls_sent_at_once_in_order_with_one_wake_up() -> None:
    """Calls that join the intake before the loop empties it share one wake-up."""
    order: list[int] = []

    def body(i: int) -> Any:
        async def run() -> int:
            order.append(i)
            return i

        return run

    async def main() -> None:
        loop = asyncio.get_running_loop()
        posted = _counting(loop)
        handle = PortalAsyncioLoop(loop)
        finished = [threading.Event() for _ in range(20)]
        calls = [_call(body(i), finished[i]) for i in range(20)]
        for call in calls:  # the loop cannot run meanwhile: one wake-up
            handle.submit(call)
        assert len(posted) == 1
        await asyncio.sleep(0.01)
        assert all(e.is_set() for e in finished)
        outcomes = [c.outcome for c in calls]
        assert [o.value for o in outcomes if isinstance(o, Value)] == list(range(20))
        assert order == list(range(20))
        # The intake was emptied: the next call wakes the loop again.
        again = threading.Event()
        handle.submit(_call(body(20), again))
        assert len(posted) == 2
        await asyncio.sleep(0.01)
        assert again.is_set()

    asyncio.run(main())


def test_the_portal_loop_starts_every_call_sent_from_many_threads() -> None:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever)
    thread.start()
    try:
        handle = PortalAsyncioLoop(loop)

        async def one() -> int:
            await asyncio.sleep(0)
            return 1

        results: list[object] = []
        lock = threading.Lock()

        def caller() -> None:
            for _ in range(200):
                done = threading.Event()
                call = _call(one, done)
                handle.submit(call)
                assert done.wait(10)
                assert isinstance(call.outcome, Value)
                with lock:
                    results.append(call.outcome.value)

        callers = [threading.Thread(target=caller) for _ in range(8)]
        for t in callers:
            t.start()
        for t in callers:
            t.join()
        assert results == [1] * 1600
        assert not handle._intake
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()


def test_the_portal_loop_refuses_a_call_once_closed_and_keeps_none() -> None:
    loop = asyncio.new_event_loop()
    loop.close()
    handle = PortalAsyncioLoop(loop)
    with pytest.raises(LoopGone):
        handle.submit(_call(asyncio.sleep, threading.Event()))
    assert not handle._intake
    assert not handle._wake_pending


def test_a_portal_call_that_cannot_start_gets_the_error_and_the_next_still_starts() -> (
    None
):
    async def body() -> int:
        return 2

    class Failing(PortalAsyncioLoop):
        __slots__ = ()

        def _start(self, call: Call[Any]) -> None:
            if call.func is failing:
                raise RuntimeError("cannot start")
            super()._start(call)

    async def failing() -> int:
        return 1

    async def main() -> None:
        handle = Failing(asyncio.get_running_loop())
        first_done, second_done = threading.Event(), threading.Event()
        first = _call(failing, first_done)
        second = _call(body, second_done)
        handle.submit(first)
        handle.submit(second)
        await asyncio.sleep(0.01)
        assert first_done.is_set()
        assert second_done.is_set()
        assert isinstance(first.outcome, Error)
        assert str(first.outcome.error) == "cannot start"
        assert isinstance(second.outcome, Value)
        assert second.outcome.value == 2

    asyncio.run(main())
