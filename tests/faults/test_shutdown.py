"""Issue 11, point 2: shutdown gives every caller an answer.

When ``Bridge.close()`` returns, within its documented bound, every caller has
its result or :class:`~syncbridge.BridgeClosed`; a stubborn task is named in a
log line and never destroyed pending; a misplaced ``close()`` is refused with no
side effect; interpreter exit never waits on a thread blocked in the bridge.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
from typing import TYPE_CHECKING, Literal

import pytest

from _scripts import run_script
from syncbridge import Bridge, BridgeClosed

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine
    from typing import Any

pytestmark = pytest.mark.faults

ROUNDS = int(os.environ.get("SYNCBRIDGE_FAULT_ROUNDS", "1"))
DESTROYED = "Task was destroyed but it is pending"
_FROM_ANOTHER_THREAD = (
    r"(?i)(another|other|different|separate) thread|from the thread that created"
)


def _closed(bridge: Bridge) -> bool:
    return bridge.closed


def _portal_threads(bridge: Bridge) -> list[threading.Thread]:
    return [
        t
        for t in threading.enumerate()
        if t.name.startswith(f"syncbridge-portal-{bridge.name}") and t.is_alive()
    ]


class Caller:
    """A plain thread that makes one blocking bridge call and keeps the outcome."""

    def __init__(self, call: Callable[[], object]) -> None:
        self.outcome: list[object] = []
        self.thread = threading.Thread(target=self._run, args=(call,), daemon=True)
        self.thread.start()

    def _run(self, call: Callable[[], object]) -> None:
        try:
            self.outcome.append(call())
        except BaseException as exc:
            self.outcome.append(exc)


def _stubborn(
    backend: str, entered: threading.Event, stop: threading.Event
) -> Callable[[], Coroutine[Any, Any, str]]:
    """A coroutine function that ignores cancellation until *stop* is set."""
    if backend == "asyncio":

        async def stubborn_portal_task() -> str:
            entered.set()
            while not stop.is_set():
                try:
                    await asyncio.sleep(0.02)
                except asyncio.CancelledError:
                    pass
            return "stubborn task ended"

        return stubborn_portal_task

    async def stubborn_portal_task_trio() -> str:
        import trio

        entered.set()
        with trio.CancelScope(shield=True):
            while not stop.is_set():
                await trio.sleep(0.02)
        return "stubborn task ended"

    return stubborn_portal_task_trio


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_close_answers_the_caller_of_a_stubborn_portal_task(
    backend: Literal["asyncio", "trio"], caplog: pytest.LogCaptureFixture
) -> None:
    """close() returns in its bound, the caller got BridgeClosed, the task is named."""
    caplog.set_level(logging.WARNING)
    grace = 0.3
    b = Bridge(backend=backend, shutdown_grace=grace)
    entered, stop = threading.Event(), threading.Event()
    stubborn = _stubborn(backend, entered, stop)
    try:
        caller = Caller(lambda: b.sync_call_async(stubborn))
        assert entered.wait(5), "the stubborn coroutine never started"
        start = time.monotonic()
        b.close()
        took = time.monotonic() - start
        assert took <= 2 * grace + 1.5, f"close() took {took:.2f} s"
        caller.thread.join(1.0)
        assert not caller.thread.is_alive(), (
            "close() returned but the caller is still blocked in sync_call_async()"
        )
        assert len(caller.outcome) == 1
        assert isinstance(caller.outcome[0], BridgeClosed), caller.outcome
        named = [
            r
            for r in caplog.records
            if r.name == "syncbridge"
            and r.levelno == logging.WARNING
            and stubborn.__name__ in r.getMessage()
        ]
        assert named, "no WARNING on the 'syncbridge' logger names the stubborn task"
        gc.collect()
        destroyed = [r for r in caplog.records if DESTROYED in r.getMessage()]
        assert not destroyed, destroyed[0].getMessage()
    finally:
        stop.set()
        b.close()


def _hammer(
    bridge: Bridge, ready: threading.Barrier, outcome: list[BaseException]
) -> None:
    try:
        bridge.sync_call_async(asyncio.sleep, 0.01)
        ready.wait(10)
        while True:
            bridge.sync_call_async(asyncio.sleep, 0.01)
    except BaseException as exc:
        outcome.append(exc)


@pytest.mark.parametrize("round_", range(3 * ROUNDS))
def test_close_racing_150_callers_answers_every_one(round_: int) -> None:
    """Every one of 150 threads calling while close() runs ends with BridgeClosed."""
    b = Bridge(shutdown_grace=1.0)
    n = 150
    ready = threading.Barrier(n + 1)
    outcomes: list[list[BaseException]] = [[] for _ in range(n)]
    threads = [
        threading.Thread(target=_hammer, args=(b, ready, out), daemon=True)
        for out in outcomes
    ]
    interval = sys.getswitchinterval()
    try:
        for t in threads:
            t.start()
        ready.wait(10)  # every thread has made one call and is calling again
        sys.setswitchinterval(1e-5)  # switch threads often: widen every race
        try:
            b.close()
        finally:
            sys.setswitchinterval(interval)
        deadline = time.monotonic() + 5.0
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        stuck = sum(t.is_alive() for t in threads)
        assert stuck == 0, f"{stuck} of {n} callers still blocked 5 s after close()"
        wrong = [o for o in outcomes if not (o and isinstance(o[0], BridgeClosed))]
        assert not wrong, f"callers ended without BridgeClosed: {wrong[:3]}"
    finally:
        b.close()


def test_close_from_its_own_portal_loop_is_refused_without_side_effect() -> None:
    """close() on the portal loop raises, and the bridge stays fully working."""
    b = Bridge(shutdown_grace=1.0)

    async def close_from_portal() -> None:
        b.close()

    try:
        with pytest.raises(Exception, match=_FROM_ANOTHER_THREAD):
            b.sync_call_async(close_from_portal)
        assert not _closed(b), "the refused close() left the bridge marked closed"
        assert b.sync_call_async(asyncio.sleep, 0, "still works") == "still works"
        assert asyncio.run(b.run_blocking(int, "7")) == 7
        b.close()
        assert _closed(b)
        alive = _portal_threads(b)
        assert not alive, f"a later close() left the portal thread running: {alive}"
    finally:
        b.close()


def test_interpreter_exit_answers_a_non_daemon_thread_blocked_in_the_bridge() -> None:
    """The main thread returning ends the process; the blocked thread gets BridgeClosed."""
    script = textwrap.dedent(
        """
        import asyncio, threading, syncbridge

        started = threading.Event()

        async def sleeper():
            started.set()
            await asyncio.sleep(3600)

        def worker():
            try:
                syncbridge.sync_call_async(sleeper)
            except syncbridge.BridgeClosed:
                print("worker: BridgeClosed", flush=True)
            except BaseException as exc:
                print("worker: other", type(exc).__name__, exc, flush=True)
            else:
                print("worker: returned", flush=True)

        threading.Thread(target=worker, name="user-non-daemon").start()
        assert started.wait(10)
        print("main: returning", flush=True)
        """
    )
    try:
        proc = run_script(script, timeout=10)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(
            "the process did not exit within 10 s: interpreter exit waits for the "
            f"thread blocked in sync_call_async() (stdout: {exc.stdout!r})"
        )
    assert "main: returning" in proc.stdout, proc.stderr
    assert "worker: BridgeClosed" in proc.stdout, (proc.stdout, proc.stderr)


def test_close_with_stubborn_task_and_worker_stays_within_twice_the_grace() -> None:
    """close() with a task ignoring cancel and a busy worker takes <= 2*grace."""
    grace = 1.75
    b = Bridge(shutdown_grace=grace, max_workers=2)
    entered, stop = threading.Event(), threading.Event()
    running = threading.Event()
    stubborn = _stubborn("asyncio", entered, stop)

    def ignores_check_cancelled() -> str:
        running.set()
        stop.wait(30)
        return "worker ended"

    try:
        task_caller = Caller(lambda: b.sync_call_async(stubborn))
        worker_caller = Caller(
            lambda: b.sync_call_async(b.run_blocking, ignores_check_cancelled)
        )
        assert entered.wait(5)
        assert running.wait(5)
        start = time.monotonic()
        b.close()
        took = time.monotonic() - start
        assert took <= 2 * grace + 0.5 + 1.0, (
            f"close() took {took:.2f} s with shutdown_grace={grace}"
        )
    finally:
        stop.set()
        b.close()
        task_caller.thread.join(2)
        worker_caller.thread.join(2)
