from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
import time
from typing import TYPE_CHECKING, NoReturn

import anyio
import pytest

import syncbridge
from _scripts import run_script
from syncbridge import Bridge, BridgeClosed

if TYPE_CHECKING:
    from syncbridge._core._loops import Call


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
        outcome: list[BaseException] = []

        async def forever() -> None:
            started.set()
            await asyncio.sleep(100)

        def caller() -> None:
            try:
                b.sync_call_async(forever)
            except BaseException as exc:
                outcome.append(exc)

        t = threading.Thread(target=caller)
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
        import asyncio, os, signal, threading
        import syncbridge

        cancelled = threading.Event()
        # The caller waits up to the grace for the cancelled coroutine: a
        # generous one, so only a lost cancellation can fail this.
        syncbridge.get_bridge().shutdown_grace = 30.0

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
        """
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
    pool = b._worker_pool
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

        def submit_then_interrupt(call: Call[None], what: str = "") -> NoReturn:
            real_submit(call, what or "sync_call_async()")
            assert started.wait(10.0)
            raise KeyboardInterrupt  # where a signal handler would raise it

        monkeypatch.setattr(portal, "submit", submit_then_interrupt)
        with pytest.raises(KeyboardInterrupt):
            b.sync_call_async(slow)
        assert cancelled.is_set(), "the interrupted call was left running"
        monkeypatch.undo()
        assert b.stats().portal.tasks == 0
