"""Closing a bridge by its one deadline: pools, then portal, then executors."""

from __future__ import annotations

__all__ = ("ANSWER_MARGIN", "close_bridge")

import concurrent.futures
import logging
import threading
import time
from typing import TYPE_CHECKING, Final

from ._executor_pool import ExecutorPool

if TYPE_CHECKING:
    from ._portal import Portal
    from ._workers import WorkerPool

logger = logging.getLogger("syncbridge")

ANSWER_MARGIN: Final = 0.5
"""Seconds a second close() waits past the first one's deadline: what the first
does after it (answers calls still without an outcome, logs what it left)."""


def close_bridge(
    pools: list[WorkerPool | ExecutorPool],
    portal: Portal,
    grace: float,
    deadline: float,
) -> None:
    """Close a bridge's *pools* and *portal* by *deadline* (a :func:`time.monotonic` time).

    The pools refuse new calls and fail their queued ones first, then the
    portal gets *grace* seconds before its tasks are cancelled, then every
    worker thread and executor call has until *deadline*. A call still running
    then is ended (in a :class:`~syncbridge.ProcessExecutor`) or left to finish
    on its own, each logged on the ``syncbridge`` logger.
    """
    threads = [thread for pool in pools for thread in pool.close()]
    portal.close(grace, deadline)
    me = threading.current_thread()
    for thread in threads:
        if thread is not me:
            _join(thread, deadline)
    on_executors = [p for p in pools if isinstance(p, ExecutorPool)]
    running = [f for p in on_executors for f in p.in_flight()]
    if running:
        concurrent.futures.wait(running, max(0.0, deadline - time.monotonic()))
    for executor_pool in on_executors:
        _end_or_leave(executor_pool)
    for pool in pools:
        if isinstance(pool, ExecutorPool):
            continue
        for name in pool.running_functions():
            logger.warning(
                "left %s() running in worker thread of pool %r: it did not "
                "return within the bridge's shutdown grace (call "
                "syncbridge.check_cancelled() in long work to stop early)",
                name,
                pool.name,
                extra={
                    "syncbridge_event": "worker-left-running",
                    "syncbridge_function": name,
                    "syncbridge_pool": pool.name,
                },
            )


def _end_or_leave(pool: ExecutorPool) -> None:
    """End the calls still running on *pool*, or say they are left running."""
    if pool._can_end_calls:  # pyright: ignore[reportPrivateUsage]
        for name in pool.end_running():
            logger.warning(
                "ended the worker process running %s() in pool %r: it did not "
                "return within the bridge's shutdown grace",
                name,
                pool.name,
                extra={
                    "syncbridge_event": "worker-process-ended",
                    "syncbridge_function": name,
                    "syncbridge_pool": pool.name,
                },
            )
        return
    for name in pool.running_functions():
        logger.warning(
            "left %s() running on %r (pool %r): it did not return within "
            "the bridge's shutdown grace, and only a "
            "syncbridge.ProcessExecutor can end a running call",
            name,
            pool.executor,
            pool.name,
            extra={
                "syncbridge_event": "executor-call-left-running",
                "syncbridge_function": name,
                "syncbridge_pool": pool.name,
            },
        )


def _join(thread: threading.Thread, deadline: float) -> None:
    """Join *thread* by *deadline*, also if it is still being started.

    A pool lists a new worker before starting it (outside its lock), so a close
    racing a burst may find one that cannot be joined yet, for a moment.
    """
    while True:
        try:
            thread.join(max(0.0, deadline - time.monotonic()))
        except RuntimeError:  # "cannot join thread before it is started"
            if time.monotonic() >= deadline:
                return
            time.sleep(0.001)  # polled: a Thread has no public "started" event
        else:
            return
