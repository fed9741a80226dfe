"""Issue 11, point 6: a worker calling back into trio as ``trio.run`` ends.

The user's ``trio.run`` always ends normally (never a ``TrioInternalError`` from a
call spawned as the run closes), and a worker that keeps calling
``sync_call_async`` into that run gets an answer promptly: a
:class:`~syncbridge.SyncBridgeError` saying its loop is gone (or its call falls
back to the portal and succeeds, and then it stops on its own).
"""

from __future__ import annotations

import os
import re
import threading
import time
from typing import TYPE_CHECKING

import anyio
import pytest

from syncbridge import Bridge, SyncBridgeError, WorkerCancelled

if TYPE_CHECKING:
    from collections.abc import Callable

pytestmark = pytest.mark.faults

trio = pytest.importorskip("trio")

ROUNDS = 40 * int(os.environ.get("SYNCBRIDGE_FAULT_ROUNDS", "1"))
LOOP_GONE = re.compile(
    r"(?i)loop.*(stopped|gone|finished|ended|closed|no longer)|"
    r"(stopped|gone|finished|ended|closed).*loop"
)


class Round:
    """One worker's life: it calls back until it gets an exception or is told."""

    def __init__(self, call: Callable[[], object]) -> None:
        self.call = call
        self.first_call = threading.Event()
        self.stop = threading.Event()
        self.ended = threading.Event()
        self.calls = 0
        self.terminal: BaseException | None = None

    def worker(self) -> None:
        try:
            while not self.stop.is_set():
                self.call()
                self.calls += 1
                self.first_call.set()
        except BaseException as exc:
            self.terminal = exc
        finally:
            self.first_call.set()
            self.ended.set()


async def _main(r: Round, start_worker: str, b: Bridge) -> None:
    async with trio.open_nursery() as nursery:
        if start_worker == "anyio.to_thread":
            nursery.start_soon(
                lambda: anyio.to_thread.run_sync(r.worker, abandon_on_cancel=True)
            )
        else:
            nursery.start_soon(lambda: b.run_blocking(r.worker))
        started = await trio.to_thread.run_sync(r.first_call.wait, 5.0)
        assert started, "the worker made no call within 5 s"
        nursery.cancel_scope.cancel()  # main returns while the worker loops


@pytest.mark.parametrize("start_worker", ["anyio.to_thread", "run_blocking"])
def test_trio_run_ends_normally_while_a_worker_calls_back(start_worker: str) -> None:
    """Every trio.run returns normally; every worker has an answer within 5 s."""
    b = Bridge(backend="trio", shutdown_grace=1.0)
    rounds: list[Round] = []
    crashes: list[BaseException] = []
    try:
        for _ in range(ROUNDS):
            r = Round(lambda: b.sync_call_async(trio.sleep, 0))
            rounds.append(r)
            try:
                trio.run(_main, r, start_worker, b)
            except BaseException as exc:
                crashes.append(exc)
            # If its calls fell back to the portal it keeps succeeding: stop it.
            r.stop.set()
        deadline = time.monotonic() + 5.0
        for r in rounds:
            r.ended.wait(max(0.0, deadline - time.monotonic()))
        stuck = sum(not r.ended.is_set() for r in rounds)
        summary = (
            f"{len(crashes)} of {ROUNDS} trio.run() crashed (first: "
            f"{crashes[0] if crashes else None!r}); {stuck} workers still blocked "
            "5 s after their run ended"
        )
        assert not crashes, summary
        assert not stuck, summary
        for r in rounds:
            if r.terminal is None:
                continue  # fell back to the portal and stopped when told
            if start_worker == "run_blocking" and isinstance(
                r.terminal, WorkerCancelled
            ):
                continue  # the run's end cancelled its awaiter: it starts no call
            assert isinstance(r.terminal, SyncBridgeError), repr(r.terminal)
            assert LOOP_GONE.search(str(r.terminal)), str(r.terminal)
    finally:
        for r in rounds:
            r.stop.set()
        b.close()
