"""Call: one outcome, one cancel, and begin() and request_cancel() meet under a lock."""

from __future__ import annotations

import contextvars
import threading
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from syncbridge import SyncBridgeTimeout
from syncbridge._core._calls import DONE, Call, TimedCall
from syncbridge._core._handoff import FINISHED
from syncbridge._core._outcome import Cancelled, Error, Value

from ._fakes import PostingLoop

if TYPE_CHECKING:
    from collections.abc import Callable


async def _answer() -> int:
    return 42


def _call(func: Callable[..., Any] = _answer) -> Call[Any]:
    return Call(func, (), {}, contextvars.copy_context(), None)


def _replies(call: Call[Any]) -> list[object]:
    got = []
    while not call.replies.empty():
        got.append(call.replies.get_nowait())
    return got


def test_the_first_outcome_stands_and_the_caller_is_woken_once() -> None:
    call = _call()
    first = Value(1)
    assert call.finish(first)
    assert not call.finish(Error(ValueError("late")))
    assert not call.finish(Cancelled())
    assert call.outcome is first
    assert call.done
    assert _replies(call) == [DONE]


def _race_to_finish(call: Call[Any], threads: int) -> list[int]:
    """*threads* threads finish *call* at once, each with its number: who won."""
    start = threading.Barrier(threads)
    won: list[int] = []

    def finish(n: int) -> None:
        start.wait(10)
        if call.finish(Value(n)):
            won.append(n)

    racers = [threading.Thread(target=finish, args=(n,)) for n in range(threads)]
    for t in racers:
        t.start()
    for t in racers:
        t.join(10)
    return won


@pytest.mark.usefixtures("switch_often")
def test_threads_racing_to_finish_set_one_outcome() -> None:
    for _ in range(200):
        call = _call()
        won = _race_to_finish(call, 4)
        assert len(won) == 1
        assert isinstance(call.outcome, Value)
        assert call.outcome.value == won[0]
        assert _replies(call) == [DONE]


def test_the_first_cancel_request_wins_and_none_after_the_outcome() -> None:
    call = _call()
    assert call.request_cancel()
    assert not call.request_cancel(), "a second request cancelled it again"
    done = _call()
    done.finish(Value(0))
    assert not done.request_cancel(), "a finished call was cancelled"


def test_a_call_cancelled_before_it_began_is_not_begun() -> None:
    """begin() says False: the loop must cancel the task itself."""
    call = _call()
    call.loop = loop = PostingLoop()
    assert call.request_cancel()
    assert not call.begin(lambda: None)
    assert loop.posted == [], "the request found a task to cancel before begin()"


def test_a_cancel_request_after_begin_is_posted_to_the_loop_once() -> None:
    call = _call()
    call.loop = loop = PostingLoop()

    def cancel_task() -> None:
        pass

    assert call.begin(cancel_task)
    assert call.running
    assert call.request_cancel()
    assert not call.request_cancel()
    assert loop.posted == [cancel_task]


def test_a_finished_call_is_not_begun() -> None:
    call = _call()
    call.finish(Cancelled())
    assert not call.begin(lambda: None)
    assert call.state is FINISHED


def _race_begin_and_cancel(call: Call[Any], head_start: int) -> bool:
    """begin() on one thread while another requests a cancel: begin()'s answer.

    The requester spins *head_start* rounds before requesting (negative: begin
    spins), so over many races each side gets there first in some.
    """
    start = threading.Barrier(2)
    begun: list[bool] = []

    def spin(rounds: int) -> None:
        for _ in range(rounds):
            pass

    def request() -> None:
        start.wait(10)
        spin(head_start)
        assert call.request_cancel()

    def begin() -> None:
        start.wait(10)
        spin(-head_start)
        begun.append(call.begin(lambda: None))

    racers = [threading.Thread(target=request), threading.Thread(target=begin)]
    for t in racers:
        t.start()
    for t in racers:
        t.join(10)
    return begun[0]


@pytest.mark.usefixtures("switch_often")
def test_begin_racing_a_cancel_request_cancels_the_task_exactly_once() -> None:
    """Either begin() returns False (the loop cancels the task) or the request
    posts the task's cancel: never both, never neither."""
    for n in range(400):
        call = _call()
        call.loop = loop = PostingLoop()
        begun = _race_begin_and_cancel(call, n % 40 * 500 - 10000)
        cancels = len(loop.posted) + (0 if begun else 1)
        assert cancels == 1, (begun, loop.posted)


def test_finish_drops_what_the_call_held_and_tells_its_listeners() -> None:
    payload = object()
    told: list[str] = []

    class Tracker:
        def finished(self, call: Call[Any]) -> None:
            told.append("tracker")

    call = Call(_answer, (payload,), {"x": payload}, contextvars.Context(), None)
    call.tracker = Tracker()
    call.on_done = lambda _: told.append("on_done")
    call.finish(Value(1))
    assert call.args == ()
    assert call.kwargs == {}
    assert call.func is not _answer
    assert told == ["tracker", "on_done"]


@pytest.mark.anyio
async def test_invoke_awaits_the_function_and_refuses_a_sync_one() -> None:
    assert await _call().invoke() == 42

    def not_async() -> int:
        return 1

    with pytest.raises(TypeError, match=r"not_async\(\) is not async.*run_blocking"):
        await _call(not_async).invoke()


@pytest.mark.anyio
async def test_a_timed_call_past_its_deadline_raises_its_timeout_error() -> None:
    async def slow() -> None:
        await anyio.sleep(60)

    call = TimedCall(slow, (), {}, contextvars.copy_context(), 0.01)
    with pytest.raises(SyncBridgeTimeout, match="slow"):
        await call.invoke()
    assert call.timed_out
    assert call.started is not None
