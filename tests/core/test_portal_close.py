"""Closing the portal: the drain is woken by the last call finishing, not a poll."""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from typing import Any

import pytest
import trio

from syncbridge._core._calls import Call, CallLedger
from syncbridge._core._counts import CountsSnapshot, Ending
from syncbridge._core._outcome import Value
from syncbridge._core._portal import Portal

GRACE = 30.0
"""Long: a close that returns soon after the release did not wait it out."""
PROMPT = 5.0
"""How soon after its last call finishes close() must return (a loaded machine)."""
WAIT = 10.0


def _call(func: Any) -> Call[Any]:
    return Call(func, (), {}, contextvars.copy_context(), None)


def _run_on(portal: Portal, func: Any) -> Any:
    call = _call(func)
    portal.submit(call)
    assert call.replies.get(timeout=WAIT) is not None
    assert isinstance(call.outcome, Value), call.outcome
    return call.outcome.value


class _DrainSteps(trio.abc.Instrument):
    """Counts the steps of the first task spawned once :attr:`watching` is set."""

    def __init__(self) -> None:
        self.watching = False
        self.drain: Any = None
        self.parked = threading.Event()  # the drain took its first step
        self._lock = threading.Lock()  # steps is read from the test's thread
        self._steps = 0

    def task_spawned(self, task: Any) -> None:
        if self.watching and self.drain is None:
            self.drain = task

    def after_task_step(self, task: Any) -> None:
        if task is self.drain:
            with self._lock:
                self._steps += 1
            self.parked.set()

    @property
    def steps(self) -> int:
        with self._lock:
            return self._steps


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_close_returns_as_soon_as_the_last_call_finishes_in_the_grace(
    backend: str,
) -> None:
    """The drain waits for the last call on an event, and close() follows it.

    With a 30 s grace, a call released a moment after close() began: close()
    returns soon after, the call keeps its value, and on trio the drain took no
    step while it waited (it polled every 5 ms before).
    """
    portal = Portal("drain", backend, use_uvloop=False)  # type: ignore[arg-type]
    entered, release = threading.Event(), threading.Event()
    instrument = _DrainSteps()

    async def waits() -> str:
        entered.set()
        if backend == "trio":
            await trio.to_thread.run_sync(release.wait)
        else:
            await asyncio.to_thread(release.wait)
        return "finished"

    if backend == "trio":

        async def instrument_the_loop() -> None:
            trio.lowlevel.add_instrument(instrument)

        _run_on(portal, instrument_the_loop)
    call = _call(waits)
    portal.submit(call)
    assert entered.wait(WAIT)
    instrument.watching = True
    closer = threading.Thread(target=portal.close, args=(GRACE,))
    closer.start()
    try:
        if backend == "trio":
            assert instrument.parked.wait(WAIT), "the drain never started"
            before = instrument.steps
            time.sleep(0.3)  # a window to see a poll in, not a wait for one
            assert instrument.steps == before, "the drain woke with no call ending"
        else:
            deadline = time.monotonic() + WAIT
            while not portal.closed and time.monotonic() < deadline:
                time.sleep(0.005)  # polled: close() sets no event of the test's
        released = time.monotonic()
        release.set()
        closer.join(PROMPT)
        assert not closer.is_alive(), (
            f"close() still waits {PROMPT} s after its last call finished"
        )
        assert time.monotonic() - released < PROMPT
    finally:
        release.set()
        closer.join(GRACE * 3)
    assert isinstance(call.outcome, Value)
    assert call.outcome.value == "finished"
    assert portal.pending_calls == 0


def test_the_ledger_counts_each_call_once_and_wakes_once_when_emptied() -> None:
    """Calls made are those ended plus those pending; a call no loop took is none.

    The wake-up comes once, when the last call leaves (by ending or by being
    forgotten), never while one is left, and not at all once withdrawn.
    """
    ledger = CallLedger()
    woken: list[str] = []
    first, second, third = (_call(lambda: None) for _ in range(3))
    for call in (first, second, third):
        ledger.add(call)
    assert not ledger.wake_when_empty(lambda: woken.append("emptied"))
    ledger.ended(first, Ending.TIMED_OUT)
    assert woken == []
    assert ledger.snapshot() == CountsSnapshot(3, 0, 0, 0, 1)
    ledger.forget(second)  # no loop took it: no call at all
    assert ledger.snapshot() == CountsSnapshot(2, 0, 0, 0, 1)
    ended = threading.Thread(target=ledger.ended, args=(third, Ending.COMPLETED))
    ended.start()
    ended.join(WAIT)
    assert woken == ["emptied"]
    assert ledger.snapshot() == CountsSnapshot(2, 1, 0, 0, 1)
    assert ledger.wake_when_empty(lambda: woken.append("again"))  # empty already
    ledger.add(first)
    assert not ledger.wake_when_empty(lambda: woken.append("withdrawn"))
    ledger.wake_when_empty(None)
    ledger.forget(first)
    assert woken == ["emptied"]
