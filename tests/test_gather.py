from __future__ import annotations

import asyncio
import heapq
import inspect
import logging
import math
import pickle
import selectors
import traceback
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
import pytest
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from syncbridge import DeadlockError, SyncBridgeError, run_blocking
from syncbridge._core._loops import loop_running_in_this_thread
from syncbridge._gather import (
    PENDING,
    GatherTimeout,
    gather_timeout_message,
    gather_with_timeout,
    sync_gather_with_timeout,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

pytestmark = pytest.mark.anyio


class JobError(Exception):
    def __init__(self, index: int) -> None:
        super().__init__(f"job {index} failed")
        self.index = index


async def value_after(event: anyio.Event, value: int) -> int:
    await event.wait()
    return value


async def forever(cleaned: list[int], i: int) -> int:
    try:
        await anyio.sleep_forever()
    finally:
        # Cleanup that needs the loop: it only completes if the task is awaited.
        with anyio.CancelScope(shield=True):
            await anyio.sleep(0)
            await anyio.sleep(0)
        cleaned.append(i)
    raise AssertionError("unreachable")


async def immediate(value: int) -> int:
    await anyio.sleep(0)
    return value


# -- virtual time --------------------------------------------------------------


class _VirtualSelector(selectors.BaseSelector):
    """A selector that jumps the clock instead of sleeping when nothing is ready."""

    def __init__(self) -> None:
        self._real = selectors.DefaultSelector()
        self.now = 0.0

    def register(
        self, fileobj: Any, events: int, data: Any = None
    ) -> selectors.SelectorKey:
        return self._real.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._real.unregister(fileobj)

    def modify(
        self, fileobj: Any, events: int, data: Any = None
    ) -> selectors.SelectorKey:
        return self._real.modify(fileobj, events, data)

    def select(
        self, timeout: float | None = None
    ) -> list[tuple[selectors.SelectorKey, int]]:
        events = self._real.select(None if timeout is None else 0)
        if not events and timeout is not None and timeout > 0:
            self.now += timeout
        return events

    def close(self) -> None:
        self._real.close()

    def get_map(self) -> Mapping[Any, selectors.SelectorKey]:
        return self._real.get_map()


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An asyncio loop on virtual time, like trio's MockClock(autojump_threshold=0)."""

    def __init__(self) -> None:
        self._virtual = _VirtualSelector()
        super().__init__(self._virtual)

    def time(self) -> float:
        return self._virtual.now


def run_virtual(backend: str, main: Callable[[], Awaitable[None]]) -> None:
    if backend == "trio":
        clock = trio.testing.MockClock(autojump_threshold=0)
        anyio.run(main, backend="trio", backend_options={"clock": clock})
    else:
        anyio.run(
            main, backend="asyncio", backend_options={"loop_factory": VirtualTimeLoop}
        )


@pytest.fixture(
    params=[pytest.param("asyncio", id="asyncio"), pytest.param("trio", id="trio")]
)
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    """Like conftest's, on virtual time: deadlines pass at once, never too early."""
    if request.param == "trio":
        return "trio", {"clock": trio.testing.MockClock(autojump_threshold=0)}
    return "asyncio", {"loop_factory": VirtualTimeLoop}


# -- the property test -----------------------------------------------------------


@dataclass
class Probe:
    active: int = 0
    max_active: int = 0
    raised: dict[int, JobError] = field(default_factory=dict)


async def job(i: int, delay: float, fails: bool, probe: Probe) -> int:
    probe.active += 1
    probe.max_active = max(probe.max_active, probe.active)
    try:
        await anyio.sleep(delay)
        if fails:
            probe.raised[i] = JobError(i)
            raise probe.raised[i]
        return i * 10
    finally:
        probe.active -= 1


def model(
    delays: list[float],
    fails: list[bool],
    limit: int | None,
    timeout: float | None,
    return_exceptions: bool,
) -> tuple[str, int | None, list[int]]:
    """What the schedule implies: ("ok" | "raise" | "timeout", failing index, done)."""
    n = len(delays)
    running: list[tuple[float, int]] = []
    started = 0
    for _ in range(min(n, limit or n)):
        heapq.heappush(running, (delays[started], started))
        started += 1
    done: list[int] = []
    while running:
        finish, i = heapq.heappop(running)
        if timeout is not None and finish > timeout:
            break
        done.append(i)
        if fails[i] and not return_exceptions:
            return "raise", i, sorted(done)
        if started < n:
            heapq.heappush(running, (finish + delays[started], started))
            started += 1
    if len(done) == n:
        return "ok", None, sorted(done)
    return "timeout", None, sorted(done)


schedules = st.lists(st.tuples(st.integers(0, 6), st.booleans()), max_size=8)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@settings(deadline=None, max_examples=400)
@given(
    schedule=schedules,
    limit=st.none() | st.integers(1, 4),
    timeout=st.none() | st.integers(0, 20),
    return_exceptions=st.booleans(),
)
def test_gather_with_timeout_outcome_matches_schedule(
    backend: str,
    schedule: list[tuple[int, bool]],
    limit: int | None,
    timeout: int | None,
    return_exceptions: bool,
) -> None:
    """Order, outcome, no task left running, concurrency <= limit, on virtual time."""
    # Distinct powers of two below 1/2 keep every finish time (a sum of delays)
    # unique and at a fractional part < 1/2, and the deadline at .75: no ties.
    delays = [d + 2.0 ** -(i + 2) for i, (d, _) in enumerate(schedule)]
    fails = [f for _, f in schedule]
    deadline = None if timeout is None else timeout + 0.75
    kind, failing, done = model(delays, fails, limit, deadline, return_exceptions)
    probe = Probe()
    coros = [job(i, delays[i], fails[i], probe) for i in range(len(schedule))]

    async def main() -> None:
        outcome: tuple[Any, ...] | BaseException
        try:
            outcome = await gather_with_timeout(
                *coros,
                timeout=deadline,
                limit=limit,
                return_exceptions=return_exceptions,
            )
        except (GatherTimeout, JobError) as exc:
            outcome = exc
        if kind == "timeout":
            assert isinstance(outcome, GatherTimeout)
            assert outcome.done == done
            assert outcome.pending == [i for i in range(len(schedule)) if i not in done]
            assert f"with {len(done)} of {len(schedule)} awaitables" in str(outcome)
            check_slots(outcome.results)
        elif kind == "raise":
            assert failing is not None
            assert outcome is probe.raised[failing]
        else:
            assert isinstance(outcome, tuple)
            check_slots(list(outcome))
        assert probe.active == 0
        assert all(inspect.getcoroutinestate(c) == inspect.CORO_CLOSED for c in coros)
        if limit is not None:
            assert probe.max_active <= limit

    def check_slots(results: list[Any]) -> None:
        assert len(results) == len(schedule)
        for i, slot in enumerate(results):
            if i not in done:
                assert slot is PENDING
            elif fails[i]:
                assert slot is probe.raised[i]
            else:
                assert slot == i * 10

    run_virtual(backend, main)


# -- examples, one per contract point -------------------------------------------


async def test_gather_with_timeout_returns_results_in_input_order() -> None:
    events = [anyio.Event() for _ in range(3)]
    async with anyio.create_task_group() as tg:
        outcome: list[tuple[int, ...]] = []

        async def run() -> None:
            outcome.append(
                await gather_with_timeout(
                    *(value_after(e, i) for i, e in enumerate(events)), timeout=None
                )
            )

        tg.start_soon(run)
        for event in reversed(events):  # finish in reverse order
            event.set()
            await anyio.sleep(0)
    assert outcome == [(0, 1, 2)]


async def test_gather_with_timeout_with_no_awaitables_returns_empty_tuple() -> None:
    assert await gather_with_timeout(timeout=0) == ()


@pytest.mark.parametrize(
    "timeout", [pytest.param(-1.0, id="negative"), pytest.param(math.nan, id="nan")]
)
async def test_gather_with_timeout_rejects_bad_timeout_and_closes_coroutines(
    timeout: float,
) -> None:
    coro = immediate(1)
    with pytest.raises(ValueError, match=r"timeout=\.\.\.\) must be None"):
        await gather_with_timeout(coro, timeout=timeout)
    assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED


async def test_gather_with_timeout_rejects_limit_below_one() -> None:
    coro = immediate(1)
    with pytest.raises(ValueError, match=r"limit=\.\.\.\) must be None"):
        await gather_with_timeout(coro, timeout=None, limit=0)
    assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED


async def test_gather_with_timeout_timeout_cancels_and_awaits_unfinished() -> None:
    cleaned: list[int] = []
    with pytest.raises(GatherTimeout) as info:
        await gather_with_timeout(
            immediate(0),
            forever(cleaned, 1),
            immediate(2),
            forever(cleaned, 3),
            timeout=0.05,
        )
    assert sorted(cleaned) == [1, 3]  # both cancelled AND finished before the raise
    exc = info.value
    assert exc.results == [0, PENDING, 2, PENDING]
    assert exc.done == [0, 2]
    assert exc.pending == [1, 3]
    assert "2 of 4 awaitables finished" in str(exc)
    assert "exc.results" in str(exc)  # the message names the way out


def test_gather_timeout_is_a_timeout_error_and_a_syncbridge_error() -> None:
    exc = GatherTimeout("msg", [1, PENDING], [0], [1])
    assert isinstance(exc, TimeoutError)
    assert isinstance(exc, SyncBridgeError)
    copy = pickle.loads(pickle.dumps(exc))
    assert (str(copy), copy.results, copy.done, copy.pending) == (
        "msg",
        [1, PENDING],
        [0],
        [1],
    )
    assert repr(PENDING) == "syncbridge.PENDING"


async def test_gather_with_timeout_limit_starts_coroutines_only_when_a_slot_frees() -> (
    None
):
    events = [anyio.Event() for _ in range(4)]
    started: list[int] = []

    async def tracked(i: int) -> int:
        started.append(i)
        await events[i].wait()
        return i

    async with anyio.create_task_group() as tg:
        outcome: list[tuple[int, ...]] = []

        async def run() -> None:
            outcome.append(
                await gather_with_timeout(
                    *(tracked(i) for i in range(4)), timeout=None, limit=2
                )
            )

        tg.start_soon(run)
        await anyio.wait_all_tasks_blocked()
        assert started == [0, 1]
        events[1].set()
        await anyio.wait_all_tasks_blocked()
        assert started == [0, 1, 2]
        for event in events:
            event.set()
    assert outcome == [(0, 1, 2, 3)]


async def test_gather_with_timeout_closes_never_started_coroutines() -> None:
    cleaned: list[int] = []
    never = [immediate(i) for i in range(3)]
    with pytest.raises(GatherTimeout) as info:
        await gather_with_timeout(forever(cleaned, 0), *never, timeout=0.02, limit=1)
    assert info.value.pending == [0, 1, 2, 3]
    # Closed, not merely dropped: no "coroutine ... was never awaited" warning
    # (filterwarnings=error would turn it into a failure).
    assert all(inspect.getcoroutinestate(c) == inspect.CORO_CLOSED for c in never)


async def test_gather_with_timeout_first_exception_propagates_and_others_are_awaited() -> (
    None
):
    cleaned: list[int] = []
    error = JobError(0)

    async def fail() -> int:
        await anyio.sleep(0)
        raise error

    with pytest.raises(JobError) as info:
        await gather_with_timeout(
            forever(cleaned, 1), fail(), forever(cleaned, 2), timeout=None
        )
    assert info.value is error  # the same object, not an ExceptionGroup
    assert sorted(cleaned) == [1, 2]


async def test_gather_with_timeout_other_exceptions_are_attached_as_notes() -> None:
    first = JobError(0)

    async def fail() -> int:
        await anyio.sleep(0)
        raise first

    async def fail_while_cancelled() -> int:
        try:
            await anyio.sleep_forever()
        finally:
            raise KeyError("cleanup failed")

    with pytest.raises(JobError) as info:
        await gather_with_timeout(fail_while_cancelled(), fail(), timeout=None)
    assert info.value is first
    notes: list[str] = getattr(info.value, "__notes__", [])
    assert len(notes) == 1
    assert notes[0].startswith("awaitable #0 also failed")
    assert "KeyError: 'cleanup failed'" in notes[0]
    assert "cleanup failed" in "".join(traceback.format_exception(info.value))


async def test_gather_with_timeout_return_exceptions_fills_slots_and_cancels_nothing() -> (
    None
):
    error = JobError(1)
    gate = anyio.Event()

    async def fail() -> int:
        raise error

    async def late() -> int:
        await gate.wait()  # still waiting when the other one fails
        return 2

    async def open_gate() -> int:
        await anyio.sleep(0)
        gate.set()
        return 0

    results = await gather_with_timeout(
        open_gate(), fail(), late(), timeout=None, return_exceptions=True
    )
    assert results == (0, error, 2)
    assert results[1] is error


async def test_gather_with_timeout_caller_cancellation_cancels_and_awaits_children() -> (
    None
):
    cleaned: list[int] = []
    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:

            async def run() -> None:
                await gather_with_timeout(
                    forever(cleaned, 0), forever(cleaned, 1), timeout=None
                )

            tg.start_soon(run)
            await anyio.wait_all_tasks_blocked()
            scope.cancel()
    assert scope.cancelled_caught
    assert sorted(cleaned) == [0, 1]


# -- asyncio tasks and futures ----------------------------------------------------


@pytest.mark.parametrize("anyio_backend", ["asyncio"], indirect=True)
async def test_gather_with_timeout_accepts_tasks_and_futures_under_asyncio() -> None:
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[int] = loop.create_future()
    loop.call_soon(fut.set_result, 1)
    task = asyncio.ensure_future(immediate(2))
    assert await gather_with_timeout(immediate(0), fut, task, timeout=None) == (0, 1, 2)


@pytest.mark.parametrize("anyio_backend", ["asyncio"], indirect=True)
async def test_gather_with_timeout_cancels_an_input_task_once_and_awaits_it() -> None:
    steps: list[str] = []

    async def stubborn() -> int:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            # Two-step cleanup: a second cancel() would interrupt it.
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            steps.append("cleaned")
            raise
        return 0

    task = asyncio.ensure_future(stubborn())
    with pytest.raises(GatherTimeout) as info:
        await gather_with_timeout(immediate(0), task, timeout=0.02)
    assert steps == ["cleaned"]
    assert task.cancelled()
    assert info.value.results == [0, PENDING]


@pytest.mark.parametrize("anyio_backend", ["asyncio"], indirect=True)
async def test_gather_with_timeout_cancelled_input_task_is_an_outcome() -> None:
    task = asyncio.ensure_future(asyncio.sleep(3600))
    asyncio.get_running_loop().call_soon(task.cancel)
    results = await gather_with_timeout(task, timeout=None, return_exceptions=True)
    assert isinstance(results[0], asyncio.CancelledError)


@pytest.mark.parametrize("anyio_backend", ["trio"], indirect=True)
async def test_gather_with_timeout_rejects_futures_under_trio() -> None:
    loop = asyncio.new_event_loop()
    try:
        fut: asyncio.Future[int] = loop.create_future()
        coro = immediate(1)
        with pytest.raises(TypeError, match="pass coroutines"):
            await gather_with_timeout(coro, fut, timeout=None)
        assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED
    finally:
        loop.close()


# -- the sync twin ----------------------------------------------------------------


def test_sync_gather_with_timeout_returns_results_from_sync_code() -> None:
    assert sync_gather_with_timeout(immediate(0), immediate(1), timeout=5) == (0, 1)


def test_sync_gather_with_timeout_raises_gather_timeout_with_partial_results() -> None:
    cleaned: list[int] = []
    with pytest.raises(GatherTimeout) as info:
        # Real time on the portal loop: a deadline long enough for any scheduler.
        sync_gather_with_timeout(immediate(0), forever(cleaned, 1), timeout=0.5)
    assert info.value.results == [0, PENDING]
    assert cleaned == [1]


def test_sync_gather_with_timeout_rejects_bad_timeout_and_closes_coroutines() -> None:
    coro = immediate(0)
    with pytest.raises(ValueError, match="sync_gather_with_timeout"):
        sync_gather_with_timeout(coro, timeout=-1)
    assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED


async def test_sync_gather_with_timeout_runs_on_the_workers_loop() -> None:
    here = loop_running_in_this_thread()

    async def where() -> object:
        return loop_running_in_this_thread()

    def in_worker() -> tuple[object, object]:
        return sync_gather_with_timeout(where(), where(), timeout=None)

    assert await run_blocking(in_worker) == (here, here)


async def test_sync_gather_with_timeout_in_a_loop_thread_raises_deadlock_error() -> (
    None
):
    coro = immediate(0)
    with pytest.raises(DeadlockError, match=r"await gather_with_timeout\(\.\.\.\)"):
        sync_gather_with_timeout(coro, timeout=1)
    assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED


@pytest.mark.parametrize(
    ("done", "total", "expected"),
    [(2, 3, "the other one was cancelled"), (1, 4, "the other 3 were cancelled")],
)
def test_timeout_message_counts_what_was_cancelled(
    done: int, total: int, expected: str
) -> None:
    message = gather_timeout_message(0.5, done, total)
    assert f"with {done} of {total} awaitables finished; {expected}" in message
    assert "exc.results" in message  # names the fix


async def test_failure_during_an_outside_cancellation_is_logged_not_lost(
    caplog: pytest.LogCaptureFixture,
) -> None:
    started = anyio.Event()
    error = KeyError("cleanup failed")

    async def fails_in_cleanup() -> None:
        try:
            started.set()
            await anyio.sleep_forever()
        finally:
            raise error

    async def waits() -> None:
        await anyio.sleep_forever()

    with caplog.at_level(logging.ERROR, logger="syncbridge"):
        async with anyio.create_task_group() as tg:

            async def gather() -> None:
                await gather_with_timeout(fails_in_cleanup(), waits(), timeout=None)

            tg.start_soon(gather)
            await started.wait()
            tg.cancel_scope.cancel()  # the caller's cancellation wins...
    # ...and the failure it hid is logged with its traceback.
    [record] = [r for r in caplog.records if r.name == "syncbridge"]
    assert "awaitable #0 failed" in record.getMessage()
    assert record.exc_info is not None
    assert record.exc_info[1] is error


@pytest.mark.parametrize("urgent", [KeyboardInterrupt, SystemExit])
async def test_a_childs_interrupt_during_an_outside_cancellation_is_raised(
    urgent: type[BaseException], caplog: pytest.LogCaptureFixture
) -> None:
    """A KeyboardInterrupt or SystemExit must stop the program, not be logged."""
    started = anyio.Event()
    error = urgent("stop now")

    async def interrupted_in_cleanup() -> None:
        try:
            started.set()
            await anyio.sleep_forever()
        finally:
            raise error

    with anyio.CancelScope() as outside:

        async def cancel_from_outside() -> None:
            await started.wait()
            outside.cancel()

        with (
            caplog.at_level(logging.ERROR, logger="syncbridge"),
            pytest.raises(urgent) as raised,
        ):
            await gather_with_timeout(
                interrupted_in_cleanup(), cancel_from_outside(), timeout=None
            )
    assert raised.value is error
    assert not [r for r in caplog.records if r.name == "syncbridge"]
