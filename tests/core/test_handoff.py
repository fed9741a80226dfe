"""Handoff: one outcome, woken once; the first cancel reason wins; begin refused once cancelled.

Each contract is checked on the three owners of the lifecycle: a bare
subclass, a :class:`Job` (one lock for all jobs) and a :class:`Call` (its own).
"""

from __future__ import annotations

import contextvars
import functools
import threading
from typing import TYPE_CHECKING, Any

import pytest

from syncbridge import WorkerPool
from syncbridge._core._calls import DONE, Call
from syncbridge._core._handoff import (
    FINISHED,
    QUEUED,
    RUNNING,
    CancelReason,
    Handoff,
    State,
)
from syncbridge._core._jobs import Job
from syncbridge._core._outcome import Cancelled, Error, Value

from ._fakes import PostingLoop

if TYPE_CHECKING:
    from collections.abc import Callable

THREADS = 8
ROUNDS = 40


class _Probe(Handoff[str]):
    """The lifecycle alone: counts its wake-ups and the interrupts it is asked for."""

    __slots__ = ("_lock", "interrupted", "woken")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        super().__init__()
        self.woken = 0
        self.interrupted: list[str] = []

    def _settled(self, timed_out: bool) -> None:
        self.woken += 1  # by the one thread that finished it

    def _interrupt(self, inner: str) -> None:
        self.interrupted.append(inner)


class _Subject:
    """One handoff under test, and how to count its wake-ups and interrupts."""

    def __init__(
        self,
        handoff: Handoff[Any],
        woken: Callable[[], int],
        interrupted: Callable[[], list[object]],
        inner: Callable[[], object],
    ) -> None:
        self.handoff = handoff
        self.woken = woken
        self.interrupted = interrupted
        self.new_inner = inner


def _probe() -> _Subject:
    probe = _Probe()
    return _Subject(
        probe, lambda: probe.woken, lambda: list(probe.interrupted), lambda: "task"
    )


def _job() -> _Subject:
    job = Job(print, (), {}, contextvars.copy_context(), None, WorkerPool("handoff", 1))
    wakes: list[None] = []
    job.notify = lambda: wakes.append(None)
    calls: list[Call[Any]] = []

    def inner() -> object:
        """An async call its worker waits on, running on a loop."""
        call: Call[Any] = Call(_nothing, (), {}, contextvars.copy_context(), None)
        call.loop = PostingLoop()
        call.begin(lambda: None)
        calls.append(call)
        return call

    def seen() -> list[object]:
        # A job interrupts the async call its worker waits on: cancels it.
        return [call for call in calls if call.cancel is not None]

    return _Subject(job, lambda: len(wakes), seen, inner)


def _call() -> _Subject:
    call: Call[Any] = Call(_nothing, (), {}, contextvars.copy_context(), None)
    loop = PostingLoop()
    call.loop = loop
    wakes: list[object] = []
    call.on_done = wakes.append

    def woken() -> int:
        assert call.replies.qsize() == len(wakes)  # both ways of waking, once each
        return len(wakes)

    return _Subject(call, woken, lambda: list(loop.posted), lambda: lambda: None)


async def _nothing() -> None:
    pass


@pytest.fixture(params=[_probe, _job, _call], ids=["handoff", "job", "call"])
def subject(request: pytest.FixtureRequest) -> Callable[[], _Subject]:
    make: Callable[[], _Subject] = request.param
    return make


def _race(*actions: Callable[[], object]) -> list[object]:
    """Run *actions* at once, one thread each; their results, in order."""
    results: list[object] = [None] * len(actions)
    start = threading.Barrier(len(actions))

    def run(i: int) -> None:
        start.wait()
        results[i] = actions[i]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(actions))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def _state(handoff: Handoff[Any]) -> State:
    return handoff.state


def test_one_state_enum_and_one_cancel_reason() -> None:
    assert [s.name for s in State] == ["QUEUED", "RUNNING", "FINISHED"]
    assert (QUEUED, RUNNING, FINISHED) == (State.QUEUED, State.RUNNING, State.FINISHED)
    assert {r.name for r in CancelReason} == {"AWAITER", "CLOSED"}


def test_a_new_handoff_is_queued_with_nothing_set(
    subject: Callable[[], _Subject],
) -> None:
    handoff = subject().handoff
    assert _state(handoff) is QUEUED
    assert not handoff.done
    assert handoff.outcome is None
    assert handoff.cancel is None
    assert handoff.inner is None


@pytest.mark.usefixtures("switch_often")
def test_racing_finishers_settle_it_once_and_wake_it_once(
    subject: Callable[[], _Subject],
) -> None:
    for _ in range(ROUNDS):
        s = subject()
        outcomes = [Value(i) for i in range(THREADS)]
        won = _race(*(functools.partial(s.handoff.finish, o) for o in outcomes))
        assert won.count(True) == 1
        assert s.handoff.outcome is outcomes[won.index(True)]
        assert _state(s.handoff) is FINISHED
        assert s.woken() == 1


def test_finish_after_finish_changes_nothing(subject: Callable[[], _Subject]) -> None:
    s = subject()
    first = Error(ValueError("first"))
    assert s.handoff.finish(first)
    assert not s.handoff.finish(Value(1))
    assert not s.handoff.finish(Cancelled())
    assert s.handoff.outcome is first
    assert s.woken() == 1


def test_a_job_failed_twice_keeps_its_first_error_and_wakes_once() -> None:
    """Refused by its pool, then answered by a closing bridge: one answer."""
    s = _job()
    job = s.handoff
    assert isinstance(job, Job)
    refused = RuntimeError("refused")
    job.fail(refused)
    job.fail(RuntimeError("closed"))
    with pytest.raises(RuntimeError, match="refused"):
        job.result()
    assert s.woken() == 1


@pytest.mark.usefixtures("switch_often")
def test_the_first_cancel_reason_wins(subject: Callable[[], _Subject]) -> None:
    reasons = [CancelReason.AWAITER, CancelReason.CLOSED] * (THREADS // 2)
    for _ in range(ROUNDS):
        s = subject()
        asked = _race(
            *(functools.partial(s.handoff.request_cancel, r) for r in reasons)
        )
        assert asked.count(True) == 1
        assert s.handoff.cancel is reasons[asked.index(True)]
        assert s.interrupted() == []  # not begun: nothing to interrupt
        assert not s.handoff.request_cancel(CancelReason.CLOSED)


def test_a_cancel_interrupts_a_running_handoff_once(
    subject: Callable[[], _Subject],
) -> None:
    s = subject()
    assert s.handoff.begin(s.new_inner())
    assert _state(s.handoff) is RUNNING
    assert s.handoff.request_cancel(CancelReason.CLOSED)
    assert not s.handoff.request_cancel(CancelReason.AWAITER)
    assert s.handoff.cancel is CancelReason.CLOSED
    assert len(s.interrupted()) == 1


def test_begin_after_a_cancel_is_refused(subject: Callable[[], _Subject]) -> None:
    """Refused, and nothing is interrupted: the one who began stops it itself."""
    s = subject()
    assert s.handoff.request_cancel(CancelReason.AWAITER)
    assert not s.handoff.begin(s.new_inner())
    assert s.interrupted() == []
    assert not s.handoff.done


def test_begin_and_cancel_after_finish_are_refused(
    subject: Callable[[], _Subject],
) -> None:
    s = subject()
    assert s.handoff.finish(Cancelled())
    assert not s.handoff.begin(s.new_inner())
    assert _state(s.handoff) is FINISHED
    assert not s.handoff.request_cancel(CancelReason.CLOSED)
    assert s.handoff.cancel is None
    assert s.interrupted() == []
    assert s.woken() == 1


@pytest.mark.usefixtures("switch_often")
def test_begin_racing_a_cancel_stops_it_exactly_once(
    subject: Callable[[], _Subject],
) -> None:
    """Either begin() is refused or the cancel interrupts what began: never both, never neither."""
    for _ in range(ROUNDS):
        s = subject()
        inner = s.new_inner()
        began, asked = _race(
            functools.partial(s.handoff.begin, inner),
            functools.partial(s.handoff.request_cancel, CancelReason.AWAITER),
        )
        assert asked is True
        assert (began is False) != (len(s.interrupted()) == 1)


@pytest.mark.usefixtures("switch_often")
def test_finish_racing_cancels_wakes_once(subject: Callable[[], _Subject]) -> None:
    for _ in range(ROUNDS):
        s = subject()
        assert s.handoff.begin(s.new_inner())
        cancel = functools.partial(s.handoff.request_cancel, CancelReason.CLOSED)
        results = _race(
            functools.partial(s.handoff.finish, Value(1)),
            *([cancel] * (THREADS - 1)),
        )
        assert results[0] is True
        assert results[1:].count(True) <= 1
        assert len(s.interrupted()) == results[1:].count(True)
        assert s.woken() == 1


def test_a_finished_call_drops_its_inputs_and_says_done() -> None:
    call: Call[Any] = Call(_nothing, (1,), {"a": 2}, contextvars.copy_context(), None)
    assert call.finish(Value(None))
    assert call.args == ()
    assert call.kwargs == {}
    assert call.inner is None
    assert call.replies.get_nowait() is DONE


def test_a_job_its_worker_ran_is_answered_by_no_one_else() -> None:
    """hand_back() is the worker's finish: a late fail() (a close) changes nothing."""
    s = _job()
    job = s.handoff
    assert isinstance(job, Job)
    job.call()
    job.hand_back()
    assert not job.fail(RuntimeError("late"))
    assert s.woken() == 1


def test_a_job_hands_its_cancel_reason_to_the_call_its_worker_waits_on() -> None:
    s = _job()
    job = s.handoff
    assert isinstance(job, Job)
    call = s.new_inner()
    assert isinstance(call, Call)
    assert not job.wait_on(call)  # as its worker does, starting an async call
    assert job.request_cancel(CancelReason.CLOSED)
    assert call.cancel is CancelReason.CLOSED
    assert s.interrupted() == [call]


class _Tracker:
    """Counts the calls it is told have ended, as the portal's ledger does."""

    def __init__(self) -> None:
        self.counted: list[tuple[Call[Any], bool]] = []

    def finished(self, call: Call[Any]) -> None:
        self.counted.append((call, call.timed_out))


@pytest.mark.usefixtures("switch_often")
def test_a_call_raced_by_its_loop_a_close_and_its_deadline_is_counted_once() -> None:
    """timed_out is set only when the caller's own deadline is the answer that wins."""
    for _ in range(ROUNDS):
        call: Call[Any] = Call(_nothing, (), {}, contextvars.copy_context(), None)
        call.tracker = tracker = _Tracker()
        won = _race(
            functools.partial(call.finish, Value(1)),
            functools.partial(call.finish, Cancelled()),
            functools.partial(call.finish, Error(TimeoutError()), timed_out=True),
        )
        assert won.count(True) == 1
        assert tracker.counted == [(call, won.index(True) == 2)]
        assert call.replies.get_nowait() is DONE
        assert call.replies.empty()
