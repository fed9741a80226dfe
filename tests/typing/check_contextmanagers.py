from __future__ import annotations

import threading
from contextlib import (
    AbstractAsyncContextManager,
    AbstractContextManager,
    asynccontextmanager,
    contextmanager,
)
from typing import TYPE_CHECKING, assert_type

from syncbridge._contextmanagers import to_async_cm, to_sync_cm

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Generator


@contextmanager
def opened() -> Generator[int]:
    yield 1


@asynccontextmanager
async def session() -> AsyncGenerator[str]:
    yield "s"


class Suppressing:
    def __enter__(self) -> int:
        return 1

    def __exit__(self, *exc_info: object) -> bool:
        return True


class AsyncLock:
    async def __aenter__(self) -> None:
        pass

    async def __aexit__(self, *exc_info: object) -> None:
        pass


async def check_to_async_cm() -> None:
    cm = to_async_cm(opened())
    assert_type(cm, AbstractAsyncContextManager[int, bool | None])
    async with cm as value:
        assert_type(value, int)
    # The wrapped manager's exit type is kept: a lock never suppresses ...
    assert_type(to_async_cm(threading.Lock()), AbstractAsyncContextManager[bool, None])
    # ... one that may suppress stays one that may.
    assert_type(to_async_cm(Suppressing()), AbstractAsyncContextManager[int, bool])


async def check_to_async_cm_keeps_assignments_bound() -> int:
    async with to_async_cm(threading.Lock()):
        assigned = 1
    return assigned  # "possibly unbound" if the exit type said it could suppress


def check_to_sync_cm() -> None:
    cm = to_sync_cm(session())
    assert_type(cm, AbstractContextManager[str, bool | None])
    with cm as value:
        assert_type(value, str)
    assert_type(to_sync_cm(AsyncLock()), AbstractContextManager[None, None])


def check_to_sync_cm_keeps_assignments_bound() -> int:
    with to_sync_cm(AsyncLock()):
        assigned = 1
    return assigned
