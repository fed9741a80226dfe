"""The portal loop: lazy start, tracked calls, and a close that answers every caller."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import logging
import sys
import threading
import time
from typing import Any

import pytest
import trio

from syncbridge import BridgeClosed, DeadlockError
from syncbridge._core._calls import Call
from syncbridge._core._outcome import Cancelled, Value
from syncbridge._core._portal import Portal, stop_bound

if sys.platform == "linux":
    from syncbridge._core._selector import PreciseEpollSelector


def _call(func: Any, *args: Any) -> Call[Any]:
    return Call(func, args, {}, contextvars.copy_context(), None)


def _wait_done(call: Call[Any], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not call.done and time.monotonic() < deadline:
        time.sleep(0.005)  # polled: the portal holds no event of the test's
    assert call.done, f"{call.name}() got no outcome within {timeout} s"


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_portal_tracks_a_call_until_it_has_an_outcome(backend: str) -> None:
    portal = Portal("track", backend, use_uvloop=False)  # type: ignore[arg-type]
    release = threading.Event()

    async def waits() -> int:
        while not release.is_set():
            await (asyncio.sleep(0.01) if backend == "asyncio" else trio.sleep(0.01))
        return 7

    call = _call(waits)
    portal.submit(call)
    assert portal.pending_calls == 1
    release.set()
    _wait_done(call)
    assert isinstance(call.outcome, Value)
    assert call.outcome.value == 7
    assert portal.pending_calls == 0
    portal.close(1.0)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_close_answers_a_call_that_ignores_cancellation(
    backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Within stop_bound(grace) the call has an outcome and is named in a log line."""
    portal = Portal("stubborn", backend, use_uvloop=False)  # type: ignore[arg-type]
    stop = threading.Event()

    async def stubborn_asyncio() -> None:
        while not stop.is_set():
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                pass

    async def stubborn_trio() -> None:
        with trio.CancelScope(shield=True):
            while not stop.is_set():
                await trio.sleep(0.01)

    call = _call(stubborn_asyncio if backend == "asyncio" else stubborn_trio)
    portal.submit(call)
    grace = 0.2
    caplog.set_level(logging.WARNING, logger="syncbridge")
    start = time.monotonic()
    portal.close(grace)
    elapsed = time.monotonic() - start
    try:
        assert call.done
        assert isinstance(call.outcome, Cancelled)
        assert elapsed <= stop_bound(grace) + 0.5, elapsed
        assert any(
            "stubborn" in r.getMessage() and "abandoned" in r.getMessage()
            for r in caplog.records
        ), [r.getMessage() for r in caplog.records]
    finally:
        stop.set()


def test_submit_after_close_is_refused() -> None:
    portal = Portal("after", "asyncio", use_uvloop=False)
    portal.handle()
    portal.close(0.1)
    with pytest.raises(BridgeClosed):
        portal.submit(_call(asyncio.sleep, 0))
    assert portal.pending_calls == 0


def test_a_loop_that_fails_to_start_raises_and_never_hangs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken_run(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(trio, "run", broken_run)
    portal = Portal("broken", "trio", use_uvloop=False)
    results: list[BaseException] = []

    def attempt() -> None:
        try:
            portal.handle()
        except BaseException as exc:
            results.append(exc)

    for _ in range(2):  # the lock is released: a second attempt is refused too
        thread = threading.Thread(target=attempt)
        thread.start()
        thread.join(5)
        assert not thread.is_alive(), "Portal.handle() hung on a failed start"
    assert [str(e) for e in results] == ["boom", "boom"]


def test_close_on_the_portal_thread_is_refused_with_no_side_effect() -> None:
    portal = Portal("own", "asyncio", use_uvloop=False)

    async def close_here() -> str:
        try:
            portal.close(0.1)
        except DeadlockError as exc:
            return str(exc)
        return "closed"

    call = _call(close_here)
    portal.submit(call)
    _wait_done(call)
    assert isinstance(call.outcome, Value)
    assert "another thread" in call.outcome.value
    assert bool(portal.running)
    again = _call(asyncio.sleep, 0, "still works")
    portal.submit(again)
    _wait_done(again)
    assert isinstance(again.outcome, Value)
    assert again.outcome.value == "still works"
    portal.close(0.1)
    assert not portal.running
    thread = portal.thread
    assert thread is not None
    assert not thread.is_alive()


@pytest.mark.skipif(sys.platform != "linux", reason="epoll is Linux's")
def test_the_asyncio_portal_runs_on_the_precise_selector() -> None:
    """Its timers are waited for to the microsecond, not the millisecond (#15)."""
    portal = Portal("precise", "asyncio", use_uvloop=False)

    async def selector_type() -> type:
        return type(asyncio.get_running_loop()._selector)  # type: ignore[attr-defined]

    call = _call(selector_type)
    portal.submit(call)
    _wait_done(call)
    portal.close(0.1)
    assert isinstance(call.outcome, Value)
    assert call.outcome.value is PreciseEpollSelector


# -- the asyncio portal's intake (calls sent at once share one wake-up) ------


def _noop() -> Any:
    async def noop() -> int:
        return 1

    return noop


def test_calls_in_the_intake_of_a_loop_that_died_are_answered_and_a_new_loop_follows() -> (
    None
):
    """The loop dies (a SystemExit out of a callback) with calls in its intake:
    those are answered, none left waiting, and later calls run on a new loop."""
    from syncbridge import Bridge

    with Bridge(shutdown_grace=0.5) as b:
        noop = _noop()
        assert b.sync_call_async(noop) == 1
        first = b._portal.thread
        assert first is not None
        late: list[Any] = []

        async def kill_the_loop() -> None:
            def die() -> None:
                raise SystemExit("the loop dies")

            asyncio.get_running_loop().call_soon(die)
            # Queued into the intake from another thread while this runs, so
            # its wake-up is pending when the loop dies.
            t = threading.Thread(target=lambda: late.append(b.start_soon(noop)))
            t.start()
            t.join()

        logging.disable(logging.CRITICAL)  # the crash is logged: expected
        try:
            b.start_soon(kill_the_loop)
            first.join(10.0)
        finally:
            logging.disable(logging.NOTSET)
        assert not first.is_alive()
        [queued] = late
        with pytest.raises(concurrent.futures.CancelledError):
            queued.result(timeout=10.0)  # answered, not left pending
        for _ in range(3):
            assert b.sync_call_async(noop) == 1
        assert b._portal.thread is not first
        stats = b.stats().portal
        assert stats.tasks == 0, "calls are left waiting on a loop that ended"
        ended = stats.completed + stats.errors + stats.cancellations + stats.timeouts
        assert stats.calls == ended, "refused calls were counted as calls"


def test_a_ctrl_c_while_posting_the_wake_up_leaves_the_portal_working(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """KeyboardInterrupt inside call_soon_threadsafe: that call is refused, and
    the next calls (from any thread) still wake the loop."""
    from syncbridge import Bridge

    with Bridge() as b:
        noop = _noop()
        assert b.sync_call_async(noop) == 1
        loop = b._portal.handle().native
        assert isinstance(loop, asyncio.AbstractEventLoop)
        real = loop.call_soon_threadsafe
        interrupted: list[bool] = []

        def interrupt_once(*args: Any, **kwargs: Any) -> Any:
            if not interrupted:
                interrupted.append(True)
                raise KeyboardInterrupt
            return real(*args, **kwargs)

        monkeypatch.setattr(loop, "call_soon_threadsafe", interrupt_once)
        with pytest.raises(KeyboardInterrupt):
            b.sync_call_async(noop)
        results: list[int] = []
        t = threading.Thread(target=lambda: results.append(b.sync_call_async(noop)))
        t.start()
        t.join(10.0)
        assert results == [1], "the portal stopped waking up after the interrupt"
        assert b.sync_call_async(noop) == 1
        assert b.stats().portal.tasks == 0


def test_one_wake_up_starts_one_batch_and_posts_the_rest_for_later(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The loop runs its timers and I/O between batches of a long intake."""
    from syncbridge._core import _loops

    started: list[Call[Any]] = []
    monkeypatch.setattr(
        _loops.PortalAsyncioLoop, "_start", lambda self, call: started.append(call)
    )
    loop = asyncio.new_event_loop()
    try:
        handle = _loops.PortalAsyncioLoop(loop)
        calls = [_call(_noop()) for _ in range(3 * _loops._INTAKE_SHORT + 5)]
        for call in calls:
            call.loop = handle
            handle._intake.append(call)
        handle._start_intake()  # what one wake-up runs
        assert started == calls[: _loops._INTAKE_SHORT]
        assert handle._wake_pending, "the rest were not posted for later"
        loop.run_until_complete(asyncio.sleep(0))  # the loop's next rounds
        loop.run_until_complete(asyncio.sleep(0))
        loop.run_until_complete(asyncio.sleep(0))
        assert started == calls
        assert not handle._intake
    finally:
        loop.close()
