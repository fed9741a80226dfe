"""Issue 11, points 7 and 12: a forked child never uses what it inherited.

In a child forked from a thread that is not ours (an ``anyio.to_thread`` worker,
a ``to_async_cm`` block's thread) or from the main thread while the bridge is
busy, ``sync_call_async`` and ``run_blocking`` work on a fresh default bridge,
and the parent's calls still complete.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
import warnings
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

import anyio
import pytest

import syncbridge

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Self

pytestmark = [
    pytest.mark.faults,
    pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork()"),
]

CHILD_DEADLINE = 10.0


async def _answer() -> int:
    await asyncio.sleep(0)
    return 42


def _child_can_call_async() -> bool:
    return syncbridge.sync_call_async(_answer) == 42


def _child_can_call_both_ways() -> bool:
    async def blocking_from_async() -> int:
        return await syncbridge.run_blocking(int, "7")

    return _child_can_call_async() and asyncio.run(blocking_from_async()) == 7


def _fork(child: Callable[[], bool]) -> int:
    """Fork; the child runs *child* and exits 0 if it returned True. Parent: pid."""
    with warnings.catch_warnings():
        # 3.12+: "This process is multi-threaded, use of fork() may lead to
        # deadlocks in the child." That is what this test exercises.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 3
        try:
            code = 0 if child() else 1
        except BaseException:
            code = 2
        finally:
            os._exit(code)
    return pid


def _exit_code(pid: int, timeout: float = CHILD_DEADLINE) -> int | None:
    """Wait for the child up to *timeout* s; kill it and return None on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.02)  # polling the child's state; there is nothing to wait on
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return None


def _check_child(pid: int) -> None:
    code = _exit_code(pid)
    assert code is not None, (
        f"sync_call_async() in the forked child did not return in {CHILD_DEADLINE} s"
    )
    assert code == 0, f"the forked child failed (exit code {code})"


def test_fork_from_an_anyio_worker_thread_gives_a_working_child() -> None:
    """A child forked in an anyio.to_thread worker can sync_call_async()."""

    async def main() -> int:
        return await anyio.to_thread.run_sync(_fork, _child_can_call_async)

    _check_child(anyio.run(main, backend="asyncio"))


class _ForkOnEnter(AbstractContextManager["_ForkOnEnter"]):
    def __init__(self) -> None:
        self.pid: int | None = None

    def __enter__(self) -> Self:
        self.pid = _fork(_child_can_call_async)
        return self

    def __exit__(self, *exc_info: object) -> None:
        pass


def test_fork_from_a_to_async_cm_thread_gives_a_working_child() -> None:
    """A child forked in a to_async_cm block's __enter__ can sync_call_async()."""
    cm = _ForkOnEnter()

    async def main() -> None:
        async with syncbridge.to_async_cm(cm):
            pass

    anyio.run(main, backend="asyncio")
    assert cm.pid is not None
    _check_child(cm.pid)


def test_fork_while_busy_gives_a_working_child_and_parent() -> None:
    """Forking with 4 busy workers and a pending portal call: both sides work."""
    release = threading.Event()
    running: list[threading.Event] = [threading.Event() for _ in range(4)]
    portal_entered = threading.Event()
    results: list[object] = []

    def blocking(i: int) -> int:
        running[i].set()
        release.wait(CHILD_DEADLINE)
        return i

    async def four_workers() -> list[int]:
        return list(
            await asyncio.gather(
                *(syncbridge.run_blocking(blocking, i) for i in range(4))
            )
        )

    async def pending_portal_call() -> str:
        portal_entered.set()
        await anyio.to_thread.run_sync(release.wait, CHILD_DEADLINE)
        return "portal call done"

    def run(call: Callable[[], object]) -> None:
        try:
            results.append(call())
        except BaseException as exc:
            results.append(exc)

    threads = [
        threading.Thread(target=run, args=(lambda: asyncio.run(four_workers()),)),
        threading.Thread(
            target=run, args=(lambda: syncbridge.sync_call_async(pending_portal_call),)
        ),
    ]
    for t in threads:
        t.daemon = True
        t.start()
    try:
        assert all(e.wait(5) for e in running), "the 4 workers did not all start"
        assert portal_entered.wait(5), "the portal call did not start"
        pid = _fork(_child_can_call_both_ways)
        _check_child(pid)
    finally:
        release.set()
        for t in threads:
            t.join(5)
    assert not any(t.is_alive() for t in threads), "the parent's calls did not finish"
    assert len(results) == 2, results
    assert [0, 1, 2, 3] in results, results
    assert "portal call done" in results, results
