from __future__ import annotations

from typing_extensions import assert_type

from syncbridge._gather import (
    PENDING,
    GatherTimeout,
    PendingType,
    gather_with_timeout,
    sync_gather_with_timeout,
)


async def number() -> int:
    return 1


async def text() -> str:
    return "a"


async def check() -> None:
    assert_type(await gather_with_timeout(number(), number(), timeout=1.0), list[int])
    assert_type(await gather_with_timeout(number(), timeout=None, limit=2), list[int])
    assert_type(
        await gather_with_timeout(number(), timeout=1, return_exceptions=True),
        list[int | BaseException],
    )
    mixed = await gather_with_timeout(number(), text(), timeout=1)
    assert_type(mixed, list[object])
    try:
        await gather_with_timeout(number(), timeout=1)
    except GatherTimeout as exc:
        assert_type(exc.results, list[object])
        assert_type(exc.done, list[int])
        assert_type(exc.pending, list[int])
    slot: int | PendingType = PENDING
    if slot is not PENDING:
        assert_type(slot, int)


def check_sync() -> None:
    assert_type(sync_gather_with_timeout(number(), timeout=1.0), list[int])
    assert_type(
        sync_gather_with_timeout(number(), timeout=1.0, return_exceptions=True),
        list[int | BaseException],
    )
