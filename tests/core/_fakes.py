"""Stand-ins the core unit tests share. Not a test module."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

    from syncbridge._core._calls import Call


class PostingLoop:
    """A loop handle that records the callbacks posted to it, from any thread."""

    def __init__(self) -> None:
        self.posted: list[Callable[[], object]] = []
        self._lock = threading.Lock()

    @property
    def native(self) -> object:
        return self

    def is_alive(self) -> bool:
        return True

    def still_running(self) -> bool:
        return True

    def submit(self, call: Call[Any]) -> None:
        raise AssertionError("not used here")

    def post(self, callback: Callable[[], object]) -> None:
        with self._lock:
            self.posted.append(callback)
