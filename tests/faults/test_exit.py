"""Issue 11: interpreter exit with pending work is quick and quiet.

A process that leaves a portal task running and a worker in a long blocking call
(its await abandoned) exits promptly with code 0, with no traceback and no
"Task was destroyed but it is pending" on stderr.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
import threading
from typing import TYPE_CHECKING, Literal

import anyio
import pytest

from _scripts import run_script
from syncbridge import Bridge, BridgeClosed
from syncbridge._core import _loop_choice
from syncbridge._core._loops import PortalAsyncioLoop, TrioLoop

if TYPE_CHECKING:
    from syncbridge._core._calls import LoopHandle

pytestmark = pytest.mark.faults

SCRIPT = textwrap.dedent(
    """
    import asyncio, threading, time
    import anyio
    import syncbridge

    started = threading.Event()

    async def forever():
        started.set()
        await asyncio.sleep(3600)

    syncbridge.get_bridge().start_soon(forever)
    assert started.wait(10)

    async def abandon_a_worker():
        with anyio.move_on_after(0.1):
            await syncbridge.run_blocking(time.sleep, 3600)

    asyncio.run(abandon_a_worker())
    print("main: done", flush=True)
    """
)


def test_interpreter_exit_with_pending_work_is_quick_and_quiet() -> None:
    """Exit with a portal task and an abandoned worker: < 10 s, code 0, no noise."""
    try:
        proc = run_script(SCRIPT, timeout=10)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the process did not exit within 10 s (stderr: {exc.stderr!r})")
    assert "main: done" in proc.stdout, proc.stderr
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "Task was destroyed but it is pending" not in proc.stderr, proc.stderr


# -- issue 22: a caller blocked at exit gets BridgeClosed, on every interpreter --


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_close_landing_between_the_callers_poll_and_its_loop_check_is_bridge_closed(
    backend: Literal["asyncio", "trio"], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The closing portal answers the call, then stops: its answer wins.

    A blocked caller polls its loop every ``_POLL_SECONDS``; the exit hook's
    close (grace 1 s) used to land in the moment between a poll giving up and
    the check that the loop still runs, which then saw a stopped loop and
    raised "stopped before the call finished" over the BridgeClosed waiting
    in its mailbox. Here the close is made to land exactly there.
    """
    bridge = Bridge(name="poll-race", backend=backend, shutdown_grace=0.05)
    handle_type = PortalAsyncioLoop if backend == "asyncio" else TrioLoop
    real_check = handle_type.still_running
    closes: list[None] = []

    def close_then_check(handle: LoopHandle) -> bool:
        if not closes:
            closes.append(None)
            bridge.close()  # answers the call and stops the loop
        return real_check(handle)  # type: ignore[arg-type]

    monkeypatch.setattr(_loop_choice, "_POLL_SECONDS", 0.01)
    monkeypatch.setattr(handle_type, "still_running", close_then_check)
    try:
        with pytest.raises(
            BridgeClosed, match=r"closed while \S*sleep\(\) was running"
        ):
            bridge.sync_call_async(anyio.sleep, 3600)
    finally:
        bridge.close()
    assert closes == [None]


# A hook that runs after syncbridge's exit hook and before concurrent.futures
# joins its threads: registered after concurrent.futures' hook and before
# syncbridge's (the last registered runs first). It lets the executor thread go.
_AFTER_THE_EXIT_HOOK = """
import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

go = threading.Event()
threading._register_atexit(go.set)
import syncbridge
"""


def _run_past_exit(script: str) -> subprocess.CompletedProcess[str]:
    try:
        return run_script(_AFTER_THE_EXIT_HOOK + textwrap.dedent(script), timeout=20)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the process did not exit within 20 s (stderr: {exc.stderr!r})")


def test_the_default_bridge_first_used_after_the_exit_hook_never_holds_up_exit() -> (
    None
):
    """A thread Python waits for makes the default bridge after the hook ran:
    it is made closed, and the call gets BridgeClosed saying why (it used to
    start a portal loop no one would close, and wait on it for ever)."""
    done = _run_past_exit(
        """
        def blocked():
            go.wait()
            try:
                syncbridge.sync_call_async(asyncio.sleep, 3600)
            except syncbridge.BridgeClosed as exc:
                print("answered:", exc, flush=True)

        ThreadPoolExecutor(1).submit(blocked)
        """
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "answered: sync_call_async(sleep) was called on a closed" in done.stdout, (
        done.stdout + done.stderr
    )
    assert "while the interpreter exits" in done.stdout
    assert "Traceback" not in done.stderr, done.stderr


@pytest.mark.skipif(
    (3, 12) <= sys.version_info < (3, 12, 3),
    reason="CPython 3.12.0-3.12.2 refuse to start a thread once exit has begun, "
    "before the non-daemon threads are joined (python/cpython#113964, fixed in 3.12.3)",
)
def test_a_bridge_made_and_left_open_after_the_exit_hook_never_holds_up_exit() -> None:
    """Its threads are daemons: a task left on its portal loop and a worker
    left in a blocking call end with the process."""
    done = _run_past_exit(
        """
        import time

        def late():
            go.wait()
            bridge = syncbridge.Bridge(name="late")
            bridge.start_soon(asyncio.sleep, 3600)  # left running

            async def abandon_a_worker():
                worker_started = threading.Event()

                def sleeper():
                    worker_started.set()
                    time.sleep(3600)

                task = asyncio.ensure_future(bridge.run_blocking(sleeper))
                while not worker_started.is_set():  # executors refuse work now
                    await asyncio.sleep(0.01)
                task.cancel()

            asyncio.run(abandon_a_worker())
            assert bridge.sync_call_async(asyncio.sleep, 0, "works") == "works"
            print("left open", flush=True)

        ThreadPoolExecutor(1).submit(late).add_done_callback(
            lambda f: f.exception() and print("failed:", repr(f.exception()))
        )
        """
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "left open" in done.stdout, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr


# -- issue 24: a worker's call back to its loop, cancelled at close, is named --


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_close_names_the_coroutine_a_worker_was_blocked_on(
    backend: Literal["asyncio", "trio"], caplog: pytest.LogCaptureFixture
) -> None:
    """Cancelled as close flags the worker, it is named like a portal task."""
    bridge = Bridge(name="named", shutdown_grace=0.2)
    started = threading.Event()
    outcome: list[BaseException] = []

    async def waited_on_by_a_worker() -> None:
        started.set()
        await anyio.sleep(3600)

    def worker() -> None:
        bridge.sync_call_async(waited_on_by_a_worker)  # back to the awaiter's loop

    def awaiter() -> None:
        try:
            anyio.run(bridge.run_blocking, worker, backend=backend)
        except BaseException as exc:  # the test checks it
            outcome.append(exc)

    thread = threading.Thread(target=awaiter)
    caplog.set_level(logging.WARNING, logger="syncbridge")
    try:
        thread.start()
        assert started.wait(10)
        bridge.close()
        thread.join(10)
        assert not thread.is_alive()
    finally:
        bridge.close()
    assert [type(e) for e in outcome] == [BridgeClosed]
    named = [
        r
        for r in caplog.records
        if getattr(r, "syncbridge_event", None) == "task-cancelled-at-close"
    ]
    assert len(named) == 1, caplog.text
    assert getattr(named[0], "syncbridge_task", "").endswith("waited_on_by_a_worker")
    assert getattr(named[0], "syncbridge_pool", None) == "named"
    assert "a worker thread of pool 'named' was blocked on it" in named[0].getMessage()


def test_interpreter_exit_names_the_coroutine_a_worker_was_blocked_on() -> None:
    """A portal task awaits a worker that waits on a coroutine on that loop:
    the exit log names both the portal task and the worker's coroutine."""
    script = """
        import asyncio, threading, syncbridge

        started = threading.Event()

        async def waited_on_by_a_worker():
            started.set()
            await asyncio.sleep(3600)

        def worker():
            syncbridge.sync_call_async(waited_on_by_a_worker)

        async def background_job():
            await syncbridge.run_blocking(worker)

        syncbridge.get_bridge().start_soon(background_job)
        assert started.wait(10)
        print("main: returning", flush=True)
        """
    try:
        done = run_script(script, timeout=20)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the process did not exit within 20 s (stderr: {exc.stderr!r})")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "main: returning" in done.stdout, done.stderr
    assert (
        "cancelled task 'waited_on_by_a_worker': a worker thread of pool 'default' "
        "was blocked on it when its bridge closed"
    ) in done.stderr, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
