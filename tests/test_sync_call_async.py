from __future__ import annotations

import asyncio
import contextvars
import threading
import traceback

import anyio
import pytest

import syncbridge
from syncbridge import Bridge, BridgeClosed, DeadlockError

user: contextvars.ContextVar[str] = contextvars.ContextVar("user")


async def current_loop() -> object:
    return asyncio.get_running_loop()


async def double(x: int) -> int:
    await asyncio.sleep(0)
    return 2 * x


class Boom(Exception):
    pass


async def _fail(exc: Boom) -> None:
    await asyncio.sleep(0)
    raise exc


class TestPortalRule:
    """Rule 3: from plain threads, every call runs on one persistent portal loop."""

    def test_sync_call_async_returns_result(self, bridge: Bridge) -> None:
        assert bridge.sync_call_async(double, 21) == 42

    def test_module_helper_uses_default_bridge(self) -> None:
        assert syncbridge.sync_call_async(double, 4) == 8
        loop = syncbridge.sync_call_async(current_loop)
        assert syncbridge.get_bridge().sync_call_async(current_loop) is loop

    def test_successive_calls_share_one_loop(self, bridge: Bridge) -> None:
        loops = {id(bridge.sync_call_async(current_loop)) for _ in range(5)}
        assert len(loops) == 1

    def test_loop_bound_lock_works_across_calls(self, bridge: Bridge) -> None:
        holder: dict[str, asyncio.Lock] = {}

        async def make() -> None:
            holder["lock"] = asyncio.Lock()
            await holder["lock"].acquire()

        async def use() -> bool:
            holder["lock"].release()
            async with holder["lock"]:
                return True

        bridge.sync_call_async(make)
        assert bridge.sync_call_async(use) is True

    def test_calls_from_many_threads_share_the_loop(self, bridge: Bridge) -> None:
        seen: list[object] = []

        def worker() -> None:
            seen.extend(bridge.sync_call_async(current_loop) for _ in range(20))

        threads = [threading.Thread(target=worker) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(seen) == 160
        assert len({id(x) for x in seen}) == 1

    def test_trio_backend_portal(self) -> None:
        import trio

        async def token() -> object:
            await trio.sleep(0)
            return trio.lowlevel.current_trio_token()

        with Bridge(backend="trio") as b:
            first = b.sync_call_async(token)
            assert b.sync_call_async(token) is first


class TestErrors:
    def test_exception_is_same_object_with_traceback(self, bridge: Bridge) -> None:
        original = Boom("async failure")
        with pytest.raises(Boom) as info:
            bridge.sync_call_async(_fail, original)
        assert info.value is original
        names = [f.name for f in traceback.extract_tb(info.value.__traceback__)]
        assert "_fail" in names

    def test_non_async_function_gives_clear_type_error(self, bridge: Bridge) -> None:
        def not_async() -> int:
            return 1

        with pytest.raises(TypeError, match="cannot be awaited"):
            bridge.sync_call_async(not_async)  # type: ignore[arg-type]

    def test_closed_bridge_raises_bridge_closed(self) -> None:
        b = Bridge()
        b.sync_call_async(double, 1)
        b.close()
        with pytest.raises(BridgeClosed, match=r"closed syncbridge\.Bridge"):
            b.sync_call_async(double, 1)


class TestDeadlockRule:
    """Rule 2: in a thread running an event loop, raise at once instead of hanging."""

    @pytest.mark.anyio
    async def test_deadlock_error_in_loop_thread(self, bridge: Bridge) -> None:
        with pytest.raises(DeadlockError, match=r"await double\(\.\.\.\)"):
            bridge.sync_call_async(double, 1)

    @pytest.mark.anyio
    async def test_deadlock_error_is_runtime_error(self, bridge: Bridge) -> None:
        with pytest.raises(RuntimeError):
            syncbridge.sync_call_async(double, 1)

    def test_deadlock_error_on_the_portal_loop_itself(self, bridge: Bridge) -> None:
        async def reenter() -> None:
            bridge.sync_call_async(double, 1)

        with pytest.raises(DeadlockError):
            bridge.sync_call_async(reenter)


class TestWorkerRule:
    """Rule 1: from a worker serving loop L, run on L."""

    @pytest.mark.anyio
    async def test_worker_calls_back_into_the_awaiting_loop(
        self, bridge: Bridge, anyio_backend: str
    ) -> None:
        here = _native_loop()

        async def where() -> object:
            return _native_loop()

        seen = await bridge.run_blocking(bridge.sync_call_async, where)
        assert seen is here

    @pytest.mark.anyio
    async def test_anyio_worker_thread_calls_back_into_its_loop(
        self, bridge: Bridge
    ) -> None:
        here = _native_loop()

        async def where() -> object:
            return _native_loop()

        seen = await anyio.to_thread.run_sync(bridge.sync_call_async, where)
        assert seen is here

    @pytest.mark.anyio
    async def test_loop_bound_object_usable_from_worker(
        self, bridge: Bridge, anyio_backend: str
    ) -> None:
        send, receive = anyio.create_memory_object_stream[str](1)

        async def produce() -> str:
            await send.send("made in the worker's call")
            return "sent"

        with send, receive:
            assert await bridge.run_blocking(bridge.sync_call_async, produce) == "sent"
            assert receive.receive_nowait() == "made in the worker's call"

    @pytest.mark.anyio
    async def test_nesting_deeper_than_capacity_never_deadlocks(
        self, anyio_backend: str
    ) -> None:
        depth_seen: list[int] = []
        with Bridge(max_workers=2) as b:

            async def level(n: int) -> int:
                if n == 0:
                    return 0
                return 1 + await b.run_blocking(descend, n - 1)

            def descend(n: int) -> int:
                depth_seen.append(n)
                return b.sync_call_async(level, n)

            with anyio.fail_after(10):
                assert await level(6) == 6
        assert sorted(depth_seen) == [0, 1, 2, 3, 4, 5]

    @pytest.mark.anyio
    async def test_nested_gather_beyond_capacity_never_deadlocks(
        self, anyio_backend: str
    ) -> None:
        with Bridge(max_workers=2) as b:

            async def fan_out(n: int) -> int:
                results = []
                async with anyio.create_task_group() as tg:
                    for _ in range(3):

                        async def one() -> None:
                            results.append(await b.run_blocking(leaf, n))

                        tg.start_soon(one)
                return sum(results)

            def leaf(n: int) -> int:
                if n == 0:
                    return 1
                return b.sync_call_async(fan_out, n - 1)

            with anyio.fail_after(20):
                assert await fan_out(3) == 81  # 3 ** 4 leaves

    def test_abandoned_worker_never_calls_into_its_finished_loop(
        self, bridge: Bridge
    ) -> None:
        """A worker whose awaiter is gone (its loop finished) starts no async call.

        Cancelling the awaiting task reaches the coroutines its worker would
        start, whatever the abandon option: the call raises WorkerCancelled,
        and the stale loop is never touched.
        """
        started = threading.Event()
        release = threading.Event()
        seen: list[BaseException] = []
        finished = threading.Event()

        def abandoned() -> None:
            started.set()
            release.wait(10)
            try:
                bridge.sync_call_async(current_loop)
            except BaseException as exc:
                seen.append(exc)
            finally:
                finished.set()

        async def main() -> None:
            with anyio.move_on_after(0.01):
                await bridge.run_blocking(abandoned)

        asyncio.run(main())
        assert started.is_set()
        release.set()
        assert finished.wait(5)
        assert len(seen) == 1
        assert isinstance(seen[0], syncbridge.WorkerCancelled)


def _native_loop() -> object:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        import trio

        return trio.lowlevel.current_trio_token()


class TestContext:
    def test_coroutine_sees_a_copy_of_the_callers_context(self, bridge: Bridge) -> None:
        user.set("alice")

        async def read_and_change() -> str:
            seen = user.get()
            user.set("mallory")
            return seen

        assert bridge.sync_call_async(read_and_change) == "alice"
        assert user.get() == "alice"

    @pytest.mark.anyio
    async def test_context_flows_through_a_worker_round_trip(
        self, bridge: Bridge
    ) -> None:
        user.set("bob")

        async def read() -> str:
            return user.get()

        assert await bridge.run_blocking(bridge.sync_call_async, read) == "bob"


class TestTimeout:
    def test_to_sync_timeout_cancels_on_the_loop(self, bridge: Bridge) -> None:
        cancelled = threading.Event()

        @syncbridge.to_sync(timeout=0.05, bridge=bridge)
        async def slow() -> None:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                cancelled.set()
                raise

        with pytest.raises(TimeoutError):
            slow()
        assert cancelled.is_set(), "TimeoutError raised before the coroutine stopped"
        assert bridge.sync_call_async(double, 2) == 4  # the loop is still healthy
