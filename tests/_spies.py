"""Spies the tests put on the core's internals. Not a test module."""

from __future__ import annotations

from typing import Any


def record_submits(pool: Any) -> list[object]:
    """Record each job handed to *pool* (a WorkerPool), then let it through.

    Returns the list the jobs are appended to, in order.
    """
    submitted: list[object] = []
    real_submit = pool._submit

    def recording_submit(job: Any, bounded: bool = True) -> None:
        submitted.append(job)
        real_submit(job, bounded)

    pool._submit = recording_submit
    return submitted
