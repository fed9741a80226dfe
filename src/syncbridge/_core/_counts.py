"""How a pool's calls ended, counted once each for ``stats()``."""

from __future__ import annotations

__all__ = ("Counts", "CountsSnapshot", "Ending")

import enum
import threading
from typing import NamedTuple


class Ending(enum.Enum):
    """How a call ended for its awaiter, as the stats count it."""

    COMPLETED = "completed"
    ERROR = "error"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed out"
    REJECTED = "rejected"
    """Refused by the pool's max_waiting/max_wait: it never ran."""


class CountsSnapshot(NamedTuple):
    """The totals at one moment."""

    calls: int
    completed: int
    errors: int
    cancellations: int
    timeouts: int
    rejected: int = 0


class Counts:
    """Thread-safe totals: calls made, and how each ended for its awaiter."""

    __slots__ = (
        "_calls",
        "_cancelled",
        "_completed",
        "_errors",
        "_lock",
        "_rejected",
        "_timed_out",
    )

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls = self._completed = self._errors = 0
        self._cancelled = self._timed_out = self._rejected = 0

    # These run on every call: acquire()/release() in try/finally cost half
    # of a `with` block (which looks up and calls __enter__/__exit__).

    def call(self) -> None:
        """Count a call made (its ending is counted by :meth:`ended`)."""
        lock = self._lock
        lock.acquire()
        try:
            self._calls += 1
        finally:
            lock.release()

    def completed(self) -> None:
        """Count a call that returned, after :meth:`call` (``ended(COMPLETED)``)."""
        lock = self._lock
        lock.acquire()
        try:
            self._completed += 1
        finally:
            lock.release()

    def ended(self, how: Ending) -> None:
        """Count how a call ended, after :meth:`call`."""
        # Identity tests, not a dict keyed by the members: Enum.__hash__ is
        # Python code.
        with self._lock:
            if how is Ending.COMPLETED:
                self._completed += 1
            elif how is Ending.ERROR:
                self._errors += 1
            elif how is Ending.CANCELLED:
                self._cancelled += 1
            elif how is Ending.TIMED_OUT:
                self._timed_out += 1
            else:
                self._rejected += 1

    def snapshot(self) -> CountsSnapshot:
        """The totals now, read together."""
        with self._lock:
            return CountsSnapshot(
                self._calls,
                self._completed,
                self._errors,
                self._cancelled,
                self._timed_out,
                self._rejected,
            )
