"""Stress: thousands of mixed and nested bridge calls, from tasks and threads at once.

Every run uses its own small bridge (``CAPACITY`` workers) so that calls queue,
and mixes three kinds of call, issued concurrently from tasks of one event loop
and from plain threads:

* one crossing: ``run_blocking`` (tasks) or ``sync_call_async`` (threads);
* two crossings: async -> sync -> async, or sync -> async -> sync;
* ``DEPTH`` crossings, sync and async alternating (deeper than the capacity).

Each call returns a value derived from its id and its number of crossings, and
every value is checked, as are the thread each level ran on (a worker of the
bridge's pool; the task's own loop or the portal loop, per loop-choice rule 1)
and the pool's capacity: at no moment do more than ``CAPACITY`` threads run
pool functions. A thread counts once however deeply it nests: a worker blocked
in ``sync_call_async`` legitimately runs nested jobs of its own pool itself.

``SYNCBRIDGE_STRESS_SCALE``: ``small`` (default, 1,000 calls, 10 threads, a few
seconds) or ``full`` (10,000 calls, 50 threads; ``nox -s stress``).
"""

from __future__ import annotations

import os
import re
import threading
import time
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel
import pytest

from syncbridge import Bridge

if TYPE_CHECKING:
    from collections.abc import Iterator

_SCALES = {"small": (1_000, 10, 40.0), "full": (10_000, 50, 300.0)}
SCALE = os.environ.get("SYNCBRIDGE_STRESS_SCALE", "small")
if SCALE not in _SCALES:
    raise ValueError(f"SYNCBRIDGE_STRESS_SCALE must be one of {sorted(_SCALES)}")
CALLS, THREADS, BUDGET = _SCALES[SCALE]
"""Calls per run, plain caller threads, seconds a run may take."""

CAPACITY = 8
DEPTH = 10
PER_THREAD = CALLS // (2 * THREADS)  # half the calls come from threads
TASK_CALLS = CALLS - PER_THREAD * THREADS

# BUDGET fails a stuck run with a message; the watchdog (conftest.py) dumps all
# stacks 5 s before pytest-timeout, which gets 15 s more than BUDGET.
pytestmark = [pytest.mark.stress, pytest.mark.timeout(BUDGET + 20)]


def crossings(cid: int) -> int:
    """How many sync/async crossings call *cid* makes."""
    return (1, 2, DEPTH)[cid % 3]


def expected(cid: int) -> int:
    """The value call *cid* must return: unique per call."""
    return cid * 100 + crossings(cid)


class ThreadGauge:
    """The threads running pool functions right now (each counted once)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._depth: dict[int, int] = {}
        self.peak = 0
        self.entered = 0

    def __enter__(self) -> None:
        me = threading.get_ident()
        with self._lock:
            self._depth[me] = self._depth.get(me, 0) + 1
            self.peak = max(self.peak, len(self._depth))
            self.entered += 1

    def __exit__(self, *exc_info: object) -> None:
        me = threading.get_ident()
        with self._lock:
            depth = self._depth.pop(me) - 1
            if depth:
                self._depth[me] = depth


class Run:
    """One stress run: a bridge, the nested functions and their bookkeeping."""

    def __init__(self, bridge: Bridge) -> None:
        self.bridge = bridge
        self.gauge = ThreadGauge()
        self.worker_name = re.compile(rf"syncbridge-{re.escape(bridge.name)}-\d+")
        self.peak_waiting = 0
        self.results: dict[int, int] = {}
        self.errors: list[tuple[int, BaseException]] = []
        self._lock = threading.Lock()

    def record(self, cid: int, value: int) -> None:
        with self._lock:
            self.results[cid] = value

    def fail(self, cid: int, exc: BaseException) -> None:
        with self._lock:
            self.errors.append((cid, exc))

    @property
    def done(self) -> int:
        return len(self.results) + len(self.errors)

    # sync -> async -> sync ... ; each level adds 1, the innermost returns cid*100

    def sync_level(self, cid: int, n: int, home: int) -> int:
        """A pool function: runs on a worker, calls back into *home*'s loop."""
        with self.gauge:
            name = threading.current_thread().name
            assert self.worker_name.fullmatch(name), f"pool call on thread {name!r}"
            self.peak_waiting = max(self.peak_waiting, self.bridge.pool().waiting)
            time.sleep(0)  # let other threads in
            if n == 0:
                return cid * 100
            return self.bridge.sync_call_async(self.async_level, cid, n - 1, home) + 1

    async def async_level(self, cid: int, n: int, home: int) -> int:
        """Runs on the loop of thread *home* (the caller's loop, rule 1)."""
        assert threading.get_ident() == home, "coroutine ran on the wrong loop"
        await anyio.lowlevel.checkpoint()
        if n == 0:
            return cid * 100
        return await self.bridge.run_blocking(self.sync_level, cid, n - 1, home) + 1

    async def task_call(self, cid: int, home: int) -> None:
        try:
            self.record(cid, await self.async_level(cid, crossings(cid), home))
        except Exception as exc:
            self.fail(cid, exc)

    def thread_calls(self, first: int, go: threading.Event, portal: int) -> None:
        go.wait(BUDGET)
        for cid in range(first, first + PER_THREAD):
            try:
                n = crossings(cid) - 1  # this thread's own call is the first
                value = self.bridge.sync_call_async(self.async_level, cid, n, portal)
                self.record(cid, value + 1)
            except Exception as exc:
                self.fail(cid, exc)

    def check(self) -> None:
        pool = self.bridge.pool()
        if self.errors:
            cid, exc = self.errors[0]
            raise AssertionError(
                f"{len(self.errors)} of {CALLS} calls raised; call {cid} raised {exc!r}"
            ) from exc
        wrong = {
            c: self.results.get(c)
            for c in range(CALLS)
            if self.results.get(c) != expected(c)
        }
        assert not wrong, f"{len(wrong)} calls returned wrong values: " + ", ".join(
            f"#{c}: {v} != {expected(c)}" for c, v in list(wrong.items())[:5]
        )
        assert self.gauge.peak <= CAPACITY, (
            f"{self.gauge.peak} threads ran pool functions at once; capacity is "
            f"{CAPACITY}"
        )
        # the run really pushed the pool to its limits (else it proves nothing)
        assert self.gauge.peak == CAPACITY
        assert self.peak_waiting > 0, "no call ever had to wait for a slot"
        assert (pool.busy, pool.waiting) == (0, 0), "slots not given back"
        assert pool.threads <= CAPACITY


async def _thread_ident() -> int:
    return threading.get_ident()


@pytest.fixture
def stress_bridge(request: pytest.FixtureRequest) -> Iterator[Bridge]:
    portal: str = request.param
    if portal == "uvloop":
        pytest.importorskip("uvloop")  # else the portal would quietly run asyncio
    bridge = Bridge(
        max_workers=CAPACITY,
        backend="trio" if portal == "trio" else "asyncio",
        use_uvloop=portal == "uvloop",
        shutdown_grace=2.0,
    )
    try:
        yield bridge
    finally:
        bridge.close()


def _backend(loop: str) -> tuple[str, dict[str, Any]]:
    if loop == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        # loop_factory works on every Python anyio supports (3.10 included)
        return "asyncio", {"loop_factory": uvloop.new_event_loop}
    return loop, {}


@pytest.mark.parametrize(
    ("loop", "stress_bridge"),
    [
        pytest.param("asyncio", "asyncio", id="asyncio-portal_asyncio"),
        pytest.param("uvloop", "uvloop", id="uvloop-portal_uvloop"),
        pytest.param("trio", "trio", id="trio-portal_trio"),
        pytest.param("asyncio", "trio", id="asyncio-portal_trio"),
        pytest.param("trio", "uvloop", id="trio-portal_uvloop"),
    ],
    indirect=["stress_bridge"],
)
def test_mixed_nested_calls_from_tasks_and_threads(
    loop: str, stress_bridge: Bridge
) -> None:
    backend, options = _backend(loop)
    run = Run(stress_bridge)
    portal = stress_bridge.sync_call_async(_thread_ident)  # starts the portal
    go = threading.Event()
    threads = [
        threading.Thread(
            target=run.thread_calls,
            args=(TASK_CALLS + k * PER_THREAD, go, portal),
            name=f"stress-caller-{k}",
            daemon=True,
        )
        for k in range(THREADS)
    ]

    async def main() -> None:
        home = threading.get_ident()
        with anyio.fail_after(BUDGET):
            async with anyio.create_task_group() as tg:
                for cid in range(TASK_CALLS):
                    tg.start_soon(run.task_call, cid, home)
                for thread in threads:
                    thread.start()
                go.set()  # threads and tasks start together
                while any(t.is_alive() for t in threads):
                    await anyio.sleep(0.01)

    started = time.monotonic()
    try:
        anyio.run(main, backend=backend, backend_options=options)
    except TimeoutError:
        pool = stress_bridge.pool()
        pytest.fail(
            f"deadlock or lost wakeup: only {run.done} of {CALLS} calls finished "
            f"within {BUDGET:.0f} s (pool busy={pool.busy} waiting={pool.waiting}, "
            f"{sum(t.is_alive() for t in threads)} caller threads still blocked)",
            pytrace=False,
        )
    finally:
        go.set()
        stress_bridge.close()  # a blocked caller gets BridgeClosed
        for thread in threads:
            thread.join(max(0.0, started + BUDGET + 10 - time.monotonic()))
    stuck = [t.name for t in threads if t.is_alive()]
    assert not stuck, f"caller threads still blocked after Bridge.close(): {stuck}"
    run.check()
