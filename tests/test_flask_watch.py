"""The Flask integration watches the portal loop by default and names the view."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

import pytest
from flask import Flask

import syncbridge
from syncbridge.flask import DEFAULT_BLOCKING_THRESHOLD, SyncBridge

if TYPE_CHECKING:
    from collections.abc import Iterator

WAIT = 10.0


class Reported(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.seen = threading.Event()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if "event loop has been blocked" in record.getMessage():
            self.messages.append(record.getMessage())
            self.seen.set()


@pytest.fixture
def reported() -> Iterator[Reported]:
    handler = Reported()
    logger = logging.getLogger("syncbridge")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        syncbridge.get_bridge().watch_portal(None)  # the default bridge is shared


def _app(**config: object) -> Flask:
    app = Flask(__name__)
    app.config.update(TESTING=True, **config)
    return app


def test_syncbridge_watches_the_portal_loop_by_default(reported: Reported) -> None:
    SyncBridge(_app())
    watch = syncbridge.get_bridge().portal_watch
    assert watch is not None
    assert watch.threshold == DEFAULT_BLOCKING_THRESHOLD == 0.25


def test_a_blocking_async_view_is_reported_with_its_endpoint_path_and_stack(
    reported: Reported,
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
def test_the_watch_can_be_switched_off(reported: Reported, off: object) -> None:
    syncbridge.get_bridge().watch_portal(None)
    SyncBridge(_app(SYNCBRIDGE_BLOCKING_THRESHOLD=off))
    assert syncbridge.get_bridge().portal_watch is None
