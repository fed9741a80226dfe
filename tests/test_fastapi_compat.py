"""syncbridge.fastapi.install() changes nothing it should not (found by ``nox -s compat``).

Only syncbridge's own timeouts become 504s; every other exception, a
``TimeoutError`` the app raises included, keeps the app's behaviour; nothing at
startup or shutdown blocks the event loop.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import anyio
import pytest
import sniffio
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request  # noqa: TC002 - FastAPI reads annotations
from starlette.responses import StreamingResponse
from starlette.routing import Route

import syncbridge
import syncbridge.fastapi
from test_fastapi import serve

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


def _raise_timeout(request: Request) -> None:
    raise TimeoutError("the app's own, e.g. a socket timeout")


class TestOnlyOurTimeoutsAre504s:
    @pytest.mark.parametrize("kind", ["fastapi", "starlette"])
    @pytest.mark.anyio
    async def test_an_apps_own_timeout_error_propagates_as_without_syncbridge(
        self, kind: str, anyio_backend: str
    ) -> None:
        app: Starlette
        if kind == "fastapi":
            app = FastAPI()
            app.get("/")(_raise_timeout)
        else:
            app = Starlette(routes=[Route("/", _raise_timeout)])
        syncbridge.fastapi.install(app)
        async with serve(app) as client:
            with pytest.raises(TimeoutError, match="the app's own") as info:
                await client.get("/")
        assert not isinstance(info.value, syncbridge.SyncBridgeTimeout)

    @pytest.mark.anyio
    async def test_a_timeout_error_in_a_started_stream_is_reported_as_without_syncbridge(
        self, anyio_backend: str
    ) -> None:
        """A handler for TimeoutError would turn it into "response already started"."""

        async def body() -> AsyncIterator[bytes]:
            yield b"first"
            raise TimeoutError("mid-stream")

        async def stream(request: Request) -> StreamingResponse:
            return StreamingResponse(body())

        app = Starlette(routes=[Route("/", stream)])
        syncbridge.fastapi.install(app)
        async with serve(app) as client:
            with pytest.raises(TimeoutError, match="mid-stream"):
                await client.get("/")

    @pytest.mark.parametrize("direction", ["to_async", "to_sync"])
    @pytest.mark.anyio
    async def test_syncbridges_own_timeouts_are_504s(
        self, direction: str, anyio_backend: str
    ) -> None:
        release = threading.Event()
        app = FastAPI()
        syncbridge.fastapi.install(app)

        if direction == "to_async":

            @syncbridge.to_async(timeout=0.05)
            def blocking() -> None:
                release.wait(10)

            @app.get("/")
            async def route() -> None:
                await blocking()

        else:

            @syncbridge.to_sync(timeout=0.05)
            async def waits() -> None:
                await anyio.sleep(30)

            @app.get("/")
            def sync_route() -> None:
                waits()

        try:
            async with serve(app) as client:
                response = await client.get("/")
        finally:
            release.set()
        assert response.status_code == 504
        assert "did not finish the request in time" in response.json()["detail"]

    @pytest.mark.anyio
    async def test_a_sync_bridge_timeout_handler_replaces_the_504(
        self, anyio_backend: str
    ) -> None:
        from starlette.responses import PlainTextResponse

        def ours(request: Request, exc: Exception) -> PlainTextResponse:
            return PlainTextResponse(f"mine: {type(exc).__name__}", status_code=503)

        async def route(request: Request) -> None:
            raise syncbridge.SyncBridgeTimeout("deadline")

        app = Starlette(routes=[Route("/", route)])
        syncbridge.fastapi.install(app)
        app.add_exception_handler(syncbridge.SyncBridgeTimeout, ours)
        async with serve(app) as client:
            response = await client.get("/")
        assert (response.status_code, response.text) == (503, "mine: SyncBridgeTimeout")


class TestTheTimeoutClass:
    @pytest.mark.anyio
    async def test_to_async_timeout_raises_sync_bridge_timeout(
        self, anyio_backend: str
    ) -> None:
        release = threading.Event()

        @syncbridge.to_async(timeout=0.01)
        def blocking() -> None:
            release.wait(10)

        try:
            with pytest.raises(syncbridge.SyncBridgeTimeout, match=r"blocking\(\)"):
                await blocking()
        finally:
            release.set()

    def test_to_sync_timeout_raises_sync_bridge_timeout(self) -> None:
        @syncbridge.to_sync(timeout=0.01)
        async def waits() -> None:
            await anyio.sleep(30)

        with pytest.raises(syncbridge.SyncBridgeTimeout, match=r"within 0\.01 s"):
            waits()

    @pytest.mark.anyio
    async def test_the_functions_own_timeout_error_passes_through(
        self, anyio_backend: str
    ) -> None:
        @syncbridge.to_async(timeout=30)
        def blocking() -> None:
            raise TimeoutError("own")

        with pytest.raises(TimeoutError, match="own") as info:
            await blocking()
        assert not isinstance(info.value, syncbridge.SyncBridgeTimeout)

    def test_it_is_a_timeout_error_and_gather_timeout_is_one(self) -> None:
        assert issubclass(syncbridge.SyncBridgeTimeout, TimeoutError)
        assert issubclass(syncbridge.SyncBridgeTimeout, syncbridge.SyncBridgeError)
        assert issubclass(syncbridge.GatherTimeout, syncbridge.SyncBridgeTimeout)
        assert syncbridge.SyncBridgeTimeout.__module__ == "syncbridge"


class TestNothingBlocksTheLoop:
    @pytest.fixture
    def joins_on_a_loop(self, monkeypatch: pytest.MonkeyPatch) -> list[str]:
        """Record each ``Thread.join`` made from a thread running an event loop."""
        found: list[str] = []
        original = threading.Thread.join

        def join(self: threading.Thread, timeout: float | None = None) -> None:
            try:
                library = sniffio.current_async_library()
            except sniffio.AsyncLibraryNotFoundError:
                pass
            else:
                found.append(f"{self.name} joined on the {library} loop")
            original(self, timeout)

        monkeypatch.setattr(threading.Thread, "join", join)
        return found

    @pytest.mark.anyio
    async def test_shutdown_with_blocking_threshold_joins_no_thread_on_the_loop(
        self, anyio_backend: str, joins_on_a_loop: list[str]
    ) -> None:
        app = FastAPI()
        syncbridge.fastapi.install(app, threads=8, blocking_threshold=0.5)

        @app.get("/")
        async def index() -> str:
            return "ok"

        async with serve(app) as client:
            assert (await client.get("/")).json() == "ok"
            assert any(
                t.name.startswith("syncbridge-watch-") for t in threading.enumerate()
            )
        assert joins_on_a_loop == []
        assert not any(
            t.name.startswith("syncbridge-watch-") and t.is_alive()
            for t in threading.enumerate()
        )
