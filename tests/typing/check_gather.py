from __future__ import annotations

from typing import assert_type

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
    assert_type(
        await gather_with_timeout(number(), number(), timeout=1.0), tuple[int, int]
    )
    assert_type(await gather_with_timeout(number(), timeout=None, limit=2), tuple[int])
    assert_type(
        await gather_with_timeout(number(), timeout=1, return_exceptions=True),
        tuple[int | BaseException],
    )
    mixed = await gather_with_timeout(number(), text(), timeout=1)
    assert_type(mixed, tuple[int, str])
    first, second = mixed
    assert_type(first, int)
    assert_type(second, str)
    many = await gather_with_timeout(*(number() for _ in range(9)), timeout=1)
    assert_type(many, tuple[int, ...])
    six = await gather_with_timeout(
        number(), text(), number(), text(), number(), text(), timeout=1
    )
    assert_type(six, tuple[int, str, int, str, int, str])
    pair = await gather_with_timeout(
        number(), text(), timeout=1, return_exceptions=True
    )
    assert_type(pair, tuple[int | BaseException, str | BaseException])
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
    assert_type(sync_gather_with_timeout(number(), timeout=1.0), tuple[int])
    assert_type(
        sync_gather_with_timeout(number(), timeout=1.0, return_exceptions=True),
        tuple[int | BaseException],
    )
    assert_type(
        sync_gather_with_timeout(number(), text(), timeout=1.0), tuple[int, str]
    )
