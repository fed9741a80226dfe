"""Bridge: its portal loop, its pools, close and fork; and Bridge.start_soon."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import gc
import logging
import os
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING, Literal, NoReturn

import anyio
import pytest

import syncbridge
from _scripts import run_script
from syncbridge import Bridge, BridgeClosed, SyncBridgeError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator

    from syncbridge._core._calls import Call


async def _loop() -> object:
    return asyncio.get_running_loop()


class TestBridge:
    def test_get_bridge_returns_one_default(self) -> None:
        assert syncbridge.get_bridge() is syncbridge.get_bridge()

    def test_portal_starts_lazily(self) -> None:
        with Bridge(name="lazy") as b:
            assert not any(
                t.name == "syncbridge-portal-lazy" for t in threading.enumerate()
            )
            b.sync_call_async(_loop)
            assert any(
                t.name == "syncbridge-portal-lazy" for t in threading.enumerate()
            )

    def test_close_is_idempotent_and_refuses_new_calls(self) -> None:
        b = Bridge()
        b.close()
        b.close()
        assert b.closed
        with pytest.raises(BridgeClosed, match="Create a new Bridge"):
            b.sync_call_async(_loop)
        with pytest.raises(BridgeClosed):
            asyncio.run(b.run_blocking(int))

    def test_close_stops_every_thread(self) -> None:
        b = Bridge(name="closing")

        async def main() -> None:
            await asyncio.gather(*(b.run_blocking(time.sleep, 0.01) for _ in range(8)))

        asyncio.run(main())
        b.sync_call_async(_loop)
        assert any(
            t.name.startswith("syncbridge-closing-") for t in threading.enumerate()
        )
        b.close()
        alive = [t for t in threading.enumerate() if "closing" in t.name]
        assert alive == []

    def test_queued_calls_fail_with_bridge_closed_on_close(self) -> None:
        release = threading.Event()
        b = Bridge(max_workers=1, shutdown_grace=0.5)
        errors: list[BaseException] = []

        async def main() -> None:
            async def queued() -> None:
                try:
                    await b.run_blocking(int)
                except BridgeClosed as exc:
                    errors.append(exc)

            async with anyio.create_task_group() as tg:
                tg.start_soon(b.run_blocking, release.wait, 5)
                while b.pool().busy < 1:
                    await anyio.sleep(0.001)
                tg.start_soon(queued)
                while b.pool().waiting < 1:
                    await anyio.sleep(0.001)
                closer = threading.Thread(target=b.close)
                closer.start()
                while not errors:
                    await anyio.sleep(0.001)
                release.set()
                await anyio.to_thread.run_sync(closer.join)

        asyncio.run(main())
        assert len(errors) == 1

    def test_portal_call_running_at_close_gets_bridge_closed_and_is_logged(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        b = Bridge(shutdown_grace=0.05)
        started = threading.Event()

        async def forever() -> None:
            started.set()
            await asyncio.sleep(100)

        t, outcome = _caller(b, forever)
        t.start()
        started.wait(5)
        with caplog.at_level(logging.WARNING, logger="syncbridge"):
            b.close()
        t.join(5)
        assert isinstance(outcome[0], BridgeClosed)
        assert "forever" in caplog.text

    def test_sync_context_manager_closes(self) -> None:
        with Bridge() as b:
            b.sync_call_async(_loop)
        assert b.closed

    @pytest.mark.anyio
    async def test_async_context_manager_closes(self) -> None:
        async with Bridge() as b:
            assert await b.run_blocking(lambda: 5) == 5
        assert b.closed

    def test_bad_arguments_are_value_errors(self) -> None:
        with pytest.raises(
            ValueError, match=r"max_workers=\.\.\.\) must be an int >= 1"
        ):
            Bridge(max_workers=0)
        with pytest.raises(ValueError, match="backend"):
            Bridge(backend="curio")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="shutdown_grace"):
            Bridge(shutdown_grace=-1)
        with Bridge(pools={"db": 2}) as b, pytest.raises(ValueError, match="resize"):
            b.add_pool("db", 3)

    def test_max_workers_can_be_changed(self) -> None:
        with Bridge(max_workers=2) as b:
            b.max_workers = 5
            assert b.max_workers == 5 == b.pool().capacity

    def test_uvloop_portal(self) -> None:
        uvloop = pytest.importorskip("uvloop")
        with Bridge(use_uvloop=True) as b:
            assert isinstance(b.sync_call_async(_loop), uvloop.Loop)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_child_gets_a_fresh_default_bridge() -> None:
    result = run_script(
        """
        import asyncio, os, sys, threading, warnings
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads
        import syncbridge

        async def loop_id():
            return id(asyncio.get_running_loop())

        parent = syncbridge.get_bridge()
        parent_loop = syncbridge.sync_call_async(loop_id)
        pid = os.fork()
        if pid == 0:
            try:
                child = syncbridge.get_bridge()
                assert child is not parent, "child inherited the parent's bridge"
                child_loop = syncbridge.sync_call_async(loop_id)
                assert child_loop != parent_loop
                assert syncbridge.sync_call_async(loop_id) == child_loop
                os._exit(0)
            except BaseException as exc:
                print("child failed:", repr(exc), flush=True)
                os._exit(1)
        _, status = os.waitpid(pid, 0)
        assert syncbridge.sync_call_async(loop_id) == parent_loop
        sys.exit(os.waitstatus_to_exitcode(status))
        """
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_exit_with_pending_portal_task_does_not_hang_and_logs() -> None:
    started = time.monotonic()
    result = run_script(
        """
        import asyncio, logging, threading
        logging.basicConfig(level=logging.WARNING)
        import syncbridge

        async def forever():
            await asyncio.sleep(3600)

        async def spawn():
            asyncio.get_running_loop().create_task(forever(), name="background-job")

        syncbridge.sync_call_async(spawn)
        print("main done", flush=True)
        """
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert "main done" in result.stdout
    assert "background-job" in result.stderr  # the cancelled task is logged
    assert elapsed < 15


def test_exit_after_the_portal_used_its_default_executor_is_quiet() -> None:
    """DNS lookups (httpx, asyncio.open_connection) use the loop's default executor.

    Python 3.12 starts no thread at interpreter exit, and shutting that executor
    down starts one: the portal must still close without a traceback.
    """
    result = run_script(
        """
        import asyncio
        import syncbridge

        async def resolve():
            return await asyncio.get_running_loop().getaddrinfo("127.0.0.1", 80)

        assert syncbridge.sync_call_async(resolve)
        print("main done", flush=True)
        """
    )
    assert result.returncode == 0, result.stderr
    assert "main done" in result.stdout
    assert result.stderr == ""


def test_keyboard_interrupt_cancels_the_coroutine_and_propagates() -> None:
    result = run_script(
        """
        import asyncio, faulthandler, os, signal, threading
        # A hang shows every thread's stack (before run_script's timeout).
        faulthandler.dump_traceback_later(40, exit=True)
        # Python's own Ctrl-C handler, whatever this process inherited: started
        # from a background job (a shell without job control, nohup, CI), a
        # child has SIGINT ignored, and the signal below would never arrive.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        import syncbridge

        cancelled = threading.Event()
        # The caller waits up to the grace for the cancelled coroutine: a
        # generous one, so only a lost cancellation can fail this (and says
        # so: "cancelled: False" well before run_script's timeout).
        syncbridge.get_bridge().shutdown_grace = 20.0

        async def slow():
            loop = asyncio.get_running_loop()
            loop.call_soon(os.kill, os.getpid(), signal.SIGINT)
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                cancelled.set()
                raise

        try:
            syncbridge.sync_call_async(slow)
        except KeyboardInterrupt:
            print("interrupted; coroutine cancelled:", cancelled.is_set(), flush=True)
        """,
        timeout=50,
    )
    assert result.returncode == 0, result.stderr
    assert "interrupted; coroutine cancelled: True" in result.stdout
    assert signal.SIGINT  # the test relies on POSIX signals


def test_set_pool_creates_then_resizes() -> None:
    with Bridge() as b:
        b.set_pool("db", 2)
        assert b.pool("db").capacity == 2
        first = b.pool("db")
        b.set_pool("db", 5)
        assert b.pool("db") is first
        assert first.capacity == 5
        with pytest.raises(ValueError, match="names a built-in pool"):
            b.set_pool("default", 3)
        with pytest.raises(
            TypeError, match=r"Bridge.set_pool\('db', capacity=\.\.\.\)"
        ):
            b.set_pool("db", 2.5)  # type: ignore[arg-type]


def test_close_racing_a_worker_being_started_raises_nothing() -> None:
    """A pool lists a new worker just before starting it: close() may find it then."""
    b = Bridge(shutdown_grace=0.1)
    pool = b._registry.worker_threads
    release = threading.Event()
    starting = threading.Thread(target=release.wait, args=(10.0,), daemon=True)
    with pool._lock:
        pool._threads.add(starting)  # as _hand_over does, before start()
    try:
        b.close()  # found it unstarted for its whole grace: no RuntimeError
    finally:
        release.set()
        with pool._lock:
            pool._threads.discard(starting)
    assert b.closed


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_an_interrupt_before_the_wait_began_still_cancels_the_call(
    backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C landing just after the call reached the loop, before the caller
    started waiting (the loop may send the signal itself that fast): the
    coroutine is cancelled and awaited before KeyboardInterrupt propagates."""
    started = threading.Event()
    cancelled = threading.Event()

    async def slow() -> None:
        started.set()
        try:
            await anyio.sleep(3600)
        except anyio.get_cancelled_exc_class():
            cancelled.set()
            raise

    with Bridge(backend=backend, shutdown_grace=30.0) as b:  # type: ignore[arg-type]
        portal = b._portal
        real_submit = portal.submit

        def submit_then_interrupt(call: Call[None], *named: object) -> NoReturn:
            real_submit(call, *named)  # type: ignore[arg-type]
            assert started.wait(10.0)
            raise KeyboardInterrupt  # where a signal handler would raise it

        monkeypatch.setattr(portal, "submit", submit_then_interrupt)
        with pytest.raises(KeyboardInterrupt):
            b.sync_call_async(slow)
        assert cancelled.is_set(), "the interrupted call was left running"
        monkeypatch.undo()
        assert b.stats().portal.tasks == 0


def _caller(
    bridge: Bridge, func: Callable[[], Awaitable[object]]
) -> tuple[threading.Thread, list[BaseException]]:
    """A thread (not started) that calls *func* on *bridge*; what it raises lands
    in the list, for the test to check."""
    raised: list[BaseException] = []

    def call() -> None:
        try:
            bridge.sync_call_async(func)
        except BaseException as exc:  # the test checks it
            raised.append(exc)

    return threading.Thread(target=call), raised


async def _stop_running_loop() -> None:
    asyncio.get_running_loop().stop()


def _stop_by_loop_stop() -> None:
    asyncio.get_running_loop().stop()


def _stop_by_system_exit() -> None:
    asyncio.get_running_loop().call_soon(sys.exit, 3)  # escapes run_forever()


def _stop_by_interrupt() -> None:
    def interrupt() -> NoReturn:
        raise KeyboardInterrupt

    asyncio.get_running_loop().call_soon(interrupt)


@pytest.mark.parametrize(
    "stop",
    [_stop_by_loop_stop, _stop_by_system_exit, _stop_by_interrupt],
    ids=["loop.stop()", "SystemExit", "KeyboardInterrupt"],
)
def test_a_portal_loop_stopped_by_user_code_answers_its_calls_and_is_replaced(
    stop: Callable[[], None], caplog: pytest.LogCaptureFixture
) -> None:
    """Its calls fail at once with an error naming the cause; the next call works."""
    bridge = Bridge(name="stopped", blocking_threshold=30.0)
    started = threading.Event()

    async def forever() -> None:
        started.set()
        await asyncio.sleep(3600)

    async def stopper() -> None:
        stop()
        await asyncio.sleep(3600)  # cancelled: the loop ends under it

    waiter, errors = _caller(bridge, forever)
    try:
        with caplog.at_level(logging.WARNING, logger="syncbridge"):
            bridge.sync_call_async(asyncio.sleep, 0)
            first = bridge._portal.thread  # pyright: ignore[reportPrivateUsage]
            old_watch = bridge.portal_watch
            waiter.start()
            assert started.wait(10)
            with pytest.raises(
                SyncBridgeError,
                match=r"portal loop stopped before \S*stopper\(\) finished",
            ):
                bridge.sync_call_async(stopper)
            waiter.join(30)  # a lost answer would leave it waiting for an hour
            assert not waiter.is_alive()
            assert len(errors) == 1
            assert isinstance(errors[0], SyncBridgeError)
            assert "next call starts a new portal loop" in str(errors[0])

            assert bridge.sync_call_async(asyncio.sleep, 0, "again") == "again"
            second = bridge._portal.thread  # pyright: ignore[reportPrivateUsage]
            assert first is not None
            assert second is not None
            assert second is not first
            assert second.is_alive()
            first.join(10)
            assert not first.is_alive()
            new_watch = bridge.portal_watch  # the new loop is watched too
            assert new_watch is not None
            assert new_watch is not old_watch
            assert new_watch.running
            assert new_watch.threshold == 30.0
            stats = bridge.stats().portal
            # Counted as what their callers got: SyncBridgeError, an error.
            assert (stats.tasks, stats.errors, stats.cancellations) == (0, 2, 0)
            assert stats.completed == 2
    finally:
        bridge.close()
        waiter.join(10)
    gc.collect()  # asyncio logs a pending task it drops when it is collected
    events = [getattr(r, "syncbridge_event", None) for r in caplog.records]
    assert events.count("portal-stopped") == 1
    assert "task-abandoned-at-close" not in events  # every call was answered
    assert "Task was destroyed" not in caplog.text


def test_calls_ended_by_a_stopped_portal_loop_count_as_what_their_callers_got() -> None:
    """A blocked caller got SyncBridgeError: an error (the bridge's totals too).
    A start_soon future ended cancelled: a cancellation."""
    bridge = Bridge(name="counted")
    started = threading.Event()

    async def forever() -> None:
        started.set()
        await asyncio.sleep(3600)

    waiter, errors = _caller(bridge, forever)
    try:
        waiter.start()
        assert started.wait(10)
        started.clear()
        future = bridge.start_soon(forever)
        assert started.wait(10)
        bridge.sync_call_async(_stop_running_loop)  # returns as the loop stops
        waiter.join(30)
        assert not waiter.is_alive()
        assert [type(e) for e in errors] == [SyncBridgeError]
        assert future.cancelled()
        stats = bridge.stats()
        portal = stats.portal
        assert (portal.calls, portal.errors, portal.cancellations) == (3, 1, 1)
        assert (portal.completed, portal.timeouts, portal.tasks) == (1, 0, 0)
        assert (stats.errors, stats.cancellations) == (1, 1)
    finally:
        bridge.close()


def test_calls_racing_a_portal_loop_that_stops_get_an_answer_and_never_bridge_closed() -> (
    None
):
    """Calls sent while the loop stops, again and again, finish or fail clearly."""
    bridge = Bridge(name="restarts")
    outcomes: list[object] = []
    lock = threading.Lock()
    go = threading.Event()

    def caller() -> None:
        go.wait()
        for _ in range(100):
            try:
                got: object = bridge.sync_call_async(asyncio.sleep, 0, "ok")
            except BaseException as exc:  # SyncBridgeError, and nothing else
                got = exc
            with lock:
                outcomes.append(got)

    callers = [threading.Thread(target=caller) for _ in range(8)]
    try:
        for t in callers:
            t.start()
        go.set()
        for _ in range(20):
            with contextlib.suppress(SyncBridgeError):
                bridge.sync_call_async(_stop_running_loop)
        for t in callers:
            t.join(60)  # a lost answer would hang
            assert not t.is_alive()
        wrong = [
            o for o in outcomes if o != "ok" and not isinstance(o, SyncBridgeError)
        ]
        assert wrong == []
        assert len(outcomes) == 800
        assert bridge.sync_call_async(asyncio.sleep, 0, "after") == "after"
    finally:
        bridge.close()


def test_the_tasks_of_a_stopped_portal_loop_are_cancelled_and_clean_up_on_it() -> None:
    """As asyncio.run() ends its loop: each task is cancelled and its cleanup,
    awaits included, runs on the loop's thread before the caller is answered."""
    bridge = Bridge(name="cleanup")
    started = threading.Event()
    seen: list[str] = []

    async def holds_a_resource() -> None:
        try:
            started.set()
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise
        finally:
            await asyncio.sleep(0)  # an async cleanup step: needs a running loop
            seen.append(f"cleaned up on {threading.current_thread().name}")

    waiter, outcome = _caller(bridge, holds_a_resource)
    try:
        waiter.start()
        assert started.wait(10)
        bridge.sync_call_async(_stop_running_loop)
        waiter.join(30)
        assert not waiter.is_alive()
        assert seen == ["cancelled", "cleaned up on syncbridge-portal-cleanup"]
        [error] = outcome
        assert isinstance(error, SyncBridgeError)
        assert "portal loop stopped before" in str(error)
    finally:
        bridge.close()


def test_close_during_the_cleanup_of_a_stopped_portal_loop_answers_its_callers() -> (
    None
):
    """close() waits for the old loop within its bound, then answers what is left:
    no caller may still wait once close() returned."""
    bridge = Bridge(name="closing", shutdown_grace=0.25)
    started, cleaning, release = threading.Event(), threading.Event(), threading.Event()

    async def victim() -> None:
        try:
            started.set()
            await asyncio.sleep(3600)
        finally:
            cleaning.set()
            release.wait(30)  # cleanup that blocks the old loop

    waiter, outcome = _caller(bridge, victim)
    try:
        waiter.start()
        assert started.wait(10)
        with contextlib.suppress(SyncBridgeError):
            bridge.sync_call_async(_stop_running_loop)
        assert cleaning.wait(10)
        bridge.close()
        waiter.join(10)  # answered by close(), not by the cleanup's end
        assert not waiter.is_alive()
        [error] = outcome
        assert isinstance(error, BridgeClosed)
    finally:
        release.set()
        bridge.close()
        waiter.join(10)


# -- Bridge.start_soon: fire-and-forget coroutines on the portal loop ---------------

Backend = Literal["asyncio", "trio"]
BACKENDS = [pytest.param("asyncio", id="asyncio"), pytest.param("trio", id="trio")]
request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id")


@pytest.fixture(params=BACKENDS)
def portal_bridge(request: pytest.FixtureRequest) -> Iterator[Bridge]:
    backend: Backend = request.param
    with Bridge(backend=backend, shutdown_grace=0.5) as b:
        yield b


def test_returns_before_the_coroutine_runs_and_the_future_gets_the_result(
    portal_bridge: Bridge,
) -> None:
    gate = threading.Event()

    async def wait_for_gate(x: int) -> tuple[int, str]:
        await anyio.to_thread.run_sync(gate.wait)
        return x * 2, threading.current_thread().name

    future = portal_bridge.start_soon(wait_for_gate, 21)
    assert not future.done()  # start_soon did not wait for it
    gate.set()
    value, thread = future.result(timeout=10)
    assert value == 42
    assert thread.startswith("syncbridge-portal-")


def test_exception_reaches_the_future_unchanged(portal_bridge: Bridge) -> None:
    error = ValueError("boom")

    async def fail() -> None:
        raise error

    assert portal_bridge.start_soon(fail).exception(timeout=10) is error


def test_carries_a_copy_of_the_callers_context(portal_bridge: Bridge) -> None:
    async def read() -> str:
        return request_id.get()

    token = request_id.set("r-1")
    try:
        future = portal_bridge.start_soon(read)
    finally:
        request_id.reset(token)
    assert future.result(timeout=10) == "r-1"


def test_future_cancel_cancels_the_coroutine_on_the_loop(portal_bridge: Bridge) -> None:
    started = threading.Event()
    cleaned_up = threading.Event()

    async def forever() -> None:
        started.set()
        try:
            await anyio.sleep_forever()
        finally:
            cleaned_up.set()

    future = portal_bridge.start_soon(forever)
    assert started.wait(10)
    assert future.cancel()
    assert cleaned_up.wait(10)
    assert future.cancelled()


def test_close_cancels_and_logs_pending_work(
    portal_bridge: Bridge, caplog: pytest.LogCaptureFixture
) -> None:
    started = threading.Event()

    async def stuck() -> None:
        started.set()
        await anyio.sleep_forever()

    future = portal_bridge.start_soon(stuck)
    assert started.wait(10)
    with caplog.at_level(logging.WARNING, logger="syncbridge"):
        portal_bridge.close()
    assert future.cancelled()
    assert any("stuck" in r.getMessage() for r in caplog.records)


def test_may_be_called_from_the_portal_loop_itself(portal_bridge: Bridge) -> None:
    async def inner() -> str:
        return "inner"

    async def outer() -> str:
        nested = portal_bridge.start_soon(inner)
        # Awaiting a concurrent future on its own loop: wait without blocking it.
        while not nested.done():
            await anyio.sleep(0.001)
        return nested.result()

    assert portal_bridge.start_soon(outer).result(timeout=10) == "inner"


def test_many_threads_start_many_coroutines(portal_bridge: Bridge) -> None:
    async def double(x: int) -> int:
        await anyio.sleep(0)
        return 2 * x

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        futures = list(
            pool.map(lambda i: portal_bridge.start_soon(double, i), range(500))
        )
    assert [f.result(timeout=30) for f in futures] == [2 * i for i in range(500)]


def test_closed_bridge_raises_bridge_closed() -> None:
    b = Bridge()
    b.close()

    async def nothing() -> None:
        return None

    with pytest.raises(BridgeClosed, match=r"Bridge\.start_soon\(\S*nothing\)"):
        b.start_soon(nothing)


def test_cancelled_futures_are_seen_by_wait_and_as_completed(
    portal_bridge: Bridge,
) -> None:
    started = threading.Event()

    async def forever() -> None:
        started.set()
        await anyio.sleep_forever()

    by_user = portal_bridge.start_soon(forever)
    assert started.wait(10)
    assert by_user.cancel()
    started.clear()
    by_close = portal_bridge.start_soon(forever)
    assert started.wait(10)
    portal_bridge.close()
    done, not_done = concurrent.futures.wait([by_user, by_close], timeout=10)
    assert done == {by_user, by_close}
    assert not not_done
    assert list(concurrent.futures.as_completed([by_user, by_close], timeout=10))
