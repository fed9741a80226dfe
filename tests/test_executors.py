"""Any ``concurrent.futures.Executor`` behind a call (#13).

``to_async(executor=...)``, ``Bridge(executor=...)`` and named pools on an
executor: the await is cancellation-aware (a call still queued is cancelled and
never runs; a running one is abandoned or waited for), outcomes arrive intact,
and what cannot be sent to another process is named. The process pools here
use the forkserver start method: forking a process that runs threads is unsafe
(and warned about).
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import gc
import multiprocessing
import os
import subprocess
import sys
import threading
import weakref
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import pytest

import _jobs
from syncbridge import (
    Bridge,
    BridgeClosed,
    ExecutorPool,
    GatherTimeout,
    ProcessExecutor,
    SerializationError,
    SyncBridgeError,
    SyncBridgeTimeout,
    WorkerCancelled,
    WorkerProcessDied,
    check_cancelled,
    gather_with_timeout,
    to_async,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from syncbridge._typing import T

pytestmark = pytest.mark.anyio

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id")
WAIT = 10.0  # seconds; only reached when a test is failing


def _context() -> multiprocessing.context.BaseContext:
    method = (
        "forkserver"
        if "forkserver" in multiprocessing.get_all_start_methods()
        else "spawn"
    )
    return multiprocessing.get_context(method)


@pytest.fixture
def threads() -> Iterator[concurrent.futures.ThreadPoolExecutor]:
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="mine") as ex:
        yield ex


@pytest.fixture
def processes() -> Iterator[concurrent.futures.ProcessPoolExecutor]:
    ex: concurrent.futures.ProcessPoolExecutor | None
    ex = concurrent.futures.ProcessPoolExecutor(1, mp_context=_context())
    try:
        yield ex
    finally:
        ex.shutdown(wait=True, cancel_futures=True)
        # Its queues' semaphores sit in reference cycles: collected now, their
        # finalizers unregister them here. Left to a later collection, one can
        # run inside the resource tracker's own call of the next test's
        # executor, and Python 3.12.1 then warns of a reentrant call.
        ex = None
        gc.collect()


def _wait_for(path: Path) -> None:
    """Wait (bounded) until a job in another process created *path*."""
    deadline = threading.Event()
    for _ in range(3000):
        if path.exists():
            return
        deadline.wait(0.01)
    raise AssertionError(f"{path.name} was never created")


# -- threads of your own ---------------------------------------------------


async def test_to_async_runs_on_the_given_executor_in_the_callers_context(
    bridge: Bridge, threads: concurrent.futures.ThreadPoolExecutor
) -> None:
    def where() -> tuple[str, str]:
        return threading.current_thread().name, request_id.get()

    request_id.set("r-7")
    name, seen = await to_async(where, executor=threads, bridge=bridge)()
    assert name.startswith("mine")
    assert seen == "r-7"
    stats = bridge.stats()
    (pool,) = [p for key, p in stats.pools.items() if key.startswith("ThreadPool")]
    assert (pool.calls, pool.completed, pool.capacity) == (1, 1, 1)


async def test_bridge_executor_is_where_run_blocking_runs(
    threads: concurrent.futures.ThreadPoolExecutor,
) -> None:
    with Bridge(executor=threads) as bridge:
        name = await bridge.run_blocking(lambda: threading.current_thread().name)
        assert name.startswith("mine")
        stats = bridge.stats()
        assert stats.pools["default"].calls == 1
        assert stats.pools["default"].capacity == 1
        assert stats.pools["threads"].capacity == bridge.max_workers == 40
        assert stats.calls == 1


async def test_a_thread_executor_call_is_off_the_busy_count_once_awaited(
    threads: concurrent.futures.ThreadPoolExecutor,
) -> None:
    """After each await, the executor's future is no longer running: a call's
    awaiter was woken before its executor thread let go of it (#22)."""
    with Bridge(executor=threads) as bridge:
        for i in range(2000):
            await bridge.run_blocking(int)
            busy = bridge.stats().pools["default"].busy
            assert busy == 0, f"call {i}: busy={busy} once its awaiter had the result"


async def test_an_exception_from_a_thread_executor_is_the_same_object(
    bridge: Bridge, threads: concurrent.futures.ThreadPoolExecutor
) -> None:
    error = KeyError("k")

    def boom() -> None:
        raise error

    with pytest.raises(KeyError) as caught:
        await to_async(boom, executor=threads, bridge=bridge)()
    assert caught.value is error


async def test_a_call_cancelled_while_queued_in_the_executor_never_runs(
    bridge: Bridge, threads: concurrent.futures.ThreadPoolExecutor
) -> None:
    started, release = threading.Event(), threading.Event()
    ran: list[str] = []

    def first() -> None:
        started.set()
        release.wait(10)

    def second() -> None:
        ran.append("second")

    run = to_async(executor=threads, bridge=bridge)
    async with anyio.create_task_group() as tg:
        tg.start_soon(run(first))
        await anyio.to_thread.run_sync(started.wait, 10)
        with anyio.move_on_after(0.05) as scope:
            await run(second)()  # queued behind first: the executor has one thread
        assert scope.cancelled_caught
        release.set()
    await run(lambda: None)()  # the executor's queue is FIFO: second would be done
    assert ran == []
    (pool,) = [p for k, p in bridge.stats().pools.items() if k.startswith("Thread")]
    assert (pool.calls, pool.completed, pool.cancellations) == (3, 2, 1)


@pytest.mark.parametrize("anyio_backend", ["asyncio"], indirect=True)
async def test_a_native_task_cancel_of_a_queued_call_cancels_its_future(
    bridge: Bridge, threads: concurrent.futures.ThreadPoolExecutor
) -> None:
    import asyncio

    started, release = threading.Event(), threading.Event()
    ran: list[str] = []
    run = to_async(executor=threads, bridge=bridge)

    def first() -> None:
        started.set()
        release.wait(10)

    blocker = asyncio.ensure_future(run(first)())
    await asyncio.to_thread(started.wait, 10)
    queued = asyncio.ensure_future(run(ran.append)("queued"))
    await asyncio.sleep(0.01)
    queued.cancel()
    with pytest.raises(asyncio.CancelledError):
        await queued
    release.set()
    await blocker
    await run(lambda: None)()
    assert ran == []


@pytest.mark.parametrize("abandon", [True, False])
async def test_a_running_call_is_abandoned_or_waited_for_and_sees_check_cancelled(
    bridge: Bridge, threads: concurrent.futures.ThreadPoolExecutor, abandon: bool
) -> None:
    started, release = threading.Event(), threading.Event()
    events: list[str] = []

    def work() -> None:
        started.set()
        try:
            for _ in range(1000):  # returns only once it sees the cancellation
                check_cancelled()
                threading.Event().wait(0.01)
        except WorkerCancelled:
            if abandon:
                release.wait(10)  # until the await has ended
            events.append("check_cancelled raised")
            raise
        finally:
            events.append("returned")

    run = to_async(work, executor=threads, bridge=bridge, abandon_on_cancel=abandon)

    async def awaiter() -> None:
        try:
            await run()
        finally:
            events.append("await ended")

    async with anyio.create_task_group() as tg:
        tg.start_soon(awaiter)
        await anyio.to_thread.run_sync(started.wait, 10)
        tg.cancel_scope.cancel()
    release.set()
    await to_async(lambda: None, executor=threads, bridge=bridge)()  # after work
    if abandon:
        assert events == ["await ended", "check_cancelled raised", "returned"]
    else:
        assert events == ["check_cancelled raised", "returned", "await ended"]


async def test_an_executor_shut_down_says_so(bridge: Bridge) -> None:
    ex = concurrent.futures.ThreadPoolExecutor(1)
    ex.shutdown()
    with pytest.raises(SyncBridgeError, match=r"shut down or is broken: give the"):
        await to_async(int, executor=ex, bridge=bridge)()


# -- executors made and dropped by their user (#24) ------------------------


class _Inline(concurrent.futures.Executor):
    """Runs each call in submit(): an executor that costs nothing to make."""

    def submit(
        self, fn: Callable[..., T], /, *args: object, **kwargs: object
    ) -> concurrent.futures.Future[T]:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        future.set_running_or_notify_cancel()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # the future carries it
            future.set_exception(exc)
        return future


def _executor_pools(bridge: Bridge) -> list[str]:
    """The names of the pools *bridge* made for to_async(executor=...).

    Every pool but the built-in two: the bridges here have no named pool.
    """
    builtin = ("default", "thread_sensitive")
    return [name for name in bridge.stats().pools if name not in builtin]


def _executor_pools_alive() -> int:
    return sum(isinstance(o, ExecutorPool) for o in gc.get_objects())


async def test_an_executor_made_per_call_is_not_kept_and_leaves_stats(
    bridge: Bridge,
) -> None:
    """300 requests, each with its own ThreadPoolExecutor: none is left behind."""
    made: list[weakref.ref[concurrent.futures.ThreadPoolExecutor]] = []

    async def request(i: int) -> int:
        with concurrent.futures.ThreadPoolExecutor(1) as ex:
            made.append(weakref.ref(ex))
            return await to_async(int, executor=ex, bridge=bridge)(str(i))

    for i in range(300):
        assert await request(i) == i
    gc.collect()
    assert [ref for ref in made if ref() is not None] == []
    assert _executor_pools(bridge) == []
    stats = bridge.stats()
    # Their calls stay in the bridge's totals: counters never go down.
    assert (stats.calls, stats.completed, stats.errors) == (300, 300, 0)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_pools_and_memory_stay_flat_over_10000_executors_made_per_call(
    backend: str,
) -> None:
    """Per-call executors from four threads' loops while stats() is read."""
    per_thread, warmup = 2_250, 1_000
    errors: list[BaseException] = []

    async def calls(bridge: Bridge, n: int) -> None:
        for i in range(n):
            assert await to_async(int, executor=_Inline(), bridge=bridge)(i) == i

    def caller(bridge: Bridge) -> None:
        try:
            anyio.run(calls, bridge, per_thread, backend=backend)
        except BaseException as exc:  # raised in the test
            errors.append(exc)

    with Bridge() as bridge:
        anyio.run(calls, bridge, warmup, backend=backend)
        gc.collect()
        pools, alive = _executor_pools(bridge), _executor_pools_alive()
        blocks = sys.getallocatedblocks()
        callers = [threading.Thread(target=caller, args=(bridge,)) for _ in range(4)]
        for thread in callers:
            thread.start()
        seen: list[int] = []  # the totals as stats() read them meanwhile
        pause = threading.Event()  # never set: a sampling interval
        while any(thread.is_alive() for thread in callers):
            seen.append(bridge.stats().completed)
            pause.wait(0.001)
        for thread in callers:
            thread.join()
        if errors:
            raise errors[0]
        gc.collect()
        grown = sys.getallocatedblocks() - blocks
        assert _executor_pools(bridge) == pools == []
        assert _executor_pools_alive() <= alive
        # A pool and its executor leaked per call are ~10 blocks each.
        assert grown < 3_000, f"{grown} blocks more after 9,000 calls"
        stats = bridge.stats()
        assert stats.calls == stats.completed == warmup + 4 * per_thread
        assert seen == sorted(seen), "the bridge's totals went down"


async def test_a_call_still_running_keeps_its_executor_alive_until_it_ends(
    bridge: Bridge,
) -> None:
    """Its awaiter is gone and its user dropped the executor: the call goes on."""
    started, release = threading.Event(), threading.Event()

    def work() -> str:
        started.set()
        release.wait(WAIT)
        return "done"

    ex = concurrent.futures.ThreadPoolExecutor(1)
    ref = weakref.ref(ex)
    run = to_async(work, executor=ex, bridge=bridge, abandon_on_cancel=True)
    del ex
    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        await anyio.to_thread.run_sync(started.wait, WAIT)
        tg.cancel_scope.cancel()  # abandoned: the await ends, the call runs
    del run
    gc.collect()
    assert ref() is not None, "the executor of a running call was dropped"
    [name] = _executor_pools(bridge)
    pool = bridge.stats().pools[name]
    assert (pool.busy, pool.abandoned, pool.cancellations) == (1, 1, 1)
    release.set()
    executor = ref()
    assert executor is not None
    executor.shutdown(wait=True)  # its thread completed the call's future
    del executor
    gc.collect()
    assert ref() is None, "the bridge kept the executor after its call ended"
    assert _executor_pools(bridge) == []
    assert bridge.stats().cancellations == 1


async def test_a_shut_down_executor_keeps_its_pool_while_its_user_holds_it(
    bridge: Bridge,
) -> None:
    """The documented choice: a pool leaves stats() once its executor is gone."""
    ex = concurrent.futures.ThreadPoolExecutor(1)
    assert await to_async(int, executor=ex, bridge=bridge)("7") == 7
    ex.shutdown()
    [name] = _executor_pools(bridge)
    with pytest.raises(SyncBridgeError, match=r"shut down or is broken"):
        await to_async(int, executor=ex, bridge=bridge)()
    pool = bridge.stats().pools[name]  # the same pool: its totals go on
    assert (pool.calls, pool.completed, pool.errors) == (2, 1, 1)
    del ex
    gc.collect()
    assert _executor_pools(bridge) == []
    stats = bridge.stats()
    assert (stats.calls, stats.completed, stats.errors) == (2, 1, 1)


# -- configuration -----------------------------------------------------------


def test_named_pools_on_executors_and_their_misuse(
    threads: concurrent.futures.ThreadPoolExecutor,
) -> None:
    with Bridge(pools={"mine": threads, "db": 3}) as bridge:
        assert bridge.stats().pools["mine"].capacity == 1
        assert bridge.stats().pools["db"].capacity == 3
        bridge.add_pool("more", executor=threads)
        with pytest.raises(TypeError, match=r"sizes itself: create the executor"):
            bridge.pool("mine").capacity = 4
        with pytest.raises(TypeError, match=r"sizes itself"):
            bridge.set_pool("mine", 4)
        with pytest.raises(ValueError, match=r"a capacity or an executor, not both"):
            bridge.add_pool("x", 2, executor=threads)
        with pytest.raises(TypeError, match=r"capacity=...\) must be an int >= 1"):
            bridge.add_pool("x")
        with pytest.raises(TypeError, match=r"concurrent.futures.Executor"):
            bridge.add_pool("x", executor=object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"Bridge\(executor=...\) must be a concurrent"):
        Bridge(executor="threads")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"may also run on a concurrent.futures"):
        Bridge(pools={"db": "4"})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match=r"one of pool=..., thread_sensitive=True"):
        to_async(int, pool="db", executor=threads)
    with pytest.raises(TypeError, match=r"to_async\(executor=...\) must be"):
        to_async(int, executor=4)  # type: ignore[call-overload]


# -- other processes ---------------------------------------------------------


async def test_an_error_in_a_process_keeps_its_type_message_and_traceback(
    bridge: Bridge, processes: concurrent.futures.ProcessPoolExecutor
) -> None:
    with pytest.raises(ValueError, match=r"^bad value 42$") as caught:
        await to_async(_jobs.fail, executor=processes, bridge=bridge)("bad value 42")
    assert "in fail" in str(caught.value.__cause__)  # the child's traceback


async def test_a_process_pool_runs_calls_in_another_process(
    bridge: Bridge, processes: concurrent.futures.ProcessPoolExecutor
) -> None:
    run = to_async(executor=processes, bridge=bridge)
    assert await run(_jobs.pid)() != os.getpid()
    assert await run(_jobs.echo)(1, suffix="!") == "1!"


@pytest.mark.parametrize(
    ("call", "named"),
    [
        (lambda: (lambda: 1, (), {}), "the function"),
        (lambda: (_jobs.echo, (threading.Lock(),), {}), "argument 1"),
        (lambda: (_jobs.echo, (1,), {"suffix": threading.Lock()}), "'suffix'"),
    ],
    ids=["lambda", "argument", "keyword argument"],
)
async def test_what_cannot_be_pickled_is_named(
    bridge: Bridge,
    processes: concurrent.futures.ProcessPoolExecutor,
    call: object,
    named: str,
) -> None:
    func, args, kwargs = call()  # type: ignore[operator]
    with pytest.raises(SerializationError, match=named) as caught:
        await to_async(func, executor=processes, bridge=bridge)(*args, **kwargs)
    assert "pickle" in str(caught.value)
    assert await to_async(_jobs.echo, executor=processes, bridge=bridge)(2) == "2"


async def test_a_timeout_cancels_a_call_still_queued_in_a_process_pool(
    bridge: Bridge, processes: concurrent.futures.ProcessPoolExecutor, tmp_path: Path
) -> None:
    release = tmp_path / "release"
    await to_async(_jobs.pid, executor=processes, bridge=bridge)()  # started, warm
    run = to_async(
        _jobs.started_then_wait, executor=processes, bridge=bridge, timeout=0.2
    )
    timed_out: list[str] = []

    async def call(name: str) -> None:
        with pytest.raises(SyncBridgeTimeout, match=r"did not finish within 0.2 s"):
            await run(str(tmp_path / name), str(release))
        timed_out.append(name)

    async with anyio.create_task_group() as tg:
        tg.start_soon(call, "a")
        await anyio.to_thread.run_sync(_wait_for, tmp_path / "a")
        for name in "bcde":
            tg.start_soon(call, name)
    release.touch()
    assert sorted(timed_out) == list("abcde")
    await to_async(_jobs.pid, executor=processes, bridge=bridge)()  # FIFO: after them
    started = {p.name for p in tmp_path.iterdir()} - {"release"}
    # A ProcessPoolExecutor hands 2 * max_workers + 1 calls to its processes at
    # once (their futures say "running", so they cannot be cancelled): the
    # others were cancelled in its queue. (trio starts tasks in any order.)
    assert "a" in started
    assert len(started) <= 3


async def test_gather_with_timeout_on_a_process_pool_cancels_the_queued_calls(
    bridge: Bridge, processes: concurrent.futures.ProcessPoolExecutor, tmp_path: Path
) -> None:
    release = tmp_path / "release"
    await to_async(_jobs.pid, executor=processes, bridge=bridge)()  # started, warm
    run = to_async(_jobs.started_then_wait, executor=processes, bridge=bridge)
    with pytest.raises(GatherTimeout):
        await gather_with_timeout(
            *(run(str(tmp_path / f"job{i}"), str(release)) for i in range(6)),
            timeout=0.5,
        )
    release.touch()
    await to_async(_jobs.pid, executor=processes, bridge=bridge)()  # FIFO: after them
    started = {p.name for p in tmp_path.iterdir()} - {"release"}
    assert 1 <= len(started) <= 3  # in the processes' hands at most


async def test_closing_the_bridge_fails_calls_queued_in_the_executor(
    processes: concurrent.futures.ProcessPoolExecutor, tmp_path: Path
) -> None:
    release = tmp_path / "release"
    bridge = Bridge(pools={"cpu": processes}, shutdown_grace=0.2)
    run = to_async(_jobs.started_then_wait, pool="cpu", bridge=bridge)
    outcomes: list[object] = []

    async def call(name: str) -> None:
        try:
            outcomes.append(await run(str(tmp_path / name), str(release)))
        except BridgeClosed as exc:
            outcomes.append(type(exc))

    async with anyio.create_task_group() as tg:
        tg.start_soon(call, "a")
        await anyio.to_thread.run_sync(_wait_for, tmp_path / "a")
        for name in "bcde":
            tg.start_soon(call, name)
        await anyio.sleep(0.05)
        await anyio.to_thread.run_sync(bridge.close)
        release.touch()
    # a and two more were in the processes' hands; the others still queued
    assert outcomes.count(BridgeClosed) >= 2
    assert len(outcomes) == 5
    await anyio.to_thread.run_sync(processes.submit(_jobs.pid).result, 10)
    assert len(set(tmp_path.iterdir()) - {release}) <= 3


def test_import_syncbridge_loads_no_process_or_cluster_machinery() -> None:
    code = (
        "import sys, syncbridge\n"
        "heavy = ('multiprocessing', 'concurrent.futures.process', 'dask',"
        " 'distributed', 'loky', 'cloudpickle')\n"
        "print([m for m in heavy if m in sys.modules])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    assert out.strip() == "[]"


# -- ProcessExecutor: deadlines that end the work ------------------------------


@pytest.fixture
def one_process() -> Iterator[ProcessExecutor]:
    with ProcessExecutor(max_workers=1) as ex:
        yield ex


def _gone(pid: int) -> bool:
    """Whether process *pid* has exited (waited for, bounded: SIGTERM takes a moment)."""
    for _ in range(500):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        status = Path(f"/proc/{pid}/status")
        if status.exists() and "zombie" in status.read_text().lower():
            return True
        threading.Event().wait(0.01)
    return False


async def test_a_timeout_ends_the_process_running_the_call(
    bridge: Bridge, one_process: ProcessExecutor, tmp_path: Path
) -> None:
    first = await to_async(_jobs.pid, executor=one_process, bridge=bridge)()
    stuck = to_async(_jobs.hang, executor=one_process, bridge=bridge, timeout=1.0)
    with pytest.raises(SyncBridgeTimeout, match=r"hang\(\) did not finish within"):
        await stuck(str(tmp_path / "started"))
    assert (tmp_path / "started").exists()
    # One process: this call can only run because the stuck one's was ended.
    second = await to_async(_jobs.pid, executor=one_process, bridge=bridge)()
    assert second != first
    assert _gone(first)
    stats = bridge.stats().pools["ProcessExecutor-1"]
    assert (stats.calls, stats.completed, stats.timeouts, stats.abandoned) == (
        3,
        2,
        1,
        0,
    )


@pytest.mark.parametrize("terminate", [True, False])
async def test_a_cancel_ends_the_process_only_when_asked(
    bridge: Bridge, one_process: ProcessExecutor, tmp_path: Path, terminate: bool
) -> None:
    stuck = to_async(
        _jobs.hang, executor=one_process, bridge=bridge, terminate_on_cancel=terminate
    )
    started = tmp_path / "started"
    with anyio.move_on_after(5) as outer:
        async with anyio.create_task_group() as tg:
            tg.start_soon(stuck, str(started))
            await anyio.to_thread.run_sync(_wait_for, started)
            tg.cancel_scope.cancel()
    assert not outer.cancelled_caught
    pool = bridge.stats().pools["ProcessExecutor-1"]
    if terminate:
        assert await to_async(_jobs.echo, executor=one_process, bridge=bridge)(1) == "1"
        assert bridge.stats().pools["ProcessExecutor-1"].abandoned == 0
    else:
        assert (pool.cancellations, pool.abandoned, pool.busy) == (1, 1, 1)
        assert one_process.running == 1  # still running: its slot is taken
        one_process.terminate_workers()


async def test_a_worker_process_that_dies_is_an_error_and_the_pool_carries_on(
    bridge: Bridge, one_process: ProcessExecutor
) -> None:
    run = to_async(executor=one_process, bridge=bridge)
    with pytest.raises(WorkerProcessDied, match=r"exit_now\(\)"):
        await run(_jobs.exit_now)(3)
    assert await run(_jobs.echo)("still", suffix=" here") == "still here"


async def test_gather_with_timeout_on_a_process_executor_starts_no_queued_call(
    bridge: Bridge, one_process: ProcessExecutor, tmp_path: Path
) -> None:
    release = tmp_path / "release"
    await to_async(_jobs.pid, executor=one_process, bridge=bridge)()  # started, warm
    run = to_async(_jobs.started_then_wait, executor=one_process, bridge=bridge)
    with pytest.raises(GatherTimeout):
        await gather_with_timeout(
            *(run(str(tmp_path / f"job{i}"), str(release)) for i in range(6)),
            timeout=0.5,
        )
    release.touch()
    await to_async(_jobs.pid, executor=one_process, bridge=bridge)()  # after them
    started = {p.name for p in tmp_path.iterdir()} - {"release"}
    assert len(started) == 1  # the one the process had; the others never ran


async def test_closing_the_bridge_ends_a_process_still_running_its_call(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with ProcessExecutor(max_workers=1) as ex:
        bridge = Bridge(pools={"cpu": ex}, shutdown_grace=0.1)
        pid = await to_async(_jobs.pid, pool="cpu", bridge=bridge)()
        outcome: list[type[BaseException]] = []

        async def call() -> None:
            try:
                await to_async(_jobs.hang, pool="cpu", bridge=bridge)(
                    str(tmp_path / "started")
                )
            except BridgeClosed as exc:
                outcome.append(type(exc))

        async with anyio.create_task_group() as tg:
            tg.start_soon(call)
            await anyio.to_thread.run_sync(_wait_for, tmp_path / "started")
            await anyio.to_thread.run_sync(bridge.close)
        assert outcome == [BridgeClosed]
        assert _gone(pid)
        assert "ended the worker process running hang()" in caplog.text


# -- found by review -----------------------------------------------------------


async def test_decorators_below_syncbridge_still_run_in_the_worker_process(
    bridge: Bridge, processes: concurrent.futures.ProcessPoolExecutor
) -> None:
    # What to_async(pool="cpu") got: the user's `doubling` wrapper, under the
    # module-level name that syncbridge's own wrapper took.
    func = _jobs.doubled.__wrapped__  # type: ignore[attr-defined]
    assert await to_async(func, executor=processes, bridge=bridge)(1) == 4


async def test_a_decorated_function_is_named_in_errors_from_its_process(
    bridge: Bridge, one_process: ProcessExecutor
) -> None:
    func = _jobs.exit_decorated.__wrapped__  # type: ignore[attr-defined]
    with pytest.raises(WorkerProcessDied, match=r"running exit_decorated\(\)"):
        await to_async(func, executor=one_process, bridge=bridge)(5)


async def test_an_executor_shut_down_with_cancel_futures_says_so(
    bridge: Bridge, threads: concurrent.futures.ThreadPoolExecutor
) -> None:
    started, release = threading.Event(), threading.Event()

    def first() -> None:
        started.set()
        release.wait(10)

    run = to_async(executor=threads, bridge=bridge)
    outcome: list[BaseException] = []

    async def queued() -> None:
        try:
            await run(int)()
        except BaseException as exc:
            outcome.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(run(first))
        await anyio.to_thread.run_sync(started.wait, 10)
        tg.start_soon(queued)
        await anyio.sleep(0.05)
        threads.shutdown(wait=False, cancel_futures=True)
        release.set()
    (error,) = outcome
    assert type(error) is SyncBridgeError
    assert "cancelled int() itself (it was shut down" in str(error)


async def test_a_nested_call_to_the_executor_of_its_own_pool_runs_on_its_thread(
    threads: concurrent.futures.ThreadPoolExecutor,
) -> None:
    async def middle() -> str:
        return await to_async(
            lambda: threading.current_thread().name, executor=threads, bridge=bridge
        )()

    def outer() -> tuple[str, str]:
        return threading.current_thread().name, bridge.sync_call_async(middle)

    with Bridge(executor=threads) as bridge:
        with anyio.fail_after(10):
            mine, nested = await bridge.run_blocking(outer)
    assert mine == nested  # the one thread, lent to the nested call


async def test_a_timeout_still_ends_the_process_of_a_call_awaited_after_a_cancel(
    bridge: Bridge, one_process: ProcessExecutor, tmp_path: Path
) -> None:
    await to_async(_jobs.pid, executor=one_process, bridge=bridge)()  # started, warm
    stuck = to_async(
        _jobs.hang,
        executor=one_process,
        bridge=bridge,
        timeout=2.0,
        abandon_on_cancel=False,
    )
    started = tmp_path / "started"
    with anyio.move_on_after(30) as guard:
        async with anyio.create_task_group() as tg:
            tg.start_soon(stuck, str(started))
            await anyio.to_thread.run_sync(_wait_for, started)
            tg.cancel_scope.cancel()  # waits for the call: its deadline ends it
    assert not guard.cancelled_caught
    assert (
        one_process.running == 0
        or await to_async(_jobs.pid, executor=one_process, bridge=bridge)()
    )


# -- 3.14's InterpreterPoolExecutor -------------------------------------------
#
# A ThreadPoolExecutor whose threads each run calls in an interpreter of their
# own: calls cross into it (and results out of it) shared or pickled, like calls
# to another process. Its interpreters import from sys.path as Python starts,
# so the jobs here are the stdlib's, and an eval()'d expression.

needs_interpreters = pytest.mark.skipif(
    sys.version_info < (3, 14), reason="InterpreterPoolExecutor is new in Python 3.14"
)


@pytest.fixture
def interpreters() -> Iterator[concurrent.futures.Executor]:
    # Looked up: mypy checks these tests against older Pythons too.
    cls = getattr(concurrent.futures, "InterpreterPoolExecutor", None)
    assert cls is not None
    ex: concurrent.futures.Executor = cls(1)
    try:
        yield ex
    finally:
        ex.shutdown(wait=True, cancel_futures=True)


@needs_interpreters
async def test_an_interpreter_pool_runs_calls_in_another_interpreter(
    bridge: Bridge, interpreters: concurrent.futures.Executor
) -> None:
    run = to_async(executor=interpreters, bridge=bridge)
    which = "__import__('concurrent.interpreters', fromlist=['x']).get_current().id"
    assert await run(eval)(which) != 0  # 0 is the main interpreter
    assert await run(divmod)(7, 2) == (3, 1)
    with pytest.raises(ValueError, match="invalid literal"):
        await run(int)("x")


@needs_interpreters
@pytest.mark.parametrize(
    ("call", "named"),
    [
        (lambda: (_closure(), (), {}), "the function .*cannot be pickled"),
        (lambda: (divmod, (threading.Lock(), 1), {}), "argument 1 of divmod"),
        (lambda: (threading.Lock, (), {}), "could not cross into or out of"),
    ],
    ids=["closure", "argument", "result"],
)
async def test_what_cannot_cross_into_an_interpreter_is_named(
    bridge: Bridge,
    interpreters: concurrent.futures.Executor,
    call: object,
    named: str,
) -> None:
    func, args, kwargs = call()  # type: ignore[operator]
    with anyio.fail_after(30):  # a lost outcome would hang the await
        with pytest.raises(SerializationError, match=named):
            await to_async(func, executor=interpreters, bridge=bridge)(*args, **kwargs)
        assert await to_async(divmod, executor=interpreters, bridge=bridge)(5, 2)


def _closure() -> Callable[[], int]:
    value = 5
    return lambda: value


@needs_interpreters
async def test_a_timeout_on_an_interpreter_pool_abandons_or_cancels_the_call(
    bridge: Bridge, interpreters: concurrent.futures.Executor
) -> None:
    """A running call runs on (no executor can stop it); a queued one never runs."""
    started_r, started_w = os.pipe()
    release_r, release_w = os.pipe()
    ran_r, ran_w = os.pipe()
    try:
        await to_async(divmod, executor=interpreters, bridge=bridge)(1, 1)  # warm
        blocked = to_async(eval, executor=interpreters, bridge=bridge, timeout=1.0)
        queued = to_async(os.write, executor=interpreters, bridge=bridge, timeout=0.2)
        expression = (
            f"(__import__('os').write({started_w}, b's'), "
            f"__import__('os').read({release_r}, 1))"
        )
        async with anyio.create_task_group() as tg:

            async def block() -> None:
                with pytest.raises(SyncBridgeTimeout, match=r"within 1 s"):
                    await blocked(expression)

            tg.start_soon(block)
            with anyio.fail_after(30):
                assert await anyio.to_thread.run_sync(os.read, started_r, 1) == b"s"
            with pytest.raises(SyncBridgeTimeout, match=r"within 0\.2 s"):
                await queued(ran_w, b"q")  # behind the blocked call
        (stats,) = [
            s
            for name, s in bridge.stats().pools.items()
            if name.startswith("InterpreterPoolExecutor")
        ]
        assert (stats.timeouts, stats.busy, stats.waiting, stats.abandoned) == (
            2,
            1,
            0,
            1,
        )
        os.write(release_w, b"x")
        interpreters.shutdown(wait=True)
        os.set_blocking(ran_r, False)
        with pytest.raises(BlockingIOError):  # the queued call never ran
            os.read(ran_r, 1)
    finally:
        for fd in (started_r, started_w, release_r, release_w, ran_r, ran_w):
            os.close(fd)
