"""The portal's selector: timed waits not rounded to milliseconds, events intact (#15)."""

from __future__ import annotations

import asyncio
import select
import selectors
import socket
import sys
import threading
import types
import warnings
from typing import TYPE_CHECKING, Any

import pytest

from syncbridge._core import _selector
from syncbridge._core._selector import new_event_loop

if TYPE_CHECKING:
    from collections.abc import Iterator

linux_only = pytest.mark.skipif(sys.platform != "linux", reason="epoll is Linux's")


class _SelectSpy:
    """Records the timeouts ``select.select()`` is asked for, then calls it."""

    def __init__(self) -> None:
        self.timeouts: list[float | None] = []
        self._real = select.select

    def __call__(self, r: Any, w: Any, x: Any, timeout: float | None = None) -> Any:
        self.timeouts.append(timeout)
        return self._real(r, w, x, timeout)


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> _SelectSpy:
    spy = _SelectSpy()
    monkeypatch.setattr(select, "select", spy)
    return spy


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    yield a, b
    a.close()
    b.close()


@pytest.fixture
def precise() -> Iterator[selectors.EpollSelector]:
    if sys.platform != "linux":
        pytest.skip("epoll is Linux's")
    sel = _selector.PreciseEpollSelector()
    yield sel
    sel.close()


def _ready(events: list[tuple[selectors.SelectorKey, int]]) -> list[tuple[Any, int]]:
    return [(key.fileobj, mask) for key, mask in events]


@linux_only
def test_a_timed_wait_asks_select_for_the_exact_timeout(
    precise: selectors.EpollSelector,
    pair: tuple[socket.socket, socket.socket],
    spy: _SelectSpy,
) -> None:
    """EpollSelector would wait 1 ms for 0.3 ms; this one asks for 0.0003 s."""
    precise.register(pair[0], selectors.EVENT_READ)
    assert precise.select(0.0003) == []
    assert spy.timeouts == [0.0003]


@linux_only
def test_a_longer_wait_ends_in_select_with_what_is_left(
    precise: selectors.EpollSelector,
    pair: tuple[socket.socket, socket.socket],
    spy: _SelectSpy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Whole milliseconds in epoll, then the rest (under 2 ms) in select().

    On a clock that says the epoll part took the 4 ms it was given: a loaded
    machine may return from it past the deadline, leaving nothing to select().
    """
    clock = iter([100.0, 100.004])
    monkeypatch.setattr(
        _selector, "time", types.SimpleNamespace(monotonic=lambda: next(clock))
    )
    precise.register(pair[0], selectors.EVENT_READ)
    assert precise.select(0.0055) == []
    assert spy.timeouts == [pytest.approx(0.0015)]


@linux_only
@pytest.mark.parametrize(
    ("timeout", "selects"),
    [
        pytest.param(5.0, [], id="ready-in-the-epoll-part-take-no-select"),
        pytest.param(0.0015, [0.0015], id="ready-in-the-select-part-are-collected"),
    ],
)
def test_events_that_are_ready_are_all_returned(
    precise: selectors.EpollSelector,
    pair: tuple[socket.socket, socket.socket],
    spy: _SelectSpy,
    timeout: float,
    selects: list[float],
) -> None:
    """Ready events come back from either part: a wait of 2 ms or more polls epoll
    first (no select needed); a shorter one goes straight to select, then epoll.
    """
    a, b = pair
    precise.register(a, selectors.EVENT_READ, data="reader")
    precise.register(b, selectors.EVENT_WRITE, data="writer")
    b.send(b"x")
    ready = _ready(precise.select(timeout))
    assert sorted(ready, key=lambda fm: fm[1]) == [
        (a, selectors.EVENT_READ),
        (b, selectors.EVENT_WRITE),
    ]
    assert spy.timeouts == selects


@linux_only
def test_a_timed_wait_wakes_for_an_event_that_comes_later(
    precise: selectors.EpollSelector, pair: tuple[socket.socket, socket.socket]
) -> None:
    a, b = pair
    key = precise.register(a, selectors.EVENT_READ)
    started = threading.Event()

    def send_later() -> None:
        started.wait()
        b.send(b"x")

    sender = threading.Thread(target=send_later)
    sender.start()
    started.set()
    events = precise.select(60.0)  # a lost wake-up would hang to the limit
    sender.join()
    assert events == [(key, selectors.EVENT_READ)]


@linux_only
@pytest.mark.parametrize("timeout", [0, -1.0, None])
def test_zero_negative_and_no_timeout_are_one_plain_epoll_call(
    precise: selectors.EpollSelector,
    pair: tuple[socket.socket, socket.socket],
    spy: _SelectSpy,
    timeout: float | None,
) -> None:
    a, b = pair
    precise.register(a, selectors.EVENT_READ)
    b.send(b"x")
    assert _ready(precise.select(timeout)) == [(a, selectors.EVENT_READ)]
    assert spy.timeouts == []


@linux_only
def test_a_zero_timeout_with_nothing_ready_returns_nothing(
    precise: selectors.EpollSelector, pair: tuple[socket.socket, socket.socket]
) -> None:
    precise.register(pair[0], selectors.EVENT_READ)
    assert precise.select(0) == []


@linux_only
def test_an_epoll_fd_too_high_for_select_falls_back_to_epoll(
    precise: selectors.EpollSelector,
    pair: tuple[socket.socket, socket.socket],
    spy: _SelectSpy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_selector, "_FD_SETSIZE", precise.fileno())
    a, b = pair
    precise.register(a, selectors.EVENT_READ)
    assert precise.select(0.0003) == []
    assert precise.select(0.0035) == []
    b.send(b"x")
    assert _ready(precise.select(0.0015)) == [(a, selectors.EVENT_READ)]
    assert spy.timeouts == []


@linux_only
def test_the_new_loop_runs_on_the_precise_selector() -> None:
    loop = new_event_loop()
    try:
        assert isinstance(loop, asyncio.SelectorEventLoop)
        assert type(loop._selector) is _selector.PreciseEpollSelector  # type: ignore[attr-defined]
    finally:
        loop.close()


@linux_only
def test_the_loop_asks_the_selector_for_its_timer_unrounded(spy: _SelectSpy) -> None:
    """A 50 ms sleep ends in select(), with what epoll's whole ms leave of it.

    Ten sleeps: on a loaded machine one epoll wait may end past the deadline,
    leaving nothing for select(); all ten cannot.
    """

    async def sleeps() -> None:
        for _ in range(10):
            await asyncio.sleep(0.05)

    loop = new_event_loop()
    try:
        loop.run_until_complete(sleeps())
    finally:
        loop.close()
    assert spy.timeouts
    assert all(t is not None and 0 < t <= 0.05 for t in spy.timeouts)


def test_the_new_loop_runs_timers_and_sockets(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    a, b = pair

    async def main() -> bytes:
        loop = asyncio.get_running_loop()
        loop.call_later(0.001, b.send, b"ping")
        await asyncio.sleep(0.0005)
        return await asyncio.wait_for(loop.sock_recv(a, 4), 60)

    loop = new_event_loop()
    try:
        assert loop.run_until_complete(main()) == b"ping"
    finally:
        loop.close()


@pytest.mark.skipif(
    sys.version_info >= (3, 14),
    reason="policies are deprecated from 3.14 and not consulted there (next test)",
)
def test_a_policy_set_by_the_application_picks_the_loop() -> None:
    made: list[asyncio.AbstractEventLoop] = []

    class Policy(asyncio.DefaultEventLoopPolicy):
        def new_event_loop(self) -> asyncio.AbstractEventLoop:
            loop = super().new_event_loop()
            made.append(loop)
            return loop

    old = asyncio.get_event_loop_policy()
    asyncio.set_event_loop_policy(Policy())
    try:
        loop = new_event_loop()
    finally:
        asyncio.set_event_loop_policy(old)
    try:
        assert made == [loop]
    finally:
        loop.close()


@pytest.mark.skipif(
    sys.version_info < (3, 14), reason="policies are deprecated from Python 3.14"
)
def test_from_python_3_14_no_policy_is_consulted() -> None:
    """The deprecated policy an application may still set does not pick the loop,
    and making the loop touches no deprecated API.
    """
    made: list[asyncio.AbstractEventLoop] = []
    with warnings.catch_warnings():  # setting one up is deprecated: the test's doing
        warnings.simplefilter("ignore", DeprecationWarning)

        class Policy(asyncio.DefaultEventLoopPolicy):
            def new_event_loop(self) -> asyncio.AbstractEventLoop:
                loop = super().new_event_loop()
                made.append(loop)
                return loop

        old = asyncio.get_event_loop_policy()
        asyncio.set_event_loop_policy(Policy())
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            loop = new_event_loop()
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            asyncio.set_event_loop_policy(old)
    try:
        assert made == []
        if sys.platform == "linux":
            selector = loop._selector  # type: ignore[attr-defined]
            assert type(selector) is _selector.PreciseEpollSelector
    finally:
        loop.close()


def test_elsewhere_than_linux_the_default_loop_is_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sys, "platform", "darwin")
    loop = new_event_loop()
    try:
        selector = getattr(loop, "_selector", None)
        assert type(selector) is not getattr(_selector, "PreciseEpollSelector", None)
    finally:
        loop.close()
