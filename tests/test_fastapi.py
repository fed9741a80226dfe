"""syncbridge.fastapi.install(): lifespan, capacity, pools, timeouts, loop watch."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import subprocess
import sys
import threading
import time
from typing import TYPE_CHECKING, Annotated, Any

import anyio
import anyio.lowlevel
import anyio.to_thread
import httpx
import pytest
from fastapi import Depends, FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request  # noqa: TC002 - FastAPI reads annotations
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

import syncbridge
import syncbridge.fastapi
from syncbridge import Bridge, BridgeClosed, get_bridge

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator, Mapping

    from starlette.types import ASGIApp, Message, Receive, Scope, Send

MONITOR = "syncbridge-watch-"
WAIT = 10.0
"""Upper bound for anything a test waits for; never reached when it passes."""


# -- helpers ---------------------------------------------------------------------


@contextlib.asynccontextmanager
async def serve(app: ASGIApp) -> AsyncIterator[httpx.AsyncClient]:
    """Run *app*'s lifespan on this loop, like a server; yield a client for it.

    Lifespan state reaches each request as a shallow copy (as uvicorn does). A
    startup failure is raised as the app's own exception.
    """
    state: dict[str, Any] = {}
    to_app_send, to_app = anyio.create_memory_object_stream[Any](4)
    from_app_send, from_app = anyio.create_memory_object_stream[Any](4)
    app_errors: list[Exception] = []
    host_error: Exception | None = None

    async def run_lifespan() -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": state}
        try:
            await app(scope, to_app.receive, from_app_send.send)
        except Exception as exc:
            app_errors.append(exc)

    async def with_state(scope: Scope, receive: Receive, send: Send) -> None:
        scope["state"] = dict(state)
        await app(scope, receive, send)

    streams = (to_app_send, to_app, from_app_send, from_app)
    async with contextlib.AsyncExitStack() as stack, anyio.create_task_group() as tg:
        for stream in streams:
            stack.enter_context(stream)
        tg.start_soon(run_lifespan)
        await to_app_send.send({"type": "lifespan.startup"})
        message: Message = await from_app.receive()
        if message["type"] == "lifespan.startup.complete":
            transport = httpx.ASGITransport(app=with_state)
            try:
                async with httpx.AsyncClient(
                    transport=transport, base_url="http://test"
                ) as client:
                    yield client
            except Exception as exc:  # raised below, not as an ExceptionGroup
                host_error = exc
            finally:
                await to_app_send.send({"type": "lifespan.shutdown"})
                message = await from_app.receive()
                assert message["type"] == "lifespan.shutdown.complete", message
    if host_error is not None:
        raise host_error
    if app_errors:
        raise app_errors[0]


async def wait_until(condition: Callable[[], bool]) -> None:
    """Poll *condition* (cheap, state owned by another thread) until it holds."""
    with anyio.fail_after(WAIT):
        while not condition():
            await anyio.sleep(0.005)


def monitors() -> list[threading.Thread]:
    return [
        t for t in threading.enumerate() if t.name.startswith(MONITOR) and t.is_alive()
    ]


class Records(logging.Handler):
    """Collects ``syncbridge`` warnings; ``logged`` is set by the first one."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []
        self.logged = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.logged.set()

    @property
    def messages(self) -> list[str]:
        return [r.getMessage() for r in self.records]


@pytest.fixture
def records() -> Iterator[Records]:
    handler = Records()
    logger = logging.getLogger("syncbridge")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


@pytest.fixture(autouse=True)
def _no_monitor_left_and_default_bridge_restored() -> Iterator[None]:
    default = get_bridge()
    capacity = default.max_workers
    try:
        yield
    finally:
        default.max_workers = capacity
        assert not monitors(), "loop monitor thread left running"


# -- lifespan --------------------------------------------------------------------


class TestLifespan:
    @pytest.mark.anyio
    async def test_install_keeps_user_lifespan_and_its_state(
        self, bridge: Bridge
    ) -> None:
        events: list[str] = []

        @contextlib.asynccontextmanager
        async def lifespan(app: FastAPI) -> AsyncIterator[Mapping[str, Any]]:
            # Ours starts first: the pool already exists here.
            events.append(f"user startup, pool {bridge.pool('db').capacity}")
            yield {"connection": "conn-1"}
            events.append("user shutdown")

        app = FastAPI(lifespan=lifespan)
        syncbridge.fastapi.install(app, pools={"db": 3}, bridge=bridge)

        @app.get("/")
        async def index(request: Request) -> dict[str, str]:
            return {"connection": request.state.connection}

        async with serve(app) as client:
            response = await client.get("/")
            assert response.json() == {"connection": "conn-1"}
            assert events == ["user startup, pool 3"]
        assert events == ["user startup, pool 3", "user shutdown"]
        assert bridge.closed  # an explicit bridge is closed with the app

    @pytest.mark.anyio
    async def test_install_restarts_with_default_bridge(self) -> None:
        name = f"restart-{id(object())}"
        app = FastAPI()
        syncbridge.fastapi.install(app, pools={name: 2})

        @syncbridge.to_async(pool=name)
        def work() -> str:
            return "done"

        @app.get("/")
        async def index() -> str:
            return await work()

        for _ in range(2):
            async with serve(app) as client:
                assert (await client.get("/")).json() == "done"
            assert not get_bridge().closed  # the default bridge is never closed
        assert get_bridge().pool(name).capacity == 2

    @pytest.mark.anyio
    async def test_install_with_closed_bridge_fails_startup(
        self, bridge: Bridge
    ) -> None:
        app = FastAPI()
        syncbridge.fastapi.install(app, bridge=bridge)
        async with serve(app):
            pass
        with pytest.raises(BridgeClosed, match="Pass a new Bridge"):
            async with serve(app):
                pass  # pragma: no cover

    @pytest.mark.anyio
    async def test_install_resizes_an_existing_pool(self, bridge: Bridge) -> None:
        bridge.add_pool("db", 1)
        app = FastAPI()
        syncbridge.fastapi.install(app, pools={"db": 5}, bridge=bridge)
        async with serve(app):
            assert bridge.pool("db").capacity == 5

    @pytest.mark.anyio
    async def test_install_sets_a_pools_bounds_from_a_pool_config(
        self, bridge: Bridge
    ) -> None:
        bridge.add_pool("db", 1)
        app = FastAPI()
        pools: dict[str, int | syncbridge.PoolConfig] = {
            "db": {"capacity": 5, "max_waiting": 32, "max_wait": 0.5},
            "reports": {"capacity": 2, "max_wait": 3},
            "plain": 4,
        }
        syncbridge.fastapi.install(app, pools=pools, bridge=bridge)
        assert bounds(bridge, "db") == (5, 32, 0.5)
        assert bounds(bridge, "reports") == (2, None, 3)
        assert bounds(bridge, "plain") == (4, None, None)
        bridge.set_pool("db", 1)  # changed meanwhile: each startup applies it again
        async with serve(app):
            assert bounds(bridge, "db") == (5, 32, 0.5)


def bounds(bridge: Bridge, name: str) -> tuple[int, int | None, float | None]:
    pool = bridge.pool(name)
    assert isinstance(pool, syncbridge.WorkerPool)
    return (pool.capacity, pool.max_waiting, pool.max_wait)


# -- capacity and pools ---------------------------------------------------------


class TestCapacity:
    @pytest.mark.anyio
    async def test_install_threads_sizes_bridge_and_starlette_threadpool(
        self, bridge: Bridge
    ) -> None:
        app = FastAPI()
        syncbridge.fastapi.install(app, threads=7, bridge=bridge)

        @app.get("/capacity")
        async def capacity() -> dict[str, float]:
            limiter = anyio.to_thread.current_default_thread_limiter()
            return {"starlette": limiter.total_tokens, "bridge": bridge.max_workers}

        async with serve(app) as client:
            response = await client.get("/capacity")
        assert response.json() == {"starlette": 7, "bridge": 7}

    @pytest.mark.anyio
    async def test_install_pools_on_default_bridge_found_by_to_async(self) -> None:
        name = f"legacy-{id(object())}"
        app = FastAPI()
        syncbridge.fastapi.install(app, threads=5, pools={name: 3})

        @syncbridge.to_async(pool=name)
        def query() -> str:
            return threading.current_thread().name

        @app.get("/")
        async def index() -> str:
            return await query()

        async with serve(app) as client:
            thread_name = (await client.get("/")).json()
            assert get_bridge().max_workers == 5
        assert thread_name.startswith(f"syncbridge-default-{name}-")
        assert get_bridge().pool(name).capacity == 3

    @pytest.mark.anyio
    async def test_pools_exist_even_if_the_lifespan_never_runs(self) -> None:
        name = f"no-lifespan-{id(object())}"
        app = FastAPI()
        syncbridge.fastapi.install(app, pools={name: 2})

        @syncbridge.to_async(pool=name)
        def query() -> str:
            return threading.current_thread().name

        @app.get("/")
        async def index() -> str:
            return await query()

        # ASGITransport alone does not run the lifespan (nor does a TestClient
        # used without `with`).
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            thread_name = (await c.get("/")).json()
        assert thread_name.startswith(f"syncbridge-default-{name}-")
        assert get_bridge().pool(name).capacity == 2

    @pytest.mark.anyio
    async def test_named_pool_saturated_does_not_delay_default_pool(
        self, bridge: Bridge
    ) -> None:
        started = threading.Semaphore(0)
        release = threading.Event()

        @syncbridge.to_async(pool="slow", bridge=bridge)
        def slow() -> str:
            started.release()
            release.wait(WAIT)
            return "slow"

        @syncbridge.to_async(bridge=bridge)
        def fast() -> str:
            return "fast"

        app = FastAPI()
        # The default pool is as small as the slow one: if the slow calls ran
        # there, the fast ones would wait for them.
        syncbridge.fastapi.install(app, threads=2, pools={"slow": 2}, bridge=bridge)
        app.get("/slow")(slow)
        app.get("/fast")(fast)

        async with serve(app) as client, anyio.create_task_group() as tg:
            slow_pool = bridge.pool("slow")  # created at startup
            slow_statuses: list[int] = []

            async def get_slow() -> None:
                slow_statuses.append((await client.get("/slow")).status_code)

            for _ in range(4):
                tg.start_soon(get_slow)
            try:
                for _ in range(2):
                    assert await anyio.to_thread.run_sync(started.acquire, True, WAIT)
                await wait_until(lambda: slow_pool.waiting == 2)

                fast_results: list[Any] = []

                async def get_fast() -> None:
                    fast_results.append((await client.get("/fast")).json())

                with anyio.fail_after(WAIT):
                    async with anyio.create_task_group() as fast_tg:
                        for _ in range(10):
                            fast_tg.start_soon(get_fast)
                assert fast_results == ["fast"] * 10
                assert (slow_pool.busy, slow_pool.waiting) == (2, 2)  # still full
            finally:
                release.set()
        assert slow_statuses == [200] * 4


# -- timeouts --------------------------------------------------------------------


class TestTimeouts:
    @pytest.mark.anyio
    async def test_timeout_gives_504_and_slot_counted_until_thread_ends(
        self, bridge: Bridge
    ) -> None:
        running = threading.Event()
        release = threading.Event()
        returned = threading.Event()

        @syncbridge.to_async(timeout=0.05, bridge=bridge)
        def stuck() -> None:
            running.set()
            release.wait(WAIT)
            returned.set()

        app = FastAPI()
        syncbridge.fastapi.install(app, bridge=bridge)
        app.get("/stuck")(stuck)

        async with serve(app) as client:
            with anyio.fail_after(WAIT):
                response = await client.get("/stuck")
            assert response.status_code == 504
            assert "timeout" in response.json()["detail"]
            assert running.is_set()
            assert not returned.is_set()
            assert bridge.pool().busy == 1  # the thread still holds its slot
            release.set()
            await wait_until(lambda: bridge.pool().busy == 0)
            assert returned.is_set()

    @pytest.mark.anyio
    async def test_timeout_lets_check_cancelled_stop_the_thread(
        self, bridge: Bridge
    ) -> None:
        stopped: list[BaseException] = []

        @syncbridge.to_async(timeout=0.05, bridge=bridge)
        def crunch() -> None:
            try:
                while True:
                    syncbridge.check_cancelled()
                    time.sleep(0.001)
            except BaseException as exc:
                stopped.append(exc)
                raise

        app = FastAPI()
        syncbridge.fastapi.install(app, bridge=bridge)
        app.get("/crunch")(crunch)

        async with serve(app) as client:
            assert (await client.get("/crunch")).status_code == 504
            await wait_until(lambda: bridge.pool().busy == 0)
        assert [type(e) for e in stopped] == [syncbridge.WorkerCancelled]

    @pytest.mark.anyio
    async def test_a_to_sync_deadline_in_a_route_lets_cleanup_await_before_504(
        self, bridge: Bridge, anyio_backend: str
    ) -> None:
        """A def route's to_sync(timeout=) runs on the app's loop, cancelled once (#24)."""
        closed = threading.Event()

        async def query() -> None:
            try:
                await anyio.sleep_forever()
            finally:
                if anyio_backend == "trio":  # trio code shields awaiting cleanup
                    with anyio.CancelScope(shield=True):
                        await anyio.sleep(0)
                else:
                    await asyncio.sleep(0)  # asyncio code needs no shield
                closed.set()

        def route() -> None:
            syncbridge.to_sync(query, timeout=0.05, bridge=bridge)()

        app = FastAPI()
        syncbridge.fastapi.install(app, bridge=bridge)
        app.get("/query")(route)

        async with serve(app) as client:
            with anyio.fail_after(WAIT):
                response = await client.get("/query")
            assert response.status_code == 504
            assert closed.is_set(), "the 504 came before the cleanup ended"

    @pytest.mark.parametrize("when", ["before", "after"])
    @pytest.mark.anyio
    async def test_user_timeout_handler_wins(self, bridge: Bridge, when: str) -> None:
        async def handler(request: Request, exc: Exception) -> Response:
            return JSONResponse({"mine": True}, status_code=503)

        app = FastAPI()
        if when == "before":
            app.add_exception_handler(TimeoutError, handler)
        syncbridge.fastapi.install(app, bridge=bridge)
        if when == "after":
            app.add_exception_handler(TimeoutError, handler)

        @app.get("/")
        async def index() -> None:
            raise syncbridge.SyncBridgeTimeout("a deadline of ours")

        async with serve(app) as client:
            response = await client.get("/")
        assert (response.status_code, response.json()) == (503, {"mine": True})

    @pytest.mark.anyio
    async def test_user_oserror_handler_registered_before_wins(
        self, bridge: Bridge
    ) -> None:
        async def handler(request: Request, exc: Exception) -> Response:
            return PlainTextResponse("os error", status_code=502)

        app = FastAPI(exception_handlers={OSError: handler})
        syncbridge.fastapi.install(app, bridge=bridge)

        @app.get("/")
        async def index() -> None:
            raise syncbridge.SyncBridgeTimeout("a deadline of ours")

        async with serve(app) as client:
            response = await client.get("/")
        assert (response.status_code, response.text) == (502, "os error")

    @pytest.mark.anyio
    async def test_a_504_is_logged_with_the_request_and_the_deadline(
        self, bridge: Bridge, records: Records
    ) -> None:
        app = FastAPI()
        syncbridge.fastapi.install(app, bridge=bridge)

        @app.get("/report")
        async def report() -> None:
            raise syncbridge.SyncBridgeTimeout("report() did not finish within 3 s")

        async with serve(app) as client:
            assert (await client.get("/report")).status_code == 504
        [record] = records.records
        assert record.levelno == logging.WARNING
        assert record.syncbridge_event == "request-timed-out"  # type: ignore[attr-defined]
        assert record.syncbridge_request == "GET /report"  # type: ignore[attr-defined]
        assert record.syncbridge_queued is None  # type: ignore[attr-defined]
        assert record.getMessage() == (
            "GET /report was answered 504 Gateway Timeout: "
            "report() did not finish within 3 s"
        )

    @pytest.mark.skipif(
        not hasattr(syncbridge.SyncBridgeTimeout, "queued"),
        reason="SyncBridgeTimeout.queued comes with the h/totals branch",
    )
    @pytest.mark.anyio
    async def test_the_504_log_says_whether_the_call_was_queued(
        self, bridge: Bridge, records: Records
    ) -> None:
        running = threading.Event()
        release = threading.Event()

        def hold() -> None:
            running.set()
            release.wait(WAIT)

        bridge.add_pool("db", 1)
        hold_slot = syncbridge.to_async(hold, pool="db", bridge=bridge)
        query = syncbridge.to_async(
            lambda: None, pool="db", timeout=0.05, bridge=bridge
        )
        app = FastAPI()
        syncbridge.fastapi.install(app, bridge=bridge)

        @app.get("/query")
        async def route() -> None:
            await query()

        async with serve(app) as client, anyio.create_task_group() as tg:
            tg.start_soon(hold_slot)
            await anyio.to_thread.run_sync(running.wait, WAIT)
            try:
                assert (await client.get("/query")).status_code == 504
            finally:
                release.set()
        [record] = records.records
        assert record.syncbridge_queued is True  # type: ignore[attr-defined]
        assert record.syncbridge_waited >= 0.05  # type: ignore[attr-defined]
        assert record.syncbridge_ran is None  # type: ignore[attr-defined]
        assert str(record.syncbridge_pool).endswith("db")  # type: ignore[attr-defined]
        assert "still queued for a slot of pool" in record.getMessage()

    @pytest.mark.anyio
    async def test_a_504_the_app_answers_itself_is_not_logged(
        self, bridge: Bridge, records: Records
    ) -> None:
        async def handler(request: Request, exc: Exception) -> Response:
            return PlainTextResponse("mine", status_code=504)

        app = FastAPI(exception_handlers={syncbridge.SyncBridgeError: handler})
        syncbridge.fastapi.install(app, bridge=bridge)

        @app.get("/")
        async def index() -> None:
            raise syncbridge.SyncBridgeTimeout("a deadline of ours")

        async with serve(app) as client:
            assert (await client.get("/")).text == "mine"
        assert records.records == []


# -- saturated pools -------------------------------------------------------------


def saturated(option: str = "max_wait", limit: float = 0.5) -> syncbridge.PoolSaturated:
    return syncbridge.PoolSaturated(
        "run_blocking(query)",
        pool="db",
        capacity=10,
        busy=10,
        waiting=32,
        option=option,
        limit=limit,
    )


class TestSaturated:
    @pytest.mark.parametrize(
        ("option", "limit", "retry_after"),
        [
            ("max_wait", 0.5, "1"),
            ("max_wait", 2.0, "2"),
            ("max_wait", 2.1, "3"),
            ("max_waiting", 32, "1"),
        ],
    )
    @pytest.mark.anyio
    async def test_pool_saturated_gives_503_with_retry_after(
        self, bridge: Bridge, option: str, limit: float, retry_after: str
    ) -> None:
        app = FastAPI()
        syncbridge.fastapi.install(app, bridge=bridge)

        @app.get("/")
        def index() -> None:
            raise saturated(option, limit)

        async with serve(app) as client:
            response = await client.get("/")
        assert response.status_code == 503
        assert response.headers["Retry-After"] == retry_after
        assert "too busy" in response.json()["detail"]
        assert "db" not in response.json()["detail"]  # no internals to the client

    @pytest.mark.parametrize(
        "base", [syncbridge.PoolSaturated, syncbridge.SyncBridgeError]
    )
    @pytest.mark.parametrize("when", ["before", "after"])
    @pytest.mark.anyio
    async def test_user_handler_wins_over_the_503(
        self, bridge: Bridge, when: str, base: type[Exception]
    ) -> None:
        def handler(request: Request, exc: Exception) -> Response:  # sync: threadpool
            assert isinstance(exc, syncbridge.PoolSaturated)
            return JSONResponse({"pool": exc.pool}, status_code=429)

        app = FastAPI()
        if when == "before":
            app.add_exception_handler(base, handler)
        syncbridge.fastapi.install(app, bridge=bridge)
        if when == "after":
            app.add_exception_handler(base, handler)

        @app.get("/")
        async def index() -> None:
            raise saturated()

        async with serve(app) as client:
            response = await client.get("/")
        assert (response.status_code, response.json()) == (429, {"pool": "db"})
        assert "Retry-After" not in response.headers


# -- sync_call_async on the app's loop -----------------------------------------


async def on_app_loop(state: Any) -> bool:
    """Whether this coroutine runs on the loop the app's lifespan ran on."""
    ready = getattr(state, "ready", None)
    if ready is not None:
        assert await ready == "ready"
    token = anyio.lowlevel.current_token()
    return bool(token.native_token is state.token.native_token)


def app_loop_dependency(request: Request) -> bool:
    return syncbridge.sync_call_async(on_app_loop, request.state)


class TestAppLoop:
    @pytest.mark.anyio
    async def test_sync_call_async_from_def_route_and_sync_dependency_uses_app_loop(
        self, bridge: Bridge, anyio_backend: str
    ) -> None:
        @contextlib.asynccontextmanager
        async def lifespan(app: FastAPI) -> AsyncIterator[Mapping[str, Any]]:
            state: dict[str, Any] = {"token": anyio.lowlevel.current_token()}
            if anyio_backend == "asyncio":
                # Bound to the app's loop: awaiting it elsewhere raises.
                ready = asyncio.get_running_loop().create_future()
                ready.set_result("ready")
                state["ready"] = ready
            yield state

        app = FastAPI(lifespan=lifespan)
        syncbridge.fastapi.install(app, threads=4, bridge=bridge)

        @app.get("/")
        def index(
            request: Request, dep: Annotated[bool, Depends(app_loop_dependency)]
        ) -> dict[str, bool]:
            route = syncbridge.sync_call_async(on_app_loop, request.state)
            return {"route": route, "dependency": dep}

        async with serve(app) as client:
            response = await client.get("/")
        assert response.json() == {"route": True, "dependency": True}


# -- loop-block detection ----------------------------------------------------------


def _blocking_app(
    bridge: Bridge, threshold: float, release: threading.Event, hold: float = 0.0
) -> FastAPI:
    app = FastAPI()
    syncbridge.fastapi.install(app, blocking_threshold=threshold, bridge=bridge)

    @app.get("/stall/{item}")
    async def stalling_route(item: str) -> str:
        release.wait(WAIT)  # blocks the event loop: the anti-pattern
        time.sleep(hold)
        return item

    return app


class TestLoopBlockDetection:
    @pytest.mark.anyio
    async def test_blocked_loop_logs_route_and_stack_once(
        self, bridge: Bridge, records: Records
    ) -> None:
        # After the warning the route keeps the loop blocked for 6 thresholds
        # more: still the same stall, so still one warning.
        app = _blocking_app(bridge, 0.05, records.logged, hold=0.3)
        async with serve(app) as client:
            assert len(monitors()) == 1
            response = await client.get("/stall/x")
            assert response.status_code == 200
            assert records.logged.is_set()
        (message,) = records.messages
        assert "while serving GET /stall/x" in message
        assert "(threshold 0.05 s)" in message
        route = message.index("in stalling_route\n    release.wait(WAIT)")
        assert route > message.index("in __call__")  # innermost frames last
        assert "threading.py" in message.splitlines()[-2]  # Event.wait, innermost
        assert records.records[0].name == "syncbridge"
        assert records.records[0].levelno == logging.WARNING

    @pytest.mark.anyio
    async def test_blocked_loop_outside_a_request_says_so(
        self, bridge: Bridge, records: Records
    ) -> None:
        app = _blocking_app(bridge, 0.05, threading.Event())
        async with serve(app):
            assert records.logged.wait(WAIT)  # blocks this loop: the app's loop
        (message,) = records.messages
        assert "outside any known call" in message
        assert "records.logged.wait(WAIT)" in message

    @pytest.mark.anyio
    async def test_route_is_named_behind_a_task_spawning_middleware(
        self, bridge: Bridge, records: Records
    ) -> None:
        async def passthrough(request: Request, call_next: Any) -> Response:
            response: Response = await call_next(request)
            return response

        app = FastAPI()
        # BaseHTTPMiddleware runs the rest of the request in another task.
        app.add_middleware(BaseHTTPMiddleware, dispatch=passthrough)
        syncbridge.fastapi.install(app, blocking_threshold=0.05, bridge=bridge)

        @app.get("/stall")
        async def stalling_route() -> None:
            records.logged.wait(WAIT)

        async with serve(app) as client:
            assert (await client.get("/stall")).status_code == 200
        (message,) = records.messages
        assert "while serving GET /stall" in message

    @pytest.mark.anyio
    async def test_short_block_below_threshold_logs_nothing(
        self, bridge: Bridge, records: Records
    ) -> None:
        threshold = 0.4
        app = _blocking_app(bridge, threshold, threading.Event())

        @app.get("/short")
        async def short() -> None:
            time.sleep(0.02)

        async with serve(app) as client:
            assert (await client.get("/short")).status_code == 200
            await anyio.sleep(2 * threshold)  # the monitor looks several times
        assert records.messages == []

    @pytest.mark.anyio
    async def test_monitor_thread_stops_at_shutdown(self, bridge: Bridge) -> None:
        app = _blocking_app(bridge, 0.05, threading.Event())
        async with serve(app):
            (thread,) = monitors()
            assert thread.daemon
        assert not thread.is_alive()

    @pytest.mark.anyio
    async def test_detection_off_adds_no_middleware_task_or_thread(
        self, bridge: Bridge
    ) -> None:
        app = FastAPI()
        middleware = list(app.user_middleware)
        syncbridge.fastapi.install(app, threads=4, bridge=bridge)
        assert app.user_middleware == middleware
        async with serve(app):
            assert not monitors()


# -- install() itself ------------------------------------------------------------


class TestInstall:
    def test_install_twice_is_an_error(self) -> None:
        app = FastAPI()
        syncbridge.fastapi.install(app, pools={"db": 2})
        lifespan = app.router.lifespan_context
        with pytest.raises(RuntimeError, match="already called on this app"):
            syncbridge.fastapi.install(app, pools={"db": 2})
        assert app.router.lifespan_context is lifespan

    @pytest.mark.anyio
    async def test_install_after_start_is_an_error(self, bridge: Bridge) -> None:
        app = FastAPI()
        async with serve(app):
            pass
        with pytest.raises(RuntimeError, match="before the app starts"):
            syncbridge.fastapi.install(app, bridge=bridge)

    @pytest.mark.parametrize(
        ("kwargs", "error", "match"),
        [
            pytest.param(
                {"threads": 0},
                ValueError,
                r"install\(threads=\.\.\.\) must be an int >= 1",
                id="0",
            ),
            pytest.param(
                {"threads": 2.0},
                TypeError,
                r"install\(threads=\.\.\.\).*of type float",
                id="float",
            ),
            pytest.param(
                {"threads": True},
                TypeError,
                r"install\(threads=\.\.\.\).*of type bool",
                id="bool",
            ),
            pytest.param({"threads": "8"}, TypeError, r"convert it first", id="str"),
            pytest.param(
                {"pools": {"db": 0}},
                ValueError,
                r"install\(pools=\{'db': \.\.\.\}\) must be an int >= 1",
                id="pool-0",
            ),
            pytest.param(
                {"pools": {"db": 1.5}},
                TypeError,
                r"pools=\{'db'.*of type float",
                id="pool-float",
            ),
            pytest.param(
                {"pools": {1: 2}},
                TypeError,
                r"pool name in .*pools=.*must be a str",
                id="pool-key",
            ),
            pytest.param(
                {"pools": {"": 2}},
                ValueError,
                r"pool name in .*must not be empty",
                id="pool-empty",
            ),
            pytest.param(
                {"pools": {"db": {"capacity": 2, "max_wait": 0}}},
                ValueError,
                r"install\(pools=\{'db': \.\.\.\}\)\['max_wait'\] must be a finite",
                id="pool-max-wait-0",
            ),
            pytest.param(
                {"pools": {"db": {"capacity": 2, "max_waiting": 1.5}}},
                TypeError,
                r"\['max_waiting'\] must be None \(no bound\) or an int >= 0",
                id="pool-max-waiting-float",
            ),
            pytest.param(
                {"pools": {"db": {"max_waiting": 3}}},
                ValueError,
                r"install\(pools=\{'db': \.\.\.\}\) has no 'capacity'",
                id="pool-no-capacity",
            ),
            pytest.param(
                {"pools": ["db"]},
                TypeError,
                r"pools=\.\.\.\) must be a mapping of pool names",
                id="pools-list",
            ),
            pytest.param(
                {"blocking_threshold": 0},
                ValueError,
                r"blocking_threshold=\.\.\.\) must be a finite number of seconds > 0, or None",
                id="threshold-0",
            ),
            pytest.param(
                {"blocking_threshold": float("inf")},
                ValueError,
                r"blocking_threshold=.*finite",
                id="threshold-inf",
            ),
            pytest.param(
                {"blocking_threshold": "1"},
                TypeError,
                r"blocking_threshold=.*of type str",
                id="threshold-str",
            ),
            pytest.param(
                {"blocking_threshold": True},
                TypeError,
                r"blocking_threshold=.*of type bool",
                id="threshold-bool",
            ),
            pytest.param(
                {"bridge": object()},
                TypeError,
                r"bridge=\.\.\.\) must be a syncbridge\.Bridge",
                id="bridge",
            ),
        ],
    )
    def test_install_rejects_bad_arguments_at_once(
        self, kwargs: dict[str, Any], error: type[Exception], match: str
    ) -> None:
        app = FastAPI()
        with pytest.raises(error, match=match):
            syncbridge.fastapi.install(app, **kwargs)
        assert getattr(app.state, "syncbridge", None) is None  # nothing installed

    def test_install_rejects_non_starlette_app(self) -> None:
        with pytest.raises(TypeError, match="FastAPI or Starlette application"):
            syncbridge.fastapi.install(object())  # type: ignore[arg-type]

    def test_import_does_not_import_fastapi_or_starlette(self) -> None:
        code = (
            "import sys; import syncbridge, syncbridge.fastapi; "
            "heavy = {'fastapi', 'starlette'} & set(sys.modules); "
            "assert not heavy, heavy"
        )
        subprocess.run([sys.executable, "-c", code], check=True, timeout=30)

    @pytest.mark.anyio
    async def test_starlette_app(self, bridge: Bridge) -> None:
        @syncbridge.to_async(pool="db", bridge=bridge)
        def query() -> str:
            return threading.current_thread().name

        @syncbridge.to_async(timeout=0.01, bridge=bridge)
        def too_slow() -> None:
            time.sleep(0.2)

        async def index(request: Request) -> Response:
            return PlainTextResponse(await query())

        async def slow(request: Request) -> Response:
            await too_slow()
            raise AssertionError("unreachable")  # pragma: no cover

        app = Starlette(routes=[Route("/", index), Route("/slow", slow)])
        syncbridge.fastapi.install(
            app, pools={"db": 2}, blocking_threshold=1.0, bridge=bridge
        )
        async with serve(app) as client:
            response = await client.get("/")
            assert response.text.startswith(f"syncbridge-{bridge.name}-db-")
            assert (await client.get("/slow")).status_code == 504


# -- FastAPI's signature inspection ------------------------------------------------


class Item(BaseModel):
    name: str
    price: float


def lookup(q: str, limit: int = 10) -> list[str]:
    """Look items up (a blocking dependency)."""
    return [q] * limit


lookup_async = syncbridge.to_async(lookup)


def create_item(
    item_id: int, item: Item, found: Annotated[list[str], Depends(lookup)]
) -> Item:
    """Create an item (a blocking handler)."""
    return item


# The same handler, depending on the to_async version of the dependency. Its
# string annotations (from __future__) resolve in this module's globals.
def create_item_bridged(
    item_id: int, item: Item, found: Annotated[list[str], Depends(lookup_async)]
) -> Item:
    """Create an item (a blocking handler)."""
    return item


def _openapi_app(
    handler: Callable[..., Any], dependency: Callable[..., Any]
) -> FastAPI:
    app = FastAPI(title="items")
    app.post("/items/{item_id}", response_model=Item, name="create_item")(handler)
    app.get("/lookup")(dependency)
    return app


def test_openapi_schema_unchanged_by_to_async_and_install() -> None:
    plain = _openapi_app(create_item, lookup)
    bridged = _openapi_app(syncbridge.to_async(create_item_bridged), lookup_async)
    syncbridge.fastapi.install(bridged, threads=8, blocking_threshold=0.5)
    schema = bridged.openapi()
    assert schema == plain.openapi()
    parameters = schema["paths"]["/items/{item_id}"]["post"]["parameters"]
    assert [p["name"] for p in parameters] == ["item_id", "q", "limit"]
