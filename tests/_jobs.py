"""Functions the executor tests send to other processes (so they pickle by name).

Not a test module. Cross-process coordination is through files: a job records
that it started by creating a file, and waits for a "release" file to appear.
"""

from __future__ import annotations

import functools
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import syncbridge

if TYPE_CHECKING:
    from collections.abc import Callable


def pid() -> int:
    """The process the call ran in."""
    return os.getpid()


def fail(message: str) -> None:
    """Raise a ValueError with *message*."""
    raise ValueError(message)


def echo(value: object, *, suffix: str = "") -> str:
    """Return ``f"{value}{suffix}"``."""
    return f"{value}{suffix}"


def started_then_wait(started: str, release: str, limit: float = 30.0) -> str:
    """Create *started*, then wait for *release* to exist (at most *limit* s)."""
    Path(started).touch()
    deadline = time.monotonic() + limit
    while not Path(release).exists():
        if time.monotonic() > deadline:
            return "not released"
        time.sleep(0.005)
    return "released"


def hang(started: str) -> None:
    """Create *started*, then sleep for an hour."""
    Path(started).touch()
    time.sleep(3600)


def exit_now(code: int) -> None:
    """End the process at once, without cleanup."""
    os._exit(code)


def append_line(path: str, text: str) -> None:
    """Append *text* and a newline to the file at *path*."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(text + "\n")


def kw_echo(**kwargs: object) -> dict[str, object]:
    """Return the keyword arguments it got."""
    return kwargs


def doubling(func: Callable[..., int]) -> Callable[..., int]:
    """A decorator of the user's own, below syncbridge's."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> int:
        return 2 * func(*args, **kwargs)

    return wrapper


@syncbridge.to_async(pool="cpu")
@doubling
def doubled(x: int) -> int:
    """Decorated twice: ``_jobs.doubled`` is syncbridge's wrapper."""
    return x + 1


@syncbridge.to_async(pool="cpu")
def exit_decorated(code: int) -> None:
    """Decorated: the process is told to run it by name."""
    os._exit(code)
