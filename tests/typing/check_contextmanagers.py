from __future__ import annotations

from contextlib import (
    AbstractAsyncContextManager,
    AbstractContextManager,
    asynccontextmanager,
    contextmanager,
)
from typing import TYPE_CHECKING

from typing_extensions import assert_type

from syncbridge._contextmanagers import to_async_cm, to_sync_cm

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator


@contextmanager
def opened() -> Iterator[int]:
    yield 1


@asynccontextmanager
async def session() -> AsyncIterator[str]:
    yield "s"


async def check_to_async_cm() -> None:
    cm = to_async_cm(opened())
    assert_type(cm, AbstractAsyncContextManager[int, bool])
    async with cm as value:
        assert_type(value, int)


def check_to_sync_cm() -> None:
    cm = to_sync_cm(session())
    assert_type(cm, AbstractContextManager[str, bool])
    with cm as value:
        assert_type(value, str)
