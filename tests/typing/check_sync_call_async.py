"""Type tests for sync_call_async and to_sync (checked by mypy, never run)."""

from __future__ import annotations

from typing import assert_type

import syncbridge


async def fetch(url: str, /, *, retries: int = 0) -> bytes:
    return url.encode()


def check() -> None:
    assert_type(syncbridge.sync_call_async(fetch, "u"), bytes)
    assert_type(syncbridge.sync_call_async(fetch, "u", retries=2), bytes)
    assert_type(syncbridge.get_bridge().sync_call_async(fetch, "u"), bytes)
    syncbridge.sync_call_async(fetch, 1)  # type: ignore[arg-type]

    fetch_sync = syncbridge.to_sync(fetch)
    assert_type(fetch_sync("u", retries=1), bytes)
    fetch_sync(b"u")  # type: ignore[arg-type]

    with_timeout = syncbridge.to_sync(timeout=2.0)(fetch)
    assert_type(with_timeout("u"), bytes)

    async def count(n: int) -> list[int]:
        return list(range(n))

    count_sync = syncbridge.to_sync(count)
    assert_type(count_sync(3), list[int])
    syncbridge.sync_call_async(count_sync, 3)  # type: ignore[arg-type]

    with syncbridge.Bridge(max_workers=4) as bridge:
        assert_type(bridge, syncbridge.Bridge)
        assert_type(bridge.sync_call_async(count, 2), list[int])
