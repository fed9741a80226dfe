"""Issue 11: BaseExceptions arrive intact, as the same object.

``KeyboardInterrupt``, ``SystemExit`` and a custom ``BaseException`` raised in a
function run by ``run_blocking``, in a coroutine run by ``sync_call_async``, in
a ``to_async_cm`` cm's ``__exit__`` or a ``to_sync_cm`` acm's ``__aexit__``
reach the caller unchanged (identity), on both backends where they apply.
"""

from __future__ import annotations

import threading
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from typing import TYPE_CHECKING, Literal

import anyio
import pytest

import syncbridge
from syncbridge import Bridge

if TYPE_CHECKING:
    from collections.abc import Callable

pytestmark = pytest.mark.faults


class MyBase(BaseException):
    """A BaseException of the user's own."""


FACTORIES: dict[str, Callable[[], BaseException]] = {
    "KeyboardInterrupt": lambda: KeyboardInterrupt("from user code"),
    "SystemExit": lambda: SystemExit(3),
    "MyBase": lambda: MyBase("from user code"),
}
KINDS = list(FACTORIES)


def _caught(call: Callable[[], object]) -> BaseException | None:
    """Call *call* and return what it raised (None if it returned)."""
    try:
        call()
    except BaseException as exc:
        return exc
    return None


@pytest.mark.anyio
@pytest.mark.parametrize("kind", KINDS)
async def test_run_blocking_delivers_a_base_exception_intact(
    bridge: Bridge, kind: str
) -> None:
    """A BaseException raised by the function reaches the awaiter, same object."""
    raised = FACTORIES[kind]()

    def raiser() -> None:
        raise raised

    got: BaseException | None = None
    with anyio.fail_after(10):
        try:
            await bridge.run_blocking(raiser)
        except BaseException as exc:
            got = exc
    assert got is raised


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@pytest.mark.parametrize("kind", KINDS)
def test_sync_call_async_delivers_a_base_exception_intact(
    kind: str, backend: Literal["asyncio", "trio"]
) -> None:
    """A BaseException raised by the coroutine reaches the plain thread, same object."""
    raised = FACTORIES[kind]()

    async def raiser() -> None:
        raise raised

    got: list[BaseException | None] = []
    with Bridge(backend=backend, shutdown_grace=1.0) as b:
        caller = threading.Thread(
            target=lambda: got.append(_caught(lambda: b.sync_call_async(raiser))),
            daemon=True,
        )
        caller.start()
        caller.join(10)
        assert not caller.is_alive(), "sync_call_async() did not return"
    assert got == [raised]
    assert got[0] is raised


class _ExitRaises(AbstractContextManager[None]):
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc_info: object) -> None:
        raise self.exc


@pytest.mark.anyio
@pytest.mark.parametrize("kind", KINDS)
async def test_to_async_cm_delivers_a_base_exception_from_exit_intact(
    kind: str,
) -> None:
    """A BaseException raised by __exit__ leaves the async with, same object."""
    raised = FACTORIES[kind]()
    got: BaseException | None = None
    with anyio.fail_after(10):
        try:
            async with syncbridge.to_async_cm(_ExitRaises(raised)):
                pass
        except BaseException as exc:
            got = exc
    assert got is raised


class _AexitRaises(AbstractAsyncContextManager[None]):
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc_info: object) -> None:
        await anyio.lowlevel.checkpoint()
        raise self.exc


def _with_to_sync_cm(raised: BaseException) -> BaseException | None:
    def block() -> None:
        with syncbridge.to_sync_cm(_AexitRaises(raised)):
            pass

    return _caught(block)


@pytest.mark.parametrize("kind", KINDS)
def test_to_sync_cm_delivers_a_base_exception_from_aexit_intact(kind: str) -> None:
    """A BaseException raised by __aexit__ (on the portal) leaves the with, same object."""
    raised = FACTORIES[kind]()
    got: list[BaseException | None] = []
    caller = threading.Thread(
        target=lambda: got.append(_with_to_sync_cm(raised)), daemon=True
    )
    caller.start()
    caller.join(10)
    assert not caller.is_alive(), "the with block did not end"
    assert got == [raised]
    assert got[0] is raised


@pytest.mark.anyio
@pytest.mark.parametrize("kind", KINDS)
async def test_to_sync_cm_in_a_worker_delivers_a_base_exception_intact(
    bridge: Bridge, kind: str
) -> None:
    """In a worker (the cm runs on the awaiting task's loop) the same holds."""
    raised = FACTORIES[kind]()
    with anyio.fail_after(10):
        got = await bridge.run_blocking(_with_to_sync_cm, raised)
    assert got is raised
