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

from syncbridge._core._loops import AsyncioLoop, Call, TrioLoop
from syncbridge._core._outcome import Cancelled, Value


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
