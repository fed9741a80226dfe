"""STUB (replaced by the process-executor branch)."""

from __future__ import annotations

__all__ = ("ProcessExecutor",)

import concurrent.futures
from typing import Any


class ProcessExecutor(concurrent.futures.Executor):
    max_workers: int = 1
    processes: int = 0

    def terminate(self, future: concurrent.futures.Future[Any]) -> bool:
        return False
