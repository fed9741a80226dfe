"""Closing the portal by its deadline: how long it may take, and its log lines."""

from __future__ import annotations

__all__ = (
    "MIN_CLEANUP",
    "STOP_MARGIN",
    "log_abandoned",
    "log_cancelled",
    "log_left_running",
    "others",
    "stop_bound",
)

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    import threading

logger = logging.getLogger("syncbridge")

MIN_CLEANUP: Final = 0.1
"""Seconds cancelled tasks get to finish their cleanup, at the least."""
STOP_MARGIN: Final = 0.25
"""Seconds for the loop to stop and its thread to end once tasks are done."""


def stop_bound(grace: float) -> float:
    """How long :meth:`Portal.close` may take with *grace*: the real bound."""
    return grace + max(grace, MIN_CLEANUP) + STOP_MARGIN


def log_left_running(thread: threading.Thread, bound: float) -> None:
    logger.warning(
        "syncbridge portal thread %r did not stop within %.2f s (a coroutine on "
        "it ignores cancellation or blocks the loop); it is left behind as a "
        "daemon thread",
        thread.name,
        bound,
        extra={
            "syncbridge_event": "portal-left-running",
            "syncbridge_thread": thread.name,
        },
    )


def log_cancelled(name: str) -> None:
    logger.warning(
        "cancelled task %r: it was still running on the portal loop when its "
        "bridge closed",
        name,
        extra={"syncbridge_event": "task-cancelled-at-close", "syncbridge_task": name},
    )


def log_abandoned(name: str) -> None:
    logger.warning(
        "abandoned task %r: it did not finish after being cancelled when its "
        "bridge closed; its caller got BridgeClosed",
        name,
        extra={"syncbridge_event": "task-abandoned-at-close", "syncbridge_task": name},
    )


def others(me: asyncio.Task[Any] | None) -> set[asyncio.Task[Any]]:
    return {t for t in asyncio.all_tasks() if t is not me}
