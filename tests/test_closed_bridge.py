"""A closed bridge refuses every call with BridgeClosed naming the user's own call (#23).

Each public entry point is called on a closed bridge (the default one, swapped
in, or one of the test's own) and the message must start with the call as the
user wrote it, followed by the fix that fits that bridge. The calls that race a
close() (the pool or the portal closed after the facade's check) are named too.
Then close() itself: one deadline, computed once and kept by every part.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import inspect
import threading
import time
from typing import TYPE_CHECKING, Any

import anyio
import pytest

import syncbridge
from syncbridge import Bridge, BridgeClosed
from syncbridge._core import _bridge
from syncbridge._core._portal import stop_bound

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

CLOSED = " was called on a closed syncbridge.Bridge. "
DEFAULT_FIX = "The default bridge (syncbridge.get_bridge()) stays closed once closed"
OWN_FIX = "Create a new Bridge(), or use the default one"


def fetch() -> int:
    return 1


async def main() -> int:
    return 2


def ticks() -> Iterator[int]:
    yield 1


async def aticks() -> AsyncIterator[int]:
    yield 1


@contextlib.asynccontextmanager
async def session() -> AsyncIterator[int]:
    yield 1


@contextlib.contextmanager
def sync_session() -> Iterator[int]:
    yield 1


async def index() -> str:
    return "ok"  # pragma: no cover


@pytest.fixture
def closed_default(monkeypatch: pytest.MonkeyPatch) -> Bridge:
    """The default bridge, closed (the real one is put back afterwards)."""
    bridge = Bridge(name="default")
    bridge.close()
    monkeypatch.setattr(_bridge, "_default", bridge)
    return bridge


@pytest.fixture
def closed_own() -> Bridge:
    bridge = Bridge(name="own", pools={"db": 1})
    bridge.close()
    return bridge


def _refused(info: pytest.ExceptionInfo[BridgeClosed], call: str, fix: str) -> None:
    message = str(info.value)
    assert message.startswith(call + CLOSED), message
    assert fix in message, message


# -- async entry points, on asyncio and trio ---------------------------------


@pytest.mark.anyio
async def test_run_blocking_names_its_call(closed_default: Bridge) -> None:
    with pytest.raises(BridgeClosed) as info:
        await syncbridge.run_blocking(fetch)
    _refused(info, "run_blocking(fetch)", DEFAULT_FIX)


@pytest.mark.anyio
async def test_bridge_run_blocking_names_its_call(closed_own: Bridge) -> None:
    with pytest.raises(BridgeClosed) as info:
        await closed_own.run_blocking(fetch)
    _refused(info, "run_blocking(fetch)", OWN_FIX)


@pytest.mark.anyio
async def test_a_to_async_function_on_the_default_bridge_names_itself(
    closed_default: Bridge,
) -> None:
    with pytest.raises(BridgeClosed) as info:
        await syncbridge.to_async(fetch)()
    _refused(info, "fetch(), a to_async() function,", DEFAULT_FIX)


@pytest.mark.anyio
@pytest.mark.parametrize("where", ["pool", "thread_sensitive", "executor", "default"])
async def test_a_to_async_function_given_a_closed_bridge_names_itself(
    closed_own: Bridge, where: str
) -> None:
    executor = concurrent.futures.ThreadPoolExecutor(1)
    choices: dict[str, dict[str, Any]] = {
        "pool": {"pool": "db"},
        "thread_sensitive": {"thread_sensitive": True},
        "executor": {"executor": executor},
        "default": {},
    }
    options = choices[where]
    try:
        with pytest.raises(BridgeClosed) as info:
            await syncbridge.to_async(fetch, bridge=closed_own, **options)()
    finally:
        executor.shutdown()
    _refused(
        info, "fetch(), a to_async() function,", "Give to_async(bridge=...) an open"
    )


@pytest.mark.anyio
async def test_iterate_in_thread_names_its_source(closed_default: Bridge) -> None:
    with pytest.raises(BridgeClosed) as info:
        async for _ in syncbridge.iterate_in_thread(ticks()):
            pass  # pragma: no cover
    _refused(info, "iterate_in_thread(ticks())", DEFAULT_FIX)


@pytest.mark.anyio
async def test_to_async_cm_never_needs_the_bridge(closed_default: Bridge) -> None:
    # Its context manager runs on a thread of its own: nothing to refuse.
    async with syncbridge.to_async_cm(sync_session()) as value:
        assert value == 1


# -- sync entry points ---------------------------------------------------------


def test_sync_call_async_names_its_call(closed_default: Bridge) -> None:
    with pytest.raises(BridgeClosed) as info:
        syncbridge.sync_call_async(main)
    _refused(info, "sync_call_async(main)", DEFAULT_FIX)


def test_bridge_sync_call_async_names_its_call(closed_own: Bridge) -> None:
    with pytest.raises(BridgeClosed) as info:
        closed_own.sync_call_async(main)
    _refused(info, "sync_call_async(main)", OWN_FIX)


@pytest.mark.parametrize("timeout", [None, 5.0])
def test_a_to_sync_function_names_itself(
    closed_default: Bridge, timeout: float | None
) -> None:
    with pytest.raises(BridgeClosed) as info:
        syncbridge.to_sync(main, timeout=timeout)()
    _refused(info, "main(), a to_sync() function,", DEFAULT_FIX)


def test_a_to_sync_function_given_a_closed_bridge_names_itself(
    closed_own: Bridge,
) -> None:
    with pytest.raises(BridgeClosed) as info:
        syncbridge.to_sync(main, bridge=closed_own)()
    _refused(info, "main(), a to_sync() function,", "Give to_sync(bridge=...) an open")


def test_start_soon_names_its_call(closed_own: Bridge) -> None:
    with pytest.raises(BridgeClosed) as info:
        closed_own.start_soon(main)
    _refused(info, "Bridge.start_soon(main)", OWN_FIX)


def test_sync_gather_with_timeout_names_its_call(closed_default: Bridge) -> None:
    first, second, third = main(), main(), main()
    with pytest.raises(BridgeClosed) as info:
        syncbridge.sync_gather_with_timeout(first, second, third, timeout=5.0)
    _refused(info, "sync_gather_with_timeout(main(), main(), ...)", DEFAULT_FIX)
    assert inspect.getcoroutinestate(first) == inspect.CORO_CLOSED  # never awaited


def test_sync_iter_names_its_source(closed_default: Bridge) -> None:
    with pytest.raises(BridgeClosed) as info:
        next(syncbridge.sync_iter(aticks()))
    _refused(info, "sync_iter(aticks())", DEFAULT_FIX)


def test_to_sync_cm_names_its_context_manager(closed_default: Bridge) -> None:
    with pytest.raises(BridgeClosed) as info, syncbridge.to_sync_cm(session()):
        pass  # pragma: no cover
    _refused(info, "to_sync_cm(session())", DEFAULT_FIX)


def test_add_pool_names_its_call(closed_own: Bridge) -> None:
    with pytest.raises(BridgeClosed) as info:
        closed_own.add_pool("db", 2)
    _refused(info, "Bridge.add_pool('db')", OWN_FIX)


# -- the integrations ----------------------------------------------------------


def test_a_flask_async_view_names_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    flask = pytest.importorskip("flask")
    from syncbridge.flask import SyncBridge

    app = flask.Flask(__name__)
    app.config.update(TESTING=True)
    ext = SyncBridge(app)
    app.add_url_rule("/", view_func=index)
    closed = Bridge(name="default")
    closed.close()
    monkeypatch.setattr(_bridge, "_default", closed)
    with pytest.raises(BridgeClosed) as info:
        app.test_client().get("/")
    _refused(info, "index(), an async view that syncbridge.flask runs,", DEFAULT_FIX)
    with app.app_context(), pytest.raises(BridgeClosed) as info:
        ext.background(main)
    _refused(info, "SyncBridge.background(main)", DEFAULT_FIX)


def test_fastapi_install_on_a_closed_default_bridge_says_so(
    closed_default: Bridge,
) -> None:
    fastapi = pytest.importorskip("fastapi")
    import syncbridge.fastapi

    with pytest.raises(BridgeClosed) as info:
        syncbridge.fastapi.install(fastapi.FastAPI())
    _refused(info, "syncbridge.fastapi.install(app)", DEFAULT_FIX)
    assert "bridge=..." not in str(info.value)  # none was passed


# -- a call that races close(): found closed below the facade ----------------


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["threads", "executor"])
async def test_a_closed_pool_names_the_users_function(kind: str) -> None:
    executor = concurrent.futures.ThreadPoolExecutor(1)
    with Bridge() as b:
        if kind == "threads":
            b.add_pool("db", 1)
        else:
            b.add_pool("db", executor=executor)
        b.pool("db").close()  # what close() does between the check and the call
        with pytest.raises(BridgeClosed) as info:
            await syncbridge.to_async(fetch, pool="db", bridge=b)()
    executor.shutdown()
    message = str(info.value)
    assert message.startswith("fetch()" + CLOSED), message
    assert "run_blocking" not in message


def test_a_closed_portal_names_the_users_call() -> None:
    with Bridge() as b:
        b._portal.close(0.1)  # what close() does between the check and the call
        with pytest.raises(BridgeClosed) as info:
            b.sync_call_async(main)
        assert str(info.value).startswith("sync_call_async(main)" + CLOSED)
        with pytest.raises(BridgeClosed) as info:
            syncbridge.to_sync(main, bridge=b)()
        assert str(info.value).startswith("main(), a to_sync() function," + CLOSED)
        with pytest.raises(BridgeClosed) as info:
            b.start_soon(main)
        assert str(info.value).startswith("Bridge.start_soon(main)" + CLOSED)


@pytest.mark.anyio
async def test_a_call_queued_at_close_is_told_it_never_ran() -> None:
    release = threading.Event()
    running = threading.Event()

    def hold() -> None:
        running.set()
        release.wait(30)

    b = Bridge(max_workers=1, shutdown_grace=0.1)
    outcomes: list[BaseException | None] = []

    async def call(func: Any) -> None:
        try:
            await b.run_blocking(func)
        except BridgeClosed as exc:
            outcomes.append(exc)
        else:
            outcomes.append(None)

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(call, hold)
            await _wait_for(running)
            tg.start_soon(call, fetch)
            await _until(lambda: b.stats().pools["default"].waiting == 1)
            closing = threading.Thread(target=b.close)
            closing.start()
            await _until(lambda: len(outcomes) == 1)
            release.set()
    finally:
        release.set()
    closing.join(10)
    queued = outcomes[0]
    assert isinstance(queued, BridgeClosed)
    assert str(queued) == (
        "the bridge was closed while fetch() was still waiting for a worker; it "
        "never ran"
    )


async def _wait_for(event: threading.Event) -> None:
    await anyio.to_thread.run_sync(event.wait, 10)
    assert event.is_set()


async def _until(condition: Any) -> None:
    with anyio.fail_after(10):
        while not condition():
            await anyio.sleep(0.005)  # polling a state this test cannot await


# -- close() keeps one deadline ----------------------------------------------


def test_close_hands_its_one_deadline_to_the_portal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    b = Bridge(shutdown_grace=0.2)
    b.sync_call_async(main)  # the portal runs
    portal = b._portal
    real_close = portal.close
    seen: list[float | None] = []

    def close(grace: float, deadline: float | None = None) -> None:
        seen.append(deadline)
        real_close(grace, deadline)

    monkeypatch.setattr(portal, "close", close)
    before = time.monotonic()
    b.close()
    after = time.monotonic()
    (deadline,) = seen
    assert deadline is not None, "the portal computed a deadline of its own"
    assert before + stop_bound(0.2) <= deadline <= after + stop_bound(0.2)
    assert deadline == b._close_deadline


def test_close_with_busy_pools_and_portal_keeps_one_bound() -> None:
    """Each of 5 pools and the portal holds a call that ignores the close: the
    close ends once, by its one deadline, not one bound per part after another."""
    grace = 0.3
    names = ["a", "b", "c", "d"]
    b = Bridge(shutdown_grace=grace, pools=dict.fromkeys(names, 1))
    release = threading.Event()
    started = threading.Semaphore(0)

    def stubborn() -> None:
        started.release()
        release.wait(30)

    async def stubborn_async() -> None:
        started.release()
        while not release.is_set():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(30)

    async def callers() -> None:
        async with asyncio.TaskGroup() as tg:
            for pool in [None, *names]:
                tg.create_task(syncbridge.to_async(stubborn, pool=pool, bridge=b)())

    answered = threading.Event()

    def run_callers() -> None:
        with contextlib.suppress(BaseException):
            asyncio.run(callers())
        answered.set()

    thread = threading.Thread(target=run_callers, daemon=True)
    thread.start()
    future = b.start_soon(stubborn_async)
    for _ in range(len(names) + 2):
        assert started.acquire(timeout=10)
    bound = stop_bound(grace)
    try:
        start = time.monotonic()
        b.close()
        took = time.monotonic() - start
    finally:
        release.set()
    assert grace <= took < bound + 1.5, (took, bound)  # the parts' sum: 6 x bound
    assert future.cancelled()
    assert answered.wait(10)
    thread.join(10)


def test_a_second_close_waits_for_the_first_ones_deadline() -> None:
    release = threading.Event()
    running = threading.Event()

    def hold() -> None:
        running.set()
        release.wait(30)

    b = Bridge(max_workers=1, shutdown_grace=0.3)
    caller = threading.Thread(
        target=lambda: asyncio.run(_quietly(b.run_blocking(hold))), daemon=True
    )
    caller.start()
    assert running.wait(10)
    first = threading.Thread(target=b.close)
    first.start()
    try:
        while not b.closed:  # the first close has its deadline once this is set
            time.sleep(0.001)
        b.close()  # the second
        returned = time.monotonic()
        assert b._closed_event.is_set(), "the second close() returned first"
        assert returned < b._close_deadline + 1.0  # by the first one's deadline
    finally:
        release.set()
        first.join(10)
        caller.join(10)


async def _quietly(aw: Any) -> None:
    with contextlib.suppress(BaseException):
        await aw
