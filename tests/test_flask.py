"""syncbridge.flask: async Flask views on one persistent loop, under the test client."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import http.server
import inspect
import logging
import subprocess
import sys
import threading
import time
import traceback
from typing import TYPE_CHECKING, Any

import anyio
import flask
import httpx
import pytest
from flask import Flask, abort, current_app, g, request, session, url_for
from flask.views import MethodView
from werkzeug.exceptions import GatewayTimeout, ImATeapot

import syncbridge
from _scripts import run_script
from syncbridge._core._bridge import start_soon_call
from syncbridge.flask import SyncBridge, stream

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

    from flask.testing import FlaskClient


@pytest.fixture
def app() -> Flask:
    app = Flask(__name__)
    app.config.update(TESTING=True, SECRET_KEY="test")
    return app


@pytest.fixture
def ext(app: Flask) -> SyncBridge:
    return SyncBridge(app)


@pytest.fixture
def client(app: Flask, ext: SyncBridge) -> FlaskClient:
    return app.test_client()


def _portal_loop() -> asyncio.AbstractEventLoop:
    async def loop() -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    return syncbridge.sync_call_async(loop)


class TestOneLoop:
    def test_async_view_runs_on_the_portal_loop_every_time(
        self, app: Flask, client: FlaskClient
    ) -> None:
        seen: list[tuple[asyncio.AbstractEventLoop, str]] = []

        @app.get("/")
        async def index() -> str:
            seen.append((asyncio.get_running_loop(), threading.current_thread().name))
            return "ok"

        for _ in range(3):
            assert client.get("/").text == "ok"
        portal = _portal_loop()
        assert [loop for loop, _ in seen] == [portal] * 3
        assert all(name.startswith("syncbridge-portal-") for _, name in seen)

    def test_loop_bound_lock_created_in_request_one_works_in_request_two(
        self, app: Flask, client: FlaskClient
    ) -> None:
        lock: asyncio.Lock | None = None

        @app.get("/")
        async def contend() -> str:
            nonlocal lock
            if lock is None:
                lock = asyncio.Lock()
            # Contention makes the lock create a future, binding it to this loop.
            async with lock:
                waiter = asyncio.ensure_future(lock.acquire())
                await asyncio.sleep(0)
            await waiter
            lock.release()
            return "ok"

        assert client.get("/").text == "ok"
        assert client.get("/").text == "ok"

    def test_httpx_async_client_keeps_its_connections_across_requests(
        self, app: Flask, client: FlaskClient
    ) -> None:
        peers: list[tuple[str, int]] = []

        class Upstream(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive: connections are reused

            def do_GET(self) -> None:
                peers.append(self.client_address)
                body = b"pong"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        upstream = httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.server_port}")

        @app.get("/")
        async def proxy() -> str:
            return (await upstream.get("/ping")).text

        try:
            assert [client.get("/").text for _ in range(3)] == ["pong"] * 3
            assert len(set(peers)) == 1, "the pooled connection was not reused"
        finally:
            syncbridge.sync_call_async(upstream.aclose)
            server.shutdown()
            server.server_close()

    @pytest.mark.stress
    def test_many_server_threads_share_one_loop_and_one_lock(
        self, app: Flask, client: FlaskClient
    ) -> None:
        lock = asyncio.Lock()
        inside: list[int] = []
        peak = 0
        loops: set[asyncio.AbstractEventLoop] = set()

        @app.get("/<int:n>")
        async def work(n: int) -> dict[str, int]:
            nonlocal peak
            loops.add(asyncio.get_running_loop())
            async with lock:
                inside.append(n)
                peak = max(peak, len(inside))
                await asyncio.sleep(0)
                inside.remove(n)
            return {"n": n, "path": int(request.path[1:])}

        def hit(n: int) -> dict[str, int]:
            return app.test_client().get(f"/{n}").json  # type: ignore[return-value]

        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            results = list(pool.map(hit, range(400)))
        assert results == [{"n": n, "path": n} for n in range(400)]
        assert peak == 1
        assert loops == {_portal_loop()}


class TestRequestContext:
    def test_request_g_session_current_app_url_for(
        self, app: Flask, client: FlaskClient
    ) -> None:
        @app.get("/hello/<name>")
        async def hello(name: str) -> dict[str, Any]:
            await asyncio.sleep(0)
            session["seen"] = session.get("seen", 0) + 1
            g.name = name
            return {
                "arg": request.args["q"],
                "app": current_app.name,
                "url": url_for("hello", name="x"),
                "g": g.name,
                "seen": session["seen"],
            }

        first = client.get("/hello/ann?q=1").json
        second = client.get("/hello/bob?q=2").json
        assert first == {
            "arg": "1",
            "app": app.name,
            "url": "/hello/x",
            "g": "ann",
            "seen": 1,
        }
        assert second is not None
        assert second["seen"] == 2  # the session cookie set by the async view

    def test_async_hooks_share_g_with_sync_and_async_views(
        self, app: Flask, client: FlaskClient
    ) -> None:
        torn_down: list[str] = []

        @app.before_request
        async def load_user() -> None:
            await asyncio.sleep(0)
            g.user = request.headers.get("X-User", "anon")

        @app.after_request
        async def tag(response: flask.Response) -> flask.Response:
            response.headers["X-Seen-User"] = g.user
            return response

        @app.teardown_request
        async def done(exc: BaseException | None) -> None:
            torn_down.append(g.user)

        @app.get("/async")
        async def async_view() -> str:
            return f"async {g.user}"

        @app.get("/sync")
        def sync_view() -> str:
            return f"sync {g.user}"

        r1 = client.get("/async", headers={"X-User": "ann"})
        r2 = client.get("/sync", headers={"X-User": "bob"})
        assert (r1.text, r1.headers["X-Seen-User"]) == ("async ann", "ann")
        assert (r2.text, r2.headers["X-Seen-User"]) == ("sync bob", "bob")
        assert torn_down == ["ann", "bob"]

    def test_abort_and_http_exceptions_become_their_responses(
        self, app: Flask, client: FlaskClient
    ) -> None:
        @app.get("/missing")
        async def missing() -> str:
            await asyncio.sleep(0)
            abort(404)

        @app.get("/teapot")
        async def teapot() -> str:
            raise ImATeapot

        assert client.get("/missing").status_code == 404
        assert client.get("/teapot").status_code == 418

    def test_async_error_handler(self, app: Flask, client: FlaskClient) -> None:
        @app.errorhandler(KeyError)
        async def key_error(exc: KeyError) -> tuple[str, int]:
            await asyncio.sleep(0)
            return f"no {exc.args[0]} in {request.path}", 400

        @app.get("/lookup")
        async def lookup() -> str:
            empty: dict[str, str] = {}
            return empty["thing"]

        r = client.get("/lookup")
        assert (r.status_code, r.text) == (400, "no thing in /lookup")

    def test_async_class_based_view(self, app: Flask, client: FlaskClient) -> None:
        class Items(MethodView):
            async def get(self, n: int) -> str:
                return f"get {n} on {asyncio.get_running_loop() is loop}"

            async def post(self, n: int) -> str:
                return f"post {n} {request.get_data(as_text=True)}"

        app.add_url_rule("/items/<int:n>", view_func=Items.as_view("items"))
        loop = _portal_loop()
        assert client.get("/items/3").text == "get 3 on True"
        assert client.post("/items/4", data="body").text == "post 4 body"

    def test_exception_reaches_flask_unchanged_with_traceback(
        self, app: Flask, client: FlaskClient
    ) -> None:
        caught: list[BaseException] = []

        @app.errorhandler(ValueError)
        def handle(exc: ValueError) -> tuple[str, int]:
            caught.append(exc)
            return "bad", 400

        async def deep() -> None:
            raise ValueError("from deep")

        @app.get("/")
        async def view() -> str:
            await deep()
            return "unreachable"

        assert client.get("/").status_code == 400
        [exc] = caught
        frames = [f.name for f in traceback.extract_tb(exc.__traceback__)]
        assert frames[-2:] == ["view", "deep"]


class TestContextVariables:
    def test_a_call_that_never_finished_raises_its_own_error(
        self, app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """No context to copy back when the coroutine did not run to its end."""

        def loop_stopped(
            bridge: syncbridge.Bridge,
            timeout: float | None,
            func: Any,
            args: Any,
            *rest: Any,
            **named: Any,
        ) -> Any:
            # Started, never finished: no changes handed back (args[-2]).
            assert args[-2] == []
            raise syncbridge.SyncBridgeError("the event loop stopped")

        monkeypatch.setattr(syncbridge.flask, "call_with_timeout", loop_stopped)

        @app.get("/")
        async def view() -> str:
            return "never"

        with pytest.raises(syncbridge.SyncBridgeError, match="loop stopped"):
            client.get("/")

    def test_variable_set_in_an_async_hook_is_seen_by_the_view_and_later_hooks(
        self, app: Flask, client: FlaskClient
    ) -> None:
        seen: list[str] = []

        @app.before_request
        async def authenticate() -> None:
            await asyncio.sleep(0)
            user.set(request.headers["X-User"])

        @app.after_request
        def log(response: flask.Response) -> flask.Response:
            seen.append(user.get())
            return response

        @app.get("/sync")
        def sync_view() -> str:
            return user.get()

        @app.get("/async")
        async def async_view() -> str:
            return user.get()

        assert client.get("/sync", headers={"X-User": "ann"}).text == "ann"
        assert client.get("/async", headers={"X-User": "bob"}).text == "bob"
        assert seen == ["ann", "bob"]


user: contextvars.ContextVar[str] = contextvars.ContextVar("user", default="nobody")


class TestSyncViewsUntouched:
    def test_sync_functions_are_returned_as_is(
        self, app: Flask, ext: SyncBridge
    ) -> None:
        def view() -> str:
            return "x"

        assert app.ensure_sync(view) is view

    def test_other_apps_keep_flask_behaviour(self, ext: SyncBridge) -> None:
        other = Flask("other")

        async def view() -> str:
            return "x"

        assert other.ensure_sync.__func__ is Flask.ensure_sync  # type: ignore[attr-defined]


class TestTimeout:
    def test_overrun_cancels_on_the_loop_and_returns_504(
        self, app: Flask, ext: SyncBridge, client: FlaskClient
    ) -> None:
        cancelled = threading.Event()

        @app.get("/slow")
        @ext.timeout(0.1)
        async def slow() -> str:
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                cancelled.set()
                raise
            return "late"

        started = time.monotonic()
        r = client.get("/slow")
        assert r.status_code == 504
        assert "slow() did not finish within 0.1 s" in r.text
        assert cancelled.is_set()
        assert time.monotonic() - started < 10  # not the 30 s sleep

    def test_overrun_lets_cleanup_await_before_the_504(
        self, app: Flask, ext: SyncBridge, client: FlaskClient
    ) -> None:
        """The view is cancelled once: its cleanup may await, then the 504 (#24)."""
        closed = threading.Event()

        @app.get("/slow")
        @ext.timeout(0.05)
        async def slow() -> str:
            try:
                await asyncio.sleep(30)
            finally:
                await asyncio.sleep(0)  # closing a connection, say
                await asyncio.sleep(0)
                closed.set()
            return "late"

        r = client.get("/slow")
        assert r.status_code == 504
        assert "slow() did not finish within 0.05 s" in r.text
        assert closed.is_set(), "the 504 came before the view's cleanup ended"

    def test_decorator_order_does_not_matter(
        self, app: Flask, ext: SyncBridge, client: FlaskClient
    ) -> None:
        @ext.timeout(0.05)
        @app.get("/slow")
        async def slow() -> str:
            await asyncio.sleep(30)
            return "late"

        assert client.get("/slow").status_code == 504

    def test_fast_view_is_unaffected(
        self, app: Flask, ext: SyncBridge, client: FlaskClient
    ) -> None:
        @app.get("/fast")
        @ext.timeout(30)
        async def fast() -> str:
            return "fast"

        assert client.get("/fast").text == "fast"

    def test_app_wide_default_from_config_and_per_view_none(self, app: Flask) -> None:
        app.config["SYNCBRIDGE_TIMEOUT"] = 0.05
        ext = SyncBridge(app)
        client = app.test_client()
        release = threading.Event()

        async def wait_for_release() -> str:
            await asyncio.get_running_loop().run_in_executor(None, release.wait, 10)
            return "released"

        @app.get("/default")
        async def default() -> str:
            await asyncio.sleep(30)
            return "late"

        @app.get("/unbounded")
        @ext.timeout(None)
        async def unbounded() -> str:
            return await wait_for_release()

        assert client.get("/default").status_code == 504
        timer = threading.Timer(0.3, release.set)  # longer than the app default
        timer.start()
        try:
            assert client.get("/unbounded").text == "released"
        finally:
            timer.cancel()

    def test_504_handler_is_overridable(
        self, app: Flask, ext: SyncBridge, client: FlaskClient
    ) -> None:
        @app.errorhandler(GatewayTimeout)
        def gateway_timeout(exc: GatewayTimeout) -> tuple[dict[str, str], int]:
            return {"error": "upstream slow"}, 504

        @app.get("/slow")
        @ext.timeout(0.05)
        async def slow() -> str:
            await asyncio.sleep(30)
            return "late"

        r = client.get("/slow")
        assert (r.status_code, r.json) == (504, {"error": "upstream slow"})

    def test_the_views_own_timeout_error_is_not_a_504(
        self, app: Flask, ext: SyncBridge, client: FlaskClient
    ) -> None:
        @app.get("/own")
        @ext.timeout(30)
        async def own() -> str:
            raise TimeoutError("the view's own")

        # TESTING propagates unhandled errors: it is the view's, not a 504.
        with pytest.raises(TimeoutError, match="the view's own"):
            client.get("/own")

    def test_a_504_is_logged_with_the_request_and_the_view(
        self,
        app: Flask,
        ext: SyncBridge,
        client: FlaskClient,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        @app.get("/slow")
        @ext.timeout(0.05)
        async def slow() -> str:
            await asyncio.sleep(30)
            return "late"

        with caplog.at_level(logging.WARNING, logger="syncbridge"):
            assert client.get("/slow?x=1").status_code == 504
        [record] = [r for r in caplog.records if r.name == "syncbridge"]
        assert record.levelno == logging.WARNING
        assert record.syncbridge_event == "request-timed-out"  # type: ignore[attr-defined]
        assert record.syncbridge_request == "GET /slow"  # type: ignore[attr-defined]
        assert record.getMessage() == (
            "GET /slow was answered 504 Gateway Timeout: "
            "TestTimeout.test_a_504_is_logged_with_the_request_and_the_view.<locals>"
            ".slow() did not finish within 0.05 s."
        )

    def test_a_504_the_view_raises_itself_is_not_logged(
        self,
        app: Flask,
        ext: SyncBridge,
        client: FlaskClient,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        @app.get("/own")
        @ext.timeout(30)
        async def own() -> str:
            raise GatewayTimeout("the view's own")

        with caplog.at_level(logging.WARNING, logger="syncbridge"):
            assert client.get("/own").status_code == 504
        assert [r for r in caplog.records if r.name == "syncbridge"] == []

    @pytest.mark.parametrize(
        ("bad", "error"),
        [
            pytest.param(0, ValueError, id="zero"),
            pytest.param(-1, ValueError, id="negative"),
            pytest.param(float("nan"), ValueError, id="nan"),
            pytest.param(float("inf"), ValueError, id="inf"),
            pytest.param("1", TypeError, id="str"),
            pytest.param(True, TypeError, id="bool"),
        ],
    )
    def test_bad_seconds_are_refused(
        self, ext: SyncBridge, bad: Any, error: type[Exception]
    ) -> None:
        with pytest.raises(
            error, match=r"SyncBridge\.timeout\(seconds\) must be a finite number"
        ):
            ext.timeout(bad)

    def test_sync_view_is_refused(self, ext: SyncBridge) -> None:
        def view() -> str:
            return "x"

        with pytest.raises(TypeError, match="not 'async def'"):
            ext.timeout(1.0)(view)  # type: ignore[type-var]


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
        [("max_wait", 0.5, "1"), ("max_wait", 2.5, "3"), ("max_waiting", 32, "1")],
    )
    def test_pool_saturated_in_an_async_view_is_a_503_with_retry_after(
        self,
        app: Flask,
        client: FlaskClient,
        option: str,
        limit: float,
        retry_after: str,
    ) -> None:
        @app.get("/")
        async def index() -> str:
            raise saturated(option, limit)

        r = client.get("/")
        assert r.status_code == 503
        assert r.headers["Retry-After"] == retry_after
        assert "too busy" in r.text
        assert "'db'" not in r.text  # no internals to the client

    def test_pool_saturated_in_an_async_hook_is_a_503(
        self, app: Flask, client: FlaskClient
    ) -> None:
        @app.before_request
        async def check() -> None:
            raise saturated()

        @app.get("/")
        def index() -> str:
            return "not reached"

        assert client.get("/").status_code == 503

    @pytest.mark.parametrize(
        "key", [503, syncbridge.PoolSaturated, syncbridge.SyncBridgeError]
    )
    def test_the_apps_handler_wins_with_the_refusals_fields(
        self, app: Flask, client: FlaskClient, key: Any
    ) -> None:
        seen: list[BaseException] = []

        @app.errorhandler(key)
        def busy(exc: Exception) -> tuple[dict[str, object], int]:
            assert isinstance(exc, syncbridge.PoolSaturated)
            seen.append(exc)
            return {"pool": exc.pool, "busy": exc.busy}, 429

        @app.get("/")
        async def index() -> str:
            raise saturated()

        r = client.get("/")
        assert (r.status_code, r.json) == (429, {"pool": "db", "busy": 10})
        [exc] = seen
        assert isinstance(exc.__cause__, syncbridge.PoolSaturated)
        assert (exc.option, exc.limit) == ("max_wait", 0.5)  # type: ignore[attr-defined]

    def test_a_blueprints_handler_wins_for_its_routes(
        self, app: Flask, client: FlaskClient
    ) -> None:
        shop = flask.Blueprint("shop", __name__)

        @shop.errorhandler(503)
        def busy(exc: Exception) -> tuple[str, int]:
            return "shop busy", 503

        @shop.get("/shop")
        async def index() -> str:
            raise saturated()

        app.register_blueprint(shop)
        assert client.get("/shop").text == "shop busy"

    def test_the_view_itself_sees_the_pool_saturated(
        self, app: Flask, client: FlaskClient
    ) -> None:
        @app.get("/")
        async def index() -> str:
            try:
                raise saturated()
            except syncbridge.PoolSaturated as exc:
                return f"degraded: {type(exc).__name__}"

        assert client.get("/").text == "degraded: PoolSaturated"


class TestBackground:
    def test_runs_on_the_loop_with_the_app_context(
        self, app: Flask, ext: SyncBridge, client: FlaskClient
    ) -> None:
        futures: list[concurrent.futures.Future[tuple[str, bool, bool]]] = []

        async def job(tag: str) -> tuple[str, bool, bool]:
            await asyncio.sleep(0)
            return (
                f"{tag} {current_app.name}",
                flask.has_request_context(),
                asyncio.get_running_loop() is _portal_loop_cached,
            )

        @app.post("/")
        def start() -> tuple[str, int]:
            futures.append(ext.background(job, "tag"))
            return "accepted", 202

        _portal_loop_cached = _portal_loop()
        assert client.post("/").status_code == 202
        assert futures[0].result(timeout=10) == (f"tag {app.name}", False, True)

    def test_app_context_teardown_runs_off_the_loop_sync_and_async(
        self, app: Flask, ext: SyncBridge
    ) -> None:
        torn_down: list[tuple[str, str]] = []
        both = threading.Barrier(2)  # the last teardown function and this test

        @app.teardown_appcontext  # registered first, so Flask runs it last
        def done(exc: BaseException | None) -> None:
            both.wait(10)

        @app.teardown_appcontext
        def close_sync(exc: BaseException | None) -> None:
            torn_down.append(("sync", threading.current_thread().name))

        @app.teardown_appcontext
        async def close_async(exc: BaseException | None) -> None:
            await asyncio.sleep(0)
            torn_down.append(("async", threading.current_thread().name))

        async def job() -> str:
            return "done"

        future = ext.background(job)
        both.wait(10)
        assert future.result(timeout=10) == "done"
        kinds = dict(torn_down)
        assert not kinds["sync"].startswith("syncbridge-portal-")  # not on the loop
        assert kinds["async"].startswith("syncbridge-portal-")

    def test_failing_teardown_is_logged(self, app: Flask, ext: SyncBridge) -> None:
        logged = threading.Event()

        class Handler(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                if "tearing down" in record.getMessage():
                    logged.set()

        @app.teardown_appcontext
        def broken(exc: BaseException | None) -> None:
            raise OSError("cannot close")

        async def job() -> None:
            return None

        handler = Handler()
        app.logger.addHandler(handler)
        try:
            ext.background(job).result(timeout=10)
            assert logged.wait(10)
        finally:
            app.logger.removeHandler(handler)

    def test_accepts_a_coroutine_object(self, app: Flask, ext: SyncBridge) -> None:
        async def job() -> str:
            return current_app.name

        with app.app_context():
            future = ext.background(job())
        assert future.result(timeout=10) == app.name

    def test_outside_any_context_uses_the_extensions_app(
        self, app: Flask, ext: SyncBridge
    ) -> None:
        async def job() -> str:
            return current_app.name

        assert ext.background(job).result(timeout=10) == app.name

    def test_exception_is_logged_on_the_app_logger_and_kept(
        self, app: Flask, ext: SyncBridge, caplog: pytest.LogCaptureFixture
    ) -> None:
        error = ValueError("background failure")

        async def broken() -> None:
            raise error

        with caplog.at_level(logging.ERROR, logger=app.logger.name):
            future = ext.background(broken)
            assert future.exception(timeout=10) is error
        [record] = [r for r in caplog.records if r.name == app.logger.name]
        assert "background task" in record.getMessage()
        assert "broken" in record.getMessage()
        assert record.exc_info is not None
        assert record.exc_info[1] is error

    def test_cancel_is_logged(
        self, app: Flask, ext: SyncBridge, caplog: pytest.LogCaptureFixture
    ) -> None:
        started = threading.Event()

        async def forever() -> None:
            started.set()
            await asyncio.sleep(30)

        with caplog.at_level(logging.WARNING, logger=app.logger.name):
            future = ext.background(forever)
            assert started.wait(10)
            assert future.cancel()
            deadline = time.monotonic() + 10
            while not any("cancelled" in r.getMessage() for r in caplog.records):
                assert time.monotonic() < deadline, "cancellation was not logged"
                time.sleep(0.01)

    def test_teardown_runs_while_the_caller_is_still_inside_background(
        self, app: Flask, ext: SyncBridge, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The work may end (and its app context be popped) before background()
        returns in the calling thread: the pop must still run."""
        torn_down = threading.Event()
        seen_in_time: list[bool] = []

        def start_and_wait_for_teardown(
            *args: Any, **kwargs: Any
        ) -> concurrent.futures.Future[Any]:
            future = start_soon_call(*args, **kwargs)
            seen_in_time.append(torn_down.wait(10))  # still inside background()
            return future

        @app.teardown_appcontext
        def done(exc: BaseException | None) -> None:
            torn_down.set()

        async def job() -> str:
            return "done"

        monkeypatch.setattr(
            syncbridge.flask, "start_soon_call", start_and_wait_for_teardown
        )
        future = ext.background(job)
        assert future.result(timeout=10) == "done"
        assert seen_in_time == [True]

    def test_app_context_is_torn_down_when_the_work_cannot_be_scheduled(
        self, app: Flask, ext: SyncBridge, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        torn_down: list[BaseException | None] = []
        closed = syncbridge.Bridge()
        closed.close()
        monkeypatch.setattr(syncbridge.flask, "get_bridge", lambda: closed)

        @app.teardown_appcontext
        def done(exc: BaseException | None) -> None:
            torn_down.append(exc)

        async def job() -> None:
            return None

        coro = job()
        with pytest.raises(syncbridge.BridgeClosed):
            ext.background(coro)
        assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED
        [error] = torn_down
        assert isinstance(error, syncbridge.BridgeClosed)

    def test_work_cancelled_before_it_starts_is_torn_down_and_closed(
        self, app: Flask, ext: SyncBridge, caplog: pytest.LogCaptureFixture
    ) -> None:
        holding, release = threading.Event(), threading.Event()
        torn_down = threading.Semaphore(0)
        ran: list[str] = []

        @app.teardown_appcontext
        def done(exc: BaseException | None) -> None:
            torn_down.release()

        async def hold_the_loop() -> None:
            holding.set()
            release.wait(10)  # blocks the loop on purpose: background work queues

        async def job(tag: str) -> None:
            ran.append(tag)

        syncbridge.get_bridge().start_soon(hold_the_loop)
        assert holding.wait(10)
        coro = job("object")
        with caplog.at_level(logging.WARNING, logger=app.logger.name):
            by_function = ext.background(job, "function")
            by_object = ext.background(coro)
            assert by_function.cancel()
            assert by_object.cancel()
            release.set()
            assert torn_down.acquire(timeout=10)
            assert torn_down.acquire(timeout=10)
            assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED
            assert syncbridge.sync_call_async(asyncio.sleep, 0) is None  # loop drained
        assert ran == []
        messages = [r.getMessage() for r in caplog.records]
        assert sum("cancelled before it started" in m for m in messages) == 2

    def test_without_an_app_says_how_to_get_one(self) -> None:
        async def job() -> None:
            return None

        with pytest.raises(RuntimeError, match="needs an app"):
            SyncBridge().background(job)

    def test_arguments_with_a_coroutine_object_are_refused_and_it_is_closed(
        self, app: Flask, ext: SyncBridge
    ) -> None:
        async def job(n: int) -> int:
            return n

        coro = job(1)
        with pytest.raises(TypeError, match="coroutine function"):
            ext.background(coro, 2)  # type: ignore[call-overload]
        # Closed, so no "never awaited" warning (warnings are errors here).
        assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED

    def test_pending_work_is_cancelled_and_logged_at_exit_without_hanging(
        self,
    ) -> None:
        script = """
import asyncio, logging, sys, time
from flask import Flask
from syncbridge.flask import SyncBridge
logging.basicConfig(level=logging.WARNING, stream=sys.stdout, format="%(name)s %(message)s")
app = Flask("exiting")
ext = SyncBridge(app)
@app.teardown_appcontext
def close(exc):
    print("torn down after", type(exc).__name__, flush=True)
async def stuck():
    await asyncio.sleep(3600)
ext.background(stuck)
time.sleep(0.2)
print("exiting")
"""
        started = time.monotonic()
        proc = run_script(script)
        assert proc.returncode == 0, proc.stderr
        assert time.monotonic() - started < 20
        assert "exiting background task" in proc.stdout
        assert "stuck was cancelled" in proc.stdout
        assert "torn down after CancelledError" in proc.stdout  # no worker left


class TestStream:
    def test_async_generator_is_streamed_with_the_request_context(
        self, app: Flask, client: FlaskClient
    ) -> None:
        @app.get("/count")
        async def count() -> Any:
            async def numbers() -> AsyncIterator[str]:
                for n in range(int(request.args["n"])):
                    await asyncio.sleep(0)
                    yield f"{n}{request.args['sep']}"

            return stream(numbers())

        r = client.get("/count?n=4&sep=;")
        assert r.text == "0;1;2;3;"

    def test_from_a_sync_view_in_a_response(
        self, app: Flask, client: FlaskClient
    ) -> None:
        async def letters() -> AsyncIterator[bytes]:
            for c in b"abc":
                yield bytes([c])

        @app.get("/letters")
        def view() -> flask.Response:
            return flask.Response(stream(letters()), mimetype="text/plain")

        r = client.get("/letters")
        assert (r.data, r.mimetype) == (b"abc", "text/plain")

    def test_closing_the_response_early_closes_the_generator_on_its_loop(
        self, app: Flask, client: FlaskClient
    ) -> None:
        closed_on: list[asyncio.AbstractEventLoop] = []
        torn_down = threading.Event()

        @app.teardown_request
        def teardown(exc: BaseException | None) -> None:
            torn_down.set()

        @app.get("/endless")
        async def endless() -> Any:
            async def ticks() -> AsyncIterator[str]:
                try:
                    n = 0
                    while True:
                        await asyncio.sleep(0)
                        yield f"{n}\n"
                        n += 1
                finally:
                    closed_on.append(asyncio.get_running_loop())

            return stream(ticks())

        r = client.get("/endless", buffered=False)
        chunks = r.iter_encoded()
        assert next(chunks) == b"0\n"
        assert next(chunks) == b"1\n"
        assert not closed_on
        r.close()  # what a WSGI server does when the client goes away
        assert closed_on == [_portal_loop()]
        assert torn_down.is_set()

    def test_body_made_on_the_loop_is_attached_when_the_view_returns(
        self, app: Flask, client: FlaskClient
    ) -> None:
        bodies: list[Iterator[str]] = []

        async def one() -> AsyncIterator[str]:
            yield "x"

        @app.get("/")
        async def view() -> str:
            bodies.append(stream(one()))
            return "kept the body"

        assert client.get("/").text == "kept the body"
        assert list(bodies[0]) == ["x"]  # attached when the view returned

    def test_body_made_on_the_loop_for_a_sync_view(
        self, app: Flask, client: FlaskClient
    ) -> None:
        async def letters() -> AsyncIterator[str]:
            yield request.args["a"]
            yield request.args["b"]

        async def make_body() -> Iterator[str]:
            return stream(letters())

        @app.get("/")
        def view() -> Any:
            return syncbridge.sync_call_async(make_body)

        assert client.get("/?a=x&b=y").text == "xy"

    def test_outside_a_request_is_an_error(self) -> None:
        async def one() -> AsyncIterator[str]:
            yield "x"

        with pytest.raises(RuntimeError, match="request context"):
            stream(one())


class TestSetup:
    def test_init_app_pattern(self) -> None:
        ext = SyncBridge()
        app = Flask("factory")

        @app.get("/")
        async def view() -> str:
            return str(asyncio.get_running_loop() is portal)

        portal = _portal_loop()
        ext.init_app(app)
        assert app.test_client().get("/").text == "True"
        assert app.extensions["syncbridge"] is ext

    @pytest.mark.parametrize("old", ["3.0.3", "3.1.1", "2.3.3"])
    def test_an_old_flask_is_refused_with_the_upgrade_to_run(
        self, monkeypatch: pytest.MonkeyPatch, old: str
    ) -> None:
        import importlib.metadata

        monkeypatch.setattr(importlib.metadata, "version", lambda name: old)
        app = Flask("old-flask")
        with pytest.raises(RuntimeError, match=r"pip install 'flask>=3\.1\.2'"):
            SyncBridge(app)
        assert "syncbridge" not in app.extensions

    @pytest.mark.parametrize("new", ["3.1.2", "3.2.0rc1", "4.0"])
    def test_a_recent_flask_is_accepted(
        self, monkeypatch: pytest.MonkeyPatch, new: str
    ) -> None:
        import importlib.metadata

        monkeypatch.setattr(importlib.metadata, "version", lambda name: new)
        app = Flask("new-flask")
        SyncBridge(app)
        assert "syncbridge" in app.extensions

    def test_second_setup_on_one_app_is_an_error(
        self, app: Flask, ext: SyncBridge
    ) -> None:
        with pytest.raises(RuntimeError, match="already set up"):
            SyncBridge(app)

    def test_import_syncbridge_does_not_import_flask(self) -> None:
        code = (
            "import sys, syncbridge, syncbridge.flask; "
            "assert 'flask' not in sys.modules, 'flask imported'; "
            "assert 'werkzeug' not in sys.modules, 'werkzeug imported'"
        )
        subprocess.run([sys.executable, "-c", code], check=True, timeout=30)

    def test_calling_from_a_running_loop_raises_deadlock_error(
        self, app: Flask, client: FlaskClient
    ) -> None:
        @app.get("/")
        async def view() -> str:
            return "x"

        async def main() -> None:
            with pytest.raises(syncbridge.DeadlockError, match=r"run_blocking\(client"):
                client.get("/")

        asyncio.run(main())


@pytest.mark.anyio
async def test_async_test_drives_the_client_through_run_blocking(
    anyio_backend: str,
) -> None:
    """The how-to's advice: from an async test, call the client in a worker thread.

    The view then runs on the test's own loop (the worker rule), asyncio or trio.
    """
    app = Flask("async-test")
    SyncBridge(app)
    token = anyio.lowlevel.current_token()

    @app.get("/")
    async def view() -> str:
        await anyio.sleep(0)
        return str(anyio.lowlevel.current_token() == token)

    response = await syncbridge.run_blocking(app.test_client().get, "/")
    assert response.text == "True"


async def test_a_request_from_a_worker_thread_copies_back_only_the_views_variables(
    anyio_backend: str,
) -> None:
    """The bridge's own per-call state must not leak into the request's thread."""
    from syncbridge._core._delegate import delegates

    app = Flask("copy-back")
    SyncBridge(app)
    user: contextvars.ContextVar[str] = contextvars.ContextVar("user")

    @app.before_request
    async def load_user() -> None:
        user.set("ada")

    @app.get("/")
    async def view() -> str:
        return user.get()

    def request_in_a_worker() -> tuple[str, bool, str]:
        before = delegates.get()
        response = app.test_client().get("/")
        return response.text, delegates.get() is before, user.get("unset")

    assert await syncbridge.run_blocking(request_in_a_worker) == ("ada", True, "ada")
