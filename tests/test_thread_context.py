"""Every thread syncbridge starts begins in a context of its own (issue 22).

Since Python 3.14 a new thread may inherit the context of the code that starts
it (``-X thread_inherit_context=1``, the default on free-threaded builds). A
pooled thread must not carry the values of the caller that happened to start it
into later calls, nor keep them alive. Each test here runs caller A in a
context where ``VAR`` holds a marker, has A cause a thread to start, then checks
that the marker is not visible to caller B on that thread, and that nothing
keeps it alive once A is done. :func:`test_with_threads_inheriting_context`
runs this module again with threads inheriting contexts.
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
import os
import sys
import threading
import weakref
from typing import TYPE_CHECKING, Literal

import pytest
import trio

import _process_jobs as jobs
from _scripts import run_script
from syncbridge import Bridge, ProcessExecutor, iterate_in_thread

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator

VAR: contextvars.ContextVar[Marker] = contextvars.ContextVar("VAR")
RESULT_TIMEOUT = 30  # a bound against hangs, never a measured time
backends = pytest.mark.parametrize("backend", ["asyncio", "trio"])


class Marker:
    """What caller A sets; only its context refers to it."""


def as_caller_a(action: Callable[[], object]) -> weakref.ref[Marker]:
    """Run *action* as caller A: in a new context where VAR holds a new marker."""
    marker = Marker()
    ref = weakref.ref(marker)

    def run() -> None:
        VAR.set(marker)
        action()

    contextvars.Context().run(run)
    return ref


def as_caller_b(action: Callable[[], object]) -> object:
    """Run *action* as caller B: in a new, empty context."""
    return contextvars.Context().run(action)


def assert_freed(ref: weakref.ref[Marker], thread: threading.Thread) -> None:
    """A's marker is gone, while *thread* (which A caused to start) still runs."""
    gc.collect()
    assert thread.is_alive()
    assert ref() is None, f"{thread.name} keeps caller A's context alive"


def _thread(name: str) -> threading.Thread:
    (thread,) = [t for t in threading.enumerate() if t.name == name]
    return thread


@pytest.fixture
def make_bridge() -> Iterator[Callable[[str], Bridge]]:
    made: list[Bridge] = []

    def make(backend: str) -> Bridge:
        assert backend in ("asyncio", "trio")
        chosen: Literal["asyncio", "trio"] = "trio" if backend == "trio" else "asyncio"
        bridge = Bridge(max_workers=1, backend=chosen, shutdown_grace=2.0)
        made.append(bridge)
        return bridge

    yield make
    for bridge in made:
        bridge.close()


def _new_thread(before: set[threading.Thread], prefix: str) -> threading.Thread:
    (thread,) = [
        t for t in set(threading.enumerate()) - before if t.name.startswith(prefix)
    ]
    return thread


async def _noop() -> None:
    pass


@backends
def test_the_portal_loop_runs_nothing_in_the_context_of_the_caller_that_started_it(
    backend: str, make_bridge: Callable[[str], Bridge]
) -> None:
    bridge = make_bridge(backend)
    ref = as_caller_a(lambda: bridge.sync_call_async(_noop))
    thread = _thread(f"syncbridge-portal-{bridge.name}")
    assert_freed(ref, thread)

    # Caller B leaves an async generator open on the loop: the loop closes it
    # as it ends, in a task of its own; on trio, B also posts a callback.
    seen: list[object] = []
    left_open = []

    async def counting() -> AsyncIterator[int]:
        try:
            yield 1
            yield 2
        finally:
            seen.append(("finalizer", VAR.get(None)))

    async def call() -> int:
        seen.append(("call", VAR.get(None)))
        if backend == "trio":
            posted = trio.Event()

            def callback() -> None:
                seen.append(("callback", VAR.get(None)))
                posted.set()

            trio.lowlevel.current_trio_token().run_sync_soon(callback)
            await posted.wait()
        generator = counting()
        left_open.append(generator)
        return await generator.__anext__()

    assert as_caller_b(lambda: bridge.sync_call_async(call)) == 1
    bridge.close()
    del left_open[:]
    assert not thread.is_alive()
    expected = [("call", None), ("finalizer", None)]
    if backend == "trio":
        expected.insert(1, ("callback", None))
    assert seen == expected


@backends
def test_a_worker_thread_keeps_nothing_of_the_caller_that_started_it(
    backend: str, make_bridge: Callable[[str], Bridge]
) -> None:
    bridge = make_bridge(backend)
    as_caller_b(lambda: bridge.sync_call_async(_noop))  # the portal: B's

    def read() -> tuple[int, object]:
        return threading.get_ident(), VAR.get(None)

    async def on_a_worker() -> tuple[int, object]:
        return await bridge.run_blocking(read)

    answers: list[tuple[int, object]] = []
    ref = as_caller_a(lambda: answers.append(bridge.sync_call_async(on_a_worker)))
    ident = answers.pop()[0]  # (A read its own marker there: not kept)
    (worker,) = [t for t in threading.enumerate() if t.ident == ident]
    # One worker: B's call runs on the thread A's call started, which has
    # let go of A's call by then.
    assert as_caller_b(lambda: bridge.sync_call_async(on_a_worker)) == (ident, None)
    assert_freed(ref, worker)


@backends
def test_a_watch_thread_keeps_nothing_of_the_caller_that_started_it(
    backend: str, make_bridge: Callable[[str], Bridge]
) -> None:
    bridge = make_bridge(backend)
    as_caller_b(lambda: bridge.sync_call_async(_noop))  # the portal: B's
    before = set(threading.enumerate())
    ref = as_caller_a(lambda: bridge.watch_portal(3600))
    bridge.sync_call_async(_noop)  # the watch started before this call ran
    assert_freed(ref, _new_thread(before, "syncbridge-watch-"))


def test_a_process_slot_thread_keeps_nothing_of_the_caller_that_started_it() -> None:
    before = set(threading.enumerate())
    with ProcessExecutor(1) as executor:
        ref = as_caller_a(
            lambda: executor.submit(jobs.add, 1, 2).result(RESULT_TIMEOUT)
        )
        assert_freed(ref, _new_thread(before, "syncbridge-process-slot-"))


def test_an_iterator_dropped_unfinished_is_closed_outside_the_droppers_context() -> (
    None
):
    seen: list[object] = []
    closed = threading.Event()

    def source() -> Iterator[int]:
        try:
            yield 1
            yield 2
        finally:
            seen.append(VAR.get(None))
            closed.set()

    held: list[object] = []

    async def start() -> None:
        iterator = iterate_in_thread(source())
        assert await iterator.__anext__() == 1
        held.append(iterator)

    as_caller_b(lambda: asyncio.run(start()))
    as_caller_a(held.clear)  # dropped there: closed on a thread started there
    assert closed.wait(RESULT_TIMEOUT)
    assert seen == [None]


@pytest.mark.skipif(
    sys.version_info < (3, 14),
    reason="threads inherit a context only since Python 3.14",
)
@pytest.mark.timeout(120)
def test_with_threads_inheriting_context() -> None:
    """This module passes with ``-X thread_inherit_context=1``, in a fresh interpreter."""
    if getattr(sys.flags, "thread_inherit_context", 0):
        pytest.skip("covered: this run has threads inheriting contexts already")
    here = os.path.abspath(__file__)
    result = run_script(
        f"""
        import sys, pytest
        assert sys.flags.thread_inherit_context
        sys.exit(pytest.main(
            [{here!r}, "-q", "-p", "no:randomly", "-k", "not inheriting_context"]
        ))
        """,
        flags=["-X", "thread_inherit_context=1"],
        timeout=100,
    )
    assert result.returncode == 0, result.stdout + result.stderr
