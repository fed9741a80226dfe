from __future__ import annotations

from typing import TYPE_CHECKING, assert_type

from syncbridge._iterators import (
    SyncIterator,
    ThreadIterator,
    iterate_in_thread,
    sync_iter,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator


def numbers() -> Iterator[int]:
    yield 1


async def words() -> AsyncIterator[str]:
    yield "a"


async def check_iterate_in_thread() -> None:
    it = iterate_in_thread(numbers())
    assert_type(it, ThreadIterator[int])
    async for item in it:
        assert_type(item, int)
    assert_type(await it.__anext__(), int)
    await it.aclose()
    async with iterate_in_thread([b"x"]) as chunks:
        async for chunk in chunks:
            assert_type(chunk, bytes)


def check_sync_iter() -> None:
    it = sync_iter(words())
    assert_type(it, SyncIterator[str])
    for item in it:
        assert_type(item, str)
    assert_type(next(it), str)
    it.close()
    with sync_iter(words()) as again:
        assert_type(again, SyncIterator[str])
