"""A deadline cancels a coroutine once, and its caller hears of it after its cleanup (#24).

On asyncio (and uvloop) a deadline the bridge imposes cancels the coroutine once,
like ``asyncio.timeout()``: its ``finally`` blocks may await to their end. On trio
it is a cancel scope, trio's own rules: cleanup that awaits does so in a shielded
scope. Either way the caller's timeout comes once that cleanup has ended, or, if it
overruns the bridge's ``shutdown_grace``, then, with a warning logged.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import TYPE_CHECKING, Any, Literal

import anyio
import pytest

import syncbridge
from syncbridge import Bridge, GatherTimeout, SyncBridgeTimeout

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Iterator

WAIT = 10.0  # bounds a wait for something that must happen (a hang fails)


async def awaiting_cleanup_step() -> None:
    """An await in cleanup, written as each backend's users write it."""
    if asyncio._get_running_loop() is not None:
        await asyncio.sleep(0)  # plain asyncio: no shield needed
    else:
        import trio

        with trio.CancelScope(shield=True):  # trio: cleanup that awaits is shielded
            await trio.sleep(0)


def cleanup_recorder(done: threading.Event) -> Callable[[], Coroutine[Any, Any, None]]:
    """A coroutine function that waits for ever and records a cleanup of two awaits."""

    async def query() -> None:
        try:
            await anyio.sleep_forever()
        finally:
            await awaiting_cleanup_step()
            await awaiting_cleanup_step()
            done.set()

    return query


@pytest.fixture(params=["asyncio", "uvloop", "trio"])
def portal_bridge(request: pytest.FixtureRequest) -> Iterator[Bridge]:
    """A bridge whose portal runs on asyncio, uvloop or trio."""
    if request.param == "uvloop":
        pytest.importorskip("uvloop")
        bridge = Bridge(use_uvloop=True, shutdown_grace=2.0)
    else:
        bridge = Bridge(backend=request.param, shutdown_grace=2.0)
    with bridge:
        yield bridge


# -- to_sync(timeout=...) ----------------------------------------------------------


def test_to_sync_deadline_lets_cleanup_await_before_the_timeout(
    portal_bridge: Bridge,
) -> None:
    cleaned = threading.Event()
    query = syncbridge.to_sync(
        cleanup_recorder(cleaned), timeout=0.05, bridge=portal_bridge
    )
    with pytest.raises(SyncBridgeTimeout, match=r"did not finish within 0\.05 s"):
        query()
    assert cleaned.is_set(), "the TimeoutError came before the cleanup ended"
    assert portal_bridge.stats().portal.timeouts == 1


def test_asyncio_coroutine_is_cancelled_once_and_may_await_in_cleanup(
    bridge: Bridge,
) -> None:
    """What asyncio code sees: one CancelledError; awaits after it are not cancelled."""
    seen: list[str] = []

    @syncbridge.to_sync(timeout=0.05, bridge=bridge)
    async def query() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise
        finally:
            for _ in range(3):
                await asyncio.sleep(0.001)
                seen.append("awaited")

    with pytest.raises(SyncBridgeTimeout):
        query()
    assert seen == ["cancelled", "awaited", "awaited", "awaited"]


def test_trio_coroutine_cleanup_awaits_unshielded_are_cancelled() -> None:
    """What trio code sees: trio's own rules, every unshielded await is cancelled."""
    import trio

    seen: list[str] = []

    async def query() -> None:
        try:
            await trio.sleep(30)
        finally:
            try:
                await trio.sleep(0)
                seen.append("unshielded await ran")
            except trio.Cancelled:
                seen.append("unshielded await cancelled")
                with trio.CancelScope(shield=True):
                    await trio.sleep(0)
                    seen.append("shielded await ran")
                raise

    with Bridge(backend="trio") as b, pytest.raises(SyncBridgeTimeout):
        syncbridge.to_sync(query, timeout=0.05, bridge=b)()
    assert seen == ["unshielded await cancelled", "shielded await ran"]


def test_a_value_returned_despite_the_deadline_stands(bridge: Bridge) -> None:
    @syncbridge.to_sync(timeout=0.05, bridge=bridge)
    async def stubborn() -> str:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            await asyncio.sleep(0)
            return "answered anyway"
        return "late"

    assert stubborn() == "answered anyway"


def test_a_value_that_wins_the_race_with_the_grace_is_counted_completed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The loop answers the call while the caller gives up on it (#24 review).

    The caller's give-up loses to the loop's answer, which is still being
    recorded (counted) when the give-up is tried: the caller gets the value,
    and the call counts as completed, not as a timeout.
    """
    from syncbridge._core import _calls, _portal

    caller = threading.current_thread()
    tried = threading.Event()
    finish = _calls.Call.finish
    counted = _portal.Portal.finished

    def finish_noting_the_give_up(self: Any, *args: Any, **kwargs: Any) -> bool:
        won = finish(self, *args, **kwargs)
        if threading.current_thread() is caller:
            tried.set()
        return won

    def finished_once_the_give_up_was_tried(self: Any, call: Any) -> None:
        if call.name.endswith("answers_at_the_deadline"):
            tried.wait(WAIT)  # the loop's answer is recorded after the give-up
        counted(self, call)

    monkeypatch.setattr(_calls.Call, "finish", finish_noting_the_give_up)
    monkeypatch.setattr(_portal.Portal, "finished", finished_once_the_give_up_was_tried)
    with Bridge(shutdown_grace=0.05) as bridge:

        @syncbridge.to_sync(timeout=0.05, bridge=bridge)
        async def answers_at_the_deadline() -> str:
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                return "answered"
            return "late"

        assert answers_at_the_deadline() == "answered"
        assert tried.is_set()
        portal = bridge.stats().portal
        assert (portal.completed, portal.timeouts) == (1, 0)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_cleanup_overrunning_the_grace_is_logged_and_the_caller_answered(
    backend: Literal["asyncio", "trio"], caplog: pytest.LogCaptureFixture
) -> None:
    """The wait after a deadline is bounded by shutdown_grace; then a warning."""
    caplog.set_level(logging.WARNING, logger="syncbridge")
    in_cleanup = threading.Event()
    release = threading.Event()
    finished = threading.Event()
    outcome: list[BaseException] = []
    answered = threading.Event()

    async def query() -> None:
        try:
            await anyio.sleep_forever()
        finally:
            in_cleanup.set()
            with anyio.CancelScope(shield=True):  # as trio needs; asyncio: no-op
                while not release.is_set():
                    await anyio.sleep(0.005)
            finished.set()

    def call(b: Bridge) -> None:
        try:
            syncbridge.to_sync(query, timeout=0.05, bridge=b)()
        except BaseException as exc:
            outcome.append(exc)
        answered.set()

    with Bridge(backend=backend, shutdown_grace=0.2) as b:
        thread = threading.Thread(target=call, args=(b,))
        thread.start()
        try:
            assert answered.wait(WAIT), "the caller waited past the grace"
            assert not finished.is_set()
        finally:
            release.set()
            thread.join(WAIT)
        assert finished.wait(WAIT), "the cleanup left running did not end"
        assert b.stats().portal.timeouts == 1
    assert in_cleanup.is_set()
    assert [type(e) for e in outcome] == [SyncBridgeTimeout]
    ours = [r for r in caplog.records if r.name.startswith("syncbridge")]
    assert [getattr(r, "syncbridge_event", None) for r in ours] == [
        "timeout-cleanup-overran"
    ]
    record = ours[0]
    assert getattr(record, "syncbridge_function", "").endswith("<locals>.query")
    assert "0.2 s past its 0.05 s deadline" in record.getMessage()


@pytest.mark.anyio
async def test_to_sync_in_a_worker_cancels_once_on_the_workers_loop(
    anyio_backend: str, bridge: Bridge
) -> None:
    """Rule 1: the deadline of a call sent back to the awaiting loop."""
    cleaned = threading.Event()
    query = syncbridge.to_sync(cleanup_recorder(cleaned), timeout=0.05, bridge=bridge)

    def blocking() -> bool:
        with pytest.raises(SyncBridgeTimeout):
            query()
        return cleaned.is_set()

    assert await bridge.run_blocking(blocking), "timeout before the cleanup ended"


# -- to_async(timeout=...) with a call back to the loop -----------------------------


@pytest.mark.anyio
async def test_to_async_deadline_lets_a_nested_calls_cleanup_await(
    anyio_backend: str, bridge: Bridge
) -> None:
    cleaned = threading.Event()
    inner = cleanup_recorder(cleaned)

    @syncbridge.to_async(timeout=0.05, abandon_on_cancel=False, bridge=bridge)
    def outer() -> None:
        bridge.sync_call_async(inner)

    with pytest.raises(SyncBridgeTimeout):
        await outer()
    assert cleaned.is_set(), "the timeout came before the nested cleanup ended"


# -- gather_with_timeout -------------------------------------------------------------


@pytest.mark.anyio
async def test_gather_deadline_lets_each_childs_cleanup_await(
    anyio_backend: str,
) -> None:
    cleaned = [threading.Event() for _ in range(3)]

    async def fast() -> str:
        return "fast"

    children = [cleanup_recorder(e)() for e in cleaned]
    with pytest.raises(GatherTimeout) as info:
        await syncbridge.gather_with_timeout(fast(), *children, timeout=0.05)
    assert [e.is_set() for e in cleaned] == [True, True, True]
    assert info.value.done == [0]


@pytest.mark.anyio
async def test_gather_first_failure_lets_the_others_cleanup_await(
    anyio_backend: str,
) -> None:
    cleaned = threading.Event()
    error = ValueError("first")

    async def fails() -> None:
        await anyio.sleep(0.01)
        raise error

    with pytest.raises(ValueError, match="first") as info:
        await syncbridge.gather_with_timeout(
            fails(),
            cleanup_recorder(cleaned)(),
            timeout=None,
        )
    assert info.value is error
    assert cleaned.is_set()


@pytest.mark.anyio
async def test_gather_cancelled_from_outside_lets_cleanup_await(
    anyio_backend: str,
) -> None:
    cleaned = threading.Event()
    with anyio.move_on_after(0.05) as scope:
        await syncbridge.gather_with_timeout(
            cleanup_recorder(cleaned)(),
            timeout=None,
        )
    assert scope.cancelled_caught
    assert cleaned.is_set()


def test_sync_gather_deadline_lets_cleanup_await() -> None:
    """On the default bridge's (asyncio) portal loop."""
    cleaned = threading.Event()
    with pytest.raises(GatherTimeout):
        syncbridge.sync_gather_with_timeout(
            cleanup_recorder(cleaned)(),
            timeout=0.05,
        )
    assert cleaned.is_set()
