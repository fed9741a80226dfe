"""How a pool's calls ended, counted once each for ``stats()``."""

from __future__ import annotations

__all__ = ("Counts", "CountsSnapshot")

import threading
from typing import NamedTuple

from ._jobs import Ending


class CountsSnapshot(NamedTuple):
    """The totals at one moment."""

    calls: int
    completed: int
    errors: int
    cancellations: int
    timeouts: int


class Counts:
    """Thread-safe totals: calls made, and how each ended for its awaiter."""

    __slots__ = ("_calls", "_ended", "_lock")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls = 0
        self._ended = dict.fromkeys(Ending, 0)

    def call(self) -> None:
        """Count a call made (its ending is counted by :meth:`ended`)."""
        with self._lock:
            self._calls += 1

    def ended(self, how: Ending) -> None:
        """Count how a call ended, after :meth:`call`."""
        with self._lock:
            self._ended[how] += 1

    def snapshot(self) -> CountsSnapshot:
        """The totals now, read together."""
        with self._lock:
            ended = self._ended
            return CountsSnapshot(
                self._calls,
                ended[Ending.COMPLETED],
                ended[Ending.ERROR],
                ended[Ending.CANCELLED],
                ended[Ending.TIMED_OUT],
            )
