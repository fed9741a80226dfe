"""Type tests for run_blocking and to_async (checked by mypy, never run)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, assert_type

import syncbridge

if TYPE_CHECKING:
    from collections.abc import Coroutine


def parse(text: str, /, base: int = 10, *, strict: bool = False) -> int:
    return int(text, base)


class Repo:
    def get(self, key: str) -> bytes:
        return key.encode()


async def check() -> None:
    assert_type(await syncbridge.run_blocking(parse, "12"), int)
    assert_type(await syncbridge.run_blocking(parse, "12", base=16, strict=True), int)
    assert_type(await syncbridge.get_bridge().run_blocking(parse, "1"), int)
    await syncbridge.run_blocking(parse, 12)  # type: ignore[arg-type]
    await syncbridge.run_blocking(parse, "1", nope=1)  # type: ignore[call-arg]

    bare = syncbridge.to_async(parse)
    assert_type(await bare("1", base=2, strict=True), int)
    await bare(1)  # type: ignore[arg-type]
    await bare("1", 2, True)  # type: ignore[call-arg]

    configured = syncbridge.to_async(timeout=1.0, pool="db")(parse)
    assert_type(await configured("7"), int)

    @syncbridge.to_async(thread_sensitive=True)
    def read(path: str) -> bytes:
        return path.encode()

    coro: Coroutine[Any, Any, bytes] = read("x")
    assert_type(await coro, bytes)

    method = syncbridge.to_async(Repo.get)
    assert_type(await method(Repo(), "k"), bytes)
