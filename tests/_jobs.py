"""Functions the executor tests send to other processes (so they pickle by name).

Not a test module. Cross-process coordination is through files: a job records
that it started by creating a file, and waits for a "release" file to appear.
"""

from __future__ import annotations

import os
import time
from pathlib import Path


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
