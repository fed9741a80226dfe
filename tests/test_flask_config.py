"""syncbridge.flask configuration: read and checked by init_app, as Flask extensions do."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import textwrap
import weakref
from typing import TYPE_CHECKING, Any

import pytest
from flask import Flask

import syncbridge
from syncbridge.flask import SyncBridge

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture
def default_capacity() -> Iterator[int]:
    """Restore the default bridge's capacity that a test's config changes."""
    bridge = syncbridge.get_bridge()
    before = bridge.max_workers
    yield before
    bridge.max_workers = before


def _app(**config: Any) -> Flask:
    app = Flask(__name__)
    app.config.update(TESTING=True, **config)
    return app


class TestConfigIsCheckedAtInitApp:
    @pytest.mark.parametrize(
        ("key", "value", "error", "words"),
        [
            pytest.param(
                "SYNCBRIDGE_TIMEOUT", "0.2", TypeError, "of type str", id="timeout-str"
            ),
            pytest.param(
                "SYNCBRIDGE_TIMEOUT", 0, ValueError, "seconds > 0", id="timeout-zero"
            ),
            pytest.param(
                "SYNCBRIDGE_TIMEOUT", -5, ValueError, "seconds > 0", id="timeout-neg"
            ),
            pytest.param(
                "SYNCBRIDGE_TIMEOUT",
                float("nan"),
                ValueError,
                "finite",
                id="timeout-nan",
            ),
            pytest.param(
                "SYNCBRIDGE_TIMEOUT", True, TypeError, "of type bool", id="timeout-bool"
            ),
            pytest.param(
                "SYNCBRIDGE_THREADS", "8", TypeError, "int >= 1", id="threads-str"
            ),
            pytest.param(
                "SYNCBRIDGE_THREADS", 0, ValueError, "int >= 1", id="threads-zero"
            ),
            pytest.param(
                "SYNCBRIDGE_THREADS", 2.5, TypeError, "int >= 1", id="threads-float"
            ),
            pytest.param(
                "SYNCBRIDGE_POOLS",
                ["db"],
                TypeError,
                "a mapping of pool names",
                id="pools-list",
            ),
            pytest.param(
                "SYNCBRIDGE_POOLS", {"db": 0}, ValueError, "int >= 1", id="pools-zero"
            ),
            pytest.param(
                "SYNCBRIDGE_POOLS", {"db": "5"}, TypeError, "int >= 1", id="pools-str"
            ),
            pytest.param(
                "SYNCBRIDGE_POOLS", {3: 5}, TypeError, "pool name", id="pools-key"
            ),
            pytest.param(
                "SYNCBRIDGE_POOLS", {"": 5}, ValueError, "pool name", id="pools-empty"
            ),
            pytest.param(
                "SYNCBRIDGE_POOLS",
                {"db": {"capacity": 2, "max_wait": 0}},
                ValueError,
                "app.config['SYNCBRIDGE_POOLS']['db']['max_wait'] must be a finite "
                "number of seconds > 0",
                id="pools-max-wait-zero",
            ),
            pytest.param(
                "SYNCBRIDGE_POOLS",
                {"db": {"capacity": 2, "max_waiting": -1}},
                ValueError,
                "app.config['SYNCBRIDGE_POOLS']['db']['max_waiting'] must be None",
                id="pools-max-waiting-negative",
            ),
            pytest.param(
                "SYNCBRIDGE_POOLS",
                {"db": {"capacity": 2, "max_waiting": "32"}},
                TypeError,
                "['max_waiting'] must be None (no bound) or an int >= 0",
                id="pools-max-waiting-str",
            ),
            pytest.param(
                "SYNCBRIDGE_POOLS",
                {"db": {"max_wait": 0.5}},
                ValueError,
                "app.config['SYNCBRIDGE_POOLS']['db'] has no 'capacity'",
                id="pools-no-capacity",
            ),
            pytest.param(
                "SYNCBRIDGE_POOLS",
                {"db": {"capacity": 2, "max_wiat": 0.5}},
                ValueError,
                "unknown key(s) 'max_wiat'",
                id="pools-unknown-key",
            ),
            pytest.param(
                "SYNCBRIDGE_BLOCKING_THRESHOLD",
                "0.1",
                TypeError,
                "of type str",
                id="blocking-str",
            ),
            pytest.param(
                "SYNCBRIDGE_BLOCKING_THRESHOLD",
                0,
                ValueError,
                "seconds > 0, or None (no watch)",
                id="blocking-zero",
            ),
            pytest.param(
                "SYNCBRIDGE_BLOCKING_THRESHOLD",
                True,
                TypeError,
                "of type bool",
                id="blocking-true",
            ),
        ],
    )
    def test_bad_value_fails_at_init_app_naming_the_key_and_the_fix(
        self, key: str, value: object, error: type[Exception], words: str
    ) -> None:
        app = _app(**{key: value})
        ext = SyncBridge()
        with pytest.raises(error) as info:
            ext.init_app(app)
        message = str(info.value)
        assert f"app.config['{key}']" in message
        assert words in message
        assert "Fix the app config before SyncBridge(app)" in message
        assert "syncbridge" not in app.extensions

    def test_good_values_are_accepted(self, default_capacity: int) -> None:
        app = _app(
            SYNCBRIDGE_TIMEOUT=2,
            SYNCBRIDGE_THREADS=default_capacity,
            SYNCBRIDGE_POOLS={"flask-config-ok": 2},
        )
        SyncBridge(app)
        assert app.extensions["syncbridge"] is not None

    def test_defaults_are_set_in_the_config(self) -> None:
        app = _app()
        SyncBridge(app)
        assert app.config["SYNCBRIDGE_TIMEOUT"] is None
        assert app.config["SYNCBRIDGE_THREADS"] is None
        assert app.config["SYNCBRIDGE_POOLS"] is None


class TestThreadsAndPools:
    def test_threads_and_pools_size_the_default_bridge(
        self, default_capacity: int
    ) -> None:
        app = _app(
            SYNCBRIDGE_THREADS=default_capacity + 3,
            SYNCBRIDGE_POOLS={"flask-config-db": 3},
        )
        SyncBridge(app)
        bridge = syncbridge.get_bridge()
        assert bridge.max_workers == default_capacity + 3
        assert bridge.pool("flask-config-db").capacity == 3

    def test_a_pools_bounds_are_applied_and_resized(self) -> None:
        def bounds() -> tuple[int, int | None, float | None]:
            pool = syncbridge.get_bridge().pool("flask-config-bounded")
            assert isinstance(pool, syncbridge.WorkerPool)
            return (pool.capacity, pool.max_waiting, pool.max_wait)

        config = {"capacity": 3, "max_waiting": 8, "max_wait": 0.5}
        SyncBridge(_app(SYNCBRIDGE_POOLS={"flask-config-bounded": config}))
        assert bounds() == (3, 8, 0.5)
        # Another app's plain capacity lifts the bounds: the config is the pool's.
        SyncBridge(_app(SYNCBRIDGE_POOLS={"flask-config-bounded": 4}))
        assert bounds() == (4, None, None)

    def test_an_existing_pool_is_resized(self, default_capacity: int) -> None:
        bridge = syncbridge.get_bridge()
        bridge.add_pool("flask-config-resized", 1)
        SyncBridge(_app(SYNCBRIDGE_POOLS={"flask-config-resized": 4}))
        assert bridge.pool("flask-config-resized").capacity == 4

    def test_a_view_runs_in_the_configured_pool(self) -> None:
        app = _app(SYNCBRIDGE_POOLS={"flask-config-view": 2})
        SyncBridge(app)

        @syncbridge.to_async(pool="flask-config-view")
        def pool_capacity() -> int:
            return syncbridge.get_bridge().pool("flask-config-view").capacity

        @app.get("/")
        async def view() -> str:
            return str(await pool_capacity())

        assert app.test_client().get("/").text == "2"

    @pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
    def test_a_forked_worker_applies_them_to_its_own_bridge(self) -> None:
        """gunicorn forks after loading the app: the child's new bridge is sized too."""
        code = textwrap.dedent(
            """
            import os, sys, warnings
            warnings.simplefilter("ignore", DeprecationWarning)  # fork + threads
            from flask import Flask
            import syncbridge
            from syncbridge.flask import SyncBridge

            app = Flask("forked")
            app.config.update(
                SYNCBRIDGE_THREADS=7,
                SYNCBRIDGE_POOLS={"db": {"capacity": 3, "max_wait": 0.5}},
            )
            SyncBridge(app)
            parent = syncbridge.get_bridge()

            @app.get("/")
            async def view():
                b = syncbridge.get_bridge()
                db = b.pool("db")
                return f"{b is parent} {b.max_workers} {db.capacity} {db.max_wait}"

            pid = os.fork()
            if pid == 0:
                text = app.test_client().get("/").text
                os._exit(0 if text == "False 7 3 0.5" else 1)
            _, status = os.waitpid(pid, 0)
            sys.exit(os.waitstatus_to_exitcode(status))
            """
        )
        result = subprocess.run(
            [sys.executable, "-c", code],
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr


def test_app_freed_on_zero_refcount() -> None:
    """As Flask's own test: SyncBridge(app) makes no reference cycle with the app."""
    gc.collect()
    gc.disable()
    try:
        app = Flask(__name__)
        ext = SyncBridge(app)
        assert ext.app is app
        weak = weakref.ref(app)
        del app
        assert weak() is None
        assert ext.app is None
    finally:
        gc.enable()


def test_app_freed_after_serving_an_async_request() -> None:
    gc.collect()
    gc.disable()
    try:
        app = Flask(__name__)
        SyncBridge(app)

        @app.get("/")
        async def view() -> str:
            return "x"

        assert app.test_client().get("/").text == "x"
        weak = weakref.ref(app)
        del app, view
        assert weak() is None
    finally:
        gc.enable()


def test_background_on_a_freed_app_says_the_app_was_freed() -> None:
    import gc

    async def job() -> None:
        pass

    ext = SyncBridge(_app())
    gc.collect()
    with pytest.raises(
        RuntimeError, match="the app given to SyncBridge\\(app\\) was freed"
    ):
        ext.background(job)
