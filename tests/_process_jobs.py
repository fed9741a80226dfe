"""Jobs for the ProcessExecutor tests: module-level, so worker processes can import them.

Kept apart from the test module so that a worker process imports only this.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator

# Set by the tests in the parent at run time: a forked worker would inherit it.
MARK: str | None = None
INITIALIZED: list[object] = []


class Rendezvous:
    """A job reports "I am running, in process N" here; the test waits for it.

    A listening socket on the loopback: picklable as its address, and waiting on
    it is waiting for the event itself, not for time to pass.
    """

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(30)
        self.address: tuple[str, int] = self._listener.getsockname()[:2]

    def wait(self) -> int:
        """The pid of the next job to report (fails after 30 s, never hangs)."""
        conn, _ = self._listener.accept()
        with conn:
            conn.settimeout(30)
            return int(conn.recv(64))

    def close(self) -> None:
        self._listener.close()


def report(address: tuple[str, int]) -> None:
    with socket.create_connection(address, timeout=30) as conn:
        conn.sendall(str(os.getpid()).encode())


def add(a: int, b: int) -> int:
    return a + b


def pid() -> int:
    return os.getpid()


def mark() -> str | None:
    return MARK


def raise_value_error(text: str) -> None:
    raise ValueError(text)


def exit_with(code: int) -> None:
    os._exit(code)


def segfault() -> None:
    import ctypes

    ctypes.string_at(0)  # reads address 0: SIGSEGV


def block(address: tuple[str, int]) -> None:
    """Report, then block until killed."""
    report(address)
    time.sleep(3600)


def block_ignoring_sigterm(address: tuple[str, int]) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    block(address)


def write_file(path: str) -> None:
    with open(path, "w") as f:
        f.write("ran")


def sleep_then_add(seconds: float, a: int, b: int) -> int:
    time.sleep(seconds)
    return a + b


def return_a_lock() -> dict[str, object]:
    return {"ok": 1, "lock": threading.Lock()}


def return_a_generator() -> Iterator[int]:
    return iter(x for x in range(3))


class LockedError(Exception):
    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.lock = threading.Lock()


class TwoArgumentError(Exception):
    """Pickles, but cannot be rebuilt: __init__ passes one argument on of two."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(f"{code}: {text}")


def raise_locked() -> None:
    raise LockedError("with a lock inside")


def raise_two_argument() -> None:
    raise TwoArgumentError(7, "not rebuildable")


def initialize(value: object) -> None:
    INITIALIZED.append(value)


def initialized() -> list[object]:
    return INITIALIZED


def failing_initializer() -> None:
    raise RuntimeError("no database here")


class Holder:
    def __init__(self) -> None:
        self.lock = threading.Lock()

    def method(self) -> int:
        return 1
