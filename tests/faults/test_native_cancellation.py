"""Issue 11, point 1: native cancellation cannot cut cleanup short.

Wherever the docs say cleanup finishes before the await returns, it does: under
asyncio's own cancellation (``task.cancel()``, ``asyncio.timeout()``,
``asyncio.wait_for()``, a failing ``TaskGroup`` sibling), on uvloop, and under
anyio cancel scopes on asyncio and trio.
"""

from __future__ import annotations

import asyncio
import builtins
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

import anyio
import pytest

import syncbridge
from syncbridge import Bridge

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Iterator
    from typing import Self

pytestmark = pytest.mark.faults

SLOW = 0.5
"""How long each blocking cleanup takes (the work the cancellation must not cut)."""

BOUND = 10.0
"""Upper bound on any one scenario, so a regression fails instead of hanging."""


def _poster() -> Callable[[Callable[[], object]], object]:
    """Return a thread-safe way to run a callback on the current loop, soon."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        import trio

        token = trio.lowlevel.current_trio_token()
        return lambda fn: token.run_sync_soon(fn)
    return lambda fn: loop.call_soon_threadsafe(fn)


class Scenario:
    """A bridged operation with a slow cleanup that a cancellation lands in.

    ``body(fire)`` calls ``fire()`` (from any thread) at the moment the
    cancellation should land; the cleanup calls ``cleanup_finished()`` when it
    is really over. ``run`` records when the cancellation surfaced in the task.
    """

    def __init__(self) -> None:
        self.done = threading.Event()
        self.finished_at: float | None = None
        self.surfaced_at: float | None = None
        self.surfaced: BaseException | None = None

    def cleanup_finished(self) -> None:
        self.finished_at = time.monotonic()
        self.done.set()

    async def body(self, fire: Callable[[], None]) -> None:
        raise NotImplementedError

    def on_surface(self) -> None:
        """Record extra state at the moment the cancellation surfaces."""

    async def run(self, fire: Callable[[], None]) -> None:
        try:
            await self.body(fire)
            # Under anyio a shielded cleanup defers the cancellation to the next
            # checkpoint; asyncio's own cancellation must already have surfaced.
            await anyio.lowlevel.checkpoint()
        except BaseException as exc:
            self.surfaced_at = time.monotonic()
            self.surfaced = exc
            self.on_surface()
            raise

    def check(self) -> None:
        """Assert the cleanup had finished before the cancellation surfaced."""
        assert self.surfaced_at is not None, "the cancellation never surfaced"
        assert self.finished_at is not None, (
            "the cancellation surfaced in the awaiting task while the cleanup was "
            "still running"
        )
        assert self.finished_at <= self.surfaced_at, (
            f"the cleanup finished {self.finished_at - self.surfaced_at:.3f} s "
            "after the cancellation surfaced"
        )

    def settle(self) -> None:
        """Let background cleanup end (bounded) so nothing leaks into other tests."""
        self.done.wait(BOUND)


class SlowCM:
    """A blocking context manager: ``__enter__``/``__exit__`` block (time.sleep)."""

    def __init__(
        self,
        enter_for: float,
        exit_for: float,
        on_enter: Callable[[], None] | None = None,
        on_exit: Callable[[], None] | None = None,
        on_exited: Callable[[], None] | None = None,
    ) -> None:
        self.enter_for = enter_for
        self.exit_for = exit_for
        self.on_enter = on_enter
        self.on_exit = on_exit
        self.on_exited = on_exited
        self.entered = False
        self.exited = False

    def __enter__(self) -> Self:
        if self.on_enter is not None:
            self.on_enter()
        time.sleep(self.enter_for)
        self.entered = True
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.on_exit is not None:
            self.on_exit()
        time.sleep(self.exit_for)
        self.exited = True
        if self.on_exited is not None:
            self.on_exited()


class CmExit(Scenario):
    """Cancelled while ``to_async_cm``'s ``__aexit__`` waits for ``__exit__``."""

    async def body(self, fire: Callable[[], None]) -> None:
        cm = SlowCM(0.0, SLOW, on_exit=fire, on_exited=self.cleanup_finished)
        async with syncbridge.to_async_cm(cm):
            pass


class CmEnter(Scenario):
    """Cancelled while ``to_async_cm``'s ``__aenter__`` waits for ``__enter__``."""

    def __init__(self) -> None:
        super().__init__()
        self.cm: SlowCM | None = None
        self.body_ran = False

    async def body(self, fire: Callable[[], None]) -> None:
        self.cm = SlowCM(SLOW, 0.0, on_enter=fire, on_exited=self.cleanup_finished)
        async with syncbridge.to_async_cm(self.cm):
            self.body_ran = True

    def check(self) -> None:
        super().check()
        assert self.cm is not None
        assert self.cm.entered, "__enter__ did not finish before the cancellation"
        assert self.cm.exited, "the entered cm was not exited before the cancellation"
        assert not self.body_ran


class IteratorClose(Scenario):
    """Cancelled while ``iterate_in_thread(...).aclose()`` runs the ``finally``."""

    async def body(self, fire: Callable[[], None]) -> None:
        def gen() -> Iterator[int]:
            try:
                yield 1
                yield 2
            finally:
                fire()
                time.sleep(SLOW)
                self.cleanup_finished()

        it = syncbridge.iterate_in_thread(gen())
        assert await it.__anext__() == 1
        await it.aclose()


class BridgeAexit(Scenario):
    """Cancelled in ``async with Bridge()``'s ``__aexit__`` while close() joins."""

    def __init__(self) -> None:
        super().__init__()
        self.bridge = Bridge(max_workers=2, shutdown_grace=2.0)
        self.closed_then = False
        self.alive_then: list[threading.Thread] = []
        self.caller: threading.Thread | None = None
        self.caller_outcome: list[object] = []

    def _threads(self) -> list[threading.Thread]:
        name = self.bridge.name
        return [
            t
            for t in threading.enumerate()
            if t.name.startswith((f"syncbridge-{name}-", f"syncbridge-portal-{name}"))
            and t.is_alive()
        ]

    async def body(self, fire: Callable[[], None]) -> None:
        b = self.bridge
        running = threading.Event()

        def slow() -> str:
            running.set()
            time.sleep(SLOW)
            self.cleanup_finished()
            return "slow done"

        def call() -> None:
            try:
                self.caller_outcome.append(b.sync_call_async(b.run_blocking, slow))
            except BaseException as exc:
                self.caller_outcome.append(exc)

        self.caller = threading.Thread(target=call)
        async with b:
            self.caller.start()
            assert await anyio.to_thread.run_sync(running.wait, BOUND)
            fire()  # lands once the task waits in __aexit__ (close() runs)

    def on_surface(self) -> None:
        self.closed_then = self.bridge.closed
        self.alive_then = self._threads()

    def check(self) -> None:
        super().check()
        assert self.closed_then, "__aexit__ returned before close() had run"
        assert self.alive_then == [], (
            f"__aexit__ returned while the bridge's threads still ran: "
            f"{self.alive_then}"
        )

    def settle(self) -> None:
        super().settle()
        self.bridge.close()
        if self.caller is not None and self.caller.ident is not None:
            self.caller.join(BOUND)


class GatherShielded(Scenario):
    """Cancelled while gather waits for a child's shielded ``finally`` (a sleep)."""

    async def body(self, fire: Callable[[], None]) -> None:
        async def child() -> None:
            try:
                fire()
                await anyio.sleep(3600)
            finally:
                with anyio.CancelScope(shield=True):
                    await anyio.sleep(SLOW)
                self.cleanup_finished()

        await syncbridge.gather_with_timeout(child(), timeout=None)


class GatherBlockingCleanup(Scenario):
    """Cancelled while gather waits for a child's ``finally`` in run_blocking."""

    def __init__(self) -> None:
        super().__init__()
        self.bridge = Bridge(max_workers=2, shutdown_grace=2.0)

    async def body(self, fire: Callable[[], None]) -> None:
        def cleanup() -> None:
            time.sleep(SLOW)
            self.cleanup_finished()

        async def child() -> None:
            try:
                fire()
                await anyio.sleep(3600)
            finally:
                with anyio.CancelScope(shield=True):
                    await self.bridge.run_blocking(cleanup)

        await syncbridge.gather_with_timeout(child(), timeout=None)

    def settle(self) -> None:
        super().settle()
        self.bridge.close()


SCENARIOS: dict[str, type[Scenario]] = {
    "to_async_cm-aexit": CmExit,
    "to_async_cm-aenter": CmEnter,
    "iterate_in_thread-aclose": IteratorClose,
    "Bridge-aexit": BridgeAexit,
    "gather-shielded-finally": GatherShielded,
    "gather-run_blocking-finally": GatherBlockingCleanup,
}

NATIVE_KINDS = [
    pytest.param("task.cancel", id="task.cancel"),
    pytest.param("task.cancel-twice", id="task.cancel-twice"),
    pytest.param(
        "asyncio.timeout",
        id="asyncio.timeout",
        marks=pytest.mark.skipif(
            sys.version_info < (3, 11), reason="asyncio.timeout() is 3.11+"
        ),
    ),
    pytest.param("wait_for", id="wait_for"),
    pytest.param(
        "TaskGroup",
        id="TaskGroup",
        marks=pytest.mark.skipif(
            sys.version_info < (3, 11), reason="asyncio.TaskGroup is 3.11+"
        ),
    ),
]


async def _drive_native(kind: str, scenario: Scenario) -> None:
    """Run *scenario* in a task and cancel it natively the way *kind* says."""
    loop = asyncio.get_running_loop()
    go = asyncio.Event()
    trigger: list[Callable[[], object]] = [go.set]

    def fire() -> None:
        loop.call_soon_threadsafe(lambda: trigger[0]())

    async def cancelled_by_kind() -> None:
        if kind == "task.cancel":
            task = asyncio.ensure_future(scenario.run(fire))
            trigger[0] = task.cancel
            await asyncio.wait({task}, timeout=BOUND)
            assert task.done(), "the cancelled task did not finish"
            assert task.cancelled(), f"expected a cancelled task, got {task!r}"
        elif kind == "task.cancel-twice":
            # As servers do: cancel, and cancel again while the task cleans up.
            task = asyncio.ensure_future(scenario.run(fire))

            def cancel_again() -> None:
                loop.call_soon(task.cancel)  # the task is in its cleanup by then

            def cancel_twice() -> None:
                task.cancel()
                loop.call_soon(cancel_again)

            trigger[0] = cancel_twice
            await asyncio.wait({task}, timeout=BOUND)
            assert task.done(), "the cancelled task did not finish"
            assert task.cancelled(), f"expected a cancelled task, got {task!r}"
        elif kind == "wait_for":
            # asyncio.TimeoutError: on 3.10 it is not yet the builtin TimeoutError.
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(scenario.run(fire), timeout=0.2)
        elif sys.version_info >= (3, 11) and kind == "asyncio.timeout":

            async def under_timeout() -> None:
                async with asyncio.timeout(None) as timeout:
                    trigger[0] = lambda: timeout.reschedule(loop.time())
                    await scenario.run(fire)

            with pytest.raises(TimeoutError):
                await under_timeout()
        elif sys.version_info >= (3, 11) and kind == "TaskGroup":

            async def failing_sibling() -> None:
                await go.wait()
                raise ValueError("sibling failed")

            async def in_task_group() -> None:
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(scenario.run(fire))
                    tg.create_task(failing_sibling())

            with pytest.raises(builtins.ExceptionGroup) as info:
                await in_task_group()
            _, rest = info.value.split(ValueError)
            assert rest is None, f"unexpected errors besides the sibling's: {rest!r}"
        else:  # pragma: no cover
            raise AssertionError(kind)

    outer = asyncio.ensure_future(cancelled_by_kind())
    await asyncio.wait({outer}, timeout=BOUND)
    assert outer.done(), f"the scenario did not end within {BOUND} s"
    outer.result()
    expected = asyncio.CancelledError
    assert isinstance(scenario.surfaced, expected), (
        f"expected CancelledError in the task, got {scenario.surfaced!r}"
    )


def _run_asyncio(main: Coroutine[Any, Any, None], use_uvloop: bool = False) -> None:
    if not use_uvloop:
        asyncio.run(main)
        return
    uvloop = pytest.importorskip("uvloop")
    uvloop.run(main)


@pytest.mark.parametrize("kind", NATIVE_KINDS)
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_native_cancellation_waits_for_cleanup(name: str, kind: str) -> None:
    """A native asyncio cancellation surfaces only after the cleanup finished."""
    scenario = SCENARIOS[name]()
    try:
        _run_asyncio(_drive_native(kind, scenario))
        scenario.check()
    finally:
        scenario.settle()


@pytest.mark.parametrize("name", ["to_async_cm-aexit", "iterate_in_thread-aclose"])
def test_native_cancellation_on_uvloop_waits_for_cleanup(name: str) -> None:
    """On uvloop too, task.cancel() surfaces only after the cleanup finished."""
    pytest.importorskip("uvloop")
    scenario = SCENARIOS[name]()
    try:
        _run_asyncio(_drive_native("task.cancel", scenario), use_uvloop=True)
        scenario.check()
    finally:
        scenario.settle()


@pytest.mark.anyio
@pytest.mark.parametrize("name", list(SCENARIOS))
async def test_anyio_cancellation_waits_for_cleanup(name: str) -> None:
    """An anyio cancel scope (move_on_after) surfaces only after the cleanup."""
    scenario = SCENARIOS[name]()
    post = _poster()
    try:
        with anyio.fail_after(BOUND):
            with anyio.move_on_after(3600) as scope:

                def fire() -> None:
                    post(scope.cancel)

                await scenario.run(fire)
            assert scope.cancelled_caught
        assert isinstance(scenario.surfaced, anyio.get_cancelled_exc_class())
        scenario.check()
    finally:
        await anyio.to_thread.run_sync(scenario.settle)
