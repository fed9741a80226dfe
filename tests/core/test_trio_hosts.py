"""Host tasks: the trio tasks that run calls sent from other threads (#15).

A call to a trio loop runs on a parked host task when one is idle, instead of a
new task per call. Reuse must not let anything of one call reach the next: its
context, its arguments, or a cancel that arrives after it finished.
"""

from __future__ import annotations

import contextvars
import gc
import threading
import weakref
from typing import TYPE_CHECKING, Any

import pytest
import trio
import trio.testing

from syncbridge import Bridge, SyncBridgeError
from syncbridge._core._calls import Call
from syncbridge._core._loops import TrioLoop
from syncbridge._core._outcome import Cancelled, Error, Value

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

var: contextvars.ContextVar[object] = contextvars.ContextVar("var", default="unset")


@pytest.fixture
def trio_bridge() -> Iterator[Bridge]:
    with Bridge(backend="trio", shutdown_grace=0.5) as b:
        yield b


async def current_task() -> object:
    return trio.lowlevel.current_task()


def test_calls_one_after_another_share_one_host_task(trio_bridge: Bridge) -> None:
    first = trio_bridge.sync_call_async(current_task)
    second = trio_bridge.sync_call_async(current_task)
    assert first is second


def test_a_reused_host_runs_each_call_in_its_callers_context(
    trio_bridge: Bridge,
) -> None:
    async def read_then_set() -> object:
        seen = var.get()
        var.set("set by the call")
        return seen

    def call_with(value: str) -> object:
        var.set(value)
        return trio_bridge.sync_call_async(read_then_set)

    assert contextvars.copy_context().run(call_with, "caller 1") == "caller 1"
    assert contextvars.copy_context().run(call_with, "caller 2") == "caller 2"
    # A caller that set nothing sees nothing of the calls before.
    assert trio_bridge.sync_call_async(read_then_set) == "unset"


def test_a_reused_host_takes_the_name_of_the_call_it_runs(
    trio_bridge: Bridge,
) -> None:
    async def task_name() -> str:
        name: str = trio.lowlevel.current_task().name
        return name

    trio_bridge.sync_call_async(current_task)
    assert trio_bridge.sync_call_async(task_name).endswith("task_name")


class Marker:
    """Something only one caller refers to."""


def test_a_parked_host_keeps_nothing_of_its_last_caller(trio_bridge: Bridge) -> None:
    refs: list[weakref.ref[Marker]] = []

    async def takes(marker: Marker) -> object:
        return trio.lowlevel.current_task()

    def caller() -> object:
        in_context, as_argument = Marker(), Marker()
        refs.extend([weakref.ref(in_context), weakref.ref(as_argument)])
        var.set(in_context)
        return trio_bridge.sync_call_async(takes, as_argument)

    host = contextvars.copy_context().run(caller)
    gc.collect()
    assert [ref() for ref in refs] == [None, None]
    # The host is still parked, ready for the next call.
    assert trio_bridge.sync_call_async(current_task) is host


def test_a_cancelled_call_ends_its_host_and_the_next_call_runs(
    trio_bridge: Bridge,
) -> None:
    started = threading.Event()
    cancelled = threading.Event()
    hosts: list[object] = []

    async def forever() -> None:
        hosts.append(trio.lowlevel.current_task())
        started.set()
        try:
            await trio.sleep_forever()
        except trio.Cancelled:
            cancelled.set()
            raise

    trio_bridge.sync_call_async(current_task)  # leaves a parked host
    future = trio_bridge.start_soon(forever)
    assert started.wait(10)
    assert future.cancel()
    assert cancelled.wait(10)
    after = trio_bridge.sync_call_async(current_task)
    assert after is not hosts[0]  # that host's scope is spent: it ended


def test_a_late_cancel_of_a_finished_call_spares_the_next_call_on_its_host(
    trio_bridge: Bridge, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A caller's cancel posted just as its call finished reaches the loop late."""
    cancels: list[Callable[[], object]] = []
    begin = Call.begin

    def recording_begin(self: Call[Any], cancel_on_loop: Callable[[], object]) -> bool:
        cancels.append(cancel_on_loop)
        return begin(self, cancel_on_loop)

    monkeypatch.setattr(Call, "begin", recording_begin)

    async def late_cancel_of_the_first_call() -> object:
        cancels[0]()  # on the loop thread, as a posted cancel runs
        await trio.sleep(0)  # a checkpoint: a cancel of this call would land here
        return trio.lowlevel.current_task()

    first = trio_bridge.sync_call_async(current_task)
    assert trio_bridge.sync_call_async(late_cancel_of_the_first_call) is first


def test_a_burst_leaves_a_bounded_number_of_parked_hosts() -> None:
    from syncbridge._core import _trio_hosts

    burst = _trio_hosts._MAX_IDLE + 36
    finished = [threading.Event() for _ in range(burst)]

    async def main() -> None:
        release = trio.Event()
        handle = TrioLoop(trio.lowlevel.current_trio_token())
        calls: list[Call[None]] = []
        for done in finished:
            call: Call[None] = Call(
                release.wait, (), {}, contextvars.copy_context(), None
            )
            call.on_done = lambda _call, done=done: done.set()
            calls.append(call)
            handle._start(call)
        await trio.testing.wait_all_tasks_blocked()
        release.set()
        await trio.testing.wait_all_tasks_blocked()
        assert all(isinstance(call.outcome, Value) for call in calls)
        assert len(_trio_hosts._IDLE.get()) == _trio_hosts._MAX_IDLE

    trio.run(main)  # and the run ends with its hosts parked, normally
    assert all(done.is_set() for done in finished)


def test_a_call_started_as_the_run_ends_is_answered() -> None:
    """A parked host is cancelled with the run; a call after that still ends."""
    outcomes: list[object] = []

    async def main() -> None:
        handle = TrioLoop(trio.lowlevel.current_trio_token())
        warm: Call[None] = Call(
            trio.lowlevel.checkpoint, (), {}, contextvars.copy_context(), None
        )
        handle._start(warm)
        await trio.testing.wait_all_tasks_blocked()
        late: Call[None] = Call(
            trio.sleep_forever, (), {}, contextvars.copy_context(), None
        )
        late.on_done = lambda call: outcomes.append(call.outcome)
        # Starts the call once main has returned and system tasks are cancelled.
        trio.lowlevel.spawn_system_task(_start_when_cancelled, handle, late)

    trio.run(main)
    assert len(outcomes) == 1
    outcome = outcomes[0]
    assert isinstance(outcome, Cancelled) or (
        isinstance(outcome, Error) and isinstance(outcome.error, SyncBridgeError)
    ), outcome


async def _start_when_cancelled(handle: TrioLoop, call: Call[None]) -> None:
    try:
        await trio.sleep_forever()
    finally:
        handle._start(call)


# -- found by review -----------------------------------------------------------


class _Big:
    """A result whose lifetime the test watches."""


def test_a_parked_host_keeps_no_result_of_its_last_call(trio_bridge: Bridge) -> None:
    async def make() -> _Big:
        return _Big()

    result = trio_bridge.sync_call_async(make)
    ref = weakref.ref(result)
    del result
    gc.collect()
    assert ref() is None  # the host that made it is parked, holding nothing


def test_a_cancelled_call_with_a_nursery_open_is_a_cancellation() -> None:
    # A nursery gathers the host's Cancelled into a group: the caller must see
    # its cancellation (BridgeClosed here), not trio's internals in a group.
    entered = threading.Event()

    async def with_nursery() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.sleep_forever)
            entered.set()
            await trio.sleep_forever()

    bridge = Bridge(backend="trio", shutdown_grace=0.1)
    outcome: list[BaseException] = []

    def call() -> None:
        try:
            bridge.sync_call_async(with_nursery)
        except BaseException as exc:
            outcome.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    assert entered.wait(10)
    bridge.close()
    caller.join(10)
    (error,) = outcome
    assert type(error).__name__ == "BridgeClosed", repr(error)
    assert bridge.stats().portal.cancellations == 1
