"""The Flask integration watches the portal loop by default and names the view."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

import pytest
from flask import Flask

import syncbridge
from _scripts import run_script
from syncbridge.flask import DEFAULT_BLOCKING_THRESHOLD, SyncBridge

if TYPE_CHECKING:
    from collections.abc import Iterator

    from conftest import StallLog

WAIT = 10.0


@pytest.fixture(autouse=True)
def _default_bridge_unwatched_after() -> Iterator[None]:
    yield
    syncbridge.get_bridge().watch_portal(None)  # the default bridge is shared


def _app(**config: object) -> Flask:
    app = Flask(__name__)
    app.config.update(TESTING=True, **config)
    return app


def test_syncbridge_watches_the_portal_loop_by_default(reported: StallLog) -> None:
    SyncBridge(_app())
    watch = syncbridge.get_bridge().portal_watch
    assert watch is not None
    assert watch.threshold == DEFAULT_BLOCKING_THRESHOLD == 0.25


def test_a_blocking_async_view_is_reported_with_its_endpoint_path_and_stack(
    reported: StallLog,
) -> None:
    app = _app(SYNCBRIDGE_BLOCKING_THRESHOLD=0.05)
    SyncBridge(app)

    @app.get("/report/<int:n>")
    async def build_report(n: int) -> str:
        # Blocks the shared loop (what a sync driver call would do) until the
        # warning arrives: a report after the stall would never come.
        reported.seen.wait(WAIT)
        return "done"

    assert app.test_client().get("/report/7").text == "done"
    assert reported.seen.is_set()
    (message,) = reported.messages
    assert "blocked for" in message
    assert "(threshold 0.05 s)" in message
    assert "while serving GET /report/7 (endpoint 'build_report', view " in message
    assert "build_report" in message.split("Stack of the loop thread")[1]
    assert "syncbridge.run_blocking" in message


@pytest.mark.parametrize("off", [None, False])
def test_the_watch_can_be_switched_off(reported: StallLog, off: object) -> None:
    syncbridge.get_bridge().watch_portal(None)
    SyncBridge(_app(SYNCBRIDGE_BLOCKING_THRESHOLD=off))
    assert syncbridge.get_bridge().portal_watch is None


def test_the_last_app_set_up_decides_and_none_switches_the_watch_off(
    reported: StallLog,
) -> None:
    """The portal loop is the process's, so its watch is too."""
    SyncBridge(_app())
    assert syncbridge.get_bridge().portal_watch is not None
    quiet = _app(SYNCBRIDGE_BLOCKING_THRESHOLD=None)
    SyncBridge(quiet)

    @quiet.get("/stall")
    async def stall() -> str:
        time.sleep(0.4)  # longer than the default threshold: would be reported
        return "ok"

    assert syncbridge.get_bridge().portal_watch is None
    assert quiet.test_client().get("/stall").text == "ok"
    assert reported.messages == []


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_worker_is_configured_before_its_first_request() -> None:
    """gunicorn --preload: the child's new default bridge gets the config at once.

    In a fresh interpreter, as a preloading master is. Configuring the app starts
    no thread there, so the fork is one with no threads running (3.12+ warn of
    a fork with threads; ``-W error`` would make that warning fail the script).
    """
    result = run_script(
        """
        import os
        from flask import Flask
        import syncbridge
        from syncbridge.flask import SyncBridge

        app = Flask("preloaded")
        app.config.update(
            SYNCBRIDGE_THREADS=8,
            SYNCBRIDGE_POOLS={"flask-fork-db": 3},
            SYNCBRIDGE_BLOCKING_THRESHOLD=0.3,
        )
        SyncBridge(app)
        pid = os.fork()
        if pid == 0:
            try:
                bridge = syncbridge.get_bridge()
                watch = bridge.portal_watch
                ok = (
                    bridge.max_workers == 8
                    and bridge.pool("flask-fork-db").capacity == 3
                    and watch is not None
                    and watch.threshold == 0.3
                )
                os._exit(0 if ok else 1)
            finally:
                os._exit(2)
        _, status = os.waitpid(pid, 0)
        print("child", os.waitstatus_to_exitcode(status))
        """,
        flags=["-W", "error"],
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "child 0\n"
